"""Pruning at initialization (jaxticket.at_init): exact counts, agreement with the pruning
module's functions on the same inputs, sanity checks against numpy references."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxticket
from jaxticket import at_init
from jaxticket.data.base import Dataset
from jaxticket.pruning import grasp_loss, grasp_pruner, synflow_prune
from jaxticket.sparse import Static

MODEL = jaxticket.models.get("mlp", input_shape=(8,), num_classes=3, hidden=(6,))
PARAMS, STATE = MODEL.init(jax.random.key(0))
X = jax.random.normal(jax.random.key(1), (40, 8))
Y = jax.random.randint(jax.random.key(2), (40,), 0, 3)
DATA = Dataset(x_train=X, y_train=Y, x_test=X, y_test=Y, name="t", num_classes=3, input_shape=(8,))
KEY = jax.random.key(3)
SPARSITY = 0.8
N_PRUNABLE = 8 * 6 + 6 * 3
KEEP = N_PRUNABLE - int(np.floor(SPARSITY * N_PRUNABLE + 0.5))

GLOBAL = {
    "snip": {"batch_size": 16},
    "grasp": {"batch_size": 16},
    "synflow": {"rounds": 10},
    "magnitude_init": {},
}


def _alive(mask):
    return {k: int(np.sum(v["kernel"])) for k, v in mask.items()}


def _mask(name, sparsity=SPARSITY, key=KEY, **kw):
    return at_init.get(name, **kw).mask(MODEL, PARAMS, STATE, DATA, key, sparsity)


def _loss(dropout_key):
    def loss_fn(p, batch):
        logits, _ = MODEL.apply(p, STATE, batch[0], train=True, key=dropout_key)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

    return loss_fn


def _batch_and_dropout_key(key, n):
    batch_key, dropout_key = jax.random.split(key)
    idx = np.asarray(jax.random.permutation(batch_key, 40))[:n]
    return (X[idx], Y[idx]), dropout_key


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


@pytest.mark.parametrize("name", [*GLOBAL, "snip_iterative"])
def test_global_methods_keep_exact_count_and_none_biases(name):
    kw = {"batch_size": 16, "rounds": 5} if name == "snip_iterative" else GLOBAL[name]
    mask = _mask("snip" if name == "snip_iterative" else name, **kw)
    assert mask["dense1"]["bias"] is None and mask["output"]["bias"] is None
    assert sum(_alive(mask).values()) == KEEP


@pytest.mark.parametrize("name", ["random_erk"])
def test_random_methods_match_static(name):
    mask = _mask(name)
    allocation = name.removeprefix("random_")
    ref = Static(SPARSITY, allocation).initial_mask(PARAMS, KEY)
    assert _equal(mask, ref)
    assert mask["dense1"]["bias"] is None


def test_random_erk_counts_by_hand():
    # ERK densities ∝ (n_in + n_out)/(n_in·n_out): 14/48 and 9/18, scaled to 13.2 weights.
    eps = 13.2 / (14 + 9)
    want = {"dense1": round(eps * 14), "output": round(eps * 9)}
    assert _alive(_mask("random_erk")) == want


def test_snip_one_round_equals_snip_pruner():
    batch, dropout_key = _batch_and_dropout_key(KEY, 16)
    ref = jaxticket.snip_pruner(_loss(dropout_key))(
        PARAMS, jaxticket.dense_mask(PARAMS), sparsity=SPARSITY, batch=batch
    )
    assert _equal(_mask("snip", batch_size=16), ref)


def test_snip_scores_numpy_reference_keep_top():
    # Independent reference: |g ⊙ w| by finite differences of the loss, top-KEEP in numpy.
    batch, dropout_key = _batch_and_dropout_key(KEY, 16)
    loss = _loss(dropout_key)
    scores = []
    p64 = jax.tree.map(lambda a: np.asarray(a, np.float64), PARAMS)
    for layer in ("dense1", "output"):
        w = p64[layer]["kernel"]
        g = np.zeros_like(w)
        for idx in np.ndindex(w.shape):
            up, dn = jax.tree.map(np.copy, p64), jax.tree.map(np.copy, p64)
            up[layer]["kernel"][idx] += 1e-3
            dn[layer]["kernel"][idx] -= 1e-3
            g[idx] = (float(loss(up, batch)) - float(loss(dn, batch))) / 2e-3
        scores.append(np.abs(g * w).ravel())
    flat = np.concatenate(scores)
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(-flat)[:KEEP]] = True
    mask = _mask("snip", batch_size=16)
    got = np.concatenate([np.ravel(mask[k]["kernel"]) for k in ("dense1", "output")])
    # finite differences in float32 may swap near-ties: allow at most one swap
    assert np.sum(got != keep) <= 2


def test_grasp_equals_grasp_pruner():
    batch, dropout_key = _batch_and_dropout_key(KEY, 16)

    def apply_fn(p, x):
        return MODEL.apply(p, STATE, x, train=True, key=dropout_key)[0]

    ref = grasp_pruner(grasp_loss(apply_fn, 50.0))(
        PARAMS, jaxticket.dense_mask(PARAMS), sparsity=SPARSITY, batch=batch
    )
    assert _equal(_mask("grasp", batch_size=16, temperature=50.0), ref)


def test_synflow_equals_synflow_prune():
    def apply_fn(p, x):
        return MODEL.apply(p, STATE, x, train=False, key=None)[0]

    ref = synflow_prune(apply_fn, (8,), PARAMS, jaxticket.dense_mask(PARAMS), SPARSITY, rounds=10)
    assert _equal(_mask("synflow", rounds=10), ref)


def test_magnitude_inverted_keeps_lowest_magnitudes():
    flat = np.concatenate([np.abs(np.ravel(PARAMS[k]["kernel"])) for k in ("dense1", "output")])
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(flat, kind="stable")[:KEEP]] = True
    mask = _mask("magnitude_init", inverted=True, min_keep=0)
    got = np.concatenate([np.ravel(mask[k]["kernel"]) for k in ("dense1", "output")])
    assert np.array_equal(got, keep)


def test_invert_scores_keeps_lowest_scores():
    rng = np.random.default_rng(0)
    scores = jax.tree.map(lambda w: jnp.asarray(rng.normal(size=w.shape), jnp.float32), PARAMS)
    base = jaxticket.dense_mask(PARAMS)
    mask = at_init.invert_scores(scores, base, SPARSITY, min_keep=0)
    flat = np.concatenate([np.ravel(scores[k]["kernel"]) for k in ("dense1", "output")])
    keep = np.zeros(flat.size, bool)
    keep[np.argsort(flat)[:KEEP]] = True
    got = np.concatenate([np.ravel(mask[k]["kernel"]) for k in ("dense1", "output")])
    assert np.array_equal(got, keep)
    assert mask["dense1"]["bias"] is None


@pytest.mark.parametrize("name", ["grasp", "synflow"])
def test_inverted_differs_and_keeps_count(name):
    kw = GLOBAL[name]
    inv = _mask(name, inverted=True, **kw)
    assert sum(_alive(inv).values()) == KEEP
    assert not _equal(inv, _mask(name, **kw))


def test_layerwise_shuffle_keeps_counts_changes_positions():
    mask = _mask("magnitude_init")
    shuffled = at_init.layerwise_shuffle(jax.random.key(7), mask)
    assert _alive(shuffled) == _alive(mask)
    assert shuffled["dense1"]["bias"] is None
    assert not _equal(shuffled, mask)
    assert _equal(shuffled, at_init.layerwise_shuffle(jax.random.key(7), mask))


def test_layerwise_shuffle_stacked():
    masks = [_mask("magnitude_init", sparsity=s) for s in (0.5, 0.8)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *masks)
    keys = jax.random.split(jax.random.key(1), 2)
    out = at_init.layerwise_shuffle(keys, stacked)
    for i, m in enumerate(masks):
        assert _alive(jax.tree.map(lambda a, i=i: a[i], out)) == _alive(m)


def test_reinit_same_mask_fresh_params():
    mask = _mask("magnitude_init")
    params, _, same = at_init.reinit(MODEL, jax.random.key(9), mask)
    assert same is mask
    w = np.asarray(params["dense1"]["kernel"])
    assert np.all(w[~np.asarray(mask["dense1"]["kernel"])] == 0)
    assert not np.array_equal(w, np.asarray(PARAMS["dense1"]["kernel"]) * mask["dense1"]["kernel"])


@pytest.mark.parametrize("name", ["snip", "random_erk", "synflow"])
def test_same_key_same_mask(name):
    kw = GLOBAL.get(name, {})
    assert _equal(_mask(name, **kw), _mask(name, **kw))


def test_snip_different_key_draws_different_batch():
    a = _mask("snip", batch_size=8)
    b = _mask("snip", batch_size=8, key=jax.random.key(11))
    assert not _equal(a, b)


def test_methods_hashable_by_value():
    assert hash(at_init.SNIP(batch_size=4)) == hash(at_init.SNIP(batch_size=4))
    assert at_init.get("random_er") == at_init.RandomInit(allocation="er")


def test_unknown_name_lists_valid():
    with pytest.raises(ValueError, match="valid: grasp, magnitude_init, random_er"):
        at_init.get("snipp")


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_outside_range_refused(sparsity):
    with pytest.raises(ValueError, match="sparsity must be in"):
        _mask("magnitude_init", sparsity=sparsity)


def test_snip_without_data_or_with_big_batch_refused():
    with pytest.raises(ValueError, match="needs data="):
        at_init.SNIP(batch_size=4).mask(MODEL, PARAMS, STATE, None, KEY, 0.5)
    with pytest.raises(ValueError, match="exceeds the 40 training"):
        at_init.GraSP(batch_size=41).mask(MODEL, PARAMS, STATE, DATA, KEY, 0.5)


@pytest.mark.parametrize(
    ("factory", "kw", "match"),
    [
        (at_init.SNIP, {"rounds": 0}, "rounds must be an int >= 1"),
        (at_init.SNIP, {"batch_size": 0}, "batch_size"),
        (at_init.GraSP, {"temperature": 0.0}, "temperature"),
        (at_init.SynFlow, {"allocation": "erm"}, "unknown allocation"),
        (at_init.RandomInit, {"allocation": "global"}, "unknown allocation"),
        (at_init.MagnitudeInit, {"inverted": 1}, "inverted"),
    ],
)
def test_bad_fields_refused(factory, kw, match):
    with pytest.raises(ValueError, match=match):
        factory(**kw)


def test_collapse_warned_with_min_keep_zero():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = _mask("magnitude_init", sparsity=0.98, min_keep=0, inverted=False)
    collapsed = jaxticket.masks.collapsed_leaves(mask)
    assert bool(collapsed) == any("collapse" in str(w.message) for w in caught)


def test_mask_under_jit_and_traced_sparsity():
    method = at_init.SNIP(batch_size=16)
    f = jax.jit(lambda p, s: method.mask(MODEL, p, STATE, DATA, KEY, s))
    assert _equal(f(PARAMS, SPARSITY), _mask("snip", batch_size=16))
