"""Models by name, for the CLI and experiment configs.

A family module registers a factory ``factory(*, input_shape, num_classes, **kwargs) ->
Model`` under a name; ``get`` checks the name, the shape and the keyword arguments before
anything is built, so a typo fails with the list of valid choices.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Sequence

from jaxticket.models.base import Model, check_input_shape, check_num_classes

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
        model cannot take (not a sequence of positive ints, wrong rank, too small).
      TypeError: an option the model does not have (the message lists those it has), or
        a ``num_classes`` that is not an int.
    """
    if not isinstance(name, str) or name not in _FACTORIES:
        raise ValueError(
            f"unknown model {name!r}{_did_you_mean(name, names())}; valid names are: "
            + ", ".join(names())
        )
    factory = _FACTORIES[name]
    options = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is p.KEYWORD_ONLY and p.name not in ("input_shape", "num_classes")
    ]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise TypeError(
            f"model {name!r} has no option(s) {unknown}{_did_you_mean(unknown[0], options)}; "
            "its options are: " + (", ".join(options) or "none")
        )
    input_shape = check_input_shape(name, input_shape)
    num_classes = check_num_classes(name, num_classes)
    return factory(input_shape=input_shape, num_classes=num_classes, **kwargs)


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_FACTORIES)


def register(name: str, *, overwrite: bool = False) -> Callable[[Factory], Factory]:
    """Decorator registering ``factory(*, input_shape, num_classes, **options) -> Model``.

    Re-running the cell or module that defines a factory registers the same factory again
    (same module and qualified name): it replaces the old one without a word. A different
    factory under a taken name is an error unless ``overwrite=True``.

    Args:
      name: the registry name, a non-empty string.
      overwrite: replace whatever is registered under ``name``.

    Returns:
      A decorator that returns the factory unchanged.

    Raises:
      ValueError: ``name`` is taken by a different factory and ``overwrite`` is false.
      TypeError: ``name`` is not a non-empty string, or the factory is not callable.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register: name must be a non-empty str, got {name!r}")

    def decorate(factory: Factory) -> Factory:
        if not callable(factory):
            raise TypeError(f"register({name!r}): expected a factory function, got {factory!r}")
        old = _FACTORIES.get(name)
        if old is not None and not overwrite and _identity(old) != _identity(factory):
            raise ValueError(
                f"model name {name!r} is already registered to {'.'.join(_identity(old))}; "
                f"use register({name!r}, overwrite=True) to replace it, or another name"
            )
        _FACTORIES[name] = factory
        return factory

    return decorate


def _did_you_mean(word: object, choices: Sequence[str]) -> str:
    # A prefix ("lenet" for "lenet_300_100") says more than edit distance does.
    word = str(word)
    close = [c for c in choices if c.startswith(word)] if word else []
    close = close or difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _identity(factory: Factory) -> tuple[str, str]:
    # A re-run notebook cell makes a new function object with the same module and name.
    return (
        getattr(factory, "__module__", None) or "?",
        getattr(factory, "__qualname__", None) or type(factory).__qualname__,
    )
