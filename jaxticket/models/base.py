"""The pure ``Model`` the rest of jaxticket sees, and its construction from a Flax NNX module.

NNX modules are stateful Python objects; the engine wants two pure functions over plain
nested dicts so that it can jit, vmap over seeds and checkpoint them. ``from_nnx`` splits
an abstract copy of the module once (no arrays are allocated) and keeps its ``GraphDef``
and the tree structure of its state; ``apply`` then rebuilds the module from the dicts with
one ``tree_unflatten`` plus ``nnx.merge``. Both happen at trace time only: the compiled
program contains just the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxticket._paths import leaves_with_paths

Params = dict[str, Any]
State = dict[str, Any]


class Model(NamedTuple):
    """A model as pure functions over nested dicts of arrays.

    Attributes:
      name: registry name (or a user-chosen label).
      init: ``init(key) -> (params, state)``; ``state`` holds non-trainable variables
        such as BatchNorm running statistics (``{}`` when there are none).
      apply: ``apply(params, state, x, *, train, key=None) -> (logits, new_state)`` for a
        batch ``x`` of shape ``(batch, *input_shape)``. In train mode BatchNorm uses batch
        statistics and ``new_state`` has updated running averages; in eval mode the running
        averages are used and ``state`` comes back unchanged. ``key`` drives dropout.
      input_shape: the shape of one example.
      num_classes: the number of logits.
    """

    name: str
    init: Callable[[jax.Array], tuple[Params, State]]
    apply: Callable[..., tuple[jax.Array, State]]
    input_shape: tuple[int, ...]
    num_classes: int


def default_call(module: Any, x: jax.Array, train: bool, key: jax.Array | None) -> jax.Array:
    """How ``from_nnx`` calls a module unless told otherwise: ``module(x, train=, key=)``."""
    return module(x, train=train, key=key)


def from_nnx(
    build: Callable[[nnx.Rngs], nnx.Module],
    *,
    input_shape: tuple[int, ...],
    num_classes: int | None = None,
    name: str = "nnx",
    call: Callable[..., jax.Array] = default_call,
) -> Model:
    """Wraps a Flax NNX module constructor as a pure ``Model``.

    Args:
      build: ``build(rngs) -> module``; called once abstractly here and once per ``init``.
      input_shape: one example's shape.
      num_classes: the number of logits; inferred from an abstract forward pass if omitted.
      name: the model's name.
      call: ``call(module, x, train, key) -> logits``; the default calls
        ``module(x, train=train, key=key)``.

    Returns:
      A ``Model`` whose params are the ``nnx.Param`` variables as a plain nested dict
      (paths such as ``'dense1/kernel'``) and whose state is every other variable.
    """
    input_shape = tuple(int(d) for d in input_shape)
    abstract = nnx.eval_shape(lambda: build(nnx.Rngs(0)))
    graphdef, abs_params, abs_rest = nnx.split(abstract, nnx.Param, ...)
    params_def = jax.tree.structure(abs_params)
    rest_def = jax.tree.structure(abs_rest)
    params_template = nnx.to_pure_dict(abs_params)
    state_template = nnx.to_pure_dict(abs_rest)
    _check_same_order(abs_params, params_template)
    _check_same_order(abs_rest, state_template)

    def init(key: jax.Array) -> tuple[Params, State]:
        _, params, rest = nnx.split(build(nnx.Rngs(key)), nnx.Param, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def apply(params, state, x, *, train: bool, key: jax.Array | None = None):
        check_input(name, input_shape, x)
        check_tree(f"model {name!r} params", params, params_template)
        check_tree(f"model {name!r} state", state, state_template)
        # A pure dict and its nnx.State flatten to leaves in the same order (checked above),
        # so rebuilding the State is one unflatten: no per-leaf Python work, no copies.
        p = jax.tree.unflatten(params_def, jax.tree.leaves(params))
        r = jax.tree.unflatten(rest_def, jax.tree.leaves(state))
        module = nnx.merge(graphdef, p, r)
        logits = call(module, x, train, key)
        if not train:
            return logits, state
        return logits, nnx.to_pure_dict(nnx.state(module, nnx.Not(nnx.Param)))

    if num_classes is None:
        num_classes = infer_num_classes(init, apply, input_shape)
    return Model(name, init, apply, input_shape, int(num_classes))


def check_input(name: str, input_shape: tuple[int, ...], x: Any) -> None:
    """Raises ValueError unless ``x`` is a batch of examples of shape ``input_shape``.

    Args:
      name: the model's name, for the message.
      input_shape: one example's shape.
      x: the batch given to ``apply``.
    """
    shape = tuple(jnp.shape(x))
    if shape[1:] != tuple(input_shape) or len(shape) != len(input_shape) + 1:
        raise ValueError(
            f"model {name!r} expects a batch of shape (batch, {', '.join(map(str, input_shape))})"
            f" but got an input of shape {shape}; a single example needs x[None], "
            "stacked seeds need jax.vmap"
        )


def check_tree(what: str, tree: Any, template: Any) -> None:
    """Raises ValueError naming the first leaf path whose presence or shape differs.

    Args:
      what: the tree's role, for the message (e.g. ``"model 'conv2' params"``).
      tree: the tree given by the user.
      template: a tree of arrays or ``ShapeDtypeStruct`` with the expected shapes.
    """
    got = dict(leaves_with_paths(tree))
    want = dict(leaves_with_paths(template))
    missing = [p for p in want if p not in got]
    extra = [p for p in got if p not in want]
    if missing or extra:
        raise ValueError(
            f"{what}: structure differs from the model's; missing leaves {missing}, "
            f"unexpected leaves {extra}"
        )
    for path, leaf in got.items():
        if tuple(jnp.shape(leaf)) != tuple(want[path].shape):
            raise ValueError(
                f"{what}: leaf {path!r} has shape {tuple(jnp.shape(leaf))}, expected "
                f"{tuple(want[path].shape)} (stacked seeds need jax.vmap)"
            )
    if jax.tree.structure(tree) != jax.tree.structure(template):
        raise ValueError(
            f"{what}: container or key types differ from the model's (use plain dicts whose "
            "keys have the types init returned)"
        )


def infer_num_classes(
    init: Callable, apply: Callable, input_shape: tuple[int, ...], dtype: Any = jnp.float32
) -> int:
    """The logits width of ``apply`` on a batch of one, found abstractly (no FLOPs)."""

    def forward(key):
        params, state = init(key)
        x = jnp.zeros((1, *input_shape), dtype)
        return apply(params, state, x, train=False, key=None)[0]

    out = jax.eval_shape(forward, jax.random.key(0))
    return int(out.shape[-1])


def require_rank(name: str, input_shape: tuple[int, ...], rank: int, layout: str) -> None:
    """Raises ValueError unless ``input_shape`` has ``rank`` positive dimensions.

    Args:
      name: the model's name, for the message.
      input_shape: one example's shape.
      rank: the number of dimensions the model needs.
      layout: a description such as ``'(height, width, channels)'``.
    """
    shape = tuple(input_shape)
    if len(shape) != rank or any(int(d) < 1 for d in shape):
        raise ValueError(f"model {name!r} needs input_shape {layout}; got {shape}")


def _check_same_order(state: nnx.State, pure: dict) -> None:
    # Guards the unflatten shortcut in apply: should a Flax release flatten State and dicts
    # in different orders, fail loudly at construction instead of mixing up weights.
    a = [p for p, _ in leaves_with_paths(state)]
    b = [p for p, _ in leaves_with_paths(pure)]
    if a != b:
        raise RuntimeError(f"nnx.State and its pure dict flatten differently: {a} vs {b}")
