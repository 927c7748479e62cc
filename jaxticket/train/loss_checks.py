"""Up-front checks of a run's loss and metrics: the functions themselves (callables,
metric names; defaults filled in) and, abstractly, their outputs on the model's logits and
the data's labels. ``jaxticket.train.checks`` re-exports these names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.train.losses import cross_entropy, default_metrics

RESERVED_METRIC_NAMES = ("loss", "step")


def check_loss_and_metrics(
    loss_fn: Any, metrics: Any
) -> tuple[Callable[..., Any], dict[str, Callable[..., Any]]]:
    """``loss_fn`` and ``metrics`` with their defaults filled in (``cross_entropy``;
    ``{"accuracy": accuracy}``), checked: callables, and metric names that are non-empty
    strings other than ``"loss"`` and ``"step"`` (history keys are ``f"{split}_{name}"``).

    Raises:
      TypeError: a loss or metric that is not callable, metrics that are not a mapping.
      ValueError: a reserved or empty metric name.
    """
    if loss_fn is None:
        loss_fn = cross_entropy
    elif not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function loss_fn(logits, labels) -> scalar mean loss, got "
            f"{type(loss_fn).__name__}"
        )
    if metrics is None:
        return loss_fn, default_metrics()
    if not isinstance(metrics, Mapping):
        raise TypeError(
            "metrics must be a mapping name -> fn(logits, labels) -> scalar, such as "
            f'{{"accuracy": jaxticket.train.accuracy}}, got {type(metrics).__name__}'
        )
    for name, fn in metrics.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"metrics names must be non-empty strings, got {name!r}")
        if name in RESERVED_METRIC_NAMES:
            raise ValueError(
                f"metrics name {name!r} is reserved (the history already holds 'step' and "
                "'<split>_loss' for loss_fn); rename the metric"
            )
        if not callable(fn):
            raise TypeError(
                f"metrics[{name!r}] must be a function fn(logits, labels) -> scalar, got "
                f"{type(fn).__name__}"
            )
    return loss_fn, dict(metrics)


def check_loss_outputs(
    apply: Callable[..., Any],
    params: Any,
    model_state: Any,
    data: Any,
    loss_fn: Callable[..., Any],
    metrics: Mapping[str, Callable[..., Any]],
    *,
    batch_size: int,
) -> None:
    """Abstractly (``jax.eval_shape``, no FLOPs) runs the model on training examples and
    checks that ``loss_fn`` gives a real floating-point scalar on a training batch and on a
    batch of one (evaluation), and that every metric gives a scalar on a batch of one.

    Raises:
      ValueError: a function that fails on the model's logits and the data's labels, or
        does not return a scalar.
      TypeError: a loss that is not floating-point (it cannot be differentiated).
    """
    params, model_state = jax.tree.map(_spec, (params, model_state))

    def forward(n):
        x = jax.ShapeDtypeStruct((n, *data.x_train.shape[1:]), data.x_train.dtype)
        logits = jax.eval_shape(
            lambda p, s, xb: apply(p, s, xb, train=False, key=None)[0], params, model_state, x
        )
        y = jax.ShapeDtypeStruct((n, *data.y_train.shape[1:]), data.y_train.dtype)
        return logits, y

    shapes = {1: forward(1)}
    if batch_size != 1:
        shapes[batch_size] = forward(batch_size)
    checks = [("loss_fn", loss_fn, n) for n in shapes]
    checks += [(f"metrics[{name!r}]", fn, 1) for name, fn in metrics.items()]
    for setting, fn, n in checks:
        logits, y = shapes[n]
        what = (
            f"logits {logits.dtype}{list(logits.shape)} and labels {y.dtype}{list(y.shape)}"
            if isinstance(logits, jax.ShapeDtypeStruct)
            else f"the model's outputs and labels {y.dtype}{list(y.shape)}"
        )
        try:
            out = jax.eval_shape(fn, logits, y)
        except Exception as e:  # noqa: BLE001  (the user's function: say which one failed)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ValueError(f"{setting} failed on {what}: {first}") from e
        if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
            got = f"shape {tuple(out.shape)}" if hasattr(out, "shape") else type(out).__name__
            raise ValueError(
                f"{setting} must return a scalar (the mean over the batch), got {got} on {what}"
            )
        if setting == "loss_fn" and not jnp.issubdtype(out.dtype, jnp.floating):
            raise TypeError(
                f"loss_fn must return a floating-point scalar (it is differentiated), got "
                f"{out.dtype} on {what}"
            )


def _spec(leaf: Any) -> Any:
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
        return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype)
    return leaf
