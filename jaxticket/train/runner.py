"""Front doors to the engine: one seed (``train``) or many seeds in one program
(``train_seeds``), optionally with the seed axis spread over devices."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxticket.train.engine import TrainResult, make_train_fn
from jaxticket.train.progress import progress_bar, report_progress

SEED_AXIS = "seeds"


def check_compatible(model, data) -> None:
    """Fails before compiling when the model cannot take the data set's examples."""
    if tuple(model.input_shape) != tuple(data.input_shape):
        raise ValueError(
            f"model {model.name!r} expects inputs of shape {tuple(model.input_shape)} but data "
            f"set {data.name!r} has inputs of shape {tuple(data.input_shape)}"
        )
    if model.num_classes != data.num_classes:
        raise ValueError(
            f"model {model.name!r} has {model.num_classes} outputs but data set "
            f"{data.name!r} has {data.num_classes} classes"
        )


def train(
    model,
    data,
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    eval_every: int | None = None,
    params: Any = None,
    model_state: Any = None,
    mask: Any = None,
    snapshot_steps: tuple[int, ...] = (),
    show_progress: bool = False,
) -> TrainResult:
    """Trains one seed. ``key`` makes the init (when ``params`` is None) and the data order.

    Example::

        model = jaxticket.models.get("mlp", input_shape=(40,), num_classes=10)
        data = jaxticket.data.load("mnist1d")
        result = jaxticket.train(model, data, optax.adam(1e-3), key=jax.random.key(0),
                                 steps=2000, batch_size=100, eval_every=200)
        result.history["test_accuracy"][-1]
    """
    result = train_seeds(
        model,
        data,
        optimizer,
        init_keys=key[None],
        data_keys=jax.random.fold_in(key, 1)[None],
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        params=None if params is None else _add_axis(params),
        model_state=None if model_state is None else _add_axis(model_state),
        mask=mask,
        snapshot_steps=snapshot_steps,
        show_progress=show_progress,
    )
    return jax.tree.map(lambda x: x[0], result)


def train_seeds(
    model,
    data,
    optimizer: optax.GradientTransformation,
    *,
    init_keys: jax.Array,
    data_keys: jax.Array,
    steps: int,
    batch_size: int,
    eval_every: int | None = None,
    params: Any = None,
    model_state: Any = None,
    mask: Any = None,
    mask_per_seed: bool = False,
    snapshot_steps: tuple[int, ...] = (),
    mesh: Mesh | None = None,
    show_progress: bool = False,
) -> TrainResult:
    """Trains N seeds as one vmapped program; results are stacked on a leading seed axis.

    Seeds may share an init and differ in data order (repeat one init key) or the reverse
    (repeat one data key): instability analysis needs both.

    Args:
      init_keys, data_keys: N keys each; init keys are used only when ``params`` is None.
      params, model_state: optional variables stacked over the N seeds.
      mask: one mask for all seeds, or stacked per seed when ``mask_per_seed``.
      mesh: optional 1-D ``jax.sharding.Mesh`` whose axis spreads the seeds over devices
        (N must be divisible by its size).
      Other arguments as in :func:`jaxticket.train.make_train_fn`.
    """
    check_compatible(model, data)
    n = init_keys.shape[0]
    if data_keys.shape[0] != n:
        raise ValueError(f"got {n} init keys but {data_keys.shape[0]} data keys")
    if params is None:
        params, model_state = jax.jit(jax.vmap(model.init))(init_keys)
    fn = compiled_train_fn(
        model,
        optimizer,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=tuple(snapshot_steps),
        mask_per_seed=mask_per_seed,
        progress=show_progress,
    )
    args = [params, model_state, mask, data_keys]
    if mesh is not None:
        args = [
            _shard(a, mesh) if (i != 2 or mask_per_seed) else a for i, a in enumerate(args)
        ]
    with progress_bar(steps, enabled=show_progress):
        return fn(*args, jax.vmap(_dropout_key)(data_keys), data)


@functools.lru_cache(maxsize=32)
def compiled_train_fn(
    model,
    optimizer,
    *,
    steps: int,
    batch_size: int,
    eval_every: int | None,
    snapshot_steps: tuple[int, ...],
    mask_per_seed: bool,
    progress: bool,
):
    """The jitted, seed-vmapped train function; cached so repeated runs (IMP levels,
    controls) with the same configuration compile once."""
    fn = make_train_fn(
        model,
        optimizer,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        progress=report_progress if progress else None,
    )
    mask_axis = 0 if mask_per_seed else None
    return jax.jit(jax.vmap(fn, in_axes=(0, 0, mask_axis, 0, 0, None)))


def seed_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose axis carries the seeds."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (SEED_AXIS,))


def _dropout_key(data_key: jax.Array) -> jax.Array:
    return jax.random.fold_in(data_key, 0x5EED)


def _add_axis(tree):
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


def _shard(tree, mesh: Mesh):
    spec = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    return jax.tree.map(lambda x: jax.device_put(x, spec), tree)
