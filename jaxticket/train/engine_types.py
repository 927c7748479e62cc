"""The data a training run passes around: what a step carries (:class:`TrainState`), what
the segment scan carries (:class:`RunCarry`), what a run returns (:class:`TrainResult`),
the run cut into parts (:class:`Engine`) and the rows that pad its segment table
(:func:`padding`). ``jaxticket.train.engine`` builds them; it re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class TrainState(NamedTuple):
    """What a step carries: variables, optimizer state and the running training loss."""

    params: Any
    model_state: Any
    opt_state: Any
    loss_sum: jax.Array
    loss_count: jax.Array


class TrainResult(NamedTuple):
    """The outcome of a run (stacked along a leading seed axis when vmapped).

    Attributes:
      params, model_state, opt_state: the variables after the last step.
      history: ``"step"``, ``"train_loss"`` and, for each evaluated split (``"test"``,
        ``"val"`` when the data has one), ``f"{split}_loss"`` and ``f"{split}_{name}"``
        for every metric (by default ``"test_accuracy"``, ``"val_accuracy"``), each an
        array with one entry per evaluation.
      snapshots: one ``(params, model_state)`` per requested snapshot step, in order.
      diverged: whether the training loss, an evaluation loss or any parameter /
        model-state entry became NaN or infinite during the run (``bool``); metrics
        are not checked.
      diverged_step: the first segment end (evaluation or snapshot step, or the start of
        the run) at which that was seen, ``-1`` if never (``int32``). A loss that is
        non-finite at any step is caught at the end of its segment.
      mask_updates: ``None`` unless the run had a ``mask_update``; then a dict with one
        entry per update: ``"step"`` (``int32``), ``"grown"`` and ``"pruned"`` (weights
        regrown / newly pruned by it, over all leaves) and ``"alive"`` (leaf path ->
        alive count after it). ``history["sparsity"]`` then holds the global sparsity
        of the prunable leaves at each evaluation.
    """

    params: Any
    model_state: Any
    opt_state: Any
    history: dict[str, jax.Array]
    snapshots: tuple[tuple[Any, Any], ...]
    diverged: jax.Array
    diverged_step: jax.Array
    mask_updates: dict[str, Any] | None = None


class RunCarry(NamedTuple):
    """What the scan over segments carries (and what passes between chunked calls)."""

    state: TrainState
    snapshots: tuple[tuple[Any, Any], ...]
    diverged_step: jax.Array


class Engine(NamedTuple):
    """One run cut into parts; ``make_train_fn`` composes them into one function.

    Attributes:
      rows: ``int32[rows, 5]`` segment table (index, start, length, evaluate, update:
        1 + the mask update's number, 0 for none); row 0 is the zero-length "before
        training" row.
      start: ``start(params, model_state, mask, data) -> RunCarry``.
      run: ``run(carry, rows, mask, data_key, dropout_key, data) -> (carry, records)``
        runs any consecutive rows of the table (or :func:`padding` rows, which do
        nothing); ``records`` has one entry per row.
      finish: ``finish(carry, *records) -> TrainResult`` from the records of all rows,
        given in order in one or more pieces (padding rows included or not).
      step_after: the absolute step reached after each row (a host-side list).
    """

    rows: np.ndarray
    start: Callable[..., RunCarry]
    run: Callable[..., tuple[RunCarry, dict[str, jax.Array]]]
    finish: Callable[..., TrainResult]
    step_after: list[int]


BoundaryFn = Callable[[TrainState, jax.Array], TrainState]


def padding(n: int, steps: int) -> np.ndarray:
    """``n`` table rows that do nothing (no steps, no evaluation, no snapshot)."""
    return np.tile(np.asarray([[-1, steps, 0, 0, 0]], np.int32), (n, 1))
