"""Shared test fixtures and hypothesis strategies.

The ``ci`` hypothesis profile (loaded by default, override with ``HYPOTHESIS_PROFILE``) keeps
property tests deterministic and fast: fixed example sequence, no per-example deadline.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
from compile_probes import no_compiling  # noqa: F401  (a shared fixture)
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxticket.masks import dense_mask

settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Intermediate dict keys; leaf keys are "w0".."w3", so a leaf never collides with a subtree.
_GROUP_KEYS = ("a", "b", "c")


@st.composite
def param_trees(draw, min_leaves: int = 1, max_leaves: int = 4, max_dim: int = 3):
    """Random nested dicts of float32 jax arrays: 1-4 leaves, ndim 1-3, at least one ndim >= 2.

    Leaf ``i`` sits under 0-2 random group keys (so subtrees are sometimes shared) with the key
    ``f"w{i}"``; sizes are 1..``max_dim`` (few distinct shapes, so JAX's per-shape compile
    caches are reused across examples); values are finite floats in [-10, 10], zeros included.
    """
    n = draw(st.integers(min_leaves, max_leaves))
    ndims = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    if max(ndims) < 2:
        ndims[draw(st.integers(0, n - 1))] = draw(st.integers(2, 3))
    tree: dict = {}
    for i, ndim in enumerate(ndims):
        groups = draw(st.lists(st.sampled_from(_GROUP_KEYS), max_size=2))
        shape = tuple(draw(st.lists(st.integers(1, max_dim), min_size=ndim, max_size=ndim)))
        values = draw(
            hnp.arrays(np.float32, shape, elements=st.floats(-10, 10, width=32) | st.just(0.0))
        )
        node = tree
        for g in groups:
            node = node.setdefault(g, {})
        node[f"w{i}"] = jnp.asarray(values)
    return tree


@st.composite
def masks_for(draw, template):
    """A random ``bool`` mask with the structure of ``template`` (a mask; ``None`` kept)."""
    return jax.tree.map(
        lambda m: None if m is None else jnp.asarray(draw(hnp.arrays(np.bool_, m.shape))),
        template,
        is_leaf=lambda x: x is None,
    )


@st.composite
def params_and_masks(draw, n_masks: int = 1, **tree_kwargs):
    """``(params, [mask, ...])``: a ``param_trees(**tree_kwargs)`` tree and ``n_masks`` random
    masks for its default prunable leaves (``ndim >= 2``)."""
    params = draw(param_trees(**tree_kwargs))
    template = dense_mask(params)
    return params, [draw(masks_for(template)) for _ in range(n_masks)]
