"""Wires: cubic Bézier curves from an output port to an input port."""
from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QStyle

from .. import style


def bezier(a: QPointF, b: QPointF) -> QPainterPath:
    path = QPainterPath(a)
    dx = max(abs(b.x() - a.x()) * 0.5, 40.0)
    path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
    return path


class WireItem(QGraphicsPathItem):
    """Selectable (click or rubber band; Delete removes it); easy to hit: the clickable
    shape is a band around the curve, wider than the drawn line."""
    HIT_WIDTH = 14.0

    def __init__(self, edge=None, port_type="data"):
        super().__init__()
        self.edge = edge
        self.colour = QColor(style.PORT_COLOURS.get(port_type, "#cccccc"))
        self.setPen(QPen(self.colour, 2.2))
        self.setZValue(0)
        if edge is not None:  # the temporary wire of a drag is not selectable
            self.setFlag(QGraphicsItem.ItemIsSelectable)

    def shape(self):
        stroker = QPainterPathStroker()
        stroker.setWidth(self.HIT_WIDTH)
        return stroker.createStroke(self.path())

    def paint(self, painter, option, widget=None):
        selected = bool(option.state & QStyle.State_Selected)
        option.state &= ~QStyle.State_Selected  # no dashed box: the wire itself lights up
        if selected:
            painter.setPen(QPen(self.colour.lighter(160), 4.0))
            painter.drawPath(self.path())
        super().paint(painter, option, widget)

    def connect_points(self, a: QPointF, b: QPointF):
        self.setPath(bezier(a, b))
