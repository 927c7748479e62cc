"""The orbax checkpoint manager the run store uses for a run's level arrays."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


def checkpoint_manager(directory: Path) -> ocp.CheckpointManager:
    """A synchronous orbax manager over ``directory`` (created if missing), for one call.

    A fresh manager per operation rereads the disk, so moved-aside levels or another
    process never leave a stale step cache. Its background tmp-dir cleanup stays off (it
    races the next manager); a save replaces its own step's tmp dir. Only this process
    touches the store (``jaxticket.workflow.multiprocess``), so orbax must not wait for
    a job's other processes (and then cannot create the folder itself).
    """
    this = jax.process_index()
    only_me = ocp.options.MultiprocessingOptions(primary_host=this, active_processes={this})
    options = ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False, multiprocessing_options=only_me, create=False
    )
    directory.mkdir(parents=True, exist_ok=True)
    return ocp.CheckpointManager(directory, options=options)
