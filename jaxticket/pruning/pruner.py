"""Pruner = criterion ∘ allocation ∘ selection, one pure call from (params, mask) to a mask.

Example::

    pruner = magnitude_pruner("layerwise", scale={"out/*": 0.5})
    mask = pruner(params, mask, fraction=0.2)      # 20% of hidden, 10% of output weights
    mask = prune(params, mask, sparsity=0.9)       # global magnitude to 90% sparsity

The call is pure and jittable; ``fraction`` and ``sparsity`` may be traced, so one compiled
function serves every pruning round::

    step = jax.jit(lambda p, m, f: pruner(p, m, fraction=f))

Checks that need concrete values run only eagerly: a ``fraction``/``sparsity`` outside
[0, 1) raises ValueError when given as a Python or concrete number (traced values are
clipped instead), and NaN/inf scores raise ValueError naming the leaf only when the scores
are concrete (see ``check_scores``; call the pruner once eagerly to check a new criterion).
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import validate_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning import criteria
from jaxticket.pruning import selection as sel

Params = Any
Mask = Any

_is_none = lambda x: x is None


class Pruner(NamedTuple):
    """A criterion, an allocation and a selection; call it to prune.

    Attributes:
      criterion: ``fn(params, *, mask, key, batch) -> scores``.
      allocation: e.g. ``global_()``, ``layerwise(scale)``, ``erk()``.
      selection: e.g. ``unstructured()``, ``neurons()``, ``n_m(2, 4)``.

    Allocation and selection are static arguments of a jitted core, so they must be
    hashable (plain functions are; the factories return the same function for equal
    arguments, so building a pruner twice reuses the compiled program). Close over a
    pruner inside ``jax.jit``; do not pass it as an argument.
    """

    criterion: criteria.Criterion
    allocation: alloc.Allocation
    selection: sel.Selection

    def __call__(
        self,
        params: Params,
        mask: Mask,
        *,
        fraction: float | jax.Array | None = None,
        sparsity: float | jax.Array | None = None,
        key: jax.Array | None = None,
        batch: Any = None,
    ) -> Mask:
        """Returns a new mask (a subset of ``mask``).

        Args:
          params: the parameter pytree.
          mask: the current mask (``jaxticket.dense_mask(params)`` to start).
          fraction: prune this fraction of the alive prunable weights (exactly
            ``round(f·alive)``, per leaf or in total depending on the allocation).
          sparsity: prune until this fraction of all prunable weights is pruned.
          key: for random criteria.
          batch: for data-driven criteria (SNIP, ...).

        Raises:
          ValueError: no prunable leaves, a fraction/sparsity outside [0, 1), NaN/inf
            scores (eagerly), and the errors of the allocation and selection.
        """
        _check_rate("fraction", fraction)
        _check_rate("sparsity", sparsity)
        validate_mask(mask, params)
        flat = leaves_with_paths(mask, keep_none=True)
        prunable = [(i, path, m) for i, (path, m) in enumerate(flat) if m is not None]
        if not prunable:
            raise ValueError(
                "pruner: the mask has no prunable leaves; leaf paths are: "
                + ", ".join(path for path, _ in flat)
            )
        scores = self.criterion(params, mask=mask, key=key, batch=batch)
        criteria.check_scores(scores, mask)
        score_leaves = [s for _, _, s in criteria.align(mask, scores)]
        new = _select(
            [_as_float(score_leaves[i]) for i, _, _ in prunable],
            [m for _, _, m in prunable],
            fraction,
            sparsity,
            selection=self.selection,
            allocation=self.allocation,
            paths=tuple(path for _, path, _ in prunable),
        )
        leaves = [m for _, m in flat]
        for (i, _, _), m in zip(prunable, new, strict=True):
            leaves[i] = m
        return jax.tree.unflatten(jax.tree.structure(mask, is_leaf=_is_none), leaves)


def make_pruner(
    criterion: criteria.Criterion,
    allocation: str | alloc.Allocation = "global",
    selection: str | sel.Selection = "unstructured",
    *,
    scale: dict[str, float] | None = None,
) -> Pruner:
    """A ``Pruner`` from a criterion and names (or functions) for the other two parts.

    Args:
      criterion: a criterion function.
      allocation: ``"global"``, ``"layerwise"``, ``"erk"``, ``"er"`` or an allocation.
      selection: ``"unstructured"``, ``"neurons"`` or a selection (e.g. ``n_m(2, 4)``).
      scale: per-leaf rate factors by path pattern; only with ``"layerwise"``.
    """
    if isinstance(allocation, str):
        allocation = _allocation(allocation, scale)
    elif scale is not None:
        raise ValueError("scale= goes with allocation='layerwise'; pass layerwise(scale) instead")
    if isinstance(selection, str):
        names = {"unstructured": sel.unstructured, "neurons": sel.neurons}
        if selection not in names:
            raise ValueError(f"unknown selection {selection!r}; valid: {sorted(names)}")
        selection = names[selection]()
    return Pruner(criterion, allocation, selection)


def magnitude_pruner(allocation="global", selection="unstructured", *, scale=None) -> Pruner:
    """Prunes the smallest |w| (lottery tickets, gradual magnitude pruning)."""
    return make_pruner(criteria.magnitude, allocation, selection, scale=scale)


def random_pruner(allocation="global", selection="unstructured", *, scale=None) -> Pruner:
    """Prunes uniformly at random (needs ``key=``); the random-pruning control."""
    return make_pruner(criteria.random, allocation, selection, scale=scale)


def snip_pruner(loss_fn, allocation="global", selection="unstructured", *, scale=None) -> Pruner:
    """SNIP at initialization (needs ``batch=``); ``loss_fn(params, batch) -> scalar``."""
    return make_pruner(criteria.snip(loss_fn), allocation, selection, scale=scale)


def prune(
    params: Params,
    mask: Mask,
    *,
    fraction: float | jax.Array | None = None,
    sparsity: float | jax.Array | None = None,
    criterion: criteria.Criterion = criteria.magnitude,
    allocation: str | alloc.Allocation = "global",
    selection: str | sel.Selection = "unstructured",
    scale: dict[str, float] | None = None,
    key: jax.Array | None = None,
    batch: Any = None,
) -> Mask:
    """One-off pruning: ``make_pruner(criterion, allocation, selection, scale=scale)(...)``."""
    pruner = make_pruner(criterion, allocation, selection, scale=scale)
    return pruner(params, mask, fraction=fraction, sparsity=sparsity, key=key, batch=batch)


# --------------------------------------------------------------------------------------
# helpers


def _allocation(name: str, scale) -> alloc.Allocation:
    if name == "layerwise":
        return alloc.layerwise(scale)
    if scale is not None:
        raise ValueError(f"scale= needs allocation='layerwise', got {name!r}")
    names = {"global": alloc.global_, "erk": alloc.erk, "er": alloc.er}
    if name not in names:
        raise ValueError(f"unknown allocation {name!r}; valid: {sorted([*names, 'layerwise'])}")
    return names[name]()


def _check_rate(name: str, value) -> None:
    if value is None or isinstance(value, jax.core.Tracer):
        return
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"pruner: {name} must be in [0, 1), got {v}")


# One compiled program per (selection, allocation, leaf paths and shapes): eager calls
# then cost one dispatch instead of one compilation per op, and fraction/sparsity are
# traced, so every round of an iterative schedule reuses it.
@functools.partial(jax.jit, static_argnames=("selection", "allocation", "paths"))
def _select(scores, alive, fraction, sparsity, *, selection, allocation, paths):
    return selection(scores, alive, list(paths), allocation, fraction=fraction, sparsity=sparsity)


def _as_float(s):
    return s if jnp.issubdtype(s.dtype, jnp.floating) else s.astype(jnp.float32)
