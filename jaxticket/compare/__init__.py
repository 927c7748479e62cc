"""One command that compares every method on equal terms (``jaxticket compare``).

* ``config``: ``CompareConfig`` (the model, data set and training every method shares, the
  methods, target sparsities and controls) and ``imp_schedule`` (IMP's levels through the
  targets);
* ``run``: ``run_compare``, each method as its own resumable workflow (``run_lottery``,
  ``run_at_init``, ``run_sparse_training``, ``run_scratch``) under one directory, and
  ``method_configs``, the config each method runs with;
* ``report``: the accuracy table (mean ± std [min, max] over seeds, per-layer densities,
  collapse and divergence columns) and the control table (each control against its method);
* ``plots`` (loads matplotlib): accuracy against sparsity with seed bands and the per-layer
  densities of every method.

Example::

    config = CompareConfig(methods=("imp", "snip", "synflow", "rigl"), sparsities=(0.9, 0.98))
    directory, records = run_compare(config, out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.compare import config, report, run
from jaxticket.compare.config import METHODS, CompareConfig, imp_schedule
from jaxticket.compare.report import control_table, format_table, summarize, verdicts
from jaxticket.compare.run import method_configs, run_compare

__all__ = [
    "METHODS",
    "CompareConfig",
    "config",
    "control_table",
    "format_table",
    "imp_schedule",
    "method_configs",
    "plots",
    "report",
    "run",
    "run_compare",
    "summarize",
    "verdicts",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.compare.plots")
    raise AttributeError(f"module 'jaxticket.compare' has no attribute {name!r}")
