"""The COLT experiment as data: one frozen dataclass names a run completely.

``ColtConfig`` is a ``jaxticket.workflow.WorkflowConfig``: every field is a CLI flag of
``jaxticket colt`` and the config's digest names the run directory. The training data
(after the validation split) is cut into ``segments`` equal parts; each cycle trains one
copy per segment for ``segment_steps`` iterations from the rewind point, prunes each by
magnitude (IMP's pruner: ``prune_fraction`` of the surviving weights, ``allocation``,
``layer_rates``, ``min_keep``) and keeps the weights alive in all of them (the overlap).
"""

from __future__ import annotations

import dataclasses

from jaxticket.soups.pruners import check_pruning_settings
from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import require as _check

__all__ = ["ColtConfig"]


@dataclasses.dataclass(frozen=True)
class ColtConfig(TrainingSettings):
    """Cyclic overlapping lottery tickets against IMP at equal sparsity.

    Defaults: LeNet-300-100 on MNIST-1D with the lottery workflow's training settings,
    2 segments whose copies each train ``steps // 2`` iterations (the same epochs over
    their half as a full-data run), 20 % of the surviving weights pruned per copy per
    cycle (the output layer at half rate), rewinding to initialization.
    """

    segments: int = field(2, "K, the parts the training data is split into (2 <= K <= examples)")
    cycles: int = field(4, "prune cycles: tickets at the overlaps of cycles 1..cycles")
    segment_steps: int = field(
        0,
        "iterations of each segment's copy per cycle (0: steps // segments, the epochs a "
        "full-data run makes)",
    )
    prune_fraction: float = field(
        0.2, "fraction of its surviving weights each copy prunes per cycle"
    )
    allocation: str = field("layerwise", "layerwise (per-layer rates) or global (one threshold)")
    layer_rates: tuple[tuple[str, float], ...] = field(
        (("output/*", 0.5),), "layerwise: per-layer scale of prune_fraction, PATTERN=SCALE"
    )
    rewind: int = field(
        0, "iteration k the survivors are reset to (θ_k of the dense full-data run; 0 = init)"
    )
    hidden: tuple[int, ...] = field(
        (), "hidden widths of the mlp model, e.g. 100,100 (empty: the model's default)"
    )

    def check(self) -> None:
        """The training settings, then COLT's own, each a ``ConfigError`` naming the
        field (``segments`` against the number of examples is checked when the data is
        loaded)."""
        super().check()
        c = self
        _check(
            c.segments >= 2,
            "segments",
            f"segments must be >= 2 (one segment is IMP), got {c.segments}",
        )
        _check(c.cycles >= 1, "cycles", f"cycles must be >= 1, got {c.cycles}")
        _check(
            c.segment_steps >= 0,
            "segment_steps",
            f"segment_steps must be >= 0 (0: steps // segments), got {c.segment_steps}",
        )
        _check(
            self.copy_steps() >= 1,
            "segment_steps",
            f"steps // segments = {c.steps // c.segments} leaves the copies no iteration; "
            "give --segment-steps",
        )
        check_pruning_settings(c)

    def copy_steps(self) -> int:
        """Iterations of each segment's copy per cycle (``segment_steps`` or
        ``steps // segments``)."""
        return self.segment_steps or self.steps // self.segments
