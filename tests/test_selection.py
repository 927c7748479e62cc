"""Selection: unstructured ties, whole neurons, N:M."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from topk_reference import sorted_topk as _sorted_topk

from jaxticket.pruning import global_, layerwise, n_m, neurons, unstructured


def test_unstructured_ties_keep_earlier_positions():
    scores = [jnp.ones((2, 3)), jnp.ones((2,))]
    alive = [jnp.ones((2, 3), bool), jnp.ones((2,), bool)]
    out = unstructured(_sorted_topk)(scores, alive, ["a", "b"], global_(), fraction=0.5)
    np.testing.assert_array_equal(out[0], [[True, True, True], [True, False, False]])
    np.testing.assert_array_equal(out[1], [False, False])


def test_unstructured_never_revives_pruned_weights():
    scores = [jnp.array([9.0, 1.0, 2.0, 3.0])]
    alive = [jnp.array([False, True, True, True])]
    out = unstructured(_sorted_topk)(scores, alive, ["a"], layerwise(), fraction=0.34)  # prune 1
    np.testing.assert_array_equal(out[0], [False, False, True, True])


def test_neurons_l1_vs_l2():
    # Column 0 = [1, 1, 1, 1]: L1 4, L2 2.  Column 1 = [3, 0, 0, 0]: L1 3, L2 3.
    s = jnp.array([[1.0, 3.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
    a = jnp.ones((4, 2), bool)
    l1 = neurons("l1", topk=_sorted_topk)([s], [a], ["k"], layerwise(), fraction=0.5)[0]
    l2 = neurons("l2", topk=_sorted_topk)([s], [a], ["k"], layerwise(), fraction=0.5)[0]
    np.testing.assert_array_equal(l1, np.array([[True, False]] * 4))
    np.testing.assert_array_equal(l2, np.array([[False, True]] * 4))


# Jitted once per shape (eager dispatch compiles every op per shape, which is far slower).
_neurons_jit = jax.jit(
    lambda s, a, f: neurons(topk=_sorted_topk)([s], [a], ["k"], layerwise(), fraction=f)[0]
)
_n_m_jit = jax.jit(
    lambda s, n, m: n_m(n, m)([s], [jnp.ones(s.shape, bool)], ["k"])[0], static_argnums=(1, 2)
)


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([(1, 3), (4, 1), (6, 8)]), st.integers(0, 999), st.integers(0, 2**30))
def test_neurons_remove_whole_columns(shape, permille, seed):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=shape).astype(np.float32)
    a = rng.random(shape) < 0.8
    out = np.asarray(_neurons_jit(s, a, permille / 1000))
    assert not (out & ~a).any()
    cols_alive = a.any(axis=0)
    kept = out.any(axis=0)
    # A kept column keeps all its alive weights; a pruned one keeps none.
    np.testing.assert_array_equal(out, a & kept[None, :])
    n = int(cols_alive.sum())
    assert int(kept.sum()) == n - (permille * n + 500) // 1000


@settings(max_examples=20, deadline=None)
@given(st.sampled_from([(1, 2), (2, 4), (3, 8)]), st.integers(0, 2**30), st.booleans())
def test_n_m_keeps_exactly_n_of_m(nm, seed, ties):
    (n, m), rows, groups = nm, 3, 2
    s = np.random.default_rng(seed).normal(size=(m * groups, rows)).astype(np.float32)
    if ties:
        s = np.round(s)
    out = np.asarray(_n_m_jit(s, n, m))  # axis -2: groups run down the columns
    per_group = out.reshape(groups, m, rows).sum(axis=1)
    assert (per_group == n).all()
    # The kept ones are the largest of their group.
    sg = s.reshape(groups, m, rows)
    og = out.reshape(groups, m, rows)
    assert (np.where(og, sg, np.inf).min(axis=1) >= np.where(og, -np.inf, sg).max(axis=1)).all()


def test_n_m_only_among_alive_and_ties_deterministic():
    s = jnp.array([[5.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]])
    a = jnp.array([[False, True, True, True, True, True, True, True]])
    out = n_m(2, 4, axis=-1)([s], [a], ["k"])[0]
    np.testing.assert_array_equal(out, [[False, True, True, False, True, True, False, False]])


def test_n_m_indivisible_names_the_leaf():
    with pytest.raises(ValueError, match="'dense/kernel'.*M=4"):
        n_m(2, 4)([jnp.ones((6, 3))], [jnp.ones((6, 3), bool)], ["dense/kernel"])


def test_n_m_rejects_fraction_and_bad_n():
    with pytest.raises(ValueError, match="fixes the density"):
        n_m(2, 4)([jnp.ones((4, 1))], [jnp.ones((4, 1), bool)], ["k"], fraction=0.5)
    with pytest.raises(ValueError, match="0 < n <= m"):
        n_m(5, 4)


def test_axis_out_of_range_names_the_leaf():
    with pytest.raises(ValueError, match="'bias'"):
        neurons(axis=-2)([jnp.ones(3)], [jnp.ones(3, bool)], ["bias"], layerwise(), fraction=0.5)
    with pytest.raises(ValueError, match="norm"):
        neurons("l3")
