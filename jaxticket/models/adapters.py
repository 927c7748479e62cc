"""Models that were not written for jaxticket: Flax Linen modules and plain functions.

Both adapters produce the same pure ``Model`` as the NNX zoo, so the engine, masks and
pruning never need to know where a model came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import core

from jaxticket.models.base import (
    Model,
    check_input,
    check_input_shape,
    check_tree,
    infer_num_classes,
)


def from_linen(
    module: Any,
    example_x: jax.Array,
    *,
    name: str | None = None,
    train_arg: str | None = "train",
    rng_collection: str = "dropout",
) -> Model:
    """Wraps a Flax Linen module as a pure ``Model``.

    Params are the ``'params'`` collection; state is every other collection (typically
    ``'batch_stats'``), which is made mutable in train mode and returned updated.

    Args:
      module: a ``flax.linen.Module``.
      example_x: an example batch, shape ``(batch, *input_shape)``.
      name: the model's name; defaults to the module's class name.
      train_arg: the keyword the module's ``__call__`` takes for train/eval mode
        (e.g. ``'train'``), or ``None`` if it takes none.
      rng_collection: the rng name under which ``key`` is given (dropout).

    Returns:
      The ``Model``.
    """
    name = name or type(module).__name__
    input_shape = tuple(jnp.shape(example_x))[1:]
    example = jnp.zeros((1, *input_shape), jnp.asarray(example_x).dtype)

    def mode(train: bool) -> dict[str, bool]:
        return {} if train_arg is None else {train_arg: train}

    def init(key: jax.Array):
        pkey, dkey = jax.random.split(key)
        variables = core.unfreeze(
            module.init({"params": pkey, rng_collection: dkey}, example, **mode(False))
        )
        params = variables.pop("params", {})
        return params, variables

    templates = jax.eval_shape(init, jax.random.key(0))

    def apply(params, state, x, *, train: bool, key: jax.Array | None = None):
        check_input(name, input_shape, x)
        check_tree(f"model {name!r} params", params, templates[0])
        check_tree(f"model {name!r} state", state, templates[1])
        rngs = {} if key is None else {rng_collection: key}
        variables = {"params": params, **state}
        if train and state:
            logits, updates = module.apply(
                variables, x, rngs=rngs, mutable=list(state), **mode(train)
            )
            return logits, {**state, **core.unfreeze(updates)}
        return module.apply(variables, x, rngs=rngs, **mode(train)), state

    num_classes = infer_num_classes(init, apply, input_shape, example.dtype)
    return Model(name, init, apply, input_shape, num_classes)


def from_functions(
    init: Callable[[jax.Array], Any],
    apply: Callable[..., Any],
    *,
    input_shape: tuple[int, ...],
    num_classes: int | None = None,
    name: str = "functions",
    stateful: bool = False,
) -> Model:
    """Wraps a pair of plain functions over a params pytree as a ``Model``.

    Args:
      init: ``init(key) -> params``, or ``-> (params, state)`` when ``stateful``.
      apply: ``apply(params, x) -> logits``, or, when ``stateful``,
        ``apply(params, state, x, *, train, key) -> (logits, new_state)``.
      input_shape: one example's shape.
      num_classes: the number of logits; inferred abstractly if omitted.
      name: the model's name.
      stateful: whether the functions carry state (see above).

    Returns:
      The ``Model``; a stateless pair gets ``state = {}``.
    """
    input_shape = check_input_shape(name, input_shape)

    if stateful:
        init_fn = init

        def apply_fn(params, state, x, *, train: bool, key: jax.Array | None = None):
            check_input(name, input_shape, x)
            return apply(params, state, x, train=train, key=key)

    else:

        def init_fn(key: jax.Array):
            return init(key), {}

        def apply_fn(params, state, x, *, train: bool, key: jax.Array | None = None):
            del train, key  # a plain function has no modes and no randomness
            check_input(name, input_shape, x)
            return apply(params, x), state

    params_template = jax.eval_shape(init_fn, jax.random.key(0))[0]

    def checked_apply(params, state, x, *, train: bool, key: jax.Array | None = None):
        check_tree(f"model {name!r} params", params, params_template)
        return apply_fn(params, state, x, train=train, key=key)

    if num_classes is None:
        num_classes = infer_num_classes(init_fn, checked_apply, input_shape)
    return Model(name, init_fn, checked_apply, input_shape, int(num_classes))
