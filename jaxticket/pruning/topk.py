"""Exact global top-k over a list of arrays, among alive entries only, without a sort.

``topk_mask`` keeps exactly ``k`` alive entries: those with the largest scores, ties
broken by position in the concatenated flat order (array 0 flattened, then array 1, ...).

How: the result is ``alive & (score >= x)`` plus, when several entries share the k-th
score, the first few of them by position. So the work is a search for the k-th score,
keeping a bracket ``lo <= x < hi`` whose counts are exact:

1. one pass folds ``alive`` into a float copy of the scores (dead entries at -inf, NaN
   just above them), laid out in rows;
2. a strided sample gives the first guesses (and an estimate of the alive count: the
   exact count costs a pass, taken only when ``k`` may reach it);
3. counting passes narrow the bracket, each aimed at one end of the window
   ``k -+ _GATHER / 4``: interpolating the counts between the two ends, or walking the
   sample's quantiles while one end is missing. Every pass also gives per-row counts;
4. once at most ``_GATHER`` entries lie in the bracket, the per-row counts at its ends
   name the few rows that hold them; reading those rows settles the k-th score and its
   ties without another pass (a tie too large for that is settled by counting just above
   it);
5. per-row counts at the final ends locate tied entries, so the positional tie break
   reads one row per array.

Each pass is a reduction built from float ``max/min/sub/mul`` only:
``min(max(v, xp), x) - xp`` is 0 below ``x`` and exactly one ulp at or above it (``xp``
is the float just below ``x``), and sums of ulps are exact. XLA's CPU backend runs such
reductions several times faster than compares or integer ops; accelerators run them at
memory speed. This counting is exact for ``|x| >= _SAFE``; when the k-th score is in the
denormal range, or the search runs out of passes, an integer-key path (bisection over
the order-preserving 32-bit key) takes over: exact for any input, only slower.

Non-finite scores have one place in the order on every path: NaN ranks below every other
alive score, -inf below every finite score and +inf above every finite score. float64
scores (x64 mode) take a stable sort of 64-bit keys instead of the search, so they are
ordered at full float64 precision; float16 and bfloat16 scores are upcast to float32,
which is exact.

This module checks the inputs and picks the path. The float search and the mask at its
bracket live in ``topk_search``; the integer keys (``rank_keys``), the sort path and the
integer-key path in ``topk_exact``; the row layout and positional tie cut in ``topk_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxticket.pruning.topk_exact import (
    _KEY_INF,
    _KEY_LO,
    _exact_mask,
    _radix_mask,
    _sorted_mask,
    rank_keys,
)
from jaxticket.pruning.topk_rows import _ROW, _rows
from jaxticket.pruning.topk_search import (
    _UNKNOWN,
    _count_alive,
    _fast_mask,
    _fold_alive,
    _locate,
    _sorted_sample,
)

__all__ = ["rank_keys", "topk_mask"]

# Up to this many entries in all, a radix selection of the integer keys (float32) or a
# stable sort (float64) is faster to run and to compile than the float search.
_SORT_BELOW = 65536
_MAX_ENTRIES = 2**31 - 2  # int32 counts, and positions one past a leaf's end


def topk_mask(
    scores: Sequence[jax.Array], alive: Sequence[jax.Array], k: int | jax.Array
) -> list[jax.Array]:
    """Keeps exactly ``k`` alive entries with the largest scores.

    Ties are broken by the position in the concatenated flat order: array 0 flattened,
    then array 1, and so on; the earlier entry wins. Works under ``jit`` with ``k``
    traced (one compiled function serves every ``k``) and under ``vmap``.

    Non-finite scores are ranked, not refused (under ``jit`` they cannot be): NaN ranks
    below every other alive score (NaN entries are pruned first and kept last, by
    position), -inf below every finite score, +inf above every finite score. Use
    ``count_nonfinite`` to count them.

    Args:
      scores: float arrays, one per leaf (``-0.0`` and ``+0.0`` tie). float64 (x64 mode)
        is ordered exactly at float64 precision, by a stable sort of 64-bit keys (slower
        than the float32 search on large inputs); float16 and bfloat16 are upcast to
        float32 exactly. With any float64 leaf, all leaves are compared as float64.
      alive: bool arrays of the same shapes; entries not alive are never kept.
      k: how many entries to keep, a Python int or an integer scalar. A concrete ``k``
        must be in ``[0, #alive]`` (a ValueError otherwise); a traced one cannot be
        checked and is clipped to that range.

    Returns:
      A list of bool arrays shaped like ``scores``.

    Example::

      masks = topk_mask([w1_scores, w2_scores], [m1, m2], k=1000)
    """
    _check_k(k, alive)
    return _topk_mask(scores, alive, k, _SORT_BELOW)


def _topk_mask(scores, alive, k, sort_below):
    scores, alive = _check(scores, alive)
    out = [jnp.zeros(s.shape, bool) for s in scores]
    used = [i for i, s in enumerate(scores) if s.size]
    if not used:
        return out
    wide = any(scores[i].dtype == jnp.float64 for i in used)
    s_list = [scores[i].astype(jnp.float64 if wide else jnp.float32) for i in used]
    a_list = [alive[i] for i in used]
    if wide or sum(s.size for s in s_list) <= sort_below:
        small = _sorted_mask if wide else _radix_mask
        for i, m in zip(used, small(s_list, a_list, k), strict=True):
            out[i] = m
        return out
    # One pass folds ``alive`` into the scores (dead -> -inf, NaN -> _LOWEST) so that every
    # later pass reads a single float array; clipping the others to [_ABOVE_LOWEST, _FMAX]
    # keeps float counting exact.
    # It also lays the scores out as rows here, where reshaping is free: float reductions
    # over a reshape that splits the last axis would copy the array on every pass.
    # Shorter rows for small inputs keep the bracket's entries in different rows.
    total = sum(s.size for s in s_list)
    row = int(np.clip(total // 16384, 64, _ROW))
    # The barrier makes XLA write the folded copy once: fused into a single consumer, the
    # select would run inside that reduction, several times slower.
    v_list = lax.optimization_barrier(
        [
            _rows(jnp.where(a, _fold_alive(s), -jnp.inf), row)
            for s, a in zip(s_list, a_list, strict=True)
        ]
    )
    k = jnp.maximum(jnp.asarray(k, jnp.int32), 0)
    sample = _sorted_sample(v_list)
    # The alive count costs a pass; it only matters when k might reach it (k is then
    # clipped to it). Far below the sample's estimate, the search itself proves k <= #alive
    # (it counts k or more alive scores); when it does not, the exact path recounts.
    estimate = sample[1] * (total / sample[0].size)
    near = k >= estimate - total / 32 - 1
    n_alive = lax.cond(near, lambda: _count_alive(v_list), lambda: jnp.int32(_UNKNOWN))
    k = jnp.minimum(k, n_alive)

    b = _locate(v_list, sample, k, n_alive)
    trivial = (k == 0) | (k == n_alive)
    hit = b.c_lo == k
    tied = (b.hi - b.lo == 1) & (b.lo > _KEY_LO) & (b.hi <= _KEY_INF)

    def exact():  # k must now be clipped to the alive count: take it unless taken above
        n = lax.cond(near, lambda: n_alive, lambda: _count_alive(v_list))
        k_n = jnp.minimum(k, n)
        return lax.cond(
            k_n == n,
            lambda: [jnp.asarray(a) for a in a_list],
            lambda: _exact_mask(s_list, a_list, k_n, b.lo, b.hi, b.c_hi),
        )

    def fast():  # k = #alive keeps every alive entry, NaNs too (no threshold passes them)
        return lax.cond(
            k == n_alive,
            lambda: [jnp.asarray(a) for a in a_list],
            lambda: _fast_mask(s_list, a_list, v_list, k, b, hit | trivial),
        )

    masks = lax.cond(trivial | hit | tied, fast, exact)
    for i, m in zip(used, masks, strict=True):
        out[i] = m
    return out


def _check_k(k, alive) -> None:
    """Refuses a concrete ``k`` that is not an integer in ``[0, #alive]`` (eager calls only)."""
    if isinstance(k, jax.core.Tracer):
        return
    if isinstance(k, bool) or not jnp.issubdtype(jnp.result_type(k), jnp.integer):
        raise TypeError(f"topk_mask: k must be an integer, got {k!r}")
    if jnp.ndim(k) != 0:
        raise ValueError(f"topk_mask: k must be a scalar, got shape {jnp.shape(k)}")
    k = int(k)
    if k < 0:
        raise ValueError(f"topk_mask: k must be >= 0, got {k}")
    leaves = list(alive)
    concrete = (np.ndarray, np.bool_, jax.Array)
    if not all(isinstance(a, concrete) and not isinstance(a, jax.core.Tracer) for a in leaves):
        return
    n_alive = sum(int(np.count_nonzero(np.asarray(a))) for a in leaves)
    if k > n_alive:
        raise ValueError(f"topk_mask: k={k} but only {n_alive} entries are alive")


def _check(scores, alive):
    scores, alive = list(scores), list(alive)
    if len(scores) != len(alive):
        raise ValueError(f"got {len(scores)} score arrays but {len(alive)} alive arrays")
    for i, (s, a) in enumerate(zip(scores, alive, strict=True)):
        s, a = jnp.asarray(s), jnp.asarray(a)
        if not jnp.issubdtype(s.dtype, jnp.floating) or jnp.finfo(s.dtype).bits > 64:
            raise TypeError(
                f"scores[{i}]: expected a float array (float16 to float64), got {s.dtype}"
            )
        if a.dtype != jnp.bool_:
            raise TypeError(f"alive[{i}]: expected a bool array, got dtype {a.dtype}")
        if a.shape != s.shape:
            raise ValueError(f"alive[{i}]: shape {a.shape} differs from scores shape {s.shape}")
        scores[i], alive[i] = s, a
    total = sum(s.size for s in scores)
    if total > _MAX_ENTRIES:  # counts and positions are int32
        raise ValueError(
            f"scores: {total} entries in all; at most {_MAX_ENTRIES} (2**31 - 2) are supported"
        )
    return scores, alive
