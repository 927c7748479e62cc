"""The lottery experiment as data: one frozen dataclass names a run completely.

Built on ``jaxticket.workflow.WorkflowConfig``: every field has a CLI flag (generated from
the field's type, default and help text by ``jaxticket.workflow.flags``), and the config's
digest names the run directory, so equal configs resume the same run and different ones
never collide.

The whole config is checked when it is built (types, ranges, combinations), so a bad value
fails before anything trains, with one line naming the field (``ConfigError.field``) and
the valid range. Checks that need the model or the data (layer-rate patterns, the
validation split, the batch size) run at the start of ``run_lottery``, before level 0.
Those checks live in ``jaxticket.lottery.config_checks``; their public names (``ConfigError``,
``check_fits``, the limits) are importable from here.
"""

from __future__ import annotations

import dataclasses

from jaxticket.lottery.config_checks import (  # re-exported: callers import them from here
    CONTROLS,  # noqa: F401
    OPTIMIZERS,  # noqa: F401
    RATE_RESOLUTION,  # noqa: F401
    REWIND_MODES,  # noqa: F401
    SCHEDULES,  # noqa: F401
    SEED_LIMIT,  # noqa: F401
    STEP_LIMIT,  # noqa: F401
    ConfigError,  # noqa: F401
    check_fits,  # noqa: F401
    check_ranges,
)

# RUNTIME_KEY: the runtime settings that change a run's numbers; ``run_lottery`` records
# them beside the config (config.json/results.json key ``"runtime"``) and they name the run
# directory.
from jaxticket.workflow.config import RUNTIME_KEY  # noqa: F401
from jaxticket.workflow.config import field as _field
from jaxticket.workflow.settings import TrainingSettings


@dataclasses.dataclass(frozen=True)
class LotteryConfig(TrainingSettings):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019) and its controls.

    Defaults follow the paper's LeNet-300-100 setup (Adam 1.2e-3, batch 60, 20% of the
    surviving weights per level, the output layer at half that rate) scaled to MNIST-1D.
    """

    levels: int = _field(10, "pruning levels after the dense level 0")
    prune_fraction: float = _field(0.2, "fraction of the surviving weights pruned per level")
    layer_rates: tuple[tuple[str, float], ...] = _field(
        (("output/*", 0.5),),
        "per-layer scale of the prune fraction, PATTERN=SCALE (glob on leaf paths); "
        "the paper prunes the output layer at half rate",
    )
    allocation: str = _field("layerwise", "layerwise (per-layer rates) or global (one threshold)")
    rewind: int = _field(0, "iteration to rewind to (0 = initialization; k > 0 = late rewinding)")
    rewind_mode: str = _field(
        "weights",
        "weights: reset survivors to their values at --rewind; lr: keep the trained weights, "
        "restart the LR schedule at --rewind; finetune: keep weights, train at the final LR",
    )
    controls: tuple[str, ...] = _field(
        ("reinit", "random_prune"),
        "controls at each level: reinit (same mask, fresh init), random_prune (random mask, "
        "same per-layer counts, original init), shuffle (ticket mask shuffled in each layer)",
    )
    one_shot: tuple[float, ...] = _field(
        (), "if given: one-shot prune the dense net to each of these sparsities instead of IMP"
    )
    level_sparsities: tuple[float, ...] = _field(
        (),
        "if given: IMP level l prunes the previous ticket to the l-th of these global "
        "sparsities (increasing), instead of prune_fraction per level",
        added=True,
    )

    structure: str = _field(
        "weights",
        "weights: prune single weights; channels (or units, the same): structured IMP that "
        "removes whole neurons/channels/heads over the model's dependency groups (kernel "
        "slices, biases, BatchNorm, consumers' inputs), never the output layer; "
        "layer_rates then match group names, prune_fraction and sparsities count units",
        added=True,
    )
    group_score: str = _field(
        "l1",
        "structured IMP: the magnitude of a unit's kernel slice and bias that ranks it, l1 or l2",
        added=True,
    )

    def check(self) -> None:
        """Ranges and combinations of the fields (``config_checks.check_ranges``)."""
        check_ranges(self)

    @property
    def variants(self) -> tuple[str, ...]:
        """What trains at each pruned level: the ticket, then each control."""
        return ("ticket", *self.controls)
