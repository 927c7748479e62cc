"""Bad input to jaxticket.sparse: each a one-line error of the right type naming the setting."""

import jax
import jax.numpy as jnp
import pytest

import jaxticket as jt
from jaxticket import sparse
from jaxticket.train.mask_update import UpdateInputs

PARAMS = {
    "dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)},
    "out": {"kernel": jnp.ones((3, 2))},
}
DENSE = jt.dense_mask(PARAMS)
HALF = {
    "dense": {"kernel": jnp.arange(12).reshape(4, 3) % 2 == 0, "bias": None},
    "out": {"kernel": jnp.ones((3, 2), bool)},
}


def update_inputs(grad):
    z = jnp.int32(10)
    return UpdateInputs(z, z, PARAMS, None, None, DENSE, jax.random.key(0), grad)


def rigl_fn(grad):
    return lambda: jax.jit(sparse.RigL(0.5, every=10).mask_update(100).fn)(update_inputs(grad))


def granet_fn(grad):
    method = sparse.GraNet(0.5, start=10, end=30, every=10)
    return lambda: jax.jit(method.mask_update(100).fn)(update_inputs(grad))


GRAD_NO_OUT = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}
GRAD_BAD_SHAPE = {**PARAMS, "out": {"kernel": jnp.ones((2, 3))}}
GRAD_FLOAT0 = {
    **PARAMS,
    "out": {"kernel": jnp.zeros((3, 2), jax.dtypes.float0)},
}

CASES = [
    # Δt <= 0
    ("gmp every 0", lambda: sparse.GMP(0.9, start=0, end=10, every=0), ValueError, "every"),
    ("set every -1", lambda: sparse.SET(0.9, every=-1), ValueError, "every (Δt"),
    ("rigl every float", lambda: sparse.RigL(0.9, every=1.5), TypeError, "every"),
    ("granet every 0", lambda: sparse.GraNet(0.9, end=10, every=0), ValueError, "every"),
    ("update_steps every 0", lambda: sparse.update_steps(0, 0, 10), ValueError, "every"),
    # ζ outside (0, 1)
    ("set zeta 0", lambda: sparse.SET(0.9, zeta=0.0), ValueError, "zeta"),
    ("rigl zeta 1", lambda: sparse.RigL(0.9, zeta=1.0), ValueError, "zeta"),
    ("granet zeta 1.5", lambda: sparse.GraNet(0.9, end=20, every=10, zeta=1.5), ValueError, "zeta"),
    ("cosine zeta -0.1", lambda: sparse.cosine_drop_fraction(-0.1, 10), ValueError, "zeta"),
    # a schedule that ends before it starts
    (
        "gmp end<start",
        lambda: sparse.GMP(0.9, start=50, end=40, every=5),
        ValueError,
        "ends before it starts",
    ),
    (
        "granet end<start",
        lambda: sparse.GraNet(0.9, start=50, end=10, every=5),
        ValueError,
        "ends before it starts",
    ),
    (
        "update_steps end<start",
        lambda: sparse.update_steps(5, 10, 5),
        ValueError,
        "ends before it starts",
    ),
    (
        "gmp cubic without span",
        lambda: sparse.GMP(0.9, start=10, end=12, every=5),
        ValueError,
        "at least one Δt",
    ),
    ("gmp cubic without end", lambda: sparse.GMP(0.9, start=10), ValueError, "needs end"),
    (
        "gmp one_shot with end",
        lambda: sparse.GMP(0.9, start=10, end=20, schedule="one_shot"),
        ValueError,
        "one_shot",
    ),
    # ... or after training
    (
        "gmp end after training",
        lambda: sparse.GMP(0.9, start=0, end=100, every=10).mask_update(100),
        ValueError,
        "after training",
    ),
    (
        "granet end after training",
        lambda: sparse.GraNet(0.9, start=0, end=200, every=10).mask_update(100),
        ValueError,
        "after training",
    ),
    (
        "set end after training",
        lambda: sparse.SET(0.9, every=10, end=150).mask_update(100),
        ValueError,
        "after training",
    ),
    (
        "gmp start before run",
        lambda: sparse.GMP(0.9, start=5, end=50, every=5).mask_update(100, start_step=10),
        ValueError,
        "before the run starts",
    ),
    (
        "rigl no update fits",
        lambda: sparse.RigL(0.9, every=100).mask_update(100),
        ValueError,
        "no update fits",
    ),
    ("mask_update steps 0", lambda: sparse.SET(0.9).mask_update(0), ValueError, "steps"),
    # sparsities outside [0, 1), final < initial
    (
        "gmp final 1",
        lambda: sparse.GMP(1.0, start=0, end=10, every=5),
        ValueError,
        "final_sparsity",
    ),
    (
        "gmp initial -0.1",
        lambda: sparse.GMP(0.5, start=0, end=10, every=5, initial_sparsity=-0.1),
        ValueError,
        "initial_sparsity",
    ),
    (
        "gmp final<initial",
        lambda: sparse.GMP(0.3, start=0, end=10, every=5, initial_sparsity=0.5),
        ValueError,
        "below initial_sparsity",
    ),
    (
        "granet final<initial",
        lambda: sparse.GraNet(0.3, initial_sparsity=0.5, end=20, every=10),
        ValueError,
        "below initial_sparsity",
    ),
    ("set sparsity 1.2", lambda: sparse.SET(1.2), ValueError, "sparsity"),
    ("static sparsity str", lambda: sparse.Static("0.9"), TypeError, "sparsity"),
    (
        "gmp scaled rate reaches 1",
        lambda: sparse.GMP(0.8, start=0, end=10, every=5, scale={"out/*": 1.5}),
        ValueError,
        "scale",
    ),
    (
        "gmp scale with global",
        lambda: sparse.GMP(
            0.8, start=0, end=10, every=5, allocation="global", scale={"out/*": 0.5}
        ),
        ValueError,
        "scale goes with",
    ),
    (
        "static allocation",
        lambda: sparse.Static(0.5, allocation="global"),
        ValueError,
        "allocation",
    ),
    (
        "gmp schedule name",
        lambda: sparse.GMP(0.5, start=0, end=10, every=5, schedule="linear"),
        ValueError,
        "schedule",
    ),
    # a starting mask sparser than the method starts from
    (
        "gmp start sparser",
        lambda: sparse.GMP(0.9, start=0, end=10, every=5).check_start(HALF),
        ValueError,
        "initial_sparsity=0.0",
    ),
    (
        "granet start sparser",
        lambda: sparse.GraNet(0.9, initial_sparsity=0.1, end=20, every=10).check_start(HALF),
        ValueError,
        "initial_sparsity=0.1",
    ),
    ("rigl start sparser", lambda: sparse.RigL(0.1).check_start(HALF), ValueError, "sparsity=0.1"),
    (
        "check_start traced",
        lambda: jax.jit(sparse.SET(0.5).check_start)(DENSE),
        TypeError,
        "concrete",
    ),
    # the dense gradient not available
    ("rigl grad None", rigl_fn(None), ValueError, "inputs.grad is None"),
    (
        "rigl grad leaf missing",
        rigl_fn(GRAD_NO_OUT),
        ValueError,
        "RigL needs the dense gradient of leaf 'out/kernel'",
    ),
    (
        "rigl grad leaf shape",
        rigl_fn(GRAD_BAD_SHAPE),
        ValueError,
        "RigL needs the dense gradient of leaf 'out/kernel': got shape",
    ),
    ("rigl grad float0", rigl_fn(GRAD_FLOAT0), ValueError, "float0"),
    ("granet grad None", granet_fn(None), ValueError, "GraNet needs the dense gradient"),
    ("granet grad leaf missing", granet_fn(GRAD_NO_OUT), ValueError, "leaf 'out/kernel'"),
]


@pytest.mark.parametrize("name,call,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, error, fragment):
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message, message
