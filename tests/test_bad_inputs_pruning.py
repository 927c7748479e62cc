"""Bad-input suite for pruning and masks: each case is an input and the one-line error (type
and a message fragment naming the setting or the leaf) or the warning it must give.

Classes: rates (range, resolution, type, shape), pruner options (min_keep, checked),
layerwise scales, allocation/selection names and arguments, masks and scores (dtypes,
shapes, non-finite values), top-k arguments, per-seed statistics, layer collapse.
"""

import re

import jax
import jax.numpy as jnp
import pytest
from topk_reference import sorted_topk

from jaxticket.masks import (
    LayerCollapseWarning,
    collapsed_leaves,
    dense_mask,
    sparsity_by_leaf,
)
from jaxticket.pruning import (
    Pruner,
    count_nonfinite,
    global_,
    layerwise,
    magnitude,
    magnitude_pruner,
    make_pruner,
    n_m,
    neurons,
    prune,
    random_pruner,
    topk_mask,
    unstructured,
)

_REF = unstructured(topk=sorted_topk)


def _net():
    params = {
        "dense": {"kernel": jnp.arange(1.0, 19.0).reshape(6, 3), "bias": jnp.ones(3)},
        "out": {"kernel": jnp.arange(1.0, 7.0).reshape(3, 2)},
    }
    return params, dense_mask(params)


def _prune(**kw):
    params, mask = _net()
    kw.setdefault("selection", _REF)
    return prune(params, mask, **kw)


def _call(pruner, **kw):
    params, mask = _net()
    return pruner(params, mask, **kw)


def _with_mask(change):
    params, mask = _net()
    return prune(params, change(mask), fraction=0.5, selection=_REF)


def _with_params(change, **kw):
    params, mask = _net()
    return prune(change(params), mask, selection=_REF, **kw)


def _complex_scores(p, **_):
    return jax.tree.map(lambda x: x.astype(jnp.complex64), p)


def _plain_selection(scores, alive, paths, allocation, *, fraction=None, sparsity=None):
    return list(alive)


def _traced_vector_rate():
    params, mask = _net()
    pruner = make_pruner(magnitude, "global", _REF)
    return jax.jit(lambda f: pruner(params, mask, fraction=f))(jnp.array([0.1, 0.2]))


CASES = [
    # rates
    ("fraction 1.0", lambda: _prune(fraction=1.0), ValueError, r"fraction must be in \[0, 1\)"),
    ("fraction -0.1", lambda: _prune(fraction=-0.1), ValueError, r"fraction must be in \[0, 1\)"),
    ("sparsity nan", lambda: _prune(sparsity=float("nan")), ValueError, "sparsity must be in"),
    ("sparsity inf", lambda: _prune(sparsity=float("inf")), ValueError, "sparsity must be in"),
    ("sparsity 0.9999999", lambda: _prune(sparsity=0.9999999), ValueError, "resolves to 1.0"),
    ("fraction 0.99999995", lambda: _prune(fraction=0.99999995), ValueError, "resolves to 1.0"),
    ("fraction string", lambda: _prune(fraction="0.5"), TypeError, "fraction must be a real"),
    ("fraction bool", lambda: _prune(fraction=True), TypeError, "fraction must be a real"),
    ("fraction complex", lambda: _prune(fraction=0.5j), TypeError, "fraction must be a real"),
    (
        "fraction vector",
        lambda: _prune(fraction=jnp.array([0.1, 0.2])),
        TypeError,
        "fraction must be a real",
    ),
    ("traced vector rate", _traced_vector_rate, ValueError, r"fraction must be a scalar"),
    ("both rates", lambda: _prune(fraction=0.1, sparsity=0.5), ValueError, "exactly one"),
    ("no rate", lambda: _prune(), ValueError, "exactly one"),
    # pruner options
    ("min_keep -1", lambda: _prune(fraction=0.5, min_keep=-1), ValueError, "min_keep must be"),
    ("min_keep 1.5", lambda: magnitude_pruner(min_keep=1.5), TypeError, "min_keep must be an int"),
    ("min_keep True", lambda: magnitude_pruner(min_keep=True), TypeError, "min_keep must be"),
    (
        "min_keep on a Pruner",
        lambda: _call(Pruner(magnitude, global_(), _REF, min_keep=-2), fraction=0.5),
        ValueError,
        "min_keep must be >= 0",
    ),
    ("checked 'yes'", lambda: magnitude_pruner(checked="yes"), TypeError, "checked must be"),
    (
        "selection without min_keep",
        lambda: _call(Pruner(magnitude, global_(), _plain_selection), fraction=0.5),
        TypeError,
        "'_plain_selection' takes no min_keep=",
    ),
    # layerwise scales
    ("scale -1", lambda: layerwise({"out/*": -1}), ValueError, r"pattern 'out/\*' has factor -1"),
    ("scale nan", lambda: layerwise({"out/*": float("nan")}), ValueError, r"'out/\*'.*nan"),
    ("scale inf", lambda: layerwise({"out/*": float("inf")}), ValueError, r"'out/\*'.*inf"),
    ("scale string", lambda: layerwise({"out/*": "half"}), TypeError, r"'out/\*' has factor"),
    ("scale bool", lambda: layerwise({"out/*": True}), TypeError, r"'out/\*' has factor True"),
    ("scale list", lambda: layerwise([("out/*", 0.5)]), TypeError, "scale must be a mapping"),
    ("scale int pattern", lambda: layerwise({1: 0.5}), TypeError, "patterns must be strings"),
    ("exact_total 'yes'", lambda: layerwise(exact_total="yes"), TypeError, "exact_total must be"),
    (
        "scale 5 reaches 1",
        lambda: _call(magnitude_pruner(layerwise({"out/*": 5}), _REF), fraction=0.3),
        ValueError,
        r"leaf 'out/kernel' \(scale pattern 'out/\*', factor 5.0\) gets fraction 0.3",
    ),
    (
        "scale pattern matching nothing",
        lambda: _call(magnitude_pruner("layerwise", _REF, scale={"outt/*": 0.5}), fraction=0.2),
        ValueError,
        r"pattern 'outt/\*' matches no leaf path; valid paths are: dense/kernel, out/kernel",
    ),
    ("scale without layerwise", lambda: magnitude_pruner(scale={"o": 1}), ValueError, "layerwise"),
    # names and selection arguments
    ("allocation 'glob'", lambda: magnitude_pruner("glob"), ValueError, "unknown allocation"),
    ("selection 'rows'", lambda: magnitude_pruner(selection="rows"), ValueError, "unknown select"),
    ("n_m 5:4", lambda: n_m(5, 4), ValueError, "0 < n <= m"),
    ("n_m float n", lambda: n_m(2.0, 4), TypeError, "n_m: n must be an int"),
    (
        "n_m indivisible",
        lambda: _prune(selection=n_m(2, 4)),
        ValueError,
        "leaf 'dense/kernel' has length 6 along axis -2, not divisible by M=4",
    ),
    ("n_m with a fraction", lambda: _prune(selection=n_m(1, 3), fraction=0.5), ValueError, "fixes"),
    ("neurons norm", lambda: neurons("l3"), ValueError, "norm must be 'l1' or 'l2'"),
    ("neurons axis type", lambda: neurons(axis="last"), TypeError, "axis must be an int"),
    (
        "neurons axis range",
        lambda: _prune(selection=neurons(axis=2, topk=sorted_topk), fraction=0.5),
        ValueError,
        "leaf 'dense/kernel' has 2 dims, so axis 2",
    ),
    # masks and scores
    (
        "int mask",
        lambda: _with_mask(lambda m: {**m, "out": {"kernel": jnp.ones((3, 2), jnp.int32)}}),
        TypeError,
        "mask leaf 'out/kernel': expected dtype bool",
    ),
    (
        "mask shape",
        lambda: _with_mask(lambda m: {**m, "out": {"kernel": jnp.ones((2, 3), bool)}}),
        ValueError,
        r"mask leaf 'out/kernel': shape \(2, 3\)",
    ),
    (
        "NaN weight (eager)",
        lambda: _with_params(
            lambda p: {**p, "out": {"kernel": p["out"]["kernel"].at[0, 0].set(jnp.nan)}},
            fraction=0.5,
        ),
        ValueError,
        "scores leaf 'out/kernel': 1 alive weights have NaN or infinite",
    ),
    (
        "complex scores",
        lambda: _call(Pruner(_complex_scores, global_(), _REF), fraction=0.5),
        TypeError,
        "scores leaf 'dense/kernel': expected real scores",
    ),
    ("random without key", lambda: _call(random_pruner(), fraction=0.5), ValueError, "key="),
    (
        "count_nonfinite tree",
        lambda: count_nonfinite({"a": jnp.ones(2)}, {"b": jnp.ones(2, bool)}),
        ValueError,
        "tree structure does not match the mask",
    ),
    # top-k
    (
        "topk int scores",
        lambda: topk_mask([jnp.arange(3)], [jnp.ones(3, bool)], 1),
        TypeError,
        r"scores\[0\]: expected a float array",
    ),
    (
        "topk float alive",
        lambda: topk_mask([jnp.ones(3)], [jnp.ones(3)], 1),
        TypeError,
        r"alive\[0\]: expected a bool",
    ),
    # per-seed statistics and collapse
    (
        "seed_axis out of range",
        lambda: sparsity_by_leaf(_net()[1], seed_axis=2),
        ValueError,
        "leaf 'dense/kernel' has 2 dims, so seed_axis=2",
    ),
    ("seed_axis '0'", lambda: sparsity_by_leaf(_net()[1], seed_axis="0"), TypeError, "seed_axis"),
    (
        "collapsed_leaves traced",
        lambda: jax.jit(collapsed_leaves)(_net()[1]),
        TypeError,
        "needs a concrete mask",
    ),
]


@pytest.mark.parametrize("make, error, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gives_one_line_error(make, error, fragment):
    with pytest.raises(error) as info:
        make()
    message = str(info.value)
    assert re.search(fragment, message), message
    assert "\n" not in message.strip(), message


WARNINGS = [
    (
        "global collapse",
        lambda: _prune(sparsity=0.99, min_keep=0),
        r"2 prunable leaves.*dense/kernel, out/kernel",
    ),
    (
        "layerwise collapse",
        lambda: _call(make_pruner(magnitude, "layerwise", _REF, min_keep=0), fraction=0.99),
        r"\(layer collapse\): dense/kernel, out/kernel",
    ),
]


@pytest.mark.parametrize("make, fragment", [w[1:] for w in WARNINGS], ids=[w[0] for w in WARNINGS])
def test_collapse_warns_naming_the_leaves(make, fragment):
    with pytest.warns(LayerCollapseWarning, match=fragment):
        make()
