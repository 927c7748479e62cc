"""On-disk run store of every workflow: one directory per config, one checkpoint per phase
(an IMP level, a sparse-training target: "level" below). ``root/<name>-<digest[:12]>/``::

    config.json        {"name", "digest", "config"}; digest = sha256 of the canonical config
    checkpoints/<L>/   orbax checkpoint of level L's arrays (finalized by an atomic rename)
    level_LL.json      level L's records, its arrays' names/dtypes/shapes, their digests
    results.json/csv   the final results (``write_results``)
    broken/            records of levels found corrupt, moved aside for inspection
    .lock              the lock a running process holds (``RunStore.locked``)

A level is finished only when its ``level_LL.json`` exists, written last by an atomic
rename after orbax has finalized the checkpoint: a killed process leaves a finished level or
none (orbax ignores unfinalized ``<L>.orbax-checkpoint-tmp*`` directories; saving removes them).

``level_LL.json`` is sealed by a sha256 ``digest`` over its level number, the run's config
digest, the records (canonical JSON), the arrays' digest and the size and sha256 of every
checkpoint file. ``load_level`` checks all of them, so an edited record, two swapped levels,
a level copied from another run, or a damaged checkpoint file is found, reported with a
``BrokenLevelWarning`` and recomputed, never loaded. (The seal guards against accidents,
not against someone who recomputes it.) Checkpoint files are checked before orbax reads
them: its failed concurrent reads of a damaged file print tracebacks from its threads.

Storage failures (a full or read-only disk, an ``--out`` under a regular file) raise a
one-line ``StorageError`` (an ``OSError``) naming the path; levels finished before stay
loadable, so a rerun resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import orbax.checkpoint as ocp

from jaxticket.workflow.store_checkpoints import checkpoint_manager
from jaxticket.workflow.store_files import (
    RunDirectoryBusyError,
    StorageError,
    canonical,
    dumps,
    exclusive_lock,
    file_digests,
    files_problem,
    read_json,
    remove_tmp_files,
    storage_error,
    storage_errors,
    write_atomic,
)
from jaxticket.workflow.store_results import read_results, write_results
from jaxticket.workflow.store_seal import arrays_digest, seal, seal_problem
from jaxticket.workflow.store_tree import flatten_tree, unflatten_into

__all__ = [
    "BrokenLevelWarning",
    "RunDirectoryBusyError",
    "RunStore",
    "StorageError",
    "config_digest",
    "flatten_tree",
    "unflatten_into",
]

_LEVEL_FILE = re.compile(r"level_(\d+)\.json")


class BrokenLevelWarning(UserWarning):
    """A stored level was unreadable, damaged or not this run's; its message says what was
    wrong and what was done with its files. The level is recomputed."""


def config_digest(config: dict) -> str:
    """Stable sha256 hex digest of ``config``'s canonical JSON (sorted keys, no spaces)."""
    return hashlib.sha256(canonical(config).encode()).hexdigest()


class RunStore:
    """Checkpoints and records of one workflow run (IMP levels, sparse-training phases), kept
    in ``run_dir``.

    Every method that touches the disk raises a one-line ``StorageError`` (an ``OSError``)
    when the file system refuses; what was finished before stays loadable.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self._digest: str | None = None  # the run's config digest, read from config.json

    @classmethod
    def open(cls, root: str | os.PathLike, config: dict, name: str | None = None) -> RunStore:
        """Opens (creating if needed) the run directory of ``config`` under ``root``.

        Also removes tmp files left by writers that died (killed or failed runs).

        Args:
          root: folder holding all runs.
          config: a JSON-serializable config dict; equal dicts share a directory.
          name: human-readable directory prefix (default ``"run"``); must not contain ``/``.

        Returns:
          A store for ``root/<name>-<digest[:12]>``.

        Raises:
          ValueError: a bad name, or the directory holds a different (or unreadable) config.
          StorageError: the directory or its ``config.json`` cannot be created or read.
        """
        store = cls(cls.path_for(root, config, name))
        name, digest = store.run_dir.name.rsplit("-", 1)[0], config_digest(config)
        path = store.run_dir / "config.json"
        if path.exists():
            stored = read_json(path, "RunStore.open")
            if not isinstance(stored, dict) or stored.get("digest") != digest:
                raise ValueError(
                    f"RunStore.open: {path} belongs to a different config (digest "
                    f"{stored.get('digest') if isinstance(stored, dict) else None!r}, "
                    f"expected {digest!r}); a hash-prefix collision: pass another name"
                )
        else:
            with storage_errors(f"cannot create run directory {store.run_dir}"):
                store.run_dir.mkdir(parents=True, exist_ok=True)
            write_atomic(path, dumps({"name": name, "digest": digest, "config": config}))
        store._digest = digest
        remove_tmp_files(store.run_dir, all_writers=False)
        return store

    @staticmethod
    def path_for(root: str | os.PathLike, config: dict, name: str | None = None) -> Path:
        """The run directory :meth:`open` uses for ``config`` (nothing is created)."""
        name = "run" if name is None else name
        if not name or "/" in name or os.sep in name or name in (".", ".."):
            raise ValueError(f"RunStore.open: name {name!r} must be a plain directory name")
        return Path(root) / f"{name}-{config_digest(config)[:12]}"

    @contextmanager
    def locked(self, *, wait: bool = False) -> Iterator[RunStore]:
        """Holds the run directory's lock: one process at a time runs an experiment here.

        The lock is an ``flock`` on ``run_dir/.lock``, which the kernel releases when its
        holder exits, so a killed run never blocks the next one. On entry, tmp files and
        unfinalized checkpoint directories left by earlier writers are removed.

        Args:
          wait: wait for the holder to finish instead of refusing at once.

        Yields:
          This store.

        Raises:
          RunDirectoryBusyError: another process holds the lock (the message names its pid).
          StorageError: the lock file cannot be created.
        """
        with exclusive_lock(self.run_dir / ".lock", self.run_dir, wait=wait):
            remove_tmp_files(self.run_dir, all_writers=True)
            for tmp in self._checkpoints().glob("*.orbax-checkpoint-tmp*"):
                shutil.rmtree(tmp, ignore_errors=True)  # best effort, as for the tmp files
            yield self

    def save_level(self, level: int, arrays: dict[str, Any], records: list[dict]) -> None:
        """Stores a level's arrays (orbax) and records (JSON), replacing an earlier save.

        Args:
          level: the level number, an int >= 0.
          arrays: non-empty flat dict of named numpy/JAX arrays (see ``flatten_tree``).
          records: JSON-serializable dicts (numpy scalars and arrays are converted).

        Raises:
          ValueError, TypeError: bad arrays or records (nothing is written).
          StorageError: the level could not be written; it is then not finished (a rerun
            recomputes it) and the levels saved before are untouched.
        """
        level = _check_level(level)
        if not arrays:
            raise ValueError(f"save_level: level {level} has no arrays to save")
        host = {}
        for key, value in arrays.items():
            host[key] = np.asarray(value)
            if host[key].dtype == object:
                raise TypeError(f"save_level: array {key!r} has dtype object, expected numeric")
        try:
            records = json.loads(dumps(records))  # as a load will see them
        except (TypeError, ValueError) as e:
            raise TypeError(f"save_level: level {level}'s records: {e}") from None
        fields = {
            "level": level,
            "run": self._run_digest(),
            "arrays": {k: {"dtype": a.dtype.str, "shape": list(a.shape)} for k, a in host.items()},
            "arrays_digest": arrays_digest(host),
        }
        what = f"cannot save level {level} in {self.run_dir}"
        with storage_errors(what):
            self._level_json(level).unlink(missing_ok=True)  # unfinished from here on
            with self._manager() as manager:
                if level in manager.all_steps():
                    manager.delete(level)
                # Leftovers of a killed save of this level (orbax's tmp-dir naming).
                for tmp in self._checkpoints().glob(f"{level}.orbax-checkpoint-tmp*"):
                    shutil.rmtree(tmp)
                try:
                    manager.save(level, args=ocp.args.StandardSave(host), force=True)
                    manager.wait_until_finished()
                except OSError:
                    raise
                except Exception as e:  # orbax/tensorstore wrap file errors in many types
                    raise storage_error(what, e) from e
            fields["files"] = file_digests(self._checkpoints() / str(level))
        fields["records"] = records
        try:
            write_atomic(self._level_json(level), dumps({**fields, "digest": seal(fields)}))
        except StorageError:
            with suppress(Exception):  # best effort: a checkpoint without records is unfinished
                with self._manager() as manager:
                    manager.delete(level)
            raise

    def load_level(self, level: int) -> tuple[dict[str, np.ndarray], list[dict]] | None:
        """Loads a finished level, or returns ``None`` when it is absent or broken.

        A broken level triggers a ``BrokenLevelWarning`` naming the level, what was wrong
        (unreadable or edited ``level_LL.json``, another level's or another run's files,
        a missing, unfinalized or damaged checkpoint, arrays failing their digest) and what
        was done: its records are moved to ``broken/``, its checkpoint deleted, so that the
        caller recomputes it.

        Args:
          level: the level number.

        Returns:
          ``(arrays, records)`` with numpy arrays, or ``None``.

        Raises:
          StorageError: a file could not be read (not a sign of damage: nothing is moved).
        """
        level = _check_level(level)
        path = self._level_json(level)
        step_dir = self._checkpoints() / str(level)
        with storage_errors(f"cannot load level {level} from {self.run_dir}"):
            with self._manager() as manager:
                has_ckpt = level in manager.all_steps()
            if not path.exists():
                if has_ckpt:
                    self._discard(level, "has a checkpoint but no records (interrupted save)")
                return None
        try:
            meta = read_json(path, "load_level")
        except ValueError as e:
            return self._discard(level, f"has an unreadable {path.name} ({e})")
        problem = seal_problem(meta, level=level, run=self._run_digest(), name=path.name)
        if problem is None and not has_ckpt:
            problem = "has no finalized checkpoint"
        if problem is None:
            damage = files_problem(meta["files"], file_digests(step_dir))
            problem = f"has a damaged checkpoint ({damage})" if damage else None
        if problem is not None:
            return self._discard(level, problem)
        try:
            with self._manager() as manager:
                restored = manager.restore(level, args=ocp.args.StandardRestore())
        except Exception as e:  # intact files orbax cannot read (another orbax version?)
            text = str(e).strip()
            message = text.splitlines()[0][:300] if text else ""
            return self._discard(
                level, f"has an unreadable checkpoint ({type(e).__name__}: {message})"
            )
        arrays = {k: np.asarray(v) for k, v in dict(restored).items()}
        if sorted(arrays) != sorted(meta["arrays"]) or arrays_digest(arrays) != meta.get(
            "arrays_digest"
        ):
            return self._discard(level, "failed its digest check (corrupt arrays)")
        return arrays, meta["records"]

    def finished_levels(self) -> list[int]:
        """Sorted levels with a finalized checkpoint and a parseable ``level_LL.json``
        (``load_level`` still checks them)."""
        if not self.run_dir.is_dir():
            return []
        with storage_errors(f"cannot list the levels of {self.run_dir}"):
            with self._manager() as manager:
                steps = set(manager.all_steps())
            names = [p.name for p in self.run_dir.iterdir()]
        levels = []
        for name in names:
            match = _LEVEL_FILE.fullmatch(name)
            if match and int(match[1]) in steps:
                try:
                    read_json(self.run_dir / name, "finished_levels")
                except ValueError:
                    continue  # load_level will report and move it aside
                levels.append(int(match[1]))
        return sorted(levels)

    def write_results(self, config: dict, records: list[dict]) -> None:
        """Writes ``results.json`` and ``results.csv`` atomically (``store_results``)."""
        write_results(self.run_dir, config, records)

    @staticmethod
    def read_results(run_dir: str | os.PathLike) -> dict:
        """Reads and checks ``run_dir/results.json`` (``store_results.read_results``)."""
        return read_results(run_dir)

    def _level_json(self, level: int) -> Path:
        return self.run_dir / f"level_{level:02d}.json"

    def _checkpoints(self) -> Path:
        # orbax needs an absolute path (NumPy leaves fail on a relative one).
        return (self.run_dir / "checkpoints").absolute()

    def _run_digest(self) -> str:
        if self._digest is None:
            stored = read_json(self.run_dir / "config.json", "RunStore")
            if not isinstance(stored, dict) or not isinstance(stored.get("digest"), str):
                raise ValueError(f"RunStore: {self.run_dir / 'config.json'} lacks its 'digest'")
            self._digest = stored["digest"]
        return self._digest

    def _manager(self) -> ocp.CheckpointManager:
        return checkpoint_manager(self._checkpoints())

    def _discard(self, level: int, problem: str) -> None:
        """Moves level's records to broken/, deletes its checkpoint, and says so."""
        path = self._level_json(level)
        done = []
        with storage_errors(f"cannot set aside broken level {level} in {self.run_dir}"):
            if path.exists():
                target = self.run_dir / "broken" / f"{path.name}.{time.time_ns()}"
                target.parent.mkdir(exist_ok=True)
                os.replace(path, target)
                done.append(f"records moved to broken/{target.name}")
            with self._manager() as manager:
                if level in manager.all_steps():
                    manager.delete(level)  # a damaged checkpoint holds nothing worth keeping
                    done.append("checkpoint deleted")
        warnings.warn(
            f"run store {self.run_dir}: level {level} {problem}; "
            f"{', '.join(done) or 'nothing was stored'}; it will be recomputed",
            BrokenLevelWarning,
            stacklevel=3,
        )
        return None


def _check_level(level: int) -> int:
    if isinstance(level, bool) or not isinstance(level, int | np.integer) or level < 0:
        raise ValueError(f"level must be an int >= 0, got {level!r}")
    return int(level)
