"""Wires: cubic Bézier curves from an output port to an input port."""
from __future__ import annotations

from PySide6.QtCore import QPointF
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem

from .. import style


def bezier(a: QPointF, b: QPointF) -> QPainterPath:
    path = QPainterPath(a)
    dx = max(abs(b.x() - a.x()) * 0.5, 40.0)
    path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
    return path


class WireItem(QGraphicsPathItem):
    def __init__(self, edge=None, port_type="data"):
        super().__init__()
        self.edge = edge
        self.setPen(QPen(QColor(style.PORT_COLOURS.get(port_type, "#cccccc")), 2.2))
        self.setZValue(0)

    def connect_points(self, a: QPointF, b: QPointF):
        self.setPath(bezier(a, b))
