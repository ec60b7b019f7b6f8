"""GraphScene: observes the GraphDocument (never edits it directly: edits go through undo
commands), draws nodes and wires, runs the live analysis, and handles wire drags. It shows
one level at a time: the graph, or the body of a block entered through an instance
(`levels`); the analysis is always the whole graph's, read at the shown level's paths."""
from __future__ import annotations

import networkx as nx
from PySide6.QtCore import QLineF, QPoint, QPointF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsLineItem, QGraphicsScene

from core.blocks import kind_of
from core.layers import LayerKind, analyze, compatible
from core.layers.block_layers import port_name

from .. import commands, style
from ..block_commands import restoring
from ..observe import observe
from .levels import Level, Levels, heat_by_card
from .node_item import NodeItem, PortItem, human, shape_text
from .wire_item import WireItem, bezier, carriage_return, detour, stroke

ROOM = 2000.0  # canvas kept around the cards, to drag and drop into


class GraphScene(QGraphicsScene):
    wire_dropped_on_empty = Signal(object, QPointF)  # (PortItem it started from, scene pos)
    analysis_updated = Signal(object)
    level_changed = Signal()  # entered a block or went up
    node_activated = Signal(str)  # a card double-clicked
    node_menu = Signal(object, QPoint)  # right-click: the card's node id (None: canvas), screen pos

    def __init__(self, doc, undo_stack, parent=None):
        super().__init__(parent)
        self.root, self.stack = doc, undo_stack
        self.levels = Levels(doc)
        self.heat: dict = {}  # the profile's times by flat node id (empty: no overlay)
        self.nodes: dict[str, NodeItem] = {}
        self.wires: dict = {}  # Edge -> WireItem
        self.analysis = None
        self._drag = None  # (PortItem, temporary WireItem, picked-up Edge | None) in a wire drag
        self._cut = None  # (start, dashed line item) during a Ctrl+right-drag cut
        self._press_positions = {}
        self._refresh = QTimer(self, singleShot=True, interval=0, timeout=self.refresh_analysis)
        # wires are re-routed once per batch of moves (a layout moves every node), not per move
        self._moved: set = set()
        self._reroute = QTimer(self, singleShot=True, interval=0, timeout=self.flush_routes)
        self.setBackgroundBrush(QColor(style.CANVAS_BG))
        self.setSceneRect(-5000, -5000, 10000, 10000)  # grows with the graph (grow_to_fit)
        self._handlers = {"node_added": self._on_node_added, "node_removed": self._on_node_removed,
                          "node_moved": self._on_node_moved, "edge_added": self._on_edge_added,
                          "edge_removed": self._on_edge_removed, "reset": self._on_reset,
                          "node_renamed": self._on_node_renamed, "attr_changed": self._on_attr_changed}
        observe(self, doc, self.on_document_event)
        self.rebuild()

    @property
    def doc(self):
        """The document shown: the graph, or (a stand-in for) the body of the block entered."""
        return self.levels.doc

    # ---- levels ----------------------------------------------------------------------------
    def show_path(self, path):
        """Show the level reached through `path` ([Level, ...] from the top)."""
        self.levels.path = list(path)
        self.clearSelection()
        self.rebuild()
        self.level_changed.emit()

    def enter(self, instance_id):
        block = self.doc.nodes[instance_id].attrs["block"]
        self.show_path([*self.levels.path, Level(instance_id, block)])

    # ---- observing the model ------------------------------------------------------------
    def on_document_event(self, event, payload):
        """The graph's events; inside a block, its body's arrive wrapped in block_changed."""
        if event == "block_renamed":
            self.levels.renamed(payload["old"], payload["new"])
        if self.levels.path and self.levels.current_path() != self.levels.path:
            # an undo removed the instance the canvas was inside, or renamed its block
            return self.show_path(self.levels.current_path())
        mine = self.levels.translate(event, payload)
        handler = self._handlers.get(mine[0]) if mine else None
        if handler:
            handler(**mine[1])
        elif event.startswith("block_"):  # a definition changed: its instances' ports may have
            self._refresh_instances()
        self._refresh.start()

    def _on_node_added(self, node):
        spec = self.doc.nodes[node]
        kind = kind_of(self.doc, spec) or _unknown_kind(spec.kind)
        item = NodeItem(node, kind, card_title(spec))
        item.setPos(*spec.pos)
        item.xChanged.connect(lambda i=item: self.node_geometry_changed(i))
        item.yChanged.connect(lambda i=item: self.node_geometry_changed(i))
        self.addItem(item)
        self.nodes[node] = item

    def _on_node_removed(self, node):
        self.removeItem(self.nodes.pop(node))

    def _on_node_moved(self, node):
        item = self.nodes[node]
        pos = self.doc.nodes[node].pos
        if (item.pos().x(), item.pos().y()) != tuple(pos):
            item.setPos(*pos)

    def _on_edge_added(self, edge, route=True):
        src = self.nodes[edge.src[0]].outputs.get(edge.src[1])
        wire = WireItem(edge, src.port.type if src else "data")
        self.addItem(wire)
        self.wires[edge] = wire
        if route:
            self._route(wire)

    def _on_edge_removed(self, edge):
        self.removeItem(self.wires.pop(edge))

    def _on_node_renamed(self, old, new):
        selected = old in self.selected_node_ids()
        self.rebuild()  # ids key every item and wire: build them again
        if selected:
            self.select_node(new)

    def _on_reset(self):
        """Another graph, or the same one restored by an undo: what was selected and is still
        there stays selected (the inspector keeps showing it)."""
        selected = self.selected_node_ids() if restoring() else []
        self.rebuild()
        for node_id in selected:
            if node_id in self.nodes:
                self.nodes[node_id].setSelected(True)
        self.level_changed.emit()  # the graph's name, the blocks the breadcrumbs name

    def _on_attr_changed(self, node, attr):
        if attr in ("block", "name", "type"):  # what an instance's or a port's card is made of
            self._refresh_card(node)

    def _refresh_instances(self):
        for node_id, spec in self.doc.nodes.items():
            if spec.kind == "Block":
                self._refresh_card(node_id)

    def _refresh_card(self, node_id):
        """Make the card again when its title or ports changed (a block's interface or name)."""
        spec, item = self.doc.nodes.get(node_id), self.nodes.get(node_id)
        if spec is None or item is None:
            return
        kind = kind_of(self.doc, spec) or _unknown_kind(spec.kind)
        if (card_title(spec), kind.inputs, kind.outputs) == (item.title, item.kind.inputs, item.kind.outputs):
            return
        selected = item.isSelected()
        touching = [e for e in self.wires if node_id in (e.src[0], e.dst[0])]
        for edge in touching:
            self._on_edge_removed(edge)
        self._on_node_removed(node_id)
        self._on_node_added(node_id)
        for edge in touching:
            self._on_edge_added(edge)
        self.nodes[node_id].setSelected(selected)
        self._apply_heat()

    def rebuild(self):
        for item in list(self.nodes.values()) + list(self.wires.values()):
            self.removeItem(item)
        self.nodes.clear()
        self.wires.clear()
        for node in self.doc.nodes:
            self._on_node_added(node)
        for edge in self.doc.edges:
            self._on_edge_added(edge, route=False)
        for wire in self.wires.values():  # once every card is in place
            self._route(wire)
        self._moved.clear()
        self.grow_to_fit()
        self.refresh_analysis()
        self._apply_heat()

    # ---- geometry --------------------------------------------------------------------------
    def port_item(self, key, is_input) -> PortItem | None:
        node = self.nodes.get(key[0])
        if node is None:
            return None
        return (node.inputs if is_input else node.outputs).get(key[1])

    MAX_BLOCKERS = 12  # a heap of overlapping cards cannot be routed around: draw it plainly

    def _route(self, wire):
        """The wire's curve; where it would cross other cards, a detour around them."""
        a, b = self.port_item(wire.edge.src, False), self.port_item(wire.edge.dst, True)
        if a is None or b is None:
            return
        start, end = a.scene_anchor(), b.scene_anchor()
        if end.x() < start.x() - 40 and abs(end.y() - start.y()) > 60:
            return wire.setPath(carriage_return(start, end))
        ends = (wire.edge.src[0], wire.edge.dst[0])
        path, blockers = bezier(start, end), []
        for _ in range(3):  # a detour may meet other cards: widen it around them too
            new = [r for r in self._cards_on(path, ends) if r not in blockers]
            if not new or len(blockers) + len(new) > self.MAX_BLOCKERS:
                break
            blockers += new
            path = detour(start, end, blockers)
        wire.setPath(path if len(blockers) <= self.MAX_BLOCKERS else bezier(start, end))

    def _cards_on(self, path, ends) -> list:
        """Scene rectangles of the cards (other than the wire's own ends) the path crosses:
        candidates from the scene index by bounding box, then an exact test."""
        near = [i for i in self.items(path.boundingRect(), Qt.IntersectsItemBoundingRect)
                if isinstance(i, NodeItem) and i.node_id not in ends]
        if len(near) > 4 * self.MAX_BLOCKERS:  # a heap (a generated graph before layout)
            return []
        line = stroke(path, 2.0)
        rects = (i.sceneBoundingRect() for i in near)
        return [r for r in rects if line.intersects(r)]

    def node_geometry_changed(self, item):
        self._moved.add(item.node_id)
        self._reroute.start()

    def grow_to_fit(self):
        """The canvas grows to hold every card with room around it: a large imported model
        (DenseNet lays out 6,000 units wide) must not be cut off at the default size."""
        bounds = self.itemsBoundingRect().adjusted(-ROOM, -ROOM, ROOM, ROOM)
        if not self.sceneRect().contains(bounds):
            self.setSceneRect(self.sceneRect().united(bounds))

    def flush_routes(self):
        """Re-route the wires of the cards that moved, and the wires now running over them."""
        moved, self._moved = self._moved, set()
        if moved:
            self.grow_to_fit()
        wires = {w for e, w in self.wires.items() if e.src[0] in moved or e.dst[0] in moved}
        for node_id in moved & set(self.nodes):
            wires.update(i for i in self.items(self.nodes[node_id].sceneBoundingRect())
                         if isinstance(i, WireItem) and i.edge is not None)
        for wire in wires:
            self._route(wire)

    # ---- live analysis ---------------------------------------------------------------------
    def refresh_analysis(self):
        self.analysis = analyze(self.root)  # the whole graph: inside a block, shapes are the entered instance's
        for node_id, item in self.nodes.items():
            info = self.levels.info(self.analysis, node_id)
            lines = []
            if info is not None:
                lines = [f"{port}: {shape_text(s)}" if len(info.out_shapes) > 1 else shape_text(s)
                         for port, s in info.out_shapes.items()]
                if info.params or info.macs:
                    lines.append(f"{human(info.params)} params · {human(info.macs)} MACs")
            problems = self.analysis.problems_of(self.levels.flat_id(node_id))
            item.set_info(lines, [str(p) for p in problems])
        self.analysis_updated.emit(self.analysis)

    # ---- profile overlay ---------------------------------------------------------------------
    def set_heat(self, times: dict):
        """Colour the cards by time (an instance by the sum inside it); {} turns it off."""
        self.heat = dict(times)
        self._apply_heat()

    def _apply_heat(self):
        shares = heat_by_card(self.heat, self.levels.prefix, self.nodes) if self.heat else {}
        for node_id, item in self.nodes.items():
            item.set_heat(shares.get(node_id))

    # ---- wire drags ------------------------------------------------------------------------
    def can_connect(self, a: PortItem, b: PortItem) -> bool:
        if a.is_input == b.is_input or a.node_item is b.node_item:
            return False
        out, inp = (b, a) if a.is_input else (a, b)
        if not compatible(out.port.type, inp.port.type):
            return False
        return not self._would_cycle(out.node_item.node_id, inp.node_item.node_id)

    def _would_cycle(self, src, dst):
        g = nx.DiGraph((e.src[0], e.dst[0]) for e in self.doc.edges)
        return src == dst or (dst in g and src in g and nx.has_path(g, dst, src))

    def connect_ports(self, a: PortItem, b: PortItem) -> bool:
        """Push the AddEdge command for a drag from a to b; False (nothing pushed) if refused."""
        if not self.can_connect(a, b):
            return False
        out, inp = (b, a) if a.is_input else (a, b)
        self.stack.push(commands.AddEdge(self.doc, out.key, inp.key))
        return True

    def _all_ports(self):
        for node in self.nodes.values():
            yield from node.inputs.values()
            yield from node.outputs.values()

    def _port_at(self, pos):
        for item in self.items(pos):
            if isinstance(item, PortItem):
                return item
        return None

    def _card_at(self, pos) -> NodeItem | None:
        return next((i for i in self.items(pos) if isinstance(i, NodeItem)), None)

    def mouseDoubleClickEvent(self, event):
        card = self._card_at(event.scenePos())
        if card is not None and event.button() == Qt.LeftButton:
            self.node_activated.emit(card.node_id)  # an instance card: enter the block
            event.accept()
            return
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event):
        if event.modifiers() & Qt.ControlModifier or self._cut:  # Ctrl+right-drag cuts wires
            return
        card = self._card_at(event.scenePos())
        if card is not None and not card.isSelected():
            self.select_node(card.node_id)
        self.node_menu.emit(card.node_id if card else None, event.screenPos())
        event.accept()

    def mousePressEvent(self, event):
        if event.button() == Qt.RightButton and event.modifiers() & Qt.ControlModifier:
            self._start_cut(event.scenePos())
            event.accept()
            return
        port = self._port_at(event.scenePos())
        if port is not None and event.button() == Qt.LeftButton:
            picked = self.doc.edge_into(*port.key) if port.is_input else None
            if picked is not None:  # dragging a connected input picks its wire up
                port = self.port_item(picked.src, False)
            self._start_wire_drag(port, picked)
            event.accept()
            return
        self._press_positions = {n: (i.pos().x(), i.pos().y()) for n, i in self.nodes.items()}
        super().mousePressEvent(event)

    def _start_wire_drag(self, port, picked=None):
        wire = WireItem(None, port.port.type)
        wire.setPen(QPen(wire.pen().color(), 2, Qt.DashLine))
        self.addItem(wire)
        self._drag = (port, wire, picked)
        for other in self._all_ports():
            if other is not port:
                other.set_state("compatible" if self.can_connect(port, other) else "refused")
        if picked is not None:
            self.wires[picked].setOpacity(0.25)  # lifted: dropped off a port, it is removed

    def _start_cut(self, pos):
        line = QGraphicsLineItem(QLineF(pos, pos))
        line.setPen(QPen(QColor(style.CUT), 1.5, Qt.DashLine))
        line.setZValue(10)
        self.addItem(line)
        self._cut = (pos, line)

    def mouseMoveEvent(self, event):
        if self._cut:
            start, line = self._cut
            line.setLine(QLineF(start, event.scenePos()))
            return
        if self._drag:
            port, wire, _ = self._drag
            a, b = port.scene_anchor(), event.scenePos()
            wire.connect_points(b, a) if port.is_input else wire.connect_points(a, b)
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._cut:
            self._finish_cut(event.scenePos())
            return
        if self._drag:
            self._finish_wire_drag(event.scenePos())
            return
        super().mouseReleaseEvent(event)
        self._push_moves()

    def _finish_wire_drag(self, pos):
        port, wire, picked = self._drag
        self._drag = None
        self.removeItem(wire)
        for other in self._all_ports():
            other.set_state("normal")
        target = self._port_at(pos)
        if picked is not None:
            return self._drop_picked(picked, port, target)
        if target is None:
            self.wire_dropped_on_empty.emit(port, pos)
        elif target is not port:
            self.connect_ports(port, target)

    def _drop_picked(self, picked, source, target):
        """A picked-up wire: back on its input changes nothing; on another input moves
        there; anywhere else it is removed."""
        self.wires[picked].setOpacity(1.0)
        if target is not None and target.is_input and target.key == picked.dst:
            return
        moved = target is not None and target.is_input and self.can_connect(source, target)
        cmds = [commands.RemoveEdge(self.doc, picked)]
        if moved:
            cmds.append(commands.AddEdge(self.doc, source.key, target.key))
        commands.macro(self.stack, "Move wire" if moved else cmds[0].text(), cmds)

    def _finish_cut(self, end):
        start, line = self._cut
        self._cut = None
        self.removeItem(line)
        cut = [e for e, w in self.wires.items() if _crosses(w.path(), start, end)]
        if cut:
            commands.macro(self.stack, f"Cut {len(cut)} wire{'s' * (len(cut) != 1)}",
                           [commands.RemoveEdge(self.doc, e) for e in cut])

    def selected_edges(self):
        return [i.edge for i in self.selectedItems() if isinstance(i, WireItem) and i.edge]

    # ---- dropping a node onto a wire splices it in -------------------------------------------
    def splice_commands(self, node_id) -> list:
        """AddEdge commands that insert an unconnected node into the wire under it (its
        first input port that takes the wire's value, first output the far end accepts)."""
        if any(node_id in (e.src[0], e.dst[0]) for e in self.doc.edges):
            return []
        item = self.nodes[node_id]
        area = QPainterPath()
        area.addRect(item.sceneBoundingRect())
        for edge, wire in self.wires.items():
            if not wire.path().intersects(area):
                continue
            src_type = self.port_item(edge.src, False).port.type
            dst_type = self.port_item(edge.dst, True).port.type
            inp = next((p for p in item.kind.inputs if compatible(src_type, p.type)), None)
            out = next((p for p in item.kind.outputs if compatible(p.type, dst_type)), None)
            if inp is not None and out is not None:
                return [commands.AddEdge(self.doc, edge.src, (node_id, inp.name)),
                        commands.AddEdge(self.doc, (node_id, out.name), edge.dst)]
        return []

    def _push_moves(self):
        moves = {}
        for node_id, item in self.nodes.items():
            old = self._press_positions.get(node_id)
            new = (item.pos().x(), item.pos().y())
            if old is not None and old != new:
                moves[node_id] = (old, new)
        self._press_positions = {}
        if not moves:
            return
        move = commands.MoveNodes(self.doc, moves)
        splice = self.splice_commands(next(iter(moves))) if len(moves) == 1 else []
        if splice:
            commands.macro(self.stack, f"Insert {next(iter(moves))} into wire", [move, *splice])
        else:
            self.stack.push(move)

    def selected_node_ids(self):
        return [i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)]

    def select_node(self, node_id):
        self.clearSelection()
        if node_id in self.nodes:
            self.nodes[node_id].setSelected(True)


def _unknown_kind(name):
    return LayerKind(name, "Ops", (), (), (), lambda *a: {}, help="unknown kind")


def card_title(spec) -> str | None:
    """A block instance is titled by its block, a block's port by the port's name; other
    cards by their kind (None)."""
    if spec.kind == "Block":
        return str(spec.attrs.get("block") or "Block")
    if spec.kind in ("BlockInput", "BlockOutput"):
        return f"{spec.kind[5:]} {port_name(spec)}"
    return None


def _crosses(path, start, end, samples=64) -> bool:
    """Whether the straight cut from start to end crosses the curve (QPainterPath's
    intersects() on an open path also counts its closing chord)."""
    cut = QLineF(start, end)
    points = [path.pointAtPercent(i / samples) for i in range(samples + 1)]
    return any(QLineF(a, b).intersects(cut)[0] == QLineF.BoundedIntersection
               for a, b in zip(points, points[1:]))
