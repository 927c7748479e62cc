"""Seeds spread over devices: ``train_seeds(..., mesh=seed_mesh())`` on 8 virtual CPU devices.

The device count is fixed when JAX starts, so the check runs in a fresh interpreter with
``--xla_force_host_platform_device_count=8``.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    import jaxticket.models
    from jaxticket.data import Dataset
    from jaxticket.train import seed_mesh, train_seeds

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(48, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    data = Dataset(
        x_train=jnp.asarray(x[:32]), y_train=jnp.asarray(y[:32]),
        x_test=jnp.asarray(x[32:]), y_test=jnp.asarray(y[32:]),
        name="synthetic", num_classes=2, input_shape=(6,),
    )
    model = jaxticket.models.get("mlp", input_shape=(6,), num_classes=2, hidden=(8,))
    opt = optax.sgd(0.1)
    keys = jax.random.split(jax.random.key(0), 8)
    data_keys = jax.random.split(jax.random.key(1), 8)
    kwargs = dict(
        init_keys=keys, data_keys=data_keys, steps=4, batch_size=8, eval_every=2,
        snapshot_steps=(0,),
    )

    plain = train_seeds(model, data, opt, **kwargs)
    mesh = seed_mesh()
    sharded = train_seeds(model, data, opt, mesh=mesh, **kwargs)

    def diff(a, b):
        return max(float(jnp.max(jnp.abs(u - v))) for u, v in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    for name in ("params", "history", "snapshots"):
        a, b = getattr(plain, name), getattr(sharded, name)
        for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6, rtol=0)
    print("max abs diff params", diff(plain.params, sharded.params))

    # The seed axis really is spread: each of the 8 devices holds one seed of every output.
    for leaf in jax.tree.leaves((sharded.params, sharded.history, sharded.snapshots)):
        assert len(leaf.sharding.device_set) == 8, leaf.sharding
        assert leaf.sharding.shard_shape(leaf.shape) == (1, *leaf.shape[1:]), leaf.sharding
        assert len(leaf.addressable_shards) == 8
    # Seeds differ, so the comparison above was not between constants.
    assert diff(jax.tree.map(lambda v: v[0], plain.params),
                jax.tree.map(lambda v: v[1], plain.params)) > 1e-3

    # 3 seeds on 8 devices: the last seed is repeated to fill the mesh and the copies
    # are dropped; the 3 results are those of the unsharded run.
    three = train_seeds(model, data, opt, mesh=mesh, **{**kwargs, "init_keys": keys[:3],
                                                         "data_keys": data_keys[:3]})
    for u, v in zip(jax.tree.leaves(jax.tree.map(lambda x: x[:3], plain.params)),
                    jax.tree.leaves(three.params), strict=True):
        assert u.shape == v.shape, (u.shape, v.shape)
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), atol=1e-6, rtol=0)
    assert three.history["test_accuracy"].shape[0] == 3

    # The divergence flag survives the mesh and the padding: 3 seeds on 8 devices, seed 1
    # starts with a NaN weight; the warning names it alone, once.
    import warnings
    from jaxticket.train import DivergenceWarning
    from jaxticket.train.runner import init_seeds
    p3, s3 = init_seeds(model)(keys[:3])
    p3["dense1"]["kernel"] = p3["dense1"]["kernel"].at[1, 0, 0].set(jnp.nan)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = train_seeds(model, data, opt, mesh=mesh, params=p3, model_state=s3,
                          **{**kwargs, "init_keys": keys[:3], "data_keys": data_keys[:3]})
    assert bad.diverged.tolist() == [False, True, False], bad.diverged
    assert bad.diverged_step.tolist() == [-1, 0, -1], bad.diverged_step
    msgs = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    assert len(msgs) == 1 and "seed 1 at step 0" in msgs[0] and "seed 2" not in msgs[0], msgs
    assert not bool(np.any(np.asarray(sharded.diverged)))

    # A progress bar on the mesh (chunked calls) gives the same bits, still spread.
    shown = train_seeds(model, data, opt, mesh=mesh, show_progress=True, **kwargs)
    for u, v in zip(jax.tree.leaves(sharded), jax.tree.leaves(shown), strict=True):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
    assert len(shown.params["output"]["kernel"].sharding.device_set) == 8
    print("SHARDING OK")
    """
)


def test_seeds_sharded_over_eight_devices_match_unsharded():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDING OK" in proc.stdout, proc.stdout + proc.stderr
