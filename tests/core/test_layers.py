"""The layer table: every kind builds and runs, shapes/params/MACs come from shape inference
alone, and validation reports every problem with its node id and port."""
import numpy as np
import pytest

import core
from core import graphfile
from core.document import GraphDocument
from core.layers import LAYERS, analyze, build
from core.layers.op_layers import OP_NODES
from core.ops import OPS

EXAMPLES = sorted((__import__("pathlib").Path(__file__).resolve().parents[2]
                   / "resources" / "examples").glob("*.loom.json"))

# kind -> (input shapes per port, attrs); the batch axis is added in front of data inputs.
SAMPLE = {
    "Linear": ({"in": (5,)}, {"out_features": 3}),
    "Flatten": ({"in": (2, 3, 3)}, {}),
    "Reshape": ({"in": (12,)}, {"shape": [3, 4]}),
    "Dropout": ({"in": (6,)}, {"rate": 0.5}),
    "BatchNorm": ({"in": (3, 4, 4)}, {}),
    "Add": ({"a": (4,), "b": (4,)}, {}),
    "Concat": ({"a": (2, 3), "b": (5, 3)}, {"axis": 1}),
    "Conv2D": ({"in": (3, 8, 8)}, {"out_channels": 4, "kernel": 3, "padding": 1}),
    "MaxPool2D": ({"in": (2, 8, 8)}, {}), "AvgPool2D": ({"in": (2, 8, 8)}, {}),
    "ReLU": ({"in": (4,)}, {}), "Sigmoid": ({"in": (4,)}, {}), "Tanh": ({"in": (4,)}, {}),
    "Softmax": ({"in": (4,)}, {}),
    "SoftmaxCrossEntropy": ({"logits": (10,), "labels": "labels"}, {}),
    "Accuracy": ({"logits": (10,), "labels": "labels"}, {}),
    "MSELoss": ({"pred": (3,), "target": (3,)}, {}),
    "Input": ({}, {"shape": [7]}),
    "Parameter": ({}, {"shape": [2, 3]}),
    "TextDataset": ({}, {"context": 8}),
    "Embedding": ({"ids": "tokens"}, {"vocab": 66, "width": 6}),
    "PositionalEmbedding": ({"in": (8, 6)}, {"length": 8}),
    "LayerNorm": ({"in": (8, 6)}, {}), "GELU": ({"in": (8, 6)}, {}),
    "MultiHeadAttention": ({"in": (8, 6)}, {"heads": 2, "width": 4}),
    "Constant": ({}, {"shape": [2, 3]}),
}
OP_SAMPLE = {"matmul": ({"a": (4,), "b": "w"}, {}), "conv2d": ({"x": (3, 6, 6), "w": "k"}, {}),
             "softmax_cross_entropy": ({"logits": (10,), "labels": "labels"}, {}),
             "accuracy": ({"logits": (10,), "labels": "labels"}, {}),
             "broadcast_to": ({"x": "one"}, {"shape": [4, 5]}), "reshape": ({"x": "six"}, {"shape": [-1, 3]}),
             "concat": ({"a": (2,), "b": (3,)}, {}), "slice": ({"x": (6,)}, {"begin": [0], "end": [2]}),
             "max_pool2d": ({"x": (2, 4, 4)}, {}), "avg_pool2d": ({"x": (2, 4, 4)}, {}),
             "gather": ({"table": "w", "ids": "tokens"}, {}),
             "layer_norm": ({"x": (3,), "gamma": "three", "beta": "three"}, {}),
             "lrn": ({"x": (3, 4, 4)}, {"size": 3}),
             "pad": ({"x": (3, 4)}, {"pads": [0, 1, 0, 0, 2, 1]})}


def _doc_for(kind, inputs, attrs, batch=4):
    """A document: one Input per data port (plus Dataset labels), feeding the node under test."""
    doc = GraphDocument("t")
    node = doc.add_node(kind, attrs, node_id="under_test")
    feeds = {}
    for port, shape in inputs.items():
        if shape == "labels":
            ds = doc.add_node("Dataset", {"name": "digits"}, node_id="ds")
            doc.add_edge(("ds", "labels"), (node, port))
            feeds[port] = "labels"
            continue
        if shape == "tokens":  # integer ids below 4 (the Parameter table "w" has 4 rows)
            doc.add_node("TextDataset", {"context": 8}, node_id="text")
            doc.add_edge(("text", "tokens"), (node, port))
            feeds[port] = "tokens"
            continue
        if isinstance(shape, str):  # a weight: a Parameter node, no batch axis
            full = {"w": (4, 3), "k": (5, 3, 3, 3), "one": (1,), "six": (6,), "three": (3,)}[shape]
            src = doc.add_node("Parameter", {"shape": list(full)}, node_id=f"in_{port}")
        else:
            full = shape
            src = doc.add_node("Input", {"shape": list(full)}, node_id=f"in_{port}")
        doc.add_edge((src, "out"), (node, port))
        feeds[port] = full
    return doc


def _run(doc, batch=4):
    built = build(doc, training=True, batch=batch)
    outs = {k: v for k, v in built.outputs.items() if k[0] == "under_test"}
    rng = np.random.default_rng(0)
    feed = {p: core.init_value(p, rng) for p in built.parameters}
    for (nid, port), node in built.outputs.items():
        if node.op == "placeholder":
            shape = tuple(batch if d is None else d for d in node.attrs["shape"])
            feed[node] = (rng.integers(0, 4, shape) if node.attrs.get("dtype") == "int64"
                          else rng.standard_normal(shape).astype(np.float32))
    values = core.Executor(list(outs.values())).run(feed)
    return dict(zip(outs, values))


ALL = {**SAMPLE, **{k: OP_SAMPLE.get(k, ({p.name: (4,) for p in LAYERS[k].inputs}, {})) for k in OP_NODES}}


# never built: flattened away first (tests/core/test_blocks.py has their cases)
BLOCK_KINDS = {"Block", "BlockInput", "BlockOutput"}


def test_every_layer_kind_has_a_case_and_every_public_op_a_node():
    assert set(LAYERS) - {"Dataset"} - BLOCK_KINDS <= set(ALL)
    helpers = {n for n in OPS if "_grad" in n or n.endswith(("_like", "_part", "_mask", "_update"))
               or n in ("placeholder", "parameter", "constant") or OPS[n].effects}
    assert set(OPS) - helpers <= set(LAYERS)


@pytest.mark.parametrize("kind", sorted(ALL))
def test_every_kind_builds_runs_and_matches_analysis(kind):
    inputs, attrs = ALL[kind]
    if kind == "slice" or kind == "transpose":
        inputs = inputs if kind == "slice" else {"x": (4,)}
    doc = _doc_for(kind, inputs, attrs)
    analysis = analyze(doc)
    real = [p for p in analysis.problems if "no loss" not in p.message]
    assert not real, [str(p) for p in real]
    with np.errstate(invalid="ignore", divide="ignore"):  # log/sqrt of random inputs: shapes matter here
        values = _run(doc)
    info = analysis.nodes["under_test"]
    for (nid, port), value in values.items():
        predicted = tuple(4 if d is None else d for d in info.out_shapes[port])
        assert value.shape == predicted, (kind, port)


def test_params_and_macs_for_linear_and_conv():
    doc = _doc_for("Linear", {"in": (5,)}, {"out_features": 3})
    info = analyze(doc).nodes["under_test"]
    assert info.params == 5 * 3 + 3 and info.macs == 15
    doc = _doc_for("Conv2D", {"in": (3, 8, 8)}, {"out_channels": 4, "kernel": 3, "padding": 1})
    info = analyze(doc).nodes["under_test"]
    assert info.params == 4 * 3 * 9 + 4 and info.macs == 4 * 8 * 8 * 3 * 9
    assert info.out_shapes["out"] == (None, 4, 8, 8)


def _example(name="digits_mlp"):
    return graphfile.load(next(p for p in EXAMPLES if p.name.startswith(name)))


def _messages(doc):
    return [str(p) for p in analyze(doc).problems]


def test_validation_names_node_and_port():
    doc = _example()
    lin = next(n for n in doc.nodes.values() if n.kind == "Linear")
    edge = doc.edge_into(lin.id, "in")
    doc.remove_edge(edge)
    doc.set_attr(next(n.id for n in doc.nodes.values() if n.kind == "Linear" and n.id != lin.id),
                 "out_features", 0)
    msgs = _messages(doc)
    assert any(m.startswith(f"node {lin.id}, port in: required input") for m in msgs)
    assert any("out_features: 0 is below the minimum 1" in m for m in msgs)


def test_shape_mismatch_names_both_shapes():
    doc = GraphDocument()
    a = doc.add_node("Input", {"shape": [4]}, node_id="a")
    b = doc.add_node("Input", {"shape": [5]}, node_id="b")
    add = doc.add_node("Add", node_id="sum")
    doc.add_edge((a, "out"), (add, "a"))
    doc.add_edge((b, "out"), (add, "b"))
    msg = next(m for m in _messages(doc) if m.startswith("node sum"))
    assert "(N, 4)" in msg and "(N, 5)" in msg


def test_cycle_no_loss_port_types_and_double_edges():
    doc = GraphDocument()
    r1, r2 = doc.add_node("ReLU", node_id="r1"), doc.add_node("ReLU", node_id="r2")
    doc.add_edge((r1, "out"), (r2, "in"))
    doc.add_edge((r2, "out"), (r1, "in"))
    msgs = _messages(doc)
    assert any("cycle" in m and "r1 -> r2" in m for m in msgs)
    assert any("no loss" in m for m in msgs)
    doc = _example()
    ds = next(n.id for n in doc.nodes.values() if n.kind == "Dataset")
    relu = next(n.id for n in doc.nodes.values() if n.kind == "ReLU")
    doc.add_edge((ds, "labels"), (relu, "in"))
    msgs = _messages(doc)
    assert any(f"node {relu}, port in: cannot connect a label output" in m for m in msgs)
    assert any(f"node {relu}, port in: more than one edge" in m for m in msgs)


def test_unknown_kind_is_a_problem_not_a_crash():
    doc = _example()
    doc.add_node("Teleporter", node_id="tp")
    assert any(m.startswith("node tp: unknown kind") for m in _messages(doc))
