"""Loading a data set by name.

Names: the builtin sets ``"mnist1d"`` (the default), ``"digits"`` and ``"modular"``, which
need no download; every other name is looked up in TensorFlow Datasets (``"mnist"``,
``"fashion_mnist"``, ``"cifar10"``, ...). The prefix ``"tfds:"`` (``"tfds:mnist"``) forces
the TensorFlow Datasets lookup, should a tfds name ever equal a builtin one.
"""

from __future__ import annotations

from collections.abc import Callable

from jaxticket.data.base import Dataset
from jaxticket.data.digits import load_digits
from jaxticket.data.mnist1d import load_mnist1d
from jaxticket.data.modular import load_modular
from jaxticket.data.tfds import is_tfds_name, load_tfds

#: The data set used when none is named.
DEFAULT = "mnist1d"
#: Prefix that sends a name to TensorFlow Datasets.
TFDS_PREFIX = "tfds:"

_BUILTIN: dict[str, Callable[..., Dataset]] = {
    "mnist1d": load_mnist1d,
    "digits": load_digits,
    "modular": load_modular,
}


def load(name: str = DEFAULT, **kwargs) -> Dataset:
    """Loads a data set by name onto the device.

    Args:
      name: a builtin name (see :func:`names`), a TensorFlow Datasets name, or
        ``"tfds:<name>"``.
      **kwargs: passed to the loader: :func:`load_mnist1d` (``seed``, ``num_samples``),
        :func:`load_digits` (``test_fraction``, ``seed``), :func:`load_modular`
        (``p``, ``op``, ``train_fraction``, ``seed``) or :func:`load_tfds` (``data_dir``,
        ``train_split``, ``test_split``, ``standardize``, ``supervised_keys``).

    Returns:
      The ``Dataset``.

    Raises:
      ValueError: ``name`` is neither builtin nor a TensorFlow Datasets name; the message
        lists the builtin names.
      TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    if name in _BUILTIN:
        return _BUILTIN[name](**kwargs)
    tfds_name = name.removeprefix(TFDS_PREFIX)
    if tfds_name and is_tfds_name(tfds_name):
        return load_tfds(tfds_name, **kwargs)
    raise ValueError(
        f"unknown data set {name!r}: builtin names are {names()}; TensorFlow Datasets "
        f"names such as 'mnist', 'fashion_mnist' or 'cifar10' also work, or "
        f"'{TFDS_PREFIX}<name>' to be explicit"
    )


def names() -> list[str]:
    """The builtin data set names (TensorFlow Datasets names are accepted besides these).

    Returns:
      Sorted list of names.
    """
    return sorted(_BUILTIN)
