"""Writing new text with a trained character model, one character at a time.

Each step feeds the last `context` characters (fewer while the text is shorter), reads the
logits of the last position, and draws the next character from their softmax at a
temperature. The model is the graph's evaluation build with the text node's context set to
the current length, compiled once per length (PositionalEmbedding's table is sized by its
own `length`, so the same parameters fit every length). Blocks are flattened first: the text
node and the embeddings may sit inside one (their ids are then paths, `front/text`)."""
from __future__ import annotations

import numpy as np

from . import backend as backends, layers
from .errors import LoomError
from .executor import Executor
from .document import GraphDocument
from .layers.builder import resolve_path
from .layers.flatten import flatten
from .layers.sequence_layers import vocabulary


class TextSampler:
    def __init__(self, doc, params: dict, backend="numpy", shared=False):
        """`params`: parameter name -> array, e.g. a checkpoint's (host arrays, moved to the
        backend here), or with shared=True the trainer's own backend arrays, read as they
        are (they are updated in place as training goes on)."""
        self.doc = flatten(doc)  # the plain graph the engine builds (a copy if it has blocks)
        self.node = _text_node(self.doc)
        attrs = {**_defaults("TextDataset"), **self.node.attrs}
        attrs["path"] = resolve_path(attrs["path"], getattr(doc, "base_dir", None))
        self.context = attrs["context"]
        self.vocab = vocabulary(attrs)
        self.backend = backends.get(backend)
        self.params = params if shared else {k: self.backend.asarray(v) for k, v in params.items()}
        self._models: dict[int, tuple] = {}  # length -> (built, executor)

    def check_checkpoint(self, source):
        """Every parameter of the model has a value of its shape in `params` (`source` names
        where they came from in the message)."""
        built, _ = self._model(self.context)
        for p in built.parameters:
            value = self.params.get(p.name)
            if value is None:
                raise LoomError(f"{source}: no value for parameter {p.name}: "
                                f"is it a checkpoint of this graph?")
            if tuple(value.shape) != tuple(p.attrs["shape"]):
                raise LoomError(f"{source}: parameter {p.name} has shape {tuple(value.shape)}, "
                                f"the graph needs {tuple(p.attrs['shape'])}")

    def _model(self, length):
        if length not in self._models:
            doc = GraphDocument.from_dict(self.doc.to_dict())  # a copy without subscribers
            doc.base_dir = getattr(self.doc, "base_dir", None)
            doc.nodes[self.node.id].attrs["context"] = length
            built = layers.build(doc, training=False)
            self._models[length] = (built, Executor([built.logits], backend=self.backend.name))
        return self._models[length]

    def next_logits(self, ids) -> np.ndarray:
        """Logits (vocab,) for the character after `ids` (its last `context` ids are read)."""
        window = np.asarray(ids[-self.context:], dtype=np.int64)[None, :]
        built, ex = self._model(window.shape[1])
        feed = {built.feed_of("data"): window, **{p: self.params[p.name] for p in built.parameters}}
        logits = ex.run(feed)[0]
        return np.asarray(logits, dtype=np.float64).reshape(-1, logits.shape[-1])[-1]

    def sample(self, prompt: str, chars: int, temperature=1.0, seed=0, top_k=None) -> str:
        """`prompt` followed by `chars` new characters."""
        if not prompt:
            raise LoomError("the prompt is empty: give at least one character")
        if not temperature > 0:
            raise LoomError(f"temperature must be above 0, got {temperature}")
        ids = list(self.vocab.encode(prompt))
        rng = np.random.default_rng(seed)
        for _ in range(int(chars)):
            ids.append(draw(self.next_logits(ids), temperature, rng, top_k))
        return self.vocab.decode(ids)


def draw(logits, temperature, rng, top_k=None) -> int:
    """One id drawn from softmax(logits / temperature), among the top_k largest if given."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if top_k:
        z[z < np.sort(z)[-min(int(top_k), len(z))]] = -np.inf
    p = np.exp(z - z.max())
    return int(rng.choice(len(p), p=p / p.sum()))


def _text_node(flat):
    nodes = [n for n in flat.nodes.values() if n.kind == "TextDataset"]
    if not nodes:
        raise LoomError("the graph has no TextDataset node: only text models write text")
    return nodes[0]


def _defaults(kind):
    return {a.name: a.default for a in layers.LAYERS[kind].attrs}


def is_text_model(doc) -> bool:
    """Whether the graph reads a TextDataset, at the top level or inside a block (the editor
    asks while blocks are being edited: a broken one is no error here)."""
    return any(n.kind == "TextDataset" for n in flatten(doc, strict=False).nodes.values())


def sample_prompt(dataset) -> str:
    """Where a sample during training starts: the first whole line of the validation text
    (in a play, a speaker's name), which the model has not been trained on."""
    text = dataset.vocab.decode(dataset.ids[:400])
    lines = text.split("\n")[1:-1]  # the first and last may be cut off
    line = next((line for line in lines if line.strip()), "")
    return line[:40] + "\n"
