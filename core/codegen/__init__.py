"""A graph as a standalone Python script (`main.py export FILE --python OUT.py`): the model, its
weights beside it (`<OUT stem>.weights.npz`, Loom's parameter names, no pickle), inference with
`main.py infer`'s .npz files and, where the data is at hand, a training loop.

A flavour is one entry in `FLAVOURS`: its imports, the model (one emitter per layer kind),
how it loads weights and runs, and its training step. `plan.py` works out what every flavour
needs from the graph; `script.py` holds the parts they share. Blocks: `scopes.py` decides which
instances are written as calls (a torch submodule, a Loom function) and `sharing.py` writes
one class / function per definition, what differs between its instances as arguments."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..atomic import atomic_write
from ..weights import save_weights
from . import loom_flavour, torch_flavour
from .plan import CodegenError, ExportPlan, plan_export  # noqa: F401
from .script import (LOOP, MAIN, NPZ, REFUSED, constant, data_code, docstring, join, literal,
                     mapping, relative_root, section)
from .training import ROOT, schedule_code, setting_constants, training_plan


@dataclass(frozen=True)
class Flavour:
    name: str
    described: str  # how the script's docstring names what it holds
    # IMPORTS, PREAMBLE, model_code, weights_code, trainer_code, trainer_constants
    code: ModuleType


FLAVOURS = {f.name: f for f in (
    Flavour("torch", "the model as a PyTorch module", torch_flavour),
    Flavour("loom", "the model written with Loom's Python API", loom_flavour))}


def export_python(doc, out, flavour="torch", checkpoint=None) -> ExportPlan:
    """Write the script to `out` and its weights beside it; refuses (CodegenError, one line
    naming the node) a graph with a kind the flavour has no emitter for, writing nothing."""
    out = Path(out)
    plan = plan_export(doc, checkpoint)
    source = format_source(script_source(plan, FLAVOURS[flavour], out))
    save_weights(weights_path(out), plan.values)
    atomic_write(out, lambda f: f.write(source))
    return plan


def weights_path(out) -> Path:
    out = Path(out)
    return out.with_name(f"{out.stem}.weights.npz")


def script_source(plan, flavour: Flavour, out: Path) -> str:
    code, training = flavour.code, training_plan(plan)
    model, weights = code.model_code(plan), code.weights_code(plan)  # refusals come first
    body = [_constants(plan, out, training, code), code.PREAMBLE,
            section("the model"), model,
            section("weights"), weights,
            section(".npz files, as main.py infer reads and writes them"), NPZ,
            section("training"), _training(plan, training, code),
            section("command line"), MAIN]
    text = join(*body)
    head = [docstring(plan, out.stem, flavour, training), _imports(code.IMPORTS, text)]
    return "\n\n".join(head) + "\n\n" + text + "\n"


def _imports(lines, body) -> str:
    """The flavour's imports that the body uses (a script that cannot train reads no text)."""
    def used(line):
        return not line or re.search(rf"\b{line.split()[-1]}\.", body) is not None
    return "\n".join(line for line in lines if used(line))


def _constants(plan, out, training, code) -> str:
    lines = _model_constants(plan, out)
    if training.refused:
        return "\n".join(lines + [constant("TRAINING_REFUSED", training.refused)])
    return "\n".join(lines + ["", *_training_constants(plan, training, code)])


def _model_constants(plan, out) -> list:
    inputs = {p.name: (p.shape, p.dtype) for p in plan.inputs}
    return ["HERE = os.path.dirname(os.path.abspath(__file__))",
             f"WEIGHTS = os.path.join(HERE, {literal(weights_path(out).name)})",
             "# the Loom checkout (its engine, its bundled data): $LOOM_ROOT, else where it was "
             "at export",
             f"LOOM_ROOT = os.environ.get(\"LOOM_ROOT\") or os.path.join(HERE, "
             f"{literal(relative_root(out, ROOT))})",
             mapping("INPUTS", inputs, "name -> (shape of one sample, dtype)"),
             constant("OUTPUTS", tuple(p.name for p in plan.outputs)),
             constant("BATCH_MAJOR", plan.batch_major, "outputs are per sample: run in slices")]


def _training_constants(plan, training, code) -> list:
    data = [(k, v, "under LOOM_ROOT; --data overrides" if k == "DATA_FILE" else "")
            for k, v in training.constants.items()]
    rest = [("INPUT", plan.inputs[0].name, "the model's input, from the dataset"),
            ("PREDICTION", training.prediction, "the output the loss reads")]
    return ["# training, from the graph's training section",
            *(constant(*c) for c in setting_constants(training.config) + data
              + code.trainer_constants(training) + rest)]


def _training(plan, training, code) -> str:
    if training.refused:
        return REFUSED
    return join(data_code(training), schedule_code(training.config),
                code.trainer_code(plan, training), LOOP)


def format_source(source: str) -> str:
    """Through black where it is installed (not a dependency: the generator lays the code
    out itself), else as written."""
    try:
        import black
    except ImportError:
        return source
    return black.format_str(source, mode=black.Mode(line_length=99))

