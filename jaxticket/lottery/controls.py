"""The masks of the lottery controls, per seed: a ticket mask shuffled within each layer
(``shuffle``) and random pruning thinned to the ticket's per-layer counts
(``random_prune``). Inputs and outputs are stacked over seeds and live on the host."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxticket import _random
from jaxticket.pruning import topk_mask


def shuffle(keys, mask):
    """Each seed's mask permuted within every layer (same per-layer counts)."""
    return jax.device_get(_shuffle_seeds(keys, mask))


def thin_to_counts(keys, random_mask, ticket_mask):
    """Random pruning: thin ``random_mask`` at random to ``ticket_mask``'s per-layer counts."""
    return jax.device_get(_thin_seeds(keys, random_mask, ticket_mask))


# The per-seed kernels are jitted once at module level (a closure jitted per call would
# recompile at every level).


def _shuffle_one(key, m):
    leaves, treedef = jax.tree.flatten(m)
    ks = jax.random.split(key, len(leaves))
    shuffled = [
        jax.random.permutation(k, x.ravel()).reshape(x.shape)
        for k, x in zip(ks, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, shuffled)


def _thin_one(key, rm, tm):
    r_leaves, treedef = jax.tree.flatten(rm)
    t_leaves = jax.tree.leaves(tm)
    ks = jax.random.split(key, len(r_leaves))
    out = []
    for k, r, t in zip(ks, r_leaves, t_leaves, strict=True):
        scores = _random.uniform(k, r.shape, jnp.float32)
        out.append(topk_mask([scores], [r], jnp.sum(t, dtype=jnp.int32))[0])
    return jax.tree.unflatten(treedef, out)


_shuffle_seeds = jax.jit(jax.vmap(_shuffle_one))
_thin_seeds = jax.jit(jax.vmap(_thin_one))
