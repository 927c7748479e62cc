"""Bad inputs to models and data sets: each gets one clear line naming what was wrong.

Every case is ``(a call, the exception type, a fragment the message must contain)``; the
message must also be a single line (no traceback text, no multi-line dumps).
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import jaxticket.data as data
import jaxticket.models as models


class _Tutorial(nnx.Module):
    def __init__(self, *, rngs):
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.linear(self.dropout(x))


class _NeedsMode(nnx.Module):
    """``__call__`` wants an argument that no convention gives."""

    def __init__(self, *, rngs):
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x, mode):
        return self.linear(x)


class _TakesTrain(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x, *, train: bool):
        return self.linear(x)


class _ReturnsTuple(nnx.Module):
    def __init__(self, *, rngs):
        self.linear = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.linear(x), x


def _nnx(cls, **kwargs):
    return lambda: models.from_nnx(lambda rngs: cls(rngs=rngs), input_shape=(4,), **kwargs)


def _mlp(**kwargs):
    base = dict(input_shape=(40,), num_classes=10, hidden=(8,))
    return lambda: models.get("mlp", **{**base, **kwargs})


def _apply_tutorial_without_key():
    model = _nnx(_Tutorial)()
    params, state = model.init(jax.random.key(0))
    model.apply(params, state, jnp.ones((2, 4)), train=True)


def _apply_wrong_shape():
    model = _mlp()()
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    model.apply(params, state, jnp.zeros((40,)), train=False)


def _register_other_factory():
    @models.register("mlp")
    def mlp(*, input_shape, num_classes):  # a user's own "mlp"
        raise AssertionError("never built")


def _load_unprepared_tfds(tmp):
    return lambda: data.load("mnist", data_dir=tmp)


def _load_tiny():
    return data.load("mnist1d", num_samples=20)


CASES = {
    # --- registry: names, shapes, num_classes, options --------------------------------
    "unknown model": (
        lambda: models.get("lenet", input_shape=(784,), num_classes=10),
        ValueError,
        "did you mean 'lenet_300_100'",
    ),
    "model name not a str": (
        lambda: models.get(["mlp"], input_shape=(784,), num_classes=10),
        ValueError,
        "unknown model ['mlp']",
    ),
    "input_shape a string": (_mlp(input_shape="784"), ValueError, "input_shape must be"),
    "input_shape an int": (_mlp(input_shape=784), ValueError, "input_shape must be"),
    "input_shape floats": (_mlp(input_shape=(39.5,)), ValueError, "positive ints"),
    "input_shape zero": (_mlp(input_shape=(0, 40)), ValueError, "positive ints"),
    "num_classes float": (_mlp(num_classes=2.5), TypeError, "num_classes must be an int"),
    "num_classes bool": (_mlp(num_classes=True), TypeError, "num_classes must be an int"),
    "num_classes zero": (_mlp(num_classes=0), ValueError, "num_classes must be positive"),
    "option typo": (_mlp(hiden=(8,)), TypeError, "did you mean 'hidden'"),
    "hidden width zero": (_mlp(hidden=(0,)), ValueError, "hidden widths must be positive"),
    "unknown init": (_mlp(init="xavier"), ValueError, "unknown init 'xavier'"),
    "conv on vectors": (
        lambda: models.get("conv2", input_shape=(784,), num_classes=10),
        ValueError,
        "(height, width, channels)",
    ),
    "apply on one example": (_apply_wrong_shape, ValueError, "x[None]"),
    "register a different factory": (
        _register_other_factory,
        ValueError,
        "register('mlp', overwrite=True)",
    ),
    "register empty name": (lambda: models.register(""), TypeError, "non-empty str"),
    "register a non-function": (
        lambda: models.register("x_not_callable")(3),
        TypeError,
        "expected a factory function",
    ),
    # --- from_nnx: conventions, outputs ------------------------------------------------
    "nnx call fits no convention": (
        _nnx(_NeedsMode),
        TypeError,
        "module(x, train=..., key=...) raised TypeError",
    ),
    "nnx call fits no convention (modes named)": (
        _nnx(_NeedsMode),
        TypeError,
        "module.train()/module.eval() then module(x)",
    ),
    "nnx modes for a train-flag module": (
        _nnx(_TakesTrain, call="modes"),
        TypeError,
        "tried module.train()/module.eval() then module(x)",
    ),
    "nnx unknown convention": (_nnx(_Tutorial, call="moded"), ValueError, "call='moded'"),
    "nnx convention not a name": (_nnx(_Tutorial, call=3), TypeError, "call must be one of"),
    "nnx num_classes mismatch": (
        _nnx(_Tutorial, num_classes=10),
        ValueError,
        "num_classes=10 but the module returns 3",
    ),
    "nnx returns a tuple": (_nnx(_ReturnsTuple), ValueError, "must return logits of shape"),
    "nnx build not a module": (
        lambda: models.from_nnx(lambda rngs: lambda x: x, input_shape=(4,)),
        TypeError,
        "must return an nnx.Module",
    ),
    "nnx bad input_shape": (
        lambda: models.from_nnx(lambda rngs: _Tutorial(rngs=rngs), input_shape=(4, -1)),
        ValueError,
        "positive ints",
    ),
    "nnx dropout without key": (_apply_tutorial_without_key, ValueError, "needs key="),
    # --- data sets ---------------------------------------------------------------------
    "unknown data set": (lambda: data.load("mnist_1d"), ValueError, "did you mean 'mnist1d'"),
    "data set name not a str": (lambda: data.load(1), TypeError, "must be a str"),
    "data option typo": (
        lambda: data.load("mnist1d", num_sample=100),
        TypeError,
        "did you mean 'num_samples'",
    ),
    "tfds option typo": (
        lambda: data.load("mnist", datadir="/nonexistent"),
        TypeError,
        "'mnist' has no option(s) ['datadir']",
    ),
    "mnist1d float size": (
        lambda: data.load("mnist1d", num_samples=100.7),
        TypeError,
        "num_samples must be an int",
    ),
    "mnist1d negative seed": (
        lambda: data.load("mnist1d", seed=-1),
        ValueError,
        "mnist1d seed must be >= 0",
    ),
    "mnist1d huge seed": (lambda: data.load("mnist1d", seed=2**40), ValueError, "< 4294967296"),
    "digits fraction string": (
        lambda: data.load("digits", test_fraction="0.2"),
        ValueError,
        "test_fraction must be a number",
    ),
    "digits fraction nan": (
        lambda: data.load("digits", test_fraction=float("nan")),
        ValueError,
        "test_fraction must lie strictly between 0 and 1",
    ),
    "modular float seed": (
        lambda: data.load("modular", seed=1.5),
        TypeError,
        "modular seed must be an int",
    ),
    "validation negative seed": (
        lambda: data.with_validation(_load_tiny(), 2, seed=-3),
        ValueError,
        "with_validation: seed must be >= 0",
    ),
    "validation too large": (
        lambda: data.with_validation(_load_tiny(), 16),
        ValueError,
        "1 <= size < 16",
    ),
}


@pytest.fixture
def restore_registry(monkeypatch):
    from jaxticket.models import registry

    monkeypatch.setattr(registry, "_FACTORIES", dict(registry._FACTORIES))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_one_clear_line(case, restore_registry):
    call, kind, fragment = CASES[case]
    with pytest.raises(kind, match=re.escape(fragment)) as info:
        call()
    assert "\n" not in str(info.value), str(info.value)


@pytest.mark.parametrize("default_dir", [False, True], ids=["data_dir", "tfds_default_dir"])
def test_unprepared_tfds_names_the_set_the_directory_and_the_fix(
    tmp_path, monkeypatch, default_dir
):
    from tensorflow_datasets.core import constants

    empty = tmp_path / "tfds"
    empty.mkdir()
    if default_dir:  # tfds' own default ($TFDS_DATA_DIR): once an 18-frame KeyError
        monkeypatch.setattr(constants, "DATA_DIR", str(empty))
    kwargs = {} if default_dir else {"data_dir": empty}
    with pytest.raises(FileNotFoundError) as info:
        data.load("mnist", **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert "'mnist' is not prepared" in message and str(empty) in message
    assert "tfds build mnist" in message and "download=True" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
