"""Criteria: hand-computed scores, combinators, and the NaN check."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxticket.pruning import (
    check_scores,
    magnitude,
    override,
    random,
    restrict_to_alive,
    snip,
    weighted_sum,
)


def _params():
    return {
        "l1": {"kernel": jnp.array([[1.0, -2.0], [4.0, 0.5]]), "bias": jnp.array([-3.0, 1.0])},
        "out": {"kernel": jnp.array([[-1.0], [2.0]])},
    }


def test_magnitude_is_abs():
    scores = magnitude(_params(), mask=None, key=None, batch=None)
    np.testing.assert_array_equal(scores["l1"]["kernel"], [[1.0, 2.0], [4.0, 0.5]])
    np.testing.assert_array_equal(scores["l1"]["bias"], [3.0, 1.0])


def test_random_is_keyed_and_uniform():
    p = _params()
    a = random(p, key=jax.random.key(0))
    b = random(p, key=jax.random.key(0))
    c = random(p, key=jax.random.key(1))
    np.testing.assert_array_equal(a["l1"]["kernel"], b["l1"]["kernel"])
    assert not np.array_equal(a["l1"]["kernel"], c["l1"]["kernel"])
    big = random({"w": jnp.zeros((100, 100))}, key=jax.random.key(2))["w"]
    assert 0.0 <= float(big.min()) and float(big.max()) < 1.0
    assert abs(float(big.mean()) - 0.5) < 0.02


def test_random_needs_key():
    with pytest.raises(ValueError, match="key="):
        random(_params())


def _linear_loss(params, batch):
    x, t = batch
    pred = x @ params["w"]
    return 0.5 * jnp.sum((pred - t) ** 2)


def test_snip_by_hand():
    # y = x·W, x = [1, 2], W = [[3], [-1]], t = 0: y = 3 - 2 = 1, L = y²/2,
    # dL/dW = xᵀ(y - t) = [[1], [2]], so |g ⊙ w| = [[3], [2]].
    params = {"w": jnp.array([[3.0], [-1.0]])}
    batch = (jnp.array([[1.0, 2.0]]), jnp.array([[0.0]]))
    scores = snip(_linear_loss)(params, batch=batch)
    np.testing.assert_allclose(scores["w"], [[3.0], [2.0]])
    # At the masked params (W[0] pruned): W = [[0], [-1]], y = -2, g = [[-2], [-4]],
    # |g ⊙ w| = [[0], [4]].
    mask = {"w": jnp.array([[False], [True]])}
    scores = snip(_linear_loss)(params, mask=mask, batch=batch)
    np.testing.assert_allclose(scores["w"], [[0.0], [4.0]])


def test_snip_needs_batch():
    with pytest.raises(ValueError, match="batch="):
        snip(_linear_loss)({"w": jnp.ones((2, 1))})


def test_weighted_sum_normalizes_each_leaf_by_max_abs():
    params = {"w": jnp.array([1.0, -2.0, 4.0])}
    ones = lambda p, **_: jax.tree.map(lambda w: jnp.full(w.shape, 2.0), p)
    crit = weighted_sum([(0.5, magnitude), (2.0, ones)])
    # magnitude / 4 = [.25, .5, 1]; ones / 2 = [1, 1, 1]
    np.testing.assert_allclose(crit(params)["w"], [0.125 + 2, 0.25 + 2, 0.5 + 2])
    # With the 4 pruned, the scale is the max over alive weights (2) and the pruned score is 0.
    mask = {"w": jnp.array([True, True, False])}
    np.testing.assert_allclose(
        weighted_sum([(1.0, magnitude)])(params, mask=mask)["w"], [0.5, 1.0, 0.0]
    )


def test_weighted_sum_splits_the_key():
    crit = weighted_sum([(1.0, random), (1.0, random)])
    s = crit({"w": jnp.zeros((50,))}, key=jax.random.key(0))["w"]
    single = random({"w": jnp.zeros((50,))}, key=jax.random.key(0))["w"]
    assert not np.allclose(s, 2 * single / single.max())


def test_restrict_to_alive():
    params = {"w": jnp.array([1.0, -2.0]), "b": jnp.array([3.0])}
    mask = {"w": jnp.array([True, False]), "b": None}
    s = restrict_to_alive(magnitude)(params, mask=mask)
    assert s["w"][0] == 1.0 and s["w"][1] == -jnp.inf
    assert s["b"][0] == 3.0


def test_override_by_pattern():
    ten = lambda p, **_: jax.tree.map(lambda w: jnp.full(w.shape, 10.0), p)
    s = override(magnitude, {"out/*": ten})(_params())
    np.testing.assert_array_equal(s["out"]["kernel"], [[10.0], [10.0]])
    np.testing.assert_array_equal(s["l1"]["kernel"], [[1.0, 2.0], [4.0, 0.5]])


def test_override_unknown_pattern():
    with pytest.raises(ValueError, match=r"'head/\*'.*l1/kernel"):
        override(magnitude, {"head/*": random})(_params())


def test_check_scores_names_the_leaf():
    s = {"a": jnp.ones((2, 2)), "b": jnp.array([[1.0, jnp.nan]])}
    with pytest.raises(ValueError, match="'b'"):
        check_scores(s)
    with pytest.raises(ValueError, match="'b'"):
        check_scores({"a": jnp.ones(2), "b": jnp.array([jnp.inf])})
    # NaN at a pruned weight, or on a never-pruned leaf, is fine.
    check_scores(s, {"a": jnp.ones((2, 2), bool), "b": jnp.array([[True, False]])})
    check_scores(s, {"a": jnp.ones((2, 2), bool), "b": None})


def test_criteria_jit():
    p = _params()
    s = jax.jit(lambda p, k: random(p, key=k))(p, jax.random.key(3))
    np.testing.assert_array_equal(
        s["out"]["kernel"], random(p, key=jax.random.key(3))["out"]["kernel"]
    )
