"""Writes shakespeare_char_gpt.loom.json: nanoGPT's "baby GPT" (4 blocks, 4 heads, 128-wide,
context 64, batch 12) wired from Loom's primitives, laid out by the editor's layered layout.

The four transformer blocks are four instances (block1..block4) of one block definition,
"TransformerBlock", whose attention heads and MLP width are promoted to the instance. Flattened
(as the engine builds it) the graph has the same nodes in the same order as the blocks drawn
flat, so it initialises and trains to the same numbers.

Run from the project root: python resources/examples/make_gpt_example.py"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from core import graphfile  # noqa: E402
from core.blocks import BlockDef, promote  # noqa: E402
from core.document import GraphDocument  # noqa: E402
from core.layers.sequence_layers import vocabulary  # noqa: E402
from core.layout import layered_positions  # noqa: E402

BLOCKS, HEADS, WIDTH, CONTEXT = 4, 4, 128, 64
BLOCK = "TransformerBlock"
TRAINING = {"optimizer": "adam", "lr": 1e-3, "beta2": 0.99, "batch_size": 12, "epochs": 10,
            "steps_per_epoch": 200, "schedule": "cosine", "min_lr_ratio": 0.1,
            "warmup_steps": 100, "val_fraction": 0.1, "seed": 1337}


def lay_out(doc):
    for node_id, pos_xy in layered_positions(doc).items():
        doc.move_node(node_id, pos_xy)


def transformer_block() -> GraphDocument:
    """The body: LayerNorm -> attention -> Add, LayerNorm -> Linear -> GELU -> Linear -> Add,
    between the block's input port and its output port."""
    body = GraphDocument(BLOCK)
    x = body.add_node("BlockInput", {"name": "in"}, node_id="in")
    ln1 = body.add_node("LayerNorm", {}, node_id="ln1")
    attn = body.add_node("MultiHeadAttention", {"heads": HEADS, "width": WIDTH}, node_id="attn")
    add1 = body.add_node("Add", {}, node_id="res1")
    ln2 = body.add_node("LayerNorm", {}, node_id="ln2")
    fc = body.add_node("Linear", {"out_features": 4 * WIDTH}, node_id="mlp_in")
    gelu = body.add_node("GELU", {}, node_id="gelu")
    proj = body.add_node("Linear", {"out_features": WIDTH}, node_id="mlp_out")
    add2 = body.add_node("Add", {}, node_id="res2")
    out = body.add_node("BlockOutput", {"name": "out"}, node_id="out")
    wire = body.add_edge
    wire((x, "out"), (ln1, "in")); wire((ln1, "out"), (attn, "in"))
    wire((x, "out"), (add1, "a")); wire((attn, "out"), (add1, "b"))
    wire((add1, "out"), (ln2, "in")); wire((ln2, "out"), (fc, "in"))
    wire((fc, "out"), (gelu, "in")); wire((gelu, "out"), (proj, "in"))
    wire((add1, "out"), (add2, "a")); wire((proj, "out"), (add2, "b"))
    wire((add2, "out"), (out, "in"))
    lay_out(body)
    return body


def add_definition(doc):
    doc.add_block(BlockDef(BLOCK, transformer_block()))
    promote(doc, BLOCK, "heads", [["attn", "heads"]])
    promote(doc, BLOCK, "mlp_width", [["mlp_in", "out_features"]])


def build() -> GraphDocument:
    doc = GraphDocument("shakespeare_char_gpt")
    add_definition(doc)
    data = doc.add_node("TextDataset", {"text": "shakespeare", "context": CONTEXT}, node_id="text")
    vocab = len(vocabulary({"text": "shakespeare", "path": ""}))
    tok = doc.add_node("Embedding", {"vocab": vocab, "width": WIDTH}, node_id="tokens")
    pos = doc.add_node("PositionalEmbedding", {"length": CONTEXT}, node_id="positions")
    doc.add_edge((data, "tokens"), (tok, "ids"))
    doc.add_edge((tok, "out"), (pos, "in"))
    x = (pos, "out")
    for b in range(1, BLOCKS + 1):
        attrs = {"block": BLOCK, "heads": HEADS, "mlp_width": 4 * WIDTH}
        block = doc.add_node("Block", attrs, node_id=f"block{b}")
        doc.add_edge(x, (block, "in"))
        x = (block, "out")
    ln = doc.add_node("LayerNorm", {}, node_id="ln_final")
    head = doc.add_node("Linear", {"out_features": vocab}, node_id="lm_head")
    loss = doc.add_node("SoftmaxCrossEntropy", {}, node_id="loss")
    doc.add_edge(x, (ln, "in"))
    doc.add_edge((ln, "out"), (head, "in"))
    doc.add_edge((head, "out"), (loss, "logits"))
    doc.add_edge((data, "targets"), (loss, "labels"))
    doc.set_training(TRAINING)
    lay_out(doc)
    return doc


if __name__ == "__main__":
    out = Path(__file__).with_name("shakespeare_char_gpt.loom.json")
    graphfile.save(build(), out)
    print(f"wrote {out.relative_to(ROOT)}")
