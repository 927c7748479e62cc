"""MNIST-1D (Greydanus 2020): ten 1-D digit templates, randomly transformed, length 40.

Generated locally by the ``mnist1d`` package, never downloaded: its ``get_dataset`` would
fetch a pickle from GitHub and write ``./mnist1d_data.pkl`` into the working directory, so
this module calls the generator ``make_dataset`` directly. With the package defaults
(5,000 samples, seed 42) that gives 4,000 training and 1,000 test sequences, already
centred and scaled to unit standard deviation over the whole set. Generation takes a few
seconds, so results are cached per process.

Published test accuracy on the default set: logistic regression ~32%, MLP ~68%,
CNN ~94%, GRU ~91%.
"""

from __future__ import annotations

import functools
import random

import numpy as np

from jaxticket.data.base import Dataset, to_device

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
      ValueError: ``num_samples`` is below 10 (one example per class).
    """
    if num_samples < 10:
        raise ValueError(f"num_samples must be at least 10, got {num_samples}")
    return _generate(int(seed), int(num_samples))


@functools.lru_cache(maxsize=8)
def _generate(seed: int, num_samples: int) -> Dataset:
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
    return to_device(
        raw["x"][..., None].astype(np.float32),
        raw["y"],
        raw["x_test"][..., None].astype(np.float32),
        raw["y_test"],
        name="mnist1d",
        num_classes=10,
    )
