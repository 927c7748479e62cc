"""Pruning at initialization (SNIP, GraSP, SynFlow, random, magnitude) and its sanity checks.

* ``methods``: the methods, each ``method.mask(model, params, model_state, data, key,
  sparsity)`` as one jitted program (``get(name)``, ``METHODS``);
* ``sanity``: ``layerwise_shuffle``, ``invert_scores``, ``reinit``;
* ``config`` / ``run``: the workflow (``jaxticket at-init``): ``AtInitConfig`` and
  ``run_at_init``, one phase per sparsity training the mask and its controls in one
  vmapped program.
"""

from jaxticket.at_init.config import CONTROLS, AtInitConfig  # noqa: I001 (after methods)
from jaxticket.at_init.methods import (
    METHODS,
    SNIP,
    GraSP,
    MagnitudeInit,
    RandomInit,
    SynFlow,
    draw_batch,
    get,
    negated,
)
from jaxticket.at_init.run import AT_INIT, run_at_init
from jaxticket.at_init.sanity import invert_scores, layerwise_shuffle, reinit

__all__ = [
    "AT_INIT",
    "CONTROLS",
    "METHODS",
    "AtInitConfig",
    "SNIP",
    "GraSP",
    "MagnitudeInit",
    "RandomInit",
    "SynFlow",
    "draw_batch",
    "get",
    "invert_scores",
    "layerwise_shuffle",
    "negated",
    "reinit",
    "run_at_init",
]
