"""The instability analysis as data: rewind steps, copies, the α grid, a ticket, matching.

``StabilityConfig`` is a ``jaxticket.workflow.TrainingSettings`` (the model, data set and
training fields every workflow shares) plus the instability analysis of Frankle et al.
(2020): the rewind steps k of the sweep, how many copies of every parent train from θ_k
(differing only in data order), the α grid of the paths, optionally a finished lottery run
whose ticket mask (of ``level``) is analysed instead of the dense network, and ``match``:
the barrier between independently initialised networks before and after weight matching.
"""

from __future__ import annotations

import dataclasses

from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import check_seeds_and_steps, require

__all__ = ["StabilityConfig"]


@dataclasses.dataclass(frozen=True)
class StabilityConfig(TrainingSettings):
    """Error barriers between copies trained from θ_k, per rewind step k.

    Parent ``s`` trains densely from its init (key streams 0 and 1 of ``seed``) and is
    snapshotted at every k; ``copies`` children of every parent then train from θ_k for
    ``steps - k`` steps, each with its own data order, and every pair of children of one
    parent is evaluated along the straight path between them.
    """

    rewind_steps: tuple[int, ...] = field(
        (0,), "rewind steps k, increasing, each < steps: one sweep phase each"
    )
    copies: int = field(2, "copies trained from every parent's θ_k, differing only in data order")
    alphas: int = field(30, "points α of the path grid in [0, 1] (endpoints included)")
    lottery_run: str = field(
        "",
        "a finished lottery run directory with these training settings: analyse its ticket "
        "masks (of level) applied to the parents' θ_k instead of the dense network ('' = "
        "dense); every k uses these masks (for IMP rewound to k, one lottery run per k)",
    )
    level: int = field(
        -1, "the lottery run's level whose masks are used (-1: its last finished level)"
    )
    match: bool = field(
        False,
        "also the barrier between parents of different inits (seed s and s + 1) before and "
        "after weight-matching alignment (dense only; needs seeds >= 2)",
    )

    def check(self) -> None:
        """Training settings, then the analysis fields, each a ``ConfigError`` naming the
        field."""
        check_seeds_and_steps(self)
        ks = self.rewind_steps
        require(bool(ks), "rewind_steps", "rewind_steps: give at least one rewind step")
        for k in ks:
            require(
                isinstance(k, int) and 0 <= k < self.steps,
                "rewind_steps",
                f"rewind_steps must lie in [0, steps={self.steps}), got {k}",
            )
        require(
            all(a < b for a, b in zip(ks, ks[1:], strict=False)),
            "rewind_steps",
            f"rewind_steps must be strictly increasing, got {ks}",
        )
        require(self.copies >= 2, "copies", f"copies must be >= 2 (a pair), got {self.copies}")
        require(self.alphas >= 2, "alphas", f"alphas must be >= 2 (both ends), got {self.alphas}")
        require(self.level >= -1, "level", f"level must be >= 0 or -1 (the last), got {self.level}")
        require(
            self.level == -1 or bool(self.lottery_run),
            "level",
            f"level={self.level} chooses a level of lottery_run, which is not given",
        )
        if self.match:
            require(
                not self.lottery_run,
                "match",
                "match aligns dense networks of different inits; it does not apply to a "
                "ticket (leave lottery_run empty or match off)",
            )
            require(
                self.seeds >= 2,
                "match",
                f"match pairs seed s with s + 1; it needs seeds >= 2, got {self.seeds}",
            )
        super().check()
