"""Data order without a sort: a keyed pseudo-random permutation of ``[0, n)`` evaluated at
any index, in O(1) memory.

Each epoch's order is a bijection ``i -> perm(i)`` built from a balanced Feistel network on
``2h`` bits (``4**h >= n``) whose round function is a 32-bit integer hash of the right half
and a round key; indices that land outside ``[0, n)`` are sent through the network again
("cycle walking"), which keeps the map a bijection of ``[0, n)``. The same construction is
behind random-access index shuffles in data loaders (e.g. TensorFlow's
``index_shuffle``). A step computes only its own batch's indices, so a training run never
materializes or sorts an epoch permutation (XLA:CPU sorts a few thousand keys in about as
long as a small network's training step).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ROUNDS = 6


def epoch_keys(key: jax.Array, epochs: jax.Array) -> jax.Array:
    """``uint32[len(epochs), ROUNDS]`` round keys: epoch ``e``'s order is keyed by
    ``fold_in(key, e)``."""
    return jax.vmap(lambda e: jax.random.bits(jax.random.fold_in(key, e), (ROUNDS,), jnp.uint32))(
        epochs
    )


def permute(round_keys: jax.Array, index: jax.Array, n: int) -> jax.Array:
    """``perm(index)`` for the permutation of ``[0, n)`` given by ``round_keys``
    (``uint32[ROUNDS]``). ``index`` is an int array with values in ``[0, n)``."""
    if n < 1:
        raise ValueError(f"cannot permute an empty range (n = {n})")
    half = max(1, (int(n - 1).bit_length() + 1) // 2)
    low = jnp.uint32((1 << half) - 1)
    x = jnp.asarray(index).astype(jnp.uint32)
    if 4**half == n:
        return _feistel(round_keys, x, half, low).astype(jnp.int32)

    # Cycle walking, written so that the network is traced once (it dominates compile
    # time): apply it on the first trip and then to every index still outside [0, n).
    def walk(carry):
        y, first = carry
        return jnp.where(first | (y >= n), _feistel(round_keys, y, half, low), y), False

    y, _ = jax.lax.while_loop(lambda c: c[1] | jnp.any(c[0] >= n), walk, (x, True))
    return y.astype(jnp.int32)


def _feistel(round_keys, x, half: int, low):
    left, right = x >> half, x & low
    for r in range(ROUNDS):
        left, right = right, left ^ (_mix(right ^ round_keys[r]) & low)
    return (left << half) | right


def _mix(v):
    # A 32-bit avalanche hash (xorshift-multiply; constants from Wellons' "lowbias32").
    v = (v ^ (v >> 16)) * jnp.uint32(0x7FEB352D)
    v = (v ^ (v >> 15)) * jnp.uint32(0x846CA68B)
    return v ^ (v >> 16)
