"""Supermasks: masks learned while the weights stay fixed (``jaxticket supermask``).

* ``scores``: score trees and their straight-through masks (edge-popup's exact per-layer
  top-k of ``|score|``, the sign supermask), the score inits and the signed Kaiming
  constant;
* ``model``: ``supermask_model`` (any ``Model`` with params ``{"scores", "weights"}``) and
  ``freeze_weights`` (the optax wrapper that keeps the weights fixed), so the ordinary
  engine (``jaxticket.train.train_seeds``) trains the scores, seeds vmapped.
"""

from jaxticket.supermask import model, scores
from jaxticket.supermask.model import (
    KINDS,
    effective_params,
    freeze_weights,
    supermask_model,
    supermask_params,
    wrapped_mask,
)
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
