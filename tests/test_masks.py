"""Tests for jaxticket.masks: creation, application, statistics, algebra and validation of
masks on plain dicts, Flax Linen params and Flax NNX ``State``, eagerly, under jit and vmap."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import param_trees, params_and_masks
from flax import nnx
from hypothesis import given, settings

from jaxticket import masks as jm
from jaxticket._paths import leaves_with_paths

is_none = lambda x: x is None


def mlp_params(dtype=jnp.float32):
    """A small named MLP: two hidden layers and an output layer, each with kernel and bias."""
    # numpy draws: eager jax.random would compile once per shape and dominate the runtime.
    rng = np.random.default_rng(0)
    shapes = {"l1": (6, 5), "l2": (5, 4), "output": (4, 3)}
    return {
        name: {
            "kernel": jnp.asarray(rng.standard_normal(shape), dtype),
            "bias": jnp.ones(shape[1:], dtype),
        }
        for name, shape in shapes.items()
    }


def random_mask(params, seed=0, p=0.5, **kwargs):
    """A random mask (each weight alive with probability ``p``) for the prunable leaves of
    ``params`` as ``dense_mask(params, **kwargs)`` chooses them."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < p),
        jm.dense_mask(params, **kwargs),
        is_leaf=is_none,
    )


def np_leaves(mask):
    """The prunable leaves of ``mask`` as numpy bool arrays, in flattening order."""
    return [np.asarray(m) for m in jax.tree.leaves(mask) if m is not None]


def paths(tree):
    return [p for p, _ in leaves_with_paths(tree, keep_none=True)]


class Mlp(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 5, rngs=rngs)
        self.norm = nnx.LayerNorm(5, rngs=rngs)
        self.output = nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        return self.output(self.norm(self.l1(x)))


class LinenMlp(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(5, name="l1")(x))
        return nn.Dense(3, name="output")(x)


def nnx_params():
    model = Mlp(nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return graphdef, params, rest


# --------------------------------------------------------------------------------------
# dense_mask


def test_default_prunable_is_ndim_at_least_two():
    assert not jm.default_prunable("b", jnp.ones(()))
    assert not jm.default_prunable("b", jnp.ones((3,)))
    assert jm.default_prunable("k", jnp.ones((3, 2)))
    assert jm.default_prunable("k", jnp.ones((3, 3, 2, 4)))


@given(param_trees())
def test_dense_mask_default_is_all_true_on_matrices_none_elsewhere(params):
    mask = jm.dense_mask(params)
    assert paths(mask) == paths(params)
    for (path, m), (_, p) in zip(
        leaves_with_paths(mask, keep_none=True), leaves_with_paths(params), strict=True
    ):
        if p.ndim >= 2:
            assert m.dtype == jnp.bool_ and m.shape == p.shape, path
            assert np.asarray(m).all(), path
        else:
            assert m is None, path


def test_dense_mask_predicate_gets_path_and_leaf():
    params = mlp_params()
    seen = {}

    def only_l2_and_biases(path, leaf):
        seen[path] = jnp.shape(leaf)
        return path.startswith("l2/") or leaf.ndim == 1

    mask = jm.dense_mask(params, prunable=only_l2_and_biases)
    assert seen == {p: jnp.shape(x) for p, x in leaves_with_paths(params)}
    assert sorted(jm.alive_by_leaf(mask)) == ["l1/bias", "l2/bias", "l2/kernel", "output/bias"]
    assert mask["l1"]["kernel"] is None and mask["output"]["kernel"] is None
    assert mask["l1"]["bias"].shape == (5,) and np.asarray(mask["l1"]["bias"]).all()


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, ["l1/kernel", "l2/kernel", "output/kernel"]),
        ({"exclude": "output/*"}, ["l1/kernel", "l2/kernel"]),
        ({"exclude": ["output/*", "l1/kernel"]}, ["l2/kernel"]),
        ({"include": "l1/*"}, ["l1/kernel"]),  # the bias still fails the ndim predicate
        ({"include": ["l*"], "exclude": "l2/*"}, ["l1/kernel"]),
        ({"include": "*kernel", "exclude": "*/bias"}, ["l1/kernel", "l2/kernel", "output/kernel"]),
        ({"include": "*", "prunable": lambda p, x: True}, None),  # everything, biases too
    ],
)
def test_dense_mask_include_exclude(kwargs, expected):
    params = mlp_params()
    mask = jm.dense_mask(params, **kwargs)
    if expected is None:
        expected = [p for p, _ in leaves_with_paths(params)]
    assert sorted(jm.alive_by_leaf(mask)) == sorted(expected)
    assert paths(mask) == paths(params)


def test_dense_mask_star_crosses_slashes():
    params = {
        "block": {"inner": {"kernel": jnp.ones((2, 2))}},
        "head": {"kernel": jnp.ones((2, 2))},
    }
    mask = jm.dense_mask(params, exclude="block*")
    assert mask["block"]["inner"]["kernel"] is None
    assert mask["head"]["kernel"] is not None


def test_dense_mask_no_prunable_leaves_lists_paths():
    params = {"l1": {"bias": jnp.ones((3,))}, "scale": jnp.ones((4,))}
    with pytest.raises(ValueError, match="no prunable leaves") as info:
        jm.dense_mask(params)
    assert "l1/bias" in str(info.value) and "scale" in str(info.value)
    with pytest.raises(ValueError, match="output/kernel"):
        jm.dense_mask(mlp_params(), include="nothing*")
    with pytest.raises(ValueError, match="no prunable leaves"):
        jm.dense_mask(mlp_params(), exclude="*")


@pytest.mark.parametrize("bad", ["relu", 1.0, 3, object()])
def test_dense_mask_non_array_leaf_names_path(bad):
    params = {"l1": {"kernel": jnp.ones((2, 2)), "act": bad}}
    with pytest.raises(TypeError, match="l1/act"):
        jm.dense_mask(params)


def test_none_params_leaf_stays_none():
    # An absent bias stored as ``None`` must survive dense_mask -> apply_mask.
    params = {"l1": {"kernel": jnp.full((2, 3), 2.0), "bias": None}}
    mask = jm.dense_mask(params)
    assert mask["l1"]["bias"] is None
    mask = jm.mask_not(mask)
    out = jm.apply_mask(params, mask)
    assert out["l1"]["bias"] is None
    np.testing.assert_array_equal(out["l1"]["kernel"], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="l1/bias"):
        jm.validate_mask(
            {"l1": {"kernel": mask["l1"]["kernel"], "bias": jnp.ones((3,), bool)}}, params
        )


# --------------------------------------------------------------------------------------
# apply_mask


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_apply_mask_preserves_dtype_and_zeroes_pruned(dtype):
    params = jax.tree.map(lambda x: x + 3.0, mlp_params(dtype))  # no accidental zeros
    mask = random_mask(params, seed=1)
    out = jm.apply_mask(params, mask)
    for (path, m), (_, p), (_, o) in zip(
        leaves_with_paths(mask, keep_none=True),
        leaves_with_paths(params),
        leaves_with_paths(out),
        strict=True,
    ):
        assert o.dtype == dtype and o.shape == p.shape, path
        p32, o32 = np.asarray(p, np.float32), np.asarray(o, np.float32)
        if m is None:
            np.testing.assert_array_equal(o32, p32)
        else:
            m = np.asarray(m)
            assert 0 < m.sum() < m.size, path  # the seed prunes some but not all
            np.testing.assert_array_equal(o32 == 0, ~m)
            np.testing.assert_array_equal(o32[m], p32[m])


@given(params_and_masks())
def test_apply_mask_matches_numpy(case):
    params, (mask,) = case
    out = jm.apply_mask(params, mask)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    for m, p, o in zip(
        jax.tree.leaves(mask, is_leaf=is_none),
        jax.tree.leaves(params),
        jax.tree.leaves(out),
        strict=True,
    ):
        expected = np.asarray(p) if m is None else np.where(np.asarray(m), np.asarray(p), 0.0)
        assert o.dtype == p.dtype
        np.testing.assert_array_equal(np.asarray(o), expected)
    # Idempotent: masking twice is masking once.
    trees_equal(jm.apply_mask(out, mask), out)


def trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        if np.issubdtype(x.dtype, np.floating):  # jit may reassociate float division
            np.testing.assert_allclose(x, y, rtol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------
# statistics


@given(params_and_masks())
def test_counts_and_fractions_match_numpy(case):
    params, (mask,) = case
    leaves = np_leaves(mask)
    alive = sum(int(m.sum()) for m in leaves)
    total = sum(m.size for m in leaves)
    assert int(jm.count_alive(mask)) == alive
    assert jm.count_alive(mask).dtype == jnp.int32
    assert jm.count_total(mask) == total and isinstance(jm.count_total(mask), int)
    assert jm.count_total(mask) == jm.count_total(jm.dense_mask(params))
    np.testing.assert_allclose(jm.sparsity(mask), 1 - alive / total, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jm.density(mask), alive / total, rtol=1e-6)
    np.testing.assert_allclose(jm.sparsity(mask) + jm.density(mask), 1.0, rtol=1e-6)


@given(params_and_masks())
def test_per_leaf_statistics_match_numpy(case):
    params, (mask,) = case
    expected = {path: np.asarray(m) for path, m in leaves_with_paths(mask) if m is not None}
    by_leaf, alive = jm.sparsity_by_leaf(mask), jm.alive_by_leaf(mask)
    assert set(by_leaf) == set(alive) == set(expected)
    for path, m in expected.items():
        assert "value" not in path and path.split("/")[-1].startswith("w")
        np.testing.assert_allclose(by_leaf[path], 1 - m.mean(), rtol=1e-6, atol=1e-7)
        assert int(alive[path]) == int(m.sum())
    assert sum(int(a) for a in alive.values()) == int(jm.count_alive(mask))


def test_per_leaf_keys_are_readable_paths():
    mask = random_mask(mlp_params(), seed=3)
    assert sorted(jm.sparsity_by_leaf(mask)) == ["l1/kernel", "l2/kernel", "output/kernel"]
    assert sorted(jm.alive_by_leaf(mask)) == ["l1/kernel", "l2/kernel", "output/kernel"]


def test_all_pruned_mask():
    mask = jm.mask_not(jm.dense_mask(mlp_params()))
    assert int(jm.count_alive(mask)) == 0
    assert float(jm.sparsity(mask)) == 1.0 and float(jm.density(mask)) == 0.0
    assert all(float(s) == 1.0 for s in jm.sparsity_by_leaf(mask).values())


# --------------------------------------------------------------------------------------
# algebra and overlap


@given(params_and_masks(n_masks=2))
def test_mask_algebra_matches_numpy(case):
    params, (a, b) = case
    na, nb = np_leaves(a), np_leaves(b)
    for op, np_op in [(jm.mask_and, np.logical_and), (jm.mask_or, np.logical_or)]:
        out = op(a, b)
        assert paths(out) == paths(a)
        assert jax.tree.structure(out, is_leaf=is_none) == jax.tree.structure(a, is_leaf=is_none)
        for o, x, y in zip(np_leaves(out), na, nb, strict=True):
            assert o.dtype == np.bool_
            np.testing.assert_array_equal(o, np_op(x, y))
    for o, x in zip(np_leaves(jm.mask_not(a)), na, strict=True):
        np.testing.assert_array_equal(o, ~x)

    inter = sum(int((x & y).sum()) for x, y in zip(na, nb, strict=True))
    union = sum(int((x | y).sum()) for x, y in zip(na, nb, strict=True))
    differ = sum(int((x ^ y).sum()) for x, y in zip(na, nb, strict=True))
    total = sum(x.size for x in na)
    np.testing.assert_allclose(jm.jaccard(a, b), inter / union if union else 1.0, rtol=1e-6)
    np.testing.assert_allclose(jm.jaccard(a, b), jm.jaccard(b, a), rtol=1e-6)
    np.testing.assert_allclose(jm.hamming(a, b), differ / total, rtol=1e-6)
    np.testing.assert_allclose(jm.hamming(a, b), jm.hamming(b, a), rtol=1e-6)

    assert float(jm.jaccard(a, a)) == 1.0
    assert float(jm.hamming(a, a)) == 0.0
    assert float(jm.hamming(a, jm.mask_not(a))) == 1.0
    assert int(jm.count_alive(jm.mask_and(a, jm.mask_not(a)))) == 0
    assert int(jm.count_alive(jm.mask_or(a, jm.mask_not(a)))) == total
    # De Morgan.
    trees_equal(jm.mask_not(jm.mask_and(a, b)), jm.mask_or(jm.mask_not(a), jm.mask_not(b)))


def test_jaccard_of_empty_masks_is_one():
    empty = jm.mask_not(jm.dense_mask(mlp_params()))
    assert float(jm.jaccard(empty, empty)) == 1.0
    assert float(jm.jaccard(empty, jm.mask_not(empty))) == 0.0


def test_binary_ops_reject_mismatched_masks():
    params = mlp_params()
    a = jm.dense_mask(params)
    b = jm.dense_mask(params, exclude="l2/*")
    for op in [jm.mask_and, jm.mask_or, jm.jaccard, jm.hamming]:
        with pytest.raises(ValueError, match="l2/kernel"):
            op(a, b)
    small = jm.dense_mask({**params, "l1": {**params["l1"], "kernel": jnp.ones((2, 5))}})
    with pytest.raises(ValueError, match="l1/kernel.*shape"):
        jm.mask_and(a, small)
    missing = {k: v for k, v in a.items() if k != "output"}
    with pytest.raises(ValueError, match="output/kernel"):
        jm.mask_or(a, missing)


# --------------------------------------------------------------------------------------
# validate_mask


def test_validate_mask_accepts_matching_masks():
    params = mlp_params()
    jm.validate_mask(jm.dense_mask(params), params)
    jm.validate_mask(random_mask(params, seed=4, exclude="output/*"), params)
    # numpy bool leaves are fine too.
    jm.validate_mask(jax.tree.map(np.asarray, jm.dense_mask(params)), params)


def test_validate_mask_missing_leaf():
    params = mlp_params()
    mask = jm.dense_mask(params)
    del mask["l2"]
    with pytest.raises(ValueError, match=r"only in the params.*l2/kernel"):
        jm.validate_mask(mask, params)
    with pytest.raises(ValueError, match="l2/kernel"):
        jm.apply_mask(params, mask)


def test_validate_mask_extra_leaf():
    params = mlp_params()
    mask = jm.dense_mask(params)
    mask["l3"] = {"kernel": jnp.ones((2, 2), bool)}
    with pytest.raises(ValueError, match=r"only in the mask.*l3/kernel"):
        jm.validate_mask(mask, params)


def test_validate_mask_shape_mismatch():
    params = mlp_params()
    mask = jm.dense_mask(params)
    mask["l2"]["kernel"] = jnp.ones((4, 5), bool)  # transposed
    with pytest.raises(ValueError, match=r"l2/kernel.*\(4, 5\).*\(5, 4\)"):
        jm.validate_mask(mask, params)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.float32, jnp.uint8])
def test_validate_mask_non_bool_dtype(dtype):
    params = mlp_params()
    mask = jm.dense_mask(params)
    mask["output"]["kernel"] = mask["output"]["kernel"].astype(dtype)
    with pytest.raises(TypeError, match="output/kernel.*bool"):
        jm.validate_mask(mask, params)
    with pytest.raises(TypeError, match="output/kernel"):
        jm.apply_mask(params, mask)


def test_validate_mask_non_array_leaves():
    params = mlp_params()
    mask = jm.dense_mask(params)
    mask["l1"]["kernel"] = True
    with pytest.raises(TypeError, match="l1/kernel"):
        jm.validate_mask(mask, params)
    params["l2"]["kernel"] = "weights"
    with pytest.raises(TypeError, match="l2/kernel"):
        jm.validate_mask(jm.dense_mask(mlp_params()), params)


def test_validate_mask_container_mismatch():
    _, params, _ = nnx_params()
    dict_mask = jm.dense_mask(nnx.to_pure_dict(params))
    assert paths(dict_mask) == paths(jm.dense_mask(params))  # same paths, other containers
    with pytest.raises(ValueError, match="State"):
        jm.validate_mask(dict_mask, params)
    with pytest.raises(ValueError, match="State"):
        jm.apply_mask(params, dict_mask)
    with pytest.raises(ValueError, match="'a'.*list.*tuple"):
        jm.validate_mask({"a": [jnp.ones((2, 2), bool)]}, {"a": (jnp.ones((2, 2)),)})
    with pytest.raises(ValueError, match="mask_and"):
        jm.mask_and(dict_mask, jm.dense_mask(params))


# --------------------------------------------------------------------------------------
# jit and vmap


def test_everything_works_under_jit():
    params = mlp_params()
    a, b = random_mask(params, seed=5), random_mask(params, seed=6)
    dense = jax.jit(lambda p: jm.dense_mask(p, exclude="output/*"))(params)
    assert dense["output"]["kernel"] is None and dense["l1"]["bias"] is None
    trees_equal(dense, jm.dense_mask(params, exclude="output/*"))

    def check(fn, *args):
        trees_equal(jax.jit(fn)(*args), fn(*args))

    check(jm.apply_mask, params, a)
    for fn in [jm.count_alive, jm.sparsity, jm.density]:
        check(fn, a)
    assert int(jax.jit(jm.count_total)(a)) == jm.count_total(a) == 6 * 5 + 5 * 4 + 4 * 3
    for fn in [jm.sparsity_by_leaf, jm.alive_by_leaf, jm.mask_not]:
        check(fn, a)
    for fn in [jm.mask_and, jm.mask_or, jm.jaccard, jm.hamming]:
        check(fn, a, b)
    assert sorted(jax.jit(jm.sparsity_by_leaf)(a)) == sorted(jm.sparsity_by_leaf(a))
    jax.jit(jm.validate_mask)(a, params)
    bad = {**a, "l1": {**a["l1"], "kernel": a["l1"]["kernel"].T}}
    with pytest.raises(ValueError, match="l1/kernel"):
        jax.jit(jm.apply_mask)(params, bad)


def np_overlap(a, b):
    """(jaccard, hamming) of two masks by numpy set arithmetic on their prunable entries."""
    x = np.concatenate([m.ravel() for m in np_leaves(a)])
    y = np.concatenate([m.ravel() for m in np_leaves(b)])
    union = (x | y).sum()
    return ((x & y).sum() / union if union else 1.0), (x ^ y).mean()


def test_vmap_over_stacked_masks():
    params = mlp_params()
    masks = [random_mask(params, seed=s, p=0.2 + 0.2 * s) for s in range(4)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *masks)
    assert stacked["l1"]["bias"] is None and stacked["l1"]["kernel"].shape == (4, 6, 5)
    density = [np.concatenate([m.ravel() for m in np_leaves(mask)]).mean() for mask in masks]

    # Eager vmap for the global fraction; jit(vmap(...)) for the rest (one compile each).
    np.testing.assert_allclose(jax.vmap(jm.sparsity)(stacked), 1 - np.array(density), rtol=1e-6)
    vmap = lambda fn, **kw: jax.jit(jax.vmap(fn, **kw))
    np.testing.assert_allclose(vmap(jm.density)(stacked), density, rtol=1e-6)
    np.testing.assert_array_equal(
        vmap(jm.count_alive)(stacked), [sum(m.sum() for m in np_leaves(x)) for x in masks]
    )
    by_leaf = vmap(jm.sparsity_by_leaf)(stacked)
    for path in ["l1/kernel", "l2/kernel", "output/kernel"]:
        name = path.split("/")[0]
        expected = [1 - np.asarray(m[name]["kernel"]).mean() for m in masks]
        np.testing.assert_allclose(by_leaf[path], expected, rtol=1e-6)

    # Overlap of every mask with the first, batched on both sides or on one.
    jaccard, hamming = np.array([np_overlap(masks[0], m) for m in masks]).T
    first = jax.tree.map(lambda x: jnp.broadcast_to(x[0], x.shape), stacked)
    np.testing.assert_allclose(jax.vmap(jm.jaccard)(first, stacked), jaccard, rtol=1e-6)
    np.testing.assert_allclose(
        vmap(jm.jaccard, in_axes=(None, 0))(masks[0], stacked), jaccard, rtol=1e-6
    )
    np.testing.assert_allclose(
        vmap(jm.hamming, in_axes=(None, 0))(masks[0], stacked), hamming, rtol=1e-6
    )
    assert jaccard[0] == 1.0 and 0 < jaccard[1:].max() < 1

    # One params tree, four masks: four masked copies.
    out = vmap(jm.apply_mask, in_axes=(None, 0))(params, stacked)
    for name in ["l1", "l2", "output"]:
        np.testing.assert_array_equal(
            out[name]["bias"],
            np.broadcast_to(params[name]["bias"], (4, *params[name]["bias"].shape)),
        )
        for i, m in enumerate(masks):
            np.testing.assert_array_equal(
                out[name]["kernel"][i], np.where(m[name]["kernel"], params[name]["kernel"], 0)
            )


@settings(max_examples=5)  # every example compiles afresh
@given(params_and_masks(n_masks=4))
def test_jit_vmap_on_random_trees(case):
    params, masks = case
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *masks)
    density = [np.concatenate([m.ravel() for m in np_leaves(mask)]).mean() for mask in masks]
    jaccard = [np_overlap(masks[0], m)[0] for m in masks]
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jm.sparsity))(stacked), 1 - np.array(density), rtol=1e-6, atol=1e-7
    )
    np.testing.assert_allclose(
        jax.jit(jax.vmap(jm.jaccard, in_axes=(None, 0)))(masks[0], stacked), jaccard, rtol=1e-6
    )


# --------------------------------------------------------------------------------------
# containers: Flax Linen params and NNX State


def test_linen_params():
    params = LinenMlp().init(jax.random.key(0), jnp.ones((1, 6)))["params"]
    mask = jm.dense_mask(params, exclude="output/*")
    assert sorted(jm.alive_by_leaf(mask)) == ["l1/kernel"]
    mask = random_mask(params, seed=7, exclude="output/*")
    out = jm.apply_mask(params, mask)
    assert type(out) is type(params)
    assert jax.tree.structure(out) == jax.tree.structure(params)
    np.testing.assert_array_equal(
        np.asarray(out["l1"]["kernel"]) == 0, ~np.asarray(mask["l1"]["kernel"])
    )
    trees_equal(out["output"], params["output"])
    y = LinenMlp().apply({"params": out}, jnp.ones((2, 6)))
    assert y.shape == (2, 3)
    np.testing.assert_allclose(jm.density(mask), np.asarray(mask["l1"]["kernel"]).mean(), rtol=1e-6)


def test_nnx_state():
    graphdef, params, rest = nnx_params()
    mask = jm.dense_mask(params)
    assert isinstance(mask, nnx.State)
    assert sorted(jm.alive_by_leaf(mask)) == ["l1/kernel", "output/kernel"]
    assert all("value" not in p for p in paths(mask))
    assert {"l1/bias", "norm/scale", "norm/bias"} <= set(paths(mask))

    mask = random_mask(params, seed=8)
    out = jm.apply_mask(params, mask)
    assert type(out) is type(params)
    kernel = np.asarray(out["l1"]["kernel"][...])
    np.testing.assert_array_equal(kernel == 0, ~np.asarray(mask["l1"]["kernel"][...]))
    np.testing.assert_array_equal(out["norm"]["scale"][...], params["norm"]["scale"][...])
    model = nnx.merge(graphdef, out, rest)
    np.testing.assert_array_equal(np.asarray(model.l1.kernel[...]), kernel)
    assert model(jnp.ones((2, 6))).shape == (2, 3)

    sparsity = jax.jit(jm.sparsity)(mask)
    np.testing.assert_allclose(
        sparsity, 1 - float(jm.count_alive(mask)) / (6 * 5 + 5 * 3), rtol=1e-6
    )
    assert type(jax.jit(jm.apply_mask)(params, mask)) is type(params)
    np.testing.assert_allclose(jm.hamming(mask, jm.mask_not(mask)), 1.0)

    bad = random_mask(params, seed=8)
    bad["output"]["kernel"] = nnx.Param(jnp.ones((3, 5), bool))
    with pytest.raises(ValueError, match="'output/kernel'"):
        jm.validate_mask(bad, params)


@pytest.mark.parametrize("container", ["dict", "linen", "nnx"])
def test_mask_roundtrip_per_container(container):
    if container == "dict":
        params = mlp_params()
    elif container == "linen":
        params = LinenMlp().init(jax.random.key(1), jnp.ones((1, 6)))["params"]
    else:
        params = nnx_params()[1]
    a, b = random_mask(params, seed=9), random_mask(params, seed=10)
    for m in [jm.mask_and(a, b), jm.mask_or(a, b), jm.mask_not(a)]:
        assert type(m) is type(params)
        jm.validate_mask(m, params)
    masked = jm.apply_mask(params, jm.mask_and(a, b))
    assert type(masked) is type(params)
    assert int(jm.count_alive(jm.mask_and(a, b))) == sum(
        int((np.asarray(x) != 0).sum())
        for x, m in zip(
            jax.tree.leaves(masked),
            jax.tree.leaves(jm.dense_mask(params), is_leaf=is_none),
            strict=True,
        )
        if m is not None
    )


@pytest.mark.parametrize("kwargs", [{"exclude": "out/*"}, {"include": ["l1/*", "nothing/*"]}])
def test_dense_mask_pattern_matching_no_leaf_is_an_error(kwargs):
    params = {"l1": {"kernel": jnp.ones((2, 3))}, "output": {"kernel": jnp.ones((3, 2))}}
    with pytest.raises(ValueError, match="matches no leaf path"):
        jm.dense_mask(params, **kwargs)
