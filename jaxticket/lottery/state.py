"""What a lottery level leaves and where each variant starts, and the host-side helpers
that stack, concatenate and slice such trees along their leading seed axis."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

_is_none = lambda x: x is None  # noqa: E731


class Start(NamedTuple):
    """Where one variant of a level starts, each leaf stacked over seeds."""

    params: Any
    model_state: Any
    mask: Any


class LevelState(NamedTuple):
    """What a finished level leaves for the next, each leaf stacked over seeds (host).

    Attributes:
      init, init_state: θ₀ and its model state (level 0's start).
      rewind, rewind_state: θ_k, the dense run's params at the rewind iteration.
      mask: the ticket's mask.
      random_mask: the random-pruning control's mask (thinned level after level).
      trained, trained_state: the ticket's trained params and model state.
    """

    init: Any
    init_state: Any
    rewind: Any
    rewind_state: Any
    mask: Any
    random_mask: Any
    trained: Any
    trained_state: Any


def stack_seeds(tree, n: int):
    """``tree`` repeated ``n`` times along a new leading seed axis (NumPy views)."""
    return jax.tree.map(lambda x: np.broadcast_to(np.asarray(x), (n, *np.shape(x))), tree)


def seed_slice(tree, j: int, seeds: int):
    """Runs ``j·seeds .. (j+1)·seeds`` of a batch of runs (NumPy views)."""
    sl = slice(j * seeds, (j + 1) * seeds)
    return jax.tree.map(lambda x: x[sl], tree)


def concat(trees):
    """Trees stacked over seeds, concatenated along the seed axis (``None`` leaves kept)."""
    return jax.tree.map(
        lambda *xs: None if xs[0] is None else np.concatenate(xs), *trees, is_leaf=_is_none
    )
