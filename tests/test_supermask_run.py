"""The supermask workflow end to end (jaxticket.supermask.run) on a tiny MNIST-1D MLP:
the jackpot search starts at the trained network's magnitude mask (its step-0 accuracy is
that of a NumPy forward pass of the magnitude-pruned dense weights), keeps k of every layer
(counted in the stored masks) and its steps-to-scratch comes from the recorded histories;
HideNseek keeps the SynFlow mask's count and its pruned scores at 0 (slow); a rerun
loads every phase; bad config values are one ConfigError naming the field."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxticket.supermask import SupermaskConfig, format_table, run_supermask, summarize
from jaxticket.supermask import run as run_lib
from jaxticket.workflow.config import ConfigError

# MLP 40 -> 16 -> 10: scored kernels of 640 and 160 weights.
TINY = dict(model="mlp", hidden=(16,), seeds=2, steps=20, eval_every=10, val_size=200)
SIZES = {"dense1/kernel": 640, "output/kernel": 160}
K = 0.5


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("supermask-runs")
    jackpot = run_supermask(SupermaskConfig(variant="jackpot", ks=(K,), **TINY), out_dir=out)
    return {"out": out, "jackpot": jackpot}


@pytest.fixture(scope="module")
def hidenseek(tmp_path_factory):
    # Two more compiled programs (SynFlow, the sign search): only for the slow test.
    out = tmp_path_factory.mktemp("supermask-hidenseek")
    return run_supermask(SupermaskConfig(variant="hidenseek", ks=(K,), **TINY), out_dir=out)


def stored(store, phase: int, prefix: str) -> dict[str, np.ndarray]:
    arrays, _ = store.load_level(phase)
    return {
        k.removeprefix(prefix + "/"): np.asarray(v)
        for k, v in arrays.items()
        if k.startswith(prefix + "/")
    }


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The MLP in NumPy: relu(x W1 + b1) W2 + b2."""
    x = x.reshape(len(x), -1)
    h = np.maximum(x @ params["dense1/kernel"] + params["dense1/bias"], 0.0)
    return h @ params["output/kernel"] + params["output/bias"]


def test_jackpot_starts_at_the_magnitude_mask(runs):
    store, records = runs["jackpot"]
    dense = stored(store, 1, "dense")
    data = run_lib.SupermaskTrainer(SupermaskConfig(variant="jackpot", ks=(K,), **TINY)).data
    x, y = np.asarray(data.x_test), np.asarray(data.y_test)
    for r in [r for r in records if r["variant"] == "jackpot"]:
        s = r["seed"]
        pruned = {}
        for path, w in dense.items():
            w = w[s]
            if path in SIZES:  # keep the floor(k·n + 1/2) largest |w|: no ties in floats
                keep = math.floor(K * w.size + 0.5)
                cut = np.sort(np.abs(w).ravel())[-keep]
                w = np.where(np.abs(w) >= cut, w, 0.0)
            pruned[path] = w
        acc = float(np.mean(forward(pruned, x).argmax(-1) == y))
        assert r["start_accuracy"] == pytest.approx(acc, abs=1e-6)


def test_every_layer_keeps_k(runs):
    store, records = runs["jackpot"]
    masks = stored(store, 1, "masks")
    for path, n in SIZES.items():  # per layer, for both runs of both seeds
        counts = masks[path].reshape(masks[path].shape[0], -1).sum(1)
        assert counts.tolist() == [math.floor(K * n + 0.5)] * 4
    for r in records:
        assert r["remaining"] == pytest.approx(K if r["variant"] != "dense" else 1.0)


def test_steps_to_scratch_from_the_histories(runs):
    _, records = runs["jackpot"]
    for r in [r for r in records if r["variant"] == "jackpot"]:
        (scratch,) = [q for q in records if q["variant"] == "scratch" and q["seed"] == r["seed"]]
        target = scratch["test_accuracy_final"]
        h = r["history"]
        first = next(
            (t for t, a in zip(h["step"], h["test_accuracy"], strict=True) if a >= target), None
        )
        assert r["steps_to_scratch"] == first
    table = format_table(summarize(records))
    assert "jackpot" in table and "scratch" in table and "dense" in table


@pytest.mark.slow
def test_hidenseek_keeps_its_synflow_mask(hidenseek):
    store, records = hidenseek
    scores, masks = stored(store, 1, "scores"), stored(store, 1, "masks")
    total = sum(masks[p].reshape(2, -1).sum(1) for p in SIZES)
    assert total.tolist() == [400, 400]  # SynFlow allocates globally: k of all 800
    for path in SIZES:
        assert np.all(scores[path][~masks[path]] == 0)  # zero_pruned keeps them at 0
    for r in records:
        if r["variant"] == "hidenseek":
            assert 0.0 <= r["flipped"] <= 1.0 and r["remaining"] == pytest.approx(K)


def test_rerun_loads_every_phase(runs):
    lines = []
    config = SupermaskConfig(variant="jackpot", ks=(K,), **TINY)
    _, again = run_supermask(config, out_dir=runs["out"], log=lines.append)
    assert lines[1:] == ["phase 0: finished earlier, loaded", "phase 1: finished earlier, loaded"]
    assert again == runs["jackpot"][1]


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"ks": (0.0,)}, "ks"),
        ({"ks": (1.5,)}, "ks"),
        ({"ks": ()}, "ks"),
        ({"ks": (0.5, 0.5)}, "ks"),
        ({"variant": "popup"}, "variant"),
        ({"variant": "jackpot", "weight_init": "init"}, "weight_init"),
        ({"saliency": "snip"}, "saliency"),
        ({"weight_init": "kaiming"}, "weight_init"),
        ({"hidden": (8,), "model": "lenet_300_100"}, "hidden"),
    ],
)
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(ConfigError) as err:
        SupermaskConfig(**changes)
    assert err.value.field == field
    assert "\n" not in str(err.value)


def test_run_killed_after_the_dense_phase_resumes_from_its_checkpoint(runs, tmp_path, monkeypatch):
    # The jackpot phase then searches the dense weights unpacked from the store: the same
    # records as the uninterrupted run (every program is cached from the fixture's run).
    config = SupermaskConfig(variant="jackpot", ks=(K,), **TINY)
    real = run_lib.SupermaskTrainer.run_phase

    def killed_after_phase_0(self, phase, state, show_progress):
        if phase == 1:
            raise KeyboardInterrupt
        return real(self, phase, state, show_progress)

    with monkeypatch.context() as mp:
        mp.setattr(run_lib.SupermaskTrainer, "run_phase", killed_after_phase_0)
        with pytest.raises(KeyboardInterrupt):
            run_supermask(config, out_dir=tmp_path)
    lines = []
    _, records = run_supermask(config, out_dir=tmp_path, log=lines.append)
    assert lines[1:] == ["phase 0: finished earlier, loaded", "phase 1: training"]
    assert records == runs["jackpot"][1]
