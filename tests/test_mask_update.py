"""The engine's mask-update hook (``mask_update=MaskUpdate(...)``), method-independent.

Checked here: an update that keeps the mask leaves the run bit for bit what it is with a
fixed mask; the dense gradient is computed at update steps only (counted through a host
callback in the loss); the update's inputs (step, index, key, mask, gradient) are what the
contract says; a weight pruned by one update and regrown by a later one comes back at
exactly 0 with its Adam moments at 0; pruned weights stay exactly 0 under momentum and
decoupled weight decay; seeds get their own keys; bad input fails with one line.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxticket
from jaxticket.train import MaskUpdate, UpdateOutput, cross_entropy
from jaxticket.train.engine import make_engine

DATA = jaxticket.data.load("digits")
MODEL = jaxticket.models.get(
    "mlp", input_shape=DATA.input_shape, num_classes=DATA.num_classes, hidden=(16,)
)
PARAMS, STATE = MODEL.init(jax.random.key(0))
DENSE = jaxticket.dense_mask(PARAMS)
SPARSE = jaxticket.random_pruner("layerwise")(PARAMS, DENSE, sparsity=0.5, key=jax.random.key(1))
RUN = dict(steps=30, batch_size=32, eval_every=10)
_is_none = lambda x: x is None  # noqa: E731


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def keep_mask(inputs):
    return inputs.mask


def swap_by_grad(inputs):
    """Per leaf: drop the 4 smallest alive |w|, regrow the 4 largest dead |grad|."""

    def leaf(m, p, g):
        if m is None:
            return None
        alive = jnp.sum(m, dtype=jnp.int32)
        keep = jaxticket.topk_mask([jnp.abs(p)], [m], alive - 4)[0]
        return keep | jaxticket.topk_mask([jnp.abs(g)], [~keep], 4)[0]

    return jax.tree.map(leaf, inputs.mask, inputs.params, inputs.grad, is_leaf=_is_none)


def swap_at_random(inputs):
    """Per leaf: drop 4 alive weights and regrow 4 dead ones, both at random (SET-like)."""
    leaves, treedef = jax.tree.flatten(inputs.mask, is_leaf=_is_none)
    keys = jax.random.split(inputs.key, 2 * len(leaves))
    out = []
    for i, m in enumerate(leaves):
        if m is None:
            out.append(None)
            continue
        alive = jnp.sum(m, dtype=jnp.int32)
        drop_scores = jax.random.uniform(keys[2 * i], m.shape)
        keep = jaxticket.topk_mask([drop_scores], [m], alive - 4)[0]
        grow_scores = jax.random.uniform(keys[2 * i + 1], m.shape)
        out.append(keep | jaxticket.topk_mask([grow_scores], [~m], 4)[0])
    return jax.tree.unflatten(treedef, out)


def test_keeping_the_mask_is_bitwise_the_fixed_mask_run():
    fixed = jaxticket.train.train(
        MODEL, DATA, optax.adam(1e-2), key=jax.random.key(2), mask=SPARSE, **RUN
    )
    update = MaskUpdate(keep_mask, steps=(0, 5, 7, 20))
    hooked = jaxticket.train.train(
        MODEL, DATA, optax.adam(1e-2), key=jax.random.key(2), mask=SPARSE, mask_update=update, **RUN
    )
    assert _same(fixed.params, hooked.params)
    assert _same(fixed.opt_state, hooked.opt_state)
    assert set(hooked.history) == set(fixed.history) | {"sparsity"}
    assert all(np.array_equal(fixed.history[k], hooked.history[k]) for k in fixed.history)
    np.testing.assert_array_equal(hooked.history["sparsity"], [0.5] * 4)
    updates = jax.device_get(hooked.mask_updates)
    np.testing.assert_array_equal(updates["step"], [0, 5, 7, 20])
    np.testing.assert_array_equal(updates["grown"], 0)
    np.testing.assert_array_equal(updates["pruned"], 0)
    assert fixed.mask_updates is None


def _counting_loss(counter: list, logits, labels):
    jax.debug.callback(lambda: counter.append(1))
    return cross_entropy(logits, labels)


def test_dense_gradient_is_computed_at_update_steps_only():
    calls = {}
    for needs_grad in (False, True):
        counter: list = []
        update = MaskUpdate(keep_mask, steps=(3, 11, 19), needs_grad=needs_grad)
        result = jaxticket.train.train(
            MODEL,
            DATA,
            optax.sgd(0.1),
            key=jax.random.key(3),
            mask=SPARSE,
            mask_update=update,
            loss_fn=functools.partial(_counting_loss, counter),
            **RUN,
        )
        jax.block_until_ready(result.params)
        jax.effects_barrier()
        calls[needs_grad] = len(counter)
    # Same steps and evaluations; the only extra loss evaluations are the 3 gradients.
    assert calls[True] - calls[False] == 3


def test_update_inputs_follow_the_contract():
    seen = []

    def fn(inputs):
        def host(step, index, key_data, grad_leaf, mask_leaf, param_leaf):
            seen.append((int(step), int(index), key_data, grad_leaf, mask_leaf, param_leaf))

        jax.debug.callback(
            host,
            inputs.step,
            inputs.index,
            jax.random.key_data(inputs.key),
            inputs.grad["dense1"]["kernel"],
            inputs.mask["dense1"]["kernel"],
            inputs.params["dense1"]["kernel"],
        )
        assert inputs.mask["dense1"]["bias"] is None and inputs.grad["dense1"]["bias"] is not None
        return inputs.mask

    update = MaskUpdate(fn, steps=(0, 10, 25), needs_grad=True)
    jax.block_until_ready(
        jaxticket.train.train(
            MODEL,
            DATA,
            optax.adam(1e-2),
            key=jax.random.key(4),
            mask=SPARSE,
            mask_update=update,
            **RUN,
        ).params
    )
    jax.effects_barrier()
    assert [(s, i) for s, i, *_ in seen] == [(0, 0), (10, 1), (25, 2)]
    keys = [k.tobytes() for _, _, k, *_ in seen]
    assert len(set(keys)) == 3  # a fresh key per update
    for _, _, _, grad, mask, param in seen:
        assert np.all(param[~mask] == 0)  # params arrive masked
        assert np.count_nonzero(grad[~mask]) > 0  # the gradient is dense: pruned entries too
        assert grad.shape == param.shape == mask.shape


def test_regrown_weight_restarts_at_zero_with_zero_moments():
    # Update 1 (step 6) prunes 5 alive dense1 kernel entries (central pixels: the digits'
    # borders are blank and get no gradient);
    # update 2 (step 12) regrows them. Right after update 2 they must be exactly 0 and
    # their Adam moments 0 (they were pruned, not zero, before: moments decay, not reset).
    alive0 = np.asarray(SPARSE["dense1"]["kernel"])
    flat = np.flatnonzero(alive0[28:36].ravel())[:5] + 28 * alive0.shape[1]  # central pixels
    chosen = np.zeros(alive0.size, bool)
    chosen[flat] = True
    chosen = jnp.asarray(chosen.reshape(alive0.shape))

    def fn(inputs):
        m = inputs.mask
        k = m["dense1"]["kernel"]
        k = jnp.where(inputs.index == 0, k & ~chosen, k | chosen)
        return {**m, "dense1": {**m["dense1"], "kernel": k}}

    update = MaskUpdate(fn, steps=(6, 12))
    opt = optax.adam(1e-2)
    engine = make_engine(MODEL, opt, mask_update=update, **RUN)
    carry = engine.start(PARAMS, STATE, SPARSE, DATA)
    keys = jax.random.key(5), jax.random.key(6)
    rows = engine.rows
    upto = [i for i, r in enumerate(rows) if r[4] == 2][0]  # the row ending with update 2
    before, _ = engine.run(carry, rows[:upto], SPARSE, *keys, DATA)
    after, _ = engine.run(before, rows[upto : upto + 1], SPARSE, *keys, DATA)

    def adam_moments(state):
        inner = state.opt_state.inner_state[0]
        return inner.mu["dense1"]["kernel"], inner.nu["dense1"]["kernel"]

    mu_b, _ = adam_moments(before.state)  # after update 1 pruned them
    assert np.count_nonzero(np.asarray(mu_b)[np.asarray(chosen)]) >= 3  # stale state existed
    mu, nu = adam_moments(after.state)
    kernel = np.asarray(after.state.params["dense1"]["kernel"])
    c = np.asarray(chosen)
    assert (
        np.all(kernel[c] == 0) and np.all(np.asarray(mu)[c] == 0) and np.all(np.asarray(nu)[c] == 0)
    )
    assert np.asarray(jaxticket.get_mask(after.state.opt_state)["dense1"]["kernel"])[c].all()


@pytest.mark.parametrize(
    "optimizer",
    [optax.adamw(1e-2, weight_decay=0.1)],
    ids=["adamw"],  # momentum and decoupled decay both move pruned weights if unguarded
)
def test_pruned_weights_stay_exactly_zero_through_updates(optimizer):
    update = MaskUpdate(swap_by_grad, steps=(4, 9, 14, 19, 24), needs_grad=True)
    result = jaxticket.train.train(
        MODEL,
        DATA,
        optimizer,
        key=jax.random.key(7),
        mask=SPARSE,
        mask_update=update,
        snapshot_steps=(9, 19),
        **RUN,
    )
    mask = jaxticket.get_mask(result.opt_state)
    for m, p in zip(jax.tree.leaves(mask), _prunable(result.params, mask), strict=True):
        assert np.all(np.asarray(p)[~np.asarray(m)] == 0)
    alive = jax.device_get(result.mask_updates["alive"])
    for path, counts in alive.items():
        start = int(jaxticket.alive_by_leaf(SPARSE)[path])
        np.testing.assert_array_equal(counts, start)  # swaps keep the count
    assert np.all(np.asarray(result.mask_updates["grown"]) > 0)


def _prunable(params, mask):
    return [
        p
        for m, p in zip(
            jax.tree.leaves(mask, is_leaf=_is_none), jax.tree.leaves(params), strict=True
        )
        if m is not None
    ]


def test_seeds_draw_their_own_update_keys_and_runs_repeat_bitwise():
    update = MaskUpdate(swap_at_random, steps=(5, 15, 25))
    keys = jax.random.split(jax.random.key(8), 2)

    def run():
        return jaxticket.train.train_seeds(
            MODEL,
            DATA,
            optax.adam(1e-2),
            init_keys=jnp.stack([keys[0], keys[0]]),
            data_keys=keys,
            mask=SPARSE,
            mask_update=update,
            **RUN,
        )

    first, second = run(), run()
    assert _same(first, second)
    m = jaxticket.get_mask(first.opt_state)["dense1"]["kernel"]
    assert not np.array_equal(m[0], m[1])
    np.testing.assert_array_equal(first.history["sparsity"], 0.5)


def test_dense_start_and_update_output_params():
    # mask=None starts from the dense mask; an UpdateOutput may replace the params (with
    # a zero learning rate nothing else moves them).
    def halve(inputs):
        params = jax.tree.map(lambda p: p * 0.5, inputs.params)
        return UpdateOutput(inputs.mask, params=params)

    update = MaskUpdate(halve, steps=(29,))
    result = jaxticket.train.train(
        MODEL,
        DATA,
        optax.sgd(0.0),
        key=jax.random.key(9),
        params=PARAMS,
        mask=None,
        mask_update=update,
        **RUN,
    )
    assert float(result.history["sparsity"][-1]) == 0.0
    np.testing.assert_array_equal(
        result.params["dense1"]["kernel"], np.asarray(PARAMS["dense1"]["kernel"]) * 0.5
    )


BAD = [
    (
        "update step after training",
        dict(mask_update=MaskUpdate(keep_mask, steps=(10, 30))),
        ValueError,
        "update step 30 is outside the run [0, 30)",
    ),
    (
        "update step before a rewound start",
        dict(mask_update=MaskUpdate(keep_mask, steps=(2,)), start_step=5, steps=25),
        ValueError,
        "update step 2 is outside the run [5, 30)",
    ),
    (
        "not a MaskUpdate",
        dict(mask_update=keep_mask),
        TypeError,
        "must be a jaxticket.train.MaskUpdate",
    ),
    (
        "wrong mask shape from fn",
        dict(
            mask_update=MaskUpdate(
                lambda i: {
                    **i.mask,
                    "output": {**i.mask["output"], "kernel": jnp.ones((3,), bool)},
                },
                steps=(5,),
            )
        ),
        ValueError,
        "output/kernel",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_mask_updates_fail_with_one_line(case):
    _, kwargs, error, fragment = case
    run = {**RUN, **kwargs}
    with pytest.raises(error) as info:
        if "start_step" in run:  # a rewound run: the engine itself checks
            make_engine(MODEL, optax.sgd(0.1), **run)
        jaxticket.train.train(
            MODEL, DATA, optax.sgd(0.1), key=jax.random.key(0), mask=SPARSE, **run
        )
    assert fragment in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(steps=(3, 3)), "strictly increasing"),
        (dict(steps=(-1,)), ">= 0"),
        (dict(steps=(1.5,)), "must be ints"),
        (dict(steps=(1,), needs_grad=1), "needs_grad must be a bool"),
    ],
)
def test_bad_mask_update_fields(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        MaskUpdate(keep_mask, **kwargs)


def _drop_none(count: int, inputs):
    del count
    return inputs.mask


def test_equal_mask_updates_share_one_compiled_program():
    from compile_probes import count_compiles

    def run(update):
        return jaxticket.train.train(
            MODEL,
            DATA,
            optax.sgd(0.1),
            key=jax.random.key(1),
            mask=SPARSE,
            mask_update=update,
            **RUN,
        )

    jax.block_until_ready(run(MaskUpdate(functools.partial(_drop_none, 3), steps=(5, 15))).params)
    with count_compiles() as compiles:
        again = run(MaskUpdate(functools.partial(_drop_none, 3), steps=(5, 15)))
        jax.block_until_ready(again.params)
    assert compiles[0] == 0
    # The cache key tells equal updates from others (other steps, other partial args).
    from jaxticket.train.cache_key import ByValue

    def key(arg, steps):
        return ByValue(MaskUpdate(functools.partial(_drop_none, arg), steps=steps))

    assert key(3, (5, 15)) == key(3, (5, 15))
    assert key(3, (5, 16)) != key(3, (5, 15)) and key(4, (5, 15)) != key(3, (5, 15))
