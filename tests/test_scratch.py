"""The scratch-versus-fine-tune workflow (jaxticket.scratch) end to end on a tiny digits MLP.

One run (two seeds, sparsities 50 % and 90 %) is shared by the module; its training calls
are captured, so the tests can see what each variant started from and ended with:
fine-tuning starts from the trained weights (its first evaluation matches a NumPy forward
pass of the masked trained network), scratch training from the fresh init of key stream 2;
pruned weights stay exactly 0; Scratch-B's step count matches a hand count; phase 0 is
the lottery workflow's level 0; a rerun loads every phase; bad settings are refused.
"""

from __future__ import annotations

import argparse
import json

import jax
import numpy as np
import pytest

from jaxticket import data as data_lib
from jaxticket.lottery import LotteryConfig
from jaxticket.lottery.imp import Experiment
from jaxticket.scratch import ScratchConfig, run_scratch, scratch_b_steps
from jaxticket.scratch import command as command_lib
from jaxticket.scratch import run as run_lib
from jaxticket.train.runner import init_seeds
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.training import seed_keys

# The mlp's default widths (64 -> 100 -> 100 -> 10), as the lottery workflow builds it:
# prunable kernels of 6400 + 10000 + 1000 = 17400 weights.
TINY = dict(
    model="mlp",
    dataset="digits",
    steps=40,
    eval_every=20,
    seeds=2,
    val_size=100,
    batch_size=32,
    sparsities=(0.5, 0.9),
    finetune_steps=40,
    scratch_b_cap=1.0,
)
PRUNABLE = 17400
# The shared run caps Scratch-B at the dense run's steps, so all three variants train in
# one program (each program costs seconds to compile); test_scratch_b_steps_by_hand and
# test_groups check the uncapped counts.
STEPS = {"dense": 40, "finetune": 40, "scratch_e": 40, "scratch_b": 40}
KERNELS = ("dense1/kernel", "dense2/kernel", "output/kernel")


class Capture:
    """``train_seeds`` that keeps what each call started from and returned (host)."""

    def __init__(self):
        self.calls = []
        self.inner = run_lib.train_seeds

    def __call__(self, *args, **kwargs):
        result = self.inner(*args, **kwargs)
        kept = {k: kwargs.get(k) for k in ("params", "mask", "steps")}
        self.calls.append({**jax.device_get(kept), "result": jax.device_get(result.params)})
        return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch-runs")
    config = ScratchConfig(**TINY)
    with pytest.MonkeyPatch.context() as mp:
        capture = Capture()
        mp.setattr(run_lib, "train_seeds", capture)
        store, records = run_scratch(config, out_dir=out)
    return {"config": config, "out": out, "store": store, "records": records, "calls": capture}


def by(records, **keys):
    return [r for r in records if all(r[k] == v for k, v in keys.items())]


def flat(tree) -> dict:
    return {
        f"{a}/{b}": np.asarray(v)
        for a, leaves in tree.items()
        for b, v in leaves.items()
        if v is not None
    }


def stored(store, phase: int, prefix: str) -> dict:
    arrays, _ = store.load_level(phase)
    return {
        k.removeprefix(prefix + "/"): np.asarray(v)
        for k, v in arrays.items()
        if k.startswith(prefix + "/")
    }


def test_scratch_b_steps_by_hand():
    # Leaves of 4x5 (7 alive) and 3x2 (2 alive), a bias not prunable: 26 prunable, 9 alive.
    a = np.zeros((2, 4, 5), bool)
    a[:, 0, :5] = True
    a[:, 1, :2] = True
    c = np.zeros((2, 3, 2), bool)
    c[:, 2, :] = True
    mask = {"a": a, "bias": None, "c": c}
    # 100 * 26 / 9 = 288.9 -> 289; the cap 2 allows 200.
    assert run_lib.scratch_b_steps_for(mask, 100, 4.0) == 289
    assert run_lib.scratch_b_steps_for(mask, 100, 2.0) == 200
    assert scratch_b_steps(100, 26, 26, 2.0) == 100  # dense: the same steps
    assert scratch_b_steps(3000, 17400, 1740, 2.0) == 6000
    c[1, 0, 0] = True  # seeds with different counts: refused, not averaged
    with pytest.raises(RuntimeError, match="different counts"):
        run_lib.scratch_b_steps_for(mask, 100, 2.0)


def test_records_name_variant_sparsity_phase_and_steps(run):
    records = run["records"]
    assert [(r["phase"], r["variant"]) for r in records[::2]] == [
        (0, "dense"),
        *[(p, v) for p in (1, 2) for v in ("finetune", "scratch_e", "scratch_b")],
    ]
    for r in records:
        assert r["method"] == "finetune"
        assert r["sparsity"] == {0: 0.0, 1: 0.5, 2: 0.9}[r["phase"]]
        assert r["steps_trained"] == STEPS[r["variant"]]
        assert r["history"]["step"][-1] == STEPS[r["variant"]]
        assert r["remaining"] == pytest.approx(1.0 - r["sparsity"], abs=1e-12)
    # Equal steps and optimizers train together: dense, then per phase the 3 variants x 2.
    sizes = [(c["steps"], jax.tree.leaves(c["params"])[0].shape[0]) for c in run["calls"].calls]
    assert sizes == [(40, 2), (40, 6), (40, 6)]


def test_groups(run):
    """Scratch-B's steps at 50 % and 90 % with the cap 2 (by hand: 17400 / 8700 = 2 ->
    80 steps; 17400 / 1740 = 10, capped at 2 -> 80), and which variants share a call."""
    store = run["store"]
    settings = run_lib.OptimizerSettings
    for finetune_rate, expected in (
        (1.2e-3, [["finetune", "scratch_b"], ["scratch_e"]]),
        (1e-3, [["finetune"], ["scratch_e"], ["scratch_b"]]),
    ):
        config = ScratchConfig(
            **{**TINY, "scratch_b_cap": 2.0, "finetune_steps": 80},
            finetune_learning_rate=finetune_rate,
        )
        trainer = run_lib.ScratchTrainer(config)
        for phase in (1, 2):
            groups = trainer.groups(stored(store, phase, "mask"))
            assert list(groups.values()) == expected
            steps = {v: s.steps for s, vs in groups.items() for v in vs}
            assert steps == {"finetune": 80, "scratch_e": 40, "scratch_b": 80}
            rates = {v: (s.learning_rate, s.schedule) for s, vs in groups.items() for v in vs}
            assert rates["finetune"] == (finetune_rate, "constant")
            assert rates["scratch_b"] == (1.2e-3, "constant")
            assert all(isinstance(s, settings) for s in groups)


def test_stored_masks_meet_the_target_and_keep_the_trained_weights(run):
    store = run["store"]
    trained = stored(store, 0, "trained")
    for phase, target in ((1, 0.5), (2, 0.9)):
        mask = stored(store, phase, "mask")
        assert sorted(mask) == list(KERNELS)
        for s in range(2):
            pruned = sum(int(np.sum(m[s] == 0)) for m in mask.values())
            assert pruned == round(target * PRUNABLE)
        # Global magnitude pruning: every kept |w| is at least every pruned one.
        for s in range(2):
            w = np.concatenate([np.abs(trained[k][s]).ravel() for k in KERNELS])
            m = np.concatenate([mask[k][s].ravel() for k in KERNELS])
            assert w[m].min() >= w[~m].max()
        later = stored(store, phase, "trained")
        assert all(np.array_equal(later[k], trained[k]) for k in trained)


def _numpy_accuracy(params: dict, x: np.ndarray, y: np.ndarray) -> float:
    h = x.reshape(len(x), -1).astype(np.float32)
    for name in ("dense1", "dense2"):
        h = np.maximum(h @ params[f"{name}/kernel"] + params[f"{name}/bias"], 0)
    logits = h @ params["output/kernel"] + params["output/bias"]
    return float(np.mean(np.argmax(logits, 1) == y))


def test_finetune_starts_from_the_masked_trained_weights(run):
    store, calls = run["store"], run["calls"].calls
    trained = stored(store, 0, "trained")
    data = data_lib.load("digits")
    for phase, call in ((1, calls[1]), (2, calls[2])):  # finetune is the first 2 runs
        start = flat(call["params"])
        assert all(np.array_equal(start[k][:2], trained[k]) for k in trained)
        mask = stored(store, phase, "mask")
        for s, record in enumerate(by(run["records"], phase=phase, variant="finetune")):
            masked = {k: v[s] * mask[k][s] if k in mask else v[s] for k, v in trained.items()}
            expected = _numpy_accuracy(masked, np.asarray(data.x_test), np.asarray(data.y_test))
            assert abs(record["history"]["test_accuracy"][0] - expected) <= 1 / len(data.y_test)


def test_scratch_variants_start_from_a_fresh_init(run):
    calls = run["calls"].calls
    config = run["config"]
    model = run_lib.ScratchTrainer(config).model
    fresh = flat(jax.device_get(init_seeds(model)(seed_keys(config.seed, 2, 2)))[0])
    dense = flat(calls[0]["params"])
    for call in calls[1:]:  # runs: finetune x 2, scratch_e x 2, scratch_b x 2
        start = flat(call["params"])
        for k in fresh:
            assert np.array_equal(start[k][2:4], fresh[k])
            assert np.array_equal(start[k][4:], fresh[k])
        for k in KERNELS:
            assert not np.any(fresh[k] == dense[k])


def test_pruned_weights_stay_exactly_zero(run):
    for call in run["calls"].calls[1:]:
        params, mask = flat(call["result"]), flat(call["mask"])
        assert sorted(mask) == list(KERNELS)
        for k in KERNELS:
            assert np.all(params[k][~mask[k]] == 0)
            assert np.count_nonzero(params[k][mask[k]]) > 0.9 * mask[k].sum()


def test_phase_0_is_the_lottery_level_0(run):
    lottery = LotteryConfig(
        **{
            k: v
            for k, v in TINY.items()
            if k not in ("sparsities", "finetune_steps", "scratch_b_cap")
        },
        levels=1,
        controls=(),
    )
    _, level0 = Experiment(lottery).run_level(0, None, False)  # what run_lottery runs
    dense = by(run["records"], phase=0)
    assert len(level0) == len(dense) == 2
    for ours, theirs in zip(dense, level0, strict=True):
        assert ours["history"]["test_accuracy"] == theirs["history"]["test_accuracy"]
        assert ours["history"]["val_loss"] == theirs["history"]["val_loss"]


def test_rerun_loads_every_phase(run):
    lines = []
    _, again = run_scratch(run["config"], out_dir=run["out"], log=lines.append)
    for phase in range(3):
        assert f"phase {phase}: finished earlier, loaded" in lines
    assert not any("training" in line for line in lines)
    assert json.dumps(again) == json.dumps(run["records"])


def test_command_prints_and_writes_the_table(run, capsys):
    parser = argparse.ArgumentParser()
    command_lib.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        "scratch --model mlp --dataset digits --steps 40 --eval-every 20 --seeds 2 "
        "--val-size 100 --batch-size 32 --sparsities 0.5,0.9 --finetune-steps 40 "
        "--scratch-b-cap 1 "
        f"--quiet --out {run['out']}".split()
    )
    assert args.func(args) == 0  # every phase loads: nothing trains
    text = capsys.readouterr().out
    assert str(run["store"].run_dir) in text
    table = (run["store"].run_dir / "summary.md").read_text()
    for variant in ("dense", "finetune", "scratch_e", "scratch_b"):
        assert variant in text and variant in table
    assert table.count("\n") == 2 + 1 + 3 * 2  # header, rule, dense, 3 variants x 2
    assert command_lib.is_scratch_run(run["store"].run_dir)
    assert not command_lib.is_scratch_run(run["out"])
    reprinted = command_lib.report(run["store"].run_dir)
    assert reprinted.startswith("scratch run ") and "scratch_b" in reprinted


@pytest.mark.parametrize(
    "change, field",
    [
        ({"variants": ("finetune", "bogus")}, "variants"),
        ({"variants": ()}, "variants"),
        ({"variants": ("scratch_e", "scratch_e")}, "variants"),
        ({"scratch_b_cap": 0.5}, "scratch_b_cap"),
        ({"scratch_b_cap": float("inf")}, "scratch_b_cap"),
        ({"sparsities": (1.0,)}, "sparsities"),
        ({"sparsities": (-0.1,)}, "sparsities"),
        ({"sparsities": ()}, "sparsities"),
        ({"allocation": "erk"}, "allocation"),
        ({"finetune_steps": 0}, "finetune_steps"),
        ({"finetune_learning_rate": 0.0}, "finetune_learning_rate"),
        ({"weight_decay": 0.1}, "weight_decay"),
        ({"hidden": (8,), "model": "lenet_300_100"}, "hidden"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(change, field):
    with pytest.raises(ConfigError) as err:
        ScratchConfig(**change)
    assert err.value.field == field
    assert field in str(err.value) and "\n" not in str(err.value)
    if field == "variants" and "bogus" in str(change):
        assert "finetune, scratch_e, scratch_b" in str(err.value)
