"""Tests for the lottery report (tables) and plots, on synthetic results records."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from jaxticket.lottery import plots, report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = (0, 1, 2)
LEVELS = (0, 1, 2, 3)


def remaining_at(level: int) -> float:
    """LeNet-300-100's fraction remaining after ``level`` rounds (DESIGN.md §2)."""
    return (265_200 * 0.8**level + 1_000 * 0.9**level) / 266_200


def make_records(seeds=SEEDS, levels=LEVELS, controls=("reinit", "random_prune")) -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for level in levels:
        variants = ("ticket",) + (controls if level > 0 else ())
        for variant in variants:
            for seed in seeds:
                acc = rng.uniform(0.6, 0.95, size=5).round(4)
                records.append(
                    {
                        "level": level,
                        "variant": variant,
                        "seed": seed,
                        "remaining": remaining_at(level),
                        "layer_remaining": {"hidden/kernel": remaining_at(level)},
                        "test_accuracy_early": float(acc.max()),
                        "test_accuracy_final": float(acc[-1]),
                        "early_stop_step": int(100 * acc.argmax()),
                        "history": {
                            "step": [0, 100, 200, 300, 400],
                            "train_loss": list(rng.uniform(0, 1, 5)),
                            "test_loss": list(rng.uniform(0, 1, 5)),
                            "test_accuracy": [float(a) for a in acc],
                            "val_loss": list(rng.uniform(0, 1, 5)),
                            "val_accuracy": list(rng.uniform(0, 1, 5)),
                        },
                    }
                )
    return records


def pick(records, level, variant, key):
    return np.array([r[key] for r in records if r["level"] == level and r["variant"] == variant])


@pytest.fixture
def records():
    return make_records()


def test_summarize_matches_numpy(records):
    rows = report.summarize(records)
    assert [row["level"] for row in rows] == list(LEVELS)
    for row in rows:
        level = row["level"]
        assert row["seeds"] == len(SEEDS)
        np.testing.assert_allclose(row["remaining_pct"], 100 * remaining_at(level))
        for name, key in (("early", "test_accuracy_early"), ("final", "test_accuracy_final")):
            values = 100 * pick(records, level, "ticket", key)
            np.testing.assert_allclose(row[f"ticket_{name}_mean"], values.mean())
            np.testing.assert_allclose(row[f"ticket_{name}_std"], values.std())
        steps = pick(records, level, "ticket", "early_stop_step")
        np.testing.assert_allclose(row["early_stop_step"], steps.mean())
        for control in ("reinit", "random_prune"):
            if level == 0:
                assert math.isnan(row[f"{control}_early_mean"])
                continue
            values = 100 * pick(records, level, control, "test_accuracy_early")
            np.testing.assert_allclose(row[f"{control}_early_mean"], values.mean())
            np.testing.assert_allclose(row[f"{control}_early_std"], values.std())
        assert "shuffle_early_mean" not in row


def test_remaining_values_follow_the_paper():
    rows = report.summarize(make_records(levels=(0, 3, 7)))
    pct = [round(row["remaining_pct"], 1) for row in rows]
    assert pct == [100.0, 51.3, 21.1]


def test_single_seed_has_zero_std():
    rows = report.summarize(make_records(seeds=(0,)))
    assert all(row["ticket_early_std"] == 0.0 for row in rows)


def test_format_table_contains_numbers(records):
    rows = report.summarize(records)
    text = report.format_table(rows)
    lines = text.splitlines()
    assert len(lines) == 2 + len(LEVELS)
    assert "reinit early %" in lines[0] and "random_prune early %" in lines[0]
    assert len({len(line) for line in lines}) == 1  # fixed width
    for row, line in zip(rows, lines[2:], strict=True):
        assert f"{row['remaining_pct']:.3g}" in line
        assert f"{row['ticket_early_mean']:.2f} ± {row['ticket_early_std']:.2f}" in line
        assert f"{row['ticket_final_mean']:.2f} ± {row['ticket_final_std']:.2f}" in line
        if row["level"] > 0:
            assert f"{row['reinit_early_mean']:.2f} ± {row['reinit_early_std']:.2f}" in line
    assert "51.3" in lines[2 + 3] and lines[2].split()[1] == "100"


def test_markdown_table_well_formed(records):
    rows = report.summarize(records)
    lines = report.markdown_table(rows).splitlines()
    assert len(lines) == 2 + len(LEVELS)
    columns = lines[0].count("|")
    assert all(line.startswith("|") and line.endswith("|") for line in lines)
    assert all(line.count("|") == columns for line in lines)
    assert set(lines[1].replace("|", "").replace("---:", "")) == set()
    assert f"{rows[1]['ticket_early_mean']:.2f}" in lines[3]


def test_plots_write_png(tmp_path, records):
    out = plots.plot_accuracy_vs_remaining(records, tmp_path / "sub" / "acc.png")
    assert out == tmp_path / "sub" / "acc.png"
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000
    out = plots.plot_training_curves(records, [0, 3], tmp_path / "curves.png")
    assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 1000


def test_training_curves_errors(tmp_path, records):
    with pytest.raises(ValueError, match="level 9"):
        plots.plot_training_curves(records, [9], tmp_path / "x.png")
    del records[0]["history"]["test_accuracy"]
    with pytest.raises(ValueError, match=r"records\[0\]\.history\.test_accuracy"):
        plots.plot_training_curves(records, [0], tmp_path / "x.png")


def test_report_reads_run_dir(tmp_path, records):
    config = {"model": "lenet_300_100", "dataset": "mnist1d"}
    (tmp_path / "results.json").write_text(json.dumps({"config": config, "records": records}))
    text = report.report(tmp_path)
    assert "lenet_300_100 on mnist1d" in text.splitlines()[0]
    assert report.format_table(report.summarize(records)) in text


def test_report_errors(tmp_path, records):
    with pytest.raises(ValueError, match="does not exist"):
        report.report(tmp_path / "missing")
    with pytest.raises(ValueError, match="results.json"):
        report.report(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        report.report(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="'records' list"):
        report.report(tmp_path)


def test_bad_records():
    with pytest.raises(ValueError, match="at least one record"):
        report.summarize([])
    records = make_records(levels=(0,))
    del records[1]["test_accuracy_early"]
    with pytest.raises(ValueError, match=r"records\[1\]\.test_accuracy_early"):
        report.summarize(records)
    records = make_records(levels=(0,))
    records[0]["variant"] = "lucky"
    with pytest.raises(ValueError, match=r"records\[0\]\.variant"):
        report.summarize(records)
    records = make_records(levels=(0,))
    records.append(dict(records[0]))
    with pytest.raises(ValueError, match="duplicate"):
        report.summarize(records)


def test_collapsed_and_diverged_columns():
    records = make_records(levels=(0, 1, 2))
    for r in records:
        r["collapsed"], r["diverged"], r["diverged_step"] = [], False, -1
    for r in records:
        if r["level"] == 2:
            r["collapsed"] = ["dense1/kernel", "dense2/kernel"] if r["seed"] == 0 else []
        if r["level"] == 1 and r["variant"] == "ticket" and r["seed"] in (1, 2):
            r["diverged"], r["diverged_step"] = True, 200
    rows = report.summarize(records)
    assert [row["collapsed"] for row in rows] == [[], [], ["dense1/kernel", "dense2/kernel"]]
    assert [row["diverged"] for row in rows] == [0, 2, 0]
    text = report.format_table(rows).splitlines()
    assert text[0].split()[-2:] == ["collapsed", "diverged"]
    assert [line.split()[-2:] for line in text[2:]] == [["-", "-"], ["-", "2"], ["2", "-"]]
    md = report.markdown_table(rows).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md]
    assert cells[0][-2:] == ["collapsed", "diverged"]
    assert [c[-2:] for c in cells[2:]] == [["-", "-"], ["-", "2"], ["2", "-"]]


def test_collapse_is_derived_from_layer_remaining_in_older_records():
    records = make_records(levels=(0, 1))
    records[-1]["layer_remaining"] = {"hidden/kernel": 0.0, "output/kernel": 0.1}
    assert report.record_collapsed(records[-1]) == ["hidden/kernel"]
    rows = report.summarize(records)
    assert rows[1]["collapsed"] == ["hidden/kernel"] and rows[0]["collapsed"] == []


def test_plots_mark_collapsed_levels_and_diverged_runs(tmp_path):
    records = make_records(levels=(0, 1, 2))
    clean = plots.accuracy_figure(records).axes[0].get_legend_handles_labels()[1]
    assert not any("collapsed" in s or "diverged" in s for s in clean)
    for r in records:
        if r["level"] == 2:
            r["collapsed"] = ["hidden/kernel"]
        if r["level"] == 1 and r["seed"] == 1:
            r["diverged"], r["diverged_step"] = True, 100
    labels = plots.accuracy_figure(records).axes[0].get_legend_handles_labels()[1]
    assert "layer collapsed (no weight left)" in labels
    assert "diverged run (non-finite loss/weights)" in labels
    curves = plots.training_curves_figure(records, [0, 1, 2]).axes[0]
    labels = curves.get_legend_handles_labels()[1]
    assert labels[0].endswith("(level 0)")
    assert labels[1].endswith("(level 1), diverged: seed 1")
    assert labels[2].endswith("(level 2), layer collapsed")
    out = plots.plot_accuracy_vs_remaining(records, tmp_path / "acc.png")
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_lottery_submodules_are_attributes():
    # A fresh interpreter: this module's own imports would set the attributes.
    code = (
        "import jaxticket; L = jaxticket.lottery; "
        "print(L.report.format_table.__name__, L.plots.plot_training_curves.__name__, "
        "L.store.RunStore.__name__, L.config.LotteryConfig is jaxticket.LotteryConfig)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split() == ["format_table", "plot_training_curves", "RunStore", "True"], (
        out.stderr
    )
