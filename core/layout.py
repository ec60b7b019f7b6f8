"""Automatic layered layout (Sugiyama style), left to right or top down:
1. layers: each node one layer after its deepest input (longest path);
2. every wire that skips layers gets a placeholder in each layer it crosses, so it keeps a
   lane free of nodes (the labels wire of a classifier no longer runs through the chain);
3. crossings reduced by barycentre sweeps, down and up, keeping the best order seen;
4. coordinates: layers side by side, each layer's nodes stacked by their real heights,
   centred on the graph's main line."""
from __future__ import annotations

import networkx as nx

from core.layers.block_layers import kind_of

LAYER_GAP = 80.0  # between a layer's cards and the next: room for a detouring wire to bend
CARD_WIDTH = 190.0
NODE_GAP = 40.0  # between cards in one layer
LANE = 30.0  # room a passing wire keeps in a layer
SWEEPS = 8
DIRECTIONS = ("LR", "TB")


ASPECT = 1.6  # a long chain wraps into bands so the whole graph reads at about this shape


def layered_positions(doc, direction="LR") -> dict:
    """{node id: (x, y)} for every node of the document."""
    g = _graph(doc)
    layer = _layers(g)
    ranks, dummies = _with_lanes(g, layer)
    ranks = _reduce_crossings(g, ranks, dummies, doc)
    return _wrapped(_coordinates(ranks, dummies, doc, direction), ranks, direction)


def _wrapped(positions, ranks, direction):
    """A long, thin layout (a CNN is a chain of 17) folds into bands of k layers, one band
    after the other, like lines of text: readable at Frame All."""
    if not positions:
        return positions
    along = 0 if direction == "LR" else 1
    extent = lambda axis: (max(p[axis] for p in positions.values())  # noqa: E731
                           - min(p[axis] for p in positions.values()))
    thickness = extent(1 - along) + 2 * NODE_GAP + 120.0
    step = extent(along) / max(len(ranks) - 1, 1)
    bands = max(1, min(len(ranks) // 4, round((len(ranks) * step / (ASPECT * thickness)) ** 0.5)))
    if direction == "TB":
        bands = max(1, min(len(ranks) // 4, round((len(ranks) * step * ASPECT / thickness) ** 0.5)))
    per_band = -(-len(ranks) // bands)
    band_of = {n: k // per_band for k, rank in enumerate(ranks) for n in rank}
    out = {}
    for node, (x, y) in positions.items():
        b = band_of[node]
        if direction == "LR":
            out[node] = (x - b * per_band * step, y + b * thickness)
        else:
            out[node] = (x + b * thickness, y - b * per_band * step)
    return out


def _graph(doc):
    g = nx.DiGraph()
    g.add_nodes_from(doc.nodes)
    g.add_edges_from((e.src[0], e.dst[0]) for e in doc.edges)
    while not nx.is_directed_acyclic_graph(g):  # a cycle (invalid anyway): lay it out open
        g.remove_edge(*nx.find_cycle(g)[0][:2])
    return g


def _layers(g) -> dict:
    """Longest path from the sources; then each source moves to the layer just before its
    first reader (an imported model's weights sit next to the op that uses them, not in one
    tall first column with wires across the whole graph)."""
    layer = {}
    for node in nx.topological_sort(g):
        layer[node] = max((layer[p] + 1 for p in g.predecessors(node)), default=0)
    for node in g:
        readers = [layer[s] for s in g.successors(node)]
        if g.in_degree(node) == 0 and readers:
            layer[node] = min(readers) - 1
    return layer


def _with_lanes(g, layer):
    """Layers as lists, with a placeholder ("lane") in each layer a long wire crosses; the
    edges of `g` are rewired through them (in place)."""
    dummies = set()
    for src, dst in list(g.edges()):
        span = layer[dst] - layer[src]
        if span <= 1:
            continue
        g.remove_edge(src, dst)
        previous = src
        for k in range(1, span):
            lane = ("lane", src, dst, k)
            dummies.add(lane)
            layer[lane] = layer[src] + k
            g.add_edge(previous, lane)
            previous = lane
        g.add_edge(previous, dst)
    ranks = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in g.nodes:
        ranks[layer[node]].append(node)
    return ranks, dummies


def _reduce_crossings(g, ranks, dummies, doc):
    """Barycentre heuristic: order each layer by the mean position of its neighbours in the
    layer before (sweeping down) or after (sweeping up)."""
    start = lambda n: doc.nodes[n].pos[1] if n in doc.nodes else 0.0  # noqa: E731
    ranks = [sorted(r, key=lambda n: (start(n), str(n))) for r in ranks]
    best, best_crossings = [list(r) for r in ranks], _crossings(g, ranks)
    for sweep in range(SWEEPS):
        down = sweep % 2 == 0
        order = range(1, len(ranks)) if down else range(len(ranks) - 2, -1, -1)
        for i in order:
            fixed = {n: k for k, n in enumerate(ranks[i - 1 if down else i + 1])}
            neighbours = g.predecessors if down else g.successors
            current = {n: k for k, n in enumerate(ranks[i])}
            ranks[i] = sorted(ranks[i], key=lambda n: _barycentre(
                [fixed[m] for m in neighbours(n) if m in fixed], current[n]))
        crossings = _crossings(g, ranks)
        if crossings < best_crossings:
            best, best_crossings = [list(r) for r in ranks], crossings
    return best


def _barycentre(positions, current):
    return sum(positions) / len(positions) if positions else current


def _crossings(g, ranks) -> int:
    total = 0
    for upper, lower in zip(ranks, ranks[1:]):
        pos_u = {n: k for k, n in enumerate(upper)}
        pos_l = {n: k for k, n in enumerate(lower)}
        edges = [(pos_u[a], pos_l[b]) for a in upper for b in g.successors(a) if b in pos_l]
        total += sum(1 for i, (a1, b1) in enumerate(edges) for a2, b2 in edges[i + 1:]
                     if (a1 - a2) * (b1 - b2) < 0)
    return total


def card_height(doc, node) -> float:
    """A card's height as the canvas draws it (header, port rows, two info lines)."""
    kind = kind_of(doc, doc.nodes[node])  # a block instance: its definition's ports
    ports = max(len(kind.inputs), len(kind.outputs), 1) if kind else 1
    return 24.0 + 18.0 * ports + 18.0 * 2 + 8.0


def _coordinates(ranks, dummies, doc, direction):
    across = {}  # node -> offset across the layers (y for LR, x for TB)
    for rank in ranks:
        sizes = [LANE if n in dummies else
                 (card_height(doc, n) if direction == "LR" else CARD_WIDTH) for n in rank]
        total = sum(sizes) + NODE_GAP * (len(rank) - 1)
        cursor = -total / 2
        for node, size in zip(rank, sizes):
            across[node] = cursor
            cursor += size + NODE_GAP
    along_step = CARD_WIDTH + LAYER_GAP if direction == "LR" else \
        max((card_height(doc, n) for n in doc.nodes), default=100.0) + LAYER_GAP
    positions = {}
    for k, rank in enumerate(ranks):
        for node in rank:
            if node in dummies:
                continue
            along = k * along_step
            positions[node] = (along, across[node]) if direction == "LR" else (across[node], along)
    return positions
