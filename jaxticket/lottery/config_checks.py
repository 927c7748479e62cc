"""Checks of a ``LotteryConfig``: each field coerced to its type (``coerce_field``, from
``jaxticket.workflow.config``, which coerces every workflow config by its type hints), the
ranges and combinations of the whole config (``check_ranges``, run when it is built) and
the checks that need the model and the data (``check_fits``, run before level 0). The
training settings every workflow shares, and ``check_fits``, live in
``jaxticket.workflow.training``. A bad value raises :class:`ConfigError`, one line naming
the field and the valid range.
``jaxticket.lottery.config`` re-exports the public names.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from jaxticket.workflow.config import ConfigError, coerce_field  # noqa: F401  (re-exported)
from jaxticket.workflow.training import (  # noqa: F401  (re-exported)
    OPTIMIZERS,
    RATE_RESOLUTION,
    SCHEDULES,
    SEED_LIMIT,
    STEP_LIMIT,
    check_fits,
    check_optimizer_and_eval,
    check_seeds_and_steps,
)
from jaxticket.workflow.training import require as _check
from jaxticket.workflow.training import resolved_rate as _resolved

if TYPE_CHECKING:
    from jaxticket.lottery.config import LotteryConfig

REWIND_MODES = ("weights", "lr", "finetune")
CONTROLS = ("reinit", "random_prune", "shuffle")
STRUCTURES = ("weights", "channels", "units")
GROUP_SCORES = ("l1", "l2")


def check_ranges(c: LotteryConfig) -> None:
    """Every field of ``c`` in range and the fields' combinations valid, or a ConfigError.

    The training settings are the ones every workflow checks
    (``jaxticket.workflow.training``): seeds and steps first (``rewind`` is checked
    against ``steps``), IMP's own (levels, rates, rewinding, controls, one-shot), then the
    optimizer and evaluation settings, then the combination of ``finetune`` and schedule.
    """
    check_seeds_and_steps(c)
    top = (RATE_RESOLUTION - 1) / RATE_RESOLUTION
    rate_range = f"[{1 / RATE_RESOLUTION:.6f}, {top:.6f}] (rates resolve to 1e-6)"
    _check(c.levels >= 0, "levels", f"levels must be >= 0, got {c.levels}")
    _check(
        0 < _resolved(c.prune_fraction) < RATE_RESOLUTION,
        "prune_fraction",
        f"prune_fraction must be in {rate_range}, got {c.prune_fraction}",
    )
    patterns = [p for p, _ in c.layer_rates]
    _check(
        len(set(patterns)) == len(patterns),
        "layer_rates",
        f"layer_rates: each pattern once, got {patterns}",
    )
    for pattern, scale in c.layer_rates:
        _check(
            math.isfinite(scale) and scale >= 0.0,
            "layer_rates",
            f"layer_rates: scale of {pattern!r} must be finite and >= 0, got {scale}",
        )
        _check(
            _resolved(c.prune_fraction * scale) < RATE_RESOLUTION,
            "layer_rates",
            f"layer_rates: {pattern}={scale} gives a prune fraction "
            f"{c.prune_fraction * scale:g} outside [0, {top:.6f}]",
        )
    _check(
        c.allocation in ("layerwise", "global"),
        "allocation",
        f"allocation must be layerwise or global, got {c.allocation!r}",
    )
    _check(
        c.allocation == "layerwise" or not c.layer_rates,
        "layer_rates",
        f"layer_rates apply to allocation layerwise only; with allocation {c.allocation!r} "
        "pass layer_rates=() (--layer-rates '')",
    )
    _check(
        c.rewind_mode in REWIND_MODES,
        "rewind_mode",
        f"rewind_mode must be one of {', '.join(REWIND_MODES)}, got {c.rewind_mode!r}",
    )
    _check(
        0 <= c.rewind < c.steps,
        "rewind",
        f"rewind must be an iteration in [0, steps={c.steps}), got {c.rewind}",
    )
    for name in c.controls:
        _check(
            name in CONTROLS,
            "controls",
            f"unknown control {name!r}; valid: {', '.join(CONTROLS)}",
        )
    _check(
        len(set(c.controls)) == len(c.controls),
        "controls",
        f"controls: each control once, got {list(c.controls)}",
    )
    for s in c.one_shot:
        _check(
            0 < _resolved(s) < RATE_RESOLUTION,
            "one_shot",
            f"one_shot sparsity must be in {rate_range}, got {s}",
        )
    _check(
        len(set(c.one_shot)) == len(c.one_shot),
        "one_shot",
        f"one_shot: each sparsity once (each is one level trained from the dense net), "
        f"got {list(c.one_shot)}",
    )
    _check_level_sparsities(c, rate_range)
    _check_structure(c)
    if c.one_shot:
        # One-shot pruning trains one level per sparsity: IMP's level count and per-level
        # fraction would be ignored (and still change the run's hash), so they are refused.
        defaults = {f.name: f.default for f in dataclasses.fields(c)}
        for name in ("levels", "prune_fraction"):
            default = defaults[name]
            _check(
                getattr(c, name) == default,
                name,
                f"{name} has no effect with one_shot (one level per one-shot sparsity); "
                f"leave it at its default {default}",
            )
    check_optimizer_and_eval(c)
    _check(
        not (c.rewind_mode == "finetune" and c.schedule != "constant"),
        "rewind_mode",
        f"rewind mode finetune trains at the schedule's final rate, which is 0 for the "
        f"{c.schedule!r} schedule (nothing would train); use --schedule constant",
    )


def _check_level_sparsities(c, rate_range: str) -> None:
    """IMP levels to given sparsities: increasing, in range, and ``levels`` /
    ``prune_fraction`` / ``one_shot`` left alone (they would be ignored)."""
    targets = c.level_sparsities
    if not targets:
        return
    for s in targets:
        _check(
            0 < _resolved(s) < RATE_RESOLUTION,
            "level_sparsities",
            f"level_sparsities must lie in {rate_range}, got {s}",
        )
    _check(
        all(_resolved(a) < _resolved(b) for a, b in zip(targets, targets[1:], strict=False)),
        "level_sparsities",
        f"level_sparsities must increase (each level prunes the previous ticket further), "
        f"got {list(targets)}",
    )
    _check(
        not c.one_shot,
        "level_sparsities",
        "level_sparsities (iterative levels) and one_shot (levels from the dense net) "
        "exclude each other; give one",
    )
    defaults = {f.name: f.default for f in dataclasses.fields(c)}
    for name in ("levels", "prune_fraction"):
        _check(
            getattr(c, name) == defaults[name],
            name,
            f"{name} has no effect with level_sparsities (one level per sparsity); leave it "
            f"at its default {defaults[name]}",
        )


def _check_structure(c) -> None:
    """Structured IMP: a known structure and group score; controls that keep masks
    structured (``random_prune`` and ``shuffle`` move single weights)."""
    _check(
        c.structure in STRUCTURES,
        "structure",
        f"structure must be one of {', '.join(STRUCTURES)}, got {c.structure!r}",
    )
    _check(
        c.group_score in GROUP_SCORES,
        "group_score",
        f"group_score must be one of {', '.join(GROUP_SCORES)}, got {c.group_score!r}",
    )
    if c.structure == "weights":
        default = {f.name: f.default for f in dataclasses.fields(c)}["group_score"]
        _check(
            c.group_score == default,
            "group_score",
            f"group_score ranks units of structured IMP; with structure 'weights' leave it "
            f"at its default {default!r} (or pass --structure channels)",
        )
        return
    unstructured = [name for name in c.controls if name in ("random_prune", "shuffle")]
    _check(
        not unstructured,
        "controls",
        f"controls {unstructured} move single weights, so their masks would not be "
        f"structured; with structure {c.structure!r} use controls=('reinit',) or () "
        "(--controls reinit)",
    )
