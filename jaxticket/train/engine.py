"""A whole training run as one jitted program.

``make_train_fn`` returns a pure function that trains from given variables: epochs of
minibatches in a keyed random order (``jaxticket.train.order``: each step computes its
batch's indices, nothing is sorted; the data-order key is separate from the init key),
an optax optimizer wrapped so pruned weights stay exactly zero, evaluation on the test
(and validation) split every ``eval_every`` steps, and parameter snapshots at the
requested steps (rewind points). Steps run inside ``lax.scan``; nothing returns to Python
until the run ends, so ``jax.vmap`` of the function trains many seeds in one program.

History holds one entry per evaluation (O(evaluations) memory, not O(steps)); entry 0 is
the model before training.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxticket.masks import apply_mask, validate_mask
from jaxticket.optim import masked
from jaxticket.train import order, timeline
from jaxticket.train.evaluate import cross_entropy, evaluate


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
      history: ``{"step", "train_loss", "test_loss", "test_accuracy"[, "val_loss",
        "val_accuracy"]}``, each an array with one entry per evaluation.
      snapshots: one ``(params, model_state)`` per requested snapshot step, in order.
    """

    params: Any
    model_state: Any
    opt_state: Any
    history: dict[str, jax.Array]
    snapshots: tuple[tuple[Any, Any], ...]


BoundaryFn = Callable[[TrainState, jax.Array], TrainState]


def make_train_fn(
    model,
    optimizer: optax.GradientTransformation,
    *,
    steps: int,
    batch_size: int,
    eval_every: int | None = None,
    snapshot_steps: tuple[int, ...] = (),
    start_step: int = 0,
    eval_batch_size: int = 1024,
    on_eval: BoundaryFn | None = None,
    progress: Callable[[Any], None] | None = None,
):
    """Builds ``train_fn(params, model_state, mask, data_key, dropout_key, data)``.

    Args:
      model: a ``jaxticket.models.Model`` (``apply(params, state, x, *, train, key)``).
      optimizer: any optax optimizer; it is wrapped with ``jaxticket.optim.masked`` when
        a mask is given, so pruned weights stay exactly zero.
      steps: number of optimizer steps.
      batch_size: minibatch size; epochs are reshuffled, a partial last batch is dropped.
      eval_every: steps between evaluations (default: ``steps``, i.e. only at the end).
      snapshot_steps: steps at which ``(params, model_state)`` are recorded.
      start_step: the iteration the run starts at (a rewound run resumes at its rewind
        point): data order, dropout keys and history steps count from here.
      eval_batch_size: largest chunk the evaluation runs at once.
      on_eval: optional ``fn(state, step) -> state`` run after each evaluation; this is
        where a schedule may replace the mask, outside the per-step path.
      progress: optional host callback receiving the step after each evaluation.

    Returns:
      A pure, jittable and vmappable function returning a :class:`TrainResult`.
      ``mask`` may be ``None`` (dense training).
    """
    eval_every = steps if eval_every is None else eval_every
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    for s in snapshot_steps:
        if not start_step <= s <= start_step + steps:
            raise ValueError(
                f"snapshot step {s} is outside the run [{start_step}, {start_step + steps}]"
            )
    relative_snapshots = tuple(s - start_step for s in snapshot_steps)
    segments = timeline.segments(steps, eval_every, relative_snapshots)
    # The segment after which each snapshot is taken (-1: before training).
    snapshot_segments = [
        next((i for i, seg in enumerate(segments) if seg.start + seg.length == s), -1)
        for s in relative_snapshots
    ]

    def train_fn(params, model_state, mask, data_key, dropout_key, data) -> TrainResult:
        n_train = data.x_train.shape[0]
        if batch_size > n_train:
            raise ValueError(
                f"batch_size {batch_size} is larger than the training set ({n_train} examples)"
            )
        per_epoch = n_train // batch_size
        if mask is None:
            opt = optimizer
        else:
            validate_mask(mask, params)
            params = apply_mask(params, mask)
            opt = masked(optimizer, mask)

        def metrics(state: TrainState, step) -> dict[str, jax.Array]:
            out = {
                "step": jnp.asarray(step, jnp.int32),
                "train_loss": state.loss_sum / jnp.maximum(state.loss_count, 1),
            }
            splits = [("test", data.x_test, data.y_test)]
            if data.x_val is not None:
                splits.append(("val", data.x_val, data.y_val))
            for name, x, y in splits:
                m = evaluate(
                    model.apply,
                    state.params,
                    state.model_state,
                    x,
                    y,
                    batch_size=eval_batch_size,
                )
                out[f"{name}_loss"] = m["loss"]
                out[f"{name}_accuracy"] = m["accuracy"]
            return out

        def step_fn(state: TrainState, t, keys, first_epoch):
            rel_epoch = t // per_epoch - first_epoch
            offset = (t % per_epoch) * batch_size
            idx = order.permute(keys[rel_epoch], offset + jnp.arange(batch_size), n_train)
            x, y = data.x_train[idx], data.y_train[idx]

            def loss_fn(p):
                logits, new_ms = model.apply(
                    p, state.model_state, x, train=True, key=jax.random.fold_in(dropout_key, t)
                )
                return cross_entropy(logits, y), new_ms

            (loss, new_ms), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            return TrainState(
                optax.apply_updates(state.params, updates),
                new_ms,
                opt_state,
                state.loss_sum + loss,
                state.loss_count + 1,
            ), None

        n_epochs = max(seg.length for seg in segments) // per_epoch + 2

        def run_segment(state: TrainState, start, length):
            # Round keys of the epochs this segment touches; each step computes its own
            # batch's indices of the epoch's permutation (no sort, O(1) memory).
            first_epoch = start // per_epoch
            keys = order.epoch_keys(data_key, first_epoch + jnp.arange(n_epochs))
            body = lambda j, s: step_fn(s, start + j, keys, first_epoch)[0]
            return jax.lax.fori_loop(0, length, body, state)

        def one(carry, seg):
            # The step, the shuffle and the evaluation are traced once, whatever the
            # number of segments: compile time does not grow with snapshots or groups.
            state, snaps = carry
            index, start, length, is_eval = seg
            state = run_segment(state, start_step + start, length)
            end = start_step + start + length
            record = metrics(state, end)
            keep = jnp.logical_not(is_eval)
            state = state._replace(
                loss_sum=jnp.where(keep, state.loss_sum, 0.0),
                loss_count=jnp.where(keep, state.loss_count, 0),
            )
            if on_eval is not None:
                state = jax.lax.cond(is_eval, lambda s: on_eval(s, end), lambda s: s, state)
            if progress is not None:
                jax.debug.callback(progress, end)
            current = (state.params, state.model_state)
            snaps = tuple(
                jax.tree.map(
                    lambda new, old, at=at: jnp.where(index == at, new, old), current, snap
                )
                for at, snap in zip(snapshot_segments, snaps, strict=True)
            )
            return (state, snaps), record

        state = TrainState(
            params, model_state, opt.init(params), jnp.zeros(()), jnp.zeros((), jnp.int32)
        )
        first = jax.tree.map(lambda v: v[None], metrics(state, start_step))
        snaps = tuple((state.params, state.model_state) for _ in snapshot_steps)
        table = tuple(
            jnp.asarray([getattr(seg, f) for seg in segments], dtype)
            for f, dtype in (
                ("index", jnp.int32),
                ("start", jnp.int32),
                ("length", jnp.int32),
                ("evaluate", bool),
            )
        )
        (state, snaps), records = jax.lax.scan(one, (state, snaps), table)
        eval_rows = np.asarray([i for i, seg in enumerate(segments) if seg.evaluate])
        history = jax.tree.map(lambda a, b: jnp.concatenate([a, b[eval_rows]]), first, records)
        return TrainResult(state.params, state.model_state, state.opt_state, history, snaps)

    return train_fn
