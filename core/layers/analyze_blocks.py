"""The parts of analysis only blocks need: the levels a flattened document came from, the
problems flattening found, and each instance's summary (its output shapes, and the sums of
the parameters and multiply-adds inside it) folded from the flat nodes' entries."""
from __future__ import annotations

from .builder import NodeInfo, Problem


def levels(flat) -> list:
    """(document, path prefix) of the top level and of every block body expanded; a
    document without blocks is its own only level."""
    return getattr(flat, "levels", None) or [(flat, "")]


def block_problems(flat) -> list:
    return [Problem(path, None, message) for path, message in getattr(flat, "broken", {}).items()]


def fold_instances(flat, result):
    """An entry for every instance whose outputs were all computed: out_shapes keyed by the
    instance's ports, params and macs summed over the real nodes inside it."""
    for path in getattr(flat, "instances", ()):
        outputs = {port: flat.outputs_of.get((path, port)) for port in flat.ports[path][1]}
        if any(src is None or src[1] not in getattr(result.nodes.get(src[0]), "out_shapes", {})
               for src in outputs.values()):
            continue
        infos = {port: result.nodes[src[0]] for port, src in outputs.items()}
        inside = [info for node_id, info in result.nodes.items()
                  if node_id.startswith(f"{path}/") and node_id in flat.nodes]
        result.nodes[path] = NodeInfo({port: infos[port].out_shapes[src[1]]
                                       for port, src in outputs.items()},
                                      sum(i.params for i in inside), sum(i.macs for i in inside))
