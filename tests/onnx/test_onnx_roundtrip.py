"""Loom -> ONNX -> Loom: every bundled example exported and imported again gives, through
`main.py infer`, the outputs of the original graph under the same names (the importer names
the node of each graph output after it); token ids import as an int64 Input feeding an
Embedding; a Linear or Conv2D written as MatMul/Conv then Add comes back as one layer. Also
the forms published CNNs use (rectangular kernels, Concats of many inputs that repeat earlier
ones) against onnxruntime."""
from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h

from core import graphfile
from core.blocks import flatten
from core.cli import infer_cmd
from core.graphfile import load
from core.inference import inference_graph
from core.interop.onnx_export import export_file, export_model
from core.interop.onnx_import import import_model
from tests.onnx.test_onnx_export import (EXAMPLES, GPT, IMAGE_NODES, NAMED, assert_close,
                                         build_doc, cli_args, perturbed_checkpoint,
                                         random_inputs)
from tests.onnx.test_onnx_import import assert_matches_ort, f32, init, make, refusal

BATCH = 3


def infer(path, inputs, out, *extra):
    """`main.py infer` in process: {output name: array} as written to OUT.npz."""
    argv = ["infer", path, "--input", inputs, "--output", out, *extra]
    assert infer_cmd.run(cli_args(*argv)) == 0
    with np.load(out, allow_pickle=False) as saved:
        return {k: saved[k] for k in saved.files}


def round_trip(doc, tmp_path, ckpt=None):
    """(outputs of the original graph, outputs of its ONNX export imported) for the same
    inputs, both through `main.py infer`."""
    original, model = tmp_path / "original.loom.json", tmp_path / "model.onnx"
    inputs = tmp_path / "in.npz"
    graphfile.save(doc, original)
    export_file(doc, model, ckpt)
    np.savez(inputs, **random_inputs(doc, BATCH))
    want = infer(original, inputs, tmp_path / "want.npz", *(["--checkpoint", ckpt] if ckpt else []))
    return want, infer(model, inputs, tmp_path / "got.npz")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_example_round_trip_keeps_output_names_and_values(path, tmp_path):
    want, got = round_trip(load(path), tmp_path)
    assert list(got) == list(want) == ["logits"]
    assert_close(got, want)


def test_several_outputs_keep_their_names(tmp_path):
    """A graph without a loss: its unread outputs, an argmax's int64 ids among them."""
    doc = build_doc(IMAGE_NODES)
    want, got = round_trip(doc, tmp_path, perturbed_checkpoint(doc, tmp_path / "c.npz"))
    assert list(got) == list(want) == ["probs", "logp", "total", "best"]
    assert got["best"].dtype == np.int64
    assert_close(got, want)


def test_token_ids_import_as_an_int64_input_feeding_an_embedding():
    doc, weights = import_model(export_model(load(GPT)))
    tokens = next(n for n in doc.nodes.values() if n.kind == "Input")
    assert tokens.id == "tokens" and tokens.attrs == {"shape": [64], "dtype": "int64"}
    embedding = [e.dst for e in doc.edges if e.src == ("tokens", "out")]
    assert [doc.nodes[node].kind for node, _ in embedding] == ["Embedding"]
    assert inference_graph(doc).input_dtype("tokens") == np.int64


def test_an_output_whose_name_is_taken_keeps_its_node_id():
    nodes = [h.make_node("Relu", ["x"], ["h"], name="y"), h.make_node("Relu", ["h"], ["y"])]
    doc, _ = import_model(make(nodes, {"x": ["N", 3]}, {"y": ["N", 3]}))
    assert list(doc.nodes) == ["x", "y", "y_2"]
    assert list(inference_graph(doc).outputs) == ["y_2"]


def test_an_output_that_is_an_input_keeps_the_inputs_name():
    doc, _ = import_model(make([h.make_node("Identity", ["x"], ["y"])], {"x": ["N", 3]},
                               {"y": ["N", 3]}))
    assert list(doc.nodes) == ["x"]


# ---- integer inputs: what they may feed ---------------------------------------------------------

def ids_model(nodes, out_type=T.FLOAT, inits=()):
    graph = h.make_graph(nodes, "m", [h.make_tensor_value_info("ids", T.INT64, ["N", 4])],
                         [h.make_tensor_value_info("y", out_type, None)], list(inits))
    return h.make_model(graph, opset_imports=[h.make_opsetid("", 13)])


def test_ids_reshaped_then_looked_up_match_onnxruntime(ort):
    nodes = [h.make_node("Reshape", ["ids", "shape"], ["r"]),
             h.make_node("Gather", ["table", "r"], ["y"])]
    inits = [init("shape", np.array([-1, 2, 2], np.int64)), init("table", f32(7, 5))]
    model = ids_model(nodes, inits=inits)
    ids = np.random.default_rng(1).integers(0, 7, (BATCH, 4))
    assert_matches_ort(ort, model, {"ids": ids})
    kinds = {n.kind for n in import_model(model)[0].nodes.values()}
    assert {"Input", "Reshape", "Embedding"} <= kinds


def test_ids_are_refused_where_they_would_be_computed_with():
    cast = ids_model([h.make_node("Cast", ["ids"], ["y"], to=T.FLOAT)])
    assert refusal(cast) == ("Cast node 'y': a cast from int64 to float32: Loom has no cast; it "
                             "computes in floating point and takes integers only as ids")
    relu = ids_model([h.make_node("Relu", ["ids"], ["y"])], T.INT64)
    assert refusal(relu).startswith("Relu node 'y': 'ids' holds int64 values (ids): Loom takes "
                                    "integers only as ids to look up")
    flags = h.make_graph([h.make_node("Not", ["b"], ["y"])], "m",
                         [h.make_tensor_value_info("b", T.BOOL, ["N", 4])],
                         [h.make_tensor_value_info("y", T.BOOL, None)])
    assert "bool values" in refusal(h.make_model(flags, opset_imports=[h.make_opsetid("", 13)]))


# ---- forms published CNNs use ------------------------------------------------------------------

def test_rectangular_kernels_match_onnxruntime(ort):
    """Inception's 1x7 and 7x1 convolutions, padded (0, 3) and (3, 0)."""
    nodes = [h.make_node("Conv", ["x", "w1", "b1"], ["a"], pads=[0, 2, 0, 2]),
             h.make_node("Conv", ["a", "w2"], ["y"], pads=[1, 0, 1, 0], strides=[2, 2])]
    inits = [init("w1", f32(4, 2, 1, 5)), init("b1", f32(4)), init("w2", f32(3, 4, 3, 1))]
    model = make(nodes, {"x": ["N", 2, 7, 7]}, {"y": ["N", 3, 4, 4]}, inits)
    assert_matches_ort(ort, model, {"x": f32(BATCH, 2, 7, 7)})
    kinds = [n.kind for n in import_model(model)[0].nodes.values()]
    assert kinds.count("conv2d") == 2 and "Conv2D" not in kinds


def dense_block(layers=5):
    """DenseNet's pattern: each layer joins the block input and every earlier layer's output."""
    nodes, features = [], ["x"]
    for i in range(layers):
        nodes += [h.make_node("Concat", list(features), [f"cat{i}"], axis=1),
                  h.make_node("Conv", [f"cat{i}", f"w{i}"], [f"f{i}"], pads=[1, 1, 1, 1])]
        features.append(f"f{i}")
    nodes.append(h.make_node("Concat", list(features), ["y"], axis=1))
    inits = [init(f"w{i}", f32(2, 2 + 2 * i, 3, 3) * 0.3) for i in range(layers)]
    return make(nodes, {"x": ["N", 2, 5, 5]}, {"y": ["N", 2 + 2 * layers, 5, 5]}, inits)


def test_concats_of_many_inputs_reuse_earlier_ones(ort):
    model = dense_block()
    assert_matches_ort(ort, model, {"x": f32(BATCH, 2, 5, 5)})
    kinds = [n.kind for n in import_model(model)[0].nodes.values()]
    assert kinds.count("Concat") == 5  # one per join after the first (a single input)


def test_a_long_concat_is_a_chain_of_three_way_joins(ort):
    nodes = [h.make_node("Relu", ["x"], [f"r{i}"]) for i in range(7)]
    nodes.append(h.make_node("Concat", [f"r{i}" for i in range(7)], ["y"], axis=-1))
    model = make(nodes, {"x": ["N", 2]}, {"y": ["N", 14]})
    assert_matches_ort(ort, model, {"x": f32(BATCH, 2)})
    assert [n.kind for n in import_model(model)[0].nodes.values()].count("Concat") == 3


def test_the_bundled_round_trip_checks_what_onnx_checks(tmp_path):
    """The exported model of an imported one is still a valid ONNX model."""
    doc, _ = import_model(export_model(load(GPT)))
    onnx.checker.check_model(export_model(doc), full_check=True)


@pytest.mark.parametrize("name", ["digits_mlp", "mnist_cnn"])
def test_a_round_trip_gives_back_the_layers(name):
    """Loom writes a Linear or Conv2D as MatMul/Conv then Add, a Flatten as Reshape: they
    come back as the layers they were (training-only nodes aside, an Input for the data);
    blocks come back as their nodes (ONNX has no blocks)."""
    original = flatten(load(NAMED[name]))
    doc, _ = import_model(export_model(original))
    training = {"Dataset", "SoftmaxCrossEntropy", "Accuracy"}
    kept = Counter(n.kind for n in original.nodes.values() if n.kind not in training)
    assert Counter(n.kind for n in doc.nodes.values()) == kept + Counter(["Input"])


def biased(add_shape, op, shared):
    """(x -> MatMul or Conv -> Add(a constant of add_shape), a batch of x); with `shared`,
    the product is a graph output too (so the Add cannot be folded into the layer)."""
    conv = op == "Conv"
    w = init("w", f32(3, 2, 3, 3) if conv else f32(4, 3))
    sample, out = ([2, 5, 5], [3, 3, 3]) if conv else ([4], [3])
    nodes = [h.make_node(op, ["x", "w"], ["p"]), h.make_node("Add", ["c", "p"], ["y"])]
    outputs = {"y": ["N", *out], **({"p": ["N", *out]} if shared else {})}
    model = make(nodes, {"x": ["N", *sample]}, outputs, [w, init("c", f32(*add_shape))])
    return model, {"x": f32(BATCH, *sample)}


@pytest.mark.parametrize("add_shape, op, shared, adds", [
    ((3,), "MatMul", False, 0), ((1, 3), "MatMul", False, 0), ((3,), "MatMul", True, 1),
    ((), "MatMul", False, 0), ((3, 1, 1), "Conv", False, 0),
    ((1, 3, 1, 1), "Conv", False, 0), ((3, 3, 3), "Conv", False, 1)], ids=[
    "row", "row-2d", "product-used-twice", "scalar", "channel", "channel-4d", "per-pixel"])
def test_a_bias_added_after_a_layer_joins_it_where_it_is_one(ort, add_shape, op, shared, adds):
    model, feeds = biased(add_shape, op, shared)
    assert_matches_ort(ort, model, feeds)
    kinds = Counter(n.kind for n in import_model(model)[0].nodes.values())
    assert kinds["Linear" if op == "MatMul" else "Conv2D"] == 1
    assert kinds["Add"] + kinds["add"] == adds
