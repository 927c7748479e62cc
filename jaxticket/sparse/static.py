"""Static sparse training: a random mask at ERK / ER / uniform densities, never updated.

The baseline of *The Unreasonable Effectiveness of Random Pruning* (Liu et al., ICLR 2022):
the per-layer density decides much of what a sparse network reaches. The random mask is
drawn by the library's ``random_pruner(allocation)``; :func:`random_mask` is also the
starting mask of SET, RigL and sparse-to-sparse GraNet.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax

from jaxticket.masks import dense_mask
from jaxticket.pruning import random_pruner
from jaxticket.sparse import checks

__all__ = ["Static", "random_mask"]

# "uniform" is the library's layerwise allocation: the same sparsity in every layer.
_ALLOCATIONS = {"erk": "erk", "er": "er", "uniform": "layerwise"}


def random_mask(
    params: Any,
    key: jax.Array,
    sparsity: float,
    allocation: str = "erk",
    min_keep: int = 1,
    base: Any = None,
) -> Any:
    """A uniformly random mask at ``sparsity`` with per-layer densities by ``allocation``.

    Args:
      params: the params tree.
      key: a ``jax.random`` key (same key, same mask).
      sparsity: the fraction of prunable weights pruned, in [0, 1).
      allocation: "erk" (Evci et al. 2020: density ∝ sum/prod of the kernel dims), "er"
        (∝ (n_in + n_out)/(n_in·n_out)) or "uniform" (the same sparsity in every layer).
      min_keep: weights every layer keeps at least.
      base: the mask naming the prunable leaves (default ``dense_mask(params)``).
    """
    checks.check_choice("random_mask", "allocation", allocation, tuple(_ALLOCATIONS))
    base = dense_mask(params) if base is None else base
    pruner = random_pruner(_ALLOCATIONS[allocation], min_keep=min_keep)
    return pruner(params, base, sparsity=sparsity, key=key)


@dataclasses.dataclass(frozen=True)
class Static:
    """A random mask at ``sparsity`` trained as it is (``mask_update`` returns ``None``).

    Attributes:
      sparsity: the fraction of prunable weights pruned, in [0, 1).
      allocation: "erk", "er" or "uniform".
      min_keep: weights every layer keeps at least.
    """

    sparsity: float
    allocation: str = "erk"
    min_keep: int = 1

    def __post_init__(self):
        checks.check_sparsity("Static", "sparsity", self.sparsity)
        checks.check_choice("Static", "allocation", self.allocation, tuple(_ALLOCATIONS))
        checks.check_min_keep("Static", self.min_keep)

    def initial_mask(self, params: Any, key: jax.Array, *, base: Any = None) -> Any:
        """The random mask (see :func:`random_mask`)."""
        return random_mask(params, key, self.sparsity, self.allocation, self.min_keep, base)

    def check_start(self, mask: Any) -> None:
        """Raises ValueError when ``mask`` is sparser than ``sparsity`` (one weight per
        layer of rounding allowed)."""
        checks.check_start("Static", mask, self.sparsity, f"sparsity={self.sparsity}", slack=True)

    def mask_update(self, steps: int, start_step: int = 0) -> None:
        """``None``: the mask never changes (the arguments are checked all the same)."""
        checks.check_run("Static.mask_update", steps, start_step)
        return None
