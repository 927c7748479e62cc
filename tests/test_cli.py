"""The ``jaxticket`` command: flags from the config, one-line errors, ``lottery`` and
``report`` on a tiny run."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from jaxticket import cli
from jaxticket.lottery.config import LotteryConfig
from jaxticket.train import DivergenceWarning

# The tiny run of tests/test_lottery.py and tests/test_resume.py (same compiled programs).
TINY = ["--levels", "3", "--seeds", "2", "--steps", "40", "--eval-every", "20"]
TINY += ["--val-size", "200", "--batch-size", "60", "--rewind", "20"]
TINY += ["--controls", "reinit,random_prune,shuffle", "--quiet"]
TINY_CONFIG = LotteryConfig(
    levels=3,
    seeds=2,
    steps=40,
    eval_every=20,
    val_size=200,
    batch_size=60,
    rewind=20,
    controls=("reinit", "random_prune", "shuffle"),
)


from lottery_shared import compile_cache, run_main, shared_tiny_run  # noqa: E402, F401

# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lottery_run(tmp_path_factory):
    """``jaxticket lottery`` on the tiny config: (a copy of its run directory, its stdout).
    The session's first user of the tiny run trains it; later ones load it."""
    dest = tmp_path_factory.mktemp("cli")
    run = lambda out: run_main(["lottery", *TINY, "--out", str(out)])  # noqa: E731
    run_dir, (code, stdout, stderr) = shared_tiny_run(tmp_path_factory, dest, run)
    assert code == 0, stderr
    return run_dir, stdout


def table_lines(text: str) -> list[str]:
    """The results table: the header line (starting with 'level'), the rule, the rows."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["level"])
    end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_help_lists_every_config_flag():
    code, out, _ = run_main(["lottery", "--help"])
    assert code == 0
    for field in dataclasses.fields(LotteryConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in out, flag
        # The help text of the field is shown (argparse wraps lines, so compare words).
        assert field.metadata["help"].split()[0] in out
    assert "--out" in out and "--quiet" in out
    # Defaults in the flag's own syntax, not Python tuple reprs.
    flat = " ".join(out.split())
    assert "default: output/*=0.5)" in flat and "default: reinit,random_prune)" in flat
    assert "(('output/*', 0.5),)" not in flat and "('reinit', 'random_prune')" not in flat
    assert "default: '')" in flat  # --one-shot


@pytest.mark.parametrize(
    "args, message",
    [
        (["--levels", "-1"], "argument --levels: levels must be >= 0, got -1"),
        (["--prune-fraction", "1.0"], "prune_fraction must be in [0.000001, 0.999999]"),
        (["--prune-fraction", "1.5"], "prune_fraction must be in [0.000001, 0.999999]"),
        (["--model", "no_such_model"], "unknown model 'no_such_model'"),
        (["--dataset", "no_such_data"], "unknown data set 'no_such_data'"),
        (["--controls", "reinit,bogus"], "unknown control 'bogus'"),
        (["--rewind", "40", "--steps", "40"], "rewind must be an iteration in [0, steps=40)"),
    ],
)
def test_bad_values_print_one_line_and_exit_2(tmp_path, args, message):
    code, out, err = run_main(["lottery", *args, "--out", str(tmp_path)])
    assert code == 2
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.startswith("jaxticket lottery: error: ") and message in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # nothing was started


def test_report_of_a_missing_run_is_one_line(tmp_path):
    code, out, err = run_main(["report", str(tmp_path / "nope")])
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("jaxticket report: error: ")


def test_flags_build_the_config(tmp_path):
    args = cli._parser().parse_args(
        ["lottery", "--layer-rates", "output/*=0.5, dense1/*=0.75", "--controls", ""]
        + ["--one-shot", "0.5,0.9", "--rewind", "7", "--rewind-mode", "lr"]
        + ["--learning-rate", "3e-4", "--seeds", "4"]
    )
    config = cli._config_from_args(args)
    assert config == LotteryConfig(
        layer_rates=(("output/*", 0.5), ("dense1/*", 0.75)),
        controls=(),
        one_shot=(0.5, 0.9),
        rewind=7,
        rewind_mode="lr",
        learning_rate=3e-4,
        seeds=4,
    )
    assert cli._config_from_args(cli._parser().parse_args(["lottery"])) == LotteryConfig()
    code, _, err = run_main(["lottery", "--layer-rates", "output", "--out", str(tmp_path)])
    assert code == 2 and "expected PATTERN=SCALE" in err


def test_lottery_prints_the_table_and_writes_the_plots(lottery_run):
    run_dir, stdout = lottery_run
    runtime = {"x64": False, "devices": 1, "platform": "cpu"}  # the test process's JAX
    stored = json.loads((run_dir / "config.json").read_text())["config"]
    assert stored == {**TINY_CONFIG.to_dict(), "runtime": runtime}
    table = table_lines(stdout)
    assert "remaining %" in table[0] and "reinit early %" in table[0]
    assert table[0].split()[-2:] == ["collapsed", "diverged"]
    assert all(line.split()[-2:] == ["-", "-"] for line in table[2:])
    assert "random_prune early %" in table[0] and "shuffle early %" in table[0]
    rows = [line.split() for line in table[2:]]
    assert [row[0] for row in rows] == ["0", "1", "2", "3"]
    # % remaining: (42,000·0.8^k + 1,000·0.9^k) / 43,000 on MNIST-1D's 40 inputs.
    assert [row[1] for row in rows] == ["100", "80.2", "64.4", "51.7"]
    # (The printed paths are those of the shared run; run_dir is a copy of it.)
    assert f"{os.sep}{run_dir.name}\nplots: " in stdout
    for name in ("accuracy_vs_remaining.png", "training_curves.png"):
        path = run_dir / name
        assert f"{os.sep}{run_dir.name}{os.sep}{name}" in stdout
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    assert {"results.json", "results.csv", "config.json"} <= set(os.listdir(run_dir))


def test_report_prints_the_table_of_a_finished_run(lottery_run):
    run_dir, stdout = lottery_run
    code, out, err = run_main(["report", str(run_dir)])
    assert code == 0 and err == ""
    title = out.splitlines()[0]
    assert str(run_dir) in title and "lenet_300_100 on mnist1d" in title
    assert table_lines(out) == table_lines(stdout)


def test_train_marks_diverged_seeds(tmp_path):
    """SGD at learning rate 1e6 diverges: the line says so instead of a normal-looking
    accuracy, the exit code is 1, and the engine's warning names the seeds."""
    args = ["train", "--optimizer", "sgd", "--learning-rate", "1e6", "--steps", "20"]
    args += ["--eval-every", "10", "--seeds", "2", "--batch-size", "60", "--quiet"]
    with pytest.warns(DivergenceWarning, match="seed 0 at step .*seed 1 at step"):
        code, out, err = run_main(args)
    assert code == 1, err
    assert "DIVERGED, all seeds" in out and out.count("DIVERGED at step") == 2
    assert "test accuracy" not in out and "Traceback" not in err
