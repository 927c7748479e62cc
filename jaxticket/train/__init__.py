"""The training engine: a whole run is one jitted ``lax.scan`` program; vmap runs seeds."""

from jaxticket.train.divergence import DivergenceWarning
from jaxticket.train.engine import TrainResult, TrainState, make_train_fn
from jaxticket.train.evaluate import evaluate
from jaxticket.train.losses import accuracy, cross_entropy
from jaxticket.train.mask_update import MaskUpdate, UpdateInputs, UpdateOutput
from jaxticket.train.runner import check_compatible, seed_mesh, train, train_seeds

__all__ = [
    "DivergenceWarning",
    "MaskUpdate",
    "TrainResult",
    "TrainState",
    "accuracy",
    "check_compatible",
    "cross_entropy",
    "evaluate",
    "make_train_fn",
    "seed_mesh",
    "train",
    "train_seeds",
    "UpdateInputs",
    "UpdateOutput",
]
