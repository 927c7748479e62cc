"""Workflows under JAX's multi-process runtime: process 0 owns the run directory.

After ``jax.distributed.initialize`` every process runs the same workflow call. Training
is collective (``jaxticket.workflow.training.train_on_devices`` spreads the runs over the
devices of every process and hands every process the whole result), but the run store is
not: two processes writing one orbax checkpoint, or one lock, would race. So only the
primary process (index 0) opens, locks, reads and writes the run directory, and what it
reads (a finished phase, to resume from) is sent to the others with
:func:`share_from_primary`, so every process takes the same branch (load or train) and
meets the others in the same collectives. The run directory need not be on a shared file
system.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

__all__ = ["is_primary", "share_from_primary"]


def is_primary() -> bool:
    """Whether this process writes the run directory (always, with one process)."""
    return jax.process_index() == 0


def share_from_primary(value: Any) -> Any:
    """Process 0's ``value`` on every process (collective: every process must call it).

    With one process this returns ``value`` itself. Otherwise ``value`` is pickled on
    process 0 (the processes are one job running one program, so they trust each other)
    and broadcast as bytes; the others' ``value`` is ignored.
    """
    if jax.process_count() == 1:
        return value
    payload = pickle.dumps(value) if is_primary() else b""
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
    buffer = np.frombuffer(payload, np.uint8) if is_primary() else np.zeros(size, np.uint8)
    received = np.asarray(multihost_utils.broadcast_one_to_all(buffer), np.uint8)
    return pickle.loads(received.tobytes())
