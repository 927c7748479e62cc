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
import numpy as np

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
