"""Writes mnist_cnn.loom.json: a LeNet-style CNN on the bundled MNIST subset, laid out by the
editor's layered layout.

Its two convolution stages (Conv2D -> ReLU -> MaxPool2D) are two instances (stage1, stage2)
of one block definition, "ConvStage", whose channel count and padding are promoted to the
instance: stage1 keeps 28x28 with 6 channels, stage2 goes to 10x10 with 16. Flattened (as
the engine builds it) the graph has the same nodes in the same order as the stages drawn flat,
so it initialises and trains to the same numbers.

Run from the project root: python resources/examples/make_cnn_example.py"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core import graphfile  # noqa: E402
from core.blocks import BlockDef, promote  # noqa: E402
from core.document import GraphDocument  # noqa: E402
from core.layout import layered_positions  # noqa: E402

BLOCK = "ConvStage"
STAGES = [{"channels": 6, "padding": 2}, {"channels": 16, "padding": 0}]
HIDDEN = [120, 84]
TRAINING = {"optimizer": "adam", "schedule": "constant", "seed": 0, "val_fraction": 0.2,
            "backend": "numpy", "checkpoint": "none", "lr": 0.002, "batch_size": 64,
            "epochs": 15}


def lay_out(doc):
    for node_id, pos_xy in layered_positions(doc).items():
        doc.move_node(node_id, pos_xy)


def conv_stage() -> GraphDocument:
    """The body: a 5x5 convolution, ReLU and 2x2 max pooling between the block's ports."""
    body = GraphDocument(BLOCK)
    chain = [body.add_node("BlockInput", {"name": "in"}, node_id="in"),
             body.add_node("Conv2D", {"out_channels": 6, "kernel": 5, "padding": 2},
                           node_id="conv"),
             body.add_node("ReLU", {}, node_id="relu"),
             body.add_node("MaxPool2D", {}, node_id="pool")]
    out = body.add_node("BlockOutput", {"name": "out"}, node_id="out")
    for src, dst in zip(chain, chain[1:]):
        body.add_edge((src, "out"), (dst, "in"))
    body.add_edge((chain[-1], "out"), (out, "in"))
    lay_out(body)
    return body


def add_definition(doc):
    doc.add_block(BlockDef(BLOCK, conv_stage()))
    promote(doc, BLOCK, "channels", [["conv", "out_channels"]])
    promote(doc, BLOCK, "padding", [["conv", "padding"]])


def build() -> GraphDocument:
    doc = GraphDocument("mnist_cnn")
    add_definition(doc)
    data = doc.add_node("Dataset", {"name": "mnist_subset", "path": ""}, node_id="data")
    x = (data, "images")
    for i, values in enumerate(STAGES, 1):
        stage = doc.add_node("Block", {"block": BLOCK, **values}, node_id=f"stage{i}")
        doc.add_edge(x, (stage, "in"))
        x = (stage, "out")
    flat = doc.add_node("Flatten", {}, node_id="flatten1")
    doc.add_edge(x, (flat, "in"))
    x = (flat, "out")
    for i, width in enumerate(HIDDEN, 1):
        linear = doc.add_node("Linear", {"out_features": width}, node_id=f"linear{i}")
        relu = doc.add_node("ReLU", {}, node_id=f"relu{i}")
        doc.add_edge(x, (linear, "in"))
        doc.add_edge((linear, "out"), (relu, "in"))
        x = (relu, "out")
    logits = doc.add_node("Linear", {"out_features": 10}, node_id=f"linear{len(HIDDEN) + 1}")
    doc.add_edge(x, (logits, "in"))
    loss = doc.add_node("SoftmaxCrossEntropy", {}, node_id="loss")
    accuracy = doc.add_node("Accuracy", {}, node_id="accuracy")
    for node, port in ((loss, "logits"), (accuracy, "logits")):
        doc.add_edge((logits, "out"), (node, port))
        doc.add_edge((data, "labels"), (node, "labels"))
    doc.set_training(TRAINING)
    lay_out(doc)
    return doc


if __name__ == "__main__":
    out = Path(__file__).with_name("mnist_cnn.loom.json")
    graphfile.save(build(), out)
    print(f"wrote {out.relative_to(ROOT)}")
