"""Compile caches keyed by value: equal models and optimizers share one compiled program
(``jaxticket.train.cache_key``), and a run with a progress bar is written to JAX's
persistent compilation cache (no host callback in its programs)."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from compile_probes import count_compiles

import jaxticket.models
from jaxticket.data import Dataset
from jaxticket.train import compiled, train
from jaxticket.train.cache_key import ByValue, fingerprint

rng = np.random.default_rng(1)
X = rng.normal(size=(24, 5)).astype(np.float32)
DATA = Dataset(
    x_train=jnp.asarray(X[:16]),
    y_train=jnp.asarray((X[:16, 0] > 0).astype(np.int32)),
    x_test=jnp.asarray(X[16:]),
    y_test=jnp.asarray((X[16:, 0] > 0).astype(np.int32)),
    name="tiny",
    num_classes=2,
    input_shape=(5,),
)
CFG = dict(steps=4, batch_size=8, eval_every=2)


def mlp(hidden=(6,)):
    return jaxticket.models.get("mlp", input_shape=(5,), num_classes=2, hidden=hidden)


# -- fingerprints ------------------------------------------------------------------------


def test_equal_optimizers_and_schedules_fingerprint_equal():
    assert fingerprint(optax.adam(1e-3)) == fingerprint(optax.adam(1e-3))
    assert fingerprint(optax.adam(1e-3)) != fingerprint(optax.adam(2e-3))
    assert fingerprint(optax.sgd(0.1)) != fingerprint(optax.sgd(0.1, momentum=0.9))
    assert fingerprint(optax.adam(1e-3)) != fingerprint(optax.adamw(1e-3))

    def sched(n, scale=1e-3):
        return optax.warmup_cosine_decay_schedule(0.0, scale, 10, n)

    a, b, c = (optax.adamw(sched(100), weight_decay=1e-4) for _ in range(3))
    assert fingerprint(a) == fingerprint(b) == fingerprint(c)
    assert fingerprint(optax.adamw(sched(101), weight_decay=1e-4)) != fingerprint(a)
    assert fingerprint(optax.adamw(sched(100, 2e-3), weight_decay=1e-4)) != fingerprint(a)
    hyper = optax.inject_hyperparams(optax.adam)
    assert fingerprint(hyper(learning_rate=0.1)) == fingerprint(hyper(learning_rate=0.1))
    assert fingerprint(hyper(learning_rate=0.1)) != fingerprint(hyper(learning_rate=0.2))


def test_equal_zoo_models_fingerprint_equal():
    assert fingerprint(mlp()) == fingerprint(mlp())
    assert fingerprint(mlp()) != fingerprint(mlp((7,)))
    other = jaxticket.models.get("mlp", input_shape=(5,), num_classes=3, hidden=(6,))
    assert fingerprint(other) != fingerprint(mlp())


def test_values_that_could_change_the_program_never_match():
    assert fingerprint(0.0) != fingerprint(-0.0)
    assert fingerprint(1) != fingerprint(1.0) != fingerprint(True)
    assert fingerprint(float("nan")) == fingerprint(float("nan"))

    def make(k):
        return lambda x: x * k

    assert fingerprint(make(2)) == fingerprint(make(2)) != fingerprint(make(3))
    # Arrays (in closures too) are matched by identity only.
    k = jnp.asarray(2.0)
    assert fingerprint(make(k)) == fingerprint(make(k))
    assert fingerprint(make(jnp.asarray(2.0))) != fingerprint(make(jnp.asarray(2.0)))
    assert fingerprint(optax.sgd(jnp.asarray(0.1))) != fingerprint(optax.sgd(jnp.asarray(0.1)))
    # A module-level constant the code reads is part of the key.
    f = eval("lambda x: x * SCALE", {"SCALE": 2.0})
    g = eval("lambda x: x * SCALE", {"SCALE": 3.0})
    assert fingerprint(f) != fingerprint(g)

    # Reference cycles (a nested function that calls itself) terminate.
    def outer():
        def rec(n):
            return 0 if n == 0 else rec(n - 1)

        return rec

    assert fingerprint(outer()) == fingerprint(outer())
    assert ByValue(optax.adam(1e-3)) == ByValue(optax.adam(1e-3))
    assert hash(ByValue(optax.adam(1e-3))) == hash(ByValue(optax.adam(1e-3)))


# -- the engine's caches -----------------------------------------------------------------


def test_compiled_train_fn_and_init_seeds_are_shared_by_equal_configurations():
    kw = dict(
        steps=4, batch_size=8, eval_every=2, snapshot_steps=(), start_step=0,
        mask_per_seed=False, progress=False,
    )  # fmt: skip
    first = compiled.compiled_train_fn(mlp(), optax.adam(1e-3), **kw)
    assert compiled.compiled_train_fn(mlp(), optax.adam(1e-3), **kw) is first
    assert compiled.compiled_train_fn(mlp(), optax.adam(2e-3), **kw) is not first
    assert compiled.compiled_train_fn(mlp((7,)), optax.adam(1e-3), **kw) is not first
    assert compiled.init_seeds(mlp()) is compiled.init_seeds(mlp())
    assert compiled.init_seeds(mlp()) is not compiled.init_seeds(mlp((7,)))


def test_fresh_equal_optimizer_and_model_compile_nothing_new():
    key = jax.random.key(3)
    first = train(mlp(), DATA, optax.adam(1e-3), key=key, **CFG)
    with count_compiles() as again:
        second = train(mlp(), DATA, optax.adam(1e-3), key=key, **CFG)
    assert again[0] == 0
    jax.tree.map(np.testing.assert_array_equal, first.params, second.params)
    # A different learning rate is a different program with different results.
    with count_compiles() as other:
        third = train(mlp(), DATA, optax.adam(2e-3), key=key, **CFG)
    assert other[0] >= 1
    assert not np.array_equal(first.params["output"]["kernel"], third.params["output"]["kernel"])


# -- the persistent compilation cache ----------------------------------------------------

SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    jax.config.update("jax_compilation_cache_dir", sys.argv[1])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    import jaxticket.models
    from jaxticket.data import Dataset
    from jaxticket.train import train_seeds

    hits = []
    jax.monitoring.register_event_listener(
        lambda event, **kw: hits.append(event) if event.endswith("/cache_hits") else None
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    data = Dataset(x_train=jnp.asarray(x[:16]), y_train=jnp.asarray(y[:16]),
                   x_test=jnp.asarray(x[16:]), y_test=jnp.asarray(y[16:]),
                   name="tiny", num_classes=2, input_shape=(5,))
    model = jaxticket.models.get("mlp", input_shape=(5,), num_classes=2, hidden=(6,))
    keys = jax.random.split(jax.random.key(0), 2)
    result = train_seeds(model, data, optax.adam(1e-3), init_keys=keys, data_keys=keys,
                         steps=6, batch_size=8, eval_every=2, show_progress=True)
    print("ACC", np.asarray(result.history["test_accuracy"]).tolist())
    print("HITS", len(hits))
    """
)


def run_script(cache_dir):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(cache_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    return lines["ACC"], int(lines["HITS"])


def training_entries(cache_dir):
    """Cache entries of the training program (its chunk program: ``run``)."""
    return sorted(p for p in os.listdir(cache_dir) if p.startswith("jit_run"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_progress_run_is_written_to_and_read_from_the_persistent_cache(tmp_path):
    acc, hits = run_script(tmp_path)
    written = training_entries(tmp_path)
    assert written, sorted(os.listdir(tmp_path))  # a host callback would prevent this
    everything = sorted(os.listdir(tmp_path))
    # A second process with the same command loads the programs instead of compiling.
    acc_again, hits_again = run_script(tmp_path)
    assert acc_again == acc
    assert hits_again >= len(written) and hits == 0
    assert sorted(os.listdir(tmp_path)) == everything  # nothing new was compiled


def test_progress_programs_contain_no_host_callback():
    kw = dict(
        steps=4, batch_size=8, eval_every=2, snapshot_steps=(), start_step=0,
        mask_per_seed=False, progress=True,
    )  # fmt: skip
    chunked = compiled.compiled_train_fn(mlp(), optax.adam(1e-3), **kw)
    model = mlp()
    params, state = compiled.init_seeds(model)(jax.random.split(jax.random.key(0), 2))
    keys = jax.random.split(jax.random.key(1), 2)
    carry = jax.eval_shape(chunked.start, params, state, None, DATA)
    texts = [
        chunked.start.lower(params, state, None, DATA).as_text(),
        chunked.run.lower(carry, chunked.pieces[0], None, keys, keys, DATA).as_text(),
    ]
    for text in texts:
        assert "callback" not in text.lower()
