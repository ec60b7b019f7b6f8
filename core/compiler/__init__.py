"""Compiler passes, each a pure function of a graph or schedule (testable with no device)."""
from .pipeline import Plan, compile_plan  # noqa: F401
