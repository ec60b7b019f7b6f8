"""Layers for sequence models (palette category "Sequence"): text data, embeddings, layer
norm, GELU and multi-head self-attention, each built from the primitive ops so the compiler
plans, fuses and checkpoints a transformer like any other graph."""
from __future__ import annotations

import functools
import math

from .. import ops
from ..compiler.shapes import show_shape
from ..data.text import TextDataset, Vocabulary, load_text, text_names
from ..errors import ShapeError
from ..graph import placeholder
from .base import AttrSpec, LayerKind, Port, register
from .common import OUT, int_attr, simple
from .data_layers import Signature

SEQUENCE = "Sequence"


# ---- TextDataset: windows of characters and their next characters ------------------------------

def _text_attrs(attrs):
    return attrs["text"], attrs.get("path", "") if attrs["text"] == "file" else ""


@functools.lru_cache(maxsize=8)
def _vocabulary(text, path) -> Vocabulary:
    return Vocabulary.from_text(load_text(text, path))


def vocabulary(attrs) -> Vocabulary:
    """The character vocabulary of the text a TextDataset node names (cached: the editor asks
    on every edit)."""
    return _vocabulary(*_text_attrs(attrs))


def load_text_dataset(attrs) -> TextDataset:
    text = load_text(*_text_attrs(attrs))
    vocab = vocabulary(attrs)
    return TextDataset(vocab.encode(text), vocab, attrs["context"], name=attrs["text"])


def text_signature(attrs) -> Signature:
    text = load_text(*_text_attrs(attrs))
    return Signature((attrs["context"],), len(vocabulary(attrs)), len(text) - attrs["context"])


def _build_text(ctx, attrs, ins):
    shape = (None, attrs["context"])
    return {"tokens": placeholder("tokens", shape, dtype="int64"),
            "targets": placeholder("targets", shape, dtype="int64")}


register(LayerKind(
    "TextDataset", SEQUENCE, (), (Port("tokens", "data"), Port("targets", "label")),
    (AttrSpec("text", "choice", "shakespeare", choices=tuple(text_names()),
              help="which text: the bundled Shakespeare plays, or a UTF-8 file"),
     AttrSpec("path", "str", "", path=True, help="the text file when text is 'file' "
              "(relative to the graph file)"),
     int_attr("context", 64, hi=4096, help="characters per window (the model's context)")),
    _build_text, help="Training text: windows of character ids (N, T) and, for each position, "
    "the next character (N, T); validation is the text's last part",
    load=load_text_dataset, signature=text_signature))


# ---- embeddings ----------------------------------------------------------------------------------

def _embedding(ctx, a, ids):
    table = ctx.param("weight", (a["vocab"], a["width"]), init="normal", scale=0.02)
    return ops.gather(table, ids)


simple("Embedding", SEQUENCE, _embedding, "a learned vector per token id: (N, T) -> (N, T, width)",
       (int_attr("vocab", 65, help="number of token ids (the text's vocabulary size)"),
        int_attr("width", 128, help="vector size per token")),
       inputs=(Port("ids", "data"),))


def _positional(ctx, a, x):
    shape = ctx.shape_of(x)
    if len(shape) != 3:
        raise ShapeError(f"PositionalEmbedding expects (N, T, C), got {show_shape((None, *shape[1:]))}")
    length, width = shape[1], shape[2]
    if length > a["length"]:
        raise ShapeError(f"sequence of {length} positions is longer than length {a['length']}")
    table = ctx.param("weight", (a["length"], width), init="normal", scale=0.02)
    # the table is sized by `length`, not the input: generation feeds shorter prompts
    rows = table if length == a["length"] else ops.slice(table, (0,), (length,))
    return ops.add(x, rows)


simple("PositionalEmbedding", SEQUENCE, _positional,
       "adds a learned vector per position: (N, T, C) -> (N, T, C)",
       (int_attr("length", 64, hi=65536, help="most positions (the longest context)"),))


# ---- normalisation and activation ----------------------------------------------------------------

def _layer_norm(ctx, a, x):
    width = ctx.shape_of(x)[-1]
    gamma = ctx.param("gamma", (width,), init="ones")
    beta = ctx.param("beta", (width,), init="zeros")
    return ops.layer_norm(x, gamma, beta, eps=a["eps"])


simple("LayerNorm", SEQUENCE, _layer_norm, "normalise each position over its features, then "
       "scale and shift (learned)",
       (AttrSpec("eps", "float", 1e-5, min=1e-12, max=1.0, help="added to the variance"),))

simple("GELU", SEQUENCE, lambda ctx, a, x: ops.gelu(x, a["approximate"]),
       "x * Phi(x), the transformer's activation",
       (AttrSpec("approximate", "choice", "tanh", choices=ops.sequence.GELU_FORMS,
                 help="tanh: GPT-2's approximation; erf: exact"),))


# ---- multi-head self-attention ------------------------------------------------------------------

def _project(ctx, name, x, width, out_width):
    """x (N, T, width) through a learned (width, out_width) matrix and bias, as one GEMM over
    all N*T positions."""
    w = ctx.param(f"{name}_weight", (width, out_width), init="normal", scale=0.02)
    b = ctx.param(f"{name}_bias", (out_width,), init="zeros")
    y = ops.matmul(ops.reshape(x, (-1, width)), w)
    return ops.add(y, b)


def _heads(flat, length, heads, size):
    """(N*T, H*D) -> (N, H, T, D)."""
    return ops.transpose(ops.reshape(flat, (-1, length, heads, size)), (0, 2, 1, 3))


def _attention(ctx, a, x):
    shape = ctx.shape_of(x)
    if len(shape) != 3:
        raise ShapeError(f"MultiHeadAttention expects (N, T, C), got {show_shape((None, *shape[1:]))}")
    _, length, channels = shape
    heads, width = a["heads"], a["width"]
    if width % heads:
        raise ShapeError(f"width {width} is not divisible by {heads} heads")
    size = width // heads
    # q scaled (T*D per head, where the scores would cost T*T) before its heads split: the
    # transpositions then all meet matmuls, which fold them (compiler/fold_transposes.py)
    q = ops.mul(_project(ctx, "q", x, channels, width), 1.0 / math.sqrt(size))
    k, v = (_project(ctx, n, x, channels, width) for n in "kv")
    q, k, v = (_heads(p, length, heads, size) for p in (q, k, v))
    scores = ops.matmul(q, k, trans_B=True)  # (N, H, T, T)
    if a["causal"]:
        scores = ops.where(ops.causal_mask(length), scores, float("-inf"))
    weights = ops.softmax(scores, axis=-1)
    weights = ops.dropout(weights, a["dropout"], training=ctx.training, seed=a["seed"])
    mixed = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))  # (N, T, H, D)
    out = _project(ctx, "out", ops.reshape(mixed, (-1, length, width)), width, channels)
    return ops.reshape(out, (-1, length, channels))


def attention_macs(in_shapes, out_shapes, a) -> int:
    """Multiply-adds of the batch: per sample the q, k, v and output projections (4 T C W)
    and the two attention products, scores and weighted values (2 T^2 W; the causal mask
    does not skip any)."""
    batch, length, channels = in_shapes["in"]
    return batch * (4 * length * channels * a["width"] + 2 * length * length * a["width"])


simple("MultiHeadAttention", SEQUENCE, _attention,
       "self-attention: each position mixes the values of the positions it attends to",
       (int_attr("heads", 4, hi=1024, help="attention heads (width is split between them)"),
        int_attr("width", 128, help="size of queries, keys and values over all heads"),
        AttrSpec("causal", "bool", True, help="attend only to earlier positions (language models)"),
        AttrSpec("dropout", "float", 0.0, min=0.0, max=0.95, help="dropout on attention weights"),
        int_attr("seed", 0, lo=0, help="seed of the dropout masks")),
       macs=attention_macs)
