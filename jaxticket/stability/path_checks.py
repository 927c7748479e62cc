"""Input checks of the linear-mode-connectivity functions (``jaxticket.stability.interpolate``):
two trees that can be interpolated, α grids, seed stacks, pairs and data splits. Each failure
is one line naming the leaf path or the argument."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.models.base import check_tree

__all__ = ["check_alphas", "check_pairs", "check_same_trees", "check_split", "check_stacked"]


def _none(x) -> bool:
    return x is None


def check_same_trees(a, b, what: str = "interpolate") -> None:
    """Raises ValueError naming the first leaf path where two trees differ in presence,
    shape or dtype, or that is not floating point."""
    la, lb = leaves_with_paths(a, keep_none=True), leaves_with_paths(b, keep_none=True)
    for (pa, xa), (pb, xb) in zip(la, lb, strict=False):
        if pa != pb:
            raise ValueError(f"{what}: trees differ at leaf {pa!r} (other tree has {pb!r})")
        if (xa is None) != (xb is None):
            raise ValueError(f"{what}: leaf {pa!r} is None in one tree only")
        if xa is None:
            continue
        if jnp.shape(xa) != jnp.shape(xb) or jnp.result_type(xa) != jnp.result_type(xb):
            raise ValueError(
                f"{what}: leaf {pa!r} is {jnp.result_type(xa)}{list(jnp.shape(xa))} in one "
                f"tree and {jnp.result_type(xb)}{list(jnp.shape(xb))} in the other"
            )
        if not jnp.issubdtype(jnp.result_type(xa), jnp.inexact):
            raise ValueError(f"{what}: leaf {pa!r} has dtype {jnp.result_type(xa)}, not floating")
    if len(la) != len(lb):
        longer = la if len(la) > len(lb) else lb
        raise ValueError(
            f"{what}: trees differ at leaf {longer[min(len(la), len(lb))][0]!r} (present in one "
            "tree only)"
        )
    if jax.tree.structure(a, is_leaf=_none) != jax.tree.structure(b, is_leaf=_none):
        raise ValueError(f"{what}: trees have the same leaf paths but different container types")


def check_alphas(alphas: np.ndarray, what: str, extrapolate: bool, *, scalar: bool):
    """α as float32 after checking shape, finiteness and (unless extrapolating) [0, 1]."""
    if not isinstance(extrapolate, bool):
        raise TypeError(f"{what}: extrapolate must be a bool, got {extrapolate!r}")
    if scalar and alphas.ndim != 0:
        raise ValueError(f"{what} must be a scalar, got shape {alphas.shape}")
    if not scalar and (alphas.ndim != 1 or alphas.size == 0):
        raise ValueError(f"{what} must be a non-empty 1-D array, got shape {alphas.shape}")
    if not np.issubdtype(alphas.dtype, np.number) or not np.all(np.isfinite(alphas)):
        raise ValueError(f"{what} must be finite numbers, got {alphas.tolist()}")
    if not extrapolate and (np.any(alphas < 0) or np.any(alphas > 1)):
        raise ValueError(
            f"{what} must lie in [0, 1], got {alphas.tolist()} (pass extrapolate=True to "
            "leave the segment)"
        )
    return alphas.astype(np.float32)


def check_stacked(model, params, model_state) -> int:
    """The seed count N of params and state stacked over seeds for ``model``."""
    sizes = {
        f"{role}/{p}": jnp.shape(leaf)[0] if jnp.ndim(leaf) else None
        for role, tree in (("params", params), ("model_state", model_state))
        for p, leaf in leaves_with_paths(tree)
    }
    if not sizes:
        raise ValueError("path_errors: params have no leaves")
    n = next(iter(sizes.values()))
    for path, size in sizes.items():
        if size is None or size != n:
            raise ValueError(
                f"path_errors: params and model_state must be stacked over seeds with one "
                f"leading axis; leaf {path!r} has leading size {size}, the first leaf {n}"
            )
    params_t, state_t = jax.eval_shape(model.init, jax.random.key(0))
    unstack = functools.partial(jax.tree.map, lambda x: jax.ShapeDtypeStruct(x.shape[1:], x.dtype))
    check_tree(f"path_errors: model {model.name!r} params (per seed)", unstack(params), params_t)
    check_tree(f"path_errors: model {model.name!r} state (per seed)", unstack(model_state), state_t)
    return int(n)


def check_pairs(pairs: Any, n: int) -> np.ndarray:
    """``pairs`` as int32 [P, 2] seed indices into ``n`` seeds."""
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(
            f"path_errors: pairs must be a non-empty int array of shape [P, 2], got "
            f"{p.dtype}{list(p.shape)}"
        )
    if np.any(p < 0) or np.any(p >= n):
        raise ValueError(
            f"path_errors: pairs must index the {n} seeds (0..{n - 1}), got {p.tolist()}"
        )
    return p.astype(np.int32)


def check_split(data, split: str):
    """The ``(x, y)`` arrays of ``data``'s ``split`` (test, val or train)."""
    if not all(hasattr(data, f"{w}_train") for w in "xy"):
        raise TypeError(
            f"path_errors: data must be a jaxticket.data.Dataset, got {type(data).__name__}"
        )
    if split not in ("test", "val", "train"):
        raise ValueError(f"path_errors: split must be 'test', 'val' or 'train', got {split!r}")
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if x is None or y is None:
        raise ValueError(f"path_errors: data set {data.name!r} has no {split!r} split")
    return x, y
