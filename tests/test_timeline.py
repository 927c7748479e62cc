"""Tests for jaxticket.train.timeline: the static cut of a run into scanned segments."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxticket.train.timeline import Group, eval_steps, plan


@st.composite
def runs(draw):
    """``(steps, eval_every, snapshot_steps)`` with snapshots anywhere in ``[0, steps]``."""
    steps = draw(st.integers(1, 120))
    eval_every = draw(st.integers(1, 40))
    snapshots = draw(st.lists(st.integers(0, steps), max_size=4))
    return steps, eval_every, tuple(snapshots)


def segments(groups: list[Group]) -> list[tuple[int, int, Group]]:
    """Every segment as ``(start, end, group)``, in order."""
    out = []
    for g in groups:
        for i in range(g.count):
            out.append((g.start + i * g.length, g.start + (i + 1) * g.length, g))
    return out


@given(runs())
def test_segments_cover_the_run_exactly(run):
    steps, eval_every, snapshots = run
    segs = segments(plan(steps, eval_every, snapshots))
    assert segs[0][0] == 0
    assert segs[-1][1] == steps
    for (_, end, _), (start, _, _) in zip(segs[:-1], segs[1:], strict=True):
        assert end == start  # no gap, no overlap
    assert all(end > start for start, end, _ in segs)
    assert all(g.count >= 1 and g.length >= 1 for _, _, g in segs)


@given(runs())
def test_cuts_are_the_evaluation_and_snapshot_steps(run):
    steps, eval_every, snapshots = run
    segs = segments(plan(steps, eval_every, snapshots))
    evals = set(eval_steps(steps, eval_every)[1:])
    assert [end for _, end, _ in segs] == sorted(evals | {s for s in snapshots if s > 0})
    for _, end, g in segs:
        assert g.evaluate == (end in evals)
        if g.snapshot is not None:
            assert g.count == 1
            assert snapshots[g.snapshot] == end
    snapshot_ends = {end for _, end, g in segs if g.snapshot is not None}
    assert snapshot_ends == {s for s in snapshots if s > 0}


@given(runs())
def test_groups_merge_equal_neighbours_maximally(run):
    steps, eval_every, snapshots = run
    groups = plan(steps, eval_every, snapshots)
    for a, b in zip(groups[:-1], groups[1:], strict=True):
        mergeable = (
            a.snapshot is None
            and b.snapshot is None
            and a.length == b.length
            and a.evaluate == b.evaluate
        )
        assert not mergeable, (a, b)
    if not [s for s in snapshots if s > 0]:
        # Whole evaluation periods, then at most one shorter remainder.
        assert len(groups) <= 2


@given(st.integers(1, 200), st.integers(1, 60))
def test_eval_steps_one_entry_per_evaluation(steps, eval_every):
    got = eval_steps(steps, eval_every)
    assert got[0] == 0 and got[-1] == steps
    assert len(got) == -(-steps // eval_every) + 1
    assert all(b > a for a, b in zip(got[:-1], got[1:], strict=True))
    assert all(s % eval_every == 0 for s in got[:-1])


def test_plan_examples():
    assert plan(12, 4) == [Group(0, 4, 3, True, None)]
    assert plan(10, 4) == [Group(0, 4, 2, True, None), Group(8, 2, 1, True, None)]
    # The snapshot at 6 cuts the second period; the two 2-step evaluated pieces merge.
    assert plan(10, 4, (6,)) == [
        Group(0, 4, 1, True, None),
        Group(4, 2, 1, False, 0),
        Group(6, 2, 2, True, None),
    ]
    # Snapshot 0 needs no cut; a snapshot on an evaluation step marks that segment.
    assert plan(8, 4, (0, 8)) == [Group(0, 4, 1, True, None), Group(4, 4, 1, True, 1)]
    assert plan(5, 10) == [Group(0, 5, 1, True, None)]


@pytest.mark.parametrize(
    "steps, eval_every, snapshots, match",
    [
        (0, 1, (), "steps must be >= 1"),
        (-3, 1, (), "steps must be >= 1"),
        (10, 0, (), "eval_every must be >= 1"),
        (10, -2, (), "eval_every must be >= 1"),
        (10, 5, (11,), r"snapshot step 11 is outside the run \[0, 10\]"),
        (10, 5, (-1,), r"snapshot step -1 is outside the run \[0, 10\]"),
    ],
)
def test_plan_rejects_bad_values(steps, eval_every, snapshots, match):
    with pytest.raises(ValueError, match=match):
        plan(steps, eval_every, snapshots)
