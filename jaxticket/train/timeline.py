"""The static shape of a training run: which steps end an evaluation period or a snapshot.

A run of ``steps`` steps is cut at every evaluation step (multiples of ``eval_every``) and
at every snapshot step. Consecutive pieces of equal length with the same end action are
grouped, so the engine compiles one ``lax.scan`` per group (usually two or three), not one
per piece, and the step function itself never branches.
"""

from __future__ import annotations

from typing import NamedTuple


class Group(NamedTuple):
    """``count`` consecutive segments of ``length`` steps, starting at step ``start``.

    Each segment ends with an evaluation when ``evaluate``; the single segment of a group
    with ``snapshot`` set ends at that snapshot's step (its index in the snapshot list).
    """

    start: int
    length: int
    count: int
    evaluate: bool
    snapshot: int | None


def plan(steps: int, eval_every: int, snapshot_steps: tuple[int, ...] = ()) -> list[Group]:
    """Groups the run's segments; see the module docstring.

    Args:
      steps: total number of optimizer steps.
      eval_every: evaluate after every this many steps (and at the last step).
      snapshot_steps: steps at which the parameters are recorded (0 = before training).

    Returns:
      Groups in order; their segments cover ``[0, steps)`` exactly.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    for s in snapshot_steps:
        if not 0 <= s <= steps:
            raise ValueError(f"snapshot step {s} is outside the run [0, {steps}]")
    evals = set(range(eval_every, steps, eval_every)) | {steps}
    cuts = sorted(evals | {s for s in snapshot_steps if s > 0})
    groups: list[Group] = []
    prev = 0
    for cut in cuts:
        length = cut - prev
        evaluate = cut in evals
        snap = snapshot_steps.index(cut) if cut in snapshot_steps else None
        last = groups[-1] if groups else None
        if (
            last is not None
            and snap is None
            and last.snapshot is None
            and last.length == length
            and last.evaluate == evaluate
        ):
            groups[-1] = last._replace(count=last.count + 1)
        else:
            groups.append(Group(prev, length, 1, evaluate, snap))
        prev = cut
    return groups


def eval_steps(steps: int, eval_every: int) -> list[int]:
    """The steps at which history is recorded: 0 (before training) and each evaluation."""
    return [0, *range(eval_every, steps, eval_every), steps]


class Segment(NamedTuple):
    """Steps ``[start, start + length)`` of a run, then an evaluation if ``evaluate``."""

    index: int
    start: int
    length: int
    evaluate: bool


def segments(steps: int, eval_every: int, snapshot_steps: tuple[int, ...] = ()) -> list[Segment]:
    """The run's segments in order, one per cut of :func:`plan` (groups expanded).

    The engine scans over this table, so the step function is traced once however many
    segments there are.
    """
    out = []
    for g in plan(steps, eval_every, snapshot_steps):
        for i in range(g.count):
            out.append(Segment(len(out), g.start + i * g.length, g.length, g.evaluate))
    return out
