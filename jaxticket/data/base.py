"""The one container every data set arrives in, and the split helpers they share.

A :class:`Dataset` holds whole splits as device arrays: the training engine indexes them
inside one jitted ``lax.scan``, so nothing is streamed from the host during training.
Inputs ``x_*`` are ``float32`` (already normalised) or ``int32`` tokens; labels ``y_*`` are
``int32`` class indices in ``[0, num_classes)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass(kw_only=True)
class Dataset:
    """Train/test (and optional validation) splits of one data set, resident on the device.

    The arrays are pytree leaves, so a ``Dataset`` passes straight through ``jax.jit``;
    ``name``, ``num_classes`` and ``input_shape`` are static metadata.

    Attributes:
      x_train: inputs, shape ``(n_train, *input_shape)``.
      y_train: ``int32`` labels, shape ``(n_train,)``.
      x_test: inputs, shape ``(n_test, *input_shape)``.
      y_test: ``int32`` labels, shape ``(n_test,)``.
      x_val: validation inputs, or ``None`` until :func:`with_validation` makes them.
      y_val: validation labels, or ``None``.
      name: the data set's name, e.g. ``"mnist1d"``.
      num_classes: number of classes (labels lie in ``[0, num_classes)``).
      input_shape: the shape of one example, e.g. ``(40, 1)``.
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    x_val: jax.Array | None = None
    y_val: jax.Array | None = None
    name: str = struct.field(pytree_node=False)
    num_classes: int = struct.field(pytree_node=False)
    input_shape: tuple[int, ...] = struct.field(pytree_node=False)


def with_validation(ds: Dataset, size: int, seed: int = 0) -> Dataset:
    """Moves ``size`` randomly chosen training examples into a validation split.

    The test split is untouched; the remaining training examples keep their order.

    Args:
      ds: a data set without a validation split.
      size: how many training examples to move; ``1 <= size < len(ds.y_train)``.
      seed: seeds the choice of examples.

    Returns:
      A new ``Dataset`` with ``x_val``/``y_val`` set and ``size`` fewer training examples.

    Raises:
      ValueError: ``ds`` already has a validation split, or ``size`` is out of range.
      TypeError: ``size`` is not an integer.
    """
    if ds.x_val is not None or ds.y_val is not None:
        raise ValueError(f"with_validation: data set {ds.name!r} already has a validation split")
    if isinstance(size, bool) or not isinstance(size, int | np.integer):
        raise TypeError(f"with_validation: size must be an int, got {type(size).__name__}")
    seed = check_int(seed, "with_validation: seed")
    n_train = int(ds.y_train.shape[0])
    if not 1 <= size < n_train:
        raise ValueError(
            f"with_validation: size must satisfy 1 <= size < {n_train} (the number of "
            f"training examples of {ds.name!r}), got {size}"
        )
    val_idx, train_idx = split_indices(n_train, int(size), seed)
    return ds.replace(
        x_train=ds.x_train[train_idx],
        y_train=ds.y_train[train_idx],
        x_val=ds.x_train[val_idx],
        y_val=ds.y_train[val_idx],
    )


def split_indices(n: int, n_first: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random partition of ``range(n)`` into ``n_first`` and ``n - n_first`` indices.

    Both parts are returned sorted, so a split keeps the source order within each part.

    Args:
      n: number of examples.
      n_first: size of the first part.
      seed: seed of the numpy generator that draws the partition.

    Returns:
      ``(first, rest)``: two sorted ``int`` index arrays.
    """
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[:n_first]), np.sort(perm[n_first:])


def check_fraction(value: float, what: str) -> float:
    """Returns ``value`` as a float after checking ``0 < value < 1``.

    Args:
      value: the fraction to check.
      what: the argument's name, for the error message.

    Returns:
      ``float(value)``.

    Raises:
      ValueError: ``value`` is not strictly between 0 and 1.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{what} must be a number strictly between 0 and 1, got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{what} must lie strictly between 0 and 1, got {value}")
    return float(value)


def check_int(value: int, what: str, *, minimum: int = 0, below: int | None = None) -> int:
    """Returns ``value`` as a Python int after checking ``minimum <= value (< below)``.

    Floats are refused rather than truncated (``num_samples=100.7`` must not become 100).

    Args:
      value: the integer to check (a seed, a size).
      what: the argument's name, for the error message.
      minimum: the smallest valid value.
      below: if given, the first invalid value above the range.

    Returns:
      ``int(value)``.

    Raises:
      TypeError: ``value`` is not an integer (bools included).
      ValueError: ``value`` is out of range.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{what} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum or (below is not None and value >= below):
        upper = f" and < {below}" if below is not None else ""
        raise ValueError(f"{what} must be >= {minimum}{upper}, got {value}")
    return int(value)


def to_device(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    name: str,
    num_classes: int,
) -> Dataset:
    """Builds a ``Dataset`` from host arrays: labels become ``int32``, floats ``float32``.

    Args:
      x_train, y_train, x_test, y_test: the splits as numpy arrays.
      name: the data set's name.
      num_classes: number of classes.

    Returns:
      The ``Dataset`` with every array on the default device.
    """
    x_dtype = jnp.float32 if np.issubdtype(x_train.dtype, np.floating) else jnp.int32
    return Dataset(
        x_train=jnp.asarray(x_train, dtype=x_dtype),
        y_train=jnp.asarray(y_train, dtype=jnp.int32),
        x_test=jnp.asarray(x_test, dtype=x_dtype),
        y_test=jnp.asarray(y_test, dtype=jnp.int32),
        name=name,
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
    )
