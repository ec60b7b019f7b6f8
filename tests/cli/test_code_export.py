"""`main.py export GRAPH --python OUT.py [--flavour torch|loom] [--checkpoint C]`: every bundled
example written as a script, run as a user would run it (`python OUT.py --input IN.npz
--output OUT.npz`), gives `main.py infer`'s outputs with the same weights: exactly for the
loom flavour, within 1e-5 for torch. The scripts compile, the loom one trains, and a kind a
flavour cannot write is refused in one line. A block definition is one class (torch) or
function (loom) whose arguments are what differs between its instances (its promoted
attributes first of all); instances are submodules / calls, nested blocks nest, and the
checkpoint's `stage1/conv.weight` loads as torch's `stage1.conv.weight`."""
import importlib.util
import json
import os
import py_compile
import re
import subprocess
import sys

import numpy as np
import pytest

from core import checkpoint as checkpoints
from core.cli.main import main as loom_main
from core.blocks import group
from core.codegen import export_python, weights_path
from core.graphfile import load, save
from core.inference import inference_graph, parameter_values

from .conftest import EXAMPLES, run_cli

NAMES = sorted(p.name[:-len(".loom.json")] for p in EXAMPLES.glob("*.loom.json"))
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH,
                                 reason="torch is not installed (make bench installs it)")
# loom: the same ops, so the same numbers; torch: its own kernels, float32 rounding that grows
# with the values (the GPT's logits reach ~10), so 1e-5 of the largest output value (at least 1)
TOLERANCE = {"loom": 1e-6, "torch": 1e-5}


def sample_inputs(graph, rng, count=5):
    """A few samples for each input: ids within the vocabulary, else values in [0, 1)."""
    out = {}
    for name in graph.inputs:
        shape, dtype = (count, *graph.input_shape(name)[1:]), graph.input_dtype(name)
        ids = dtype.kind == "i"
        out[name] = rng.integers(0, 60, shape) if ids else rng.random(shape).astype(dtype)
    return out


def random_checkpoint(doc, path, rng):
    """A checkpoint of the graph holding every parameter, moved away from its initial value."""
    graph = inference_graph(doc)
    start = parameter_values(doc, graph.built)
    params = {k: (v * 1.5 + rng.normal(0, 0.02, v.shape)).astype(v.dtype)
              for k, v in start.items()}
    meta = {"epoch": 0, "step": 0, "optimizer_steps": 0, "history": [], "config": {}}
    checkpoints.save(path, params, {}, {}, meta)
    return path


def run_script(script, *args, env=None):
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=script.parent, env=env)


def loom_infer(graph_file, inputs, out, *extra):
    assert loom_main(["infer", str(graph_file), "--input", str(inputs), "--output", str(out),
                      *map(str, extra)]) == 0
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def assert_script_matches(tmp_path, graph_file, flavour, checkpoint=None):
    """Export, compile, run the script on a few samples, compare with `main.py infer`."""
    doc = load(graph_file)
    script = tmp_path / f"{flavour}_model.py"
    export_python(doc, script, flavour, checkpoint)
    py_compile.compile(str(script), doraise=True)
    inputs = tmp_path / "in.npz"
    np.savez(inputs, **sample_inputs(inference_graph(doc), np.random.default_rng(0)))
    extra = ["--checkpoint", checkpoint] if checkpoint else []
    expected = loom_infer(graph_file, inputs, tmp_path / "expected.npz", *extra)
    done = run_script(script, "--input", inputs, "--output", tmp_path / "out.npz")
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as got:
        assert sorted(got.files) == sorted(expected)
        for name, value in expected.items():
            assert got[name].shape == value.shape
            scale = max(1.0, float(np.abs(value).max())) if flavour == "torch" else 1.0
            np.testing.assert_allclose(got[name], value, rtol=0, atol=TOLERANCE[flavour] * scale,
                                       err_msg=name)


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
@pytest.mark.parametrize("name", NAMES)
def test_example_script_gives_infer_outputs(tmp_path, name, flavour):
    doc = load(EXAMPLES / f"{name}.loom.json")
    ckpt = random_checkpoint(doc, tmp_path / "checkpoint.npz", np.random.default_rng(1))
    assert_script_matches(tmp_path, EXAMPLES / f"{name}.loom.json", flavour, ckpt)


@pytest.mark.parametrize("flavour", ["loom", "torch"])
@pytest.mark.parametrize("name", NAMES)
def test_scripts_compile_without_torch_installed(tmp_path, name, flavour):
    """Compiling needs no torch: a torch script is checked wherever the suite runs."""
    script = tmp_path / "model.py"
    export_python(load(EXAMPLES / f"{name}.loom.json"), script, flavour)
    py_compile.compile(str(script), doraise=True)
    assert weights_path(script).name == "model.weights.npz"
    text = script.read_text()
    assert str(tmp_path) not in text  # the Loom checkout is a relative path
    assert max(map(len, text.splitlines())) <= 99


def test_export_command_writes_script_and_checkpoint_weights(tmp_path):
    graph = EXAMPLES / "digits_mlp.loom.json"
    ckpt = random_checkpoint(load(graph), tmp_path / "checkpoint.npz", np.random.default_rng(2))
    out = tmp_path / "mlp.py"
    done = run_cli("export", graph, "--python", out, "--flavour", "loom", "--checkpoint", ckpt)
    assert done.returncode == 0, done.stderr
    assert f"wrote {out} (loom flavour)" in done.stdout
    assert "inputs: images (N, 1, 8, 8) float32" in done.stdout
    params, _, _, _ = checkpoints.load(ckpt)
    with np.load(tmp_path / "mlp.weights.npz", allow_pickle=False) as stored:
        assert sorted(stored.files) == sorted(params)
        for key, value in params.items():
            np.testing.assert_array_equal(stored[key], value)


# ---- training -----------------------------------------------------------------------------------

def validation_losses(stdout):
    return [float(v) for v in re.findall(r"validation loss ([0-9.]+)", stdout)]


def test_loom_script_trains_one_epoch(tmp_path):
    script = tmp_path / "mlp.py"
    export_python(load(EXAMPLES / "digits_mlp.loom.json"), script, "loom")
    env = {k: v for k, v in os.environ.items() if k != "LOOM_ROOT"}  # the written path finds Loom
    done = run_script(script, "--train", "--epochs", "1", "--save", tmp_path / "trained.npz",
                      env=env)
    assert done.returncode == 0, done.stderr
    before, after = validation_losses(done.stdout)
    assert after < before * 0.5, done.stdout
    assert "epoch 1: training loss" in done.stdout
    with np.load(tmp_path / "trained.npz") as trained, np.load(weights_path(script)) as start:
        assert sorted(trained.files) == sorted(start.files)
        assert not np.array_equal(trained["linear1.weight"], start["linear1.weight"])


# ---- every layer kind a flavour writes, and what is refused -------------------------------------

# Ids a Python name cannot be ("1st-conv", a keyword, a builtin), every emitter of the image and
# feature kinds (the sequence kinds are the GPT example's), padded pools.
KINDS = [
    ("input", "Input", {"shape": [1, 8, 8]}, {}),
    ("1st-conv", "Conv2D", {"out_channels": 4, "kernel": 3, "padding": 1}, {"in": "input"}),
    ("bn", "BatchNorm", {}, {"in": "1st-conv"}),
    ("class", "ReLU", {}, {"in": "bn"}),
    ("avg", "AvgPool2D", {"kernel": 2, "stride": 2, "padding": 1}, {"in": "class"}),
    ("maxpad", "MaxPool2D", {"kernel": 3, "stride": 1, "padding": 1}, {"in": "avg"}),
    ("flat", "Flatten", {}, {"in": "maxpad"}),
    ("fc", "Linear", {"out_features": 16}, {"in": "flat"}),
    ("sig", "Sigmoid", {}, {"in": "fc"}),
    ("tanh", "Tanh", {}, {"in": "fc"}),
    ("cat", "Concat", {"axis": 1}, {"a": "sig", "b": "tanh"}),
    ("bn1d", "BatchNorm", {"eps": 1e-3}, {"in": "cat"}),
    ("drop", "Dropout", {"rate": 0.5}, {"in": "bn1d"}),
    ("re", "Reshape", {"shape": [4, 8]}, {"in": "drop"}),
    ("ln", "LayerNorm", {}, {"in": "re"}),
    ("gelu", "GELU", {"approximate": "erf"}, {"in": "ln"}),
    ("fc3d", "Linear", {"out_features": 5, "bias": False}, {"in": "gelu"}),
    ("soft", "Softmax", {}, {"in": "fc3d"}),
    ("sum", "Add", {}, {"a": "soft", "b": "fc3d"}),
]


def kinds_graph(tmp_path, rng):
    """The KINDS chain as a graph file, with a weights file of random values (batch-norm
    statistics and scales included) beside it."""
    nodes = [{"id": i, "kind": k, "attrs": a} for i, k, a, _ in KINDS]
    edges = [{"src": [src, "out"], "dst": [i, port]}
             for i, _, _, ins in KINDS for port, src in ins.items()]
    path = tmp_path / "kinds.loom.json"
    data = {"format": "loom.graph", "version": 1, "name": "kinds", "nodes": nodes, "edges": edges}
    path.write_text(json.dumps(data))
    params = inference_graph(load(path)).built.parameters
    values = {p.name: rng.uniform(0.5, 1.5, p.attrs["shape"]).astype(np.float32) for p in params}
    np.savez(tmp_path / "kinds.weights.npz", **values)
    path.write_text(json.dumps({**data, "weights": "kinds.weights.npz"}))
    return path


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
def test_every_layer_kind(tmp_path, flavour):
    assert_script_matches(tmp_path, kinds_graph(tmp_path, np.random.default_rng(3)), flavour)
    done = run_script(tmp_path / f"{flavour}_model.py", "--train")
    assert done.returncode == 2
    assert "--train: the graph has no Dataset or TextDataset node" in done.stderr


def graph_with_op_node(tmp_path):
    """digits_mlp with its ReLU layer replaced by the raw `relu` op node."""
    data = json.loads((EXAMPLES / "digits_mlp.loom.json").read_text())
    for node in data["nodes"]:
        if node["id"] == "relu1":
            node["kind"] = "relu"
    for edge in data["edges"]:
        if edge["dst"] == ["relu1", "in"]:
            edge["dst"] = ["relu1", "x"]
    path = tmp_path / "ops.loom.json"
    path.write_text(json.dumps(data))
    return path


def test_torch_refuses_an_op_node_in_one_line(tmp_path):
    out = tmp_path / "model.py"
    done = run_cli("export", graph_with_op_node(tmp_path), "--python", out)
    assert done.returncode == 2
    assert done.stderr.strip() == ("error: node relu1 (relu): the torch flavour has no emitter for "
                                   "this kind (export with --flavour loom)")
    assert not out.exists() and not weights_path(out).exists()


def test_loom_writes_op_nodes_as_core_ops(tmp_path):
    graph = graph_with_op_node(tmp_path)
    assert_script_matches(tmp_path, graph, "loom")
    assert "core.ops.relu(linear1)" in (tmp_path / "loom_model.py").read_text()


# ---- blocks: a class / function per definition, a submodule / call per instance ---------------

def _node(node_id, kind, attrs=None):
    return {"id": node_id, "kind": kind, "attrs": attrs or {}}


def _wire(src, dst):
    return {"src": list(src), "dst": list(dst)}


def _chain(ids):
    return [_wire((a, "out"), (b, "in")) for a, b in zip(ids, ids[1:])]


def nested_graph(tmp_path, bias=(True, True)):
    """x -> pair1 -> pair2 -> head, where Pair holds two instances of Dense (Linear,
    BatchNorm, Tanh; width promoted, and `bias` where asked) and has two outputs: what its
    first Dense gives and what its second gives. Pair promotes its first Dense's width."""
    dense = {"nodes": [_node("in", "BlockInput", {"name": "in"}),
                       _node("lin", "Linear", {"out_features": 8}), _node("bn", "BatchNorm"),
                       _node("act", "Tanh"), _node("out", "BlockOutput", {"name": "out"})],
             "edges": _chain(["in", "lin", "bn", "act", "out"]),
             "params": {"width": {"default": 8, "targets": [["lin", "out_features"]]},
                        "bias": {"default": True, "targets": [["lin", "bias"]]}}}
    pair = {"nodes": [_node("in", "BlockInput", {"name": "in"}),
                      _node("first", "Block", {"block": "Dense", "width": 20, "bias": bias[0]}),
                      _node("second", "Block", {"block": "Dense", "width": 16, "bias": bias[1]}),
                      _node("a", "BlockOutput", {"name": "a"}),
                      _node("b", "BlockOutput", {"name": "b"})],
            "edges": [*_chain(["in", "first", "second"]), _wire(("second", "out"), ("a", "in")),
                      _wire(("first", "out"), ("b", "in"))],
            "params": {"width": {"default": 20, "targets": [["first", "width"]]}}}
    nodes = [_node("x", "Input", {"shape": [12]}),
             _node("pair1", "Block", {"block": "Pair", "width": 20}),
             _node("pair2", "Block", {"block": "Pair", "width": 24}),
             _node("cat", "Concat", {"axis": 1}), _node("head", "Linear", {"out_features": 3})]
    edges = [_wire(("x", "out"), ("pair1", "in")), _wire(("pair1", "a"), ("pair2", "in")),
             _wire(("pair1", "b"), ("cat", "a")), _wire(("pair2", "a"), ("cat", "b")),
             _wire(("cat", "out"), ("head", "in"))]
    data = {"format": "loom.graph", "version": 2, "name": "nested", "nodes": nodes,
            "edges": edges, "blocks": {"Dense": dense, "Pair": pair}}
    path = tmp_path / "nested.loom.json"
    path.write_text(json.dumps(data))
    return path


def exported(tmp_path, graph, flavour):
    script = tmp_path / f"{flavour}_model.py"
    export_python(load(graph), script, flavour)
    return script.read_text()


def test_a_block_is_a_class_whose_arguments_are_its_promoted_attributes(tmp_path):
    graph = EXAMPLES / "mnist_cnn.loom.json"
    torch_code = exported(tmp_path, graph, "torch")
    assert "class ConvStage(nn.Module):" in torch_code
    assert "    def __init__(self, in_channels, channels=6, padding=2):" in torch_code
    conv = "self.conv = nn.Conv2d(in_channels, channels, kernel_size=5, padding=padding)"
    assert conv in torch_code
    assert "self.stage1 = ConvStage(in_channels=1, channels=6, padding=2)" in torch_code
    assert "self.stage2 = ConvStage(in_channels=6, channels=16, padding=0)" in torch_code
    assert '"stage2/conv.weight": ("stage2.conv.weight", (16, 6, 5, 5))' in torch_code
    loom_code = exported(tmp_path, graph, "loom")
    assert "def conv_stage(p, name, in_, padding=2):" in loom_code  # channels: the weights' shape
    assert 'p[f"{name}/conv.weight"]' in loom_code
    assert 'stage2 = conv_stage(p, "stage2", stage1, padding=0)' in loom_code


def test_the_transformer_blocks_are_one_class_of_four_submodules(tmp_path):
    torch_code = exported(tmp_path, EXAMPLES / "shakespeare_char_gpt.loom.json", "torch")
    assert torch_code.count("class TransformerBlock(nn.Module):") == 1
    assert "    def __init__(self, heads=4, mlp_width=512):" in torch_code
    assert all(f"self.block{i} = TransformerBlock(heads=4, mlp_width=512)" in torch_code
               for i in range(1, 5))


@needs_torch
def test_checkpoint_weights_load_under_torch_module_paths(tmp_path):
    graph = EXAMPLES / "mnist_cnn.loom.json"
    ckpt = random_checkpoint(load(graph), tmp_path / "checkpoint.npz", np.random.default_rng(4))
    script = tmp_path / "cnn_model.py"
    export_python(load(graph), script, "torch", ckpt)
    spec = importlib.util.spec_from_file_location("cnn_model", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.load_model(str(weights_path(script))).state_dict()
    params, _, _, _ = checkpoints.load(ckpt)
    assert {"stage1.conv.weight", "stage2.conv.bias", "linear1.weight"} <= set(state)
    for key in ("weight", "bias"):  # Loom's conv bias is (C, 1, 1), torch's (C,)
        np.testing.assert_array_equal(state[f"stage2.conv.{key}"].numpy().ravel(),
                                      params[f"stage2/conv.{key}"].ravel())


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
def test_nested_blocks_nest_and_give_infer_outputs(tmp_path, flavour):
    graph = nested_graph(tmp_path)
    ckpt = random_checkpoint(load(graph), tmp_path / "checkpoint.npz", np.random.default_rng(5))
    assert_script_matches(tmp_path, graph, flavour, ckpt)
    code = (tmp_path / f"{flavour}_model.py").read_text()
    if flavour == "torch":
        assert "class Dense(nn.Module):" in code and "class Pair(nn.Module):" in code
        assert "    def __init__(self, in_features, num_features, width=8):" in code
        assert ("self.first = Dense(in_features=in_features, num_features=num_features, "
                "width=width)") in code
        assert "pair1_a, pair1_b = self.pair1(x)" in code and "return second, first" in code
    else:
        assert 'first = dense(p, f"{name}/first", in_, ' in code and "training=training" in code
        assert 'stats.append((f"{name}/bn", bn))' in code
        assert 'pair1_a, pair1_b = pair(p, "pair1", x, ' in code


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
def test_instances_that_cannot_share_code_get_one_each(tmp_path, flavour):
    """A Linear without a bias is other code in the loom flavour (no `+ bias`): two functions;
    torch's `bias=` takes either value: one class."""
    graph = nested_graph(tmp_path, bias=(True, False))
    assert_script_matches(tmp_path, graph, flavour)
    code = (tmp_path / f"{flavour}_model.py").read_text()
    if flavour == "torch":
        assert "class Dense2" not in code and "bias=bias" in code
    else:
        assert "def dense(" in code and "def dense_2(" in code


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
def test_a_block_holding_the_loss_is_written_out_by_path(tmp_path, flavour):
    """The logits are a value inside the block (it holds the loss and the metric too): its
    model nodes are written where it stands, named by their path."""
    doc = load(EXAMPLES / "mnist_cnn.loom.json")
    group(doc, ["linear3", "loss", "accuracy"], "Classifier", "classifier1")
    graph = tmp_path / "classified.loom.json"
    save(doc, graph)
    ckpt = random_checkpoint(doc, tmp_path / "checkpoint.npz", np.random.default_rng(6))
    assert_script_matches(tmp_path, graph, flavour, ckpt)
    code = (tmp_path / f"{flavour}_model.py").read_text()
    assert "classifier1_linear3" in code and "Classifier" not in code.replace("classifier1", "")


@pytest.mark.parametrize("flavour", ["loom", pytest.param("torch", marks=needs_torch)])
def test_a_grouped_script_trains(tmp_path, flavour):
    """digits_mlp with its hidden layer (Linear, BatchNorm, ReLU) a block: --train runs the
    block's batch norm in training mode (the loom function gets `training` and `stats`)."""
    doc = load(EXAMPLES / "digits_mlp.loom.json")
    edge = doc.edge_into("relu1", "in")
    doc.remove_edge(edge)
    doc.add_node("BatchNorm", node_id="bn")
    doc.add_edge(edge.src, ("bn", "in"))
    doc.add_edge(("bn", "out"), ("relu1", "in"))
    group(doc, ["linear1", "bn", "relu1"], "Hidden", "hidden1")
    script = tmp_path / "mlp.py"
    export_python(doc, script, flavour)
    done = run_script(script, "--train", "--epochs", "1", "--save", tmp_path / "trained.npz")
    assert done.returncode == 0, done.stderr
    before, after = validation_losses(done.stdout)
    assert after < before * 0.5, done.stdout
    with np.load(tmp_path / "trained.npz") as trained, np.load(weights_path(script)) as start:
        assert "hidden1/bn.running_mean" in trained.files
        name = "hidden1/bn.running_mean"
        assert not np.array_equal(trained[name], start[name])
