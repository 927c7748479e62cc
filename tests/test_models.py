"""Tests for jaxticket.models: registry, shapes, parameter counts, init statistics,
BatchNorm train/eval semantics under vmap, and the Linen / plain-function adapters.

Compiles are the cost here, so parameter counts and structure use ``jax.eval_shape`` and
forward passes use small inputs.
"""

from __future__ import annotations

import functools
import math

import flax.linen as linen
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxticket.models as models
from jaxticket._paths import leaves_with_paths, map_with_path_str
from jaxticket.models.initializers import SCHEMES, dense

KEY = jax.random.key(0)
# Tests that only need *some* random init use the 'rbg' generator: it compiles ~3x faster
# on CPU than threefry, and compiling random draws dominates these tests' time.
FAST_KEY = jax.random.key(0, impl="rbg")

# Small configurations of every registered model: (get kwargs, a batch maker).
SMALL = {
    "lenet_300_100": dict(input_shape=(8, 8, 1), num_classes=10),
    "mlp": dict(input_shape=(40, 1), num_classes=10, hidden=(16,)),
    "cnn1d": dict(input_shape=(40, 1), num_classes=10),
    "conv2": dict(input_shape=(8, 8, 3), num_classes=10),
    "conv4": dict(input_shape=(8, 8, 3), num_classes=10),
    "conv6": dict(input_shape=(8, 8, 3), num_classes=10),
    "resnet20": dict(input_shape=(8, 8, 3), num_classes=10, width=4),
    "resnet": dict(input_shape=(8, 8, 3), num_classes=10, width=4, depth=8, shortcut="pad"),
    "vgg16": dict(input_shape=(32, 32, 1), num_classes=10),
    "embed_mlp": dict(input_shape=(2,), num_classes=7, dim=8, hidden=(16,)),
    "transformer1": dict(input_shape=(2,), num_classes=7, dim=16, heads=2),
}


def _batch(model: models.Model, n: int = 2) -> jax.Array:
    if model.name in ("embed_mlp", "transformer1"):
        return jax.random.randint(KEY, (n, *model.input_shape), 0, model.num_classes)
    return jax.random.normal(KEY, (n, *model.input_shape))


def _numpy_init(model: models.Model, seed: int):
    """Params N(0, 1/fan_in) and BatchNorm's initial statistics, without compiling ``init``
    (random draws are what makes compiles slow on CPU)."""
    params, state = jax.eval_shape(model.init, KEY)
    rng = np.random.default_rng(seed)

    def draw(a):
        fan_in = math.prod(a.shape[:-1]) or 1
        return jnp.asarray(rng.normal(size=a.shape) / math.sqrt(fan_in), a.dtype)

    def initial(path, a):
        return (jnp.ones if path.endswith("var") else jnp.zeros)(a.shape, a.dtype)

    return jax.tree.map(draw, params), map_with_path_str(initial, state)


def _stack(*trees):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def _count(tree) -> int:
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def _paths(tree) -> list[str]:
    return [p for p, _ in leaves_with_paths(tree)]


# --- registry -------------------------------------------------------------------------


def test_every_registered_model_has_a_test_configuration():
    assert sorted(SMALL) == models.names()


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'lenet'.*lenet_300_100.*resnet20"):
        models.get("lenet", input_shape=(784,), num_classes=10)


def test_unknown_option_lists_the_models_options():
    with pytest.raises(TypeError, match="'conv2' has no option.*'width'.*init, dropout"):
        models.get("conv2", input_shape=(32, 32, 3), num_classes=10, width=2)


def test_register_again_from_a_rerun_cell_replaces_and_overwrite_replaces_others(monkeypatch):
    from jaxticket.models import registry

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))

    def make_cell():  # what re-running a notebook cell does: a new, equal-named function
        def tiny(*, input_shape, num_classes):
            return models.from_nnx(
                lambda rngs: nnx.Linear(input_shape[0], num_classes, rngs=rngs),
                input_shape=input_shape,
                name="tiny",
            )

        return tiny

    first, second = make_cell(), make_cell()
    assert first is not second
    models.register("tiny")(first)
    models.register("tiny")(second)  # same module and qualname: replaced, no error
    assert registry._FACTORIES["tiny"] is second
    assert models.get("tiny", input_shape=(3,), num_classes=2).num_classes == 2

    def other(*, input_shape, num_classes):
        raise AssertionError("not built")

    with pytest.raises(ValueError, match=r"already registered.*register\('tiny', overwrite=True\)"):
        models.register("tiny")(other)
    assert registry._FACTORIES["tiny"] is second
    models.register("tiny", overwrite=True)(other)
    assert registry._FACTORIES["tiny"] is other


@pytest.mark.parametrize(
    "name, input_shape, message",
    [
        ("conv2", (784,), r"'conv2' needs input_shape \(height, width, channels\)"),
        ("conv6", (4, 4, 3), "at least 8"),
        ("vgg16", (16, 16, 3), "at least 32"),
        ("resnet20", (32, 32), r"\(height, width, channels\)"),
        ("cnn1d", (8, 8, 3), r"\(length,\) or \(length, channels\)"),
        ("cnn1d", (2,), "too short"),
        ("transformer1", (2, 2), r"\(n_tokens,\)"),
        ("embed_mlp", (0,), "sequence of positive ints"),
        ("lenet_300_100", (), "non-empty"),
    ],
)
def test_bad_input_shape_is_rejected_before_building(name, input_shape, message):
    with pytest.raises(ValueError, match=message):
        models.get(name, input_shape=input_shape, num_classes=10)


def test_bad_options_are_explained():
    with pytest.raises(ValueError, match="unknown init 'xavier'.*glorot_normal"):
        models.get("lenet_300_100", input_shape=(784,), num_classes=10, init="xavier")
    with pytest.raises(ValueError, match="depth must be 6n\\+2"):
        models.get("resnet", input_shape=(32, 32, 3), num_classes=10, depth=21)
    with pytest.raises(ValueError, match="shortcut must be"):
        models.get("resnet20", input_shape=(32, 32, 3), num_classes=10, shortcut="B")
    with pytest.raises(ValueError, match="num_classes must be positive"):
        models.get("mlp", input_shape=(40,), num_classes=0)
    with pytest.raises(ValueError, match="not divisible by heads"):
        models.get("transformer1", input_shape=(2,), num_classes=7, dim=10, heads=3)


# --- every model: init, forward under jit, output layer path --------------------------


@pytest.mark.parametrize("name", sorted(SMALL))
def test_forward_under_jit_gives_logits_and_keeps_state_structure(name):
    model = models.get(name, **SMALL[name])
    abstract_params, _ = jax.eval_shape(model.init, KEY)  # traces init without running it
    assert "output/kernel" in _paths(abstract_params)  # the lottery workflow prunes 'output/*'
    params, state = _numpy_init(model, 0)
    x = _batch(model, 3)
    logits, new_state = jax.jit(functools.partial(model.apply, train=True))(params, state, x)
    assert logits.shape == (3, model.num_classes)
    assert jnp.all(jnp.isfinite(logits))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_init_is_jittable_and_vmappable_over_seeds():
    model = models.get("mlp", input_shape=(4,), num_classes=3, hidden=(5,), init="glorot_normal")
    params, state = jax.jit(jax.vmap(model.init))(jax.random.split(KEY, 2))
    assert params["dense1"]["kernel"].shape == (2, 4, 5)
    assert state == {}
    assert not jnp.allclose(params["dense1"]["kernel"][0], params["dense1"]["kernel"][1])


# --- parameter counts -----------------------------------------------------------------


def test_lenet_300_100_parameter_counts_match_the_paper():
    model = models.get("lenet_300_100", input_shape=(28, 28, 1), num_classes=10)
    params, state = jax.eval_shape(model.init, KEY)
    assert _paths(params) == [
        "dense1/bias",
        "dense1/kernel",
        "dense2/bias",
        "dense2/kernel",
        "output/bias",
        "output/kernel",
    ]
    kernels = sum(math.prod(leaf.shape) for p, leaf in leaves_with_paths(params) if "kernel" in p)
    assert kernels == 784 * 300 + 300 * 100 + 100 * 10 == 266_200
    assert _count(params) == 266_610
    assert state == {}


def conv(c_in, c_out):
    return 3 * 3 * c_in * c_out + c_out


def fc(n_in, n_out):
    return n_in * n_out + n_out


def test_conv_net_parameter_counts_by_hand():
    def count(name):
        model = models.get(name, input_shape=(32, 32, 3), num_classes=10)
        return _count(jax.eval_shape(model.init, KEY)[0])

    head = lambda flat: fc(flat, 256) + fc(256, 256) + fc(256, 10)
    # Conv-2: two 64-filter convs, one pool (32 -> 16), then 16*16*64 features.
    assert count("conv2") == conv(3, 64) + conv(64, 64) + head(16 * 16 * 64) == 4_301_642
    convs4 = conv(3, 64) + conv(64, 64) + conv(64, 128) + conv(128, 128)
    assert count("conv4") == convs4 + head(8 * 8 * 128) == 2_425_930
    convs6 = convs4 + conv(128, 256) + conv(256, 256)
    assert count("conv6") == convs6 + head(4 * 4 * 256) == 2_262_602


def test_resnet20_and_cnn1d_parameter_counts():
    def counts(name, **kw):
        params, state = jax.eval_shape(models.get(name, **kw).init, KEY)
        return _count(params), _count(state)

    cifar = dict(input_shape=(32, 32, 3), num_classes=10)
    # He et al.'s 0.27M; the two 1x1 projections add 16*32 + 32*64 weights and their BNs.
    assert counts("resnet20", shortcut="pad", **cifar) == (269_722, 1_376)
    assert counts("resnet20", **cifar) == (269_722 + 16 * 32 + 64 + 32 * 64 + 128, 1_568)
    vgg_convs = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    vgg_weights = sum(9 * a * b for a, b in zip([3, *vgg_convs], vgg_convs, strict=False))
    assert counts("vgg16", **cifar) == (vgg_weights + 2 * sum(vgg_convs) + fc(512, 10), 2 * 4224)
    # MNIST-1D CNN: lengths 40 -> 19 -> 10 -> 5, so 25 * 5 = 125 readout features.
    c1, c2, out = 5 * 25 + 25, 3 * 25 * 25 + 25, 125 * 10 + 10
    assert counts("cnn1d", input_shape=(40,), num_classes=10) == (c1 + 2 * c2 + out, 0)


@settings(max_examples=10)
@given(length=st.integers(1, 80), k=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_cnn1d_builds_for_every_length_its_convolutions_accept(length, k):
    kw = dict(input_shape=(length,), num_classes=3, channels=2, kernel_sizes=k)
    expected = length
    for size in k:
        expected = (expected + 2 - size) // 2 + 1
    if expected < 1:
        with pytest.raises(ValueError, match="too short"):
            models.get("cnn1d", **kw)
        return
    model = models.get("cnn1d", **kw)
    params, state = jax.eval_shape(model.init, KEY)
    assert params["output"]["kernel"].shape == (2 * expected, 3)
    out = jax.eval_shape(
        lambda p, x: model.apply(p, state, x, train=False)[0],
        params,
        jax.ShapeDtypeStruct((1, length), jnp.float32),
    )
    assert out.shape == (1, 3)


# --- initialization -------------------------------------------------------------------


def test_lenet_kernels_have_glorot_variance_and_zero_biases():
    model = models.get("lenet_300_100", input_shape=(784,), num_classes=10)
    params, _ = jax.jit(model.init)(FAST_KEY)
    for layer, (fan_in, fan_out) in {"dense1": (784, 300), "dense2": (300, 100)}.items():
        w = np.asarray(params[layer]["kernel"])
        assert abs(w.mean()) < 0.01
        np.testing.assert_allclose(w.var(), 2.0 / (fan_in + fan_out), rtol=0.05)
        assert not np.any(np.asarray(params[layer]["bias"]))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_initialization_schemes_have_their_variance(scheme):
    fan_in, fan_out = 400, 200
    layer = dense(fan_in, fan_out, init=scheme, rngs=nnx.Rngs(FAST_KEY))
    want = {
        "glorot_normal": 2 / (fan_in + fan_out),
        "glorot_uniform": 2 / (fan_in + fan_out),
        "kaiming_normal": 2 / fan_in,
        "torch": 1 / (3 * fan_in),
    }[scheme]
    np.testing.assert_allclose(np.var(layer.kernel[...]), want, rtol=0.05)
    bias = np.asarray(layer.bias[...])
    if scheme == "torch":  # PyTorch draws biases from U(±1/sqrt(fan_in))
        assert 0 < np.abs(bias).max() <= fan_in**-0.5
    else:
        assert not bias.any()


# --- BatchNorm: train vs eval, per-seed state under vmap ------------------------------


@pytest.fixture(scope="module")
def bn_runs():
    """A small ResNet (depth 8, width 4, conv shortcuts) on 8×8 inputs, vmapped over seeds:
    once with two different inits, once with seed 0's init twice (one compiled program)."""
    model = models.get("resnet", input_shape=(8, 8, 3), num_classes=5, depth=8, width=4)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(6, 8, 8, 3)), jnp.float32)

    def run(params, state):
        train_logits, trained = model.apply(params, state, x, train=True)
        eval_logits, evaled = model.apply(params, trained, x, train=False)
        single, _ = model.apply(params, trained, x[:1], train=False)
        return dict(
            state=state,
            trained=trained,
            evaled=evaled,
            logits=(train_logits, eval_logits),
            eval_rows=(eval_logits[0], single[0]),
        )

    (p0, s0), (p1, _) = _numpy_init(model, 0), _numpy_init(model, 1)
    run_seeds = jax.jit(jax.vmap(run))
    return run_seeds(_stack(p0, p1), _stack(s0, s0)), run_seeds(_stack(p0, p0), _stack(s0, s0))


def test_train_mode_updates_running_statistics(bn_runs):
    out, _ = bn_runs
    before, after = out["state"]["bn1"], out["trained"]["bn1"]
    assert set(before) == {"mean", "var"}
    assert not jnp.allclose(before["mean"], after["mean"])
    assert not jnp.allclose(before["var"], after["var"])
    nested = out["trained"]["stage2_block1"]["shortcut_bn"]["mean"]
    assert not jnp.allclose(nested, out["state"]["stage2_block1"]["shortcut_bn"]["mean"])


def test_eval_mode_returns_state_unchanged_and_uses_running_statistics(bn_runs):
    out, _ = bn_runs
    jax.tree.map(np.testing.assert_array_equal, out["evaled"], out["trained"])
    # With running statistics an example's logits do not depend on the rest of the batch.
    np.testing.assert_allclose(*out["eval_rows"], rtol=1e-4, atol=1e-5)
    assert not np.allclose(*out["logits"], atol=1e-3)  # batch vs running statistics


def test_vmapped_seeds_have_their_own_statistics(bn_runs):
    different, same = bn_runs
    stats = different["trained"]["stage1_block1"]["bn1"]["mean"]
    assert stats.shape == (2, 4)
    assert not jnp.allclose(stats[0], stats[1])
    # Seed 0's statistics do not depend on what the other seed holds.
    for seed_other in (0, 1):
        jax.tree.map(
            lambda a, b, i=seed_other: np.testing.assert_allclose(a[0], b[i], rtol=1e-5),
            different["trained"],
            same["trained"],
        )


# --- dropout and input / params checks ------------------------------------------------


def test_dropout_uses_the_key_in_train_mode_only():
    model = models.get("conv2", input_shape=(4, 4, 1), num_classes=3, dropout=0.5)
    params, state = _numpy_init(model, 0)
    x = jnp.ones((2, 4, 4, 1))
    apply = jax.jit(model.apply, static_argnames="train")
    a, _ = apply(params, state, x, train=True, key=jax.random.key(1))
    b, _ = apply(params, state, x, train=True, key=jax.random.key(2))
    e1, _ = apply(params, state, x, train=False)
    e2, _ = apply(params, state, x, train=False, key=jax.random.key(1))
    assert not jnp.allclose(a, b)
    np.testing.assert_array_equal(e1, e2)
    with pytest.raises(ValueError, match="needs a key"):
        model.apply(params, state, x, train=True)


def test_apply_rejects_wrong_inputs_and_params_naming_the_leaf():
    model = models.get("mlp", input_shape=(40,), num_classes=10, hidden=(8,))
    params, state = jax.eval_shape(model.init, KEY)
    params = jax.tree.map(lambda a: jnp.zeros(a.shape), params)
    with pytest.raises(ValueError, match=r"batch of shape \(batch, 40\).*\(40,\)"):
        model.apply(params, state, jnp.zeros((40,)), train=False)
    bad = {**params, "dense1": {**params["dense1"], "kernel": jnp.zeros((40, 9))}}
    with pytest.raises(ValueError, match=r"'dense1/kernel' has shape \(40, 9\), expected"):
        model.apply(bad, state, jnp.zeros((1, 40)), train=False)
    missing = {k: v for k, v in params.items() if k != "output"}
    with pytest.raises(ValueError, match="missing leaves.*output/kernel"):
        model.apply(missing, state, jnp.zeros((1, 40)), train=False)
    tokens = models.get("embed_mlp", input_shape=(2,), num_classes=5, dim=4, hidden=(4,))
    p, s = jax.eval_shape(tokens.init, KEY)
    with pytest.raises(TypeError, match="must be integers"):
        jax.eval_shape(functools.partial(tokens.apply, train=False), p, s, jnp.zeros((1, 2)))


# --- adapters -------------------------------------------------------------------------


class _LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x, train: bool):
        x = linen.Dense(8, name="hidden")(x)
        x = linen.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = linen.Dropout(0.5, deterministic=not train)(jax.nn.relu(x))
        return linen.Dense(3, name="output")(x)


def test_from_linen_handles_batch_stats_and_dropout():
    x = jax.random.normal(KEY, (4, 5))
    model = models.from_linen(_LinenNet(), x)
    assert (model.name, model.input_shape, model.num_classes) == ("_LinenNet", (5,), 3)
    params, state = jax.jit(model.init)(FAST_KEY)
    assert "output/kernel" in _paths(params) and set(state) == {"batch_stats"}
    apply = jax.jit(model.apply, static_argnames="train")
    logits, trained = apply(params, state, x, train=True, key=jax.random.key(1))
    assert logits.shape == (4, 3)
    mean = trained["batch_stats"]["BatchNorm_0"]["mean"]
    assert not jnp.allclose(mean, state["batch_stats"]["BatchNorm_0"]["mean"])
    _, evaled = apply(params, trained, x, train=False)
    jax.tree.map(np.testing.assert_array_equal, evaled, trained)
    stacked, _ = jax.eval_shape(jax.vmap(model.init), jax.random.split(KEY, 2))
    assert stacked["output"]["kernel"].shape == (2, 8, 3)


def test_from_functions_wraps_stateless_and_stateful_pairs():
    def init(key):
        return {"output": {"kernel": jax.random.normal(key, (6, 4)), "bias": jnp.zeros(4)}}

    def apply(params, x):
        return x @ params["output"]["kernel"] + params["output"]["bias"]

    model = models.from_functions(init, apply, input_shape=(6,))
    assert model.num_classes == 4
    params, state = model.init(KEY)
    logits, new_state = jax.jit(model.apply, static_argnames="train")(
        params, state, jnp.ones((2, 6)), train=True
    )
    assert logits.shape == (2, 4) and new_state == {} and state == {}

    def init_s(key):
        return init(key), {"count": jnp.zeros(())}

    def apply_s(params, state, x, *, train, key):
        return apply(params, x), {"count": state["count"] + train}

    stateful = models.from_functions(init_s, apply_s, input_shape=(6,), stateful=True)
    params, state = stateful.init(KEY)
    _, state = stateful.apply(params, state, jnp.ones((1, 6)), train=True)
    assert state["count"] == 1
    with pytest.raises(ValueError, match="output/kernel"):
        stateful.apply(
            {"output": {"kernel": jnp.zeros((6, 5)), "bias": jnp.zeros(4)}},
            state,
            jnp.ones((1, 6)),
            train=False,
        )


def test_from_nnx_wraps_a_user_module_with_a_custom_call():
    model = models.from_nnx(
        lambda rngs: nnx.Linear(5, 2, rngs=rngs),
        input_shape=(5,),
        call=lambda module, x, train, key: module(x),
    )
    params, state = model.init(KEY)
    assert model.num_classes == 2 and _paths(params) == ["bias", "kernel"] and state == {}
    logits, _ = model.apply(params, state, jnp.ones((3, 5)), train=False)
    np.testing.assert_allclose(logits, jnp.ones((3, 5)) @ params["kernel"], rtol=1e-6)


@pytest.mark.parametrize("shape", [(100, 10), (40, 300), (3, 3, 16, 32), (5, 4, 7)])
def test_flat_drawn_initializers_equal_jax_bit_for_bit(shape):
    # The schemes draw flat and reshape (XLA:CPU compiles that several times faster);
    # the values must be exactly jax.nn.initializers'.
    from jaxticket.models.initializers import variance_scaling

    ref = jax.nn.initializers
    pairs = [
        (variance_scaling(1.0, "fan_avg", "truncated_normal"), ref.glorot_normal()),
        (variance_scaling(1.0, "fan_avg", "uniform"), ref.glorot_uniform()),
        (variance_scaling(2.0, "fan_in", "truncated_normal"), ref.he_normal()),
        (
            variance_scaling(1 / 3, "fan_in", "uniform"),
            ref.variance_scaling(1 / 3, "fan_in", "uniform"),
        ),
    ]
    key = jax.random.key(7)
    for mine, theirs in pairs:
        np.testing.assert_array_equal(np.asarray(mine(key, shape)), np.asarray(theirs(key, shape)))
