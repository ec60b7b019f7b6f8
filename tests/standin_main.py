"""`python tests/standin_main.py ARGS` = `python main.py ARGS` with the strict stand-in device
registered, so CLI tests can train on it with `--backend standin` in a real subprocess."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import standin  # noqa: E402

standin.register()

from core.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
