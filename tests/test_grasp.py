"""GraSP against an explicit Hessian: ``jax.hessian`` (forward-over-reverse on the
flattened parameter vector, a full matrix) of a separately written loss, in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxticket.masks import dense_mask
from jaxticket.pruning.grasp import grasp, grasp_loss, grasp_pruner


def mlp(params, x):
    h = jnp.tanh(x @ params["l1"]["w"] + params["l1"]["b"])
    return h @ params["l2"]["w"] + params["l2"]["b"]


def make_params(seed, dtype=jnp.float32):
    r = np.random.default_rng(seed)
    p = {
        "l1": {"w": r.normal(size=(4, 3)), "b": r.normal(size=(3,)) * 0.3},
        "l2": {"w": r.normal(size=(3, 2)), "b": r.normal(size=(2,)) * 0.3},
    }
    # float32-representable values, so float32 and float64 params hold the same numbers
    return jax.tree.map(lambda a: jnp.asarray(a.astype(np.float32), dtype), p)


R = np.random.default_rng(7)
X = R.normal(size=(5, 4)).astype(np.float32)
Y = np.array([0, 1, 1, 0, 1], np.int32)
BATCH = (jnp.asarray(X), jnp.asarray(Y))
T = 2.0  # a small temperature keeps Hg well above float32 noise; T=200 is checked separately
PARAMS = make_params(0)


SHAPES = (("l1", "w", (4, 3)), ("l1", "b", (3,)), ("l2", "w", (3, 2)), ("l2", "b", (2,)))


def unflat(theta):
    """Flat vector -> params dict, in ``ravel_pytree``'s (sorted-key) order."""
    out, i = {"l1": {}, "l2": {}}, 0
    for layer, name, shape in sorted(SHAPES):
        n = int(np.prod(shape))
        out[layer][name] = theta[i : i + n].reshape(shape)
        i += n
    return out


def ref_loss(theta, x, y, temperature):
    logits = mlp(unflat(theta), x) / temperature
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(logp[jnp.arange(y.shape[0]), y])


# one compiled program each for every temperature and mask (they are arguments)
REF_HESSIAN = jax.jit(jax.hessian(ref_loss))
REF_GRAD = jax.jit(jax.grad(ref_loss))


def reference_scores(params, mask, temperature):
    """w ⊙ Hg (minus the paper's score) by an explicit float64 Hessian matrix."""
    theta = flat(params)
    m = (
        np.ones(theta.shape)
        if mask is None
        else flat(
            jax.tree.map(
                lambda mm, a: np.ones(a.shape) if mm is None else mm,
                mask,
                params,
                is_leaf=lambda v: v is None,
            )
        )
    )
    theta = theta * m
    with jax.enable_x64(True):
        args = (jnp.asarray(theta), jnp.asarray(X, jnp.float64), jnp.asarray(Y), temperature)
        H = np.asarray(REF_HESSIAN(*args))
        g = np.asarray(REF_GRAD(*args)) * m
    return theta * (H @ g)


@pytest.fixture(scope="module")
def ref_dense():
    return reference_scores(PARAMS, None, T)


def flat(tree):
    return np.asarray(ravel_pytree(jax.tree.map(lambda a: np.asarray(a, np.float64), tree))[0])


CRIT = grasp(grasp_loss(mlp, temperature=T))


def test_scores_match_explicit_hessian(ref_dense):
    expected = ref_dense
    got = CRIT(PARAMS, batch=BATCH)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(got))
    scale = np.max(np.abs(expected))
    assert scale > 1e-3
    np.testing.assert_allclose(flat(got), expected, rtol=1e-4, atol=1e-5 * scale)


def test_paper_temperature_200():
    expected = reference_scores(PARAMS, None, 200.0)
    got = grasp(grasp_loss(mlp))(PARAMS, batch=BATCH)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(flat(got), expected, rtol=1e-3, atol=1e-4 * scale)


def test_float64_params_give_float64_scores(ref_dense):
    with jax.enable_x64(True):
        p64 = make_params(0, jnp.float64)
        got = jax.jit(lambda p, b: CRIT(p, batch=b))(p64, (jnp.asarray(X, jnp.float64), BATCH[1]))
        assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves(got))
        got = flat(got)
    np.testing.assert_allclose(got, ref_dense, rtol=1e-9, atol=1e-12)


def _mask():
    r = np.random.default_rng(3)
    return {
        "l1": {"w": jnp.asarray(r.random((4, 3)) < 0.6), "b": None},
        "l2": {"w": jnp.asarray(r.random((3, 2)) < 0.6), "b": None},
    }


def test_masked_scores_use_the_pruned_network_and_pruned_score_zero():
    mask = _mask()
    got = CRIT(PARAMS, mask=mask, batch=BATCH)
    for name in ("l1", "l2"):
        dead = ~np.asarray(mask[name]["w"])
        assert dead.any()
        assert np.all(np.asarray(got[name]["w"])[dead] == 0.0)
    expected = reference_scores(PARAMS, mask, T)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(flat(got), expected, rtol=1e-4, atol=1e-5 * scale)


def test_missing_batch_names_the_criterion():
    with pytest.raises(ValueError, match="grasp criterion: pass batch="):
        CRIT(PARAMS)


def test_bad_temperature_and_loss():
    for t in (0.0, -1.0, float("nan"), "200", True):
        with pytest.raises(ValueError, match="grasp_loss: temperature"):
            grasp_loss(mlp, temperature=t)
    with pytest.raises(TypeError, match="grasp: loss_fn must be callable"):
        grasp(None)


def test_jit_and_vmap_match_eager():
    mask = _mask()
    eager = CRIT(PARAMS, mask=mask, batch=BATCH)
    jitted = jax.jit(lambda p, m, b: CRIT(p, mask=m, batch=b))(PARAMS, mask, BATCH)
    np.testing.assert_allclose(flat(jitted), flat(eager), rtol=1e-5, atol=1e-7)
    other = make_params(1)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), PARAMS, other)
    batched = jax.jit(jax.vmap(lambda p: CRIT(p, batch=BATCH)))(stacked)
    for i, p in enumerate((PARAMS, other)):
        one = jax.tree.map(lambda a, i=i: a[i], batched)
        np.testing.assert_allclose(flat(one), flat(CRIT(p, batch=BATCH)), rtol=1e-5, atol=1e-7)


def test_pruner_removes_the_largest_paper_scores(ref_dense):
    ref = unflat(-ref_dense)  # the paper's score −w ⊙ Hg
    mask = dense_mask(PARAMS)
    prunable = [k for k in ("l1", "l2") if mask[k]["w"] is not None]
    assert prunable == ["l1", "l2"] and mask["l1"]["b"] is None
    paper = np.concatenate([np.asarray(ref[k]["w"]).ravel() for k in prunable])
    n_prune = round(0.5 * paper.size)
    order = np.argsort(-paper)  # largest paper score first
    # the cut is not a near-tie, so float32 ranking agrees with the float64 reference
    assert paper[order[n_prune - 1]] - paper[order[n_prune]] > 1e-4 * np.max(np.abs(paper))
    want = np.ones(paper.size, bool)
    want[order[:n_prune]] = False
    new = grasp_pruner(grasp_loss(mlp, temperature=T), min_keep=0)(
        PARAMS, mask, sparsity=0.5, batch=BATCH
    )
    got = np.concatenate([np.asarray(new[k]["w"]).ravel() for k in prunable])
    np.testing.assert_array_equal(got, want)
    assert new["l1"]["b"] is None and new["l2"]["b"] is None
