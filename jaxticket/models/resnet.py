"""CIFAR ResNets (He et al. 2016, section 4.2): ResNet-20 and other depths 6n+2.

A 3×3 stem with 16 filters, three stages of n basic blocks (16, 32, 64 filters; stride 2
on entering stages 2 and 3), global average pooling, a linear readout. Convolutions have
no bias (BatchNorm follows each); Kaiming-normal init. When a block changes shape its
shortcut is, by the ``shortcut`` option, a 1×1 conv + BatchNorm (``'conv'``, the default,
as in OpenLTH's ResNet-20 used by the rewinding and stability papers) or He et al.'s
parameter-free option A (``'pad'``: subsample and zero-pad channels).
``skip_blocks`` builds the network without some shape-preserving blocks (each computes the
identity once its residual branch is zero, so a layer ticket compacts to this shallower
network; see ``jaxticket.structured.layers``).
Params: ``conv1``, ``bn1``, ``stage{s}_block{b}/{conv1,bn1,conv2,bn2,shortcut_conv,
shortcut_bn}``, ``output``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxticket.models.base import Model, from_nnx, require_rank
from jaxticket.models.initializers import check_scheme, conv, dense
from jaxticket.models.registry import register


def batch_norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    """BatchNorm with PyTorch's constants (running-average momentum 0.1, eps 1e-5)."""
    return nnx.BatchNorm(features, momentum=0.9, epsilon=1e-5, rngs=rngs)


class BasicBlock(nnx.Module):
    """Two 3×3 conv-BN layers with an identity or projection shortcut.

    Args:
      in_ch: input channels.
      out_ch: output channels.
      stride: stride of the first conv (and of the shortcut).
      shortcut: ``'conv'`` or ``'pad'`` (used only when the shape changes).
      init: an initialization scheme name.
      rngs: random streams for the parameters.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, shortcut: str, *, init, rngs):
        self.conv1 = conv(
            in_ch, out_ch, (3, 3), strides=stride, use_bias=False, init=init, rngs=rngs
        )
        self.bn1 = batch_norm(out_ch, rngs)
        self.conv2 = conv(out_ch, out_ch, (3, 3), use_bias=False, init=init, rngs=rngs)
        self.bn2 = batch_norm(out_ch, rngs)
        self.stride = stride
        self.pad = (0, 0)
        self.project = shortcut == "conv" and (stride != 1 or in_ch != out_ch)
        if self.project:
            self.shortcut_conv = conv(
                in_ch, out_ch, (1, 1), strides=stride, use_bias=False, init=init, rngs=rngs
            )
            self.shortcut_bn = batch_norm(out_ch, rngs)
        elif in_ch != out_ch:
            lo = (out_ch - in_ch) // 2
            self.pad = (lo, out_ch - in_ch - lo)

    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        frozen = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=frozen))
        y = self.bn2(self.conv2(y), use_running_average=frozen)
        if self.project:
            s = self.shortcut_bn(self.shortcut_conv(x), use_running_average=frozen)
        else:
            s = x[:, :: self.stride, :: self.stride, :]
            s = jnp.pad(s, ((0, 0), (0, 0), (0, 0), self.pad))
        return jax.nn.relu(y + s)


class ResNet(nnx.Module):
    """A CIFAR ResNet of depth ``6 * blocks_per_stage + 2``.

    Args:
      in_ch: input channels.
      blocks_per_stage: basic blocks in each of the three stages.
      width: filters of the first stage (doubled per stage).
      num_classes: the number of logits.
      shortcut: ``'conv'`` or ``'pad'``.
      init: an initialization scheme name.
      rngs: random streams for the parameters.
      skip: names of blocks left out (``"stage1_block2"``, ...); the full network when empty.
    """

    def __init__(
        self, in_ch, blocks_per_stage, width, num_classes, shortcut, *, init, rngs, skip=()
    ):
        self.conv1 = conv(in_ch, width, (3, 3), use_bias=False, init=init, rngs=rngs)
        self.bn1 = batch_norm(width, rngs)
        names, n_in = [], width
        for s in range(3):
            n_out = width * 2**s
            for b in range(blocks_per_stage):
                stride = 2 if s > 0 and b == 0 else 1
                name = f"stage{s + 1}_block{b + 1}"
                if name not in skip:
                    names.append(name)
                    block = BasicBlock(n_in, n_out, stride, shortcut, init=init, rngs=rngs)
                    setattr(self, name, block)
                n_in = n_out
        self.block_names = tuple(names)
        self.output = dense(n_in, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del key  # no dropout
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        for name in self.block_names:
            x = getattr(self, name)(x, train=train)
        return self.output(x.mean(axis=(1, 2)))


@register("resnet20")
def resnet20(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: int = 16,
    shortcut: str = "conv",
    init: str = "kaiming_normal",
    skip_blocks: Sequence[str] = (),
) -> Model:
    """ResNet-20 (about 0.27M params at width 16). See ``resnet`` for the arguments."""
    return _build("resnet20", 20, input_shape, num_classes, width, shortcut, init, skip_blocks)


@register("resnet")
def resnet(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    depth: int = 20,
    width: int = 16,
    shortcut: str = "conv",
    init: str = "kaiming_normal",
    skip_blocks: Sequence[str] = (),
) -> Model:
    """A CIFAR ResNet of any depth 6n+2 (20, 32, 44, 56, 110, ...).

    Args:
      input_shape: ``(height, width, channels)``.
      num_classes: the number of logits.
      depth: total conv + dense layers, ``6 * n + 2``.
      width: filters in the first stage (16 in He et al.).
      shortcut: ``'conv'`` (1×1 conv + BN projection) or ``'pad'`` (option A).
      init: initialization scheme name.
      skip_blocks: blocks to leave out, by name (``"stage1_block2"``); only blocks that keep
        their input's shape (not a stage's first block in stages 2 and 3, nor any block
        whose channels change), so that the rest of the network is unchanged. Leaving
        blocks out changes how the remaining parameters are drawn by ``init``: build the
        shallower network's params from the full one's (``jaxticket.structured.layers``).

    Returns:
      The ``Model``.
    """
    return _build(
        f"resnet{depth}", depth, input_shape, num_classes, width, shortcut, init, skip_blocks
    )


def removable_block_names(depth: int) -> tuple[str, ...]:
    """The blocks of a CIFAR ResNet of ``depth`` whose input and output shapes match.

    These are every block but the first of stages 2 and 3 (which halve the resolution and
    double the channels): with a zero residual branch such a block computes the identity.
    """
    n = (depth - 2) // 6
    return tuple(
        f"stage{s + 1}_block{b + 1}" for s in range(3) for b in range(n) if s == 0 or b > 0
    )


def _build(name, depth, input_shape, num_classes, width, shortcut, init, skip_blocks) -> Model:
    check_scheme(init, name)
    require_rank(name, input_shape, 3, "(height, width, channels)")
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"model {name!r}: depth must be 6n+2 with n >= 1, got {depth}")
    if shortcut not in ("conv", "pad"):
        raise ValueError(f"model {name!r}: shortcut must be 'conv' or 'pad', got {shortcut!r}")
    n = (depth - 2) // 6
    skip = _check_skip(name, depth, skip_blocks)
    return from_nnx(
        lambda rngs: ResNet(
            input_shape[2], n, width, num_classes, shortcut, init=init, rngs=rngs, skip=skip
        ),
        input_shape=input_shape,
        num_classes=num_classes,
        name=name,
    )


def _check_skip(name: str, depth: int, skip_blocks: Sequence[str]) -> tuple[str, ...]:
    if isinstance(skip_blocks, str) or not isinstance(skip_blocks, Sequence):
        raise ValueError(
            f"model {name!r}: skip_blocks must be a sequence of block names, got {skip_blocks!r}"
        )
    valid = removable_block_names(depth)
    for block in skip_blocks:
        if block not in valid:
            raise ValueError(
                f"model {name!r}: skip_blocks entry {block!r} is not a block whose input and "
                f"output shapes match; removable blocks: {', '.join(valid)}"
            )
    return tuple(skip_blocks)
