"""Checks of a ``LotteryConfig``: each field coerced to its type (``coerce_field``, from
``jaxticket.workflow.config``, which coerces every workflow config by its type hints), the
ranges and combinations of the whole config (``check_ranges``, run when it is built) and
the checks that need the model and the data (``check_fits``, run before level 0). A bad
value raises :class:`ConfigError`, one line naming the field and the valid range.
``jaxticket.lottery.config`` re-exports the public names.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

from jaxticket._paths import leaves_with_paths, matches
from jaxticket.workflow.config import ConfigError, coerce_field  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from jaxticket.lottery.config import LotteryConfig

REWIND_MODES = ("weights", "lr", "finetune")
CONTROLS = ("reinit", "random_prune", "shuffle")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
SCHEDULES = ("constant", "cosine", "linear")
SEED_LIMIT = 2**32  # seeds seed numpy's generator and JAX's keys: [0, 2**32)
# The pruner resolves a fraction or sparsity to six decimals (``fraction_of``): 0.9999999
# would prune everything and 1e-7 nothing, so requested rates must survive that rounding.
RATE_RESOLUTION = 1_000_000
STEP_LIMIT = 2**31 - 1  # the engine's step counters are int32


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(field, message)


def _resolved(rate: float) -> int:
    return round(rate * RATE_RESOLUTION) if math.isfinite(rate) else -1


def check_ranges(c: LotteryConfig) -> None:
    """Every field of ``c`` in range and the fields' combinations valid, or a ConfigError."""
    top = (RATE_RESOLUTION - 1) / RATE_RESOLUTION
    rate_range = f"[{1 / RATE_RESOLUTION:.6f}, {top:.6f}] (rates resolve to 1e-6)"
    _check(c.levels >= 0, "levels", f"levels must be >= 0, got {c.levels}")
    _check(c.seeds >= 1, "seeds", f"seeds must be >= 1, got {c.seeds}")
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
    _check(c.steps >= 1, "steps", f"steps must be >= 1, got {c.steps}")
    _check(
        c.steps <= STEP_LIMIT,
        "steps",
        f"steps must be <= 2**31 - 1 (int32 step counters), got {c.steps}",
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
    _check(
        c.optimizer in OPTIMIZERS,
        "optimizer",
        f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {c.optimizer!r}",
    )
    _check(
        c.schedule in SCHEDULES,
        "schedule",
        f"schedule must be one of {', '.join(SCHEDULES)}, got {c.schedule!r}",
    )
    _check(
        not (c.rewind_mode == "finetune" and c.schedule != "constant"),
        "rewind_mode",
        f"rewind mode finetune trains at the schedule's final rate, which is 0 for the "
        f"{c.schedule!r} schedule (nothing would train); use --schedule constant",
    )
    _check(c.batch_size >= 1, "batch_size", f"batch_size must be >= 1, got {c.batch_size}")
    _check(
        math.isfinite(c.learning_rate) and c.learning_rate > 0,
        "learning_rate",
        f"learning_rate must be finite and > 0, got {c.learning_rate}",
    )
    _check(
        math.isfinite(c.weight_decay) and c.weight_decay >= 0,
        "weight_decay",
        f"weight_decay must be finite and >= 0, got {c.weight_decay}",
    )
    _check(
        c.weight_decay == 0 or c.optimizer != "adam",
        "weight_decay",
        f"weight_decay {c.weight_decay} with optimizer adam would be ignored (adam has none); "
        "use optimizer adamw (decoupled decay)",
    )
    _check(
        1 <= c.eval_every <= c.steps,
        "eval_every",
        f"eval_every must be in [1, steps={c.steps}], got {c.eval_every}",
    )
    _check(c.val_size >= 1, "val_size", f"val_size must be >= 1, got {c.val_size}")
    _check(
        0 <= c.seed < SEED_LIMIT,
        "seed",
        f"seed must be in [0, 2**32), got {c.seed}",
    )
    _check(c.min_keep >= 0, "min_keep", f"min_keep must be >= 0, got {c.min_keep}")


def check_fits(c: LotteryConfig, data, mask) -> None:
    """The checks that need the data and the model, run before level 0 trains.

    Args:
      c: the config.
      data: the loaded data set (before the validation split).
      mask: ``dense_mask`` of the model's params (its non-``None`` leaves are prunable).

    Raises:
      ConfigError: ``val_size`` leaves no training examples, ``batch_size`` exceeds what
        is left, or a ``layer_rates`` pattern matches no prunable leaf.
    """
    n = int(data.y_train.shape[0])
    if not c.val_size < n:
        raise ConfigError(
            "val_size",
            f"val_size must be < {n} (the training examples of {c.dataset!r}), got {c.val_size}",
        )
    if c.batch_size > n - c.val_size:
        raise ConfigError(
            "batch_size",
            f"batch_size must be <= {n - c.val_size} (the training examples of {c.dataset!r} "
            f"left after val_size={c.val_size}), got {c.batch_size}",
        )
    prunable = [path for path, _ in leaves_with_paths(mask)]
    for pattern, _ in c.layer_rates:
        if not any(matches(path, pattern) for path in prunable):
            raise ConfigError(
                "layer_rates",
                f"layer_rates: pattern {pattern!r} matches no prunable leaf of {c.model!r}; "
                f"prunable leaves: {', '.join(prunable)}",
            )
