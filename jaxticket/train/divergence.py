"""Divergence: non-finite loss or variables seen inside a compiled run, reported after it.

The engine carries one ``int32`` per run through its ``lax.scan``: the first segment-end
step at which the accumulated training loss, an evaluation loss or any parameter /
model-state entry was not finite (``-1`` while none was). The check is one reduction per
segment (evaluation period or snapshot cut), never per step, and needs no host sync and
no ``lax.cond``. A NaN or infinite loss at any step makes the segment's loss sum
non-finite (the sum is reset only at evaluations, after the check), so no such step goes
unseen.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils


class DivergenceWarning(UserWarning):
    """A training run's loss or parameters became NaN or infinite."""


def any_nonfinite(*trees) -> jax.Array:
    """Whether any floating-point leaf of ``trees`` holds a NaN or an infinity (a bool)."""
    flags = [
        jnp.logical_not(jnp.all(jnp.isfinite(leaf)))
        for leaf in jax.tree.leaves(trees)
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)
    ]
    return jnp.any(jnp.stack(flags)) if flags else jnp.zeros((), bool)


def first_divergence(diverged_step: jax.Array, bad: jax.Array, step) -> jax.Array:
    """``step`` if ``bad`` and no divergence was seen yet (``diverged_step < 0``)."""
    return jnp.where((diverged_step < 0) & bad, jnp.asarray(step, jnp.int32), diverged_step)


def warn_if_diverged(diverged_step, *, stacklevel: int = 2) -> None:
    """Warns once, naming the diverged seeds and their first non-finite step.

    Args:
      diverged_step: ``int32[n]`` (or a scalar), ``-1`` for runs that stayed finite. Read
        to the host here: call it after the run.
      stacklevel: passed to ``warnings.warn``.
    """
    if isinstance(diverged_step, jax.Array) and not diverged_step.is_fully_addressable:
        # Seeds spread over processes (``jaxticket.train.distributed``): every process runs
        # this after the same run, so gathering (a collective) is safe; all warn alike.
        diverged_step = multihost_utils.process_allgather(diverged_step, tiled=True)
    steps = np.atleast_1d(np.asarray(jax.device_get(diverged_step)))
    seeds = np.flatnonzero(steps >= 0)
    if seeds.size == 0:
        return
    at = ", ".join(f"seed {i} at step {int(steps[i])}" for i in seeds)
    warnings.warn(
        f"training diverged: non-finite loss or parameters in {seeds.size} of {steps.size} "
        f"run(s) ({at}); their results are NaN/inf. Lower the learning rate, check the "
        "weight decay and the data.",
        DivergenceWarning,
        stacklevel=stacklevel,
    )
