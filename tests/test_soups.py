"""Sparse model soups (jaxticket.soups): the uniform soup of masked models keeps exactly
their shared mask and is their mean elsewhere (hypothesis, against numpy); models whose
masks differ are refused naming the leaf and the count; bad settings name their field.
The workflow itself runs in tests/test_soups_colt_workflows.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxticket.soups import SoupConfig, average, shared_mask
from jaxticket.workflow.config import ConfigError


@st.composite
def members_and_mask(draw):
    m = draw(st.integers(2, 4))
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    floats = st.floats(-5, 5, width=32)
    w = draw(hnp.arrays(np.float32, (m, *shape), elements=floats))
    b = draw(hnp.arrays(np.float32, (m, 3), elements=floats))
    mask = draw(hnp.arrays(np.bool_, shape))
    return {"w": w * mask, "b": b}, mask


@given(members_and_mask())
def test_soup_keeps_exactly_the_shared_mask_and_averages_the_rest(case):
    params, mask = case
    m = params["w"].shape[0]
    masks = {"w": np.broadcast_to(mask, params["w"].shape), "b": None}
    soup = average(params, masks)
    assert np.all(soup["w"][~mask] == 0)  # exactly zero where the mask is off
    # Reference: a Python loop over members in float64.
    total = np.zeros(mask.shape)
    for j in range(m):
        total += params["w"][j].astype(np.float64)
    np.testing.assert_allclose(soup["w"][mask], (total / m)[mask], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(soup["b"], params["b"].astype(np.float64).mean(0), atol=1e-6)
    assert soup["b"].dtype == np.float32
    np.testing.assert_array_equal(shared_mask(masks)["w"], mask)


def test_soup_of_models_with_different_masks_is_refused_naming_the_leaf():
    mask = np.ones((3, 4, 5), bool)
    mask[2, 0, :3] = False
    params = {"layer": {"kernel": np.ones((3, 4, 5), np.float32)}}
    with pytest.raises(ValueError, match=r"leaf 'layer/kernel'.*member 2.*3 of 20") as err:
        average(params, {"layer": {"kernel": mask}})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        (dict(members=1), "members"),
        (dict(vary="weights"), "vary"),
        (
            dict(vary="weight_decay", optimizer="adamw", member_weight_decays=(0.1,)),
            "member_weight_decays",
        ),
        (dict(vary="weight_decay", member_weight_decays=(0.1, 0.2, 0.3)), "optimizer"),
        (dict(member_weight_decays=(0.1, 0.2, 0.3)), "member_weight_decays"),
        (dict(rewind=5), "rewind"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ConfigError) as err:
        SoupConfig(**kwargs)
    assert err.value.field == field and "\n" not in str(err.value)


def test_bn_batches_on_a_model_without_state_is_refused_before_training(tmp_path):
    from jaxticket.soups import run_soups

    config = SoupConfig(model="mlp", hidden=(8,), bn_batches=2)
    with pytest.raises(ConfigError, match="no BatchNorm state") as err:
        run_soups(config, out_dir=tmp_path)
    assert err.value.field == "bn_batches" and not any(tmp_path.iterdir())
