"""The sparse-training workflow (``jaxticket sparse-train``): GMP, SET, RigL, GraNet, static
sparse and the dense baseline at several target sparsities, seeds vmapped, resumable.

* ``config``: ``SparseTrainConfig`` (every field a CLI flag; the digest names the run
  directory) and ``build_method``, the ``jaxticket.sparse`` method of one target;
* ``run``: ``run_sparse_training`` on the workflow layer (``jaxticket.workflow``), one
  phase per target sparsity, each checkpointing its final params and mask;
* ``report``: the table over seeds and ``report(run_dir)`` for ``jaxticket report``;
* ``plots`` (loads matplotlib): accuracy against sparsity with seed bands (several runs
  at once, for multi-method figures) and sparsity over training.

Example::

    config = SparseTrainConfig(method="rigl", sparsities=(0.9, 0.95), steps=3000)
    store, records = run_sparse_training(config, out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.sparse_train import config, report, run
from jaxticket.sparse_train.config import METHODS, SparseTrainConfig, build_method
from jaxticket.sparse_train.run import SPARSE_TRAIN, PhaseState, run_sparse_training

__all__ = [
    "METHODS",
    "SPARSE_TRAIN",
    "PhaseState",
    "SparseTrainConfig",
    "build_method",
    "config",
    "plots",
    "report",
    "run",
    "run_sparse_training",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.sparse_train.plots")
    raise AttributeError(f"module 'jaxticket.sparse_train' has no attribute {name!r}")
