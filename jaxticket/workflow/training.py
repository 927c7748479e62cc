"""What every training workflow shares: its training settings' checks, its seed keys and
how it trains stacked seeds over devices.

* :func:`check_training_settings`: the training fields every workflow config has (``seeds``,
  ``steps``, ``batch_size``, ``learning_rate``, ``optimizer``, ``schedule``, ``weight_decay``,
  ``eval_every``, ``val_size``, ``seed``, ``min_keep``), each a one-line ``ConfigError``;
* :func:`check_fits`: the settings that need the data and the model (``val_size``,
  ``batch_size``, ``layer_rates`` patterns), run before anything trains;
* :func:`stream_key` / :func:`seed_keys`: the key streams derived from a config's base seed
  (``fold_in(fold_in(key(seed), stream), s)`` for seed ``s``), so init, data order and
  masks or controls never share randomness;
* :func:`resolve_devices` / :func:`seed_mesh_for` / :func:`train_on_devices`: the devices a
  workflow trains on, and one ``train_seeds`` call over them that returns host arrays.
"""

from __future__ import annotations

import math
import warnings

import jax
import jax.numpy as jnp

from jaxticket._paths import leaves_with_paths, matches
from jaxticket.train import DivergenceWarning
from jaxticket.train.distributed import train_seeds_global
from jaxticket.train.runner import seed_mesh
from jaxticket.workflow.config import ConfigError

__all__ = [
    "OPTIMIZERS",
    "RATE_RESOLUTION",
    "SCHEDULES",
    "SEED_LIMIT",
    "STEP_LIMIT",
    "check_fits",
    "check_optimizer_and_eval",
    "check_seeds_and_steps",
    "check_training_settings",
    "require",
    "require_one_of",
    "resolve_devices",
    "resolved_rate",
    "seed_keys",
    "seed_mesh_for",
    "stream_key",
    "train_on_devices",
]

OPTIMIZERS = ("adam", "adamw", "sgd", "momentum")
SCHEDULES = ("constant", "cosine", "linear")
SEED_LIMIT = 2**32  # seeds seed numpy's generator and JAX's keys: [0, 2**32)
STEP_LIMIT = 2**31 - 1  # the engine's step counters are int32


# The pruner resolves a fraction or sparsity to six decimals (``fraction_of``): 0.9999999
# would prune everything and 1e-7 nothing, so requested rates must survive that rounding.
RATE_RESOLUTION = 1_000_000


def require(ok: bool, field: str, message: str) -> None:
    """Raises ``ConfigError(field, message)`` unless ``ok``."""
    if not ok:
        raise ConfigError(field, message)


def require_one_of(c, name: str, valid) -> None:
    """Field ``name`` of ``c`` is one of ``valid``, or a ``ConfigError`` listing them."""
    value = getattr(c, name)
    require(value in valid, name, f"{name} must be one of {', '.join(valid)}, got {value!r}")


def resolved_rate(rate: float) -> int:
    """``rate`` in millionths as the pruner resolves it (``-1`` when not finite)."""
    return round(rate * RATE_RESOLUTION) if math.isfinite(rate) else -1


def check_training_settings(c) -> None:
    """The training settings of a workflow config ``c`` in range, or a ``ConfigError``:
    :func:`check_seeds_and_steps`, then :func:`check_optimizer_and_eval`.

    Args:
      c: a config with the fields ``seeds``, ``steps``, ``batch_size``, ``learning_rate``,
        ``optimizer``, ``schedule``, ``weight_decay``, ``eval_every``, ``val_size``,
        ``seed`` and ``min_keep`` (``LotteryConfig``, ``SparseTrainConfig``).

    Raises:
      ConfigError: the first setting out of range, in the order above, naming the field
        and its range; ``weight_decay`` > 0 with ``optimizer="adam"`` (Adam has none: it
        would be ignored).
    """
    check_seeds_and_steps(c)
    check_optimizer_and_eval(c)


def check_seeds_and_steps(c) -> None:
    """``seeds >= 1`` and ``steps`` in ``[1, 2**31 - 1]`` (int32 step counters), or a
    ``ConfigError``. A workflow whose own checks read ``steps`` (IMP's ``rewind``) runs
    this first and :func:`check_optimizer_and_eval` after them."""
    require(c.seeds >= 1, "seeds", f"seeds must be >= 1, got {c.seeds}")
    require(c.steps >= 1, "steps", f"steps must be >= 1, got {c.steps}")
    require(
        c.steps <= STEP_LIMIT,
        "steps",
        f"steps must be <= 2**31 - 1 (int32 step counters), got {c.steps}",
    )


def check_optimizer_and_eval(c) -> None:
    """The optimizer settings, ``eval_every`` (in ``[1, steps]``), ``val_size``, ``seed``
    (in ``[0, 2**32)``) and ``min_keep``, or a ``ConfigError``."""
    require(c.batch_size >= 1, "batch_size", f"batch_size must be >= 1, got {c.batch_size}")
    require(
        math.isfinite(c.learning_rate) and c.learning_rate > 0,
        "learning_rate",
        f"learning_rate must be finite and > 0, got {c.learning_rate}",
    )
    require_one_of(c, "optimizer", OPTIMIZERS)
    require_one_of(c, "schedule", SCHEDULES)
    require(
        math.isfinite(c.weight_decay) and c.weight_decay >= 0,
        "weight_decay",
        f"weight_decay must be finite and >= 0, got {c.weight_decay}",
    )
    require(
        c.weight_decay == 0 or c.optimizer != "adam",
        "weight_decay",
        f"weight_decay {c.weight_decay} with optimizer adam would be ignored (adam has none); "
        "use optimizer adamw (decoupled decay)",
    )
    require(
        1 <= c.eval_every <= c.steps,
        "eval_every",
        f"eval_every must be in [1, steps={c.steps}], got {c.eval_every}",
    )
    require(c.val_size >= 1, "val_size", f"val_size must be >= 1, got {c.val_size}")
    require(0 <= c.seed < SEED_LIMIT, "seed", f"seed must be in [0, 2**32), got {c.seed}")
    require(c.min_keep >= 0, "min_keep", f"min_keep must be >= 0, got {c.min_keep}")


def check_fits(c, data, mask) -> None:
    """The checks that need the data and the model, run before the first phase trains.

    Args:
      c: the config (fields ``val_size``, ``batch_size``, ``dataset``, ``model`` and, where
        the workflow has it, ``layer_rates``).
      data: the loaded data set (before the validation split).
      mask: ``dense_mask`` of the model's params (its non-``None`` leaves are prunable).

    Raises:
      ConfigError: ``val_size`` leaves no training examples, ``batch_size`` exceeds what
        is left, or a ``layer_rates`` pattern matches no prunable leaf.
    """
    n = int(data.y_train.shape[0])
    if not c.val_size < n:
        raise ConfigError(
            "val_size",
            f"val_size must be < {n} (the training examples of {c.dataset!r}), got {c.val_size}",
        )
    if c.batch_size > n - c.val_size:
        raise ConfigError(
            "batch_size",
            f"batch_size must be <= {n - c.val_size} (the training examples of {c.dataset!r} "
            f"left after val_size={c.val_size}), got {c.batch_size}",
        )
    prunable = [path for path, _ in leaves_with_paths(mask)]
    for pattern, _ in getattr(c, "layer_rates", ()):
        if not any(matches(path, pattern) for path in prunable):
            raise ConfigError(
                "layer_rates",
                f"layer_rates: pattern {pattern!r} matches no prunable leaf of {c.model!r}; "
                f"prunable leaves: {', '.join(prunable)}",
            )


def stream_key(base_seed: int, stream: int) -> jax.Array:
    """The key of one stream of a run: ``fold_in(key(base_seed), stream)``."""
    return jax.random.fold_in(jax.random.key(base_seed), stream)


def seed_keys(base_seed: int, stream: int, seeds: int) -> jax.Array:
    """One key per seed of a stream, stacked: ``fold_in(stream_key(base_seed, stream), s)``
    for ``s`` in ``0..seeds-1``."""
    key = stream_key(base_seed, stream)
    return jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(seeds))


def resolve_devices(devices, entry: str) -> tuple:
    """``devices`` as a tuple (``None``: every device of JAX's default backend).

    Raises:
      ValueError: ``devices`` is empty (the message names the entry point ``entry``).
    """
    devices = tuple(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError(f"{entry}: devices is empty; pass at least one device")
    return devices


def seed_mesh_for(devices: tuple, runs: int):
    """The mesh ``runs`` stacked runs are spread over: the first ``runs`` of ``devices``
    (``None`` when that is one device: everything trains in one vmapped program)."""
    devices = devices[:runs]
    return seed_mesh(devices) if len(devices) > 1 else None


def train_on_devices(train_fn, model, data, optimizer, devices: tuple, *, data_keys, **kwargs):
    """``train_fn`` (``jaxticket.train.train_seeds``) on the stacked runs, one per row of
    ``data_keys``, spread over ``devices``, with the engine's ``DivergenceWarning``
    silenced (the workflow warns naming phase and seed instead of the run's position in the
    batch); the result as host NumPy arrays.

    Args:
      train_fn: ``train_seeds``, passed by the workflow module (its own name for it, the
        one a test replaces to see what trains).
      model, data, optimizer: as for ``train_seeds``.
      devices: the workflow's devices (:func:`resolve_devices`); the runs are spread over
        the first ``len(data_keys)`` of them (:func:`seed_mesh_for`). Devices of several
        processes (after ``jax.distributed.initialize``; ``docs/multihost.md``): the runs
        are spread over all of them (``train_seeds_global``), and every process gets the
        whole result.
      data_keys: the runs' data-order keys, stacked.
      **kwargs: the rest of ``train_seeds``'s arguments (``init_keys``, ``steps``,
        ``batch_size``, ``params``, ...), except ``mesh``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DivergenceWarning)
        if any(d.process_index != jax.process_index() for d in devices):
            # Every process holds part of the seed axis, so the mesh takes all devices
            # (the last run is repeated to fill it); the result comes back on the host.
            return train_seeds_global(
                model,
                data,
                optimizer,
                data_keys=data_keys,
                mesh=seed_mesh(devices),
                train_fn=train_fn,
                **kwargs,
            )
        mesh = seed_mesh_for(devices, data_keys.shape[0])
        result = train_fn(model, data, optimizer, data_keys=data_keys, mesh=mesh, **kwargs)
    # Workflow state lives on the host: it is checkpointed anyway, and slicing or stacking
    # it there costs no compilation (each eager JAX op compiles per shape).
    return jax.device_get(result)
