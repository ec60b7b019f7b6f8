"""Compiler passes, each a pure function of a graph or schedule (testable with no device)."""
from .checkpoint import CHECKPOINT_MODES  # noqa: F401
from .pipeline import Plan, compile_plan  # noqa: F401
