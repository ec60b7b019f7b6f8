import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "resources" / "examples"


def cli_command(*args, device="numpy") -> list[str]:
    """`python main.py ARGS`; on the stand-in device, its wrapper with `--backend standin`."""
    if device == "numpy":
        return [sys.executable, str(ROOT / "main.py"), *map(str, args)]
    return [sys.executable, str(ROOT / "tests" / "standin_main.py"), *map(str, args), "--backend", device]


def run_cli(*args, timeout=300, device="numpy", **kw):
    """Run `python main.py ARGS` the way a user would, from the repo root."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cli_command(*args, device=device), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env, **kw)


def events(stdout):
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


@pytest.fixture
def small_digits(tmp_path):
    """The digits MLP example with a short training section (tests stay fast)."""
    data = json.loads((EXAMPLES / "digits_mlp.loom.json").read_text())
    data["training"].update(epochs=2, batch_size=64, seed=3)
    path = tmp_path / "digits.loom.json"
    path.write_text(json.dumps(data))
    return path
