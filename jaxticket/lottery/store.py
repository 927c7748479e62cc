"""On-disk run store: one directory per experiment config, one checkpoint per level.

Layout of ``root/<name>-<digest[:12]>/``::

    config.json        {"name", "digest", "config"}; digest = sha256 of the canonical config
    checkpoints/<L>/   orbax checkpoint of level L's arrays (finalized by an atomic rename)
    level_LL.json      level L's records, array names/dtypes/shapes and their sha256 digest
    results.json/csv   the final results (``write_results``)
    broken/            records of levels found corrupt, moved aside for inspection

A level is finished only when its ``level_LL.json`` exists; that file is written last, by an
atomic rename, after orbax has finalized the checkpoint. A process killed at any moment thus
leaves either a finished level or no ``level_LL.json`` (orbax ignores its unfinalized
``<L>.orbax-checkpoint-tmp*`` directories; saving level L again removes them).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp

from jaxticket._paths import leaves_with_paths, map_with_path_str

_LEVEL_FILE = re.compile(r"level_(\d+)\.json")


class BrokenLevelWarning(UserWarning):
    """A stored level was unreadable or corrupt; it was moved aside and must be recomputed."""


def config_digest(config: dict) -> str:
    """Stable sha256 hex digest of ``config``'s canonical JSON (sorted keys, no spaces)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Flat ``{"prefix/leaf/path": array}`` dict of a pytree; ``None`` leaves are skipped.

    Args:
      tree: a pytree of arrays (e.g. params or a mask with ``None`` leaves).
      prefix: prepended to every path with a ``/`` (e.g. ``"mask"``); ``""`` for none.

    Returns:
      A dict from path string to leaf, in flattening order.
    """
    return {_join(prefix, path): leaf for path, leaf in leaves_with_paths(tree)}


def unflatten_into(template: Any, flat: dict[str, Any], prefix: str = "") -> Any:
    """Inverse of ``flatten_tree``: ``template``'s structure with leaves taken from ``flat``.

    Args:
      template: a pytree with the wanted structure; its ``None`` leaves stay ``None``. Leaf
        shapes are not checked, so a per-seed template can receive arrays stacked over seeds.
      flat: the dict ``flatten_tree`` (or ``load_level``) produced.
      prefix: the prefix used when flattening.

    Returns:
      The rebuilt pytree.

    Raises:
      ValueError: ``flat`` lacks an entry for a non-``None`` leaf of ``template``.
    """

    def take(path, leaf):
        if leaf is None:
            return None
        key = _join(prefix, path)
        if key not in flat:
            raise ValueError(f"unflatten_into: no stored array for leaf {path!r} (key {key!r})")
        return flat[key]

    return map_with_path_str(take, template)


class RunStore:
    """Checkpoints and records of one lottery run, kept in ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)

    @classmethod
    def open(cls, root: str | os.PathLike, config: dict, name: str | None = None) -> RunStore:
        """Opens (creating if needed) the run directory of ``config`` under ``root``.

        Args:
          root: folder holding all runs.
          config: a JSON-serializable config dict; equal dicts share a directory.
          name: human-readable directory prefix (default ``"run"``); must not contain ``/``.

        Returns:
          A store for ``root/<name>-<digest[:12]>``.

        Raises:
          ValueError: a bad name, or the directory holds a different (or unreadable) config.
        """
        name = "run" if name is None else name
        if not name or "/" in name or os.sep in name or name in (".", ".."):
            raise ValueError(f"RunStore.open: name {name!r} must be a plain directory name")
        digest = config_digest(config)
        store = cls(Path(root) / f"{name}-{digest[:12]}")
        path = store.run_dir / "config.json"
        if path.exists():
            stored = _read_json(path, "RunStore.open")
            if not isinstance(stored, dict) or stored.get("digest") != digest:
                raise ValueError(
                    f"RunStore.open: {path} belongs to a different config (digest "
                    f"{stored.get('digest') if isinstance(stored, dict) else None!r}, "
                    f"expected {digest!r}); a hash-prefix collision: pass another name"
                )
        else:
            store.run_dir.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, _dumps({"name": name, "digest": digest, "config": config}))
        return store

    def save_level(self, level: int, arrays: dict[str, Any], records: list[dict]) -> None:
        """Stores a level's arrays (orbax) and records (JSON), replacing an earlier save.

        Args:
          level: the level number, an int >= 0.
          arrays: non-empty flat dict of named numpy/JAX arrays (see ``flatten_tree``).
          records: JSON-serializable dicts (numpy scalars and arrays are converted).
        """
        level = _check_level(level)
        if not arrays:
            raise ValueError(f"save_level: level {level} has no arrays to save")
        host = {}
        for key, value in arrays.items():
            host[key] = np.asarray(value)
            if host[key].dtype == object:
                raise TypeError(f"save_level: array {key!r} has dtype object, expected numeric")
        meta = {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in host.items()}
        body = _dumps({"level": level, "arrays": meta, "digest": _arrays_digest(host),
                       "records": records})  # fmt: skip
        self._level_json(level).unlink(missing_ok=True)  # the level is unfinished from here on
        with self._manager() as manager:
            if level in manager.all_steps():
                manager.delete(level)
            # Leftovers of a killed save of this level (orbax's tmp-dir naming), any suffix.
            for tmp in manager.directory.glob(f"{level}.orbax-checkpoint-tmp*"):
                tmp.rmtree()
            manager.save(level, args=ocp.args.StandardSave(host), force=True)
            manager.wait_until_finished()
        _write_atomic(self._level_json(level), body)

    def load_level(self, level: int) -> tuple[dict[str, np.ndarray], list[dict]] | None:
        """Loads a finished level, or returns ``None`` when it is absent or broken.

        A broken level (unreadable JSON, missing/unfinalized/unreadable checkpoint, or arrays
        whose digest differs from the stored one) triggers a ``BrokenLevelWarning``; its files
        are moved to ``broken/`` so the caller can recompute it.

        Args:
          level: the level number.

        Returns:
          ``(arrays, records)`` with numpy arrays, or ``None``.
        """
        level = _check_level(level)
        path = self._level_json(level)
        with self._manager() as manager:
            has_ckpt = level in manager.all_steps()
            if not path.exists():
                if has_ckpt:
                    self._discard(manager, level, "has a checkpoint but no records (interrupted)")
                return None
            try:
                meta = json.loads(path.read_text())
                names, digest, records = sorted(meta["arrays"]), meta["digest"], meta["records"]
            except (ValueError, KeyError, TypeError, OSError) as e:
                return self._discard(manager, level, f"has an unreadable {path.name} ({e})")
            if not has_ckpt:
                return self._discard(manager, level, "has no finalized checkpoint")
            try:
                arrays = dict(manager.restore(level, args=ocp.args.StandardRestore()))
            except Exception as e:  # orbax/tensorstore raise many types for damaged files
                message = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                problem = f"has an unreadable checkpoint ({type(e).__name__}: {message})"
                return self._discard(manager, level, problem)
        arrays = {k: np.asarray(v) for k, v in arrays.items()}
        if sorted(arrays) != names or _arrays_digest(arrays) != digest:
            with self._manager() as manager:
                return self._discard(manager, level, "failed its digest check (corrupt arrays)")
        return arrays, records

    def finished_levels(self) -> list[int]:
        """Sorted levels with a finalized checkpoint and a parseable ``level_LL.json``."""
        if not self.run_dir.is_dir():
            return []
        with self._manager() as manager:
            steps = set(manager.all_steps())
        levels = []
        for path in self.run_dir.iterdir():
            match = _LEVEL_FILE.fullmatch(path.name)
            if match and int(match[1]) in steps:
                try:
                    json.loads(path.read_text())
                except ValueError:
                    continue  # load_level will report and move it aside
                levels.append(int(match[1]))
        return sorted(levels)

    def write_results(self, config: dict, records: list[dict]) -> None:
        """Writes ``results.json`` ({"config", "records"}) and ``results.csv``, atomically.

        The CSV has one row per record, without ``history``, and ``layer_remaining`` spread
        over ``remaining:<path>`` columns.

        Args:
          config: the run's config dict.
          records: the records of every level.
        """
        _write_atomic(self.run_dir / "results.json", _dumps({"config": config, "records": records}))
        rows = []
        for record in records:
            row = {k: v for k, v in record.items() if k not in ("history", "layer_remaining")}
            for path, value in (record.get("layer_remaining") or {}).items():
                row[f"remaining:{path}"] = value
            rows.append({k: _dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()})
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        _write_atomic(self.run_dir / "results.csv", buffer.getvalue())

    @staticmethod
    def read_results(run_dir: str | os.PathLike) -> dict:
        """Reads ``run_dir/results.json``.

        Args:
          run_dir: a run directory.

        Returns:
          ``{"config": dict, "records": list}``.

        Raises:
          ValueError: the directory or file is missing, not JSON, or lacks those keys.
        """
        path = Path(run_dir) / "results.json"
        if not path.is_file():
            raise ValueError(f"read_results: {path} does not exist")
        results = _read_json(path, "read_results")
        if not isinstance(results, dict) or not isinstance(results.get("records"), list):
            raise ValueError(f"read_results: {path} needs a 'records' list")
        if not isinstance(results.get("config"), dict):
            raise ValueError(f"read_results: {path} needs a 'config' dict")
        return results

    def _level_json(self, level: int) -> Path:
        return self.run_dir / f"level_{level:02d}.json"

    def _manager(self) -> ocp.CheckpointManager:
        # A fresh, synchronous manager per operation rereads the disk, so moved-aside levels
        # or another process never leave a stale step cache. Its background tmp-dir cleanup
        # stays off (it races the next manager); a save replaces its own step's tmp dir.
        opts = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
        # orbax needs an absolute path (NumPy leaves fail on a relative one).
        return ocp.CheckpointManager((self.run_dir / "checkpoints").absolute(), options=opts)

    def _discard(self, manager: ocp.CheckpointManager, level: int, problem: str) -> None:
        warnings.warn(
            f"run store {self.run_dir}: level {level} {problem}; moved aside to broken/, "
            "it will be recomputed",
            BrokenLevelWarning,
            stacklevel=3,
        )
        path = self._level_json(level)
        if path.exists():
            (self.run_dir / "broken").mkdir(exist_ok=True)
            os.replace(path, self.run_dir / "broken" / f"{path.name}.{time.time_ns()}")
        if level in manager.all_steps():
            manager.delete(level)  # a damaged checkpoint holds nothing worth keeping
        return None


def _check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or level < 0:
        raise ValueError(f"level must be an int >= 0, got {level!r}")
    return int(level)


def _join(prefix: str, path: str) -> str:
    return f"{prefix}/{path}" if prefix else path


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    # Names, dtypes and shapes are hashed with the bytes, so a reshaped or retyped array fails.
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(_dumps([key, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_json_default)


def _json_default(x: Any) -> Any:
    # Records often carry numpy scalars (accuracies) or small arrays; JSON wants Python types.
    if isinstance(x, np.generic | np.ndarray) or type(x).__module__.startswith("jax"):
        return np.asarray(x).tolist()
    raise TypeError(f"value of type {type(x).__name__} is not JSON serializable: {x!r}")


def _read_json(path: Path, who: str) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise ValueError(f"{who}: {path} is not valid JSON ({e})") from None


def _write_atomic(path: Path, text: str) -> None:
    # Write, flush to disk, then rename: readers see the old file or the whole new one.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
