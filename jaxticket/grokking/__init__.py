"""Grokking tickets (Minegishi et al. 2023) as a workflow (``jaxticket grokking``).

Does a lottery ticket explain grokking? On ``(a + b) mod p`` the dense network, the
grokking ticket (global magnitude pruning of the generalized network, rewound to init),
a ticket taken at memorization, the at-init masks (random, SNIP, GraSP, SynFlow) at the
same sparsity and the dense init rescaled to the ticket's L1/L2 norm train side by side,
seeds vmapped; the metric is the step at which test accuracy first reaches 95 %.

* ``config``: ``GrokkingConfig`` (every field a CLI flag, the digest names the run);
* ``metrics``: ``steps_to_accuracy``, ``memorization_index``, ``lp_norm``,
  ``norm_matched`` (pure functions of histories and params);
* ``run``: ``run_grokking`` on the workflow layer (phase 0 dense, phase 1 the variants);
* ``report``: the table over seeds; ``plots`` (loads matplotlib): accuracy curves.

Example::

    store, records = run_grokking(GrokkingConfig(p=67, steps=10000), out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.grokking.config import VARIANTS, GrokkingConfig
from jaxticket.grokking.metrics import (
    lp_norm,
    memorization_index,
    norm_matched,
    steps_to_accuracy,
)
from jaxticket.grokking.report import format_table, summarize
from jaxticket.grokking.run import GROKKING, GrokkingState, run_grokking

__all__ = [
    "GROKKING",
    "VARIANTS",
    "GrokkingConfig",
    "GrokkingState",
    "format_table",
    "lp_norm",
    "memorization_index",
    "norm_matched",
    "plots",
    "run_grokking",
    "steps_to_accuracy",
    "summarize",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.grokking.plots")
    raise AttributeError(f"module 'jaxticket.grokking' has no attribute {name!r}")
