from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxticket.workflow.store import (
    BrokenLevelWarning,
    RunStore,
    config_digest,
    flatten_tree,
    unflatten_into,
)

CONFIG = {
    "model": "lenet_300_100",
    "dataset": "mnist1d",
    "levels": 3,
    "layer_rates": [["o/*", 0.5]],
}


def make_arrays(seed=0, seeds=3):
    rng = np.random.default_rng(seed)
    return {
        "rewind/dense1/kernel": rng.normal(size=(seeds, 40, 30)).astype(np.float32),
        "mask/dense1/kernel": rng.random((seeds, 40, 30)) > 0.5,
        "trained/layers/0/bias": jnp.asarray(rng.integers(-5, 5, (seeds, 7)), jnp.int32),
        "scalar": np.float32(1.5),
    }


def make_records(level=0):
    return [
        {
            "level": level,
            "variant": "ticket",
            "seed": s,
            "remaining": np.float32(0.8**level),
            "layer_remaining": {"dense1/kernel": 0.8**level, "output/kernel": 0.9**level},
            "test_accuracy_final": 0.9,
            "history": {"step": [0, 10], "test_accuracy": [0.1, 0.9]},
        }
        for s in range(2)
    ]


def assert_bitwise_equal(loaded, arrays):
    assert sorted(loaded) == sorted(arrays)
    for k, v in arrays.items():
        v = np.asarray(v)
        assert loaded[k].dtype == v.dtype and loaded[k].shape == v.shape, k
        assert loaded[k].tobytes() == v.tobytes(), k


def data_files(store, level):
    files = [p for p in (store.run_dir / "checkpoints" / str(level)).rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_size)


def test_same_config_same_dir_different_config_different_dir(tmp_path):
    a = RunStore.open(tmp_path, CONFIG, name="lenet")
    b = RunStore.open(tmp_path, dict(reversed(list(CONFIG.items()))), name="lenet")
    c = RunStore.open(tmp_path, {**CONFIG, "levels": 4}, name="lenet")
    assert a.run_dir == b.run_dir != c.run_dir
    assert a.run_dir.name == "lenet-" + config_digest(CONFIG)[:12]
    stored = json.loads((a.run_dir / "config.json").read_text())
    assert stored == {"name": "lenet", "digest": config_digest(CONFIG), "config": CONFIG}
    assert RunStore.open(tmp_path, CONFIG).run_dir.name.startswith("run-")


def test_prefix_collision_and_bad_inputs(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    stored = json.loads((store.run_dir / "config.json").read_text())
    stored["digest"] = "0" * 64  # same directory name, different full digest
    (store.run_dir / "config.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="different config"):
        RunStore.open(tmp_path, CONFIG)
    (store.run_dir / "config.json").write_text("{broken")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunStore.open(tmp_path, CONFIG)
    with pytest.raises(ValueError, match="plain directory name"):
        RunStore.open(tmp_path, CONFIG, name="a/b")
    with pytest.raises(TypeError, match="not JSON serializable"):
        RunStore.open(tmp_path, {"x": object()})
    other = RunStore.open(tmp_path, {"x": 1})
    with pytest.raises(ValueError, match="no arrays"):
        other.save_level(0, {}, [])
    with pytest.raises(ValueError, match="int >= 0"):
        other.save_level(-1, {"a": np.zeros(2)}, [])
    with pytest.raises(TypeError, match="'a'.*object"):
        other.save_level(0, {"a": np.array([None])}, [])


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_digest_ignores_key_order(config):
    assert config_digest(config) == config_digest(dict(reversed(list(config.items()))))


def test_round_trip_bitwise(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    arrays, records = make_arrays(), make_records(1)
    store.save_level(1, arrays, records)
    loaded, loaded_records = RunStore(store.run_dir).load_level(1)
    assert_bitwise_equal(loaded, arrays)
    assert loaded_records == json.loads(json.dumps(records, default=float))
    assert store.load_level(0) is None
    store.save_level(1, make_arrays(seed=1), records)  # a re-save replaces the level
    assert_bitwise_equal(store.load_level(1)[0], make_arrays(seed=1))


def test_none_leaf_template_round_trip(tmp_path):
    params = {"dense1": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}, "out": {"kernel": 2.0}}
    mask = {
        "dense1": {"kernel": jnp.array([[True, False]] * 3), "bias": None},
        "out": {"kernel": None},
    }
    flat = {**flatten_tree(params, "rewind"), **flatten_tree(mask, "mask")}
    assert sorted(flat) == [
        "mask/dense1/kernel", "rewind/dense1/bias", "rewind/dense1/kernel", "rewind/out/kernel"
    ]  # fmt: skip
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, flat, [])
    loaded, _ = store.load_level(0)
    back = unflatten_into(mask, loaded, "mask")
    assert back["dense1"]["bias"] is None and back["out"]["kernel"] is None
    assert np.array_equal(back["dense1"]["kernel"], mask["dense1"]["kernel"])
    assert unflatten_into(params, loaded, "rewind")["out"]["kernel"] == 2.0
    with pytest.raises(ValueError, match="'dense1/bias'"):
        unflatten_into(params, loaded, "mask")


def test_finished_levels_and_interrupted_save(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    assert store.finished_levels() == []
    for level in (0, 1, 2):
        store.save_level(level, make_arrays(level), make_records(level))
    assert store.finished_levels() == [0, 1, 2]
    # Killed while orbax wrote level 2: its directory never got its final name.
    ckpts = store.run_dir / "checkpoints"
    os.replace(ckpts / "2", ckpts / "2.orbax-checkpoint-tmp-123")
    assert store.finished_levels() == [0, 1]
    with pytest.warns(BrokenLevelWarning, match="level 2 has no finalized checkpoint"):
        assert store.load_level(2) is None
    # Killed after the checkpoint was finalized but before its records were written.
    (store.run_dir / "level_01.json").unlink()
    assert store.finished_levels() == [0]
    with pytest.warns(BrokenLevelWarning, match="level 1 .*no records.*; checkpoint deleted;"):
        assert store.load_level(1) is None
    # A half-written JSON tmp file is never taken for a finished level.
    (store.run_dir / ".level_03.json.tmp-99").write_text('{"level": 3, "arr')
    assert store.finished_levels() == [0]
    store.save_level(2, make_arrays(2), make_records(2))  # recompute works after cleanup
    assert store.finished_levels() == [0, 2]
    assert not list(ckpts.glob("*tmp*"))  # orbax removed the leftover tmp dir


def test_truncated_array_file_warns_and_returns_none(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, make_arrays(), make_records())
    largest = data_files(store, 0)[-1]  # the chunk holding the float32 kernel
    with open(largest, "r+b") as f:
        f.truncate(largest.stat().st_size // 2)
    damaged = r"level 0 has a damaged checkpoint \(file default/\S+ has \d+ bytes, \d+ were saved\)"
    done = r"; records moved to broken/level_00\.json\.\d+, checkpoint deleted; it will be"
    with pytest.warns(BrokenLevelWarning, match=damaged + done):
        assert store.load_level(0) is None
    assert store.finished_levels() == [] and store.load_level(0) is None
    assert len(list((store.run_dir / "broken").iterdir())) == 1


def test_corrupt_json_warns_and_returns_none(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, make_arrays(), make_records())
    path = store.run_dir / "level_00.json"
    path.write_text(path.read_text()[:50])
    assert store.finished_levels() == []
    with pytest.warns(BrokenLevelWarning, match="level 0 has an unreadable level_00.json"):
        assert store.load_level(0) is None
    assert not path.exists() and store.finished_levels() == []


def test_silently_changed_arrays_fail_digest(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, make_arrays(seed=0), make_records())
    other = RunStore.open(tmp_path / "other", CONFIG)
    other.save_level(0, make_arrays(seed=1), make_records())
    target = store.run_dir / "checkpoints" / "0"
    shutil.rmtree(target)  # same names, dtypes and shapes; different bytes
    shutil.copytree(other.run_dir / "checkpoints" / "0", target)
    with pytest.warns(BrokenLevelWarning, match="level 0 has a damaged checkpoint"):
        assert store.load_level(0) is None
    assert store.finished_levels() == []


def test_arrays_orbax_returns_wrong_fail_digest(tmp_path, monkeypatch):
    # Intact files that orbax decodes to other values (a reader bug) still fail the digest.
    store = RunStore.open(tmp_path, CONFIG)
    store.save_level(0, make_arrays(seed=0), make_records())
    restore = ocp.CheckpointManager.restore

    def altered(self, *args, **kwargs):
        arrays = dict(restore(self, *args, **kwargs))
        arrays["scalar"] = np.float32(2.5)
        return arrays

    monkeypatch.setattr(ocp.CheckpointManager, "restore", altered)
    with pytest.warns(BrokenLevelWarning, match="level 0 failed its digest check"):
        assert store.load_level(0) is None
    assert store.finished_levels() == []


def test_results_json_and_csv(tmp_path):
    store = RunStore.open(tmp_path, CONFIG)
    records = make_records(0) + make_records(1)
    store.write_results(CONFIG, records)
    results = RunStore.read_results(store.run_dir)
    assert results["config"] == CONFIG and len(results["records"]) == 4
    assert results["records"][3]["history"] == records[3]["history"]
    with open(store.run_dir / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "level", "variant", "seed", "remaining", "test_accuracy_final",
        "remaining:dense1/kernel", "remaining:output/kernel",
    ]  # fmt: skip
    assert float(rows[2]["remaining:output/kernel"]) == pytest.approx(0.9)
    assert rows[3]["level"] == "1" and rows[3]["seed"] == "1"
    assert not [p for p in Path(store.run_dir).iterdir() if "tmp" in p.name]


def test_read_results_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        RunStore.read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        RunStore.read_results(tmp_path)
    (tmp_path / "results.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="'records' list"):
        RunStore.read_results(tmp_path)


def test_relative_root_round_trip(tmp_path, monkeypatch):
    # The CLI's default --out is the relative "runs"; orbax needs absolute paths.
    monkeypatch.chdir(tmp_path)
    store = RunStore.open("runs", {"a": 1})
    arrays, records = make_arrays(), make_records(0)
    store.save_level(0, arrays, records)
    loaded, got = RunStore.open("runs", {"a": 1}).load_level(0)
    assert got == records
    for name, value in arrays.items():
        np.testing.assert_array_equal(np.asarray(loaded[name]), value)
