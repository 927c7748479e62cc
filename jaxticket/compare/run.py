"""``run_compare``: every method of a ``CompareConfig`` as its own resumable workflow, one
table of records.

Each method runs through the workflow that owns it (``run_lottery`` for ``imp``,
``run_at_init`` for the at-init family, ``run_sparse_training`` for sparse training and the
dense baseline, ``run_scratch`` for ``finetune``) with the comparison's training settings,
in a run directory of its own under the comparison's directory
``<out_dir>/compare-<model>-<dataset>-<digest>/runs/``. Every one of those is resumable, so a
killed comparison, run again, loads every finished phase of every method and trains only
what is missing. The comparison's own directory holds ``config.json`` and
``results.json``/``.csv`` with one record per (method, control, target sparsity, seed).
The directory is named by the config without its methods (:func:`comparison_identity`):
adding a method to a comparison trains only that method.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from jaxticket.at_init.config import AtInitConfig, used_fields
from jaxticket.at_init.run import run_at_init
from jaxticket.compare.config import AT_INIT, SPARSE, CompareConfig, imp_schedule
from jaxticket.lottery.config import LotteryConfig
from jaxticket.lottery.imp import run_lottery
from jaxticket.scratch import ScratchConfig, run_scratch
from jaxticket.sparse_train.config import SparseTrainConfig
from jaxticket.sparse_train.run import run_sparse_training
from jaxticket.workflow.records import Record
from jaxticket.workflow.run import run_identity
from jaxticket.workflow.store import RunStore
from jaxticket.workflow.training import resolve_devices

__all__ = ["KEPT", "comparison_identity", "method_configs", "run_compare"]

KEPT = (
    "seed",
    "test_accuracy_early",
    "test_accuracy_final",
    "early_stop_step",
    "remaining",
    "layer_remaining",
    "collapsed",
    "diverged",
    "diverged_step",
)
"""The fields of a method's record that a comparison record keeps (its history stays in
the method's own run directory)."""


def method_configs(c: CompareConfig) -> dict[str, Any]:
    """The config of every method's workflow (and ``"dense"``, the baseline), by name, each
    with ``c``'s training settings."""
    training = c.training_settings()
    configs: dict[str, Any] = {"dense": SparseTrainConfig(**training, method="dense")}
    for name in c.methods:
        if name == "imp":
            configs[name] = LotteryConfig(
                **training,
                level_sparsities=imp_schedule(c.sparsities, c.imp_fraction),
                controls=c.imp_controls,
            )
        elif name in AT_INIT:
            options = {"score_batch": c.score_batch, "synflow_rounds": c.synflow_rounds}
            used = {k: v for k, v in options.items() if k in used_fields(name)}
            configs[name] = AtInitConfig(
                **training,
                method=name,
                sparsities=c.sparsities,
                controls=c.at_init_controls(name),
                **used,
            )
        elif name in SPARSE:
            configs[name] = SparseTrainConfig(
                **training, method=name, sparsities=c.sparsities, every=c.every
            )
        else:  # finetune
            configs[name] = ScratchConfig(
                **training, sparsities=c.sparsities, variants=("finetune", *c.finetune_controls)
            )
    return configs


def run_compare(
    config: CompareConfig,
    *,
    out_dir: str = "runs",
    show_progress: bool = False,
    log: Callable[[str], None] | None = None,
    devices=None,
) -> tuple[Path, list[Record]]:
    """Runs (or resumes) every method of ``config``; returns the comparison's directory and
    its records.

    Args:
      config: the comparison.
      out_dir: folder holding the comparison's directory.
      show_progress: progress bars of every training run.
      log: called with one line per event (each method's run directory and phases).
      devices: the devices every workflow spreads its seeds over (default: every device of
        JAX's default backend).

    Returns:
      ``(directory, records)``: one record per (method, control, target sparsity, seed),
      the dense baseline first (``method="dense"``, ``sparsity=0.0``), then the methods in
      ``config.methods`` order. A record has ``method``, ``control`` (``None`` for the
      method's own runs, else the control's name), ``sparsity`` (the target), ``run_dir``
      (the method's run directory) and :data:`KEPT`.

    Raises:
      ConfigError: a method's config does not fit the model or data (before it trains;
        methods before it keep what they finished).

    Warns:
      LayerCollapseWarning, DivergenceWarning: from each method's workflow, naming it.
    """
    log = log or (lambda msg: None)
    devices = resolve_devices(devices, "run_compare")
    configs = method_configs(config)
    identity = comparison_identity(config, devices)
    store = RunStore.open(out_dir, identity, name=f"compare-{config.model}-{config.dataset}")
    runs = store.run_dir / "runs"
    records: list[Record] = []
    with store.locked():
        log(f"comparison directory: {store.run_dir}")
        for name, sub in configs.items():
            log(f"method {name}")
            run = _RUNNERS[type(sub).__name__]
            sub_store, sub_records = run(
                sub, out_dir=str(runs), show_progress=show_progress, log=log, devices=devices
            )
            records += _normalize(name, sub_records, config, sub_store.run_dir)
            store.write_results(identity, records)
    return store.run_dir, records


def comparison_identity(config: CompareConfig, devices) -> dict[str, Any]:
    """What names a comparison's directory: ``run_identity`` without ``methods``.

    The methods only choose which rows a comparison shows (each method's run directory
    inside is named by its own config), so adding a method to a finished comparison trains
    that method alone; ``results.json`` then holds the methods of the latest run.
    """
    identity = run_identity(config, devices)
    del identity["methods"]
    return identity


_RUNNERS = {
    "LotteryConfig": run_lottery,
    "AtInitConfig": run_at_init,
    "SparseTrainConfig": run_sparse_training,
    "ScratchConfig": run_scratch,
}


def _normalize(name: str, records: list[Record], c: CompareConfig, run_dir) -> list[Record]:
    """A method's records as comparison records (targets only: IMP's intermediate levels
    stay in its own run directory)."""
    out = []
    schedule = imp_schedule(c.sparsities, c.imp_fraction)
    targets = {round(s, 6) for s in c.sparsities}
    for r in records:
        if name == "imp":
            if r["level"] == 0:
                continue  # the dense network: the baseline row has it
            sparsity = schedule[r["level"] - 1]
            if sparsity not in targets:
                continue
            control = None if r["variant"] == "ticket" else r["variant"]
        elif name == "finetune":
            if r["variant"] == "dense":
                continue
            sparsity = r["sparsity"]
            control = None if r["variant"] == "finetune" else r["variant"]
        else:
            sparsity = r["sparsity"]
            control = None if r.get("variant", "mask") == "mask" else r["variant"]
        row = {"method": name, "control": control, "sparsity": float(sparsity)}
        row.update({k: r[k] for k in KEPT if k in r})
        row["run_dir"] = str(Path(run_dir).name)
        out.append(row)
    return out
