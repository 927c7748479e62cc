"""Per-seed records of a training result, and the warnings a result's problems raise.

A record is one JSON-ready dict per (what was trained, seed), as ``results.json`` stores
them. Besides the workflow's own keys (IMP: ``level``, ``variant``) it holds the
accuracies (early-stop and final), the fraction of prunable weights remaining, overall and
per layer, and what went wrong: ``collapsed`` lists the prunable leaves left with no weight
(the network then cannot pass a signal through that layer), ``diverged`` /
``diverged_step`` whether and where the loss or the weights became non-finite.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from jaxticket.masks import LayerCollapseWarning
from jaxticket.train import DivergenceWarning
from jaxticket.workflow.store_tree import flatten_tree

Record = dict[str, Any]


def seed_records(result, mask, seeds: int, **keys: Any) -> list[Record]:
    """The records of one stacked ``TrainResult`` (host arrays), one per seed.

    Early stopping picks the evaluation after step 0 with the lowest validation loss
    (the only one when the history has a single evaluation). When the mask changed
    during training (a ``"sparsity"`` history, as gradual pruning records), only the
    evaluations at the run's final sparsity count: an earlier, denser network is not the
    sparse network the record reports.

    Args:
      result: a ``TrainResult`` (or a slice of one) stacked over ``seeds``: its
        ``history``, ``diverged``, ``diverged_step`` and, when present and not ``None``,
        ``mask_updates`` (then each record gets ``mask_updates``: how many updates ran).
      mask: the mask the seeds trained with at the end, stacked over seeds (``None``
        leaves are not prunable).
      seeds: the number of seeds.
      **keys: the fields that name these runs (e.g. ``level=1, variant="ticket"``),
        first in each record, before ``seed``.

    Returns:
      ``seeds`` records with ``keys``, ``seed``, ``remaining``, ``layer_remaining``,
      ``collapsed``, ``diverged``, ``diverged_step``, ``test_accuracy_early``,
      ``test_accuracy_final``, ``early_stop_step``, ``history`` (and ``mask_updates``).
    """
    hist = {k: np.asarray(v) for k, v in result.history.items()}
    flat = {p: np.asarray(x) for p, x in flatten_tree(mask).items()}
    alive = {p: x.reshape(x.shape[0], -1).sum(1) for p, x in flat.items()}
    sizes = {p: int(np.prod(x.shape[1:])) for p, x in flat.items()}
    remaining = sum(alive.values()) / sum(sizes.values())
    diverged = np.asarray(result.diverged)
    diverged_step = np.asarray(result.diverged_step)
    updates = getattr(result, "mask_updates", None)
    out = []
    for s in range(seeds):
        h = {k: v[s].tolist() for k, v in hist.items()}
        sparsity = hist["sparsity"][s] if "sparsity" in hist else None
        best = early_stop_index(hist["val_loss"][s], sparsity)
        record = {
            **keys,
            "seed": s,
            "remaining": float(remaining[s]),
            "layer_remaining": {p: float(alive[p][s]) / sizes[p] for p in alive},
            "collapsed": [p for p in alive if alive[p][s] == 0],
            "diverged": bool(diverged[s]),
            "diverged_step": int(diverged_step[s]),
            "test_accuracy_early": float(hist["test_accuracy"][s][best]),
            "test_accuracy_final": float(hist["test_accuracy"][s][-1]),
            "early_stop_step": int(hist["step"][s][best]),
            "history": h,
        }
        if updates is not None:
            record["mask_updates"] = int(np.shape(updates["step"])[-1])
        out.append(record)
    return out


def early_stop_index(val_loss, sparsity=None) -> int:
    """The evaluation early stopping picks: the lowest ``val_loss`` after the first
    evaluation (index 0 when there is only one), among the evaluations whose ``sparsity``
    (when given, one per evaluation) has reached its final value."""
    val = np.asarray(val_loss, dtype=np.float64)
    if len(val) < 2:
        return 0
    allowed = np.ones(len(val), bool)
    allowed[0] = False
    if sparsity is not None:
        sparsity = np.asarray(sparsity, dtype=np.float64)
        allowed &= sparsity >= sparsity[-1] - 1e-9
        if not allowed.any():  # the final sparsity only at step 0: nothing trained after it
            return len(val) - 1
    # NaN losses (a diverged run) never win; an all-NaN history falls back to the first.
    masked = np.where(allowed & ~np.isnan(val), val, np.inf)
    return int(np.argmin(masked)) if np.isfinite(masked).any() else int(np.flatnonzero(allowed)[0])


def warn_collapsed(where: str, records: list[Record], *, stacklevel: int = 2) -> None:
    """``LayerCollapseWarning`` naming the collapsed leaves of ``records`` and the runs
    with them; ``where`` (e.g. ``"level 3"``) starts the message."""
    runs = runs_with(records, lambda r: bool(r.get("collapsed")))
    if runs:
        leaves = sorted({p for r in records for p in r.get("collapsed") or ()})
        warnings.warn(
            f"{where}: layer collapse, prunable leaves with no weight left: "
            f"{', '.join(leaves)} ({runs}); these runs cannot learn (raise min_keep, lower "
            "the sparsity)",
            LayerCollapseWarning,
            stacklevel=stacklevel,
        )


def warn_diverged(where: str, records: list[Record], *, stacklevel: int = 2) -> None:
    """``DivergenceWarning`` naming the diverged runs of ``records`` and their first bad
    step; ``where`` starts the message."""
    bad = [r for r in records if r.get("diverged")]
    if bad:
        at = ", ".join(f"{run_name(r)} seed {r['seed']} at step {r['diverged_step']}" for r in bad)
        warnings.warn(
            f"{where}: training diverged (non-finite loss or weights) in {len(bad)} of "
            f"{len(records)} runs: {at}; their accuracies are meaningless",
            DivergenceWarning,
            stacklevel=stacklevel,
        )


def run_name(record: Record) -> str:
    """What a record's run is called in messages: its ``variant`` (IMP), else its
    ``method``, else ``"run"``."""
    return str(record.get("variant", record.get("method", "run")))


def runs_with(records: list[Record], bad) -> str:
    """``"ticket seeds 0, 1; reinit seed 1"``: the runs whose record satisfies ``bad``."""
    by_name: dict[str, list[int]] = {}
    for r in records:
        if bad(r):
            by_name.setdefault(run_name(r), []).append(r["seed"])
    return "; ".join(
        f"{v} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}" for v, s in by_name.items()
    )
