"""BatchNorm running statistics recomputed on training data (for interpolated networks).

The running mean and variance of a network on the straight path between two trained
networks are not the statistics of its own activations: interpolating the end points'
running averages gives numbers that belong to neither. Frankle et al. (2020) therefore
recompute them on training data at each α before evaluating. :func:`recompute_batchnorm`
does this for any model whose train-mode ``apply`` updates each state leaf as an
exponential moving average, ``new = m·old + (1 − m)·s(batch)`` (Flax's ``nnx.BatchNorm``,
whatever its momentum ``m``): in train mode the forward pass normalises with the batch's
own statistics, so ``s(batch)`` does not depend on the state that goes in, and two passes
from two known states reveal ``m`` and ``s`` exactly (up to float rounding), per element.

The recomputed state is the mean over the batches of the per-batch statistics: per channel,
the mean of the batch means and the mean of the batch variances (biased, as Flax computes
them). This is what a running average converges to on these batches, and what PyTorch's
cumulative ``momentum=None`` recomputation gives (PyTorch keeps the unbiased variance).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxticket.train.checks import check_int

__all__ = ["has_state", "recompute_batchnorm", "training_batches"]

# The probe state is this many times (1 + |first batch's statistic|), so the rounding error
# in m = (s_probe - s_zero) / probe stays ~ float eps whatever the statistics' scale.
_PROBE_SCALE = 1024.0


def has_state(model_state) -> bool:
    """True when a model state has any array leaf (BatchNorm statistics, say)."""
    return bool(jax.tree.leaves(model_state))


def recompute_batchnorm(apply, params, model_state, batches, *, key=None):
    """The running statistics of ``params``'s network, estimated from training batches.

    Pure and jittable (vmap it over networks). Every state leaf that a train-mode pass
    updates as ``new = m·old + (1 − m)·s(batch)`` is replaced by the mean over
    ``batches`` of ``s(batch)``; a leaf that train mode leaves unchanged (``m == 1``) is
    kept as given. The passes are ``len(batches) + 1`` train-mode forward passes: one from
    a zero state per batch (giving ``(1 − m)·s``), and one from a large known state on the
    first batch (giving ``m``).

    Args:
      apply: the model's ``apply(params, state, x, *, train, key)``.
      params: one network's params.
      model_state: that network's state (its values only matter for leaves train mode
        does not update).
      batches: training inputs of shape ``(num_batches, batch_size, *input_shape)``.
      key: the key handed to train-mode ``apply`` (dropout); default ``jax.random.key(0)``.

    Returns:
      A state of the same structure with the recomputed statistics.
    """
    key = jax.random.key(0) if key is None else key
    zeros = jax.tree.map(jnp.zeros_like, model_state)

    def update_from(state, x):
        return apply(params, state, x, train=True, key=key)[1]

    # (1 - m) * s(batch) for every batch, stacked on a leading axis.
    scaled = jax.lax.map(lambda x: update_from(zeros, x), batches)
    first = jax.tree.map(lambda s: s[0], scaled)
    probe = jax.tree.map(lambda s: _PROBE_SCALE * (1.0 + jnp.abs(s)), first)
    probed = update_from(probe, batches[0])

    def estimate(old, stacked, first_scaled, probe_value, probed_value):
        momentum = (probed_value - first_scaled) / probe_value
        keep = 1.0 - momentum  # the weight of the batch statistic in one update
        updated = jnp.abs(keep) > 1e-5
        mean_stat = jnp.mean(stacked, axis=0) / jnp.where(updated, keep, 1.0)
        return jnp.where(updated, mean_stat, old).astype(old.dtype)

    return jax.tree.map(estimate, model_state, scaled, first, probe, probed)


def training_batches(data, num: int, size: int) -> jax.Array:
    """The first ``num * size`` training inputs of ``data`` as ``num`` batches of ``size``.

    Raises:
      ValueError/TypeError: ``num`` or ``size`` not a positive int, or too few examples.
    """
    num = check_int("BatchNorm recomputation: bn_batches", num, minimum=1)
    size = check_int("BatchNorm recomputation: bn_batch_size", size, minimum=1)
    have = int(data.x_train.shape[0])
    if num * size > have:
        raise ValueError(
            f"BatchNorm recomputation needs bn_batches*bn_batch_size = {num * size} training "
            f"examples, data set {data.name!r} has {have}"
        )
    return data.x_train[: num * size].reshape(num, size, *data.x_train.shape[1:])
