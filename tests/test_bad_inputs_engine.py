"""Bad input to the training engine: each case gives a one-line error naming the setting
(or the mask leaf) before anything compiles.

Every case runs with compiling forbidden (``runner.compiled_train_fn`` and
``runner.init_seeds`` replaced by functions that fail the test), so a check that
happened only inside a trace would show up as a failure here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxticket.models
from jaxticket.data import Dataset
from jaxticket.masks import dense_mask
from jaxticket.optim import zero_pruned
from jaxticket.train import make_train_fn, train, train_seeds

rng = np.random.default_rng(0)
X = rng.normal(size=(24, 4)).astype(np.float32)
DATA = Dataset(
    x_train=jnp.asarray(X[:16]),
    y_train=jnp.asarray((X[:16, 0] > 0).astype(np.int32)),
    x_test=jnp.asarray(X[16:]),
    y_test=jnp.asarray((X[16:, 0] > 0).astype(np.int32)),
    name="tiny",
    num_classes=2,
    input_shape=(4,),
)
MODEL = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(3,))
OPT = optax.sgd(0.1)
KEYS = jax.random.split(jax.random.key(0), 2)
TEMPLATE = jax.eval_shape(MODEL.init, jax.random.key(0))[0]
DENSE = dense_mask(TEMPLATE)
GOOD = dict(steps=4, batch_size=8)


def with_leaf(mask, path, value):
    out = jax.tree.map(lambda m: m, mask, is_leaf=lambda x: x is None)
    out[path[0]][path[1]] = value
    return out


def stacked(mask, n):
    return jax.tree.map(
        lambda m: None if m is None else jnp.stack([m] * n), mask, is_leaf=lambda x: x is None
    )


SEEDS = dict(init_keys=KEYS, data_keys=KEYS)

CASES = [
    # -- run settings --
    ("steps-zero", dict(steps=0), ValueError, "steps must be >= 1, got 0"),
    ("steps-negative", dict(steps=-3), ValueError, "steps must be >= 1, got -3"),
    ("steps-float", dict(steps=1.5), TypeError, "steps must be an int, got 1.5"),
    ("steps-bool", dict(steps=True), TypeError, "steps must be an int, got True"),
    ("steps-string", dict(steps="10"), TypeError, "steps must be an int"),
    ("batch-zero", dict(batch_size=0), ValueError, "batch_size must be >= 1"),
    ("batch-float", dict(batch_size=8.0), TypeError, "batch_size must be an int"),
    ("batch-too-big", dict(batch_size=17), ValueError, r"batch_size 17 is larger than the tr"),
    ("eval-every-zero", dict(eval_every=0), ValueError, "eval_every must be >= 1"),
    ("eval-every-negative", dict(eval_every=-2), ValueError, "eval_every must be >= 1"),
    ("eval-every-float", dict(eval_every=0.5), TypeError, "eval_every must be an int"),
    ("start-step-negative", dict(start_step=-1), ValueError, "start_step must be >= 0"),
    ("snapshot-after-end", dict(snapshot_steps=(9,)), ValueError, r"snapshot step 9 is outs"),
    ("snapshot-negative", dict(snapshot_steps=(-1,)), ValueError, "snapshot step must be >= 0"),
    ("snapshot-float", dict(snapshot_steps=(1.5,)), TypeError, "snapshot step must be an int"),
    ("snapshot-not-a-tuple", dict(snapshot_steps=2), TypeError, "snapshot_steps must be a seq"),
    (
        "snapshot-before-start",
        dict(steps=4, start_step=4, snapshot_steps=(2,)),
        ValueError,
        r"snapshot step 2 is outside the run \[4, 8\]",
    ),
    # -- keys --
    ("keys-count", dict(data_keys=KEYS[:1]), ValueError, "got 2 init keys but 1 data keys"),
    ("key-single", dict(init_keys=KEYS[0]), ValueError, r"init_keys must hold one key per s"),
    ("keys-ints", dict(init_keys=jnp.arange(2)), TypeError, "init_keys must be jax.random keys"),
    ("keys-list", dict(data_keys=[1, 2]), TypeError, "data_keys must be an array of jax.rand"),
    # -- optimizer --
    ("optimizer-uncalled", dict(optimizer=optax.adam), TypeError, "got the function 'adam'"),
    ("optimizer-string", dict(optimizer="adam"), TypeError, "optimizer must be an optax Gr"),
    # -- model and data --
    ("data-not-dataset", dict(data=(X, X)), TypeError, "data must be a jaxticket.data.Dataset"),
    ("model-not-model", dict(model="mlp"), TypeError, "model must be a jaxticket.models.Mod"),
    # -- masks --
    (
        "mask-wrong-shape",
        dict(mask=with_leaf(DENSE, ("dense1", "kernel"), jnp.ones((3, 4), bool))),
        ValueError,
        "mask leaf 'dense1/kernel': shape",
    ),
    (
        "mask-float",
        dict(mask=with_leaf(DENSE, ("output", "kernel"), jnp.ones((3, 2)))),
        TypeError,
        "mask leaf 'output/kernel': expected dtype bool",
    ),
    (
        "mask-missing-leaf",
        dict(mask={"dense1": DENSE["dense1"]}),
        ValueError,
        "output",
    ),
    (
        "mask-per-seed-without-seed-axis",
        dict(mask=DENSE, mask_per_seed=True),
        ValueError,
        r"mask leaf 'dense1/kernel' has shape \(4, 3\); expected a leading seed axis of size 2",
    ),
    (
        "mask-per-seed-wrong-count",
        dict(mask=stacked(DENSE, 3), mask_per_seed=True),
        ValueError,
        "expected a leading seed axis of size 2",
    ),
    (
        "mask-per-seed-none",
        dict(mask_per_seed=True),
        ValueError,
        "mask_per_seed=True needs a mask",
    ),
]


@pytest.mark.parametrize(
    "overrides, error, match", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_train_seeds_rejects_bad_input_before_compiling(no_compiling, overrides, error, match):
    kwargs = {**GOOD, **SEEDS, **overrides}
    model = kwargs.pop("model", MODEL)
    data = kwargs.pop("data", DATA)
    optimizer = kwargs.pop("optimizer", OPT)
    with pytest.raises(error, match=match) as err:
        train_seeds(model, data, optimizer, **kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "key, error, match",
    [
        (KEYS, ValueError, r"key must be a single key, got keys of shape \(2,\)"),
        (0, TypeError, "key must be a jax.random key"),
        (jnp.arange(3), TypeError, r"key must be a jax.random key.*int32 array of shape \(3,\)"),
    ],
    ids=["stacked-keys", "int-seed", "int-array"],
)
def test_train_rejects_a_bad_key(no_compiling, key, error, match):
    with pytest.raises(error, match=match):
        train(MODEL, DATA, OPT, key=key, **GOOD)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(steps=2.0), TypeError, "steps must be an int"),
        (dict(eval_batch_size=0), ValueError, "eval_batch_size must be >= 1"),
        (dict(snapshot_steps=(5,)), ValueError, r"snapshot step 5 is outside the run \[0, 4\]"),
    ],
    ids=["steps-float", "eval-batch-zero", "snapshot-outside"],
)
def test_make_train_fn_checks_when_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_train_fn(MODEL, OPT, **{"steps": 4, "batch_size": 8, **kwargs})


def test_zero_pruned_update_without_params_is_refused():
    params = {"w": jnp.ones((2, 2))}
    opt = zero_pruned(optax.sgd(0.1))
    with pytest.raises(ValueError, match="zero_pruned needs params"):
        opt.update(params, opt.init(params))


def test_numpy_integers_are_accepted_as_settings(no_compiling):
    # Not an error: np.int64 settings (from a config file, say) pass the checks and reach
    # the compile step, which the fixture turns into this AssertionError.
    with pytest.raises(AssertionError, match="compiled although"):
        train_seeds(MODEL, DATA, OPT, steps=np.int64(4), batch_size=np.int32(8), **SEEDS)
