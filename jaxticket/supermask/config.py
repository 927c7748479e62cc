"""The supermask experiment as data: one variant, several k, a trained-dense reference.

``SupermaskConfig`` is a ``jaxticket.workflow.TrainingSettings`` (model, data set, training
fields) plus the variant, the fractions kept ``ks`` and the variant's own settings. Every
run trains a dense network first (phase 0: the reference line, and the Lottery Jackpots'
trained weights), then one phase per k:

* ``edge_popup``: weights fixed at ``weight_init`` (the signed Kaiming constant, or the
  model's own init), uniform random scores, each layer keeps ``k`` of its weights;
* ``jackpot``: weights fixed at the trained dense network; two searches per seed, from the
  magnitude mask (scores ``|w|``, run ``jackpot``) and from uniform random scores (run
  ``scratch``, the cost reference);
* ``hidenseek``: an at-init ``saliency`` mask (SynFlow or SNIP, global) of the model's
  init keeps ``k`` of the prunable weights; the weights are fixed at ``weight_init`` and a
  sign supermask is learned over the survivors.

A setting the variant does not read must stay at its default: it is refused, naming it.
"""

from __future__ import annotations

import dataclasses
import math

from jaxticket.at_init import methods
from jaxticket.lottery.optimizer import make_optimizer
from jaxticket.workflow.config import ConfigError, field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import RATE_RESOLUTION, require, resolved_rate

__all__ = [
    "SALIENCIES",
    "VARIANTS",
    "WEIGHT_INITS",
    "SupermaskConfig",
    "run_names",
    "saliency",
    "score_optimizer",
]

VARIANTS = ("edge_popup", "jackpot", "hidenseek")
WEIGHT_INITS = ("signed_constant", "init")
SALIENCIES = ("synflow", "snip")
_VARIANT_FIELDS = {"weight_init": ("edge_popup", "hidenseek"), "saliency": ("hidenseek",)}


@dataclasses.dataclass(frozen=True)
class SupermaskConfig(TrainingSettings):
    """Masks learned over fixed weights at several k, with a trained dense reference.

    Defaults: LeNet-300-100 on MNIST-1D, Adam 1.2e-3 for the dense reference and the
    scores alike (the lottery workflow's training settings), 3000 steps each.
    """

    variant: str = field("edge_popup", "edge_popup, jackpot or hidenseek")
    ks: tuple[float, ...] = field(
        (0.1, 0.3, 0.5, 0.7), "fractions of each layer's weights kept, in (0, 1], one phase each"
    )
    weight_init: str = field(
        "signed_constant",
        "edge_popup, hidenseek: the fixed weights, signed_constant (±√(2/fan_in), the "
        "sign of the model's init) or init (the model's init itself)",
    )
    saliency: str = field(
        "synflow", "hidenseek: the at-init mask, synflow (100 rounds) or snip (one shot)"
    )
    score_learning_rate: float = field(
        0.0,
        "peak learning rate of the scores (0: learning_rate, the dense reference's); same "
        "optimizer and schedule",
    )
    hidden: tuple[int, ...] = field(
        (), "hidden widths of the mlp model, e.g. 100,100 (empty: the model's default)"
    )

    def check(self) -> None:
        """Training settings, the variant, the ks and no ignored setting, each a
        ``ConfigError`` naming the field."""
        super().check()
        require(
            self.variant in VARIANTS,
            "variant",
            f"unknown variant {self.variant!r}; valid: {', '.join(VARIANTS)}",
        )
        require(bool(self.ks), "ks", "ks: give at least one fraction kept")
        for k in self.ks:
            require(
                0 < k <= 1 and resolved_rate(k) >= 1,
                "ks",
                f"ks must lie in (0, 1] (the fraction of each layer kept), got {k}",
            )
        resolved = [resolved_rate(k) for k in self.ks]
        require(len(set(resolved)) == len(resolved), "ks", f"ks must be distinct, got {self.ks}")
        require(
            all(r <= RATE_RESOLUTION for r in resolved), "ks", f"ks must be <= 1, got {self.ks}"
        )
        require(
            self.weight_init in WEIGHT_INITS,
            "weight_init",
            f"unknown weight_init {self.weight_init!r}; valid: {', '.join(WEIGHT_INITS)}",
        )
        require(
            self.saliency in SALIENCIES,
            "saliency",
            f"unknown saliency {self.saliency!r}; valid: {', '.join(SALIENCIES)}",
        )
        require(
            math.isfinite(self.score_learning_rate) and self.score_learning_rate >= 0,
            "score_learning_rate",
            f"score_learning_rate must be >= 0 (0: learning_rate), got {self.score_learning_rate}",
        )
        require(
            not self.hidden or self.model == "mlp",
            "hidden",
            f"hidden sets the widths of the mlp model; model {self.model!r} has fixed widths",
        )
        require(
            all(h >= 1 for h in self.hidden),
            "hidden",
            f"hidden widths must be >= 1, got {self.hidden}",
        )
        defaults = {f.name: f.default for f in dataclasses.fields(SupermaskConfig)}
        for name, variants in _VARIANT_FIELDS.items():
            if self.variant not in variants and getattr(self, name) != defaults[name]:
                raise ConfigError(
                    name,
                    f"{name} is not used by variant {self.variant!r} (only by "
                    f"{', '.join(variants)}); leave it at its default {defaults[name]}",
                )


def run_names(c: SupermaskConfig) -> tuple[str, ...]:
    """What trains in each k phase, in batch order: ``jackpot`` and ``scratch`` for the
    jackpot variant, else the variant itself."""
    return ("jackpot", "scratch") if c.variant == "jackpot" else (c.variant,)


def score_optimizer(c: SupermaskConfig):
    """The optimizer of the scores: the config's, at ``score_learning_rate`` when set."""
    lr = c.score_learning_rate or c.learning_rate
    return make_optimizer(dataclasses.replace(c, learning_rate=lr))


def saliency(c: SupermaskConfig):
    """HideNseek's at-init method (``jaxticket.at_init``): global allocation, ``min_keep``."""
    return methods.get(c.saliency, min_keep=c.min_keep)
