"""Group scores: one score per unit of every dependency group (larger means "keep").

A group score has one signature, the structured counterpart of a pruning criterion::

    score(params, groups, *, mask=None, key=None, batch=None) -> {group.name: float32[size]}

Unit ``j`` of a group is scored over the slices its members own (``Member.axis`` laid out
as ``(outer, size, inner)``, see ``jaxticket.structured.groups.unit_indices``). Which
members count is the ``roles`` argument of each factory; the default, ``("producer",
"bias")``, scores what a unit computes: its kernel column or filter and its bias. Add
``"norm"`` for the BatchNorm scale and shift, ``"consumer"`` for the later layers' input
rows that read the unit. Members in the ``"state"`` collection (BatchNorm running
statistics) are never scored: they are statistics, not weights.

Weights the ``mask`` already pruned count as zero (the params are masked first), so a
half-pruned unit scores only what is left of it. Every score is pure and works under
``jax.jit`` and ``jax.vmap`` (an eager call runs one compiled program per groups and
shapes). The factories return equal objects for equal arguments, so
a pruner built twice reuses its compiled program.

* :func:`l1`, :func:`l2`: the L1 / L2 norm of the unit's slices over all its scored
  members together (Li et al. 2017 score filters by L1).
* :func:`bn_scale`: ``|gamma|`` of the group's BatchNorm scale (network slimming,
  Liu et al. 2017); a group without one is refused, naming it.
* :func:`taylor`: ``|Σ w·g|`` over the unit's slices, ``g`` the gradient of a loss on a
  batch: the first-order estimate of the loss change when the unit is removed
  (Molchanov et al. 2019).
* :func:`from_criterion`: any ``jaxticket.pruning`` criterion's per-weight scores summed
  over the unit's slices.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.masks import apply_mask
from jaxticket.structured.groups import ROLES, Group, Member, member_leaf

GroupScore = Callable[..., dict[str, jax.Array]]
DEFAULT_ROLES = ("producer", "bias")


def l1(roles: Sequence[str] = DEFAULT_ROLES) -> GroupScore:
    """Σ |w| over each unit's slices of the members with these roles."""
    return _norm_score("l1", _roles(roles, "l1"))


def l2(roles: Sequence[str] = DEFAULT_ROLES) -> GroupScore:
    """sqrt(Σ w²) over each unit's slices of the members with these roles."""
    return _norm_score("l2", _roles(roles, "l2"))


@functools.cache
def bn_scale() -> GroupScore:
    """|gamma|: the absolute BatchNorm scale of each unit (the group's ``norm`` member
    whose path ends in ``"scale"``).

    Raises (when called):
      ValueError: a group has no BatchNorm scale member (names the group).
    """

    def score(params, groups, *, mask=None, key=None, batch=None):
        del key, batch
        params = _masked(params, mask)
        out = {}
        for g in groups:
            scale = [
                m
                for m in g.members
                if m.role == "norm" and m.collection == "params" and m.path[-1] == "scale"
            ]
            if not scale:
                raise ValueError(
                    f"bn_scale: group {g.name!r} has no BatchNorm scale member (a 'norm' "
                    "member whose path ends in 'scale'); use l1/l2 for groups without one"
                )
            # Σ |gamma| over the unit's slice: |gamma| itself for one scale per unit.
            out[g.name] = _summed(g, params, (), jnp.abs, members=scale[:1])
        return out

    return _compiled(score)


def taylor(
    loss_fn: Callable[[Any, Any], jax.Array], roles: Sequence[str] = DEFAULT_ROLES
) -> GroupScore:
    """|Σ w·g| over each unit's slices, ``g = ∇ loss_fn(masked params, batch)``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.
      roles: the member roles summed over.

    Returns:
      A group score that needs ``batch=``.
    """
    return _taylor(loss_fn, _roles(roles, "taylor"))


def from_criterion(criterion: Callable[..., Any], roles: Sequence[str] = DEFAULT_ROLES):
    """A per-weight criterion's scores (``jaxticket.pruning.magnitude``, ``snip(loss)``,
    ...) summed over each unit's slices of the members with these roles.

    The criterion is called as ``criterion(params, mask=mask, key=key, batch=batch)``;
    scores of weights the mask pruned count as zero.
    """
    if not callable(criterion):
        raise TypeError(f"from_criterion: criterion must be callable, got {criterion!r}")
    return _from_criterion(criterion, _roles(roles, "from_criterion"))


def get(name: str | GroupScore, *, loss_fn=None, roles: Sequence[str] | None = None):
    """A group score by name (``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"``) or as given.

    Args:
      name: the name, or a group score function (returned as it is).
      loss_fn: for ``"taylor"``.
      roles: member roles for the norm and Taylor scores (default producers and biases).
    """
    if callable(name):
        return name
    roles = DEFAULT_ROLES if roles is None else roles
    if name == "l1":
        return l1(roles)
    if name == "l2":
        return l2(roles)
    if name == "bn_scale":
        return bn_scale()
    if name == "taylor":
        if loss_fn is None:
            raise ValueError("group score 'taylor' needs loss_fn=(params, batch) -> scalar")
        return taylor(loss_fn, roles)
    raise ValueError(f"unknown group score {name!r}; valid: bn_scale, l1, l2, taylor")


# --------------------------------------------------------------------------------------
# helpers


@functools.cache
def _norm_score(norm: str, roles: tuple[str, ...]) -> GroupScore:
    def score(params, groups, *, mask=None, key=None, batch=None):
        del key, batch
        params = _masked(params, mask)
        square = norm == "l2"
        out = {}
        for g in groups:
            total = _summed(g, params, roles, lambda x: jnp.square(x) if square else jnp.abs(x))
            out[g.name] = jnp.sqrt(total) if square else total
        return out

    return _compiled(score)


@functools.cache
def _taylor(loss_fn, roles: tuple[str, ...]) -> GroupScore:
    def score(params, groups, *, mask=None, key=None, batch=None):
        del key
        if batch is None:
            raise ValueError("taylor group score: pass batch= (the data loss_fn takes)")
        w = _masked(params, mask)
        grads = jax.grad(loss_fn)(w, batch)
        product = jax.tree.map(lambda a, b: a * b, w, grads)
        return {g.name: jnp.abs(_summed(g, product, roles, lambda x: x)) for g in groups}

    return _compiled(score)


@functools.cache
def _from_criterion(criterion, roles: tuple[str, ...]) -> GroupScore:
    def score(params, groups, *, mask=None, key=None, batch=None):
        scores = criterion(params, mask=mask, key=key, batch=batch)
        scores = _masked(scores, mask)
        return {g.name: _summed(g, scores, roles, lambda x: x) for g in groups}

    return _compiled(score)


def _compiled(score) -> GroupScore:
    """``score`` jitted with the groups static (one compiled program per groups and
    shapes, instead of op-by-op dispatch when called eagerly)."""
    jitted = jax.jit(score, static_argnums=1)

    def call(params, groups, *, mask=None, key=None, batch=None):
        return jitted(params, tuple(groups), mask=mask, key=key, batch=batch)

    return call


def _summed(group: Group, tree, roles, fn, members=None) -> jax.Array:
    """Σ fn(x) over each unit's slices of the group's params members with these roles
    (or of ``members``, when given)."""
    total = jnp.zeros((group.size,), jnp.float32)
    if members is None:
        members = [m for m in group.members if m.role in roles and m.collection == "params"]
    for m in members:
        x = _unit_slices(_leaf(m, tree, group), m, group.size)
        total = total + jnp.sum(fn(x.astype(jnp.float32)), axis=1)
    return total


def _unit_slices(x, member: Member, size: int) -> jax.Array:
    """``x`` as ``[size, n]``: row j holds every entry unit j owns on ``member.axis``
    (the axis laid out as ``(outer, size, inner)``)."""
    x = jnp.moveaxis(jnp.asarray(x), member.axis, 0)
    x = x.reshape(-1, size, member.inner, *x.shape[1:])
    return jnp.moveaxis(x, 1, 0).reshape(size, -1)


def _leaf(member: Member, tree, group: Group):
    leaf = member_leaf(member, tree, None)
    if leaf is None:
        raise ValueError(
            f"group {group.name!r}: params leaf {'/'.join(map(str, member.path))!r} is missing"
        )
    return leaf


def _masked(tree, mask):
    return tree if mask is None else apply_mask(tree, mask)


def _roles(roles, where: str) -> tuple[str, ...]:
    if isinstance(roles, str):
        roles = (roles,)
    roles = tuple(roles)
    bad = [r for r in roles if r not in ROLES]
    if bad or not roles:
        raise ValueError(f"{where}: roles must be a non-empty subset of {ROLES}, got {roles!r}")
    return roles
