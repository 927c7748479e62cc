"""Sparse model soups (``jaxticket soups``; Zimmer et al. 2023): average retrained copies
of one pruned network, which share its mask, and start the next prune–retrain level from
the average.

* ``averaging``: :func:`average` (the uniform soup; refuses members whose masks differ,
  naming the leaf) and :func:`shared_mask`;
* ``config``: ``SoupConfig`` (every field a CLI flag; the digest names the run directory);
* ``run``: ``run_soups`` on the workflow layer, one phase per IMP level: members ×
  seeds (and plain IMP) in one vmapped program, the soup, its BatchNorm recomputed;
* ``report``: the per-level table (soup, members' mean and best, IMP) and ``report``;
* ``plots`` (loads matplotlib): accuracy against sparsity of the four.

Example::

    config = SoupConfig(model="mlp", members=3, levels=4, steps=1000)
    store, records = run_soups(config, out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.soups import averaging, config, report, run
from jaxticket.soups.averaging import average, shared_mask
from jaxticket.soups.config import SoupConfig
from jaxticket.soups.run import SOUPS, SoupState, run_soups

__all__ = [
    "SOUPS",
    "SoupConfig",
    "SoupState",
    "average",
    "averaging",
    "config",
    "plots",
    "report",
    "run",
    "run_soups",
    "shared_mask",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.soups.plots")
    raise AttributeError(f"module 'jaxticket.soups' has no attribute {name!r}")
