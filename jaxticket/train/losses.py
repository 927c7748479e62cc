"""The engine's default loss and metric, and the contract a custom one keeps.

A loss is ``loss_fn(logits, labels) -> scalar``: the mean loss over a batch (the leading
axis of ``logits`` and ``labels``). The engine differentiates it in each training step
and reports it on every evaluated split. A metric has the same signature and is only
reported. ``labels`` are whatever the data set holds (integer classes, float regression
targets, token sequences): the function decides what it accepts.

Evaluation applies each function to every example as a batch of one and averages over
the split, so a function that is a mean over its batch (as both defaults are) gives the
exact mean over the split, whatever the evaluation chunk size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels (the engine's default loss)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose largest logit is the integer label (the default metric)."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)


def default_metrics() -> dict:
    """The metrics the engine records when none are given: ``{"accuracy": accuracy}``."""
    return {"accuracy": accuracy}


def uses_class_labels(loss_fn, metrics) -> bool:
    """Whether the built-in classification loss or metric is among those used, so the data
    must hold 1-D integer labels in ``[0, num_classes)``."""
    return loss_fn is cross_entropy or any(fn is accuracy for fn in metrics.values())
