"""Bad input to the ``jaxticket`` command: each case exits with code 2 and one line on
stderr, ``jaxticket <cmd>: error: ...`` naming the flag (or the file and record), no
traceback, and nothing started. No case trains: every check runs before level 0."""

from __future__ import annotations

import json

import pytest
from lottery_shared import compile_cache, run_main  # noqa: F401  (fixture)

from jaxticket.workflow.store import RunStore

# (argv after "lottery", message fragment naming the flag)
LOTTERY = [
    (["--levels", "1.5"], "argument --levels: expected an integer, got '1.5'"),
    (["--levels", "-1"], "argument --levels: levels must be >= 0, got -1"),
    (["--seeds", "0"], "argument --seeds: seeds must be >= 1, got 0"),
    (["--seed", "-1"], "argument --seed: seed must be in [0, 2**32), got -1"),
    (["--seed", str(2**70)], "argument --seed: seed must be in [0, 2**32)"),
    (["--steps", "0"], "argument --steps: steps must be >= 1, got 0"),
    (["--rewind", "40", "--steps", "40"], "argument --rewind: rewind must be an iteration in"),
    (["--learning-rate", "nan"], "argument --learning-rate: learning_rate must be finite"),
    (["--learning-rate", "inf"], "argument --learning-rate: learning_rate must be finite"),
    (["--learning-rate=-1e-3"], "argument --learning-rate: learning_rate must be finite"),
    (["--learning-rate", "fast"], "argument --learning-rate: expected a number, got 'fast'"),
    (["--weight-decay", "1e-4"], "argument --weight-decay: weight_decay 0.0001 with optimizer"),
    (["--weight-decay", "-1", "--optimizer", "sgd"], "argument --weight-decay: weight_decay must"),
    (["--weight-decay", "nan", "--optimizer", "adamw"], "argument --weight-decay: weight_decay"),
    (["--prune-fraction", "1.0"], "argument --prune-fraction: prune_fraction must be in"),
    (["--prune-fraction", "0.9999999"], "argument --prune-fraction: prune_fraction must be in"),
    (["--controls", "reinit,reinit"], "argument --controls: controls: each control once"),
    (["--controls", "reinit,bogus"], "argument --controls: unknown control 'bogus'"),
    (["--one-shot", "0.5,x"], "argument --one-shot: expected comma-separated numbers"),
    (["--one-shot", "0.5,1"], "argument --one-shot: one_shot sparsity must be in"),
    (["--layer-rates", "output"], "argument --layer-rates: expected PATTERN=SCALE"),
    (["--layer-rates", "output/*=x"], "argument --layer-rates: scale of 'output/*': expected"),
    (["--layer-rates", "output/*=-1"], "argument --layer-rates: layer_rates: scale of 'output/*'"),
    (["--layer-rates", "outptu/*=0.5"], "argument --layer-rates: layer_rates: pattern 'outptu/*'"),
    (["--allocation", "global"], "argument --layer-rates: layer_rates apply to allocation"),
    (["--allocation", "erk"], "argument --allocation: allocation must be layerwise or global"),
    (["--optimizer", "rmsprop"], "argument --optimizer: optimizer must be one of"),
    (["--schedule", "step"], "argument --schedule: schedule must be one of"),
    (["--rewind-mode", "late"], "argument --rewind-mode: rewind_mode must be one of"),
    (["--eval-every", "200", "--steps", "100"], "argument --eval-every: eval_every must be in"),
    (["--val-size", "4000"], "argument --val-size: val_size must be < 4000"),
    (["--batch-size", "5000"], "argument --batch-size: batch_size must be <= 3500"),
    (["--min-keep", "-1"], "argument --min-keep: min_keep must be >= 0, got -1"),
    (["--model", "no_such_model"], "argument --model: unknown model 'no_such_model'"),
    (["--dataset", "no_such_data"], "unknown data set 'no_such_data'"),
    (["--lerning-rate", "1e-3"], "unrecognized arguments: --lerning-rate"),
]

TRAIN = [
    (["--learning-rate", "nan"], "argument --learning-rate: must be finite and > 0, got nan"),
    (["--learning-rate", "inf"], "argument --learning-rate: must be finite and > 0, got inf"),
    (["--learning-rate", "0"], "argument --learning-rate: must be finite and > 0, got 0"),
    (["--seed", "-1"], "argument --seed: must be in [0, 2**32), got -1"),
    (["--seed", str(2**70)], "argument --seed: must be in [0, 2**32)"),
    (["--steps", "0"], "argument --steps: must be >= 1, got 0"),
    (["--steps", "1e3"], "argument --steps: expected an integer, got '1e3'"),
    (["--optimizer", "adamw"], "argument --optimizer: invalid choice: 'adamw'"),
]


def assert_one_line_error(code: int, out: str, err: str, command: str, message: str) -> None:
    assert code == 2, (code, err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"jaxticket {command}: error: "), err
    assert message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, message", LOTTERY, ids=[" ".join(a) for a, _ in LOTTERY])
def test_lottery_bad_flag(tmp_path, args, message):
    code, out, err = run_main(["lottery", *args, "--quiet", "--out", str(tmp_path)])
    assert_one_line_error(code, out, err, "lottery", message)
    assert list(tmp_path.iterdir()) == []  # nothing was started


@pytest.mark.parametrize("args, message", TRAIN, ids=[" ".join(a) for a, _ in TRAIN])
def test_train_bad_flag(args, message):
    code, out, err = run_main(["train", *args, "--quiet"])
    assert_one_line_error(code, out, err, "train", message)


def test_out_under_a_regular_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    out_dir = tmp_path / "file" / "runs"
    args = ["lottery", "--quiet", "--steps", "20", "--eval-every", "20", "--out", str(out_dir)]
    code, out, err = run_main(args)
    assert_one_line_error(code, out, err, "lottery", str(tmp_path / "file"))


def test_permission_error_of_the_store_is_one_line(tmp_path, monkeypatch):
    # (Tests run as root here, so a read-only folder would not stop them: the store's
    # OSError is injected where the disk refuses a write.)
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "runs"))

    monkeypatch.setattr(RunStore, "open", refuse)
    code, out, err = run_main(["lottery", "--quiet", "--out", str(tmp_path / "runs")])
    assert_one_line_error(code, out, err, "lottery", "Permission denied")


def record(**overrides):
    r = {
        "level": 0,
        "variant": "ticket",
        "seed": 0,
        "remaining": 1.0,
        "test_accuracy_early": 0.5,
        "test_accuracy_final": 0.5,
        "early_stop_step": 100,
    }
    return {**r, **overrides}


# (bytes of results.json, message fragment)
REPORTS = [
    (b"\xff\xfe{", "is not UTF-8 text"),
    (b"{not json", "is not valid JSON"),
    (b"[1, 2]", "expected an object with a 'records' list"),
    (json.dumps({"records": [1]}).encode(), "records[0]: expected a dict, got int"),
    (json.dumps({"records": [record(level="0")]}).encode(), "records[0].level: expected an int"),
    (json.dumps({"records": [record(level=-1)]}).encode(), "records[0].level: expected an int"),
    (json.dumps({"records": [record(seed=0.5)]}).encode(), "records[0].seed: expected an int"),
    (
        json.dumps({"records": [record(test_accuracy_early="0.5")]}).encode(),
        "records[0].test_accuracy_early: expected a number in [0, 1], got '0.5'",
    ),
    (json.dumps({"records": [record(remaining=2)]}).encode(), "records[0].remaining: expected"),
    (
        json.dumps({"records": [record(), record(seed=1, diverged="no")]}).encode(),
        "records[1].diverged: expected true or false",
    ),
    (
        json.dumps({"records": [record(collapsed="dense1/kernel")]}).encode(),
        "records[0].collapsed: expected a list of leaf paths",
    ),
    (json.dumps({"records": [record(variant=3)]}).encode(), "records[0].variant: expected a str"),
    (b"[" * 100_000 + b"]" * 100_000, "results"),
]


@pytest.mark.parametrize("content, message", REPORTS, ids=[m for _, m in REPORTS])
def test_report_of_a_bad_results_file_is_one_line(tmp_path, content, message):
    (tmp_path / "results.json").write_bytes(content)
    code, out, err = run_main(["report", str(tmp_path)])
    assert_one_line_error(code, out, err, "report", message)
