"""The data order: a keyed permutation of [0, n) evaluated per index (jaxticket.train.order)."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.train import order

_perm = jax.jit(
    lambda key, n_pad, n: order.permute(order.epoch_keys(key, jnp.arange(1))[0], n_pad, n),
    static_argnums=2,
)


def _full(seed: int, n: int) -> np.ndarray:
    return np.asarray(_perm(jax.random.key(seed), jnp.arange(n), n))


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5000), seed=st.integers(0, 2**31 - 1))
def test_every_index_appears_exactly_once(n, seed):
    p = _full(seed, n)
    np.testing.assert_array_equal(np.sort(p), np.arange(n))


def test_same_key_same_order_and_keys_differ():
    a, b, c = _full(0, 1000), _full(0, 1000), _full(1, 1000)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.99
    assert (a != np.arange(1000)).mean() > 0.99  # not the identity


def test_a_batch_equals_the_slice_of_the_full_order():
    key = jax.random.key(3)
    full = _full(3, 777)
    part = np.asarray(_perm(key, jnp.arange(100, 160), 777))
    np.testing.assert_array_equal(part, full[100:160])


def test_positions_are_close_to_uniform():
    # Over 4000 keys, each of the 10 values lands in each of the 10 positions ~400 times;
    # a chi-square test against uniform (81 degrees of freedom) at p = 0.001 allows 123.
    counts = np.zeros((10, 10))
    perms = jax.vmap(
        lambda k: order.permute(order.epoch_keys(k, jnp.arange(1))[0], jnp.arange(10), 10)
    )(jax.random.split(jax.random.key(0), 4000))
    for pos in range(10):
        counts[pos] = np.bincount(np.asarray(perms[:, pos]), minlength=10)
    chi2 = ((counts - 400) ** 2 / 400).sum()
    assert chi2 < 123, chi2


def test_vmap_over_epochs_gives_different_orders():
    keys = order.epoch_keys(jax.random.key(0), jnp.arange(3))
    perms = [np.asarray(order.permute(keys[e], jnp.arange(50), 50)) for e in range(3)]
    assert not np.array_equal(perms[0], perms[1]) and not np.array_equal(perms[1], perms[2])
