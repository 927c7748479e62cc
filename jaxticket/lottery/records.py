"""The records of a lottery level, and the warnings a level's problems raise.

One record per (level, variant, seed), as ``results.json`` stores them (see
``jaxticket.lottery.report``). Besides accuracies and the fraction remaining, a record says
what went wrong: ``collapsed`` lists the prunable leaves left with no weight (the network
then cannot pass a signal through that layer), ``diverged`` / ``diverged_step`` whether
and where the loss or the weights became non-finite.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from jaxticket.lottery.store import flatten_tree
from jaxticket.masks import LayerCollapseWarning
from jaxticket.train import DivergenceWarning

Record = dict[str, Any]


def level_records(
    level: int, variant: str, history, mask, diverged, diverged_step, seeds: int
) -> list[Record]:
    """The records of one variant of a level, one per seed.

    Args:
      level: the pruning level.
      variant: ``"ticket"`` or a control's name.
      history: the training history, each entry stacked over seeds (host arrays).
      mask: the variant's mask, stacked over seeds.
      diverged, diverged_step: ``TrainResult``'s fields for these seeds.
      seeds: the number of seeds.

    Returns:
      ``seeds`` records; early stopping picks the evaluation (after step 0) with the
      lowest validation loss.
    """
    hist = {k: np.asarray(v) for k, v in history.items()}
    flat = {p: np.asarray(x) for p, x in flatten_tree(mask).items()}
    alive = {p: x.reshape(x.shape[0], -1).sum(1) for p, x in flat.items()}
    sizes = {p: int(np.prod(x.shape[1:])) for p, x in flat.items()}
    remaining = sum(alive.values()) / sum(sizes.values())
    diverged, diverged_step = np.asarray(diverged), np.asarray(diverged_step)
    out = []
    for s in range(seeds):
        h = {k: v[s].tolist() for k, v in hist.items()}
        val = np.asarray(hist["val_loss"][s])
        best = 1 + int(np.argmin(val[1:])) if len(val) > 1 else 0
        out.append(
            {
                "level": level,
                "variant": variant,
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
        )
    return out


def warn_collapsed(level: int, records: list[Record], *, stacklevel: int = 2) -> None:
    """``LayerCollapseWarning`` naming the level's collapsed leaves and the runs with them."""
    runs = _runs_with(records, lambda r: bool(r.get("collapsed")))
    if runs:
        leaves = sorted({p for r in records for p in r.get("collapsed") or ()})
        warnings.warn(
            f"level {level}: layer collapse, prunable leaves with no weight left: "
            f"{', '.join(leaves)} ({runs}); these runs cannot learn (raise min_keep, lower "
            "the sparsity)",
            LayerCollapseWarning,
            stacklevel=stacklevel,
        )


def warn_diverged(level: int, records: list[Record], *, stacklevel: int = 2) -> None:
    """``DivergenceWarning`` naming the level's diverged runs and their first bad step."""
    bad = [r for r in records if r.get("diverged")]
    if bad:
        at = ", ".join(f"{r['variant']} seed {r['seed']} at step {r['diverged_step']}" for r in bad)
        warnings.warn(
            f"level {level}: training diverged (non-finite loss or weights) in {len(bad)} of "
            f"{len(records)} runs: {at}; their accuracies are meaningless",
            DivergenceWarning,
            stacklevel=stacklevel,
        )


def _runs_with(records: list[Record], bad) -> str:
    by_variant: dict[str, list[int]] = {}
    for r in records:
        if bad(r):
            by_variant.setdefault(r["variant"], []).append(r["seed"])
    return "; ".join(
        f"{v} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}"
        for v, s in by_variant.items()
    )
