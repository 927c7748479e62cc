"""Resuming a lottery run: a process killed mid-run and rerun ends with exactly the results of
an uninterrupted run, and a damaged checkpoint is reported and recomputed."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxticket import cli
from jaxticket.lottery.config import LotteryConfig
from jaxticket.lottery.imp import run_lottery
from jaxticket.lottery.store import BrokenLevelWarning, RunStore

# The tiny run of tests/test_lottery.py and tests/test_cli.py (same compiled programs).
ARGS = ["lottery", "--levels", "3", "--seeds", "2", "--steps", "40", "--eval-every", "20"]
ARGS += ["--val-size", "200", "--batch-size", "60", "--rewind", "20"]
ARGS += ["--controls", "reinit,random_prune,shuffle", "--quiet"]
LAST = 3
TIMEOUT = 600  # seconds; generous for a loaded 2-core machine


from lottery_shared import compile_cache, shared_folder, shared_tiny_run  # noqa: E402, F401

# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """A copy of the uninterrupted tiny run (the CLI's ``main``, in a test process)."""

    def run(out):
        with contextlib.redirect_stdout(io.StringIO()):
            return cli.main([*ARGS, "--out", str(out)])

    run_dir, code = shared_tiny_run(tmp_path_factory, tmp_path_factory.mktemp("straight"), run)
    assert code == 0
    return run_dir


def command(out: Path) -> list[str]:
    # One CPU device, as in this test process: results are bitwise reproducible for a
    # fixed device count (a different split of the seeds changes float rounding).
    return [sys.executable, "-m", "jaxticket.cli", *ARGS, "--cpu-devices", "1", "--out", str(out)]


def subprocess_env(tmp_path_factory) -> dict[str, str]:
    return os.environ | {
        "JAX_COMPILATION_CACHE_DIR": str(shared_folder(tmp_path_factory) / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def records(run_dir: Path) -> list[dict]:
    return json.loads((run_dir / "results.json").read_text())["records"]


def assert_levels_bitwise_equal(a: Path, b: Path, level: int) -> None:
    arrays_a, records_a = RunStore(a).load_level(level)
    arrays_b, records_b = RunStore(b).load_level(level)
    assert records_a == records_b
    assert sorted(arrays_a) == sorted(arrays_b)
    for key, value in arrays_a.items():
        assert value.dtype == arrays_b[key].dtype, key
        assert np.array_equal(value, arrays_b[key]), key


@pytest.mark.slow  # a second process: ~20 s of imports, data generation and tracing
def test_killed_run_resumes_to_the_results_of_an_uninterrupted_run(
    tmp_path, tmp_path_factory, straight_run
):
    out = tmp_path / "killed"
    env = subprocess_env(tmp_path_factory)
    with open(tmp_path / "first.log", "w") as log:
        proc = subprocess.Popen(command(out), env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        try:
            while not list(out.glob("*/level_01.json")):
                assert proc.poll() is None, (tmp_path / "first.log").read_text()
                assert time.monotonic() < deadline, "level 1 never finished"
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    (run_dir,) = out.iterdir()
    # The kill landed mid-run: levels 0 and 1 are stored, the last level is not.
    done = {p.name for p in run_dir.glob("level_*.json")}
    assert {"level_00.json", "level_01.json"} <= done
    assert f"level_{LAST:02d}.json" not in done
    kept = {n: os.stat(run_dir / n) for n in ("level_00.json", "level_01.json")}

    # The same command again, to completion (in this process: the CLI's ``main``).
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert cli.main([*ARGS, "--out", str(out)]) == 0
    assert f"run directory: {run_dir}" in stdout.getvalue()
    # Finished levels were loaded, not recomputed: their record files were not rewritten.
    for name, before in kept.items():
        after = os.stat(run_dir / name)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), name

    # Bitwise the same results as the uninterrupted run: histories, accuracies, arrays.
    assert records(run_dir) == records(straight_run)
    assert (run_dir / "results.csv").read_text() == (straight_run / "results.csv").read_text()
    for level in range(LAST + 1):
        assert_levels_bitwise_equal(run_dir, straight_run, level)


# Orbax's failed restore of the damaged file leaves a callback for its closed event loop.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_truncated_checkpoint_is_reported_and_recomputed(tmp_path, straight_run):
    root = tmp_path / "runs"
    shutil.copytree(straight_run.parent, root)
    run_dir = root / straight_run.name
    data = sorted(
        (p for p in (run_dir / "checkpoints" / "1").rglob("*") if p.is_file() and "/d/" in str(p)),
        key=lambda p: p.stat().st_size,
    )
    assert data, "no orbax data files found for level 1"
    with open(data[-1], "r+b") as f:  # the largest chunk holds the weights
        f.truncate(data[-1].stat().st_size // 2)

    config = LotteryConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])
    log: list[str] = []
    with pytest.warns(BrokenLevelWarning, match="level 1 has an unreadable checkpoint"):
        store, new_records = run_lottery(config, out_dir=str(root), log=log.append)
    assert store.run_dir == run_dir
    assert log[1:] == [
        "level 0: finished earlier, loaded",
        "level 1: training",
        "level 2: finished earlier, loaded",
        "level 3: finished earlier, loaded",
    ]
    assert len(list((run_dir / "broken").iterdir())) == 1
    assert new_records == records(straight_run) == records(run_dir)
    assert_levels_bitwise_equal(run_dir, straight_run, 1)
