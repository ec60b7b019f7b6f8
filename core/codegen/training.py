"""What `--train` in a generated script does: the graph's training settings, its data (the
bundled datasets, or a file given with --data) and its loss, or the one reason why the
script cannot train (it still runs inference)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import LoomError
from ..layers.base import LAYERS
from ..settings import training_config
from .plan import loss_node

ROOT = Path(__file__).resolve().parents[2]  # the Loom checkout
DATASETS = "resources/datasets"

# Dataset node name -> (bundled file under DATASETS or None: --data is required, the divisor
# that brings its pixels to the range Loom trains on), as core/data/files.py loads them
IMAGE_SETS = {"digits": ("digits.npz", 16.0), "mnist_subset": ("mnist_subset.npz", 255.0),
              "npz": (None, 1.0)}
TEXT_SETS = {"shakespeare": "shakespeare.txt.xz", "file": None}  # TextDataset text -> file
LOSSES = ("SoftmaxCrossEntropy", "MSELoss")  # the loss kinds a script can train with


@dataclass
class TrainingPlan:
    refused: str | None = None  # why --train cannot work (None: it can)
    config: dict | None = None  # the graph's training settings, defaults filled in
    data: str = ""  # "images" | "text": which data section the script gets
    constants: dict | None = None  # data constants written into the script
    loss: str = ""  # the loss node's kind
    prediction: str = ""  # the output the loss reads
    target: tuple = ()  # (dataset port, shape of one sample, dtype) the loss compares it with


def training_plan(plan) -> TrainingPlan:
    doc, built = plan.doc, plan.graph.built
    try:
        config = training_config(doc)
    except LoomError as exc:
        return TrainingPlan(refused=f"the graph's training settings: {exc}")
    reason = _refusal(doc, built, plan)
    if reason:
        return TrainingPlan(refused=reason)
    spec = loss_node(doc)
    port = doc.edge_into(spec.id, LAYERS[spec.kind].inputs[1].name).src[1]
    target = built.feeds[port]
    data, constants = _data(built)
    return TrainingPlan(None, config, data, constants, spec.kind, plan.outputs[0].name,
                        (port, tuple(target.attrs["shape"][1:]), target.attrs["dtype"]))


def _refusal(doc, built, plan) -> str | None:
    """Why a script of this graph cannot train, or None."""
    if built.data_kind is None:
        return "the graph has no Dataset or TextDataset node: there is nothing to train on"
    source = built.dataset.get("name") or built.dataset.get("text")
    if source not in IMAGE_SETS and source not in TEXT_SETS:
        return (f"the {source!r} dataset is not one a script reads (it reads "
                f"{', '.join(sorted(IMAGE_SETS) + sorted(TEXT_SETS))})")
    spec = loss_node(doc)
    if spec is None or spec.kind not in LOSSES:
        return f"a script trains a graph with one loss node of kind {' or '.join(LOSSES)}"
    feeds = {node: port for port, node in built.feeds.items()}
    target = doc.edge_into(spec.id, LAYERS[spec.kind].inputs[1].name).src
    if built.outputs.get(target) not in feeds:
        return f"the loss {spec.id} compares with something other than the dataset"
    fed = [p.name for p in plan.inputs]
    if [feeds.get(plan.graph.inputs[n]) for n in fed] != [_data_port(built)]:
        return f"the model reads inputs other than the dataset's: {', '.join(fed)}"
    return None


def _data_port(built) -> str:
    return next(p.name for p in built.data_kind.outputs if p.type == "data")


def _data(built) -> tuple:
    attrs = built.dataset
    if built.data_kind.name == "TextDataset":
        from ..layers.sequence_layers import vocabulary
        return "text", {"DATA_FILE": _bundled(TEXT_SETS[attrs["text"]]),
                        "CONTEXT": attrs["context"], "VOCAB": len(vocabulary(attrs))}
    file, scale = IMAGE_SETS[attrs["name"]]
    return "images", {"DATA_FILE": _bundled(file), "SCALE": scale}


def _bundled(file):
    return None if file is None else f"{DATASETS}/{file}"


# ---- the settings a script writes as constants ----------------------------------------------

# setting -> (constant, comment); each optimizer and schedule adds the settings it reads
COMMON = {"epochs": ("EPOCHS", ""), "batch_size": ("BATCH_SIZE", ""),
          "steps_per_epoch": ("STEPS_PER_EPOCH", "0: one pass over the training data"),
          "lr": ("LR", ""), "weight_decay": ("WEIGHT_DECAY", "L2, added to the gradient"),
          "seed": ("SEED", "the split and the order of the batches"),
          "val_fraction": ("VAL_FRACTION", "held out for validation"),
          "warmup_steps": ("WARMUP_STEPS", "the rate ramps up over these first steps")}
MOMENTUM = {"momentum": ("MOMENTUM", "")}
BY_OPTIMIZER = {"momentum": MOMENTUM, "nesterov": MOMENTUM,
                "adam": {"beta2": ("BETA2", "second-moment decay")}}
BY_SCHEDULE = {"step": {"step_size": ("STEP_SIZE", "epochs between rate drops"),
                        "gamma": ("GAMMA", "the rate is multiplied by this at each drop")},
               "cosine": {"min_lr_ratio": ("MIN_LR_RATIO", "the rate ends at LR times this")}}


def setting_constants(config) -> list[tuple]:
    """[(constant, value, comment)] of the settings the script reads."""
    table = {**COMMON, **BY_OPTIMIZER.get(config["optimizer"], {}),
             **BY_SCHEDULE.get(config["schedule"], {})}
    return [(const, config[key], comment) for key, (const, comment) in table.items()]


# schedule -> the body of learning_rate(epoch, step, epochs), as core/optim.py's schedules
SCHEDULE_CODE = {
    "constant": "lr = LR",
    "step": "lr = LR * GAMMA ** (int(epoch) // max(1, STEP_SIZE))",
    "cosine": "floor = LR * MIN_LR_RATIO  # half a cosine from LR down to floor\n"
              "done = min(1.0, epoch / epochs)\n"
              "lr = floor + 0.5 * (LR - floor) * (1 + math.cos(math.pi * done))",
}


def schedule_code(config) -> str:
    return (f'def learning_rate(epoch, step, epochs):\n'
            f'    """The rate at optimizer step `step`, `epoch` epochs (a fraction) into a run of '
            f'`epochs`\n    (the {config["schedule"]} schedule, ramped up over WARMUP_STEPS)."""\n'
            + "".join(f"    {line}\n" for line in SCHEDULE_CODE[config["schedule"]].splitlines())
            + "    return lr * min(1.0, (step + 1) / WARMUP_STEPS) if WARMUP_STEPS else lr\n")
