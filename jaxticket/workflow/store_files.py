"""Files of the run store: one-line storage errors, atomic writes, JSON, file digests, locks.

Everything here works on plain paths; ``jaxticket.workflow.store`` builds the run layout on it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# ``.<name>.tmp-<pid>-<token>`` (and the older ``.<name>.tmp-<pid>``): write_atomic's tmp files.
_TMP_FILE = re.compile(r"\..+\.tmp-(\d+)(?:-[0-9a-f]+)?")


class StorageError(OSError):
    """The run store could not read or write its files.

    The message is one line naming the path and the problem (``"cannot save level 2 in
    runs/x: No space left on device"``); ``errno`` is the underlying error's, when it had one.
    """


class RunDirectoryBusyError(StorageError):
    """Another process holds the run directory's lock (see ``RunStore.locked``)."""


def storage_error(what: str, err: BaseException) -> StorageError:
    """A ``StorageError`` reading ``"<what>: <the problem>"`` for the caught ``err``.

    Args:
      what: what failed, naming the path (``"cannot write runs/x/results.json"``).
      err: the caught exception (an ``OSError`` or an orbax/tensorstore error).
    """
    if isinstance(err, OSError) and err.strerror:
        reason = err.strerror
        if err.filename is not None and str(err.filename) not in what:
            reason += f": {err.filename}"
    else:
        text = str(err).strip()
        reason = type(err).__name__ + (f": {text.splitlines()[0][:300]}" if text else "")
    wrapped = StorageError(f"{what}: {reason}")
    wrapped.errno = getattr(err, "errno", None)
    return wrapped


@contextlib.contextmanager
def storage_errors(what: str) -> Iterator[None]:
    """Turns an ``OSError`` raised inside into a one-line ``StorageError`` (``what``: problem)."""
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise storage_error(what, e) from e


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` so that readers see the old file or the whole new one.

    The text goes to a tmp file beside ``path`` (removed again if anything fails), is flushed
    to disk and renamed over ``path``.

    Raises:
      StorageError: the file could not be written (full disk, read-only file system...).
    """
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    with storage_errors(f"cannot write {path}"):
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; some file systems cannot open or sync directories.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_json(path: Path, who: str) -> Any:
    """Parses the JSON file ``path``.

    Args:
      path: the file.
      who: the caller's name, prefixed to error messages.

    Raises:
      ValueError: the file is not UTF-8 text or not valid JSON.
      StorageError: the file could not be read (missing, unreadable...).
    """
    with storage_errors(f"{who}: cannot read {path}"):
        data = path.read_bytes()
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{who}: {path} is not UTF-8 text (byte {e.start}: {e.object[e.start]:#04x})"
        ) from None
    except RecursionError:
        raise ValueError(f"{who}: {path} is nested too deeply to be valid results") from None
    except ValueError as e:
        raise ValueError(f"{who}: {path} is not valid JSON ({e})") from None


def dumps(obj: Any) -> str:
    """JSON text of ``obj``; numpy/JAX scalars and arrays become numbers and lists."""
    return json.dumps(obj, default=_json_default)


def canonical(obj: Any) -> str:
    """Canonical JSON of ``obj`` (sorted keys, no spaces): equal content, equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(x: Any) -> Any:
    # Records often carry numpy scalars (accuracies) or small arrays; JSON wants Python types.
    if isinstance(x, np.generic | np.ndarray) or type(x).__module__.startswith("jax"):
        return np.asarray(x).tolist()
    raise TypeError(f"value of type {type(x).__name__} is not JSON serializable: {x!r}")


def file_digests(directory: Path) -> dict[str, list]:
    """``{relative/path: [size, sha256 hex]}`` of every file under ``directory``, sorted.

    Raises:
      StorageError: a file could not be read.
    """
    out = {}
    with storage_errors(f"cannot read {directory}"):
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            h = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
            out[path.relative_to(directory).as_posix()] = [path.stat().st_size, h.hexdigest()]
    return out


def files_problem(saved: dict[str, list], found: dict[str, list]) -> str | None:
    """What differs between two ``file_digests`` results, in words, or ``None``."""
    for name, (size, digest) in saved.items():
        if name not in found:
            return f"file {name} is missing"
        if found[name][0] != size:
            return f"file {name} has {found[name][0]} bytes, {size} were saved"
        if found[name][1] != digest:
            return f"file {name} differs from the saved one (sha256)"
    extra = sorted(set(found) - set(saved))
    return f"file {extra[0]} was not part of the saved checkpoint" if extra else None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this machine's pid namespace)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by another user
    return True


def remove_tmp_files(directory: Path, *, all_writers: bool) -> list[Path]:
    """Removes ``write_atomic``'s leftover tmp files in ``directory``, as far as it can.

    Cleanup never fails a run: a file that cannot be removed (another user's, a read-only
    disk) is left where it is.

    Args:
      directory: the folder to clean.
      all_writers: remove every tmp file (safe while holding the directory's lock); else
        only those whose writer process is gone.

    Returns:
      The removed files.
    """
    removed = []
    try:
        paths = list(directory.iterdir())
    except OSError:
        return removed
    for path in paths:
        match = _TMP_FILE.fullmatch(path.name)
        if not match:
            continue
        pid = int(match[1])
        if all_writers or (pid != os.getpid() and not pid_alive(pid)):
            try:
                path.unlink()
            except OSError:
                continue
            removed.append(path)
    return removed


@contextlib.contextmanager
def exclusive_lock(lock_file: Path, directory: Path, *, wait: bool = False) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``lock_file`` (created if needed) while inside.

    The kernel drops the lock when its holder exits, however it ends, so a killed process
    never leaves a lock that blocks; the holder's pid is written into the file only for the
    error message of the next process.

    Args:
      lock_file: the lock file.
      directory: the directory the lock guards, named in error messages.
      wait: block until the lock is free instead of refusing at once.

    Raises:
      RunDirectoryBusyError: another process (or another ``locked()`` of this one) holds it.
      StorageError: the lock file could not be created or locked.
    """
    with storage_errors(f"cannot lock {directory}"):
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise _busy(fd, directory) from None
        except OSError as e:
            raise storage_error(f"cannot lock {directory}", e) from e
        with contextlib.suppress(OSError):  # the pid only serves the message above
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _busy(fd: int, directory: Path) -> RunDirectoryBusyError:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    if text.isdigit() and int(text) == os.getpid():
        holder = f"this process ({text}), which already holds its lock"
    else:
        holder = f"process {text}" if text.isdigit() else "another process"
    err = RunDirectoryBusyError(
        f"run directory {directory} is in use by {holder}; wait for it to finish or use "
        "another output directory (--out)"
    )
    err.errno = errno.EWOULDBLOCK
    return err
