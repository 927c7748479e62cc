"""The instability analysis workflow (``jaxticket.stability.run``) and its command.

One tiny module-scoped run (mlp on digits, 2 seeds, 30 steps, rewind steps 0 and 10, 2
copies, 5 α, weight matching) is checked against hand-worked values; a tiny lottery run
gives the ticket case.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io

import jax
import numpy as np
import pytest

from jaxticket import data as data_lib
from jaxticket import models
from jaxticket.masks import dense_mask
from jaxticket.stability import command, run
from jaxticket.stability.config import StabilityConfig
from jaxticket.stability.run import run_stability, sweep_keys, within_parent_pairs
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.store import RunStore, flatten_tree

TINY = dict(
    model="mlp", dataset="digits", seeds=2, steps=30, eval_every=15, val_size=200, batch_size=60
)
CONFIG = StabilityConfig(rewind_steps=(0, 10), copies=2, alphas=5, match=True, **TINY)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("stability")
    store, records = run_stability(CONFIG, out_dir=str(out))
    return out, store, records


def sweep(records, k=None):
    return [r for r in records if "barrier" in r and (k is None or r["rewind_step"] == k)]


def test_pairs_are_copies_of_one_parent(finished):
    _, _, records = finished
    for k in (0, 10):
        rows = sweep(records, k)
        assert [(r["seed"], r["copies"]) for r in rows] == [(0, [0, 1]), (1, [0, 1])]
    # Parent-major stack of children: by hand for 3 parents x 3 copies.
    expected = [[0, 1], [0, 2], [1, 2], [3, 4], [3, 5], [4, 5], [6, 7], [6, 8], [7, 8]]
    assert within_parent_pairs(3, 3).tolist() == expected


def test_copy_data_keys_are_their_own_streams():
    c = StabilityConfig(**{**TINY, "seeds": 3, "seed": 7})
    keys = jax.random.key_data(sweep_keys(c))
    for s in range(3):
        for a in range(2):
            by_hand = jax.random.fold_in(jax.random.fold_in(jax.random.key(7), 3 + a), s)
            assert np.array_equal(keys[s * 2 + a], jax.random.key_data(by_hand))
    assert len({tuple(k) for k in np.asarray(keys).tolist()}) == 6


def test_barrier_is_max_minus_mean_of_ends(finished):
    _, store, records = finished
    for r in sweep(records):
        e = r["errors"]
        assert len(e) == len(r["alphas"]) == 5 and r["alphas"][0] == 0 and r["alphas"][-1] == 1
        assert r["barrier"] == pytest.approx(max(e) - (e[0] + e[-1]) / 2, abs=1e-6)
        assert r["end_errors"] == [e[0], e[-1]]
        # The path's ends are the copies: their test error is the training's last evaluation.
        ends = [1 - a for a in r["copy_test_accuracy"]]
        assert r["end_errors"] == pytest.approx(ends, abs=1e-6)
        assert r["batchnorm_recomputed"] is False  # the mlp has no BatchNorm
    for phase, k in ((1, 0), (2, 10)):
        arrays, _ = store.load_level(phase)
        stored = [r["errors"] for r in sweep(records, k)]
        np.testing.assert_allclose(arrays["errors"], stored, rtol=0, atol=1e-7)


def test_snapshot_at_zero_is_the_init(finished):
    _, store, _ = finished
    arrays, parents = store.load_level(0)
    data = data_lib.load("digits")
    model = models.get("mlp", input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    for s in range(2):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 0), s)
        init = flatten_tree(model.init(key)[0])
        for name, leaf in init.items():
            np.testing.assert_allclose(arrays[f"theta0/params/{name}"][s], leaf, rtol=0, atol=1e-7)
        moved = [not np.allclose(arrays[f"theta1/params/{n}"][s], v) for n, v in init.items()]
        assert any(moved)  # θ_10 has trained
    assert [r["variant"] for r in parents] == ["parent", "parent"]


def test_weight_matching_keeps_ends_and_lowers_the_barrier(finished):
    _, _, records = finished
    (m,) = [r for r in records if r["variant"] == "match"]
    assert (m["seed"], m["other_seed"]) == (0, 1)
    # Permuting the second network does not change its function: same end errors.
    assert m["end_errors_after"] == pytest.approx(m["end_errors_before"], abs=1e-6)
    parents = [r for r in records if r["variant"] == "parent"]
    ends = [1 - p["test_accuracy_final"] for p in parents]
    assert m["end_errors_before"] == pytest.approx(ends, abs=1e-6)
    for key in ("before", "after"):
        e = m[f"errors_{key}"]
        assert m[f"barrier_{key}"] == pytest.approx(max(e) - (e[0] + e[-1]) / 2, abs=1e-6)


def test_rerun_loads_every_phase(finished):
    out, _, records = finished
    lines = []
    _, again = run_stability(CONFIG, out_dir=str(out), log=lines.append)
    assert again == records
    assert sum("finished earlier, loaded" in line for line in lines) == 4


def tiny_lottery_run(root) -> RunStore:
    """A lottery run directory as run_lottery stores one (level 0 dense, level 1 a ticket
    mask per seed: random, about half the weights of each layer kept)."""
    data = data_lib.load("digits")
    model = models.get("mlp", input_shape=tuple(data.input_shape), num_classes=data.num_classes)
    template = flatten_tree(dense_mask(jax.eval_shape(model.init, jax.random.key(0))[0]))
    rng = np.random.default_rng(0)
    config = {**CONFIG.training_settings(), "levels": 1, "rewind": 0}
    store = RunStore.open(root, config, name="lottery-mlp-digits")
    dense = {f"mask/{p}": np.ones((2, *m.shape), bool) for p, m in template.items()}
    store.save_level(0, dense, [])
    ticket = {k: rng.random(v.shape) < 0.5 for k, v in dense.items()}
    store.save_level(1, ticket, [])
    return store


def test_ticket_copies_keep_pruned_weights_zero(finished, tmp_path, monkeypatch):
    lottery = tiny_lottery_run(tmp_path / "lottery")
    trained = []
    original = run.train_seeds

    def spy(*args, **kwargs):  # what the workflow trains: the mask given and the result
        result = original(*args, **kwargs)
        trained.append((kwargs.get("mask"), result))
        return result

    monkeypatch.setattr(run, "train_seeds", spy)
    # The dense run's training settings: the same compiled programs.
    config = dataclasses.replace(CONFIG, match=False, lottery_run=str(lottery.run_dir))
    out, records = run_stability(config, out_dir=str(tmp_path / "out"))
    stored = lottery.load_level(1)[0]
    mask = {k.removeprefix("mask/"): v for k, v in stored.items()}
    assert len(trained) == 3  # the dense parents, then the copies at k = 0 and k = 10
    for mask_given, children in trained[1:]:
        given = flatten_tree(mask_given)
        for path, m in mask.items():
            assert np.array_equal(given[path], np.repeat(m, 2, axis=0))  # parent s: 2s, 2s+1
        for path, leaf in flatten_tree(children.params).items():
            if path in mask:
                pruned = ~np.repeat(mask[path], 2, axis=0)
                assert pruned.any() and np.all(np.asarray(leaf)[pruned] == 0)
    theta = out.load_level(0)[0]
    for i in (0, 1):
        for path, m in mask.items():
            assert np.all(theta[f"theta{i}/params/{path}"][~m] == 0)  # θ_k: masked snapshot
            assert np.any(theta[f"theta{i}/params/{path}"][m] != 0)
    rows = sweep(records)
    assert [(r["variant"], r["mask_rewind"]) for r in rows] == [("ticket", 0)] * 4
    for r in rows:
        s = r["seed"]
        alive = sum(int(m[s].sum()) for m in mask.values())
        assert r["remaining"] == pytest.approx(alive / sum(m[s].size for m in mask.values()))


@pytest.mark.parametrize(
    "changes, field",
    [
        (dict(rewind_steps=(30,)), "rewind_steps"),
        (dict(rewind_steps=(10, 0)), "rewind_steps"),
        (dict(rewind_steps=(10, 10)), "rewind_steps"),
        (dict(rewind_steps=()), "rewind_steps"),
        (dict(copies=1), "copies"),
        (dict(alphas=1), "alphas"),
        (dict(level=2), "level"),
        (dict(level=-2, lottery_run="x"), "level"),
        (dict(match=True, seeds=1), "match"),
        (dict(match=True, lottery_run="x"), "match"),
    ],
)
def test_bad_settings_name_the_field(changes, field):
    with pytest.raises(ConfigError) as err:
        StabilityConfig(**{**TINY, "rewind_steps": (0,), **changes})
    assert err.value.field == field and "\n" not in str(err.value)


def test_bad_lottery_run_is_refused_before_training(tmp_path):
    config = StabilityConfig(lottery_run=str(tmp_path / "missing"), **TINY)
    with pytest.raises(ConfigError, match="not a run directory") as err:
        run_stability(config, out_dir=str(tmp_path))
    assert err.value.field == "lottery_run"
    lottery = tiny_lottery_run(tmp_path / "lottery")
    other = dataclasses.replace(CONFIG, match=False, lottery_run=str(lottery.run_dir), seed=1)
    with pytest.raises(ConfigError, match="trained with seed=0") as err:
        run_stability(other, out_dir=str(tmp_path))
    assert err.value.field == "lottery_run"
    with pytest.raises(ConfigError, match="lottery_run holds 2 masks") as err:
        run_stability(dataclasses.replace(other, seed=0, seeds=3), out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match="no finished level 4") as err:
        run_stability(dataclasses.replace(other, seed=0, level=4), out_dir=str(tmp_path))
    assert err.value.field == "level"
    with pytest.raises(ConfigError, match="cannot be weight-matched") as err:
        run_stability(StabilityConfig(**{**TINY, "model": "resnet20"}, match=True), out_dir="x")


def test_command_prints_tables_and_writes_plots(finished):
    out, store, _ = finished
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    flags = "--model mlp --dataset digits --seeds 2 --steps 30 --eval-every 15 --val-size 200"
    flags += " --batch-size 60 --rewind-steps 0,10 --copies 2 --alphas 5 --match --quiet"
    args = parser.parse_args([*flags.split(), "--out", str(out)])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert command.run_command(args) == 0
    text = printed.getvalue()
    assert "barrier %" in text and "stable" in text and "weight matching" in text
    assert str(store.run_dir) in text  # the same run: it only loaded
    for name in ("error_vs_alpha.png", "instability_vs_rewind.png"):
        assert (store.run_dir / name).stat().st_size > 1000
