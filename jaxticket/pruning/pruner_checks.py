"""The pruner's argument checks: options, parts, reachable targets, checkify checks.

Eager checks raise (or warn) naming the argument or the leaf; the ``_checkify_*`` ones add
``jax.experimental.checkify`` checks for traced rates and scores (``checked=True``, see
``jaxticket.pruning.pruner``); ``_warn_collapsed`` warns ``LayerCollapseWarning`` for an
eager result that left a prunable leaf without an alive weight.
"""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from jaxticket.masks import LayerCollapseWarning, collapsed_leaves
from jaxticket.pruning import allocation as alloc


def _check_options(min_keep, checked) -> None:
    if isinstance(min_keep, bool) or not isinstance(min_keep, int):
        raise TypeError(
            f"pruner: min_keep must be an int >= 0 (units each prunable leaf keeps), "
            f"got {min_keep!r}"
        )
    if min_keep < 0:
        raise ValueError(
            f"pruner: min_keep must be >= 0 (units each prunable leaf keeps), got {min_keep}"
        )
    if not isinstance(checked, bool):
        raise TypeError(f"pruner: checked must be True or False, got {checked!r}")


def _check_sparsity_reachable(sparsity, alive) -> None:
    """Warns when a concrete target sparsity is below the mask's own: pruning never revives
    weights, so the mask comes back unchanged and the target is not met."""
    if sparsity is None or any(isinstance(x, jax.core.Tracer) for x in [sparsity, *alive]):
        return
    total = sum(int(m.size) for m in alive)
    n_alive = int(sum(jnp.sum(m, dtype=jnp.int32) for m in alive))
    if (1.0 - float(sparsity)) * total > n_alive + 0.5:
        warnings.warn(
            f"pruner: sparsity={float(sparsity)!r} is below the mask's current sparsity "
            f"{1 - n_alive / total:.6g}; pruning never revives weights, so the mask is "
            "returned as it is (pass a higher sparsity, or fraction= to prune a share of "
            "the survivors)",
            UserWarning,
            stacklevel=3,
        )


def _check_parts(criterion, allocation, selection) -> None:
    hints = {
        "criterion": "a function such as jaxticket.pruning.magnitude",
        "allocation": "'global', 'layerwise', 'erk', 'er' or e.g. global_()",
        "selection": "'unstructured', 'neurons' or e.g. n_m(2, 4)",
    }
    parts = {"criterion": criterion, "allocation": allocation, "selection": selection}
    for name, part in parts.items():
        if not callable(part):
            if name == "criterion" and isinstance(part, str):
                hint = (
                    f"a function (jaxticket.pruning.magnitude, random, snip(loss_fn), ...), "
                    f"not the string {part!r}"
                )
            else:
                hint = f"{hints[name]}, got {type(part).__name__} {part!r}"
            raise TypeError(f"pruner: {name} must be {hint}")


def _min_keep_for(selection, min_keep: int) -> int | None:
    """``min_keep`` to pass to the selection, or None for one that takes no such keyword."""
    try:
        params = inspect.signature(selection).parameters.values()
    except (TypeError, ValueError):
        params = ()
    if any(p.name == "min_keep" or p.kind is p.VAR_KEYWORD for p in params):
        return min_keep
    if min_keep:
        raise TypeError(
            f"pruner: the selection {getattr(selection, '__name__', selection)!r} takes no "
            f"min_keep= keyword, so min_keep={min_keep} cannot be honoured; accept "
            "min_keep= in the selection or build the pruner with min_keep=0"
        )
    return None


def _checkify_rates(**rates) -> None:
    for name, rate in rates.items():
        if not isinstance(rate, jax.core.Tracer):
            continue  # concrete rates were checked eagerly
        r = jnp.asarray(rate, jnp.float32)
        checkify.check(~jnp.isnan(r), f"pruner: {name} is NaN")
        checkify.check((r >= 0) & (r < 1), f"pruner: {name} must be in [0, 1), got {{}}", r)
        checkify.check(
            jnp.round(r * alloc._RESOLUTION) < alloc._RESOLUTION,
            f"pruner: {name}={{}} resolves to 1.0 at the allocation's resolution of 1e-06",
            r,
        )


def _checkify_scores(paths, scores, alive) -> None:
    for path, s, a in zip(paths, scores, alive, strict=True):
        if not isinstance(s, jax.core.Tracer) and not isinstance(a, jax.core.Tracer):
            continue  # concrete scores were checked eagerly (check_scores)
        bad = jnp.sum(a & ~jnp.isfinite(s), dtype=jnp.int32)
        checkify.check(
            bad == 0,
            f"pruner: scores leaf {path!r}: {{}} alive weights have NaN or inf scores",
            bad,
        )


def _warn_collapsed(mask) -> None:
    collapsed = collapsed_leaves(mask)
    if collapsed:
        warnings.warn(
            f"pruner: {len(collapsed)} prunable leaves have no alive weight left (layer "
            f"collapse): {', '.join(collapsed)}; the network cannot pass signal through "
            "them. Keep min_keep >= 1 (the default) to keep a unit per leaf.",
            LayerCollapseWarning,
            stacklevel=3,
        )
