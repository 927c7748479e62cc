"""The grokking-tickets experiment as data (Minegishi et al. 2023, DESIGN.md §2).

``GrokkingConfig`` is a ``jaxticket.workflow.TrainingSettings`` whose defaults are the
paper's setting: ``(a + b) mod 67`` with 40 % of all pairs for training, the embedding MLP,
AdamW at 1e-3 with weight decay 1, full batch. It adds the modular task (``p``, ``op``,
``train_fraction``), the ticket's sparsity, the accuracy that counts as generalized
(``threshold``, 95 %), the train accuracy that counts as memorized and the variants
trained beside the dense network.

Two training settings read differently here: ``batch_size = 0`` (the default) is full
batch, every training pair at every step; ``val_size`` must stay 0: no pair is held out,
and the training pairs themselves are evaluated as the validation split, so every
evaluation records train accuracy (the memorization point is read from it; nothing is
early-stopped, and ``test_accuracy_early`` is at the lowest training loss).
"""

from __future__ import annotations

import dataclasses
import types

from jaxticket.data.modular import OPS
from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TRAINING_FIELDS, TrainingSettings
from jaxticket.workflow.training import (
    RATE_RESOLUTION,
    check_training_settings,
    require,
    resolved_rate,
)

__all__ = ["AT_INIT_VARIANTS", "NORM_VARIANTS", "VARIANTS", "GrokkingConfig"]

AT_INIT_VARIANTS = {
    "random": "random_uniform",
    "snip": "snip",
    "grasp": "grasp",
    "synflow": "synflow",
}
"""The at-init variants and the ``jaxticket.at_init`` method each draws its mask with."""

NORM_VARIANTS = {"dense_l1": 1, "dense_l2": 2}
"""The norm controls: the dense init rescaled to the grokking ticket's L1 / L2 norm."""

VARIANTS = ("grokking_ticket", "memorization_ticket", *AT_INIT_VARIANTS, *NORM_VARIANTS)
"""Every variant trained beside the dense network (phase 1), in the default order."""


@dataclasses.dataclass(frozen=True)
class GrokkingConfig(TrainingSettings):
    """Dense network, grokking ticket, memorization ticket, at-init masks and norm controls
    on one modular-arithmetic task, every seed from the same inits.

    Phase 0 trains the dense network; phase 1 builds every variant's mask from it and
    trains them all in one vmapped program (``jaxticket.grokking.run``).
    """

    model: str = field("embed_mlp", "model name (embed_mlp or transformer1 for token pairs)")
    dataset: str = field("modular", "data set: modular (the only one this workflow takes)")
    steps: int = field(10000, "training iterations of every run")
    batch_size: int = field(0, "minibatch size (0: full batch, every training pair each step)")
    learning_rate: float = field(1e-3, "peak learning rate")
    optimizer: str = field("adamw", "adam, adamw, sgd or momentum")
    weight_decay: float = field(1.0, "weight decay (decoupled for adamw)")
    val_size: int = field(
        0, "must stay 0: no pair is held out; the training pairs are evaluated as validation"
    )
    dim: int = field(128, "embedding (embed_mlp) or model (transformer1) width")
    hidden: tuple[int, ...] = field((256,), "embed_mlp: hidden-layer widths")
    p: int = field(67, "the modulus (and the number of classes)")
    op: str = field("+", "the operation: +, -, * or /")
    train_fraction: float = field(0.4, "share of all pairs used for training, in (0, 1)")
    sparsity: float = field(0.4, "sparsity of every mask (global magnitude for the tickets)")
    threshold: float = field(
        0.95, "test accuracy that counts as generalized (steps to reach it are the metric)"
    )
    memorized: float = field(
        0.99,
        "train accuracy that counts as memorized: the memorization ticket prunes the dense "
        "network at the first evaluation where every seed reaches it",
    )
    variants: tuple[str, ...] = field(
        VARIANTS,
        "trained beside the dense network: grokking_ticket, memorization_ticket, random, "
        "snip, grasp, synflow, dense_l1, dense_l2",
    )
    synflow_rounds: int = field(100, "synflow: iterative rounds (100 in the paper)")

    def check(self) -> None:
        """Training settings (with the full-batch and no-validation readings), the task,
        the rates and the variants, each a ``ConfigError`` naming the field."""
        require(
            self.batch_size >= 0, "batch_size", f"batch_size must be >= 0, got {self.batch_size}"
        )
        require(
            self.val_size == 0,
            "val_size",
            "val_size must be 0: the grokking workflow evaluates its training pairs as the "
            f"validation split (train accuracy) and holds none out, got {self.val_size}",
        )
        # The shared checks see a positive batch and validation size (0 reads as above).
        view = {name: getattr(self, name) for name in TRAINING_FIELDS}
        view |= {"batch_size": max(self.batch_size, 1), "val_size": max(self.val_size, 1)}
        check_training_settings(types.SimpleNamespace(**view))
        require(
            self.dataset == "modular",
            "dataset",
            f"the grokking workflow trains on modular arithmetic; dataset must be 'modular', "
            f"got {self.dataset!r}",
        )
        require(self.dim >= 1, "dim", f"dim must be >= 1, got {self.dim}")
        require(
            bool(self.hidden) and min(self.hidden) >= 1,
            "hidden",
            f"hidden must be positive widths, got {self.hidden}",
        )
        require(
            self.model == "embed_mlp" or self.hidden == (256,),
            "hidden",
            f"hidden is read only by embed_mlp; leave it at its default for {self.model!r}",
        )
        require(bool(self.variants), "variants", "variants: give at least one")
        require(self.p >= 2, "p", f"p must be >= 2, got {self.p}")
        require(self.op in OPS, "op", f"op must be one of {', '.join(OPS)}, got {self.op!r}")
        require(
            0 < self.train_fraction < 1,
            "train_fraction",
            f"train_fraction must lie in (0, 1), got {self.train_fraction}",
        )
        require(
            0 < self.sparsity < 1 and 0 < resolved_rate(self.sparsity) < RATE_RESOLUTION,
            "sparsity",
            f"sparsity must lie in (0, 1) (a fraction pruned), got {self.sparsity}",
        )
        for name in ("threshold", "memorized"):
            value = getattr(self, name)
            require(0 < value <= 1, name, f"{name} must lie in (0, 1] (an accuracy), got {value}")
        for name in self.variants:
            require(
                name in VARIANTS,
                "variants",
                f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}",
            )
        require(
            len(set(self.variants)) == len(self.variants),
            "variants",
            f"variants repeat: {self.variants}",
        )
        require(
            self.synflow_rounds >= 1,
            "synflow_rounds",
            f"synflow_rounds must be >= 1, got {self.synflow_rounds}",
        )
        require(
            "synflow" in self.variants or self.synflow_rounds == 100,
            "synflow_rounds",
            "synflow_rounds is read only by the synflow variant; leave it at its default",
        )
