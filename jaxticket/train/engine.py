"""A whole training run as one jitted program.

``make_train_fn`` returns a pure function that trains from given variables: epochs of
minibatches in a keyed random order (``jaxticket.train.order``: no sort; the data-order
key is separate from the init key), an optax optimizer wrapped so pruned weights stay
exactly zero, a pluggable loss and metrics (``jaxticket.train.losses``), evaluation every
``eval_every`` steps, parameter snapshots (rewind points) and mask updates
(``jaxticket.train.mask_update``) at the requested steps. Nothing returns to Python until
the run ends, so ``jax.vmap`` of the function trains many seeds in one program.

The run scans over a table of segments (``timeline``), led by a zero-length row for the
model before training; evaluations, snapshots and mask updates happen at segment ends,
never inside the per-step loop. :func:`make_engine` exposes the run in parts (start,
rows, finish): running the rows in a few calls gives the same bits and lets the host move
a progress bar with no host callback in the compiled program (``jaxticket.train.progress``).

Divergence (``jaxticket.train.divergence``): at every segment end the run checks that its
training loss, evaluation losses and variables are finite, carrying the first step where
they were not (``TrainResult.diverged`` / ``diverged_step``). History holds one entry per
evaluation; entry 0 is the model before training. ``TrainState``, ``RunCarry``,
``TrainResult``, ``Engine`` and ``padding`` live in ``jaxticket.train.engine_types``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxticket.masks import apply_mask, dense_mask, sparsity, validate_mask
from jaxticket.optim import get_mask, zero_pruned
from jaxticket.train import order, timeline
from jaxticket.train.checks import check_batches, check_run_settings
from jaxticket.train.divergence import any_nonfinite, first_divergence
from jaxticket.train.engine_types import (  # re-exported: callers import them from here
    BoundaryFn,
    Engine,
    LossFn,
    RunCarry,
    TrainResult,
    TrainState,
    padding,  # noqa: F401
)
from jaxticket.train.evaluate import evaluate
from jaxticket.train.loss_checks import check_loss_and_metrics, check_loss_outputs
from jaxticket.train.losses import uses_class_labels
from jaxticket.train.mask_update import (
    MaskUpdate,
    check_mask_update,
    make_update_branch,
    update_record_template,
)

# Key of the update rows' records inside the scan's records (split off in ``finish``).
UPDATES_KEY = "__mask_updates__"


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
    loss_fn: LossFn | None = None,
    metrics: Mapping[str, LossFn] | None = None,
    mask_update: MaskUpdate | None = None,
):
    """Builds ``train_fn(params, model_state, mask, data_key, dropout_key, data)``.

    Args:
      model: a ``jaxticket.models.Model`` (``apply(params, state, x, *, train, key)``).
      optimizer: any optax optimizer; it is wrapped with ``jaxticket.zero_pruned`` when
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
      progress: optional host callback receiving the step after each segment, through
        ``jax.debug.callback`` (JAX then never writes the program to its persistent
        compilation cache; ``train_seeds(show_progress=True)`` does without it).
      loss_fn: ``loss_fn(logits, labels) -> scalar``, the mean loss over a batch; it is
        differentiated in each step and reported as ``f"{split}_loss"`` (default
        :func:`jaxticket.train.cross_entropy`). Labels may have any shape and dtype the
        function takes (float regression targets, token sequences); the data's labels
        must be 1-D integer classes only while the default loss or accuracy is used.
      metrics: name -> ``fn(logits, labels) -> scalar``, each reported as
        ``f"{split}_{name}"`` (default ``{"accuracy": jaxticket.train.accuracy}``;
        ``{}`` records none). Evaluation averages each function over the split
        exactly, example by example (``jaxticket.train.evaluate``).
      mask_update: a :class:`~jaxticket.train.mask_update.MaskUpdate` (sparse training):
        the mask changes inside the run at its steps, then :func:`jaxticket.regrow` swaps
        it in (see ``jaxticket.train.mask_update``). ``history`` gains ``"sparsity"``,
        the result ``mask_updates``; ``mask=None`` starts from ``dense_mask(params)``.

    Returns:
      A pure, jittable and vmappable function returning a :class:`TrainResult`: one
      program for the whole run. ``mask`` may be ``None`` (dense training).
    """
    engine = make_engine(
        model,
        optimizer,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        start_step=start_step,
        eval_batch_size=eval_batch_size,
        on_eval=on_eval,
        progress=progress,
        loss_fn=loss_fn,
        metrics=metrics,
        mask_update=mask_update,
    )

    def train_fn(params, model_state, mask, data_key, dropout_key, data) -> TrainResult:
        carry = engine.start(params, model_state, mask, data)
        rows = jnp.asarray(engine.rows)
        carry, records = engine.run(carry, rows, mask, data_key, dropout_key, data)
        return engine.finish(carry, records)

    return train_fn


def make_engine(
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
    loss_fn: LossFn | None = None,
    metrics: Mapping[str, LossFn] | None = None,
    mask_update: MaskUpdate | None = None,
) -> Engine:
    """The parts of the run :func:`make_train_fn` builds (same arguments)."""
    settings = check_run_settings(
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        start_step=start_step,
        eval_batch_size=eval_batch_size,
    )
    steps, batch_size = settings["steps"], settings["batch_size"]
    eval_every, start_step = settings["eval_every"], settings["start_step"]
    snapshot_steps = settings["snapshot_steps"]
    loss_fn, metrics = check_loss_and_metrics(loss_fn, metrics)
    class_labels = uses_class_labels(loss_fn, metrics)
    check_mask_update(mask_update, start_step=start_step, steps=steps)
    updates = () if mask_update is None else mask_update.steps
    layout = timeline.table(steps, eval_every, snapshot_steps, updates, start_step=start_step)
    rows, snapshot_rows = layout.rows, layout.snapshot_rows
    eval_rows, update_rows = layout.eval_rows, layout.update_rows
    n_epochs_max = layout.longest

    def opt_for(mask):
        if mask is None and mask_update is None:
            return optimizer
        return zero_pruned(optimizer, mask)

    def check_data(data) -> int:
        return check_batches(data, batch_size, class_labels=class_labels)

    def start(params, model_state, mask, data) -> RunCarry:
        check_data(data)
        check_loss_outputs(
            model.apply, params, model_state, data, loss_fn, metrics, batch_size=batch_size
        )
        if mask is None and mask_update is not None:
            mask = dense_mask(params)
        if mask is not None:
            validate_mask(mask, params)
            params = apply_mask(params, mask)
        state = TrainState(
            params,
            model_state,
            opt_for(mask).init(params),
            jnp.zeros(()),
            jnp.zeros((), jnp.int32),
        )
        snaps = tuple((params, model_state) for _ in snapshot_steps)
        return RunCarry(state, snaps, jnp.asarray(-1, jnp.int32))

    def run(carry: RunCarry, table, mask, data_key, dropout_key, data):
        n_train = check_data(data)
        per_epoch = n_train // batch_size
        opt = opt_for(mask)
        n_epochs = n_epochs_max // per_epoch + 2

        splits = [("test", data.x_test, data.y_test)]
        if data.x_val is not None:
            splits.append(("val", data.x_val, data.y_val))

        def evaluation(state: TrainState, step) -> dict[str, jax.Array]:
            out = {
                "step": jnp.asarray(step, jnp.int32),
                "train_loss": state.loss_sum / jnp.maximum(state.loss_count, 1),
            }
            if mask_update is not None:
                out["sparsity"] = sparsity(get_mask(state.opt_state))
            for split, x, y in splits:
                m = evaluate(
                    model.apply,
                    state.params,
                    state.model_state,
                    x,
                    y,
                    batch_size=eval_batch_size,
                    loss_fn=loss_fn,
                    metrics=metrics,
                )
                out.update({f"{split}_{name}": value for name, value in m.items()})
            return out

        def step_fn(state: TrainState, t, keys, first_epoch):
            rel_epoch = t // per_epoch - first_epoch
            offset = (t % per_epoch) * batch_size
            idx = order.permute(keys[rel_epoch], offset + jnp.arange(batch_size), n_train)
            x, y = data.x_train[idx], data.y_train[idx]

            def objective(p):
                logits, new_ms = model.apply(
                    p, state.model_state, x, train=True, key=jax.random.fold_in(dropout_key, t)
                )
                return loss_fn(logits, y), new_ms

            (loss, new_ms), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
            if loss.dtype != state.loss_sum.dtype:  # a 16-bit loss, say: keep the carry's
                loss = loss.astype(state.loss_sum.dtype)
            updates, opt_state = opt.update(grads, state.opt_state, state.params)
            return TrainState(
                optax.apply_updates(state.params, updates),
                new_ms,
                opt_state,
                state.loss_sum + loss,
                state.loss_count + 1,
            )

        def run_segment(state: TrainState, start, length):
            # Round keys of the epochs this segment touches; each step computes its own
            # batch's indices of the epoch's permutation (no sort, O(1) memory).
            first_epoch = start // per_epoch
            keys = order.epoch_keys(data_key, first_epoch + jnp.arange(n_epochs))
            body = lambda j, s: step_fn(s, start + j, keys, first_epoch)
            return jax.lax.fori_loop(0, length, body, state)

        if mask_update is not None:
            update = make_update_branch(
                model=model,
                loss_fn=loss_fn,
                optimizer=opt,
                mask_update=mask_update,
                batch_size=batch_size,
            )
            no_update = lambda s, *_: (s, update_record_template(get_mask(s.opt_state)))  # noqa: E731

        def one(carry: RunCarry, row):
            # The step, the shuffle and the evaluation are traced once, whatever the
            # number of segments: compile time does not grow with snapshots or groups.
            state, snaps, diverged_step = carry
            index, start, length, is_eval = row[0], row[1], row[2], row[3].astype(bool)
            state = run_segment(state, start_step + start, length)
            end = start_step + start + length
            if mask_update is not None:
                # One branch per segment end, taken only at update rows (the table is never
                # batched over seeds, so it stays a branch under vmap): the dense gradient
                # and the mask swap cost nothing at other rows.
                state, update_record = jax.lax.cond(
                    row[4] > 0, update, no_update, state, end, row[4] - 1, dropout_key, data
                )
            # The table is never batched over seeds, so this stays a branch under vmap:
            # snapshot-only and padding rows skip the evaluation.
            record = jax.lax.cond(
                is_eval,
                evaluation,
                lambda s, e: jax.tree.map(jnp.zeros_like, jax.eval_shape(evaluation, s, e)),
                state,
                end,
            )
            # One reduction per segment: a non-finite loss at any step of it leaves the
            # loss sum non-finite (it is reset below, after this check); huge but finite
            # params can still give a non-finite evaluation loss. Metrics are not checked.
            eval_losses = [record[f"{split}_loss"] for split, _, _ in splits]
            bad = jnp.logical_not(jnp.isfinite(state.loss_sum)) | any_nonfinite(
                state.params, state.model_state, eval_losses
            )
            diverged_step = first_divergence(diverged_step, bad, end)
            state = state._replace(
                loss_sum=jnp.where(is_eval, 0.0, state.loss_sum),
                loss_count=jnp.where(is_eval, 0, state.loss_count),
            )
            if on_eval is not None:
                hook = is_eval & (length > 0)  # not before training
                state = jax.lax.cond(hook, lambda s: on_eval(s, end), lambda s: s, state)
            if progress is not None:
                jax.debug.callback(progress, end)
            current = (state.params, state.model_state)
            snaps = tuple(
                jax.tree.map(
                    lambda new, old, at=at: jnp.where(index == at, new, old), current, snap
                )
                for at, snap in zip(snapshot_rows, snaps, strict=True)
            )
            if mask_update is not None:
                record = {**record, UPDATES_KEY: update_record}
            return RunCarry(state, snaps, diverged_step), record

        return jax.lax.scan(one, carry, table)

    def finish(carry: RunCarry, *records) -> TrainResult:
        updates = None
        if mask_update is not None:
            picked = [r[UPDATES_KEY] for r in records]
            updates = jax.tree.map(lambda *r: jnp.concatenate(r)[update_rows], *picked)
            records = [{k: v for k, v in r.items() if k != UPDATES_KEY} for r in records]
        history = jax.tree.map(lambda *r: jnp.concatenate(r)[eval_rows], *records)
        state = carry.state
        return TrainResult(
            state.params,
            state.model_state,
            state.opt_state,
            history,
            carry.snapshots,
            carry.diverged_step >= 0,
            carry.diverged_step,
            updates,
        )

    step_after = [start_step + int(r[1] + r[2]) for r in rows]
    return Engine(rows, start, run, finish, step_after)
