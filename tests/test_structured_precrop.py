"""PreCropping: channel counts from layer densities (by hand), the compact net at init."""

import math

import jax
import numpy as np
import pytest

from jaxticket.at_init import RandomInit
from jaxticket.models import get
from jaxticket.structured import Group, Member, declare_groups, dependency_groups
from jaxticket.structured.precrop import (
    channel_counts,
    densities_of,
    precrop,
    precrop_keep,
    rescaled,
)


@pytest.fixture(scope="module")
def cnn():
    # conv1 (3, 1, 8), conv2 (3, 8, 8), output (4 * 8, 3): lengths 16 -> 8 -> 4.
    model = get("cnn1d", input_shape=(16,), num_classes=3, channels=8, kernel_sizes=(3, 3))
    params, state = model.init(jax.random.key(0))
    return model, params, state, dependency_groups(model, params, state)


def test_counts_follow_densities_layer_by_layer(cnn):
    _, params, _, groups = cnn
    counts = channel_counts(
        groups, {"conv1/kernel": 0.5, "conv2/kernel": 0.25, "output/kernel": 0.5}, params
    )
    # conv1: 0.5 * 24 = 12 kept weights at 3 per unit -> 4 units.
    # conv2: 0.25 * 192 = 48 kept weights; a unit owns 3 * 4 kept inputs -> 4 units.
    # output: never pruned -> 3 (only its inputs shrink).
    assert counts == {"conv1/kernel": 4, "conv2/kernel": 4, "output/kernel": 3}


def test_counts_are_clipped_to_one_and_to_size(cnn):
    _, params, _, groups = cnn
    counts = channel_counts(groups, {"conv1/kernel": 0.01, "conv2/kernel": 1.0}, params)
    # conv1: 0.24 / 3 rounds to 0 -> 1; conv2: 192 / (24 * 1/8) = 64 -> 8.
    assert counts["conv1/kernel"] == 1 and counts["conv2/kernel"] == 8


def test_counts_of_a_group_with_two_producers_by_hand():
    params = {"a": {"kernel": np.zeros((3, 2, 4))}, "b": {"kernel": np.zeros((1, 2, 4))}}
    group = Group(
        "a/kernel",
        4,
        (Member("params", ("a", "kernel"), 2), Member("params", ("b", "kernel"), 2)),
        kind="channels",
    )
    groups = declare_groups(group, params=params, state={})
    # kept: 0.5 * 24 + 1.0 * 8 = 20; per unit: 6 + 2 = 8 -> 2.5 -> 3 (halves round up).
    assert channel_counts(groups, {"a/kernel": 0.5}, params) == {"a/kernel": 3}


def test_bad_densities_and_counts_are_refused(cnn):
    _, params, _, groups = cnn
    with pytest.raises(ValueError, match="conv1/kernel.*in \\[0, 1\\]"):
        channel_counts(groups, {"conv1/kernel": 1.5}, params)
    with pytest.raises(ValueError, match="'conv9/kernel', which is no group's producer"):
        channel_counts(groups, {"conv9/kernel": 0.5}, params)
    with pytest.raises(ValueError, match="conv2/kernel.*\\[1, 8\\]"):
        precrop_keep(groups, {"conv1/kernel": 2, "conv2/kernel": 0, "output/kernel": 3})


def test_precrop_builds_the_smaller_dense_net_rescaled_to_its_fan_in(cnn):
    model, params, state, groups = cnn
    dens = {"conv1/kernel": 0.5, "conv2/kernel": 0.25}
    small_p, small_s, small = precrop(model, params, state, groups, dens)
    assert np.shape(small_p["conv1"]["kernel"]) == (3, 1, 4)
    assert np.shape(small_p["conv2"]["kernel"]) == (3, 4, 4)
    assert np.shape(small_p["output"]["kernel"]) == (16, 3)
    # The first 4 units kept; conv2's fan-in halves (24 -> 12): x sqrt(2), bias too.
    np.testing.assert_allclose(small_p["conv1"]["kernel"], params["conv1"]["kernel"][..., :4])
    np.testing.assert_allclose(
        small_p["conv2"]["kernel"], params["conv2"]["kernel"][:, :4, :4] * math.sqrt(2), rtol=1e-6
    )
    np.testing.assert_allclose(
        small_p["conv2"]["bias"], params["conv2"]["bias"][:4] * math.sqrt(2), rtol=1e-6
    )
    raw_p, _, _ = precrop(model, params, state, groups, dens, rescale=None)
    np.testing.assert_allclose(raw_p["conv2"]["kernel"], params["conv2"]["kernel"][:, :4, :4])
    x = np.random.default_rng(0).normal(size=(5, 16)).astype(np.float32)
    assert small.apply(small_p, small_s, x, train=False)[0].shape == (5, 3)
    with pytest.raises(ValueError, match="rescale must be"):
        precrop(model, params, state, groups, dens, rescale="fan_out")


def test_rescaled_fan_avg_by_hand():
    full = {"d": {"kernel": np.ones((6, 4)), "bias": np.ones(4)}}
    small = {"d": {"kernel": np.ones((3, 2)), "bias": np.ones(2)}}
    out = rescaled(full, small, "fan_avg")
    np.testing.assert_allclose(out["d"]["kernel"], np.full((3, 2), math.sqrt(5 / 2.5)))


def test_precrop_from_an_at_init_mask(cnn):
    model, params, state, groups = cnn
    mask = RandomInit(allocation="erk").mask(model, params, state, None, jax.random.key(1), 0.75)
    dens = densities_of(mask)
    assert set(dens) == {"conv1/kernel", "conv2/kernel", "output/kernel"}
    counts = channel_counts(groups, dens, params)
    assert all(1 <= counts[g.name] <= g.size for g in groups)
    small_p, small_s, small = precrop(model, params, state, groups, dens)
    for g in groups[:-1]:
        name = g.name.split("/")[0]
        assert np.shape(small_p[name]["kernel"])[-1] == counts[g.name]
