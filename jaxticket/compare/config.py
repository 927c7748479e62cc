"""The comparison as data: every method on equal terms, one frozen dataclass.

``CompareConfig`` is a ``jaxticket.workflow.TrainingSettings`` (model, data set, training)
plus the methods, the target sparsities and the controls. Each method runs as its own
workflow with exactly these training settings (:func:`method_configs`): the same inits,
data order, steps and seeds, so the rows of the table differ in the method only.

Methods (:data:`METHODS`): ``imp`` (iterative magnitude pruning with rewinding to init, its
levels placed so that each target sparsity is a level and no level prunes more than
``imp_fraction`` of the survivors), the at-init family (``snip``, ``grasp``, ``synflow``,
``random_erk``, ``random_er``, ``random_uniform``, ``magnitude_init``), sparse training
(``gmp``, ``set``, ``rigl``, ``granet``, ``static``) with their papers' settings, and
``finetune`` (magnitude pruning after training, fine-tuned, against Scratch-E and Scratch-B
of *Rethinking the Value of Network Pruning*, ``jaxticket.scratch``).
The dense network with the same training is always the baseline.
"""

from __future__ import annotations

import dataclasses
import math

from jaxticket.at_init import config as at_init_config
from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import RATE_RESOLUTION, require

__all__ = ["AT_INIT", "CompareConfig", "IMP_CONTROLS", "METHODS", "SPARSE", "imp_schedule"]

AT_INIT = (
    "snip",
    "grasp",
    "synflow",
    "random_erk",
    "random_er",
    "random_uniform",
    "magnitude_init",
)
SPARSE = ("gmp", "set", "rigl", "granet", "static")
METHODS = ("imp", *AT_INIT, *SPARSE, "finetune")
IMP_CONTROLS = ("reinit", "random_prune", "shuffle")
DEFAULT_METHODS = (
    "imp",
    "snip",
    "grasp",
    "synflow",
    "random_erk",
    "magnitude_init",
    "gmp",
    "set",
    "rigl",
    "granet",
    "finetune",
)


@dataclasses.dataclass(frozen=True)
class CompareConfig(TrainingSettings):
    """Every method at the same sparsities, seeds, data order and steps."""

    methods: tuple[str, ...] = field(
        DEFAULT_METHODS, f"methods to compare, in table order: {', '.join(METHODS)}"
    )
    sparsities: tuple[float, ...] = field(
        (0.5, 0.8, 0.9, 0.95, 0.98), "target sparsities, increasing, each in [0, 1)"
    )
    controls: tuple[str, ...] = field(
        ("shuffle", "reinit", "invert"),
        "sanity controls of the at-init methods: shuffle, reinit, invert (invert: the "
        "score-based ones only); empty for none",
    )
    imp_controls: tuple[str, ...] = field(
        ("reinit", "random_prune"),
        "controls of imp at each target: reinit, random_prune, shuffle; empty for none",
    )
    imp_fraction: float = field(
        0.2, "imp: the most of the surviving weights one level prunes (0.2 in the paper)"
    )
    score_batch: int = field(256, "snip, grasp: training examples in the scoring batch")
    synflow_rounds: int = field(100, "synflow: iterative rounds (100 in the paper)")
    every: int = field(100, "gmp, set, rigl, granet: steps between mask updates (Δt)")
    finetune_controls: tuple[str, ...] = field(
        ("scratch_e", "scratch_b"),
        "controls of finetune: scratch_e (fresh init, same steps), scratch_b (same compute)",
    )

    def check(self) -> None:
        """Training settings, methods, sparsities and controls, each a ``ConfigError``
        naming the field."""
        super().check()
        require(bool(self.methods), "methods", "methods: give at least one")
        for name in self.methods:
            require(
                name in METHODS,
                "methods",
                f"unknown method {name!r}; valid: {', '.join(METHODS)}",
            )
        require(
            len(set(self.methods)) == len(self.methods),
            "methods",
            f"methods repeat: {list(self.methods)}",
        )
        at_init_config.check_sparsities(self.sparsities)
        require(
            list(self.sparsities) == sorted(self.sparsities) and self.sparsities[0] > 0,
            "sparsities",
            f"sparsities must increase and be > 0 (imp reaches them in turn), got "
            f"{list(self.sparsities)}",
        )
        at_init_config.check_controls(self.controls, "snip")
        _check_names("imp_controls", self.imp_controls, IMP_CONTROLS)
        _check_names("finetune_controls", self.finetune_controls, ("scratch_e", "scratch_b"))
        require(
            0 < self.imp_fraction < 1 and round(self.imp_fraction * RATE_RESOLUTION) > 0,
            "imp_fraction",
            f"imp_fraction must lie in (0, 1), got {self.imp_fraction}",
        )
        require(
            self.score_batch >= 1,
            "score_batch",
            f"score_batch must be >= 1, got {self.score_batch}",
        )
        require(
            self.synflow_rounds >= 1,
            "synflow_rounds",
            f"synflow_rounds must be >= 1, got {self.synflow_rounds}",
        )

    def at_init_controls(self, method: str) -> tuple[str, ...]:
        """The controls an at-init ``method`` trains: :attr:`controls` without ``invert``
        for the random methods (they have no scores to invert)."""
        if method in at_init_config.SCORED:
            return self.controls
        return tuple(c for c in self.controls if c != "invert")


def imp_schedule(sparsities, fraction: float) -> tuple[float, ...]:
    """IMP's level sparsities: every target is a level, and between two targets (and
    before the first) the fewest levels that prune at most ``fraction`` of the survivors
    each, evenly spaced in log density. Rounded to six decimals (the pruner's resolution).

    >>> imp_schedule((0.5,), 0.2)   # density 1 -> 0.5 in 4 levels of 0.5**(1/4) each
    (0.159104, 0.292893, 0.405396, 0.5)
    """
    levels: list[float] = []
    density = 1.0
    for target in sparsities:
        goal = 1.0 - target
        n = max(1, math.ceil(math.log(goal / density) / math.log(1.0 - fraction) - 1e-9))
        ratio = (goal / density) ** (1.0 / n)
        for k in range(1, n + 1):
            levels.append(round(1.0 - density * ratio**k, 6))
        levels[-1] = round(target, 6)
        density = goal
    return tuple(levels)


def _check_names(name: str, values, valid) -> None:
    for v in values:
        require(
            v in valid,
            name,
            f"unknown {name[:-1].replace('_', ' ')} {v!r}; valid: {', '.join(valid)}",
        )
    require(len(set(values)) == len(values), name, f"{name} repeat: {list(values)}")
