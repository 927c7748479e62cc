"""Linear mode connectivity (jaxticket.stability.interpolate / batchnorm) against numpy.

References are plain numpy forward passes and loops; hand-worked cases: a network with
itself (barrier 0) and two sign-flipped copies of a 1-hidden-layer ReLU net whose
midpoint is the all-zero network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from jaxticket import models
from jaxticket.data import Dataset
from jaxticket.models import Model
from jaxticket.stability.batchnorm import recompute_batchnorm
from jaxticket.stability.interpolate import (
    all_pairs,
    alpha_grid,
    barriers,
    interpolate,
    path_errors,
    summary,
)

N_SEEDS = 3


def _dataset(n_in: int, classes: int, n_train: int, n_test: int, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        x_train=jnp.asarray(rng.normal(size=(n_train, n_in)), jnp.float32),
        y_train=jnp.asarray(rng.integers(0, classes, n_train), jnp.int32),
        x_test=jnp.asarray(rng.normal(size=(n_test, n_in)), jnp.float32),
        y_test=jnp.asarray(rng.integers(0, classes, n_test), jnp.int32),
        name="tiny",
        num_classes=classes,
        input_shape=(n_in,),
    )


def tiny_mlp(n_in: int, hidden: int, classes: int) -> Model:
    """A plain-jax 1-hidden-layer ReLU MLP with zoo-style params (no NNX: cheap to build)."""

    def init(key):
        k1, k2 = jax.random.split(key)
        return {
            "dense1": {"kernel": jax.random.normal(k1, (n_in, hidden)), "bias": jnp.zeros(hidden)},
            "output": {
                "kernel": jax.random.normal(k2, (hidden, classes)),
                "bias": jnp.zeros(classes),
            },
        }, {}

    def apply(params, state, x, *, train, key=None):
        h = jax.nn.relu(x @ params["dense1"]["kernel"] + params["dense1"]["bias"])
        return h @ params["output"]["kernel"] + params["output"]["bias"], state

    return Model("tiny_mlp", init, apply, (n_in,), classes)


DATA = _dataset(6, 3, 64, 50)
MLP = tiny_mlp(6, 8, 3)


@pytest.fixture(scope="module")
def mlp_seeds():
    return jax.vmap(MLP.init)(jax.random.split(jax.random.key(1), N_SEEDS))


@pytest.fixture(scope="module")
def mlp_path(mlp_seeds):
    params, state = mlp_seeds
    return path_errors(MLP, params, state, DATA, alphas=alpha_grid(5))


def _np_mlp(p, x):
    h = np.maximum(x @ np.asarray(p["dense1"]["kernel"]) + np.asarray(p["dense1"]["bias"]), 0)
    return h @ np.asarray(p["output"]["kernel"]) + np.asarray(p["output"]["bias"])


def _np_error_loss(logits, y):
    logits = logits.astype(np.float64)
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(np.mean(logits.argmax(axis=1) != y)), float(-np.mean(logp[np.arange(len(y)), y]))


def _np_mix(a, b, alpha):
    return jax.tree.map(lambda u, v: (1 - alpha) * u + alpha * v, a, b)


def _seed(tree, i):
    return jax.tree.map(lambda x: np.asarray(x[i]), tree)


@given(st.floats(0.0, 1.0, width=32))
def test_interpolate_matches_numpy_loop(alpha):
    rng = np.random.default_rng(0)
    a = {"w": rng.normal(size=(3, 2)).astype(np.float32), "g": {"b": np.ones(2, np.float32)}}
    b = {"w": rng.normal(size=(3, 2)).astype(np.float32), "g": {"b": np.zeros(2, np.float32)}}
    a["n"], b["n"] = None, None
    out = interpolate(a, b, alpha)
    assert out["n"] is None
    al = np.float32(alpha)
    for key in ("w",):
        want = np.empty_like(a[key])
        for idx in np.ndindex(a[key].shape):
            want[idx] = (np.float32(1) - al) * a[key][idx] + al * b[key][idx]
        np.testing.assert_allclose(np.asarray(out[key]), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["g"]["b"]), np.full(2, 1 - al), rtol=1e-6)
    assert out["w"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(interpolate(a, b, 0.0)["w"]), a["w"])
    np.testing.assert_array_equal(np.asarray(interpolate(a, b, 1.0)["w"]), b["w"])


def test_path_matches_numpy_forward_and_endpoints_exact(mlp_seeds, mlp_path):
    params, _ = mlp_seeds
    r = mlp_path
    np.testing.assert_array_equal(r.pairs, [[0, 1], [0, 2], [1, 2]])
    assert r.errors.shape == r.losses.shape == (3, 5) and not r.batchnorm_recomputed
    x, y = np.asarray(DATA.x_test), np.asarray(DATA.y_test)
    single = [_np_error_loss(_np_mlp(_seed(params, i), x), y) for i in range(N_SEEDS)]
    for p, (i, j) in enumerate(r.pairs):
        # Endpoints: exactly the end networks' errors.
        assert float(r.errors[p, 0]) == pytest.approx(single[i][0], abs=1e-6)
        assert float(r.errors[p, -1]) == pytest.approx(single[j][0], abs=1e-6)
        for a, alpha in enumerate(r.alphas):
            mixed = _np_mix(_seed(params, i), _seed(params, j), alpha)
            err, loss = _np_error_loss(_np_mlp(mixed, x), y)
            assert abs(float(r.errors[p, a]) - err) <= 1 / len(y) + 1e-6  # one tie at most
            assert float(r.losses[p, a]) == pytest.approx(loss, rel=1e-4)


def test_barrier_with_itself_is_zero_and_rerun_identical(mlp_seeds, mlp_path):
    params, state = mlp_seeds
    same = path_errors(MLP, params, state, DATA, [[1, 1], [2, 2], [0, 0]], alpha_grid(5))
    np.testing.assert_array_equal(np.asarray(barriers(same.errors, same.alphas)), [0, 0, 0])
    again = path_errors(MLP, params, state, DATA, alphas=alpha_grid(5))
    np.testing.assert_array_equal(np.asarray(again.errors), np.asarray(mlp_path.errors))
    np.testing.assert_array_equal(np.asarray(again.losses), np.asarray(mlp_path.losses))


def test_sign_flipped_relu_net_midpoint_barrier_by_hand():
    # h = relu(x·[1, -1]), logits = h: class 0 iff x > 0, and so is the label. The negated
    # network -θ also classifies every point right; (1-2α)θ too for α != 1/2, but at α = 1/2
    # all weights are zero, logits tie and argmax says class 0: error = share of label 1.
    model = tiny_mlp(1, 2, 2)
    theta = {
        "dense1": {"kernel": jnp.array([[1.0, -1.0]]), "bias": jnp.zeros(2)},
        "output": {"kernel": jnp.eye(2), "bias": jnp.zeros(2)},
    }
    params = jax.tree.map(lambda t: jnp.stack([t, -t]), theta)
    x = jnp.array([[0.5], [1.0], [2.0], [-0.5], [-1.0], [-1.5], [-2.0], [-3.0]])
    y = (x[:, 0] < 0).astype(jnp.int32)  # 3 of label 0, 5 of label 1
    data = Dataset(x_train=x, y_train=y, x_test=x, y_test=y, name="flip", num_classes=2,
                   input_shape=(1,))  # fmt: skip
    r = path_errors(model, params, {}, data, alphas=alpha_grid(5))
    np.testing.assert_allclose(np.asarray(r.errors), [[0, 0, 5 / 8, 0, 0]], atol=1e-7)
    np.testing.assert_allclose(np.asarray(barriers(r.errors, r.alphas)), [5 / 8], atol=1e-7)


def test_summary_by_hand():
    s = summary(np.array([0.0, 0.01, 0.03, 0.02]))
    assert s.mean == pytest.approx(0.015) and s.std == pytest.approx(np.sqrt(0.000125))
    assert (s.min, s.max, s.stable, s.count) == (0.0, 0.03, 2, 4)
    np.testing.assert_array_equal(all_pairs(4), [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    g = alpha_grid(30)
    assert g.shape == (30,) and g[0] == 0.0 and g[-1] == 1.0


def test_bad_inputs(mlp_seeds):
    a = {"x": jnp.ones(2), "y": {"z": jnp.ones((2, 2))}}
    with pytest.raises(ValueError, match="'y/z'"):
        interpolate(a, {"x": jnp.ones(2), "y": {"z": jnp.ones((3, 2))}}, 0.5)
    with pytest.raises(ValueError, match="'y/z'"):
        interpolate(a, {"x": jnp.ones(2), "y": {"z": jnp.ones((2, 2), jnp.float16)}}, 0.5)
    with pytest.raises(ValueError, match="'y/w'|'y/z'"):
        interpolate(a, {"x": jnp.ones(2), "y": {"w": jnp.ones((2, 2))}}, 0.5)
    with pytest.raises(ValueError, match="'y/z'"):
        interpolate(a, {"x": jnp.ones(2)}, 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\].*extrapolate=True"):
        interpolate(a, a, 1.5)
    with pytest.raises(ValueError, match="scalar"):
        interpolate(a, a, jnp.ones(2))
    out = interpolate({"x": jnp.zeros(1)}, {"x": jnp.ones(1)}, -0.5, extrapolate=True)
    np.testing.assert_allclose(np.asarray(out["x"]), [-0.5])
    params, state = mlp_seeds
    with pytest.raises(ValueError, match=r"index the 3 seeds"):
        path_errors(MLP, params, state, DATA, [[0, 3]])
    with pytest.raises(ValueError, match=r"shape \[P, 2\]"):
        path_errors(MLP, params, state, DATA, [0, 1])
    with pytest.raises(ValueError, match=r"alphas must lie in \[0, 1\]"):
        path_errors(MLP, params, state, DATA, alphas=[0.0, 1.2])
    with pytest.raises(ValueError, match="no state"):
        path_errors(MLP, params, state, DATA, recompute_batchnorm=True)
    with pytest.raises(ValueError, match="no 'val' split"):
        path_errors(MLP, params, state, DATA, split="val")
    with pytest.raises(ValueError, match="dense1/kernel"):
        path_errors(MLP, jax.tree.map(lambda x: x[0], params), state, DATA)
    with pytest.raises(TypeError, match="Dataset"):
        path_errors(MLP, params, state, (DATA.x_test, DATA.y_test))
    with pytest.raises(ValueError, match="exactly 0 to exactly"):
        barriers(np.zeros((1, 3)), [0.1, 0.5, 1.0])


class _BNNet(nnx.Module):
    """dense → BN → relu → dense → BN → dense, with two different momenta."""

    def __init__(self, rngs):
        self.dense1 = nnx.Linear(3, 4, rngs=rngs)
        self.bn1 = nnx.BatchNorm(4, momentum=0.9, epsilon=1e-5, rngs=rngs)
        self.dense2 = nnx.Linear(4, 3, rngs=rngs)
        self.bn2 = nnx.BatchNorm(3, momentum=0.7, epsilon=1e-3, rngs=rngs)
        self.output = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x, *, train):
        x = jax.nn.relu(self.bn1(self.dense1(x), use_running_average=not train))
        return self.output(self.bn2(self.dense2(x), use_running_average=not train))


def _np_bn_net(p, x, stats=None):
    """numpy forward; with ``stats`` eval mode, without it train mode returning batch stats."""
    g = {k: {n: np.asarray(v, np.float64) for n, v in d.items()} for k, d in p.items()}
    found = {}

    def bn(name, z, eps):
        mean, var = (z.mean(0), z.var(0)) if stats is None else stats[name]
        found[name] = (mean, var)
        return (z - mean) / np.sqrt(var + eps) * g[name]["scale"] + g[name]["bias"]

    h = np.maximum(bn("bn1", x @ g["dense1"]["kernel"] + g["dense1"]["bias"], 1e-5), 0)
    h = bn("bn2", h @ g["dense2"]["kernel"] + g["dense2"]["bias"], 1e-3)
    return h @ g["output"]["kernel"] + g["output"]["bias"], found


def test_batchnorm_recomputed_equals_numpy_batch_statistics():
    model = models.from_nnx(_BNNet, input_shape=(3,), num_classes=2, name="bn_net")
    data = _dataset(3, 2, 48, 30, seed=3)
    # Two seeds of train-like params built by hand (no NNX init to compile): random
    # kernels, non-trivial BN scales and biases, garbage running statistics.
    template_p, template_s = jax.eval_shape(model.init, jax.random.key(0))
    rng = np.random.default_rng(4)
    params = jax.tree.map(
        lambda t: jnp.asarray(rng.normal(size=(2, *t.shape)), t.dtype), template_p
    )
    state = jax.tree.map(lambda t: jnp.full((2, *t.shape), 5.0, t.dtype), template_s)
    x = np.asarray(data.x_train[:48], np.float64).reshape(3, 16, 3)
    p0 = jax.tree.map(lambda v: v[0], params)
    recompute = jax.jit(lambda p, s, b: recompute_batchnorm(model.apply, p, s, b))
    got = recompute(p0, jax.tree.map(lambda v: v[0], state), jnp.asarray(x, jnp.float32))
    per_batch = [_np_bn_net(_seed(params, 0), xb)[1] for xb in x]
    for name in ("bn1", "bn2"):
        want_mean = np.mean([b[name][0] for b in per_batch], axis=0)
        want_var = np.mean([b[name][1] for b in per_batch], axis=0)
        np.testing.assert_allclose(np.asarray(got[name]["mean"]), want_mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(got[name]["var"]), want_var, rtol=1e-4, atol=1e-5)

    # path_errors recomputes automatically and says so; its errors are those of a numpy
    # eval-mode forward with numpy-recomputed statistics of the interpolated network.
    alphas = np.array([0.0, 0.5, 1.0], np.float32)
    r = path_errors(model, params, state, data, alphas=alphas, bn_batches=3, bn_batch_size=16)
    assert r.batchnorm_recomputed
    with pytest.raises(ValueError, match=r"bn_batches\*bn_batch_size = 1600 training"):
        path_errors(model, params, state, data, bn_batches=100, bn_batch_size=16)
    xt, yt = np.asarray(data.x_test, np.float64), np.asarray(data.y_test)
    for a, alpha in enumerate(alphas):
        mixed = _np_mix(_seed(params, 0), _seed(params, 1), alpha)
        batches = [_np_bn_net(mixed, xb)[1] for xb in x]
        stats = {
            n: tuple(np.mean([b[n][k] for b in batches], axis=0) for k in (0, 1))
            for n in ("bn1", "bn2")
        }
        err, loss = _np_error_loss(_np_bn_net(mixed, xt, stats)[0], yt)
        assert abs(float(r.errors[0, a]) - err) <= 1 / len(yt) + 1e-6
        assert float(r.losses[0, a]) == pytest.approx(loss, rel=1e-3)


SHARDED = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import NamedSharding, PartitionSpec
    from jaxticket.stability.interpolate import alpha_grid, path_errors
    from jaxticket.train import seed_mesh
    from test_interpolate import DATA, MLP, stacked_mlp_params
    assert len(jax.devices()) == 8
    mesh = NamedSharding(seed_mesh(), PartitionSpec("seeds"))
    params = jax.device_put(stacked_mlp_params(8), mesh)
    assert len(params["output"]["kernel"].sharding.device_set) == 8
    r = path_errors(MLP, params, {}, DATA, alphas=alpha_grid(4), networks_per_step=16)
    np.savez(sys.argv[1], errors=np.asarray(r.errors), losses=np.asarray(r.losses))
    """
)


def stacked_mlp_params(n: int):
    """``n`` seeds of MLP params drawn with numpy (the same in every process)."""
    rng = np.random.default_rng(7)
    template = jax.eval_shape(MLP.init, jax.random.key(0))[0]
    return jax.tree.map(lambda t: jnp.asarray(rng.normal(size=(n, *t.shape)), t.dtype), template)


def test_seed_axis_sharded_over_eight_devices_gives_same_numbers(tmp_path):
    one = path_errors(
        MLP, stacked_mlp_params(8), {}, DATA, alphas=alpha_grid(4), networks_per_step=16
    )
    assert one.errors.shape == (28, 4)
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    out = tmp_path / "sharded.npz"
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=os.path.dirname(__file__),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    many = np.load(out)
    np.testing.assert_array_equal(many["errors"], np.asarray(one.errors))
    np.testing.assert_allclose(many["losses"], np.asarray(one.losses), rtol=1e-6)
