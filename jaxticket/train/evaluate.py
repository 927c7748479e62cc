"""Loss and accuracy of a classifier over a whole split, in fixed-size chunks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def evaluate(apply, params, model_state, x, y, *, batch_size: int = 1024) -> dict[str, jax.Array]:
    """Mean loss and accuracy of ``apply`` (eval mode) on ``(x, y)``.

    The split is cut into chunks of at most ``batch_size`` (padded at the end, padding
    weighted out) and mapped with ``lax.map``, so memory stays bounded for large test sets.

    Args:
      apply: the model's ``apply(params, state, x, *, train, key)``.
      params, model_state: the model's variables.
      x, y: inputs and integer labels; ``x.shape[0] == y.shape[0]``.
      batch_size: largest chunk evaluated at once.

    Returns:
      ``{"loss": scalar, "accuracy": scalar}``.
    """
    n = x.shape[0]
    chunk = min(batch_size, n)
    chunks = -(-n // chunk)
    pad = chunks * chunk - n
    xs = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)]).reshape(
        chunks, chunk, *x.shape[1:]
    )
    ys = jnp.concatenate([y, jnp.zeros((pad,), y.dtype)]).reshape(chunks, chunk)
    valid = (jnp.arange(chunks * chunk) < n).reshape(chunks, chunk)

    def one(args):
        xb, yb, vb = args
        logits, _ = apply(params, model_state, xb, train=False, key=None)
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, yb)
        correct = jnp.argmax(logits, axis=-1) == yb
        return jnp.sum(losses * vb), jnp.sum(correct & vb)

    loss_sums, correct = jax.lax.map(one, (xs, ys, valid))
    return {"loss": jnp.sum(loss_sums) / n, "accuracy": jnp.sum(correct) / n}
