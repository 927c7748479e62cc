"""The scratch-versus-fine-tune sanity check as data: one frozen dataclass names a run.

*Rethinking the Value of Network Pruning* (Liu et al. 2019) asks whether the weights a
pruned network inherits matter, or only its architecture. ``ScratchConfig`` names one such
experiment: a dense network trained (the lottery workflow's level 0), pruned by magnitude
to each target sparsity, then

* ``finetune``: the trained weights under the mask, ``finetune_steps`` more steps at the
  constant rate ``finetune_learning_rate``;
* ``scratch_e``: the same mask on a fresh init, trained ``steps`` steps (the dense run's
  epochs: Scratch-E);
* ``scratch_b``: the same mask and fresh init, trained for the dense run's compute
  (Scratch-B): :func:`scratch_b_steps`.

Every field is a CLI flag of ``jaxticket scratch``; the config's digest names the run
directory. Training fields share names, defaults and checks with ``SparseTrainConfig``.
"""

from __future__ import annotations

import dataclasses
import math

from jaxticket.workflow.config import field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import RATE_RESOLUTION
from jaxticket.workflow.training import require as _check
from jaxticket.workflow.training import require_one_of as _choice
from jaxticket.workflow.training import resolved_rate as _resolved

__all__ = ["ALLOCATIONS", "VARIANTS", "ScratchConfig", "scratch_b_steps"]

VARIANTS = ("finetune", "scratch_e", "scratch_b")
ALLOCATIONS = ("global", "layerwise")


@dataclasses.dataclass(frozen=True)
class ScratchConfig(TrainingSettings):
    """Fine-tuning the pruned weights against training the pruned architecture from scratch.

    Defaults: LeNet-300-100 on MNIST-1D with the lottery workflow's training settings
    (Adam 1.2e-3, batch 60, 3000 steps), global magnitude pruning of the trained dense
    weights, fine-tuning as long as the dense run at its rate, Scratch-B capped at twice
    the dense run's steps.
    """

    sparsities: tuple[float, ...] = field(
        (0.5, 0.8, 0.9, 0.95, 0.98), "target sparsities in [0, 1), one phase each"
    )
    allocation: str = field(
        "global",
        "magnitude pruning of the trained dense weights: global (one threshold) or "
        "layerwise (each layer to the target); either meets the target exactly",
    )
    finetune_steps: int = field(3000, "finetune: iterations of fine-tuning the pruned weights")
    finetune_learning_rate: float = field(
        1.2e-3, "finetune: its learning rate (a constant schedule)"
    )
    scratch_b_cap: float = field(
        2.0,
        "scratch_b: at most this many times the dense run's steps (>= 1); it trains "
        "round(steps * min(prunable / alive, cap)) steps",
    )
    variants: tuple[str, ...] = field(
        VARIANTS, "what trains at each sparsity: " + ", ".join(VARIANTS)
    )
    hidden: tuple[int, ...] = field(
        (), "hidden widths of the mlp model, e.g. 100,100 (empty: the model's default)"
    )

    def check(self) -> None:
        """Ranges and combinations, each a one-line ``ConfigError`` naming the field."""
        super().check()
        _check(
            not self.hidden or self.model == "mlp",
            "hidden",
            f"hidden sets the widths of the mlp model; model {self.model!r} has fixed widths "
            "(pass --hidden '' or --model mlp)",
        )
        _check(
            all(h >= 1 for h in self.hidden),
            "hidden",
            f"hidden widths must be >= 1, got {self.hidden}",
        )
        top = f"{(RATE_RESOLUTION - 1) / RATE_RESOLUTION:.6f}"
        _check(bool(self.sparsities), "sparsities", "sparsities: give at least one target")
        for s in self.sparsities:
            _check(
                0 <= _resolved(s) < RATE_RESOLUTION,
                "sparsities",
                f"sparsities: each target must be in [0, {top}] (resolved to 1e-6), got {s}",
            )
        _check(
            len(set(self.sparsities)) == len(self.sparsities),
            "sparsities",
            f"sparsities: each target once, got {list(self.sparsities)}",
        )
        _choice(self, "allocation", ALLOCATIONS)
        _check(
            1 <= self.finetune_steps <= 2**31 - 1,
            "finetune_steps",
            f"finetune_steps must be in [1, 2**31 - 1], got {self.finetune_steps}",
        )
        _check(
            self.eval_every <= self.finetune_steps or "finetune" not in self.variants,
            "finetune_steps",
            f"finetune_steps={self.finetune_steps} is shorter than eval_every={self.eval_every}",
        )
        _check(
            math.isfinite(self.finetune_learning_rate) and self.finetune_learning_rate > 0,
            "finetune_learning_rate",
            f"finetune_learning_rate must be finite and > 0, got {self.finetune_learning_rate}",
        )
        _check(
            math.isfinite(self.scratch_b_cap) and self.scratch_b_cap >= 1,
            "scratch_b_cap",
            f"scratch_b_cap must be finite and >= 1 (Scratch-B trains at least the dense "
            f"run's steps), got {self.scratch_b_cap}",
        )
        _check(
            bool(self.variants), "variants", f"variants: give at least one of {', '.join(VARIANTS)}"
        )
        for v in self.variants:
            _check(
                v in VARIANTS,
                "variants",
                f"variants: unknown variant {v!r}; valid: {', '.join(VARIANTS)}",
            )
        _check(
            len(set(self.variants)) == len(self.variants),
            "variants",
            f"variants: each variant once, got {list(self.variants)}",
        )
        _check(
            round(self.steps * self.scratch_b_cap) <= 2**31 - 1,
            "scratch_b_cap",
            f"scratch_b_cap={self.scratch_b_cap}: Scratch-B could run past 2**31 - 1 steps",
        )


def scratch_b_steps(steps: int, prunable: int, alive: int, cap: float) -> int:
    """Scratch-B's budget: ``round(steps * min(prunable / alive, cap))`` steps.

    The dense run's compute is taken as proportional to the alive prunable weights, so a
    network with ``alive`` of ``prunable`` weights left matches it in ``prunable / alive``
    times the steps. That is exact for an MLP (a dense layer's multiply-adds are its
    weights, per example) and an approximation for convolutions (a kernel weight costs one
    multiply-add per output position, which differs between layers). Biases and other
    unprunable leaves are not counted.

    Args:
      steps: the dense run's steps.
      prunable: prunable weights of the network.
      alive: the mask's alive prunable weights (0 counts as the cap).
      cap: the largest multiple of ``steps`` allowed (>= 1).
    """
    ratio = cap if alive == 0 else min(prunable / alive, cap)
    return round(steps * ratio)
