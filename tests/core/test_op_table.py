"""The op table itself: every entry has its rules, names are unique, kinds are known."""
import pytest

from core.ops import OPS
from core.ops.base import KINDS, OpDef, register

SOURCES = {"placeholder", "parameter", "constant"}


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_all_rules(name):
    op = OPS[name]
    assert op.kind in KINDS
    assert callable(op.shape), f"{name} has no shape rule"
    assert callable(op.dtype), f"{name} has no dtype rule"
    assert callable(op.gradient), f"{name} has no gradient rule"
    if name not in SOURCES:
        assert callable(op.compute), f"{name} has no compute"
    assert op.doc, f"{name} has no description"


def test_duplicate_registration_is_an_error():
    with pytest.raises(ValueError, match="twice"):
        register(OpDef("add", "broadcast", lambda s, a: s[0], None, None))
