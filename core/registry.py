"""The one rule every registry (ops, layers, backends, optimizers, datasets) shares:
a name is registered once; a second definition is an error, not a silent replacement."""
from __future__ import annotations


def add_unique(table: dict, name: str, value, what: str):
    """`table[name] = value`, refusing a name already there; returns `value`."""
    if name in table:
        raise ValueError(f"{what} {name!r} is registered twice")
    table[name] = value
    return value
