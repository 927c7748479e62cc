"""Flax NNX in the styles of the Flax tutorials: ``model.train()`` / ``model.eval()``,
``nnx.Rngs`` kept in the module, ``nnx.Optimizer`` with ``jaxticket.zero_pruned``.

Expected values are worked by hand (dropout keeps ``0`` or ``x / (1 - rate)``, BatchNorm
normalises with the batch's statistics in train mode and the running ones in eval mode),
never taken from the code under test.
"""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxticket
import jaxticket.models as models
from jaxticket._paths import leaves_with_paths
from jaxticket.data import Dataset

zero_pruned = getattr(jaxticket, "zero_pruned", None) or jaxticket.masked
KEY = jax.random.key(0)


class TutorialCNN(nnx.Module):
    """Written like the Flax NNX MNIST tutorial: layers take ``rngs``, ``__call__(x)``."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.batch_norm = nnx.BatchNorm(4, rngs=rngs)
        self.dropout = nnx.Dropout(0.25, rngs=rngs)
        self.linear = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.avg_pool(nnx.relu(self.batch_norm(self.conv1(x))), (2, 2), strides=(2, 2))
        return self.linear(self.dropout(x.reshape(x.shape[0], -1)))


class DropoutOnly(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear = nnx.Linear(16, 16, rngs=rngs)

    def __call__(self, x):
        return self.linear(self.dropout(x))


class NormOnly(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.norm = nnx.BatchNorm(3, momentum=0.75, epsilon=0.0, rngs=rngs)

    def __call__(self, x):
        return self.norm(x)


class TrainFlagDropout(nnx.Module):
    """A third style: ``__call__(x, train)`` with the Rngs inside the module."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear = nnx.Linear(16, 16, rngs=rngs)

    def __call__(self, x, train: bool = False):
        return self.linear(self.dropout(x, deterministic=not train))


def _identity_params(model):
    params, state = model.init(KEY)
    eye = {"kernel": jnp.eye(16), "bias": jnp.zeros(16)}
    return {**params, "linear": eye}, state


def _tiny_images(n_train=48, n_test=16, seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n_train + n_test)
    x = rng.normal(size=(n_train + n_test, 8, 8, 1)) + y[:, None, None, None]
    return Dataset(
        x_train=jnp.asarray(x[:n_train], jnp.float32),
        y_train=jnp.asarray(y[:n_train], jnp.int32),
        x_test=jnp.asarray(x[n_train:], jnp.float32),
        y_test=jnp.asarray(y[n_train:], jnp.int32),
        name="tiny_images",
        num_classes=3,
        input_shape=(8, 8, 1),
    )


def _types(tree) -> collections.Counter:
    variables = jax.tree.leaves(tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
    return collections.Counter(type(v).__name__ for v in variables if isinstance(v, nnx.Variable))


# --- from_nnx: tutorial-style modules -------------------------------------------------


def test_tutorial_cnn_trains_through_the_engine_and_is_deterministic():
    model = models.from_nnx(lambda rngs: TutorialCNN(rngs=rngs), input_shape=(8, 8, 1))
    assert model.num_classes == 3
    params, state = jax.eval_shape(model.init, KEY)
    # Params are exactly the nnx.Param variables; the Rngs behind Dropout are neither
    # params (never pruned) nor model state (never checkpointed); BatchNorm stats are state.
    assert sorted(p for p, _ in leaves_with_paths(params)) == [
        "batch_norm/bias",
        "batch_norm/scale",
        "conv1/bias",
        "conv1/kernel",
        "linear/bias",
        "linear/kernel",
    ]
    assert sorted(p for p, _ in leaves_with_paths(state)) == ["batch_norm/mean", "batch_norm/var"]
    mask = jaxticket.dense_mask(params)
    assert sorted(jaxticket.alive_by_leaf(mask)) == ["conv1/kernel", "linear/kernel"]

    data = _tiny_images()
    kwargs = dict(key=jax.random.key(3), steps=6, batch_size=8, eval_every=3)
    first = jaxticket.train.train(model, data, optax.adam(1e-2), **kwargs)
    again = jaxticket.train.train(model, data, optax.adam(1e-2), **kwargs)
    jax.tree.map(np.testing.assert_array_equal, first.params, again.params)
    np.testing.assert_array_equal(first.history["train_loss"], again.history["train_loss"])
    assert np.all(np.isfinite(first.history["test_loss"]))
    initial, _ = model.init(jax.random.key(3))
    moved = np.abs(np.asarray(first.params["linear"]["kernel"] - initial["linear"]["kernel"]))
    assert moved.max() > 0  # it trained
    # BatchNorm's running statistics were updated in train mode.
    assert not np.allclose(first.model_state["batch_norm"]["mean"], 0.0)


def test_dropout_follows_the_key_and_is_off_in_eval_mode():
    model = models.from_nnx(lambda rngs: DropoutOnly(rngs=rngs), input_shape=(16,))
    params, state = _identity_params(model)
    x = jnp.arange(1.0, 1.0 + 8 * 16).reshape(8, 16)
    apply = jax.jit(model.apply, static_argnames="train")
    a, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    b, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    c, _ = apply(params, state, x, train=True, key=jax.random.key(2))
    raw, _ = apply(params, state, x, train=True, key=jax.random.key_data(jax.random.key(1)))
    evaled, _ = apply(params, state, x, train=False)
    np.testing.assert_array_equal(a, b)  # a fixed key is reproducible
    np.testing.assert_array_equal(a, raw)  # a raw uint32 key is the same key
    assert not np.array_equal(a, c)  # another key drops other units
    np.testing.assert_array_equal(evaled, x)  # identity layer, no dropout
    a = np.asarray(a)
    kept = a != 0
    np.testing.assert_allclose(a[kept], 2 * np.asarray(x)[kept])  # x / (1 - 0.5)
    assert 0.3 < kept.mean() < 0.7
    with pytest.raises(ValueError, match="needs key="):
        model.apply(params, state, x, train=True)


def test_batch_norm_uses_batch_statistics_in_train_mode_and_running_ones_in_eval():
    model = models.from_nnx(lambda rngs: NormOnly(rngs=rngs), input_shape=(3,))
    params, state = model.init(KEY)
    x = jnp.asarray([[1.0, 2.0, 3.0], [3.0, 6.0, 9.0]])
    y, new_state = model.apply(params, state, x, train=True, key=KEY)
    # Batch mean (2, 4, 6), population variance (1, 4, 9): outputs are -1 and +1.
    np.testing.assert_allclose(y, [[-1.0] * 3, [1.0] * 3], rtol=1e-6)
    # momentum 0.75: running = 0.75 * (0, 1) + 0.25 * batch.
    np.testing.assert_allclose(new_state["norm"]["mean"], [0.5, 1.0, 1.5], rtol=1e-6)
    np.testing.assert_allclose(new_state["norm"]["var"], [1.0, 1.75, 3.0], rtol=1e-6)
    y_eval, same = model.apply(params, new_state, x, train=False)
    want = (np.asarray(x) - [0.5, 1.0, 1.5]) / np.sqrt([1.0, 1.75, 3.0])
    np.testing.assert_allclose(y_eval, want, rtol=1e-5)
    jax.tree.map(np.testing.assert_array_equal, same, new_state)


def test_a_train_flag_with_rngs_inside_is_detected_too():
    model = models.from_nnx(lambda rngs: TrainFlagDropout(rngs=rngs), input_shape=(16,))
    params, state = _identity_params(model)
    x = jnp.ones((4, 16))
    a, _ = model.apply(params, state, x, train=True, key=jax.random.key(5))
    b, _ = model.apply(params, state, x, train=True, key=jax.random.key(5))
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(np.asarray(a))) <= {0.0, 2.0} and np.any(np.asarray(a) == 0)
    np.testing.assert_array_equal(model.apply(params, state, x, train=False)[0], x)


def test_explicit_conventions_and_seed_vmapping():
    modes = models.from_nnx(lambda rngs: DropoutOnly(rngs=rngs), input_shape=(16,), call="modes")
    params, state = _identity_params(modes)
    x = jnp.ones((2, 16))
    np.testing.assert_array_equal(modes.apply(params, state, x, train=False)[0], x)
    stacked, stacked_state = jax.vmap(modes.init)(jax.random.split(KEY, 3))
    assert stacked["linear"]["kernel"].shape == (3, 16, 16) and stacked_state == {}
    keys = jax.random.split(jax.random.key(9), 3)
    out = jax.vmap(lambda p, k: modes.apply(p, {}, x, train=True, key=k)[0])(stacked, keys)
    assert out.shape == (3, 2, 16)


# --- masks and nnx.Optimizer ----------------------------------------------------------


class Net(nnx.Module):
    def __init__(self, *, rngs: nnx.Rngs):
        self.l1 = nnx.Linear(4, 6, rngs=rngs)
        self.l2 = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


def test_replace_mask_in_an_nnx_optimizer_keeps_variable_types_and_zeros():
    model = Net(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, zero_pruned(optax.adam(1e-2)), wrt=nnx.Param)
    before = _types(nnx.state(optimizer))
    # A mask built from the model's params, put into the optimizer as it is.
    dense = jaxticket.dense_mask(nnx.state(model, nnx.Param))
    optimizer.opt_state = jaxticket.replace_mask(optimizer.opt_state, dense)
    assert _types(nnx.state(optimizer)) == before  # no Param slipped into the optimizer
    assert "Param" not in before and not jax.tree.leaves(nnx.state(optimizer, nnx.Param))
    mask = jaxticket.get_mask(optimizer.opt_state)
    assert not _types(mask)  # plain arrays, no variables
    keep = np.arange(24).reshape(4, 6) % 3 != 0
    mask["l1"]["kernel"] = jnp.asarray(keep)
    optimizer.opt_state = jaxticket.replace_mask(optimizer.opt_state, mask)
    assert _types(nnx.state(optimizer)) == before
    np.testing.assert_array_equal(jaxticket.get_mask(optimizer.opt_state)["l1"]["kernel"], keep)

    # No apply_mask first: the wrapper lands pruned weights on exactly 0 at the first step.
    x = jnp.linspace(-1.0, 1.0, 8).reshape(2, 4)
    for _ in range(3):
        grads = nnx.grad(lambda m: jnp.sum(m(x) ** 2))(model)
        optimizer.update(model, grads)
    kernel = np.asarray(model.l1.kernel[...])
    assert np.all(kernel[~keep] == 0.0) and np.all(kernel[keep] != 0.0)
    assert _types(nnx.state(optimizer)) == before
    assert _types(nnx.state(model)) == collections.Counter({"Param": 4})


def test_replace_mask_under_jit_in_an_nnx_optimizer_state():
    model = Net(rngs=nnx.Rngs(1))
    optimizer = nnx.Optimizer(model, zero_pruned(optax.sgd(0.1)), wrt=nnx.Param)
    mask = jaxticket.get_mask(optimizer.opt_state)
    mask["l2"]["kernel"] = jnp.zeros((6, 3), bool)
    new = jax.jit(jaxticket.replace_mask)(optimizer.opt_state, mask)
    assert _types(new) == _types(optimizer.opt_state)
    assert not np.any(np.asarray(jaxticket.get_mask(new)["l2"]["kernel"]))


def test_a_mask_of_an_nnx_state_holds_plain_bools_and_fits_the_param_state():
    model = Net(rngs=nnx.Rngs(2))
    params = nnx.state(model, nnx.Param)
    mask = jaxticket.dense_mask(params)
    assert isinstance(mask, nnx.State) and not _types(mask)  # no Param(bool) masquerade
    assert [p for p, _ in leaves_with_paths(mask)] == ["l1/kernel", "l2/kernel"]
    keep = np.arange(24).reshape(4, 6) % 4 != 0
    mask["l1"]["kernel"] = jnp.asarray(keep)
    jaxticket.validate_mask(mask, params)
    pruned = jaxticket.apply_mask(params, mask)
    assert _types(pruned) == collections.Counter({"Param": 4})  # the params keep their type
    np.testing.assert_array_equal(
        np.asarray(pruned["l1"]["kernel"][...]), np.where(keep, params["l1"]["kernel"][...], 0)
    )
    # optax used directly on the Param state, as the optax docs would.
    opt = zero_pruned(optax.sgd(0.1), mask)
    grads = jax.tree.map(jnp.ones_like, params)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    assert _types(new) == collections.Counter({"Param": 4})
    assert np.all(np.asarray(new["l1"]["kernel"][...])[~keep] == 0.0)
    # And through an nnx.Optimizer: the mask in its state is no parameter either.
    optimizer = nnx.Optimizer(model, zero_pruned(optax.adam(1e-2), mask), wrt=nnx.Param)
    assert not jax.tree.leaves(nnx.state(optimizer, nnx.Param))
    assert _types(nnx.state(optimizer))["OptVariable"] == 2 * 4  # Adam's mu and nu only
