"""IMP's magnitude pruning as the soup and COLT workflows run it: jitted and vmapped over
seeds, with the amount traced (one compiled program for every level).

Built from ``jaxticket.pruning`` as the lottery workflow builds its pruners (layerwise
rates scaled per pattern, or one global threshold; ``min_keep``): ``by_fraction`` prunes a
fraction of each seed's survivors, ``to_sparsity`` prunes each seed to its own total
sparsity exactly (layerwise: counts rounded so the total is met).
"""

from __future__ import annotations

from typing import NamedTuple

import jax

from jaxticket.pruning import criteria, layerwise, magnitude_pruner, make_pruner
from jaxticket.workflow.training import RATE_RESOLUTION, resolved_rate
from jaxticket.workflow.training import require as _check
from jaxticket.workflow.training import require_one_of as _choice

__all__ = ["MagnitudePrograms", "check_pruning_settings", "magnitude_programs"]


def check_pruning_settings(c) -> None:
    """The IMP-style settings a soup or COLT config shares, each a ``ConfigError`` naming
    the field: ``prune_fraction`` in (0, 1), ``allocation``, ``layer_rates`` only with
    layerwise allocation, ``rewind`` in ``[0, steps)`` and ``hidden`` (mlp widths)."""
    _check(
        0 < resolved_rate(c.prune_fraction) < RATE_RESOLUTION,
        "prune_fraction",
        f"prune_fraction must be in (0, 1) (resolved to 1e-6), got {c.prune_fraction}",
    )
    _choice(c, "allocation", ("layerwise", "global"))
    _check(
        not c.layer_rates or c.allocation == "layerwise",
        "layer_rates",
        "layer_rates go with allocation=layerwise; pass --layer-rates '' for global",
    )
    _check(
        0 <= c.rewind < c.steps, "rewind", f"rewind must be in [0, steps={c.steps}), got {c.rewind}"
    )
    _check(
        not c.hidden or c.model == "mlp",
        "hidden",
        f"hidden sets the widths of the mlp model; model {c.model!r} has fixed widths",
    )
    _check(all(h >= 1 for h in c.hidden), "hidden", f"hidden widths must be >= 1, got {c.hidden}")


class MagnitudePrograms(NamedTuple):
    """``by_fraction(params, masks, fraction)`` (one fraction for all seeds) and
    ``to_sparsity(params, masks, sparsities)`` (one per seed), stacked over seeds."""

    by_fraction: object
    to_sparsity: object


def magnitude_programs(
    allocation: str, layer_rates: tuple[tuple[str, float], ...], min_keep: int
) -> MagnitudePrograms:
    """The two programs for a config's ``allocation``, ``layer_rates`` and ``min_keep``."""
    scale = dict(layer_rates) or None
    step = magnitude_pruner(allocation, scale=scale, min_keep=min_keep)
    exact = step
    if allocation == "layerwise":
        exact = make_pruner(
            criteria.magnitude, layerwise(scale, exact_total=True), min_keep=min_keep
        )
    by_fraction = jax.vmap(lambda p, m, f: step(p, m, fraction=f), in_axes=(0, 0, None))
    to_sparsity = jax.vmap(lambda p, m, s: exact(p, m, sparsity=s), in_axes=(0, 0, 0))
    return MagnitudePrograms(jax.jit(by_fraction), jax.jit(to_sparsity))
