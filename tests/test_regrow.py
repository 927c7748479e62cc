"""Tests for jaxticket.regrow: regrown weights start at 0 with fresh optimizer state."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.tree_util import DictKey, GetAttrKey

import jaxticket
from jaxticket import count_alive, get_mask, regrow, replace_mask, reset_optimizer_state
from jaxticket.optim import zero_pruned

SETTINGS = settings(max_examples=4, deadline=None)
SHAPES = [(2, 3), (3, 2), (1, 4)]

INNER = {
    "sgd": optax.sgd(0.1),
    "momentum": optax.sgd(0.1, momentum=0.9),
    "nesterov": optax.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": optax.adam(1e-2),
    "adamw": optax.adamw(1e-2, weight_decay=0.5),
    "chain_clip_adam": optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
    "inject_adam": optax.inject_hyperparams(optax.adam)(learning_rate=1e-2),
    "rmsprop": optax.rmsprop(1e-2),
    "lion": optax.lion(1e-3),
    "nadam": optax.nadam(1e-2),
    "amsgrad": optax.amsgrad(1e-2),
    "adabelief": optax.adabelief(1e-2),
    "masked_adam": optax.masked(optax.adam(1e-2), {"kernel": True, "bias": False}),
    "multi_transform": optax.multi_transform(
        {"a": optax.adam(1e-2), "m": optax.sgd(0.1, momentum=0.9)},
        {"kernel": "a", "bias": "m"},
    ),
}
# Built once so that jitted functions are cached across examples.
OPTS = {name: zero_pruned(inner) for name, inner in INNER.items()}
OPTS["zero_pruned_in_chain"] = optax.chain(
    optax.clip_by_global_norm(1.0), zero_pruned(optax.adam(1e-2))
)


def kernel_copies(state):
    """(path, leaf) of the state's kernel-shaped entries, found by key name, not the library."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        if GetAttrKey("mask") in path:
            continue
        if path and path[-1] == DictKey("kernel"):
            out.append((jax.tree_util.keystr(path), leaf))
    return out


def non_kernel_leaves(state):
    return [
        (jax.tree_util.keystr(p), leaf)
        for p, leaf in jax.tree_util.tree_flatten_with_path(state)[0]
        if GetAttrKey("mask") not in p and not (p and p[-1] == DictKey("kernel"))
    ]


def bits(x):
    x = np.asarray(x)
    return x.view(np.dtype(f"u{x.dtype.itemsize}")) if x.dtype.kind == "f" else x


@functools.partial(jax.jit, static_argnums=(0, 4))
def train(opt, params, state, grads, steps):
    for i in range(steps):
        g = jax.tree.map(lambda x, i=i: x * (1.0 + 0.5 * i), grads)
        u, state = opt.update(g, state, params)
        params = optax.apply_updates(params, u)
    return params, state


@functools.partial(jax.jit, static_argnums=0)
def jit_regrow(opt, params, state, new_mask):
    return regrow(params, state, new_mask, optimizer=opt)


def setup(opt, shape, rng):
    """Params and a state whose kernel entries are all nonzero where they get regrown.

    Three dense steps build up state everywhere; then ``old`` prunes some weights (their
    momentum and moments are left over from their alive days) and two more steps run.
    """
    params = {
        "kernel": jnp.asarray(rng.normal(size=shape) + 2.0, jnp.float32),
        "bias": jnp.asarray(rng.normal(size=shape[-1:]), jnp.float32),
    }
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    old = {"kernel": jnp.asarray(rng.random(shape) < 0.5), "bias": None}
    new = {"kernel": jnp.asarray(rng.random(shape) < 0.5), "bias": None}
    state = opt.init(params)
    params, state = train(opt, params, state, grads, 3)
    params, state = train(opt, params, replace_mask(state, old), grads, 2)
    return params, state, grads, old, new


@pytest.mark.parametrize("name", sorted(OPTS))
@SETTINGS
@given(shape=st.sampled_from(SHAPES), seed=st.integers(0, 2**31 - 1))
def test_regrow_invariants(name, shape, seed):
    opt = OPTS[name]
    params, state, grads, old, new = setup(opt, shape, np.random.default_rng(seed))
    got_p, got_s = jit_regrow(opt, params, state, new)
    o, n = np.asarray(old["kernel"]), np.asarray(new["kernel"])
    grown, kept = n & ~o, n & o

    # Params: regrown and pruned weights exactly +0.0; alive-in-both and biases bit for bit.
    k = np.asarray(got_p["kernel"])
    assert np.all(k[~kept] == 0.0) and not np.any(np.signbit(k[~kept]))
    np.testing.assert_array_equal(bits(k)[kept], bits(params["kernel"])[kept])
    np.testing.assert_array_equal(bits(got_p["bias"]), bits(params["bias"]))

    # State: every kernel-shaped entry (mu, nu, trace...) at regrown positions is 0; the
    # rest of the state is unchanged bit for bit (counts, hyperparams, biases' state).
    before, after = kernel_copies(state), kernel_copies(got_s)
    assert [p for p, _ in before] == [p for p, _ in after]
    for (path, b), (_, a) in zip(before, after, strict=True):
        assert np.all(np.asarray(a)[grown] == 0.0), path
        np.testing.assert_array_equal(bits(a)[~grown], bits(b)[~grown], err_msg=path)
    for (path, b), (_, a) in zip(non_kernel_leaves(state), non_kernel_leaves(got_s), strict=True):
        np.testing.assert_array_equal(bits(a), bits(b), err_msg=path)

    # The mask is the new one; pruned weights stay exactly zero through further steps.
    np.testing.assert_array_equal(get_mask(got_s)["kernel"], n)
    assert get_mask(got_s)["bias"] is None
    assert int(count_alive(get_mask(got_s))) == int(count_alive(new))
    final, _ = train(opt, got_p, got_s, grads, 5)
    f = np.asarray(final["kernel"])
    assert np.all(f[~n] == 0.0) and not np.any(np.signbit(f[~n]))


def test_regrown_state_was_nonzero_before():
    # Guards the invariant test: the state it resets really held something there.
    opt = OPTS["adam"]
    params, state, _, old, new = setup(opt, (3, 4), np.random.default_rng(1))
    grown = np.asarray(new["kernel"]) & ~np.asarray(old["kernel"])
    assert grown.any()
    for path, leaf in kernel_copies(state):
        assert np.all(np.asarray(leaf)[grown] != 0.0), path


def test_adam_by_hand_on_a_2x3_kernel():
    # Step 1 dense, step 2 with weight (0, 1) pruned, then regrow (0, 1) and drop (1, 2),
    # then step 3: all in float64 numpy, independent of the library.
    lr, b1, b2, eps = 0.1, 0.9, 0.999, 1e-8
    w0 = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    gs = [
        np.array([[0.1, 0.2, -0.3], [0.4, -0.5, 0.6]]),
        np.array([[-0.2, 0.3, 0.1], [0.05, 0.2, -0.4]]),
        np.array([[0.3, -0.1, 0.2], [-0.3, 0.1, 0.5]]),
    ]
    dense = np.ones((2, 3), bool)
    a = dense.copy()
    a[0, 1] = False
    b = a.copy()
    b[0, 1], b[1, 2] = True, False

    def np_step(w, mu, nu, t, g, m):
        g = np.where(m, g, 0.0)
        mu, nu, t = b1 * mu + (1 - b1) * g, b2 * nu + (1 - b2) * g * g, t + 1
        u = -lr * (mu / (1 - b1**t)) / (np.sqrt(nu / (1 - b2**t)) + eps)
        return w + np.where(m, u, -w), mu, nu, t

    w, mu, nu, t = w0, np.zeros((2, 3)), np.zeros((2, 3)), 0
    w, mu, nu, t = np_step(w, mu, nu, t, gs[0], dense)
    w, mu, nu, t = np_step(w, mu, nu, t, gs[1], a)
    assert mu[0, 1] != 0.0 and nu[0, 1] != 0.0  # left over from step 1
    grown, kept = b & ~a, b & a
    w, mu, nu = np.where(kept, w, 0.0), np.where(grown, 0.0, mu), np.where(grown, 0.0, nu)
    want_regrown = (w.copy(), mu.copy(), nu.copy())
    w, mu, nu, t = np_step(w, mu, nu, t, gs[2], b)

    opt = zero_pruned(optax.adam(lr, b1=b1, b2=b2, eps=eps))
    params = {"kernel": jnp.asarray(w0, jnp.float32)}
    state = opt.init(params)

    def step(params, state, g):
        u, state = opt.update({"kernel": jnp.asarray(g, jnp.float32)}, state, params)
        return optax.apply_updates(params, u), state

    params, state = step(params, state, gs[0])
    params, state = step(params, replace_mask(state, {"kernel": jnp.asarray(a)}), gs[1])
    params, state = regrow(params, state, {"kernel": jnp.asarray(b)}, optimizer=opt)
    adam = state.inner_state[0]
    for got, want in zip(
        (params["kernel"], adam.mu["kernel"], adam.nu["kernel"]), want_regrown, strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    assert int(adam.count) == 2  # shared step count: not reset
    params, state = step(params, state, gs[2])
    np.testing.assert_allclose(params["kernel"], w, rtol=1e-5, atol=1e-7)
    assert params["kernel"][1, 2] == 0.0


def test_vmap_over_seeds_matches_each_seed():
    opt = OPTS["adamw"]
    runs = [setup(opt, (2, 3), np.random.default_rng(s)) for s in range(3)]
    stack = lambda *xs: jax.tree.map(lambda *leaves: jnp.stack(leaves), *xs)  # noqa: E731
    params, state, new = (stack(*[r[i] for r in runs]) for i in (0, 1, 4))
    got_p, got_s = jax.jit(jax.vmap(functools.partial(regrow, optimizer=opt)))(params, state, new)
    for s, (p1, s1, _, _, n1) in enumerate(runs):
        want_p, want_s = regrow(p1, s1, n1, optimizer=opt)
        take = lambda t, s=s: jax.tree.map(lambda x: x[s], t)  # noqa: E731
        jax.tree.map(np.testing.assert_array_equal, take(got_p), want_p)
        jax.tree.map(np.testing.assert_array_equal, take(got_s), want_s)


def test_reset_goes_back_to_init_values_not_always_zero():
    # adagrad starts its accumulator at 0.1: a regrown weight gets 0.1, not 0.
    opt = zero_pruned(optax.adagrad(0.1, initial_accumulator_value=0.1))
    params, state, _, old, new = setup(opt, (3, 4), np.random.default_rng(2))
    grown = np.asarray(new["kernel"]) & ~np.asarray(old["kernel"])
    _, got = regrow(params, state, new, optimizer=opt)
    acc = np.asarray(got.inner_state[0].sum_of_squares["kernel"])
    np.testing.assert_array_equal(acc[grown], np.float32(0.1))
    assert np.all(acc[~grown] > 0.1)


def test_reset_optimizer_state_on_a_plain_optax_state():
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}
    opt = optax.sgd(0.1, momentum=0.9)
    state = opt.init(params)
    state = opt.update(jax.tree.map(jnp.ones_like, params), state, params)[1]
    where = {"kernel": jnp.array([[True, False, False], [False, False, True]]), "bias": None}
    got = jax.jit(functools.partial(reset_optimizer_state, optimizer=opt))(
        state, where, params=params
    )
    want = np.ones((2, 3), np.float32)
    want[np.asarray(where["kernel"])] = 0.0
    np.testing.assert_array_equal(got[0].trace["kernel"], want)
    np.testing.assert_array_equal(got[0].trace["bias"], 1.0)


def test_inject_hyperparams_keep_their_values():
    opt = zero_pruned(optax.inject_hyperparams(optax.adam)(learning_rate=0.02))
    params, state, _, _, new = setup(opt, (2, 3), np.random.default_rng(3))
    state = optax.tree_utils.tree_set(state, learning_rate=jnp.asarray(0.5))
    _, got = regrow(params, state, new, optimizer=opt)
    np.testing.assert_allclose(optax.tree_utils.tree_get(got, "learning_rate"), 0.5)


# -- bad input ---------------------------------------------------------------------------


def _state():
    opt = OPTS["adam"]
    params, state, _, _, _ = setup(opt, (2, 3), np.random.default_rng(0))
    return opt, params, state


@pytest.mark.parametrize(
    "new, err, match",
    [
        ({"kernel": jnp.ones((3, 2), bool), "bias": None}, ValueError, "'kernel'"),
        ({"kernel": jnp.ones((2, 3), jnp.int32), "bias": None}, TypeError, "'kernel'"),
        ({"kernel": jnp.ones((2, 3), bool), "bias": jnp.ones((3,), bool)}, ValueError, "bias"),
        ({"kernel": jnp.ones((2, 3), bool)}, ValueError, "regrow: .*structure"),
    ],
)
def test_regrow_rejects_masks_that_do_not_fit(new, err, match):
    opt, params, state = _state()
    with pytest.raises(err, match=match) as info:
        regrow(params, state, new, optimizer=opt)
    assert "\n" not in str(info.value)


def test_regrow_needs_the_optimizer_that_built_the_state():
    opt, params, state = _state()
    new = {"kernel": jnp.ones((2, 3), bool), "bias": None}
    with pytest.raises(TypeError, match="optimizer"):
        regrow(params, state, new)  # missing keyword
    with pytest.raises(TypeError, match="optimizer must be"):
        regrow(params, state, new, optimizer=None)
    with pytest.raises(ValueError, match="structure of opt_state") as info:
        regrow(params, state, new, optimizer=zero_pruned(optax.sgd(0.1, momentum=0.9)))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="PruneMaskState"):
        regrow(params, optax.adam(1e-2).init(params), new, optimizer=optax.adam(1e-2))


def test_reset_rejects_where_that_does_not_fit_params():
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}
    opt = optax.adam(1e-2)
    state = opt.init(params)
    with pytest.raises(ValueError, match="'kernel'") as info:
        reset_optimizer_state(
            state, {"kernel": jnp.ones((3, 2), bool), "bias": None}, optimizer=opt, params=params
        )
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="bias"):
        reset_optimizer_state(
            state, {"kernel": jnp.ones((2, 3), bool)}, optimizer=opt, params=params
        )


def test_state_that_is_not_per_weight_is_refused():
    # adafactor keeps factored (row / column) moments: resetting them per weight is not
    # possible, and silently skipping them would keep stale state.
    opt = zero_pruned(optax.adafactor(1e-2))
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}
    state = opt.init(params)
    new = {"kernel": jnp.ones((2, 3), bool), "bias": None}
    with pytest.raises(ValueError, match="'kernel'.*not one entry per weight") as info:
        regrow(params, state, new, optimizer=opt)
    assert "\n" not in str(info.value)


def test_exported():
    assert jaxticket.regrow is regrow
    assert jaxticket.reset_optimizer_state is reset_optimizer_state
    assert {"regrow", "reset_optimizer_state"} <= set(jaxticket.__all__)


def test_flax_nnx_state_params():
    model = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), nnx.Linear(3, 2, rngs=nnx.Rngs(1)))
    params = nnx.state(model, nnx.Param)
    opt = zero_pruned(optax.adam(1e-2))
    state = opt.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    params, state = train(opt, params, state, grads, 1)
    old, new = get_mask(state), get_mask(state)
    old["layers"][0]["kernel"] = jnp.arange(12).reshape(4, 3) % 2 == 0
    new["layers"][0]["kernel"] = jnp.arange(12).reshape(4, 3) % 3 == 0
    params, state = train(opt, params, replace_mask(state, old), grads, 1)
    got_p, got_s = jit_regrow(opt, params, state, new)
    assert isinstance(got_p["layers"][0]["kernel"], nnx.Param)
    o, n = np.asarray(old["layers"][0]["kernel"]), np.asarray(new["layers"][0]["kernel"])
    grown, kept = n & ~o, n & o
    k = np.asarray(got_p["layers"][0]["kernel"][...])
    assert np.all(k[~kept] == 0.0) and np.all(k[kept] != 0.0)
    for moment in (got_s.inner_state[0].mu, got_s.inner_state[0].nu):
        before = np.asarray(moment["layers"][0]["kernel"][...])
        assert np.all(before[grown] == 0.0) and np.all(before[~grown] != 0.0)
    np.testing.assert_array_equal(get_mask(got_s)["layers"][0]["kernel"], n)
