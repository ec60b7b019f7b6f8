"""Text for character-level language models: the bundled corpus or a UTF-8 file, its
vocabulary, and `TextDataset`, which serves (context, next-character) windows through the same
interface the trainer uses for image datasets (len, sample_shape, num_classes, split, batches,
normalise). Bad input raises `DatasetError` naming the text or the path."""
from __future__ import annotations

import functools
import gzip
import lzma
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..limits import MAX_DATASET_BYTES, show_bytes
from .dataset import DatasetError
from .registry import BUNDLED, open_file

TEXTS = {"shakespeare": "shakespeare.txt.xz"}  # bundled name -> file in resources/datasets
_STREAMS = {".xz": lzma.LZMAFile, ".gz": lambda f: gzip.GzipFile(fileobj=f)}  # read lazily


def text_names() -> list[str]:
    return sorted(TEXTS) + ["file"]


def load_text(name: str, path: str = "") -> str:
    """The whole text: a bundled corpus by name, or (name "file") the UTF-8 file at `path`."""
    if name == "file":
        return _read_file(path)
    if name not in TEXTS:
        raise DatasetError(f"unknown text {name!r}; known: {', '.join(text_names())}")
    return _bundled(name)


@functools.lru_cache(maxsize=None)
def _bundled(name: str) -> str:
    """Cached: the editor asks for the vocabulary on every edit, and the corpus never changes."""
    return _read_file(BUNDLED / TEXTS[name])


def _read_file(path) -> str:
    p = Path(str(path))
    with open_file(path, "text") as f:
        try:  # read up to the cap and one byte more: a compression bomb stops there
            stream = _STREAMS.get(p.suffix.lower(), lambda f: f)(f)
            raw = stream.read(MAX_DATASET_BYTES + 1)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            raise DatasetError(f"{p}: unreadable ({exc})") from None
    if len(raw) > MAX_DATASET_BYTES:
        raise DatasetError(f"{p}: more than {show_bytes(MAX_DATASET_BYTES)} once decompressed")
    return _decode(raw, p)


def _decode(raw: bytes, p: Path) -> str:
    """UTF-8 (a leading byte-order mark dropped), Windows and old Mac line ends made "\\n" so
    they do not add characters to the vocabulary."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.start + 1]
        raise DatasetError(f"{p}: not UTF-8 text (byte {exc.start} is {bad!r})") from None
    if "\0" in text:
        raise DatasetError(f"{p}: holds NUL characters: a binary file, not text")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text:
        raise DatasetError(f"{p}: the file is empty")
    return text


@dataclass(frozen=True)
class Vocabulary:
    """The characters a model reads and writes; a character's id is its index in `chars`.
    Kept with a trained model (to_json) so sampling decodes with the ids it was trained on."""
    chars: str

    def __post_init__(self):
        if not isinstance(self.chars, str) or not self.chars:
            raise DatasetError("a vocabulary needs at least one character")
        if len(set(self.chars)) != len(self.chars):
            raise DatasetError("a vocabulary lists a character twice")

    @classmethod
    def from_text(cls, text: str) -> "Vocabulary":
        return cls("".join(sorted(set(text))))

    def __len__(self):
        return len(self.chars)

    @functools.cached_property
    def _table(self) -> np.ndarray:
        """Code point -> id (-1 where not in the vocabulary): encoding is one lookup."""
        codes = np.array([ord(c) for c in self.chars])
        table = np.full(codes.max() + 1, -1, dtype=np.int64)
        table[codes] = np.arange(len(codes))
        return table

    def encode(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
        table = self._table
        ids = np.where(codes < len(table), table[np.minimum(codes, len(table) - 1)], -1)
        bad = np.flatnonzero(ids < 0)
        if bad.size:
            raise DatasetError(f"character {text[bad[0]]!r} at position {bad[0]} is not in the "
                               f"vocabulary of {len(self)} characters")
        return ids

    def decode(self, ids) -> str:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise DatasetError(f"id {int(ids[(ids < 0) | (ids >= len(self))][0])} is outside the "
                               f"vocabulary of {len(self)} characters")
        return "".join(np.array(list(self.chars))[ids])

    def to_json(self) -> list[str]:
        return list(self.chars)

    @classmethod
    def from_json(cls, chars) -> "Vocabulary":
        if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
            raise DatasetError("a vocabulary must be a list of one-character strings")
        return cls("".join(chars))


@dataclass
class TextDataset:
    """Every window of `context` characters is a sample; its targets are the same window moved
    on by one character. Windows are cut on the fly, so the text is stored once."""
    ids: np.ndarray  # 1-D int64 character ids
    vocab: Vocabulary
    context: int
    name: str = "text"
    eval_windows: int = 256  # how many windows evaluation looks at (spread over the text)

    def __post_init__(self):
        self.ids = np.asarray(self.ids, dtype=np.int64).ravel()
        self.context = int(self.context)
        if self.context < 1:
            raise DatasetError(f"{self.name}: the context must be at least 1 character")
        if len(self.ids) - self.context < 1:
            raise DatasetError(f"{self.name}: text of {len(self.ids)} characters is shorter than "
                               f"the context + 1 ({self.context + 1})")

    @classmethod
    def from_text(cls, text: str, context: int, name: str = "text", vocab: Vocabulary = None):
        """`vocab` defaults to the text's own characters; pass a trained model's to reuse it."""
        vocab = vocab or Vocabulary.from_text(text)
        return cls(vocab.encode(text), vocab, context, name)

    def __len__(self):
        return len(self.ids) - self.context

    @property
    def sample_shape(self):
        return (self.context,)

    @property
    def num_classes(self):
        return len(self.vocab)

    def split(self, val_fraction: float, seed: int = 0):
        """(train, validation) by position, as nanoGPT does: the first 1 - val_fraction of the
        text trains, the rest validates, so no validation window shares text with a training
        one. `seed` is unused (nothing is shuffled); it is taken for the image-dataset interface.
        Both parts keep the whole text's vocabulary."""
        n_val = int(round(len(self.ids) * float(val_fraction)))
        n_train = len(self.ids) - n_val
        for part, size in (("validation", n_val), ("training", n_train)):
            if size < self.context + 1:
                raise DatasetError(f"{self.name}: the {part} part ({size} of {len(self.ids)} "
                                   f"characters at val_fraction {val_fraction:g}) is shorter than "
                                   f"the context + 1 ({self.context + 1})")
        return self._part(self.ids[:n_train]), self._part(self.ids[n_train:])

    def _part(self, ids):
        return TextDataset(ids, self.vocab, self.context, self.name, self.eval_windows)

    def windows(self, offsets):
        """(x, y) for windows starting at `offsets`: y is x one character on (next-character
        targets). One gather each, no loop over windows."""
        index = np.asarray(offsets, dtype=np.int64)[:, None] + np.arange(self.context)
        return self.ids[index], self.ids[index + 1]

    def batches(self, batch_size: int, seed: int = 0, shuffle: bool = True, drop_last=False):
        if shuffle:
            return self._random_batches(int(batch_size), seed)
        return self._eval_batches(int(batch_size), drop_last)

    def _random_batches(self, batch_size, seed):
        """A pass worth (len // batch_size batches, at least one) of windows drawn at random
        with replacement; the same seed gives the same batches, which resuming relies on."""
        rng = np.random.default_rng(seed)
        for _ in range(max(1, len(self) // batch_size)):
            yield self.windows(rng.integers(0, len(self), size=batch_size))

    def eval_offsets(self) -> np.ndarray:
        """At most `eval_windows` windows spread evenly over the text, never overlapping, the
        same every time: evaluation then compares like with like from epoch to epoch."""
        fit = (len(self.ids) - 1) // self.context  # non-overlapping windows the text holds
        count = max(1, min(int(self.eval_windows), fit))
        if count == 1:
            return np.zeros(1, dtype=np.int64)
        return np.arange(count, dtype=np.int64) * (len(self) - 1) // (count - 1)

    def _eval_batches(self, batch_size, drop_last):
        offsets = self.eval_offsets()
        stop = len(offsets) - (len(offsets) % batch_size if drop_last else 0)
        for start in range(0, stop, batch_size):
            yield self.windows(offsets[start:start + batch_size])

    def normalise(self, stats=None):
        """Character ids are not standardised; the trainer may call this on any dataset."""
        return None
