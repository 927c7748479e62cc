"""Criteria: functions that score every weight; a larger score means "keep".

A criterion has one signature::

    criterion(params, *, mask=None, key=None, batch=None) -> scores

``scores`` is a pytree shaped like ``params`` holding float arrays. A criterion uses what it
needs (``random`` the key, ``snip`` the batch and mask) and ignores the rest, so a user's own
criterion is a few lines::

    def squared_magnitude(params, **_):
        return jax.tree.map(jnp.square, params)

    pruner = jaxticket.pruning.Pruner(squared_magnitude, global_(), unstructured())

Criteria that need more (GraSP's Hessian-gradient product through ``jax.jvp`` of
``jax.grad``, SynFlow's data-free iterations) fit the same signature: they get the params,
the current mask, a key and a batch. Scores of leaves whose mask is ``None`` are ignored,
and so are scores of weights already pruned: selection only ever considers alive weights.

Non-finite scores: an eager pruner call refuses NaN and infinite alive scores
(``check_scores`` names the leaf). Under ``jax.jit`` they cannot be refused, so they are
ranked: NaN below every other alive score (pruned first), -inf below every finite score,
+inf above every finite score. ``count_nonfinite`` counts them inside a jitted program, and
``Pruner(..., checked=True)`` turns them into ``checkify`` errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket import _random
from jaxticket._paths import check_patterns_exist, leaves_with_paths, map_with_path_str, matches
from jaxticket.masks import apply_mask

Params = Any
Mask = Any
Scores = Any
Criterion = Callable[..., Scores]

_is_none = lambda x: x is None


def magnitude(params: Params, **_: Any) -> Scores:
    """|w|: the lottery-ticket criterion."""
    return jax.tree.map(lambda w: jnp.abs(w).astype(_float(w)), params)


def random(params: Params, *, key: jax.Array | None = None, **_: Any) -> Scores:
    """Uniform [0, 1) scores from ``key``: the same key gives the same scores.

    Raises:
      ValueError: ``key`` is missing.
    """
    if key is None:
        raise ValueError("random criterion: pass key= (a jax.random key)")
    _check_key(key)
    leaves, treedef = jax.tree.flatten(params)
    if not leaves:
        return params
    keys = jax.random.split(key, len(leaves))
    scores = [
        _random.uniform(k, jnp.shape(w), _float(w)) for k, w in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, scores)


def _check_key(key) -> None:
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape == ():
            return
    elif hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,):
        return  # a legacy jax.random.PRNGKey
    got = f"shape {tuple(key.shape)} {key.dtype}" if hasattr(key, "dtype") else repr(key)
    raise TypeError(
        f"random criterion: key must be a single jax.random key (jax.random.key(0)), got {got}"
    )


def snip(loss_fn: Callable[[Params, Any], jax.Array]) -> Criterion:
    """SNIP (Lee et al. 2019): |g ⊙ w| with g the gradient of ``loss_fn`` on ``batch``.

    The gradient is taken at the masked params, so pruned weights score 0.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``.

    Returns:
      A criterion that needs ``batch=``.
    """

    def criterion(params, *, mask=None, batch=None, **_):
        if batch is None:
            raise ValueError("snip criterion: pass batch= (the data loss_fn takes)")
        w = params if mask is None else apply_mask(params, mask)
        grads = jax.grad(loss_fn)(w, batch)
        return jax.tree.map(lambda g, x: jnp.abs(g * x).astype(_float(x)), grads, w)

    return criterion


def weighted_sum(terms: Sequence[tuple[float, Criterion]]) -> Criterion:
    """Σ wᵢ · normalize(criterionᵢ) with every leaf normalized by its max |score|.

    Normalization is per leaf over alive weights (all weights of a leaf whose mask is
    ``None``): each leaf's scores are divided by their largest absolute value, so every term
    lies in [-1, 1] on every leaf and the weights ``wᵢ`` say how much each term counts.
    Scores of pruned weights are set to 0 first, so they never set the scale.

    Example::

        crit = weighted_sum([(0.7, magnitude), (0.3, snip(loss_fn))])
    """
    terms = list(terms)
    if not terms:
        raise ValueError("weighted_sum: needs at least one (weight, criterion) pair")

    def criterion(params, *, mask=None, key=None, batch=None):
        keys = [None] * len(terms) if key is None else list(jax.random.split(key, len(terms)))
        total = None
        for (weight, crit), k in zip(terms, keys, strict=True):
            scores = crit(params, mask=mask, key=k, batch=batch)
            part = _map_alive(lambda s, a, w=weight: w * _normalized(s, a), scores, mask)
            total = part if total is None else jax.tree.map(jnp.add, total, part)
        return total

    return criterion


def restrict_to_alive(criterion: Criterion) -> Criterion:
    """Scores of pruned weights become -inf, so they lose against every alive weight.

    Selection already ignores pruned weights; use this when scores are consumed elsewhere
    (e.g. to regrow or to rank weights by hand).
    """

    def restricted(params, *, mask=None, key=None, batch=None):
        scores = criterion(params, mask=mask, key=key, batch=batch)
        if mask is None:
            return scores
        return jax.tree.map(
            lambda m, s: s if m is None else jnp.where(m, s, -jnp.inf),
            mask,
            scores,
            is_leaf=_is_none,
        )

    return restricted


def override(base: Criterion, by_pattern: Mapping[str, Criterion]) -> Criterion:
    """Per-leaf criteria: leaves whose path matches a pattern use that pattern's criterion.

    The first matching pattern (in mapping order) wins; other leaves use ``base``.

    Example::

        crit = override(magnitude, {"out/*": random})

    Raises (when called):
      ValueError: a pattern that matches no leaf path (the message lists the valid paths).
    """
    by_pattern = dict(by_pattern)

    def criterion(params, *, mask=None, key=None, batch=None):
        paths = [p for p, _ in leaves_with_paths(params)]
        check_patterns_exist(by_pattern, paths, "override")
        crits = [base, *by_pattern.values()]
        keys = [None] * len(crits) if key is None else list(jax.random.split(key, len(crits)))
        all_scores = [
            c(params, mask=mask, key=k, batch=batch) for c, k in zip(crits, keys, strict=True)
        ]

        def pick(path, *per_crit):
            for i, pattern in enumerate(by_pattern, start=1):
                if matches(path, pattern):
                    return per_crit[i]
            return per_crit[0]

        return map_with_path_str(pick, *all_scores, keep_none=False)

    return criterion


def check_scores(scores: Scores, mask: Mask | None = None) -> None:
    """Raises ValueError naming the first leaf with a NaN or infinite score.

    Only alive weights of prunable leaves are checked when ``mask`` is given. The check
    needs concrete values, so it is skipped for traced scores (inside ``jax.jit``); the
    pruner calls it whenever it runs eagerly.
    """
    if mask is None:
        triples = [(path, True, s) for path, s in leaves_with_paths(scores)]
    else:
        triples = align(mask, scores)
    for path, m, s in triples:
        if m is None or isinstance(s, jax.core.Tracer) or isinstance(m, jax.core.Tracer):
            continue
        bad = ~jnp.isfinite(s) if m is True else m & ~jnp.isfinite(s)
        if bool(jnp.any(bad)):
            raise ValueError(
                f"scores leaf {path!r}: {int(jnp.sum(bad))} alive weights have NaN or "
                "infinite scores; scores must be finite"
            )


def count_nonfinite(scores: Scores, mask: Mask | None = None) -> jax.Array:
    """Number of NaN or infinite scores, as an int32 scalar array (jittable).

    With ``mask``, only alive entries of prunable leaves count (leaves whose mask is
    ``None`` are skipped); without, every entry of every leaf. Integer scores are finite.

    Example::

        bad = jax.jit(lambda p, m: count_nonfinite(magnitude(p), m))(params, mask)
    """
    if mask is None:
        triples = [(path, True, s) for path, s in leaves_with_paths(scores)]
    else:
        triples = align(mask, scores)
    total = jnp.zeros((), jnp.int32)
    for _, m, s in triples:
        s = jnp.asarray(s)
        if m is None or not jnp.issubdtype(s.dtype, jnp.inexact):
            continue
        bad = ~jnp.isfinite(s)
        total = total + jnp.sum(bad if m is True else bad & m, dtype=jnp.int32)
    return total


def align(mask: Mask, tree: Any, what: str = "scores") -> list[tuple[str, Any, Any]]:
    """(path, mask leaf, ``tree``'s leaf) per mask leaf; ``tree`` must share the structure."""
    flat_mask = leaves_with_paths(mask, keep_none=True)
    treedef = jax.tree.structure(mask, is_leaf=_is_none)
    try:
        other = treedef.flatten_up_to(tree)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what}: tree structure does not match the mask: {e}") from None
    for (path, m), x in zip(flat_mask, other, strict=True):
        if m is not None and jnp.shape(x) != jnp.shape(m):
            raise ValueError(
                f"{what} leaf {path!r}: shape {jnp.shape(x)} does not match the mask "
                f"shape {jnp.shape(m)}"
            )
    return [(path, m, x) for (path, m), x in zip(flat_mask, other, strict=True)]


# --------------------------------------------------------------------------------------
# helpers


def _float(w: Any) -> jnp.dtype:
    dtype = jnp.result_type(w)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32


def _normalized(s: jax.Array, alive: jax.Array | None) -> jax.Array:
    if alive is not None:
        s = jnp.where(alive, s, jnp.zeros((), s.dtype))
    scale = jnp.max(jnp.abs(s)) if s.size else jnp.ones((), s.dtype)
    return s / jnp.where(scale > 0, scale, jnp.ones((), s.dtype))


def _map_alive(fn, scores: Scores, mask: Mask | None) -> Scores:
    if mask is None:
        return jax.tree.map(lambda s: fn(s, None), scores)
    return jax.tree.map(lambda m, s: fn(s, m), mask, scores, is_leaf=_is_none)
