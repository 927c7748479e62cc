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

__all__ = ["MagnitudePrograms", "magnitude_programs"]


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
