"""The sequence layer kinds (TextDataset, Embedding, PositionalEmbedding, LayerNorm, GELU,
MultiHeadAttention) and Linear on (N, T, F): they build and run in a small language model,
`analyze` predicts the shapes the run gives, parameter and multiply-add counts match a hand
count, the values match a numpy reference, attention's causal flag does what it says, and
bad sizes are problems naming the node."""
import math

import numpy as np
import pytest

import core
from core.compiler.shapes import show_shape
from core.document import GraphDocument
from core.errors import GraphError
from core.layers import LAYERS, analyze, build

NEW_KINDS = ("TextDataset", "Embedding", "PositionalEmbedding", "LayerNorm", "GELU",
             "MultiHeadAttention")
T, C, W, H, V = 8, 6, 4, 2, 66  # context, channels, attention width, heads, vocabulary


def chain(*nodes, doc=None):
    """A document of nodes (id, kind, attrs, input port) each fed by the one before."""
    doc = doc or GraphDocument("t")
    prev = None
    for node_id, kind, attrs, port in nodes:
        doc.add_node(kind, attrs, node_id=node_id)
        if prev is not None:
            doc.add_edge(prev, (node_id, port))
        prev = (node_id, "tokens" if kind == "TextDataset" else "out")
    return doc


def language_model(causal=True):
    doc = chain(("text", "TextDataset", {"context": T}, None),
                ("emb", "Embedding", {"vocab": V, "width": C}, "ids"),
                ("pos", "PositionalEmbedding", {"length": T}, "in"),
                ("norm", "LayerNorm", {}, "in"),
                ("attn", "MultiHeadAttention", {"heads": H, "width": W, "causal": causal}, "in"),
                ("act", "GELU", {"approximate": "erf"}, "in"),
                ("head", "Linear", {"out_features": V}, "in"))
    for node_id, kind in (("loss", "SoftmaxCrossEntropy"), ("acc", "Accuracy")):
        doc.add_node(kind, {}, node_id=node_id)
        doc.add_edge(("head", "out"), (node_id, "logits"))
        doc.add_edge(("text", "targets"), (node_id, "labels"))
    return doc


def parameter_values(built, seed=0):
    """float64 values for every parameter, large enough that attention is far from uniform."""
    rng = np.random.default_rng(seed)
    return {p: rng.standard_normal(p.attrs["shape"]) * 0.7 for p in built.parameters}


def run_all(built, feed):
    keys = list(built.outputs)
    values = core.Executor([built.outputs[k] for k in keys]).run(feed)
    return dict(zip(keys, values))


def by_name(params):
    return {p.name: v for p, v in params.items()}


# ---- numpy references ------------------------------------------------------------------------

def np_layer_norm(x, gamma, beta, eps=1e-5):
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc ** 2).mean(-1, keepdims=True) + eps) * gamma + beta


def np_attention(x, p, prefix, heads, causal):
    n, t, c = x.shape
    w = p[f"{prefix}.q_weight"].shape[1]
    d = w // heads

    def proj(name):
        y = x.reshape(-1, c) @ p[f"{prefix}.{name}_weight"] + p[f"{prefix}.{name}_bias"]
        return y.reshape(n, t, heads, d).transpose(0, 2, 1, 3)
    scores = proj("q") @ proj("k").transpose(0, 1, 3, 2) / math.sqrt(d)
    if causal:
        scores = np.where(np.tri(t, dtype=bool), scores, -np.inf)
    e = np.exp(scores - scores.max(-1, keepdims=True))
    mixed = (e / e.sum(-1, keepdims=True)) @ proj("v")
    out = mixed.transpose(0, 2, 1, 3).reshape(n * t, w) @ p[f"{prefix}.out_weight"]
    out += p[f"{prefix}.out_bias"]
    return out.reshape(n, t, c)


def np_gelu_erf(x):
    return np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(x)


# ---- the small language model ------------------------------------------------------------------

def test_new_kinds_are_in_the_sequence_category():
    for kind in NEW_KINDS:
        assert LAYERS[kind].category == "Sequence", kind


def test_language_model_builds_runs_and_matches_analysis_and_numpy():
    doc = language_model()
    analysis = analyze(doc)
    assert not analysis.problems, [str(p) for p in analysis.problems]
    built = build(doc, training=False, batch=3)
    tokens, targets = next(built.load_dataset().batches(3, seed=0))
    assert tokens.shape == targets.shape == (3, T) and tokens.dtype == np.int64
    np.testing.assert_array_equal(tokens[:, 1:], targets[:, :-1])  # next-character targets
    params = parameter_values(built)
    feed = {**params, built.feeds["tokens"]: tokens, built.feeds["targets"]: targets}
    values = run_all(built, feed)
    for (node_id, port), value in values.items():  # every output: the shape analysis showed
        predicted = tuple(3 if d is None else d for d in analysis.nodes[node_id].out_shapes[port])
        assert value.shape == predicted, (node_id, port)
    assert analysis.nodes["attn"].out_shapes["out"] == (None, T, C)
    assert analysis.nodes["text"].out_shapes == {"tokens": (None, T), "targets": (None, T)}

    p = by_name(params)
    emb = p["emb.weight"][tokens]
    np.testing.assert_array_equal(values[("emb", "out")], emb)
    pos = emb + p["pos.weight"]
    np.testing.assert_allclose(values[("pos", "out")], pos, rtol=1e-14, atol=1e-15)
    norm = np_layer_norm(pos, p["norm.gamma"], p["norm.beta"])
    np.testing.assert_allclose(values[("norm", "out")], norm, rtol=1e-11, atol=1e-12)
    attn = np_attention(norm, p, "attn", H, causal=True)
    np.testing.assert_allclose(values[("attn", "out")], attn, rtol=1e-10, atol=1e-12)
    act = np_gelu_erf(attn)  # Loom's erf is the A-S approximation: |x| / 2 * 1.5e-7 at most
    np.testing.assert_allclose(values[("act", "out")], act, rtol=0,
                               atol=2e-7 * max(1, np.abs(attn).max()))
    logits = values[("act", "out")].reshape(-1, C) @ p["head.weight"] + p["head.bias"]
    logits = logits.reshape(3, T, V)
    np.testing.assert_allclose(values[("head", "out")], logits, rtol=1e-11, atol=1e-12)
    logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    loss = -np.take_along_axis(logp, targets[..., None], -1).mean()
    np.testing.assert_allclose(values[("loss", "loss")], loss, rtol=1e-12)
    np.testing.assert_allclose(values[("acc", "accuracy")], (logits.argmax(-1) == targets).mean(),
                               rtol=1e-15)


def test_language_model_gradients_reach_every_parameter():
    built = build(language_model(), training=True, batch=2)
    tokens, targets = next(built.load_dataset().batches(2, seed=1))
    params = parameter_values(built, seed=3)
    grads = core.gradients(built.loss, list(params))
    values = core.Executor(grads).run({**params, built.feeds["tokens"]: tokens,
                                       built.feeds["targets"]: targets})
    for p, g in zip(params, values):
        assert g.shape == tuple(p.attrs["shape"]), p.name
        assert np.isfinite(g).all() and np.abs(g).max() > 0, p.name
    table_grad = values[list(params).index(next(q for q in params if q.name == "emb.weight"))]
    unused = np.setdiff1d(np.arange(V), tokens)
    assert not table_grad[unused].any()  # rows of ids never read get exactly zero


# ---- counts -------------------------------------------------------------------------------------

def _single(kind, attrs, in_shape, port="in"):
    doc = GraphDocument("t")
    doc.add_node("Input", {"shape": list(in_shape)}, node_id="x")
    doc.add_node(kind, attrs, node_id="under_test")
    doc.add_edge(("x", "out"), ("under_test", port))
    return doc


def test_attention_parameter_and_macs_count():
    t, c, w = 8, 128, 64
    doc = _single("MultiHeadAttention", {"heads": 4, "width": w}, (t, c))
    info = analyze(doc).nodes["under_test"]
    assert info.params == 3 * (c * w + w) + w * c + c
    assert info.macs == 4 * t * c * w + 2 * t * t * w
    assert info.out_shapes["out"] == (None, t, c)
    assert show_shape(info.out_shapes["out"]) == "(N, 8, 128)"


def test_linear_on_a_sequence_counts():
    t, f, out = 7, 5, 3
    info = analyze(_single("Linear", {"out_features": out}, (t, f))).nodes["under_test"]
    assert info.params == f * out + out
    assert info.macs == t * f * out
    assert info.out_shapes["out"] == (None, t, out)


def test_linear_on_a_sequence_values():
    doc = _single("Linear", {"out_features": 3}, (4, 5))
    built = build(doc, training=False, batch=2)
    params = parameter_values(built)
    x = np.random.default_rng(1).standard_normal((2, 4, 5))
    values = run_all(built, {**params, built.outputs[("x", "out")]: x})
    p = by_name(params)
    np.testing.assert_allclose(values[("under_test", "out")],
                               x @ p["under_test.weight"] + p["under_test.bias"], rtol=1e-12)


def test_embedding_positional_and_norm_counts():
    doc = chain(("text", "TextDataset", {"context": T}, None),
                ("emb", "Embedding", {"vocab": V, "width": 16}, "ids"),
                ("pos", "PositionalEmbedding", {"length": 32}, "in"),
                ("norm", "LayerNorm", {}, "in"), ("act", "GELU", {}, "in"))
    nodes = analyze(doc).nodes
    assert nodes["emb"].params == V * 16 and nodes["emb"].out_shapes["out"] == (None, T, 16)
    # the table holds `length` rows although this sequence uses only T of them
    assert nodes["pos"].params == 32 * 16 and nodes["pos"].out_shapes["out"] == (None, T, 16)
    assert nodes["norm"].params == 2 * 16 and nodes["act"].params == 0
    assert nodes["text"].params == 0


# ---- attention's causal flag --------------------------------------------------------------------

def _attention_outputs(causal, later):
    """Outputs of one attention layer for x, and for x with position `later` changed."""
    doc = _single("MultiHeadAttention", {"heads": H, "width": W, "causal": causal}, (5, C))
    built = build(doc, training=False, batch=2)
    x = np.random.default_rng(5).standard_normal((2, 5, C))
    ex = core.Executor([built.outputs[("under_test", "out")]])
    feed = {**parameter_values(built), built.outputs[("x", "out")]: x}
    (before,) = ex.run(feed)
    changed = x.copy()
    changed[:, later] += 1.5
    (after,) = ex.run({**feed, built.outputs[("x", "out")]: changed})
    return before, after


def test_causal_attention_ignores_later_positions():
    before, after = _attention_outputs(causal=True, later=3)
    np.testing.assert_allclose(after[:, :3], before[:, :3], rtol=0, atol=1e-13)
    assert (np.abs(after[:, 3:] - before[:, 3:]).max(axis=-1) > 1e-3).all()  # later ones change


def test_attention_layer_gradients_match_central_differences():
    """The whole layer (projections, head reshapes, mask, softmax, output projection) towards
    its input and two of its weights, in float64."""
    doc = _single("MultiHeadAttention", {"heads": H, "width": W}, (4, C))
    built = build(doc, training=True, batch=2)
    x_node, out = built.outputs[("x", "out")], built.outputs[("under_test", "out")]
    params = parameter_values(built, seed=4)
    rng = np.random.default_rng(6)
    feed = {**params, x_node: rng.standard_normal((2, 4, C))}
    objective = core.reduce_sum(out * core.constant(rng.standard_normal((2, 4, C))))
    wrt = [x_node] + [p for p in params if p.name in ("under_test.k_weight", "under_test.out_bias")]
    analytic = core.Executor(core.gradients(objective, wrt)).run(feed)
    f = core.Executor([objective])
    for node, got in zip(wrt, analytic):
        x, numeric, eps = feed[node], np.zeros(feed[node].shape), 1e-6
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + eps
            hi = f.run(feed)[0]
            x[idx] = old - eps
            numeric[idx] = (hi - f.run(feed)[0]) / (2 * eps)
            x[idx] = old
        assert np.abs(numeric).max() > 1e-3
        np.testing.assert_allclose(got, numeric, rtol=1e-6, atol=1e-8, err_msg=node.name)


def test_non_causal_attention_sees_later_positions():
    before, after = _attention_outputs(causal=False, later=3)
    assert (np.abs(after[:, :3] - before[:, :3]).max(axis=-1) > 1e-3).all()


# ---- problems naming the node --------------------------------------------------------------------

def test_width_not_divisible_by_heads_is_a_problem_naming_the_node():
    doc = _single("MultiHeadAttention", {"heads": 3, "width": 8}, (T, C))
    msgs = [str(p) for p in analyze(doc).problems_of("under_test")]
    assert any("width 8 is not divisible by 3 heads" in m for m in msgs), msgs
    assert all(m.startswith("node under_test") for m in msgs)
    with pytest.raises(GraphError, match=r"node under_test \(MultiHeadAttention\): .*width 8 is "
                       r"not divisible by 3 heads"):
        build(doc, training=False, batch=2)


def test_positional_embedding_shorter_than_the_sequence_is_a_problem():
    doc = _single("PositionalEmbedding", {"length": 8}, (10, C))
    msgs = [str(p) for p in analyze(doc).problems_of("under_test")]
    assert any(m.startswith("node under_test") and "sequence of 10 positions is longer than "
               "length 8" in m for m in msgs), msgs
    with pytest.raises(GraphError, match="node under_test .*10 positions is longer than length 8"):
        build(doc, training=False, batch=2)


def test_positional_embedding_on_a_shorter_sequence_uses_the_first_rows():
    doc = _single("PositionalEmbedding", {"length": 8}, (3, C))
    built = build(doc, training=False, batch=2)
    params = parameter_values(built)
    x = np.random.default_rng(2).standard_normal((2, 3, C))
    values = run_all(built, {**params, built.outputs[("x", "out")]: x})
    table = by_name(params)["under_test.weight"]
    np.testing.assert_allclose(values[("under_test", "out")], x + table[:3], rtol=1e-15)


def test_an_embedding_smaller_than_the_texts_vocabulary_is_a_problem_naming_it():
    d = GraphDocument("t")
    d.add_node("TextDataset", {"context": 8}, node_id="text")
    d.add_node("Embedding", {"vocab": 10, "width": 6}, node_id="emb")
    d.add_node("Linear", {"out_features": 66}, node_id="head")
    d.add_node("SoftmaxCrossEntropy", {}, node_id="loss")
    d.add_edge(("text", "tokens"), ("emb", "ids"))
    d.add_edge(("emb", "out"), ("head", "in"))
    d.add_edge(("head", "out"), ("loss", "logits"))
    d.add_edge(("text", "targets"), ("loss", "labels"))
    problems = analyze(d).problems
    assert [(p.node_id, p.port) for p in problems] == [("emb", "ids")]
    assert "set vocab to 66" in problems[0].message
    d.set_attr("emb", "vocab", 66)
    assert not analyze(d).problems


def test_gather_with_float_ids_is_a_shape_error():
    table, ids = core.Variable("t"), core.Variable("i")
    with pytest.raises(core.ShapeError, match="ids must be integers"):
        core.Executor([core.gather(table, ids)]).run({table: np.ones((3, 2)), ids: np.zeros(2)})


def test_integer_ids_into_a_float_layer_are_a_problem_naming_the_port():
    d = GraphDocument("t")
    d.add_node("Input", {"shape": [8], "dtype": "int64"}, node_id="ids")
    d.add_node("Linear", {"out_features": 4}, node_id="dense")
    d.add_node("Embedding", {"vocab": 10, "width": 4}, node_id="emb")
    d.add_edge(("ids", "out"), ("dense", "in"))
    d.add_edge(("ids", "out"), ("emb", "ids"))
    problems = [p for p in analyze(d).problems if p.node_id is not None]
    assert [(p.node_id, p.port) for p in problems] == [("dense", "in")]
    assert "integer values from node ids" in problems[0].message
