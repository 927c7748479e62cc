"""Resuming a lottery run: a process killed mid-run and rerun ends with exactly the results of
an uninterrupted run; a damaged checkpoint, an edited record, swapped levels or levels of
another run are reported and recomputed; a storage failure loses nothing finished."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxticket import cli
from jaxticket.lottery.config import LotteryConfig
from jaxticket.lottery.imp import run_lottery
from jaxticket.workflow.store import (
    BrokenLevelWarning,
    RunDirectoryBusyError,
    RunStore,
    StorageError,
)

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
    # As many CPU devices as this test process has: the device count names the run
    # directory, and results are bitwise reproducible for a fixed device count (a
    # different split of the seeds changes float rounding).
    devices = ["--cpu-devices", str(jax.device_count())]
    return [sys.executable, "-m", "jaxticket.cli", *ARGS, *devices, "--out", str(out)]


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
    # What a kill inside an atomic write leaves behind (named after the killed writer).
    (run_dir / f".results.json.tmp-{proc.pid}-0123abcd").write_text('{"config": {"mo')

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
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]


def copy_run(tmp_path, straight_run) -> tuple[Path, Path]:
    """A copy of the straight run: (its root, its run directory)."""
    root = tmp_path / "runs"
    shutil.copytree(straight_run.parent, root)
    return root, root / straight_run.name


def stored_config(run_dir: Path) -> LotteryConfig:
    return LotteryConfig.from_dict(json.loads((run_dir / "config.json").read_text())["config"])


def rerun(run_dir: Path, root: Path, config: LotteryConfig | None = None, *, match: str):
    """run_lottery on ``root``, every BrokenLevelWarning matching ``match``.

    Returns:
      (the records, the log lines, the warnings' messages).
    """
    log: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store, new_records = run_lottery(
            config or stored_config(run_dir), out_dir=str(root), log=log.append
        )
    broken = [str(w.message) for w in caught if issubclass(w.category, BrokenLevelWarning)]
    assert broken and all(re.search(match, m) for m in broken), broken
    assert store.run_dir == run_dir
    return new_records, log, broken


def levels_log(*training: int) -> list[str]:
    return [
        f"level {lvl}: training" if lvl in training else f"level {lvl}: finished earlier, loaded"
        for lvl in range(LAST + 1)
    ]


def test_truncated_checkpoint_is_reported_and_recomputed(tmp_path, straight_run, capfd):
    root, run_dir = copy_run(tmp_path, straight_run)
    data = sorted(
        (p for p in (run_dir / "checkpoints" / "1").rglob("*") if p.is_file() and "/d/" in str(p)),
        key=lambda p: p.stat().st_size,
    )
    assert data, "no orbax data files found for level 1"
    with open(data[-1], "r+b") as f:  # the largest chunk holds the weights
        f.truncate(data[-1].stat().st_size // 2)
    capfd.readouterr()
    new_records, log, broken = rerun(run_dir, root, match="level 1 has a damaged checkpoint")
    # One warning naming the level, the file and what was done; nothing else on stderr.
    assert len(broken) == 1 and "records moved to broken/level_01.json." in broken[0]
    assert "checkpoint deleted; it will be recomputed" in broken[0]
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err, err
    assert log[1:] == levels_log(1)
    assert len(list((run_dir / "broken").iterdir())) == 1
    assert new_records == records(straight_run) == records(run_dir)
    assert_levels_bitwise_equal(run_dir, straight_run, 1)


def test_edited_record_is_reported_and_recomputed(tmp_path, straight_run):
    root, run_dir = copy_run(tmp_path, straight_run)
    path = run_dir / "level_02.json"
    meta = json.loads(path.read_text())
    meta["records"][0]["test_accuracy_final"] = 1.0  # valid JSON, a plausible value
    path.write_text(json.dumps(meta))
    new_records, log, broken = rerun(run_dir, root, match="level 2 has a level_02.json whose")
    assert len(broken) == 1 and log[1:] == levels_log(2)
    assert new_records == records(straight_run) == records(run_dir)


def test_swapped_levels_are_reported_and_recomputed(tmp_path, straight_run):
    root, run_dir = copy_run(tmp_path, straight_run)
    for a, b in (("level_01.json", "level_02.json"), ("checkpoints/1", "checkpoints/2")):
        os.replace(run_dir / a, run_dir / "swap")
        os.replace(run_dir / b, run_dir / a)
        os.replace(run_dir / "swap", run_dir / b)
    new_records, log, broken = rerun(run_dir, root, match="holding the records of level [12]")
    assert [re.search(r"level \d", m)[0] for m in broken] == ["level 1", "level 2"]
    assert log[1:] == levels_log(1, 2)
    assert new_records == records(straight_run) == records(run_dir)
    for level in (1, 2):
        assert_levels_bitwise_equal(run_dir, straight_run, level)


def test_levels_copied_from_another_run_are_reported_and_recomputed(tmp_path, straight_run):
    # A run with one level is another run whose levels 0 and 1 train exactly like the
    # straight run's: copied in, they would pass for its own but for the run digest.
    root = tmp_path / "runs"
    stored = json.loads((straight_run / "config.json").read_text())
    config = dataclasses.replace(stored_config(straight_run), levels=1)
    short = RunStore.open(root, {**stored["config"], "levels": 1}, name=stored["name"]).run_dir
    for name in ("level_00.json", "level_01.json", "checkpoints/0", "checkpoints/1"):
        copy = shutil.copytree if (straight_run / name).is_dir() else shutil.copy
        copy(straight_run / name, short / name)
    new_records, log, broken = rerun(short, root, config, match="copied from another run")
    assert len(broken) == 2 and log[1:] == ["level 0: training", "level 1: training"]
    assert new_records == [r for r in records(straight_run) if r["level"] <= 1]


def test_storage_failure_mid_run_loses_nothing_finished(tmp_path, straight_run, monkeypatch):
    root, run_dir = copy_run(tmp_path, straight_run)
    for level in (2, 3):  # levels 2 and 3 still to compute
        (run_dir / f"level_{level:02d}.json").unlink()
        shutil.rmtree(run_dir / "checkpoints" / str(level))
    save = ocp.CheckpointManager.save

    def read_only_from_level_2(self, step, *args, **kwargs):
        if step >= 2:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", read_only_from_level_2)
    with pytest.raises(StorageError) as info:
        run_lottery(stored_config(run_dir), out_dir=str(root))
    assert str(info.value) == f"cannot save level 2 in {run_dir}: Read-only file system"
    monkeypatch.undo()
    assert RunStore(run_dir).finished_levels() == [0, 1]
    assert {r["level"] for r in records(run_dir)} == {0, 1}  # results of the finished levels
    log: list[str] = []
    _, new_records = run_lottery(stored_config(run_dir), out_dir=str(root), log=log.append)
    assert log[1:] == levels_log(2, 3)
    assert new_records == records(straight_run) == records(run_dir)


def test_a_second_run_on_the_same_directory_is_refused(tmp_path, straight_run):
    root, run_dir = copy_run(tmp_path, straight_run)
    before = (run_dir / "results.json").read_text()
    with RunStore(run_dir).locked():  # as another process running the same command would
        with pytest.raises(RunDirectoryBusyError, match=f"{run_dir} is in use by this process"):
            run_lottery(stored_config(run_dir), out_dir=str(root))
    assert (run_dir / "results.json").read_text() == before
