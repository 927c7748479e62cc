"""Stability across seeds (issue 12): linear mode connectivity, weight matching, mask overlap,
early-bird tickets.

* ``interpolate``: ``interpolate(a, b, alpha)``, ``path_errors`` (every pair of stacked seeds
  at every α in one compiled program, BatchNorm statistics recomputed on training data),
  ``barriers`` and ``summary`` (stable means a barrier under 2 %); ``batchnorm``:
  ``recompute_batchnorm``;
* ``permutations`` / ``matching``: ``permutation_spec`` (derived from a sequential model's
  params, or written by hand), ``apply_permutation`` (the same function), ``weight_matching``
  (coordinate descent with a linear assignment per layer), ``align_seeds``;
* ``overlap`` / ``overlap_runs``: ``overlap_matrix`` (N × N Jaccard and normalized Hamming,
  globally and per layer), ``random_baseline`` (random masks with the same per-layer counts),
  ``masks_from_run`` (the masks a finished run stored; ``jaxticket overlap RUN_DIR...``);
* ``config`` / ``run``: the workflow (``jaxticket stability``): ``StabilityConfig`` and
  ``run_stability`` (parents snapshotted at every rewind step k, copies differing in data
  order, barriers per k, weight matching; resumable);
* ``early_bird``: ``early_bird`` (masks drawn during dense training, the FIFO Hamming test),
  ``retrain_tickets`` (the early-bird ticket against the full one-shot ticket).
"""

from jaxticket.stability.batchnorm import recompute_batchnorm
from jaxticket.stability.config import StabilityConfig
from jaxticket.stability.early_bird import EarlyBird, early_bird, redetect, retrain_tickets
from jaxticket.stability.interpolate import (
    STABLE_BELOW,
    BarrierSummary,
    PathResult,
    all_pairs,
    alpha_grid,
    barriers,
    interpolate,
    path_errors,
    summary,
)
from jaxticket.stability.matching import align_seeds, matching_objective, weight_matching
from jaxticket.stability.overlap import (
    expected_hamming,
    expected_jaccard,
    overlap_matrix,
    pairs_mean,
    random_baseline,
)
from jaxticket.stability.overlap_runs import RunMasks, masks_from_run, masks_from_runs
from jaxticket.stability.permutations import apply_permutation, permutation_spec
from jaxticket.stability.run import STABILITY, run_stability

__all__ = [
    "STABILITY",
    "STABLE_BELOW",
    "BarrierSummary",
    "EarlyBird",
    "PathResult",
    "RunMasks",
    "StabilityConfig",
    "align_seeds",
    "all_pairs",
    "alpha_grid",
    "apply_permutation",
    "barriers",
    "early_bird",
    "expected_hamming",
    "expected_jaccard",
    "interpolate",
    "masks_from_run",
    "masks_from_runs",
    "matching_objective",
    "overlap_matrix",
    "pairs_mean",
    "path_errors",
    "permutation_spec",
    "random_baseline",
    "recompute_batchnorm",
    "redetect",
    "retrain_tickets",
    "run_stability",
    "summary",
    "weight_matching",
]
