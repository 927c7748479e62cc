"""A ``from_nnx`` model rebuilt with other shapes (a compacted network, say).

``from_nnx`` records its arguments on ``model.apply.nnx_source``; :func:`rebuild_nnx` runs
the same builder followed by a transform of the module and wraps the result again, so the
new model's shape template follows the transformed variables.
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from jaxticket.models.base import Model, NNXSource, from_nnx

__all__ = ["nnx_source", "rebuild_nnx"]


def nnx_source(model: Model) -> NNXSource:
    """The ``from_nnx`` arguments a model was built from, or a one-line TypeError.

    Args:
      model: a ``Model`` returned by ``from_nnx`` (every zoo model is one).

    Returns:
      Its :class:`NNXSource`.
    """
    source = getattr(getattr(model, "apply", None), "nnx_source", None)
    if not isinstance(source, NNXSource):
        raise TypeError(
            f"model {getattr(model, 'name', model)!r} was not built by from_nnx (or its apply "
            "was wrapped): only Flax NNX models can be rebuilt with new shapes"
        )
    return source


def rebuild_nnx(
    model: Model, transform: Callable[[nnx.Module], nnx.Module], *, name: str | None = None
) -> Model:
    """A new ``Model`` from ``model``'s NNX builder followed by ``transform``.

    The new model's ``init(key)`` builds the original module with ``key`` and returns the
    variables of ``transform(module)``; its ``apply`` checks shapes against those variables
    (a new template) and runs the transformed module's graph. ``transform`` may replace
    variables by arrays of other shapes (``variable.set_value``) and update the modules'
    static attributes; it runs once abstractly here and once per ``init``. ``model`` itself
    is unchanged. The logits width is inferred again.

    Args:
      model: a ``Model`` built by ``from_nnx``.
      transform: ``transform(module) -> module`` (may modify ``module`` in place).
      name: the new model's name; ``model.name`` by default.

    Returns:
      The new ``Model``.

    Raises:
      TypeError: ``model`` was not built by ``from_nnx``.
      ValueError: the transformed module's forward pass fails (as in ``from_nnx``).
    """
    source = nnx_source(model)
    return from_nnx(
        lambda rngs: transform(source.build(rngs)),
        input_shape=source.input_shape,
        name=source.name if name is None else name,
        call=source.call,
        input_dtype=source.input_dtype,
    )
