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
_GATHER = 2048  # once at most this many entries lie in the bracket, read them off their rows
_COLLIDE = 64  # ... provided at most this many rows of a leaf hold two or more of them
_PER_ROW = 16  # ... and no row holds more than this many
_ROW = 1024  # shortest row for per-row sums on large inputs (see ``_rows``)
_MAX_ROWS = 32768  # most rows per array for fast row reductions on XLA:CPU
_UNKNOWN = np.int32(2**31 - 1)  # alive count not taken
_MAX_ENTRIES = 2**31 - 2  # int32 counts, and positions one past a leaf's end
_SAFE = 2.0**-100  # float counts need |x| above this: smaller ulps flush to zero on CPU
_FMAX = float(np.finfo(np.float32).max)
# Folded scores: dead ones at -inf, alive NaNs at _LOWEST, the other alive ones clipped to
# [_ABOVE_LOWEST, _FMAX]; thresholds lie strictly inside (above _ABOVE_LOWEST, below _FMAX).
_LOWEST = float(np.nextafter(np.float32(-_FMAX), np.float32(0)))
_ABOVE_LOWEST = float(np.nextafter(np.float32(_LOWEST), np.float32(0)))
_LOWEST_THRESHOLD = float(np.nextafter(np.float32(_ABOVE_LOWEST), np.float32(0)))
_BELOW_FMAX = float(np.nextafter(np.float32(_FMAX), np.float32(0)))
_KEY_NAN = np.uint32(1)  # key of NaN in ``rank_keys``: above dead entries (0), below -inf
_KEY_LO = np.uint32(0x007FFFFF)  # key of -inf: every alive entry but NaN is at or above it
_KEY_INF = np.uint32(0xFF800000)  # key of +inf
_KEY_HI = np.uint32(0xFF800001)  # one past the key of +inf: no entry reaches it


def topk_mask(
    scores: Sequence[jax.Array], alive: Sequence[jax.Array], k: int | jax.Array
) -> list[jax.Array]:
    """Keeps exactly ``clip(k, 0, #alive)`` alive entries with the largest scores.

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
    wide = any(scores[i].dtype == jnp.float64 for i in used)
    s_list = [scores[i].astype(jnp.float64 if wide else jnp.float32) for i in used]
    a_list = [alive[i] for i in used]
    if wide or sum(s.size for s in s_list) <= sort_below:
        for i, m in zip(used, _sorted_mask(s_list, a_list, k), strict=True):
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


# ------------------------------------------------------------------------------ search


def _locate(v_list, sample, k, n_alive):
    """Counting passes narrow the bracket; reading its few entries settles it."""
    b = _search(v_list, sample, k, n_alive)
    return lax.cond(b.fits & (b.c_lo != k), lambda: _finish(v_list, b, k), lambda: b)


class _Bracket(NamedTuple):
    lo: jax.Array  # key with count(lo) = c_lo >= k
    c_lo: jax.Array
    rows_lo: list  # per-leaf, per-row counts at lo (valid once lo was counted)
    hi: jax.Array  # key with count(hi) = c_hi < k
    c_hi: jax.Array
    rows_hi: list
    passes: jax.Array
    probed: jax.Array  # the last pass counted just above lo
    fits: jax.Array  # the entries in [lo, hi) can be read off a few rows (``_finish``)
    stop: jax.Array


def _budgets(v_list):
    """Rows ``_finish`` reads per leaf: twice its share of ``_GATHER``, and 8 more."""
    n_rows = sum(v.shape[0] for v in v_list)
    return [min(v.shape[0], -(-2 * _GATHER * v.shape[0] // n_rows) + 8) for v in v_list]


def _search(v_list, sample, k, n_alive) -> _Bracket:
    """Narrows the bracket around the k-th alive score with float counting passes.

    Each pass aims at one end of the window ``k -+ _GATHER / 4`` (the end of the bracket
    farther from it), so that a few passes leave few entries between the ends. ``n_alive``
    may be ``_UNKNOWN``: the search then proves ``k <= #alive`` by counting.
    """
    sv, m_alive = sample
    frac = sv.size / sum(v.size for v in v_list)  # sampled entries per entry
    budgets = _budgets(v_list)
    kf = k.astype(jnp.float32)

    def sample_at(rank):  # sampled score whose estimated count is ``rank``
        j = jnp.round(rank * frac).astype(jnp.int32) - 1
        return sv[jnp.clip(j, 0, jnp.maximum(m_alive - 1, 0))]

    def guess(b, x_lo, x_hi):
        has_lo, has_hi = b.lo > _KEY_LO, b.hi <= _KEY_INF
        c_lo, c_hi = b.c_lo.astype(jnp.float32), b.c_hi.astype(jnp.float32)
        raise_lo = jnp.where(has_lo, c_lo - kf, jnp.inf) >= kf - c_hi
        target = jnp.where(
            raise_lo,
            jnp.minimum(kf + _GATHER / 4, (kf + c_lo) / 2),
            jnp.maximum(kf - _GATHER / 4, (kf + c_hi) / 2),
        )
        # Both ends: interpolate the count linearly between them.
        w = (target - c_hi) / jnp.maximum(c_lo - c_hi, 1)
        between = x_hi * (1 - w) + x_lo * w
        # With one end known, walk the sample's quantiles from it and overshoot rank k by
        # twice the sample's rank error, so that the next count likely brackets k.
        c_end = jnp.where(has_lo, c_lo, c_hi)
        p_end = jnp.sum(sv >= jnp.where(has_lo, x_lo, x_hi)).astype(jnp.float32)
        spread = 2 * jnp.sqrt(jnp.abs(kf - c_end) / frac) + _GATHER / 4
        walk = sample_at(p_end / frac + jnp.where(has_lo, -spread, spread) + kf - c_end)
        x = jnp.where(has_lo & has_hi, between, jnp.where(has_lo | has_hi, walk, sample_at(kf)))
        # A guess outside the bracket (ties in the sample) moves to the sampled score next
        # to the known end, so that each distinct score costs at most one pass.
        next_up = sv[jnp.maximum(jnp.sum(sv > x_lo) - 1, 0)]
        next_down = sv[jnp.minimum(jnp.sum(sv >= x_hi), sv.shape[0] - 1)]
        near = jnp.where(has_lo, next_up, next_down)
        outside = ~((x > x_lo) & (x < x_hi))
        return jnp.where(outside & (near > x_lo) & (near < x_hi), near, x)

    def step(b):
        x_lo, x_hi = _from_key(b.lo), _from_key(jnp.minimum(b.hi, _KEY_INF))
        # Many entries in the bracket but no sampled score strictly inside: they likely
        # share lo's score, so count just above lo: that settles a tie at lo.
        in_sample = jnp.sum((sv > x_lo) & (sv < x_hi))
        crowded = (in_sample == 0) & (b.c_lo - b.c_hi > _GATHER)
        probe = ~b.probed & (b.lo > _KEY_LO) & crowded
        x = jnp.where(probe, _from_key(b.lo + 1), guess(b, x_lo, x_hi))
        key = _key(_off_denormal(jnp.clip(x, _LOWEST_THRESHOLD, _BELOW_FMAX), x_hi))
        inside = (key > b.lo) & (key < b.hi)
        x = _off_denormal(_from_key(jnp.where(inside, key, b.lo + (b.hi - b.lo) // 2)), x_hi)
        key = _key(x)
        usable = (key > b.lo) & (key < b.hi) & (jnp.abs(x) >= _SAFE) & (jnp.abs(x) < _FMAX)
        usable &= x > _ABOVE_LOWEST

        c, rows = _count_ge(v_list, x)
        up, down = usable & (c >= k), usable & (c < k)
        lo, hi = jnp.where(up, key, b.lo), jnp.where(down, key, b.hi)
        c_lo, c_hi = jnp.where(up, c, b.c_lo), jnp.where(down, c, b.c_hi)
        rows_lo = [jnp.where(up, r, q) for r, q in zip(rows, b.rows_lo, strict=True)]
        rows_hi = [jnp.where(down, r, q) for r, q in zip(rows, b.rows_hi, strict=True)]
        fits = (lo > _KEY_LO) & (c_lo - c_hi <= _GATHER)
        collided = jnp.int32(0)
        for r_lo, r_hi, budget in zip(rows_lo, rows_hi, budgets, strict=True):
            d = r_lo - r_hi
            fits &= (jnp.sum(d > 0) <= budget) & (jnp.max(d) <= _PER_ROW)
            collided += jnp.sum(d > 1, dtype=jnp.int32)
        fits &= collided <= _COLLIDE
        return _Bracket(
            lo=lo,
            c_lo=c_lo,
            rows_lo=rows_lo,
            hi=hi,
            c_hi=c_hi,
            rows_hi=rows_hi,
            passes=b.passes + 1,
            probed=probe,
            fits=fits,
            stop=~usable | (c_lo == k) | (hi - lo <= 1) | fits,
        )

    rows0 = [jnp.zeros(v.shape[0], jnp.int32) for v in v_list]
    init = _Bracket(
        lo=jnp.uint32(_KEY_LO),
        c_lo=n_alive,
        rows_lo=rows0,
        hi=jnp.uint32(_KEY_HI),
        c_hi=jnp.int32(0),
        rows_hi=rows0,
        passes=jnp.int32(0),
        probed=jnp.bool_(False),
        fits=jnp.bool_(False),
        stop=(k == 0) | (k == n_alive),
    )
    return lax.while_loop(lambda b: ~b.stop & (b.passes < _MAX_PASSES), step, init)


def _finish(v_list, b, k):
    """Reads every entry in ``[lo, hi)`` off its rows and settles rank ``k`` exactly.

    Needs ``b.fits``: few rows per leaf hold entries in the bracket, most of them one.
    Returns the bracket around the k-th score: ``c_lo == k``, or ``hi == lo + 1`` with
    per-row counts for the positional tie break. Returns ``b`` unchanged when the k-th
    score is NaN, a clipped end of the range (``_ABOVE_LOWEST`` or ``_FMAX``) or tiny
    (``< _SAFE``): the exact path then tells such scores apart.
    """
    x_lo, x_hi = _from_key(b.lo), _from_key(jnp.minimum(b.hi, _KEY_INF))
    values, rows = [], []  # per leaf: candidate entries and their rows (n: none)
    for v, r_lo, r_hi, budget in zip(v_list, b.rows_lo, b.rows_hi, _budgets(v_list), strict=True):
        n = v.shape[0]
        d = r_lo - r_hi
        picked = jnp.nonzero(d > 0, size=budget, fill_value=n)[0]
        g = v[jnp.minimum(picked, n - 1)]
        g = jnp.where((g >= x_lo) & (g < x_hi), g, -jnp.inf)
        d = jnp.where(picked < n, d[jnp.minimum(picked, n - 1)], 0)
        # A row with one entry in the bracket gives its maximum; the few with more give
        # their largest _PER_ROW (at least all of theirs).
        many = jnp.nonzero(d > 1, size=min(_COLLIDE, budget), fill_value=budget)[0]
        many_rows = jnp.where(many < budget, picked[jnp.minimum(many, budget - 1)], n)
        top = lax.top_k(g[jnp.minimum(many, budget - 1)], min(_PER_ROW, v.shape[1]))[0]
        values.append(
            jnp.concatenate(
                [
                    jnp.where(d == 1, jnp.max(g, axis=-1), -jnp.inf),
                    jnp.where((many < budget)[:, None], top, -jnp.inf).reshape(-1),
                ]
            )
        )
        rows.append(
            jnp.concatenate([jnp.where(d == 1, picked, n), jnp.repeat(many_rows, top.shape[1])])
        )
    flat = jnp.concatenate(values)
    y = lax.top_k(flat, min(_GATHER, flat.size))[0][jnp.maximum(k - b.c_hi - 1, 0)]
    rows_ge, rows_gt = [], []
    for v, r_hi, value, row in zip(v_list, b.rows_hi, values, rows, strict=True):
        n = v.shape[0]
        rows_ge.append(r_hi.at[jnp.where(value >= y, row, n)].add(1, mode="drop"))
        rows_gt.append(r_hi.at[jnp.where(value > y, row, n)].add(1, mode="drop"))
    ge, gt = jnp.sum(flat >= y, dtype=jnp.int32), jnp.sum(flat > y, dtype=jnp.int32)
    # Clipped ends and denormals (flushed to zero on CPU) are told apart only by the
    # exact path.
    ok = (y > _ABOVE_LOWEST) & (y < _FMAX) & (jnp.abs(y) >= _SAFE)
    key = _key(y)
    return b._replace(
        lo=jnp.where(ok, key, b.lo),
        c_lo=jnp.where(ok, b.c_hi + ge, b.c_lo),
        rows_lo=[jnp.where(ok, r, q) for r, q in zip(rows_ge, b.rows_lo, strict=True)],
        hi=jnp.where(ok, key + 1, b.hi),
        c_hi=jnp.where(ok, b.c_hi + gt, b.c_hi),
        rows_hi=[jnp.where(ok, r, q) for r, q in zip(rows_gt, b.rows_hi, strict=True)],
    )


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
        total = total + rows[-1].sum(dtype=jnp.int32)
    return total, rows


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
        take = take - row_ties.sum(dtype=jnp.int32)
        # Only the leaf where the cut falls needs positions; the others keep all of their
        # tied entries or none.
        masks.append(
            lax.cond(
                (cut > 0) & (cut < s.size),
                lambda s=s, a=a, cut=cut: (
                    a & ((s >= x_hi) | ((s >= x_lo) & (_flat_index(s) < cut)))
                ),
                lambda s=s, a=a, cut=cut: a & (s >= jnp.where(cut > 0, x_lo, x_hi)),
            )
        )
    return masks


def _sorted_mask(s_list, a_list, k):
    """Small (or float64) inputs: a stable sort by descending ``rank_keys``."""
    keys = jnp.concatenate(
        [rank_keys(s, a).reshape(-1) for s, a in zip(s_list, a_list, strict=True)]
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
    keys = [rank_keys(s, a) for s, a in zip(s_list, a_list, strict=True)]
    # The search counts every alive entry at _KEY_LO (the key of -inf), NaNs included;
    # their key is lower, so a bracket that never rose searches from there.
    lo = jnp.where(lo == _KEY_LO, jnp.uint32(_KEY_NAN), lo)

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
        take = take - row_ties.sum(dtype=jnp.int32)
        masks.append((kk > t) | ((kk == t) & (_flat_index(kk) < cut)))
    return masks


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


# ----------------------------------------------------------------------------- helpers


def rank_keys(scores: jax.Array, alive: jax.Array | None = None) -> jax.Array:
    """Unsigned keys in the top-k order: dead 0 < NaN 1 < -inf < finite < +inf.

    uint32 for float32 scores, uint64 for float64 (x64 mode); the order of the other
    scores is the float order, with ``-0.0`` and ``+0.0`` tied. ``alive=None``: all alive.
    """
    key = _key(scores)
    key = jnp.where(jnp.isnan(scores), jnp.asarray(_KEY_NAN, key.dtype), key)
    return key if alive is None else jnp.where(alive, key, jnp.zeros((), key.dtype))


def _key(s):
    """Maps float32 (float64) to uint32 (uint64) in the same order; ``-0.0`` and ``+0.0``
    share a key. NaNs get keys beyond the infinities (``rank_keys`` moves them to 1)."""
    bits = jnp.finfo(s.dtype).bits
    u = {32: np.uint32, 64: np.uint64}[bits]
    sign = u(1 << (bits - 1))
    b = lax.bitcast_convert_type(s, u)
    b = jnp.where(b == sign, u(0), b)
    return jnp.where(b >> (bits - 1) == 1, ~b, b | sign)


def _fold_alive(s):
    """An alive float32 score as the search sees it: NaN at _LOWEST, the rest clipped."""
    return jnp.where(jnp.isnan(s), _LOWEST, jnp.clip(s, _ABOVE_LOWEST, _FMAX))


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
