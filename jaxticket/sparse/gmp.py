"""Gradual magnitude pruning (Zhu & Gupta, *To prune, or not to prune*, 2017).

Dense to sparse: at ``t = t₀, t₀+Δt, …, t₀+n·Δt`` (``n = (end − start) // every``) prune
by magnitude to ``s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(n·Δt))³`` (the cubic schedule,
:func:`jaxticket.sparse.zhu_gupta_schedule`), per layer (``"layerwise"``, optionally
with per-layer factors on the rate) or with one global threshold (``"global"``).

Each update calls the library's ``magnitude_pruner(allocation, scale=..., min_keep=...)``
with ``sparsity=s_t`` traced, so the counts are exact at every update: per layer
``floor(s·n + 1/2)`` pruned with s resolved to six decimals (``jaxticket.pruning.
allocation.fraction_of``), and the pruned never return (the schedule only rises).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.masks import dense_mask
from jaxticket.pruning import magnitude_pruner
from jaxticket.sparse import checks, schedules
from jaxticket.train.mask_update import MaskUpdate, UpdateInputs

__all__ = ["GMP"]

_SCHEDULES = ("cubic", "one_shot", "constant")


@dataclasses.dataclass(frozen=True)
class GMP:
    """Gradual magnitude pruning from a dense start.

    Schedules:
      * ``"cubic"`` (Zhu & Gupta): updates at ``start, start+every, …, start+n·every``
        with sparsity ``s_t`` from ``initial_sparsity`` to ``final_sparsity``;
      * ``"one_shot"``: one update at ``start`` straight to ``final_sparsity`` (``end``
        must be ``None`` or ``start``; ``every`` is not used);
      * ``"constant"``: ``final_sparsity`` at every update from ``start`` to ``end``
        (the first prunes, the later ones keep the count while weights move).

    Attributes:
      final_sparsity: s_f in [initial_sparsity, 1).
      start: t₀, the step of the first update (absolute, >= the run's ``start_step``).
      end: the last step an update may take (absolute, before the run ends).
      every: Δt (> 0).
      initial_sparsity: s_i in [0, 1), the schedule's value at t₀.
      allocation: "layerwise" or "global".
      scale: per-layer rate factors as ``(pattern, factor)`` pairs (a mapping is
        accepted), "layerwise" only: ``(("out/*", 0.5),)`` prunes the output layer at
        half the rate.
      schedule: "cubic", "one_shot" or "constant".
      min_keep: weights every layer keeps at least (0: a layer may collapse).
    """

    final_sparsity: float
    start: int = 0
    end: int | None = None
    every: int = 100
    initial_sparsity: float = 0.0
    allocation: str = "layerwise"
    scale: tuple[tuple[str, float], ...] = ()
    schedule: str = "cubic"
    min_keep: int = 1

    def __post_init__(self):
        checks.check_sparsities("GMP", self.initial_sparsity, self.final_sparsity)
        checks.check_step("GMP", "start", self.start)
        checks.check_every("GMP", self.every)
        checks.check_choice("GMP", "schedule", self.schedule, _SCHEDULES)
        checks.check_choice("GMP", "allocation", self.allocation, ("layerwise", "global"))
        checks.check_min_keep("GMP", self.min_keep)
        object.__setattr__(self, "scale", checks.as_scale("GMP", self.scale))
        if self.scale and self.allocation != "layerwise":
            raise ValueError(
                f"GMP: scale goes with allocation='layerwise', got {self.allocation!r}"
            )
        for pattern, factor in self.scale:
            checks.check_sparsity(
                "GMP", f"final_sparsity·scale[{pattern!r}]", self.final_sparsity * factor
            )
        if self.schedule == "one_shot":
            if self.end is not None and self.end != self.start:
                raise ValueError(
                    f"GMP: schedule='one_shot' prunes once at start={self.start}; end must be "
                    f"None or start, got end={self.end}"
                )
            return
        if self.end is None:
            raise ValueError(f"GMP: schedule={self.schedule!r} needs end (the last update step)")
        checks.check_step("GMP", "end", self.end)
        checks.check_order("GMP", self.start, self.end)
        if self.schedule == "cubic":
            checks.check_cubic_span("GMP", self.start, self.end, self.every)

    @property
    def steps(self) -> tuple[int, ...]:
        """The update steps (absolute)."""
        if self.schedule == "one_shot":
            return (self.start,)
        return schedules.update_steps(self.every, self.start, self.end)

    def target(self, step) -> jax.Array:
        """The sparsity the update at ``step`` prunes to (``step`` may be traced)."""
        if self.schedule == "cubic":
            fn = schedules.zhu_gupta_schedule(
                self.initial_sparsity, self.final_sparsity, self.start, self.end, self.every
            )
            return jnp.asarray(fn(step), jnp.float32)
        return jnp.full((), self.final_sparsity, jnp.float32)

    def initial_mask(self, params: Any, key: jax.Array | None = None, *, base: Any = None) -> Any:
        """``dense_mask(params)``, or ``base`` (a dense mask naming the prunable leaves):
        GMP starts dense; ``key`` is not used."""
        del key
        return dense_mask(params) if base is None else base

    def check_start(self, mask: Any) -> None:
        """Raises ValueError when ``mask`` is sparser than ``initial_sparsity``."""
        checks.check_start(
            "GMP",
            mask,
            self.initial_sparsity,
            f"initial_sparsity={self.initial_sparsity}",
            slack=False,
        )

    def mask_update(self, steps: int, start_step: int = 0) -> MaskUpdate:
        """The engine hook for a run of ``steps`` steps from ``start_step``.

        Raises:
          ValueError: an update before ``start_step`` or at/after ``start_step + steps``.
        """
        who = "GMP.mask_update"
        checks.check_run(who, steps, start_step)
        checks.check_within_run(who, "start", self.start, steps, start_step)
        if self.end is not None:
            checks.check_within_run(who, "end", self.end, steps, start_step)
        return MaskUpdate(self.update, self.steps)

    def pruner(self):
        """The library pruner each update calls."""
        scale = dict(self.scale) if self.scale else None
        return magnitude_pruner(self.allocation, scale=scale, min_keep=self.min_keep)

    def update(self, inputs: UpdateInputs) -> Any:
        """The new mask: magnitude-pruned to ``target(step)`` (``MaskUpdate.fn``)."""
        return self.pruner()(inputs.params, inputs.mask, sparsity=self.target(inputs.step))
