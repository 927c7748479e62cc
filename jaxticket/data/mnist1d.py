"""MNIST-1D (Greydanus 2020): ten 1-D digit templates, randomly transformed, length 40.

Generated locally by the ``mnist1d`` package, never downloaded: its ``get_dataset`` would
fetch a pickle from GitHub and write ``./mnist1d_data.pkl`` into the working directory, so
this module calls the generator ``make_dataset`` directly. With the package defaults
(5,000 samples, seed 42) that gives 4,000 training and 1,000 test sequences, already
centred and scaled to unit standard deviation over the whole set. Generation takes a few
seconds, so the arrays are cached: per process, and on disk under
``$JAXTICKET_CACHE_DIR/data`` (default ``~/.cache/jaxticket/data``; set the variable to an
empty string to turn the disk cache off), keyed by seed, size and the ``mnist1d`` version.

Published test accuracy on the default set: logistic regression ~32%, MLP ~68%,
CNN ~94%, GRU ~91%.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import random
from pathlib import Path

import numpy as np

from jaxticket.data.base import Dataset, check_int, to_device

#: The length of one sequence with the package defaults.
SEQUENCE_LENGTH = 40


def load_mnist1d(*, seed: int = 42, num_samples: int = 5000) -> Dataset:
    """Generates MNIST-1D; the default arguments give the published data set.

    Examples have shape ``(40, 1)``: a sequence with one channel, channels last, so that
    1-D convolutions take them as they are and MLPs flatten them.

    Args:
      seed: generation seed (42 is the published set).
      num_samples: total number of sequences; 80% train, 20% test.

    Returns:
      A ``Dataset`` named ``"mnist1d"`` with 10 classes and ``float32`` inputs.

    Raises:
      ValueError: ``num_samples`` is below 10 (one example per class), or ``seed`` is
        outside ``[0, 2**32)``.
      TypeError: ``seed`` or ``num_samples`` is not an int.
    """
    seed = check_int(seed, "mnist1d seed", below=2**32)  # numpy's legacy seeding range
    num_samples = check_int(num_samples, "mnist1d num_samples", minimum=10)
    return _generate(seed, num_samples)


@functools.lru_cache(maxsize=8)
def _generate(seed: int, num_samples: int) -> Dataset:
    arrays = _cached_arrays(seed, num_samples)
    return to_device(*arrays, name="mnist1d", num_classes=10)


def _cached_arrays(seed: int, num_samples: int) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_test, y_test)``, from the disk cache when it holds them."""
    path = _cache_path(seed, num_samples)
    if path is not None and path.exists():
        try:
            with np.load(path) as f:
                return tuple(f[k] for k in _KEYS)
        except Exception:  # a truncated or foreign file: generate again and replace it
            pass
    arrays = _make(seed, num_samples)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.savez(f, **dict(zip(_KEYS, arrays, strict=True)))
            os.replace(tmp, path)  # atomic: a reader never sees half a file
        except OSError:
            pass  # a read-only home still works, just without the cache
    return arrays


_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _cache_path(seed: int, num_samples: int) -> Path | None:
    root = os.environ.get("JAXTICKET_CACHE_DIR", str(Path.home() / ".cache" / "jaxticket"))
    if not root:
        return None
    version = importlib.metadata.version("mnist1d")
    return Path(root) / "data" / f"mnist1d-{version}-seed{seed}-n{num_samples}.npz"


def _make(seed: int, num_samples: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset  # slow import (matplotlib)

    args = get_dataset_args()
    args.seed, args.num_samples = seed, num_samples
    # make_dataset reseeds the global `random` and `np.random` generators; put the caller's
    # state back so loading data never changes anyone else's random stream.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        raw = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return (
        raw["x"][..., None].astype(np.float32),
        np.asarray(raw["y"]),
        raw["x_test"][..., None].astype(np.float32),
        np.asarray(raw["y_test"]),
    )
