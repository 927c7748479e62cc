"""Group scores and the structured pruner (issue 13), checked on hand-built groups against
hand-worked small cases and plain-NumPy references."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.masks import LayerCollapseWarning, apply_mask, dense_mask
from jaxticket.pruning import criteria
from jaxticket.structured import scores
from jaxticket.structured.groups import Group, Member
from jaxticket.structured.masks import check_structured
from jaxticket.structured.pruner import StructuredPruner, structured_dense_mask


def P(*path, axis, role="producer", inner=1, collection="params"):
    return Member(collection, tuple(path), axis, inner, role)


# --- an MLP 4-3-2: one prunable hidden group, the output group never pruned -------------

MLP_GROUPS = (
    Group(
        "d1/kernel",
        3,
        (
            P("d1", "kernel", axis=1),
            P("d1", "bias", axis=0, role="bias"),
            P("out", "kernel", axis=0, role="consumer"),
        ),
    ),
    Group(
        "out/kernel",
        2,
        (P("out", "kernel", axis=1), P("out", "bias", axis=0, role="bias")),
        prunable=False,
    ),
)


def mlp_params():
    k = np.array([[1, -2, 0.5], [1, 2, 0.5], [-1, 2, 0.5], [1, 2, -0.5]], np.float32)
    return {
        "d1": {"kernel": jnp.asarray(k), "bias": jnp.array([0.5, -1.0, 3.0])},
        "out": {"kernel": jnp.asarray(np.arange(6.0).reshape(3, 2)), "bias": jnp.zeros(2)},
    }


# --- a tiny conv: conv1 (2 ch) -> conv2 (3 ch) + BatchNorm -> flatten (2x2x3) -> out ------

CONV_GROUPS = (
    Group(
        "conv1/kernel",
        2,
        (
            P("conv1", "kernel", axis=3),
            P("conv1", "bias", axis=0, role="bias"),
            P("conv2", "kernel", axis=2, role="consumer"),
        ),
        kind="channels",
    ),
    Group(
        "conv2/kernel",
        3,
        (
            P("conv2", "kernel", axis=3),
            P("conv2", "bias", axis=0, role="bias"),
            P("bn", "scale", axis=0, role="norm"),
            P("bn", "bias", axis=0, role="norm"),
            P("bn", "mean", axis=0, role="norm", collection="state"),
            P("bn", "var", axis=0, role="norm", collection="state"),
            P("out", "kernel", axis=0, role="consumer"),  # flattened (2, 2, 3): outer 4
        ),
        kind="channels",
    ),
    Group(
        "out/kernel",
        2,
        (P("out", "kernel", axis=1), P("out", "bias", axis=0, role="bias")),
        prunable=False,
    ),
)


def conv_params(v1=(0.5, 3.0), v2=(5 / 3, 2.0, 4.0), gamma=(0.5, -2.0, 1.0)):
    """Every conv filter constant: conv1 channel j is v1[j] (9 weights), conv2 channel j
    is v2[j] (18 weights); biases 0, so the L1 scores are 9·v1 and 18·v2."""
    return {
        "conv1": {
            "kernel": jnp.broadcast_to(jnp.asarray(v1, jnp.float32), (3, 3, 1, 2)),
            "bias": jnp.zeros(2),
        },
        "conv2": {
            "kernel": jnp.broadcast_to(jnp.asarray(v2, jnp.float32), (3, 3, 2, 3)),
            "bias": jnp.zeros(3),
        },
        "bn": {"scale": jnp.asarray(gamma, jnp.float32), "bias": jnp.ones(3)},
        "out": {"kernel": jnp.ones((12, 2)), "bias": jnp.zeros(2)},
    }


def random_conv_params(seed):
    rng = np.random.default_rng(seed)
    p = conv_params()
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), p)


def ints(mask):
    return jax.tree.map(lambda x: np.asarray(x).astype(int), mask)


# --- scores, by hand ---------------------------------------------------------------------


def test_l1_l2_scores_by_hand_on_the_mlp():
    p = mlp_params()
    got = scores.l1()(p, MLP_GROUPS)
    # column |k| sums 4, 8, 2 plus |bias| 0.5, 1, 3
    np.testing.assert_allclose(got["d1/kernel"], [4.5, 9.0, 5.0])
    np.testing.assert_allclose(got["out/kernel"], [0 + 2 + 4, 1 + 3 + 5])
    got = scores.l2(("producer",))(p, MLP_GROUPS)
    np.testing.assert_allclose(got["d1/kernel"], [2.0, 4.0, 1.0], rtol=1e-6)
    # consumers: rows of the output kernel, |0|+|1|, |2|+|3|, |4|+|5|
    got = scores.l1(("producer", "bias", "consumer"))(p, MLP_GROUPS)
    np.testing.assert_allclose(got["d1/kernel"], [4.5 + 1, 9.0 + 5, 5.0 + 9])


def test_masked_weights_score_zero():
    p = mlp_params()
    mask = dense_mask(p)
    mask["d1"]["kernel"] = mask["d1"]["kernel"].at[0, 1].set(False)  # the -2
    got = scores.l1()(p, MLP_GROUPS, mask=mask)
    np.testing.assert_allclose(got["d1/kernel"], [4.5, 7.0, 5.0])


def test_from_criterion_sums_the_criterion_over_the_unit():
    p = mlp_params()
    np.testing.assert_allclose(
        scores.from_criterion(criteria.magnitude)(p, MLP_GROUPS)["d1/kernel"], [4.5, 9.0, 5.0]
    )
    a = scores.from_criterion(criteria.random)(p, MLP_GROUPS, key=jax.random.key(3))
    b = scores.from_criterion(criteria.random)(p, MLP_GROUPS, key=jax.random.key(3))
    np.testing.assert_array_equal(a["d1/kernel"], b["d1/kernel"])


def test_taylor_is_the_absolute_sum_of_weight_times_gradient():
    p = mlp_params()
    c = np.arange(12.0).reshape(4, 3) - 5.0  # loss = Σ c·k + Σ b², so g = c, 2b

    def loss(params, batch):
        return jnp.sum(batch * params["d1"]["kernel"]) + jnp.sum(params["d1"]["bias"] ** 2)

    got = scores.taylor(loss)(p, MLP_GROUPS, batch=jnp.asarray(c))
    k, b = np.asarray(p["d1"]["kernel"]), np.asarray(p["d1"]["bias"])
    want = np.abs((k * c).sum(0) + 2 * b * b)
    np.testing.assert_allclose(got["d1/kernel"], want, rtol=1e-6)
    with pytest.raises(ValueError, match="batch="):
        scores.taylor(loss)(p, MLP_GROUPS)


def test_bn_scale_score_and_its_error():
    got = scores.bn_scale()(conv_params(), CONV_GROUPS[1:2])
    np.testing.assert_allclose(got["conv2/kernel"], [0.5, 2.0, 1.0])
    with pytest.raises(ValueError, match="group 'conv1/kernel' has no BatchNorm scale"):
        scores.bn_scale()(conv_params(), CONV_GROUPS[:1])


def test_unknown_score_and_roles_are_refused():
    with pytest.raises(ValueError, match="unknown group score 'l3'"):
        scores.get("l3")
    with pytest.raises(ValueError, match="roles must be"):
        scores.l1(("weights",))


# --- the pruner, by hand -----------------------------------------------------------------
# Few pruner configurations, each compiled once (its rates are traced) and shared.

MLP_L1 = StructuredPruner(MLP_GROUPS, scores.l1())
CONV_LAYERWISE = StructuredPruner(CONV_GROUPS, scores.l1(), "layerwise")
CONV_GLOBAL = StructuredPruner(CONV_GROUPS, scores.l1(), "global", "mean", min_keep=0)
CONV_RAW = CONV_GLOBAL._replace(normalize="none")


def test_mlp_prunes_the_weakest_unit_with_its_bias_and_output_row():
    p = mlp_params()
    mask = MLP_L1(p, dense_mask(p), fraction=0.34)  # 1 of 3 units: l1 [4.5, 9, 5]
    m = ints(mask)
    np.testing.assert_array_equal(m["d1"]["kernel"], [[0, 1, 1]] * 4)
    np.testing.assert_array_equal(m["d1"]["bias"], [0, 1, 1])
    np.testing.assert_array_equal(m["out"]["kernel"], [[0, 0], [1, 1], [1, 1]])
    assert m["out"]["bias"] is None  # the output layer is untouched
    check_structured(MLP_GROUPS, mask)
    # the next round prunes 0.5 of the 2 alive units: unit 2 (l1 5 < 9)
    keep = MLP_L1.keep(p, mask, fraction=0.5)
    np.testing.assert_array_equal(keep["d1/kernel"], [False, True, False])
    # min_keep=1: pruning 0.9 of 3 units leaves 1, not 0
    keep = MLP_L1.keep(p, dense_mask(p), fraction=0.9)
    np.testing.assert_array_equal(keep["d1/kernel"], [False, True, False])


def test_conv_bn_scale_removes_the_channel_its_bias_bn_and_flattened_rows():
    p = conv_params()
    groups = CONV_GROUPS[1:]  # conv1 has no BatchNorm: bn_scale refuses it
    pruner = StructuredPruner(groups, scores.bn_scale(), "layerwise")
    mask = pruner(p, dense_mask(p), fraction=0.34)  # |gamma| [0.5, 2, 1]: channel 0
    m = ints(mask)
    assert m["conv2"]["kernel"][..., 0].sum() == 0 and m["conv2"]["kernel"][..., 1:].all()
    np.testing.assert_array_equal(m["conv2"]["bias"], [0, 1, 1])
    np.testing.assert_array_equal(m["bn"]["scale"], [0, 1, 1])
    np.testing.assert_array_equal(m["bn"]["bias"], [0, 1, 1])
    # flattened (2, 2, 3): channel 0 is rows 0, 3, 6, 9 of the output kernel
    np.testing.assert_array_equal(m["out"]["kernel"][:, 0], [0, 1, 1] * 4)
    assert m["conv1"]["kernel"].all() and m["out"]["bias"] is None
    check_structured(groups, mask)


def test_global_normalization_by_the_group_mean():
    """L1: conv1 [4.5, 27] (mean 15.75), conv2 [30, 36, 72] (mean 46). Pruning 2 of 5:
    raw scores take both conv1 channels (a collapse, reported), normalized ones conv1's
    4.5/15.75 and conv2's 30/46."""
    p = conv_params()
    with pytest.warns(LayerCollapseWarning, match="conv1/kernel"):
        keep = CONV_RAW.keep(p, dense_mask(p), fraction=0.4)
    np.testing.assert_array_equal(keep["conv1/kernel"], [False, False])
    np.testing.assert_array_equal(keep["conv2/kernel"], [True, True, True])
    keep = CONV_GLOBAL.keep(p, dense_mask(p), fraction=0.4)
    np.testing.assert_array_equal(keep["conv1/kernel"], [False, True])
    np.testing.assert_array_equal(keep["conv2/kernel"], [False, True, True])


def test_sparsity_counts_units_of_each_group():
    # layerwise sparsity 0.6: conv1 loses round(1.2) = 1 of 2, conv2 round(1.8) = 2 of 3
    p = conv_params()
    keep = CONV_LAYERWISE.keep(p, dense_mask(p), sparsity=0.6)
    np.testing.assert_array_equal(keep["conv1/kernel"], [False, True])
    np.testing.assert_array_equal(keep["conv2/kernel"], [False, False, True])


def test_bad_settings_are_refused_in_one_line():
    p = mlp_params()
    with pytest.raises(ValueError, match="allocation must be one of"):
        MLP_L1._replace(allocation="erk")(p, dense_mask(p), fraction=0.2)
    with pytest.raises(ValueError, match="no prunable group"):
        StructuredPruner(MLP_GROUPS[1:], scores.l1())(p, dense_mask(p), fraction=0.2)
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\)"):
        MLP_L1(p, dense_mask(p), fraction=1.0)
    with pytest.raises(ValueError, match="exactly one of"):
        MLP_L1(p, dense_mask(p))
    with pytest.raises(ValueError, match="min_keep must be"):
        MLP_L1._replace(min_keep=-1)(p, dense_mask(p), fraction=0.2)
    with pytest.raises(ValueError, match="matches no"):
        CONV_LAYERWISE._replace(scale=(("x/*", 0.5),))(p, dense_mask(p), fraction=0.2)


def test_structured_dense_mask_covers_biases_and_norms():
    m = structured_dense_mask(CONV_GROUPS, conv_params())
    assert m["bn"]["scale"].all() and m["conv1"]["bias"].all() and m["out"]["bias"] is None


# --- invariants against a NumPy reference ------------------------------------------------


def ref_l1(p, conv1_alive=(True, True)):
    """L1 of each conv group's producer and bias, by NumPy loops over the channels; conv2's
    inputs from removed conv1 channels count as zero (they are masked)."""
    out = {}
    for name, size in (("conv1", 2), ("conv2", 3)):
        k, b = np.array(p[name]["kernel"]), np.asarray(p[name]["bias"])
        if name == "conv2":
            k[:, :, ~np.asarray(conv1_alive), :] = 0
        out[f"{name}/kernel"] = np.array([np.abs(k[..., j]).sum() + abs(b[j]) for j in range(size)])
    return out


def pruned_count(f, n):
    """round-half-up(f·n) with f at six decimals, in integers."""
    big = int(np.round(np.float32(f) * np.float32(1e6)))
    return (big * n + 500_000) // 1_000_000


def top(scores, alive, k):
    """Indices of the k best alive entries (higher score, then earlier index)."""
    order = sorted((i for i in range(len(scores)) if alive[i]), key=lambda i: (-scores[i], i))
    return set(order[:k])


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), f1=st.floats(0.0, 0.95), f2=st.floats(0.0, 0.95))
def test_layerwise_two_rounds_match_the_reference(seed, f1, f2):
    p = random_conv_params(seed)
    alive = {"conv1/kernel": np.ones(2, bool), "conv2/kernel": np.ones(3, bool)}
    mask = dense_mask(p)
    for f in (f1, f2):
        ref = ref_l1(p, alive["conv1/kernel"])
        mask = CONV_LAYERWISE(p, mask, fraction=f)
        keep = check_structured(CONV_GROUPS, mask)
        for g, s in ref.items():
            n = int(alive[g].sum())
            k = max(n - pruned_count(f, n), min(1, n))
            want = np.zeros(len(s), bool)
            want[list(top(s, alive[g], k))] = True
            np.testing.assert_array_equal(keep[g], want, err_msg=g)
            alive[g] = want
        assert_removed_members_zero(p, mask, keep)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), f=st.floats(0.0, 0.95))
def test_global_matches_the_reference(seed, f):
    p = random_conv_params(seed)
    ref = ref_l1(p)
    names = list(ref)
    normed = np.concatenate([ref[g] / ref[g].mean() for g in names])
    k = 5 - pruned_count(f, 5)
    kept = top(normed, np.ones(5, bool), k)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCollapseWarning)
        mask = CONV_GLOBAL(p, dense_mask(p), fraction=f)
    keep = check_structured(CONV_GROUPS, mask)
    got = np.concatenate([keep[g] for g in names])
    assert set(np.flatnonzero(got)) == kept
    assert_removed_members_zero(p, mask, keep)


def assert_removed_members_zero(p, mask, keep):
    """Every slice a removed unit owns is zero after masking; the output bias and the
    output kernel's columns are never pruned."""
    w = jax.tree.map(np.asarray, apply_mask(p, mask))
    for j in np.flatnonzero(~keep["conv1/kernel"]):
        assert not np.any(w["conv1"]["kernel"][..., j]) and w["conv1"]["bias"][j] == 0
        assert not np.any(w["conv2"]["kernel"][:, :, j, :])
    for j in np.flatnonzero(~keep["conv2/kernel"]):
        assert not np.any(w["conv2"]["kernel"][..., j]) and w["conv2"]["bias"][j] == 0
        assert w["bn"]["scale"][j] == 0 and w["bn"]["bias"][j] == 0
        assert not np.any(w["out"]["kernel"][[j, j + 3, j + 6, j + 9], :])
    assert mask["out"]["bias"] is None
    rows = [o * 3 + j for o in range(4) for j in np.flatnonzero(keep["conv2/kernel"])]
    assert np.asarray(mask["out"]["kernel"])[rows].all()


def test_random_scores_are_deterministic_for_a_key():
    p = conv_params()
    score = scores.from_criterion(criteria.random)
    a = score(p, CONV_GROUPS, key=jax.random.key(5))
    b = score(p, CONV_GROUPS, key=jax.random.key(5))
    c = score(p, CONV_GROUPS, key=jax.random.key(6))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["conv2/kernel"], c["conv2/kernel"])
