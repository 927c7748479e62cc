"""Exact global top-k over a list of arrays, among alive entries only, without a sort.

``topk_mask`` keeps exactly ``k`` alive entries: those with the largest scores, ties
broken by position in the concatenated flat order (array 0 flattened, then array 1, ...).

How: the result is ``alive & (score >= x)`` plus, when several entries share the k-th
score, the first few of them by position. So the work is a search for the k-th score,
keeping a bracket ``lo <= x < hi`` whose counts are exact:

1. one pass folds ``alive`` into a float copy of the scores (dead entries at -inf);
2. a strided sample gives the first guesses, then safeguarded secant steps (Illinois
   rule) on the exact counts narrow the bracket;
3. once rank ``k`` is at most ``_EXTRACT`` entries below ``hi``, one pass takes the
   largest score below ``hi`` in every row; those name the k-th score unless two share a
   row, and counting at the named score (and just above it, for ties) settles it;
4. per-row counts at the two ends of the final bracket locate tied entries, so the
   positional tie break reads one row per array.

Each pass is a reduction built from float ``max/min/sub/mul`` only:
``min(max(v, xp), x) - xp`` is 0 below ``x`` and exactly one ulp at or above it (``xp``
is the float just below ``x``), and sums of ulps are exact. XLA's CPU backend runs such
reductions several times faster than compares or integer ops; accelerators run them at
memory speed. This counting is exact for ``|x| >= _SAFE``; when the k-th score is in the
denormal range, or the search runs out of passes, an integer-key path (bisection over
the order-preserving 32-bit key) takes over: exact for any input, only slower.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_SORT_BELOW = 65536  # up to this many entries in all, a plain sort is faster to run and compile
_SAMPLE = 65536  # sample size for the first guess; sorting it costs ~1/10 of a pass at 100M
_MAX_PASSES = 12  # counting passes before the fast search hands over to the exact path
_EXTRACT = 512  # extract once rank k is at most this far below the upper end of the bracket
_ROW = 1024  # shortest row for per-row sums on large inputs (see ``_rows``)
_MAX_ROWS = 32768  # most rows per array for fast row reductions on XLA:CPU
_UNKNOWN = np.int32(2**31 - 1)  # alive count not taken
_SAFE = 2.0**-100  # float counts need |x| above this: smaller ulps flush to zero on CPU
_FMAX = float(np.finfo(np.float32).max)
# Folded scores live in [_LOWEST, _FMAX] (dead ones at -inf); thresholds strictly inside.
_LOWEST = float(np.nextafter(np.float32(-_FMAX), np.float32(0)))
_ABOVE_LOWEST = float(np.nextafter(np.float32(_LOWEST), np.float32(0)))
_BELOW_FMAX = float(np.nextafter(np.float32(_FMAX), np.float32(0)))
_KEY_LO = np.uint32(0x007FFFFF)  # key of -inf: every alive entry is at or above it
_KEY_INF = np.uint32(0xFF800000)  # key of +inf
_KEY_HI = np.uint32(0xFF800001)  # one past the key of +inf: no entry reaches it


def topk_mask(
    scores: Sequence[jax.Array], alive: Sequence[jax.Array], k: int | jax.Array
) -> list[jax.Array]:
    """Keeps exactly ``clip(k, 0, #alive)`` alive entries with the largest scores.

    Ties are broken by the position in the concatenated flat order: array 0 flattened,
    then array 1, and so on; the earlier entry wins. Works under ``jit`` with ``k``
    traced (one compiled function serves every ``k``) and under ``vmap``.

    Args:
      scores: float arrays of at most 32 bits, one per leaf, without NaNs (``-0.0`` and
        ``+0.0`` tie).
      alive: bool arrays of the same shapes; entries not alive are never kept.
      k: how many entries to keep, a Python int or an integer scalar.

    Returns:
      A list of bool arrays shaped like ``scores``.

    Example::

      masks = topk_mask([w1_scores, w2_scores], [m1, m2], k=1000)
    """
    return _topk_mask(scores, alive, k, _SORT_BELOW)


def _topk_mask(scores, alive, k, sort_below):
    scores, alive = _check(scores, alive)
    out = [jnp.zeros(s.shape, bool) for s in scores]
    used = [i for i, s in enumerate(scores) if s.size]
    if not used:
        return out
    s_list = [scores[i].astype(jnp.float32) for i in used]
    a_list = [alive[i] for i in used]
    if sum(s.size for s in s_list) <= sort_below:
        for i, m in zip(used, _sorted_mask(s_list, a_list, k), strict=True):
            out[i] = m
        return out
    # One pass folds ``alive`` into the scores (dead -> -inf) so that every later pass
    # reads a single float array; clipping to [_LOWEST, _FMAX] keeps float counting exact.
    # It also lays the scores out as rows here, where reshaping is free: float reductions
    # over a reshape that splits the last axis would copy the array on every pass.
    # Shorter rows for small inputs keep enough rows for the extraction step.
    total = sum(s.size for s in s_list)
    row = int(np.clip(total // 16384, 64, _ROW))
    v_list = [
        _rows(jnp.where(a, jnp.clip(s, _LOWEST, _FMAX), -jnp.inf), row)
        for s, a in zip(s_list, a_list, strict=True)
    ]
    k = jnp.maximum(jnp.asarray(k, jnp.int32), 0)
    sample = _sorted_sample(v_list)
    # The alive count costs a pass; it only matters when k might reach it (k is then
    # clipped to it). Far below the sample's estimate, the search itself proves k <= #alive
    # (it counts k or more alive scores); when it does not, the exact path recounts.
    estimate = sample[1] * (total / sample[0].size)
    near = k >= estimate - total / 32 - 1
    n_alive = lax.cond(near, lambda: _count_alive(v_list), lambda: jnp.int32(_UNKNOWN))
    k = jnp.minimum(k, n_alive)

    b = _search(v_list, sample, k, n_alive)
    trivial = (k == 0) | (k == n_alive)
    hit = b.c_lo == k
    tied = (b.hi - b.lo == 1) & (b.lo > _KEY_LO) & (b.hi <= _KEY_INF)

    def exact():
        n = _count_alive(v_list)
        k_n = jnp.minimum(k, n)
        return lax.cond(
            k_n == n,
            lambda: [a & (s == s) for s, a in zip(s_list, a_list, strict=True)],
            lambda: _exact_mask(s_list, a_list, k_n, b.lo, b.hi, b.c_hi),
        )

    masks = lax.cond(
        trivial | hit | tied,
        lambda: _fast_mask(s_list, a_list, v_list, k, b, hit | trivial),
        exact,
    )
    for i, m in zip(used, masks, strict=True):
        out[i] = m
    return out


# ------------------------------------------------------------------------------ search


class _Bracket(NamedTuple):
    lo: jax.Array  # key with count(lo) = c_lo >= k
    c_lo: jax.Array
    rows_lo: list  # per-leaf, per-row counts at lo (valid once lo was counted)
    hi: jax.Array  # key with count(hi) = c_hi < k
    c_hi: jax.Array
    rows_hi: list
    f_lo: jax.Array  # secant weights: count - target, halved by the Illinois rule
    f_hi: jax.Array
    side: jax.Array  # +1 / -1: which end the last pass moved
    passes: jax.Array
    top: jax.Array  # scores extracted below an earlier hi, descending (-inf: none yet)
    top_rows: jax.Array  # the row of each, numbered across leaves
    need_top: jax.Array  # rank k sat this far below that hi: top[need_top - 1] >= k-th
    c_top: jax.Array  # count at that hi, and its per-leaf, per-row counts
    rows_top: list
    probed: jax.Array  # the last pass counted just above lo
    stop: jax.Array


def _search(v_list, sample, k, n_alive) -> _Bracket:
    """Narrows the bracket around the k-th alive score with float counting passes.

    ``n_alive`` may be ``_UNKNOWN``: the search then proves ``k <= #alive`` by counting.
    """
    sv, m_alive = sample
    target = jnp.maximum(k - _EXTRACT // 2, 1).astype(jnp.float32)  # aim just above rank k
    frac = sv.size / sum(v.size for v in v_list)  # sampled entries per entry

    def sample_at(rank):  # sampled score whose estimated count is ``rank``
        j = jnp.round(rank * frac).astype(jnp.int32) - 1
        return sv[jnp.clip(j, 0, jnp.maximum(m_alive - 1, 0))]

    def guess(b, x_lo, x_hi):
        has_lo, has_hi = b.lo > _KEY_LO, b.hi <= _KEY_INF
        t = b.f_lo / (b.f_lo - b.f_hi)
        secant = x_lo * (1 - t) + x_hi * t
        # With one end known, walk the sample's quantiles from it and overshoot rank k by
        # twice the sample's rank error, so that the next count likely brackets k.
        c_end = jnp.where(has_lo, b.c_lo, b.c_hi).astype(jnp.float32)
        p_end = jnp.sum(sv >= jnp.where(has_lo, x_lo, x_hi)).astype(jnp.float32)
        spread = 2 * jnp.sqrt(jnp.abs(target - c_end) / frac) + _EXTRACT
        walk = sample_at(p_end / frac + jnp.where(has_lo, -spread, spread) + target - c_end)
        x = jnp.where(has_lo & has_hi, secant, jnp.where(has_lo | has_hi, walk, sample_at(target)))
        # A guess outside the bracket (ties in the sample) moves to the sampled score next
        # to the known end, so that each distinct score costs at most one pass.
        next_up = sv[jnp.maximum(jnp.sum(sv > x_lo) - 1, 0)]
        next_down = sv[jnp.minimum(jnp.sum(sv >= x_hi), sv.shape[0] - 1)]
        near = jnp.where(has_lo, next_up, next_down)
        outside = ~((x > x_lo) & (x < x_hi))
        return jnp.where(outside & (near > x_lo) & (near < x_hi), near, x)

    def step(b):
        x_lo, x_hi = _from_key(b.lo), _from_key(jnp.minimum(b.hi, _KEY_INF))
        need = k - b.c_hi

        def from_top(top, need_top):
            # The extracted scores name the k-th one unless rows hid some (two in a row)
            # or it is tied; both show as count(lo) - k extra entries once lo is one of
            # them. Step up that many, but at least to the next extracted score above lo.
            extra = jnp.where(b.lo > _KEY_LO, b.c_lo - k, 0)
            extra = jnp.where(extra < need_top, extra, 0)
            n_above = jnp.sum(top > x_lo)
            i = jnp.clip(need_top - 1 - extra, 0, jnp.maximum(n_above - 1, 0))
            x = top[i]
            real = i < jnp.sum(top > _LOWEST)  # fewer rows than need_top: no name for k
            return x, real & (_key(x) > b.lo) & (_key(x) < b.hi)

        x, inside = from_top(b.top, b.need_top)
        has_lo = b.lo > _KEY_LO
        # Many entries in the bracket but no sampled score strictly inside: they likely
        # share lo's score. Or lo is an extracted score and none is left above it. Either
        # way, count just above lo: that settles a tie at lo.
        in_sample = jnp.sum((sv > x_lo) & (sv < x_hi))
        crowded = (in_sample == 0) & (b.c_lo - b.c_hi > 2 * _EXTRACT)
        lo_top = jnp.any(b.top == x_lo) & ~inside
        lo_tied = jnp.sum(b.top == x_lo) >= 2  # lo's score shows up in two rows: a tie
        probe = ~b.probed & (b.lo > _KEY_LO) & (crowded | lo_top | lo_tied)
        # Extraction needs a lower end to sink the entries above hi under (or no hi).
        scale = _sink_scale(jnp.where(has_lo, x_lo, -jnp.inf), x_hi)
        extract = ~inside & ~probe & (need <= _EXTRACT) & jnp.isfinite(scale)
        top, top_rows, need_top, c_top, rows_top = lax.cond(
            extract,
            lambda: (*_top_below(v_list, x_hi, scale), need, b.c_hi, b.rows_hi),
            lambda: (b.top, b.top_rows, b.need_top, b.c_top, b.rows_top),
        )
        x, inside = from_top(top, need_top)
        x = jnp.where(inside, x, guess(b, x_lo, x_hi))
        x = jnp.where(probe, _from_key(b.lo + 1), x)
        key = _key(_off_denormal(jnp.clip(x, _ABOVE_LOWEST, _BELOW_FMAX), x_hi))
        inside = (key > b.lo) & (key < b.hi)
        x = _off_denormal(_from_key(jnp.where(inside, key, b.lo + (b.hi - b.lo) // 2)), x_hi)
        key = _key(x)
        usable = (key > b.lo) & (key < b.hi) & (jnp.abs(x) >= _SAFE) & (jnp.abs(x) < _FMAX)
        usable &= x > _LOWEST

        c, rows = _count_ge(v_list, x)
        f = c.astype(jnp.float32) - target + 0.5
        up, down = usable & (c >= k), usable & (c < k)
        lo, hi = jnp.where(up, key, b.lo), jnp.where(down, key, b.hi)
        c_lo, c_hi = jnp.where(up, c, b.c_lo), jnp.where(down, c, b.c_hi)
        rows_lo = [jnp.where(up, r, q) for r, q in zip(rows, b.rows_lo, strict=True)]
        rows_hi = [jnp.where(down, r, q) for r, q in zip(rows, b.rows_hi, strict=True)]
        # If every entry in [x, extraction's hi) was extracted, the extracted scores hold
        # rank k and its ties: read the final bracket off them, without another pass.
        complete = up & (need_top > 0) & (c - c_top == jnp.sum(top >= x))
        y = top[jnp.maximum(need_top - 1, 0)]
        done = _listed(v_list, top, top_rows, y, c_top, rows_top)
        lo, hi = jnp.where(complete, _key(y), lo), jnp.where(complete, _key(y) + 1, hi)
        c_lo, c_hi = jnp.where(complete, done[0], c_lo), jnp.where(complete, done[2], c_hi)
        rows_lo = [jnp.where(complete, r, q) for r, q in zip(done[1], rows_lo, strict=True)]
        rows_hi = [jnp.where(complete, r, q) for r, q in zip(done[3], rows_hi, strict=True)]
        return _Bracket(
            lo=lo,
            c_lo=c_lo,
            rows_lo=rows_lo,
            hi=hi,
            c_hi=c_hi,
            rows_hi=rows_hi,
            # Illinois rule: an end kept twice in a row gets half its weight, so the secant
            # does not creep towards k from one side.
            f_lo=jnp.where(up, f, jnp.where(down & (b.side < 0), b.f_lo / 2, b.f_lo)),
            f_hi=jnp.where(down, f, jnp.where(up & (b.side > 0), b.f_hi / 2, b.f_hi)),
            side=jnp.where(up, 1, -1),
            passes=b.passes + 1,
            top=top,
            top_rows=top_rows,
            need_top=need_top,
            c_top=c_top,
            rows_top=rows_top,
            probed=probe,
            stop=~usable | (c_lo == k) | (hi - lo <= 1),
        )

    rows0 = [jnp.zeros(v.shape[0], jnp.int32) for v in v_list]
    init = _Bracket(
        lo=jnp.uint32(_KEY_LO),
        c_lo=n_alive,
        rows_lo=rows0,
        hi=jnp.uint32(_KEY_HI),
        c_hi=jnp.int32(0),
        rows_hi=rows0,
        f_lo=n_alive - target + 0.5,
        f_hi=0.5 - target,
        side=jnp.int32(0),
        passes=jnp.int32(0),
        top=jnp.full(_EXTRACT, -jnp.inf),
        top_rows=jnp.zeros(_EXTRACT, jnp.int32),
        need_top=jnp.int32(0),
        c_top=jnp.int32(0),
        rows_top=rows0,
        probed=jnp.bool_(False),
        stop=(k == 0) | (k == n_alive),
    )
    return lax.while_loop(lambda b: ~b.stop & (b.passes < _MAX_PASSES), step, init)


def _sorted_sample(v_list):
    """Evenly spaced sample of the folded scores in descending order, and its alive count."""
    total = sum(v.size for v in v_list)
    parts = []
    for v in v_list:
        m = max(1, min(v.size, round(_SAMPLE * v.size / total)))
        parts.append(v.reshape(-1)[np.linspace(0, v.size - 1, m).astype(np.int64)])
    # Sorted as order-preserving uint32 keys: XLA:CPU sorts those ~6x faster than floats
    # (no NaN-aware comparator); -0.0 comes back as +0.0, which compares equal.
    sample = _from_key(~jnp.sort(~_key(jnp.concatenate(parts))))
    return sample, jnp.sum(sample > -jnp.inf, dtype=jnp.int32)


def _count_ge(v_list, x):
    """Exact count of folded scores (as rows) ``>= x`` (``_SAFE <= |x|``, ``_LOWEST <= x < _FMAX``).

    Returns the total and per-leaf, per-row counts.
    """
    xp = jnp.nextafter(x, -jnp.inf)
    total, rows = jnp.int32(0), []
    for v in v_list:
        xi, xpi = _per_leaf((x, xp), v)
        ulps = jnp.sum(jnp.minimum(jnp.maximum(v, xpi), xi) - xpi, axis=-1)
        rows.append((ulps / (xi - xpi)).astype(jnp.int32))
        total = total + rows[-1].sum()
    return total, rows


def _top_below(v_list, hi, scale):
    """The ``_EXTRACT`` largest per-row maxima of the folded scores below ``hi``, descending.

    Returns them with their rows (numbered across leaves). Unless two of them share a row,
    they are the largest alive scores below ``hi``. Entries at or above ``hi`` sink by
    ``(max(v, hip) - hip) * scale``, which is 0 below ``hi`` and, with ``scale`` from
    ``_sink_scale``, puts them below the lower end of the bracket: values under it may be
    such stand-ins.
    """
    hip = jnp.nextafter(hi, -jnp.inf)
    tops, rows, start = [], [], 0
    for v in v_list:
        hipi, scalei = _per_leaf((hip, scale), v)
        row_max = jnp.max(jnp.minimum(v, hipi) - (jnp.maximum(v, hipi) - hipi) * scalei, axis=-1)
        t, i = lax.top_k(row_max, min(_EXTRACT, v.shape[0]))
        tops.append(t)
        rows.append(i + start)
        start += v.shape[0]
    pad = jnp.full(_EXTRACT, -jnp.inf)
    top, where = lax.top_k(jnp.concatenate([*tops, pad]), _EXTRACT)
    top_rows = jnp.concatenate([*rows, jnp.zeros(_EXTRACT, jnp.int32)])[where]
    return jnp.maximum(top, jnp.float32(_LOWEST)), top_rows


def _sink_scale(lo, hi):
    """Scale for ``_top_below``: ``(hi - hip) * scale >= 4 * (hip - lo)``; inf if none fits."""
    hip = jnp.nextafter(hi, -jnp.inf)
    return jnp.where(jnp.isinf(hi), 0.0, 4 * (hip - lo) / (hi - hip))


def _listed(v_list, top, top_rows, y, c_top, rows_top):
    """Counts at ``y`` and just above it, when every entry in ``[y, top's hi)`` was extracted.

    Returns ``(count >= y, per-row counts >= y, count > y, per-row counts > y)``.
    """
    ge, gt = top >= y, top > y
    rows_ge, rows_gt, start = [], [], 0
    for v, r in zip(v_list, rows_top, strict=True):
        n = v.shape[0]
        local = top_rows - start
        index = jnp.where((local >= 0) & (local < n), local, n)  # n: dropped
        rows_ge.append(r.at[jnp.where(ge, index, n)].add(1, mode="drop"))
        rows_gt.append(r.at[jnp.where(gt, index, n)].add(1, mode="drop"))
        start += n
    return c_top + jnp.sum(ge), rows_ge, c_top + jnp.sum(gt), rows_gt


# ------------------------------------------------------------------------------- masks


def _fast_mask(s_list, a_list, v_list, k, b, no_ties):
    """``alive & (s >= x)`` at the bracket, keeping only the first tied entries if needed.

    Reads the scores in their own layout: writing the mask through the row view would
    cost a relayout.
    """
    x_lo = jnp.where(b.lo > _KEY_LO, _from_key(b.lo), -jnp.inf)
    x_hi = jnp.where(no_ties, x_lo, _from_key(jnp.minimum(b.hi, _KEY_INF)))
    # k = 0 keeps nothing: every comparison with NaN is false. (Inside the pass, not as a
    # separate `& (k > 0)` pass over the finished masks.)
    x_lo, x_hi = (jnp.where(k > 0, x, jnp.nan) for x in (x_lo, x_hi))
    take, masks = k - b.c_hi, []
    for s, a, v, r_lo, r_hi in zip(s_list, a_list, v_list, b.rows_lo, b.rows_hi, strict=True):
        row_ties = r_lo - r_hi

        def tie_row(i, v=v):
            return (v[i] >= x_lo) & ~(v[i] >= x_hi)

        cut = jnp.where(no_ties, s.size, _cut(row_ties, take, tie_row))
        take = take - row_ties.sum()
        masks.append(a & ((s >= x_hi) | ((s >= x_lo) & (_flat_index(s) < cut))))
    return masks


def _sorted_mask(s_list, a_list, k):
    """Small inputs: a stable sort by descending key (dead entries get the lowest key)."""
    keys = jnp.concatenate(
        [
            jnp.where(a, _key(s), jnp.uint32(0)).reshape(-1)
            for s, a in zip(s_list, a_list, strict=True)
        ]
    )
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, jnp.sum(keys > 0, dtype=jnp.int32))
    index = jnp.arange(keys.size, dtype=jnp.int32)
    _, order = lax.sort((~keys, index), num_keys=1, is_stable=True)
    keep = jnp.zeros(keys.size, bool).at[order].set(index < k)
    masks, start = [], 0
    for s in s_list:
        masks.append(keep[start : start + s.size].reshape(s.shape))
        start += s.size
    return masks


def _exact_mask(s_list, a_list, k, lo, hi, c_hi):
    """Integer-key top-k: bisect the k-th key in ``[lo, hi)``, then cut ties by position."""
    keys = [jnp.where(a, _key(s), jnp.uint32(0)) for s, a in zip(s_list, a_list, strict=True)]

    def body(st):
        lo, hi, c_hi, first = st
        # Probing just above lo first settles a tie at the fast search's last lower end.
        mid = jnp.where(first, lo + 1, lo + (hi - lo) // 2)
        c = sum(jnp.sum(kk >= mid, dtype=jnp.int32) for kk in keys)
        up = c >= k
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid), jnp.where(up, c_hi, c), False

    t, _, c_hi, _ = lax.while_loop(lambda st: st[1] - st[0] > 1, body, (lo, hi, c_hi, True))
    take, masks = k - c_hi, []
    for kk in keys:
        row_ties = jnp.sum(_rows(kk) == t, axis=-1, dtype=jnp.int32)
        cut = _cut(row_ties, take, lambda i, kk=kk: _rows(kk)[i] == t)
        take = take - row_ties.sum()
        masks.append((kk > t) | ((kk == t) & (_flat_index(kk) < cut)))
    return masks


def _cut(row_ties, take, tie_row):
    """Flat position just past the ``take``-th tied entry of a leaf (0 if ``take <= 0``).

    Args:
      row_ties: number of tied entries in each row of the leaf's ``_rows`` view.
      take: how many tied entries of this leaf to keep, counted from its start.
      tie_row: ``i -> bool[row length]``, the tied entries of row ``i``.
    """
    cum = jnp.cumsum(row_ties)
    i = jnp.minimum(jnp.sum(cum < take), row_ties.shape[0] - 1)
    rest = take - (cum[i] - row_ties[i])
    row = tie_row(i)
    col = jnp.sum(jnp.cumsum(row.astype(jnp.int32)) < rest)
    return jnp.where(take > 0, i * row.shape[0] + col + 1, 0)


# ----------------------------------------------------------------------------- helpers


def _key(s):
    """Maps float32 to uint32 in the same order; ``-0.0`` and ``+0.0`` share a key."""
    b = lax.bitcast_convert_type(s, jnp.uint32)
    b = jnp.where(b == np.uint32(0x80000000), np.uint32(0), b)
    return jnp.where(b >> 31 == 1, ~b, b | np.uint32(0x80000000))


def _from_key(key):
    b = jnp.where(key >> 31 == 1, key & np.uint32(0x7FFFFFFF), ~key)
    return lax.bitcast_convert_type(b, jnp.float32)


def _off_denormal(x, x_hi):
    # Float counting is exact only for |x| >= _SAFE: step to the safe value that stays
    # below the upper end of the bracket.
    return jnp.where(jnp.abs(x) < _SAFE, jnp.where(x_hi > _SAFE, _SAFE, -_SAFE), x)


def _count_alive(v_list):
    """Exact number of alive entries in the folded scores (all at or above ``_LOWEST``)."""
    return _count_ge(v_list, jnp.float32(_LOWEST))[0]


def _rows(x, shortest=_ROW):
    """2-D view of ``x`` whose rows suit XLA:CPU's row reductions.

    Those run at full speed with rows of about 800 entries or more and at most
    ``_MAX_ROWS`` rows per array, and several times slower otherwise. Rows are the shortest
    divisor of ``x.size`` that is at least ``shortest`` and keeps within ``_MAX_ROWS``
    (at most 2**24 long, so that float counts per row stay exact); sizes without one take
    the longest divisor up to ``shortest``.
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
    fit = [d for d in divisors if want <= d <= 2**24]
    return fit[0] if fit else max(d for d in divisors if d <= want)


def _flat_index(x):
    """Row-major position of every entry, built in ``x``'s own layout (no reshape)."""
    index, stride = jnp.zeros(x.shape, jnp.int32), 1
    for axis in reversed(range(x.ndim)):
        index = index + lax.broadcasted_iota(jnp.int32, x.shape, axis) * stride
        stride *= x.shape[axis]
    return index


def _per_leaf(scalars, v):
    # Adds a zero that depends on this leaf, so XLA does not share one broadcast of each
    # scalar between leaves of equal shape (it would materialize it at full size).
    z = jnp.minimum(jnp.abs(v.reshape(-1)[0]), 0.0)
    return tuple(jnp.asarray(c, jnp.float32) + z for c in scalars)


def _check(scores, alive):
    scores, alive = list(scores), list(alive)
    if len(scores) != len(alive):
        raise ValueError(f"got {len(scores)} score arrays but {len(alive)} alive arrays")
    for i, (s, a) in enumerate(zip(scores, alive, strict=True)):
        s, a = jnp.asarray(s), jnp.asarray(a)
        if not jnp.issubdtype(s.dtype, jnp.floating) or jnp.finfo(s.dtype).bits > 32:
            raise TypeError(
                f"scores[{i}]: expected a float array of at most 32 bits, got {s.dtype}"
            )
        if a.dtype != jnp.bool_:
            raise TypeError(f"alive[{i}]: expected a bool array, got dtype {a.dtype}")
        if a.shape != s.shape:
            raise ValueError(f"alive[{i}]: shape {a.shape} differs from scores shape {s.shape}")
        if s.size >= 2**31:
            raise ValueError(f"scores[{i}]: {s.size} entries; at most 2**31 - 1 are supported")
        scores[i], alive[i] = s, a
    return scores, alive
