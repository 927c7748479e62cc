"""Pruner: exact counts, masks only shrink, keys, jit/vmap, NNX State, every bad input.

Most tests select with ``_sorted_topk``, a one-sort reference that compiles quickly;
``topk_mask`` (the default) is checked to give identical masks and runs the vmap test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from topk_reference import sorted_topk as _sorted_topk

from jaxticket.masks import alive_by_leaf, count_alive, count_total, dense_mask
from jaxticket.pruning import (
    Pruner,
    global_,
    magnitude,
    magnitude_pruner,
    make_pruner,
    n_m,
    neurons,
    prune,
    random,
    random_pruner,
    snip_pruner,
    unstructured,
)

_REF = unstructured(topk=_sorted_topk)
# Tree layouts (1–4 prunable leaves, mixed shapes, with or without a bias) come from a fixed
# pool: every new layout costs a compilation, values, masks and rates are drawn freely.
_LAYOUTS = [
    ([(3, 4)], False),
    ([(5, 2), (3, 4)], True),
    ([(2, 3, 2), (5, 2), (3, 4)], False),
    ([(3, 4), (5, 2), (2, 3, 2), (3, 4)], True),
]


@st.composite
def _trees(draw):
    """A layout from the pool, random weights (maybe with ties), a random mask, a key."""
    shapes, with_bias = draw(st.sampled_from(_LAYOUTS))
    ties = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**30)))
    params, mask = {}, {}
    for i, shape in enumerate(shapes):
        w = rng.normal(size=shape).astype(np.float32)
        params[f"l{i}"] = {"kernel": jnp.asarray(np.round(w) if ties else w)}
        mask[f"l{i}"] = {"kernel": jnp.asarray(rng.random(shape) < 0.75)}
        if with_bias and i == 0:
            params[f"l{i}"]["bias"] = jnp.ones(shape[-1])
            mask[f"l{i}"]["bias"] = None
    return params, mask, jax.random.key(int(rng.integers(2**30)))


def _round_permille(permille, n):
    return (permille * n + 500) // 1000  # round half up of (permille/1000)·n, exactly


def _alive(mask):
    return {k: int(np.sum(v)) for k, v in alive_by_leaf(mask).items()}


def _same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def _subset(new, old):
    return all(
        not np.any(np.asarray(n) & ~np.asarray(o))
        for n, o in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True)
    )


@pytest.mark.filterwarnings("ignore::jaxticket.masks.LayerCollapseWarning")  # min_keep=0
@pytest.mark.filterwarnings("ignore:pruner. sparsity=.* is below the mask")  # asked on purpose
@settings(max_examples=25, deadline=None)
@given(_trees(), st.integers(0, 999), st.integers(0, 999))
def test_exact_counts_and_masks_only_shrink(tree, f_permille, s_permille):
    params, mask, key = tree
    f, s = f_permille / 1000, s_permille / 1000
    g = make_pruner(magnitude, "global", _REF, min_keep=0)(params, mask, fraction=f)
    lw = make_pruner(magnitude, "layerwise", _REF)(params, mask, fraction=f)
    gs = make_pruner(magnitude, "global", _REF)(params, mask, sparsity=s)
    r1 = make_pruner(random, "layerwise", _REF)(params, mask, fraction=f, key=key)
    r2 = make_pruner(random, "layerwise", _REF)(params, mask, fraction=f, key=key)
    before = _alive(mask)
    alive = sum(before.values())
    assert alive - sum(_alive(g).values()) == _round_permille(f_permille, alive)
    # min_keep=1 (the default): every leaf keeps a weight if it had one.
    after = _alive(lw)
    for path, n in before.items():
        assert after[path] == max(n - _round_permille(f_permille, n), min(n, 1)), path
    total = count_total(mask)
    reserved = sum(n > 0 for n in before.values())
    wanted = min(alive, total - _round_permille(s_permille, total))
    assert sum(_alive(gs).values()) == max(wanted, reserved)
    assert all(_alive(gs)[p] >= min(n, 1) for p, n in before.items())
    for new in (g, lw, gs, r1):
        assert _subset(new, mask)
        assert new["l0"].get("bias", None) is None
    assert _same(r1, r2)


def test_topk_mask_agrees_with_the_reference():
    rng = np.random.default_rng(1)
    params = {
        "a": jnp.asarray(np.round(rng.normal(size=(6, 5)) * 2), jnp.float32),  # many ties
        "b": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32),
    }
    mask = {"a": jnp.asarray(rng.random((6, 5)) < 0.8), "b": jnp.ones((4, 3), bool)}
    # Global: one top-k across both leaves (layerwise runs the same top-k once per leaf).
    real = magnitude_pruner("global")(params, mask, fraction=0.45)
    ref = make_pruner(magnitude, "global", _REF)(params, mask, fraction=0.45)
    assert _same(real, ref)


def test_global_keeps_the_largest_magnitudes():
    params = {"a": jnp.array([[1.0, -5.0], [3.0, 0.5]]), "b": jnp.array([[-4.0, 2.0]])}
    mask = dense_mask(params)
    new = prune(params, mask, fraction=0.5, selection=_REF)
    np.testing.assert_array_equal(new["a"], [[False, True], [True, False]])
    np.testing.assert_array_equal(new["b"], [[True, False]])


def test_lottery_rounds_one_compiled_function():
    # LeNet-300-100: hidden layers at 20% per round, output at 10% (scale 0.5).
    # Per layer with round half up: 235200 -> 188160 -> 150528 -> 120422 (30105.6 -> 30106),
    # 30000 -> 24000 -> 19200 -> 15360, 1000 -> 900 -> 810 -> 729; 136511/266200 = 51.3%.
    rng = np.random.default_rng(0)
    shapes = {"fc1": (784, 300), "fc2": (300, 100), "out": (100, 10)}
    params = {
        k: {"kernel": jnp.asarray(rng.normal(size=s), jnp.float32)} for k, s in shapes.items()
    }
    pruner = make_pruner(magnitude, "layerwise", _REF, scale={"out/*": 0.5})
    traces = []

    @jax.jit
    def round_(params, mask, fraction):
        traces.append(1)
        return pruner(params, mask, fraction=fraction)

    mask = dense_mask(params)
    for _ in range(3):
        mask = round_(params, mask, 0.2)
    assert len(traces) == 1
    alive = {k: int(v) for k, v in alive_by_leaf(mask).items()}
    assert alive == {"fc1/kernel": 120422, "fc2/kernel": 15360, "out/kernel": 729}
    assert round(int(count_alive(mask)) / 266200, 3) == 0.513


def test_vmap_over_keys_gives_different_masks():
    params = {"w": jnp.zeros((8, 8))}
    mask = dense_mask(params)
    keys = jax.random.split(jax.random.key(0), 4)
    masks = jax.vmap(lambda k: random_pruner()(params, mask, fraction=0.5, key=k))(keys)["w"]
    assert masks.shape == (4, 8, 8)
    assert (masks.sum(axis=(1, 2)) == 32).all()
    flat = {tuple(np.asarray(m).ravel()) for m in masks}
    assert len(flat) == 4


def test_snip_pruner_by_hand():
    # See test_criteria.test_snip_by_hand: scores [[3], [2]]; pruning half keeps W[0].
    def loss(params, batch):
        x, t = batch
        return 0.5 * jnp.sum((x @ params["w"] - t) ** 2)

    params = {"w": jnp.array([[3.0], [-1.0]])}
    batch = (jnp.array([[1.0, 2.0]]), jnp.array([[0.0]]))
    new = snip_pruner(loss, selection=_REF)(params, dense_mask(params), fraction=0.5, batch=batch)
    np.testing.assert_array_equal(new["w"], [[True], [False]])


def test_neurons_and_n_m_through_prune():
    params = {"w": jnp.arange(24.0).reshape(4, 6)}
    mask = dense_mask(params)
    new = prune(params, mask, fraction=0.5, selection=neurons(topk=_sorted_topk))["w"]
    np.testing.assert_array_equal(new.any(axis=0), [False] * 3 + [True] * 3)
    new = prune(params, mask, selection=n_m(2, 4))["w"]
    assert (new.sum(axis=0) == 2).all()


def test_erk_through_prune():
    params = {"a": jnp.ones((4, 4)), "b": jnp.ones((8, 4)), "c": jnp.ones((40, 10))}
    new = prune(params, dense_mask(params), sparsity=264 / 448, allocation="erk", selection=_REF)
    assert {k: int(v) for k, v in alive_by_leaf(new).items()} == {"a": 16, "b": 32, "c": 136}


def test_nnx_state():
    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(6, 5, rngs=rngs)
            self.out = nnx.Linear(5, 2, rngs=rngs)

    _, state, _ = nnx.split(MLP(nnx.Rngs(0)), nnx.Param, ...)
    mask = dense_mask(state)
    pruner = make_pruner(magnitude, "layerwise", _REF, scale={"out/*": 0.5})
    new = jax.jit(lambda s, m: pruner(s, m, fraction=0.4))(state, mask)
    assert type(new) is type(mask)
    assert {k: int(v) for k, v in alive_by_leaf(new).items()} == {
        "hidden/kernel": 18,  # 30 - 12
        "out/kernel": 8,  # 10 - round(0.2·10)
    }
    assert _subset(new, mask)


# ----- bad inputs ---------------------------------------------------------------------


def _simple():
    params = {"dense": {"kernel": jnp.ones((6, 3)), "bias": jnp.ones(3)}}
    return params, dense_mask(params)


@pytest.mark.parametrize(
    "kw", [{"fraction": 1.0}, {"fraction": -0.1}, {"sparsity": 1.0}, {"sparsity": -0.5}]
)
def test_rate_out_of_range(kw):
    params, mask = _simple()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        prune(params, mask, **kw)


def test_need_exactly_one_of_fraction_and_sparsity():
    params, mask = _simple()
    with pytest.raises(ValueError, match="exactly one"):
        prune(params, mask)
    with pytest.raises(ValueError, match="exactly one"):
        prune(params, mask, fraction=0.1, sparsity=0.5)


def test_nan_scores_name_the_leaf():
    params, mask = _simple()
    params["dense"]["kernel"] = params["dense"]["kernel"].at[2, 1].set(jnp.nan)
    with pytest.raises(ValueError, match="'dense/kernel'"):
        prune(params, mask, fraction=0.5)


def test_no_prunable_leaves():
    params = {"dense": {"kernel": jnp.ones((6, 3)), "bias": jnp.ones(3)}}
    mask = {"dense": {"kernel": None, "bias": None}}
    with pytest.raises(ValueError, match="no prunable leaves.*dense/kernel"):
        prune(params, mask, fraction=0.5)


def test_unknown_scale_pattern_names_it_and_the_paths():
    params, mask = _simple()
    with pytest.raises(ValueError, match=r"'output/\*'.*dense/kernel"):
        magnitude_pruner("layerwise", scale={"output/*": 0.5})(params, mask, fraction=0.2)


def test_n_m_indivisible_names_the_leaf():
    params = {"dense": {"kernel": jnp.ones((3, 4))}}
    with pytest.raises(ValueError, match="'dense/kernel'"):
        prune(params, dense_mask(params), selection=n_m(2, 4))


def test_bad_names_and_scale_without_layerwise():
    params, mask = _simple()
    with pytest.raises(ValueError, match="unknown allocation 'glob'"):
        prune(params, mask, fraction=0.2, allocation="glob")
    with pytest.raises(ValueError, match="unknown selection"):
        prune(params, mask, fraction=0.2, selection="channels")
    with pytest.raises(ValueError, match="layerwise"):
        magnitude_pruner("global", scale={"dense/*": 0.5})
    with pytest.raises(ValueError, match="layerwise"):
        magnitude_pruner(global_(), scale={"dense/*": 0.5})


def test_scores_shape_mismatch_names_the_leaf():
    params, mask = _simple()
    bad = lambda p, **_: {"dense": {"kernel": jnp.ones((2, 2)), "bias": jnp.ones(3)}}
    with pytest.raises(ValueError, match="'dense/kernel'"):
        Pruner(bad, global_(), unstructured())(params, mask, fraction=0.2)


def test_custom_criterion_in_a_few_lines():
    def squared(params, **_):
        return jax.tree.map(jnp.square, params)

    params = {"w": jnp.array([[-3.0, 1.0, 2.0]])}
    new = Pruner(squared, global_(), _REF)(params, dense_mask(params), fraction=0.34)
    np.testing.assert_array_equal(new["w"], [[True, False, True]])
    assert magnitude(params)["w"][0, 0] == 3.0
