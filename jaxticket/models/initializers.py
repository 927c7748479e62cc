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
    inits = jax.nn.initializers
    if init == "glorot_normal":
        return inits.glorot_normal(), inits.zeros
    if init == "glorot_uniform":
        return inits.glorot_uniform(), inits.zeros
    if init == "kaiming_normal":
        return inits.he_normal(), inits.zeros
    if init == "torch":
        # kaiming_uniform(a=sqrt(5)) reduces to U(±1/sqrt(fan_in)), i.e. Var = 1/(3 fan_in).
        return inits.variance_scaling(1.0 / 3.0, "fan_in", "uniform"), _uniform(fan_in**-0.5)
    check_scheme(init, "?")
    raise AssertionError("unreachable")


def _uniform(bound: float) -> Initializer:
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init
