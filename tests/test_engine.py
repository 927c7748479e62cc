"""Tests for the training engine (jaxticket.train): determinism, seeds under vmap, history,
snapshots, masks, BatchNorm state and bad input.

Compiles dominate the cost on CPU, so the model, optimizer and configuration are built once
and shared: runs with the same configuration and seed count reuse one compiled program.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxticket.data
import jaxticket.models
from jaxticket.data import Dataset
from jaxticket.masks import dense_mask
from jaxticket.models.base import from_nnx
from jaxticket.train import runner, train, train_seeds
from jaxticket.train.timeline import eval_steps


def synthetic(n_train, n_test, shape, num_classes, seed=0, n_val=0) -> Dataset:
    """Gaussian inputs whose labels depend on the inputs (so training moves the loss)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(int(np.prod(shape)), num_classes))

    def split(n):
        x = rng.normal(size=(n, *shape)).astype(np.float32)
        return jnp.asarray(x), jnp.asarray(np.argmax(x.reshape(n, -1) @ w, -1), jnp.int32)

    (x_train, y_train), (x_test, y_test) = split(n_train), split(n_test)
    extra = {}
    if n_val:
        extra["x_val"], extra["y_val"] = split(n_val)
    return Dataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        name="synthetic",
        num_classes=num_classes,
        input_shape=tuple(shape),
        **extra,
    )


DATA = synthetic(64, 32, (8,), 3, n_val=16)
MODEL = jaxticket.models.get("mlp", input_shape=(8,), num_classes=3, hidden=(16,))
# Plain SGD has no optimizer state, so a run resumed from a snapshot (start_step) must
# reproduce the uninterrupted run.
OPT = optax.sgd(0.1)
# 4 batches per epoch: 12 steps cross two epoch boundaries. The snapshot at 2 is mid-epoch
# and between evaluations, so it cuts the run (3 scanned groups; each costs compile time).
CFG = dict(steps=12, batch_size=16, eval_every=4, snapshot_steps=(0, 2))
ROOT = jax.random.key(42)
INIT_KEYS = jax.random.split(jax.random.fold_in(ROOT, 0), 3)
DATA_KEYS = jax.random.split(jax.random.fold_in(ROOT, 1), 3)
HISTORY_KEYS = {"step", "train_loss", "test_loss", "test_accuracy", "val_loss", "val_accuracy"}


def run(init_idx, data_idx, **overrides):
    """``train_seeds`` over the seeds made of ``INIT_KEYS[init_idx]``, ``DATA_KEYS[data_idx]``."""
    return train_seeds(
        MODEL,
        DATA,
        OPT,
        init_keys=INIT_KEYS[jnp.asarray(init_idx)],
        data_keys=DATA_KEYS[jnp.asarray(data_idx)],
        **{**CFG, **overrides},
    )


def seed(result, i):
    return jax.tree.map(lambda x: x[i], result)


def max_abs_diff(a, b) -> float:
    diffs = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), a, b)
    return max(jax.tree.leaves(diffs), default=0.0)


@pytest.fixture(scope="module")
def single():
    """Seeds (init 0, data 0) and (init 1, data 1), one program each (vmapped over one)."""
    return [run([i], [i]) for i in (0, 1)]


@pytest.fixture(scope="module")
def pair():
    """The same two seeds as one vmapped program."""
    return run([0, 1], [0, 1])


# -- determinism and seeds ---------------------------------------------------------------


def test_same_key_gives_bitwise_identical_runs():
    key = jax.random.key(7)
    first = train(MODEL, DATA, OPT, key=key, **CFG)
    second = train(MODEL, DATA, OPT, key=key, **CFG)
    chex.assert_trees_all_equal(first.params, second.params)
    chex.assert_trees_all_equal(first.history, second.history)
    chex.assert_trees_all_equal(first.snapshots, second.snapshots)
    other = train(MODEL, DATA, OPT, key=jax.random.key(8), **CFG)
    assert max_abs_diff(first.params, other.params) > 0


def test_train_is_train_seeds_with_key_and_folded_data_key(single):
    key = INIT_KEYS[0]
    one = train(MODEL, DATA, OPT, key=key, **CFG)
    ref = train_seeds(
        MODEL,
        DATA,
        OPT,
        init_keys=key[None],
        data_keys=jax.random.fold_in(key, 1)[None],
        **CFG,
    )
    chex.assert_trees_all_equal(one.params, seed(ref.params, 0))
    chex.assert_trees_all_equal(one.history, seed(ref.history, 0))


def test_vmapped_seeds_match_single_runs(single, pair):
    # Close, not bitwise: on CPU the batched matmuls of the vmapped program round
    # differently (measured max difference about 3e-8 in params, 6e-8 in history).
    for i in (0, 1):
        one, both = seed(single[i], 0), seed(pair, i)
        chex.assert_trees_all_close(one.params, both.params, atol=1e-5, rtol=0)
        chex.assert_trees_all_close(one.history, both.history, atol=1e-5, rtol=0)
        chex.assert_trees_all_close(one.snapshots, both.snapshots, atol=1e-5, rtol=0)
        # The init does not depend on the batch of seeds around it.
        chex.assert_trees_all_equal(one.snapshots[0], both.snapshots[0])
    assert max_abs_diff(seed(pair.params, 0), seed(pair.params, 1)) > 1e-3


def test_shared_init_different_data_order(single):
    # Seeds (init 0, data 0) and (init 0, data 1).
    res = run([0, 0], [0, 1])
    start = res.snapshots[0][0]
    chex.assert_trees_all_equal(seed(start, 0), seed(start, 1))
    assert max_abs_diff(seed(res.params, 0), seed(res.params, 1)) > 1e-3
    # Keys keep their roles inside the batch: seed 0 is the single run (init 0, data 0).
    chex.assert_trees_all_close(seed(res.params, 0), seed(single[0].params, 0), atol=1e-5, rtol=0)


def test_shared_data_order_different_init(single):
    # Seeds (init 0, data 2) and (init 1, data 2).
    res = run([0, 1], [2, 2])
    start = res.snapshots[0][0]
    assert max_abs_diff(seed(start, 0), seed(start, 1)) > 1e-3
    assert max_abs_diff(seed(res.params, 0), seed(res.params, 1)) > 1e-3
    chex.assert_trees_all_equal(seed(start, 0), seed(single[0].snapshots[0][0], 0))


class RecordingBar:
    """Stands in for tqdm: records where the bar was moved."""

    positions: list[int] = []

    def __init__(self, total, initial=0, **kwargs):
        self.total, self.n = total, initial
        RecordingBar.positions = [initial]

    def update(self, k):
        self.n += k
        RecordingBar.positions.append(self.n)

    def close(self):
        pass


def test_progress_bar_gives_the_same_bits(pair, monkeypatch):
    from jaxticket.train import progress

    monkeypatch.setattr(progress, "tqdm", RecordingBar)
    # With a bar the run is cut into chunk calls; the chunk program is the one-program
    # run's scan body, so params, history, snapshots and the divergence flag agree to the
    # bit. Adam (a step count in its state) and a mask, to cover the optimizer state.
    mask = random_mask(seed(pair.params, 0), 0.5, seed=1)
    kwargs = dict(steps=12, batch_size=16, eval_every=2, snapshot_steps=(0, 3), mask=mask)
    opt = optax.adam(1e-2)
    keys = dict(init_keys=INIT_KEYS[:2], data_keys=DATA_KEYS[:2])
    quiet = train_seeds(MODEL, DATA, opt, **keys, **kwargs)
    shown = train_seeds(MODEL, DATA, opt, **keys, show_progress=True, **kwargs)
    chex.assert_trees_all_equal(quiet, shown)
    # The bar moved forward chunk by chunk, up to the last step.
    positions = RecordingBar.positions
    assert positions[0] == 0 and positions[-1] == 12 and len(positions) > 2
    assert positions == sorted(positions)
    assert max_abs_diff(seed(quiet.params, 0), seed(quiet.params, 1)) > 1e-3


def test_chunks_cover_the_table_with_padding_rows_that_do_nothing():
    from jaxticket.train import compiled, progress

    kw = dict(
        steps=12, batch_size=16, eval_every=2, snapshot_steps=(3,), start_step=0,
        mask_per_seed=False, progress=True,
    )  # fmt: skip
    chunked = compiled.compiled_train_fn(MODEL, OPT, **kw)
    # 1 "before training" row + 7 segments (evaluations at 2, 4, ... 12, a cut at 3).
    pieces = chunked.pieces
    assert len(pieces) <= progress.CHUNKS and len({len(p) for p in pieces}) == 1
    rows = np.concatenate(pieces)
    real, pad = rows[:8], rows[8:]
    np.testing.assert_array_equal(real[:, 1] + real[:, 2], [0, 2, 3, 4, 6, 8, 10, 12])
    assert np.all(pad[:, 2] == 0) and np.all(pad[:, 3] == 0) and np.all(pad[:, 0] == -1)
    assert chunked.ends[-1] == 12


# -- history and snapshots ---------------------------------------------------------------


def test_history_has_one_entry_per_evaluation(single, pair):
    n_evals = CFG["steps"] // CFG["eval_every"] + 1
    hist = single[0].history
    assert set(hist) == HISTORY_KEYS
    for name, values in hist.items():
        assert values.shape == (1, n_evals), name
    for name, values in pair.history.items():
        assert values.shape == (2, n_evals), name
    np.testing.assert_array_equal(hist["step"][0], eval_steps(CFG["steps"], CFG["eval_every"]))
    assert hist["train_loss"][0, 0] == 0  # entry 0 is before any training step
    assert np.all(np.isfinite(hist["test_loss"])) and np.all(np.isfinite(hist["val_loss"]))
    assert np.all((hist["test_accuracy"] >= 0) & (hist["test_accuracy"] <= 1))
    # The labels are learnable: the test loss goes down.
    assert hist["test_loss"][0, -1] < hist["test_loss"][0, 0]


def test_snapshot_equals_run_stopped_there(single):
    stopped = run([0], [0], steps=2, snapshot_steps=())
    snap_params, snap_state = single[0].snapshots[1]
    chex.assert_trees_all_equal(stopped.params, snap_params)
    chex.assert_trees_all_equal(stopped.model_state, snap_state)
    # Snapshot 0 is the initialization, untouched.
    init_params, _ = runner.init_seeds(MODEL)(INIT_KEYS[:1])
    chex.assert_trees_all_equal(single[0].snapshots[0][0], init_params)


def test_start_step_resumes_data_order_and_counts_history(single):
    # Resume the seed from its step-2 snapshot: with plain SGD the rest of the run is the same
    # computation as in the uninterrupted run, provided data order counts from step 2.
    params, state = single[0].snapshots[1]
    resumed = run(
        [0],
        [0],
        steps=10,
        start_step=2,
        params=params,
        model_state=state,
        snapshot_steps=(2,),
    )
    # Evaluations every 4 steps counted from the start, and at the end.
    np.testing.assert_array_equal(resumed.history["step"][0], [2, 6, 10, 12])
    chex.assert_trees_all_equal(resumed.snapshots[0][0], params)
    chex.assert_trees_all_close(resumed.params, single[0].params, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        resumed.history["test_loss"][0, -1], single[0].history["test_loss"][0, -1], atol=1e-6
    )


def test_snapshot_steps_are_absolute_with_start_step():
    with pytest.raises(ValueError, match=r"snapshot step 2 is outside the run \[6, 12\]"):
        run([0], [0], steps=6, start_step=6, snapshot_steps=(2,))


# -- masks -------------------------------------------------------------------------------


def random_mask(params, density, seed):
    """A mask keeping about ``density`` of each prunable leaf (kernels), biases never pruned.

    Drawn with numpy: eager ``jax.random`` would compile a sampler per leaf shape.
    """
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda m: None if m is None else jnp.asarray(rng.random(m.shape) < density),
        dense_mask(params),
        is_leaf=lambda x: x is None,
    )


def pruned_values(params, mask):
    """All entries of ``params`` where ``mask`` is False, as one flat array."""
    parts = jax.tree.map(
        lambda m, p: None if m is None else p[~m], mask, params, is_leaf=lambda x: x is None
    )
    return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(parts)])


def test_per_seed_masks_keep_pruned_weights_at_zero(pair):
    template = seed(pair.params, 0)
    dense = dense_mask(template)
    sparse = random_mask(template, 0.5, seed=3)
    masks = jax.tree.map(
        lambda a, b: None if a is None else jnp.stack([a, b]),
        dense,
        sparse,
        is_leaf=lambda x: x is None,
    )
    res = run([0, 1], [0, 1], steps=2, snapshot_steps=(0, 1), mask=masks, mask_per_seed=True)
    # Seed 0's mask keeps everything: the masked path equals the unmasked (mask=None) run.
    chex.assert_trees_all_close(
        seed(res.params, 0), seed(pair.snapshots[1][0], 0), atol=1e-6, rtol=0
    )
    # Seed 1: pruned weights are exactly zero from the start, in every snapshot and at the end.
    assert pruned_values(sparse, sparse).size > 0
    for params in [res.params, *(snap[0] for snap in res.snapshots)]:
        assert np.all(pruned_values(seed(params, 1), sparse) == 0)
    # ... while the surviving weights and the unpruned biases trained.
    start = seed(res.snapshots[0][0], 1)
    assert max_abs_diff(seed(res.params, 1), start) > 1e-3


def test_shared_mask_through_train(single):
    key = jax.random.key(5)
    mask = random_mask(seed(single[0].params, 0), 0.3, seed=6)
    res = train(MODEL, DATA, OPT, key=key, steps=2, batch_size=16, snapshot_steps=(0,), mask=mask)
    for p in [res.params, res.snapshots[0][0]]:
        assert np.all(pruned_values(p, mask) == 0)
    assert max_abs_diff(res.params, res.snapshots[0][0]) > 0


# -- model state -------------------------------------------------------------------------


class BatchNormMLP(nnx.Module):
    """Dense -> BatchNorm -> ReLU -> dense: the smallest model with running statistics."""

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(8, 8, rngs=rngs)
        self.norm = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
        self.output = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x, *, train: bool, key=None):
        h = self.norm(self.hidden(x), use_running_average=not train)
        return self.output(jax.nn.relu(h))


BN_MODEL = from_nnx(BatchNormMLP, input_shape=(8,), num_classes=3, name="bn_mlp")


def test_batchnorm_state_is_per_seed_and_updated():
    keys = INIT_KEYS[:2]
    _, init_state = runner.init_seeds(BN_MODEL)(keys)
    assert set(init_state["norm"]) == {"mean", "var"}
    res = train_seeds(
        BN_MODEL, DATA, OPT, init_keys=keys, data_keys=DATA_KEYS[:2], steps=3, batch_size=16
    )
    chex.assert_trees_all_equal_shapes(res.model_state, init_state)
    for init_leaf, leaf in zip(
        jax.tree.leaves(init_state), jax.tree.leaves(res.model_state), strict=True
    ):
        assert np.all(np.isfinite(leaf))
        assert not np.array_equal(leaf, init_leaf)  # running statistics moved
        assert not np.array_equal(leaf[0], leaf[1])  # and differently per seed
    assert np.all(np.isfinite(res.history["test_loss"]))

    # Params without their BatchNorm state are refused before compiling.
    params, _ = runner.init_seeds(BN_MODEL)(keys)
    with pytest.raises(ValueError, match="non-trainable state.*norm/mean.*pass model_state"):
        train_seeds(
            BN_MODEL,
            DATA,
            OPT,
            init_keys=keys,
            data_keys=keys,
            steps=2,
            batch_size=8,
            params=params,
        )


def test_params_without_state_for_stateless_model(single):
    key = INIT_KEYS[0]
    params = seed(single[0].snapshots[0][0], 0)  # the init from this key
    given = train(MODEL, DATA, OPT, key=key, params=params, **CFG)
    fresh = train(MODEL, DATA, OPT, key=key, **CFG)
    chex.assert_trees_all_equal(given.params, fresh.params)


# -- bad input ---------------------------------------------------------------------------


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="unknown model 'mlp3'") as err:
        jaxticket.models.get("mlp3", input_shape=(8,), num_classes=3)
    for name in ("mlp", "lenet_300_100", "resnet20"):
        assert name in str(err.value)


def test_unknown_data_set_lists_valid_names():
    with pytest.raises(ValueError, match="unknown data set 'mnist1dd'") as err:
        jaxticket.data.load("mnist1dd")
    for name in jaxticket.data.names():
        assert name in str(err.value)


def test_input_shape_mismatch_reported_before_compiling(no_compiling):
    model = jaxticket.models.get("mlp", input_shape=(5,), num_classes=3, hidden=(4,))
    with pytest.raises(ValueError, match=r"expects inputs of shape \(5,\).*shape \(8,\)"):
        train(model, DATA, OPT, key=ROOT, steps=2, batch_size=4)


def test_class_count_mismatch_reported_before_compiling(no_compiling):
    model = jaxticket.models.get("mlp", input_shape=(8,), num_classes=10, hidden=(4,))
    with pytest.raises(ValueError, match="10 outputs but data set 'synthetic' has 3 classes"):
        train(model, DATA, OPT, key=ROOT, steps=2, batch_size=4)


def test_key_count_mismatch(no_compiling):
    with pytest.raises(ValueError, match="got 2 init keys but 3 data keys"):
        train_seeds(
            MODEL, DATA, OPT, init_keys=INIT_KEYS[:2], data_keys=DATA_KEYS, steps=2, batch_size=4
        )


def test_params_without_seed_axis(single, no_compiling):
    params, state = seed(single[0].snapshots[0], 0)
    with pytest.raises(ValueError, match=r"params leaf 'dense1/bias' has shape \(16,\)"):
        train_seeds(
            MODEL,
            DATA,
            OPT,
            init_keys=INIT_KEYS[:2],
            data_keys=DATA_KEYS[:2],
            steps=2,
            batch_size=4,
            params=params,
            model_state=state,
        )


def test_batch_larger_than_data_set():
    with pytest.raises(ValueError, match=r"batch_size 65 is larger than the training set \(64"):
        train(MODEL, DATA, OPT, key=ROOT, steps=2, batch_size=65)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(start_step=-1), "start_step must be >= 0"),
        (dict(steps=0), "steps must be >= 1"),
        (dict(eval_every=0), "eval_every must be >= 1"),
    ],
)
def test_bad_run_settings(kwargs, match):
    settings = {**dict(steps=4, batch_size=4, snapshot_steps=()), **kwargs}
    with pytest.raises(ValueError, match=match):
        run([0], [0], **settings)
