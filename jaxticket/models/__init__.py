"""The model zoo: Flax NNX networks exposed as pure ``Model`` functions, plus adapters."""

from jaxticket.models import cnn1d, convnets, mlp, modular, resnet, vgg  # noqa: F401 (registers)
from jaxticket.models.adapters import from_functions, from_linen
from jaxticket.models.base import Model, from_nnx
from jaxticket.models.initializers import SCHEMES
from jaxticket.models.registry import get, names, register

__all__ = [
    "Model",
    "SCHEMES",
    "from_functions",
    "from_linen",
    "from_nnx",
    "get",
    "names",
    "register",
]
