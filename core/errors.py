"""Loom's error types. Each names the place (node, op, file, path) and the problem."""


class LoomError(Exception):
    """Base of every error Loom raises on bad input."""


class ShapeError(LoomError):
    """A shape or dtype rule rejected its inputs (raised by rules, re-raised naming the node)."""


class GraphError(LoomError):
    """A graph is malformed: a cycle, an unknown op, a missing gradient rule."""


class FeedError(LoomError):
    """A placeholder was not fed, or fed an array of the wrong shape."""
