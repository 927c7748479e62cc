"""The sparse-training workflow end to end (jaxticket.sparse_train) on a tiny MNIST-1D MLP:
every method through run_sparse_training hits its target sparsity exactly (counted in the
stored masks, against counts worked by hand), runs the number of mask updates its
schedule implies, keeps pruned weights at 0; GMP's sparsity over training follows the
Zhu-Gupta formula; a rerun loads every phase and a run killed after phase 0 trains only
the rest. Each method trains once per module (one compiled program each)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from jaxticket import sparse
from jaxticket.sparse_train import SparseTrainConfig, build_method, run_sparse_training
from jaxticket.sparse_train import run as run_lib
from jaxticket.sparse_train.config import used_fields
from jaxticket.sparse_train.report import format_table, summarize

# MLP 40 -> 16 -> 10: prunable kernels of 640 and 160 weights (800 in all).
TINY = dict(model="mlp", hidden=(16,), seeds=2, steps=40, eval_every=20, val_size=200)
SIZES = {"dense1/kernel": 640, "output/kernel": 160}
DYNAMIC = ("gmp", "set", "rigl", "granet")
# Updates of a 40-step run with every=10: SET/RigL at t < 0.75·40 = 30 from step 10 on
# (10, 20); GMP/GraNet from step 0 to floor(0.75·40) = 30 (0, 10, 20, 30).
UPDATES = {"gmp": 4, "set": 2, "rigl": 2, "granet": 4, "static": 0}


def config(method: str, sparsities=(0.9,), **kw) -> SparseTrainConfig:
    every = {} if method == "static" else {"every": 10}
    return SparseTrainConfig(method=method, sparsities=sparsities, **TINY, **every, **kw)


class CountingTrain:
    """``train_seeds`` that counts its calls."""

    def __init__(self):
        self.calls = 0
        self.inner = run_lib.train_seeds

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each dynamic method at 90 % once, and static at 90 % and 95 % run as: killed after
    phase 0, then rerun (counting the training calls of the rerun)."""
    out = tmp_path_factory.mktemp("sparse-runs")
    done = {m: run_sparse_training(config(m), out_dir=out) for m in DYNAMIC}
    static = config("static", sparsities=(0.9, 0.95))
    real = run_lib.SparseTrainer.run_phase

    def killed_after_phase_0(self, phase, state, show_progress):
        if phase == 1:
            raise KeyboardInterrupt
        return real(self, phase, state, show_progress)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(run_lib.SparseTrainer, "run_phase", killed_after_phase_0)
        with pytest.raises(KeyboardInterrupt):
            run_sparse_training(static, out_dir=out)
    with pytest.MonkeyPatch.context() as mp:
        counter = CountingTrain()
        mp.setattr(run_lib, "train_seeds", counter)
        lines = []
        done["static"] = run_sparse_training(static, out_dir=out, log=lines.append)
    return {"runs": done, "out": out, "static_rerun": (counter.calls, lines)}


def stored_masks(store, phase: int) -> dict[str, np.ndarray]:
    arrays, _ = store.load_level(phase)
    return {
        k.removeprefix("mask/"): np.asarray(v) for k, v in arrays.items() if k.startswith("mask/")
    }


@pytest.mark.parametrize("method", [*DYNAMIC, "static"])
def test_each_method_ends_at_its_target_exactly(runs, method):
    store, records = runs["runs"][method]
    chosen = [r for r in records if r["sparsity"] == 0.9]
    assert [r["seed"] for r in chosen] == [0, 1]
    masks = stored_masks(store, 0)
    assert {k: v.shape[1:] for k, v in masks.items()} == {
        "dense1/kernel": (40, 16),
        "output/kernel": (16, 10),
    }
    # GMP layerwise: floor(0.9·n + 1/2) per layer (576 + 144); the random starts and
    # GraNet's global pruning: round(0.9·800) = 720 in all. Both are 720 here.
    expected = sum(math.floor(0.9 * n + 0.5) for n in SIZES.values())
    assert expected == 720
    for s, r in enumerate(chosen):
        pruned = sum(int((~m[s]).sum()) for m in masks.values())
        assert pruned == r["pruned"] == expected
        assert r["prunable"] == 800 and r["final_sparsity"] == 720 / 800
        assert r["mask_updates"] == UPDATES[method]
        assert r["history"]["sparsity"][-1] == pytest.approx(0.9, abs=1e-6)
        assert not r["collapsed"] and not r["diverged"]
    if method == "gmp":  # layerwise: every layer at 90 %
        assert chosen[0]["layer_remaining"] == pytest.approx({p: 0.1 for p in SIZES})
    if method in ("set", "rigl", "granet"):
        assert all(r["grown"] > 0 for r in chosen)


@pytest.mark.parametrize("method", [*DYNAMIC, "static"])
def test_pruned_weights_are_zero_in_the_stored_params(runs, method):
    store, _ = runs["runs"][method]
    arrays, _ = store.load_level(0)
    for path, m in stored_masks(store, 0).items():
        assert np.all(np.asarray(arrays[f"params/{path}"])[~m] == 0)


def test_gmp_sparsity_over_training_follows_zhu_gupta(runs):
    # Evaluations at steps 0, 20, 40 (after the update at the same step). Zhu-Gupta from
    # 0 to 0.9 over t0 = 0, n·Δt = 30: s_20 = 0.9·(1 − (1 − 20/30)³) = 0.866667 (to 1e-6),
    # per layer floor(s·n + 1/2): 555 of 640 and 139 of 160.
    _, records = runs["runs"]["gmp"]
    s20 = round(0.9 * (1 - (1 - 20 / 30) ** 3), 6)
    pruned20 = sum(math.floor(s20 * n + 0.5) for n in SIZES.values())
    assert pruned20 == 555 + 139
    for r in records:
        assert r["history"]["step"] == [0, 20, 40]
        assert r["history"]["sparsity"] == pytest.approx([0.0, pruned20 / 800, 0.9], abs=1e-6)


def test_rerun_loads_every_phase(runs, monkeypatch):
    _, first = runs["runs"]["rigl"]
    counter = CountingTrain()
    monkeypatch.setattr(run_lib, "train_seeds", counter)
    lines = []
    _, again = run_sparse_training(config("rigl"), out_dir=runs["out"], log=lines.append)
    assert counter.calls == 0
    assert lines[1:] == ["phase 0: finished earlier, loaded"]
    assert again == first


def test_run_killed_after_phase_0_trains_only_the_rest(runs):
    calls, lines = runs["static_rerun"]
    assert calls == 1
    assert lines[1:] == ["phase 0: finished earlier, loaded", "phase 1: training"]
    _, records = runs["runs"]["static"]
    assert [(r["sparsity"], r["phase"], r["seed"]) for r in records] == [
        (0.9, 0, 0),
        (0.9, 0, 1),
        (0.95, 1, 0),
        (0.95, 1, 1),
    ]
    assert [r["pruned"] for r in records] == [720, 720, 760, 760]


def test_table_has_one_row_per_target(runs):
    _, records = runs["runs"]["static"]
    lines = format_table(summarize(records)).splitlines()
    assert len(lines) == 4
    header = lines[0].split()
    assert header[:3] == ["method", "target", "%"]
    rows = [line.split() for line in lines[2:]]
    assert [row[:4] for row in rows] == [
        ["static", "90", "90.00", "2"],
        ["static", "95", "95.00", "2"],
    ]
    assert all("dense1=" in line and "output=" in line for line in lines[2:])


# -- config -> method, without training ---------------------------------------------------


def test_build_method_converts_fractions_to_steps():
    c = SparseTrainConfig(method="gmp", sparsities=(0.9,), steps=1000, every=30, prune_start=0.05)
    # t0 = 30·floor(50 / 30) = 30; the last update at or before floor(0.75·1000) = 750:
    # 30 + 30·floor(720 / 30) = 750.
    assert c.schedule_span() == (30, 750)
    assert build_method(c, 0.9) == sparse.GMP(0.9, start=30, end=750, every=30)
    g = dataclasses.replace(c, method="granet", initial_sparsity=0.5, allocation="er")
    assert build_method(g, 0.9) == sparse.GraNet(
        0.9, 0.5, 30, 750, 30, zeta=0.5, initial_allocation="er"
    )
    r = SparseTrainConfig(method="rigl", sparsities=(0.8,), steps=1000, zeta=0.4)
    assert build_method(r, 0.8) == sparse.RigL(0.8, 100, 0.4, 0.75)
    s = dataclasses.replace(r, method="set")
    # Updates at t < 0.75·1000: the last allowed step is 749.
    assert build_method(s, 0.8) == sparse.SET(0.8, 100, 0.4, 749, "erk")
    assert build_method(dataclasses.replace(s, end_fraction=1.0), 0.8).end is None
    cosine = build_method(dataclasses.replace(s, set_decay="cosine"), 0.8)
    assert cosine == sparse.SET(0.8, 100, 0.4, 749, "erk", decay="cosine")
    assert build_method(SparseTrainConfig(method="dense"), 0.0) is None


def test_dense_uses_no_method_setting():
    c = SparseTrainConfig(method="dense", sparsities=(0.8, 0.9, 0.95, 0.98))
    assert used_fields(c) == set() and c.targets == (0.0,)
    one_shot = SparseTrainConfig(method="gmp", gmp_schedule="one_shot", prune_start=0.5)
    assert {"every", "prune_end", "initial_sparsity"}.isdisjoint(used_fields(one_shot))
    assert build_method(one_shot, 0.9).steps == (1500,)
