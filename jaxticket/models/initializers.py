"""Named weight-initialization schemes and the layer constructors that use them.

Every zoo model takes an ``init`` keyword naming one of ``SCHEMES``, so that a
lottery experiment can say exactly which initial distribution a ticket was drawn from.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxticket import _random

Initializer = Callable[..., jax.Array]

SCHEMES = ("glorot_normal", "glorot_uniform", "kaiming_normal", "torch")
"""``glorot_*``: Var = 2/(fan_in+fan_out), zero bias (Frankle & Carbin use Gaussian Glorot).
``kaiming_normal``: Var = 2/fan_in, zero bias (He et al.; ResNet, VGG).
``torch``: PyTorch's default for Linear/Conv, U(±1/sqrt(fan_in)) for kernel and bias
(the MNIST-1D reference models were trained with it)."""


def dense(
    in_features: int, out_features: int, *, init: str, rngs: nnx.Rngs, use_bias: bool = True
) -> nnx.Linear:
    """A ``nnx.Linear`` initialized by a named scheme.

    Args:
      in_features: input width.
      out_features: output width.
      init: one of ``SCHEMES``.
      rngs: random streams for the parameters.
      use_bias: whether the layer has a bias.

    Returns:
      The layer; its parameters are ``kernel`` (in, out) and ``bias`` (out,).
    """
    kernel_init, bias_init = _scheme(init, fan_in=in_features)
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        rngs=rngs,
    )


def conv(
    in_features: int,
    out_features: int,
    kernel_size: Sequence[int],
    *,
    init: str,
    rngs: nnx.Rngs,
    strides: int | Sequence[int] = 1,
    padding: str | Sequence[tuple[int, int]] = "SAME",
    use_bias: bool = True,
) -> nnx.Conv:
    """A channels-last ``nnx.Conv`` (1-D or 2-D by ``len(kernel_size)``) with a named init.

    Args:
      in_features: input channels.
      out_features: output channels (filters).
      kernel_size: spatial kernel shape, e.g. ``(3, 3)``.
      init: one of ``SCHEMES``.
      rngs: random streams for the parameters.
      strides: convolution strides.
      padding: ``'SAME'``, ``'VALID'`` or explicit ``[(lo, hi), ...]`` per spatial axis.
      use_bias: whether the layer has a bias.

    Returns:
      The layer; ``kernel`` has shape ``(*kernel_size, in_features, out_features)``.
    """
    fan_in = in_features * math.prod(kernel_size)
    kernel_init, bias_init = _scheme(init, fan_in=fan_in)
    return nnx.Conv(
        in_features,
        out_features,
        tuple(kernel_size),
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        rngs=rngs,
    )


def check_scheme(init: str, model: str) -> None:
    """Raises ValueError when ``init`` is not a known scheme name."""
    if init not in SCHEMES:
        raise ValueError(
            f"model {model!r}: unknown init {init!r}; valid schemes are: {', '.join(SCHEMES)}"
        )


def _scheme(init: str, *, fan_in: int) -> tuple[Initializer, Initializer]:
    if init == "glorot_normal":
        return variance_scaling(1.0, "fan_avg", "truncated_normal"), jax.nn.initializers.zeros
    if init == "glorot_uniform":
        return variance_scaling(1.0, "fan_avg", "uniform"), jax.nn.initializers.zeros
    if init == "kaiming_normal":
        return variance_scaling(2.0, "fan_in", "truncated_normal"), jax.nn.initializers.zeros
    if init == "torch":
        # kaiming_uniform(a=sqrt(5)) reduces to U(±1/sqrt(fan_in)), i.e. Var = 1/(3 fan_in).
        return variance_scaling(1.0 / 3.0, "fan_in", "uniform"), _uniform(fan_in**-0.5)
    check_scheme(init, "?")
    raise AssertionError("unreachable")


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """``jax.nn.initializers.variance_scaling`` (default axes: fan-in on axis -2, fan-out
    on -1, the rest receptive field), bit for bit, drawn flat: a kernel with a short last
    axis compiles several times faster (see ``jaxticket._random``)."""
    if mode not in ("fan_in", "fan_avg") or distribution not in ("truncated_normal", "uniform"):
        raise ValueError(f"unsupported variance scaling {mode!r}, {distribution!r}")

    def init(key, shape, dtype=jnp.float32):
        shape = tuple(shape)
        fan_in, fan_out = _fans(shape)
        denominator = fan_in if mode == "fan_in" else (fan_in + fan_out) / 2
        variance = jnp.array(scale / denominator, dtype=dtype)
        if distribution == "truncated_normal":
            # 0.8796... is the standard deviation of a standard normal truncated to (-2, 2).
            std = jnp.sqrt(variance) / jnp.array(0.87962566103423978, dtype)
            return _random.truncated_normal(key, -2, 2, shape, dtype) * std
        return _random.uniform(key, shape, dtype, -1) * jnp.sqrt(3 * variance)

    return init


def _fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) < 2:
        raise ValueError(f"variance scaling needs a kernel of rank >= 2, got shape {shape}")
    receptive_field = math.prod(shape) / shape[-2] / shape[-1]
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _uniform(bound: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return _random.uniform(key, tuple(shape), dtype, -bound, bound)

    return init
