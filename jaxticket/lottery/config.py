"""The lottery experiment as data: one frozen dataclass names a run completely.

Every field has a CLI flag (generated from the field's type, default and help text), and
the config's digest names the run directory, so equal configs resume the same run and
different ones never collide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

REWIND_MODES = ("weights", "lr", "finetune")
CONTROLS = ("reinit", "random_prune", "shuffle")
OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
SCHEDULES = ("constant", "cosine", "linear")


def _field(default, help: str, **kw):
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass(frozen=True)
class LotteryConfig:
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
    steps: int = _field(3000, "training iterations per level")
    batch_size: int = _field(60, "minibatch size")
    learning_rate: float = _field(1.2e-3, "peak learning rate")
    optimizer: str = _field("adam", "adam, adamw, sgd or momentum")
    schedule: str = _field("constant", "learning-rate schedule: constant, cosine or linear")
    weight_decay: float = _field(0.0, "decoupled weight decay (adamw only)")
    eval_every: int = _field(100, "iterations between evaluations")
    val_size: int = _field(500, "training examples held out for early stopping")
    seed: int = _field(0, "base seed: inits, data order and validation split derive from it")

    def __post_init__(self):
        _check(self.levels >= 0, f"levels must be >= 0, got {self.levels}")
        _check(self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}")
        _check(
            0.0 < self.prune_fraction < 1.0,
            f"prune fraction must be in (0, 1), got {self.prune_fraction}",
        )
        for pattern, scale in self.layer_rates:
            _check(
                0.0 <= self.prune_fraction * scale < 1.0,
                f"layer rate {pattern}={scale} gives a prune fraction outside [0, 1)",
            )
        _check(
            self.allocation in ("layerwise", "global"),
            f"allocation must be layerwise or global, got {self.allocation!r}",
        )
        _check(self.rewind_mode in REWIND_MODES, f"rewind mode must be one of {REWIND_MODES}")
        _check(
            0 <= self.rewind < self.steps,
            f"rewind must be an iteration in [0, steps={self.steps}), got {self.rewind}",
        )
        for c in self.controls:
            _check(c in CONTROLS, f"unknown control {c!r}; valid: {', '.join(CONTROLS)}")
        for s in self.one_shot:
            _check(0.0 < s < 1.0, f"one-shot sparsity must be in (0, 1), got {s}")
        _check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}")
        _check(self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}")
        _check(
            not (self.rewind_mode == "finetune" and self.schedule != "constant"),
            f"rewind mode finetune trains at the schedule's final rate, which is 0 for the "
            f"{self.schedule!r} schedule (nothing would train); use --schedule constant",
        )
        _check(self.steps >= 1, f"steps must be >= 1, got {self.steps}")
        _check(self.batch_size >= 1, f"batch size must be >= 1, got {self.batch_size}")
        _check(self.learning_rate > 0, f"learning rate must be > 0, got {self.learning_rate}")
        _check(self.eval_every >= 1, f"eval every must be >= 1, got {self.eval_every}")
        _check(self.val_size >= 1, f"val size must be >= 1, got {self.val_size}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LotteryConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["layer_rates"] = tuple((str(p), float(s)) for p, s in d.get("layer_rates", ()))
        for name in ("controls", "one_shot"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(**d)

    def digest(self) -> str:
        """A stable sha256 hex digest of the config's canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def variants(self) -> tuple[str, ...]:
        """What trains at each pruned level: the ticket, then each control."""
        return ("ticket", *self.controls)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
