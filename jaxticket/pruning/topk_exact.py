"""The top-k order as unsigned integer keys, and the top-k paths that rank by them.

``rank_keys`` maps scores (with ``alive``) to keys whose order is the top-k order.
``_sorted_mask`` stable-sorts them (small or float64 inputs); ``_exact_mask`` bisects the
k-th key, the fallback of the float search that is exact for any input.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxticket.pruning.topk_rows import _cut, _flat_index, _rows

_KEY_NAN = np.uint32(1)  # key of NaN in ``rank_keys``: above dead entries (0), below -inf
_KEY_LO = np.uint32(0x007FFFFF)  # key of -inf: every alive entry but NaN is at or above it
_KEY_INF = np.uint32(0xFF800000)  # key of +inf
_KEY_HI = np.uint32(0xFF800001)  # one past the key of +inf: no entry reaches it
_RADIX_DIGITS = ((21, 11), (10, 11), (0, 10))  # (shift, width) of each radix pass


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


def _from_key(key):
    b = jnp.where(key >> 31 == 1, key & np.uint32(0x7FFFFFFF), ~key)
    return lax.bitcast_convert_type(b, jnp.float32)


def _flat_keys(s_list, a_list):
    """Every array's ``rank_keys``, flattened and concatenated in order."""
    return jnp.concatenate(
        [rank_keys(s, a).reshape(-1) for s, a in zip(s_list, a_list, strict=True)]
    )


def _split_like(flat, s_list):
    """``flat`` cut back into arrays shaped like ``s_list``."""
    masks, start = [], 0
    for s in s_list:
        masks.append(flat[start : start + s.size].reshape(s.shape))
        start += s.size
    return masks


def _sorted_mask(s_list, a_list, k):
    """Small (or float64) inputs: a stable sort by descending ``rank_keys``."""
    keys = _flat_keys(s_list, a_list)
    k = jnp.clip(jnp.asarray(k, jnp.int32), 0, jnp.sum(keys > 0, dtype=jnp.int32))
    index = jnp.arange(keys.size, dtype=jnp.int32)
    _, order = lax.sort((~keys, index), num_keys=1, is_stable=True)
    keep = jnp.zeros(keys.size, bool).at[order].set(index < k)
    return _split_like(keep, s_list)


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


def _radix_mask(s_list, a_list, k):
    """float32 inputs up to ``_SORT_BELOW`` entries: the k-th largest ``rank_keys`` key by
    radix selection, then the positional tie cut; the same mask as the stable sort.

    Three passes over the key's bits from the top (11, 11, then 10 bits): each
    histograms those bits over the entries that match the bits chosen so far (a
    scatter-add into at most 2048 bins) and picks the bits of the k-th largest key. A
    fourth pass keeps the keys above it and, of the keys equal to it, the first ``need``
    by position. No sort: on CPU a stable sort of a 30,000-entry layer costs about ten
    times as much.
    """
    keys = _flat_keys(s_list, a_list)
    need = jnp.clip(jnp.asarray(k, jnp.int32), 0, jnp.sum(keys > 0, dtype=jnp.int32))
    prefix = jnp.zeros((), jnp.uint32)
    for shift, width in _RADIX_DIGITS:
        high = np.uint32((0xFFFFFFFF << (shift + width)) & 0xFFFFFFFF)  # bits chosen so far
        match = (keys & high) == prefix
        digit = ((keys >> shift) & np.uint32((1 << width) - 1)).astype(jnp.int32)
        hist = jnp.zeros(1 << width, jnp.int32).at[digit].add(match.astype(jnp.int32))
        at_or_above = jnp.cumsum(hist[::-1])[::-1]  # matching entries with digit >= d
        d = jnp.sum(at_or_above >= need, dtype=jnp.int32) - 1  # the largest such d
        need = need - (at_or_above[d] - hist[d])  # minus those strictly above it
        prefix = prefix | (d.astype(jnp.uint32) << shift)
    tied = keys == prefix
    keep = (keys > prefix) | (tied & (jnp.cumsum(tied, dtype=jnp.int32) <= need))
    return _split_like(keep, s_list)
