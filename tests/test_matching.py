"""Permutation weight matching: specs, function-preserving permutations, recovery, optimality.

References are independent: function equality through the model's own forward pass,
brute force over all permutations with a plain numpy objective, hand-worked index layouts.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

import jaxticket.models as zoo
from jaxticket.models.resnet import batch_norm
from jaxticket.stability.matching import align_seeds, matching_objective, weight_matching
from jaxticket.stability.permutations import (
    apply_permutation,
    permutation_spec,
    permute_axis,
)

SHAPES = {"mlp": (40, 1), "lenet_300_100": (40, 1), "cnn1d": (40, 1), "conv2": (4, 4, 1)}


def _random_perms(spec, params, seed):
    rng = np.random.default_rng(seed)
    kernels = {p: np.shape(x) for p, x in _flat(params).items()}
    return {name: rng.permutation(kernels[f"{name}/kernel"][-1]) for name in spec}


def _flat(tree):
    return {
        "/".join(str(k.key) for k in path): leaf
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
    }


def _same_leaves(t1, t2):
    f1, f2 = _flat(t1), _flat(t2)
    return f1.keys() == f2.keys() and all(
        np.array_equal(np.asarray(f1[k]), np.asarray(f2[k])) for k in f1
    )


def _numpy_init(model, seed):
    # Random values of the model's shapes without compiling its init: kernels scaled by
    # fan-in, non-zero biases (a mispermuted bias must show), positive BN statistics.
    rng = np.random.default_rng(seed)
    params, state = jax.eval_shape(model.init, jax.random.key(0))

    def draw(x):
        fan_in = int(np.prod(x.shape[:-1])) if len(x.shape) > 1 else 10
        return (rng.standard_normal(x.shape) / np.sqrt(fan_in)).astype(np.float32)

    params = jax.tree.map(draw, params)
    state = jax.tree.map(lambda x: rng.uniform(0.5, 1.5, x.shape).astype(np.float32), state)
    return params, state


@pytest.fixture(scope="module")
def zoo_nets():
    nets = {}
    for name, shape in SHAPES.items():
        model = zoo.get(name, input_shape=shape, num_classes=3)
        nets[name] = (model, *_numpy_init(model, 0))
    return nets


class _ConvBN(nnx.Module):
    # The vgg16 layout in miniature: conv-BN-ReLU twice, a pool, a flatten, dense, readout.
    def __init__(self, *, rngs):
        self.conv1 = nnx.Conv(2, 4, (3, 3), use_bias=False, rngs=rngs)
        self.bn1 = batch_norm(4, rngs)
        self.conv2 = nnx.Conv(4, 5, (3, 3), rngs=rngs)
        self.bn2 = batch_norm(5, rngs)
        self.dense1 = nnx.Linear(2 * 2 * 5, 6, rngs=rngs)
        self.output = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x, *, train, key=None):
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        x = jax.nn.relu(self.bn2(self.conv2(x), use_running_average=not train))
        x = nnx.max_pool(x, (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
        return self.output(jax.nn.relu(self.dense1(x)))


@pytest.mark.parametrize("name", list(SHAPES))
def test_permuted_zoo_network_computes_the_same_function(zoo_nets, name):
    model, params, state = zoo_nets[name]
    spec = permutation_spec(params, state)
    assert "output" not in spec and len(spec) >= 2
    p2, s2 = apply_permutation(spec, _random_perms(spec, params, 1), params, state)
    assert not _same_leaves(params, p2)
    x = jax.random.normal(jax.random.key(1), (7, *SHAPES[name]))
    apply = jax.jit(model.apply, static_argnames="train")
    diff = jnp.abs(apply(params, state, x, train=False)[0] - apply(p2, s2, x, train=False)[0])
    assert float(diff.max()) <= 1e-5


def test_batchnorm_model_permutes_scale_bias_and_statistics():
    model = zoo.from_nnx(lambda rngs: _ConvBN(rngs=rngs), input_shape=(4, 4, 2), name="convbn")
    params, state = _numpy_init(model, 5)
    spec = permutation_spec(params, state)
    assert set(spec["conv1"]) == {
        ("conv1/kernel", 3),
        ("bn1/scale", 0),
        ("bn1/bias", 0),
        ("bn1/mean", 0),
        ("bn1/var", 0),
        ("conv2/kernel", 2),
    }
    perms = _random_perms(spec, params, 2)
    p2, s2 = apply_permutation(spec, perms, params, state)
    x = jax.random.normal(jax.random.key(1), (6, 4, 4, 2))
    apply = jax.jit(model.apply, static_argnames="train")
    y1, _ = apply(params, state, x, train=False)
    y2, _ = apply(p2, s2, x, train=False)
    assert float(jnp.abs(y1 - y2).max()) <= 1e-5
    t1, new1 = apply(params, state, x, train=True)
    t2, new2 = apply(p2, s2, x, train=True)
    assert float(jnp.abs(t1 - t2).max()) <= 1e-5
    want = apply_permutation(spec, perms, params, new1)[1]
    assert all(np.allclose(want["bn1"][s], new2["bn1"][s], atol=1e-6) for s in ("mean", "var"))
    with pytest.raises(ValueError, match="pass model_state="):
        permutation_spec(params)
    # Matching uses params only; the statistics follow when the permutation is applied.
    found = weight_matching(spec, params, p2, key=jax.random.key(0))
    back_p, back_s = apply_permutation(spec, found, p2, s2)
    assert _same_leaves(params, back_p) and _same_leaves(state, back_s)


def test_vgg16_spec_moves_batchnorm_with_its_conv():
    model = zoo.get("vgg16", input_shape=(32, 32, 3), num_classes=10)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    spec = permutation_spec(params, state)
    assert list(spec) == [f"conv{i}" for i in range(1, 14)]
    assert set(spec["conv1"]) == {
        ("conv1/kernel", 3),
        ("bn1/scale", 0),
        ("bn1/bias", 0),
        ("bn1/mean", 0),
        ("bn1/var", 0),
        ("conv2/kernel", 2),
    }
    assert spec["conv13"][-1] == ("output/kernel", 0)


def test_flatten_rows_are_spatial_major_channel_minor():
    # Rows of dense1 after flattening (spatial 3, channels 2): index s * 2 + c.
    rows = np.arange(6)
    assert permute_axis(rows, np.array([1, 0]), 0).tolist() == [1, 0, 3, 2, 5, 4]
    kernel = np.arange(12).reshape(2, 6)  # axis 1 of length 6 = (3, 2)
    assert permute_axis(kernel, np.array([1, 0]), 1)[0].tolist() == [1, 0, 3, 2, 5, 4]


@pytest.mark.parametrize("name", ["mlp", "cnn1d", "conv2"])
def test_matching_recovers_a_permuted_copy_exactly(zoo_nets, name):
    _, params, state = zoo_nets[name]
    spec = permutation_spec(params, state)
    shuffled, _ = apply_permutation(spec, _random_perms(spec, params, 3), params, state)
    perms = weight_matching(spec, params, shuffled, key=jax.random.key(0))
    aligned, _ = apply_permutation(spec, perms, shuffled, state)
    assert _same_leaves(params, aligned)


def _mlp_params(key, sizes):
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).tolist())
    names = [f"dense{i + 1}" for i in range(len(sizes) - 2)] + ["output"]
    return {
        n: {"kernel": rng.standard_normal((a, b)), "bias": rng.standard_normal(b)}
        for i, (n, a, b) in enumerate(zip(names, sizes[:-1], sizes[1:], strict=True))
    }


def _objective(a, b, perms):
    # Plain numpy Σ ⟨W_A, P_l W_B P_{l-1}^T⟩ + ⟨b_A, P_l b_B⟩ for an MLP, layer by layer.
    names = list(a)
    total, prev = 0.0, None
    for n in names:
        w, bias = b[n]["kernel"], b[n]["bias"]
        if prev is not None:
            w = w[prev, :]
        cur = perms.get(n)
        if cur is not None:
            w, bias = w[:, cur], bias[cur]
        total += float(np.sum(a[n]["kernel"] * w) + np.sum(a[n]["bias"] * bias))
        prev = cur
    return total


def test_one_hidden_layer_matches_the_brute_force_optimum():
    for seed in range(4):
        a = _mlp_params(jax.random.key(2 * seed), (4, 3, 2))
        b = _mlp_params(jax.random.key(2 * seed + 1), (4, 3, 2))
        spec = permutation_spec(a)
        best = max(
            _objective(a, b, {"dense1": np.array(p)}) for p in itertools.permutations(range(3))
        )
        perms = weight_matching(spec, a, b, key=jax.random.key(seed))
        assert _objective(a, b, perms) == pytest.approx(best, rel=1e-9)
        assert matching_objective(spec, perms, a, b) == pytest.approx(best, rel=1e-9)


def test_two_hidden_layers_stop_at_a_coordinate_optimum():
    all3 = [np.array(p) for p in itertools.permutations(range(3))]
    for seed in range(4):
        a = _mlp_params(jax.random.key(10 + seed), (4, 3, 3, 2))
        b = _mlp_params(jax.random.key(20 + seed), (4, 3, 3, 2))
        perms = weight_matching(permutation_spec(a), a, b, key=jax.random.key(seed))
        got = _objective(a, b, perms)
        best = max(_objective(a, b, {"dense1": p, "dense2": q}) for p in all3 for q in all3)
        assert got <= best + 1e-9
        for layer in perms:  # no single-layer change improves (the stopping rule)
            for p in all3:
                assert _objective(a, b, {**perms, layer: p}) <= got + 1e-9


def test_objective_never_decreases_and_beats_identity(zoo_nets):
    model, params, state = zoo_nets["mlp"]
    other, _ = _numpy_init(model, 9)
    spec = permutation_spec(params, state)
    identity = {n: np.arange(100) for n in spec}
    values = [matching_objective(spec, identity, params, other)]
    for it in (1, 2, 3, 5):
        perms = weight_matching(spec, params, other, key=jax.random.key(4), max_iter=it)
        values.append(matching_objective(spec, perms, params, other))
    assert all(v2 >= v1 - 1e-9 * abs(v1) for v1, v2 in itertools.pairwise(values))
    assert values[-1] > values[0]
    again = weight_matching(spec, params, other, key=jax.random.key(4), max_iter=5)
    assert all(np.array_equal(again[n], perms[n]) for n in spec)


def test_hand_written_spec_and_align_seeds(zoo_nets):
    _, params, _ = zoo_nets["mlp"]
    hand = {
        "h1": [("dense1/kernel", 1), ("dense1/bias", 0), ("dense2/kernel", 0)],
        "h2": [("dense2/kernel", -1), ("dense2/bias", 0), ("output/kernel", 0)],
    }
    copies = [params]
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        perms = {"h1": rng.permutation(100), "h2": rng.permutation(100)}
        copies.append(apply_permutation(hand, perms, params)[0])
    stacked = jax.tree.map(lambda *xs: np.stack(xs), *copies)
    aligned, state, perms = align_seeds(hand, stacked, key=jax.random.key(0))
    assert state is None and len(perms) == 3
    for j in range(3):
        assert _same_leaves(params, jax.tree.map(lambda x, j=j: x[j], aligned))


@pytest.mark.parametrize(
    ("name", "shape", "match"),
    [
        ("resnet20", (32, 32, 3), "residual block.*addition"),
        ("transformer1", (2,), "attention"),
        ("embed_mlp", (2,), "unknown layout at leaf 'embed/embedding'"),
    ],
)
def test_unpermutable_models_are_refused(name, shape, match):
    kwargs = {"num_classes": 7}
    model = zoo.get(name, input_shape=shape, **kwargs)
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    with pytest.raises(ValueError, match=match):
        permutation_spec(params, state)


def test_bad_specs_perms_and_pairs(zoo_nets):
    _, params, _ = zoo_nets["mlp"]
    spec = permutation_spec(params)
    good = {n: np.arange(100) for n in spec}
    with pytest.raises(ValueError, match="'dense9/kernel' is not in params"):
        apply_permutation({"h": [("dense9/kernel", 0)]}, {"h": np.arange(3)}, params)
    with pytest.raises(ValueError, match="axis 2 out of range"):
        apply_permutation({"h": [("dense1/kernel", 2)]}, {"h": np.arange(3)}, params)
    with pytest.raises(ValueError, match="length 100, not a multiple of 3"):
        apply_permutation(
            {"h": [("dense1/kernel", 1), ("output/kernel", 1)]}, {"h": np.arange(3)}, params
        )
    with pytest.raises(ValueError, match="in both"):
        apply_permutation({"a": [("dense1/bias", 0)], "b": [("dense1/bias", -1)]}, good, params)
    with pytest.raises(
        ValueError, match=r"perms\['dense1'\] must be a permutation of range\(100\)"
    ):
        apply_permutation(spec, {**good, "dense1": np.zeros(100, int)}, params)
    with pytest.raises(ValueError, match="exactly the spec's names"):
        apply_permutation(spec, {"dense1": good["dense1"]}, params)
    wrong = _numpy_init(zoo.get("mlp", input_shape=(40, 1), num_classes=3, hidden=(100, 50)), 0)[0]
    with pytest.raises(ValueError, match="leaf 'dense2/bias' has shape"):
        weight_matching(spec, params, wrong, key=jax.random.key(0))
    with pytest.raises(ValueError, match="max_iter must be at least 1"):
        weight_matching(spec, params, params, key=jax.random.key(0), max_iter=0)


def test_stacked_params_are_refused_by_the_derivation(zoo_nets):
    _, params, _ = zoo_nets["mlp"]
    stacked = jax.tree.map(lambda x: np.stack([x, x]), params)
    with pytest.raises(ValueError, match="'dense1/kernel' has shape .*stacked seeds"):
        permutation_spec(stacked)


@given(
    widths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
)
def test_a_permutation_then_its_inverse_is_the_identity(widths, seed):
    rng = np.random.default_rng(seed)
    params = _mlp_params(jax.random.key(seed), (3, *widths, 2))
    spec = permutation_spec(params)
    perms = {n: rng.permutation(w) for n, w in zip(spec, widths, strict=True)}
    moved, _ = apply_permutation(spec, perms, params)
    back, _ = apply_permutation(spec, {n: np.argsort(p) for n, p in perms.items()}, moved)
    assert _same_leaves(params, back)
    # numpy reference of the same move: rows/columns of each kernel, entries of each bias
    names = list(params)
    for i, n in enumerate(names):
        want = params[n]["kernel"]
        if i > 0:
            want = want[perms[names[i - 1]], :]
        if n in perms:
            want = want[:, perms[n]]
            assert np.array_equal(moved[n]["bias"], params[n]["bias"][perms[n]])
        assert np.array_equal(moved[n]["kernel"], want)
