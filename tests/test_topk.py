"""Tests for jaxticket.pruning.topk against a slow NumPy reference (stable sort)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.pruning import topk, topk_exact, topk_rows, topk_search
from jaxticket.pruning.topk import topk_mask

# A few fixed shape sets keep the number of compilations (and the test time) small.
SHAPE_SETS = [[(7,), (3, 5)], [(40, 33), (0,), (100,), (2, 3, 4)]]
SMALL = SHAPE_SETS[0]
_jitted = jax.jit(topk_mask)
# The search path, forced on small inputs (by default they take a plain sort).
_searched = jax.jit(lambda s, a, k: topk._topk_mask(s, a, k, sort_below=0))


def reference(scores, alive, k):
    """Stable sort by descending score over the concatenated alive entries; NaN last."""
    flat = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in scores])
    live = np.concatenate([np.asarray(a, bool).reshape(-1) for a in alive])
    flat = np.where(flat == 0, 0.0, flat)  # -0.0 ties with +0.0
    k = int(np.clip(k, 0, live.sum()))
    idx = np.flatnonzero(live)
    nan = np.isnan(flat[idx])
    order = np.lexsort((np.arange(idx.size), np.where(nan, 0.0, -flat[idx]), nan))
    keep = np.zeros(flat.size, bool)
    keep[idx[order][:k]] = True
    out, start = [], 0
    for s in scores:
        out.append(keep[start : start + np.size(s)].reshape(np.shape(s)))
        start += np.size(s)
    return out


def assert_matches(scores, alive, k, got=None):
    want = reference(scores, alive, k)
    n_alive = sum(int(np.sum(a)) for a in alive)
    candidates = [got] if got is not None else [_jitted, _searched]
    for got in candidates:
        if callable(got):
            got = got(scores, alive, jnp.int32(k))
        for g, w in zip(got, want, strict=True):
            assert g.dtype == jnp.bool_ and g.shape == w.shape
            np.testing.assert_array_equal(np.asarray(g), w)
        assert sum(int(jnp.sum(g)) for g in got) == min(max(k, 0), n_alive)


@st.composite
def problems(draw):
    shapes = draw(st.sampled_from(SHAPE_SETS))
    kind = draw(st.sampled_from(["floats", "ints", "constant", "specials"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    specials = [0.0, -0.0, 1e-40, -1e-40, np.inf, -np.inf, 3.4e38, -3.4e38, 1.0, 1.5e-38, np.nan]
    scores, alive = [], []
    p_alive = draw(st.sampled_from([0.0, 0.3, 0.9, 1.0]))
    for shape in shapes:
        if kind == "floats":
            s = rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30)
        elif kind == "ints":  # heavy ties
            s = rng.integers(-3, 4, shape)
        elif kind == "constant":
            s = np.full(shape, 2.5)
        else:
            s = rng.choice(specials, size=shape)
        scores.append(jnp.asarray(s, jnp.float32))
        alive.append(jnp.asarray(rng.random(shape) < p_alive))
    n = sum(int(np.sum(a)) for a in alive)
    k = draw(st.sampled_from([0, 1, n // 3, n // 2, n - 1, n, n + 3]) | st.integers(-2, n + 2))
    return scores, alive, k


@settings(max_examples=25, deadline=None)
@given(problems())
def test_matches_reference(problem):
    assert_matches(*problem)


def _pairs(rng, shape):
    """Neighbouring entries one float apart: rows hold two entries of any narrow bracket."""
    flat = np.repeat(rng.standard_normal(int(np.prod(shape)) // 2 + 1), 2)[: int(np.prod(shape))]
    flat = flat.astype(np.float32)
    flat[1::2] = np.nextafter(flat[1::2], np.float32(np.inf))
    return flat.reshape(shape)


def _with_nonfinite(rng, x):
    u = rng.random(x.shape)
    return np.where(u < 0.1, np.nan, np.where(u < 0.11, np.inf, np.where(u < 0.12, -np.inf, x)))


def _clustered(rng, shape):
    """Each run of 100 entries spans a tiny range: one row holds a whole narrow bracket."""
    flat = np.repeat(rng.standard_normal(int(np.prod(shape)) // 100 + 1), 100)
    flat = flat[: int(np.prod(shape))] * (1 + 1e-5 * rng.random(int(np.prod(shape))))
    return flat.reshape(shape)


@pytest.mark.parametrize(
    "kind, frac",
    [
        ("normal", 0.2),
        ("abs", 0.8),
        ("ints", 0.2),
        ("halves", 0.8),
        ("pairs", 0.3),
        ("clustered", 0.6),
        ("nans", 0.5),  # 10% NaN, 1% of each infinity: NaN ranks below -inf
        ("nans", 0.95),  # the k-th alive score is NaN: the exact path cuts their ties
    ],
)
def test_large_inputs_exact(kind, frac):
    rng = np.random.default_rng(0)
    shapes = [(300, 200), (16, 3, 3, 32)]
    make = {
        "normal": lambda s: rng.standard_normal(s),
        "abs": lambda s: np.abs(rng.standard_normal(s)),
        "ints": lambda s: np.round(rng.standard_normal(s) * 50),  # many ties at the k-th
        "halves": lambda s: rng.integers(0, 2, s) * 0.5,  # two distinct scores
        "pairs": lambda s: _pairs(rng, s),
        "clustered": lambda s: _clustered(rng, s),
        "nans": lambda s: _with_nonfinite(rng, rng.standard_normal(s)),
    }[kind]
    scores = [jnp.asarray(make(s), jnp.float32) for s in shapes]
    alive = [jnp.asarray(rng.random(s) < 0.9) for s in shapes]
    k = int(frac * sum(int(a.sum()) for a in alive))
    assert_matches(scores, alive, k)


def test_fast_search_brackets_rank_k():
    # On ordinary data the counting passes and the read-off must end on an exact threshold
    # or a tie, with no need for the exact path.
    rng = np.random.default_rng(1)
    scores = jnp.asarray(rng.standard_normal((200, 500)), jnp.float32)
    k = jnp.int32(20_000)
    v = [topk_rows._rows(scores, 64)]
    b = jax.jit(topk_search._locate)(v, topk_search._sorted_sample(v), k, jnp.int32(scores.size))
    assert int(b.c_lo) >= int(k) > int(b.c_hi)
    assert int(b.c_lo) == int(k) or int(b.hi - b.lo) == 1
    flat = np.asarray(scores).ravel()
    assert int(b.c_lo) == int(np.sum(flat >= float(topk_exact._from_key(b.lo))))


@pytest.mark.parametrize("make", [_pairs, lambda rng, s: rng.standard_normal(s)])
def test_reading_off_the_bracket_settles_rank_k(make):
    # Once few entries lie between the ends, reading them off their rows (rows with two
    # of them included) must give an exact threshold or a tie, never the exact path.
    # 240k entries: the sample covers a quarter, so the search takes a few passes.
    rng = np.random.default_rng(3)
    scores = [jnp.asarray(make(rng, (600, 400)), jnp.float32), jnp.ones((7,), jnp.float32)]
    v = [topk_rows._rows(s, 64) for s in scores]
    locate = jax.jit(topk_search._locate)
    for k in (1, 1234, 30_000, 200_000):
        b = locate(v, topk_search._sorted_sample(v), jnp.int32(k), jnp.int32(240_007))
        assert int(b.c_lo) == k or int(b.hi - b.lo) == 1
        assert int(b.c_lo) >= k > int(b.c_hi)
        flat = np.concatenate([np.asarray(s).ravel() for s in scores])
        assert int(b.c_lo) == int(np.sum(flat >= float(topk_exact._from_key(b.lo))))
        x_hi = float(topk_exact._from_key(jnp.minimum(b.hi, topk_exact._KEY_INF)))
        assert int(b.c_hi) == int(np.sum(flat >= x_hi))
        rows = [np.asarray(r) for r in b.rows_lo]
        want = [np.sum(np.asarray(x) >= float(topk_exact._from_key(b.lo)), axis=-1) for x in v]
        for got, w in zip(rows, want, strict=True):
            np.testing.assert_array_equal(got, w)
        assert_matches(scores, [jnp.ones(s.shape, bool) for s in scores], k, _searched)


@settings(max_examples=10, deadline=None)
@given(
    kind=st.sampled_from(["normal", "decades", "ints", "pairs"]),
    p_alive=st.sampled_from([0.05, 0.5, 1.0]),
    seed=st.integers(0, 2**31 - 1),
    k_frac=st.floats(0.0, 1.0),
)
def test_searched_matches_reference_beyond_the_sample(kind, p_alive, seed, k_frac):
    # 240k entries: the sample sees a quarter, so counting passes and the read-off run.
    rng = np.random.default_rng(seed)
    shapes = [(600, 400), (7,)]
    make = {
        "normal": lambda s: rng.standard_normal(s),
        "decades": lambda s: np.abs(rng.standard_normal(s)) * 10.0 ** rng.integers(-30, 30, s),
        "ints": lambda s: rng.integers(-3, 4, s),
        "pairs": lambda s: _pairs(rng, s),
    }[kind]
    scores = [jnp.asarray(make(s), jnp.float32) for s in shapes]
    alive = [jnp.asarray(rng.random(s) < p_alive) for s in shapes]
    n = sum(int(a.sum()) for a in alive)
    assert_matches(scores, alive, round(k_frac * n), _searched)


def test_prime_sized_leaf_keeps_short_rows():
    # A leaf of prime size has no row length near 1024: one row of 2053 would hold all of
    # the bracket's entries there and send the search to the exact path.
    rng = np.random.default_rng(5)
    scores = [
        jnp.asarray(rng.standard_normal(200_000), jnp.float32),
        jnp.asarray(rng.standard_normal(2053) * 1e3, jnp.float32),
    ]
    row = 64
    v = [topk_rows._rows(s, row) for s in scores]
    assert v[1].shape == (2053, 1)
    b = jax.jit(topk_search._locate)(
        v, topk_search._sorted_sample(v), jnp.int32(100_928), jnp.int32(202_053)
    )
    assert int(b.c_lo) == 100_928 or int(b.hi - b.lo) == 1
    assert_matches(scores, [jnp.ones(s.shape, bool) for s in scores], 100_928, _searched)


def test_alive_count_far_from_the_sample_estimate():
    # Alive only where the sample looks: the estimate (262144) is far above the 65536
    # alive entries, so the alive count is skipped; k above it must still keep them all.
    size = 512 * 512
    sampled = np.zeros(size, bool)
    sampled[np.linspace(0, size - 1, topk_search._SAMPLE).astype(np.int64)] = True
    scores = [jnp.asarray(np.random.default_rng(4).standard_normal((512, 512)), jnp.float32)]
    for live in (sampled, ~sampled):  # and the reverse: an estimate far too low
        alive = [jnp.asarray(live.reshape(512, 512))]
        n = int(live.sum())
        for k in (n - 5, n, n + 1000, 150_000):
            assert_matches(scores, alive, k, _searched)


def test_one_compilation_serves_every_k():
    scores = [jnp.arange(7.0), jnp.ones((3, 5))]
    alive = [jnp.ones(7, bool), jnp.ones((3, 5), bool)]
    _searched(scores, alive, jnp.int32(0))
    compiled = _searched._cache_size()
    for k in range(24):
        assert_matches(scores, alive, k, _searched)
    assert _searched._cache_size() == compiled


def test_vmap_over_k_and_over_scores():
    rng = np.random.default_rng(2)
    scores = [
        jnp.asarray(rng.integers(0, 5, (4, 7)), jnp.float32),
        jnp.asarray(rng.random((4, 3, 5))),
    ]
    alive = [jnp.asarray(rng.random((4, 7)) < 0.7), jnp.ones((4, 3, 5), bool)]
    ks = jnp.array([0, 5, 17, 100], jnp.int32)
    searched = lambda s, a, k: topk._topk_mask(s, a, k, sort_below=0)
    masks = jax.jit(jax.vmap(searched))(scores, alive, ks)
    for i in range(4):
        one = [s[i] for s in scores], [a[i] for a in alive]
        assert_matches(*one, int(ks[i]), [m[i] for m in masks])
    first = [s[0] for s in scores], [a[0] for a in alive]
    same = jax.jit(jax.vmap(topk_mask, in_axes=(None, None, 0)))(*first, ks)  # sort path
    for i in range(4):
        assert_matches(*first, int(ks[i]), [m[i] for m in same])


def test_edge_cases():
    # -0.0 and +0.0 tie, so position decides.
    zeros = [jnp.array([0.0, -0.0, 0.0, -1.0, -0.0, 0.0, 0.0]), jnp.zeros((3, 5)) * -1.0]
    live = [jnp.ones(7, bool), jnp.ones((3, 5), bool)]
    for k in range(0, 23, 3):
        assert_matches(zeros, live, k)
    assert_matches(zeros, [jnp.zeros(7, bool), jnp.zeros((3, 5), bool)], 3)  # none alive
    # Denormals, infinities and the extremes of float32 keep their exact order.
    odd = [1e-45, 2e-45, -1e-45, 0.0, 1e-40, 1.2e-38, np.inf, -np.inf, 3.4028235e38]
    specials = [
        jnp.asarray(np.resize(odd, 7), jnp.float32),
        jnp.asarray(np.resize(odd[::-1], (3, 5)), jnp.float32),
    ]
    for k in range(0, 23, 2):
        assert_matches(specials, live, k)
    assert topk_mask([], [], 0) == []
    assert_matches([jnp.zeros((0, 3))], [jnp.zeros((0, 3), bool)], 1)
    half = [jnp.array([1.0, 3.0, 2.0], jnp.bfloat16)]
    for path in (topk_mask, _searched):
        got = path(half, [jnp.ones(3, bool)], 2)
        np.testing.assert_array_equal(np.asarray(got[0]), [False, True, True])


def test_concrete_k_outside_the_alive_range_is_refused():
    # Eagerly k is checked, not clipped: a k the alive entries cannot meet is a mistake.
    live = [jnp.ones(3), jnp.ones(2)], [jnp.asarray([True, False, True]), jnp.ones(2, bool)]
    with pytest.raises(ValueError, match="k=5 but only 4 entries are alive"):
        topk_mask(*live, 5)
    with pytest.raises(ValueError, match="k must be >= 0, got -1"):
        topk_mask(*live, -1)
    with pytest.raises(TypeError, match="k must be an integer, got 1.5"):
        topk_mask(*live, 1.5)
    with pytest.raises(TypeError, match="k must be an integer, got True"):
        topk_mask(*live, True)
    assert sum(int(m.sum()) for m in topk_mask(*live, 4)) == 4
    # Traced, it cannot be checked: clipped to [0, #alive], as documented.
    clipped = jax.jit(topk_mask)(*live, 5)
    assert sum(int(m.sum()) for m in clipped) == 4


def test_bad_input_names_the_array():
    with pytest.raises(ValueError, match="2 score arrays but 1 alive"):
        topk_mask([jnp.ones(3), jnp.ones(2)], [jnp.ones(3, bool)], 1)
    with pytest.raises(ValueError, match=r"alive\[1\]: shape \(3,\)"):
        topk_mask([jnp.ones(3), jnp.ones(2)], [jnp.ones(3, bool), jnp.ones(3, bool)], 1)
    with pytest.raises(TypeError, match=r"alive\[0\]: expected a bool"):
        topk_mask([jnp.ones(3)], [jnp.ones(3)], 1)
    with pytest.raises(TypeError, match=r"scores\[0\]: expected a float"):
        topk_mask([jnp.arange(3)], [jnp.ones(3, bool)], 1)
    big = [jax.ShapeDtypeStruct((2**30,), jnp.float32)] * 2
    live = [jax.ShapeDtypeStruct((2**30,), jnp.bool_)] * 2
    with pytest.raises(ValueError, match=r"2147483648 entries in all; at most 2147483646"):
        jax.eval_shape(topk_mask, big, live, 1)
