"""Masks: pytrees shaped like the params, ``bool`` leaves where weights may be pruned.

A mask has the params' tree structure. Prunable leaves hold a ``bool`` array of the
leaf's shape (``True`` = alive); leaves that are never pruned (biases, norms, by default
anything with ``ndim < 2``) hold ``None``. Every function here is pure and uses only static
shape information for its checks, so all of them work under ``jax.jit`` and ``jax.vmap``.

Example::

    mask = jaxticket.dense_mask(params, exclude="*/bias")
    params = jaxticket.apply_mask(params, mask)
    jaxticket.sparsity(mask)  # 0.0

A mask stacked over seeds (``train_seeds``, ``jax.vmap``) looks like one network's mask
with an extra leading axis; nothing in it says so. Per-leaf statistics and
``collapsed_leaves`` therefore take ``seed_axis=``: pass ``seed_axis=0`` for per-seed
answers, or they pool over the seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxticket._paths import (
    PathPatterns,
    as_patterns,
    check_patterns_exist,
    leaves_with_paths,
    map_with_path_str,
    matches,
)

# The checks live in ``mask_checks``; ``validate_mask`` and ``without_variables`` stay
# importable from here.
from jaxticket.mask_checks import (
    _bool_leaves,
    _check_array_leaves,
    _check_same_containers,
    _is_none,
    _raise_structure_mismatch,
    validate_mask,
    without_variables,
)

Params = Any
Mask = Any
Prunable = Callable[[str, Any], bool]


class LayerCollapseWarning(UserWarning):
    """A prunable leaf has no alive weight left: no signal passes through that layer."""


def default_prunable(path: str, leaf: Any) -> bool:
    """Weight matrices and kernels (``ndim >= 2``) are prunable; biases and norms are not."""
    del path
    return jnp.ndim(leaf) >= 2


def dense_mask(
    params: Params,
    *,
    prunable: Prunable = default_prunable,
    include: PathPatterns | None = None,
    exclude: PathPatterns | None = None,
) -> Mask:
    """A mask with every prunable weight alive.

    Args:
      params: the parameter pytree (dict, Flax Linen params, NNX ``State``...).
      prunable: predicate on (path string, leaf) choosing prunable leaves.
      include: glob patterns on leaf paths; when given, only matching leaves are prunable.
      exclude: glob patterns on leaf paths that are never pruned (e.g. ``"output/*"``).

    Returns:
      A pytree with ``params``' structure: ``jnp.ones(shape, bool)`` or ``None`` per leaf.
      For an ``nnx.State`` of ``Param`` variables the mask is an ``nnx.State`` of plain
      bool arrays (``nnx.as_pure``'s structure): masks never carry ``Param`` wrappers, so
      ``nnx.state(model, nnx.Param)``-counting code and an ``nnx.Optimizer`` never mistake
      them for parameters. Every mask function compares and applies masks through the
      params' values, so such a mask fits the ``Param`` state as it is.
    """
    if not callable(prunable):
        raise TypeError(
            f"dense_mask: prunable must be a predicate fn(path, leaf) -> bool, got "
            f"{type(prunable).__name__} {prunable!r} (for patterns use include=/exclude=)"
        )
    _check_array_leaves(params)
    # A typo in a pattern ("out/*" for "output/*") must not silently change what is pruned.
    paths = [p for p, _ in leaves_with_paths(params)]
    check_patterns_exist(as_patterns(include), paths, "dense_mask include")
    check_patterns_exist(as_patterns(exclude), paths, "dense_mask exclude")

    def make(path, leaf):
        if include is not None and not matches(path, include):
            return None
        if matches(path, exclude) or not prunable(path, leaf):
            return None
        return jnp.ones(jnp.shape(leaf), dtype=bool)

    # An NNX State's Param wrappers stay out of the mask: a mask is not a parameter.
    mask = map_with_path_str(make, without_variables(params), keep_none=False)
    if not any(m is not None for m in jax.tree.leaves(mask, is_leaf=_is_none)):
        raise ValueError(
            "dense_mask: no prunable leaves; leaf paths and shapes are: "
            + ", ".join(f"{p} {jnp.shape(x)}" for p, x in leaves_with_paths(params))
        )
    return mask


def apply_mask(params: Params, mask: Mask) -> Params:
    """Zeroes pruned weights; dtypes are preserved and ``None`` leaves pass through."""
    validate_mask(mask, params)
    return jax.tree.map(_zero_pruned, without_variables(mask), params, is_leaf=_is_none)


def count_alive(mask: Mask) -> jax.Array:
    """Number of alive weights over all prunable leaves (an int32 scalar array)."""
    leaves = _mask_leaves(mask)
    return sum((jnp.sum(m, dtype=jnp.int32) for m in leaves), jnp.zeros((), jnp.int32))


def count_total(mask: Mask) -> int:
    """Number of prunable weights (alive or not); static, a Python int."""
    return int(sum(np.prod(jnp.shape(m), dtype=np.int64) for m in _mask_leaves(mask)))


def sparsity(mask: Mask) -> jax.Array:
    """Fraction of prunable weights that are pruned (0 = dense)."""
    total = count_total(mask)
    return (total - count_alive(mask)).astype(jnp.float32) / max(total, 1)


def density(mask: Mask) -> jax.Array:
    """Fraction of prunable weights still alive (1 = dense)."""
    return count_alive(mask).astype(jnp.float32) / max(count_total(mask), 1)


def sparsity_by_leaf(mask: Mask, *, seed_axis: int | None = None) -> dict[str, jax.Array]:
    """Per prunable leaf, keyed by readable path: the fraction of that leaf pruned.

    Args:
      mask: a mask, or masks stacked along ``seed_axis`` of every leaf.
      seed_axis: None for one network's mask (a scalar per leaf). For stacked masks give
        the stacking axis (0 for ``train_seeds``) to get an array with one value per seed;
        without it a stacked mask gives the fraction pooled over all seeds (their mean),
        silently, since a mask cannot know it is stacked.

    Raises:
      ValueError: ``seed_axis`` out of range for a leaf, or leaves with different seed
        counts (names the leaf).
    """
    return {
        path: jnp.mean(~m, axis=other, dtype=jnp.float32)
        for path, m, other in _reduced_axes(mask, seed_axis, "sparsity_by_leaf")
    }


def alive_by_leaf(mask: Mask, *, seed_axis: int | None = None) -> dict[str, jax.Array]:
    """Per prunable leaf, keyed by readable path: the number of alive weights.

    ``seed_axis`` as for ``sparsity_by_leaf``: with it, one count per seed; without it, a
    stacked mask gives the count summed over seeds.
    """
    return {
        path: jnp.sum(m, axis=other, dtype=jnp.int32)
        for path, m, other in _reduced_axes(mask, seed_axis, "alive_by_leaf")
    }


def collapsed_leaves(mask: Mask, *, seed_axis: int | None = None) -> list:
    """Paths of prunable leaves with no alive entry: layers that pass no signal.

    Host-side: needs a concrete mask (call it on a jitted function's output). Leaves with
    no entries at all (a zero-sized dimension) are not counted as collapsed.

    Args:
      mask: a mask, or masks stacked along ``seed_axis``.
      seed_axis: None: one network, returns a list of paths. An axis (0 for
        ``train_seeds``): returns one list of paths per seed. A stacked mask without it is
        read as one network, so a leaf counts as collapsed only if empty in every seed.

    Raises:
      TypeError: a traced mask.
      ValueError: as for ``sparsity_by_leaf``.
    """
    reduced = [r for r in _reduced_axes(mask, seed_axis, "collapsed_leaves") if _per_seed_size(r)]
    if any(isinstance(m, jax.core.Tracer) for _, m, _ in reduced):
        raise TypeError(
            "collapsed_leaves: needs a concrete mask; call it outside jax.jit "
            "(count_alive or alive_by_leaf work inside)"
        )
    flags = jax.device_get([jnp.any(m, axis=other) for _, m, other in reduced])
    if seed_axis is None:
        return [path for (path, _, _), alive in zip(reduced, flags, strict=True) if not alive]
    n_seeds = len(flags[0]) if flags else 0
    return [
        [path for (path, _, _), alive in zip(reduced, flags, strict=True) if not alive[i]]
        for i in range(n_seeds)
    ]


def mask_and(a: Mask, b: Mask) -> Mask:
    """Alive in both. ``None`` (never pruned) on both sides stays ``None``."""
    return _binary(jnp.logical_and, a, b, "mask_and")


def mask_or(a: Mask, b: Mask) -> Mask:
    """Alive in either."""
    return _binary(jnp.logical_or, a, b, "mask_or")


def mask_not(a: Mask) -> Mask:
    """Alive where ``a`` is pruned (prunable leaves only)."""
    _bool_leaves(a, "mask_not")
    return jax.tree.map(lambda m: None if m is None else ~m, a, is_leaf=_is_none)


def jaccard(a: Mask, b: Mask) -> jax.Array:
    """|a ∧ b| / |a ∨ b| over prunable weights (1 when both are empty)."""
    inter = count_alive(_binary(jnp.logical_and, a, b, "jaccard")).astype(jnp.float32)
    union = count_alive(_binary(jnp.logical_or, a, b, "jaccard")).astype(jnp.float32)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1.0), 1.0)


def hamming(a: Mask, b: Mask) -> jax.Array:
    """Normalized Hamming distance: the fraction of prunable weights where a and b differ."""
    differ = _binary(jnp.logical_xor, a, b, "hamming")
    return count_alive(differ).astype(jnp.float32) / max(count_total(a), 1)


# --------------------------------------------------------------------------------------
# helpers


def _zero_pruned(m: Any, p: Any) -> Any:
    # A Param keeps its wrapper and metadata: apply_mask returns the params' own structure.
    if m is None:
        return p
    if isinstance(p, nnx.Variable):
        return p.copy(_zero_pruned(m, p.get_value()))
    return jnp.where(m, p, jnp.zeros((), jnp.result_type(p)))


def _mask_leaves(mask: Mask) -> list[jax.Array]:
    return [m for _, m in _bool_leaves(mask)]


def _per_seed_size(reduced: tuple[str, Any, tuple]) -> int:
    _, m, other = reduced
    return int(np.prod([jnp.shape(m)[i] for i in other], dtype=np.int64))


def _reduced_axes(mask: Mask, seed_axis: int | None, what: str) -> list[tuple[str, Any, tuple]]:
    """(path, leaf, axes to reduce) per prunable leaf: all axes but ``seed_axis``."""
    if seed_axis is not None and (isinstance(seed_axis, bool) or not isinstance(seed_axis, int)):
        raise TypeError(f"{what}: seed_axis must be an int or None, got {seed_axis!r}")
    out, n_seeds = [], None
    for path, m in _bool_leaves(mask, what):
        ndim = jnp.ndim(m)
        if seed_axis is None:
            out.append((path, m, tuple(range(ndim))))
            continue
        if not -ndim <= seed_axis < ndim:
            raise ValueError(
                f"{what}: leaf {path!r} has {ndim} dims, so seed_axis={seed_axis} is out of range"
            )
        axis = seed_axis % ndim
        n = jnp.shape(m)[axis]
        if n_seeds is not None and n != n_seeds:
            raise ValueError(
                f"{what}: leaf {path!r} has {n} entries along seed_axis={seed_axis}, the "
                f"leaves before it {n_seeds}; is the mask stacked along that axis?"
            )
        n_seeds = n
        out.append((path, m, tuple(i for i in range(ndim) if i != axis)))
    return out


def _binary(op, a: Mask, b: Mask, name: str) -> Mask:
    a, b = without_variables(a), without_variables(b)
    _bool_leaves(a, name)
    _bool_leaves(b, name)
    a_paths = leaves_with_paths(a, keep_none=True)
    b_paths = leaves_with_paths(b, keep_none=True)
    if [p for p, _ in a_paths] != [p for p, _ in b_paths]:
        _raise_structure_mismatch(
            [p for p, _ in a_paths], [p for p, _ in b_paths], name, ("first mask", "second mask")
        )
    _check_same_containers(a, b, name, "other mask")
    for (path, x), (_, y) in zip(a_paths, b_paths, strict=True):
        if (x is None) != (y is None):
            raise ValueError(f"{name}: leaf {path!r} is prunable in one mask and None in the other")
        if x is not None and jnp.shape(x) != jnp.shape(y):
            raise ValueError(
                f"{name}: leaf {path!r} has shape {jnp.shape(x)} in one mask and "
                f"{jnp.shape(y)} in the other"
            )
    return jax.tree.map(lambda x, y: None if x is None else op(x, y), a, b, is_leaf=_is_none)
