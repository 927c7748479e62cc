"""The training settings every new workflow config shares, declared once.

``TrainingSettings`` is a ``WorkflowConfig`` with the model, the data set and the training
fields (seeds, steps, optimizer, schedule, evaluation, validation split, base seed and
``min_keep``) under the names and defaults of the lottery workflow (LeNet-300-100 on
MNIST-1D, Adam 1.2e-3, batch 60, 3000 steps). A workflow config subclasses it and adds its
own fields; :meth:`TrainingSettings.check` runs ``check_training_settings``, so a subclass's
``check`` calls ``super().check()`` first::

    @dataclasses.dataclass(frozen=True)
    class AtInitConfig(TrainingSettings):
        method: str = field("snip", "the at-init method")

Equal values give equal digests whatever class declared the field (the digest hashes the
sorted JSON of the values), so a run directory does not depend on where a field lives.
"""

from __future__ import annotations

import dataclasses

from jaxticket.workflow.config import WorkflowConfig, field
from jaxticket.workflow.training import check_training_settings

__all__ = ["TRAINING_FIELDS", "TrainingSettings"]


@dataclasses.dataclass(frozen=True)
class TrainingSettings(WorkflowConfig):
    """The model, data set and training settings of a workflow (see the module docstring)."""

    model: str = field(
        "lenet_300_100",
        "model name (lenet_300_100, mlp, cnn1d, conv2, conv4, conv6, resnet20, vgg16, ...)",
    )
    dataset: str = field("mnist1d", "data set name (mnist1d, digits, modular, or a TFDS name)")
    seeds: int = field(3, "independent seeds, trained together in one vmapped program")
    steps: int = field(3000, "training iterations of every run")
    batch_size: int = field(60, "minibatch size")
    learning_rate: float = field(1.2e-3, "peak learning rate")
    optimizer: str = field("adam", "adam, adamw, sgd or momentum")
    schedule: str = field("constant", "learning-rate schedule: constant, cosine or linear")
    weight_decay: float = field(
        0.0,
        "weight decay: decoupled for adamw, L2 added to the gradient for sgd and momentum "
        "(as PyTorch's SGD weight_decay); adam refuses it (use adamw)",
    )
    eval_every: int = field(100, "iterations between evaluations")
    val_size: int = field(500, "training examples held out for early stopping")
    seed: int = field(0, "base seed in [0, 2**32): inits, data order and masks derive from it")
    min_keep: int = field(
        1,
        "weights every prunable layer keeps at least (0 allows a layer to collapse to zero "
        "weights; collapse is reported in the records, the table and by a warning)",
    )

    def check(self) -> None:
        """The training settings in range (``check_training_settings``), each a
        ``ConfigError`` naming the field."""
        check_training_settings(self)

    def training_settings(self) -> dict:
        """The values of the :data:`TRAINING_FIELDS`, to build another workflow's config
        with the same training (``LotteryConfig(**c.training_settings(), ...)``)."""
        return {name: getattr(self, name) for name in TRAINING_FIELDS}


TRAINING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingSettings))
"""The field names of :class:`TrainingSettings`, in order."""
