"""SynFlow (Tanaka et al. 2020): data-free pruning at initialization by synaptic flow.

Every parameter (biases and norms too) is replaced by its absolute value, pruned weights by
0, and an all-ones input of one example goes through the network; ``R`` is the sum of the
output and a weight's score is ``|w| ⊙ ∂R/∂|w|`` (its share of the total "flow"). Scores are
non-negative, larger means keep, pruned weights score 0.

``apply_fn(params, x) -> output array`` is the forward pass. For a jaxticket ``Model`` use
eval mode (BatchNorm with its running statistics, as the paper does)::

    apply_fn = lambda p, x: model.apply(p, state, x, train=False, key=None)[0]

Biases at init: the flow counts ``|b|``, so with non-zero initial biases (PyTorch's default
uniform ±1/√fan_in) late neurons carry flow from their own biases with no path from the
input, and the rounds can empty the first layers; with zero biases (the paper's models)
SynFlow avoids layer collapse up to the largest compressions
(``experiments/synflow_collapse/results.md``: 7,727× against 93× on a 10-layer MLP).

``synflow_prune`` runs the paper's iterative procedure (100 rounds, density
``(1 - sparsity)^(k/rounds)`` after round k) as one ``lax.fori_loop`` in one compiled
program, cached by value (``jaxticket.train.cache_key``): an equal ``apply_fn`` (a fresh
lambda with the same code and closure) reuses it.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.masks import apply_mask, validate_mask
from jaxticket.pruning import allocation as alloc
from jaxticket.pruning import criteria
from jaxticket.pruning.pruner import make_pruner
from jaxticket.pruning.pruner_checks import _warn_collapsed
from jaxticket.pruning.rounds import prune_in_rounds
from jaxticket.train.cache_key import ByValue

Params = Any
Mask = Any
ApplyFn = Callable[[Params, jax.Array], jax.Array]


def synflow(apply_fn: ApplyFn, input_shape: Sequence[int]) -> criteria.Criterion:
    """The SynFlow criterion: ``|w| ⊙ ∂R/∂|w|`` with ``R = Σ apply_fn(|θ|·mask, ones)``.

    Computed in float64 when any parameter is float64 (x64 mode), else in float32; the
    scores have that dtype and the params' structure. ``key`` and ``batch`` are ignored.

    Args:
      apply_fn: ``apply_fn(params, x) -> output`` for a batch ``x`` of shape
        ``(1, *input_shape)``; the output must be a single array.
      input_shape: the shape of one example.

    Returns:
      A criterion ``criterion(params, *, mask=None, key=None, batch=None) -> scores``.

    Raises:
      TypeError: ``apply_fn`` is not callable, ``input_shape`` is not a tuple of positive
        ints.
      ValueError: (when called) ``apply_fn`` returns something other than one array.
    """
    input_shape = _check_input_shape(input_shape)
    if not callable(apply_fn):
        raise TypeError(f"synflow: apply_fn must be callable, got {type(apply_fn).__name__}")

    def criterion(params, *, mask=None, **_):
        dtype = _compute_dtype(params)
        theta = jax.tree.map(lambda w: jnp.abs(jnp.asarray(w)).astype(dtype), params)
        if mask is not None:
            theta = apply_mask(theta, mask)
        ones = jnp.ones((1, *input_shape), dtype)

        def flow(p):
            out = apply_fn(p, ones)
            if not isinstance(out, (jax.Array, np.ndarray)):
                raise ValueError(
                    "synflow: apply_fn must return a single output array, got "
                    f"{type(out).__name__} (for a Model use model.apply(...)[0])"
                )
            return jnp.sum(out.astype(dtype))

        grads = jax.grad(flow)(theta)
        return jax.tree.map(lambda g, t: (g * t).astype(dtype), grads, theta)

    return criterion


def synflow_prune(
    apply_fn: ApplyFn,
    input_shape: Sequence[int],
    params: Params,
    mask: Mask,
    sparsity: float | jax.Array,
    *,
    rounds: int = 100,
    allocation: str | alloc.Allocation = "global",
    min_keep: int = 1,
) -> Mask:
    """Iterative SynFlow: ``rounds`` rescoring rounds toward ``sparsity``, one jitted loop.

    Round k (1..rounds) scores with ``synflow`` at the current mask and prunes to
    sparsity ``1 - (1 - sparsity)^(k/rounds)`` with ``make_pruner(synflow(...),
    allocation, min_keep=min_keep)``; the last round uses ``sparsity`` itself, so the final
    count is exactly the target's (as ``Pruner(..., sparsity=sparsity)`` counts it). Works
    under ``jax.jit`` and ``jax.vmap`` (e.g. per-seed params); ``sparsity`` may be traced.

    Args:
      apply_fn: ``apply_fn(params, x) -> output array`` (see the module docstring); the
        compiled loop is keyed by its value (``jaxticket.train.cache_key.fingerprint``).
      input_shape: the shape of one example.
      params: the parameter pytree.
      mask: the starting mask (``jaxticket.dense_mask(params)``).
      sparsity: target fraction of the prunable weights pruned, in [0, 1).
      rounds: number of scoring rounds (100 in the paper).
      allocation: ``"global"`` (the paper), ``"layerwise"``, ``"erk"``, ``"er"`` or an
        allocation (hashable).
      min_keep: weights every prunable leaf keeps at least (0 allows layer collapse).

    Returns:
      The new mask.

    Raises:
      ValueError: a concrete ``sparsity`` outside [0, 1), ``rounds`` < 1, the pruner's
        errors (bad allocation, no prunable leaves) and ``synflow``'s.
      TypeError: ``rounds`` not an int, a bad ``input_shape`` or ``apply_fn``.
    """
    input_shape = _check_input_shape(input_shape)
    if not callable(apply_fn):
        raise TypeError(f"synflow_prune: apply_fn must be callable, got {type(apply_fn)}")
    if isinstance(rounds, bool) or not isinstance(rounds, numbers.Integral):
        raise TypeError(f"synflow_prune: rounds must be an int, got {rounds!r}")
    if rounds < 1:
        raise ValueError(f"synflow_prune: rounds must be >= 1, got {rounds}")
    alloc.check_rate("sparsity", sparsity, where="synflow_prune")
    validate_mask(mask, params)
    make_pruner(criteria.magnitude, allocation, min_keep=min_keep)  # refuses bad options now
    result = _prune_loop(
        params,
        mask,
        jnp.asarray(sparsity, jnp.float32),
        apply_fn=ByValue(apply_fn),
        input_shape=input_shape,
        rounds=int(rounds),
        allocation=allocation,
        min_keep=min_keep,
    )
    if not any(isinstance(m, jax.core.Tracer) for m in jax.tree.leaves(result)):
        _warn_collapsed(result)
    return result


@functools.partial(
    jax.jit, static_argnames=("apply_fn", "input_shape", "rounds", "allocation", "min_keep")
)
def _prune_loop(params, mask, sparsity, *, apply_fn, input_shape, rounds, allocation, min_keep):
    pruner = make_pruner(synflow(apply_fn.value, input_shape), allocation, min_keep=min_keep)
    return prune_in_rounds(pruner, params, mask, sparsity, rounds)


def _compute_dtype(params: Params) -> jnp.dtype:
    leaves = jax.tree.leaves(params)
    if any(jnp.result_type(w) == jnp.float64 for w in leaves):
        return jnp.dtype(jnp.float64)
    return jnp.dtype(jnp.float32)


def _check_input_shape(input_shape: Any) -> tuple[int, ...]:
    ok = isinstance(input_shape, (tuple, list)) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in input_shape
    )
    if not ok:
        raise TypeError(
            f"synflow: input_shape must be a tuple of positive ints (one example), got "
            f"{input_shape!r}"
        )
    return tuple(int(d) for d in input_shape)
