"""Bad inputs found by an adversarial sweep after issue 9, beyond the other bad-input suites:
each case is a call and the one-line error (type and a message fragment naming the
setting, the leaf or the data split) it must give, or a result that must be right.

Classes: masks (non-bool leaves, mismatched trees), pruner parts and keys, unreachable
targets, 16-bit scores, data sets (labels, lengths, empty splits), run settings (step
limit, mesh, flags), lottery config and CLI flags, plots of a collapsed level.
"""

from __future__ import annotations

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lottery_shared import run_main
from test_bad_inputs_cli import assert_one_line_error
from test_bad_inputs_engine import DATA, KEYS, MODEL, OPT

import jaxticket as jt
from jaxticket.lottery.config import ConfigError, LotteryConfig
from jaxticket.train import seed_mesh, train_seeds


def _net():
    params = {
        "a": {"kernel": jnp.arange(1.0, 7.0).reshape(3, 2), "bias": jnp.ones(2)},
        "b": {"kernel": jnp.arange(1.0, 5.0).reshape(2, 2)},
    }
    return params, jt.dense_mask(params)


def _half_pruned():
    params, mask = _net()
    return params, jt.prune(params, mask, fraction=0.5)


def _with_leaf(value):
    _, mask = _net()
    return {**mask, "b": {"kernel": value}}


def _prune(**kw):
    params, mask = _net()
    return jt.prune(params, mask, **kw)


FLOAT_MASK = {"a": jnp.ones(3) * 0.5}

API = [
    # masks: non-bool leaves would count 0.5 as pruned, 2 as two weights
    ("count_alive float", lambda: jt.count_alive(FLOAT_MASK), TypeError, "mask leaf 'a': expe"),
    ("sparsity int", lambda: jt.sparsity({"a": jnp.arange(3)}), TypeError, "got dtype int32"),
    ("density float", lambda: jt.density(FLOAT_MASK), TypeError, "mask leaf 'a'"),
    ("mask_not float", lambda: jt.mask_not(FLOAT_MASK), TypeError, "mask_not leaf 'a'"),
    (
        "collapsed_leaves float",
        lambda: jt.collapsed_leaves({"a": jnp.zeros(3)}),
        TypeError,
        "collapsed_leaves leaf 'a': expected a bool array",
    ),
    (
        "alive_by_leaf int",
        lambda: jt.alive_by_leaf(_with_leaf(jnp.ones((2, 2), int))),
        TypeError,
        "alive_by_leaf leaf 'b/kernel'",
    ),
    (
        "mask_and float",
        lambda: jt.mask_and(_net()[1], _with_leaf(jnp.ones((2, 2)))),
        TypeError,
        "mask_and leaf 'b/kernel'",
    ),
    (
        "mask_and trees differ",
        lambda: jt.mask_and(_net()[1], {"a": _net()[1]["a"]}),
        ValueError,
        r"mask_and: tree structure of the first mask does not match the second mask; "
        r"leaves only in the first mask: \['b/kernel'\]",
    ),
    (
        "jaccard names itself",
        lambda: jt.jaccard({"a": jnp.zeros(3, bool)}, {"a": jnp.zeros(4, bool)}),
        ValueError,
        r"^jaccard: leaf 'a' has shape \(3,\)",
    ),
    (
        "dense_mask prunable a string",
        lambda: jt.dense_mask(_net()[0], prunable="kernel"),
        TypeError,
        "prunable must be a predicate fn.*use include=/exclude=",
    ),
    # pruner parts and keys
    (
        "criterion a string",
        lambda: _prune(fraction=0.5, criterion="magnitude"),
        TypeError,
        "pruner: criterion must be a function .*not the string 'magnitude'",
    ),
    (
        "allocation an int",
        lambda: _prune(fraction=0.5, allocation=3),
        TypeError,
        "pruner: allocation must be 'global'.*got int 3",
    ),
    (
        "Pruner without criterion",
        lambda: jt.Pruner(None, jt.global_(), jt.unstructured())(*_net(), fraction=0.5),
        TypeError,
        "pruner: criterion must be a function",
    ),
    (
        "make_pruner selection None",
        lambda: jt.make_pruner(jt.magnitude, "global", None),
        TypeError,
        "pruner: selection must be",
    ),
    (
        "random key an int",
        lambda: jt.random_pruner()(*_net(), fraction=0.5, key=0),
        TypeError,
        r"random criterion: key must be a single jax.random key \(jax.random.key\(0\)\), got 0",
    ),
    (
        "random keys stacked",
        lambda: jt.random_pruner()(*_net(), fraction=0.5, key=jax.random.split(KEYS[0])),
        TypeError,
        r"key must be a single jax.random key .*got shape \(2,\)",
    ),
    # lottery config
    (
        "config steps 2**31",
        lambda: LotteryConfig(steps=2**31),
        ConfigError,
        r"steps must be <= 2\*\*31 - 1",
    ),
    (
        "config one_shot twice",
        lambda: LotteryConfig(one_shot=(0.5, 0.9, 0.5)),
        ConfigError,
        r"one_shot: each sparsity once .*\[0.5, 0.9, 0.5\]",
    ),
    # devices
    ("seed_mesh of nothing", lambda: seed_mesh([]), ValueError, "devices is empty"),
    ("seed_mesh of ints", lambda: seed_mesh([0, 1]), TypeError, r"devices\[0\] must be a jax dev"),
]


@pytest.mark.parametrize("make, error, fragment", [c[1:] for c in API], ids=[c[0] for c in API])
def test_bad_input_gives_one_line_error(make, error, fragment):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert re.search(fragment, message), message
    assert "\n" not in message.strip(), message


def test_sparsity_below_the_masks_own_warns():
    params, mask = _half_pruned()
    with pytest.warns(UserWarning, match="sparsity=0.1 is below the mask's current sparsity 0.5"):
        new = jt.prune(params, mask, sparsity=0.1)
    assert int(jt.count_alive(new)) == 5  # unchanged: pruning never revives weights
    # A target at or above the mask's own sparsity is met, without a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert int(jt.count_alive(jt.prune(params, mask, sparsity=0.5))) == 5  # of 10
        assert int(jt.count_alive(jt.prune(params, mask, sparsity=0.7))) == 3


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("allocation", ["global", "layerwise"])
def test_16_bit_params_prune_to_exact_counts(dtype, allocation):
    # Once a KeyError ('16') from the min_keep reservation of the global allocation.
    params, mask = _net()
    params = jax.tree.map(lambda x: x.astype(dtype), params)
    new = jt.prune(params, mask, fraction=0.5, allocation=allocation)
    # a = 1..6, b = 1..4 (10 prunable weights), 5 kept. Global: the five largest, 6 5 4 3
    # of a and 4 of b; layerwise: half of each leaf, 6 5 4 of a and 4 3 of b.
    keep_a, keep_b = ([3, 4, 5, 6], [4]) if allocation == "global" else ([4, 5, 6], [3, 4])
    kept = {
        k: np.asarray(params[k]["kernel"], np.float32)[np.asarray(new[k]["kernel"])] for k in "ab"
    }
    assert sorted(kept["a"]) == keep_a and sorted(kept["b"]) == keep_b


# -- data sets and run settings (train_seeds refuses them before compiling) ---------------


def _labels(split, y):
    return DATA.replace(**{f"y_{split}": y})


DATA_CASES = [
    (
        "train labels too large",
        dict(data=_labels("train", DATA.y_train + 5)),
        ValueError,
        r"data.y_train has label 6 outside \[0, num_classes=2\)",
    ),
    (
        "negative labels",
        dict(data=_labels("train", DATA.y_train - 3)),
        ValueError,
        "data.y_train has label -3 outside",
    ),
    (
        "test labels too large",
        dict(data=_labels("test", DATA.y_test + 2)),
        ValueError,
        "data.y_test has label",
    ),
    (
        "float labels",
        dict(data=_labels("train", DATA.y_train.astype(jnp.float32))),
        TypeError,
        "data.y_train must be 1-D integer class labels",
    ),
    (
        "one-hot labels",
        dict(data=_labels("train", jax.nn.one_hot(DATA.y_train, 2))),
        TypeError,
        r"\(not one-hot\), got a float32 array of shape \(16, 2\)",
    ),
    (
        "fewer labels than inputs",
        dict(data=_labels("train", DATA.y_train[:15])),
        ValueError,
        "data.x_train has 16 examples but data.y_train has 15 labels",
    ),
    (
        "empty test split",
        dict(data=DATA.replace(x_test=DATA.x_test[:0], y_test=DATA.y_test[:0])),
        ValueError,
        "data split 'test' is empty",
    ),
    ("steps 2**31", dict(steps=2**31), ValueError, r"steps must be <= 2\*\*31 - 1 .*got 21474"),
    (
        "start_step + steps over the limit",
        dict(steps=4, start_step=2**31 - 2),
        ValueError,
        r"start_step \+ steps = 2147483646 \+ 4",
    ),
    ("mesh a string", dict(mesh="cpu"), TypeError, "mesh must be a jax.sharding.Mesh"),
    ("show_progress 'no'", dict(show_progress="no"), TypeError, "show_progress must be True or"),
]


@pytest.mark.parametrize(
    "overrides, error, fragment", [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES]
)
def test_train_seeds_refuses_bad_data_and_settings(no_compiling, overrides, error, fragment):
    kwargs = {**dict(steps=4, batch_size=8, init_keys=KEYS, data_keys=KEYS), **overrides}
    data = kwargs.pop("data", DATA)
    with pytest.raises(error) as info:
        train_seeds(MODEL, data, OPT, **kwargs)
    assert re.search(fragment, str(info.value)), str(info.value)
    assert "\n" not in str(info.value)


# -- the command line ----------------------------------------------------------------------

CLI = [
    (
        "lottery",
        ["--steps", str(2**31)],
        "argument --steps: steps must be <= 2**31 - 1 (int32 step counters), got 2147483648",
    ),
    ("lottery", ["--one-shot", "0.5,0.5"], "argument --one-shot: one_shot: each sparsity once"),
    ("train", ["--steps", str(2**31)], "steps must be <= 2**31 - 1 (int32 step counters)"),
]


@pytest.mark.parametrize("command, args, message", CLI, ids=[" ".join(c[1]) for c in CLI])
def test_cli_bad_flag_is_one_line(tmp_path, command, args, message):
    out_dir = ["--out", str(tmp_path)] if command == "lottery" else []
    code, out, err = run_main([command, *args, "--quiet", *out_dir])
    assert_one_line_error(code, out, err, command, message)


def test_plot_axis_of_a_collapsed_level_warns_nothing():
    # A level at 0 % remaining (min_keep=0 and full collapse) once made matplotlib warn
    # "non-positive xlim on a log-scaled axis" and drop the axis limits.
    from jaxticket.lottery import plots
    from jaxticket.workflow.plots import new_figure

    _, ax = new_figure()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots._log_remaining_axis(ax, [100.0, 80.2, 0.0])
    assert ax.get_xlim()[0] == pytest.approx(115.0)
