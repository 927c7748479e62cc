"""The at-init experiment as data: one method, several sparsities, its sanity controls.

``AtInitConfig`` is a ``jaxticket.workflow.TrainingSettings`` (the model, data set and
training fields every workflow shares) plus the method, its target sparsities, the sanity
controls trained beside each mask and the method's own settings. A setting the chosen
method does not read must stay at its default (:func:`used_fields`): it would be silently
ignored otherwise, so it is refused, naming it. :func:`build_method` gives the
``jaxticket.at_init`` method the config describes.
"""

from __future__ import annotations

import dataclasses

from jaxticket.at_init import methods
from jaxticket.workflow.config import ConfigError, field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import RATE_RESOLUTION, require, resolved_rate

__all__ = ["CONTROLS", "SCORED", "AtInitConfig", "build_method", "used_fields"]

CONTROLS = ("shuffle", "reinit", "invert")
"""The sanity controls (Frankle et al. 2021): layerwise shuffle, reinitialization, score
inversion."""

SCORED = ("snip", "grasp", "synflow", "magnitude_init")
"""The methods that rank weights by a score (the ones ``invert`` applies to)."""

_METHOD_FIELDS = ("score_batch", "snip_rounds", "grasp_temperature", "synflow_rounds", "allocation")


@dataclasses.dataclass(frozen=True)
class AtInitConfig(TrainingSettings):
    """A pruning-at-initialization method at several sparsities, with its sanity controls.

    Every run starts from the same inits and sees the same data order (the key streams of
    ``seed``); the mask is drawn at init and fixed for the whole training.
    """

    method: str = field(
        "snip", "snip, grasp, synflow, random_erk, random_er, random_uniform or magnitude_init"
    )
    sparsities: tuple[float, ...] = field(
        (0.5, 0.8, 0.9, 0.95, 0.98), "target sparsities in [0, 1), one phase each"
    )
    controls: tuple[str, ...] = field(
        ("shuffle", "reinit"),
        "sanity controls trained beside each mask: shuffle (same per-layer counts, shuffled "
        "positions), reinit (same mask, fresh init), invert (keep the lowest scores; "
        "score-based methods only)",
    )
    score_batch: int = field(256, "snip, grasp: training examples in the scoring batch")
    snip_rounds: int = field(1, "snip: scoring rounds (1: one-shot SNIP; > 1: iterative SNIP)")
    grasp_temperature: float = field(200.0, "grasp: the loss temperature (200 in the paper)")
    synflow_rounds: int = field(100, "synflow: iterative rounds (100 in the paper)")
    allocation: str = field(
        "global",
        "snip, grasp, synflow: global (the papers), layerwise, erk or er; magnitude_init: "
        "global or layerwise",
    )

    def check(self) -> None:
        """Training settings, the method, the sparsities, the controls and no ignored
        setting, each a ``ConfigError`` naming the field."""
        super().check()
        valid = sorted(methods.METHODS)
        require(
            self.method in valid,
            "method",
            f"unknown at-init method {self.method!r}; valid: {', '.join(valid)}",
        )
        check_sparsities(self.sparsities)
        check_controls(self.controls, self.method)
        defaults = {f.name: f.default for f in dataclasses.fields(AtInitConfig)}
        for name in _METHOD_FIELDS:
            if name not in used_fields(self.method) and getattr(self, name) != defaults[name]:
                raise ConfigError(
                    name, f"{name} is not used by method {self.method!r}; leave it at its default"
                )
        try:
            build_method(self)
        except ValueError as err:
            raise ConfigError("method", f"{self.method}: {err}") from None


def check_sparsities(sparsities) -> None:
    """Non-empty, distinct, each in [0, 1) and resolvable to six decimals, or a
    ``ConfigError`` on ``sparsities``."""
    require(bool(sparsities), "sparsities", "sparsities: give at least one target")
    for s in sparsities:
        require(
            0 <= s < 1 and resolved_rate(s) < RATE_RESOLUTION,
            "sparsities",
            f"sparsities must lie in [0, 1) (a fraction pruned), got {s}",
        )
    require(
        len(set(sparsities)) == len(sparsities),
        "sparsities",
        f"sparsities must be distinct, got {sparsities}",
    )


def check_controls(controls, method: str) -> None:
    """Known, distinct, and ``invert`` only for a score-based method, or a
    ``ConfigError`` on ``controls``."""
    for name in controls:
        require(
            name in CONTROLS,
            "controls",
            f"unknown control {name!r}; valid: {', '.join(CONTROLS)}",
        )
    require(len(set(controls)) == len(controls), "controls", f"controls repeat: {controls}")
    require(
        "invert" not in controls or method in SCORED,
        "controls",
        f"invert keeps the lowest scores; {method!r} has none (it applies to {', '.join(SCORED)})",
    )


def used_fields(method: str) -> set[str]:
    """The method settings of :class:`AtInitConfig` that ``method`` reads."""
    return {
        "snip": {"score_batch", "snip_rounds", "allocation"},
        "grasp": {"score_batch", "grasp_temperature", "allocation"},
        "synflow": {"synflow_rounds", "allocation"},
        "magnitude_init": {"allocation"},
    }.get(method, set())


def build_method(c: AtInitConfig, *, inverted: bool = False):
    """The ``jaxticket.at_init`` method of ``c`` (``inverted``: keeping the lowest scores)."""
    options = {"min_keep": c.min_keep}
    if c.method in SCORED:
        options |= {"allocation": c.allocation, "inverted": inverted}
    if c.method in ("snip", "grasp"):
        options["batch_size"] = c.score_batch
    if c.method == "snip":
        options["rounds"] = c.snip_rounds
    if c.method == "grasp":
        options["temperature"] = c.grasp_temperature
    if c.method == "synflow":
        options["rounds"] = c.synflow_rounds
    return methods.get(c.method, **options)
