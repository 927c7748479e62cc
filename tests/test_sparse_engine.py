"""jaxticket.sparse methods trained through the engine (``mask_update=method.mask_update``).

Tiny runs (MLP with one hidden layer of 16 on digits, 50 steps, updates every 10), each
compiled once per module (module-scope fixtures):

* RigL over 2 vmapped seeds (``train_seeds``): alive counts per leaf unchanged at every
  update, pruned weights exactly 0 at every snapshot / evaluation step and at the end,
  same keys -> bitwise the same result;
* GMP from a dense start (``train``): alive counts after each update equal the Zhu–Gupta
  target counts (numpy formula, the pruner's rounding rule), ``history["sparsity"]``;
* SET stepped row by row (``make_engine``): right after an update the regrown weights
  are exactly 0 and their Adam moments are 0;
* sparse-to-sparse GraNet (``train``): the sparsity after each update is the schedule's
  (exact count), regeneration moves weights, pruned weights are 0 at the end.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from compile_probes import count_compiles

import jaxticket as jt
from jaxticket import sparse
from jaxticket.train.engine import make_engine

DATA = jt.data.load("digits")
MODEL = jt.models.get(
    "mlp", input_shape=DATA.input_shape, num_classes=DATA.num_classes, hidden=(16,)
)
PARAMS, STATE = MODEL.init(jax.random.key(0))
RUN = dict(steps=50, batch_size=32, eval_every=10)
EVALS = (10, 20, 30, 40)


def flat(tree):
    return {p: np.asarray(x) for p, x in jt.masks.leaves_with_paths(tree) if x is not None}


def same(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


# --------------------------------------------------------------------------------------
# RigL, 2 seeds

RIGL = sparse.RigL(0.8, every=10)


def run_rigl():
    masks = [RIGL.initial_mask(PARAMS, jax.random.key(s)) for s in (1, 2)]
    mask = jax.tree.map(lambda *m: jnp.stack(m), *masks)
    result = jt.train_seeds(
        MODEL,
        DATA,
        optax.adam(1e-2),
        init_keys=jax.random.split(jax.random.key(3), 2),
        data_keys=jax.random.split(jax.random.key(4), 2),
        mask=mask,
        mask_per_seed=True,
        snapshot_steps=EVALS,
        mask_update=RIGL.mask_update(RUN["steps"]),
        **RUN,
    )
    return masks, result


@pytest.fixture(scope="module")
def rigl():
    return run_rigl()


def test_rigl_keeps_alive_counts_per_leaf(rigl):
    masks, result = rigl
    updates = result.mask_updates
    np.testing.assert_array_equal(updates["step"][0], [10, 20, 30])  # t < 0.75·50
    for seed, mask in enumerate(masks):
        for path, m in flat(mask).items():
            np.testing.assert_array_equal(updates["alive"][path][seed], [m.sum()] * 3)
        want = 1 - sum(m.sum() for m in flat(mask).values()) / sum(
            m.size for m in flat(mask).values()
        )
        np.testing.assert_allclose(result.history["sparsity"][seed], want, atol=1e-6)
    assert np.all(np.asarray(updates["grown"]) == np.asarray(updates["pruned"]))
    assert np.any(np.asarray(updates["grown"]) > 0)  # the mask did move


def test_rigl_pruned_weights_exactly_zero(rigl):
    _, result = rigl
    final = flat(jt.get_mask(result.opt_state))
    params = flat(result.params)
    for path, m in final.items():
        assert np.all(params[path][~m] == 0), path
    alive = result.mask_updates["alive"]
    for (snap_params, _), step in zip(result.snapshots, EVALS, strict=True):
        snap = flat(snap_params)
        for path, m in final.items():
            nonzero = np.count_nonzero(snap[path].reshape(2, -1), axis=1)
            # at most the alive count (regrown weights are 0 at the update step)
            assert np.all(nonzero <= np.asarray(alive[path])[:, 0]), (step, path)
            if step > 30:  # after the last update the mask is the final one
                assert np.all(snap[path][~m] == 0), (step, path)


def test_rigl_same_keys_bitwise(rigl):
    _, result = rigl
    with count_compiles() as compiles:
        _, again = run_rigl()  # an equal RigL hits the engine's compile cache
    assert compiles[0] == 0
    assert same(result, again)
    # the seeds' masks differ (their own keys and gradients)
    final = flat(jt.get_mask(result.opt_state))
    assert any(not np.array_equal(m[0], m[1]) for m in final.values())


# --------------------------------------------------------------------------------------
# GMP, dense start


GMP = sparse.GMP(0.8, start=10, end=40, every=10)


@pytest.fixture(scope="module")
def gmp():
    return jt.train.train(
        MODEL,
        DATA,
        optax.adam(1e-2),
        key=jax.random.key(7),
        params=PARAMS,
        model_state=STATE,
        mask_update=GMP.mask_update(RUN["steps"]),
        **RUN,
    )


def test_gmp_alive_counts_follow_zhu_gupta(gmp):
    updates = gmp.mask_updates
    np.testing.assert_array_equal(updates["step"], [10, 20, 30, 40])
    sizes = {p: m.size for p, m in flat(jt.dense_mask(PARAMS)).items()}
    for i, t in enumerate((10, 20, 30, 40)):
        s = 0.8 * (1 - (1 - (t - 10) / 30) ** 3)
        big = round(s * 1e6)
        for path, n in sizes.items():
            pruned = min((big * n + 500_000) // 1_000_000, n - 1)
            assert int(updates["alive"][path][i]) == n - pruned, (t, path)
    total = sum(sizes.values())
    final = sum(int(updates["alive"][p][-1]) for p in sizes)
    np.testing.assert_allclose(gmp.history["sparsity"][-1], 1 - final / total, atol=1e-6)
    np.testing.assert_allclose(gmp.history["sparsity"][-1], 0.8, atol=2 / total)


def test_gmp_pruned_weights_exactly_zero_at_the_end(gmp):
    mask = flat(jt.get_mask(gmp.opt_state))
    params = flat(gmp.params)
    for path, m in mask.items():
        assert np.all(params[path][~m] == 0), path
    assert int(sum(np.asarray(gmp.mask_updates["grown"]))) == 0


# --------------------------------------------------------------------------------------
# SET, row by row: regrown weights and moments right after an update


def test_set_regrown_weights_and_moments_are_zero_right_after_update():
    method = sparse.SET(0.7, every=10, zeta=0.5)
    mask = method.initial_mask(PARAMS, jax.random.key(8))
    engine = make_engine(
        MODEL, optax.adam(1e-2), mask_update=method.mask_update(40), **{**RUN, "steps": 40}
    )
    carry = engine.start(PARAMS, STATE, mask, DATA)
    keys = jax.random.key(9), jax.random.key(10)
    rows = engine.rows
    at = [i for i, r in enumerate(rows) if r[4] == 2][0]  # the row ending with update 2
    before, _ = engine.run(carry, rows[:at], mask, *keys, DATA)
    after, _ = engine.run(before, rows[at : at + 1], mask, *keys, DATA)
    m_b, m_a = flat(jt.get_mask(before.state.opt_state)), flat(jt.get_mask(after.state.opt_state))
    inner = after.state.opt_state.inner_state[0]
    mu, nu, params = flat(inner.mu), flat(inner.nu), flat(after.state.params)
    grown_any = 0
    for path in m_b:
        assert m_a[path].sum() == m_b[path].sum(), path
        grown = m_a[path] & ~m_b[path]
        grown_any += grown.sum()
        assert np.all(params[path][grown] == 0), path
        assert np.all(mu[path][grown] == 0) and np.all(nu[path][grown] == 0), path
        assert np.all(params[path][~m_a[path]] == 0), path
        n_drop = math.floor(0.5 * m_b[path].sum())
        assert grown.sum() <= n_drop, path
    assert grown_any > 0


# --------------------------------------------------------------------------------------
# GraNet, sparse to sparse


def test_granet_sparsity_after_each_update_is_the_schedule():
    method = sparse.GraNet(0.9, initial_sparsity=0.5, start=10, end=30, every=10)
    mask = method.initial_mask(PARAMS, jax.random.key(11))
    method.check_start(mask)
    result = jt.train.train(
        MODEL,
        DATA,
        optax.adam(1e-2),
        key=jax.random.key(12),
        params=PARAMS,
        model_state=STATE,
        mask=mask,
        mask_update=method.mask_update(40),
        **{**RUN, "steps": 40},
    )
    updates = result.mask_updates
    total = sum(m.size for m in flat(mask).values())
    for i, t in enumerate((10, 20, 30)):
        s = 0.9 + (0.5 - 0.9) * (1 - (t - 10) / 20) ** 3
        alive = sum(int(updates["alive"][p][i]) for p in flat(mask))
        want = total - (round(s * 1e6) * total + 500_000) // 1_000_000
        assert alive == min(want, sum(int(m.sum()) for m in flat(mask).values())), t
    assert int(updates["grown"][0]) > 0  # neuroregeneration moved weights
    final = flat(jt.get_mask(result.opt_state))
    params = flat(result.params)
    assert all(np.all(params[p][~m] == 0) for p, m in final.items())
