"""A node card: title, typed ports (inputs left, outputs right) and the live shape /
parameter / multiply-add lines; a red badge with the check message when invalid."""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontMetricsF, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsEllipseItem, QGraphicsItem, QGraphicsObject

from .. import style

WIDTH, HEADER, ROW, PORT_R = 190.0, 24.0, 18.0, 6.0
LEGIBLE_ZOOM = 0.45  # below this scale port names and shapes are drawn as titles only


def human(n: int) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f}{unit}"
    return str(n)


def shape_text(shape) -> str:
    if len(shape) == 0:
        return "scalar"
    return "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"


class PortItem(QGraphicsEllipseItem):
    def __init__(self, node_item, port, is_input):
        super().__init__(-PORT_R, -PORT_R, 2 * PORT_R, 2 * PORT_R, node_item)
        self.node_item, self.port, self.is_input = node_item, port, is_input
        self.colour = QColor(style.PORT_COLOURS.get(port.type, "#cccccc"))
        self.set_state("normal")
        self.setToolTip(f"{port.name} ({port.type}){' — ' + port.help if port.help else ''}")
        self.setAcceptHoverEvents(True)

    @property
    def key(self):
        return (self.node_item.node_id, self.port.name)

    def set_state(self, state):
        """normal | compatible (lit during a wire drag) | refused (dimmed)."""
        colour = QColor(self.colour)
        if state == "refused":
            colour.setAlpha(50)
        self.setBrush(QBrush(colour))
        width = 3 if state == "compatible" else 1
        self.setPen(QPen(QColor("#ffffff" if state == "compatible" else "#111111"), width))
        self.setScale(1.5 if state == "compatible" else 1.0)

    def scene_anchor(self) -> QPointF:
        return self.mapToScene(QPointF(0, 0))


class NodeItem(QGraphicsObject):
    def __init__(self, node_id, kind, title=None):
        super().__init__()
        self.node_id, self.kind = node_id, kind
        self.title = title or kind.name  # a block instance shows its block's name
        self.info_lines: list[str] = []
        self._bounds = None  # cached boundingRect
        self.problems: list[str] = []
        self.heat = None  # 0..1 share of step time (profile overlay), None = off
        self.inputs = {p.name: PortItem(self, p, True) for p in kind.inputs}
        self.outputs = {p.name: PortItem(self, p, False) for p in kind.outputs}
        self._place_ports()
        # Position changes arrive as xChanged/yChanged signals: overriding itemChange in
        # PySide6 corrupts None's refcount when Qt passes None through it.
        self.setFlags(QGraphicsItem.ItemIsMovable | QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.setToolTip(f"{self.title} · {node_id}")  # the full id, however the header elides it
        self.setZValue(1)

    def _place_ports(self):
        for i, item in enumerate(self.inputs.values()):
            item.setPos(0, HEADER + ROW * (i + 0.7))
        for i, item in enumerate(self.outputs.values()):
            item.setPos(WIDTH, HEADER + ROW * (i + 0.7))

    def height(self):
        ports = max(len(self.inputs), len(self.outputs))
        return HEADER + ROW * max(ports, 1) + ROW * max(len(self.info_lines), 1) + 8

    def boundingRect(self):
        # Qt asks for this very often (scene index, routing): computed once per info change
        if self._bounds is None:
            self._bounds = QRectF(-PORT_R - 2, -10, WIDTH + 2 * PORT_R + 4, self.height() + 12)
        return self._bounds

    def set_info(self, lines, problems):
        self.prepareGeometryChange()
        self.info_lines, self.problems = list(lines), list(problems)
        self._bounds = None
        self.setToolTip("\n".join(self.problems) or f"{self.title} · {self.node_id}")
        self.update()

    def set_heat(self, heat):
        self.heat = heat
        self.update()

    def paint(self, painter, option, widget=None):
        rect = QRectF(0, 0, WIDTH, self.height())
        path = QPainterPath()
        path.addRoundedRect(rect, 7, 7)
        painter.fillPath(path, QColor(style.NODE_BODY))
        if self.heat is not None:  # profile overlay: cool blue -> hot red
            hot = QColor.fromHsvF(0.66 * (1 - self.heat), 0.8, 0.55, 0.6)
            painter.fillPath(path, hot)
        header = QPainterPath()
        header.addRoundedRect(QRectF(0, 0, WIDTH, HEADER), 7, 7)
        painter.fillPath(header, QColor(style.CATEGORY_COLOURS.get(self.kind.category, "#455a64")))
        outline = style.SELECTED if self.isSelected() else (style.ERROR if self.problems else "#3a3c42")
        painter.setPen(QPen(QColor(outline), 2 if self.isSelected() or self.problems else 1))
        painter.drawPath(path)
        if option.levelOfDetailFromTransform(painter.worldTransform()) < LEGIBLE_ZOOM:
            self._paint_title_only(painter)
        else:
            self._paint_text(painter)
        if self.problems:
            self._paint_badge(painter)

    def _paint_title_only(self, painter):
        """Zoomed out, small text is unreadable: the kind alone, large, across the card."""
        big = QFont()
        big.setBold(True)
        big.setPixelSize(int(HEADER * 1.4))
        width = QFontMetricsF(big).horizontalAdvance(self.title)
        if width > WIDTH - 12:  # long names shrink to fit the card rather than being cut
            big.setPixelSize(max(8, int(HEADER * 1.4 * (WIDTH - 12) / width)))
        painter.setFont(big)
        painter.setPen(QColor(style.TEXT))
        painter.drawText(QRectF(6, 0, WIDTH - 12, self.height()), Qt.AlignCenter, self.title)

    def header_texts(self) -> tuple[str, str]:
        """The title and the node id as drawn: the id elided into the room the title leaves
        (or dropped), so the two never overlap."""
        bold = QFont()
        bold.setBold(True)
        title_width = QFontMetricsF(bold).horizontalAdvance(self.title)
        room = WIDTH - 16 - title_width - 10
        node_id = QFontMetricsF(QFont()).elidedText(self.node_id, Qt.ElideMiddle, room) \
            if room > 24 else ""
        return self.title, node_id

    def _paint_text(self, painter):
        bold = QFont()
        bold.setBold(True)
        title, node_id = self.header_texts()
        painter.setFont(bold)
        painter.setPen(QColor(style.TEXT))
        painter.drawText(QRectF(8, 0, WIDTH - 16, HEADER), Qt.AlignVCenter | Qt.AlignLeft, title)
        painter.setFont(QFont())
        painter.setPen(QColor(style.DIM_TEXT))
        painter.drawText(QRectF(8, 0, WIDTH - 16, HEADER), Qt.AlignVCenter | Qt.AlignRight, node_id)
        painter.setPen(QColor(style.TEXT))
        for i, name in enumerate(self.inputs):
            painter.drawText(QRectF(10, HEADER + ROW * i, WIDTH / 2, ROW), Qt.AlignVCenter, name)
        for i, name in enumerate(self.outputs):
            painter.drawText(QRectF(WIDTH / 2, HEADER + ROW * i, WIDTH / 2 - 10, ROW),
                             Qt.AlignVCenter | Qt.AlignRight, name)
        top = HEADER + ROW * max(len(self.inputs), len(self.outputs), 1)
        painter.setPen(QColor(style.DIM_TEXT))
        for i, line in enumerate(self.info_lines or ["—"]):
            painter.drawText(QRectF(10, top + ROW * i, WIDTH - 20, ROW), Qt.AlignVCenter, line)

    def _paint_badge(self, painter):
        painter.setBrush(QColor(style.ERROR))
        painter.setPen(Qt.NoPen)
        painter.drawEllipse(QPointF(WIDTH - 2, -2), 9, 9)
        painter.setPen(QColor("#ffffff"))
        painter.drawText(QRectF(WIDTH - 11, -11, 18, 18), Qt.AlignCenter, "!")
