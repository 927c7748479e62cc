"""The resumable phase loop every workflow runs on, over the run store.

A workflow is a sequence of phases (IMP's levels, a sparse-training run per method).
Each finished phase is checkpointed in the run directory (``RunStore.save_level``: arrays
and records, sealed); a rerun of the same config loads finished phases instead of
recomputing them and continues where the last run stopped::

    store, records = run_workflow(workflow, config, out_dir="runs")

What a workflow supplies (see :class:`Workflow` and :class:`PhaseRunner`): the run
directory's name, its phases, and a runner built from the config and the devices that
computes one phase from the state the previous phase left, and packs that state into flat
named arrays (and back) for the checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import jax

from jaxticket.workflow.config import RUNTIME_KEY
from jaxticket.workflow.multiprocess import is_primary, share_from_primary
from jaxticket.workflow.records import Record, warn_collapsed, warn_diverged
from jaxticket.workflow.store import RunStore


class PhaseRunner(Protocol):
    """What :func:`run_workflow` drives; built by ``Workflow.setup(config, devices)``.

    Attributes:
      devices: the devices the runner trains on (they name the run directory).
    """

    devices: tuple

    def run_phase(self, phase: int, state: Any, show_progress: bool) -> tuple[Any, list[Record]]:
        """Computes ``phase`` from the state the previous phase left (``None`` first);
        returns the new state and the phase's records."""

    def pack(self, state: Any) -> dict[str, Any]:
        """The state as a flat dict of named arrays (``flatten_tree``), for the checkpoint."""

    def unpack(self, flat: dict[str, Any]) -> Any:
        """Inverse of :meth:`pack`."""


@dataclasses.dataclass(frozen=True)
class Workflow:
    """A workflow as data: its run directory's name, its phases and its runner.

    Attributes:
      name: ``config -> str``, the run directory's prefix (no ``/``), e.g.
        ``"lottery-mlp-mnist1d"``; the config's identity digest follows it.
      phases: ``config -> sequence of ints``, the phases in order (checkpoint numbers).
      setup: ``(config, devices) -> PhaseRunner``; ``devices`` is a tuple, or ``None``
        for every device of JAX's default backend. Checks that need the model or the data
        belong here, so they fail before anything is stored or trained.
      group_key: the record field that names the part of a phase its warnings speak of
        (IMP: ``"level"``; a one-shot phase holds several levels).
    """

    name: Callable[[Any], str]
    phases: Callable[[Any], Sequence[int]]
    setup: Callable[[Any, tuple | None], PhaseRunner]
    group_key: str = "level"


def run_workflow(
    workflow: Workflow,
    config,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    devices=None,
) -> tuple[RunStore, list[Record]]:
    """Runs (or resumes) ``workflow`` for ``config`` under ``out_dir``.

    Opens the run directory named by the config and the runtime (:func:`run_identity`),
    takes its lock (a second process on the same directory is refused), then for each
    phase loads it when it finished earlier or computes and saves it, warns about its
    collapsed layers and diverged runs, and rewrites ``results.json``/``.csv`` with every
    record so far.

    Args:
      workflow: the workflow.
      config: its config (a ``WorkflowConfig``).
      out_dir: folder holding run directories.
      show_progress: passed to ``run_phase``.
      log: called with one line per event (run directory, each phase loaded or computed).
      devices: passed to ``workflow.setup``.

    Returns:
      The run's store and every record, in phase order.

    Warns:
      LayerCollapseWarning, DivergenceWarning: at the caller of the workflow's entry
        point (the function that called ``run_workflow``).
    """
    log = log or (lambda msg: None)
    runner = workflow.setup(config, None if devices is None else tuple(devices))
    identity = run_identity(config, runner.devices)
    if not is_primary():  # another process of a multi-process job: process 0 stores
        return _follow_primary(workflow, config, runner, identity, out_dir, show_progress)
    store = RunStore.open(out_dir, identity, name=workflow.name(config))
    # One process per run directory: a second identical command is refused at once (the
    # kernel drops the lock of a killed process, so a stale lock never blocks).
    with store.locked():
        log(f"run directory: {store.run_dir}")
        records: list[Record] = []
        state = None
        for phase in workflow.phases(config):
            loaded = share_from_primary(store.load_level(phase))
            if loaded is not None:
                arrays, new = loaded
                state = runner.unpack(arrays)
                log(f"{workflow.group_key} {phase}: finished earlier, loaded")
            else:
                log(f"{workflow.group_key} {phase}: training")
                state, new = runner.run_phase(phase, state, show_progress)
                store.save_level(phase, runner.pack(state), new)
            key = workflow.group_key
            for value in sorted({r[key] for r in new}):
                chosen = [r for r in new if r[key] == value]
                where = f"{key} {value}"
                warn_collapsed(where, chosen, stacklevel=4)  # at the entry point's caller
                warn_diverged(where, chosen, stacklevel=4)
            records.extend(new)
            store.write_results(identity, records)
    return store, records


def _follow_primary(workflow, config, runner, identity, out_dir, show_progress):
    """``run_workflow`` on a process other than 0 (``jaxticket.workflow.multiprocess``):
    the same phases and collectives, with process 0's finished phases received instead
    of read, and nothing written. Returns a store for the run directory's path (which
    exists on this host only if the file system is shared) and the same records."""
    store = RunStore(RunStore.path_for(out_dir, identity, name=workflow.name(config)))
    records: list[Record] = []
    state = None
    for phase in workflow.phases(config):
        loaded = share_from_primary(None)
        if loaded is not None:
            arrays, new = loaded
            state = runner.unpack(arrays)
        else:
            state, new = runner.run_phase(phase, state, show_progress)
        records.extend(new)
    return store, records


def run_identity(config, devices) -> dict[str, Any]:
    """What names a run: the config and the runtime settings that change its numbers.

    Returns:
      ``config.to_dict()`` plus ``"runtime": {"x64", "devices", "platform"}``: whether
      ``jax_enable_x64`` is on, how many devices the seeds are spread over, and their
      platform. The run directory is opened with it and config.json and results.json
      record it.
    """
    devices = tuple(devices)
    runtime = {
        "x64": bool(jax.config.jax_enable_x64),
        "devices": len(devices),
        "platform": devices[0].platform,
    }
    return {**config.to_dict(), RUNTIME_KEY: runtime}
