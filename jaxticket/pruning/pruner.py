"""Pruner = criterion ∘ allocation ∘ selection, one pure call from (params, mask) to a mask.

Example::

    pruner = magnitude_pruner("layerwise", scale={"out/*": 0.5})
    mask = pruner(params, mask, fraction=0.2)      # 20% of hidden, 10% of output weights
    mask = prune(params, mask, sparsity=0.9)       # global magnitude to 90% sparsity

The call is pure and jittable; ``fraction`` and ``sparsity`` may be traced, so one compiled
function serves every pruning round::

    step = jax.jit(lambda p, m, f: pruner(p, m, fraction=f))

No layer collapses by default: every prunable leaf keeps at least ``min_keep`` (1) of
its alive units (weights, or neurons with ``neurons()``), see ``jaxticket.pruning.selection``.
With ``min_keep=0`` a leaf may lose every weight; an eager call that leaves such a leaf
warns ``LayerCollapseWarning`` naming it (``jaxticket.masks.collapsed_leaves`` finds them
in any concrete mask, e.g. after a jitted call).

Checks that need concrete values run eagerly: a ``fraction``/``sparsity`` outside [0, 1)
or resolving to 1.0 at six decimals (0.9999999) raises ValueError when given as a Python
or concrete number, a layerwise scale that takes a concrete rate to 1 raises naming the
leaf, and NaN/inf scores raise ValueError naming the leaf when the scores are concrete
(see ``check_scores``; call the pruner once eagerly to check a new criterion).

Under ``jit`` (traced rates or scores) nothing can be raised, and without ``checked`` this
is what happens: a rate (also a scaled layerwise rate) is clipped to [0, 1] and NaN counts
as 0, so a traced fraction 1.5 prunes every unit but each leaf's ``min_keep``, and -0.2 or
NaN prunes nothing; NaN scores rank below every other alive score (pruned first), -inf
below every finite score and +inf above. With ``checked=True`` the pruner adds
``jax.experimental.checkify`` checks for all of these (a rate outside [0, 1), NaN, or
resolving to 1; a scaled layerwise rate reaching 1; NaN or infinite alive scores), which a
caller activates by wrapping its function::

    err, mask = checkify.checkify(jax.jit(step))(params, mask, 1.5)
    err.throw()  # pruner: fraction must be in [0, 1), got 1.5

A checked pruner inside ``jax.jit`` without ``checkify.checkify`` fails to trace (JAX's
"checkify.check which was not functionalized"); eagerly it needs no wrapper.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import validate_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning import criteria
from jaxticket.pruning import selection as sel
from jaxticket.pruning.layerwise import layerwise
from jaxticket.pruning.pruner_checks import (
    _check_options,
    _check_parts,
    _check_sparsity_reachable,
    _checkify_rates,
    _checkify_scores,
    _min_keep_for,
    _warn_collapsed,
)

Params = Any
Mask = Any

_is_none = lambda x: x is None


class Pruner(NamedTuple):
    """A criterion, an allocation and a selection; call it to prune.

    Attributes:
      criterion: ``fn(params, *, mask, key, batch) -> scores``.
      allocation: e.g. ``global_()``, ``layerwise(scale)``, ``erk()``.
      selection: e.g. ``unstructured()``, ``neurons()``, ``n_m(2, 4)``.
      min_keep: every prunable leaf keeps at least ``min(min_keep, alive)`` units
        (weights, or neurons for ``neurons()``); 0 allows a leaf to collapse. Passed to
        the selection as ``min_keep=``; a selection without that keyword needs
        ``min_keep=0``.
      checked: add ``jax.experimental.checkify`` checks for traced rates and scores
        (see the module docstring).

    Non-finite scores: eager calls refuse NaN/inf alive scores naming the leaf. Under
    ``jit`` they are ranked: NaN below every other alive score (pruned first), -inf below
    and +inf above every finite score (``count_nonfinite`` counts them; ``checked=True``
    reports them). A traced rate is clipped to [0, 1], NaN counting as 0.

    Allocation and selection are static arguments of a jitted core, so they must be
    hashable (plain functions are; the factories return equal objects for equal
    arguments, so building a pruner twice reuses the compiled program). Close over a
    pruner inside ``jax.jit``; do not pass it as an argument.
    """

    criterion: criteria.Criterion
    allocation: alloc.Allocation
    selection: sel.Selection
    min_keep: int = 1
    checked: bool = False

    def __call__(
        self,
        params: Params,
        mask: Mask,
        *,
        fraction: float | jax.Array | None = None,
        sparsity: float | jax.Array | None = None,
        key: jax.Array | None = None,
        batch: Any = None,
    ) -> Mask:
        """Returns a new mask (a subset of ``mask``).

        Args:
          params: the parameter pytree.
          mask: the current mask (``jaxticket.dense_mask(params)`` to start).
          fraction: prune this fraction of the alive prunable weights (exactly
            ``round(f·alive)``, per leaf or in total depending on the allocation).
          sparsity: prune until this fraction of all prunable weights is pruned.
          key: for random criteria.
          batch: for data-driven criteria (SNIP, ...).

        Raises:
          ValueError: no prunable leaves, a fraction/sparsity outside [0, 1) or resolving
            to 1.0, NaN/inf scores (eagerly), and the errors of the allocation and
            selection.
          TypeError: a rate that is not a real scalar, complex scores (names the leaf),
            a bad ``min_keep``/``checked``, a selection that takes no ``min_keep``.

        Warns:
          LayerCollapseWarning: (eager calls) a prunable leaf is left with no alive
            weight; the message names the leaves.
        """
        _check_options(self.min_keep, self.checked)
        _check_parts(self.criterion, self.allocation, self.selection)
        alloc.check_rate("fraction", fraction)
        alloc.check_rate("sparsity", sparsity)
        validate_mask(mask, params)
        flat = leaves_with_paths(mask, keep_none=True)
        prunable = [(i, path, m) for i, (path, m) in enumerate(flat) if m is not None]
        if not prunable:
            raise ValueError(
                "pruner: the mask has no prunable leaves; leaf paths are: "
                + ", ".join(path for path, _ in flat)
            )
        paths = tuple(path for _, path, _ in prunable)
        _check_sparsity_reachable(sparsity, [m for _, _, m in prunable])
        check_rates = getattr(self.allocation, "check_rates", None)
        if check_rates is not None:
            check_rates(list(paths), fraction=fraction, sparsity=sparsity, checked=self.checked)
        if self.checked:
            _checkify_rates(fraction=fraction, sparsity=sparsity)
        min_keep = _min_keep_for(self.selection, self.min_keep)
        scores = self.criterion(params, mask=mask, key=key, batch=batch)
        criteria.check_scores(scores, mask)
        score_leaves = [s for _, _, s in criteria.align(mask, scores)]
        prunable_scores = [_as_float(path, score_leaves[i]) for i, path, _ in prunable]
        alive = [m for _, _, m in prunable]
        if self.checked:
            _checkify_scores(paths, prunable_scores, alive)
        new = _select(
            prunable_scores,
            alive,
            fraction,
            sparsity,
            selection=self.selection,
            allocation=self.allocation,
            paths=paths,
            min_keep=min_keep,
        )
        leaves = [m for _, m in flat]
        for (i, _, _), m in zip(prunable, new, strict=True):
            leaves[i] = m
        result = jax.tree.unflatten(jax.tree.structure(mask, is_leaf=_is_none), leaves)
        if not any(isinstance(m, jax.core.Tracer) for m in new):
            _warn_collapsed(result)
        return result


def make_pruner(
    criterion: criteria.Criterion,
    allocation: str | alloc.Allocation = "global",
    selection: str | sel.Selection = "unstructured",
    *,
    scale: dict[str, float] | None = None,
    min_keep: int = 1,
    checked: bool = False,
) -> Pruner:
    """A ``Pruner`` from a criterion and names (or functions) for the other two parts.

    Args:
      criterion: a criterion function.
      allocation: ``"global"``, ``"layerwise"``, ``"erk"``, ``"er"`` or an allocation.
      selection: ``"unstructured"``, ``"neurons"`` or a selection (e.g. ``n_m(2, 4)``).
      scale: per-leaf rate factors by path pattern; only with ``"layerwise"``.
      min_keep: units every prunable leaf keeps at least (0: a leaf may collapse).
      checked: ``checkify`` checks for traced rates and scores (see ``Pruner``).
    """
    _check_options(min_keep, checked)
    if isinstance(allocation, str):
        allocation = _allocation(allocation, scale)
    elif scale is not None:
        raise ValueError("scale= goes with allocation='layerwise'; pass layerwise(scale) instead")
    if isinstance(selection, str):
        names = {"unstructured": sel.unstructured, "neurons": sel.neurons}
        if selection not in names:
            raise ValueError(f"unknown selection {selection!r}; valid: {sorted(names)}")
        selection = names[selection]()
    _check_parts(criterion, allocation, selection)
    return Pruner(criterion, allocation, selection, min_keep, checked)


def magnitude_pruner(
    allocation="global", selection="unstructured", *, scale=None, min_keep=1, checked=False
) -> Pruner:
    """Prunes the smallest |w| (lottery tickets, gradual magnitude pruning)."""
    return make_pruner(
        criteria.magnitude, allocation, selection, scale=scale, min_keep=min_keep, checked=checked
    )


def random_pruner(
    allocation="global", selection="unstructured", *, scale=None, min_keep=1, checked=False
) -> Pruner:
    """Prunes uniformly at random (needs ``key=``); the random-pruning control."""
    return make_pruner(
        criteria.random, allocation, selection, scale=scale, min_keep=min_keep, checked=checked
    )


def snip_pruner(
    loss_fn,
    allocation="global",
    selection="unstructured",
    *,
    scale=None,
    min_keep=1,
    checked=False,
) -> Pruner:
    """SNIP at initialization (needs ``batch=``); ``loss_fn(params, batch) -> scalar``."""
    crit = criteria.snip(loss_fn)
    return make_pruner(crit, allocation, selection, scale=scale, min_keep=min_keep, checked=checked)


def prune(
    params: Params,
    mask: Mask,
    *,
    fraction: float | jax.Array | None = None,
    sparsity: float | jax.Array | None = None,
    criterion: criteria.Criterion = criteria.magnitude,
    allocation: str | alloc.Allocation = "global",
    selection: str | sel.Selection = "unstructured",
    scale: dict[str, float] | None = None,
    key: jax.Array | None = None,
    batch: Any = None,
    min_keep: int = 1,
    checked: bool = False,
) -> Mask:
    """One-off pruning: ``make_pruner(criterion, allocation, selection, ...)(params, ...)``."""
    pruner = make_pruner(
        criterion, allocation, selection, scale=scale, min_keep=min_keep, checked=checked
    )
    return pruner(params, mask, fraction=fraction, sparsity=sparsity, key=key, batch=batch)


# --------------------------------------------------------------------------------------
# helpers


def _allocation(name: str, scale) -> alloc.Allocation:
    if name == "layerwise":
        return layerwise(scale)
    if scale is not None:
        raise ValueError(f"scale= needs allocation='layerwise', got {name!r}")
    names = {"global": alloc.global_, "erk": alloc.erk, "er": alloc.er}
    if name not in names:
        raise ValueError(f"unknown allocation {name!r}; valid: {sorted([*names, 'layerwise'])}")
    return names[name]()


# One compiled program per (selection, allocation, leaf paths and shapes, min_keep): eager
# calls then cost one dispatch instead of one compilation per op, and fraction/sparsity
# are traced, so every round of an iterative schedule reuses it.
@functools.partial(jax.jit, static_argnames=("selection", "allocation", "paths", "min_keep"))
def _select(scores, alive, fraction, sparsity, *, selection, allocation, paths, min_keep):
    kw = {} if min_keep is None else {"min_keep": min_keep}
    return selection(
        scores, alive, list(paths), allocation, fraction=fraction, sparsity=sparsity, **kw
    )


def _as_float(path: str, s):
    s = jnp.asarray(s)
    if jnp.issubdtype(s.dtype, jnp.complexfloating) or not jnp.issubdtype(s.dtype, jnp.number):
        if s.dtype != jnp.bool_:
            raise TypeError(f"scores leaf {path!r}: expected real scores, got dtype {s.dtype}")
    return s if jnp.issubdtype(s.dtype, jnp.floating) else s.astype(jnp.float32)
