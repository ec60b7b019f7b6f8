"""ONNX import (core.interop.onnx_import): small hand-built models per op family give what
onnxruntime gives, at a batch size other than the one the model declares; the axes
conventions of opsets 9/11, 13 and 18; a shape chain folded into one Reshape; refusals in
one line; import_file writing a graph that checks, builds and trains."""
import argparse
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import core
from core import graphfile
from core.cli import import_cmd
from core.interop.onnx_import import OnnxImportError, import_file, import_model, translate
from core.layers import analyze, build

RNG = np.random.default_rng(0)
BATCH = 3  # the models declare a symbolic batch "N" (or 1): Loom runs them at this one


def f32(*shape, positive=False):
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + 0.5 if positive else x


def init(name, value):
    return nh.from_array(np.asarray(value), name)


def ints(name, values):
    return nh.from_array(np.asarray(values, dtype=np.int64), name)


def make(nodes, inputs, outputs, inits=(), opset=13, check=True):
    """A model; inputs/outputs as {name: shape}, float32."""
    graph = h.make_graph(nodes, "m", [h.make_tensor_value_info(n, T.FLOAT, s) for n, s in inputs.items()],
                         [h.make_tensor_value_info(n, T.FLOAT, s) for n, s in outputs.items()],
                         list(inits))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8  # what every onnxruntime of the test extra reads
    if check:
        onnx.checker.check_model(model)
    return model


def run_loom(model, feeds):
    """The imported document built and run like training builds it (inference mode)."""
    imported = translate(model)
    batch = len(next(iter(feeds.values())))
    built = build(imported.doc, training=False, batch=batch)
    feed = {p: imported.weights[p.name] for p in built.parameters}
    for name, node_id in imported.inputs.items():
        feed[built.outputs[(node_id, "out")]] = feeds[name]
    outputs = [built.outputs[(w.node, w.port)] for w in imported.outputs.values()]
    return core.Executor(outputs).run(feed)


def assert_matches_ort(ort, model, feeds, rtol=1e-4, atol=1e-5):
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for got, want in zip(run_loom(model, feeds), expected):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)


def kinds(model):
    doc, _ = import_model(model)
    return [n.kind for n in doc.nodes.values()]


# ---- op families against onnxruntime ---------------------------------------------------------

def mlp():
    nodes = [h.make_node("MatMul", ["x", "w1"], ["h1"]), h.make_node("Add", ["h1", "b1"], ["h2"]),
             h.make_node("Relu", ["h2"], ["h3"]),
             h.make_node("Gemm", ["h3", "w2", "b2"], ["h4"], transB=1, alpha=0.5, beta=2.0),
             h.make_node("LogSoftmax", ["h4"], ["y"], axis=-1)]
    inits = [init("w1", f32(6, 5)), init("b1", f32(5)), init("w2", f32(4, 5)), init("b2", f32(4))]
    return make(nodes, {"x": ["N", 6]}, {"y": ["N", 4]}, inits), {"x": f32(BATCH, 6)}


def cnn():
    nodes = [h.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2], auto_pad="SAME_UPPER"),
             h.make_node("BatchNormalization", ["c", "s", "bb", "m", "v"], ["n"], epsilon=1e-3),
             h.make_node("Relu", ["n"], ["r"]),
             h.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             h.make_node("AveragePool", ["p"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 1, 1],
                         count_include_pad=1),
             h.make_node("LRN", ["a"], ["l"], size=3, alpha=0.01, beta=0.7, bias=1.5),
             h.make_node("GlobalAveragePool", ["l"], ["g"]),
             h.make_node("Flatten", ["g"], ["f"]),
             h.make_node("Gemm", ["f", "fc", "fb"], ["y"])]
    inits = [init("w", f32(4, 2, 3, 3)), init("b", f32(4)), init("s", f32(4, positive=True)),
             init("bb", f32(4)), init("m", f32(4)), init("v", f32(4, positive=True)),
             init("fc", f32(4, 5)), init("fb", f32(5))]
    return make(nodes, {"x": ["N", 2, 8, 8]}, {"y": ["N", 5]}, inits, opset=13), {"x": f32(BATCH, 2, 8, 8)}


def attention():
    """Layer norm, a projection, heads split by a Reshape and Transpose, scaled scores, softmax,
    and GELU written with Erf (what exporters produce)."""
    nodes = [h.make_node("LayerNormalization", ["x", "g", "be"], ["n"], axis=-1, epsilon=1e-5),
             h.make_node("MatMul", ["n", "wq"], ["q"]),
             h.make_node("Reshape", ["q", "heads"], ["qh"]),
             h.make_node("Transpose", ["qh"], ["qt"], perm=[0, 2, 1, 3]),
             h.make_node("Transpose", ["qh"], ["kt"], perm=[0, 2, 3, 1]),
             h.make_node("MatMul", ["qt", "kt"], ["s"]),
             h.make_node("Div", ["s", "scale"], ["ss"]),
             h.make_node("Softmax", ["ss"], ["p"], axis=-1),
             h.make_node("MatMul", ["p", "qt"], ["o"]),
             h.make_node("Div", ["o", "sqrt2"], ["o1"]), h.make_node("Erf", ["o1"], ["o2"]),
             h.make_node("Add", ["o2", "one"], ["o3"]), h.make_node("Mul", ["o", "o3"], ["o4"]),
             h.make_node("Mul", ["o4", "half"], ["o5"]),
             h.make_node("ReduceMean", ["o5"], ["y"], axes=[1, 3], keepdims=0)]
    inits = [init("g", f32(8)), init("be", f32(8)), init("wq", f32(8, 8)), ints("heads", [0, 0, 2, 4]),
             init("scale", np.float32(2.0)), init("sqrt2", np.float32(np.sqrt(2))),
             init("one", np.float32(1.0)), init("half", np.float32(0.5))]
    return make(nodes, {"x": ["N", 5, 8]}, {"y": ["N", 5]}, inits, opset=17), {"x": f32(BATCH, 5, 8)}


def elementwise():
    nodes = [h.make_node("Exp", ["x"], ["e"]), h.make_node("Log", ["e"], ["l"]),
             h.make_node("Neg", ["l"], ["n"]), h.make_node("Tanh", ["n"], ["t"]),
             h.make_node("Sigmoid", ["t"], ["s"]), h.make_node("Sqrt", ["s"], ["q"]),
             h.make_node("Sub", ["q", "c"], ["d"]), h.make_node("Pow", ["s", "p"], ["w"]),
             h.make_node("Pow", ["s", "two"], ["w2"]),
             h.make_node("Sum", ["d", "w", "w2"], ["u"]), h.make_node("Identity", ["u"], ["i"]),
             h.make_node("Dropout", ["i", "ratio"], ["y"])]
    inits = [init("c", f32(4)), init("p", f32(4)), init("two", np.float32(2)),
             init("ratio", np.float32(0.3))]
    return make(nodes, {"x": ["N", 4]}, {"y": ["N", 4]}, inits), {"x": f32(BATCH, 4)}


def shapes():
    """(N, 2, 4) through slices, concats, gathers and reshapes that move the batch axis into
    another one and back."""
    nodes = [h.make_node("Slice", ["x", "st", "en", "ax"], ["s"]),  # (N, 1, 4)
             h.make_node("Unsqueeze", ["s", "a1"], ["u"]), h.make_node("Squeeze", ["u", "a1"], ["q"]),
             h.make_node("Concat", ["q", "x", "q", "x"], ["c"], axis=1),  # (N, 6, 4)
             h.make_node("Gather", ["c", "idx"], ["gt"], axis=1),  # (N, 2, 2, 4)
             h.make_node("Transpose", ["gt"], ["t"], perm=[0, 2, 3, 1]),  # (N, 2, 4, 2)
             h.make_node("Flatten", ["t"], ["f"], axis=2),  # (2N, 8)
             h.make_node("Reshape", ["f", "rs"], ["r"]),  # (2N, 4, 2)
             h.make_node("ReduceSum", ["r", "a1"], ["rs1"], keepdims=0),  # (2N, 2)
             h.make_node("Reshape", ["rs1", "back"], ["b"]),  # (N, 4)
             h.make_node("ConstantOfShape", ["cs"], ["k"], value=h.make_tensor("v", T.FLOAT, [1], [0.25])),
             h.make_node("Constant", [], ["kc"], value_float=2.0),
             h.make_node("Mul", ["k", "kc"], ["k2"]), h.make_node("Add", ["b", "k2"], ["ad"]),
             h.make_node("Pad", ["ad", "pads"], ["y"], mode="constant")]  # (N, 7)
    inits = [ints("st", [1, -4]), ints("en", [3, 100]), ints("ax", [1, -1]), ints("a1", [1]),
             ints("idx", [[0, 2], [1, -1]]), ints("rs", [0, -1, 2]), ints("back", [-1, 4]),
             ints("cs", [1, 4]), ints("pads", [0, 1, 0, 2])]
    return make(nodes, {"x": ["N", 2, 4]}, {"y": ["N", 7]}, inits), {"x": f32(BATCH, 2, 4)}


FAMILIES = {"mlp": mlp, "cnn": cnn, "attention": attention, "elementwise": elementwise, "shapes": shapes}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_matches_onnxruntime(ort, family):
    model, feeds = FAMILIES[family]()
    assert_matches_ort(ort, model, feeds)


def test_layers_are_loom_kinds():
    """Weights become Loom's own layers, so the graph reads and trains like one drawn in Loom."""
    assert {"Linear", "ReLU", "Input"} <= set(kinds(mlp()[0]))
    assert {"Conv2D", "BatchNorm", "MaxPool2D", "AvgPool2D", "Flatten", "lrn", "pad"} <= set(kinds(cnn()[0]))
    assert {"LayerNorm", "Linear", "Softmax", "erf", "Reshape"} <= set(kinds(attention()[0]))
    doc, weights = import_model(cnn()[0])
    bn = next(n for n in doc.nodes.values() if n.kind == "BatchNorm")
    assert weights[f"{bn.id}.running_var"].shape == (4, 1, 1)  # Loom's (C, 1, 1)


def test_node_ids_come_from_onnx_names_made_safe_and_unique():
    nodes = [h.make_node("Relu", ["in.x"], ["a"], name="/model/act 1"),
             h.make_node("Relu", ["a"], ["b"], name="/model/act 1"),
             h.make_node("Relu", ["b"], ["out:0"])]  # no name: its output's
    doc, _ = import_model(make(nodes, {"in.x": ["N", 3]}, {"out:0": ["N", 3]}))
    assert list(doc.nodes) == ["in_x", "model_act_1", "model_act_1_2", "out_0"]
    assert [(e.src[0], e.dst[0]) for e in doc.edges] == [
        ("in_x", "model_act_1"), ("model_act_1", "model_act_1_2"), ("model_act_1_2", "out_0")]


# ---- opset conventions ------------------------------------------------------------------------

def axes_model(opset):
    """The same computation written in each opset's convention: axes as attributes before 13
    (ReduceMean: before 18), inputs from then on; Slice's attributes before 10; Softmax's
    axis=1 means "every axis from 1 on" before 13 and "axis 1" from 13 on."""
    inits, nodes = [ints("ax1", [1]), ints("ax2", [-1])], []

    def axes(op, inp, out, name, since, **kw):
        if opset < since:
            return h.make_node(op, [inp], [out], axes=[-1 if name == "ax2" else 1], **kw)
        return h.make_node(op, [inp, name], [out], **kw)
    if opset < 10:
        nodes.append(h.make_node("Slice", ["x"], ["s"], starts=[1], ends=[3], axes=[2]))
    else:
        inits += [ints("st", [1]), ints("en", [3]), ints("sa", [2])]
        nodes.append(h.make_node("Slice", ["x", "st", "en", "sa"], ["s"]))
    nodes += [h.make_node("Softmax", ["s"], ["sm"], axis=1),
              axes("ReduceSum", "sm", "r1", "ax2", 13, keepdims=1),
              axes("ReduceMean", "r1", "r2", "ax1", 18, keepdims=1),
              axes("Squeeze", "r2", "q", "ax2", 13), axes("Unsqueeze", "q", "y", "ax1", 13)]
    return make(nodes, {"x": ["N", 3, 4]}, {"y": ["N", 1, 1]}, inits, opset=opset)


@pytest.mark.parametrize("opset", [9, 11, 13, 18])
def test_axes_conventions_of_each_opset(ort, opset):
    assert_matches_ort(ort, axes_model(opset), {"x": f32(BATCH, 3, 4)})


def test_softmax_before_13_covers_every_axis_from_axis_on():
    x = f32(2, 3, 4)
    out = [run_loom(axes_model(o), {"x": x})[0] for o in (11, 13)]
    assert not np.allclose(out[0], out[1])  # the two conventions differ, and each matches ort


# ---- constant folding ---------------------------------------------------------------------------

def shape_chain(batch="N"):
    """Shape -> Gather -> Unsqueeze -> Concat -> Reshape: how exporters flatten (batch, -1)."""
    nodes = [h.make_node("Shape", ["x"], ["sh"]), h.make_node("Gather", ["sh", "zero"], ["n"], axis=0),
             h.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
             h.make_node("Concat", ["n1", "rest"], ["shape"], axis=0),
             h.make_node("Reshape", ["x", "shape"], ["y"])]
    inits = [ints("zero", 0), ints("ax", [0]), ints("rest", [-1])]
    return make(nodes, {"x": [batch, 2, 3, 4]}, {"y": [batch, 24]}, inits)


def test_shape_chain_folds_into_one_flatten(ort):
    doc, weights = import_model(shape_chain())
    assert [(n.kind, n.attrs) for n in doc.nodes.values()] == [
        ("Input", {"shape": [2, 3, 4]}), ("Flatten", {})]
    assert not weights
    for batch in (1, 7):  # the folded shape holds the batch axis, not the size seen at import
        assert_matches_ort(ort, shape_chain(), {"x": f32(batch, 2, 3, 4)})


def test_fixed_batch_in_literal_shapes_is_the_batch_axis():
    """A model exported with batch 1 names 1 in its reshape targets: that entry is the batch."""
    nodes = [h.make_node("Reshape", ["x", "shape"], ["y"])]
    model = make(nodes, {"x": [1, 2, 3]}, {"y": [1, 6]}, [ints("shape", [1, 6])])
    x = f32(4, 2, 3)
    np.testing.assert_array_equal(run_loom(model, {"x": x})[0], x.reshape(4, 6))


# ---- refusals: one line naming the op type, the node and the reason --------------------------------

def refusal(model):
    with pytest.raises(OnnxImportError) as info:
        import_model(model)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def one_node(op, inputs, inits=(), shape=("N", 2, 6, 6), **attrs):
    node = h.make_node(op, ["x", *inputs], ["y"], name="n1", **attrs)
    return make([node], {"x": list(shape)}, {"y": None}, inits, check=False)


def test_unsupported_op_is_named():
    assert refusal(one_node("Hardmax", [])).startswith("Hardmax node 'n1': Loom has no Hardmax")


def test_grouped_and_dilated_convolutions_are_refused():
    w = [init("w", f32(4, 1, 3, 3))]
    assert refusal(one_node("Conv", ["w"], w, group=2)) == \
        "Conv node 'n1': group 2: Loom's convolution has no groups"
    w = [init("w", f32(4, 2, 3, 3))]
    assert "dilations [2, 2]" in refusal(one_node("Conv", ["w"], w, dilations=[2, 2]))


def test_inputs_loom_cannot_feed_are_refused():
    scalar = make([h.make_node("Relu", ["x"], ["y"])], {"x": []}, {"y": []})
    assert refusal(scalar).startswith("graph input 'x': a scalar")
    graph = h.make_graph([h.make_node("Cast", ["ids"], ["y"], to=T.FLOAT)], "m",
                         [h.make_tensor_value_info("ids", T.INT64, ["N", 4])],
                         [h.make_tensor_value_info("y", T.FLOAT, ["N", 4])])
    assert "int64" in refusal(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)]))


def test_a_tensor_with_missing_bytes_is_refused():
    w = init("w", f32(4, 2, 3, 3))
    w.raw_data = w.raw_data[:-4]
    assert "holds 284 bytes" in refusal(one_node("Conv", ["w"], [w]))


# ---- files: safety ---------------------------------------------------------------------------------

def save_external(tmp_path, location, data=b"\0" * 16):
    """A model whose weight lies in an external file named `location`."""
    folder = tmp_path / "model"
    folder.mkdir()
    w = init("w", np.zeros(4, np.float32))
    w.ClearField("raw_data")
    w.data_location = T.EXTERNAL
    w.external_data.add(key="location", value=location)
    w.external_data.add(key="length", value="16")
    model = make([h.make_node("Add", ["x", "w"], ["y"], name="add")], {"x": ["N", 4]}, {"y": ["N", 4]},
                 [w], check=False)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    (tmp_path / "outside.bin").write_bytes(data)
    return folder / "model.onnx"


@pytest.mark.parametrize("location", ["../outside.bin", "sub/../../outside.bin", "ABSOLUTE", "link.bin"])
def test_external_data_must_stay_in_the_models_folder(tmp_path, location):
    if location == "ABSOLUTE":
        location = str(tmp_path / "outside.bin")
    path = save_external(tmp_path, location)
    if location == "link.bin":
        os.symlink(tmp_path / "outside.bin", path.parent / "link.bin")
    with pytest.raises(OnnxImportError, match="model's folder"):
        import_file(path)
    assert sorted(p.name for p in path.parent.iterdir()) == sorted(
        ["model.onnx"] + (["link.bin"] if location == "link.bin" else []))


def test_external_data_inside_the_folder_is_read_and_checked(tmp_path):
    path = save_external(tmp_path, "weights.bin")
    (path.parent / "weights.bin").write_bytes(np.arange(4, dtype=np.float32).tobytes())
    doc, weights = import_model(path)
    np.testing.assert_array_equal(weights["w.value"], np.arange(4, dtype=np.float32))
    (path.parent / "weights.bin").write_bytes(b"\0" * 8)  # shorter than the tensor
    with pytest.raises(OnnxImportError, match="needs bytes 0 to 16 of weights.bin, which has 8"):
        import_model(path)


@pytest.mark.parametrize("cut", [0.5, 0.97])
def test_truncated_or_corrupt_file_is_one_error_naming_it(tmp_path, cut):
    path = tmp_path / "m.onnx"
    data = cnn()[0].SerializeToString()
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(OnnxImportError, match=str(path.name)):
        import_file(path)
    path.write_bytes(os.urandom(300))
    with pytest.raises(OnnxImportError, match=str(path.name)):
        import_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # nothing written


def test_damaged_files_are_refused_in_one_line_or_imported(tmp_path):
    """Random bytes changed in a valid model: either it still imports, or one OnnxImportError
    of one line (names with control characters escaped), never another exception."""
    rng = np.random.default_rng(1)
    data = np.frombuffer(cnn()[0].SerializeToString(), np.uint8)
    path = tmp_path / "m.onnx"
    for _ in range(60):
        damaged = data.copy()
        damaged[rng.integers(0, len(data), 4)] = rng.integers(0, 256, 4)
        path.write_bytes(damaged[:rng.integers(len(data) // 2, len(data) + 1)].tobytes())
        try:
            import_model(path)
        except OnnxImportError as exc:
            assert "\n" not in str(exc) and str(exc)


def test_not_a_regular_file_is_refused(tmp_path):
    with pytest.raises(OnnxImportError, match="not a regular file"):
        import_file(tmp_path)
    with pytest.raises(OnnxImportError, match="no such file"):
        import_file(tmp_path / "missing.onnx")


# ---- import_file, the CLI command, and training the result ---------------------------------------

def test_import_file_writes_a_graph_that_checks_and_builds(tmp_path):
    path = tmp_path / "net.onnx"
    onnx.save(cnn()[0], path)
    out = import_file(path)
    assert out == tmp_path / "net.loom.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.loom.json", "net.onnx", "net.weights.npz"]
    doc = graphfile.load(out)
    assert doc.weights == "net.weights.npz"
    assert [p.message for p in analyze(doc).problems] == [
        "the graph has no loss node (add SoftmaxCrossEntropy or MSELoss)"]
    built = build(doc, training=True, batch=2)
    stored = np.load(tmp_path / "net.weights.npz")
    assert set(stored.files) == {p.name for p in built.parameters}
    (tmp_path / "elsewhere").mkdir()
    assert import_file(path, tmp_path / "elsewhere") == tmp_path / "elsewhere" / "net.loom.json"
    assert graphfile.load(tmp_path / "elsewhere" / "net.loom.json").weights == "net.weights.npz"


def test_cli_import_command(tmp_path, capsys):
    path = tmp_path / "net.onnx"
    onnx.save(mlp()[0], path)
    parser = argparse.ArgumentParser()
    import_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["import", str(path), "-o", str(tmp_path / "out" / "mine.loom.json")])
    (tmp_path / "out").mkdir()
    assert import_cmd.run(args) == 0
    printed = capsys.readouterr().out
    assert "mine.loom.json" in printed and "mine.weights.npz" in printed and "nodes" in printed
    assert (tmp_path / "out" / "mine.weights.npz").exists()


def test_an_imported_classifier_trains_from_its_weights(tmp_path):
    """The digits images through an imported Flatten + Gemm: replace its Input with the Dataset,
    attach a loss, and the trainer starts from the model's weights."""
    nodes = [h.make_node("Flatten", ["x"], ["f"]), h.make_node("Gemm", ["f", "w", "b"], ["logits"], name="fc")]
    model = make(nodes, {"x": ["N", 1, 8, 8]}, {"logits": ["N", 10]},
                 [init("w", f32(64, 10) * 0.1), init("b", np.zeros(10, np.float32))])
    onnx.save(model, tmp_path / "clf.onnx")
    doc = graphfile.load(import_file(tmp_path / "clf.onnx"))
    doc.add_node("Dataset", {"name": "digits"}, node_id="data")
    for edge in [e for e in doc.edges if e.src[0] == "x"]:
        doc.remove_edge(edge)
        doc.add_edge(("data", "images"), edge.dst)
    doc.remove_node("x")
    doc.add_node("SoftmaxCrossEntropy", node_id="loss")
    doc.add_edge(("logits", "out"), ("loss", "logits"))  # the Gemm's node: named after its output
    doc.add_edge(("data", "labels"), ("loss", "labels"))
    doc.set_training({"epochs": 1, "steps_per_epoch": 5, "lr": 0.1})
    assert not analyze(doc).problems
    from core.train import Trainer
    trainer = Trainer(doc, tmp_path / "run", {})
    np.testing.assert_allclose(trainer.backend.to_numpy(trainer.params["logits.weight"]),
                               nh.to_array(model.graph.initializer[0]))
    summary = trainer.run()
    assert summary["status"] == "completed" and summary["steps"] == 5 and np.isfinite(summary["loss"])
    moved = trainer.backend.to_numpy(trainer.params["logits.weight"])
    assert not np.allclose(moved, nh.to_array(model.graph.initializer[0]))  # it trained
