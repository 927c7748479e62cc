"""Supermasks: masks learned while the weights stay fixed (``jaxticket supermask``).

* ``scores``: score trees and their straight-through masks (edge-popup's exact per-layer
  top-k of ``|score|``, the sign supermask), the score inits and the signed Kaiming
  constant;
* ``model``: ``supermask_model`` (any ``Model`` with params ``{"scores", "weights"}``) and
  ``freeze_weights`` (the optax wrapper that keeps the weights fixed), so the ordinary
  engine (``jaxticket.train.train_seeds``) trains the scores, seeds vmapped;
* ``config``: ``SupermaskConfig`` (variant ``edge_popup``, ``jackpot`` or ``hidenseek``,
  the fractions kept ``ks``; every field a CLI flag, the digest names the run directory);
* ``run``: ``run_supermask`` on the workflow layer: the trained dense reference (phase 0),
  then one resumable phase per k;
* ``report``: the table over seeds and ``report(run_dir)`` for ``jaxticket report``;
* ``plots`` (loads matplotlib): accuracy against k with the dense reference line.

Example::

    config = SupermaskConfig(variant="edge_popup", ks=(0.3, 0.5), steps=2000)
    store, records = run_supermask(config, out_dir="runs")
    print(format_table(summarize(records)))
"""

import importlib

from jaxticket.supermask import config, model, report, run, scores
from jaxticket.supermask.config import VARIANTS, SupermaskConfig
from jaxticket.supermask.model import (
    KINDS,
    effective_params,
    freeze_weights,
    supermask_model,
    supermask_params,
    wrapped_mask,
)
from jaxticket.supermask.report import format_table, summarize
from jaxticket.supermask.run import SUPERMASK, SupermaskPhase, run_supermask
from jaxticket.supermask.scores import (
    edge_popup_mask,
    keep_count,
    magnitude_scores,
    sign_ste,
    signed_constant,
    topk_ste,
    uniform_scores,
)

__all__ = [
    "KINDS",
    "SUPERMASK",
    "VARIANTS",
    "SupermaskConfig",
    "SupermaskPhase",
    "config",
    "format_table",
    "plots",
    "report",
    "run",
    "run_supermask",
    "summarize",
    "edge_popup_mask",
    "effective_params",
    "freeze_weights",
    "keep_count",
    "magnitude_scores",
    "model",
    "scores",
    "sign_ste",
    "signed_constant",
    "supermask_model",
    "supermask_params",
    "topk_ste",
    "uniform_scores",
    "wrapped_mask",
]


def __getattr__(name: str):
    # plots pulls in matplotlib (slow to import); load it when first asked for.
    if name == "plots":
        return importlib.import_module("jaxticket.supermask.plots")
    raise AttributeError(f"module 'jaxticket.supermask' has no attribute {name!r}")
