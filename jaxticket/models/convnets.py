"""Conv-2, Conv-4 and Conv-6, the CIFAR-10 networks of the lottery-ticket paper.

Blocks of two 3×3 convolutions and a 2×2 max pool ([64, 64, pool], +[128, 128, pool],
+[256, 256, pool]), then fully connected 256-256-``num_classes``; ReLU; Gaussian Glorot
init. Params: ``conv1`` ... ``conv{2n}``, ``dense1``, ``dense2``, ``output``.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxticket.models.base import Model, from_nnx, require_rank
from jaxticket.models.initializers import check_scheme, conv, dense
from jaxticket.models.registry import register

_BLOCK_WIDTHS = (64, 128, 256)
_FC_WIDTHS = (256, 256)


class ConvNet(nnx.Module):
    """``blocks`` VGG-style blocks, then two hidden dense layers with optional dropout.

    Args:
      input_shape: ``(height, width, channels)``.
      blocks: the number of conv blocks (1, 2 or 3).
      num_classes: the number of logits.
      init: an initialization scheme name.
      dropout: dropout rate after each hidden dense layer (0 disables it).
      rngs: random streams for the parameters.
    """

    def __init__(self, input_shape, blocks: int, num_classes: int, *, init, dropout, rngs):
        height, width, channels = input_shape
        self.conv_names = tuple(f"conv{i + 1}" for i in range(2 * blocks))
        widths = [w for w in _BLOCK_WIDTHS[:blocks] for _ in range(2)]
        for name, n_in, n_out in zip(self.conv_names, [channels, *widths], widths, strict=False):
            setattr(self, name, conv(n_in, n_out, (3, 3), init=init, rngs=rngs))
        flat = (height // 2**blocks) * (width // 2**blocks) * widths[-1]
        self.dense1 = dense(flat, _FC_WIDTHS[0], init=init, rngs=rngs)
        self.dense2 = dense(_FC_WIDTHS[0], _FC_WIDTHS[1], init=init, rngs=rngs)
        self.output = dense(_FC_WIDTHS[1], num_classes, init=init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        use_dropout = train and self.dropout.rate > 0
        if use_dropout and key is None:
            raise ValueError("dropout in train mode needs a key: apply(..., key=...)")
        keys = jax.random.split(key, 2) if use_dropout else (None, None)
        for i, name in enumerate(self.conv_names):
            x = jax.nn.relu(getattr(self, name)(x))
            if i % 2 == 1:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        for layer, k in zip((self.dense1, self.dense2), keys, strict=True):
            x = self.dropout(jax.nn.relu(layer(x)), deterministic=not use_dropout, rngs=k)
        return self.output(x)


@register("conv2")
def conv2(*, input_shape, num_classes, init: str = "glorot_normal", dropout: float = 0.0):
    """Conv-2 (4.3M params on CIFAR-10). See ``conv_net`` for the arguments."""
    return conv_net("conv2", 1, input_shape, num_classes, init=init, dropout=dropout)


@register("conv4")
def conv4(*, input_shape, num_classes, init: str = "glorot_normal", dropout: float = 0.0):
    """Conv-4 (2.4M params on CIFAR-10). See ``conv_net`` for the arguments."""
    return conv_net("conv4", 2, input_shape, num_classes, init=init, dropout=dropout)


@register("conv6")
def conv6(*, input_shape, num_classes, init: str = "glorot_normal", dropout: float = 0.0):
    """Conv-6 (1.7M params on CIFAR-10). See ``conv_net`` for the arguments."""
    return conv_net("conv6", 3, input_shape, num_classes, init=init, dropout=dropout)


def conv_net(
    name: str, blocks: int, input_shape, num_classes: int, *, init: str, dropout: float
) -> Model:
    """Builds a Conv-2/4/6 network.

    Args:
      name: the model's name.
      blocks: conv blocks (1 → Conv-2, 2 → Conv-4, 3 → Conv-6).
      input_shape: ``(height, width, channels)``; height and width at least ``2**blocks``.
      num_classes: the number of logits.
      init: initialization scheme (the paper's is Gaussian Glorot).
      dropout: dropout rate on the hidden dense layers (the paper's main runs use none).

    Returns:
      The ``Model``.
    """
    check_scheme(init, name)
    require_rank(name, input_shape, 3, "(height, width, channels)")
    if min(input_shape[:2]) < 2**blocks:
        raise ValueError(
            f"model {name!r} pools {blocks} times, so height and width must be at least "
            f"{2**blocks}; got input_shape {tuple(input_shape)}"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"model {name!r}: dropout must be in [0, 1), got {dropout}")
    return from_nnx(
        lambda rngs: ConvNet(
            input_shape, blocks, num_classes, init=init, dropout=dropout, rngs=rngs
        ),
        input_shape=input_shape,
        num_classes=num_classes,
        name=name,
    )
