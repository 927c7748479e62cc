"""COLT's pieces (jaxticket.colt): the overlap is the intersection of the copies' masks
(hypothesis, against numpy's logical_and applied copy by copy); the segments are disjoint,
equal and drawn from the training examples only; K < 2 or more segments than examples is
a one-line ConfigError naming ``segments`` (the latter before anything trains)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxticket.colt import ColtConfig, overlap, run_colt, segment_indices
from jaxticket.workflow.config import ConfigError


@st.composite
def stacked_masks(draw):
    k = draw(st.integers(1, 4))
    shapes = draw(
        st.lists(st.lists(st.integers(1, 4), min_size=1, max_size=3), min_size=1, max_size=3)
    )
    return {f"w{i}": draw(hnp.arrays(np.bool_, (k, *s))) for i, s in enumerate(shapes)}


@given(stacked_masks())
def test_overlap_is_the_intersection_of_the_members_masks(masks):
    got = overlap({**masks, "bias": None})
    assert got["bias"] is None
    for name, m in masks.items():
        expected = m[0]
        for j in range(1, m.shape[0]):
            expected = np.logical_and(expected, m[j])
        np.testing.assert_array_equal(got[name], expected)


def test_overlap_refuses_a_non_boolean_leaf_naming_it():
    with pytest.raises(ValueError, match=r"'a/w'.*bool") as err:
        overlap({"a": {"w": np.ones((2, 3), np.float32)}})
    assert "\n" not in str(err.value)


@given(st.integers(2, 60), st.integers(2, 9), st.integers(0, 5))
def test_segments_are_disjoint_equal_parts_of_the_examples(n, k, seed):
    if k > n:
        with pytest.raises(ConfigError):
            segment_indices(n, k, seed)
        return
    rows = segment_indices(n, k, seed)
    assert rows.shape == (k, n // k)
    flat = rows.ravel()
    assert len(set(flat.tolist())) == flat.size and flat.min() >= 0 and flat.max() < n


@pytest.mark.parametrize("k", [0, 1])
def test_fewer_than_two_segments_is_refused(k):
    with pytest.raises(ConfigError) as err:
        ColtConfig(segments=k)
    assert err.value.field == "segments" and "\n" not in str(err.value)


def test_more_segments_than_examples_is_refused_before_training(tmp_path):
    # MNIST-1D has 4000 training examples; 3990 held out for validation leave 10.
    config = ColtConfig(model="mlp", hidden=(8,), val_size=3990, batch_size=2, segments=11)
    with pytest.raises(ConfigError, match="segments=11 is more than the 10") as err:
        run_colt(config, out_dir=tmp_path)
    assert err.value.field == "segments" and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # nothing stored


def test_a_batch_larger_than_a_segment_is_refused(tmp_path):
    config = ColtConfig(model="mlp", hidden=(8,), val_size=3990, batch_size=6, segments=2)
    with pytest.raises(ConfigError, match="batch_size must be <= 5") as err:
        run_colt(config, out_dir=tmp_path)
    assert err.value.field == "batch_size"
