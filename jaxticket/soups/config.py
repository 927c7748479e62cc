"""The sparse-model-soup experiment as data: one frozen dataclass names a run completely.

``SoupConfig`` is a ``jaxticket.workflow.WorkflowConfig``: every field is a CLI flag of
``jaxticket soups`` and the config's digest names the run directory. Level 0 trains the
dense network; each later level prunes ``prune_fraction`` of the previous soup's surviving
weights by magnitude (IMP's pruner: ``allocation``, ``layer_rates``, ``min_keep``),
retrains ``members`` copies with that mask that differ in data order (``vary="order"``)
or in weight decay (``vary="weight_decay"``, one value per member) and averages them.
Plain IMP with the same settings trains beside the members at every level.
"""

from __future__ import annotations

import dataclasses

from jaxticket.soups.pruners import check_pruning_settings
from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import require as _check
from jaxticket.workflow.training import require_one_of as _choice

__all__ = ["RETRAIN_MODES", "SoupConfig", "VARY"]

VARY = ("order", "weight_decay")
RETRAIN_MODES = ("soup", "rewind")


@dataclasses.dataclass(frozen=True)
class SoupConfig(TrainingSettings):
    """Sparse model soups (Zimmer et al. 2023) against their members and plain IMP.

    Defaults: LeNet-300-100 on MNIST-1D with the lottery workflow's training settings,
    3 members that differ in data order, 4 prune–retrain levels at 20 % per level (the
    output layer at half rate), each level retrained from the previous soup (SMS).
    """

    levels: int = field(4, "prune-retrain levels after the dense level 0")
    members: int = field(3, "m, the retrained copies averaged into each level's soup (>= 2)")
    vary: str = field(
        "order",
        "what the members differ in: order (data order, one vmapped program) or "
        "weight_decay (one value per member from --member-weight-decays)",
    )
    member_weight_decays: tuple[float, ...] = field(
        (), "vary=weight_decay: the members' weight decays, one per member"
    )
    retrain: str = field(
        "soup",
        "where each level's members (and IMP) start: soup (the previous soup's pruned "
        "weights, the learning-rate schedule restarted, as SMS) or rewind (the survivors "
        "reset to their values at --rewind, as the lottery workflow)",
    )
    rewind: int = field(0, "retrain=rewind: the iteration the survivors are reset to")
    prune_fraction: float = field(0.2, "fraction of the surviving weights pruned per level")
    allocation: str = field("layerwise", "layerwise (per-layer rates) or global (one threshold)")
    layer_rates: tuple[tuple[str, float], ...] = field(
        (("output/*", 0.5),), "layerwise: per-layer scale of prune_fraction, PATTERN=SCALE"
    )
    bn_batches: int = field(
        8,
        "training batches (of batch_size) the soup's BatchNorm statistics are recomputed "
        "on (models with state only; 0 keeps the averaged statistics)",
    )
    hidden: tuple[int, ...] = field(
        (), "hidden widths of the mlp model, e.g. 100,100 (empty: the model's default)"
    )

    def check(self) -> None:
        """The training settings, then the soup's own, each a ``ConfigError`` naming the
        field."""
        super().check()
        c = self
        _check(c.levels >= 1, "levels", f"levels must be >= 1, got {c.levels}")
        _check(
            c.members >= 2,
            "members",
            f"members must be >= 2 (a soup of one is IMP), got {c.members}",
        )
        _choice(c, "vary", VARY)
        _choice(c, "retrain", RETRAIN_MODES)
        if c.vary == "weight_decay":
            _check(
                len(c.member_weight_decays) == c.members,
                "member_weight_decays",
                f"member_weight_decays: vary=weight_decay needs one value per member "
                f"({c.members}), got {len(c.member_weight_decays)}",
            )
            _check(
                all(w >= 0 and w == w and w != float("inf") for w in c.member_weight_decays),
                "member_weight_decays",
                f"member_weight_decays must be finite and >= 0, got {list(c.member_weight_decays)}",
            )
            _check(
                c.optimizer != "adam",
                "optimizer",
                "vary=weight_decay with optimizer adam would ignore the decays (adam has "
                "none); use adamw, sgd or momentum",
            )
        else:
            _check(
                not c.member_weight_decays,
                "member_weight_decays",
                "member_weight_decays has no effect with vary=order; leave it empty",
            )
        _check(
            c.retrain == "rewind" or c.rewind == 0,
            "rewind",
            "rewind has no effect with retrain=soup; leave it at 0",
        )
        _check(c.bn_batches >= 0, "bn_batches", f"bn_batches must be >= 0, got {c.bn_batches}")
        check_pruning_settings(c)

    def member_decays(self) -> tuple[float, ...]:
        """Each member's weight decay (``weight_decay`` for all with ``vary=order``)."""
        if self.vary == "weight_decay":
            return self.member_weight_decays
        return (self.weight_decay,) * self.members
