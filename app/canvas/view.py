"""GraphView: zoom at the cursor, middle-drag pan, rubber-band selection, framing, and
drops from the palette (each drop pushes one AddNode command)."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainter, QPen
from PySide6.QtWidgets import QGraphicsView

from .. import style
from .minimap import Minimap

KIND_MIME = "application/x-loom-kind"
BLOCK_MIME = "application/x-loom-block"  # a palette Blocks entry: "doc:Name" / "lib:Name"


class GraphView(QGraphicsView):
    kind_dropped = Signal(str, QPointF)  # kind name, scene position
    block_dropped = Signal(str, QPointF)  # Blocks entry key, scene position
    search_requested = Signal()  # Tab on the canvas: "Add node…"

    def __init__(self, scene, parent=None):
        super().__init__(scene, parent)
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setViewportUpdateMode(QGraphicsView.BoundingRectViewportUpdate)
        self.setAcceptDrops(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._pan_from = None
        self._shown = False
        self.minimap = Minimap(self)
        # after each edit: the empty-graph hint appears or goes (it spans the viewport), and
        # the minimap follows the graph
        scene.analysis_updated.connect(self._after_edit)

    def _after_edit(self, *_):
        self.viewport().update()
        self.minimap.refresh()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self.minimap.refresh()

    def event(self, event):
        """Tab on the canvas opens the node search (Blender's Shift+A, Unreal's Tab); Qt
        would otherwise spend it on focus navigation. Elsewhere Tab moves focus as usual."""
        if event.type() == QEvent.KeyPress and event.key() == Qt.Key_Tab and not event.modifiers():
            self.search_requested.emit()
            return True
        return super().event(event)

    def showEvent(self, event):
        super().showEvent(event)
        if not self._shown:  # the first frame_all ran before the docks took their room
            self._shown = True
            QTimer.singleShot(0, self.frame_all)

    # ---- zoom and pan -------------------------------------------------------------------
    def wheelEvent(self, event):
        factor = 1.15 if event.angleDelta().y() > 0 else 1 / 1.15
        zoom = self.transform().m11() * factor
        if 0.1 < zoom < 4.0:
            self.scale(factor, factor)  # AnchorUnderMouse keeps the point under the cursor
            self.minimap.refresh()

    def mousePressEvent(self, event):
        if event.button() == Qt.MiddleButton:
            self._pan_from = event.position()
            self.setCursor(Qt.ClosedHandCursor)
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._pan_from is not None:
            delta = event.position() - self._pan_from
            self._pan_from = event.position()
            self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() - int(delta.x()))
            self.verticalScrollBar().setValue(self.verticalScrollBar().value() - int(delta.y()))
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if event.button() == Qt.MiddleButton and self._pan_from is not None:
            self._pan_from = None
            self.unsetCursor()
            return
        super().mouseReleaseEvent(event)

    def frame(self, items):
        rect = QRectF()
        for item in items:
            rect = rect.united(item.sceneBoundingRect())
        if not rect.isNull():
            self.scene().grow_to_fit()
            self.fitInView(rect.adjusted(-60, -60, 60, 60), Qt.KeepAspectRatio)
            if self.transform().m11() > 1.2:  # never blow a single node up
                self.resetTransform()
                self.centerOn(rect.center())
        self.minimap.refresh()

    def frame_selection(self):
        self.frame(self.scene().selectedItems() or self.scene().nodes.values())

    def frame_all(self):
        self.frame(self.scene().nodes.values())

    # ---- background grid ----------------------------------------------------------------------
    def drawBackground(self, painter, rect):
        super().drawBackground(painter, rect)
        painter.setPen(QPen(QColor(style.GRID), 1))
        step = 40
        left, top = int(rect.left()) - int(rect.left()) % step, int(rect.top()) - int(rect.top()) % step
        for x in range(left, int(rect.right()) + 1, step):
            painter.drawLine(x, int(rect.top()), x, int(rect.bottom()))
        for y in range(top, int(rect.bottom()) + 1, step):
            painter.drawLine(int(rect.left()), y, int(rect.right()), y)

    EMPTY_HINT = "Drag a node from the palette, or press Tab here to search for one"

    def drawForeground(self, painter, rect):
        """An empty graph says how to start, in the middle of the view."""
        super().drawForeground(painter, rect)
        if self.scene().nodes:
            return
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(style.HINT))
        painter.drawText(self.viewport().rect(), Qt.AlignCenter, self.EMPTY_HINT)
        painter.restore()

    # ---- drops from the palette ----------------------------------------------------------------
    def dragEnterEvent(self, event):
        if event.mimeData().hasFormat(KIND_MIME) or event.mimeData().hasFormat(BLOCK_MIME):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, event):
        mime, at = event.mimeData(), self.mapToScene(event.position().toPoint())
        if mime.hasFormat(KIND_MIME):
            self.kind_dropped.emit(bytes(mime.data(KIND_MIME)).decode(), at)
        elif mime.hasFormat(BLOCK_MIME):
            self.block_dropped.emit(bytes(mime.data(BLOCK_MIME)).decode(), at)
        else:
            return super().dropEvent(event)
        event.acceptProposedAction()
