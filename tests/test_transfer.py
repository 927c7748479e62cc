"""The ticket-transfer workflow: the class subset relabels exactly, mismatched tasks are
refused naming the leaf, and one tiny MNIST-1D → re-seeded MNIST-1D run (a few dozen steps) checked
against NumPy: the transferred mask is the source network's global magnitude ticket, the
controls keep its per-layer counts, and a rerun trains nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxticket import data as data_lib
from jaxticket.transfer import run as transfer_run
from jaxticket.transfer.config import TransferConfig
from jaxticket.transfer.report import format_table, summarize
from jaxticket.transfer.tasks import check_same_shapes, class_subset
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.store_tree import flatten_tree


def test_class_subset_relabels_in_order():
    ds = data_lib.load("digits")
    sub = class_subset(ds, (7, 2))
    y, sub_y = np.asarray(ds.y_train), np.asarray(sub.y_train)
    assert sub.num_classes == 2
    assert sub_y.tolist() == [0 if v == 7 else 1 for v in y if v in (7, 2)]
    np.testing.assert_array_equal(
        np.asarray(sub.x_train), np.asarray(ds.x_train)[np.isin(y, [7, 2])]
    )
    with pytest.raises(ValueError, match="distinct labels"):
        class_subset(ds, (3, 3))


def test_check_same_shapes_names_the_leaf():
    a = {"dense1": {"kernel": np.zeros((4, 8))}, "output": {"kernel": np.zeros((8, 5))}}
    b = {"dense1": {"kernel": np.zeros((4, 8))}, "output": {"kernel": np.zeros((8, 3))}}
    with pytest.raises(ValueError, match=r"leaf 'output/kernel': source \(8, 5\), target \(8, 3\)"):
        check_same_shapes(a, b)
    check_same_shapes(a, a)


def test_mismatched_tasks_refused_before_training(monkeypatch):
    monkeypatch.setattr(transfer_run, "train_seeds", _refuse)
    config = TransferConfig(
        dataset="digits",
        model="mlp",
        hidden=(8,),
        source_classes=(0, 1, 2, 3, 4),
        target_classes=(5, 6, 7),
        val_size=50,
    )
    with pytest.raises(
        ConfigError, match=r"leaf 'output/bias': source \(5,\), target \(3,\)"
    ) as err:
        transfer_run.run_transfer(config, out_dir="/nonexistent/never")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source_op": "*"}, "source_op"),  # not read for mnist1d
        ({"dataset": "digits", "source_seed": 1}, "source_seed"),
        ({"dataset": "cifar10"}, "dataset"),
        ({"variants": ("transfer", "imp")}, "variants"),
        ({"target_seed": 42}, "target_classes"),  # the same task twice (mnist1d)
        ({"dataset": "modular", "target_op": "+"}, "target_op"),
        ({"source_classes": (3,)}, "source_classes"),
    ],
)
def test_config_refuses(changes, field):
    with pytest.raises(ConfigError) as err:
        TransferConfig(**changes)
    assert err.value.field == field


def _refuse(*args, **kwargs):
    raise AssertionError("trained although it should not")


# MNIST-1D -> re-seeded MNIST-1D: both tasks have the same data shapes, so the source and
# target dense runs share one compiled program.
CONFIG = TransferConfig(
    dataset="mnist1d",
    model="mlp",
    hidden=(16,),
    sparsities=(0.5,),
    steps=30,
    eval_every=10,
    batch_size=32,
    val_size=100,
    seeds=2,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer")
    calls = []
    real = transfer_run.train_seeds

    def spy(model, data, optimizer, **kwargs):
        calls.append((data, kwargs))
        return real(model, data, optimizer, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transfer_run, "train_seeds", spy)
        store, records = transfer_run.run_transfer(CONFIG, out_dir=str(out))
    return out, store, records, calls


def test_source_mask_is_the_source_networks_magnitude_ticket(tiny_run):
    _, store, _, calls = tiny_run
    arrays = store.load_level(0)[0]
    source = {
        k.removeprefix("source/"): np.asarray(v)
        for k, v in arrays.items()
        if k.startswith("source/")
    }
    data, kwargs = calls[-1]
    target = data_lib.load("mnist1d", seed=CONFIG.target_seed)
    np.testing.assert_array_equal(np.asarray(data.y_test), np.asarray(target.y_test))
    mask = flatten_tree(kwargs["mask"])
    n, j = CONFIG.seeds, CONFIG.variants.index("transfer")
    total = sum(int(np.prod(m.shape[1:])) for m in mask.values())
    for s in range(n):
        alive = sum(int(m[j * n + s].sum()) for m in mask.values())
        assert alive == total - math.floor(0.5 * total + 0.5)
        scores = np.concatenate([np.abs(source[p][s]).ravel() for p in sorted(mask)])
        keep = np.zeros(scores.size, bool)
        keep[np.argsort(-scores, kind="stable")[:alive]] = True
        got = np.concatenate([mask[p][j * n + s].ravel() for p in sorted(mask)])
        np.testing.assert_array_equal(got, keep)


def test_controls_keep_per_layer_counts(tiny_run):
    _, _, _, calls = tiny_run
    _, kwargs = calls[-1]
    mask, params = flatten_tree(kwargs["mask"]), flatten_tree(kwargs["params"])
    n, names = CONFIG.seeds, CONFIG.variants
    t = names.index("transfer")
    for control in ("shuffle", "reinit"):
        c = names.index(control)
        for s in range(n):
            for p in mask:
                assert mask[p][c * n + s].sum() == mask[p][t * n + s].sum()
    r = names.index("reinit")
    for s in range(n):  # reinit: the same mask, a different init
        np.testing.assert_array_equal(
            mask["dense1/kernel"][r * n + s], mask["dense1/kernel"][t * n + s]
        )
        assert not np.array_equal(
            params["dense1/kernel"][r * n + s], params["dense1/kernel"][t * n + s]
        )
    sh = names.index("shuffle")
    assert not np.array_equal(mask["dense1/kernel"][sh * n], mask["dense1/kernel"][t * n])


def test_records_and_table(tiny_run):
    _, _, records, calls = tiny_run
    tests = [np.asarray(c[0].x_test) for c in calls[:2]]
    for data, seed in zip(tests, (CONFIG.source_seed, CONFIG.target_seed), strict=True):
        np.testing.assert_array_equal(data, np.asarray(data_lib.load("mnist1d", seed=seed).x_test))
    variants = [r["variant"] for r in records[:: CONFIG.seeds]]
    assert variants == ["source_dense", "target_dense", *CONFIG.variants]
    sparse = [r for r in records if r["phase"] == 1]
    assert all(0 <= r["overlap"] <= 1 for r in sparse)
    assert "transfer" in format_table(summarize(records))


def test_rerun_trains_nothing(tiny_run, monkeypatch):
    out, store, records, _ = tiny_run
    monkeypatch.setattr(transfer_run, "train_seeds", _refuse)
    store2, again = transfer_run.run_transfer(CONFIG, out_dir=str(out))
    assert store2.run_dir == store.run_dir
    assert [r["test_accuracy_final"] for r in again] == [r["test_accuracy_final"] for r in records]


def test_plot_draws(tiny_run, tmp_path):
    from jaxticket.transfer.plots import save_plots

    _, _, records, _ = tiny_run
    assert save_plots(records, tmp_path).stat().st_size > 0
