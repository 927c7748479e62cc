"""The static shape of a training run: which steps end an evaluation period, a snapshot or
precede a mask update.

A run of ``steps`` steps is cut at every evaluation step (multiples of ``eval_every``), at
every snapshot step and at every mask-update step (``jaxticket.train.mask_update``).
Consecutive pieces of equal length with the same end action are grouped, so the engine
compiles one ``lax.scan`` per group (usually two or three), not one per piece, and the
step function itself never branches.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Group(NamedTuple):
    """``count`` consecutive segments of ``length`` steps, starting at step ``start``.

    Each segment ends with an evaluation when ``evaluate``; the single segment of a group
    with ``snapshot`` set ends at that snapshot's step (its index in the snapshot list), the
    single segment of a group with ``update`` set ends at a mask-update step (its index in
    the update list).
    """

    start: int
    length: int
    count: int
    evaluate: bool
    snapshot: int | None
    update: int | None = None


def plan(
    steps: int,
    eval_every: int,
    snapshot_steps: tuple[int, ...] = (),
    update_steps: tuple[int, ...] = (),
) -> list[Group]:
    """Groups the run's segments; see the module docstring.

    Args:
      steps: total number of optimizer steps.
      eval_every: evaluate after every this many steps (and at the last step).
      snapshot_steps: steps at which the parameters are recorded (0 = before training).
      update_steps: steps in ``[0, steps)`` after which the mask is updated (0 = before
        training; an update at 0 belongs to the engine's before-training row, not to a
        group).

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
    for s in update_steps:
        if not 0 <= s < steps:
            raise ValueError(f"mask update step {s} is outside the run [0, {steps})")
    evals = set(range(eval_every, steps, eval_every)) | {steps}
    cuts = sorted(evals | {s for s in snapshot_steps if s > 0} | {s for s in update_steps if s > 0})
    groups: list[Group] = []
    prev = 0
    for cut in cuts:
        length = cut - prev
        evaluate = cut in evals
        snap = snapshot_steps.index(cut) if cut in snapshot_steps else None
        update = update_steps.index(cut) if cut in update_steps else None
        last = groups[-1] if groups else None
        if (
            last is not None
            and snap is None
            and update is None
            and last.snapshot is None
            and last.update is None
            and last.length == length
            and last.evaluate == evaluate
        ):
            groups[-1] = last._replace(count=last.count + 1)
        else:
            groups.append(Group(prev, length, 1, evaluate, snap, update))
        prev = cut
    return groups


def eval_steps(steps: int, eval_every: int) -> list[int]:
    """The steps at which history is recorded: 0 (before training) and each evaluation."""
    return [0, *range(eval_every, steps, eval_every), steps]


class Segment(NamedTuple):
    """Steps ``[start, start + length)`` of a run, then the mask update number ``update``
    (``None``: no update), then an evaluation if ``evaluate``."""

    index: int
    start: int
    length: int
    evaluate: bool
    update: int | None = None


def segments(
    steps: int,
    eval_every: int,
    snapshot_steps: tuple[int, ...] = (),
    update_steps: tuple[int, ...] = (),
) -> list[Segment]:
    """The run's segments in order, one per cut of :func:`plan` (groups expanded).

    The engine scans over this table, so the step function is traced once however many
    segments there are.
    """
    out = []
    for g in plan(steps, eval_every, snapshot_steps, update_steps):
        for i in range(g.count):
            out.append(Segment(len(out), g.start + i * g.length, g.length, g.evaluate, g.update))
    return out


class Table(NamedTuple):
    """The engine's segment table and the rows it reads results from.

    Attributes:
      rows: ``int32[n, 5]``: index, start, length, evaluate, update (1 + the mask
        update's number, 0 for none), relative to the run's first step; row 0 is the
        zero-length "before training" row (an update at the first step belongs to it).
      snapshot_rows: per snapshot step, the row after which it is taken.
      eval_rows, update_rows: the rows that end with an evaluation / a mask update.
      longest: the most steps of one row.
    """

    rows: np.ndarray
    snapshot_rows: list[int]
    eval_rows: np.ndarray
    update_rows: np.ndarray
    longest: int


def table(
    steps: int,
    eval_every: int,
    snapshot_steps: tuple[int, ...] = (),
    update_steps: tuple[int, ...] = (),
    *,
    start_step: int = 0,
) -> Table:
    """The :class:`Table` of a run of ``steps`` steps from ``start_step`` (snapshot and
    update steps are absolute)."""
    snaps = tuple(s - start_step for s in snapshot_steps)
    updates = tuple(s - start_step for s in update_steps)
    segs = segments(steps, eval_every, snaps, updates)
    at_zero = int(bool(updates) and updates[0] == 0)
    body = [
        [g.index + 1, g.start, g.length, g.evaluate, 0 if g.update is None else g.update + 1]
        for g in segs
    ]
    rows = np.asarray([[0, 0, 0, 1, at_zero], *body], np.int32)
    snapshot_rows = [next(i for i, r in enumerate(rows) if r[1] + r[2] == s) for s in snaps]
    return Table(
        rows,
        snapshot_rows,
        np.flatnonzero(rows[:, 3]),
        np.flatnonzero(rows[:, 4]),
        max(g.length for g in segs),
    )
