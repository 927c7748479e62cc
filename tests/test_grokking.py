"""The grokking-tickets workflow: its metrics on hand-made histories, and one tiny run
(p = 7, a few dozen steps) checked against NumPy references: the ticket's mask has exactly
the global sparsity and starts from the init, the norm control has the ticket's norm, the
memorization step is read off the recorded history, and a rerun trains nothing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxticket.grokking import run as grok_run
from jaxticket.grokking.config import GrokkingConfig
from jaxticket.grokking.metrics import (
    lp_norm,
    memorization_index,
    norm_matched,
    steps_to_accuracy,
)
from jaxticket.grokking.report import format_table, summarize
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.store_tree import flatten_tree

# --- metrics on hand-made histories ---------------------------------------------------


@pytest.mark.parametrize(
    ("accuracy", "expected"),
    [
        ([0.1, 0.5, 0.95, 0.2, 0.99], 200),  # first reach counts, a later drop does not
        ([0.1, 0.949999, 0.9, 0.5, 0.3], None),  # never reached
        ([0.96, 0.1, 0.1, 0.1, 0.1], 0),  # already at step 0
        ([math.nan, 0.2, 0.3, 0.97, 1.0], 300),  # NaN never counts
        ([0.1, 0.2, 0.3, 0.4, 0.950001], 400),
    ],
)
def test_steps_to_accuracy_exact(accuracy, expected):
    history = {"step": [0, 100, 200, 300, 400], "test_accuracy": accuracy}
    assert steps_to_accuracy(history, 0.95) == expected


def test_steps_to_accuracy_uneven_steps_and_other_key():
    history = {"step": [0, 7, 19], "test_accuracy": [0, 0, 0], "train_accuracy": [0.5, 1, 1]}
    assert steps_to_accuracy(history, 0.99, "train_accuracy") == 7


def test_steps_to_accuracy_bad_history():
    with pytest.raises(ValueError, match="lacks"):
        steps_to_accuracy({"step": [0]}, 0.95)
    with pytest.raises(ValueError, match="differ in length"):
        steps_to_accuracy({"step": [0, 1], "test_accuracy": [0.1]}, 0.95)


def test_memorization_index_every_seed():
    acc = [[0.5, 0.99, 1.0, 1.0], [0.2, 0.9, 0.995, 1.0]]
    assert memorization_index(acc, 0.99) == 2
    assert memorization_index(acc, 1.0) == 3
    assert memorization_index([[0.1, 0.2]], 0.99) is None


def test_norm_matched_matches_numpy():
    rng = np.random.default_rng(0)
    params = {"a": {"kernel": rng.normal(size=(2, 3, 4))}, "b": {"bias": rng.normal(size=(2, 4))}}
    dense = {"a": {"kernel": np.ones((2, 3, 4), bool)}, "b": {"bias": None}}
    ticket = {"a": {"kernel": rng.random((2, 3, 4)) < 0.5}, "b": {"bias": None}}
    for order in (1, 2):
        out = norm_matched(params, dense, ticket, order)
        for s in range(2):
            want = np.sum(np.abs(params["a"]["kernel"][s] * ticket["a"]["kernel"][s]) ** order)
            got = np.sum(np.abs(out["a"]["kernel"][s]) ** order)
            np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_array_equal(out["b"]["bias"], params["b"]["bias"])  # never scaled
        np.testing.assert_allclose(lp_norm(out, dense, order), lp_norm(params, ticket, order))


# --- config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dataset": "digits"}, "dataset"),
        ({"variants": ("grokking_ticket", "lottery")}, "variants"),
        ({"variants": ()}, "variants"),
        ({"sparsity": 1.0}, "sparsity"),
        ({"threshold": 0.0}, "threshold"),
        ({"batch_size": -1}, "batch_size"),
        ({"model": "transformer1", "hidden": (8,)}, "hidden"),
        ({"variants": ("grokking_ticket",), "synflow_rounds": 5}, "synflow_rounds"),
        ({"op": "%"}, "op"),
        ({"val_size": 10}, "val_size"),
    ],
)
def test_config_refuses(changes, field):
    with pytest.raises(ConfigError) as err:
        GrokkingConfig(**changes)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_defaults_are_the_paper_setting():
    c = GrokkingConfig()
    assert (c.p, c.op, c.train_fraction, c.sparsity, c.threshold) == (67, "+", 0.4, 0.4, 0.95)
    assert (c.optimizer, c.learning_rate, c.weight_decay, c.batch_size) == ("adamw", 1e-3, 1, 0)


# --- one tiny run, shared --------------------------------------------------------------

CONFIG = GrokkingConfig(
    p=7,
    dim=8,
    hidden=(16,),
    train_fraction=0.6,
    steps=40,
    eval_every=10,
    seeds=2,
    learning_rate=1e-2,
    memorized=0.3,
    variants=("grokking_ticket", "memorization_ticket", "dense_l2", "dense_l1"),
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("grok")
    calls = []
    real = grok_run.train_seeds

    def spy(model, data, optimizer, **kwargs):
        calls.append(kwargs)
        return real(model, data, optimizer, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(grok_run, "train_seeds", spy)
        store, records = grok_run.run_grokking(CONFIG, out_dir=str(out))
    return out, store, records, calls


def _init(trainer):
    params, _ = trainer.init()
    return flatten_tree(params)


def test_ticket_mask_has_exact_global_sparsity_and_is_magnitude(tiny_run):
    _, store, _, calls = tiny_run
    trainer = grok_run.GrokkingTrainer(CONFIG)
    arrays = store.load_level(0)[0]
    trained = {k: np.asarray(v) for k, v in arrays.items() if k.startswith("trained/")}
    variants = CONFIG.variants
    phase1 = calls[-1]
    mask = flatten_tree(phase1["mask"])
    j = variants.index("grokking_ticket")
    total = sum(int(np.prod(m.shape[1:])) for m in mask.values())
    for s in range(CONFIG.seeds):
        row = j * CONFIG.seeds + s
        alive = sum(int(m[row].sum()) for m in mask.values())
        assert alive == total - math.floor(0.4 * total + 0.5)
        # NumPy reference: one global threshold on |trained weight|, prunable leaves only.
        scores = np.concatenate([np.abs(trained[f"trained/{p}"][s]).ravel() for p in sorted(mask)])
        keep = np.zeros(scores.size, bool)
        keep[np.argsort(-scores, kind="stable")[:alive]] = True
        got = np.concatenate([mask[p][row].ravel() for p in sorted(mask)])
        np.testing.assert_array_equal(got, keep)
    # Rewound to the init: the ticket starts from the same params as the dense run.
    start = flatten_tree(phase1["params"])
    init = _init(trainer)
    for path, value in init.items():
        for s in range(CONFIG.seeds):
            np.testing.assert_array_equal(start[path][j * CONFIG.seeds + s], value[s])


def test_norm_controls_have_the_tickets_norm(tiny_run):
    _, _, _, calls = tiny_run
    phase1 = calls[-1]
    params, mask = flatten_tree(phase1["params"]), flatten_tree(phase1["mask"])
    n, variants = CONFIG.seeds, CONFIG.variants
    j_ticket = variants.index("grokking_ticket")
    for name, order in (("dense_l2", 2), ("dense_l1", 1)):
        j = variants.index(name)
        for s in range(n):
            ticket = sum(
                np.sum(np.abs(params[p][j_ticket * n + s] * mask[p][j_ticket * n + s]) ** order)
                for p in mask
            )
            control = sum(np.sum(np.abs(params[p][j * n + s]) ** order) for p in mask)
            assert all(mask[p][j * n + s].all() for p in mask)  # trained dense
            np.testing.assert_allclose(control, ticket, rtol=1e-5)


def test_memorization_step_read_off_the_history(tiny_run):
    _, _, records, calls = tiny_run
    dense = [r for r in records if r["variant"] == "dense"]
    acc = np.array([r["history"]["train_accuracy"] for r in dense])
    steps = dense[0]["history"]["step"]
    want = next(steps[i] for i in range(acc.shape[1]) if (acc[:, i] >= CONFIG.memorized).all())
    assert {r["memorization_step"] for r in records} == {want}
    # The memorization weights come from a retrain of exactly that many steps.
    assert [c["steps"] for c in calls] == [CONFIG.steps, want, CONFIG.steps][: len(calls)]
    for r in records:
        assert r["steps_to_threshold"] == steps_to_accuracy(r["history"], CONFIG.threshold)


def test_one_program_per_phase_and_records(tiny_run):
    _, _, records, calls = tiny_run
    n = CONFIG.seeds
    assert calls[-1]["data_keys"].shape[0] == n * len(CONFIG.variants)
    assert calls[-1]["mask_per_seed"]
    assert [r["variant"] for r in records[::n]] == ["dense", *CONFIG.variants]
    table = format_table(summarize(records))
    assert "grokking_ticket" in table and "reached" in table


def test_rerun_trains_nothing(tiny_run, monkeypatch):
    out, store, records, _ = tiny_run

    def refuse(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr(grok_run, "train_seeds", refuse)
    store2, again = grok_run.run_grokking(CONFIG, out_dir=str(out))
    assert store2.run_dir == store.run_dir
    assert [r["steps_to_threshold"] for r in again] == [r["steps_to_threshold"] for r in records]


def test_plots_draw(tiny_run, tmp_path):
    from jaxticket.grokking.plots import save_plots

    _, _, records, _ = tiny_run
    test, train = save_plots(records, tmp_path, CONFIG.threshold)
    assert test.stat().st_size > 0 and train.stat().st_size > 0
