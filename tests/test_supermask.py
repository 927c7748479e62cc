"""Supermasks (jaxticket.supermask) on a tiny MLP, checked against hand-worked cases and
plain-NumPy references: edge-popup keeps exactly keep_count(k, n) weights of each layer at
every snapshot while the weights stay bitwise fixed; the straight-through gradients equal
the hand-computed ones on a 2x2 layer; the jackpot start is the magnitude mask; the sign
supermask is ±w on its fixed mask and 0 elsewhere; bad input is one line naming it."""

from __future__ import annotations

from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket import apply_mask, models
from jaxticket.data import Dataset
from jaxticket.supermask import (
    edge_popup_mask,
    effective_params,
    freeze_weights,
    keep_count,
    magnitude_scores,
    signed_constant,
    supermask_model,
    supermask_params,
    uniform_scores,
    wrapped_mask,
)
from jaxticket.train import train_seeds

BASE = models.get("mlp", input_shape=(8,), num_classes=3, hidden=(8,))
X = jax.random.normal(jax.random.key(1), (40, 8))
Y = jax.random.randint(jax.random.key(2), (40,), 0, 3)
DATA = Dataset(x_train=X, y_train=Y, x_test=X, y_test=Y, name="t", num_classes=3, input_shape=(8,))
KEYS = jax.random.split(jax.random.key(0), 2)
K = 0.3
# Layers 8x8 and 8x3: floor(0.3·64 + 1/2) = 19 and floor(0.3·24 + 1/2) = 7 kept.
KEEP = {"dense1/kernel": 19, "output/kernel": 7}
SNAPS = (0, 10, 20)


def leaf(tree, path):
    for part in path.split("/"):
        tree = tree[part]
    return tree


def reference_topk(scores: np.ndarray, count: int) -> np.ndarray:
    """The top ``count`` of ``|scores|`` by a stable sort: ties go to the earlier entry."""
    flat = np.abs(np.asarray(scores, np.float64)).reshape(-1)
    order = np.argsort(-flat, kind="stable")
    out = np.zeros(flat.size, bool)
    out[order[:count]] = True
    return out.reshape(np.shape(scores))


@pytest.fixture(scope="module")
def edge_popup_run():
    model = supermask_model(BASE, K)
    params = jax.jit(jax.vmap(lambda k: model.init(k)[0]))(KEYS)
    result = train_seeds(
        model,
        DATA,
        freeze_weights(optax.adam(0.05)),
        init_keys=KEYS,
        data_keys=KEYS,
        steps=30,
        batch_size=10,
        eval_every=10,
        params=params,
        snapshot_steps=SNAPS,
    )
    return params, result


def test_keep_count_hand_worked():
    assert keep_count(0.5, 4) == 2
    assert keep_count(0.3, 64) == 19 and keep_count(0.3, 24) == 7
    assert keep_count(0.25, 6) == 2  # floor(1.5 + 0.5)
    assert keep_count(0.001, 10) == 1  # never an empty layer
    assert keep_count(1.0, 17) == 17


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 10**6), n=st.integers(1, 5000))
def test_keep_count_matches_exact_fraction(k, n):
    want = max(1, int(Fraction(k, 10**6) * n + Fraction(1, 2)))
    assert keep_count(k / 10**6, n) == want


@settings(max_examples=10, deadline=None)
@given(
    shape=st.sampled_from([(3, 5), (4, 1, 3)]),
    k=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
def test_edge_popup_mask_exact_count_and_ties(shape, k, seed):
    # Few distinct values: many ties, broken by flat position as the stable sort does.
    scores = np.random.default_rng(seed).integers(-2, 3, size=shape).astype(np.float32)
    mask = edge_popup_mask({"w": jnp.asarray(scores)}, k)["w"]
    count = keep_count(k, scores.size)
    assert int(np.sum(mask)) == count
    np.testing.assert_array_equal(np.asarray(mask), reference_topk(scores, count))


def test_mask_has_exactly_k_per_layer_at_every_snapshot(edge_popup_run):
    _, result = edge_popup_run
    states = [snap[0] for snap in result.snapshots] + [result.params]
    stacked = jax.tree.map(lambda *xs: jnp.concatenate(xs), *states)  # (time x seed) rows
    eff = jax.jit(jax.vmap(lambda p: effective_params(p, K)))(stacked)
    for path, count in KEEP.items():
        scores = np.asarray(leaf(stacked["scores"], path))
        w_eff = np.asarray(leaf(eff, path))
        refs = [reference_topk(row, count) for row in scores]
        for row, ref in zip(w_eff, refs, strict=True):
            assert int(np.count_nonzero(row)) == count, path
            np.testing.assert_array_equal(row != 0, ref)
    # The search moved the mask (else the test would prove nothing): first vs last state.
    n = len(KEYS)
    first = [reference_topk(r, 19) for r in np.asarray(leaf(stacked["scores"], "dense1/kernel"))]
    assert any(not np.array_equal(first[s], first[-n + s]) for s in range(n))


def test_weights_never_change(edge_popup_run):
    params, result = edge_popup_run
    for before, after in zip(
        jax.tree.leaves(params["weights"]), jax.tree.leaves(result.params["weights"]), strict=True
    ):
        np.testing.assert_array_equal(
            np.asarray(before).view(np.uint32), np.asarray(after).view(np.uint32)
        )
    for snap, _ in result.snapshots:
        for before, mid in zip(
            jax.tree.leaves(params["weights"]), jax.tree.leaves(snap["weights"]), strict=True
        ):
            np.testing.assert_array_equal(np.asarray(before), np.asarray(mid))


def test_weights_are_the_signed_kaiming_constant(edge_popup_run):
    params, _ = edge_popup_run
    w = np.asarray(params["weights"]["dense1"]["kernel"])
    np.testing.assert_allclose(np.abs(w), np.sqrt(2.0 / 8), rtol=1e-6)
    w_out = np.asarray(params["weights"]["output"]["kernel"])
    np.testing.assert_allclose(np.abs(w_out), np.sqrt(2.0 / 8), rtol=1e-6)
    base = jax.vmap(lambda k: BASE.init(k)[0])(KEYS)
    np.testing.assert_array_equal(np.sign(w), np.where(base["dense1"]["kernel"] >= 0, 1, -1))


# One 2x2 layer: w = [[1, -2], [3, 4]], s = [[0.5, -0.1], [-0.9, 0.2]], k = 0.5 keeps the
# two largest |s|: (1, 0) (0.9) and (0, 0) (0.5). For L = sum(x @ W_eff) with x = [2, -1],
# dL/dW_eff[i, j] = x[i], so straight through: dL/ds = x[i] · w[i, j] · sign(s[i, j])
#   = [[2·1·1, 2·(-2)·(-1)], [-1·3·(-1), -1·4·1]] = [[2, 4], [3, -4]];
# for the sign supermask dL/ds = x[i] · w[i, j] = [[2, -4], [-3, -4]].
W22 = jnp.array([[1.0, -2.0], [3.0, 4.0]])
S22 = jnp.array([[0.5, -0.1], [-0.9, 0.2]])
X22 = jnp.array([2.0, -1.0])


def _loss(scores, kind, k):
    eff = effective_params(supermask_params({"l": W22}, {"l": scores}), k, kind)
    return jnp.sum(X22 @ eff["l"])


def test_straight_through_gradient_hand_computed():
    eff = effective_params(supermask_params({"l": W22}, {"l": S22}), 0.5)
    np.testing.assert_array_equal(eff["l"], [[1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_array_equal(jax.grad(_loss)(S22, "edge_popup", 0.5), [[2, 4], [3, -4]])
    sign = effective_params(supermask_params({"l": W22}, {"l": S22}), None, "sign")
    np.testing.assert_array_equal(sign["l"], [[1.0, 2.0], [-3.0, 4.0]])
    np.testing.assert_array_equal(jax.grad(_loss)(S22, "sign", None), [[2, -4], [-3, -4]])


def test_jackpot_start_is_the_magnitude_mask():
    trained = BASE.init(jax.random.key(7))[0]  # any weights: the start depends on |w| only
    mask = edge_popup_mask(magnitude_scores(trained), 0.4)
    for path in KEEP:
        w = np.asarray(leaf(trained, path))
        ref = reference_topk(w, keep_count(0.4, w.size))
        np.testing.assert_array_equal(np.asarray(leaf(mask, path)), ref)
    assert mask["dense1"]["bias"] is None


def test_sign_supermask_is_plus_minus_w_on_the_fixed_mask():
    # As the engine starts a masked run: apply_mask over the wrapped params.
    weights = signed_constant(BASE.init(KEYS[0])[0])
    scores = uniform_scores(KEYS[1], weights)  # random signs
    fixed = {
        "dense1": {"bias": None, "kernel": jax.random.bernoulli(KEYS[0], 0.5, (8, 8))},
        "output": {"bias": None, "kernel": jax.random.bernoulli(KEYS[1], 0.5, (8, 3))},
    }
    params = apply_mask(supermask_params(weights, scores), wrapped_mask(fixed))
    eff = effective_params(params, None, "sign")
    for path in KEEP:
        m, w = np.asarray(leaf(fixed, path)), np.asarray(leaf(weights, path))
        e, sc = np.asarray(leaf(eff, path)), np.asarray(leaf(scores, path))
        np.testing.assert_array_equal(e[~m], 0.0)
        np.testing.assert_array_equal(e[m], np.where(sc[m] >= 0, 1.0, -1.0) * w[m])
        assert (e[m] < 0).any() and (np.sign(e[m]) != np.sign(w[m])).any()  # flips happen


@pytest.mark.parametrize("k", [0.0, -0.1, 1.5, float("nan")])
def test_k_outside_unit_interval_is_refused(k):
    with pytest.raises(ValueError, match=r"k must be in \(0, 1\]"):
        supermask_model(BASE, k)
    with pytest.raises(ValueError, match=r"k must be in \(0, 1\]"):
        keep_count(k, 10)


def test_bad_kind_and_k_combinations():
    with pytest.raises(ValueError, match="kind must be one of edge_popup, sign"):
        supermask_model(BASE, 0.5, kind="signs")
    with pytest.raises(ValueError, match="kind='sign' takes k=None"):
        supermask_model(BASE, 0.5, kind="sign")
    with pytest.raises(ValueError, match="needs k"):
        supermask_model(BASE)
    with pytest.raises(TypeError, match="number"):
        supermask_model(BASE, "0.5")


def test_a_leaf_without_scores_is_named():
    model = supermask_model(BASE, 0.5)
    params, state = model.init(jax.random.key(0))
    missing = {**params, "scores": {**params["scores"], "output": {"bias": None, "kernel": None}}}
    with pytest.raises(ValueError, match="'output/kernel' has no score"):
        model.apply(missing, state, X, train=False)
    extra = jax.tree.map(lambda x: x, params)
    extra["scores"]["dense1"]["bias"] = jnp.zeros(8)
    with pytest.raises(ValueError, match="'dense1/bias' is unscored"):
        model.apply(extra, state, X, train=False)
    with pytest.raises(ValueError, match="keys scores, weights"):
        model.apply(params["weights"], state, X, train=False)
