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


def detour(a: QPointF, b: QPointF, blockers) -> QPainterPath:
    """A wire that would cross other cards runs in a lane just above or below them (the
    side nearer its ends), leaving and joining its ports with smooth bends."""
    middle = (a.y() + b.y()) / 2
    below = max(r.bottom() for r in blockers) + 24
    above = min(r.top() for r in blockers) - 24
    lane = below if abs(below - middle) <= abs(middle - above) else above
    left = min(r.left() for r in blockers) - 20
    right = max(r.right() for r in blockers) + 20
    path = QPainterPath(a)
    path.cubicTo(QPointF(a.x() + 40, a.y()), QPointF(left - 40, lane), QPointF(left, lane))
    path.lineTo(QPointF(right, lane))
    path.cubicTo(QPointF(right + 40, lane), QPointF(b.x() - 40, b.y()), b)
    return path


def carriage_return(a: QPointF, b: QPointF) -> QPainterPath:
    """A wire into a node left of its source (a layout wrapped into bands): out to the
    right, back along the gap halfway down, and in from the left, like a line of text."""
    gap = (a.y() + b.y()) / 2
    path = QPainterPath(a)
    path.cubicTo(QPointF(a.x() + 60, a.y()), QPointF(a.x() + 60, gap), QPointF(a.x(), gap))
    path.lineTo(QPointF(b.x(), gap))
    path.cubicTo(QPointF(b.x() - 60, gap), QPointF(b.x() - 60, b.y()), b)
    return path


def stroke(path: QPainterPath, width: float) -> QPainterPath:
    stroker = QPainterPathStroker()
    stroker.setWidth(width)
    return stroker.createStroke(path)


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
        return stroke(self.path(), self.HIT_WIDTH)

    def paint(self, painter, option, widget=None):
        selected = bool(option.state & QStyle.State_Selected)
        option.state &= ~QStyle.State_Selected  # no dashed box: the wire itself lights up
        if selected:
            painter.setPen(QPen(self.colour.lighter(160), 4.0))
            painter.drawPath(self.path())
        super().paint(painter, option, widget)

    def connect_points(self, a: QPointF, b: QPointF):
        self.setPath(bezier(a, b))
