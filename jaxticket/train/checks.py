"""Up-front checks of a training call: one-line errors naming the setting, before any
compiling (a bad value must never reach a trace and fail there with a deep traceback)."""

from __future__ import annotations

import operator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxticket.train.loss_checks import (  # re-exported: callers import them from here
    RESERVED_METRIC_NAMES,  # noqa: F401
    check_loss_and_metrics,  # noqa: F401
    check_loss_outputs,  # noqa: F401
)

STEP_LIMIT = 2**31 - 1


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """``value`` as an ``int`` (NumPy integers accepted), or a one-line error.

    Raises:
      TypeError: not an integer (floats and bools included).
      ValueError: below ``minimum``.
    """
    if isinstance(value, bool) or not _is_integer(value):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_run_settings(
    *,
    steps: Any,
    batch_size: Any,
    eval_every: Any,
    snapshot_steps: Any,
    start_step: Any,
    eval_batch_size: Any = 1024,
) -> dict[str, Any]:
    """The run's static settings, checked and normalized (``eval_every=None`` means
    ``steps``; ``snapshot_steps`` becomes a tuple of ints).

    Raises:
      TypeError, ValueError: naming the setting and what was expected.
    """
    steps = check_int("steps", steps, minimum=1)
    start_step = check_int("start_step", start_step, minimum=0)
    if start_step + steps > STEP_LIMIT:  # step counters are int32 inside the program
        what = f"start_step + steps = {start_step} + {steps}" if start_step else f"got {steps}"
        raise ValueError(f"steps must be <= 2**31 - 1 (int32 step counters), {what}")
    batch_size = check_int("batch_size", batch_size, minimum=1)
    eval_every = steps if eval_every is None else check_int("eval_every", eval_every, minimum=1)
    eval_batch_size = check_int("eval_batch_size", eval_batch_size, minimum=1)
    if isinstance(snapshot_steps, (str, bytes)) or not hasattr(snapshot_steps, "__iter__"):
        raise TypeError(
            f"snapshot_steps must be a sequence of ints, got {snapshot_steps!r} "
            f"(one step s: snapshot_steps=({snapshot_steps!r},))"
        )
    snaps = []
    for s in snapshot_steps:
        s = check_int("snapshot step", s, minimum=0)
        if not start_step <= s <= start_step + steps:
            raise ValueError(
                f"snapshot step {s} is outside the run [{start_step}, {start_step + steps}]"
            )
        snaps.append(s)
    return dict(
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=tuple(snaps),
        start_step=start_step,
        eval_batch_size=eval_batch_size,
    )


def check_optimizer(optimizer: Any) -> None:
    """Raises TypeError unless ``optimizer`` is an optax transformation (``init``/``update``)."""
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if callable(optimizer) and not hasattr(optimizer, "init"):
        name = getattr(optimizer, "__name__", type(optimizer).__name__)
        raise TypeError(
            f"optimizer must be an optax GradientTransformation such as optax.adam(1e-3), got "
            f"the function {name!r}: call it with its hyperparameters"
        )
    methods = (getattr(optimizer, "init", None), getattr(optimizer, "update", None))
    if not all(callable(m) for m in methods):
        raise TypeError(
            "optimizer must be an optax GradientTransformation such as optax.adam(1e-3), got "
            f"{type(optimizer).__name__}"
        )


def check_keys(name: str, keys: Any) -> int:
    """The number of keys in ``keys`` (one per seed), or a one-line error.

    Accepts typed keys (``jax.random.key``, shape ``(n,)``) and legacy ``uint32`` keys
    (``jax.random.PRNGKey``, shape ``(n, 2)``).
    """
    if not hasattr(keys, "shape") or not hasattr(keys, "dtype"):
        raise TypeError(
            f"{name} must be an array of jax.random keys, one per seed, got {type(keys).__name__}"
        )
    shape = tuple(keys.shape)
    if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        if len(shape) != 1:
            hint = " (a single key: use key[None] or jax.random.split(key, n))" if not shape else ""
            raise ValueError(
                f"{name} must hold one key per seed, shape (n,); got shape {shape}{hint}"
            )
        return shape[0]
    if keys.dtype == jnp.uint32 and len(shape) == 2 and shape[1] == 2:
        return shape[0]
    raise TypeError(
        f"{name} must be jax.random keys, one per seed (jax.random.split(jax.random.key(0), n)); "
        f"got a {keys.dtype} array of shape {shape}"
    )


def check_single_key(name: str, key: Any) -> None:
    """Raises unless ``key`` is one jax.random key (typed, shape ``()``, or legacy ``(2,)``)."""
    if hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if tuple(key.shape) == ():
            return
        raise ValueError(
            f"{name} must be a single key, got keys of shape {tuple(key.shape)} "
            "(several seeds: use train_seeds)"
        )
    if hasattr(key, "dtype") and key.dtype == jnp.uint32 and tuple(key.shape) == (2,):
        return
    got = f"a {key.dtype} array of shape {tuple(key.shape)}" if hasattr(key, "dtype") else repr(key)
    raise TypeError(f"{name} must be a jax.random key (jax.random.key(seed)), got {got}")


def check_model_and_data(model: Any, data: Any) -> None:
    """Raises TypeError unless ``model`` looks like a ``Model`` and ``data`` like a ``Dataset``."""
    for field in ("init", "apply", "input_shape", "num_classes"):
        if not hasattr(model, field):
            raise TypeError(
                f"model must be a jaxticket.models.Model (jaxticket.models.get(...)), got "
                f"{type(model).__name__} without {field!r}"
            )
    for field in ("x_train", "y_train", "x_test", "y_test", "input_shape", "num_classes"):
        if not hasattr(data, field):
            raise TypeError(
                f"data must be a jaxticket.data.Dataset (jaxticket.data.load(...)), got "
                f"{type(data).__name__} without {field!r}"
            )


def check_dataset(data: Any, *, class_labels: bool = True) -> None:
    """Each split of ``data`` is usable: ``x`` and ``y`` arrays of one length (at least one
    example). With ``class_labels`` (the default loss or accuracy metric is in use), ``y``
    must also be 1-D integer labels and (when concrete) every label in
    ``[0, num_classes)``: out-of-range labels would otherwise give a NaN loss that reads as
    divergence, or a silently wrong accuracy. Without it, ``y`` may have any shape and
    dtype the loss accepts (float regression targets, token sequences).

    Raises:
      TypeError: a split that is not an array, or labels that are not integers.
      ValueError: lengths that differ, an empty split, labels out of range (names the split).
    """
    splits = [("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)]
    if getattr(data, "x_val", None) is not None or getattr(data, "y_val", None) is not None:
        splits.append(("val", data.x_val, data.y_val))
    for split, x, y in splits:
        for name, a in ((f"x_{split}", x), (f"y_{split}", y)):
            if not (hasattr(a, "shape") and hasattr(a, "dtype")):
                raise TypeError(f"data.{name} must be an array, got {type(a).__name__}")
        if class_labels and (y.ndim != 1 or not jnp.issubdtype(y.dtype, jnp.integer)):
            raise TypeError(
                f"data.y_{split} must be 1-D integer class labels (not one-hot), got a "
                f"{y.dtype} array of shape {tuple(y.shape)}; other targets need a loss_fn "
                "and metrics that take them (metrics={} drops accuracy)"
            )
        if not y.shape:
            raise ValueError(f"data.y_{split} must have a leading example axis, got a scalar")
        if not x.shape or x.shape[0] != y.shape[0]:
            raise ValueError(
                f"data.x_{split} has {x.shape[0] if x.shape else 0} examples but "
                f"data.y_{split} has {y.shape[0]} labels"
            )
        if y.shape[0] == 0:
            raise ValueError(f"data split {split!r} is empty (needs at least one example)")
        if not class_labels or isinstance(y, jax.core.Tracer):
            continue
        lo, hi = (int(v) for v in jax.device_get((jnp.min(y), jnp.max(y))))
        if lo < 0 or hi >= data.num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"data.y_{split} has label {bad} outside [0, num_classes={data.num_classes})"
            )


def check_mesh(mesh: Any) -> None:
    """Raises TypeError unless ``mesh`` is None or a ``jax.sharding.Mesh`` with devices."""
    if mesh is None:
        return
    if not isinstance(mesh, jax.sharding.Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (jaxticket.train.seed_mesh()) or None, got "
            f"{type(mesh).__name__}"
        )
    if mesh.devices.size == 0:
        raise ValueError("mesh has no devices; seed_mesh() uses all of jax.devices()")


def check_devices(devices: Any) -> np.ndarray:
    """``devices`` as an array of JAX devices (at least one), or a one-line error."""
    if isinstance(devices, jax.Device):
        devices = [devices]
    try:
        arr = np.asarray(list(devices), dtype=object).reshape(-1)
    except TypeError:
        raise TypeError(
            f"devices must be a sequence of jax devices, got {type(devices).__name__}"
        ) from None
    if arr.size == 0:
        raise ValueError("devices is empty; pass at least one jax device (jax.devices())")
    for i, d in enumerate(arr):
        if not isinstance(d, jax.Device):
            raise TypeError(
                f"devices[{i}] must be a jax device (from jax.devices()), got {type(d).__name__}"
            )
    return arr


def check_bool(name: str, value: Any) -> None:
    """Raises TypeError unless ``value`` is True or False (a string "no" would be truthy)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _is_integer(value: Any) -> bool:
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_batches(data, batch_size: int, *, class_labels: bool) -> int:
    """Checks ``data`` for a run (labels when concrete, see :func:`check_dataset`) and that
    one batch fits its training split; returns the number of training examples."""
    check_dataset(data, class_labels=class_labels)
    n_train = data.x_train.shape[0]
    if batch_size > n_train:
        raise ValueError(
            f"batch_size {batch_size} is larger than the training set ({n_train} examples)"
        )
    return n_train
