"""The parts of a generated script both flavours share, and how code is laid out.

A flavour supplies the model (`build` / an nn.Module), `load_model`, `run`, `save_weights`
and a `Trainer` (`step`, `evaluate`); everything below is the same numpy code in both:
reading and writing .npz files as `main.py infer` does, inference in slices, the training
data as Loom splits and batches it, the learning-rate schedule, the loop and the command line."""
from __future__ import annotations

import io
import os
import re
import textwrap
import tokenize
from contextlib import contextmanager
from pathlib import Path

WIDTH = 99  # longest line the generator writes

# While the code of a block's instances is compared (core/codegen/sharing.py): options to
# write even at their defaults (so every instance writes the same ones), and no wrapping (a
# value becomes a parameter's name, and the line is wrapped once, afterwards).
_STATE = {"forced": frozenset(), "wrap": True}


@contextmanager
def emitting(forced=(), wrap=True):
    saved = dict(_STATE)
    _STATE.update(forced=frozenset(forced), wrap=wrap)
    try:
        yield
    finally:
        _STATE.update(saved)


def options(values: dict, defaults: dict) -> dict:
    """The options whose values differ from the callee's defaults (the others go unsaid),
    and those being forced."""
    return {k: v for k, v in values.items() if v != defaults[k] or k in _STATE["forced"]}


def literal(value) -> str:
    """A Python literal in the style the scripts are written in (double quotes, sets sorted)."""
    if isinstance(value, str):
        text = repr(value)
        return f'"{text[1:-1]}"' if text[0] == "'" and '"' not in value else text
    if isinstance(value, (list, tuple)):
        items = ", ".join(map(literal, value))
        if isinstance(value, list):
            return f"[{items}]"
        return f"({items},)" if len(value) == 1 else f"({items})"
    if isinstance(value, (set, frozenset)):
        return "{" + ", ".join(map(literal, sorted(value))) + "}" if value else "set()"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


class Code(str):
    """Text that is code already: `call` writes it as it is, not as a literal."""


def call(func: str, args=(), kwargs=None, indent=0, lead=0) -> str:
    """`func(a, b, k=v)` on one line, or one argument per line when the line would be too
    long. indent: the statement's indentation; lead: what precedes `func` on its line.
    Arguments are Code (written as they are) or values (written as literals)."""
    def text(v):
        return v if isinstance(v, Code) else literal(v)
    parts = [*map(text, args), *(f"{k}={text(v)}" for k, v in (kwargs or {}).items())]
    line = f"{func}({', '.join(parts)})"
    if indent + lead + len(line) <= WIDTH or not _STATE["wrap"]:
        return line
    pad = " " * (indent + 4)
    if len(pad) + len(", ".join(parts)) <= WIDTH:  # as black lays it out: one line inside
        return f"{func}(\n{pad}{', '.join(parts)}\n{' ' * indent})"
    return f"{func}(\n" + "".join(f"{pad}{part},\n" for part in parts) + " " * indent + ")"


def wrap_line(line: str, indent: int) -> str:
    """A statement written on one line, wrapped as `call` would where it is too long at
    `indent`: inside its first bracket, on one line or one argument per line."""
    body = line.lstrip()
    own = len(line) - len(body)
    if indent + len(line) <= WIDTH or "(" not in body:
        return line
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(body).readline))
    except (tokenize.TokenError, SyntaxError):
        return line
    span = _first_bracket(tokens)
    if span is None:
        return line
    (start, end), commas = span
    pad = " " * (own + 4)
    parts = [body[a:b].strip() for a, b in zip([start + 1, *[c + 1 for c in commas]],
                                                [*commas, end])]
    if indent + len(pad) + len(", ".join(parts)) <= WIDTH:
        inside = f"{pad}{', '.join(parts)}\n"
    else:
        inside = "".join(f"{pad}{part},\n" for part in parts)
    return f"{' ' * own}{body[:start + 1]}\n{inside}{' ' * own}{body[end:]}"


def _first_bracket(tokens):
    """((open, close) columns of the first round bracket on the line, its top-level commas)."""
    depth, start, commas = 0, None, []
    for tok in tokens:
        if tok.type != tokenize.OP:
            continue
        if tok.string in "([{":
            if depth == 0 and tok.string == "(" and start is None:
                start = tok.start[1]
            depth += 1
        elif tok.string in ")]}":
            depth -= 1
            if depth == 0 and start is not None:
                return (start, tok.start[1]), commas
        elif tok.string == "," and depth == 1 and start is not None:
            commas.append(tok.start[1])
    return None


def block_docstring(shared, ports, indent=4, separator=", ") -> list:
    """The first lines of a block's class / function docstring: which definition, which
    instances (wrapped where they are many), its ports."""
    members = separator.join(shared.members)
    text = f'"""Block {shared.block} ({members}): {ports}.'
    return textwrap.wrap(text, WIDTH - indent, initial_indent=" " * indent,
                         subsequent_indent=" " * indent, break_on_hyphens=False)


def mapping(name: str, items: dict, comment="") -> str:
    """`NAME = {...}` with one entry per line."""
    head = f"{name} = {{" + (f"  # {comment}" if comment else "")
    return "\n".join([head, *(f"    {literal(k)}: {literal(v)}," for k, v in items.items()), "}"])


def collection(name: str, values: set, comment="") -> str:
    """`NAME = {...}` (a set) on one line, or one entry per line."""
    line = f"{name} = {literal(set(values))}" + (f"  # {comment}" if comment else "")
    if len(line) <= WIDTH:
        return line
    head = f"{name} = {{" + (f"  # {comment}" if comment else "")
    return "\n".join([head, *(f"    {literal(v)}," for v in sorted(values)), "}"])


def constant(name, value, comment="") -> str:
    line = f"{name} = {literal(value)}" + (f"  # {comment}" if comment else "")
    if len(line) <= WIDTH or not isinstance(value, str):
        return line
    parts = textwrap.wrap(value, WIDTH - 8, drop_whitespace=False)  # a long text: in parts
    return "\n".join([f"{name} = (" + (f"  # {comment}" if comment else ""),
                      *(f"    {literal(part)}" for part in parts), ")"])


def join(*parts) -> str:
    """Top-level pieces of code, two blank lines apart (as PEP 8 has them)."""
    return "\n\n\n".join(p.strip("\n") for p in parts if p and p.strip())


def section(title: str) -> str:
    return f"# ---- {title} " + "-" * max(4, WIDTH - 11 - len(title))


def relative_root(script: Path, root: Path) -> str:
    """The Loom checkout as seen from the script's folder: relative where the two share a
    drive (the pair can move together), else absolute."""
    try:
        return Path(os.path.relpath(root, script.resolve().parent)).as_posix()
    except ValueError:  # another drive (Windows)
        return root.as_posix()


def docstring(plan, stem: str, flavour, training) -> str:
    script = f"{stem}.py"
    ins = "; ".join(p.describe() for p in plan.inputs)
    outs = "; ".join(p.describe() for p in plan.outputs)
    lines = [f"{plan.name}: {flavour.described}, exported from Loom by",
             f"    python main.py export GRAPH --python {script} --flavour {flavour.name}", "",
             "Inference, with the .npz files `python main.py infer` reads and writes:",
             f"    python {script} --input IN.npz --output OUT.npz", ""]
    if training.refused:
        lines += [*textwrap.wrap(f"--train is not available: {training.refused}.", WIDTH), ""]
    else:
        lines += ["Training as the graph's training section says (--input then runs the result):",
                  f"    python {script} --train [--epochs N] [--data PATH] [--save W.npz]", ""]
    lines += [f"Inputs: {ins}.", f"Outputs: {outs}.",
              f"Weights: {stem}.weights.npz beside this script",
              "(keyed by Loom's parameter names)."]
    return '"""' + "\n".join(lines) + '\n"""'


# ---- the runtime -------------------------------------------------------------------------------

NPZ = '''
def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def read_npz(path):
    """{key: array} of an .npz file (no pickles)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        fail(f"{path}: not a readable .npz file ({exc})")


def save_npz(path, arrays):
    """Written to a temporary file, then renamed: a failed write leaves no broken file."""
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as f:
        np.savez(f, **arrays)
    os.replace(temporary, path)


def read_inputs(path):
    """The model's inputs from an .npz keyed by input name, checked and cast."""
    arrays = read_npz(path)
    out = {}
    for name, (shape, dtype) in INPUTS.items():
        if name not in arrays:
            fail(f"{path}: no array {name!r}; the model's inputs are {', '.join(INPUTS)}")
        value = arrays[name]
        if value.shape[1:] != shape or not len(value):
            fail(f"{path}: {name}: shape {value.shape}, the model takes (N, *{shape})")
        out[name] = value.astype(dtype)
    return out


def infer(model, arrays, batch_size):
    """{output name: array} over all samples, `batch_size` at a time."""
    total = len(next(iter(arrays.values())))
    step = batch_size if BATCH_MAJOR else total  # an output over the whole batch: one run
    parts = [run(model, {k: v[lo:lo + step] for k, v in arrays.items()})
             for lo in range(0, total, step)]
    return {name: np.concatenate([part[name] for part in parts]) for name in OUTPUTS}
'''

EXISTING = '''
def existing(path):
    if not os.path.isfile(path):
        fail(f"{path}: no such file (give --data PATH, or set LOOM_ROOT to the Loom checkout)")
    return path


def default_data():
    if DATA_FILE is None:
        fail("--train: this graph reads a dataset file of its own: give it with --data PATH")
    return os.path.join(LOOM_ROOT, DATA_FILE)
'''

IMAGES = '''
def load_data(path):
    """(training, validation) as Loom splits the dataset (a seeded shuffle, the last
    VAL_FRACTION held out), the pixels scaled as Loom scales them."""
    arrays = read_npz(existing(path))
    if "x" not in arrays or "y" not in arrays:
        fail(f"{path}: a dataset .npz holds arrays x (inputs) and y (class ids)")
    x = arrays["x"].astype(np.float32) / SCALE
    x = x[:, None] if x.ndim == 3 else x  # bare (N, H, W) images get their channel axis
    y = arrays["y"].astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(x))
    n_val = int(round(len(x) * VAL_FRACTION))
    return (x[order[n_val:]], y[order[n_val:]]), (x[order[:n_val]], y[order[:n_val]])


def steps_per_epoch(data):
    return STEPS_PER_EPOCH or math.ceil(len(data[0]) / BATCH_SIZE)


def training_batches(data, epoch):
    """Shuffled batches, in a new (seeded) order each epoch: ({input: array}, target)."""
    x, y = data
    order = np.random.default_rng(SEED + epoch).permutation(len(x))
    for start in range(0, len(x), BATCH_SIZE):
        index = order[start:start + BATCH_SIZE]
        yield {INPUT: x[index]}, $target[index]


def validation_batches(data, size=512):
    x, y = data
    for start in range(0, len(x), size):
        yield {INPUT: x[start:start + size]}, $target[start:start + size]
'''

TEXT = '''
def load_data(path):
    """(training, validation) character ids, as Loom reads the text: the first
    1 - VAL_FRACTION trains, the rest validates; a character's id is its place in the
    sorted characters of the text."""
    with open(existing(path), "rb") as f:
        raw = lzma.decompress(f.read()) if path.endswith(".xz") else f.read()
    text = raw.decode("utf-8-sig").replace("\\r\\n", "\\n").replace("\\r", "\\n")
    chars = sorted(set(text))
    if len(chars) != VOCAB:
        fail(f"{path}: {len(chars)} different characters, the model was built for {VOCAB}")
    index = {c: i for i, c in enumerate(chars)}
    ids = np.array([index[c] for c in text], dtype=np.int64)
    n_train = len(ids) - int(round(len(ids) * VAL_FRACTION))
    return ids[:n_train], ids[n_train:]


def steps_per_epoch(ids):
    return STEPS_PER_EPOCH or max(1, (len(ids) - CONTEXT) // BATCH_SIZE)


def windows(ids, offsets):
    """Windows of CONTEXT ids starting at `offsets`, and the same windows one character on."""
    index = offsets[:, None] + np.arange(CONTEXT)
    return ids[index], ids[index + 1]


def training_batches(ids, epoch):
    """Windows drawn at random (seeded per epoch): ({input: ids}, target)."""
    rng = np.random.default_rng(SEED + epoch)
    while True:
        x, y = windows(ids, rng.integers(0, len(ids) - CONTEXT, size=BATCH_SIZE))
        yield {INPUT: x}, $target


def validation_batches(ids, count=256, size=64):
    """The same `count` windows every time, spread evenly over the text (as Loom scores it)."""
    count = max(1, min(count, (len(ids) - 1) // CONTEXT))
    last = len(ids) - CONTEXT - 1  # the last window's offset
    offsets = np.arange(count, dtype=np.int64) * last // max(1, count - 1)
    for start in range(0, len(offsets), size):
        x, y = windows(ids, offsets[start:start + size])
        yield {INPUT: x}, $target
'''

LOOP = '''
def evaluate(trainer, validation):
    """The loss (and accuracy) over the validation batches, weighted by their sizes."""
    totals, count = {}, 0
    for inputs, target in validation_batches(validation):
        for key, value in trainer.evaluate(inputs, target).items():
            totals[key] = totals.get(key, 0.0) + value * len(target)
        count += len(target)
    return ", ".join(f"validation {key} {value / count:.4f}" for key, value in totals.items())


def train(model, args):
    training, validation = load_data(args.data or default_data())
    trainer = Trainer(model)
    epochs = args.epochs or EPOCHS
    steps = args.steps or steps_per_epoch(training)
    print(f"epoch 0: {evaluate(trainer, validation)}", flush=True)
    step = 0
    for epoch in range(epochs):
        losses = []
        batches = itertools.islice(training_batches(training, epoch), steps)
        for i, (inputs, target) in enumerate(batches):
            loss = trainer.step(inputs, target, learning_rate(epoch + i / steps, step, epochs))
            if not math.isfinite(loss):
                fail(f"non-finite loss at step {step + 1}: try a lower learning rate")
            losses.append(loss)
            step += 1
        print(f"epoch {epoch + 1}: training loss {np.mean(losses):.4f}, "
              f"{evaluate(trainer, validation)}", flush=True)
'''

REFUSED = '''
def train(model, args):
    fail(f"--train: {TRAINING_REFUSED}")
'''

MAIN = '''
def arguments():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", metavar="IN.npz",
                        help=f"arrays keyed by input name ({', '.join(INPUTS)}), batch first")
    parser.add_argument("--output", metavar="OUT.npz", help="save the outputs, keyed by name")
    parser.add_argument("--weights", metavar="W.npz", default=WEIGHTS,
                        help="the weights (default: the exported ones beside this script)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N",
                        help="samples run at once (default 256)")
    parser.add_argument("--train", action="store_true", help="train first")
    parser.add_argument("--epochs", type=int, metavar="N", help="epochs (default: the graph's)")
    parser.add_argument("--steps", type=int, metavar="N",
                        help="optimizer steps per epoch (default: the graph's, or one pass)")
    parser.add_argument("--data", metavar="PATH", help="the training data (default: the "
                        "bundled file in the Loom checkout, $LOOM_ROOT)")
    parser.add_argument("--save", metavar="W.npz", help="save the trained weights here")
    return parser


def main(argv=None):
    parser = arguments()
    args = parser.parse_args(argv)
    if not (args.input or args.train):
        parser.error("give --input IN.npz to run the model, or --train")
    if any(n is not None and n < 1 for n in (args.batch_size, args.epochs, args.steps)):
        parser.error("--batch-size, --epochs and --steps take 1 or more")
    model = load_model(args.weights)
    if args.train:
        train(model, args)
        if args.save:
            save_weights(model, args.save)
            print(f"wrote {args.save}")
    if args.input:
        outputs = infer(model, read_inputs(args.input), args.batch_size)
        for name, value in outputs.items():
            print(f"{name}: {value.shape} {value.dtype}")
        if args.output:
            save_npz(args.output, outputs)
            print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
'''


def data_code(training) -> str:
    """The data section of a script that trains: how its data is read, split and batched."""
    text = IMAGES if training.data == "images" else TEXT
    variable = {"images": "x", "tokens": "x"}.get(training.target[0], "y")  # the loss's target
    return join(EXISTING, text.replace("$target", variable))


# Top-level names every script defines (its functions); a block's class or function takes
# another name
RUNTIME_NAMES = set(re.findall(r"^(?:def|class) (\w+)", NPZ + EXISTING + IMAGES + TEXT + LOOP
                               + REFUSED + MAIN, re.M))
