"""GraNet (Liu et al., *Sparse Training via Boosting Pruning Plasticity with
Neuroregeneration*, NeurIPS 2021): gradual magnitude pruning whose prune steps also regrow.

At each update ``t = t₀, t₀+Δt, …, t₀+n·Δt`` (``n = (end − start) // every``):

1. **prune** by global magnitude to the Zhu–Gupta sparsity
   ``s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(n·Δt))³`` (exact total count, the library's
   ``magnitude_pruner("global")``);
2. **zero-cost neuroregeneration**: per layer drop a further ``floor(ζ_t·alive)`` alive
   weights of smallest ``|w|`` and regrow as many where the dense gradient ``|∇L|`` is
   largest among the positions dead after the drop (``jaxticket.sparse.drop_and_grow``;
   the alive count of every layer is kept, so the sparsity after the update is ``s_t``
   exactly). ``ζ_t = ζ/2·(1 + cos(π·(t − start_step)/steps))`` decays over the whole run,
   as GraNet's death rate does.

``initial_sparsity = 0`` is the dense-to-sparse variant (starts from ``dense_mask``);
``initial_sparsity > 0`` the sparse-to-sparse one (starts from a random mask at that
sparsity, ERK by default). Positions pruned or dropped in an update and regrown in the
same update keep their weight and optimizer state (they are alive before and after).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.masks import dense_mask
from jaxticket.pruning import magnitude_pruner
from jaxticket.sparse import checks, schedules
from jaxticket.sparse.dynamic import drop_and_grow, magnitude_scores
from jaxticket.sparse.static import random_mask
from jaxticket.train.mask_update import MaskUpdate, UpdateInputs

__all__ = ["GraNet"]


@dataclasses.dataclass(frozen=True)
class GraNet:
    """Gradual magnitude pruning with gradient-based regrowth at every prune step.

    Attributes:
      final_sparsity: s_f in [initial_sparsity, 1).
      initial_sparsity: s_i in [0, 1): 0 dense-to-sparse, > 0 sparse-to-sparse.
      start: t₀, the first update step (absolute, >= the run's ``start_step``).
      end: the last step an update may take (absolute, before the run ends; required).
      every: Δt (> 0).
      zeta: ζ, the initial regeneration fraction, in (0, 1) (0.5 in the paper).
      initial_allocation: "erk", "er" or "uniform": the densities of the random starting
        mask of the sparse-to-sparse variant.
      min_keep: weights every layer keeps at least (pruning and initial mask).
    """

    final_sparsity: float
    initial_sparsity: float = 0.0
    start: int = 0
    end: int | None = None
    every: int = 100
    zeta: float = 0.5
    initial_allocation: str = "erk"
    min_keep: int = 1

    def __post_init__(self):
        checks.check_sparsities("GraNet", self.initial_sparsity, self.final_sparsity)
        checks.check_step("GraNet", "start", self.start)
        if self.end is None:
            raise ValueError("GraNet: end (the last update step) is required")
        checks.check_step("GraNet", "end", self.end)
        checks.check_every("GraNet", self.every)
        checks.check_order("GraNet", self.start, self.end)
        checks.check_cubic_span("GraNet", self.start, self.end, self.every)
        checks.check_zeta("GraNet", self.zeta)
        checks.check_choice(
            "GraNet", "initial_allocation", self.initial_allocation, ("erk", "er", "uniform")
        )
        checks.check_min_keep("GraNet", self.min_keep)

    @property
    def steps(self) -> tuple[int, ...]:
        """The update steps (absolute)."""
        return schedules.update_steps(self.every, self.start, self.end)

    def target(self, step) -> jax.Array:
        """``s_t``, the sparsity after the update at ``step`` (may be traced)."""
        fn = schedules.zhu_gupta_schedule(
            self.initial_sparsity, self.final_sparsity, self.start, self.end, self.every
        )
        return jnp.asarray(fn(step), jnp.float32)

    def initial_mask(self, params: Any, key: jax.Array, *, base: Any = None) -> Any:
        """Dense (``initial_sparsity == 0``) or random at ``initial_sparsity``."""
        if self.initial_sparsity == 0:
            return dense_mask(params) if base is None else base
        return random_mask(
            params, key, self.initial_sparsity, self.initial_allocation, self.min_keep, base
        )

    def check_start(self, mask: Any) -> None:
        """Raises ValueError when ``mask`` is sparser than ``initial_sparsity`` (exactly for
        dense-to-sparse; one weight per layer of rounding for a random start)."""
        checks.check_start(
            "GraNet",
            mask,
            self.initial_sparsity,
            f"initial_sparsity={self.initial_sparsity}",
            slack=self.initial_sparsity > 0,
        )

    def mask_update(self, steps: int, start_step: int = 0) -> MaskUpdate:
        """The engine hook (``needs_grad=True``) for a run of ``steps`` from ``start_step``."""
        who = "GraNet.mask_update"
        checks.check_run(who, steps, start_step)
        checks.check_within_run(who, "start", self.start, steps, start_step)
        checks.check_within_run(who, "end", self.end, steps, start_step)
        fn = functools.partial(_granet_update, self, start_step, steps)
        return MaskUpdate(fn, self.steps, needs_grad=True)

    def drop_fraction(self, steps: int) -> Any:
        """ζ_t as a schedule of ``t − start_step`` over a run of ``steps``."""
        return schedules.cosine_drop_fraction(self.zeta, steps)


def _granet_update(method: GraNet, start_step: int, steps: int, inputs: UpdateInputs) -> Any:
    checks.check_grad("GraNet", inputs.grad, inputs.mask)
    pruner = magnitude_pruner("global", min_keep=method.min_keep)
    mask = pruner(inputs.params, inputs.mask, sparsity=method.target(inputs.step))
    zeta_t = method.drop_fraction(steps)(inputs.step - start_step)
    grow = magnitude_scores(inputs.grad)
    return drop_and_grow(mask, magnitude_scores(inputs.params), grow, zeta_t)
