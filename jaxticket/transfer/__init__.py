"""Ticket transfer as a workflow (``jaxticket transfer``): a magnitude ticket found on a
source task, trained on a target task with the same parameter shapes (modular addition →
subtraction, digits 0–4 → 5–9, MNIST-1D → a re-seeded MNIST-1D), beside the target's own
ticket and the reinit and layerwise-shuffle controls; seeds vmapped, resumable.

* ``config``: ``TransferConfig``; ``tasks``: ``class_subset``, ``task_data``,
  ``check_same_shapes``; ``run``: ``run_transfer``; ``report``: the table; ``plots``
  (loads matplotlib): accuracy against sparsity.
"""

import importlib

from jaxticket.transfer.config import VARIANTS, TransferConfig
from jaxticket.transfer.report import format_table, summarize
from jaxticket.transfer.run import TRANSFER, TransferState, run_transfer
from jaxticket.transfer.tasks import check_same_shapes, class_subset, task_data

__all__ = [
    "TRANSFER",
    "VARIANTS",
    "TransferConfig",
    "TransferState",
    "check_same_shapes",
    "class_subset",
    "format_table",
    "plots",
    "run_transfer",
    "summarize",
    "task_data",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.transfer.plots")
    raise AttributeError(f"module 'jaxticket.transfer' has no attribute {name!r}")
