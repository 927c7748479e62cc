"""Tests for jaxticket.optim: pruned weights stay exactly zero under any inner optimizer."""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxticket
from jaxticket import optim
from jaxticket.masks import dense_mask
from jaxticket.optim import PruneMaskState, get_mask, replace_mask, zero_pruned

SETTINGS = settings(max_examples=20, deadline=None)
STEPS = 50

# Built once so that jitted runs are cached by (optimizer, shapes) across examples.
INNER = {
    "sgd_momentum": optax.sgd(0.1, momentum=0.9),
    "adam": optax.adam(1e-2),
    "adamw": optax.adamw(1e-2, weight_decay=0.5),
}
MASKED = {name: zero_pruned(opt) for name, opt in INNER.items()}


@st.composite
def problems(draw):
    """An optimizer name and a dict of 1-3 weight leaves with random masks and gradients."""
    name = draw(st.sampled_from(sorted(INNER)))
    n = draw(st.integers(1, 3))
    shapes = [tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=3))) for _ in range(n)]
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    # Offset so that weights (pruned ones included) start nonzero.
    params = {
        f"w{i}": jnp.asarray(rng.normal(size=s) + 2.0, jnp.float32) for i, s in enumerate(shapes)
    }
    mask = {k: jnp.asarray(rng.random(v.shape) < 0.5) for k, v in params.items()}
    grads = {
        k: jnp.asarray(rng.normal(size=(STEPS, *v.shape)), jnp.float32) for k, v in params.items()
    }
    return name, params, mask, grads


@functools.partial(jax.jit, static_argnums=0)
def run(opt, params, grads, mask=None):
    """``STEPS`` optimizer steps in a scan, gradient ``grads[t]`` at step t; ``init`` in jit."""
    opt_state = opt.init(params)
    if mask is not None:
        opt_state = replace_mask(opt_state, mask)

    def step(carry, g):
        p, s = carry
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    return jax.lax.scan(step, (params, opt_state), grads)[0]


@SETTINGS
@given(problem=problems())
def test_pruned_weights_stay_exactly_zero_and_alive_ones_follow_inner(problem):
    name, params, mask, grads = problem
    (got, _), (want, _) = run(MASKED[name], params, grads, mask), run(INNER[name], params, grads)
    for k in params:
        m = np.asarray(mask[k])
        pruned = np.asarray(got[k])[~m]
        assert np.all(pruned == 0.0) and not np.any(np.signbit(pruned)), (k, pruned)
        # These optimizers act elementwise, so alive weights match the unwrapped run
        # (up to rounding: XLA fuses the two programs differently).
        np.testing.assert_allclose(
            np.asarray(got[k])[m], np.asarray(want[k])[m], rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("name", sorted(INNER))
def test_all_alive_mask_is_bit_identical_to_inner(name):
    # Op by op (no jit), so both runs round identically and equality is exact.
    rng = np.random.default_rng(0)
    params = {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.ones((4,))}
    grads = [jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)]
    grads *= STEPS // 5  # a few distinct gradients are enough; keeps the test fast
    grads = [jax.tree.map(lambda g, i=i: g * (1 + i % 3), g) for i, g in enumerate(grads)]
    results = []
    for opt in (MASKED[name], INNER[name]):
        p, s = params, opt.init(params)
        for g in grads:
            u, s = opt.update(g, s, p)
            p = optax.apply_updates(p, u)
        results.append(p)
    jax.tree.map(np.testing.assert_array_equal, *results)


def test_moments_never_accumulate_for_pruned_weights():
    params = {"w": jnp.ones((3, 4))}
    mask = {"w": jnp.arange(12).reshape(3, 4) % 2 == 0}
    grads = {"w": jnp.ones((STEPS, 3, 4))}
    _, state = run(zero_pruned(optax.adam(1e-2), mask), params, grads)
    adam_state = state.inner_state[0]
    for moment in (adam_state.mu["w"], adam_state.nu["w"]):
        assert np.all(np.asarray(moment)[~np.asarray(mask["w"])] == 0.0)


def test_dense_mask_by_default_and_none_leaves_pass_through():
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones((2,))}}
    opt = zero_pruned(optax.sgd(0.1, momentum=0.9))
    state = opt.init(params)
    assert get_mask(state)["dense"]["bias"] is None
    mask = {"dense": {"kernel": jnp.array([[True, False]] * 3), "bias": None}}
    grads = {"dense": {"kernel": jnp.ones((STEPS, 3, 2)), "bias": jnp.ones((STEPS, 2))}}
    got, _ = run(opt, params, grads, mask)
    want, _ = run(optax.sgd(0.1, momentum=0.9), params, grads)
    np.testing.assert_allclose(got["dense"]["bias"], want["dense"]["bias"], rtol=1e-6)
    np.testing.assert_array_equal(got["dense"]["kernel"][:, 1], 0.0)
    np.testing.assert_allclose(
        got["dense"]["kernel"][:, 0], want["dense"]["kernel"][:, 0], rtol=1e-6
    )


def test_update_without_params_is_an_error():
    # Without params the wrapper cannot pin a pruned weight that is not zero (one whose
    # mask was never applied) to zero: it refuses instead of leaving it there forever.
    params = {"w": jnp.ones((2, 2))}
    opt = zero_pruned(optax.sgd(1.0), {"w": jnp.eye(2, dtype=bool)})
    state = opt.init(params)
    with pytest.raises(ValueError, match="zero_pruned needs params") as err:
        opt.update({"w": jnp.ones((2, 2))}, state)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="zero_pruned needs params"):
        jax.jit(opt.update)({"w": jnp.ones((2, 2))}, state)
    # With params, a pruned weight that was 1.0 lands on 0.0 after one step.
    updates, _ = opt.update({"w": jnp.ones((2, 2))}, state, params)
    np.testing.assert_array_equal(optax.apply_updates(params, updates)["w"], jnp.zeros((2, 2)))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_apply_updates_keeps_dtype(dtype):
    params = {"w": jnp.full((4, 4), 0.3, dtype)}
    mask = {"w": jnp.tril(jnp.ones((4, 4), bool))}
    opt = zero_pruned(optax.adamw(1e-2, weight_decay=0.1), mask)
    grads = {"w": jnp.ones((STEPS, 4, 4), dtype)}
    final, _ = run(opt, params, grads)
    assert final["w"].dtype == dtype
    assert np.all(np.asarray(final["w"], np.float32)[~np.asarray(mask["w"])] == 0.0)


def test_replace_mask_inside_jit():
    params = {"w": jnp.full((3, 3), 2.0)}
    opt = zero_pruned(optax.adam(1e-2))
    state = opt.init(params)

    @jax.jit
    def step(params, state, new_mask):
        state = replace_mask(state, new_mask)
        u, state = opt.update({"w": jnp.ones((3, 3))}, state, params)
        return optax.apply_updates(params, u), state

    new_mask = {"w": jnp.eye(3, dtype=bool)}
    params, state = step(params, state, new_mask)
    np.testing.assert_array_equal(np.asarray(params["w"]) == 0.0, ~np.eye(3, dtype=bool))
    np.testing.assert_array_equal(get_mask(state)["w"], new_mask["w"])


def test_replace_and_get_mask_inside_chain_and_inject_hyperparams():
    params = {"w": jnp.ones((2, 3)), "b": jnp.ones((3,))}
    new_mask = {"b": None, "w": jnp.array([[True, False, True]] * 2)}
    opts = [
        optax.chain(optax.clip_by_global_norm(1.0), zero_pruned(optax.adam(1e-2))),
        optax.inject_hyperparams(lambda learning_rate: zero_pruned(optax.adam(learning_rate)))(
            learning_rate=1e-2
        ),
        optax.chain(optax.chain(optax.identity(), zero_pruned(optax.sgd(1.0)))),
        zero_pruned(optax.chain(optax.clip(1.0), optax.adamw(1e-2, weight_decay=1.0))),
    ]
    for opt in opts:
        state = replace_mask(opt.init(params), new_mask)
        np.testing.assert_array_equal(get_mask(state)["w"], new_mask["w"])
        grads = jax.tree.map(lambda p: jnp.ones((STEPS, *p.shape)), params)
        final, state = run(opt, params, grads, new_mask)  # replace_mask inside jit
        np.testing.assert_array_equal(get_mask(state)["w"], new_mask["w"])
        np.testing.assert_array_equal(final["w"][:, 1], 0.0)
        assert np.all(final["w"][:, 0] != 0.0)


def test_get_and_replace_mask_need_one_prune_mask_state():
    state = optax.adam(1e-3).init({"w": jnp.ones((2, 2))})
    with pytest.raises(ValueError, match="PruneMaskState.*zero_pruned"):
        get_mask(state)
    with pytest.raises(ValueError, match="PruneMaskState.*zero_pruned"):
        replace_mask(state, {"w": jnp.ones((2, 2), bool)})
    two = optax.chain(zero_pruned(optax.sgd(1.0)), zero_pruned(optax.sgd(1.0)))
    with pytest.raises(ValueError, match="found 2"):
        get_mask(two.init({"w": jnp.ones((2, 2))}))


def test_init_rejects_bad_masks_naming_the_leaf():
    params = {"a": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}}
    ok = {"a": {"kernel": jnp.ones((2, 3), bool), "bias": None}}
    zero_pruned(optax.sgd(1.0), ok).init(params)
    bad_shape = {"a": {"kernel": jnp.ones((3, 2), bool), "bias": None}}
    with pytest.raises(ValueError, match="a/kernel"):
        zero_pruned(optax.sgd(1.0), bad_shape).init(params)
    bad_dtype = {"a": {"kernel": jnp.ones((2, 3), jnp.float32), "bias": None}}
    with pytest.raises(TypeError, match="a/kernel"):
        zero_pruned(optax.sgd(1.0), bad_dtype).init(params)
    bad_structure = {"a": {"kernel": jnp.ones((2, 3), bool)}}
    with pytest.raises(ValueError, match="a/bias"):
        zero_pruned(optax.sgd(1.0), bad_structure).init(params)


def test_replace_mask_rejects_bad_masks_naming_the_leaf():
    params = {"a": {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}}
    state = zero_pruned(optax.adam(1e-3)).init(params)
    with pytest.raises(ValueError, match="a/kernel"):
        replace_mask(state, {"a": {"kernel": jnp.ones((3, 2), bool), "bias": None}})
    with pytest.raises(TypeError, match="a/kernel"):
        replace_mask(state, {"a": {"kernel": jnp.ones((2, 3), jnp.int32), "bias": None}})
    with pytest.raises(ValueError, match="a/bias"):
        replace_mask(state, {"a": {"kernel": None, "bias": jnp.ones((3,), bool)}})
    with pytest.raises(ValueError, match="structure"):
        replace_mask(state, {"a": {"kernel": jnp.ones((2, 3), bool)}})


def test_flax_nnx_state_params():
    model = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
    params = nnx.state(model, nnx.Param)
    mask = dense_mask(params)
    mask["layers"][0]["kernel"] = jnp.arange(12).reshape(4, 3) % 3 == 0
    opt = zero_pruned(optax.adamw(1e-2, weight_decay=0.5), mask)
    grads = jax.tree.map(lambda p: jnp.ones((STEPS, *p.shape)), params)
    final, state = run(opt, params, grads)
    assert isinstance(state, PruneMaskState)
    kernel = np.asarray(final["layers"][0]["kernel"][...])
    keep = np.asarray(mask["layers"][0]["kernel"][...])
    assert np.all(kernel[~keep] == 0.0) and np.all(kernel[keep] != 0.0)
    want, _ = run(optax.adamw(1e-2, weight_decay=0.5), params, grads)
    np.testing.assert_allclose(
        final["layers"][1]["bias"][...], want["layers"][1]["bias"][...], rtol=1e-6
    )


# -- composition with optax.inject_hyperparams and optax.tree_utils ----------------------


def test_hyperparams_reachable_and_settable_through_the_wrapper():
    params = {"w": jnp.full((2, 2), 3.0)}
    mask = {"w": jnp.array([[True, False], [True, True]])}
    grads = {"w": jnp.full((2, 2), 2.0)}
    opt = zero_pruned(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), mask)
    state = opt.init(params)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.1)
    np.testing.assert_allclose(otu.tree_get(state, "learning_rate"), 0.1)
    # SGD by hand: alive weights move by -lr * g, the pruned one by -p (lands on 0).
    updates, _ = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [[-0.2, -3.0], [-0.2, -0.2]], rtol=1e-6)
    state = otu.tree_set(state, learning_rate=jnp.asarray(0.5))
    assert isinstance(state, PruneMaskState)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.5)
    updates, state = opt.update(grads, state, params)
    np.testing.assert_allclose(updates["w"], [[-1.0, -3.0], [-1.0, -1.0]], rtol=1e-6)
    np.testing.assert_allclose(otu.tree_get(state, "learning_rate"), 0.5)  # kept by update


def test_wrapper_inside_inject_hyperparams_and_in_a_chain():
    params = {"w": jnp.ones((2, 2))}
    inside = optax.inject_hyperparams(lambda learning_rate: zero_pruned(optax.sgd(learning_rate)))
    state = inside(learning_rate=0.25).init(params)
    np.testing.assert_allclose(otu.tree_get(state, "learning_rate"), 0.25)
    chained = zero_pruned(
        optax.chain(optax.clip(1.0), optax.inject_hyperparams(optax.adam)(learning_rate=0.3))
    )
    state = chained.init(params)
    np.testing.assert_allclose(state.hyperparams["learning_rate"], 0.3)
    plain = zero_pruned(optax.adam(1e-3)).init(params)
    with pytest.raises(AttributeError, match="inject_hyperparams"):
        plain.hyperparams  # noqa: B018


# -- deprecated names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "owner, name, new",
    [
        (jaxticket, "masked", zero_pruned),
        (jaxticket, "MaskedState", PruneMaskState),
        (optim, "masked", zero_pruned),
        (optim, "MaskedState", PruneMaskState),
    ],
)
def test_old_names_are_deprecated_aliases(owner, name, new):
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated.*{new.__name__}"):
        assert getattr(owner, name) is new
    with pytest.warns(DeprecationWarning):
        exec(f"from {owner.__name__} import {name}", {})
    assert name not in getattr(owner, "__all__", [])


def test_new_names_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert jaxticket.zero_pruned is zero_pruned
        assert jaxticket.PruneMaskState is PruneMaskState
        zero_pruned(optax.sgd(0.1)).init({"w": jnp.ones((2, 2))})
