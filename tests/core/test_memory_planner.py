"""The memory planner is a pure function of intervals: tested with no device (tinygrad-style)."""
from hypothesis import given, settings, strategies as st

from core.compiler.memory import (Buffer, assign_buffers, distinct, last_reads, lower_bound,
                                  no_sharing, overlapping_pairs, plan_offsets)

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
