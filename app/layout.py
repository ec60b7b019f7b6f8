"""Automatic layered layout, left to right: columns are topological generations."""
from __future__ import annotations

import networkx as nx

COLUMN, ROW = 250.0, 150.0


def layered_positions(doc) -> dict:
    g = nx.DiGraph()
    g.add_nodes_from(doc.nodes)
    g.add_edges_from((e.src[0], e.dst[0]) for e in doc.edges)
    if not nx.is_directed_acyclic_graph(g):
        g = nx.condensation(g)  # cycles (invalid anyway) collapse to one column entry
        members = nx.get_node_attributes(g, "members")
        gens = [[m for c in gen for m in sorted(members[c])] for gen in nx.topological_generations(g)]
    else:
        gens = [sorted(gen, key=lambda n: doc.nodes[n].pos[1]) for gen in nx.topological_generations(g)]
    positions = {}
    for x, gen in enumerate(gens):
        top = -(len(gen) - 1) * ROW / 2
        for y, node in enumerate(gen):
            positions[node] = (x * COLUMN, top + y * ROW)
    return positions
