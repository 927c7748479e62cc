"""SynFlow scores and the iterative SynFlow mask against independent numpy references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.masks import dense_mask
from jaxticket.pruning.synflow import synflow, synflow_prune

SIZES = (3, 5, 4, 2)  # 3 -> 5 -> 4 -> 2, ReLU hidden layers, biases everywhere
LAYERS = [f"l{i}" for i in range(1, len(SIZES))]
N_WEIGHTS = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True))


def make_params(seed: int, sizes=SIZES, dtype=np.float32) -> dict:
    rng = np.random.default_rng(seed)
    return {
        f"l{i}": {
            "w": jnp.asarray(rng.normal(size=(a, b)).astype(dtype)),
            "b": jnp.asarray(rng.normal(size=(b,)).astype(dtype)),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True), start=1)
    }


def mlp(params, x):
    n = len(params)
    for i in range(1, n + 1):
        x = x @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
        if i < n:
            x = jax.nn.relu(x)
    return x


def linear2(params, x):
    return (x @ params["l1"]["w"] + params["l1"]["b"]) @ params["l2"]["w"] + params["l2"]["b"]


# ----------------------------------------------------------------------------------------
# independent references (plain numpy, float64)


def np_theta(params, mask):
    theta = {}
    for name, layer in params.items():
        w = np.abs(np.asarray(layer["w"], np.float64))
        if mask is not None and mask[name]["w"] is not None:
            w = w * np.asarray(mask[name]["w"])
        theta[name] = {"w": w, "b": np.abs(np.asarray(layer["b"], np.float64))}
    return theta


def np_flow(theta):
    """R = sum of the ReLU MLP's output on one all-ones example."""
    a = np.ones(theta["l1"]["w"].shape[0])
    n = len(theta)
    for i in range(1, n + 1):
        a = a @ theta[f"l{i}"]["w"] + theta[f"l{i}"]["b"]
        if i < n:
            a = np.maximum(a, 0.0)
    return a.sum()


def np_scores(params, mask=None):
    """|θ| ⊙ ∂R/∂|θ| by hand-written backpropagation through the ReLU MLP."""
    theta = np_theta(params, mask)
    n = len(theta)
    acts, pre = [np.ones(theta["l1"]["w"].shape[0])], []
    for i in range(1, n + 1):
        z = acts[-1] @ theta[f"l{i}"]["w"] + theta[f"l{i}"]["b"]
        pre.append(z)
        acts.append(np.maximum(z, 0.0) if i < n else z)
    delta = np.ones(theta[f"l{n}"]["b"].shape)
    grads = {}
    for i in range(n, 0, -1):
        grads[f"l{i}"] = {"w": np.outer(acts[i - 1], delta), "b": delta}
        if i > 1:
            delta = (theta[f"l{i}"]["w"] @ delta) * (pre[i - 2] > 0)
    return {k: {p: theta[k][p] * grads[k][p] for p in ("w", "b")} for k in theta}


def np_pruned_count(rate: float, n: int) -> int:
    """The documented count rule: floor(f·n + 1/2) with f resolved to six decimals."""
    big = int(np.round(np.float32(rate) * np.float32(1e6)))
    return (big * n + 500_000) // 1_000_000


def np_global_keep(scores, alive, keep, min_keep):
    """Global top-`keep` of alive weights after reserving each leaf's best `min_keep`."""
    new = {k: np.zeros_like(a) for k, a in alive.items()}
    rest_s, rest_idx = [], []
    for k in alive:
        idx = np.flatnonzero(alive[k])
        s = scores[k].ravel()[idx]
        order = idx[np.argsort(-s, kind="stable")]
        r = min(min_keep, len(idx))
        new[k].ravel()[order[:r]] = True
        rest_s += list(scores[k].ravel()[order[r:]])
        rest_idx += [(k, j) for j in order[r:]]
    reserved = sum(int(m.sum()) for m in new.values())
    take = max(keep - reserved, 0)
    rest_s = np.asarray(rest_s)
    order = np.argsort(-rest_s, kind="stable")
    if 0 < take < len(order):  # the reference is only valid without a tie at the cut
        assert rest_s[order[take - 1]] > rest_s[order[take]], "tie at the cut; change seed"
    for j in order[:take]:
        k, flat = rest_idx[j]
        new[k].ravel()[flat] = True
    return new


def np_synflow_prune(params, sparsity, rounds, min_keep=1):
    alive = {k: np.ones(params[k]["w"].shape, bool) for k in params}
    for k in range(1, rounds + 1):
        rate = sparsity if k == rounds else 1.0 - (1.0 - sparsity) ** (k / rounds)
        keep = min(
            sum(int(a.sum()) for a in alive.values()), N_WEIGHTS - np_pruned_count(rate, N_WEIGHTS)
        )
        mask = {name: {"w": alive[name], "b": None} for name in params}
        scores = {name: s["w"] for name, s in np_scores(params, mask).items()}
        alive = np_global_keep(scores, alive, keep, min_keep)
    return alive


def random_mask(params, seed, density=0.6):
    rng = np.random.default_rng(seed)
    return {
        k: {"w": jnp.asarray(rng.random(params[k]["w"].shape) < density), "b": None} for k in params
    }


# ----------------------------------------------------------------------------------------
# scores


def test_numpy_backprop_reference_matches_finite_differences():
    params = make_params(1)
    theta = np_theta(params, None)
    scores = np_scores(params)
    h = 1e-6
    for k in theta:
        for p in ("w", "b"):
            for j in range(theta[k][p].size):
                up = {a: {b: v.copy() for b, v in d.items()} for a, d in theta.items()}
                down = {a: {b: v.copy() for b, v in d.items()} for a, d in theta.items()}
                up[k][p].ravel()[j] += h
                down[k][p].ravel()[j] -= h
                fd = (np_flow(up) - np_flow(down)) / (2 * h)
                np.testing.assert_allclose(
                    theta[k][p].ravel()[j] * fd, scores[k][p].ravel()[j], rtol=1e-6, atol=1e-9
                )


def test_scores_match_closed_form_for_a_two_layer_linear_net():
    # R = 1ᵀ(|W2|ᵀ(|W1|ᵀ1 + |b1|) + |b2|) for kernels (in, out) and an all-ones input, so
    # ∂R/∂W1[i,j] = ∂R/∂b1[j] = (|W2| 1)_j, ∂R/∂W2[j,k] = (1ᵀ|W1| + |b1|)_j, ∂R/∂b2 = 1.
    params = make_params(2, sizes=(3, 4, 2))
    mask = random_mask(params, 3)
    w1 = np.abs(np.asarray(params["l1"]["w"], np.float64)) * np.asarray(mask["l1"]["w"])
    w2 = np.abs(np.asarray(params["l2"]["w"], np.float64)) * np.asarray(mask["l2"]["w"])
    b1 = np.abs(np.asarray(params["l1"]["b"], np.float64))
    b2 = np.abs(np.asarray(params["l2"]["b"], np.float64))
    out_flow = w2.sum(axis=1)
    hidden = w1.sum(axis=0) + b1
    want = {
        "l1": {"w": w1 * out_flow[None, :], "b": b1 * out_flow},
        "l2": {"w": w2 * hidden[:, None], "b": b2},
    }
    got = synflow(linear2, (3,))(params, mask=mask)
    for k in want:
        for p in ("w", "b"):
            assert got[k][p].dtype == jnp.float32
            np.testing.assert_allclose(np.asarray(got[k][p]), want[k][p], rtol=1e-5)


@pytest.mark.parametrize("masked", [False, True])
def test_scores_match_numpy_backprop_on_a_relu_mlp(masked):
    params = make_params(4)
    mask = random_mask(params, 5) if masked else None
    got = synflow(mlp, (3,))(params, mask=mask)
    want = np_scores(params, mask)
    for k in want:
        for p in ("w", "b"):
            np.testing.assert_allclose(np.asarray(got[k][p]), want[k][p], rtol=1e-5, atol=1e-6)
        if masked:  # pruned weights score exactly 0
            assert np.all(np.asarray(got[k]["w"])[~np.asarray(mask[k]["w"])] == 0)


def test_scores_in_float64_under_x64():
    with jax.enable_x64(True):
        params = make_params(6, dtype=np.float64)
        got = synflow(mlp, (3,))(params)
        want = np_scores(params)
        for k in want:
            assert got[k]["w"].dtype == jnp.float64
            np.testing.assert_allclose(np.asarray(got[k]["w"]), want[k]["w"], rtol=1e-12)


def test_output_that_is_not_one_array_is_refused():
    params = make_params(0)
    model_like = lambda p, x: (mlp(p, x), {})  # a Model's apply returns (logits, state)
    with pytest.raises(ValueError, match="synflow: apply_fn must return a single output array"):
        synflow(model_like, (3,))(params)
    with pytest.raises(ValueError, match="single output array"):
        synflow_prune(model_like, (3,), params, dense_mask(params), 0.5, rounds=2)


def test_bad_settings_are_refused():
    params = make_params(0)
    mask = dense_mask(params)
    with pytest.raises(TypeError, match="input_shape"):
        synflow(mlp, 3)
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        synflow_prune(mlp, (3,), params, mask, 0.5, rounds=0)
    with pytest.raises(TypeError, match="rounds must be an int"):
        synflow_prune(mlp, (3,), params, mask, 0.5, rounds=2.0)
    with pytest.raises(ValueError, match="sparsity must be in"):
        synflow_prune(mlp, (3,), params, mask, 1.0, rounds=2)


# ----------------------------------------------------------------------------------------
# iterative pruning


@pytest.mark.parametrize(("seed", "sparsity", "rounds"), [(7, 0.8, 5), (8, 0.5, 3)])
def test_iterative_mask_matches_a_python_loop(seed, sparsity, rounds):
    params = make_params(seed)
    got = synflow_prune(mlp, (3,), params, dense_mask(params), sparsity, rounds=rounds)
    want = np_synflow_prune(params, sparsity, rounds)
    for k in LAYERS:
        np.testing.assert_array_equal(np.asarray(got[k]["w"]), want[k], err_msg=k)
        assert got[k]["b"] is None
    alive = sum(int(np.sum(got[k]["w"])) for k in LAYERS)
    assert alive == N_WEIGHTS - np_pruned_count(sparsity, N_WEIGHTS)


_jitted_prune = jax.jit(lambda p, m, s: synflow_prune(mlp, (3,), p, m, s, rounds=5))


@settings(max_examples=5)
@given(st.floats(0.0, 0.9), st.integers(0, 50))
def test_final_alive_count_is_exact_under_jit(sparsity, seed):
    params = make_params(seed)
    got = _jitted_prune(params, dense_mask(params), jnp.float32(sparsity))
    alive = sum(int(np.sum(got[k]["w"])) for k in LAYERS)
    assert alive == N_WEIGHTS - np_pruned_count(sparsity, N_WEIGHTS)


def test_vmap_over_seeds_matches_per_seed_calls():
    seeds = [make_params(s) for s in (11, 12, 13)]
    stacked = jax.tree.map(lambda *x: jnp.stack(x), *seeds)
    mask = dense_mask(seeds[0])
    batched = jax.vmap(lambda p: _jitted_prune(p, mask, jnp.float32(0.8)))(stacked)
    for i, params in enumerate(seeds):
        one = synflow_prune(mlp, (3,), params, mask, 0.8, rounds=5)
        for k in LAYERS:
            np.testing.assert_array_equal(np.asarray(batched[k]["w"][i]), np.asarray(one[k]["w"]))


def test_a_batchnorm_model_in_eval_mode():
    from flax import nnx

    from jaxticket.models import from_nnx

    class Net(nnx.Module):
        def __init__(self, *, rngs):
            self.l1 = nnx.Linear(3, 6, rngs=rngs)
            self.bn = nnx.BatchNorm(6, rngs=rngs)
            self.l2 = nnx.Linear(6, 2, rngs=rngs)

        def __call__(self, x):
            return self.l2(jax.nn.relu(self.bn(self.l1(x))))

    model = from_nnx(lambda rngs: Net(rngs=rngs), input_shape=(3,), num_classes=2)
    params, state = model.init(jax.random.key(0))
    apply_fn = lambda p, x: model.apply(p, state, x, train=False, key=None)[0]
    scores = synflow(apply_fn, model.input_shape)(params)
    # Eval mode at init (running mean 0, var 1): bn(h) = h / sqrt(1 + eps) · |scale| + |bias|.
    a = lambda x: np.abs(np.asarray(x, np.float64))
    h = a(params["l1"]["kernel"]).sum(0) + a(params["l1"]["bias"])
    z = h / np.sqrt(1.0 + 1e-5) * a(params["bn"]["scale"]) + a(params["bn"]["bias"])
    want = a(params["l2"]["kernel"]) * np.maximum(z, 0.0)[:, None]
    np.testing.assert_allclose(np.asarray(scores["l2"]["kernel"]), want, rtol=1e-5)
    mask = synflow_prune(apply_fn, model.input_shape, params, dense_mask(params), 0.75, rounds=4)
    assert sum(int(np.sum(m)) for m in jax.tree.leaves(mask)) == 30 - np_pruned_count(0.75, 30)


def test_an_equal_fresh_apply_fn_reuses_the_compiled_loop():
    # The compiled loop is keyed by the apply_fn's value, not its identity: a notebook
    # cell that builds a new, equal lambda must not compile again.
    from compile_probes import count_compiles

    params = make_params(21)
    mask = dense_mask(params)

    def prune():
        fresh = lambda p, x: mlp(p, x)  # noqa: E731 (a new object each call)
        return synflow_prune(fresh, (3,), params, mask, 0.5, rounds=4)

    first = prune()
    with count_compiles() as compiles:
        again = prune()
    assert compiles[0] == 0
    for k in LAYERS:
        np.testing.assert_array_equal(np.asarray(first[k]["w"]), np.asarray(again[k]["w"]))
