"""VGG-16 for CIFAR (Simonyan & Zisserman 2015, with BatchNorm, as in Frankle et al.).

Thirteen 3×3 conv-BN-ReLU layers in five groups (64×2, 128×2, 256×3, 512×3, 512×3), each
group followed by a 2×2 max pool, then global average pooling and a linear readout.
Convolutions have no bias (BatchNorm follows); Kaiming-normal init.
Params: ``conv1`` ... ``conv13``, ``bn1`` ... ``bn13``, ``output``.
"""

from __future__ import annotations

import jax
from flax import nnx

from jaxticket.models.base import Model, from_nnx, require_rank
from jaxticket.models.initializers import check_scheme, conv, dense
from jaxticket.models.registry import register
from jaxticket.models.resnet import batch_norm

_VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG(nnx.Module):
    """Groups of conv-BN-ReLU layers, each group ending in a max pool.

    Args:
      in_ch: input channels.
      groups: filters per conv layer, grouped by pooling stage.
      num_classes: the number of logits.
      init: an initialization scheme name.
      rngs: random streams for the parameters.
    """

    def __init__(self, in_ch: int, groups, num_classes: int, *, init: str, rngs: nnx.Rngs):
        widths = [w for group in groups for w in group]
        self.n_layers = len(widths)
        self.pool_after = tuple(sum(len(g) for g in groups[: i + 1]) for i in range(len(groups)))
        for i, (n_in, n_out) in enumerate(zip([in_ch, *widths], widths, strict=False)):
            layer = conv(n_in, n_out, (3, 3), use_bias=False, init=init, rngs=rngs)
            setattr(self, f"conv{i + 1}", layer)
            setattr(self, f"bn{i + 1}", batch_norm(n_out, rngs))
        self.output = dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del key  # no dropout
        for i in range(1, self.n_layers + 1):
            x = getattr(self, f"conv{i}")(x)
            x = jax.nn.relu(getattr(self, f"bn{i}")(x, use_running_average=not train))
            if i in self.pool_after:
                x = nnx.max_pool(x, (2, 2), strides=(2, 2))
        return self.output(x.mean(axis=(1, 2)))


@register("vgg16")
def vgg16(*, input_shape: tuple[int, ...], num_classes: int, init: str = "kaiming_normal") -> Model:
    """VGG-16 with BatchNorm (about 14.7M params on CIFAR-10).

    Args:
      input_shape: ``(height, width, channels)``; height and width at least 32 (five pools).
      num_classes: the number of logits.
      init: initialization scheme name.

    Returns:
      The ``Model``.
    """
    check_scheme(init, "vgg16")
    require_rank("vgg16", input_shape, 3, "(height, width, channels)")
    if min(input_shape[:2]) < 2 ** len(_VGG16):
        raise ValueError(
            "model 'vgg16' pools 5 times, so height and width must be at least 32; "
            f"got input_shape {tuple(input_shape)}"
        )
    return from_nnx(
        lambda rngs: VGG(input_shape[2], _VGG16, num_classes, init=init, rngs=rngs),
        input_shape=input_shape,
        num_classes=num_classes,
        name="vgg16",
    )
