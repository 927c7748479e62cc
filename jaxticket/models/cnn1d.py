"""The MNIST-1D reference CNN (Greydanus 2020): about 94% test accuracy there.

Three strided 1-D convolutions with 25 channels (kernels 5, 3, 3; stride 2; padding 1 on
each side), ReLU, then a linear readout of the flattened features. With length-40 inputs
the feature lengths are 19, 10, 5, so the readout sees 125 features.
Params: ``conv1``, ``conv2``, ``conv3``, ``output``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

from jaxticket.models.base import Model, from_nnx
from jaxticket.models.initializers import check_scheme, conv, dense
from jaxticket.models.registry import register


class CNN1D(nnx.Module):
    """Strided 1-D convolutions and a linear readout.

    Args:
      length: the input sequence length.
      in_channels: input channels (1 for a plain sequence).
      channels: filters per conv layer.
      kernel_sizes: one kernel size per conv layer.
      num_classes: the number of logits.
      init: an initialization scheme name.
      rngs: random streams for the parameters.
    """

    def __init__(self, length, in_channels, channels, kernel_sizes, num_classes, *, init, rngs):
        self.conv_names = tuple(f"conv{i + 1}" for i in range(len(kernel_sizes)))
        n_in = in_channels
        for name, k in zip(self.conv_names, kernel_sizes, strict=True):
            layer = conv(n_in, channels, (k,), strides=2, padding=[(1, 1)], init=init, rngs=rngs)
            setattr(self, name, layer)
            n_in = channels
        flat = channels * _out_length(length, kernel_sizes)
        self.output = dense(flat, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del train, key  # no batch norm, no dropout
        if x.ndim == 2:
            x = x[..., None]  # (batch, length) -> (batch, length, 1)
        for name in self.conv_names:
            x = jax.nn.relu(getattr(self, name)(x))
        return self.output(x.reshape(x.shape[0], -1))


@register("cnn1d")
def cnn1d(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    channels: int = 25,
    kernel_sizes: Sequence[int] = (5, 3, 3),
    init: str = "torch",
) -> Model:
    """The MNIST-1D CNN.

    Args:
      input_shape: ``(length,)`` or ``(length, channels)``, e.g. ``(40,)``.
      num_classes: the number of logits.
      channels: filters per conv layer (25 in the reference).
      kernel_sizes: kernel size per conv layer ((5, 3, 3) in the reference).
      init: initialization scheme (the reference used PyTorch's default, ``'torch'``).

    Returns:
      The ``Model``.
    """
    check_scheme(init, "cnn1d")
    shape = tuple(input_shape)
    if len(shape) not in (1, 2) or min(shape) < 1:
        raise ValueError(
            f"model 'cnn1d' needs input_shape (length,) or (length, channels); got {shape}"
        )
    kernel_sizes = tuple(int(k) for k in kernel_sizes)
    if _out_length(shape[0], kernel_sizes) < 1:
        raise ValueError(
            f"model 'cnn1d': length {shape[0]} is too short for {len(kernel_sizes)} stride-2 "
            f"convolutions with kernels {kernel_sizes}"
        )
    in_channels = shape[1] if len(shape) == 2 else 1
    return from_nnx(
        lambda rngs: CNN1D(
            shape[0], in_channels, channels, kernel_sizes, num_classes, init=init, rngs=rngs
        ),
        input_shape=shape,
        num_classes=num_classes,
        name="cnn1d",
    )


def _out_length(length: int, kernel_sizes: Sequence[int]) -> int:
    for k in kernel_sizes:
        length = (length + 2 - k) // 2 + 1
    return length
