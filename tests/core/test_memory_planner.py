"""The memory planner is a pure function of intervals: tested with no device (tinygrad-style)."""
from hypothesis import given, settings, strategies as st

from core.compiler.memory import (Buffer, assign_buffers, best_fit, distinct, last_reads,
                                  lower_bound, no_sharing, overlapping_pairs, plan_offsets)

intervals = st.lists(st.tuples(st.integers(1, 10_000), st.integers(0, 40), st.integers(0, 15)),
                     min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(intervals)
def test_no_two_live_buffers_overlap(spec):
    buffers = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(spec)]
    arena = plan_offsets(buffers)
    assert overlapping_pairs(buffers) == []
    assert all(b.offset % 64 == 0 and b.offset + b.size <= arena for b in buffers)
    assert lower_bound(buffers) <= arena <= no_sharing(buffers)


def test_disjoint_lifetimes_share_one_slot():
    buffers = [Buffer("a", 1000, 0, 1), Buffer("b", 1000, 2, 3), Buffer("c", 1000, 4, 5)]
    assert plan_offsets(buffers) == lower_bound(buffers) == 1024


def test_best_fit_uses_the_smallest_gap():
    big = Buffer("big", 4096, 0, 10)
    hole_small = Buffer("s", 128, 0, 2)
    hole_large = Buffer("l", 1024, 0, 2)
    late = Buffer("late", 128, 5, 6)  # fits where s was, not in l's place
    plan_offsets([big, hole_small, hole_large, late])
    assert overlapping_pairs([big, hole_small, hole_large, late]) == []
    assert late.offset + late.size <= max(b.offset + b.size for b in (big, hole_small, hole_large))


class _Value:
    """Stands in for a scheduled node: lifetimes need its name and nothing of the op table."""

    def __init__(self, name):
        self.name = name


def test_lifetimes_and_in_place_sharing_of_a_hand_built_schedule():
    a, b, c, d = (_Value(n) for n in "abcd")
    steps = [a, b, c, d]
    reads = {a: [], b: [a], c: [b], d: [a, c]}  # the values each step reads (and may overwrite)
    last = last_reads(steps, {d}, reads.get)
    assert last == {a: 3, b: 2, c: 3, d: 4}  # the result d stays valid past the last step
    sizes, dtypes = dict.fromkeys(steps, 256), dict.fromkeys(steps, "float32")
    buffers = assign_buffers(steps, last, sizes, dtypes, overwritable=reads.get)
    assert buffers[b] is not buffers[a]  # a is still read at step 3
    assert buffers[c] is buffers[b] and buffers[d] is buffers[a]  # each input dies where it is overwritten
    assert plan_offsets(distinct(buffers, {})) == 512
    alone = assign_buffers(steps, last, sizes, dtypes)  # no in-place: one buffer per value
    assert len(distinct(alone, {})) == 4


def _reference_plan(buffers):
    """The planner as first written, O(n²): each buffer, largest first, into the smallest gap
    between the placed buffers whose lifetimes overlap it, sorted by offset."""
    placed = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        best, best_gap, cursor = None, None, 0
        for other in sorted((p for p in placed if p.overlaps_in_time(buf)), key=lambda b: b.offset):
            gap = other.offset - cursor
            if gap >= buf.size and (best_gap is None or gap < best_gap):
                best, best_gap = cursor, gap
            cursor = max(cursor, other.offset + other.size)
        buf.offset = cursor if best is None else best
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)


# few distinct sizes and long lifetimes make ties, shared gaps and nested lifetimes common
many_intervals = st.lists(st.tuples(st.sampled_from([64, 128, 1000, 4096, 4100, 9000]) | st.integers(1, 20_000),
                                    st.integers(0, 300), st.integers(0, 60) | st.integers(0, 300)),
                          min_size=1, max_size=150)


@settings(max_examples=300, deadline=None)
@given(st.one_of(intervals, many_intervals))
def test_segment_tree_planner_places_every_buffer_as_the_quadratic_one(spec):
    """Same offsets for every buffer, so the same arena, as the reference best fit."""
    fast = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(spec)]
    slow = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(spec)]
    assert plan_offsets(fast) == _reference_plan(slow)
    assert [b.offset for b in fast] == [b.offset for b in slow]


def test_best_fit_takes_the_smallest_gap_lowest_first_else_the_end():
    ranges = [(0, 64), (192, 256), (320, 448), (576, 640)]  # gaps: 128 at 64, 64 at 256, 128 at 448
    assert best_fit(ranges, 64) == 256
    assert best_fit(ranges, 128) == 64
    assert best_fit(ranges, 192) == 640
    assert best_fit([(0, 128), (64, 256), (320, 384)], 64) == 256  # overlapping ranges merge
    assert best_fit([], 64) == 0


@settings(max_examples=200, deadline=None)
@given(st.one_of(intervals, many_intervals))
def test_trying_other_orders_never_loses_to_size_order(spec):
    from core.compiler.memory import plan_arena
    tried = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(spec)]
    by_size = [Buffer(f"b{i}", size, first, first + length) for i, (size, first, length) in enumerate(spec)]
    arena = plan_arena(tried, tolerance=0.0)
    assert overlapping_pairs(tried) == []
    assert lower_bound(tried) <= arena <= plan_offsets(by_size)
    assert all(b.offset + b.size <= arena for b in tried)


def test_a_reshape_shares_the_buffer_of_a_value_read_again_later():
    """A reshape's output is its input's bytes: it takes that buffer even where the input is
    read after it (GELU's output feeds a reshape in the forward pass and its own gradient in
    the backward). An in-place op on either may not overwrite it while the other is read."""
    import numpy as np
    import core
    x = core.Variable("x")
    h = core.tanh(x)
    flat = core.reshape(h, (-1,))
    grown = core.exp(flat)  # may overwrite flat's buffer only where h is dead
    late = h * 2.0  # reads h after the reshape
    out = core.reduce_sum(grown) + core.reduce_sum(late)
    feed = {x: np.random.default_rng(0).standard_normal((6, 5))}
    ex = core.Executor([out, flat, late])
    got = ex.run(feed)
    plan = ex.plan
    assert plan.buffers[flat] is plan.buffers[h]
    assert plan.buffers[grown] is not plan.buffers[h]
    want = core.Executor([out, flat, late], inplace=False).run(feed)
    for a, b in zip(got, want):
        assert a.tobytes() == b.tobytes()
    np.testing.assert_allclose(got[1], np.tanh(feed[x]).reshape(-1))
