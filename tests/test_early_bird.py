"""Early-bird tickets: FIFO detection against a pure-Python FIFO, masks against NumPy top-k,
and bad settings."""

from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jaxticket
from jaxticket._paths import leaves_with_paths
from jaxticket.stability.channel_scores import bn_channel_pairs
from jaxticket.stability.early_bird import (
    detect,
    early_bird,
    epoch_masks,
    mask_distances,
    retrain_tickets,
)
from jaxticket.train import train_seeds

# --------------------------------------------------------------------------------------
# the FIFO, against a plain Python deque


def reference_fifo(masks, window, threshold):
    """(1-based detection epoch or -1, trace) for one seed's list of flat bool arrays."""
    fifo, trace, found = collections.deque(maxlen=window), [], -1
    for epoch, m in enumerate(masks, 1):
        fifo.append(m)
        ds = [float(np.mean(m != old)) for old in list(fifo)[:-1]]
        trace.append(max(ds) if ds else float("nan"))
        if found < 0 and len(fifo) == window and max(ds) < threshold:
            found = epoch
    return found, trace


def flips(n_epochs, per_epoch, size=100):
    """Masks of ``size`` weights; epoch e flips ``per_epoch[e]`` weights never flipped before."""
    m, out, at = np.ones(size, bool), [], 0
    for k in per_epoch[:n_epochs]:
        m = m.copy()
        m[at : at + k] = ~m[at : at + k]
        at += k
        out.append(m)
    return out


def as_tree(seqs):
    """Per-seed lists of flat masks -> a mask tree with leaves ``[E, N, 10, 10]``."""
    stacked = np.stack([np.stack(s) for s in seqs], axis=1)
    return {"w": jnp.asarray(stacked.reshape(*stacked.shape[:2], 10, 10)), "b": None}


def run_detect(seqs, window, threshold):
    return detect(mask_distances(as_tree(seqs), window=window), threshold=threshold)


@pytest.mark.parametrize(
    ("per_epoch", "window", "threshold", "expected"),
    [
        ([0, 30, 30, 30, 0, 0, 0, 0, 0, 0], 5, 0.1, 8),  # epochs 4..8 identical
        ([0, 30, 30, 30, 0, 0, 0, 0, 0, 0], 2, 0.1, 5),  # window respected
        ([0, 20, 20, 20, 20, 0], 3, 0.1, -1),  # distances stay high: never
        ([0, 5, 5, 5, 5, 5], 3, 0.15, 3),  # max distance 0.10 < 0.15: the first full FIFO
        ([0, 5, 5, 5, 5, 5], 3, 0.08, -1),  # threshold respected
    ],
)
def test_detection_epoch_on_hand_made_sequences(per_epoch, window, threshold, expected):
    seq = flips(len(per_epoch), per_epoch)
    epoch, trace = run_detect([seq], window, threshold)
    ref_epoch, ref_trace = reference_fifo(seq, window, threshold)
    assert epoch[0] == ref_epoch == expected
    np.testing.assert_allclose(trace[0], ref_trace, rtol=1e-6)


@given(
    st.integers(2, 5),
    st.sampled_from([0.05, 0.2, 0.5]),
    st.lists(st.lists(st.integers(0, 12), min_size=8, max_size=8), min_size=2, max_size=2),
    st.integers(0, 2**31 - 1),
)
def test_fifo_matches_python_deque(window, threshold, per_seed_flips, seed):
    rng = np.random.default_rng(seed)
    seqs = []
    for counts in per_seed_flips:  # each epoch flips `count` random weights of the last
        m, seq = rng.random(100) < 0.5, []
        for k in counts:
            m = m.copy()
            idx = rng.choice(100, size=k, replace=False)
            m[idx] = ~m[idx]
            seq.append(m)
        seqs.append(seq)
    epoch, trace = run_detect(seqs, window, threshold)
    for n, seq in enumerate(seqs):
        ref_epoch, ref_trace = reference_fifo(seq, window, threshold)
        assert epoch[n] == ref_epoch
        np.testing.assert_allclose(trace[n], ref_trace, rtol=1e-6)
        if epoch[n] > 0:  # invariant: a full FIFO, every distance to the newest under it
            assert epoch[n] >= window and trace[n][epoch[n] - 1] < threshold


# --------------------------------------------------------------------------------------
# masks at snapshots, against NumPy top-k


def numpy_magnitude(leaves, sparsity, allocation):
    """Keep the largest |w|: all leaves at once (global) or each leaf (layerwise)."""

    def keep_top(flat):
        n_prune = int(np.floor(sparsity * flat.size + 0.5))
        order = np.argsort(-np.abs(flat), kind="stable")
        keep = np.zeros(flat.size, bool)
        keep[order[: flat.size - n_prune]] = True
        return keep

    if allocation == "layerwise":
        return [keep_top(w.ravel()).reshape(w.shape) for w in leaves]
    keep, out, at = keep_top(np.concatenate([w.ravel() for w in leaves])), [], 0
    for w in leaves:
        out.append(keep[at : at + w.size].reshape(w.shape))
        at += w.size
    return out


def test_layerwise_epoch_masks_are_numpy_magnitude_pruning():
    # (global magnitude is checked against NumPy on the trained snapshots below)
    allocation = "layerwise"
    rng = np.random.default_rng(0)
    params = {  # [E=3, N=2, ...]; distinct values, so no ties
        "a": {
            "kernel": (rng.permutation(120) + 1.0).reshape(3, 2, 4, 5)
            * rng.choice([-1, 1], 120).reshape(3, 2, 4, 5)
        },
        "b": {"kernel": 60 * rng.normal(size=(3, 2, 5, 3)), "bias": rng.normal(size=(3, 2, 3))},
    }
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), params)
    masks = epoch_masks(params, sparsity=0.6, pruning=allocation)
    assert masks["b"]["bias"] is None
    for e in range(3):
        for n in range(2):
            leaves = [np.asarray(params[k]["kernel"][e, n]) for k in "ab"]
            want = numpy_magnitude(leaves, 0.6, allocation)
            for k, w in zip("ab", want, strict=True):
                np.testing.assert_array_equal(np.asarray(masks[k]["kernel"][e, n]), w)


def test_channel_masks_are_the_largest_batchnorm_scales():
    gammas = [np.array([0.5, -3.0, 0.1, 2.0]), np.array([1.0, -0.2, 0.3, 4.0, 0.05, 1.5])]
    params = {
        "conv1": {"kernel": np.ones((3, 2, 4))},
        "bn1": {"scale": gammas[0], "bias": np.zeros(4)},
        "conv2": {"kernel": np.ones((3, 4, 6))},
        "bn2": {"scale": gammas[1], "bias": np.zeros(6)},
        "output": {"kernel": np.ones((6, 2)), "bias": np.zeros(2)},
    }
    stacked = jax.tree.map(
        lambda x: jnp.asarray(np.asarray(x, float), jnp.float32)[None, None], params
    )
    masks = epoch_masks(stacked, sparsity=0.5, pruning="channels")
    assert masks["output"]["kernel"] is None  # no BatchNorm after it: never pruned
    # 10 channels, 5 pruned: the 5 smallest |γ| are 0.05, 0.1, 0.2, 0.3, 0.5
    want = [np.array([0, 1, 0, 1], bool), np.array([1, 0, 0, 1, 0, 1], bool)]
    for name, keep in zip(["conv1", "conv2"], want, strict=True):
        got = np.asarray(masks[name]["kernel"][0, 0])
        np.testing.assert_array_equal(got, np.broadcast_to(keep, got.shape))


# --------------------------------------------------------------------------------------
# end to end on digits (one dense run, shared)

DATA = jaxticket.data.load_digits()
MODEL = jaxticket.models.get("mlp", input_shape=(8, 8, 1), num_classes=10, hidden=(16,))
KEYS = dict(
    init_keys=jax.random.split(jax.random.key(0), 2),
    data_keys=jax.random.split(jax.random.key(1), 2),
)
RUN = dict(steps=80, batch_size=64)


@pytest.fixture(scope="module")
def eb():
    return early_bird(
        MODEL,
        DATA,
        optax.adam(1e-2),
        **KEYS,
        **RUN,
        sparsity=0.5,
        every=10,
        window=3,
        threshold=0.2,
    )


def test_masks_at_snapshots_are_numpy_pruning_of_the_snapshot_params(eb):
    # The same run, trained here with its snapshots kept.
    res = train_seeds(
        MODEL,
        DATA,
        optax.adam(1e-2),
        **KEYS,
        **RUN,
        params=eb.init_params,
        model_state=eb.init_state,
        snapshot_steps=eb.steps,
    )
    assert eb.steps == tuple(range(10, 81, 10))
    snaps = [p for p, _ in res.snapshots] + [res.params]
    for e, p in enumerate(snaps):
        for n in range(2):
            leaves = [np.asarray(p[k]["kernel"][n]) for k in ("dense1", "output")]
            want = numpy_magnitude(leaves, 0.5, "global")
            got_tree = (
                eb.final_mask if e == len(eb.steps) else jax.tree.map(lambda m, e=e: m[e], eb.masks)
            )
            for k, w in zip(("dense1", "output"), want, strict=True):
                np.testing.assert_array_equal(np.asarray(got_tree[k]["kernel"][n]), w)
    for n in range(2):  # the chosen mask is the detection epoch's (or the final one)
        e = eb.detected_epoch[n]
        src = eb.final_mask if e < 0 else jax.tree.map(lambda m, e=e: m[e - 1], eb.masks)
        np.testing.assert_array_equal(eb.mask["dense1"]["kernel"][n], src["dense1"]["kernel"][n])
        assert eb.detected_step[n] == (-1 if e < 0 else 10 * e)


def test_retrain_compares_both_tickets_from_init(eb):
    r = retrain_tickets(MODEL, DATA, optax.adam(1e-2), eb, data_keys=KEYS["data_keys"], **RUN)
    assert r["early_bird_accuracy"].shape == r["full_accuracy"].shape == (2,)
    want_steps = np.where(eb.detected_step >= 0, eb.detected_step, 80)
    np.testing.assert_array_equal(r["steps_saved"], 80 - want_steps)


# --------------------------------------------------------------------------------------
# bad settings


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0.0}, "threshold must be a number in \\(0, 1\\)"),
        ({"threshold": 1.0}, "threshold must be a number in \\(0, 1\\)"),
        ({"window": 1}, "window must be an int >= 2"),
        ({"every": 0}, "every must be an int >= 1"),
        ({"sparsity": 1.0}, "sparsity must be a number in \\[0, 1\\)"),
        ({"sparsity": -0.1}, "sparsity must be a number in \\[0, 1\\)"),
        ({"pruning": "nope"}, "pruning must be one of"),
        ({"pruning": "channels"}, "no BatchNorm scale"),
        ({"every": 30}, "steps=80 gives 2 epochs of every=30 steps"),
    ],
)
def test_bad_settings_fail_in_one_line(kwargs, message):
    settings = {"sparsity": 0.5, "every": 10, **kwargs}
    with pytest.raises(ValueError, match=message) as err:
        early_bird(MODEL, DATA, optax.adam(1e-2), **KEYS, **RUN, **settings)
    assert "\n" not in str(err.value)


def test_channel_masks_on_the_zoo_resnet():
    """The channel path on a zoo BatchNorm model (ResNet-20: convs, shortcut convs): every
    BatchNorm scale pairs with the conv before it, and the masks keep exactly the channels
    of the largest |γ| overall."""
    model = jaxticket.models.get("resnet20", input_shape=(8, 8, 3), num_classes=10)
    params, _ = jax.eval_shape(model.init, jax.random.key(0))
    pairs = bn_channel_pairs(params)
    scales = [p for p, _ in leaves_with_paths(params) if p.endswith("scale")]
    assert sorted(pairs.values()) == sorted(scales)
    # Distinct |γ|: a random order of all channels, so every layer keeps some channels
    # (a layer the threshold would empty keeps its best one: min_keep=1).
    flat = {p: np.zeros(x.shape, np.float32) for p, x in leaves_with_paths(params)}
    sizes = [flat[s].size for s in scales]
    values = np.random.default_rng(0).permutation(sum(sizes)).astype(np.float32) + 1
    for scale, part in zip(scales, np.split(values, np.cumsum(sizes)[:-1]), strict=True):
        flat[scale] = part
    threshold = np.sort(values)[len(values) // 2]  # sparsity 0.5: the lower half goes
    tree = jax.tree_util.tree_map_with_path(
        lambda path, x: jnp.asarray(flat[_path(path)])[None, None], params
    )
    masks = epoch_masks(tree, sparsity=0.5, pruning="channels")
    for kernel, scale in pairs.items():
        got = np.asarray(_leaf(masks, kernel)[0, 0])
        keep = flat[scale] >= threshold
        np.testing.assert_array_equal(got, np.broadcast_to(keep, got.shape), err_msg=kernel)


def _path(path) -> str:
    return "/".join(str(getattr(k, "key", k)) for k in path)


def _leaf(tree, path: str):
    for part in path.split("/"):
        tree = tree[part]
    return tree
