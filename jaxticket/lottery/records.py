"""The records of a lottery level, and the warnings a level's problems raise.

One record per (level, variant, seed), as ``results.json`` stores them (see
``jaxticket.lottery.report``), built by ``jaxticket.workflow.records.seed_records``. Besides
accuracies and the fraction remaining, a record says what went wrong: ``collapsed`` lists
the prunable leaves left with no weight (the network then cannot pass a signal through
that layer), ``diverged`` / ``diverged_step`` whether and where the loss or the weights
became non-finite.
"""

from __future__ import annotations

from typing import NamedTuple

from jaxticket.masks import LayerCollapseWarning  # noqa: F401  (importable from here)
from jaxticket.train import DivergenceWarning  # noqa: F401
from jaxticket.workflow import records as workflow_records
from jaxticket.workflow.records import Record, seed_records


class _Result(NamedTuple):
    history: dict
    diverged: object
    diverged_step: object


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
    result = _Result(history, diverged, diverged_step)
    return seed_records(result, mask, seeds, level=level, variant=variant)


def warn_collapsed(level: int, records: list[Record], *, stacklevel: int = 2) -> None:
    """``LayerCollapseWarning`` naming the level's collapsed leaves and the runs with them."""
    workflow_records.warn_collapsed(f"level {level}", records, stacklevel=stacklevel + 1)


def warn_diverged(level: int, records: list[Record], *, stacklevel: int = 2) -> None:
    """``DivergenceWarning`` naming the level's diverged runs and their first bad step."""
    workflow_records.warn_diverged(f"level {level}", records, stacklevel=stacklevel + 1)
