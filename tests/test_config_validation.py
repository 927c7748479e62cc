"""Bad lottery configs fail when built (or at the start of ``run_lottery``, before level 0
trains) with one line naming the field and the valid range; lists are accepted as tuples.

No test here trains: ``run_lottery``'s checks that need the model or the data run before
anything is compiled, so the training function is replaced by one that fails the test.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from jaxticket.lottery import imp
from jaxticket.lottery.config import ConfigError, LotteryConfig

# (keyword arguments, exception type, message fragment naming the field and the range)
BAD_CONFIGS = [
    (dict(levels=1.5), TypeError, "levels must be an int, got float 1.5"),
    (dict(levels=True), TypeError, "levels must be an int, got bool"),
    (dict(levels=-1), ConfigError, "levels must be >= 0, got -1"),
    (dict(seeds=0), ConfigError, "seeds must be >= 1, got 0"),
    (dict(seeds="3"), TypeError, "seeds must be an int, got str"),
    (dict(seed=-1), ConfigError, "seed must be in [0, 2**32), got -1"),
    (dict(seed=2**70), ConfigError, "seed must be in [0, 2**32)"),
    (dict(seed=2**32), ConfigError, "seed must be in [0, 2**32)"),
    (dict(seed=1.0), TypeError, "seed must be an int, got float"),
    (dict(steps=0), ConfigError, "steps must be >= 1, got 0"),
    (dict(steps=40, rewind=40), ConfigError, "rewind must be an iteration in [0, steps=40)"),
    (dict(rewind=-1), ConfigError, "rewind must be an iteration in [0, steps=3000)"),
    (dict(prune_fraction=1.0), ConfigError, "prune_fraction must be in [0.000001, 0.999999]"),
    (dict(prune_fraction=0.9999999), ConfigError, "prune_fraction must be in"),
    (dict(prune_fraction=1e-8), ConfigError, "prune_fraction must be in"),
    (dict(prune_fraction=math.nan), ConfigError, "prune_fraction must be in"),
    (dict(prune_fraction="0.2"), TypeError, "prune_fraction must be a number, got str"),
    (dict(prune_fraction=True), TypeError, "prune_fraction must be a number, got bool"),
    (dict(learning_rate=math.nan), ConfigError, "learning_rate must be finite and > 0, got nan"),
    (dict(learning_rate=math.inf), ConfigError, "learning_rate must be finite and > 0, got inf"),
    (dict(learning_rate=0.0), ConfigError, "learning_rate must be finite and > 0, got 0.0"),
    (dict(learning_rate="1e-3"), TypeError, "learning_rate must be a number, got str"),
    (dict(optimizer="adamw", weight_decay=-1e-4), ConfigError, "weight_decay must be finite"),
    (dict(optimizer="sgd", weight_decay=math.nan), ConfigError, "weight_decay must be finite"),
    (dict(optimizer="adamw", weight_decay=math.inf), ConfigError, "weight_decay must be finite"),
    (dict(weight_decay=1e-4), ConfigError, "with optimizer adam would be ignored"),
    (dict(optimizer="rmsprop"), ConfigError, "optimizer must be one of adam, adamw, sgd"),
    (dict(schedule="step"), ConfigError, "schedule must be one of constant, cosine, linear"),
    (dict(allocation="erk"), ConfigError, "allocation must be layerwise or global, got 'erk'"),
    (dict(allocation="global"), ConfigError, "layer_rates apply to allocation layerwise only"),
    (dict(rewind_mode="late"), ConfigError, "rewind_mode must be one of weights, lr, finetune"),
    (dict(rewind_mode="finetune", schedule="cosine"), ConfigError, "final rate, which is 0"),
    (dict(controls="reinit"), TypeError, "controls must be a tuple, got the string 'reinit'"),
    (dict(controls=("reinit", "bogus")), ConfigError, "unknown control 'bogus'"),
    (dict(controls=("reinit", "reinit")), ConfigError, "controls: each control once"),
    (dict(controls=(1,)), TypeError, "controls[0] must be a str, got int"),
    (dict(controls=None), TypeError, "controls must be a tuple, got NoneType"),
    (dict(one_shot=0.5), TypeError, "one_shot must be a tuple, got float"),
    (dict(one_shot="0.5"), TypeError, "one_shot must be a tuple, got the string '0.5'"),
    (dict(one_shot=(0.5, 1.0)), ConfigError, "one_shot sparsity must be in"),
    (dict(one_shot=(0.9999999,)), ConfigError, "one_shot sparsity must be in"),
    (dict(one_shot=(math.nan,)), ConfigError, "one_shot sparsity must be in"),
    (dict(one_shot=("a",)), TypeError, "one_shot[0] must be a number, got str"),
    (dict(one_shot=(0.5,), levels=3), ConfigError, "levels has no effect with one_shot"),
    (dict(one_shot=(0.5,), prune_fraction=0.3), ConfigError, "prune_fraction has no effect"),
    (dict(layer_rates="output/*=0.5"), TypeError, "layer_rates must be a tuple, got the string"),
    (dict(layer_rates=(("output/*",),)), TypeError, "layer_rates[0] must be a (pattern, scale)"),
    (dict(layer_rates=(("output/*", -1.0),)), ConfigError, "scale of 'output/*' must be finite"),
    (dict(layer_rates=(("output/*", math.nan),)), ConfigError, "scale of 'output/*' must be"),
    (dict(layer_rates=(("output/*", 5.0),)), ConfigError, "gives a prune fraction 1 outside"),
    (dict(layer_rates=(("a", 0.5), ("a", 0.7))), ConfigError, "layer_rates: each pattern once"),
    (dict(batch_size=0), ConfigError, "batch_size must be >= 1, got 0"),
    (dict(eval_every=0), ConfigError, "eval_every must be in [1, steps=3000], got 0"),
    (dict(eval_every=3001), ConfigError, "eval_every must be in [1, steps=3000], got 3001"),
    (dict(val_size=0), ConfigError, "val_size must be >= 1, got 0"),
    (dict(min_keep=-1), ConfigError, "min_keep must be >= 0, got -1"),
    (dict(model=3), TypeError, "model must be a str, got int"),
]


@pytest.mark.parametrize(
    "kwargs, error, message", BAD_CONFIGS, ids=[repr(kw) for kw, _, _ in BAD_CONFIGS]
)
def test_bad_config_fails_when_built_with_one_line(kwargs, error, message):
    with pytest.raises(error) as info:
        LotteryConfig(**kwargs)
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    if error is ConfigError:  # the field the CLI turns into a flag name
        field = info.value.field
        assert field in str(info.value).replace(" ", "_") or field in kwargs, field


def test_config_error_names_the_field():
    with pytest.raises(ConfigError) as info:
        LotteryConfig(seed=-1)
    assert info.value.field == "seed" and isinstance(info.value, ValueError)
    with pytest.raises(ConfigError) as info:
        LotteryConfig(steps=0, rewind=0)
    assert info.value.field == "steps"  # the real problem, not "rewind must be in [0, 0)"


def test_lists_are_accepted_as_tuples_and_digest_alike():
    config = LotteryConfig(
        controls=["reinit"], one_shot=[0.5, 0.9], layer_rates=[["output/*", 0.5]]
    )
    assert config.controls == ("reinit",) and config.one_shot == (0.5, 0.9)
    assert config.layer_rates == (("output/*", 0.5),)
    same = LotteryConfig(controls=("reinit",), one_shot=(0.5, 0.9))
    assert config == same and config.digest() == same.digest() and hash(config) == hash(same)
    assert LotteryConfig(layer_rates={"output/*": 0.5}) == LotteryConfig()
    # A float field takes an int; the stored value is a float (JSON keeps it so).
    assert LotteryConfig(learning_rate=1).learning_rate == 1.0
    assert LotteryConfig.from_dict(config.to_dict()) == config


def test_from_dict_ignores_the_runtime_and_refuses_unknown_keys():
    d = LotteryConfig().to_dict()
    assert LotteryConfig.from_dict({**d, "runtime": {"x64": False}}) == LotteryConfig()
    with pytest.raises(ValueError, match=r"unknown fields \['lerning_rate'\]"):
        LotteryConfig.from_dict({**d, "lerning_rate": 1e-3})


def test_weight_decay_goes_with_sgd_momentum_and_adamw():
    for optimizer in ("sgd", "momentum", "adamw"):
        assert LotteryConfig(optimizer=optimizer, weight_decay=1e-4).weight_decay == 1e-4


TINY = dict(seeds=1, steps=20, eval_every=20, val_size=200, batch_size=60, controls=())

# Checks that need the model's leaves or the data: (config, message fragment).
BAD_AT_START = [
    (dict(layer_rates=(("outptu/*", 0.5),)), "layer_rates: pattern 'outptu/*' matches no"),
    (dict(layer_rates=(("output/bias", 0.5),)), "matches no prunable leaf of 'lenet_300_100'"),
    (dict(val_size=4000), "val_size must be < 4000 (the training examples of 'mnist1d')"),
    (dict(batch_size=3801), "batch_size must be <= 3800 (the training examples of 'mnist1d'"),
]


@pytest.mark.parametrize("kwargs, message", BAD_AT_START, ids=[repr(kw) for kw, _ in BAD_AT_START])
def test_bad_config_for_the_model_or_data_fails_before_level_0(
    tmp_path, monkeypatch, kwargs, message
):
    def no_training(*args, **kw):
        raise AssertionError("trained before the config was checked")

    monkeypatch.setattr(imp, "train_seeds", no_training)
    config = LotteryConfig(**{**TINY, **kwargs})
    with pytest.raises(ConfigError) as info:
        imp.run_lottery(config, out_dir=str(tmp_path))
    assert message in str(info.value) and "\n" not in str(info.value)
    assert info.value.field in kwargs
    assert list(tmp_path.iterdir()) == []  # no run directory was made


def test_replace_checks_again():
    with pytest.raises(ConfigError, match="seed must be in"):
        dataclasses.replace(LotteryConfig(), seed=-5)
