"""The uniform soup of sparse models that share one mask (Zimmer et al. 2023).

Models retrained from one pruned network keep its mask, so their parameter average is as
sparse as each of them. :func:`average` refuses models whose masks differ (it names the
leaf and how many positions differ) and returns the mean with the shared mask applied, so
the soup is exactly zero wherever the mask is off.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from jaxticket._paths import leaves_with_paths

__all__ = ["average", "shared_mask"]

_is_none = lambda x: x is None  # noqa: E731


def shared_mask(masks: Any) -> Any:
    """The one mask a stack of members' masks holds (``masks[0]`` along the member axis).

    Args:
      masks: boolean masks stacked over members on axis 0 (``None`` leaves: never pruned).

    Returns:
      The members' common mask (NumPy leaves, ``None`` kept).

    Raises:
      ValueError: a leaf has no member axis, or the members' masks differ at a leaf (the
        message names the leaf, the first member that differs from member 0 and the
        number of positions where they differ).
    """
    for path, leaf in leaves_with_paths(masks):
        m = np.asarray(leaf)
        if m.ndim == 0 or m.dtype != np.bool_:
            raise ValueError(
                f"soup: mask leaf {path!r} must be bool with a leading member axis, "
                f"got dtype {m.dtype} and shape {m.shape}"
            )
        for j in range(1, m.shape[0]):
            differ = int(np.count_nonzero(m[j] != m[0]))
            if differ:
                raise ValueError(
                    f"soup: the members' masks differ at leaf {path!r}: member {j} and "
                    f"member 0 disagree in {differ} of {m[0].size} positions; only models "
                    "with one shared mask can be averaged"
                )
    return jax.tree.map(lambda m: None if m is None else np.asarray(m)[0], masks, is_leaf=_is_none)


def average(params: Any, masks: Any) -> Any:
    """The uniform soup: the mean over members of ``params``, zero where the mask is off.

    Args:
      params: the members' params stacked on axis 0 (any further axes, a seed axis say,
        are kept: member ``j`` of seed ``s`` is ``params[j, s]``).
      masks: their masks, stacked the same way, with the structure of a mask of ``params``
        (``None`` leaves are averaged unmasked).

    Returns:
      The averaged params (NumPy leaves), with ``shared_mask(masks)`` applied: exactly 0
      where it is off.

    Raises:
      ValueError: the members' masks differ (:func:`shared_mask`), or a params leaf and
        its mask leaf differ in shape, or the members' counts differ.
    """
    mask = shared_mask(masks)
    flat_params = dict(leaves_with_paths(params))
    for path, m in leaves_with_paths(mask):
        p = np.shape(flat_params.get(path, ()))
        if p[1:] != m.shape:
            raise ValueError(
                f"soup: params leaf {path!r} has shape {p} but its mask {m.shape} per member"
            )
    counts = {np.shape(x)[0] for x in jax.tree.leaves(params)}
    if len(counts) != 1:
        raise ValueError(f"soup: params leaves have different member counts {sorted(counts)}")

    def mean(p, m):
        avg = np.mean(np.asarray(p, dtype=np.float64), axis=0).astype(np.asarray(p).dtype)
        return avg if m is None else np.where(m, avg, np.zeros_like(avg))

    return jax.tree.map(lambda m, p: mean(p, m), mask, params, is_leaf=_is_none)
