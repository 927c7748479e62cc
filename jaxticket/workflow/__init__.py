"""The layer every workflow is built on (IMP, sparse training, ...): one shape for all.

* ``config``: ``WorkflowConfig``, the frozen-dataclass base whose fields (``field(default,
  help)``) are coerced from their type hints and checked (``check()`` raising
  ``ConfigError(field, message)``), with ``to_dict``/``from_dict``/``digest``;
* ``flags``: ``add_config_flags(parser, cls)`` and ``config_from_args(cls, args)``, the
  CLI flags of any such config;
* ``run``: ``Workflow`` (name, phases, setup) and ``run_workflow``, the resumable phase
  loop over the run store (``jaxticket.workflow.store.RunStore``, with its file, seal,
  results and tree helpers in ``store_*``);
* ``records``: ``seed_records`` from a ``TrainResult``, collapse and divergence warnings;
* ``training``: what every training workflow shares: ``check_training_settings`` (seeds,
  steps, optimizer, schedule, evaluation, seed, min_keep) and ``check_fits`` (val_size,
  batch_size, layer_rates against the data and model), the seed key streams
  (``seed_keys``, ``stream_key``) and ``train_on_devices`` (``train_seeds`` over the
  workflow's devices, host results);
* ``settings``: ``TrainingSettings``, the model, data set and training fields a workflow
  config inherits (``training_settings()`` hands them to another workflow's config);
* ``summary``: ``group_summary`` by any fields (mean ± std, min, max over seeds) and
  tables with collapsed/diverged columns;
* ``plots`` (imported on first use: it loads matplotlib): seed-band line plots.
"""

from __future__ import annotations

import importlib

from jaxticket.workflow import config, flags, records, run, summary, training
from jaxticket.workflow.config import RUNTIME_KEY, ConfigError, WorkflowConfig, field
from jaxticket.workflow.flags import add_config_flags, config_from_args
from jaxticket.workflow.records import Record, seed_records, warn_collapsed, warn_diverged
from jaxticket.workflow.run import PhaseRunner, Workflow, run_identity, run_workflow
from jaxticket.workflow.settings import TRAINING_FIELDS, TrainingSettings
from jaxticket.workflow.summary import format_summary, group_summary, markdown_table, text_table
from jaxticket.workflow.training import (
    check_fits,
    check_training_settings,
    resolve_devices,
    seed_keys,
    stream_key,
    train_on_devices,
)

__all__ = [
    "RUNTIME_KEY",
    "TRAINING_FIELDS",
    "ConfigError",
    "PhaseRunner",
    "Record",
    "TrainingSettings",
    "Workflow",
    "WorkflowConfig",
    "add_config_flags",
    "check_fits",
    "check_training_settings",
    "config",
    "config_from_args",
    "field",
    "flags",
    "format_summary",
    "group_summary",
    "markdown_table",
    "plots",
    "records",
    "resolve_devices",
    "run",
    "run_identity",
    "run_workflow",
    "seed_keys",
    "seed_records",
    "stream_key",
    "summary",
    "text_table",
    "train_on_devices",
    "training",
    "warn_collapsed",
    "warn_diverged",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.workflow.plots")
    raise AttributeError(f"module 'jaxticket.workflow' has no attribute {name!r}")
