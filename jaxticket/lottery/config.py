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
from jaxticket.workflow.config import RUNTIME_KEY, WorkflowConfig  # noqa: F401
from jaxticket.workflow.config import field as _field


@dataclasses.dataclass(frozen=True)
class LotteryConfig(WorkflowConfig):
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019) and its controls.

    Defaults follow the paper's LeNet-300-100 setup (Adam 1.2e-3, batch 60, 20% of the
    surviving weights per level, the output layer at half that rate) scaled to MNIST-1D.
    """

    model: str = _field(
        "lenet_300_100",
        "model name (lenet_300_100, mlp, cnn1d, conv2, conv4, conv6, resnet20, vgg16, ...)",
    )
    dataset: str = _field("mnist1d", "data set name (mnist1d, digits, modular, or a TFDS name)")
    levels: int = _field(10, "pruning levels after the dense level 0")
    seeds: int = _field(3, "independent seeds, trained together in one vmapped program")
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
    steps: int = _field(3000, "training iterations per level")
    batch_size: int = _field(60, "minibatch size")
    learning_rate: float = _field(1.2e-3, "peak learning rate")
    optimizer: str = _field("adam", "adam, adamw, sgd or momentum")
    schedule: str = _field("constant", "learning-rate schedule: constant, cosine or linear")
    weight_decay: float = _field(
        0.0,
        "weight decay: decoupled for adamw, L2 added to the gradient for sgd and momentum "
        "(as PyTorch's SGD weight_decay); adam refuses it (use adamw)",
    )
    eval_every: int = _field(100, "iterations between evaluations")
    val_size: int = _field(500, "training examples held out for early stopping")
    seed: int = _field(
        0, "base seed in [0, 2**32): inits, data order and validation split derive from it"
    )
    min_keep: int = _field(
        1,
        "weights every prunable layer keeps at least (0 allows a layer to collapse to zero "
        "weights; collapse is reported in the records, the table and by a warning)",
    )

    def check(self) -> None:
        """Ranges and combinations of the fields (``config_checks.check_ranges``)."""
        check_ranges(self)

    @property
    def variants(self) -> tuple[str, ...]:
        """What trains at each pruned level: the ticket, then each control."""
        return ("ticket", *self.controls)
