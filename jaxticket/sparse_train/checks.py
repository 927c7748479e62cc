"""Checks of a ``SparseTrainConfig``: ranges, combinations and settings the method ignores.

Each failure is a ``ConfigError(field, message)``, one line naming the field; a method
setting the chosen method does not read must stay at its default (:func:`used_fields`).
``jaxticket.sparse_train.config`` runs them when a config is built.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from jaxticket.workflow.training import RATE_RESOLUTION, check_training_settings
from jaxticket.workflow.training import require as _check
from jaxticket.workflow.training import require_one_of as _choice
from jaxticket.workflow.training import resolved_rate as _resolved

if TYPE_CHECKING:
    from jaxticket.sparse_train.config import SparseTrainConfig

METHODS = ("gmp", "set", "rigl", "granet", "static", "dense")
ALLOCATIONS = ("erk", "er", "uniform")
GMP_SCHEDULES = ("cubic", "one_shot", "constant")


def used_fields(c: SparseTrainConfig) -> set[str]:
    """The method settings ``c.method`` reads (the others must stay at their defaults)."""
    uses = {
        "dense": set(),
        "static": {"sparsities", "allocation", "min_keep"},
        "rigl": {"sparsities", "every", "zeta", "end_fraction", "allocation", "min_keep"},
        "granet": {"sparsities", "every", "granet_zeta", "prune_start", "prune_end"},
        "gmp": {"sparsities", "prune_start", "prune_allocation", "gmp_schedule", "min_keep"},
    }
    uses["set"] = uses["rigl"] | {"set_decay"}
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
    "set_decay",
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


def check_training(c: SparseTrainConfig) -> None:
    """The training settings shared with every workflow (``check_training_settings``), and
    the model's widths."""
    check_training_settings(c)
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
    _choice(c, "set_decay", ("constant", "cosine"))
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
