"""Mask checks: does a mask fit its params, and is each mask leaf a ``bool`` array?

``validate_mask`` (re-exported by ``jaxticket.masks`` and ``jaxticket``) and the helpers the
mask functions share to refuse a bad mask naming the leaf: structure and container
mismatches, non-array params leaves, non-bool mask leaves. Like the rest of the mask code
they look only at static shape information, so they work under ``jax.jit``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxticket._paths import leaves_with_paths, path_str

Mask = Any
Params = Any

_is_none = lambda x: x is None  # noqa: E731  (keeps ``None`` mask leaves visible to tree_map)


def validate_mask(mask: Mask, params: Params) -> None:
    """Checks that ``mask`` fits ``params``: same structure, shapes, ``bool`` leaves.

    Raises:
      ValueError: structure or shape mismatch (the message names the leaf path).
      TypeError: a mask leaf that is not a bool array, or a params leaf that is not an array.
    """
    mask, params = without_variables(mask), without_variables(params)
    mask_paths = leaves_with_paths(mask, keep_none=True)
    # ``None`` params leaves (an absent bias, say) are kept so they line up with the
    # ``None`` that ``dense_mask`` leaves in the mask at the same place.
    param_paths = leaves_with_paths(params, keep_none=True)
    if [p for p, _ in mask_paths] != [p for p, _ in param_paths]:
        _raise_structure_mismatch([p for p, _ in mask_paths], [p for p, _ in param_paths])
    _check_same_containers(mask, params, "mask", "params")
    for (path, m), (_, p) in zip(mask_paths, param_paths, strict=True):
        if p is None:
            if m is not None:
                raise ValueError(f"mask leaf {path!r}: the params leaf is None, expected None")
            continue
        _check_array_leaf(path, p)
        if m is None:
            continue
        if not hasattr(m, "shape") or not hasattr(m, "dtype"):
            raise TypeError(f"mask leaf {path!r}: expected a bool array or None, got {type(m)}")
        if m.dtype != jnp.bool_:
            raise TypeError(f"mask leaf {path!r}: expected dtype bool, got {m.dtype}")
        if tuple(m.shape) != tuple(jnp.shape(p)):
            raise ValueError(
                f"mask leaf {path!r}: shape {tuple(m.shape)} does not match the params leaf "
                f"shape {tuple(jnp.shape(p))}"
            )


def without_variables(tree: Any) -> Any:
    """``tree`` with each Flax NNX ``Variable`` replaced by its value (``nnx.as_pure``).

    Masks line up with params through this: a mask of plain bool arrays fits an
    ``nnx.State`` of ``Param`` variables, and a mask read out of an ``nnx.Optimizer``
    (``OptVariable`` leaves) fits the params again.
    """
    return nnx.as_pure(tree)


def _bool_leaves(mask: Mask, what: str = "mask") -> list[tuple[str, jax.Array]]:
    """(path, leaf) of the prunable leaves; each must be a bool array (a float or int
    "mask" would count 0.5 as pruned or 2 as two weights, silently)."""
    out = []
    for path, m in leaves_with_paths(without_variables(mask)):
        if m is None:
            continue
        dtype = getattr(m, "dtype", None)
        if dtype != jnp.bool_:
            got = f"dtype {dtype}" if dtype is not None else type(m).__name__
            raise TypeError(f"{what} leaf {path!r}: expected a bool array, got {got}")
        out.append((path, m))
    return out


def _raise_structure_mismatch(
    mask_paths, param_paths, name: str = "mask", sides: tuple[str, str] = ("mask", "params")
) -> None:
    mask_set, param_set = set(mask_paths), set(param_paths)
    only_mask = [p for p in mask_paths if p not in param_set]
    only_params = [p for p in param_paths if p not in mask_set]
    detail = []
    if only_mask:
        detail.append(f"leaves only in the {sides[0]}: {only_mask[:5]}")
    if only_params:
        detail.append(f"leaves only in the {sides[1]}: {only_params[:5]}")
    if not detail:
        detail.append("same leaf paths in a different order or container type")
    raise ValueError(
        f"{name}: tree structure of the {sides[0]} does not match the {sides[1]}; "
        + "; ".join(detail)
    )


def _check_same_containers(a: Any, b: Any, name: str, b_name: str) -> None:
    """Equal leaf paths can still sit in different containers (a dict mask for an NNX
    ``State``, a tuple for a list); ``jax.tree.map`` would then fail without naming a leaf."""
    if jax.tree.structure(a, is_leaf=_is_none) == jax.tree.structure(b, is_leaf=_is_none):
        return
    path, x, y = _first_container_difference(a, b, ())
    raise ValueError(
        f"{name}: tree structure does not match the {b_name} at {path or '<root>'!r}: "
        f"{type(x).__name__} in the mask, {type(y).__name__} in the {b_name}"
    )


def _first_container_difference(a: Any, b: Any, prefix: tuple) -> tuple[str, Any, Any]:
    # Flatten one level at a time (everything below the node counts as a leaf).
    a_kids, a_def = jax.tree_util.tree_flatten_with_path(a, is_leaf=lambda n: n is not a)
    b_kids, b_def = jax.tree_util.tree_flatten_with_path(b, is_leaf=lambda n: n is not b)
    if a_def == b_def:
        for (key, x), (_, y) in zip(a_kids, b_kids, strict=True):
            if jax.tree.structure(x, is_leaf=_is_none) != jax.tree.structure(y, is_leaf=_is_none):
                return _first_container_difference(x, y, prefix + key)
    return path_str(prefix), a, b


def _check_array_leaf(path: str, leaf: Any) -> None:
    if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
        raise TypeError(f"params leaf {path!r}: expected an array, got {type(leaf).__name__}")


def _check_array_leaves(params: Params) -> None:
    for path, leaf in leaves_with_paths(params):
        _check_array_leaf(path, leaf)
