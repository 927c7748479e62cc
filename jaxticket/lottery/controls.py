"""The masks of the lottery controls, per seed: a ticket mask shuffled within each layer
(``shuffle``) and random pruning thinned to the ticket's per-layer counts
(``random_prune``, a ``CountsPruner`` with the random criterion). Inputs and outputs are
stacked over seeds and live on the host."""

from __future__ import annotations

import jax

from jaxticket.pruning import criteria
from jaxticket.pruning.match_counts import CountsPruner, leaf_counts

# Random scores drawn over the mask's prunable leaves alone (the mask stands in for the
# params: the random criterion reads only shapes), so the draws of one layer do not
# depend on the number of non-prunable leaves.
RANDOM_PRUNE = CountsPruner(criteria.random)


def shuffle(keys, mask):
    """Each seed's mask permuted within every layer (same per-layer counts)."""
    return jax.device_get(_shuffle_seeds(keys, mask))


def thin_to_counts(keys, random_mask, ticket_mask):
    """Random pruning: thin ``random_mask`` at random to ``ticket_mask``'s per-layer counts.

    Args:
      keys: one key per seed.
      random_mask: the previous random mask, stacked over seeds.
      ticket_mask: the ticket's mask (a subset count-wise: each of its per-layer counts at
        most ``random_mask``'s), stacked over seeds.
    """
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


def _thin_one(key, random_mask, ticket_mask):
    return RANDOM_PRUNE(random_mask, random_mask, leaf_counts(ticket_mask), key=key)


_shuffle_seeds = jax.jit(jax.vmap(_shuffle_one))
_thin_seeds = jax.jit(jax.vmap(_thin_one))
