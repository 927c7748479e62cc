"""Bad-input suite of the run store: each bad input or injected fault gets one clear line
(an exception naming the field or path) or one BrokenLevelWarning, never a traceback from
deep inside or a silently wrong result."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import warnings

import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxticket.workflow import store_files
from jaxticket.workflow.store import (
    BrokenLevelWarning,
    RunDirectoryBusyError,
    RunStore,
    StorageError,
)

CONFIG = {"model": "lenet_300_100", "levels": 2}
ARRAYS = {"trained/kernel": np.arange(12, dtype=np.float32).reshape(3, 4)}
RECORDS = [{"level": 0, "seed": 0, "test_accuracy_final": 0.5}]


def fail_with(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def saved(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, ARRAYS, RECORDS)
    store.save_level(1, {"trained/kernel": np.ones((3, 4), np.float32)}, RECORDS)
    return store


def write_results_file(tmp_path, content: bytes):
    (tmp_path / "results.json").write_bytes(content)
    return lambda: RunStore.read_results(tmp_path)


# -- errors: (setup(tmp_path, monkeypatch) -> call, exception type, message fragment) ------


def _under_file(tmp_path, mp):
    (tmp_path / "f").write_text("")
    return lambda: RunStore.open(tmp_path / "f", CONFIG)


def _held_lock(tmp_path, mp):
    store = RunStore.open(tmp_path, CONFIG)
    held = store.locked()
    held.__enter__()

    def call():
        try:
            with RunStore(store.run_dir).locked():
                pass
        finally:
            held.__exit__(None, None, None)

    return call


def _save_erofs(tmp_path, mp):
    store = saved(tmp_path)
    mp.setattr(ocp.CheckpointManager, "save", fail_with(errno.EROFS))
    return lambda: store.save_level(2, ARRAYS, RECORDS)


def _results_enospc(tmp_path, mp):
    store = RunStore.open(tmp_path, CONFIG)
    mp.setattr(store_files.os, "fsync", fail_with(errno.ENOSPC))
    return lambda: store.write_results(CONFIG, RECORDS)


def _config_json_not_utf8(tmp_path, mp):
    store = RunStore.open(tmp_path, CONFIG)
    (store.run_dir / "config.json").write_bytes(b"\xc3\x28")
    return lambda: RunStore.open(tmp_path, CONFIG)


def _store_of(tmp_path):
    return RunStore.open(tmp_path, CONFIG)


ERRORS = {
    "name with a slash": (
        lambda t, mp: lambda: RunStore.open(t, CONFIG, name="a/b"),
        ValueError,
        "name 'a/b'",
    ),
    "empty name": (lambda t, mp: lambda: RunStore.open(t, CONFIG, name=""), ValueError, "name ''"),
    "name '..'": (lambda t, mp: lambda: RunStore.open(t, CONFIG, name=".."), ValueError, "'..'"),
    "config not JSON": (
        lambda t, mp: lambda: RunStore.open(t, {"x": object()}),
        TypeError,
        "not JSON serial",
    ),
    "config.json not UTF-8": (_config_json_not_utf8, ValueError, "config.json is not UTF-8"),
    "--out under a file": (_under_file, StorageError, "cannot create run directory"),
    "level -1": (
        lambda t, mp: lambda: _store_of(t).save_level(-1, ARRAYS, []),
        ValueError,
        "int >= 0",
    ),
    "level True": (
        lambda t, mp: lambda: _store_of(t).save_level(True, ARRAYS, []),
        ValueError,
        "True",
    ),
    "level 1.5": (
        lambda t, mp: lambda: _store_of(t).save_level(1.5, ARRAYS, []),
        ValueError,
        "1.5",
    ),
    "no arrays": (lambda t, mp: lambda: _store_of(t).save_level(0, {}, []), ValueError, "no arr"),
    "object array": (
        lambda t, mp: lambda: _store_of(t).save_level(0, {"a": np.array([None])}, []),
        TypeError,
        "array 'a' has dtype object",
    ),
    "records not JSON": (
        lambda t, mp: lambda: _store_of(t).save_level(0, ARRAYS, [{"x": {1, 2}}]),
        TypeError,
        "level 0's records: value of type set is not JSON",
    ),
    "load level 'a'": (lambda t, mp: lambda: _store_of(t).load_level("a"), ValueError, "'a'"),
    "results missing": (
        lambda t, mp: lambda: RunStore.read_results(t),
        ValueError,
        "results.json does not",
    ),
    "results not UTF-8": (
        lambda t, mp: write_results_file(t, b'{"a": "\xe9"}'),
        ValueError,
        "not UTF-8 text",
    ),
    "results not JSON": (lambda t, mp: write_results_file(t, b"{"), ValueError, "not valid JSON"),
    "results a list": (
        lambda t, mp: write_results_file(t, b"[]"),
        ValueError,
        "needs a 'records' list",
    ),
    "results config a list": (
        lambda t, mp: write_results_file(t, b'{"config": [], "records": []}'),
        ValueError,
        "needs a 'config' dict",
    ),
    "results record a string": (
        lambda t, mp: write_results_file(t, b'{"config": {}, "records": ["r"]}'),
        ValueError,
        "records[0] must be a dict, got str",
    ),
    "results nested deeply": (
        lambda t, mp: write_results_file(t, b"[" * 200_000),
        ValueError,
        "nested too deeply",
    ),
    "full disk": (_results_enospc, StorageError, "results.json: No space left on device"),
    "read-only fs mid-run": (_save_erofs, StorageError, "level 2 in"),
    "run dir in use": (_held_lock, RunDirectoryBusyError, "is in use by this process"),
}


@pytest.mark.parametrize("case", ERRORS, ids=list(ERRORS))
def test_bad_input_raises_one_clear_line(tmp_path, monkeypatch, case):
    setup, kind, fragment = ERRORS[case]
    call = setup(tmp_path, monkeypatch)
    with pytest.raises(kind) as info:
        call()
    assert type(info.value) is kind, type(info.value)
    assert fragment in str(info.value) and "\n" not in str(info.value), str(info.value)


# -- damage found on load: (damage(store), BrokenLevelWarning fragment) --------------------


def _swap(store):
    run = store.run_dir
    for a, b in ((run / "level_00.json", run / "level_01.json"),
                 (run / "checkpoints" / "0", run / "checkpoints" / "1")):  # fmt: skip
        os.replace(a, run / "x")
        os.replace(b, a)
        os.replace(run / "x", b)


def _truncate(store):
    step = store.run_dir / "checkpoints" / "0"
    largest = max((p for p in step.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(largest, "r+b") as f:
        f.truncate(1)


def _copy_other_run(store):
    other = RunStore.open(store.run_dir.parent / "other", {**CONFIG, "levels": 3})
    other.save_level(0, ARRAYS, RECORDS)
    shutil.copy(other.run_dir / "level_00.json", store.run_dir / "level_00.json")


def _set(key, value):
    return lambda store: edit_level_json_in(store, lambda m: m.__setitem__(key, value))


def edit_level_json_in(store, edit):
    path = store.run_dir / "level_00.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


DAMAGE = {
    "record value edited": (
        lambda s: edit_level_json_in(s, lambda m: m["records"][0].update(seed=7)),
        "were edited",
    ),
    "record added": (
        lambda s: edit_level_json_in(s, lambda m: m["records"].append({})),
        "were edited",
    ),
    "level number edited": (_set("level", 5), "holding the records of level 5"),
    "levels swapped": (_swap, "holding the records of level 1"),
    "copied from another run": (_copy_other_run, "copied from another run"),
    "records not a list": (_set("records", {"a": 1}), "records are not a list"),
    "digest removed": (
        lambda s: edit_level_json_in(s, lambda m: m.pop("digest")),
        "without digest",
    ),
    "level json not UTF-8": (
        lambda s: (s.run_dir / "level_00.json").write_bytes(b"\xff"),
        "not UTF-8 text",
    ),
    "level json truncated": (
        lambda s: (s.run_dir / "level_00.json").write_text('{"level": 0'),
        "not valid JSON",
    ),
    "checkpoint file truncated": (_truncate, "has a damaged checkpoint (file "),
    "checkpoint deleted": (
        lambda s: shutil.rmtree(s.run_dir / "checkpoints" / "0"),
        "has no finalized checkpoint",
    ),
    "records deleted": (
        lambda s: (s.run_dir / "level_00.json").unlink(),
        "has a checkpoint but no records",
    ),
}


@pytest.mark.parametrize("case", DAMAGE, ids=list(DAMAGE))
def test_damaged_level_warns_once_and_is_recomputed(tmp_path, case):
    damage, fragment = DAMAGE[case]
    store = saved(tmp_path)
    damage(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.load_level(0) is None
    messages = [str(w.message) for w in caught if issubclass(w.category, BrokenLevelWarning)]
    assert len(messages) == 1 and fragment in messages[0], messages
    assert re.search(r"level 0 .*; (records moved to broken/|checkpoint deleted)", messages[0])
    assert 0 not in store.finished_levels()
    store.save_level(0, ARRAYS, RECORDS)  # recomputing it works
    loaded, records = store.load_level(0)
    assert records == RECORDS and np.array_equal(loaded["trained/kernel"], ARRAYS["trained/kernel"])
