"""Linear mode connectivity: errors along straight paths between networks, and barriers.

Frankle et al. (2020, *Linear Mode Connectivity and the Lottery Ticket Hypothesis*): for
two networks θ₁, θ₂ evaluate the test error of (1 − α)·θ₁ + α·θ₂ at α on a grid of 30
points in [0, 1]; the error barrier is the largest error on the path minus the mean of the
two end errors, and the pair is stable when it is under 2 %.

:func:`path_errors` evaluates every pair of a stack of N seeds at every α in one compiled
program (``lax.map`` over chunks of ``networks_per_step`` vmapped networks: no Python loop
over pairs or α), with BatchNorm statistics recomputed on training data at each α when the
model has them (see :mod:`jaxticket.stability.batchnorm`). :func:`barriers` and
:func:`summary` turn the errors into barriers and their spread across pairs.

Example::

    result = path_errors(model, out.params, out.model_state, data, all_pairs(8), alpha_grid())
    stats = summary(barriers(result.errors, result.alphas))   # mean, std, min, max, stable
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.stability.batchnorm import has_state, recompute_batchnorm, training_batches
from jaxticket.stability.path_checks import (  # check_same_trees, check_alphas: public here too
    check_alphas,
    check_pairs,
    check_same_trees,
    check_split,
    check_stacked,
)
from jaxticket.train.cache_key import ByValue
from jaxticket.train.checks import check_int
from jaxticket.train.evaluate import evaluate

__all__ = [
    "STABLE_BELOW",
    "BarrierSummary",
    "PathResult",
    "all_pairs",
    "alpha_grid",
    "barriers",
    "interpolate",
    "path_errors",
    "summary",
]

STABLE_BELOW = 0.02  # Frankle et al.: a pair is stable when its error barrier is under 2 %


class PathResult(NamedTuple):
    """Errors and losses along the straight paths between pairs of networks.

    Attributes:
      errors: ``[P, A]`` test error (1 − accuracy) of pair ``p`` at ``alphas[a]``.
      losses: ``[P, A]`` mean cross-entropy at the same points.
      pairs: ``[P, 2]`` the seed indices of each pair (α = 0 is the first).
      alphas: ``[A]`` the interpolation weights.
      batchnorm_recomputed: whether the running statistics were recomputed on training
        data at every α (``False`` for a model without state).
    """

    errors: jax.Array
    losses: jax.Array
    pairs: np.ndarray
    alphas: np.ndarray
    batchnorm_recomputed: bool


class BarrierSummary(NamedTuple):
    """Spread of the error barriers across pairs (std with ddof=0)."""

    mean: float
    std: float
    min: float
    max: float
    stable: int  # pairs with barrier < threshold
    count: int
    threshold: float


def all_pairs(n: int) -> np.ndarray:
    """Every pair ``(i, j)`` with ``0 <= i < j < n``, as an ``int32`` array ``[n(n-1)/2, 2]``."""
    n = check_int("all_pairs: n", n, minimum=2)
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1).astype(np.int32)


def alpha_grid(num: int = 30) -> np.ndarray:
    """``num`` evenly spaced α in [0, 1] (``float32``, endpoints exactly 0 and 1)."""
    num = check_int("alpha_grid: num", num, minimum=2)
    return np.linspace(0.0, 1.0, num, dtype=np.float32)


def interpolate(params_a, params_b, alpha, *, extrapolate: bool = False):
    """The leafwise straight-line mix ``(1 − α)·a + α·b`` of two trees of arrays.

    Pure and jittable; ``None`` leaves stay ``None``, dtypes are kept, α = 0 gives ``a``
    and α = 1 gives ``b`` exactly. A traced α (under ``jit``/``vmap``) is not range-checked.

    Args:
      params_a: the tree at α = 0 (params, or a model state).
      params_b: a tree of the same structure, leaf shapes and dtypes: the tree at α = 1.
      alpha: a scalar in [0, 1].
      extrapolate: allow α outside [0, 1].

    Returns:
      The interpolated tree.

    Raises:
      ValueError: the trees differ in structure, or a leaf in shape or dtype (the message
        names the first such leaf path), a leaf is not floating point, α is not a finite
        scalar, or α lies outside [0, 1] without ``extrapolate=True``.
    """
    check_same_trees(params_a, params_b)
    if not isinstance(alpha, jax.core.Tracer):
        check_alphas(np.asarray(alpha), "interpolate: alpha", extrapolate, scalar=True)
    return _mix(params_a, params_b, alpha)


def path_errors(
    model,
    params,
    model_state,
    data,
    pairs=None,
    alphas=None,
    *,
    split: str = "test",
    batch_size: int = 1024,
    networks_per_step: int = 16,
    recompute_batchnorm: bool | None = None,
    bn_batches: int = 8,
    bn_batch_size: int = 128,
    extrapolate: bool = False,
) -> PathResult:
    """Error and loss of every pair's interpolated networks at every α, in one program.

    The inputs are checked here (concrete values), then one cached, compiled program maps
    over all ``P * A`` (pair, α) points in chunks of ``networks_per_step`` vmapped
    networks: each chunk slices its end points from the stacked seeds, interpolates params
    and state, recomputes BatchNorm statistics if asked, and evaluates the split with
    :func:`jaxticket.train.evaluate.evaluate` (eval mode). Call it outside ``jit``.

    Args:
      model: a zoo ``Model``.
      params: the model's params stacked over N seeds (leading axis N on every leaf), for
        instance ``train_seeds(...).params``; may be sharded over the seed axis.
      model_state: the model state stacked the same way (``{}`` for stateless models).
      data: a ``Dataset``.
      pairs: ``[P, 2]`` seed indices; default :func:`all_pairs` of N.
      alphas: 1-D α values; default :func:`alpha_grid` (30 points).
      split: the split evaluated: ``"test"``, ``"val"`` or ``"train"``.
      batch_size: examples evaluated at once per network.
      networks_per_step: interpolated networks vmapped at once (memory against speed).
      recompute_batchnorm: recompute the state's running statistics on training data at
        each α; ``None`` (default) does so exactly when the model has state.
      bn_batches, bn_batch_size: the recomputation uses the first
        ``bn_batches * bn_batch_size`` training examples, in ``bn_batches`` batches.
      extrapolate: allow α outside [0, 1].

    Returns:
      A :class:`PathResult` (errors and losses ``[P, A]``, and whether BatchNorm
      statistics were recomputed).

    Raises:
      ValueError/TypeError: a bad setting, params that do not fit the model or lack a
        common seed axis, pairs out of range, α out of range, a missing split.
    """
    n = check_stacked(model, params, model_state)
    pairs = all_pairs(n) if pairs is None else check_pairs(pairs, n)
    alphas = alpha_grid() if alphas is None else np.asarray(alphas)
    alphas = check_alphas(alphas, "path_errors: alphas", extrapolate, scalar=False)
    x, y = check_split(data, split)
    batch_size = check_int("path_errors: batch_size", batch_size, minimum=1)
    networks_per_step = check_int("path_errors: networks_per_step", networks_per_step, minimum=1)
    stateful = has_state(model_state)
    recompute = stateful if recompute_batchnorm is None else recompute_batchnorm
    if not isinstance(recompute, bool):
        raise TypeError(
            f"path_errors: recompute_batchnorm must be a bool or None, got {recompute!r}"
        )
    if recompute and not stateful:
        raise ValueError(
            f"path_errors: recompute_batchnorm=True but model {model.name!r} has no state "
            "(no BatchNorm statistics) to recompute"
        )
    bn_x = jnp.zeros((0, 0, *x.shape[1:]), x.dtype)
    if recompute:
        bn_x = training_batches(data, bn_batches, bn_batch_size)
    program = _program(ByValue(model), recompute, batch_size, networks_per_step)
    errors, losses = program(
        params, model_state, jnp.asarray(pairs), jnp.asarray(alphas), x, y, bn_x
    )
    return PathResult(errors, losses, pairs, alphas, recompute)


def barriers(errors, alphas=None) -> jax.Array:
    """Error barrier per pair: ``max_α err(α) − (err(0) + err(1)) / 2``.

    Args:
      errors: ``[P, A]`` errors along each path, first column at α = 0, last at α = 1
        (``PathResult.errors``).
      alphas: the α of the columns; when given, checked to start at 0 and end at 1.

    Returns:
      ``[P]`` barriers (never negative: the endpoints are on the path).
    """
    errors = jnp.asarray(errors)
    if errors.ndim != 2 or errors.shape[1] < 2:
        raise ValueError(f"barriers: errors must have shape [pairs, alphas>=2], got {errors.shape}")
    if alphas is not None:
        a = np.asarray(alphas)
        if a.shape != (errors.shape[1],) or a[0] != 0.0 or a[-1] != 1.0:
            raise ValueError(
                f"barriers: alphas must be {errors.shape[1]} values from exactly 0 to exactly "
                f"1 (the path's endpoints), got {a.tolist()}"
            )
    return jnp.max(errors, axis=1) - 0.5 * (errors[:, 0] + errors[:, -1])


def summary(barrier_values, threshold: float = STABLE_BELOW) -> BarrierSummary:
    """Mean, std (ddof=0), min, max of barriers and how many are stable (< ``threshold``)."""
    b = np.asarray(barrier_values, dtype=np.float64)
    if b.ndim != 1 or b.size == 0 or not np.all(np.isfinite(b)):
        raise ValueError(f"summary: expected a non-empty 1-D array of finite barriers, got {b}")
    return BarrierSummary(
        float(b.mean()), float(b.std()), float(b.min()), float(b.max()),
        int(np.sum(b < threshold)), int(b.size), float(threshold),
    )  # fmt: skip


def _none(x) -> bool:
    return x is None


def _mix(a, b, alpha):
    def one(x, y):
        if x is None:
            return None
        dtype = jnp.result_type(x)
        al = jnp.asarray(alpha, dtype)
        return ((1 - al) * x + al * y).astype(dtype)

    return jax.tree.map(one, a, b, is_leaf=_none)


@functools.lru_cache(maxsize=16)
def _program(model: ByValue, recompute: bool, batch_size: int, networks_per_step: int):
    """The jitted all-pairs × all-α evaluation, cached by the model's value."""
    apply = model.value.apply

    def one(params, model_state, pair, alpha, x, y, bn_x):
        def take(tree, i):
            return jax.tree.map(lambda leaf: leaf[i], tree)

        p = _mix(take(params, pair[0]), take(params, pair[1]), alpha)
        s = _mix(take(model_state, pair[0]), take(model_state, pair[1]), alpha)
        if recompute:
            s = recompute_batchnorm(apply, p, s, bn_x)
        metrics = evaluate(apply, p, s, x, y, batch_size=batch_size)
        return 1.0 - metrics["accuracy"], metrics["loss"]

    def program(params, model_state, pairs, alphas, x, y, bn_x):
        num_pairs, num_alphas = pairs.shape[0], alphas.shape[0]
        flat_pairs = jnp.repeat(pairs, num_alphas, axis=0)
        flat_alphas = jnp.tile(alphas, num_pairs)
        errors, losses = jax.lax.map(
            lambda q: one(params, model_state, q[0], q[1], x, y, bn_x),
            (flat_pairs, flat_alphas),
            batch_size=networks_per_step,
        )
        return errors.reshape(num_pairs, num_alphas), losses.reshape(num_pairs, num_alphas)

    return jax.jit(program)
