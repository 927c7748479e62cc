"""Data sets as device-resident arrays: one :class:`Dataset` interface for all.

``load(name, **kwargs)`` returns a ``Dataset`` whose splits live on the device, inputs
``float32`` (normalised) or ``int32`` tokens, labels ``int32``. Builtin sets need no
download: MNIST-1D (the default), scikit-learn's digits, and modular arithmetic; other
names go to TensorFlow Datasets (prepared data only, see :mod:`jaxticket.data.tfds`).

Example::

    ds = jaxticket.data.load("mnist1d")            # 4000 train / 1000 test, (40, 1)
    ds = jaxticket.data.with_validation(ds, 500, seed=0)
    ds = jaxticket.data.load("modular", p=97, op="/", train_fraction=0.3)
"""

from jaxticket.data.base import Dataset, with_validation
from jaxticket.data.digits import load_digits
from jaxticket.data.mnist1d import load_mnist1d
from jaxticket.data.modular import load_modular
from jaxticket.data.registry import DEFAULT, TFDS_PREFIX, load, names
from jaxticket.data.tfds import is_tfds_name, load_tfds

__all__ = [
    "DEFAULT",
    "TFDS_PREFIX",
    "Dataset",
    "is_tfds_name",
    "load",
    "load_digits",
    "load_mnist1d",
    "load_modular",
    "load_tfds",
    "names",
    "with_validation",
]
