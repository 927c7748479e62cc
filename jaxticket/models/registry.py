"""Models by name, for the CLI and experiment configs.

A family module registers a factory ``factory(*, input_shape, num_classes, **kwargs) ->
Model`` under a name; ``get`` checks the name, the shape and the keyword arguments before
anything is built, so a typo fails with the list of valid choices.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

from jaxticket.models.base import Model

Factory = Callable[..., Model]

_FACTORIES: dict[str, Factory] = {}


def get(name: str, *, input_shape: Sequence[int], num_classes: int, **kwargs) -> Model:
    """Builds the registered model ``name``.

    Args:
      name: a registered name (see ``names()``).
      input_shape: one example's shape, e.g. ``(28, 28, 1)`` or ``(40,)``.
      num_classes: the number of logits.
      **kwargs: model options (e.g. ``hidden=(300, 100)``, ``init='glorot_normal'``).

    Returns:
      The ``Model``.

    Raises:
      ValueError: unknown name, a non-positive ``num_classes``, or an ``input_shape`` the
        model cannot take.
      TypeError: an option the model does not have (the message lists those it has).
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; valid names are: {', '.join(names())}")
    factory = _FACTORIES[name]
    options = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("input_shape", "num_classes")
    ]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"model {name!r} has no option(s) {unknown}; its options are: "
            + (", ".join(options) or "none")
        )
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except TypeError:
        raise ValueError(
            f"model {name!r}: input_shape must be a sequence of ints, got {input_shape!r}"
        ) from None
    if int(num_classes) < 1:
        raise ValueError(f"model {name!r}: num_classes must be positive, got {num_classes}")
    return factory(input_shape=input_shape, num_classes=int(num_classes), **kwargs)


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_FACTORIES)


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(*, input_shape, num_classes, **options) -> Model``.

    Args:
      name: the registry name; registering a name twice is an error.

    Returns:
      A decorator that returns the factory unchanged.
    """

    def decorate(factory: Factory) -> Factory:
        if name in _FACTORIES:
            raise ValueError(f"model name {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate
