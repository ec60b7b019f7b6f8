"""Text data: the bundled corpus, text files, the vocabulary, position splits and the
(context, next-character) windows the trainer batches."""
import gzip
import lzma

import numpy as np
import pytest

from core.data import DatasetError
from core.data.text import TextDataset, Vocabulary, load_text, text_names


@pytest.fixture
def default_device():
    """Pure host data, no backend involved: run once, not once per backend (the core
    conftest's autouse fixture of this name is overridden here)."""
    return "numpy"


def dataset(n=1000, context=8, **kw):
    """A text whose id at each position is the position itself, so any window's first id is
    its offset in the text."""
    chars = "".join(chr(0x100 + i) for i in range(n))
    return TextDataset(np.arange(n), Vocabulary(chars), context, "t", **kw)


# ---- vocabulary ------------------------------------------------------------------------------

def test_vocabulary_round_trip():
    text = "To be, or not to be: that is the question.\n"
    vocab = Vocabulary.from_text(text)
    assert vocab.chars == "".join(sorted(set(text))) and len(vocab) == len(set(text))
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and ids.shape == (len(text),)
    assert vocab.decode(ids) == text
    assert vocab.decode(ids[:3].tolist()) == "To "
    assert Vocabulary.from_json(vocab.to_json()) == vocab


def test_encode_names_the_unknown_character_and_its_position():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(DatasetError, match=r"'z' at position 3"):
        vocab.encode("abcz")
    with pytest.raises(DatasetError, match="'\u2014' at position 1"):  # beyond the table
        Vocabulary.from_text("ab").encode("a\u2014")


@pytest.mark.parametrize("bad", [["a", "a"], ["ab"], "abc", [], [1]])
def test_vocabulary_from_json_validates(bad):
    with pytest.raises(DatasetError):
        Vocabulary.from_json(bad)


def test_decode_refuses_ids_outside_the_vocabulary():
    with pytest.raises(DatasetError, match="id 3"):
        Vocabulary("abc").decode([0, 3])


# ---- dataset interface ----------------------------------------------------------------------

def test_length_shape_and_classes():
    ds = dataset(n=100, context=10)
    assert len(ds) == 90 and ds.sample_shape == (10,) and ds.num_classes == 100
    assert ds.normalise() is None and ds.normalise((0.0, 1.0)) is None
    assert np.array_equal(ds.ids, np.arange(100))  # normalise changed nothing


@pytest.mark.parametrize("n", [1, 8])
def test_text_shorter_than_context_plus_one_is_refused(n):
    with pytest.raises(DatasetError, match=f"text of {n} characters is shorter than the context"):
        dataset(n=n, context=8)
    assert len(dataset(n=9, context=8)) == 1


def test_split_is_by_position():
    ds = dataset(n=1000, context=8)
    train, val = ds.split(0.1, seed=123)
    assert np.array_equal(train.ids, ds.ids[:900]) and np.array_equal(val.ids, ds.ids[900:])
    assert train.vocab is ds.vocab and val.vocab is ds.vocab
    again_train, _ = ds.split(0.1, seed=7)  # the seed does not matter
    assert np.array_equal(again_train.ids, train.ids)


@pytest.mark.parametrize("fraction, part",
                         [(0.0, "validation"), (0.005, "validation"), (0.995, "training")])
def test_split_refuses_a_part_too_short_for_one_window(fraction, part):
    with pytest.raises(DatasetError, match=f"the {part} part"):
        dataset(n=1000, context=8).split(fraction)


# ---- batches ---------------------------------------------------------------------------------

def test_random_batches_are_next_character_windows():
    ds = dataset(n=500, context=16)
    batches = list(ds.batches(32, seed=3))
    assert len(batches) == len(ds) // 32
    for x, y in batches:
        assert x.shape == y.shape == (32, 16) and x.dtype == y.dtype == np.int64
        offsets = x[:, 0]  # ids are positions, so a window's first id is its offset
        assert offsets.min() >= 0 and offsets.max() < len(ds)
        np.testing.assert_array_equal(x, ds.ids[offsets[:, None] + np.arange(16)])
        np.testing.assert_array_equal(y, ds.ids[offsets[:, None] + np.arange(16) + 1])


def test_windows_on_real_text_shift_by_one_character():
    text = "hello world, hello loom\n" * 10
    ds = TextDataset.from_text(text, context=5)
    x, y = next(ds.batches(4, seed=0))
    for xi, yi in zip(x, y):
        window, target = ds.vocab.decode(xi), ds.vocab.decode(yi)
        assert window[1:] == target[:-1] and window + target[-1] in text


def test_random_batches_are_seeded():
    ds = dataset(n=2000, context=8)
    first = [x for x, _ in ds.batches(16, seed=5)]
    again = [x for x, _ in ds.batches(16, seed=5)]
    other = [x for x, _ in ds.batches(16, seed=6)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_a_text_with_fewer_windows_than_a_batch_still_gives_one_batch():
    x, y = next(iter(dataset(n=20, context=8).batches(64)))
    assert x.shape == (64, 8)


def test_evaluation_windows_are_fixed_spread_and_disjoint():
    ds = dataset(n=10_000, context=32, eval_windows=100)
    batches = list(ds.batches(30, shuffle=False))
    assert [len(x) for x, _ in batches] == [30, 30, 30, 10]
    assert [len(x) for x, _ in ds.batches(30, shuffle=False, drop_last=True)] == [30, 30, 30]
    again = list(ds.batches(30, shuffle=False, seed=9))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again))
    offsets = np.concatenate([x[:, 0] for x, _ in batches])
    assert offsets[0] == 0 and offsets[-1] == len(ds) - 1  # the whole text is covered
    assert np.all(np.diff(offsets) >= 32)  # no two windows share a character of input
    for x, y in batches:
        np.testing.assert_array_equal(y, x + 1)


def test_evaluation_windows_are_capped_by_what_fits():
    ds = dataset(n=100, context=10, eval_windows=256)
    offsets = ds.eval_offsets()
    assert len(offsets) == 9  # (100 - 1) // 10
    assert np.all(np.diff(offsets) >= 10) and offsets[-1] + 10 < 100
    assert len(dataset(n=11, context=10).eval_offsets()) == 1


# ---- loading ---------------------------------------------------------------------------------

def test_bundled_shakespeare():
    text = load_text("shakespeare")
    assert 1_000_000 <= len(text) <= 1_200_000 and text.isascii()
    assert "\r" not in text and "\n\n\n" not in text
    assert text.startswith("FIRST CITIZEN:\nBefore we proceed any further, hear me speak.")
    assert "MACBETH:\n" in text and "Is this a dagger which I see before me," in text
    assert "gutenberg" not in text.lower()
    assert len(Vocabulary.from_text(text)) == 66
    assert load_text("shakespeare") is text  # cached
    assert text_names() == ["shakespeare", "file"]


@pytest.mark.parametrize("suffix, pack",
                         [(".txt", lambda b: b), (".xz", lzma.compress), (".gz", gzip.compress)])
def test_text_file(tmp_path, suffix, pack):
    path = tmp_path / f"play{suffix}"
    path.write_bytes(pack("\ufeffROMEO:\r\nBut soft, what light\u2014\r\n".encode("utf-8")))
    assert load_text("file", str(path)) == "ROMEO:\nBut soft, what light\u2014\n"


@pytest.mark.parametrize("content, words", [
    (None, "does not exist"),
    (b"", "empty"),
    (bytes(range(256)) * 4, "not UTF-8"),
    (b"abc\0\0\0def", "NUL"),
])
def test_bad_text_files_name_the_path(tmp_path, content, words):
    path = tmp_path / "bad.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DatasetError, match=words) as err:
        load_text("file", str(path))
    assert str(path) in str(err.value)


def test_corrupt_compressed_file_names_the_path(tmp_path):
    path = tmp_path / "broken.xz"
    path.write_bytes(b"not xz at all")
    with pytest.raises(DatasetError, match="broken.xz"):
        load_text("file", str(path))


def test_unknown_text_lists_the_known_ones():
    with pytest.raises(DatasetError, match="known: .*shakespeare"):
        load_text("beowulf")
