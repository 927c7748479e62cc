"""BCOO export and sparse inference (structured.sparse_inference), 2:4 packing (nm_export)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import sparse

import jaxticket.models as models_lib
from jaxticket.masks import apply_mask
from jaxticket.pruning import n_m
from jaxticket.structured.nm_export import (
    export_2_4,
    nm_available,
    nm_matmul,
    pack_2_4,
    unpack_2_4,
)
from jaxticket.structured.sparse_inference import bcoo_paths, sparse_apply, to_bcoo


def random_mask(params, density, seed):
    """Each kernel (ndim >= 2) alive with probability ``density``; numpy, so nothing compiles."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: rng.random(p.shape) < density if p.ndim >= 2 else None, params)


def random_params(model, seed=0):
    """Random (params, state) of the model's shapes drawn by numpy: nothing compiles (a jitted
    ``model.init`` compiles the random initializers, seconds on a busy 2-core machine).
    BatchNorm running variances are drawn positive, running means away from 0."""
    rng = np.random.default_rng(seed)
    params, state = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, leaf):
        if "var" in jax.tree_util.keystr(path):
            return jnp.asarray(0.5 + rng.random(leaf.shape), leaf.dtype)
        return jnp.asarray(0.4 * rng.standard_normal(leaf.shape), leaf.dtype)

    return tuple(jax.tree_util.tree_map_with_path(draw, t) for t in (params, state))


def inputs(model, batch, seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((batch, *model.input_shape)))


def masked_dense_logits(model):
    """The reference: the dense network with the mask multiplied in, one compiled program."""
    return jax.jit(lambda p, m, s, x: model.apply(apply_mask(p, m), s, x, train=False)[0])


# ---------------------------------------------------------------------------------------
# to_bcoo


def test_to_bcoo_hand_case():
    kernel = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    params = {"d": {"kernel": kernel, "bias": jnp.array([7.0, 8.0])}, "e": jnp.ones(2)}
    mask = {
        "d": {
            "kernel": jnp.array([[True, False], [False, False], [True, True]]),
            "bias": jnp.array([False, True]),
        },
        "e": None,
    }
    out = to_bcoo(params, mask)
    k = out["d"]["kernel"]
    assert isinstance(k, sparse.BCOO) and k.nse == 3 and k.shape == (3, 2)
    np.testing.assert_array_equal(np.asarray(k.indices), [[0, 0], [2, 0], [2, 1]])
    np.testing.assert_array_equal(np.asarray(k.data), [1.0, 5.0, 6.0])
    np.testing.assert_array_equal(np.asarray(out["d"]["bias"]), [0.0, 8.0])
    assert out["e"] is params["e"]
    assert bcoo_paths(out) == ["d/kernel"]


def test_to_bcoo_refuses_a_mask_of_another_shape():
    params = {"d": {"kernel": jnp.ones((3, 2))}}
    with pytest.raises(ValueError, match="d/kernel"):
        to_bcoo(params, {"d": {"kernel": jnp.ones((2, 3), bool)}})
    with pytest.raises(ValueError, match="kernel"):
        to_bcoo(params, {"d": {"kern": jnp.ones((3, 2), bool)}})
    with pytest.raises(TypeError, match="d/kernel"):
        to_bcoo(params, {"d": {"kernel": jnp.ones((3, 2))}})
    with pytest.raises(ValueError, match="matches no leaf"):
        to_bcoo(params, {"d": {"kernel": jnp.ones((3, 2), bool)}}, exclude="embed/*")


# ---------------------------------------------------------------------------------------
# sparse_apply


@pytest.fixture(scope="module")
def mlp_case():
    model = models_lib.get("mlp", input_shape=(12,), num_classes=5, hidden=(16, 8))
    params, state = random_params(model)
    mask = random_mask(params, 0.3, 1)
    x = inputs(model, 6)
    return model, params, state, mask, x


def test_sparse_mlp_matches_a_numpy_forward(mlp_case):
    model, params, state, mask, x = mlp_case
    out = jax.jit(functools.partial(sparse_apply, model))(to_bcoo(params, mask), state, x)
    h = np.asarray(x, np.float64)
    for name in ("dense1", "dense2", "output"):
        w = np.asarray(params[name]["kernel"], np.float64) * np.asarray(mask[name]["kernel"])
        h = h @ w + np.asarray(params[name]["bias"], np.float64)
        if name != "output":
            h = np.maximum(h, 0.0)
    np.testing.assert_allclose(np.asarray(out), h, atol=1e-5, rtol=0)


class ResidualBNCNN(nnx.Module):
    """A user-written CNN: strided conv, BatchNorm, a residual addition, a dense readout."""

    def __init__(self, *, rngs):
        self.stem = nnx.Conv(3, 8, (3, 3), strides=(2, 2), rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.conv = nnx.Conv(8, 8, (3, 3), padding="SAME", rngs=rngs)
        self.head = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x, *, train, key=None):
        del key
        h = jax.nn.relu(self.bn(self.stem(x), use_running_average=not train))
        h = h + jax.nn.relu(self.conv(h))
        return self.head(h.mean(axis=(1, 2)))


@pytest.mark.parametrize(
    "build",
    [
        lambda: models_lib.get("cnn1d", input_shape=(16, 1), num_classes=3),
        lambda: models_lib.from_nnx(
            lambda rngs: ResidualBNCNN(rngs=rngs), input_shape=(9, 9, 3), name="user_cnn"
        ),
    ],
    ids=["cnn1d", "user_residual_bn_cnn"],
)
def test_sparse_convnets_match_the_masked_dense_network(build):
    model = build()
    params, state = random_params(model)
    mask = random_mask(params, 0.4, 3)
    x = inputs(model, 3)
    sparse_params = to_bcoo(params, mask)
    assert any(jnp.ndim(p) >= 3 for p in jax.tree.leaves(params))  # a conv kernel is BCOO
    assert len(bcoo_paths(sparse_params)) == len([m for m in jax.tree.leaves(mask)])
    out = jax.jit(functools.partial(sparse_apply, model))(sparse_params, state, x)
    ref = masked_dense_logits(model)(params, mask, state, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)


def test_embedding_tables_stay_dense_when_excluded():
    model = models_lib.get("embed_mlp", input_shape=(2,), num_classes=7, dim=8, hidden=(8,))
    params, state = random_params(model)
    mask = random_mask(params, 0.5, 5)
    x = jnp.asarray(np.random.default_rng(6).integers(0, 7, (4, 2)), jnp.int32)
    run = jax.jit(functools.partial(sparse_apply, model))
    with pytest.raises(NotImplementedError, match="exclude="):
        run(to_bcoo(params, mask), state, x)
    out = run(to_bcoo(params, mask, exclude="embed*"), state, x)
    ref = masked_dense_logits(model)(params, mask, state, x)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), atol=1e-5, rtol=0)


class ScanRematNet(nnx.Module):
    """A dense kernel reused in a ``lax.scan`` body, and a ``jax.checkpoint``-ed readout."""

    def __init__(self, *, rngs):
        self.a = nnx.Linear(8, 8, rngs=rngs)
        self.b = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x, *, train, key=None):
        del train, key

        def body(h, _):
            return jax.nn.relu(h @ self.a.kernel[...]), None

        h, _ = jax.lax.scan(body, x, None, length=2)
        return jax.checkpoint(lambda h: self.b(h))(h)


def test_remat_is_inlined_and_a_scan_over_a_bcoo_kernel_is_refused():
    model = models_lib.from_nnx(lambda rngs: ScanRematNet(rngs=rngs), input_shape=(8,))
    params, state = random_params(model)
    mask = random_mask(params, 0.5, 7)
    x = inputs(model, 4)
    run = jax.jit(functools.partial(sparse_apply, model))
    with pytest.raises(NotImplementedError, match="loop or conditional"):
        run(to_bcoo(params, mask), state, x)
    sparse_params = to_bcoo(params, mask, exclude="a/*")
    assert bcoo_paths(sparse_params) == ["b/kernel"]
    ref = masked_dense_logits(model)(params, mask, state, x)
    np.testing.assert_allclose(np.asarray(run(sparse_params, state, x)), ref, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------------------------
# 2:4 packing


def test_pack_2_4_hand_case():
    # One output unit, 16 inputs; kept positions per group of four: {0,1} {1,3} {0,2} {2,3}.
    keep = [0, 1, 5, 7, 8, 10, 14, 15]
    mask = np.zeros((16, 1), bool)
    mask[keep, 0] = True
    kernel = np.arange(1.0, 17.0).reshape(16, 1)
    packed = pack_2_4(kernel, mask)
    np.testing.assert_array_equal(np.asarray(packed.values), [[1, 2, 6, 8, 9, 11, 15, 16]])
    # two bits per kept position, first in the lowest bits: 0,1,1,3,0,2,2,3 in base 4
    expected = 0 + 1 * 4 + 1 * 4**2 + 3 * 4**3 + 0 * 4**4 + 2 * 4**5 + 2 * 4**6 + 3 * 4**7
    assert expected == 59604
    assert packed.metadata.dtype == jnp.uint16
    np.testing.assert_array_equal(np.asarray(packed.metadata), [[expected]])
    np.testing.assert_array_equal(unpack_2_4(packed), np.where(mask, kernel, 0.0))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 3), st.integers(1, 5), st.integers(0, 2**31 - 1))
def test_pack_2_4_round_trips(blocks, n_out, seed):
    rng = np.random.default_rng(seed)
    n_in = 16 * blocks
    scores = rng.random((n_in // 4, 4, n_out))
    mask = (scores.argsort(1).argsort(1) >= 2).reshape(n_in, n_out)  # 2 best of each 4
    kernel = rng.standard_normal((n_in, n_out)).astype(np.float32)
    packed = pack_2_4(kernel, mask)
    assert packed.values.shape == (n_out, n_in // 2)
    assert packed.metadata.shape == (n_out, n_in // 16)
    np.testing.assert_array_equal(unpack_2_4(packed), np.where(mask, kernel, 0.0))


def test_pack_2_4_refuses_other_patterns():
    mask = np.tile(np.array([True, True, False, False]), 4)[:, None]
    mask[4:8, 0] = [True, True, True, False]
    with pytest.raises(ValueError, match="output unit 0, inputs 4-7 keep 3"):
        pack_2_4(np.ones((16, 1)), mask, name="dense1/kernel")
    with pytest.raises(ValueError, match="multiple of 16"):
        pack_2_4(np.ones((8, 1)), np.tile([True, False], 4)[:, None])
    with pytest.raises(ValueError, match="same shape"):
        pack_2_4(np.ones((16, 2)), np.ones((16, 1), bool))


def test_export_2_4_packs_the_masked_dense_kernels_of_a_network():
    rng = np.random.default_rng(0)
    params = {
        "dense1": {
            "kernel": jnp.asarray(rng.standard_normal((32, 16)), jnp.float32),
            "bias": jnp.zeros(16),
        },
        "output": {"kernel": jnp.asarray(rng.standard_normal((16, 3)), jnp.float32)},
    }
    scores = [jnp.abs(params["dense1"]["kernel"]), jnp.abs(params["output"]["kernel"])]
    alive = [jnp.ones((32, 16), bool), jnp.ones((16, 3), bool)]
    masks = n_m(2, 4)(scores, alive, ["dense1/kernel", "output/kernel"])
    mask = {"dense1": {"kernel": masks[0], "bias": None}, "output": {"kernel": masks[1]}}
    packed = export_2_4(params, mask)
    assert list(packed) == ["dense1/kernel", "output/kernel"]
    for path, (m, p) in zip(
        packed,
        [(masks[0], params["dense1"]["kernel"]), (masks[1], params["output"]["kernel"])],
        strict=True,
    ):
        np.testing.assert_array_equal(unpack_2_4(packed[path]), np.where(m, p, 0.0))
    with pytest.raises(ValueError, match="dense1/kernel"):
        export_2_4(
            params,
            {"dense1": {"kernel": masks[0][:16], "bias": None}, "output": {"kernel": masks[1]}},
        )
    conv = {"conv": {"kernel": jnp.ones((3, 3, 4, 16))}}
    with pytest.raises(ValueError, match="conv/kernel.*dense-layer"):
        export_2_4(conv, {"conv": {"kernel": jnp.ones((3, 3, 4, 16), bool)}})


@pytest.mark.skipif(nm_available(), reason="the N:M path is available here")
def test_nm_matmul_refuses_clearly_without_the_gpu_path():
    mask = np.tile(np.array([True, False, True, False]), 4)[:, None]
    with pytest.raises(NotImplementedError, match="nm_matmul"):
        nm_matmul(jnp.ones((2, 16)), pack_2_4(np.ones((16, 1)), mask))


@pytest.mark.skipif(
    not nm_available(),
    reason="the N:M path needs a GPU and a jax with jax.experimental.sparse.nm",
)
def test_nm_matmul_on_gpu_matches_the_dense_product():
    rng = np.random.default_rng(0)
    scores = rng.random((8, 4, 32))
    mask = (scores.argsort(1).argsort(1) >= 2).reshape(32, 32)
    kernel = rng.standard_normal((32, 32)).astype(np.float32)
    x = rng.standard_normal((16, 32)).astype(np.float32)
    out = nm_matmul(jnp.asarray(x), pack_2_4(kernel, mask))
    to_bf16 = lambda a: np.asarray(jnp.asarray(a, jnp.bfloat16), np.float32)  # noqa: E731
    ref = to_bf16(x) @ to_bf16(np.where(mask, kernel, 0.0))
    np.testing.assert_allclose(np.asarray(out), ref, atol=1e-2, rtol=1e-2)
