"""Random draws shaped like weights, generated as flat vectors.

``jax.random`` gives entry ``i`` of a draw bits that depend only on its flat index, so a
flat draw reshaped equals the shaped draw bit for bit. It compiles much faster on XLA:CPU
when the last axis is short: uniform bits for a 100 x 10 output layer take about 1.5 s to
compile, the flat 1000-vector 0.2 s. Model inits, random scores and the lottery controls
draw this way.
"""

from __future__ import annotations

import math

import jax


def uniform(key: jax.Array, shape, dtype, minval=0.0, maxval=1.0) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, drawn flat."""
    flat = jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval)
    return flat.reshape(shape)


def truncated_normal(key: jax.Array, lower, upper, shape, dtype) -> jax.Array:
    """``jax.random.truncated_normal(key, lower, upper, shape, dtype)``, drawn flat."""
    flat = jax.random.truncated_normal(key, lower, upper, (math.prod(shape),), dtype)
    return flat.reshape(shape)
