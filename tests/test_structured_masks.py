"""Structured masks: a keep expanded over whole units, read back, checked; collapse.

Expected masks are written out by hand from the member layout; the groups are the
hand-written ones of ``structured_hand_groups``.
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import structured_hand_groups as hand
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxticket.models
from jaxticket.masks import LayerCollapseWarning, apply_mask, count_alive
from jaxticket.structured.compact import compact
from jaxticket.structured.groups import Group, Member
from jaxticket.structured.masks import (
    check_structured,
    collapsed_groups,
    expand_keep,
    keep_from_mask,
)

MLP = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(5, 3))
MLP_GROUPS = (*hand.mlp_groups((5, 3)), hand.output_group(2))
MLP_PARAMS = jax.eval_shape(MLP.init, jax.random.key(0))[0]


def bools(*values):
    return np.array(values, bool)


def flags(n):
    return st.lists(st.booleans(), min_size=n, max_size=n)


@pytest.fixture(scope="module")
def user():
    model = hand.user_cnn()
    params, state = hand.random_variables(model, 0)
    return model, params, state, hand.user_cnn_groups()


def test_expand_keep_mlp_by_hand():
    model = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    params = jax.eval_shape(model.init, jax.random.key(0))[0]
    mask = expand_keep(hand.mlp_groups((3,)), {"dense1/kernel": np.array([1, 0, 1], bool)}, params)
    np.testing.assert_array_equal(mask["dense1"]["kernel"], np.tile([True, False, True], (4, 1)))
    np.testing.assert_array_equal(mask["dense1"]["bias"], [True, False, True])
    np.testing.assert_array_equal(mask["output"]["kernel"], [[1, 1], [0, 0], [1, 1]])
    assert mask["output"]["bias"] is None  # no prunable group touches it


def test_expand_keep_follows_the_outer_size_inner_layout():
    # Axis of length 12 = (outer 2, size 3, inner 2): unit j owns {6 o + 2 j + i}.
    group = Group("w", 3, (Member("params", ("w",), 1, inner=2),))
    params = {"w": jax.ShapeDtypeStruct((2, 12), jnp.float32)}
    mask = expand_keep([group], {"w": np.array([True, False, True])}, params)
    row = [1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1]
    np.testing.assert_array_equal(mask["w"], np.array([row, row], bool))
    np.testing.assert_array_equal(keep_from_mask([group], mask)["w"], [True, False, True])


def test_leaf_in_two_groups_is_their_and(user):
    _, params, _, groups = user
    keep = {
        "stem/kernel": np.array([1, 0, 1, 1, 1, 0], bool),
        "a/kernel": np.array([0, 1, 1, 1, 1], bool),
    }
    mask = expand_keep(groups, keep, params)
    # b/kernel (3, 3, 5, 6): inputs from group a (axis 2), outputs in the stem group (axis 3).
    want = keep["a/kernel"][:, None] & keep["stem/kernel"][None, :]
    np.testing.assert_array_equal(mask["b"]["kernel"], np.broadcast_to(want, (3, 3, 5, 6)))
    np.testing.assert_array_equal(mask["stem_bn"]["scale"], keep["stem/kernel"])


def test_expand_keep_under_jit_and_vmap_matches_eager(user):
    _, params, _, groups = user
    rng = np.random.default_rng(0)
    keeps = {g.name: rng.random((3, g.size)) < 0.6 for g in groups}
    batched = jax.jit(jax.vmap(lambda k: expand_keep(groups, k, params)))(keeps)
    for i in range(3):
        one = expand_keep(groups, {k: v[i] for k, v in keeps.items()}, params)
        same = jax.tree.map(lambda a, b, i=i: np.array_equal(a[i], b), batched, one)
        assert all(jax.tree.leaves(same))
    back = jax.jit(jax.vmap(lambda m: keep_from_mask(groups, m)))(batched)
    for name, k in keeps.items():
        np.testing.assert_array_equal(back[name], k)


@settings(max_examples=15, deadline=None)
@given(
    st.lists(st.booleans(), min_size=5, max_size=5), st.lists(st.booleans(), min_size=3, max_size=3)
)
def test_alive_count_and_round_trip(k1, k2):
    keep = {"dense1/kernel": np.array(k1), "dense2/kernel": np.array(k2)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LayerCollapseWarning)
        mask = expand_keep(MLP_GROUPS, keep, MLP_PARAMS)
    a, b = sum(k1), sum(k2)
    # dense1 4a + a, dense2 a*b + b, output rows 2b (output bias: no prunable group).
    assert int(count_alive(mask)) == 4 * a + a + a * b + b + 2 * b
    back = keep_from_mask(MLP_GROUPS, mask)
    assert set(back) == set(keep)  # the output group is not prunable
    for name in keep:
        np.testing.assert_array_equal(back[name], keep[name])
    assert check_structured(MLP_GROUPS, mask).keys() == keep.keys()


def test_unstructured_hole_names_the_group_and_leaf(user):
    model, params, state, groups = user
    keep = {"a/kernel": np.array([1, 1, 0, 1, 1], bool)}
    mask = expand_keep(groups, keep, params)
    mask["a"]["kernel"] = mask["a"]["kernel"].at[0, 0, 0, 1].set(False)
    with pytest.raises(ValueError, match=r"params leaf 'a/kernel' in group 'stem/kernel'") as e:
        compact(model, params, state, mask, groups)
    assert "\n" not in str(e.value) and "group 'a/kernel' (axis 3, producer)" in str(e.value)


def test_hole_outside_every_group_and_none_member_are_refused():
    mask = expand_keep(MLP_GROUPS, {"dense1/kernel": np.array([1, 1, 0, 1, 1], bool)}, MLP_PARAMS)
    mask["output"]["bias"] = jnp.array([True, False])  # the logits' group is not prunable
    with pytest.raises(ValueError, match=r"leaf 'output/bias' has 1 pruned entries but no"):
        check_structured(MLP_GROUPS, mask)
    mask["output"]["bias"] = None
    mask["dense1"]["bias"] = None  # a removed unit would still output relu(bias)
    with pytest.raises(
        ValueError, match=r"group 'dense1/kernel' removes units but .*'dense1/bias'"
    ):
        check_structured(MLP_GROUPS, mask)


def test_collapsed_group_is_reported_and_refused(user):
    model, params, state, groups = user
    keep = {"a/kernel": np.zeros(5, bool)}
    with pytest.warns(LayerCollapseWarning, match="a/kernel"):
        expand_keep(groups, keep, params)
    assert collapsed_groups(groups, keep) == ["a/kernel"]
    with pytest.raises(ValueError, match=r"groups \['a/kernel'\] keep no unit \(layer collapse\)"):
        compact(model, params, state, keep, groups)


@pytest.mark.parametrize(
    ("keep", "error", "match"),
    [
        ({"dense9/kernel": np.ones(5, bool)}, ValueError, "unknown group 'dense9/kernel'"),
        ({"output/kernel": np.ones(2, bool)}, ValueError, "'output/kernel', which is not prunable"),
        ({"dense1/kernel": np.ones(4, bool)}, ValueError, r"must have shape \(5,\), got \(4,\)"),
        ({"dense1/kernel": np.ones(5)}, TypeError, "must be boolean, got dtype float"),
    ],
)
def test_bad_keeps(keep, error, match):
    with pytest.raises(error, match=match):
        expand_keep(MLP_GROUPS, keep, MLP_PARAMS)


def without_consumers(groups):
    return tuple(
        dataclasses.replace(g, members=tuple(m for m in g.members if m.role != "consumer"))
        for g in groups
    )


def test_pruned_unit_contributes_nothing_bias_and_batchnorm_included(user):
    # The consumers read a removed unit with their weights left alive, and its BatchNorm
    # running statistics are far from init: the logits are those of the fully masked
    # network, so the unit itself outputs exactly 0 (bias, BN scale and shift zeroed).
    model, params, state, groups = user
    keep = {
        "stem/kernel": np.array([1, 0, 1, 1, 0, 1], bool),
        "a/kernel": np.array([0, 1, 1, 0, 1], bool),
    }
    rng = np.random.default_rng(0)
    state = jax.tree.map(lambda v: jnp.asarray(rng.uniform(0.5, 3.0, v.shape), v.dtype), state)
    full = expand_keep(groups, keep, params)
    producers_only = expand_keep(without_consumers(groups), keep, params)
    assert not np.array_equal(full["head"]["kernel"], np.ones((6, 3), bool))
    assert producers_only["head"] is None or producers_only["head"]["kernel"] is None
    x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32)
    for train_mode in (False, True):
        want, _ = hand.logits(model, apply_mask(params, full), state, x, train_mode)
        got, _ = hand.logits(model, apply_mask(params, producers_only), state, x, train_mode)
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
