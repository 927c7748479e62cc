"""Lottery-ticket workflows: IMP with rewinding and its controls, as data and on disk.

``LotteryConfig`` names a run, ``run_lottery`` runs or resumes it; the submodules are
attributes of this package (``jaxticket.lottery.report.format_table`` works after
``import jaxticket``): ``config``, ``imp``, ``records``, ``report``, ``store`` and
``plots`` (imported on first use: it loads matplotlib).
"""

from __future__ import annotations

import importlib

from jaxticket.lottery import config, imp, records, report, store
from jaxticket.lottery.config import ConfigError, LotteryConfig
from jaxticket.lottery.imp import run_identity, run_lottery
from jaxticket.workflow.store import BrokenLevelWarning, RunDirectoryBusyError, StorageError

__all__ = [
    "BrokenLevelWarning",
    "ConfigError",
    "LotteryConfig",
    "RunDirectoryBusyError",
    "StorageError",
    "config",
    "imp",
    "plots",
    "records",
    "report",
    "run_identity",
    "run_lottery",
    "store",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.lottery.plots")
    raise AttributeError(f"module 'jaxticket.lottery' has no attribute {name!r}")
