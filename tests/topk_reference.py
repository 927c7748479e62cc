"""A reference top-k for tests: one stable sort, cheap to compile.

Tests of the selection logic around top-k use it so they do not compile ``topk_mask``'s
search for every shape; test_pruner checks that ``topk_mask`` gives the same masks.
"""

import jax
import jax.numpy as jnp
import numpy as np


def sorted_topk(scores, alive, k):
    """Keeps ``clip(k, 0, #alive)`` alive entries with the largest scores; ties go to the
    earlier position in the concatenated flat order (as ``topk_mask``)."""
    flat = jnp.concatenate([s.reshape(-1) for s in scores]).astype(jnp.float32)
    dead = jnp.concatenate([~a.reshape(-1) for a in alive]).astype(jnp.int32)
    pos = jnp.arange(flat.size)
    k = jnp.clip(k, 0, jnp.sum(1 - dead))
    *_, order = jax.lax.sort((dead, -(flat + 0.0), pos), num_keys=2, is_stable=True)
    keep = jnp.zeros(flat.size, bool).at[order].set(pos < k)
    sizes = np.cumsum([s.size for s in scores])[:-1]
    return [part.reshape(s.shape) for part, s in zip(jnp.split(keep, sizes), scores, strict=True)]
