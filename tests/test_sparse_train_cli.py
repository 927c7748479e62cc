"""``jaxticket sparse-train`` through ``jaxticket.cli.main``: flags -> table lines, plots in
the run directory, ``jaxticket report`` on the run directory, a rerun that loads, the dense
baseline in a multi-run figure, and bad input as one line naming the flag (exit code 2,
nothing stored)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from lottery_shared import run_main

from jaxticket.sparse_train.plots import accuracy_vs_sparsity
from jaxticket.sparse_train.report import is_sparse_train_run

TINY = "--model mlp --hidden 16 --seeds 2 --steps 40 --eval-every 20 --val-size 200 --quiet"


def sparse_train(out: Path, flags: str) -> tuple[int, str, str]:
    return run_main(["sparse-train", *shlex.split(f"{flags} {TINY}"), "--out", str(out)])


@pytest.fixture(scope="module")
def static_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-runs")
    code, stdout, stderr = sparse_train(out, "--method static --sparsities 0.9,0.95")
    assert code == 0, stderr
    return out, stdout


def table_rows(text: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["method"])
    rows = []
    for line in lines[start + 2 :]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_flags_to_table_plots_and_report(static_run):
    out, stdout = static_run
    rows = table_rows(stdout)
    assert [row[:4] for row in rows] == [
        ["static", "90", "90.00", "2"],
        ["static", "95", "95.00", "2"],
    ]
    (run_dir,) = out.iterdir()
    assert run_dir.name.startswith("sparse-static-mlp-mnist1d-")
    assert f"run directory: {run_dir}" in stdout
    for name in ("accuracy_vs_sparsity.png", "sparsity_over_training.png"):
        assert (run_dir / name).stat().st_size > 0 and str(run_dir / name) in stdout
    assert is_sparse_train_run(run_dir)
    code, report, stderr = run_main(["report", str(run_dir)])
    assert code == 0, stderr
    assert report.splitlines()[0] == (
        f"sparse-train run {run_dir}: static, mlp on mnist1d, 40 steps"
    )
    assert table_rows(report) == rows


def test_rerun_loads_and_prints_the_same_table(static_run, monkeypatch):
    from jaxticket.sparse_train import run as run_lib

    out, stdout = static_run

    def refuse(*args, **kwargs):
        raise AssertionError("a finished phase was trained again")

    monkeypatch.setattr(run_lib, "train_seeds", refuse)
    code, again, stderr = sparse_train(out, "--method static --sparsities 0.9,0.95")
    assert code == 0, stderr
    assert table_rows(again) == table_rows(stdout)


def test_dense_baseline_and_a_multi_run_figure(static_run, tmp_path):
    code, stdout, stderr = sparse_train(tmp_path, "--method dense")
    assert code == 0, stderr
    assert [row[:4] for row in table_rows(stdout)] == [["dense", "0", "0.00", "2"]]
    out, _ = static_run
    records = []
    for root in (out, tmp_path):
        (run_dir,) = [p for p in root.iterdir() if p.is_dir()]
        records += json.loads((run_dir / "results.json").read_text())["records"]
    fig = accuracy_vs_sparsity(records)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["static", "dense"]


def test_report_of_a_non_run_keeps_the_lottery_message(tmp_path):
    assert not is_sparse_train_run(tmp_path / "missing")
    code, _, stderr = run_main(["report", str(tmp_path / "missing")])
    assert code == 2
    assert "does not exist or is not a directory" in stderr


BAD = [
    ("--method rigl --every 0", "--every", "must be >= 1"),
    ("--method rigl --every -5", "--every", "must be >= 1"),
    ("--method rigl --steps 40 --every 30", "--every", "no mask update fits"),
    ("--method rigl --zeta 0", "--zeta", "(0, 1)"),
    ("--method set --zeta 1", "--zeta", "(0, 1)"),
    ("--method rigl --zeta 1.5", "--zeta", "(0, 1)"),
    ("--method granet --granet-zeta 1", "--granet-zeta", "(0, 1)"),
    ("--method gmp --prune-start 0.5 --prune-end 0.5", "--prune-end", "ends before it starts"),
    ("--method granet --prune-start 0.6 --prune-end 0.4", "--prune-end", "ends before"),
    ("--method gmp --prune-end 1.5", "--prune-end", "(0, 1]"),
    ("--method rigl --end-fraction 0", "--end-fraction", "(0, 1]"),
    ("--method set --end-fraction 1.5", "--end-fraction", "(0, 1]"),
    ("--method rigl --sparsities 1.0", "--sparsities", "[0, 0.999999]"),
    ("--method static --sparsities -0.1", "--sparsities", "[0, 0.999999]"),
    ("--method rigl --sparsities ''", "--sparsities", "at least one"),
    ("--method gmp --sparsities 0.9,0.9", "--sparsities", "each target once"),
    (
        "--method granet --sparsities 0.8,0.9 --initial-sparsity 0.85",
        "--initial-sparsity",
        "exceeds the target sparsity 0.8",
    ),
    ("--method static --every 50", "--every", "no effect with method static"),
    ("--method dense --sparsities 0.5", "--sparsities", "no effect with method dense"),
    ("--method rigl --prune-end 0.5", "--prune-end", "no effect with method rigl"),
    ("--method set --granet-zeta 0.4", "--granet-zeta", "no effect with method set"),
    ("--method gmp --zeta 0.5", "--zeta", "no effect with method gmp"),
    ("--method gmp --gmp-schedule one_shot --every 50", "--every", "gmp_schedule one_shot"),
    (
        "--method gmp --prune-allocation global --layer-rates dense1/*=0.5",
        "--layer-rates",
        "no effect with method gmp",
    ),
    ("--method granet --allocation er", "--allocation", "no effect with method granet"),
    ("--method gmp --layer-rates output/*=1.2", "--layer-rates", "keep every target"),
    ("--method rigl --set-decay cosine", "--set-decay", "no effect with method rigl"),
    ("--method set --set-decay linear", "--set-decay", "constant, cosine"),
    ("--method bogus", "--method", "must be one of gmp, set, rigl"),
    ("--method static --allocation erk2", "--allocation", "must be one of erk, er, uniform"),
    ("--method gmp --gmp-schedule linear", "--gmp-schedule", "cubic, one_shot, constant"),
]


@pytest.mark.parametrize(("flags", "flag", "words"), BAD)
def test_bad_input_is_one_line_naming_the_flag(tmp_path, flags, flag, words):
    code, stdout, stderr = sparse_train(tmp_path / "runs", flags)
    assert code == 2 and stdout == ""
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"jaxticket sparse-train: error: argument {flag}: "), stderr
    assert words in stderr
    assert not (tmp_path / "runs").exists()  # refused before anything was stored


@pytest.mark.parametrize(
    ("flags", "flag", "words"),
    [
        ("--method rigl --model lenet_300_100 --hidden 16", "--hidden", "fixed widths"),
        ("--method static --model nope --hidden ''", "--model", "unknown model 'nope'"),
        (
            "--method gmp --every 10 --layer-rates nope/*=0.5",
            "--layer-rates",
            "matches no",
        ),
    ],
)
def test_model_settings_are_checked_before_training(tmp_path, flags, flag, words):
    # TINY's --hidden comes after these flags, so the model's are given here last.
    code, _, stderr = run_main(
        [
            "sparse-train",
            *shlex.split(f"--seeds 2 --steps 40 --eval-every 20 --quiet {flags}"),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"jaxticket sparse-train: error: argument {flag}: "), stderr
    assert words in stderr
