"""Score trees and their masks: the per-layer top-k of edge-popup and the sign supermask.

A score tree has the params' structure: a float array on every scored leaf (the prunable
leaves of ``jaxticket.masks.dense_mask``: kernels and weight matrices) and ``None``
elsewhere (biases, norms), as a mask does. Two masks are made from it, each with a
straight-through gradient (the forward pass uses the mask, the backward pass hands the
gradient to the scores as if the mask were the identity):

* edge-popup (Ramanujan et al. 2020): each layer keeps the ``keep_count(k, n)`` weights of
  largest ``|score|`` (exact top-k, ties broken by flat position: the earlier entry wins),
  so ``dL/ds = dL/dw_eff · w · sign(s)``;
* the sign supermask (HideNseek): ``sign(s)`` in {-1, +1} (``+1`` at ``s == 0``), so
  ``dL/ds = dL/dw_eff · w``.

The score inits: ``uniform_scores`` (U(-1/√fan_in, 1/√fan_in), the edge-popup code's
default) and ``magnitude_scores`` (``|w|``: the first top-k is the layerwise magnitude mask,
the Lottery Jackpots start). ``signed_constant`` gives the weights edge-popup fixes: the
sign of an init times ``σ_l = √(2 / fan_in)``.
"""

from __future__ import annotations

import functools
import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket._paths import leaves_with_paths, map_with_path_str
from jaxticket.masks import dense_mask
from jaxticket.pruning.topk import topk_mask

__all__ = [
    "check_k",
    "edge_popup_mask",
    "fan_in",
    "keep_count",
    "magnitude_scores",
    "scored_leaves",
    "sign_ste",
    "signed_constant",
    "topk_ste",
    "uniform_scores",
]

_RESOLUTION = 10**6  # k is resolved to six decimals, as the pruning rates are


def check_k(k: Any, what: str = "k") -> float:
    """``k`` (the fraction of each layer's weights kept) as a float in (0, 1].

    Raises:
      TypeError: ``k`` is not a real number.
      ValueError: ``k`` is outside (0, 1] (or NaN).
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Real):
        raise TypeError(f"{what} must be a number in (0, 1] (the fraction kept), got {k!r}")
    if not 0 < float(k) <= 1:
        raise ValueError(f"{what} must be in (0, 1] (the fraction of each layer kept), got {k}")
    return float(k)


def keep_count(k: float, n: int) -> int:
    """Weights a layer of ``n`` keeps at fraction ``k``: ``floor(k·n + ½)`` with ``k``
    resolved to six decimals (exact integer arithmetic), at least 1."""
    scaled = round(check_k(k) * _RESOLUTION)
    return max(1, (scaled * int(n) + _RESOLUTION // 2) // _RESOLUTION)


def fan_in(shape: tuple[int, ...]) -> int:
    """Inputs per output unit of a Flax kernel: the product of all but the last axis."""
    return int(math.prod(shape[:-1])) or 1


def scored_leaves(params: Any) -> Any:
    """The leaves that get a score: ``dense_mask(params)`` (``True`` arrays on kernels,
    ``None`` on biases and norms)."""
    return dense_mask(params)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def topk_ste(a: jax.Array, count: int) -> jax.Array:
    """The float mask of the ``count`` largest entries of ``a`` (exact, ties by flat
    position), with the identity as its gradient (straight through)."""
    alive = jnp.ones(a.shape, bool)
    return topk_mask([a], [alive], count)[0].astype(a.dtype)


def _topk_fwd(a, count):
    return topk_ste(a, count), None


def _topk_bwd(count, _, g):
    del count
    return (g,)


topk_ste.defvjp(_topk_fwd, _topk_bwd)


@jax.custom_vjp
def sign_ste(s: jax.Array) -> jax.Array:
    """``+1`` where ``s >= 0``, ``-1`` elsewhere, with the identity as its gradient."""
    return jnp.where(s >= 0, 1.0, -1.0).astype(s.dtype)


def _sign_fwd(s):
    return sign_ste(s), None


def _sign_bwd(_, g):
    return (g,)


sign_ste.defvjp(_sign_fwd, _sign_bwd)


def edge_popup_mask(scores: Any, k: float) -> Any:
    """The bool mask the forward pass uses: each scored leaf's ``keep_count(k, n)``
    largest ``|score|`` (``None`` leaves stay ``None``)."""
    k = check_k(k)

    def one(path, s):
        if s is None:
            return None
        return topk_ste(jnp.abs(s), keep_count(k, s.size)) > 0

    return map_with_path_str(one, scores)


def uniform_scores(key: jax.Array, params: Any, scored: Any = None) -> Any:
    """Scores drawn from U(-1/√fan_in, 1/√fan_in) on the scored leaves (one key per leaf,
    folded in by position), ``None`` elsewhere."""
    scored = scored_leaves(params) if scored is None else scored
    paths = [p for p, _ in leaves_with_paths(scored)]

    def one(path, m, w):
        if m is None:
            return None
        bound = 1.0 / math.sqrt(fan_in(w.shape))
        leaf_key = jax.random.fold_in(key, paths.index(path))
        return jax.random.uniform(leaf_key, w.shape, w.dtype, -bound, bound)

    return map_with_path_str(one, scored, params)


def magnitude_scores(params: Any, scored: Any = None) -> Any:
    """``|w|`` on the scored leaves, ``None`` elsewhere: the first edge-popup mask is then
    the layerwise magnitude mask (the Lottery Jackpots start)."""
    scored = scored_leaves(params) if scored is None else scored
    return map_with_path_str(lambda p, m, w: None if m is None else jnp.abs(w), scored, params)


def signed_constant(params: Any, scored: Any = None) -> Any:
    """The signed Kaiming constant: ``sign(w) · √(2 / fan_in)`` on the scored leaves (a
    zero weight gets ``+σ``), the other leaves unchanged."""
    scored = scored_leaves(params) if scored is None else scored

    def one(path, m, w):
        if m is None:
            return w
        sigma = math.sqrt(2.0 / fan_in(w.shape))
        return jnp.where(w >= 0, sigma, -sigma).astype(w.dtype)

    return map_with_path_str(one, scored, params)
