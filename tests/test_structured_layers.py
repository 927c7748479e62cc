"""Layer tickets: removable blocks, block masks, compaction to a shallower ResNet, block IMP."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxticket.data.base import Dataset
from jaxticket.masks import apply_mask
from jaxticket.models import get
from jaxticket.models.resnet import removable_block_names
from jaxticket.structured import layer_imp, layers

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def net():
    model = get("resnet", input_shape=SHAPE, num_classes=3, depth=14, width=4)
    params, state = model.init(jax.random.key(0))
    # BatchNorm scales, shifts and running statistics away from their 1/0 init, so a
    # removed block's BatchNorms would show if they leaked into the output.
    leaves, treedef = jax.tree.flatten((params, state))
    rng = np.random.default_rng(1)
    leaves = [
        np.abs(np.asarray(w) + 0.3 * rng.normal(size=w.shape)).astype(np.float32)
        if w.ndim == 1
        else w
        for w in leaves
    ]
    params, state = jax.tree.unflatten(treedef, leaves)
    x = jax.random.normal(jax.random.key(2), (16, *SHAPE))
    return model, params, state, x


def test_removable_blocks_of_resnet20_are_the_seven_shape_preserving_ones():
    model = get("resnet20", input_shape=SHAPE, num_classes=3, width=4)
    params = jax.eval_shape(model.init, jax.random.key(0))[0]
    expected = (
        "stage1_block1",
        "stage1_block2",
        "stage1_block3",
        "stage2_block2",
        "stage2_block3",
        "stage3_block2",
        "stage3_block3",
    )
    assert layers.removable_blocks(params) == expected
    assert removable_block_names(20) == expected
    pad = get("resnet20", input_shape=SHAPE, num_classes=3, width=4, shortcut="pad")
    assert layers.removable_blocks(jax.eval_shape(pad.init, jax.random.key(0))[0]) == expected


def test_block_mask_marks_only_removable_blocks(net):
    _, params, _, _ = net
    assert layers.removable_blocks(params) == (
        "stage1_block1",
        "stage1_block2",
        "stage2_block2",
        "stage3_block2",
    )
    mask = layers.block_mask(params, ["stage2_block2"])
    assert mask["conv1"]["kernel"] is None and mask["output"]["kernel"] is None
    assert mask["stage2_block1"]["conv1"]["kernel"] is None  # downsampling block
    assert not np.asarray(mask["stage2_block2"]["bn2"]["bias"]).any()
    assert np.asarray(mask["stage3_block2"]["conv2"]["kernel"]).all()
    assert layers.removed_blocks(mask) == ("stage2_block2",)


@pytest.mark.parametrize("train", [False, True])
def test_masked_blocks_compact_to_a_shallower_resnet_with_the_same_outputs(net, train):
    model, params, state, x = net
    removed = ("stage1_block2", "stage2_block2", "stage3_block2")
    masked = apply_mask(params, layers.block_mask(params, removed))
    small_p, small_s, small = layers.compact_blocks(model, masked, state, removed)
    assert not set(removed) & set(small_p)
    assert sum(w.size for w in jax.tree.leaves(small_p)) == sum(
        w.size for w in jax.tree.leaves(params)
    ) - sum(w.size for b in removed for w in jax.tree.leaves(params[b]))
    want, _ = model.apply(masked, state, x, train=train)
    got, _ = small.apply(small_p, small_s, x, train=train)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    full, _ = model.apply(params, state, x, train=train)
    assert np.abs(np.asarray(full - want)).max() > 1e-3  # the blocks did matter


def test_partly_masked_block_is_refused(net):
    _, params, _, _ = net
    mask = layers.block_mask(params, [])
    mask["stage1_block1"]["conv1"]["kernel"] = (
        mask["stage1_block1"]["conv1"]["kernel"].at[0].set(False)
    )
    with pytest.raises(ValueError, match="stage1_block1.*partly masked"):
        layers.removed_blocks(mask)


def test_block_scores_by_hand():
    tree = {
        "b1": {"conv1": {"kernel": np.array([1.0, 2.0])}, "conv2": {"kernel": np.array([3.0])}},
        "b2": {"conv1": {"kernel": np.array([0.5])}, "conv2": {"kernel": np.array([0.5, 2.0])}},
    }
    assert layers.block_scores(tree, ["b1", "b2"]) == {"b1": 2.0, "b2": 1.0}
    assert layers.block_scores(tree, ["b1", "b2"], reduce="sum") == {"b1": 6.0, "b2": 3.0}
    assert layers.lowest_blocks({"a": 1.0, "b": 0.5, "c": 0.5}, 2) == ("b", "c")
    assert layers.lowest_blocks({"a": 1.0, "b": 0.5, "c": 0.5}, 1, exclude=["b"]) == ("c",)
    with pytest.raises(ValueError, match="count must be"):
        layers.lowest_blocks({"a": 1.0}, 2)


def test_bad_block_names_are_refused(net):
    model, params, state, _ = net
    with pytest.raises(ValueError, match="'stage2_block1' is not a removable"):
        layers.block_mask(params, ["stage2_block1"])
    with pytest.raises(ValueError, match="skip_blocks entry 'stage3_block1'"):
        get("resnet20", input_shape=SHAPE, num_classes=3, skip_blocks=["stage3_block1"])
    with pytest.raises(ValueError, match="no residual block"):
        layers.removable_blocks({"dense": {"kernel": np.zeros((2, 2))}})
    mlp = get("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    with pytest.raises(ValueError, match="zoo ResNet"):
        layers.compact_blocks(mlp, params, state, [])


def test_block_imp_removes_the_lowest_block_each_level_and_keeps_it_zero():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, *SHAPE)).astype(np.float32)
    y = (x.mean(axis=(1, 2, 3)) > 0).astype(np.int32)
    data = Dataset(
        x_train=x,
        y_train=y,
        x_test=x[:32],
        y_test=y[:32],
        name="t",
        num_classes=2,
        input_shape=SHAPE,
    )
    model = get("resnet", input_shape=SHAPE, num_classes=2, depth=8, width=2)
    seen = []

    def score(p, s):
        scores = layers.block_scores(jax.tree.map(jnp.abs, p), layers.removable_blocks(p))
        seen.append(scores)
        return scores

    out = layer_imp.block_imp(
        model,
        data,
        optax.sgd(0.05),
        key=jax.random.key(0),
        steps=4,
        batch_size=16,
        levels=1,
        score=score,
        rewind_step=2,
    )
    assert [lv.removed for lv in out] == [(), ("stage1_block1",)]
    assert len(seen) == 1 and set(seen[0]) == {"stage1_block1"}
    removed = out[1].result.params["stage1_block1"]
    assert all(not np.asarray(w).any() for w in jax.tree.leaves(removed))
    kept = out[1].result.params["stage2_block1"]["conv1"]["kernel"]
    assert np.asarray(kept).any()
    with pytest.raises(ValueError, match="only 1 removable"):
        layer_imp.block_imp(
            model, data, optax.sgd(0.1), key=jax.random.key(0), steps=2, batch_size=8, levels=2
        )


def test_at_init_scores_rank_blocks(net):
    model = get("resnet", input_shape=SHAPE, num_classes=3, depth=8, width=2)
    params, state = model.init(jax.random.key(0))
    removed, mask = layer_imp.init_block_ticket(model, params, state, 1, score="synflow")
    assert removed == ("stage1_block1",) and layers.removed_blocks(mask) == removed
    syn = layer_imp.score_blocks("synflow", model, params, state)
    assert set(syn) == {"stage1_block1"} and syn["stage1_block1"] > 0
    with pytest.raises(ValueError, match="needs batch"):
        layer_imp.score_blocks("snip", model, params, state)
    with pytest.raises(ValueError, match="how must be one of"):
        layer_imp.score_blocks("taylor", model, params, state)
