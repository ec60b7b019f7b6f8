"""A minimap in the canvas corner for graphs larger than the view: the whole graph small,
the visible part outlined; click or drag in it to move the view there."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QFrame, QGraphicsView

from .. import style

SIZE = (200, 130)
MARGIN = 10


class Minimap(QGraphicsView):
    def __init__(self, main_view):
        super().__init__(main_view.scene(), main_view)
        self.main = main_view
        self.setFixedSize(*SIZE)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setInteractive(False)  # a map, not a second editor
        self.setFrameShape(QFrame.Box)
        self.setRenderHints(QPainter.Antialiasing)
        self.setStyleSheet(f"background: {style.CANVAS_BG}; border: 1px solid #55575d;")
        self.setFocusPolicy(Qt.NoFocus)
        main_view.horizontalScrollBar().valueChanged.connect(self.viewport().update)
        main_view.verticalScrollBar().valueChanged.connect(self.viewport().update)

    def refresh(self):
        """Show it only when the graph does not fit the view; fit the graph into it."""
        bounds = self.scene().itemsBoundingRect()
        seen = self.main.mapToScene(self.main.viewport().rect()).boundingRect()
        self.setVisible(bool(self.scene().nodes) and not seen.contains(bounds))
        if self.isVisible():
            self.fitInView(bounds.adjusted(-40, -40, 40, 40), Qt.KeepAspectRatio)
            self.viewport().update()
        self.move(self.main.width() - SIZE[0] - MARGIN, self.main.height() - SIZE[1] - MARGIN)

    def visible_area(self):
        return self.main.mapToScene(self.main.viewport().rect()).boundingRect()

    def drawForeground(self, painter, rect):
        painter.setPen(QPen(QColor(style.SELECTED), 0))
        painter.drawRect(self.visible_area())

    def drawBackground(self, painter, rect):
        painter.fillRect(rect, QColor(style.CANVAS_BG))  # no grid at this scale

    def mousePressEvent(self, event):
        self._centre_on(event)

    def mouseMoveEvent(self, event):
        if event.buttons() & Qt.LeftButton:
            self._centre_on(event)

    def _centre_on(self, event):
        self.main.centerOn(self.mapToScene(event.position().toPoint()))
        self.viewport().update()
