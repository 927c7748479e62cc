"""TensorFlow Datasets (mnist, fashion_mnist, cifar10, ...) through ``tfds.data_source``.

``tfds.data_source`` reads prepared ArrayRecord files by random access and needs no
TensorFlow. This module never downloads: when the data is not prepared under ``data_dir``
it raises ``FileNotFoundError`` saying how to prepare it. Preparing (downloading and
encoding the images) does need TensorFlow and internet, on any machine::

    tfds build mnist --file_format=array_record --data_dir=DIR
    # or: tfds.builder("mnist", data_dir=DIR, file_format="array_record").download_and_prepare()

then copy ``DIR`` over and pass ``data_dir=DIR``. Sets prepared in the default TFRecord
format cannot be read by random access; tfds says so in its error.

Loading: examples are read in batches into host numpy arrays (in their stored dtype,
e.g. ``uint8`` pixels), moved to the device, and normalised there in ``float32``: unsigned
integer inputs are divided by their dtype's maximum (255 for ``uint8``) into [0, 1], then,
with ``standardize=True``, standardised per channel (the last axis) with the mean and
standard deviation of the training split, applied to both splits.

Memory: the whole set lives on the device as ``float32``. CIFAR-10's 50,000 x 32 x 32 x 3
training images take about 614 MB (plus 123 MB for test), and normalising briefly holds the
``uint8`` copy as well. A set larger than device memory fails at transfer with an
out-of-memory error; load a subset with a split slice such as ``train_split="train[:10000]"``.
(Keeping ``uint8`` on the device and normalising per batch would cut memory 4x; not done here,
to keep one ``float32`` interface for every data set.) Decoding runs in Python at roughly
0.5 ms per example on a slow CPU, so a CIFAR-10-sized set takes tens of seconds to load.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.data.base import Dataset

#: How many examples one read from the data source fetches.
READ_BATCH = 1024


def load_tfds(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    train_split: str = "train",
    test_split: str = "test",
    standardize: bool = True,
    supervised_keys: tuple[str, str] | None = None,
) -> Dataset:
    """Loads a prepared TensorFlow Datasets set onto the device.

    Args:
      name: a registered tfds name, optionally with config and version
        (``"mnist"``, ``"cifar10:3.0.2"``).
      data_dir: where the prepared data lives; ``None`` uses tfds' default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      train_split: tfds split for training, slices allowed (``"train[:10000]"``).
      test_split: tfds split for test.
      standardize: standardise per channel with training-split statistics.
      supervised_keys: ``(input_key, label_key)``; default the data set's own
        ``supervised_keys`` (``("image", "label")`` for image classification).

    Returns:
      A ``Dataset`` named ``name`` with ``float32`` inputs and ``int32`` labels.

    Raises:
      ValueError: ``name`` is not a registered tfds data set, or it has no class labels.
      FileNotFoundError: the data is not prepared under ``data_dir``.
    """
    import tensorflow_datasets as tfds

    if not is_tfds_name(name):
        raise ValueError(f"{name!r} is not a registered TensorFlow Datasets name")
    try:
        train_source, test_source = tfds.data_source(
            name, split=[train_split, test_split], data_dir=data_dir, download=False
        )
    except (NotImplementedError, ValueError, OSError, KeyError):
        # Unprepared data surfaces as a misleading "file format TFRECORD not supported"
        # (an empty data_dir) or a deep KeyError "splits is empty" (tfds' default data_dir
        # missing); say what is really missing and how to fix it.
        builder = tfds.builder(name, data_dir=data_dir)
        if builder.is_prepared():
            raise
        raise FileNotFoundError(_not_prepared_message(name, data_dir, builder.data_dir)) from None

    info = train_source.dataset_info
    x_key, y_key = supervised_keys or info.supervised_keys or (None, None)
    if x_key is None:
        raise ValueError(f"{name!r} has no supervised_keys; pass supervised_keys=(input, label)")
    num_classes = getattr(info.features[y_key], "num_classes", None)
    if num_classes is None:
        raise ValueError(f"{name!r}: feature {y_key!r} is not a class label")

    x_train, y_train = _read(train_source, x_key, y_key, f"{name}/{train_split}")
    x_test, y_test = _read(test_source, x_key, y_key, f"{name}/{test_split}")
    scale = float(np.iinfo(x_train.dtype).max) if x_train.dtype.kind == "u" else 1.0
    x_train, x_test = _normalize(
        jnp.asarray(x_train), jnp.asarray(x_test), scale=scale, standardize=standardize
    )
    return Dataset(
        x_train=x_train,
        y_train=jnp.asarray(y_train, dtype=jnp.int32),
        x_test=x_test,
        y_test=jnp.asarray(y_test, dtype=jnp.int32),
        name=name,
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in x_train.shape[1:]),
    )


def is_tfds_name(name: str) -> bool:
    """Whether tfds has a builder for ``name`` (config and version suffixes ignored).

    Looks only at the builders installed with tfds: no network, no TensorFlow. Community
    namespaces (``"huggingface:..."``) are not supported.

    Args:
      name: e.g. ``"mnist"`` or ``"cifar10:3.0.2"``.

    Returns:
      ``True`` when ``name`` names a registered tfds data set.
    """
    import tensorflow_datasets as tfds

    base = name.split("/", 1)[0].split(":", 1)[0]
    if not base:
        return False
    try:
        tfds.builder_cls(base)
    except ValueError:  # DatasetNotFoundError
        return False
    return True


def _read(source, x_key: str, y_key: str, what: str) -> tuple[np.ndarray, np.ndarray]:
    # Batched reads let ArrayRecord fetch records in parallel; the host arrays are
    # preallocated once the first batch shows the example shape and dtype.
    n = len(source)
    if n == 0:
        raise ValueError(f"{what}: the split is empty")
    xs = ys = None
    for start in range(0, n, READ_BATCH):
        batch = source.__getitems__(list(range(start, min(n, start + READ_BATCH))))
        x = np.stack([np.asarray(example[x_key]) for example in batch])
        y = np.asarray([example[y_key] for example in batch])
        if xs is None:
            if x.dtype.kind not in "uifb":
                raise ValueError(f"{what}: feature {x_key!r} is not numeric ({x.dtype})")
            xs = np.empty((n, *x.shape[1:]), x.dtype)
            ys = np.empty((n,), np.int32)
        xs[start : start + len(batch)] = x
        ys[start : start + len(batch)] = y
    return xs, ys


@functools.partial(jax.jit, static_argnames=("scale", "standardize"))
def _normalize(x_train, x_test, *, scale: float, standardize: bool):
    x_train = x_train.astype(jnp.float32) / scale
    x_test = x_test.astype(jnp.float32) / scale
    if standardize:
        axes = tuple(range(x_train.ndim - 1)) or (0,)
        mean = x_train.mean(axis=axes)
        std = x_train.std(axis=axes)
        std = jnp.where(std > 0, std, 1.0)  # a constant channel stays put instead of NaN
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    return x_train, x_test


def _not_prepared_message(name: str, data_dir, searched) -> str:
    where = (
        f"data_dir={os.fspath(data_dir)!r}"
        if data_dir is not None
        else "tfds' default data_dir ($TFDS_DATA_DIR or ~/tensorflow_datasets)"
    )
    return (
        f"TensorFlow Datasets {name!r} is not prepared: searched {searched} ({where}); "
        "jaxticket reads prepared ArrayRecord files and never downloads. On a machine with "
        f"internet and TensorFlow, run `tfds build {name} --file_format=array_record "
        f"--data_dir=DIR` (or `tfds.data_source({name!r}, data_dir=DIR, download=True)`), "
        "copy DIR here and pass data_dir=DIR or set TFDS_DATA_DIR=DIR."
    )
