"""Row layout of the leaves for top-k passes, and the positional tie cut along it.

XLA:CPU runs row reductions at full speed only for rows of suitable length and count;
``_rows`` picks such a 2-D view. ``_flat_index`` and ``_cut`` locate entries by their
row-major position, which breaks ties among equal scores.
"""

from __future__ import annotations

import functools
import math

import jax.numpy as jnp
from jax import lax

_ROW = 1024  # shortest row for per-row sums on large inputs (see ``_rows``)
_MAX_ROWS = 32768  # most rows per array for fast row reductions on XLA:CPU


def _rows(x, shortest=_ROW):
    """2-D view of ``x`` whose rows suit XLA:CPU's row reductions.

    Those run at full speed with rows of about 800 entries or more and at most
    ``_MAX_ROWS`` rows per array, and several times slower otherwise. Rows are the shortest
    divisor of ``x.size`` that is at least ``shortest`` and keeps within ``_MAX_ROWS``
    (at most eight times that and 2**24, so that float counts per row stay exact); sizes
    without one take the longest divisor up to ``shortest``.
    """
    c = _row_length(x.size, max(shortest, -(-x.size // _MAX_ROWS)))
    return x.reshape(x.size // c, c)


@functools.lru_cache(maxsize=256)
def _row_length(n, want):
    small, large = [], []
    for d in range(1, math.isqrt(n) + 1):
        if n % d == 0:
            small.append(d)
            large.append(n // d)
    divisors = small + large[::-1]
    # Far longer rows (sizes with few divisors, such as primes) would crowd the bracket's
    # entries into a row or two, which ``_finish`` cannot read: short rows, slower to
    # count, serve those leaves better.
    fit = [d for d in divisors if want <= d <= min(8 * want, 2**24)]
    return fit[0] if fit else max(d for d in divisors if d <= want)


def _flat_index(x):
    """Row-major position of every entry, built in ``x``'s own layout (no reshape)."""
    index, stride = jnp.zeros(x.shape, jnp.int32), 1
    for axis in reversed(range(x.ndim)):
        index = index + lax.broadcasted_iota(jnp.int32, x.shape, axis) * stride
        stride *= x.shape[axis]
    return index


def _cut(row_ties, take, tie_row):
    """Flat position just past the ``take``-th tied entry of a leaf (0 if ``take <= 0``).

    Args:
      row_ties: number of tied entries in each row of the leaf's ``_rows`` view.
      take: how many tied entries of this leaf to keep, counted from its start.
      tie_row: ``i -> bool[row length]``, the tied entries of row ``i``.
    """
    cum = jnp.cumsum(row_ties, dtype=jnp.int32)
    i = jnp.minimum(jnp.sum(cum < take, dtype=jnp.int32), row_ties.shape[0] - 1)
    rest = take - (cum[i] - row_ties[i])
    row = tie_row(i)
    col = jnp.sum(jnp.cumsum(row, dtype=jnp.int32) < rest, dtype=jnp.int32)
    return jnp.where(take > 0, i * row.shape[0] + col + 1, 0)
