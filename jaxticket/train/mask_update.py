"""Mask updates inside the compiled run: the engine's hook for sparse training.

A :class:`MaskUpdate` names the steps at which the mask changes and a pure function that
computes the new mask from what the run holds then (:class:`UpdateInputs`: params,
model state, optimizer state, current mask, step, a fresh key and, when asked for, the
dense gradient on a fresh minibatch). The engine cuts its segment table at those steps,
so a step without an update is the plain masked step (no ``lax.cond`` per step: one
branch per segment end, taken only at update rows), and the gradient is computed only
inside that branch. After ``fn`` returns, the engine swaps the mask with
:func:`jaxticket.regrow`: regrown weights start at exactly ``0.0`` with their optimizer
state reset, newly pruned weights become ``0.0``, ``None`` leaves are never touched.

Order at a segment end: the segment's steps, then the mask update, then the evaluation
(an evaluation at an update step sees the new mask), then snapshots.

Example (drop nothing, regrow nothing: the identity update every 100 steps)::

    update = MaskUpdate(fn=lambda inputs: inputs.mask, steps=(100, 200, 300))
    result = jaxticket.train.train(model, data, optax.adam(1e-3), key=key, steps=400,
                                   batch_size=60, mask=mask, mask_update=update)
    result.mask_updates["alive"]       # alive counts per leaf after each update

``fn`` is part of the compile-cache key (``jaxticket.train.cache_key``): a frozen
dataclass's bound method or a ``functools.partial`` of a module-level function over
plain values hits the cache when equal; a fresh lambda with the same code and closure
does too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.masks import alive_by_leaf, count_alive, mask_and, mask_not
from jaxticket.optim import get_mask
from jaxticket.regrow import regrow
from jaxticket.train import order

__all__ = ["MaskUpdate", "UpdateInputs", "UpdateOutput"]


class UpdateInputs(NamedTuple):
    """What a mask update sees (one seed's values; the engine vmaps over seeds).

    Attributes:
      step: ``int32`` scalar, the absolute number of steps trained so far (the update
        runs between step ``step - 1`` and step ``step``; ``0``: before training).
      index: ``int32`` scalar, this update's position in ``MaskUpdate.steps``.
      params: the current params (pruned entries exactly ``0.0``).
      model_state: the current model state (BatchNorm statistics...).
      opt_state: the state of the engine's ``zero_pruned`` optimizer.
      mask: the current mask (plain ``bool`` leaves, ``None`` leaves kept).
      key: a fresh PRNG key for this update and seed.
      grad: the loss gradient at ``params`` with respect to every entry (pruned ones
        too) on a fresh minibatch of ``batch_size`` examples, when
        ``MaskUpdate.needs_grad``; else ``None``.
    """

    step: jax.Array
    index: jax.Array
    params: Any
    model_state: Any
    opt_state: Any
    mask: Any
    key: jax.Array
    grad: Any


class UpdateOutput(NamedTuple):
    """What ``MaskUpdate.fn`` may return instead of a bare mask.

    Attributes:
      mask: the new mask (the old one's structure, ``None`` leaves, shapes and dtype).
      params: params replacing the current ones before the mask swap, or ``None``.
      opt_state: optimizer state replacing the current one before the swap, or ``None``.
    """

    mask: Any
    params: Any = None
    opt_state: Any = None


@dataclasses.dataclass(frozen=True)
class MaskUpdate:
    """A mask schedule for the engine: ``fn`` runs after each of ``steps``.

    Attributes:
      fn: ``fn(inputs: UpdateInputs) -> mask | UpdateOutput``, pure and jittable.
      steps: absolute steps at which ``fn`` runs, strictly increasing, each in
        ``[start_step, start_step + steps)`` of the run it is given to.
      needs_grad: compute ``inputs.grad`` (one extra forward and backward pass on a
        fresh minibatch, at update steps only).
    """

    fn: Callable[[UpdateInputs], Any]
    steps: tuple[int, ...]
    needs_grad: bool = False

    def __post_init__(self):
        if not callable(self.fn):
            raise TypeError(f"MaskUpdate: fn must be callable, got {type(self.fn).__name__}")
        try:
            steps = tuple(self.steps)
        except TypeError:
            raise TypeError(
                f"MaskUpdate: steps must be a sequence of ints, got {type(self.steps).__name__}"
            ) from None
        for s in steps:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
                raise TypeError(f"MaskUpdate: steps must be ints, got {s!r}")
        steps = tuple(int(s) for s in steps)
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"MaskUpdate: steps must be strictly increasing, got {steps}")
        if steps and steps[0] < 0:
            raise ValueError(f"MaskUpdate: steps must be >= 0, got {steps[0]}")
        if not isinstance(self.needs_grad, bool):
            raise TypeError(
                f"MaskUpdate: needs_grad must be a bool, got {type(self.needs_grad).__name__}"
            )
        object.__setattr__(self, "steps", steps)

    def check_run(self, start_step: int, steps: int) -> None:
        """Raises ValueError when an update step falls outside the run
        ``[start_step, start_step + steps)``."""
        end = start_step + steps
        outside = [s for s in self.steps if not start_step <= s < end]
        if outside:
            raise ValueError(
                f"mask_update: update step {outside[0]} is outside the run [{start_step}, "
                f"{end}) (an update must leave steps to train after it)"
            )


# --------------------------------------------------------------------------------------
# The engine's side: the branch taken at update rows.

# Update keys come from the dropout stream folded with this constant and then the step:
# dropout keys fold in the step directly, and steps stay below 2**31 - 1 (int32 counters),
# so no update key equals a dropout key.
UPDATE_STREAM = 0xFFFFFFFF


def update_record_template(mask) -> dict[str, Any]:
    """The record an update row yields (zeros at rows without an update)."""
    zero = jnp.zeros((), jnp.int32)
    return {
        "step": zero,
        "grown": zero,
        "pruned": zero,
        "alive": {path: zero for path in alive_by_leaf(mask)},
    }


def make_update_branch(*, model, loss_fn, optimizer, mask_update: MaskUpdate, batch_size: int):
    """``apply(state, step, index, dropout_key, data) -> (state, record)``: one mask update.

    Args:
      model: the run's model (``apply(params, state, x, *, train, key)``).
      loss_fn: the run's loss, differentiated for ``UpdateInputs.grad``.
      optimizer: the run's ``zero_pruned`` optimizer (its state holds the mask).
      mask_update: the schedule and its function.
      batch_size: the size of the fresh minibatch the dense gradient is taken on.
    """

    def dense_grad(params, model_state, key, data):
        n_train = data.x_train.shape[0]
        round_keys = jax.random.bits(jax.random.fold_in(key, 0), (order.ROUNDS,), jnp.uint32)
        idx = order.permute(round_keys, jnp.arange(batch_size), n_train)
        x, y = data.x_train[idx], data.y_train[idx]

        def objective(p):
            # Training mode, as the step's gradient; the model-state change is dropped.
            logits, _ = model.apply(p, model_state, x, train=True, key=jax.random.fold_in(key, 1))
            return loss_fn(logits, y)

        return jax.grad(objective)(params)

    def apply(state, step, index, dropout_key, data):
        old = get_mask(state.opt_state)
        key = jax.random.fold_in(jax.random.fold_in(dropout_key, UPDATE_STREAM), step)
        grad = None
        if mask_update.needs_grad:
            grad = dense_grad(state.params, state.model_state, jax.random.fold_in(key, 1), data)
        inputs = UpdateInputs(
            jnp.asarray(step, jnp.int32),
            jnp.asarray(index, jnp.int32),
            state.params,
            state.model_state,
            state.opt_state,
            old,
            jax.random.fold_in(key, 0),
            grad,
        )
        out = mask_update.fn(inputs)
        params, opt_state = state.params, state.opt_state
        if isinstance(out, UpdateOutput):
            params = params if out.params is None else out.params
            opt_state = opt_state if out.opt_state is None else out.opt_state
            out = out.mask
        params, opt_state = regrow(params, opt_state, out, optimizer=optimizer)
        new = get_mask(opt_state)
        record = {
            "step": jnp.asarray(step, jnp.int32),
            "grown": count_alive(mask_and(new, mask_not(old))),
            "pruned": count_alive(mask_and(old, mask_not(new))),
            "alive": alive_by_leaf(new),
        }
        return state._replace(params=params, opt_state=opt_state), record

    return apply


def check_mask_update(mask_update, *, start_step: int, steps: int) -> None:
    """One-line errors for a ``mask_update`` argument that is not a :class:`MaskUpdate`
    or whose steps fall outside the run ``[start_step, start_step + steps)``."""
    if mask_update is None:
        return
    if not isinstance(mask_update, MaskUpdate):
        raise TypeError(
            "mask_update must be a jaxticket.train.MaskUpdate (or None), got "
            f"{type(mask_update).__name__}"
        )
    mask_update.check_run(start_step, steps)
