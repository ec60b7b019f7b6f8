"""ONNX export (`core.interop.onnx_export`) and batch inference (`main.py export` / `infer`).

Every bundled example, trained a couple of steps, is exported, passes ONNX's full checker,
and gives in onnxruntime what Loom's own inference gives, at two batch sizes (the batch is
symbolic) and with the checkpoint's weights. A hand-built graph covers the ops the examples
do not use (batch norm, pools with padding, where, gather, power, reductions...)."""
import argparse
import importlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

from core import checkpoint, graphfile
from core.cli import export_cmd, infer_cmd
from core.document import GraphDocument
from core.errors import LoomError
from core.graphfile import load
from core.interop import onnx_export
from core.inference import InferenceError, inference_graph, parameter_values
from core.interop.onnx_export import ExportError, export_model
from core.layers import LAYERS
from core.layers.builder import DISPLAY_BATCH
from core.ops import OPS
from core.settings import training_config
from core.train import Trainer
from tests.cli.conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "resources" / "examples").glob("*.loom.json"))
NAMED = {p.name.split(".")[0]: p for p in EXAMPLES}
LOGREG, MLP, CNN, GPT = (NAMED[n] for n in ("digits_logreg", "digits_mlp", "mnist_cnn",
                                            "shakespeare_char_gpt"))
TOLERANCE = 1e-5  # max abs difference, relative to the outputs' scale (float32)
# a couple of steps: enough for weights that differ from the initial ones
SHORT_RUN = {"epochs": 1, "steps_per_epoch": 2, "sample_chars": 0, "batch_size": 8}
# the text example's evaluation covers a small validation part only
SHORT_TEXT = {"val_fraction": 0.01}


def ort_session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def ort_outputs(model, feed) -> dict:
    session = ort_session(model)
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


def loom_outputs(doc, feed, ckpt=None) -> dict:
    graph = inference_graph(doc)
    params = parameter_values(doc, graph.built, ckpt)
    return infer_cmd.run_batches(graph, params, feed, "numpy", 1 << 20)


def assert_close(got: dict, want: dict) -> float:
    """Same names and shapes, values within TOLERANCE of the scale; returns the largest
    relative difference."""
    assert set(got) == set(want)
    worst = 0.0
    for name, value in want.items():
        assert got[name].shape == value.shape, name
        with np.errstate(invalid="ignore"):  # equal infinities count as equal
            gap = np.where(got[name] == value, 0, np.abs(got[name] - value))
        scale = np.abs(value[np.isfinite(value)]).max(initial=1.0)
        diff = float(gap.max()) / float(scale)
        assert diff <= TOLERANCE, (name, diff)
        worst = max(worst, diff)
    return worst


# ---- the bundled examples --------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """example name -> (doc, checkpoint path, validation inputs): each trained two steps,
    once per module."""
    cache = {}

    def get(path):
        if path.name not in cache:
            doc = load(path)
            out = tmp_path_factory.mktemp(path.name.split(".")[0])
            overrides = {**SHORT_RUN, **(SHORT_TEXT if "gpt" in path.name else {})}
            trainer = Trainer(doc, out, overrides)
            trainer.run()
            cache[path.name] = (doc, trainer.checkpoint_path, validation_batch(doc, 12))
        return cache[path.name]
    return get


def validation_batch(doc, n) -> dict:
    """{input name: n validation samples} from the graph's own dataset."""
    built = inference_graph(doc).built
    cfg = training_config(doc)
    _, val = built.load_dataset().split(cfg["val_fraction"], seed=cfg["seed"])
    x, _ = next(val.batches(n, shuffle=False))
    name = next(iter(inference_graph(doc).inputs))
    return {name: x}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_example_exports_and_matches_loom(path, trained):
    doc, ckpt, feed = trained(path)
    model = export_model(doc, ckpt)
    onnx.checker.check_model(model, full_check=True)
    assert model.opset_import[0].version == 17
    want = loom_outputs(doc, feed, ckpt)
    for n in (12, 5):  # two batch sizes through the same model: the batch is symbolic
        part = {k: v[:n] for k, v in feed.items()}
        diff = assert_close(ort_outputs(model, part), {k: v[:n] for k, v in want.items()})
        print(f"{path.name}: batch {n}: max difference {diff:.2e}")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name.split(".")[0])
def test_example_batch_axis_is_symbolic(path):
    model = export_model(load(path))
    for value in [*model.graph.input, *model.graph.output]:
        assert value.type.tensor_type.shape.dim[0].dim_param == onnx_export.BATCH_DIM
    for init in model.graph.initializer:  # no shape constant holds the shape-inference batch
        if init.data_type == onnx.TensorProto.INT64:
            values = onnx.numpy_helper.to_array(init).ravel()
            assert not np.any((values % DISPLAY_BATCH == 0) & (values != 0)), init.name


def test_the_checkpoint_weights_are_used(trained):
    doc, ckpt, feed = trained(MLP)
    initial = ort_outputs(export_model(doc), feed)
    trained_out = ort_outputs(export_model(doc, ckpt), feed)
    assert_close(initial, loom_outputs(doc, feed))
    assert_close(trained_out, loom_outputs(doc, feed, ckpt))
    assert np.abs(initial["logits"] - trained_out["logits"]).max() > 1e-4


def test_a_checkpoint_of_another_graph_is_refused(trained):
    _, other, _ = trained(LOGREG)
    with pytest.raises(InferenceError, match=r"checkpoint.npz: no value for parameter param/linear2.bias"):
        export_model(load(MLP), other)
    _, ckpt, _ = trained(MLP)
    narrower = load(MLP)
    narrower.set_attr("linear1", "out_features", 32)
    with pytest.raises(InferenceError, match=r"param/linear1.weight: shape \(64, 64\), the "
                                          r"graph's parameter is \(64, 32\)"):
        export_model(narrower, ckpt)


def test_a_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(InferenceError, match=r"nothing.npz: no such checkpoint file"):
        export_model(load(LOGREG), tmp_path / "nothing.npz")


def test_a_regression_graph_exports_its_prediction():
    doc = build_doc([("x", "Input", {"shape": [4]}, []), ("t", "Input", {"shape": [2]}, []),
                     ("fc", "Linear", {"out_features": 2}, ["x.in"]),
                     ("loss", "MSELoss", {}, ["fc.pred", "t.target"])])
    graph = inference_graph(doc)
    assert list(graph.outputs) == ["pred"] and list(graph.inputs) == ["x"]
    feed = random_inputs(doc, 3)
    assert_close(ort_outputs(export_model(doc), feed), loom_outputs(doc, feed))


def test_an_op_without_a_rule_names_op_and_node(monkeypatch):
    monkeypatch.delitem(onnx_export.RULES, "relu")
    with pytest.raises(ExportError, match=r"node relu1: op 'relu' has no ONNX export rule"):
        export_model(load(MLP))


def test_opsets_below_17_are_refused():
    with pytest.raises(ExportError, match="opset 16 is not supported"):
        export_model(load(LOGREG), opset=16)


def test_export_file_writes_the_checked_model(tmp_path):
    out = tmp_path / "m.onnx"
    model = onnx_export.export_file(load(LOGREG), out)
    assert onnx.load(out) == model
    assert not list(tmp_path.glob(".*.tmp"))


# ---- every op, on a hand-built graph -----------------------------------------------------------

# (id, kind, attrs, inputs): an input "src.port" wires src's "out" port, "src:out_port.port"
# another output port, into this node's input port
IMAGE_NODES = [
    ("x", "Input", {"shape": [3, 8, 8]}, []),
    ("conv", "Conv2D", {"out_channels": 4, "kernel": 3, "stride": 2, "padding": 1}, ["x.in"]),
    ("bn", "BatchNorm", {}, ["conv.in"]),
    ("relu", "ReLU", {}, ["bn.in"]),
    ("drop", "Dropout", {"rate": 0.3}, ["relu.in"]),
    ("avg", "AvgPool2D", {"kernel": 2, "stride": 1, "padding": 1}, ["drop.in"]),
    ("pool", "MaxPool2D", {"kernel": 2, "stride": 2, "padding": 1}, ["avg.in"]),
    ("flat", "Flatten", {}, ["pool.in"]),
    ("fc", "Linear", {"out_features": 6}, ["flat.in"]),
    ("bn1d", "BatchNorm", {}, ["fc.in"]),
    ("probs", "Softmax", {}, ["bn1d.in"]),
    ("logp", "log_softmax", {}, ["bn1d.x"]),
    ("total", "reduce_sum", {"axis": 1, "keepdims": True}, ["fc.x"]),
    ("best", "argmax", {}, ["fc.x"]),
]
VECTOR_NODES = [
    ("v", "Input", {"shape": [5]}, []),
    ("w", "Parameter", {"shape": [5, 5]}, []),
    ("mm", "matmul", {"trans_B": True}, ["v.a", "w.b"]),
    ("s", "sigmoid", {}, ["mm.x"]),
    ("cube", "power", {"p": 3.0}, ["s.x"]),
    ("square", "power", {"p": 2.0}, ["s.x"]),
    ("root", "sqrt", {}, ["s.x"]),
    ("ratio", "div", {}, ["cube.a", "root.b"]),
    ("e", "exp", {}, ["ratio.x"]),
    ("l", "log", {}, ["e.x"]),
    ("n", "neg", {}, ["l.x"]),
    ("d", "sub", {}, ["n.a", "square.b"]),
    ("m", "mul", {}, ["d.a", "s.b"]),
    ("row", "Parameter", {"shape": [5], "init": "normal"}, []),
    ("wide", "broadcast_to", {"shape": [1, 5]}, ["row.x"]),
    ("plus", "add", {}, ["m.a", "wide.b"]),
    ("flip", "transpose", {}, ["plus.x"]),
    ("back", "transpose", {}, ["flip.x"]),
    ("th", "tanh", {}, ["back.x"]),
    ("pick", "where", {}, ["v.cond", "th.a", "s.b"]),
    ("join", "concat", {"axis": 1}, ["pick.a", "s.b"]),
    ("cut", "slice", {"begin": [0, 2], "end": [1 << 40, 9]}, ["join.x"]),
    ("mean", "reduce_mean", {"axis": 1, "keepdims": True}, ["cut.x"]),
    ("centred", "sub", {}, ["cut.a", "mean.b"]),
    ("gamma", "Parameter", {"shape": [7], "init": "ones"}, []),
    ("beta", "Parameter", {"shape": [7], "init": "zeros"}, []),
    ("ln", "layer_norm", {}, ["centred.x", "gamma.gamma", "beta.beta"]),
    ("g_tanh", "gelu", {}, ["ln.x"]),
    ("g_erf", "GELU", {"approximate": "erf"}, ["ln.in"]),
    ("flat2", "reshape", {"shape": [-1, 7, 1]}, ["g_erf.x"]),
    ("ones", "oneslike", {}, ["flat2.x"]),
]
TEXT_NODES = [
    ("text", "TextDataset", {"context": 8}, []),
    ("emb", "Embedding", {"vocab": 66, "width": 8}, ["text:tokens.ids"]),
    ("pos", "PositionalEmbedding", {"length": 16}, ["emb.in"]),  # a slice of its table
    ("attn", "MultiHeadAttention", {"heads": 2, "width": 8}, ["pos.in"]),
    ("head", "Linear", {"out_features": 66}, ["attn.in"]),
]


def build_doc(nodes) -> GraphDocument:
    doc = GraphDocument("ops")
    for node_id, kind, attrs, _ in nodes:
        doc.add_node(kind, attrs, node_id=node_id)
    for node_id, _, _, inputs in nodes:
        for spec in inputs:
            src, port = spec.rsplit(".", 1)
            src_id, _, src_port = src.partition(":")
            doc.add_edge((src_id, src_port or "out"), (node_id, port))
    return doc


def perturbed_checkpoint(doc, path, seed=1):
    """Weights away from their initial values (running variances kept positive)."""
    rng = np.random.default_rng(seed)
    values = parameter_values(doc, inference_graph(doc).built)
    noisy = {k: v + rng.normal(0, 0.3, v.shape).astype(v.dtype) for k, v in values.items()}
    noisy.update({k: np.abs(v) + 0.5 for k, v in noisy.items() if k.endswith("running_var")})
    meta = {"epoch": 0, "step": 0, "optimizer_steps": 0, "history": [], "config": {}}
    checkpoint.save(path, noisy, {}, {}, meta)
    return path


def random_inputs(doc, n, seed=0) -> dict:
    rng = np.random.default_rng(seed)
    graph = inference_graph(doc)
    out = {}
    for name in graph.inputs:
        shape = (n, *graph.input_shape(name)[1:])
        if graph.input_dtype(name).kind == "i":
            out[name] = rng.integers(0, 66, shape)
        else:  # some exact zeros: `where` reads its float condition as != 0
            out[name] = np.where(rng.random(shape) < 0.3, 0, rng.standard_normal(shape)).astype(np.float32)
    return out


@pytest.mark.parametrize("opset", [17, 18, 20])
@pytest.mark.parametrize("nodes", [IMAGE_NODES, VECTOR_NODES, TEXT_NODES], ids=["image", "vector", "text"])
def test_every_op_matches_loom(nodes, opset, tmp_path):
    doc = build_doc(nodes)
    ckpt = perturbed_checkpoint(doc, tmp_path / "c.npz")
    model = export_model(doc, ckpt, opset=opset)
    onnx.checker.check_model(model, full_check=True)
    feed = random_inputs(doc, 6)
    want = loom_outputs(doc, feed, ckpt)
    for n in (6, 1):
        got = ort_outputs(model, {k: v[:n] for k, v in feed.items()})
        assert_close(got, {k: v[:n] for k, v in want.items()})
    kinds = {node.op_type for node in model.graph.node}
    assert ("Gelu" in kinds) == (opset >= 20 and nodes is VECTOR_NODES)


IMPORTED_NODES = [  # ops imported models bring (core/ops/interop_ops.py)
    ("x", "Input", {"shape": [4, 3, 3]}, []),
    ("norm", "lrn", {"size": 3, "alpha": 0.5, "beta": 0.75, "bias": 2.0}, ["x.x"]),
    ("e", "erf", {}, ["norm.x"]),
    ("s", "sigmoid", {}, ["e.x"]),
    ("k", "Parameter", {"shape": [3]}, []),
    ("p", "pow", {}, ["s.a", "k.b"]),
    ("framed", "pad", {"pads": [0, 0, 1, 0, 0, 2, 0, 1], "value": 0.5}, ["p.x"]),
    ("floor", "pad", {"pads": [0, 1, 0, 0, 0, 0, 2, 0], "lowest": True}, ["p.x"]),
]


@pytest.mark.skipif(not {"lrn", "erf", "pow", "pad"} <= set(LAYERS), reason="no interop ops yet")
def test_imported_model_ops_match_loom(tmp_path):
    doc = build_doc(IMPORTED_NODES)
    ckpt = perturbed_checkpoint(doc, tmp_path / "c.npz")
    feed = random_inputs(doc, 5)
    assert_close(ort_outputs(export_model(doc, ckpt), feed), loom_outputs(doc, feed, ckpt))


def test_every_op_has_a_rule_or_is_training_only():
    missing = set(OPS) - set(onnx_export.RULES) - onnx_export.TRAINING_ONLY
    assert not missing, f"ops without an ONNX rule: {sorted(missing)}"


def test_graph_without_a_loss_exports_its_unread_outputs():
    graph = inference_graph(build_doc(IMAGE_NODES))
    assert list(graph.outputs) == ["probs", "logp", "total", "best"]
    assert list(graph.inputs) == ["x"]
    assert list(inference_graph(build_doc(TEXT_NODES)).outputs) == ["head"]  # targets dropped


# ---- the commands, in process (main.py wires them; see the subprocess tests below) -------------

def cli_args(*argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    export_cmd.add_parser(sub)
    infer_cmd.add_parser(sub)
    return p.parse_args([str(a) for a in argv])


def save_inputs(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_export_command(tmp_path, trained, capsys):
    _, ckpt, _ = trained(MLP)
    out = tmp_path / "digits.onnx"
    assert export_cmd.run(cli_args("export", MLP, "-o", out, "--checkpoint", ckpt)) == 0
    onnx.checker.check_model(onnx.load(out), full_check=True)
    printed = capsys.readouterr().out
    assert "inputs: images (N, 1, 8, 8) float32" in printed
    assert "outputs: logits (N, 10) float32" in printed
    with pytest.raises(LoomError, match="-o MODEL.onnx"):
        export_cmd.run(cli_args("export", MLP))


def test_infer_command_runs_in_slices(tmp_path, trained, capsys):
    doc, ckpt, _ = trained(MLP)
    images = validation_batch(doc, 300)["images"]
    inputs = save_inputs(tmp_path / "in.npz", images=images.astype(np.float64), extra=np.zeros(2))
    out = tmp_path / "out.npz"
    args = cli_args("infer", MLP, "--input", inputs, "--checkpoint", ckpt, "--output", out,
                    "--batch-size", 7)
    assert infer_cmd.run(args) == 0
    assert "logits: (300, 10) float32" in capsys.readouterr().out
    with np.load(out, allow_pickle=False) as saved:
        assert_close(dict(saved), loom_outputs(doc, {"images": images}, ckpt))


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 1, 8, 8))},
     r"no array 'images': the model's inputs are images \(N, 1, 8, 8\) float32; the file has x"),
    ({"images": np.zeros((2, 64))}, r"images: shape \(2, 64\), the model takes \(N, 1, 8, 8\)"),
    ({"images": np.zeros((2, 1, 8, 8), dtype=complex)}, r"images: complex128 values, the model "
                                                        r"takes float32"),
    ({"images": np.zeros((0, 1, 8, 8))}, "no samples"),
])
def test_infer_refuses_inputs_that_do_not_fit(tmp_path, arrays, message):
    inputs = save_inputs(tmp_path / "in.npz", **arrays)
    with pytest.raises(LoomError, match=message):
        infer_cmd.run(cli_args("infer", MLP, "--input", inputs))


def test_infer_refuses_bad_files(tmp_path, trained):
    not_npz = tmp_path / "in.npz"
    not_npz.write_text("images")
    with pytest.raises(LoomError, match=r"in.npz: not an .npz file"):
        infer_cmd.run(cli_args("infer", MLP, "--input", not_npz))
    np.save(tmp_path / "one.npy", np.zeros((2, 1, 8, 8)))
    with pytest.raises(LoomError, match=r"one.npy: a single array \(.npy\)"):
        infer_cmd.run(cli_args("infer", MLP, "--input", tmp_path / "one.npy"))
    inputs = save_inputs(tmp_path / "ok.npz", images=np.zeros((2, 1, 8, 8)))
    _, other, _ = trained(LOGREG)
    with pytest.raises(LoomError, match="no value for parameter param/linear2.bias"):
        infer_cmd.run(cli_args("infer", MLP, "--input", inputs, "--checkpoint", other))
    with pytest.raises(LoomError, match="--batch-size must be 1 or more"):
        infer_cmd.run(cli_args("infer", MLP, "--input", inputs, "--batch-size", 0))


def test_infer_refuses_token_ids_outside_the_vocabulary(tmp_path):
    inputs = save_inputs(tmp_path / "in.npz", tokens=np.full((1, 64), 66))
    with pytest.raises(LoomError, match=r"tokens: ids from 66 to 66, the model's table has rows 0 to 65"):
        infer_cmd.run(cli_args("infer", GPT, "--input", inputs))


@pytest.mark.skipif(importlib.util.find_spec("core.interop.onnx_import") is None,
                    reason="core.interop.onnx_import is not there yet")
def test_infer_runs_an_exported_onnx_model(tmp_path, trained):
    doc, ckpt, feed = trained(MLP)
    model = tmp_path / "digits.onnx"
    onnx_export.export_file(doc, model, ckpt)
    inputs = save_inputs(tmp_path / "in.npz", **feed)
    out = tmp_path / "out.npz"
    assert infer_cmd.run(cli_args("infer", model, "--input", inputs, "--output", out)) == 0
    with np.load(out, allow_pickle=False) as saved:
        (got,) = saved.values()
    assert_close({"logits": got}, loom_outputs(doc, feed, ckpt))


def test_infer_runs_on_a_device_backend(tmp_path, trained):
    """The strict stand-in device (tests/standin.py): no host array reaches the run."""
    doc, ckpt, feed = trained(CNN)
    graph = inference_graph(doc)
    params = parameter_values(doc, graph.built, ckpt)
    got = infer_cmd.run_batches(graph, params, feed, "standin", 5)
    assert_close(got, loom_outputs(doc, feed, ckpt))


def test_outputs_across_the_batch_run_in_one_piece(tmp_path):
    """A sum over the batch axis would change if the samples ran in slices."""
    doc = build_doc([("v", "Input", {"shape": [3]}, []),
                     ("total", "reduce_sum", {"axis": 0}, ["v.x"])])
    graphfile.save(doc, tmp_path / "sum.loom.json")
    values = np.arange(21, dtype=np.float32).reshape(7, 3)
    inputs = save_inputs(tmp_path / "in.npz", v=values)
    out = tmp_path / "out.npz"
    assert infer_cmd.run(cli_args("infer", tmp_path / "sum.loom.json", "--input", inputs,
                                  "--output", out, "--batch-size", 2)) == 0
    with np.load(out, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["total"], values.sum(axis=0))


# ---- the commands as a user runs them ----------------------------------------------------------

def wired(command) -> bool:
    """True once core/cli/main.py offers the command."""
    main = importlib.import_module("core.cli.main")
    action = next(a for a in main.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return command in action.choices


needs_wiring = pytest.mark.skipif(not (wired("export") and wired("infer")),
                                  reason="export / infer are not wired into core/cli/main.py yet")


@needs_wiring
def test_export_then_infer_from_the_command_line(tmp_path, trained):
    doc, ckpt, feed = trained(MLP)
    model = tmp_path / "digits.onnx"
    done = run_cli("export", MLP, "-o", model, "--checkpoint", ckpt)
    assert done.returncode == 0, done.stderr
    assert "outputs: logits (N, 10) float32" in done.stdout
    onnx.checker.check_model(onnx.load(model), full_check=True)
    inputs = save_inputs(tmp_path / "in.npz", **feed)
    out = tmp_path / "out.npz"
    done = run_cli("infer", MLP, "--input", inputs, "--checkpoint", ckpt, "--output", out)
    assert done.returncode == 0, done.stderr
    assert "logits: (12, 10) float32" in done.stdout
    with np.load(out, allow_pickle=False) as saved:
        assert_close(dict(saved), loom_outputs(doc, feed, ckpt))


@needs_wiring
def test_command_line_errors_exit_2(tmp_path, trained):
    _, other, _ = trained(LOGREG)
    done = run_cli("export", MLP, "-o", tmp_path / "m.onnx", "--checkpoint", other)
    assert done.returncode == 2 and "no value for parameter param/linear2.bias" in done.stderr
    assert not (tmp_path / "m.onnx").exists()
    inputs = save_inputs(tmp_path / "in.npz", pixels=np.zeros((2, 1, 8, 8)))
    done = run_cli("infer", MLP, "--input", inputs)
    assert done.returncode == 2 and "no array 'images'" in done.stderr
