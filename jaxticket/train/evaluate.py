"""Loss and metrics of a model over a whole split, in fixed-size chunks."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxticket.train.loss_checks import check_loss_and_metrics
from jaxticket.train.losses import accuracy, cross_entropy

__all__ = ["accuracy", "cross_entropy", "evaluate"]


def evaluate(
    apply,
    params,
    model_state,
    x,
    y,
    *,
    batch_size: int = 1024,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    metrics: Mapping[str, Callable[[jax.Array, jax.Array], jax.Array]] | None = None,
) -> dict[str, jax.Array]:
    """Mean loss and metrics of ``apply`` (eval mode) on ``(x, y)``.

    The split is cut into chunks of at most ``batch_size`` (padded at the end, padding
    weighted out) and mapped with ``lax.map``, so memory stays bounded for large test sets.
    Within a chunk, the loss and each metric are applied to every example as a batch of
    one (``vmap``) and averaged over the split: for functions that are means over their
    batch (``cross_entropy``, ``accuracy``, a mean squared error) this is the exact mean
    over the split, independent of ``batch_size``.

    Args:
      apply: the model's ``apply(params, state, x, *, train, key)``.
      params, model_state: the model's variables.
      x, y: inputs and labels (any shape and dtype the functions take);
        ``x.shape[0] == y.shape[0]``.
      batch_size: largest chunk evaluated at once.
      loss_fn: ``loss_fn(logits, labels) -> scalar`` (default :func:`cross_entropy`).
      metrics: name -> ``fn(logits, labels) -> scalar`` (default
        ``{"accuracy": accuracy}``).

    Returns:
      ``{"loss": scalar, **{name: scalar for each metric}}``.
    """
    loss_fn, metrics = check_loss_and_metrics(loss_fn, metrics)
    fns = {"loss": loss_fn, **metrics}
    n = x.shape[0]
    chunk = min(batch_size, n)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(
        chunks, chunk, *x.shape[1:]
    )
    ys = jnp.concatenate([y, jnp.zeros((pad, *y.shape[1:]), y.dtype)]).reshape(
        chunks, chunk, *y.shape[1:]
    )
    valid = (jnp.arange(chunks * chunk) < n).reshape(chunks, chunk)

    def one(args):
        xb, yb, vb = args
        logits, _ = apply(params, model_state, xb, train=False, key=None)
        sums = {}
        for name, fn in fns.items():
            each = jax.vmap(lambda lg, lb, fn=fn: fn(lg[None], lb[None]))(logits, yb)
            # Sums in at least float32 (a bool, integer or 16-bit metric, say).
            each = each.astype(jnp.promote_types(each.dtype, jnp.float32))
            sums[name] = jnp.sum(each * vb)
        return sums

    sums = jax.lax.map(one, (xs, ys, valid))
    return {name: jnp.sum(s) / n for name, s in sums.items()}
