"""Loading a data set by name.

Names: the builtin sets ``"mnist1d"`` (the default), ``"digits"`` and ``"modular"``, which
need no download; every other name is looked up in TensorFlow Datasets (``"mnist"``,
``"fashion_mnist"``, ``"cifar10"``, ...). The prefix ``"tfds:"`` (``"tfds:mnist"``) forces
the TensorFlow Datasets lookup, should a tfds name ever equal a builtin one.
"""

from __future__ import annotations

import difflib
import inspect
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
      TypeError: ``name`` is not a string, or an option the loader does not have (the
        message lists those it has).
    """
    if not isinstance(name, str):
        raise TypeError(f"data set name must be a str, got {type(name).__name__}")
    if name in _BUILTIN:
        check_options(name, _BUILTIN[name], kwargs)
        return _BUILTIN[name](**kwargs)
    tfds_name = name.removeprefix(TFDS_PREFIX)
    if tfds_name and is_tfds_name(tfds_name):
        check_options(tfds_name, load_tfds, kwargs)
        return load_tfds(tfds_name, **kwargs)
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown data set {name!r}{hint}: builtin names are {names()}; TensorFlow Datasets "
        f"names such as 'mnist', 'fashion_mnist' or 'cifar10' also work, or "
        f"'{TFDS_PREFIX}<name>' to be explicit"
    )


def check_options(name: str, loader: Callable[..., Dataset], kwargs: dict) -> None:
    """Raises TypeError naming the data set and its options for an unknown keyword.

    Args:
      name: the data set's name, for the message.
      loader: its loading function (keyword-only options after any positional name).
      kwargs: the keywords given to :func:`load`.
    """
    options = [
        p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY
    ]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        close = difflib.get_close_matches(unknown[0], options, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise TypeError(
            f"data set {name!r} has no option(s) {unknown}{hint}; its options are: "
            + (", ".join(options) or "none")
        )


def names() -> list[str]:
    """The builtin data set names (TensorFlow Datasets names are accepted besides these).

    Returns:
      Sorted list of names.
    """
    return sorted(_BUILTIN)
