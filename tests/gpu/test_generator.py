"""The kernel generator checked without a GPU: the numpy evaluation of each generated program
equals running the group's ops one by one with the numpy backend.

Tolerance: none — results must be bit-identical (and of the same dtype). Each IR op is the
numpy call the op's compute makes, in the same dtype and the same order (sigmoid as
0.5·(1 + tanh(x/2)) in three roundings, python scalars converted to the array's dtype as
numpy's weak scalars are), and a trailing reduction sums a contiguous array over the same axes
with numpy's own add.reduce, so not even summation order differs. The CUDA kernels differ from
this only in libm (exp, log, tanh, pow) and summation order; test_launch.py checks those on
a device within 1e-5."""
import numbers

import numpy as np
import pytest

from core.executor import Executor
from core.ops.base import OPS, scratch
import core

from gpu.csrc import literal
from gpu.emit import layout, kernel_for
from gpu.interp import evaluate
from gpu.kernels.ewise import EXAMPLES
from gpu.lower import lower_group, lower_op

from .cases import hand_built_plans
from .plans import example_plans, fusible_tails, reference_values
from .sources import group_programs


def _inputs(nodes, values):
    return [values[n] if n in values else np.asarray(n.attrs["value"]) for n in nodes]


def _check_plan(plan, feed):
    values = reference_values(plan, feed)
    checked = 0
    for tail in fusible_tails(plan):
        lowered = lower_group(tail, plan)
        assert lowered is not None, f"declined {[n.op for n in tail]}"
        program, inputs = lowered
        got, want = evaluate(program, _inputs(inputs, values)), values[tail[-1]]
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want, err_msg=str([n.op for n in tail]))
        checked += 1
    return checked


@pytest.mark.parametrize("label", [label for label, _, _ in example_plans()])
def test_example_groups_equal_unfused_numpy(label):
    _, plan, feed = next(p for p in example_plans() if p[0] == label)
    assert _check_plan(plan, feed) > 0


@pytest.mark.parametrize("label", [label for label, _, _ in hand_built_plans()])
def test_hand_built_groups_equal_unfused_numpy(label):
    _, plan, feed = next(p for p in hand_built_plans() if p[0] == label)
    assert _check_plan(plan, feed) > 0


def test_hand_built_graphs_make_long_groups():
    """The hand-built cases are there for fusion: several groups of 3+ ops, with reductions."""
    tails = [tail for _, tail, *_ in group_programs()]
    assert sum(len(t) >= 3 for t in tails) >= 8
    assert any(t[-1].op == "reduce_mean" and len(t) > 3 for t in tails)
    assert any(t[-1].op == "sum_to_like" and len(t) > 2 for t in tails)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("op_name", sorted(EXAMPLES))
def test_single_op_programs_equal_the_op_compute(op_name, dtype):
    shapes, attrs, out_shape = EXAMPLES[op_name]
    rng = np.random.default_rng(0)
    ins = [s if isinstance(s, numbers.Number) else (rng.random(s) + 0.5).astype(dtype)
           for s in shapes]
    want = np.empty(out_shape, dtype)
    opdef = OPS[op_name]
    if opdef.workspace:
        opdef.compute(np, ins, dict(attrs), want, scratch(opdef.workspace, np, ins, attrs, want))
    else:
        opdef.compute(np, ins, dict(attrs), want)
    program, positions = lower_op(op_name, ins, dict(attrs), out_shape, dtype)
    np.testing.assert_array_equal(evaluate(program, [ins[k] for k in positions]), want)


def test_unsupported_groups_are_declined():
    x = core.placeholder("x", (4, 3))
    masked = core.dropout(core.exp(x), 0.5, seed=1) * 2.0  # random op in the group
    ids = core.placeholder("i", (4, 3), dtype="int64")
    as_int = core.Node("add", [ids, ids])  # integer arithmetic: not generated
    ex = Executor([masked, as_int], backend="numpy")
    ex.run({x: np.ones((4, 3), np.float32), ids: np.ones((4, 3), np.int64)})
    plan = ex.plan
    declined = [[n.op for n in tail] for tail in fusible_tails(plan) if lower_group(tail, plan) is None]
    assert ["add"] in declined and any("dropout_mask" in ops for ops in declined)


def test_external_inputs_are_deduplicated_and_aliased():
    x = core.placeholder("x", (3, 4))
    y = core.exp(x) * x + x
    ex = Executor([y], backend="numpy")
    ex.run({x: np.ones((3, 4), np.float32)})
    program, inputs = lower_group(ex.plan.groups[0], ex.plan)
    assert inputs == [x] and program.in_dtypes == ("float32",)


def test_layout_drops_unit_axes_and_merges_alike_neighbours():
    dims = layout((8, 1, 4, 3), [(8, 1, 4, 3), (4, 1), (3,)])
    assert [d.size for d in dims] == [8, 4, 3]
    dims = layout((8, 4, 3), [(8, 4, 3), (1,)])
    assert [d.size for d in dims] == [96]  # every load treats all three alike
    dims = layout((6, 5, 4), [(6, 5, 4)], reduced=(0, 2))
    assert [(d.size, d.reduced) for d in dims] == [(6, True), (5, False), (4, True)]


@pytest.mark.parametrize("value", [0.1, -2.5, 1e-8, 3.4e38, -0.0, 1 / 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_literals_round_trip_exactly(value, dtype):
    text = literal(value, dtype).strip("()").rstrip("f")
    assert np.asarray(float(text), dtype) == np.asarray(value, dtype)


def test_non_finite_literals_come_from_bits():
    assert literal(np.inf, "float32") == "__int_as_float(0x7f800000)"
    assert literal(-np.inf, "float64") == "__longlong_as_double((long long)0xfff0000000000000ULL)"


def test_every_ir_op_has_a_c_spelling_and_a_numpy_meaning():
    from gpu.emit import C_OPS
    from gpu.interp import NUMPY
    from gpu.ir import BINARY, TERNARY, UNARY
    assert set(C_OPS) == set(UNARY + BINARY + TERNARY)
    assert set(NUMPY) | {"cast", "gt0", "select"} == set(UNARY + BINARY + TERNARY)


def test_equal_programs_get_equal_sources_and_names():
    a = group_programs()[0][3]
    assert kernel_for(a).source == kernel_for(a).source
    assert kernel_for(a).name in kernel_for(a).source
