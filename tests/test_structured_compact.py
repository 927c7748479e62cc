"""Compaction of structured tickets: same function, smaller dense network, trains, reloads.

Every zoo model (tiny inputs) and a user-written NNX CNN with BatchNorm and a residual
connection get a random structured keep over hand-written dependency groups
(``structured_hand_groups``); the compacted network must reproduce the masked network's
logits, in eval mode (with non-trivial running statistics) and in train mode.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
import structured_hand_groups as hand
from flax import nnx

import jaxticket.models
from jaxticket._paths import leaves_with_paths
from jaxticket.data import Dataset
from jaxticket.masks import apply_mask
from jaxticket.models.base import from_nnx
from jaxticket.structured import dependency_groups
from jaxticket.structured.compact import compact
from jaxticket.structured.masks import expand_keep
from jaxticket.train import train

# name -> (input_shape, num_classes, model options, hand-written groups)
ZOO = {
    "mlp": ((8,), 3, {"hidden": (8, 6)}, lambda: hand.mlp_groups((8, 6))),
    "lenet_300_100": ((16,), 3, {}, lambda: hand.mlp_groups((300, 100))),
    "conv2": ((8, 8, 3), 3, {}, lambda: hand.convnet_groups(1)),
    "conv4": ((8, 8, 3), 3, {}, lambda: hand.convnet_groups(2)),
    "conv6": ((8, 8, 3), 3, {}, lambda: hand.convnet_groups(3)),
    "vgg16": ((32, 32, 1), 3, {}, hand.vgg16_groups),  # vgg16 needs 32×32 (five pools)
    "resnet20": ((8, 8, 3), 3, {"width": 4}, lambda: hand.resnet_groups(4)),
    "cnn1d": ((16,), 3, {"channels": 4}, lambda: hand.cnn1d_groups(4)),
    "embed_mlp": ((2,), 5, {"dim": 4, "hidden": (6,)}, lambda: hand.embed_mlp_groups(4, 6)),
    "transformer1": (
        (2,),
        5,
        {"dim": 8, "heads": 2, "mlp_ratio": 2},
        lambda: hand.transformer1_groups(8, 2, 16),
    ),
}
TOL = 1e-5


def random_keep(groups, seed):
    """About half the units of every prunable group, at least one kept and one removed."""
    rng = np.random.default_rng(seed)
    keep = {}
    for g in groups:
        if g.prunable:
            k = rng.random(g.size) < 0.5
            k[rng.integers(g.size)] = True
            if g.size > 1 and k.all():
                k[rng.integers(g.size)] = False
            keep[g.name] = k
    return keep


def inputs(model, seed, n=4):
    rng = np.random.default_rng(seed)
    if model.name in ("embed_mlp", "transformer1"):
        return jnp.asarray(rng.integers(0, model.num_classes, (n, *model.input_shape)), jnp.int32)
    return jnp.asarray(rng.normal(size=(n, *model.input_shape)), jnp.float32)


class Case:
    """One model, its groups, a random keep, its mask and its compaction."""

    def __init__(self, name, model, groups, seed=0):
        self.model, self.groups = model, groups
        self.params, self.state = hand.random_variables(model, seed)
        self.keep = random_keep(groups, seed)
        self.mask = expand_keep(groups, self.keep, self.params)
        self.small = compact(model, self.params, self.state, self.mask, groups)
        self.x = inputs(model, seed + 1)


def traced_groups(model, by_hand):
    """The groups dependency_groups derives, checked against the hand-written ones."""
    groups = dependency_groups(model)
    traced = {structure(g) for g in groups if g.prunable}
    written = {structure(g) for g in by_hand if g.prunable}
    assert written <= traced, f"{model.name}: traced groups miss {written - traced}"
    # Only transformer1's residual stream (embedding width) is a group not written out.
    assert len(traced - written) == (model.name == "transformer1")
    return groups


def structure(group):
    members = frozenset((m.collection, m.path, m.axis, m.inner, m.role) for m in group.members)
    return group.size, members


@pytest.fixture(scope="module", params=sorted(ZOO))
def case(request):
    shape, classes, options, by_hand = ZOO[request.param]
    model = jaxticket.models.get(request.param, input_shape=shape, num_classes=classes, **options)
    return Case(request.param, model, traced_groups(model, by_hand()))


@pytest.fixture(scope="module")
def user():
    model = hand.user_cnn()
    return Case("user_cnn", model, traced_groups(model, hand.user_cnn_groups()))


def masked_logits(c, train_mode):
    return hand.logits(c.model, apply_mask(c.params, c.mask), c.state, c.x, train_mode)


def test_compacted_zoo_model_computes_the_masked_function(case):
    # Eval mode, with random running statistics where there is BatchNorm; train mode is
    # checked on the user's CNN below (batch statistics of 4 examples through VGG-16's 13
    # BatchNorms amplify float rounding past 1e-5).
    params, state, small = case.small
    want, _ = masked_logits(case, False)
    got, _ = hand.logits(small, params, state, case.x, False)
    np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    assert np.abs(want).max() > 1e-3  # not a trivially zero network


def test_compacted_shapes_are_the_kept_counts(case):
    params, state, _ = case.small
    trees = {"params": params, "state": state}
    old = {"params": case.params, "state": case.state}
    for g in case.groups:
        kept = int(case.keep[g.name].sum()) if g.prunable else g.size
        for mem in g.members:
            before = dict(leaves_with_paths(old[mem.collection]))["/".join(mem.path)]
            after = dict(leaves_with_paths(trees[mem.collection]))["/".join(mem.path)]
            assert after.shape[mem.axis] == before.shape[mem.axis] // g.size * kept


def test_user_cnn_with_batchnorm_and_residual(user):
    params, state, small = user.small
    for train_mode in (False, True):
        want, want_state = masked_logits(user, train_mode)
        got, got_state = hand.logits(small, params, state, user.x, train_mode)
        np.testing.assert_allclose(got, want, atol=TOL, rtol=0)
    # Train mode updates the kept channels' running statistics as the masked network does.
    kept = np.flatnonzero(user.keep["stem/kernel"])
    np.testing.assert_allclose(
        got_state["b_bn"]["mean"], np.asarray(want_state["b_bn"]["mean"])[kept], atol=TOL
    )


def test_mlp_parameter_count_by_hand():
    # mlp 4-3-2 with hidden unit 1 removed: 4*2 + 2 (dense1) + 2*2 + 2 (output) = 16 of 23.
    model = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    params, state = jax.jit(model.init)(jax.random.key(0))
    keep = {"dense1/kernel": np.array([True, False, True])}
    small_params, _, small = compact(model, params, state, keep, hand.mlp_groups((3,)))
    assert sum(x.size for x in jax.tree.leaves(params)) == 23
    assert sum(x.size for x in jax.tree.leaves(small_params)) == 16
    w = np.asarray(params["dense1"]["kernel"])
    np.testing.assert_array_equal(small_params["dense1"]["kernel"], w[:, [0, 2]])
    np.testing.assert_array_equal(small_params["output"]["kernel"], params["output"]["kernel"][::2])
    # An independent NumPy forward pass of the masked network.
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    m = np.array([1, 0, 1], np.float32)
    h = np.maximum(x @ (w * m) + np.asarray(params["dense1"]["bias"]) * m, 0)
    want = h @ np.asarray(params["output"]["kernel"]) + np.asarray(params["output"]["bias"])
    got, _ = hand.logits(small, small_params, {}, x, False)
    np.testing.assert_allclose(got, want, atol=TOL)
    # The compacted model's init is the original init sliced the same way.
    new_params, _ = jax.jit(small.init)(jax.random.key(0))
    np.testing.assert_array_equal(new_params["dense1"]["kernel"], w[:, [0, 2]])
    np.testing.assert_array_equal(new_params["output"]["bias"], params["output"]["bias"])


def test_cnn1d_parameter_count_and_flatten_layout_by_hand():
    # Lengths 16 -> 7 -> 4 -> 2; the readout's 8 rows are laid out (length 2, channels 4).
    model = jaxticket.models.get("cnn1d", input_shape=(16,), num_classes=3, channels=4)
    params, state = hand.random_variables(model, 0)
    keep = {
        "conv1/kernel": np.array([1, 1, 0, 1], bool),
        "conv3/kernel": np.array([0, 1, 1, 0], bool),
    }
    small_params, _, _ = compact(model, params, state, keep, hand.cnn1d_groups(4))
    # conv1 5*1*3+3, conv2 3*3*4+4, conv3 3*4*2+2, output 2*2*3+3 (of 24 + 52 + 52 + 27).
    assert sum(x.size for x in jax.tree.leaves(params)) == 155
    assert sum(x.size for x in jax.tree.leaves(small_params)) == 18 + 40 + 26 + 15
    rows = [0 * 4 + 1, 0 * 4 + 2, 1 * 4 + 1, 1 * 4 + 2]
    np.testing.assert_array_equal(
        small_params["output"]["kernel"], np.asarray(params["output"]["kernel"])[rows]
    )


class StoredWidth(nnx.Module):
    """A user module that reshapes with a stored width instead of its input's shape."""

    def __init__(self, rngs):
        self.width = 6
        self.dense1 = nnx.Linear(4, 6, rngs=rngs)
        self.output = nnx.Linear(6, 2, rngs=rngs)

    def __call__(self, x, *, train):
        h = jax.nn.relu(self.dense1(x)).reshape(x.shape[0], self.width)
        return self.output(h)


def test_module_with_a_stored_width_is_refused_naming_the_group():
    model = from_nnx(lambda rngs: StoredWidth(rngs), input_shape=(4,), name="stored")
    params, state = hand.random_variables(model, 0)
    keep = {"dense1/kernel": np.array([1, 1, 0, 1, 1, 1], bool)}
    with pytest.raises(
        ValueError, match=r"compact: .*'dense1/kernel'.*fails its forward pass"
    ) as e:
        compact(model, params, state, keep, hand.mlp_groups((6,)))
    assert "\n" not in str(e.value)


def test_compacted_model_trains_one_step_and_reloads(user, tmp_path):
    params, state, small = user.small
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 8, 8, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 16), jnp.int32)
    data = Dataset(
        x_train=x,
        y_train=y,
        x_test=x[:8],
        y_test=y[:8],
        name="noise",
        num_classes=3,
        input_shape=(8, 8, 3),
    )
    result = train(
        small,
        data,
        optax.sgd(0.1),
        key=jax.random.key(0),
        steps=1,
        batch_size=8,
        params=params,
        model_state=state,
    )
    assert jax.tree.map(np.shape, result.params) == jax.tree.map(np.shape, params)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), result.params, params)
    assert any(jax.tree.leaves(moved)) and not result.diverged

    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "ckpt", {"params": result.params, "state": result.model_state})
    checkpointer.wait_until_finished()
    target = dict(
        zip(("params", "state"), jax.eval_shape(small.init, jax.random.key(0)), strict=True)
    )
    restored = checkpointer.restore(tmp_path / "ckpt", target)
    chex_equal = jax.tree.map(np.array_equal, restored["params"], result.params)
    assert all(jax.tree.leaves(chex_equal))
    before, _ = hand.logits(small, result.params, result.model_state, user.x, False)
    after, _ = hand.logits(small, restored["params"], restored["state"], user.x, False)
    np.testing.assert_array_equal(after, before)


def test_stacked_seed_params_and_a_mismatched_mask_are_refused():
    model = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
    params, state = hand.random_variables(model, 0)
    groups = hand.mlp_groups((3,))
    stacked = jax.tree.map(lambda x: jnp.stack([x, x]), params)
    with pytest.raises(ValueError, match=r"leaf 'dense1/bias' has shape \(2, 3\), expected \(3,\)"):
        compact(model, stacked, state, {"dense1/kernel": np.array([1, 0, 1], bool)}, groups)
    mask = {"dense1": {"kernel": np.ones((4, 3), bool)}}  # the output subtree is missing
    with pytest.raises(ValueError, match="structure"):
        compact(model, params, state, mask, groups)


def test_model_not_built_by_from_nnx_is_refused():
    model = jaxticket.models.from_functions(
        lambda key: {"w": jnp.zeros((4, 2))}, lambda p, x: x @ p["w"], input_shape=(4,)
    )
    with pytest.raises(TypeError, match="was not built by from_nnx"):
        compact(model, {"w": jnp.zeros((4, 2))}, {}, {}, ())
