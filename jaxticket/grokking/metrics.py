"""What the grokking workflow reads off a run: pure functions of recorded histories and
params, each checked in the tests on hand-made cases.

* :func:`steps_to_accuracy`: the training step at which test accuracy first reaches a
  threshold (the paper's speed-of-grokking metric), ``None`` when it never does;
* :func:`memorization_index`: the first evaluation at which every seed has memorized
  the training set (the point the memorization ticket is pruned at);
* :func:`lp_norm` / :func:`norm_matched`: the L1/L2 norm of the prunable weights and the
  dense init rescaled to a ticket's norm (the paper's norm control).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np

__all__ = ["lp_norm", "memorization_index", "norm_matched", "steps_to_accuracy"]


def steps_to_accuracy(history: dict, threshold: float, key: str = "test_accuracy") -> int | None:
    """The step of the first evaluation whose ``history[key]`` is ``>= threshold``.

    Args:
      history: a run's history (``"step"`` and ``key``, one entry per evaluation).
      threshold: the accuracy to reach (a fraction, e.g. 0.95).
      key: the history entry compared.

    Returns:
      ``history["step"][i]`` for the first such index ``i``, or ``None`` when no
      evaluation reaches the threshold (a NaN accuracy never does).

    Raises:
      ValueError: the history lacks ``"step"`` or ``key``, or they differ in length.
    """
    steps, values = _entries(history, key)
    hits = np.flatnonzero(values >= threshold)
    return int(steps[hits[0]]) if hits.size else None


def memorization_index(train_accuracy, memorized: float) -> int | None:
    """The first evaluation at which every seed's train accuracy is ``>= memorized``.

    Args:
      train_accuracy: ``(seeds, evaluations)`` train accuracies.
      memorized: the accuracy that counts as memorized (e.g. 0.99).

    Returns:
      The evaluation index, or ``None`` when no evaluation has every seed there.
    """
    acc = np.asarray(train_accuracy, dtype=np.float64)
    if acc.ndim != 2:
        raise ValueError(f"train_accuracy must be (seeds, evaluations), got shape {acc.shape}")
    hits = np.flatnonzero((acc >= memorized).all(axis=0))
    return int(hits[0]) if hits.size else None


def lp_norm(params: Any, mask: Any, order: int) -> np.ndarray:
    """The L``order`` norm of the prunable weights (the leaves where ``mask`` is not
    ``None``) of ``params`` times ``mask``, one value per seed (leaves stacked over seeds).

    Args:
      params: params stacked over seeds.
      mask: a mask stacked over seeds, or a dense mask (all ``True``) to take every
        prunable weight.
      order: 1 or 2.
    """
    total = None
    for w, m in _prunable_pairs(params, mask):
        w = np.asarray(w, dtype=np.float64) * np.asarray(m, dtype=np.float64)
        part = np.abs(w).reshape(w.shape[0], -1) ** order
        total = part.sum(1) if total is None else total + part.sum(1)
    if total is None:
        raise ValueError("lp_norm: the mask has no prunable leaf")
    return total ** (1.0 / order)


def norm_matched(params: Any, dense: Any, ticket_mask: Any, order: int) -> Any:
    """The dense ``params`` with every prunable leaf scaled, per seed, by one factor so
    that their L``order`` norm equals the ticket's (``params`` times ``ticket_mask``).

    Leaves that are never pruned (``None`` in the mask: biases) are left unchanged.

    Args:
      params: the init, stacked over seeds.
      dense: the dense mask of the params, stacked over seeds (``True`` where prunable).
      ticket_mask: the ticket's mask, stacked over seeds.
      order: 1 or 2.
    """
    factor = lp_norm(params, ticket_mask, order) / lp_norm(params, dense, order)

    def scale(m, w):
        if m is None:
            return w
        w = np.asarray(w)
        return (w * factor.reshape(-1, *([1] * (w.ndim - 1)))).astype(w.dtype)

    return jax.tree.map(scale, dense, params, is_leaf=lambda x: x is None)


def _prunable_pairs(params, mask):
    pairs = []
    jax.tree.map(
        lambda m, w: pairs.append((w, m)) if m is not None else None,
        mask,
        params,
        is_leaf=lambda x: x is None,
    )
    return pairs


def _entries(history: dict, key: str) -> tuple[np.ndarray, np.ndarray]:
    missing = [k for k in ("step", key) if k not in history]
    if missing:
        raise ValueError(f"history lacks {missing}; it has {sorted(history)}")
    steps = np.asarray(history["step"])
    values = np.asarray(history[key], dtype=np.float64)
    if steps.shape != values.shape:
        raise ValueError(
            f"history['step'] and history[{key!r}] differ in length: "
            f"{steps.shape} vs {values.shape}"
        )
    values = np.where(np.isnan(values), -math.inf, values)
    return steps, values
