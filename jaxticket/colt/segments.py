"""COLT's data segments and the overlap of the copies' masks.

:func:`split_segments` cuts a data set's training examples into ``K`` equal parts of a
seeded permutation (the remainder, fewer than ``K`` examples, is left out, so every part
has the same shape and one compiled program trains them all); :func:`overlap` is the
intersection of masks stacked over copies.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.workflow.config import ConfigError

__all__ = ["overlap", "segment_indices", "split_segments"]

_is_none = lambda x: x is None  # noqa: E731


def segment_indices(n: int, segments: int, seed: int) -> np.ndarray:
    """``int[segments, n // segments]``: disjoint rows of a permutation of ``range(n)``
    drawn by ``numpy.random.default_rng(seed)``.

    Raises:
      ConfigError (field ``segments``): ``segments < 2`` or more segments than examples.
    """
    if segments < 2:
        raise ConfigError("segments", f"segments must be >= 2, got {segments}")
    if segments > n:
        raise ConfigError(
            "segments",
            f"segments={segments} is more than the {n} training examples: a segment would be empty",
        )
    size = n // segments
    order = np.random.default_rng(seed).permutation(n)
    return order[: segments * size].reshape(segments, size)


def split_segments(data, segments: int, seed: int) -> list:
    """The data set once per segment, each with that segment's training examples only
    (validation and test sets unchanged).

    Raises:
      ConfigError: as :func:`segment_indices`.
    """
    rows = segment_indices(int(data.x_train.shape[0]), segments, seed)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    return [data.replace(x_train=x[r], y_train=y[r]) for r in rows]


def overlap(masks: Any) -> Any:
    """The weights alive in every copy: the logical AND over axis 0 of each leaf.

    Args:
      masks: boolean masks stacked over copies on axis 0 (further axes, a seed axis say,
        are kept); ``None`` leaves (never pruned) stay ``None``.

    Raises:
      ValueError: a leaf is not boolean or has no copy axis (the message names it).
    """
    for path, leaf in leaves_with_paths(masks):
        m = np.asarray(leaf)
        if m.dtype != np.bool_ or m.ndim == 0:
            raise ValueError(
                f"overlap: mask leaf {path!r} must be bool with a leading copy axis, got "
                f"dtype {m.dtype} and shape {m.shape}"
            )
    return jax.tree.map(
        lambda m: None if m is None else np.logical_and.reduce(np.asarray(m), axis=0),
        masks,
        is_leaf=_is_none,
    )
