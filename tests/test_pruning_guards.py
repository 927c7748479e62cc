"""Issue 9 guards in pruning: no layer collapse, rates that resolve to 1, non-finite scores,
checked mode, layerwise scales, exact totals, float64/half precision, per-seed statistics.

Expected counts are worked by hand in the comments; selection logic uses the one-sort
reference top-k (``_REF``) where the real ``topk_mask`` adds nothing but compile time.
"""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify
from topk_reference import sorted_topk

from jaxticket.masks import (
    LayerCollapseWarning,
    alive_by_leaf,
    collapsed_leaves,
    count_alive,
    dense_mask,
    sparsity_by_leaf,
)
from jaxticket.pruning import (
    LeafInfo,
    Pruner,
    count_nonfinite,
    erk,
    global_,
    layerwise,
    magnitude,
    magnitude_pruner,
    make_pruner,
    n_m,
    neurons,
    prune,
    random_pruner,
    snip_pruner,
    topk_mask,
    unstructured,
)
from jaxticket.pruning.allocation import resolved_rate

_REF = unstructured(topk=sorted_topk)
_LENET = {"fc1": (784, 300), "fc2": (300, 100), "out": (100, 10)}


def _lenet():
    rng = np.random.default_rng(0)
    return {k: {"kernel": jnp.asarray(rng.normal(size=s), jnp.float32)} for k, s in _LENET.items()}


def _alive(mask):
    return {k: int(v) for k, v in alive_by_leaf(mask).items()}


# ----- 1. layer collapse ----------------------------------------------------------------


def test_global_extreme_sparsity_keeps_each_leafs_best_weight():
    # 266200 weights; sparsity 0.999999 prunes round(266199.73) = 266200: nothing is kept,
    # so the default min_keep=1 keeps each leaf's largest |w| (3 weights in all).
    params = _lenet()
    mask = dense_mask(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerCollapseWarning)
        new = make_pruner(magnitude, "global", _REF)(params, mask, sparsity=0.999999)
    assert _alive(new) == {"fc1/kernel": 1, "fc2/kernel": 1, "out/kernel": 1}
    for name in _LENET:
        w = np.abs(np.asarray(params[name]["kernel"]))
        assert np.asarray(new[name]["kernel"]).ravel()[np.argmax(w)]
    with pytest.warns(LayerCollapseWarning, match="fc1/kernel, fc2/kernel, out/kernel"):
        empty = make_pruner(magnitude, "global", _REF, min_keep=0)(params, mask, sparsity=0.999999)
    assert int(count_alive(empty)) == 0


def test_layerwise_0_9995_on_lenet_shapes():
    # out: 1000 - round(999.5) = 0 -> 1 kept; fc2: 30000 - 29985 = 15; fc1: 235200 -
    # round(235082.4) = 118.
    params = _lenet()
    mask = dense_mask(params)
    new = make_pruner(magnitude, "layerwise", _REF)(params, mask, fraction=0.9995)
    assert _alive(new) == {"fc1/kernel": 118, "fc2/kernel": 15, "out/kernel": 1}
    with pytest.warns(LayerCollapseWarning, match=r"1 prunable leaves.*out/kernel") as rec:
        new = make_pruner(magnitude, "layerwise", _REF, min_keep=0)(params, mask, fraction=0.9995)
    assert "fc2" not in str(rec[0].message)
    assert _alive(new) == {"fc1/kernel": 118, "fc2/kernel": 15, "out/kernel": 0}


def test_erk_extreme_sparsity_keeps_a_weight_per_leaf():
    # ERK at 0.999999 keeps 0.27 weights in all: every density rounds to 0 weights.
    params = _lenet()
    mask = dense_mask(params)
    new = make_pruner(magnitude, "erk", _REF)(params, mask, sparsity=0.999999)
    assert _alive(new) == {"fc1/kernel": 1, "fc2/kernel": 1, "out/kernel": 1}
    with pytest.warns(LayerCollapseWarning, match="fc1/kernel, fc2/kernel, out/kernel"):
        make_pruner(magnitude, "erk", _REF, min_keep=0)(params, mask, sparsity=0.999999)


def _two_leaves():
    params = {
        "a": jnp.array([[10.0, 9.0, 8.0], [7.0, 6.0, 5.0]]),
        "b": jnp.array([[0.1, 0.4], [0.3, 0.2]]),
    }
    return params, dense_mask(params)


@pytest.mark.parametrize("topk", [sorted_topk, topk_mask])
def test_global_reserves_each_leaf_then_keeps_the_total_exact(topk):
    # Keep 4 of 10. Plain global keeps 10, 9, 8, 7 (b collapses). min_keep=1 reserves a's
    # 10 and b's 0.4, then the best 2 of the rest: 9 and 8. min_keep=2 reserves 10, 9 and
    # 0.4, 0.3: that is already 4.
    params, mask = _two_leaves()
    sel = unstructured(topk)
    new = make_pruner(magnitude, "global", sel)(params, mask, fraction=0.6)
    np.testing.assert_array_equal(new["a"], [[True, True, True], [False, False, False]])
    np.testing.assert_array_equal(new["b"], [[False, True], [False, False]])
    new = make_pruner(magnitude, "global", sel, min_keep=2)(params, mask, fraction=0.6)
    np.testing.assert_array_equal(new["a"], [[True, True, False], [False, False, False]])
    np.testing.assert_array_equal(new["b"], [[False, True], [True, False]])
    with pytest.warns(LayerCollapseWarning, match=r"\(layer collapse\): b;"):
        new = make_pruner(magnitude, "global", sel, min_keep=0)(params, mask, fraction=0.6)
    np.testing.assert_array_equal(new["a"], [[True, True, True], [True, False, False]])


def test_reservations_win_over_a_smaller_total():
    # Keep round(0.1·10) = 1 of 10, but each of the 2 leaves reserves 1: 2 are kept.
    params, mask = _two_leaves()
    new = make_pruner(magnitude, "global", _REF)(params, mask, fraction=0.9)
    assert _alive(new) == {"a": 1, "b": 1}


def test_min_keep_counts_neurons_and_caps_at_alive():
    # 3 neurons (columns), prune round(0.9·3) = 3: min_keep keeps the best column (L2 of
    # column 2 is the largest). A leaf with 1 alive weight keeps it under min_keep=3.
    params = {"w": jnp.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), "v": jnp.ones((2, 2))}
    mask = {"w": jnp.ones((2, 3), bool), "v": jnp.array([[True, False], [False, False]])}
    sel = neurons(topk=sorted_topk)
    new = make_pruner(magnitude, "layerwise", sel)(params, mask, fraction=0.9)
    np.testing.assert_array_equal(new["w"], [[False, False, True]] * 2)
    new = make_pruner(magnitude, "layerwise", _REF, min_keep=3)(params, mask, fraction=0.9)
    assert _alive(new) == {"v": 1, "w": 3}


def test_n_m_accepts_min_keep_and_ignores_it():
    params = {"w": jnp.arange(8.0).reshape(4, 2)}
    new = prune(params, dense_mask(params), selection=n_m(1, 4), min_keep=3)
    assert _alive(new) == {"w": 2}


def test_selection_without_min_keep_needs_min_keep_0():
    def plain(scores, alive, paths, allocation, *, fraction=None, sparsity=None):
        return list(alive)

    params, mask = _two_leaves()
    with pytest.raises(TypeError, match="takes no min_keep= keyword.*min_keep=0"):
        Pruner(magnitude, global_(), plain)(params, mask, fraction=0.5)
    new = Pruner(magnitude, global_(), plain, min_keep=0)(params, mask, fraction=0.5)
    assert _alive(new) == {"a": 6, "b": 4}


def test_jitted_call_does_not_warn_and_collapsed_leaves_reads_its_output():
    params, mask = _two_leaves()
    pruner = make_pruner(magnitude, "global", _REF, min_keep=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LayerCollapseWarning)
        new = jax.jit(lambda p, m: pruner(p, m, fraction=0.6))(params, mask)
    assert collapsed_leaves(new) == ["b"]
    assert collapsed_leaves(mask) == []


def test_collapsed_leaves_per_seed():
    mask = {
        "a": jnp.array([[[True, False]], [[False, False]], [[True, True]]]),
        "b": jnp.array([[[False]], [[True]], [[False]]]),
        "bias": None,
    }
    assert collapsed_leaves(mask, seed_axis=0) == [["b"], ["a"], ["b"]]
    assert collapsed_leaves(mask) == []  # read as one network: no leaf is empty everywhere
    assert collapsed_leaves({"empty": jnp.ones((0, 3), bool), "b": mask["b"]}) == []
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(collapsed_leaves)(mask)


# ----- 2. rates that resolve to 1.0 ---------------------------------------------------


def test_rates_resolving_to_one_are_refused():
    assert resolved_rate(0.9999999) == 1_000_000 and resolved_rate(0.999999) == 999_999
    params, mask = _two_leaves()
    for kw in ({"sparsity": 0.9999999}, {"fraction": 0.99999995}):
        with pytest.raises(ValueError, match=r"resolves to 1\.0 .*1e-06"):
            prune(params, mask, selection=_REF, **kw)
    prune(params, mask, selection=_REF, sparsity=0.999999)  # the largest accepted rate
    with pytest.raises(ValueError, match=r"'b'.*'b'.*reaches 1"):  # 0.5·1.9999999 -> 1.0
        magnitude_pruner(layerwise({"b": 1.9999999}), _REF)(params, mask, fraction=0.5)


# ----- 3. non-finite scores under jit ------------------------------------------------


def _identity(params, **_):
    return params


@pytest.mark.parametrize("selection", [_REF, unstructured()])
def test_jitted_nan_scores_are_pruned_first(selection):
    # Scores: NaN, +inf, -inf, 1, 2, 3, NaN, 0. Keep 5: +inf, 3, 2, 1, 0 (then -inf, then
    # the NaNs). Keep 7: also -inf and the first NaN.
    s = jnp.array([[jnp.nan, jnp.inf, -jnp.inf, 1.0], [2.0, 3.0, jnp.nan, 0.0]])
    params = {"w": s}
    mask = dense_mask(params)
    pruner = Pruner(_identity, global_(), selection)
    step = jax.jit(lambda p, m, f: pruner(p, m, fraction=f))
    np.testing.assert_array_equal(
        step(params, mask, 3 / 8)["w"], [[False, True, False, True], [True, True, False, True]]
    )
    np.testing.assert_array_equal(
        step(params, mask, 1 / 8)["w"], [[True, True, True, True], [True, True, False, True]]
    )
    with pytest.raises(ValueError, match="'w'.*NaN or infinite"):  # eagerly: refused
        pruner(params, mask, fraction=0.5)


def test_n_m_and_neurons_rank_nan_lowest():
    # Groups of 4: [NaN, 1, 2, 3] keeps 2 and 3; [NaN, NaN, NaN, 1] keeps 1 and the first NaN.
    s = jnp.array([[jnp.nan, 1.0, 2.0, 3.0, jnp.nan, jnp.nan, jnp.nan, 1.0]])
    out = jax.jit(lambda s: n_m(2, 4, axis=-1)([s], [jnp.ones(s.shape, bool)], ["k"]))(s)[0]
    np.testing.assert_array_equal(out, [[False, False, True, True, True, False, False, True]])
    g = jnp.array([[jnp.nan, -jnp.inf, 5.0, 3.0]])
    out = n_m(3, 4, axis=-1)([g], [jnp.ones(g.shape, bool)], ["k"])[0]
    np.testing.assert_array_equal(out, [[False, True, True, True]])
    # Column 0 holds a NaN: it goes first although its other weight is the largest.
    w = jnp.array([[jnp.nan, 1.0, 2.0], [9.0, 1.0, 2.0]])
    sel = neurons(topk=topk_mask)
    run = jax.jit(lambda w: sel([w], [jnp.ones(w.shape, bool)], ["k"], layerwise(), fraction=0.34))
    out = run(w)
    np.testing.assert_array_equal(out[0], [[False, True, True]] * 2)


def test_count_nonfinite():
    scores = {"a": jnp.array([[jnp.nan, 1.0], [jnp.inf, -jnp.inf]]), "b": jnp.array([jnp.nan])}
    mask = {"a": jnp.array([[True, True], [False, True]]), "b": None}
    assert int(count_nonfinite(scores)) == 4
    assert int(count_nonfinite(scores, mask)) == 2  # a dead inf and the unprunable b skipped
    assert int(jax.jit(count_nonfinite)(scores, mask)) == 2
    assert count_nonfinite(scores, mask).dtype == jnp.int32
    assert int(count_nonfinite({"i": jnp.arange(3)})) == 0


# ----- 4. traced rates: clipped without checks, reported with checked=True ---------------


@pytest.mark.parametrize("allocation", ["global", "layerwise", "erk"])
def test_unchecked_traced_rates_clip_and_nan_prunes_nothing(allocation):
    params, mask = _two_leaves()
    pruner = make_pruner(magnitude, allocation, _REF)
    for kind in ("fraction", "sparsity"):
        step = jax.jit(lambda p, m, r, kind=kind: pruner(p, m, **{kind: r}))
        assert _alive(step(params, mask, 1.5)) == {"a": 1, "b": 1}  # all but min_keep
        assert _alive(step(params, mask, -0.2)) == {"a": 6, "b": 4}  # nothing
        assert _alive(step(params, mask, jnp.nan)) == {"a": 6, "b": 4}  # nothing


def test_checked_mode_reports_bad_traced_rates():
    params, mask = _two_leaves()
    pruner = make_pruner(magnitude, "global", _REF, checked=True)
    step = checkify.checkify(jax.jit(lambda p, m, f: pruner(p, m, fraction=f)))
    err, new = step(params, mask, 0.5)
    assert err.get() is None and _alive(new) == {"a": 4, "b": 1}
    for bad, message in [
        (1.5, r"fraction must be in \[0, 1\), got 1\.5"),
        (-0.2, r"fraction must be in \[0, 1\), got -0\.2"),
        (jnp.nan, "fraction is NaN"),
        (0.9999999, r"resolves to 1\.0"),
    ]:
        err, _ = step(params, mask, bad)
        assert err.get() is not None and re.search(message, err.get()), bad
    with pytest.raises(checkify.JaxRuntimeError, match="got 1.5"):
        step(params, mask, 1.5)[0].throw()


def test_checked_mode_reports_scaled_rates_and_bad_scores():
    params, mask = _two_leaves()
    pruner = magnitude_pruner(layerwise({"b": 5}), _REF, checked=True)
    step = checkify.checkify(jax.jit(lambda p, m, f: pruner(p, m, fraction=f)))
    assert step(params, mask, 0.1)[0].get() is None
    assert "leaf 'b' (scale pattern 'b', factor 5.0)" in step(params, mask, 0.3)[0].get()
    nan = {"a": params["a"].at[0, 0].set(jnp.nan), "b": params["b"]}
    err, _ = step(nan, mask, 0.1)
    assert "scores leaf 'a': 1 alive weights have NaN or inf" in err.get()


# ----- 5. layerwise scales -----------------------------------------------------------


def test_layerwise_scale_reaching_one_is_an_error_not_a_clip():
    params, mask = _two_leaves()
    pruner = magnitude_pruner(layerwise({"b": 5}), _REF)
    with pytest.raises(ValueError, match=r"leaf 'b' \(scale pattern 'b', factor 5.0\).*1\.5"):
        pruner(params, mask, fraction=0.3)
    # Traced: clipped to 1 (b keeps its min_keep unit), as documented.
    assert _alive(jax.jit(lambda p, m, f: pruner(p, m, fraction=f))(params, mask, 0.3)) == {
        "a": 4,
        "b": 1,
    }
    for bad in (-1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="pattern 'b' has factor"):
            layerwise({"b": bad})


# ----- 6. exact totals --------------------------------------------------------------


def _keeps(groups):
    return [int(g.keep) for g in groups]


def test_exact_total_by_hand():
    # 1000 + 10 weights, sparsity 0.5: prune round(505) in all. b·1000 + 0.5·b·10 = 505 gives
    # b = 0.502488: 502.49 and 2.51 pruned; floors 502 + 2, the missing one goes to the
    # larger remainder (0.51, leaf b): 502 and 3 pruned, keep 498 and 7.
    leaves = [LeafInfo("a/kernel", (100, 10), 1000), LeafInfo("b/kernel", (10, 1), 10)]
    alive = [jnp.int32(1000), jnp.int32(10)]
    alloc = layerwise({"b/*": 0.5}, exact_total=True)
    assert _keeps(alloc(leaves, alive, sparsity=0.5)) == [498, 7]
    # Without exact_total: 500 and round(2.5) = 3 pruned, 503 in all (49.8%).
    assert _keeps(layerwise({"b/*": 0.5})(leaves, alive, sparsity=0.5)) == [500, 7]
    # 10 + 10 alive, b's rate 10 times a's, fraction 0.5 (prune 10): b·10 + min(100·b, 9)
    # with min_keep=1 -> b = 0.1: 1 and 9 pruned. Fraction 0.9 (18): both capped at 9.
    leaves = [LeafInfo("a", (10, 1), 10, 1), LeafInfo("b", (10, 1), 10, 1)]
    alive = [jnp.int32(10), jnp.int32(10)]
    alloc = layerwise({"b": 10}, exact_total=True)
    assert _keeps(alloc(leaves, alive, fraction=0.5)) == [9, 1]
    assert _keeps(alloc(leaves, alive, fraction=0.9)) == [1, 1]
    # min_keep=0: 10·b + min(100·b, 10) = 18 -> b = 0.8: 8 and 10 pruned.
    leaves = [leaf._replace(min_keep=0) for leaf in leaves]
    assert _keeps(alloc(leaves, alive, fraction=0.9)) == [2, 0]
    # Already sparser than asked (sparsity 0.1 of 20 = 2, but 5 are pruned): nothing moves.
    assert _keeps(alloc(leaves, [jnp.int32(5), jnp.int32(10)], sparsity=0.1)) == [5, 10]


def test_exact_total_through_the_pruner():
    rng = np.random.default_rng(1)
    params = {
        "a": {"kernel": jnp.asarray(rng.normal(size=(100, 10)), jnp.float32)},
        "b": {"kernel": jnp.asarray(rng.normal(size=(10, 1)), jnp.float32)},
    }
    pruner = magnitude_pruner(layerwise({"b/*": 0.5}, exact_total=True), _REF)
    new = pruner(params, dense_mask(params), sparsity=0.5)
    assert _alive(new) == {"a/kernel": 498, "b/kernel": 7}
    assert float(1 - count_alive(new) / 1010) == pytest.approx(505 / 1010)


def _solve_reference(w, lo, hi, target):
    """Bisection in float64 on b for sum(clip(b·w, lo, hi)) = target."""
    total = lambda b: np.clip(b * w, lo, hi).sum()
    a, b = 0.0, 1.0
    while total(b) < target and b < 1e30:
        b *= 2
    for _ in range(200):
        m = (a + b) / 2
        a, b = (m, b) if total(m) < target else (a, m)
    return np.clip(b * w, lo, hi)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 5000), st.floats(0, 1), st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        min_size=1,
        max_size=4,
    ),
    st.integers(0, 999_999),
    st.sampled_from(["fraction", "sparsity"]),
    st.integers(0, 3),
)
def test_exact_total_meets_the_target(spec, rate, kind, min_keep):
    units = np.array([u for u, _, _ in spec])
    alive = np.array([int(round(u * a)) for u, a, _ in spec])
    scale = np.array([s for _, _, s in spec])
    leaves = [LeafInfo(f"l{i}", (int(u),), int(u), min_keep) for i, u in enumerate(units)]
    alloc = layerwise({f"l{i}": float(s) for i, s in enumerate(scale)}, exact_total=True)
    f = rate / 1e6
    keep = np.array(_keeps(alloc(leaves, [jnp.int32(a) for a in alive], **{kind: f})))
    floor = np.minimum(min_keep, alive)
    assert np.all(keep <= alive) and np.all(keep >= floor)
    if kind == "fraction":
        base, lo, hi = alive, np.zeros_like(alive), alive - floor
        target = (rate * alive.sum() + 500_000) // 1_000_000
        pruned = alive - keep
    else:
        base, lo, hi = units, units - alive, units - floor
        target = (rate * units.sum() + 500_000) // 1_000_000
        pruned = units - keep
    hi = np.where(scale > 0, hi, lo)
    target = np.clip(target, lo.sum(), hi.sum())
    assert pruned.sum() == target
    ideal = _solve_reference(base * scale, lo, hi, target)
    assert np.all(np.abs(pruned - ideal) < 1.0 + 1e-3 * np.maximum(ideal, 1))


# ----- 7. precision: float64 and half floats ------------------------------------------


def _loss(params, batch):
    return jnp.sum((batch @ params["w"]) ** 2)


def test_float64_scores_are_ordered_at_float64_precision():
    with jax.enable_x64(True):
        base = 1.0 + np.arange(12) * 1e-12  # equal as float32
        order = np.random.default_rng(0).permutation(12)
        w = jnp.asarray(base[order].reshape(3, 4), jnp.float64)
        assert len(set(np.asarray(w.astype(jnp.float32)).ravel())) == 1
        params = {"w": w}
        mask = dense_mask(params)
        want = (order >= 7).reshape(3, 4)  # the 5 largest
        for pruner in [
            magnitude_pruner("global"),
            magnitude_pruner("layerwise"),
            magnitude_pruner("erk"),
            magnitude_pruner("er"),
            magnitude_pruner(layerwise(exact_total=True)),
        ]:
            new = pruner(params, mask, fraction=7 / 12)
            np.testing.assert_array_equal(new["w"], want)
        new = jax.jit(lambda p, m: magnitude_pruner()(p, m, sparsity=7 / 12))(params, mask)
        np.testing.assert_array_equal(new["w"], want)
        cols = magnitude_pruner(selection="neurons")(params, mask, fraction=0.5)["w"]
        col_norms = np.linalg.norm(np.asarray(w), axis=0)
        np.testing.assert_array_equal(cols[0], col_norms >= np.sort(col_norms)[2])
        nm = prune(params, mask, selection=n_m(1, 3))["w"]
        assert (np.asarray(nm).sum(axis=0) == 1).all()
        np.testing.assert_array_equal(nm, np.asarray(w) == np.asarray(w).max(axis=0))
        key = jax.random.key(0)
        assert int(count_alive(random_pruner()(params, mask, fraction=0.25, key=key))) == 9
        batch = jnp.ones((2, 3), jnp.float64)
        snipped = snip_pruner(_loss)(params, mask, fraction=0.5, batch=batch)
        assert int(count_alive(snipped)) == 6


def test_float32_search_path_under_x64():
    # The float32 fast path must stay float32 (its integer keys are uint32) in x64 mode.
    from jaxticket.pruning import topk

    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        s = [jnp.asarray(rng.normal(size=(300, 200)), jnp.float32)]
        a = [jnp.asarray(rng.random((300, 200)) < 0.9)]
        got = jax.jit(lambda s, a, k: topk._topk_mask(s, a, k, sort_below=0))(s, a, 20_000)
        want = sorted_topk(s, a, 20_000)
        np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_params(dtype):
    params = {"w": jnp.asarray([[1.0, -3.0, 2.0], [0.5, 4.0, -0.25]], dtype)}
    mask = dense_mask(params)
    new = magnitude_pruner()(params, mask, fraction=0.5)
    np.testing.assert_array_equal(new["w"], [[False, True, True], [False, True, False]])
    cols = magnitude_pruner("layerwise", "neurons")(params, mask, fraction=0.34)["w"]
    np.testing.assert_array_equal(cols[0], [False, True, True])


def test_complex_scores_name_the_leaf():
    params, mask = _two_leaves()
    crit = lambda p, **_: jax.tree.map(lambda x: x.astype(jnp.complex64), p)
    with pytest.raises(TypeError, match="scores leaf 'a': expected real scores"):
        Pruner(crit, global_(), _REF)(params, mask, fraction=0.5)


# ----- 8. per-seed statistics ----------------------------------------------------------


def test_per_leaf_statistics_per_seed():
    mask = {
        "a": jnp.array([[[True, False]], [[False, False]], [[True, True]]]),
        "b": jnp.array([[[False]], [[True]], [[False]]]),
    }
    alive = alive_by_leaf(mask, seed_axis=0)
    np.testing.assert_array_equal(alive["a"], [1, 0, 2])
    np.testing.assert_array_equal(alive["b"], [0, 1, 0])
    sp = sparsity_by_leaf(mask, seed_axis=0)
    np.testing.assert_allclose(sp["a"], [0.5, 1.0, 0.0])
    assert float(sparsity_by_leaf(mask)["a"]) == pytest.approx(0.5)  # pooled over seeds
    jitted = jax.jit(lambda m: sparsity_by_leaf(m, seed_axis=0))(mask)
    np.testing.assert_allclose(jitted["b"], [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="leaf 'a' has 3 dims, so seed_axis=3"):
        sparsity_by_leaf(mask, seed_axis=3)
    with pytest.raises(ValueError, match="leaf 'b' has 2 entries along seed_axis=0"):
        alive_by_leaf({"a": mask["a"], "b": jnp.ones((2, 1), bool)}, seed_axis=0)


def test_erk_unchanged_at_moderate_sparsity():
    # min_keep changes nothing where no leaf would collapse (see test_allocation's ERK case).
    params = {"a": jnp.ones((4, 4)), "b": jnp.ones((8, 4)), "c": jnp.ones((40, 10))}
    new = prune(params, dense_mask(params), sparsity=264 / 448, allocation=erk(), selection=_REF)
    assert _alive(new) == {"a": 16, "b": 32, "c": 136}
