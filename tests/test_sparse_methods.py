"""The sparse-training methods' update functions, called directly under jax.jit.

Every expectation is computed independently in numpy / Python integers:

* counts follow the pruner's rounding rule (jaxticket/pruning/allocation.py): a fraction
  f of n is ``floor(F·n/10⁶ + 1/2)`` with ``F = round(f·10⁶)`` (f resolved to six
  decimals, round half up); layerwise a leaf keeps at least ``min_keep`` (1) weight,
  globally each leaf's best weight is reserved first. The schedule value is computed in
  float32 by optax, so when f·10⁶ lies within 0.2 of a half the reference accepts both
  neighbouring F;
* the drop-and-grow count is ``floor(F·alive/10⁶)`` (``jaxticket.sparse.floor_fraction``);
* which weights are kept / grown: numpy argsort on tie-free random values.

The param tree is a plain dict (no nnx) with ``None`` mask leaves (biases) and a conv
kernel. Compiled update functions are shared per method (``_jitted``).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxticket as jt
from jaxticket import sparse
from jaxticket.train.cache_key import fingerprint
from jaxticket.train.mask_update import UpdateInputs

SHAPES = {"dense1": (12, 10), "conv": (3, 3, 2, 4), "out": (10, 5)}
PRUNABLE = ["conv/kernel", "dense1/kernel", "out/kernel"]  # flattening order


def make_params(seed):
    rng = np.random.RandomState(seed)
    params = {}
    for name, shape in SHAPES.items():
        params[name] = {"kernel": jnp.asarray(rng.randn(*shape), jnp.float32)}
        if name != "conv":
            params[name]["bias"] = jnp.asarray(rng.randn(shape[-1]), jnp.float32)
    return params


def flat(tree):
    return {p: np.asarray(x) for p, x in jt.masks.leaves_with_paths(tree) if x is not None}


def inputs(step, params, mask, key=None, grad=None):
    key = jax.random.key(0) if key is None else key
    z = jnp.int32(0)
    return UpdateInputs(jnp.int32(step), z, params, None, None, mask, key, grad)


@functools.cache
def _jitted(method, steps=100, start_step=0):
    return jax.jit(method.mask_update(steps, start_step).fn)


def rate_candidates(x):
    """Possible F = round(f·10⁶) for f·10⁶ = x computed in float32."""
    lo = math.floor(x)
    if abs(x - lo - 0.5) < 0.2:
        return {lo, lo + 1}
    return {round(x)}


def rounded(f_big, n):
    return (f_big * n + 500_000) // 1_000_000


def zhu_gupta(s_i, s_f, t0, dt, n, t):
    return s_f + (s_i - s_f) * (1 - (min(max(t, t0), t0 + n * dt) - t0) / (n * dt)) ** 3


def top_by(scores, alive, k):
    """numpy reference: the k alive entries with the largest scores (tie-free input)."""
    s = np.where(alive, scores, -np.inf).ravel()
    out = np.zeros(s.size, bool)
    if k > 0:
        out[np.argsort(-s, kind="stable")[:k]] = True
    return out.reshape(scores.shape) & alive


# --------------------------------------------------------------------------------------
# GMP: exact counts at every update

GMP_CASES = [
    sparse.GMP(0.9, start=0, end=20, every=5),
    sparse.GMP(0.73, start=7, end=22, every=5, initial_sparsity=0.2, allocation="global"),
    sparse.GMP(0.8, start=3, end=18, every=5, scale=(("out/*", 0.5),)),
    sparse.GMP(0.6, start=10, end=10, schedule="one_shot", allocation="global"),
]


@settings(max_examples=6, deadline=None)
@given(case=st.integers(0, len(GMP_CASES) - 1), seed=st.integers(0, 2**16))
def test_gmp_sparsity_equals_target_count_at_every_update(case, seed):
    method = GMP_CASES[case]
    params = make_params(seed)
    w = flat(params)
    fn = _jitted(method)
    mask = method.initial_mask(params)
    method.check_start(mask)
    n_steps = len(method.steps) - 1
    for t in method.steps:
        mask = fn(inputs(t, params, mask))
        m = flat(mask)
        assert set(m) == set(PRUNABLE)  # biases stay None
        assert jax.tree.structure(mask, is_leaf=lambda x: x is None) == jax.tree.structure(
            method.initial_mask(params), is_leaf=lambda x: x is None
        )
        if method.schedule == "cubic":
            s = zhu_gupta(
                method.initial_sparsity,
                method.final_sparsity,
                method.start,
                method.every,
                n_steps,
                t,
            )
        else:
            s = method.final_sparsity
        if method.allocation == "layerwise":
            for path in PRUNABLE:
                factor = dict(method.scale).get("out/*", 1.0) if path.startswith("out") else 1.0
                n = m[path].size
                want = {min(rounded(f, n), n - 1) for f in rate_candidates(s * factor * 1e6)}
                pruned = n - int(m[path].sum())
                assert pruned in want, (t, path, pruned, want)
                np.testing.assert_array_equal(m[path], top_by(np.abs(w[path]), True, n - pruned))
        else:
            total = sum(x.size for x in m.values())
            want = {min(rounded(f, total), total - 3) for f in rate_candidates(s * 1e6)}
            pruned = total - sum(int(x.sum()) for x in m.values())
            assert pruned in want, (t, pruned, want)
            # reference: each leaf's best weight reserved, then the best of the rest
            reserved = {p: top_by(np.abs(w[p]), True, 1) for p in PRUNABLE}
            rest = np.concatenate(
                [np.where(reserved[p], -1.0, np.abs(w[p])).ravel() for p in PRUNABLE]
            )
            keep = np.zeros(rest.size, bool)
            keep[np.argsort(-rest, kind="stable")[: total - pruned - 3]] = True
            got = np.concatenate([m[p].ravel() for p in PRUNABLE])
            want_mask = keep | np.concatenate([reserved[p].ravel() for p in PRUNABLE])
            np.testing.assert_array_equal(got, want_mask)


# --------------------------------------------------------------------------------------
# drop and grow: SET, RigL, GraNet

SET_CASES = [
    sparse.SET(0.5, every=10, zeta=0.3),
    sparse.SET(0.8, every=10, zeta=0.5, allocation="erk"),
]
RIGL_CASES = [
    sparse.RigL(0.8, every=10),
    sparse.RigL(0.6, every=25, zeta=0.5, allocation="uniform"),
]


def drop_count(zeta, n):
    big = round(zeta * 1_000_000)
    return big * n // 1_000_000


@settings(max_examples=5, deadline=None)
@given(case=st.integers(0, 1), seed=st.integers(0, 2**16), key=st.integers(0, 2**16))
def test_set_keeps_alive_counts_and_drops_smallest(case, seed, key):
    method = SET_CASES[case]
    params = make_params(seed)
    mask0 = method.initial_mask(params, jax.random.key(key))
    method.check_start(mask0)
    # the weights of a sparse run: pruned entries are exactly 0
    params = jt.apply_mask(params, mask0)
    mask1 = _jitted(method)(inputs(10, params, mask0, key=jax.random.key(key + 1)))
    m0, m1, w = flat(mask0), flat(mask1), flat(params)
    assert set(m1) == set(PRUNABLE)
    for path in PRUNABLE:
        n = int(m0[path].sum())
        assert int(m1[path].sum()) == n, path
        kept = top_by(np.abs(w[path]), m0[path], n - drop_count(method.zeta, n))
        assert np.all(m1[path][kept]), path  # the drop took exactly the smallest |w|
    again = _jitted(method)(inputs(10, params, mask0, key=jax.random.key(key + 1)))
    assert all(np.array_equal(a, b) for a, b in zip(flat(again).values(), m1.values(), strict=True))


@settings(max_examples=5, deadline=None)
@given(case=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_rigl_grows_exactly_the_largest_gradients(case, seed):
    method = RIGL_CASES[case]
    params = make_params(seed)
    grad = make_params(seed + 1)
    mask0 = method.initial_mask(params, jax.random.key(seed))
    params = jt.apply_mask(params, mask0)
    steps = 400
    update = method.mask_update(steps)
    t = update.steps[0]
    zeta_t = method.zeta / 2 * (1 + math.cos(math.pi * t / (0.75 * steps)))
    mask1 = _jitted(method, steps)(inputs(t, params, mask0, grad=grad))
    m0, m1, w, g = flat(mask0), flat(mask1), flat(params), flat(grad)
    for path in PRUNABLE:
        n = int(m0[path].sum())
        wants = []
        for big in rate_candidates(zeta_t * 1e6):
            n_drop = big * n // 1_000_000
            kept = top_by(np.abs(w[path]), m0[path], n - n_drop)
            wants.append(kept | top_by(np.abs(g[path]), ~kept, n_drop))
        assert any(np.array_equal(m1[path], want) for want in wants), path
        assert int(m1[path].sum()) == n


def test_rigl_under_vmap_matches_per_seed():
    method = RIGL_CASES[0]
    ps = [make_params(s) for s in (1, 2)]
    gs = [make_params(s + 10) for s in (1, 2)]
    ms = [method.initial_mask(p, jax.random.key(s)) for s, p in enumerate(ps)]
    stack = lambda trees: jax.tree.map(lambda *x: jnp.stack(x), *trees)  # noqa: E731
    fn = method.mask_update(100).fn
    batched = jax.jit(jax.vmap(lambda p, m, g: fn(inputs(10, p, m, grad=g))))(
        stack(ps), stack(ms), stack(gs)
    )
    for i in range(2):
        one = _jitted(method)(inputs(10, ps[i], ms[i], grad=gs[i]))
        for path, x in flat(one).items():
            np.testing.assert_array_equal(flat(batched)[path][i], x)


GRANET_CASES = [
    sparse.GraNet(0.9, start=0, end=30, every=10, zeta=0.5),
    sparse.GraNet(0.85, initial_sparsity=0.5, start=5, end=25, every=10, zeta=0.3),
]


@settings(max_examples=6, deadline=None)
@given(case=st.integers(0, 1), seed=st.integers(0, 2**16))
def test_granet_sparsity_equals_target_and_regrowth_keeps_counts(case, seed):
    method = GRANET_CASES[case]
    params = make_params(seed)
    grad = make_params(seed + 7)
    mask = method.initial_mask(params, jax.random.key(seed))
    method.check_start(mask)
    params = jt.apply_mask(params, mask)
    fn = _jitted(method)
    n_steps = len(method.steps) - 1
    for t in method.steps:
        before = flat(mask)
        mask = fn(inputs(t, params, mask, grad=grad))
        m, w = flat(mask), flat(params)
        total = sum(x.size for x in m.values())
        s = zhu_gupta(
            method.initial_sparsity, method.final_sparsity, method.start, method.every, n_steps, t
        )
        want = {min(rounded(f, total), total - 3) for f in rate_candidates(s * 1e6)}
        alive_before = sum(int(x.sum()) for x in before.values())
        pruned = total - sum(int(x.sum()) for x in m.values())
        assert pruned in want or pruned == total - alive_before  # never revives
        # per leaf, the alive counts are those of the global magnitude prune (regrowth
        # moves weights within a leaf only)
        k = total - pruned
        reserved = {p: top_by(np.abs(w[p]), before[p], 1) for p in PRUNABLE}
        rest = np.concatenate(
            [np.where(reserved[p] | ~before[p], -1.0, np.abs(w[p])).ravel() for p in PRUNABLE]
        )
        keep = np.zeros(rest.size, bool)
        keep[np.argsort(-rest, kind="stable")[: k - 3]] = True
        sizes = np.cumsum([0] + [m[p].size for p in PRUNABLE])
        for i, p in enumerate(PRUNABLE):
            want_alive = int(keep[sizes[i] : sizes[i + 1]].sum()) + int(reserved[p].sum())
            assert int(m[p].sum()) == want_alive, (t, p)


def test_same_key_same_masks_bitwise():
    params = make_params(3)
    for method in [
        SET_CASES[0],
        RIGL_CASES[0],
        sparse.Static(0.9, allocation="er"),
        GRANET_CASES[1],
    ]:
        a = flat(method.initial_mask(params, jax.random.key(5)))
        b = flat(method.initial_mask(params, jax.random.key(5)))
        c = flat(method.initial_mask(params, jax.random.key(6)))
        assert all(np.array_equal(a[p], b[p]) for p in PRUNABLE)
        assert not all(np.array_equal(a[p], c[p]) for p in PRUNABLE)


def test_static_initial_mask_and_no_update():
    params = make_params(0)
    for allocation in ("erk", "er", "uniform"):
        method = sparse.Static(0.8, allocation=allocation)
        mask = method.initial_mask(params, jax.random.key(0))
        method.check_start(mask)
        assert abs(float(jt.sparsity(mask)) - 0.8) < 3 / 256
        assert method.mask_update(100) is None
    mask = sparse.Static(0.8, allocation="uniform").initial_mask(params, jax.random.key(0))
    for path, m in flat(mask).items():  # uniform: round(0.8 n) pruned in every leaf
        assert m.size - int(m.sum()) == rounded(800_000, m.size), path


def test_drop_and_grow_leaves_none_untouched_and_counts():
    mask = {"a": jnp.asarray([True, True, False, True, False]), "b": None}
    drop = {"a": jnp.asarray([5.0, 1.0, 0.0, 3.0, 0.0]), "b": jnp.zeros(3)}
    grow = {"a": jnp.asarray([0.0, 9.0, 2.0, 0.0, 7.0]), "b": jnp.zeros(3)}
    # alive 3, floor(0.34·3) = 1 dropped (the 1.0), the best grow score among dead after
    # the drop (positions 1, 2, 4) is position 1: the just-dropped one comes back
    out = jax.jit(sparse.drop_and_grow)(mask, drop, grow, 0.34)
    assert out["b"] is None
    np.testing.assert_array_equal(out["a"], [True, True, False, True, False])
    out = jax.jit(sparse.drop_and_grow)(mask, drop, grow, 0.67)  # 2 dropped
    np.testing.assert_array_equal(out["a"], [True, True, False, False, True])


@pytest.mark.parametrize(
    "f,n", [(0.3, 10), (0.7, 10), (0.999999, 2**31 - 2), (0.5, 7), (0.123457, 1_000_003)]
)
def test_floor_fraction_exact(f, n):
    assert int(sparse.floor_fraction(f, n)) == round(f * 1_000_000) * n // 1_000_000


def test_methods_hash_by_value():
    a = sparse.GMP(0.9, start=0, end=20, every=5, scale={"out/*": 0.5})
    b = sparse.GMP(0.9, start=0, end=20, every=5, scale=(("out/*", 0.5),))
    assert a == b and hash(a) == hash(b)
    # the engine's compile cache keys fn by value (a bound method compares its instance
    # by identity under ==, so the key is the fingerprint)
    assert fingerprint(a.mask_update(100).fn) == fingerprint(b.mask_update(100).fn)
    r1, r2 = sparse.RigL(0.9).mask_update(1000), sparse.RigL(0.9).mask_update(1000)
    assert fingerprint(r1.fn) == fingerprint(r2.fn)
    assert fingerprint(r1.fn) != fingerprint(sparse.RigL(0.9).mask_update(2000).fn)
