"""Dependency groups: the parameter slices that must be removed together with one unit.

A *unit* is an output neuron of a dense layer, an output channel of a convolution or an
attention head. Removing it honestly removes, at once, its kernel column or filter
("producer"), its bias, its BatchNorm scale, shift and running statistics ("norm") and the
matching input rows of every later layer that reads it ("consumer"). A :class:`Group`
lists those slices as :class:`Member` axes; unit ``j`` of a group of ``size`` units owns,
on a member axis laid out as ``(outer, size, inner)``, the indices
``{o * size * inner + j * inner + i}``.

Groups are derived from a model's computation by
:func:`jaxticket.structured.dependency_groups`; a model the analysis cannot read gets its
groups written by hand and checked with :func:`declare_groups`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

COLLECTIONS = ("params", "state")
ROLES = ("producer", "bias", "norm", "consumer")
KINDS = ("units", "channels", "heads")


@dataclasses.dataclass(frozen=True)
class Member:
    """One axis of one leaf that a group indexes.

    Attributes:
      collection: ``"params"`` or ``"state"`` (BatchNorm running mean/var live in state).
      path: key path in the nested dict, e.g. ``("conv1", "kernel")``.
      axis: the non-negative axis of that leaf the group indexes.
      inner: the axis is laid out as ``(outer, group.size, inner)``; unit ``j`` owns
        indices ``{o * size * inner + j * inner + i}``. A dense kernel fed by a flattened
        ``(H, W, C)`` conv output: ``inner=1``, ``outer=H*W``. A query kernel whose output
        axis ``H*D`` is split into ``H`` heads: ``inner=D``.
      role: ``"producer"`` (kernel output units), ``"bias"``, ``"norm"`` (BatchNorm scale,
        shift, running statistics) or ``"consumer"`` (a later layer's inputs).
    """

    collection: str
    path: tuple[str, ...]
    axis: int
    inner: int = 1
    role: str = "producer"


@dataclasses.dataclass(frozen=True)
class Group:
    """Units removed together, and every leaf slice each of them owns.

    Attributes:
      name: stable and readable: the first producer's path joined by ``"/"``.
      size: the number of units (channels, neurons, heads).
      members: the leaf axes the group indexes.
      prunable: False for groups that feed the logits (never pruned unless asked).
      kind: ``"units"`` (dense neurons), ``"channels"`` (conv channels) or ``"heads"``.
    """

    name: str
    size: int
    members: tuple[Member, ...]
    prunable: bool = True
    kind: str = "units"


def unit_indices(member: Member, size: int, length: int) -> np.ndarray:
    """The indices of ``member``'s axis owned by each unit, as an int array ``[size, n]``.

    Args:
      member: the member axis, laid out as ``(outer, size, inner)``.
      size: the group's number of units.
      length: the length of that axis in the leaf (a multiple of ``size * inner``).

    Returns:
      Row ``j`` lists the indices of unit ``j`` in increasing order.
    """
    outer = length // (size * member.inner)
    idx = np.arange(length).reshape(outer, size, member.inner)
    return np.transpose(idx, (1, 0, 2)).reshape(size, outer * member.inner)


def declare_groups(*groups: Group, params: Any = None, state: Any = None) -> tuple[Group, ...]:
    """Hand-written groups for a model the tracing analysis cannot read, checked.

    Example::

        dense = Group("dense1/kernel", 64, (
            Member("params", ("dense1", "kernel"), 1),
            Member("params", ("dense1", "bias"), 0, role="bias"),
            Member("params", ("dense2", "kernel"), 0, role="consumer"),
        ))
        groups = declare_groups(dense, params=params, state=state)

    Args:
      *groups: the groups.
      params: the model's params; when given (with ``state``), every member is checked
        against the leaves (see :func:`check_groups`).
      state: the model's state (``{}`` when there is none).

    Returns:
      The groups as a tuple, in the order given.

    Raises:
      TypeError: an argument that is not a ``Group``.
      ValueError: an inconsistent group (see :func:`check_groups`).
    """
    for g in groups:
        if not isinstance(g, Group):
            raise TypeError(f"declare_groups: expected Group objects, got {type(g).__name__}")
    groups = tuple(groups)
    if params is None:
        _check_declarations(groups)
    else:
        check_groups(groups, params, {} if state is None else state)
    return groups


def check_groups(groups: Iterable[Group], params: Any, state: Any) -> None:
    """Raises a one-line ValueError unless every group is consistent with the leaves.

    Checks: field types and values, unique group names, at least one producer per group,
    every member path present in its collection, the axis in range, the axis length a
    multiple of ``size * inner``, and no leaf axis claimed twice (within or across groups).

    Args:
      groups: the groups.
      params: the model's params (nested dicts).
      state: the model's state (nested dicts, ``{}`` when there is none).
    """
    groups = tuple(groups)
    _check_declarations(groups)
    trees = {"params": params, "state": state if state is not None else {}}
    for g in groups:
        for m in g.members:
            leaf = leaf_at(trees[m.collection], m.path)
            where = f"group {g.name!r}: {m.collection} leaf {'/'.join(map(str, m.path))!r}"
            if leaf is None:
                raise ValueError(f"{where} does not exist")
            shape = tuple(getattr(leaf, "shape", None) or np.shape(leaf))
            if m.axis >= len(shape):
                raise ValueError(f"{where} has shape {shape}, no axis {m.axis}")
            if shape[m.axis] % (g.size * m.inner):
                raise ValueError(
                    f"{where} axis {m.axis} has length {shape[m.axis]}, not a multiple of "
                    f"size*inner = {g.size}*{m.inner}"
                )


def member_leaf(member: Member, params: Any, state: Any) -> Any:
    """The leaf a member indexes, or None when its path is absent."""
    tree = params if member.collection == "params" else state
    return leaf_at(tree, member.path)


def _check_declarations(groups: tuple[Group, ...]) -> None:
    names: set[str] = set()
    claimed: dict[tuple, str] = {}
    for g in groups:
        if not isinstance(g, Group):
            raise TypeError(f"expected Group objects, got {type(g).__name__}")
        if not isinstance(g.name, str) or not g.name:
            raise ValueError(f"group names must be non-empty strings, got {g.name!r}")
        if g.name in names:
            raise ValueError(f"two groups are named {g.name!r}; names must be unique")
        names.add(g.name)
        if not _is_int(g.size) or g.size < 1:
            raise ValueError(f"group {g.name!r}: size must be a positive int, got {g.size!r}")
        if g.kind not in KINDS:
            raise ValueError(f"group {g.name!r}: kind must be one of {KINDS}, got {g.kind!r}")
        if not isinstance(g.prunable, bool):
            raise ValueError(f"group {g.name!r}: prunable must be a bool, got {g.prunable!r}")
        if not isinstance(g.members, tuple) or not g.members:
            raise ValueError(f"group {g.name!r}: members must be a non-empty tuple of Member")
        for m in g.members:
            _check_member(g.name, m)
        if not any(m.role == "producer" for m in g.members):
            raise ValueError(f"group {g.name!r}: needs at least one member with role='producer'")
        for m in g.members:
            key = (m.collection, m.path, m.axis)
            if key in claimed:
                raise ValueError(
                    f"{m.collection} leaf {'/'.join(map(str, m.path))!r} axis {m.axis} is in "
                    f"groups {claimed[key]!r} and {g.name!r}; a leaf axis belongs to one group"
                )
            claimed[key] = g.name


def _check_member(name: str, m: Any) -> None:
    if not isinstance(m, Member):
        raise ValueError(f"group {name!r}: members must be Member objects, got {m!r}")
    if m.collection not in COLLECTIONS:
        raise ValueError(
            f"group {name!r}: member collection must be one of {COLLECTIONS}, got {m.collection!r}"
        )
    if not isinstance(m.path, tuple) or not m.path:
        raise ValueError(f"group {name!r}: member path must be a non-empty tuple, got {m.path!r}")
    if not _is_int(m.axis) or m.axis < 0:
        raise ValueError(
            f"group {name!r}: member {'/'.join(map(str, m.path))!r} axis must be a "
            f"non-negative int, got {m.axis!r}"
        )
    if not _is_int(m.inner) or m.inner < 1:
        raise ValueError(
            f"group {name!r}: member {'/'.join(map(str, m.path))!r} inner must be a "
            f"positive int, got {m.inner!r}"
        )
    if m.role not in ROLES:
        raise ValueError(f"group {name!r}: member role must be one of {ROLES}, got {m.role!r}")


def leaf_at(tree: Any, path: tuple) -> Any:
    """The leaf of nested dicts ``tree`` at key ``path`` (as in :attr:`Member.path`), or None."""
    node = tree
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def dict_path(key_path: Iterable[Any]) -> tuple:
    """A JAX key path (``DictKey``, ``SequenceKey``, ...) as the plain keys of a member path."""
    return tuple(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in key_path)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)
