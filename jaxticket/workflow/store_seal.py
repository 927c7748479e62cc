"""The seal of a stored level: one sha256 over everything ``level_LL.json`` vouches for.

``level_LL.json`` holds the level number, the run's config digest, the records, the digest
of the level's arrays and the size and sha256 of every checkpoint file; its ``digest``
field is the sha256 of those fields' canonical JSON. An edited record, a level file of
another level or another run, or a changed checkpoint file thus fails the check on load.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from jaxticket.workflow.store_files import canonical, dumps

# The fields of level_LL.json that its ``digest`` seals.
SEALED = ("level", "run", "arrays", "arrays_digest", "files", "records")


def seal(fields: dict) -> str:
    """The sha256 hex digest of the ``SEALED`` fields' canonical JSON."""
    return hashlib.sha256(canonical({k: fields[k] for k in SEALED}).encode()).hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(dumps([key, a.dtype.str, list(a.shape)]).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def seal_problem(meta: Any, *, level: int, run: str, name: str) -> str | None:
    """What is wrong with a parsed ``level_LL.json``, in words, or ``None``.

    Args:
      meta: the parsed file.
      level: the level the file should hold (its name's number).
      run: the config digest of the run it should belong to.
      name: the file's name, for the message.
    """
    keys = (*SEALED, "digest")
    if not isinstance(meta, dict) or any(k not in meta for k in keys):
        missing = [k for k in keys if not isinstance(meta, dict) or k not in meta]
        return f"has a {name} without {', '.join(missing)} (not written by this store)"
    if not isinstance(meta["files"], dict) or not isinstance(meta["arrays"], dict):
        return f"has a {name} with malformed 'files' or 'arrays'"
    if not isinstance(meta["records"], list):
        return f"has a {name} whose records are not a list"
    if meta["level"] != level:
        return f"has a {name} holding the records of level {meta['level']!r} (swapped files?)"
    if meta["run"] != run:
        return f"has a {name} copied from another run (config digest {str(meta['run'])[:12]})"
    if meta["digest"] != seal(meta):
        return f"has a {name} whose records or digests were edited (its seal does not match)"
    return None
