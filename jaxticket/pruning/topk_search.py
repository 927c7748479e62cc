"""The float path of ``topk_mask``: counting passes bracket the k-th score, then the mask.

``_locate`` narrows a ``_Bracket`` with exact float counting passes (``_search``) and
reads its last few entries off their rows (``_finish``); ``_fast_mask`` keeps the alive
entries at or above the bracket, cutting ties by position. See ``topk`` for the algorithm.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxticket.pruning.topk_exact import _KEY_HI, _KEY_INF, _KEY_LO, _from_key, _key
from jaxticket.pruning.topk_rows import _cut, _flat_index

_SAMPLE = 65536  # sample size for the first guess; sorting it costs ~1/10 of a pass at 100M
_MAX_PASSES = 12  # counting passes before the fast search hands over to the exact path
_GATHER = 2048  # once at most this many entries lie in the bracket, read them off their rows
_COLLIDE = 64  # ... provided at most this many rows of a leaf hold two or more of them
_PER_ROW = 16  # ... and no row holds more than this many
_UNKNOWN = np.int32(2**31 - 1)  # alive count not taken
_SAFE = 2.0**-100  # float counts need |x| above this: smaller ulps flush to zero on CPU
_FMAX = float(np.finfo(np.float32).max)
# Folded scores: dead ones at -inf, alive NaNs at _LOWEST, the other alive ones clipped to
# [_ABOVE_LOWEST, _FMAX]; thresholds lie strictly inside (above _ABOVE_LOWEST, below _FMAX).
_LOWEST = float(np.nextafter(np.float32(-_FMAX), np.float32(0)))
_ABOVE_LOWEST = float(np.nextafter(np.float32(_LOWEST), np.float32(0)))
_LOWEST_THRESHOLD = float(np.nextafter(np.float32(_ABOVE_LOWEST), np.float32(0)))
_BELOW_FMAX = float(np.nextafter(np.float32(_FMAX), np.float32(0)))


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


def _count_alive(v_list):
    """Exact number of alive entries in the folded scores (all at or above ``_LOWEST``)."""
    return _count_ge(v_list, jnp.float32(_LOWEST))[0]


def _per_leaf(scalars, v):
    # Adds a zero that depends on this leaf, so XLA does not share one broadcast of each
    # scalar between leaves of equal shape (it would materialize it at full size).
    z = jnp.minimum(jnp.abs(v.reshape(-1)[0]), 0.0)
    return tuple(jnp.asarray(c, jnp.float32) + z for c in scalars)


def _fold_alive(s):
    """An alive float32 score as the search sees it: NaN at _LOWEST, the rest clipped."""
    return jnp.where(jnp.isnan(s), _LOWEST, jnp.clip(s, _ABOVE_LOWEST, _FMAX))


def _off_denormal(x, x_hi):
    # Float counting is exact only for |x| >= _SAFE: step to the safe value that stays
    # below the upper end of the bracket.
    return jnp.where(jnp.abs(x) < _SAFE, jnp.where(x_hi > _SAFE, _SAFE, -_SAFE), x)


# ------------------------------------------------------------------- mask at the bracket


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
