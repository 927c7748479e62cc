"""The run store's guards: sealed level files, storage errors, the run lock, tmp cleanup."""

from __future__ import annotations

import errno
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jaxticket.workflow import store_files
from jaxticket.workflow.store import (
    BrokenLevelWarning,
    RunDirectoryBusyError,
    RunStore,
    StorageError,
)
from jaxticket.workflow.store_seal import seal, seal_problem

CONFIG = {"model": "lenet_300_100", "dataset": "mnist1d", "levels": 3}


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "trained/dense/kernel": rng.normal(size=(2, 30, 20)).astype(np.float32),
        "mask/dense/kernel": rng.random((2, 30, 20)) > 0.5,
        "trained/out/bias": np.arange(4, dtype=np.int32) + seed,
    }


def records(level, accuracy=0.9):
    return [{"level": level, "variant": "ticket", "seed": s, "test_accuracy_final": accuracy}
            for s in range(2)]  # fmt: skip


def saved_store(tmp_path, levels=(0, 1, 2), config=CONFIG):
    store = RunStore.open(tmp_path, config)
    for level in levels:
        store.save_level(level, arrays(level), records(level, 0.5 + level / 10))
    return store


def one_warning(store, level, match):
    """load_level(level) returns None with exactly one BrokenLevelWarning matching ``match``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load_level(level) is None
    broken = [w for w in caught if issubclass(w.category, BrokenLevelWarning)]
    assert len(broken) == 1, [str(w.message) for w in caught]
    assert __import__("re").search(match, str(broken[0].message)), str(broken[0].message)
    return str(broken[0].message)


# -- sealed level files -----------------------------------------------------------------------


def test_valid_json_edit_of_a_record_is_detected(tmp_path):
    store = saved_store(tmp_path)
    path = store.run_dir / "level_01.json"
    meta = json.loads(path.read_text())
    meta["records"][1]["test_accuracy_final"] = 0.99  # still valid JSON, still well formed
    path.write_text(json.dumps(meta))
    message = one_warning(store, 1, "level 1 has a level_01.json whose records .* were edited")
    assert "records moved to broken/level_01.json." in message and "checkpoint deleted" in message
    assert store.finished_levels() == [0, 2]
    assert [p.name.split(".")[0] for p in (store.run_dir / "broken").iterdir()] == ["level_01"]
    assert store.load_level(0)[1] == records(0, 0.5)  # the other levels are untouched


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(JSON, max_size=3), st.lists(JSON, max_size=3), st.integers(0, 9))
def test_seal_passes_its_own_records_and_fails_any_other(records_a, records_b, level):
    run = "r" * 64
    fields = {"level": level, "run": run, "arrays": {}, "arrays_digest": "a", "files": {}}
    meta = {**fields, "records": records_a}
    meta["digest"] = seal(meta)
    meta = json.loads(json.dumps(meta))  # as read back from level_LL.json (NaN included)
    assert seal_problem(meta, level=level, run=run, name="f") is None
    assert "holding the records of level" in seal_problem(meta, level=level + 1, run=run, name="f")
    assert "another run" in seal_problem(meta, level=level, run="s" * 64, name="f")
    assume(store_files.canonical(records_a) != store_files.canonical(records_b))
    edited = {**meta, "records": json.loads(json.dumps(records_b))}
    assert "were edited" in seal_problem(edited, level=level, run=run, name="f")


def test_non_finite_and_numpy_records_load_as_saved(tmp_path):
    # Diverged runs record NaN and inf losses: they must not look like an edit.
    store = RunStore.open(tmp_path, CONFIG)
    odd = [{"loss": float("nan"), "best": np.float32(np.inf), "h": [np.float32(0.1), -np.inf]}]
    store.save_level(0, arrays(), odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, loaded = RunStore(store.run_dir).load_level(0)
    assert json.dumps(loaded) == json.dumps(json.loads(store_files.dumps(odd)))


def test_swapped_levels_are_detected(tmp_path):
    store = saved_store(tmp_path)
    run, ckpt = store.run_dir, store.run_dir / "checkpoints"
    os.replace(run / "level_01.json", run / "tmp.json")
    os.replace(run / "level_02.json", run / "level_01.json")
    os.replace(run / "tmp.json", run / "level_02.json")
    os.replace(ckpt / "1", ckpt / "tmp")
    os.replace(ckpt / "2", ckpt / "1")
    os.replace(ckpt / "tmp", ckpt / "2")
    one_warning(store, 1, "level 1 has a level_01.json holding the records of level 2")
    one_warning(store, 2, "level 2 has a level_02.json holding the records of level 1")
    assert store.finished_levels() == [0]


def test_swapped_checkpoints_alone_are_detected(tmp_path):
    store = saved_store(tmp_path)
    ckpt = store.run_dir / "checkpoints"
    os.replace(ckpt / "1", ckpt / "tmp")
    os.replace(ckpt / "2", ckpt / "1")
    os.replace(ckpt / "tmp", ckpt / "2")
    one_warning(store, 1, r"level 1 has a damaged checkpoint \(file ")
    one_warning(store, 2, r"level 2 has a damaged checkpoint \(file ")


def test_level_copied_from_another_run_is_detected(tmp_path):
    store = saved_store(tmp_path / "a", levels=(0,))
    other = saved_store(tmp_path / "b", config={**CONFIG, "levels": 5})
    (store.run_dir / "level_01.json").write_bytes((other.run_dir / "level_01.json").read_bytes())
    shutil.copytree(other.run_dir / "checkpoints" / "1", store.run_dir / "checkpoints" / "1")
    assert store.finished_levels() == [0, 1]
    one_warning(store, 1, "level 1 has a level_01.json copied from another run")
    assert other.load_level(1)[1] == records(1, 0.6)  # the source run is untouched


@pytest.mark.parametrize("change", ["added", "removed", "flipped"])
def test_changed_checkpoint_files_are_named(tmp_path, change):
    store = saved_store(tmp_path, levels=(0,))
    step = store.run_dir / "checkpoints" / "0"
    files = sorted((p for p in step.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    name = files[-1].relative_to(step).as_posix()
    if change == "added":
        (step / "default" / "stray").write_text("x")
        match = "file default/stray was not part of the saved checkpoint"
    elif change == "removed":
        files[-1].unlink()
        match = f"file {name} is missing"
    else:
        data = bytearray(files[-1].read_bytes())
        data[len(data) // 2] ^= 1  # one bit, same size
        files[-1].write_bytes(bytes(data))
        match = f"file {name} differs from the saved one"
    one_warning(store, 0, match)


def test_damaged_checkpoint_prints_nothing_but_one_warning(tmp_path, capfd):
    # A checkpoint of a few MB: orbax's concurrent reads, failing on the truncated file,
    # used to print 2-20 "Event loop is closed" tracebacks from its threads. The damage
    # is now found before orbax reads anything.
    store = RunStore.open(tmp_path, CONFIG)
    rng = np.random.default_rng(0)
    trees = ("init", "rewind", "trained")
    big = {f"{t}/layer{i}/kernel": rng.normal(size=(2, 300, 100)).astype(np.float32)
           for i in range(3) for t in trees}  # fmt: skip
    big.update({f"mask/layer{i}/kernel": rng.random((2, 300, 100)) > 0.5 for i in range(3)})
    store.save_level(0, big, records(0))
    data = [p for p in (store.run_dir / "checkpoints" / "0").rglob("*") if "/d/" in str(p)]
    largest = max((p for p in data if p.is_file()), key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as f:
        f.truncate(largest.stat().st_size // 2)
    capfd.readouterr()
    one_warning(store, 0, r"level 0 has a damaged checkpoint \(file .* bytes")
    gc.collect()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err, err


def test_checkpoint_without_records_says_only_that(tmp_path):
    store = saved_store(tmp_path, levels=(0,))
    (store.run_dir / "level_00.json").unlink()
    message = one_warning(store, 0, "level 0 has a checkpoint but no records")
    assert "; checkpoint deleted; it will be recomputed" in message and "moved" not in message
    assert not (store.run_dir / "broken").exists()


def test_level_json_from_an_older_store_is_recomputed(tmp_path):
    store = saved_store(tmp_path, levels=(0,))
    path = store.run_dir / "level_00.json"
    meta = json.loads(path.read_text())
    path.write_text(json.dumps({k: meta[k] for k in ("level", "arrays", "records")}))
    one_warning(store, 0, "level_00.json without run, arrays_digest, files, digest")


# -- storage errors -----------------------------------------------------------------------


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def erofs(*args, **kwargs):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS))


def assert_one_line(err, *fragments):
    text = str(err)
    assert "\n" not in text and isinstance(err, OSError), text
    for fragment in fragments:
        assert fragment in text, text


def test_out_under_a_regular_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError) as info:
        RunStore.open(tmp_path / "file" / "runs", CONFIG)
    assert_one_line(info.value, "cannot create run directory", str(tmp_path / "file"))
    assert info.value.errno in (errno.ENOTDIR, errno.EEXIST)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o555)
    with pytest.raises(StorageError, match="cannot create run directory .*ro/run-"):
        RunStore.open(tmp_path / "ro", CONFIG)


def test_read_only_file_system_on_open(tmp_path, monkeypatch):
    monkeypatch.setattr(store_files.os, "replace", erofs)
    with pytest.raises(StorageError) as info:
        RunStore.open(tmp_path, CONFIG)
    assert_one_line(info.value, "cannot write", "config.json", "Read-only file system")
    assert info.value.errno == errno.EROFS
    assert not [p for p in next(tmp_path.iterdir()).iterdir() if ".tmp-" in p.name]


def test_full_disk_keeps_the_old_results_and_no_tmp_file(tmp_path, monkeypatch):
    store = RunStore.open(tmp_path, CONFIG)
    store.write_results(CONFIG, records(0))
    before = (store.run_dir / "results.json").read_text()
    monkeypatch.setattr(store_files.os, "fsync", enospc)
    with pytest.raises(StorageError) as info:
        store.write_results(CONFIG, records(0) + records(1))
    assert_one_line(info.value, f"cannot write {store.run_dir}/results.json", "No space left")
    assert (store.run_dir / "results.json").read_text() == before
    assert not [p for p in store.run_dir.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.EROFS, "Read-only file system"), ": Read-only file system"),
        (ValueError("PERMISSION_DENIED: writing\n(details)"), ": ValueError: PERMISSION_DENIED"),
    ],
)
def test_failed_checkpoint_save_loses_nothing_finished(tmp_path, monkeypatch, error, said):
    store = saved_store(tmp_path, levels=(0, 1))
    save = ocp.CheckpointManager.save

    def failing(self, step, *args, **kwargs):
        if step == 2:
            raise error
        return save(self, step, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", failing)
    with pytest.raises(StorageError) as info:
        store.save_level(2, arrays(2), records(2))
    assert_one_line(info.value, f"cannot save level 2 in {store.run_dir}{said}")
    monkeypatch.undo()
    assert store.finished_levels() == [0, 1]
    assert store.load_level(1)[1] == records(1, 0.6)
    store.save_level(2, arrays(2), records(2))  # the rerun resumes
    assert store.load_level(2)[1] == records(2)


def test_failed_records_write_leaves_level_unfinished(tmp_path, monkeypatch):
    store = saved_store(tmp_path, levels=(0,))
    monkeypatch.setattr(store_files.os, "fsync", enospc)
    with pytest.raises(StorageError, match="cannot write .*level_01.json: No space left"):
        store.save_level(1, arrays(1), records(1))
    monkeypatch.undo()
    assert store.finished_levels() == [0]
    assert not (store.run_dir / "checkpoints" / "1").exists()  # no checkpoint without records
    assert not [p for p in store.run_dir.iterdir() if ".tmp-" in p.name]


def test_unreadable_level_file_is_an_error_not_damage(tmp_path, monkeypatch):
    store = saved_store(tmp_path, levels=(0,))
    monkeypatch.setattr(store_files.Path, "read_bytes", lambda self: erofs())
    with pytest.raises(StorageError, match="cannot read .*level_00.json: Read-only"):
        store.load_level(0)
    monkeypatch.undo()
    assert store.load_level(0)[1] == records(0, 0.5)  # nothing was moved or deleted


# -- the run lock ------------------------------------------------------------------------------

HOLDER = """
import sys
from jaxticket.workflow.store import RunStore
with RunStore(sys.argv[1]).locked():
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_second_process_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(store.run_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunDirectoryBusyError) as info:
            with store.locked():
                pass
        assert_one_line(info.value, f"{store.run_dir} is in use by process {holder.pid};")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    finally:
        holder.kill()
        holder.wait()
    # The killed holder's pid is still in the lock file, but its lock died with it.
    assert (store.run_dir / ".lock").read_text().strip() == str(holder.pid)
    with store.locked() as held:
        assert held is store
        assert (store.run_dir / ".lock").read_text().strip() == str(os.getpid())
    with store.locked():  # released on exit
        pass


def test_lock_refuses_this_process_twice_and_can_wait(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    release, got = threading.Event(), threading.Event()
    with store.locked():
        with pytest.raises(RunDirectoryBusyError, match="in use by this process"):
            with RunStore(store.run_dir).locked():
                pass

        def waiter():
            with RunStore(store.run_dir).locked(wait=True):
                got.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        assert not got.is_set()  # it cannot have the lock while this block holds it
        release.set()
    thread.join(timeout=60)
    assert got.is_set()


def test_lock_after_error_inside_is_released(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    with pytest.raises(KeyError):
        with store.locked():
            raise KeyError("boom")
    with store.locked():
        pass


# -- tmp file cleanup -------------------------------------------------------------------------


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_open_removes_tmp_files_of_dead_writers_only(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    dead, live = dead_pid(), os.getppid()
    names = [
        f".results.json.tmp-{dead}",  # the older naming, without a token
        f".level_02.json.tmp-{dead}-0a1b2c3d",
        f".results.json.tmp-{live}-0a1b2c3d",  # a live writer's: kept
        f".level_01.json.tmp-{os.getpid()}-ff",  # this process's own: kept
    ]
    for name in names:
        (store.run_dir / name).write_text("{half")
    RunStore.open(tmp_path, CONFIG)
    left = sorted(p.name for p in store.run_dir.iterdir() if ".tmp-" in p.name)
    assert left == sorted(names[2:])


def test_locked_removes_every_tmp_file_and_unfinalized_checkpoint(tmp_path):
    store = saved_store(tmp_path, levels=(0,))
    (store.run_dir / f".results.json.tmp-{os.getppid()}-ab").write_text("{half")
    stray = store.run_dir / "checkpoints" / "3.orbax-checkpoint-tmp-1234"
    stray.mkdir()
    (stray / "x").write_text("partial")
    with store.locked():
        assert not [p for p in store.run_dir.iterdir() if ".tmp-" in p.name]
        assert not stray.exists()
    assert store.load_level(0)[1] == records(0, 0.5)


# -- reading results ----------------------------------------------------------------------


def test_read_results_on_non_utf8_and_oddly_typed_files(tmp_path):
    path = tmp_path / "results.json"
    path.write_bytes(b'{"config": {}, "records": ["\xff\xfe"]}')
    with pytest.raises(ValueError, match=r"results.json is not UTF-8 text \(byte 28: 0xff\)"):
        RunStore.read_results(tmp_path)
    path.write_text(json.dumps({"config": {}, "records": [{"level": 0}, 3]}))
    with pytest.raises(ValueError, match=r"records\[1\] must be a dict, got int"):
        RunStore.read_results(tmp_path)
