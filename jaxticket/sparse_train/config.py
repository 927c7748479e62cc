"""The sparse-training experiment as data: one frozen dataclass names a run completely.

``SparseTrainConfig`` is a ``jaxticket.workflow.WorkflowConfig``: every field is a CLI flag
of ``jaxticket sparse-train`` and the config's digest names the run directory. A method
trains once per target sparsity (one phase each; ``dense``, the baseline with the same
training settings, is one phase). Schedules given as fractions of training become absolute
steps on the grid of ``every`` (:meth:`SparseTrainConfig.schedule_span`).

Every setting a method does not use must stay at its default (``used_fields``): a flag
that would be silently ignored is refused, naming it. :func:`build_method` turns the
config into the ``jaxticket.sparse`` method of one target sparsity; the checks live in
``jaxticket.sparse_train.checks``.
"""

from __future__ import annotations

import dataclasses
import math

from jaxticket import sparse
from jaxticket.sparse_train.checks import (  # re-exported: callers import them from here
    ALLOCATIONS,  # noqa: F401
    GMP_SCHEDULES,  # noqa: F401
    METHODS,  # noqa: F401
    check_method,
    check_training,
    used_fields,  # noqa: F401
)
from jaxticket.workflow.config import ConfigError, field
from jaxticket.workflow.settings import TrainingSettings


@dataclasses.dataclass(frozen=True)
class SparseTrainConfig(TrainingSettings):
    """Sparse training of one method at several target sparsities, seeds vmapped.

    Defaults: LeNet-300-100 on MNIST-1D with the lottery workflow's training settings
    (Adam 1.2e-3, batch 60, 3000 steps), the papers' method settings (RigL/SET: ΔT = 100,
    ζ = 0.3, updates stop at 75 % of training, ERK start; GraNet: ζ = 0.5; GMP: the cubic
    schedule over the first 75 % of training).
    """

    method: str = field("rigl", "gmp, set, rigl, granet, static or dense (the baseline)")
    sparsities: tuple[float, ...] = field(
        (0.8, 0.9, 0.95, 0.98), "target sparsities in [0, 1), one run each (not for dense)"
    )
    every: int = field(100, "Δt, steps between mask updates (set, rigl, gmp, granet)")
    zeta: float = field(
        0.3,
        "set, rigl: fraction ζ of the alive weights dropped and regrown per update (0.3 in "
        "both papers; RigL's decays by cosine)",
    )
    granet_zeta: float = field(
        0.5,
        "granet: initial regeneration fraction ζ (0.5, the paper's), decaying by cosine over "
        "training",
    )
    set_decay: str = field(
        "constant",
        "set: constant ζ (Mocanu et al.) or cosine (RigL's decay, for a same-schedule comparison)",
    )
    end_fraction: float = field(
        0.75, "set, rigl: mask updates stop at this fraction of training, in (0, 1]"
    )
    prune_start: float = field(
        0.0, "gmp, granet: the first prune step as a fraction of training, in [0, 1)"
    )
    prune_end: float = field(
        0.75, "gmp, granet: the last prune step as a fraction of training, in (0, 1]"
    )
    allocation: str = field(
        "erk",
        "densities of the random starting mask: erk, er or uniform (set, rigl, static, "
        "granet with --initial-sparsity > 0)",
    )
    prune_allocation: str = field(
        "layerwise", "gmp: layerwise (each layer to the target) or global (one threshold)"
    )
    layer_rates: tuple[tuple[str, float], ...] = field(
        (), "gmp layerwise: per-layer scale of the target sparsity, PATTERN=SCALE"
    )
    gmp_schedule: str = field(
        "cubic", "gmp: cubic (Zhu & Gupta), one_shot (once at --prune-start) or constant"
    )
    initial_sparsity: float = field(
        0.0,
        "gmp (cubic), granet: the schedule's starting sparsity s_i; granet > 0 is the "
        "sparse-to-sparse variant, from a random mask at that sparsity",
    )
    hidden: tuple[int, ...] = field(
        (), "hidden widths of the mlp model, e.g. 100,100 (empty: the model's default)"
    )

    def check(self) -> None:
        """Ranges, combinations and ignored settings, each a ``ConfigError`` naming the field."""
        check_training(self)
        check_method(self)
        for s in self.sparsities if self.method != "dense" else ():
            try:
                build_method(self, s).mask_update(self.steps)
            except ValueError as err:  # a leftover combination: name the method's settings
                raise ConfigError("method", f"{self.method}: {err}") from None

    @property
    def targets(self) -> tuple[float, ...]:
        """The target sparsity of each phase, in order (``(0.0,)`` for dense)."""
        return (0.0,) if self.method == "dense" else self.sparsities

    def schedule_span(self) -> tuple[int, int]:
        """GMP/GraNet's first and last prune steps (absolute).

        ``start = every·floor(prune_start·steps / every)``; the last update is the last
        step ``start + n·every`` at or before ``floor(prune_end·steps)`` that lies inside
        the run (``<= steps − 1``).
        """
        start = self.every * math.floor(self.prune_start * self.steps / self.every + 1e-9)
        last = min(math.floor(self.prune_end * self.steps + 1e-9), self.steps - 1)
        return start, start + max(last - start, 0) // self.every * self.every

    def last_update(self) -> int:
        """SET/RigL's last allowed update step: the last ``t`` with ``t < end_fraction·steps``."""
        return math.ceil(self.end_fraction * self.steps - 1e-9) - 1


def build_method(c: SparseTrainConfig, sparsity: float):
    """The ``jaxticket.sparse`` method of ``c`` at target ``sparsity`` (``None`` for dense)."""
    if c.method == "dense":
        return None
    if c.method == "static":
        return sparse.Static(sparsity, allocation=c.allocation, min_keep=c.min_keep)
    if c.method in ("set", "rigl"):
        if c.method == "rigl":
            return sparse.RigL(sparsity, c.every, c.zeta, c.end_fraction, c.allocation, c.min_keep)
        end = None if c.end_fraction == 1.0 else c.last_update()
        return sparse.SET(
            sparsity, c.every, c.zeta, end, c.allocation, c.min_keep, decay=c.set_decay
        )
    start, end = c.schedule_span()
    if c.method == "granet":
        return sparse.GraNet(
            sparsity,
            c.initial_sparsity,
            start,
            end,
            c.every,
            c.granet_zeta,
            c.allocation,
            c.min_keep,
        )
    one_shot = c.gmp_schedule == "one_shot"
    return sparse.GMP(
        sparsity,
        start=start,
        end=None if one_shot else end,
        every=c.every,
        initial_sparsity=c.initial_sparsity,
        allocation=c.prune_allocation,
        scale=c.layer_rates,
        schedule=c.gmp_schedule,
        min_keep=c.min_keep,
    )
