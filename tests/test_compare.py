"""The at-init workflow and the compare workflow end to end, on one tiny comparison shared by
the module (digits, a 64 -> 100 -> 100 -> 10 MLP, 2 seeds, 20 steps).

Checked: every method runs with the same inits and data order (the dense baseline is
bitwise IMP's level 0); IMP's levels hit each target sparsity exactly (counted in the
records) and prune at most ``imp_fraction`` of the survivors per level (hypothesis over
targets); the at-init controls keep the mask's per-layer counts (shuffle) or its total
(invert) and the stored masks are what the records count; a rerun trains nothing and
gives the same records, a killed comparison resumes, an added method trains alone; the
control verdicts are worked by hand; the CLI writes the table and plots; bad input is a
one-line ConfigError naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.at_init import run as at_init_run
from jaxticket.cli import main
from jaxticket.compare.config import CompareConfig, imp_schedule
from jaxticket.compare.report import control_table, format_table, summarize, verdicts
from jaxticket.compare.run import run_compare
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.store import RunStore

TINY = dict(
    model="mlp",
    dataset="digits",
    seeds=2,
    steps=20,
    eval_every=10,
    val_size=100,
    batch_size=32,
    score_batch=64,
    sparsities=(0.5, 0.9),
    controls=("shuffle", "invert"),
    imp_controls=("random_prune", "shuffle"),
    imp_fraction=0.5,
)
# Every method but the baseline trains 3 variants x 2 seeds: one compiled train program.
METHODS = ("imp", "snip", "magnitude_init")
SIZES = {"dense1/kernel": 64 * 100, "dense2/kernel": 100 * 100, "output/kernel": 100 * 10}


def tiny(**kw) -> CompareConfig:
    return CompareConfig(**{**TINY, "methods": METHODS, **kw})


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    lines: list[str] = []
    directory, records = run_compare(tiny(), out_dir=str(out), log=lines.append)
    return out, directory, records, lines


def by(records, **keys):
    return [r for r in records if all(r.get(k) == v for k, v in keys.items())]


def test_every_method_control_sparsity_and_seed_has_one_record(comparison):
    _, _, records, _ = comparison
    expected = {("dense", None, 0.0)}
    imp = (None, "random_prune", "shuffle")
    expected |= {("imp", c, s) for c in imp for s in (0.5, 0.9)}
    at_init = (None, "shuffle", "invert")
    expected |= {(m, c, s) for m in ("snip", "magnitude_init") for c in at_init for s in (0.5, 0.9)}
    got = [(r["method"], r["control"], r["sparsity"]) for r in records]
    assert set(got) == expected
    assert all(got.count(k) == 2 for k in expected)  # two seeds each
    assert records[0]["method"] == "dense"


def test_targets_are_hit_exactly(comparison):
    _, _, records, _ = comparison
    total = sum(SIZES.values())
    for r in records:
        kept = sum(round(v * SIZES[p]) for p, v in r["layer_remaining"].items())
        assert total - kept == round(r["sparsity"] * total), (r["method"], r["control"])


def test_dense_baseline_is_imps_level_zero(comparison):
    # Same inits and data order in every workflow: the sparse-train dense run and the
    # lottery's level 0 are the same training, bit for bit.
    _, directory, records, _ = comparison
    imp_dir = directory / "runs" / by(records, method="imp")[0]["run_dir"]
    level0 = [r for r in RunStore.read_results(imp_dir)["records"] if r["level"] == 0]
    dense_dir = directory / "runs" / records[0]["run_dir"]
    dense = RunStore.read_results(dense_dir)["records"]
    drop = lambda h: {k: v for k, v in h.items() if k != "sparsity"}  # noqa: E731
    assert [drop(r["history"]) for r in dense] == [r["history"] for r in level0]


def test_at_init_controls_keep_the_masks_counts(comparison):
    _, directory, records, _ = comparison
    snip_dir = directory / "runs" / by(records, method="snip")[0]["run_dir"]
    arrays, phase_records = RunStore(snip_dir).load_level(1)  # sparsity 0.9
    variants = [r["variant"] for r in phase_records[::2]]
    assert variants == list(at_init_run.variants(at_init_config(TINY)))
    masks = {p: np.asarray(v) for p, v in arrays.items() if p.startswith("masks/")}
    for path, m in masks.items():
        mask, shuffle, invert = (m[2 * j : 2 * j + 2].reshape(2, -1) for j in range(3))
        # the shuffle keeps every layer's count and moves the positions
        np.testing.assert_array_equal(mask.sum(1), shuffle.sum(1))
        assert (mask != shuffle).any()
        # the stored masks are what the records count
        for j, r in enumerate(phase_records):
            leaf = path.removeprefix("masks/")
            assert round(r["layer_remaining"][leaf] * SIZES[leaf]) == m[j].sum()
    totals = [sum(int(m[j].sum()) for m in masks.values()) for j in range(6)]
    assert totals == [round(0.1 * sum(SIZES.values()))] * 6
    # invert keeps the lowest SNIP scores: it shares few weights with the mask
    mask = np.concatenate([m[0].ravel() for m in masks.values()])
    inverted = np.concatenate([m[4].ravel() for m in masks.values()])
    assert (mask & inverted).sum() < 0.5 * mask.sum()


def at_init_config(kw):
    from jaxticket.at_init.config import AtInitConfig

    keep = {k: v for k, v in kw.items() if k not in ("imp_controls", "imp_fraction")}
    return AtInitConfig(**keep, method="snip")


def test_rerun_loads_everything_and_adding_a_method_trains_it_alone(comparison):
    out, directory, records, first = comparison
    assert any("training" in line for line in first)
    lines: list[str] = []
    again_dir, again = run_compare(tiny(), out_dir=str(out), log=lines.append)
    assert again_dir == directory and again == records
    assert not [line for line in lines if line.endswith("training")]
    lines.clear()
    more_dir, more = run_compare(
        tiny(methods=(*METHODS, "grasp")), out_dir=str(out), log=lines.append
    )
    assert more_dir == directory
    trained = [line for line in lines if line.endswith("training")]
    assert len(trained) == 2  # grasp's two sparsities, nothing else
    assert {r["method"] for r in more} == {"dense", *METHODS, "grasp"}


def test_killed_comparison_resumes_without_recomputing(comparison, tmp_path, monkeypatch):
    out, directory, records, _ = comparison
    # A copy of the finished comparison with snip's phase 1 removed: the rerun trains it alone.
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(directory.parent, copy)
    snip_dir = copy / directory.name / "runs" / by(records, method="snip")[0]["run_dir"]
    for f in [*snip_dir.glob("level_01*"), *snip_dir.glob("checkpoints/*1")]:
        shutil.rmtree(f) if f.is_dir() else f.unlink()
    lines: list[str] = []
    _, again = run_compare(tiny(), out_dir=str(copy), log=lines.append)
    assert [line for line in lines if line.endswith("training")] == ["phase 1: training"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "run_dir"} for r in rs]  # noqa: E731
    assert strip(again) == strip(records)


def test_tables_and_cli(comparison, capsys):
    out, directory, records, _ = comparison
    rows = summarize(records)
    text = format_table(rows)
    assert "random_prune" in text and "dense1=" in text
    assert "vs shuffle" in control_table(rows)
    flags = ["--model", "mlp", "--dataset", "digits", "--seeds", "2", "--steps", "20"]
    flags += ["--eval-every", "10", "--val-size", "100", "--batch-size", "32"]
    flags += ["--score-batch", "64", "--sparsities", "0.5,0.9", "--controls", "shuffle,invert"]
    flags += ["--imp-controls", "random_prune,shuffle", "--imp-fraction", "0.5"]
    flags += ["--methods", ",".join(METHODS), "--out", str(out), "--quiet"]
    assert main(["compare", *flags]) == 0
    printed = capsys.readouterr().out
    assert "vs invert" in printed and str(directory) in printed
    for name in ("table.md", "accuracy_vs_sparsity.png", "layer_density.png"):
        assert (directory / name).stat().st_size > 0
    stored = json.loads((directory / "config.json").read_text())
    assert "methods" not in json.dumps(stored)


def test_verdicts_by_hand():
    def row(method, control, mean, std):
        return {
            "method": method,
            "control": control,
            "sparsity": 0.9,
            "test_accuracy_early_mean": mean,
            "test_accuracy_early_std": std,
        }

    rows = [
        row("snip", None, 80.0, 1.0),
        row("snip", "shuffle", 78.5, 2.0),
        row("snip", "invert", 20.0, 0.5),
        row("synflow", "shuffle", 50.0, 1.0),
    ]
    found = verdicts(rows)
    assert [(v["control"], v["difference"], v["spread"], v["beats"]) for v in found] == [
        ("shuffle", 1.5, 2.0, False),
        ("invert", 60.0, 1.0, True),
    ]  # synflow has no main row: no verdict


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.01, 0.99), min_size=1, max_size=5, unique=True),
    st.floats(0.05, 0.9),
)
def test_imp_schedule_prunes_at_most_the_fraction_and_hits_every_target(targets, fraction):
    targets = sorted({round(t, 3) for t in targets})
    levels = imp_schedule(targets, fraction)
    assert set(round(t, 6) for t in targets) <= set(levels)
    assert all(a < b for a, b in zip(levels, levels[1:], strict=False))
    density = 1.0
    for s in levels:
        assert (density - (1 - s)) / density <= fraction + 1e-5
        density = 1 - s
    # the fewest such levels: one fewer per target segment would exceed the fraction
    before = 0.0
    for t in targets:
        n = sum(1 for s in levels if before + 1e-9 < s <= t + 1e-9)
        ratio = (1 - t) / (1 - before)
        assert n == max(1, math.ceil(math.log(ratio) / math.log(1 - fraction) - 1e-9))
        before = t


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(methods=("imp", "nope")), "methods"),
        (dict(methods=()), "methods"),
        (dict(sparsities=(0.5, 1.0)), "sparsities"),
        (dict(sparsities=(-0.1, 0.5)), "sparsities"),
        (dict(sparsities=(0.9, 0.5)), "sparsities"),
        (dict(controls=("shufle",)), "controls"),
        (dict(imp_controls=("invert",)), "imp_controls"),
        (dict(imp_fraction=0.0), "imp_fraction"),
        (dict(methods=("imp", "imp")), "methods"),
    ],
)
def test_bad_settings_name_the_field(kw, field):
    with pytest.raises(ConfigError) as err:
        dataclasses.replace(tiny(), **kw)
    assert err.value.field == field and "\n" not in str(err.value)


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid: imp, snip, grasp, synflow, random_erk"):
        tiny(methods=("lth",))


def test_finetune_and_sparse_methods_get_the_same_training_settings():
    from jaxticket.compare.run import method_configs
    from jaxticket.workflow.settings import TRAINING_FIELDS

    c = tiny(methods=("finetune", "rigl", "synflow"), every=5)
    configs = method_configs(c)
    assert list(configs) == ["dense", "finetune", "rigl", "synflow"]
    for sub in configs.values():
        assert {k: getattr(sub, k) for k in TRAINING_FIELDS} == c.training_settings()
    assert configs["finetune"].variants == ("finetune", "scratch_e", "scratch_b")
    assert configs["rigl"].every == 5 and configs["synflow"].controls == ("shuffle", "invert")


def test_at_init_cli_resumes_the_comparisons_run_and_report_reprints_it(comparison, capsys):
    _, directory, records, _ = comparison
    flags = ["--model", "mlp", "--dataset", "digits", "--seeds", "2", "--steps", "20"]
    flags += ["--eval-every", "10", "--val-size", "100", "--batch-size", "32"]
    flags += ["--score-batch", "64", "--sparsities", "0.5,0.9", "--controls", "shuffle,invert"]
    flags += ["--method", "snip", "--out", str(directory / "runs"), "--quiet"]
    assert main(["at-init", *flags]) == 0  # the same config: every phase loads
    printed = capsys.readouterr().out
    snip_dir = directory / "runs" / by(records, method="snip")[0]["run_dir"]
    assert str(snip_dir) in printed and "invert" in printed
    assert main(["report", str(snip_dir)]) == 0
    assert "at-init run" in capsys.readouterr().out
    assert main(["report", str(directory)]) == 0
    assert "vs shuffle" in capsys.readouterr().out


def test_early_stopping_waits_for_the_final_sparsity():
    from jaxticket.workflow.records import early_stop_index

    val = [2.0, 0.5, 0.9, 0.7]
    assert early_stop_index(val) == 1  # a fixed mask: the lowest loss after step 0
    # gradual pruning reaches its final 90 % at the third evaluation: the denser network
    # at index 1 is not the sparse one
    assert early_stop_index(val, [0.0, 0.5, 0.9, 0.9]) == 3
    assert early_stop_index([2.0, float("nan"), 1.5]) == 2  # a NaN loss never wins
    assert early_stop_index([1.0]) == 0
