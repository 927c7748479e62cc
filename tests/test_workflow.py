"""The workflow layer: a toy two-phase workflow through the resumable phase loop, config
flags and digests, exact-count pruning (the random-pruning control) against plain numpy,
and the grouped summary against hand-worked numbers. Nothing here trains a network."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.lottery import controls
from jaxticket.lottery.config import LotteryConfig
from jaxticket.pruning import CountsPruner, leaf_counts, match_counts
from jaxticket.workflow import (
    ConfigError,
    Workflow,
    WorkflowConfig,
    add_config_flags,
    config_from_args,
    field,
    format_summary,
    group_summary,
    run_identity,
    run_workflow,
)
from jaxticket.workflow.store import BrokenLevelWarning, RunStore, config_digest

REPO = Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class ToyConfig(WorkflowConfig):
    phases: int = field(2, "phases to run")
    scale: float = field(1.5, "what each phase multiplies by")
    names: tuple[str, ...] = field(("a", "b"), "names")
    rates: tuple[tuple[str, float], ...] = field((("out/*", 0.5),), "per-layer rates")
    sizes: tuple[int, ...] = field((3,), "sizes")
    shifts: tuple[float, ...] = field((), "shifts")
    verbose: bool = field(False, "talk more")

    def check(self):
        if self.phases < 1:
            raise ConfigError("phases", f"phases must be >= 1, got {self.phases}")


class ToyRunner:
    """State: one array; phase p multiplies it by the config's scale. Counts its calls."""

    calls: list[int] = []  # noqa: RUF012  (reset per test)

    def __init__(self, config, devices):
        self.config = config
        self.devices = tuple(jax.devices() if devices is None else devices)

    def run_phase(self, phase, state, show_progress):
        ToyRunner.calls.append(phase)
        x = np.arange(4.0) if state is None else state * self.config.scale
        record = {"level": phase, "variant": "ticket", "seed": 0, "value": float(x.sum())}
        return x, [record]

    def pack(self, state):
        return {"x": state}

    def unpack(self, flat):
        return np.asarray(flat["x"])


TOY = Workflow(name=lambda c: f"toy-{c.phases}", phases=lambda c: range(c.phases), setup=ToyRunner)


def test_phase_loop_resumes_and_skips_finished_phases(tmp_path):
    ToyRunner.calls = []
    config = ToyConfig()
    log: list[str] = []
    store, records = run_workflow(TOY, config, out_dir=str(tmp_path), log=log.append)
    assert ToyRunner.calls == [0, 1]
    # Hand-worked: sum(0..3) = 6, then 6 · 1.5 = 9.
    assert [r["value"] for r in records] == [6.0, 9.0]
    assert store.run_dir.name == f"toy-2-{config_digest(run_identity(config, jax.devices()))[:12]}"
    results = json.loads((store.run_dir / "results.json").read_text())
    assert results["records"] == records
    assert log[1:] == ["level 0: training", "level 1: training"]
    # A rerun computes nothing and returns the same records.
    ToyRunner.calls = []
    again, records2 = run_workflow(TOY, config, out_dir=str(tmp_path))
    assert ToyRunner.calls == [] and records2 == records and again.run_dir == store.run_dir
    # With phase 1's records gone, only phase 1 is recomputed, from phase 0's stored state.
    (store.run_dir / "level_01.json").unlink()
    with pytest.warns(BrokenLevelWarning, match="level 1 has a checkpoint but no records"):
        _, records3 = run_workflow(TOY, config, out_dir=str(tmp_path))
    assert ToyRunner.calls == [1] and records3 == records
    # Another config, another directory.
    other, _ = run_workflow(TOY, ToyConfig(scale=2.0), out_dir=str(tmp_path))
    assert other.run_dir != store.run_dir


def test_phase_loop_warns_about_collapse_and_divergence(tmp_path):
    class Bad(ToyRunner):
        def run_phase(self, phase, state, show_progress):
            x, (record,) = super().run_phase(phase, state, show_progress)
            record.update(collapsed=["out/kernel"], diverged=True, diverged_step=3)
            return x, [record]

    bad = dataclasses.replace(TOY, setup=Bad)
    with pytest.warns(UserWarning) as caught:
        run_workflow(bad, ToyConfig(phases=1), out_dir=str(tmp_path))
    messages = [str(w.message) for w in caught]
    assert any(m.startswith("level 0: layer collapse") and "out/kernel" in m for m in messages)
    diverged = [m for m in messages if m.startswith("level 0: training diverged")]
    assert len(diverged) == 1 and "ticket seed 0 at step 3" in diverged[0]


def test_config_flags_round_trip():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, ToyConfig)
    args = parser.parse_args(
        ["--phases", "3", "--scale", "2", "--names", "x, y,", "--rates", "a=1,b/*=0.25"]
        + ["--sizes", "1,2", "--shifts", "0.5", "--verbose"]
    )
    config = config_from_args(ToyConfig, args)
    assert config.to_dict() == {
        "phases": 3,
        "scale": 2.0,
        "names": ["x", "y"],
        "rates": [["a", 1.0], ["b/*", 0.25]],
        "sizes": [1, 2],
        "shifts": [0.5],
        "verbose": True,
    }
    assert ToyConfig.from_dict(config.to_dict()) == config
    assert config_from_args(ToyConfig, parser.parse_args([])) == ToyConfig()
    assert config_from_args(ToyConfig, parser.parse_args(["--names", ""])).names == ()
    text = parser.format_help()
    assert "default: out/*=0.5" in text and "'' for none; default: a,b" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--phases", "x"])
    with pytest.raises(ConfigError, match="phases must be >= 1, got 0"):
        config_from_args(ToyConfig, parser.parse_args(["--phases", "0"]))


def test_config_coercion_and_one_line_errors():
    assert ToyConfig(scale=2, names=["a"], rates={"x": 1}).to_dict()["rates"] == [["x", 1.0]]
    with pytest.raises(TypeError, match="^phases must be an int, got float 1.5$"):
        ToyConfig(phases=1.5)
    with pytest.raises(TypeError, match="^verbose must be a bool, got int 1$"):
        ToyConfig(verbose=1)
    with pytest.raises(TypeError, match=r"rates\[0\] must be a \(pattern, scale\) pair"):
        ToyConfig(rates=(("a",),))
    with pytest.raises(ValueError, match=r"ToyConfig.from_dict: unknown fields \['bogus'\]"):
        ToyConfig.from_dict({"bogus": 1})


def test_digests_are_stable_so_existing_run_directories_resume():
    # The digest LotteryConfig() had before the workflow layer (sha256 of canonical JSON).
    assert LotteryConfig().digest() == (
        "db72d34bb80c75501387700da3f28d40775187d9aa560db2239be00806676a59"
    )
    # The recorded experiments name their run directory by the same identity digest.
    for name in ("lottery_mnist1d_lenet", "lottery_mnist1d_lenet_15"):
        stored = json.loads((REPO / "experiments" / name / "config.json").read_text())
        config = LotteryConfig.from_dict(stored["config"])
        identity = {**config.to_dict(), "runtime": stored["config"]["runtime"]}
        assert config_digest(identity) == stored["digest"], name


# -- exact per-layer counts ----------------------------------------------------------------

SHAPES = {"a": (5, 4), "b": (7,), "c": (3, 3)}


def masks_and_counts(draw_seed: int, density: float):
    rng = np.random.default_rng(draw_seed)
    mask = {k: rng.random(s) < density for k, s in SHAPES.items()}
    mask["bias"] = None
    counts = [int(rng.integers(0, mask[k].sum() + 1)) for k in ("a", "b", "c")]
    return rng, mask, counts


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_counts_pruner_keeps_exact_counts_of_alive_weights(seed, density):
    _, mask, counts = masks_and_counts(seed, density)
    new = CountsPruner()(mask, mask, counts, key=jax.random.key(seed))
    assert new["bias"] is None
    for k, n in zip(("a", "b", "c"), counts, strict=True):
        assert int(np.sum(new[k])) == n
        assert not np.any(np.asarray(new[k]) & ~mask[k])  # only alive weights stay
    assert [int(c) for c in leaf_counts(new)] == counts


def test_match_counts_allocation_and_bad_counts():
    alloc = match_counts([2, 5])
    groups = alloc([None, None], [np.int32(3), np.int32(4)])
    assert [(g.leaves, int(g.keep)) for g in groups] == [((0,), 2), ((1,), 4)]
    mask = {"a": np.ones((2, 2), bool), "bias": None}
    with pytest.raises(ValueError, match=r"count of leaf 'a' must be in \[0, 4\], got 5"):
        CountsPruner()(mask, mask, [5], key=jax.random.key(0))
    with pytest.raises(ValueError, match="2 counts for 1 prunable leaves"):
        CountsPruner()(mask, mask, [1, 1], key=jax.random.key(0))


def test_random_control_matches_a_numpy_reference_in_counts():
    """The control is "a random subset of the previous random mask with the ticket's
    per-layer counts": a numpy reference drawn that way has the same counts per seed and
    layer, and both are subsets of the previous mask (a different draw, same law)."""
    seeds = 3
    rng = np.random.default_rng(1)
    prev = {k: rng.random((seeds, *s)) < 0.8 for k, s in SHAPES.items()}
    ticket = {k: m & (rng.random(m.shape) < 0.5) for k, m in prev.items()}
    keys = jax.random.split(jax.random.key(0), seeds)
    got = controls.thin_to_counts(keys, prev, ticket)
    for k in SHAPES:
        for s in range(seeds):
            alive = np.flatnonzero(prev[k][s])
            want = int(ticket[k][s].sum())
            chosen = rng.choice(alive, size=want, replace=False)  # the numpy reference
            reference = np.zeros(prev[k][s].size, bool)
            reference[chosen] = True
            assert int(got[k][s].sum()) == int(reference.sum()) == want
            assert not np.any(got[k][s] & ~prev[k][s])
            assert not np.any(reference.reshape(prev[k][s].shape) & ~prev[k][s])
    # Same keys, same masks (bitwise); another key, another draw.
    again = controls.thin_to_counts(keys, prev, ticket)
    assert all(np.array_equal(got[k], again[k]) for k in SHAPES)
    other = controls.thin_to_counts(jax.random.split(jax.random.key(1), seeds), prev, ticket)
    assert not np.array_equal(other["a"], got["a"])


# -- summaries -------------------------------------------------------------------------------


def test_group_summary_and_table_by_hand():
    def rec(method, sparsity, seed, acc, **kw):
        return {
            "method": method,
            "sparsity": sparsity,
            "seed": seed,
            "test_accuracy_early": acc,
            "test_accuracy_final": acc,
            "layer_remaining": {"w": 1 - sparsity},
            **kw,
        }

    records = [
        rec("rigl", 0.9, 0, 0.50),
        rec("rigl", 0.9, 1, 0.70, diverged=True),
        rec("set", 0.9, 0, 0.40, collapsed=["w"]),
    ]
    rows = group_summary(records, by=("method", "sparsity"))
    assert [(r["method"], r["sparsity"], r["seeds"]) for r in rows] == [
        ("rigl", 0.9, 2),
        ("set", 0.9, 1),
    ]
    r = rows[0]
    assert r["test_accuracy_early_mean"] == pytest.approx(60.0)
    assert r["test_accuracy_early_std"] == pytest.approx(10.0)  # population std of 50, 70
    assert (r["test_accuracy_early_min"], r["test_accuracy_early_max"]) == (50.0, 70.0)
    assert r["layer_remaining"] == {"w": pytest.approx(0.1)}
    assert (r["diverged"], r["collapsed"], rows[1]["collapsed"]) == (1, [], ["w"])
    table = format_summary(rows, ("method", "sparsity"), extra={"w left": "layer_remaining"})
    lines = table.splitlines()
    assert lines[0].split()[-2:] == ["collapsed", "diverged"]
    assert "60.00 ± 10.00 [50.00, 70.00]" in lines[2] and lines[2].split()[-2:] == ["-", "1"]
    assert lines[3].split()[-2:] == ["1", "-"]
    assert "w=0.1" in lines[2]
    md = format_summary(rows, ("method",), ("test_accuracy_final",), markdown=True)
    assert md.splitlines()[1].startswith("|---:|") and math.isfinite(rows[1]["seeds"])
    with pytest.raises(ValueError, match=r"records\[0\]: missing the group fields \['lr'\]"):
        group_summary(records, by=("lr",))


def test_seed_band_plots_draw(tmp_path):
    from jaxticket.workflow import plots

    records = [
        {"method": "gmp", "sparsity": s, "seed": i, "test_accuracy_early": 0.5 + 0.1 * i,
         "history": {"step": [0, 10], "sparsity": [0.0, s]}}
        for s in (0.8, 0.9) for i in range(2)
    ]  # fmt: skip
    fig = plots.metric_figure(records, "sparsity", "test_accuracy_early", ("method",))
    assert len(fig.axes[0].lines) == 1
    fig2 = plots.history_figure(records, "sparsity", ("method", "sparsity"))
    assert len(fig2.axes[0].lines) == 2
    assert plots.save_figure(fig, tmp_path / "a.png").is_file()


def test_run_store_layout_is_unchanged(tmp_path):
    """The phase loop writes what RunStore always wrote (config.json, level files)."""
    ToyRunner.calls = []
    store, _ = run_workflow(TOY, ToyConfig(phases=1), out_dir=str(tmp_path))
    names = {p.name for p in store.run_dir.iterdir()}
    assert {"config.json", "level_00.json", "checkpoints", "results.json", "results.csv"} <= names
    assert RunStore(store.run_dir).finished_levels() == [0]
