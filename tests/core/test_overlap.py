"""The split of a data-parallel step's waits into communication the backward pass did not
hide and skew between the ranks (core/overlap.py), on timelines written out by hand, and the
MPICH settings that let a started bucket travel without its peer's help."""
import pytest

from core import distributed, overlap


def _step(*records):
    return [list(r) for r in records]


def test_a_wait_before_the_last_rank_started_is_skew_and_after_it_exposed_communication():
    # bucket 0: rank 1 starts it at t=5, rank 0 waits from 4 to 6 -> 1 s skew, 1 s exposed;
    # rank 1 waits from 7 to 7.5: all after the start -> 0.5 exposed
    # bucket 1: both started by 2, rank 0 waits 8..8 (done), rank 1 waits 8..9 -> 1 exposed
    rank0 = _step((1, 4, 6), (2, 8, 8))
    rank1 = _step((5, 7, 7.5), (1, 8, 9))
    waits = overlap.waits([rank0, rank1], buckets=2)
    assert waits[0] == pytest.approx(overlap.Waits(exposed=(1 + 0.5) / 2, skew=1 / 2))
    assert waits[1] == pytest.approx(overlap.Waits(exposed=1 / 2, skew=0))


def test_waits_are_averaged_per_step_by_bucket_position():
    one_step = [(0, 1, 2), (0, 3, 3)]  # bucket 0 waits 1 s after both started; bucket 1 none
    timeline = _step(*one_step, *one_step, *one_step)
    waits = overlap.waits([timeline, timeline], buckets=2)
    assert [w.exposed for w in waits] == pytest.approx([1.0, 0.0])


def test_a_bucket_already_summed_when_waited_for_costs_nothing():
    waits = overlap.waits([_step((0, 5, 5)), _step((1, 6, 6))], buckets=1)
    assert waits == [overlap.Waits(0.0, 0.0)]


@pytest.mark.parametrize("timelines, buckets, message", [
    ([_step((0, 1, 1)), _step()], 1, "different numbers"),
    ([_step((0, 1, 1), (0, 1, 1), (0, 1, 1))], 2, "whole steps"),
    ([[[0, None, None]]], 1, "never waited"),
])
def test_inconsistent_timelines_are_refused(timelines, buckets, message):
    with pytest.raises(ValueError, match=message):
        overlap.waits(timelines, buckets)


def test_hidden_fraction_is_the_share_of_the_cost_not_waited_for():
    assert overlap.hidden_fraction(0.1, 1.0) == pytest.approx(0.9)
    assert overlap.hidden_fraction(2.0, 1.0) == 0.0  # waited longer than the transfer costs
    assert overlap.hidden_fraction(0.0, 0.0) == 0.0  # nothing to hide


def test_mpich_settings_fill_in_only_what_the_user_did_not_set():
    env = {"MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_NUM_CELLS": "32"}
    distributed.apply_mpich_settings(env)
    assert env["MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_NUM_CELLS"] == "32"
    cell = int(env["MPIR_CVAR_CH4_SHM_POSIX_IQUEUE_CELL_SIZE"])
    # MPICH refuses to start unless its pack buffer holds a whole cell
    assert cell >= 64 << 10 and int(env["MPIR_CVAR_CH4_PACK_BUFFER_SIZE"]) >= cell
