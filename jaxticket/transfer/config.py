"""The ticket-transfer experiment as data: a mask found on a source task, trained on a
target task with the same parameter shapes.

``TransferConfig`` is a ``jaxticket.workflow.TrainingSettings`` plus the pair of tasks and
the sparsities. The tasks share ``dataset`` and differ in what the config says:

* ``modular``: ``(a source_op b) mod p`` → ``(a target_op b) mod p`` (addition →
  subtraction by default);
* ``digits`` / ``mnist1d``: ``source_classes`` → ``target_classes`` (each relabelled
  ``0..k-1``; empty: all ten), e.g. digits 0–4 → 5–9;
* ``mnist1d``: also ``source_seed`` → ``target_seed``, the generation seed (42, the
  published set → 43, a re-seeded set).

A setting the chosen data set does not read must stay at its default (refused, naming
it). Tasks whose parameter shapes differ are refused before anything trains, naming the
first leaf that differs.
"""

from __future__ import annotations

import dataclasses

from jaxticket.at_init.config import check_sparsities
from jaxticket.data.modular import OPS
from jaxticket.workflow.config import ConfigError, field
from jaxticket.workflow.settings import TrainingSettings
from jaxticket.workflow.training import require

__all__ = ["DATASETS", "VARIANTS", "TransferConfig"]

DATASETS = ("mnist1d", "digits", "modular")

VARIANTS = ("transfer", "native", "reinit", "shuffle")
"""What trains on the target task at each sparsity: the source mask on the init
(``transfer``), the target's own magnitude ticket (``native``, the reference), the source
mask on a fresh init (``reinit``) and the source mask shuffled within each layer
(``shuffle``: same per-layer counts)."""

_TASK_FIELDS = {
    "modular": ("p", "train_fraction", "source_op", "target_op"),
    "digits": ("source_classes", "target_classes"),
    "mnist1d": ("source_classes", "target_classes", "source_seed", "target_seed"),
}


@dataclasses.dataclass(frozen=True)
class TransferConfig(TrainingSettings):
    """A source task's magnitude tickets trained on a target task, with their controls.

    Phase 0 trains the dense network on both tasks from the same inits; phase ``k`` prunes
    the trained source network by global magnitude to the ``k``-th sparsity, rewinds to the
    init and trains it on the target beside the controls, in one vmapped program.
    """

    sparsities: tuple[float, ...] = field((0.8, 0.9, 0.95), "target sparsities, one phase each")
    variants: tuple[str, ...] = field(
        VARIANTS,
        "trained on the target: transfer, native (the target's own ticket), reinit, shuffle",
    )
    hidden: tuple[int, ...] = field((), "mlp, embed_mlp: hidden-layer widths (empty: default)")
    source_classes: tuple[int, ...] = field(
        (), "digits, mnist1d: the source task's classes, relabelled 0..k-1 (empty: all)"
    )
    target_classes: tuple[int, ...] = field(
        (), "digits, mnist1d: the target task's classes, relabelled 0..k-1 (empty: all)"
    )
    source_seed: int = field(42, "mnist1d: the source set's generation seed (42: published)")
    target_seed: int = field(43, "mnist1d: the target set's generation seed")
    p: int = field(67, "modular: the modulus")
    train_fraction: float = field(0.4, "modular: share of the pairs used for training")
    source_op: str = field("+", "modular: the source task's operation")
    target_op: str = field("-", "modular: the target task's operation")

    def check(self) -> None:
        """Training settings, the data set, the sparsities, the variants and no setting the
        data set ignores, each a ``ConfigError`` naming the field."""
        super().check()
        require(
            self.dataset in DATASETS,
            "dataset",
            f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}",
        )
        check_sparsities(self.sparsities)
        for name in self.variants:
            require(
                name in VARIANTS,
                "variants",
                f"unknown variant {name!r}; valid: {', '.join(VARIANTS)}",
            )
        require(bool(self.variants), "variants", "variants: give at least one")
        require(len(set(self.variants)) == len(self.variants), "variants", "variants repeat")
        defaults = {f.name: f.default for f in dataclasses.fields(TransferConfig)}
        for name in sorted(set().union(*_TASK_FIELDS.values()) - set(_TASK_FIELDS[self.dataset])):
            if getattr(self, name) != defaults[name]:
                raise ConfigError(
                    name,
                    f"{name} is not read for dataset {self.dataset!r}; leave it at its default",
                )
        for name in ("source_op", "target_op"):
            value = getattr(self, name)
            require(value in OPS, name, f"{name} must be one of {', '.join(OPS)}, got {value!r}")
        for name in ("source_classes", "target_classes"):
            classes = getattr(self, name)
            require(
                all(0 <= k < 10 for k in classes) and len(set(classes)) == len(classes),
                name,
                f"{name} must be distinct classes in 0..9, got {classes}",
            )
            require(len(classes) != 1, name, f"{name}: one class is no classification task")
        require(
            self.model in ("mlp", "embed_mlp") or not self.hidden,
            "hidden",
            f"hidden is read only by mlp and embed_mlp, not {self.model!r}",
        )
        pairs = [n.removeprefix("source_") for n in _TASK_FIELDS[self.dataset] if "source_" in n]
        same = all(getattr(self, f"source_{n}") == getattr(self, f"target_{n}") for n in pairs)
        require(
            not same,
            f"target_{pairs[0]}",
            f"the source and target tasks are the same task (set a target_{pairs[0]})",
        )
