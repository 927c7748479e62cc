"""Tests for jaxticket.pruning.topk against a slow NumPy reference (stable sort)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.pruning import topk
from jaxticket.pruning.topk import topk_mask

# A few fixed shape sets keep the number of compilations (and the test time) small.
SHAPE_SETS = [
    [(7,), (3, 5)],
    [(40, 33), (100,), (2, 3, 4)],
    [(1,)],
    [(0,), (6,)],
    [(5000,), (4097,)],
]
_jitted = jax.jit(topk_mask)


def reference(scores, alive, k):
    """Stable sort by descending score over the concatenated alive entries."""
    flat = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in scores])
    live = np.concatenate([np.asarray(a, bool).reshape(-1) for a in alive])
    flat = np.where(flat == 0, 0.0, flat)  # -0.0 ties with +0.0
    k = int(np.clip(k, 0, live.sum()))
    idx = np.flatnonzero(live)
    keep = np.zeros(flat.size, bool)
    keep[idx[np.argsort(-flat[idx], kind="stable")][:k]] = True
    out, start = [], 0
    for s in scores:
        out.append(keep[start : start + np.size(s)].reshape(np.shape(s)))
        start += np.size(s)
    return out


def assert_matches(scores, alive, k, got=None):
    got = _jitted(scores, alive, jnp.int32(k)) if got is None else got
    want = reference(scores, alive, k)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == jnp.bool_ and g.shape == w.shape
        np.testing.assert_array_equal(np.asarray(g), w)
    n_alive = sum(int(np.sum(a)) for a in alive)
    assert sum(int(jnp.sum(g)) for g in got) == min(max(k, 0), n_alive)


@st.composite
def problems(draw):
    shapes = draw(st.sampled_from(SHAPE_SETS))
    kind = draw(st.sampled_from(["floats", "ints", "constant", "specials"]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    specials = [0.0, -0.0, 1e-40, -1e-40, np.inf, -np.inf, 3.4e38, -3.4e38, 1.0, 1.5e-38]
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


@pytest.mark.parametrize("kind", ["normal", "abs", "ints", "halves"])
@pytest.mark.parametrize("frac", [0.2, 0.8])
def test_large_inputs_take_the_fast_path_exactly(kind, frac):
    rng = np.random.default_rng(0)
    shapes = [(300, 400), (50_000,), (64, 3, 3, 32)]
    make = {
        "normal": lambda s: rng.standard_normal(s),
        "abs": lambda s: np.abs(rng.standard_normal(s)),
        "ints": lambda s: np.round(rng.standard_normal(s) * 50),  # many ties at the k-th
        "halves": lambda s: rng.integers(0, 2, s) * 0.5,  # two distinct scores
    }[kind]
    scores = [jnp.asarray(make(s), jnp.float32) for s in shapes]
    alive = [jnp.asarray(rng.random(s) < 0.9) for s in shapes]
    k = int(frac * sum(int(a.sum()) for a in alive))
    assert_matches(scores, alive, k)


def test_fast_search_brackets_rank_k():
    # The fast search must end with exact counts around rank k on ordinary data.
    rng = np.random.default_rng(1)
    scores = [jnp.asarray(rng.standard_normal((200, 500)), jnp.float32)]
    alive = [jnp.ones((200, 500), bool)]
    v = [jnp.where(alive[0], scores[0], -jnp.inf)]
    k = jnp.int32(20_000)
    b = topk._search(v, k, jnp.int32(100_000))
    assert int(b.c_lo) >= int(k) > int(b.c_hi)
    assert int(b.c_lo) == int(k) or int(b.hi - b.lo) == 1
    flat = np.asarray(scores[0]).ravel()
    assert int(b.c_lo) == int(np.sum(flat >= float(topk._from_key(b.lo))))


def test_one_compilation_serves_every_k():
    f = jax.jit(topk_mask)
    scores = [jnp.arange(10.0), jnp.ones((2, 3))]
    alive = [jnp.ones(10, bool), jnp.ones((2, 3), bool)]
    for k in range(17):
        assert_matches(scores, alive, k, f(scores, alive, jnp.int32(k)))
    assert f._cache_size() == 1


def test_vmap_over_k_and_over_scores():
    rng = np.random.default_rng(2)
    scores = [jnp.asarray(rng.integers(0, 5, (4, 30)), jnp.float32), jnp.asarray(rng.random((4, 9)))]
    alive = [jnp.asarray(rng.random((4, 30)) < 0.7), jnp.ones((4, 9), bool)]
    ks = jnp.array([0, 5, 17, 100], jnp.int32)
    masks = jax.jit(jax.vmap(topk_mask))(scores, alive, ks)
    for b in range(4):
        row = [s[b] for s in scores], [a[b] for a in alive]
        assert_matches(*row, int(ks[b]), [m[b] for m in masks])
    same = jax.vmap(topk_mask, in_axes=(None, None, 0))([s[0] for s in scores], [a[0] for a in alive], ks)
    for b in range(4):
        assert_matches([s[0] for s in scores], [a[0] for a in alive], int(ks[b]), [m[b] for m in same])


def test_edge_cases():
    s = [jnp.array([0.0, -0.0, 0.0, -1.0]), jnp.array([[-0.0, 0.0]])]
    live = [jnp.ones(4, bool), jnp.ones((1, 2), bool)]
    for k in range(7):
        assert_matches(s, live, k)  # -0.0 and +0.0 tie; position decides
    dead = [jnp.zeros(4, bool), jnp.zeros((1, 2), bool)]
    assert_matches(s, dead, 3)  # nothing alive: nothing kept
    assert topk_mask([], [], 3) == []
    assert_matches([jnp.zeros((0, 3))], [jnp.zeros((0, 3), bool)], 1)
    denormals = [jnp.array([1e-45, 2e-45, -1e-45, 0.0, 1e-40, 1.2e-38], jnp.float32)]
    for k in range(7):
        assert_matches(denormals, [jnp.ones(6, bool)], k)
    half = [jnp.array([1.0, 3.0, 2.0], jnp.bfloat16)]
    assert_matches(half, [jnp.ones(3, bool)], 2)


def test_bad_input_names_the_array():
    with pytest.raises(ValueError, match="2 score arrays but 1 alive"):
        topk_mask([jnp.ones(3), jnp.ones(2)], [jnp.ones(3, bool)], 1)
    with pytest.raises(ValueError, match=r"alive\[1\]: shape \(3,\)"):
        topk_mask([jnp.ones(3), jnp.ones(2)], [jnp.ones(3, bool), jnp.ones(3, bool)], 1)
    with pytest.raises(TypeError, match=r"alive\[0\]: expected a bool"):
        topk_mask([jnp.ones(3)], [jnp.ones(3)], 1)
    with pytest.raises(TypeError, match=r"scores\[0\]: expected a float"):
        topk_mask([jnp.arange(3)], [jnp.ones(3, bool)], 1)
