"""Divergence: a non-finite loss or parameter inside the compiled run is flagged per seed
(``TrainResult.diverged`` / ``diverged_step``) and warned about once, after the run.

Tiny shapes: 16 examples, full-batch steps, so every step sees every example and the
step at which a run goes non-finite can be worked out by hand.
"""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxticket
import jaxticket.models
from jaxticket.data import Dataset
from jaxticket.train import DivergenceWarning, train, train_seeds

rng = np.random.default_rng(0)
X = rng.normal(size=(24, 4)).astype(np.float32)
Y = (X[:, 0] > 0).astype(np.int32)
DATA = Dataset(
    x_train=jnp.asarray(X[:16]),
    y_train=jnp.asarray(Y[:16]),
    x_test=jnp.asarray(X[16:]),
    y_test=jnp.asarray(Y[16:]),
    name="tiny",
    num_classes=2,
    input_shape=(4,),
)
MODEL = jaxticket.models.get("mlp", input_shape=(4,), num_classes=2, hidden=(4,))
# Evaluations (segment ends) at steps 2 and 4; the whole training set is one batch.
CFG = dict(steps=4, batch_size=16, eval_every=2)
KEY = jax.random.key(0)


def quiet_train(optimizer, **kwargs):
    """``train`` with its DivergenceWarning caught (the warning has its own tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        return train(MODEL, DATA, optimizer, key=KEY, **{**CFG, **kwargs})


def test_finite_run_is_not_diverged_and_does_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = train(MODEL, DATA, optax.sgd(0.1), key=KEY, **CFG)
    assert result.diverged.dtype == bool and not bool(result.diverged)
    assert result.diverged_step.dtype == jnp.int32 and int(result.diverged_step) == -1


@pytest.mark.parametrize(
    "optimizer",
    [
        optax.sgd(float("inf")),  # the first update is -inf * g (or nan where g == 0)
        optax.adam(float("nan")),  # NaN learning rate
        optax.adamw(1e-3, weight_decay=float("nan")),  # NaN weight decay: nan * param
    ],
    ids=["sgd-lr-inf", "adam-lr-nan", "adamw-weight-decay-nan"],
)
def test_non_finite_hyperparameters_diverge_at_the_first_evaluation(optimizer):
    # Step 1 makes the params non-finite: the first segment end (step 2) sees it.
    result = quiet_train(optimizer)
    assert bool(result.diverged)
    assert int(result.diverged_step) == 2
    assert not np.all(np.isfinite(np.asarray(result.history["test_loss"])))


def test_huge_sgd_learning_rate_diverges():
    result = quiet_train(optax.sgd(1e6), steps=40, eval_every=4)
    assert bool(result.diverged)
    step = int(result.diverged_step)
    steps = np.asarray(result.history["step"])
    assert step in steps[1:]
    # The flag is the first evaluation with a non-finite loss (huge but finite params
    # already give a NaN test loss, before the training loss or the params overflow).
    losses = np.stack([np.asarray(result.history[n]) for n in ("train_loss", "test_loss")])
    first_bad = steps[np.flatnonzero(~np.all(np.isfinite(losses), axis=0))[0]]
    assert step == first_bad


def test_nan_loss_with_finite_params_is_caught():
    # One training example holds a NaN, so every (full-batch) step has a NaN loss; zeroing
    # NaN gradients keeps every parameter finite, and the test split is clean. Only the
    # loss can give the run away: the first segment end (step 2) must see it.
    x = DATA.x_train.at[3, 1].set(jnp.nan)
    data = DATA.replace(x_train=x)
    opt = optax.chain(optax.zero_nans(), optax.sgd(0.1))
    with pytest.warns(DivergenceWarning, match="seed 0 at step 2"):
        result = train(MODEL, data, opt, key=KEY, **CFG)
    assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(result.params))
    assert np.all(np.isfinite(np.asarray(result.history["test_loss"])))
    assert int(result.diverged_step) == 2


def stacked_params(scale_seed_1: float):
    """Two seeds' init params; seed 1's first kernel entry is replaced."""
    params, state = jaxticket.train.runner.init_seeds(MODEL)(jax.random.split(KEY, 2))
    params = jax.tree.map(lambda p: p, params)
    params["dense1"]["kernel"] = params["dense1"]["kernel"].at[1, 0, 0].set(scale_seed_1)
    return params, state


def test_flag_is_per_seed_under_vmap_and_the_warning_names_the_seed():
    params, state = stacked_params(jnp.nan)  # seed 1 starts non-finite: seen at step 0
    keys = jax.random.split(KEY, 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train_seeds(
            MODEL,
            DATA,
            optax.sgd(0.1),
            init_keys=keys,
            data_keys=keys,
            params=params,
            model_state=state,
            **CFG,
        )
    np.testing.assert_array_equal(result.diverged, [False, True])
    np.testing.assert_array_equal(result.diverged_step, [-1, 0])
    assert result.diverged_step.dtype == jnp.int32
    diverged = [w for w in caught if issubclass(w.category, DivergenceWarning)]
    assert len(diverged) == 1  # once per call, however many seeds
    message = str(diverged[0].message)
    assert "seed 1 at step 0" in message and "seed 0" not in message
    assert "\n" not in message
    assert diverged[0].filename == __file__  # points at the caller


def test_train_warns_once_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(MODEL, DATA, optax.sgd(float("inf")), key=KEY, **CFG)
    diverged = [w for w in caught if issubclass(w.category, DivergenceWarning)]
    assert len(diverged) == 1
    assert re.search(r"1 of 1 run\(s\) \(seed 0 at step 2\)", str(diverged[0].message))
    assert diverged[0].filename == __file__


def test_divergence_warning_is_exported():
    assert jaxticket.DivergenceWarning is DivergenceWarning
    assert issubclass(DivergenceWarning, UserWarning)
