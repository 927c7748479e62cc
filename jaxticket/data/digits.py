"""Digits: the 1,797 real 8x8 handwritten digits bundled with scikit-learn (no download).

Pixels (0..16 in the source) are scaled to [0, 1]; examples have shape ``(8, 8, 1)``,
an image with one channel, channels last, so convolutions take them as they are and MLPs
flatten them. scikit-learn ships no split, so train and test are drawn here from a seed.
"""

from __future__ import annotations

import numpy as np

from jaxticket.data.base import Dataset, check_fraction, check_int, split_indices, to_device


def load_digits(*, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Loads scikit-learn's digits with a seeded random train/test split.

    Args:
      test_fraction: share of the 1,797 examples held out for test, in (0, 1).
      seed: seeds the split.

    Returns:
      A ``Dataset`` named ``"digits"``: 10 classes, ``float32`` inputs of shape ``(8, 8, 1)``
      in [0, 1].

    Raises:
      ValueError: ``test_fraction`` is not strictly between 0 and 1, or ``seed`` < 0.
      TypeError: ``seed`` is not an int.
    """
    from sklearn.datasets import load_digits as sklearn_digits  # slow import

    check_fraction(test_fraction, "test_fraction")
    seed = check_int(seed, "digits seed")
    raw = sklearn_digits()
    x = (raw.images / 16.0).astype(np.float32)[..., None]
    n = len(raw.target)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    test_idx, train_idx = split_indices(n, n_test, seed)
    return to_device(
        x[train_idx],
        raw.target[train_idx],
        x[test_idx],
        raw.target[test_idx],
        name="digits",
        num_classes=10,
    )
