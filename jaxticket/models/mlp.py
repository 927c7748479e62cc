"""Fully connected networks: LeNet-300-100 (Frankle & Carbin 2019) and a general MLP.

Params are named ``dense1``, ``dense2``, ... for hidden layers and ``output`` for the
readout, so the lottery workflow can prune ``'output/*'`` at its own rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
from flax import nnx

from jaxticket.models.base import Model, from_nnx
from jaxticket.models.initializers import check_scheme, dense
from jaxticket.models.registry import register


class MLP(nnx.Module):
    """Flatten, then ReLU hidden layers, then a linear readout.

    Args:
      in_features: the flattened input size.
      hidden: hidden-layer widths.
      num_classes: the number of logits.
      init: an initialization scheme name (see ``initializers.SCHEMES``).
      rngs: random streams for the parameters.
    """

    def __init__(
        self, in_features: int, hidden: Sequence[int], num_classes: int, *, init: str, rngs
    ):
        widths = (in_features, *hidden)
        self.hidden_names = tuple(f"dense{i + 1}" for i in range(len(hidden)))
        for name, n_in, n_out in zip(self.hidden_names, widths[:-1], widths[1:], strict=True):
            setattr(self, name, dense(n_in, n_out, init=init, rngs=rngs))
        self.output = dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del train, key  # no batch norm, no dropout
        x = x.reshape(x.shape[0], -1)
        for name in self.hidden_names:
            x = jax.nn.relu(getattr(self, name)(x))
        return self.output(x)


@register("lenet_300_100")
def lenet_300_100(
    *, input_shape: tuple[int, ...], num_classes: int, init: str = "glorot_normal"
) -> Model:
    """LeNet-300-100: flatten → 300 → 100 → ``num_classes``, ReLU, Gaussian Glorot init.

    With 784 inputs and 10 classes it has 266,610 parameters, 266,200 of them weights.

    Args:
      input_shape: one example's shape (flattened inside), e.g. ``(28, 28, 1)``.
      num_classes: the number of logits.
      init: initialization scheme (the paper's is Gaussian Glorot).

    Returns:
      The ``Model``.
    """
    return _mlp("lenet_300_100", input_shape, num_classes, (300, 100), init)


@register("mlp")
def mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    hidden: Sequence[int] = (100, 100),
    init: str = "torch",
) -> Model:
    """A ReLU MLP; the defaults are the MNIST-1D reference MLP (two hidden layers of 100,
    PyTorch default init), which reaches about 68% test accuracy there.

    Args:
      input_shape: one example's shape (flattened inside).
      num_classes: the number of logits.
      hidden: hidden-layer widths.
      init: initialization scheme name.

    Returns:
      The ``Model``.
    """
    return _mlp("mlp", input_shape, num_classes, tuple(int(h) for h in hidden), init)


def _mlp(name, input_shape, num_classes, hidden, init) -> Model:
    check_scheme(init, name)
    if len(input_shape) < 1 or min(input_shape) < 1:
        raise ValueError(f"model {name!r} needs a non-empty input_shape, got {input_shape}")
    if any(h < 1 for h in hidden):
        raise ValueError(f"model {name!r}: hidden widths must be positive, got {hidden}")
    in_features = math.prod(input_shape)
    return from_nnx(
        lambda rngs: MLP(in_features, hidden, num_classes, init=init, rngs=rngs),
        input_shape=input_shape,
        num_classes=num_classes,
        name=name,
    )
