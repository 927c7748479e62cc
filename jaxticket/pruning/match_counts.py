"""Pruning to given per-layer counts: a criterion, an exact-count allocation, a selection.

The lottery's random-pruning control keeps, in every layer, exactly as many weights as
the winning ticket, chosen at random among the weights its previous random mask kept::

    pruner = CountsPruner(criteria.random)
    rand = pruner(prev_random_mask, prev_random_mask, leaf_counts(ticket_mask), key=key)

``match_counts(counts)`` is the allocation: prunable leaf ``i`` keeps ``counts[i]`` of its
alive weights (one group per leaf). Its counts may be traced (under ``jit``/``vmap``, one
count vector per seed), so it cannot be a static part of a ``Pruner`` (whose allocation is
a compile-cache key); ``CountsPruner`` composes criterion, this allocation and a selection
in one pure, jittable call instead.

A concrete count above the leaf's alive count, or below 0, is refused naming the leaf; a
traced one is clipped to ``[0, alive]`` (``topk_mask``'s rule).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import validate_mask
from jaxticket.pruning import criteria
from jaxticket.pruning import selection as sel
from jaxticket.pruning.allocation import Allocation, Group

_is_none = lambda x: x is None  # noqa: E731


def match_counts(counts: Sequence[Any]) -> Allocation:
    """The allocation keeping exactly ``counts[i]`` alive units of prunable leaf ``i``.

    Args:
      counts: one int (or int32 scalar array, possibly traced) per prunable leaf, in
        flattening order.

    Returns:
      An allocation (``fraction``/``sparsity`` are ignored: the counts are the request).
    """
    counts = [jnp.asarray(c, jnp.int32) for c in counts]

    def allocate(leaves, alive, *, fraction=None, sparsity=None):
        del fraction, sparsity
        if len(leaves) != len(counts):
            raise ValueError(
                f"match_counts: {len(counts)} counts for {len(leaves)} prunable leaves "
                f"({', '.join(leaf.path for leaf in leaves)})"
            )
        return [
            Group((i,), jnp.minimum(c, a))
            for i, (c, a) in enumerate(zip(counts, alive, strict=True))
        ]

    return allocate


def leaf_counts(mask) -> list[jax.Array]:
    """The alive count (int32) of each prunable leaf of ``mask``, in flattening order."""
    return [jnp.sum(m, dtype=jnp.int32) for m in jax.tree.leaves(mask)]


@dataclasses.dataclass(frozen=True)
class CountsPruner:
    """Prunes each leaf of a mask to a given count: criterion ∘ match_counts ∘ selection.

    Attributes:
      criterion: ``fn(params, *, mask, key, batch) -> scores`` (e.g. ``criteria.random``).
      selection: a selection over weights or units (default ``unstructured()``: exact
        top-k per leaf, ties to the earlier position).
    """

    criterion: criteria.Criterion = criteria.random
    selection: sel.Selection = dataclasses.field(default_factory=sel.unstructured)

    def __call__(self, params, mask, counts: Sequence[Any], *, key=None, batch=None):
        """Returns a subset of ``mask`` with ``counts[i]`` alive units in prunable leaf i.

        Args:
          params: what the criterion scores, shaped like ``mask`` (the random criterion
            only reads shapes: pass the mask itself to draw scores for the prunable
            leaves alone, so the non-prunable leaves do not change the draws).
          mask: the current mask; only its alive weights can stay.
          counts: one count per prunable leaf (``leaf_counts(other_mask)`` matches
            another mask's counts); may be traced.
          key, batch: for the criterion.

        Raises:
          ValueError: a structure mismatch, the wrong number of counts, or a concrete
            count outside ``[0, alive]`` (names the leaf).
        """
        validate_mask(mask, params)
        flat = leaves_with_paths(mask, keep_none=True)
        prunable = [(i, path, m) for i, (path, m) in enumerate(flat) if m is not None]
        paths = [path for _, path, _ in prunable]
        if len(counts) != len(prunable):
            raise ValueError(
                f"CountsPruner: {len(counts)} counts for {len(prunable)} prunable leaves "
                f"({', '.join(paths)})"
            )
        alive = [m for _, _, m in prunable]
        _check_counts(paths, counts, alive)
        scores = self.criterion(params, mask=mask, key=key, batch=batch)
        criteria.check_scores(scores, mask)
        score_leaves = [s for _, _, s in criteria.align(mask, scores)]
        chosen = self.selection(
            [score_leaves[i] for i, _, _ in prunable],
            alive,
            paths,
            match_counts(counts),
            fraction=0.0,  # selection wants a rate; match_counts ignores it
        )
        leaves = [m for _, m in flat]
        for (i, _, _), m in zip(prunable, chosen, strict=True):
            leaves[i] = m
        return jax.tree.unflatten(jax.tree.structure(mask, is_leaf=_is_none), leaves)


def _check_counts(paths, counts, alive) -> None:
    for path, c, a in zip(paths, counts, alive, strict=True):
        if isinstance(c, jax.core.Tracer) or isinstance(a, jax.core.Tracer):
            continue
        c, n = int(np.asarray(c)), int(np.sum(np.asarray(a)))
        if not 0 <= c <= n:
            raise ValueError(f"CountsPruner: count of leaf {path!r} must be in [0, {n}], got {c}")
