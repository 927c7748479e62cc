"""Structured pruning over dependency groups, called like ``jaxticket.pruning.Pruner``.

Example::

    groups = dependency_groups(model, params, state)        # the output group not prunable
    pruner = StructuredPruner(groups, scores.l1(), "global")
    mask = pruner(params, structured_dense_mask(groups, params), fraction=0.2)

``pruner(params, mask, *, fraction=None, sparsity=None, key=None, batch=None) -> mask``:

1. the group score (``jaxticket.structured.scores``) gives every unit of every group a
   score;
2. the alive units are read off ``mask`` (``keep_from_mask``: a unit is alive while any
   params entry it owns is alive, so an already-removed unit stays removed);
3. the allocation says how many alive units each prunable group keeps: ``"global"``, one
   threshold over all prunable groups' units (exactly ``round(f·alive)`` units pruned in
   total), or ``"layerwise"``, the same fraction of every group's alive units (optionally
   scaled per group by glob patterns on group names). ``sparsity`` counts units: prune
   until that fraction of all prunable groups' units is removed. The counts and the
   top-k are ``jaxticket.pruning``'s (``global_``/``layerwise`` and the ``unstructured``
   selection over per-group unit-score vectors, with top-k's stable-sort path: unit
   vectors are short), so the rounding rules, ties (the earlier unit, the earlier group
   wins) and ``min_keep`` reservations are the same;
4. the result is the structural mask of the kept units: every member slice of a removed
   unit pruned (kernel columns/filters, biases, BatchNorm scale and shift, consumers'
   input rows), AND-ed with ``mask``; leaves no prunable group touches keep ``mask``'s leaf.

Global normalization: unit scores of different groups are not on one scale (a conv
filter's L1 grows with its fan-in), so before one threshold compares them each group's
scores are divided by the mean of its alive units' scores (``normalize="mean"``, the
default; ``"max"`` divides by the largest, ``"none"`` compares raw scores). A group whose
alive scores are all zero is left as it is. Layerwise allocation ranks inside each group
only, so normalization does not change it.

Output groups (those whose ``prunable`` is False, as ``dependency_groups`` marks the
group feeding the logits unless ``prune_outputs=True``) are never pruned.
``min_keep``: every prunable group keeps at least ``min(min_keep, alive)`` units (default
1: no silent collapse). With ``min_keep=0`` a group may lose every unit; an eager call
that leaves such a group warns ``LayerCollapseWarning`` naming it.

The call is pure and jittable (rates may be traced; one compiled program serves every
round) and works under ``jax.vmap`` over seeds. Concrete rates outside [0, 1) are refused
eagerly, as by ``Pruner``. Non-finite unit scores are ranked as ``topk_mask`` ranks them
(NaN below every other alive score, so pruned first).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxticket._paths import check_patterns_exist
from jaxticket.masks import dense_mask, validate_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning import selection as sel
from jaxticket.pruning.layerwise import layerwise
from jaxticket.pruning.topk_exact import _sorted_mask
from jaxticket.structured import scores as scores_lib
from jaxticket.structured.groups import Group
from jaxticket.structured.masks import expand_keep, keep_from_mask, warn_collapsed
from jaxticket.structured.trace_groups import dependency_groups

ALLOCATIONS = ("global", "layerwise")
NORMALIZATIONS = ("mean", "max", "none")


class StructuredPruner(NamedTuple):
    """A group score, an allocation over groups and ``min_keep``; call it to prune.

    Attributes:
      groups: the dependency groups (``dependency_groups`` or ``declare_groups``); only
        those with ``prunable=True`` are pruned.
      score: a group score, e.g. ``scores.l1()``, ``scores.bn_scale()``,
        ``scores.taylor(loss_fn)`` or ``scores.from_criterion(criterion)``.
      allocation: ``"global"`` or ``"layerwise"``.
      normalize: how global allocation puts groups on one scale: ``"mean"``, ``"max"``
        or ``"none"`` (see the module docstring).
      min_keep: units every prunable group keeps at least (0: a group may collapse).
      scale: layerwise only: ``(pattern, factor)`` pairs on group names scaling the rate.
    """

    groups: tuple[Group, ...]
    score: scores_lib.GroupScore
    allocation: str = "global"
    normalize: str = "mean"
    min_keep: int = 1
    scale: tuple[tuple[str, float], ...] = ()

    def __call__(
        self,
        params: Any,
        mask: Any,
        *,
        fraction: float | jax.Array | None = None,
        sparsity: float | jax.Array | None = None,
        key: jax.Array | None = None,
        batch: Any = None,
    ) -> Any:
        """Returns the new structural mask (a subset of ``mask``).

        Args:
          params: the parameter pytree (nested dicts).
          mask: the current mask (``structured_dense_mask(groups, params)`` to start;
            ``jaxticket.dense_mask(params)`` works too, its ``None`` bias leaves then
            become bool leaves).
          fraction: prune this fraction of the alive units of the prunable groups
            (in total for ``"global"``, of each group for ``"layerwise"``).
          sparsity: prune until this fraction of the prunable groups' units is removed.
          key: for random scores.
          batch: for data-driven scores (Taylor, SNIP through ``from_criterion``).

        Raises:
          ValueError: no prunable group, a bad rate, a bad option (one line each).

        Warns:
          LayerCollapseWarning: (eager calls, ``min_keep=0``) a prunable group kept no unit.
        """
        new, keep = self._prune(params, mask, fraction, sparsity, key, batch)
        warn_collapsed(self.groups, keep, "structured pruner")
        return new

    def keep(self, params, mask, *, fraction=None, sparsity=None, key=None, batch=None):
        """The kept units, ``{group name: bool[size]}`` for every prunable group (the
        ``keep`` of ``jaxticket.structured.masks``); the arguments are those of
        ``__call__``."""
        _, keep = self._prune(params, mask, fraction, sparsity, key, batch)
        warn_collapsed(self.groups, keep, "structured pruner")
        return keep

    def _prune(self, params, mask, fraction, sparsity, key, batch):
        _check_options(self)
        alloc.check_rate("fraction", fraction, "structured pruner")
        alloc.check_rate("sparsity", sparsity, "structured pruner")
        if (fraction is None) == (sparsity is None):
            raise ValueError("structured pruner: pass exactly one of fraction= and sparsity=")
        validate_mask(mask, params)
        if self.allocation == "layerwise":
            names = [g.name for g in self.groups if g.prunable]
            check_patterns_exist(dict(self.scale), names, "structured pruner scale")
            layerwise(dict(self.scale) or None).check_rates(
                names, fraction=fraction, sparsity=sparsity
            )
        mask = structured_dense_mask(self.groups, params, mask)
        return _prune(self, params, mask, fraction, sparsity, key, batch)


def structured_pruner(
    model,
    params=None,
    state=None,
    *,
    score: str | scores_lib.GroupScore = "l1",
    allocation: str = "global",
    normalize: str = "mean",
    min_keep: int = 1,
    prune_outputs: bool = False,
    scale: Mapping[str, float] | None = None,
    loss_fn=None,
) -> StructuredPruner:
    """A ``StructuredPruner`` over ``model``'s dependency groups.

    Args:
      model: a ``jaxticket.models.Model``.
      params, state: the model's params and state (default: ``model.init``'s shapes).
      score: ``"l1"``, ``"l2"``, ``"bn_scale"``, ``"taylor"`` or a group score.
      allocation: ``"global"`` or ``"layerwise"``.
      normalize: global allocation's normalization (``"mean"``, ``"max"``, ``"none"``).
      min_keep: units every prunable group keeps at least.
      prune_outputs: also prune the group feeding the logits (default: never).
      scale: layerwise rate factors by glob pattern on group names.
      loss_fn: ``loss_fn(params, batch) -> scalar`` for ``"taylor"``.
    """
    if params is None:
        params, state = jax.eval_shape(model.init, jax.random.key(0))
    groups = dependency_groups(model, params, state, prune_outputs=prune_outputs)
    pruner = StructuredPruner(
        tuple(groups),
        scores_lib.get(score, loss_fn=loss_fn),
        allocation,
        normalize,
        min_keep,
        tuple((scale or {}).items()),
    )
    _check_options(pruner)
    return pruner


def structured_dense_mask(groups, params, mask=None):
    """``mask`` (default ``jaxticket.dense_mask(params)``) with an all-alive bool leaf on
    every params leaf a prunable group touches that it leaves ``None`` (biases, BatchNorm
    scale and shift). IMP starts from it, so every level's mask has one tree structure;
    the pruner fills a mask this way before pruning, so a ``dense_mask`` and its pruned
    successors share one compiled program."""
    base = dense_mask(params) if mask is None else mask
    paths = {
        tuple(m.path) for g in groups if g.prunable for m in g.members if m.collection == "params"
    }

    def fill(path, leaf, x):
        if leaf is None and tuple(getattr(k, "key", k) for k in path) in paths:
            return jnp.ones(tuple(x.shape), bool)
        return leaf

    return jax.tree_util.tree_map_with_path(fill, base, params, is_leaf=lambda x: x is None)


# --------------------------------------------------------------------------------------
# helpers


def _check_options(p: StructuredPruner) -> None:
    if not isinstance(p.groups, tuple) or not all(isinstance(g, Group) for g in p.groups):
        raise TypeError("structured pruner: groups must be a tuple of structured.Group")
    if not any(g.prunable for g in p.groups):
        raise ValueError(
            "structured pruner: no prunable group (output groups are never pruned unless "
            "the groups are built with prune_outputs=True); groups: "
            + ", ".join(g.name for g in p.groups)
        )
    if not callable(p.score):
        raise TypeError(f"structured pruner: score must be a group score, got {p.score!r}")
    if p.allocation not in ALLOCATIONS:
        raise ValueError(
            f"structured pruner: allocation must be one of {ALLOCATIONS}, got {p.allocation!r}"
        )
    if p.normalize not in NORMALIZATIONS:
        raise ValueError(
            f"structured pruner: normalize must be one of {NORMALIZATIONS}, got {p.normalize!r}"
        )
    if isinstance(p.min_keep, bool) or not isinstance(p.min_keep, int) or p.min_keep < 0:
        raise ValueError(f"structured pruner: min_keep must be an int >= 0, got {p.min_keep!r}")
    if p.scale and p.allocation != "layerwise":
        raise ValueError("structured pruner: scale= goes with allocation='layerwise'")


# One compiled program per pruner (its groups, score, allocation and options) and tree
# shapes; the rates are traced, so every round of IMP reuses it.
@functools.partial(jax.jit, static_argnums=0)
def _prune(p: StructuredPruner, params, mask, fraction, sparsity, key, batch):
    """(the new mask, the keep): scores, alive units, allocation, top-k, expansion."""
    prunable = tuple(g for g in p.groups if g.prunable)
    scored = p.score(params, prunable, mask=mask, key=key, batch=batch)
    alive = keep_from_mask(prunable, mask)
    unit_scores = [_normalized(scored[g.name], alive[g.name], p) for g in prunable]
    allocation = alloc.global_() if p.allocation == "global" else layerwise(dict(p.scale) or None)
    kept = sel.unstructured(_sorted_mask)(
        unit_scores,
        [alive[g.name] for g in prunable],
        [g.name for g in prunable],
        allocation,
        fraction=fraction,
        sparsity=sparsity,
        min_keep=p.min_keep,
    )
    keep = {g.name: k for g, k in zip(prunable, kept, strict=True)}
    return _merged(p.groups, keep, params, mask), keep


def _normalized(s, alive, p: StructuredPruner):
    s = s.astype(jnp.float32)
    if p.allocation != "global" or p.normalize == "none":
        return s
    live = jnp.where(alive, s, 0.0)
    if p.normalize == "mean":
        ref = jnp.sum(live) / jnp.maximum(jnp.sum(alive), 1)
    else:
        ref = jnp.max(live)
    return s / jnp.where(ref > 0, ref, 1.0)


def _merged(groups, keep, params, mask):
    """``expand_keep``'s mask AND-ed with ``mask`` (a pruned weight never comes back);
    leaves no prunable group touches keep ``mask``'s leaf."""
    expanded = expand_keep(groups, keep, params)
    return jax.tree.map(
        lambda e, m: m if e is None else (e if m is None else e & m),
        expanded,
        mask,
        is_leaf=lambda x: x is None,
    )
