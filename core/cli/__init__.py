"""The headless command line: `train`, `check`, `plan` (and `open`, handed to the editor)."""
from .main import main  # noqa: F401
