"""The sparse-training experiment as data: one frozen dataclass names a run completely.

``SparseTrainConfig`` is a ``jaxticket.workflow.WorkflowConfig``: every field is a CLI flag
of ``jaxticket sparse-train`` and the config's digest names the run directory. A method
trains once per target sparsity (one phase each; ``dense``, the baseline with the same
training settings, is one phase). Schedules given as fractions of training become absolute
steps on the grid of ``every`` (:meth:`SparseTrainConfig.schedule_span`).

Every setting a method does not use must stay at its default (``used_fields``): a flag
that would be silently ignored is refused, naming it. :func:`build_method` turns the
config into the ``jaxticket.sparse`` method of one target sparsity.
"""

from __future__ import annotations

import dataclasses
import math

from jaxticket import sparse
from jaxticket.lottery.config_checks import (
    OPTIMIZERS,
    RATE_RESOLUTION,
    SCHEDULES,
    SEED_LIMIT,
    STEP_LIMIT,
)
from jaxticket.workflow.config import ConfigError, WorkflowConfig, field

METHODS = ("gmp", "set", "rigl", "granet", "static", "dense")
ALLOCATIONS = ("erk", "er", "uniform")
GMP_SCHEDULES = ("cubic", "one_shot", "constant")


@dataclasses.dataclass(frozen=True)
class SparseTrainConfig(WorkflowConfig):
    """Sparse training of one method at several target sparsities, seeds vmapped.

    Defaults: LeNet-300-100 on MNIST-1D with the lottery workflow's training settings
    (Adam 1.2e-3, batch 60, 3000 steps), the papers' method settings (RigL/SET: ΔT = 100,
    ζ = 0.3, updates stop at 75 % of training, ERK start; GraNet: ζ = 0.5; GMP: the cubic
    schedule over the first 75 % of training).
    """

    model: str = field("lenet_300_100", "model name (lenet_300_100, mlp, cnn1d, conv2, ...)")
    dataset: str = field("mnist1d", "data set name (mnist1d, digits, modular, or a TFDS name)")
    method: str = field("rigl", "gmp, set, rigl, granet, static or dense (the baseline)")
    sparsities: tuple[float, ...] = field(
        (0.8, 0.9, 0.95, 0.98), "target sparsities in [0, 1), one run each (not for dense)"
    )
    seeds: int = field(3, "independent seeds, trained together in one vmapped program")
    steps: int = field(3000, "training iterations")
    batch_size: int = field(60, "minibatch size")
    learning_rate: float = field(1.2e-3, "peak learning rate")
    optimizer: str = field("adam", "adam, adamw, sgd or momentum")
    schedule: str = field("constant", "learning-rate schedule: constant, cosine or linear")
    weight_decay: float = field(
        0.0, "weight decay: decoupled for adamw, L2 for sgd and momentum; adam refuses it"
    )
    eval_every: int = field(100, "iterations between evaluations")
    val_size: int = field(500, "training examples held out for early stopping")
    seed: int = field(0, "base seed in [0, 2**32): inits, data order and masks derive from it")
    min_keep: int = field(1, "weights every prunable layer keeps at least (0: it may collapse)")
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
        return sparse.SET(sparsity, c.every, c.zeta, end, c.allocation, c.min_keep)
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


def used_fields(c: SparseTrainConfig) -> set[str]:
    """The method settings ``c.method`` reads (the others must stay at their defaults)."""
    uses = {
        "dense": set(),
        "static": {"sparsities", "allocation", "min_keep"},
        "set": {"sparsities", "every", "zeta", "end_fraction", "allocation", "min_keep"},
        "granet": {"sparsities", "every", "granet_zeta", "prune_start", "prune_end"},
        "gmp": {"sparsities", "prune_start", "prune_allocation", "gmp_schedule", "min_keep"},
    }
    uses["rigl"] = uses["set"]
    used = set(uses[c.method])
    if c.method == "granet":
        used |= {"initial_sparsity", "min_keep"} | ({"allocation"} if c.initial_sparsity else set())
    if c.method == "gmp":
        used |= set() if c.gmp_schedule == "one_shot" else {"every", "prune_end"}
        used |= {"initial_sparsity"} if c.gmp_schedule == "cubic" else set()
        used |= {"layer_rates"} if c.prune_allocation == "layerwise" else set()
    return used


METHOD_FIELDS = (
    "sparsities",
    "every",
    "zeta",
    "granet_zeta",
    "end_fraction",
    "prune_start",
    "prune_end",
    "allocation",
    "prune_allocation",
    "layer_rates",
    "gmp_schedule",
    "initial_sparsity",
    "min_keep",
)


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(name, message)


def _resolved(rate: float) -> int:
    return round(rate * RATE_RESOLUTION) if math.isfinite(rate) else -1


def _choice(c, name: str, valid) -> None:
    value = getattr(c, name)
    _check(value in valid, name, f"{name} must be one of {', '.join(valid)}, got {value!r}")


def check_training(c: SparseTrainConfig) -> None:
    """The training settings shared with the lottery workflow, and the model's widths."""
    _check(c.seeds >= 1, "seeds", f"seeds must be >= 1, got {c.seeds}")
    _check(1 <= c.steps <= STEP_LIMIT, "steps", f"steps must be in [1, 2**31 - 1], got {c.steps}")
    _check(c.batch_size >= 1, "batch_size", f"batch_size must be >= 1, got {c.batch_size}")
    _check(
        math.isfinite(c.learning_rate) and c.learning_rate > 0,
        "learning_rate",
        f"learning_rate must be finite and > 0, got {c.learning_rate}",
    )
    _choice(c, "optimizer", OPTIMIZERS)
    _choice(c, "schedule", SCHEDULES)
    _check(
        math.isfinite(c.weight_decay) and c.weight_decay >= 0,
        "weight_decay",
        f"weight_decay must be finite and >= 0, got {c.weight_decay}",
    )
    _check(
        c.weight_decay == 0 or c.optimizer != "adam",
        "weight_decay",
        f"weight_decay {c.weight_decay} with optimizer adam would be ignored; use adamw",
    )
    _check(
        1 <= c.eval_every <= c.steps,
        "eval_every",
        f"eval_every must be in [1, steps={c.steps}], got {c.eval_every}",
    )
    _check(c.val_size >= 1, "val_size", f"val_size must be >= 1, got {c.val_size}")
    _check(0 <= c.seed < SEED_LIMIT, "seed", f"seed must be in [0, 2**32), got {c.seed}")
    _check(c.min_keep >= 0, "min_keep", f"min_keep must be >= 0, got {c.min_keep}")
    _check(
        not c.hidden or c.model == "mlp",
        "hidden",
        f"hidden sets the widths of the mlp model; model {c.model!r} has fixed widths "
        "(pass --hidden '' or --model mlp)",
    )
    _check(all(h >= 1 for h in c.hidden), "hidden", f"hidden widths must be >= 1, got {c.hidden}")


def check_method(c: SparseTrainConfig) -> None:
    """The method, its settings' ranges and combinations, and no ignored setting."""
    _choice(c, "method", METHODS)
    defaults = {f.name: f.default for f in dataclasses.fields(c)}
    used = used_fields(c)
    for name in METHOD_FIELDS:
        _check(
            name in used or getattr(c, name) == defaults[name],
            name,
            f"{name} has no effect with method {c.method}"
            + (f" and gmp_schedule {c.gmp_schedule}" if c.method == "gmp" else "")
            + f"; leave it at its default {_shown(defaults[name])}",
        )
    top = f"{(RATE_RESOLUTION - 1) / RATE_RESOLUTION:.6f}"
    _check(bool(c.sparsities), "sparsities", "sparsities: give at least one target sparsity")
    for s in c.sparsities:
        _check(
            0 <= _resolved(s) < RATE_RESOLUTION,
            "sparsities",
            f"sparsities: each target must be in [0, {top}] (resolved to 1e-6), got {s}",
        )
    _check(
        len(set(c.sparsities)) == len(c.sparsities),
        "sparsities",
        f"sparsities: each target once, got {list(c.sparsities)}",
    )
    _check(
        c.every >= 1, "every", f"every (Δt, steps between mask updates) must be >= 1, got {c.every}"
    )
    for name in ("zeta", "granet_zeta"):
        value = getattr(c, name)
        _check(0 < value < 1, name, f"{name} must be in (0, 1), got {value}")
    _check(
        0 < c.end_fraction <= 1,
        "end_fraction",
        f"end_fraction must be in (0, 1], got {c.end_fraction}",
    )
    _check(
        0 <= c.prune_start < 1,
        "prune_start",
        f"prune_start must be in [0, 1), got {c.prune_start}",
    )
    _check(0 < c.prune_end <= 1, "prune_end", f"prune_end must be in (0, 1], got {c.prune_end}")
    _check(
        c.prune_end > c.prune_start,
        "prune_end",
        f"the prune schedule ends before it starts: prune_end={c.prune_end} <= "
        f"prune_start={c.prune_start}",
    )
    _choice(c, "allocation", ALLOCATIONS)
    _choice(c, "prune_allocation", ("layerwise", "global"))
    _choice(c, "gmp_schedule", GMP_SCHEDULES)
    _check(
        0 <= _resolved(c.initial_sparsity) < RATE_RESOLUTION,
        "initial_sparsity",
        f"initial_sparsity must be in [0, {top}], got {c.initial_sparsity}",
    )
    if "initial_sparsity" in used:
        low = min(c.sparsities)
        _check(
            c.initial_sparsity <= low,
            "initial_sparsity",
            f"initial_sparsity={c.initial_sparsity} exceeds the target sparsity {low}: a "
            f"{c.method} run starts no sparser than it ends",
        )
    for pattern, scale in c.layer_rates:
        top_rate = max(c.sparsities) * scale
        _check(
            math.isfinite(scale) and scale >= 0 and _resolved(top_rate) < RATE_RESOLUTION,
            "layer_rates",
            f"layer_rates: {pattern}={scale} must be finite, >= 0 and keep every target "
            f"below 1 (it gives {top_rate:g} at sparsity {max(c.sparsities)})",
        )
    _check_steps(c, used)


def _check_steps(c: SparseTrainConfig, used: set[str]) -> None:
    # The schedules in absolute steps: at least one update must fit each run.
    if "end_fraction" in used:
        last = c.last_update()
        _check(
            c.every <= last,
            "every",
            f"every={c.every}: no mask update fits before step {last + 1} "
            f"(end_fraction={c.end_fraction} of steps={c.steps}); the first is at step every",
        )
    if "prune_start" in used:
        start, end = c.schedule_span()
        _check(
            start < c.steps,
            "prune_start",
            f"prune_start={c.prune_start} puts the first prune at step {start}, after the "
            f"last step {c.steps - 1}",
        )
        needs_span = c.method == "granet" or c.gmp_schedule == "cubic"
        _check(
            not needs_span or end - start >= c.every,
            "prune_end",
            f"the prune schedule from step {start} to step "
            f"{min(math.floor(c.prune_end * c.steps + 1e-9), c.steps - 1)} holds fewer than "
            f"two updates every={c.every} steps apart; move prune_end later or lower every",
        )


def _shown(value) -> str:
    # A default as its flag is written: 0.8,0.9 or output/*=0.5, '' for an empty list.
    if not isinstance(value, tuple):
        return str(value)
    if not value:
        return "''"
    return ",".join(f"{v[0]}={v[1]:g}" if isinstance(v, tuple) else f"{v:g}" for v in value)
