"""Front doors to the engine: one seed (``train``) or many seeds in one program
(``train_seeds``), optionally with the seed axis spread over devices.

Compiled programs are cached by value (``jaxticket.train.cache_key``): a fresh
``optax.adam(1e-3)`` or a second ``models.get("mlp", ...)`` with the same options reuses
the program the first one compiled. A run with a progress bar is cut into a few calls of
one chunk program (``jaxticket.train.progress``), with no host callback, so it too can be
written to JAX's persistent compilation cache.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxticket._paths import leaves_with_paths
from jaxticket.masks import validate_mask
from jaxticket.train.checks import (
    check_bool,
    check_dataset,
    check_devices,
    check_keys,
    check_loss_and_metrics,
    check_loss_outputs,
    check_mesh,
    check_model_and_data,
    check_optimizer,
    check_run_settings,
    check_single_key,
)
from jaxticket.train.compiled import compiled_train_fn, init_seeds
from jaxticket.train.divergence import warn_if_diverged
from jaxticket.train.engine import TrainResult
from jaxticket.train.losses import uses_class_labels
from jaxticket.train.mask_update import check_mask_update

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
    loss_fn=None,
    metrics=None,
    mask_update=None,
) -> TrainResult:
    """Trains one seed. ``key`` makes the init (when ``params`` is None) and the data order.

    Warns :class:`~jaxticket.train.DivergenceWarning` (after the run) when the loss or the
    parameters became non-finite; ``result.diverged`` / ``result.diverged_step`` say so too.

    Example::

        model = jaxticket.models.get("mlp", input_shape=(40,), num_classes=10)
        data = jaxticket.data.load("mnist1d")
        result = jaxticket.train.train(model, data, optax.adam(1e-3), key=jax.random.key(0),
                                       steps=2000, batch_size=100, eval_every=200)
        result.history["test_accuracy"][-1]
    """
    check_single_key("key", key)
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
        loss_fn=loss_fn,
        metrics=metrics,
        mask_update=mask_update,
        _stacklevel=3,
    )
    return _take_first(result)


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
    start_step: int = 0,
    mesh: Mesh | None = None,
    show_progress: bool = False,
    loss_fn=None,
    metrics=None,
    mask_update=None,
    _stacklevel: int = 2,
) -> TrainResult:
    """Trains N seeds as one vmapped program; results are stacked on a leading seed axis.

    Seeds may share an init and differ in data order (repeat one init key) or the reverse
    (repeat one data key): instability analysis needs both.

    Args:
      init_keys, data_keys: N keys each; init keys are used only when ``params`` is None.
      params, model_state: optional variables stacked over the N seeds.
      mask: one mask for all seeds, or stacked per seed when ``mask_per_seed``.
      mesh: optional 1-D ``jax.sharding.Mesh`` whose axis spreads the seeds over devices.
        When N is not a multiple of the mesh size, the last seed is repeated to fill the
        mesh and the copies are dropped from the result (on devices that run in parallel,
        this costs no wall time). On a CPU-only machine, one device per core
        (``jax.config.update("jax_num_cpu_devices", os.cpu_count())`` before JAX starts)
        and ``mesh=seed_mesh()`` train seeds in parallel on all cores.
      show_progress: a progress bar; the results are bit-identical without it.
      loss_fn, metrics: the loss (default cross-entropy) and the metrics (default
        ``{"accuracy": accuracy}``) as in :func:`jaxticket.train.make_train_fn`;
        history keys are ``f"{split}_loss"`` and ``f"{split}_{name}"``.
      mask_update: a :class:`~jaxticket.train.MaskUpdate`: the mask changes inside the
        compiled run at its steps (sparse training; see ``jaxticket.sparse``), per seed
        (its key and gradient batch come from each seed's data key). ``mask`` may then
        be ``None`` (start dense).
      Other arguments as in :func:`jaxticket.train.make_train_fn`.

    Returns:
      The :class:`TrainResult`, stacked over seeds (``diverged``: ``bool[N]``,
      ``diverged_step``: ``int32[N]``). When some seeds diverged (non-finite loss or
      parameters), a :class:`~jaxticket.train.DivergenceWarning` names them and the step,
      once, after the run.
    """
    check_model_and_data(model, data)
    check_optimizer(optimizer)
    check_run_settings(
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        start_step=start_step,
    )
    check_compatible(model, data)
    loss_fn, metrics = check_loss_and_metrics(loss_fn, metrics)
    check_dataset(data, class_labels=uses_class_labels(loss_fn, metrics))
    check_mesh(mesh)
    check_bool("show_progress", show_progress)
    check_mask_update(mask_update, start_step=start_step, steps=steps)
    n = check_keys("init_keys", init_keys)
    n_data = check_keys("data_keys", data_keys)
    if n_data != n:
        raise ValueError(f"got {n} init keys but {n_data} data keys")
    if batch_size > data.x_train.shape[0]:
        raise ValueError(
            f"batch_size {batch_size} is larger than the training set "
            f"({data.x_train.shape[0]} examples)"
        )
    if mask_per_seed and mask is None:
        raise ValueError("mask_per_seed=True needs a mask stacked over seeds; got mask=None")
    if mask is not None:
        _check_mask(model, mask, mask_per_seed, n)
    check_loss_outputs(
        model.apply,
        *jax.eval_shape(model.init, jax.random.key(0)),
        data,
        loss_fn,
        metrics,
        batch_size=batch_size,
    )
    if params is None:
        params, model_state = init_seeds(model)(init_keys)
    else:
        _check_seed_axis("params", params, n)
        if model_state is None:
            model_state = _empty_state(model, init_keys[0])
        _check_seed_axis("model_state", model_state, n)
    fn = compiled_train_fn(
        model,
        optimizer,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=tuple(snapshot_steps),
        start_step=start_step,
        mask_per_seed=mask_per_seed,
        progress=show_progress,
        mesh=mesh,
        loss_fn=loss_fn,
        metrics=metrics,
        mask_update=mask_update,
    )
    order_keys, dropout_keys = _split_data_keys(data_keys)
    args = [params, model_state, mask, order_keys, dropout_keys]
    per_seed = [True, True, mask_per_seed, True, True]
    pad = 0 if mesh is None else -n % mesh.devices.size
    if pad:  # one small program pads every input
        padded = _pad_seeds([a for a, p in zip(args, per_seed, strict=True) if p], pad)
        args = [padded.pop(0) if p else a for a, p in zip(args, per_seed, strict=True)]
    if mesh is not None:
        args = [_shard(a, mesh) if p else a for a, p in zip(args, per_seed, strict=True)]
    result = fn(*args, data)
    if pad:  # n seeds cannot be split evenly: gather them on the mesh's first device
        result = _take_seeds(jax.device_put(result, mesh.devices.flat[0]), n)
    warn_if_diverged(result.diverged_step, stacklevel=_stacklevel + 1)
    return result


def seed_mesh(devices=None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) whose axis carries the seeds."""
    devices = jax.devices() if devices is None else devices
    return Mesh(check_devices(devices), (SEED_AXIS,))


def _empty_state(model, key: jax.Array):
    """The model state to use when params come without one: ``{}``-like for stateless
    models; a model with state (BatchNorm statistics) must be given its state."""
    template = jax.eval_shape(model.init, key)[1]
    leaves = leaves_with_paths(template)
    if leaves:
        raise ValueError(
            f"model {model.name!r} has non-trainable state ({', '.join(p for p, _ in leaves)}"
            "); pass model_state together with params"
        )
    return template


def _check_mask(model, mask, per_seed: bool, n: int) -> None:
    """The mask fits the model's params (one seed's slice of it when ``per_seed``)."""
    if per_seed:
        _check_seed_axis("mask", mask, n)
        mask = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape[1:], m.dtype) if hasattr(m, "dtype") else m,
            mask,
            is_leaf=lambda x: x is None,
        )
    validate_mask(mask, jax.eval_shape(model.init, jax.random.key(0))[0])


def _check_seed_axis(what: str, tree, n: int) -> None:
    for path, leaf in leaves_with_paths(tree):
        shape = jnp.shape(leaf)
        if not shape or shape[0] != n:
            raise ValueError(
                f"{what} leaf {path!r} has shape {tuple(shape)}; expected a leading seed axis "
                f"of size {n} (the number of keys)"
            )


@jax.jit
def _split_data_keys(data_keys: jax.Array) -> tuple[jax.Array, jax.Array]:
    # Two independent streams per data key: the engine folds the epoch into the first
    # (data order) and the step into the second (dropout), so no epoch's shuffle can
    # reuse a dropout key.
    return (
        jax.vmap(lambda k: jax.random.fold_in(k, 0))(data_keys),
        jax.vmap(lambda k: jax.random.fold_in(k, 1))(data_keys),
    )


# Jitted over whole trees: eager slicing would compile a little program per leaf shape.
@functools.partial(jax.jit, static_argnums=1)
def _pad_seeds(tree, pad: int):
    # Fill the mesh by repeating the last seed; its copies are dropped from the result.
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), tree)


@functools.partial(jax.jit, static_argnums=1)
def _take_seeds(tree, n: int):
    return jax.tree.map(lambda x: x[:n], tree)


@jax.jit
def _take_first(tree):
    return jax.tree.map(lambda x: x[0], tree)


def _add_axis(tree):
    return jax.tree.map(lambda x: jnp.asarray(x)[None], tree)


def _shard(tree, mesh: Mesh):
    # Split the leading (seed) axis over the mesh's first axis, as shard_map expects.
    spec = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    return jax.tree.map(lambda x: jax.device_put(x, spec), tree)
