"""The bundled examples as they were before they used blocks: version-1 files with every node
at the top level under its old id (`conv2d1`, `attn1`, `mlp1_in`...). Generated here by
ungrouping the bundled files, never stored: tests that group, rewire or compare against the
flat drawing use these, and the equivalence tests check a grouped example against them."""
from __future__ import annotations

import json
import re

from core import graphfile
from core.blocks import ungroup
from core.layers.block_layers import INTERFACE_KINDS

from .conftest import EXAMPLES

# example -> (inner id -> old id, given the instance's number; top-level renames)
OLD_IDS = {
    "mnist_cnn": ({"conv": "conv2d{i}", "relu": "relu{i}", "pool": "maxpool2d{i}"},
                  {"relu1": "relu3", "relu2": "relu4"}),
    "shakespeare_char_gpt": ({"ln1": "ln{i}a", "attn": "attn{i}", "res1": "res{i}a",
                              "ln2": "ln{i}b", "mlp_in": "mlp{i}_in", "gelu": "gelu{i}",
                              "mlp_out": "mlp{i}_out", "res2": "res{i}b"}, {}),
}


def flat_data(name: str) -> dict:
    """The example `name` (file stem) as a version-1 graph without blocks."""
    doc = graphfile.load(EXAMPLES / f"{name}.loom.json")
    inner_ids, renames = OLD_IDS.get(name, ({}, {}))
    renames = dict(renames)
    for spec in [n for n in doc.nodes.values() if n.kind == "Block"]:
        body = doc.blocks[spec.attrs["block"]].body
        inner = [n.id for n in body.nodes.values() if n.kind not in INTERFACE_KINDS]
        number = re.search(r"\d+$", spec.id).group()
        for old, new in zip(inner, ungroup(doc, spec.id)):  # ids as put back (fresh when taken)
            renames[new] = inner_ids.get(old, old).format(i=number)
    return {**_renamed(doc.to_dict(), renames), "version": 1}


def _renamed(data, renames) -> dict:
    rename = lambda node_id: renames.get(node_id, node_id)  # noqa: E731
    data["nodes"] = [{**n, "id": rename(n["id"])} for n in data["nodes"]]
    data["edges"] = [{"src": [rename(e["src"][0]), e["src"][1]],
                      "dst": [rename(e["dst"][0]), e["dst"][1]]} for e in data["edges"]]
    assert "blocks" not in data, "every definition goes with its last instance"
    return data


def flat_doc(name: str):
    return graphfile.from_dict(flat_data(name), f"{name} (flat)")


def flat_file(name: str, folder, **training):
    """The flat example written to `folder`, its training section updated by `training`."""
    data = flat_data(name)
    data["training"].update(training)
    path = folder / f"{name}_flat.loom.json"
    path.write_text(json.dumps(data, indent=1))
    return path
