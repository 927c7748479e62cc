"""Structured masks: which units of each dependency group are kept, as a param mask.

A *keep* is a dict ``{group name: bool[size]}`` (True = unit kept). :func:`expand_keep`
turns it into an ordinary jaxticket mask (a pytree like params, bool leaves, ``None`` for
leaves no prunable group touches) that zeroes every params slice of every removed unit:
its kernel column or filter, its bias, its BatchNorm scale and shift and the consumers'
input rows. With scale and shift zeroed a BatchNorm channel outputs exactly 0 whatever its
running statistics (in ``state``), so a params mask suffices to silence a unit; compaction
(:mod:`jaxticket.structured.compact`) still slices the state members.

:func:`keep_from_mask` reads a keep back from a mask and :func:`check_structured` refuses
a mask that is not an expansion of a keep (a pruned entry inside a kept unit). A group with
no unit kept is a collapsed layer: :func:`expand_keep` warns
:class:`~jaxticket.masks.LayerCollapseWarning` (eagerly, like the pruners) and
:func:`collapsed_groups` lists such groups; compaction refuses them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.masks import LayerCollapseWarning
from jaxticket.structured.groups import Group, Member, member_leaf

Keep = Mapping[str, Any]


def expand_keep(groups: Iterable[Group], keep: Keep, params: Any) -> Any:
    """The param mask that removes, together, every params slice of each removed unit.

    Works under ``jax.jit`` and ``jax.vmap`` (the keep arrays may be traced; the groups
    and the params' shapes are static). Prunable groups missing from ``keep`` keep every
    unit.

    Example::

        keep = {"dense1/kernel": np.array([True, False, True])}
        mask = expand_keep(groups, keep, params)   # dense1 column 1, bias 1, output row 1

    Args:
      groups: the dependency groups (``jaxticket.structured.dependency_groups``).
      keep: ``{group name: bool array of shape (size,)}`` for prunable groups.
      params: the model's params (nested dicts; arrays or ``ShapeDtypeStruct``).

    Returns:
      A mask like ``params``: a bool array on every leaf a prunable group touches (the AND
      over the groups touching it), ``None`` elsewhere.

    Raises:
      ValueError: an unknown or non-prunable group name, a keep of the wrong shape, or a
        params member missing from ``params``.
      TypeError: a keep array that is not boolean.

    Warns:
      LayerCollapseWarning: (concrete keeps) a group keeps no unit.
    """
    groups = tuple(groups)
    keep = check_keep(groups, keep)
    by_leaf = _params_members(groups, params)
    warn_collapsed(groups, keep, "expand_keep")
    # Concrete keeps are expanded with NumPy: eager jnp would compile one program per op.
    traced = any(isinstance(v, jax.core.Tracer) for v in keep.values())
    if not traced:
        keep = {k: np.asarray(v) for k, v in keep.items()}

    def leaf_mask(path: tuple, leaf: Any) -> Any:
        entries = by_leaf.get(path)
        if not entries:
            return None
        mask = _leaf_mask(entries, keep, tuple(jnp.shape(leaf)), jnp if traced else np)
        return mask if traced else jnp.asarray(mask)

    return jax.tree_util.tree_map_with_path(lambda p, x: leaf_mask(key_tuple(p), x), params)


def keep_from_mask(groups: Iterable[Group], mask: Any) -> dict[str, jax.Array]:
    """The keep a mask implies: a unit is kept when any params entry it owns is alive.

    Works under ``jax.jit``. Leaves that are ``None`` in the mask count as fully alive
    only when no other member of the group is masked; a group none of whose params
    members is masked keeps every unit.

    Args:
      groups: the dependency groups.
      mask: a mask like params (bool leaves, ``None`` for never-pruned leaves).

    Returns:
      ``{group name: bool array (size,)}`` for every prunable group.
    """
    traced = any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(mask))
    xp = jnp if traced else np  # eager jnp would compile one program per op
    out = {}
    for g in groups:
        if not g.prunable:
            continue
        alive = None
        for m in g.members:
            leaf = member_leaf(m, mask, None) if m.collection == "params" else None
            if leaf is None:
                continue
            units = _per_unit(xp.asarray(leaf, bool), m, g.size, xp)
            alive = units if alive is None else alive | units
        alive = xp.ones(g.size, bool) if alive is None else alive
        out[g.name] = alive if traced else jnp.asarray(alive)
    return out


def check_structured(groups: Iterable[Group], mask: Any) -> dict[str, np.ndarray]:
    """Refuses a mask that does not remove whole units; returns its keep when it does.

    A structured mask equals ``expand_keep(groups, keep_from_mask(groups, mask), ...)`` on
    every leaf: no pruned entry inside a kept unit, no pruned entry in a leaf that no
    prunable group touches, and no ``None`` (never pruned) leaf among the params members of
    a group that removes units (its bias or BatchNorm would still act).

    Args:
      groups: the dependency groups.
      mask: a concrete mask like params.

    Returns:
      The keep, as NumPy bool arrays.

    Raises:
      ValueError: one line naming the group(s) and the member leaf with the problem.
      TypeError: a traced mask (the check is host-side).
    """
    groups = tuple(groups)
    leaves = [x for x in jax.tree.leaves(mask) if x is not None]
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        raise TypeError("check_structured: needs a concrete mask; call it outside jax.jit")
    keep = {k: np.asarray(v) for k, v in keep_from_mask(groups, mask).items()}
    by_leaf = _params_members(groups, None)
    for path, leaf in jax.tree_util.tree_flatten_with_path(mask)[0]:
        path = key_tuple(path)
        got = np.asarray(leaf, bool)
        name = "/".join(map(str, path))
        if path not in by_leaf:
            if not got.all():
                raise ValueError(
                    f"mask is not structured: leaf {name!r} has {int((~got).sum())} pruned "
                    "entries but no prunable group touches it (compaction removes whole units)"
                )
            continue
        holes = _leaf_mask(by_leaf[path], keep, got.shape, np) & ~got
        if holes.any():
            owners = ", ".join(
                f"group {g.name!r} (axis {m.axis}, {m.role})" for g, m in by_leaf[path]
            )
            first = tuple(int(i) for i in np.argwhere(holes)[0])
            raise ValueError(
                f"mask is not structured: params leaf {name!r} in {owners} has "
                f"{int(holes.sum())} pruned entries inside kept units (first at {first}); "
                "prune whole units (expand_keep) or use an unstructured method"
            )
    for g in groups:
        if g.prunable and not keep[g.name].all():
            for m in g.members:
                if m.collection == "params" and member_leaf(m, mask, None) is None:
                    raise ValueError(
                        f"mask is not structured: group {g.name!r} removes units but its "
                        f"member leaf {'/'.join(map(str, m.path))!r} is None in the mask (a "
                        "removed unit's bias or norm would still act); extend the mask with "
                        "expand_keep(groups, keep_from_mask(groups, mask), params)"
                    )
    return keep


def collapsed_groups(groups: Iterable[Group], keep: Keep) -> list[str]:
    """Names of groups whose keep has no unit left (host-side, concrete keeps).

    Args:
      groups: the dependency groups.
      keep: ``{group name: bool[size]}``.

    Returns:
      The collapsed groups' names, in the groups' order.
    """
    return [g.name for g in groups if g.name in keep and not np.asarray(keep[g.name]).any()]


def warn_collapsed(groups: tuple[Group, ...], keep: Keep, where: str) -> None:
    """Warns ``LayerCollapseWarning`` naming the collapsed groups (concrete keeps only)."""
    if any(isinstance(v, jax.core.Tracer) for v in keep.values()):
        return
    collapsed = collapsed_groups(groups, keep)
    if collapsed:
        warnings.warn(
            f"{where}: {len(collapsed)} groups keep no unit (layer collapse): "
            f"{', '.join(collapsed)}; no signal passes through them",
            LayerCollapseWarning,
            stacklevel=3,
        )


def check_keep(groups: tuple[Group, ...], keep: Keep) -> dict[str, Any]:
    """``keep`` checked against the groups: known prunable names, bool arrays of ``(size,)``.

    Returns:
      A plain dict of the keep arrays (as given, possibly traced).
    """
    if not isinstance(keep, Mapping):
        raise TypeError(
            f"keep must be a dict {{group name: bool[size]}}, got {type(keep).__name__}"
        )
    by_name = {g.name: g for g in groups}
    prunable = [g.name for g in groups if g.prunable]
    out = {}
    for name, value in keep.items():
        if name not in by_name:
            raise ValueError(f"keep names unknown group {name!r}; prunable groups: {prunable}")
        group = by_name[name]
        if not group.prunable:
            raise ValueError(
                f"keep names group {name!r}, which is not prunable (it feeds the logits or the "
                "input); derive the groups with prune_outputs=True to prune it"
            )
        if tuple(jnp.shape(value)) != (group.size,):
            raise ValueError(
                f"keep[{name!r}] must have shape ({group.size},), got {tuple(jnp.shape(value))}"
            )
        if jnp.result_type(value) != jnp.bool_:
            raise TypeError(f"keep[{name!r}] must be boolean, got dtype {jnp.result_type(value)}")
        out[name] = value
    return out


def _leaf_mask(entries: list, keep: Keep, shape: tuple[int, ...], xp: Any) -> Any:
    # AND over the groups touching one leaf of each group's keep along its member axis;
    # xp is numpy (concrete keeps) or jax.numpy (traced ones).
    mask = xp.ones(shape, bool)
    for group, member in entries:
        if group.name not in keep:
            continue
        units = _unit_of_index(member, group.size, shape[member.axis])
        along = xp.take(xp.asarray(keep[group.name]), units)
        bshape = [1] * len(shape)
        bshape[member.axis] = shape[member.axis]
        mask = mask & along.reshape(bshape)
    return mask


def _params_members(groups: tuple[Group, ...], params: Any) -> dict[tuple, list]:
    # Leaf path -> [(group, member)] for the params members of prunable groups; with
    # params given, every member must be one of its leaves.
    by_leaf: dict[tuple, list[tuple[Group, Member]]] = {}
    for g in groups:
        if not g.prunable:
            continue
        for m in g.members:
            if m.collection != "params":
                continue
            if params is not None and member_leaf(m, params, None) is None:
                raise ValueError(
                    f"group {g.name!r}: params leaf {'/'.join(map(str, m.path))!r} is not in "
                    "the params (groups of another model?)"
                )
            by_leaf.setdefault(tuple(m.path), []).append((g, m))
    return by_leaf


def _unit_of_index(member: Member, size: int, length: int) -> np.ndarray:
    # Index i of the member axis belongs to unit (i // inner) % size.
    return (np.arange(length) // member.inner) % size


def _per_unit(leaf: Any, member: Member, size: int, xp: Any) -> Any:
    # Any alive entry per unit: (outer, size, inner, rest) reduced to (size,).
    x = xp.moveaxis(leaf, member.axis, 0)
    x = x.reshape(-1, size, member.inner, int(np.prod(x.shape[1:], dtype=int)))
    return xp.any(x, axis=(0, 2, 3))


def key_tuple(path: tuple) -> tuple:
    """A JAX key path as the tuple of plain keys a ``Member.path`` uses."""
    return tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path)


__all__ = [
    "check_structured",
    "collapsed_groups",
    "expand_keep",
    "keep_from_mask",
]
