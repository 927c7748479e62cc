"""Sanity checks for pruning at initialization (Frankle et al., ICLR 2021).

Three controls of any at-init mask, each a pure function:

- :func:`layerwise_shuffle`: the same per-layer counts at shuffled positions. If a method's
  mask beats its shuffled version, the positions matter; if not, only the per-layer
  densities do.
- :func:`invert_scores`: keep the LOWEST-scoring weights at the same sparsity and
  allocation (the methods' ``inverted=True`` option does the same inside the method).
- Reinitialization: train the SAME mask from a fresh init, i.e. ``model.init(other_key)``
  with the mask unchanged; :func:`reinit` is that one line.

Masks may be stacked over seeds: pass one key per seed (a key array of shape ``(n,)``, or
``(n, 2)`` legacy keys) and every leaf's leading axis is the seed axis.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.lottery.controls import _shuffle_one
from jaxticket.masks import apply_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning.pruner import make_pruner

__all__ = ["invert_scores", "layerwise_shuffle", "reinit"]


def layerwise_shuffle(key: jax.Array, mask: Any) -> Any:
    """``mask`` with every prunable leaf's entries permuted at random (same counts).

    Args:
      key: one ``jax.random`` key, or one key per seed for a mask stacked over seeds.
      mask: a mask (``None`` leaves stay ``None``).

    Returns:
      The shuffled mask; the same key gives the same mask. Jittable.
    """
    if _is_key_batch(key):
        return _shuffle_stacked(key, mask)
    return _shuffle_single(key, mask)


def invert_scores(
    scores: Any,
    mask_like: Any,
    sparsity: float | jax.Array,
    *,
    allocation: str = "global",
    min_keep: int = 1,
) -> Any:
    """The mask keeping the LOWEST ``scores`` among ``mask_like``'s alive weights.

    The inverted mask prunes to the same ``sparsity`` as the method would (score inversion of
    Frankle et al. 2021): a pruner over the negated scores. Ties go to the earlier position;
    scores of leaves whose mask is ``None`` are ignored.

    Args:
      scores: one score per weight, shaped like ``mask_like`` (a method's criterion output).
      mask_like: the starting mask (``dense_mask(params)``), not stacked.
      sparsity: the fraction of prunable weights pruned, in [0, 1).
      allocation: "global", "layerwise", "erk" or "er".
      min_keep: weights every prunable leaf keeps at least.

    Raises:
      ValueError: ``sparsity`` outside [0, 1) and the pruner's errors.
    """
    alloc.check_rate("sparsity", sparsity, where="invert_scores")
    negated = jax.tree.map(jnp.negative, scores)
    pruner = make_pruner(lambda params, **_: negated, allocation, min_keep=min_keep)
    return pruner(mask_like, mask_like, sparsity=sparsity)


def reinit(model: Any, key: jax.Array, mask: Any) -> tuple[Any, Any, Any]:
    """The reinitialization control: fresh ``(params, state)`` from ``key``, same ``mask``.

    Returns:
      ``(params, state, mask)`` with the pruned entries of ``params`` set to 0.
    """
    params, state = model.init(key)
    return apply_mask(params, mask), state, mask


def _is_key_batch(key) -> bool:
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key.ndim == 1
    return key.ndim == 2


_shuffle_single = jax.jit(_shuffle_one)
_shuffle_stacked = jax.jit(jax.vmap(_shuffle_one))
