"""Selection: turns scores into a new mask, keeping the highest-scoring alive units.

A selection is a function over the prunable leaves, in flattening order::

    selection(scores, alive, paths, allocation, *, fraction=None, sparsity=None, min_keep=0)
        -> list of bool arrays (the new alive masks)

``unstructured`` keeps single weights, ``neurons`` whole output units (columns of a Flax
kernel), ``n_m`` exactly N of every M consecutive weights. All of them keep a subset of
``alive``: a pruned weight never comes back. Ties are broken deterministically (the
earlier unit in flattening order wins), so equal inputs give equal masks. The factories
return the same function for equal arguments, so jitted pruners reuse their compilation.

``min_keep``: every leaf keeps at least ``min(min_keep, alive)`` units (weights for
``unstructured``, neurons for ``neurons``), so no layer collapses. A one-leaf allocation
group's keep count is raised to that; in a group of several leaves (``global_``) each
leaf's best ``min(min_keep, alive)`` units are reserved first and the group's top-k fills
the rest, so the total stays exact unless the reservations alone exceed it. ``n_m`` fixes
the density and ignores it.

Non-finite scores follow ``topk_mask``: NaN ranks below every other alive score (pruned
first), -inf below and +inf above every finite score. ``neurons`` ranks norms: a unit
with a NaN score among its alive weights ranks lowest, one with an infinite score (of
either sign) highest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from jaxticket.pruning.allocation import Allocation, LeafInfo
from jaxticket.pruning.topk import rank_keys, topk_mask

Selection = Callable[..., list[jax.Array]]
TopK = Callable[[Sequence[jax.Array], Sequence[jax.Array], jax.Array], list[jax.Array]]


@functools.cache
def unstructured(topk: TopK = topk_mask) -> Selection:
    """Single weights: exact top-k per allocation group.

    Args:
      topk: ``topk(scores_list, alive_list, k) -> masks`` keeping k alive entries of the
        group; the default is exact with positional tie-breaking (``topk_mask``).
    """
    return _by_units(lambda path, s, a: (s, a), lambda path, keep, a: keep & a, topk)


def neurons(norm: str = "l2", axis: int = -1, topk: TopK = topk_mask) -> Selection:
    """Whole neurons / output channels: the units along ``axis`` (Flax kernels: the last).

    A unit scores the L1 or L2 norm of its alive weights' scores over the other axes, and
    counts as alive while any of its weights is alive. Allocation counts units (an ERK
    density applies to a leaf's units).

    Scores narrower than float32 are upcast first (float16 norms would overflow).

    Args:
      norm: ``"l1"`` or ``"l2"``.
      axis: the unit axis.
      topk: as for ``unstructured``, over unit scores.
    """
    if norm not in ("l1", "l2"):
        raise ValueError(f"neurons: norm must be 'l1' or 'l2', got {norm!r}")
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise TypeError(f"neurons: axis must be an int, got {axis!r}")
    return _neurons(norm, axis, topk)


# Cached after the type checks, so that neither axis=1.0 nor True reaches the cache as 1.
@functools.cache
def _neurons(norm: str, axis: int, topk: TopK) -> Selection:
    def to_units(path, s, a):
        ax = _axis(path, s.ndim, axis, "neurons")
        other = tuple(i for i in range(s.ndim) if i != ax)
        s = _at_least_float32(s)
        s = jnp.where(a, s, jnp.zeros((), s.dtype))
        if norm == "l1":
            unit = jnp.sum(jnp.abs(s), axis=other)
        else:
            unit = jnp.sqrt(jnp.sum(jnp.square(s), axis=other))
        return unit, jnp.any(a, axis=other)

    def from_units(path, keep, a):
        ax = _axis(path, a.ndim, axis, "neurons")
        shape = [1] * a.ndim
        shape[ax] = a.shape[ax]
        return a & keep.reshape(shape)

    return _by_units(to_units, from_units, topk)


def n_m(n: int, m: int, axis: int = -2) -> Selection:
    """N:M sparsity: in every M consecutive weights along ``axis`` keep the N best alive.

    The default axis, -2, is the input axis of a Flax kernel (``(in, out)`` or
    ``(kh, kw, in, out)``), the grouping sparse tensor cores use. The density is fixed at
    N/M, so this selection takes no ``fraction`` or ``sparsity``, and ignores ``min_keep``
    (every group of M keeps N). Groups with fewer than N alive weights keep just those.

    Raises (when called):
      ValueError: the axis length of a leaf is not divisible by M (names the leaf path).
    """
    for name, v in (("n", n), ("m", m), ("axis", axis)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"n_m: {name} must be an int, got {v!r}")
    if not 0 < n <= m:
        raise ValueError(f"n_m: need 0 < n <= m, got n={n}, m={m}")
    return _n_m(n, m, axis)


@functools.cache
def _n_m(n: int, m: int, axis: int) -> Selection:
    def select(scores, alive, paths, allocation=None, *, fraction=None, sparsity=None, min_keep=0):
        del allocation, min_keep
        if fraction is not None or sparsity is not None:
            raise ValueError(f"n_m: {n}:{m} sparsity fixes the density; pass no fraction/sparsity")
        return [_n_of_m(p, s, a, n, m, axis) for p, s, a in zip(paths, scores, alive, strict=True)]

    return select


# --------------------------------------------------------------------------------------
# helpers


def _by_units(to_units, from_units, topk: TopK) -> Selection:
    """A selection that maps each leaf to units, allocates, top-k's, and maps back."""

    def select(
        scores: Sequence[jax.Array],
        alive: Sequence[jax.Array],
        paths: Sequence[str],
        allocation: Allocation,
        *,
        fraction=None,
        sparsity=None,
        min_keep: int = 0,
    ) -> list[jax.Array]:
        if (fraction is None) == (sparsity is None):
            raise ValueError("pass exactly one of fraction= and sparsity=")
        if isinstance(min_keep, bool) or not isinstance(min_keep, int) or min_keep < 0:
            raise ValueError(f"min_keep must be an int >= 0, got {min_keep!r}")
        units = [to_units(p, s, a) for p, s, a in zip(paths, scores, alive, strict=True)]
        leaves = [
            LeafInfo(p, tuple(s.shape), u.size, min_keep)
            for p, s, (u, _) in zip(paths, scores, units, strict=True)
        ]
        counts = [jnp.sum(ua, dtype=jnp.int32) for _, ua in units]
        groups = allocation(leaves, counts, fraction=fraction, sparsity=sparsity)
        kept: list = [None] * len(units)
        for group in groups:
            members = group.leaves
            u_scores = [units[i][0] for i in members]
            u_alive = [units[i][1] for i in members]
            floors = [jnp.minimum(min_keep, counts[i]) for i in members]
            if min_keep == 0:
                chosen = topk(u_scores, u_alive, group.keep)
            elif len(members) == 1:
                chosen = topk(u_scores, u_alive, jnp.maximum(group.keep, floors[0]))
            else:
                chosen = _reserved_topk(topk, u_scores, u_alive, group.keep, min_keep, floors)
            for i, k in zip(members, chosen, strict=True):
                kept[i] = k
        return [from_units(p, k, a) for p, k, a in zip(paths, kept, alive, strict=True)]

    return select


def _reserved_topk(topk, scores, alive, k, min_keep, floors):
    """Each leaf's best ``floors[i]`` alive units, then the group's best of the rest up to
    ``k`` in all (the reservations are kept even when they alone exceed ``k``).

    Equals one top-k in which the reserved units rank first. ``min_keep = 1`` costs one
    argmax per leaf; more, one top-k per leaf.
    """
    if min_keep == 1:
        reserved = [_best_one(s, a) for s, a in zip(scores, alive, strict=True)]
    else:
        reserved = [topk([s], [a], f)[0] for s, a, f in zip(scores, alive, floors, strict=True)]
    rest = [a & ~r for a, r in zip(alive, reserved, strict=True)]
    taken = sum(floors, jnp.zeros((), jnp.int32))
    chosen = topk(scores, rest, jnp.maximum(k - taken, 0))
    return [c | r for c, r in zip(chosen, reserved, strict=True)]


def _best_one(s, a):
    """The alive entry ranked first by ``topk_mask`` (earliest among equals); none if
    nothing is alive."""
    keys = rank_keys(_at_least_float32(s), a).reshape(-1)  # float16/bfloat16 too
    best = jnp.argmax(keys)
    one = jnp.zeros(keys.shape, bool).at[best].set(keys[best] > 0)
    return one.reshape(s.shape)


def _at_least_float32(s):
    """float32 or float64 scores (narrower floats and integers upcast, exactly or nearly)."""
    s = jnp.asarray(s)
    if jnp.issubdtype(s.dtype, jnp.floating) and jnp.finfo(s.dtype).bits >= 32:
        return s
    return s.astype(jnp.float32)


def _axis(path: str, ndim: int, axis: int, what: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"{what}: leaf {path!r} has {ndim} dims, so axis {axis} is out of range")
    return axis % ndim


def _n_of_m(path, s, a, n, m, axis):
    ax = _axis(path, s.ndim, axis, "n_m")
    if s.shape[ax] % m:
        raise ValueError(
            f"n_m: leaf {path!r} has length {s.shape[ax]} along axis {axis}, not divisible by M={m}"
        )
    s = _at_least_float32(s)
    # Integer keys give NaN its place (below every alive score) and dead weights theirs.
    s = jnp.moveaxis(rank_keys(s, a), ax, -1)
    groups = s.reshape(*s.shape[:-1], s.shape[-1] // m, m)
    # Rank inside each group: how many members beat me (higher score, or equal and earlier).
    mine, other = groups[..., :, None], groups[..., None, :]
    earlier = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]
    beaten_by = (other > mine) | ((other == mine) & earlier)
    keep = jnp.sum(beaten_by, axis=-1, dtype=jnp.int32) < n
    keep = jnp.moveaxis(keep.reshape(s.shape), -1, ax)
    return keep & a
