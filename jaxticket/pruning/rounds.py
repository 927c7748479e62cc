"""Iterative pruning toward a target in rounds, as one ``lax.fori_loop``.

Round ``k`` (1..rounds) prunes to sparsity ``1 − (1 − s)^(k/rounds)`` (the exponential
density schedule of SynFlow, also used for iterative SNIP), rescoring at the current
mask each round; the last round uses ``s`` itself, so the final count is exactly the
target's. Used by ``synflow_prune`` and ``jaxticket.at_init``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp


def prune_in_rounds(pruner, params: Any, mask: Any, sparsity, rounds: int, **call: Any) -> Any:
    """``rounds`` calls of ``pruner(params, mask, sparsity=rate_k, **call)``; jittable.

    Args:
      pruner: a ``Pruner`` (or any ``fn(params, mask, *, sparsity, **call) -> mask``).
      params: the parameters scored each round.
      mask: the starting mask (``None`` leaves stay ``None``).
      sparsity: the target sparsity (may be traced).
      rounds: the number of rounds (a Python int >= 1).
      **call: further keyword arguments of every call (``batch=`` for SNIP...).
    """
    if rounds == 1:  # one call: a loop around it only slows XLA's CPU code down
        return pruner(params, mask, sparsity=sparsity, **call)
    density = 1.0 - sparsity

    def body(k, m):
        step = jnp.asarray(k + 1, jnp.float32)
        rate = jnp.where(k + 1 == rounds, sparsity, 1.0 - density ** (step / rounds))
        return pruner(params, m, sparsity=rate, **call)

    # The loop carries plain bool leaves (None leaves stay None).
    mask = jax.tree.map(lambda m: jnp.asarray(m, bool), mask)
    return jax.lax.fori_loop(0, rounds, body, mask)
