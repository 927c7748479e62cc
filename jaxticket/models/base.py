"""The pure ``Model`` the rest of jaxticket sees, and its construction from a Flax NNX module.

NNX modules are stateful Python objects; the engine wants two pure functions over plain
nested dicts so that it can jit, vmap over seeds and checkpoint them. ``from_nnx`` splits
an abstract copy of the module once (no arrays are allocated) and keeps its ``GraphDef``
and the tree structure of its state; ``apply`` then rebuilds the module from the dicts with
one ``tree_unflatten`` plus ``nnx.merge``. Both happen at trace time only: the compiled
program contains just the forward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxticket._paths import leaves_with_paths
from jaxticket.models import nnx_call

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
    """The ``"train_key"`` convention, ``module(x, train=, key=)`` (kept for older code)."""
    return nnx_call.call_train_key(module, x, train, key)


def from_nnx(
    build: Callable[[nnx.Rngs], nnx.Module],
    *,
    input_shape: Sequence[int],
    num_classes: int | None = None,
    name: str = "nnx",
    call: str | Callable[..., jax.Array] = "auto",
    input_dtype: Any = jnp.float32,
) -> Model:
    """Wraps a Flax NNX module constructor as a pure ``Model``.

    Both NNX styles work (see :mod:`jaxticket.models.nnx_call`): modules whose
    ``__call__`` takes ``train`` and ``key``, and tutorial-style modules that switch modes
    with ``model.train()`` / ``model.eval()`` and keep their ``nnx.Rngs`` inside
    (``nnx.Dropout(0.5, rngs=rngs)``). Random-stream variables are neither params nor
    state: every ``apply`` re-seeds them from its ``key``, so a fixed key is reproducible.

    Example::

        class CNN(nnx.Module):                       # as in the Flax NNX MNIST tutorial
            def __init__(self, *, rngs):
                self.linear = nnx.Linear(784, 10, rngs=rngs)
                self.dropout = nnx.Dropout(0.1, rngs=rngs)
            def __call__(self, x):
                return self.linear(self.dropout(x.reshape(x.shape[0], -1)))

        model = jaxticket.models.from_nnx(lambda rngs: CNN(rngs=rngs), input_shape=(28, 28, 1))

    Args:
      build: ``build(rngs) -> module``; called once abstractly here and once per ``init``.
      input_shape: one example's shape (positive ints).
      num_classes: the number of logits; inferred from an abstract forward pass if
        omitted, checked against it if given.
      name: the model's name.
      call: the calling convention: ``"auto"`` (default: by ``__call__``'s signature),
        ``"train_key"`` (``module(x, train=, key=)``), ``"modes"`` (``module.train()`` /
        ``module.eval()`` then ``module(x)``), or ``call(module, x, train, key) -> logits``.
      input_dtype: the dtype of the inputs, for the abstract forward pass that checks the
        model at construction (``jnp.int32`` for token models).

    Returns:
      A ``Model`` whose params are the ``nnx.Param`` variables as a plain nested dict
      (paths such as ``'dense1/kernel'``) and whose state is every other variable except
      the random streams (``nnx.RngState``).

    Raises:
      ValueError: a bad ``input_shape``/``num_classes``/``call`` name, logits of the wrong
        shape, or a forward pass that fails (the message names the conventions tried).
      TypeError: ``build`` does not return an ``nnx.Module``, or the forward pass fails
        with a ``TypeError`` under every convention tried.
    """
    input_shape = check_input_shape(name, input_shape)
    if num_classes is not None:
        num_classes = check_num_classes(name, num_classes)
    label, _ = nnx_call.resolve(call)

    def build_checked(rngs: nnx.Rngs) -> nnx.Module:
        module = build(rngs)
        if not isinstance(module, nnx.Module):
            raise TypeError(
                f"from_nnx {name!r}: build(rngs) must return an nnx.Module, got "
                f"{type(module).__name__}"
            )
        return module

    abstract = nnx.eval_shape(lambda: build_checked(nnx.Rngs(0)))
    graphdef, abs_params, abs_rngs, abs_rest = nnx.split(abstract, nnx.Param, nnx.RngState, ...)
    params_def = jax.tree.structure(abs_params)
    rest_def = jax.tree.structure(abs_rest)
    params_template = nnx.to_pure_dict(abs_params)
    state_template = nnx.to_pure_dict(abs_rest)
    _check_same_order(abs_params, params_template)
    _check_same_order(abs_rest, state_template)
    seed_rngs = nnx_call.rng_seeder(abs_rngs)
    has_rngs = bool(jax.tree.leaves(abs_rngs))
    module_type = type(abstract)

    def init(key: jax.Array) -> tuple[Params, State]:
        _, params, _, rest = nnx.split(build(nnx.Rngs(key)), nnx.Param, nnx.RngState, ...)
        return nnx.to_pure_dict(params), nnx.to_pure_dict(rest)

    def make_apply(label: str) -> Callable[..., tuple[jax.Array, State]]:
        fn = nnx_call.resolve(call if label == "custom" else label)[1]
        passes_key = label == "train_key" or (
            label == "auto" and "key" in nnx_call.call_keywords(module_type)
        )

        def apply(params, state, x, *, train: bool, key: jax.Array | None = None):
            check_input(name, input_shape, x)
            check_tree(f"model {name!r} params", params, params_template)
            check_tree(f"model {name!r} state", state, state_template)
            if key is None and train and has_rngs and not passes_key:
                raise ValueError(
                    f"model {name!r} keeps random streams (nnx.Rngs, e.g. for nnx.Dropout) in "
                    "the module: apply(..., train=True) needs key=..."
                )
            # A pure dict and its nnx.State flatten to leaves in the same order (checked
            # above), so rebuilding the State is one unflatten: no per-leaf Python work.
            p = jax.tree.unflatten(params_def, jax.tree.leaves(params))
            r = jax.tree.unflatten(rest_def, jax.tree.leaves(state))
            rngs = seed_rngs(jax.random.key(0) if key is None else key) if has_rngs else abs_rngs
            module = nnx.merge(graphdef, p, rngs, r)
            logits = fn(module, x, train, key)
            nnx_call.check_logits(name, logits, jnp.shape(x)[0], num_classes)
            if not train:
                return logits, state
            _, _, _, new_rest = nnx.split(module, nnx.Param, nnx.RngState, ...)
            return logits, nnx.to_pure_dict(new_rest)

        return apply

    x_spec = jax.ShapeDtypeStruct((1, *input_shape), input_dtype)
    label, width = nnx_call.probe(
        name, make_apply, label, module_type, params_template, state_template, x_spec
    )
    if num_classes is not None and width != num_classes:
        raise ValueError(
            f"model {name!r}: num_classes={num_classes} but the module returns "
            f"{width} logits per example"
        )
    num_classes = width
    apply = make_apply(label)
    # Kept so that rebuild_nnx can build a resized copy (e.g. a compacted network).
    apply.nnx_source = NNXSource(build, input_shape, name, call, input_dtype)
    return Model(name, init, apply, input_shape, int(num_classes))


class NNXSource(NamedTuple):
    """How ``from_nnx`` built a model: its arguments, found on ``model.apply.nnx_source``."""

    build: Callable[[nnx.Rngs], nnx.Module]
    input_shape: tuple[int, ...]
    name: str
    call: str | Callable[..., jax.Array]
    input_dtype: Any


def check_input_shape(name: str, input_shape: Any) -> tuple[int, ...]:
    """``input_shape`` as a tuple of positive ints, or a one-line ValueError naming it.

    Args:
      name: the model's name, for the message.
      input_shape: a sequence of positive integers (``(28, 28, 1)``, ``(40,)``).

    Returns:
      The shape as a tuple of Python ints.
    """
    if isinstance(input_shape, str | bytes) or not isinstance(input_shape, Sequence | np.ndarray):
        raise ValueError(
            f"model {name!r}: input_shape must be a sequence of positive ints such as "
            f"(28, 28, 1), got {input_shape!r}"
        )
    dims = tuple(input_shape)
    if not all(_is_int(d) and int(d) >= 1 for d in dims):
        raise ValueError(
            f"model {name!r}: input_shape must be a sequence of positive ints, got {dims!r}"
        )
    return tuple(int(d) for d in dims)


def check_num_classes(name: str, num_classes: Any) -> int:
    """``num_classes`` as a positive Python int, or a one-line ValueError/TypeError.

    Args:
      name: the model's name, for the message.
      num_classes: the number of logits.

    Returns:
      ``int(num_classes)``.
    """
    if not _is_int(num_classes):
        raise TypeError(
            f"model {name!r}: num_classes must be an int, got {num_classes!r} "
            f"({type(num_classes).__name__})"
        )
    if int(num_classes) < 1:
        raise ValueError(f"model {name!r}: num_classes must be positive, got {num_classes}")
    return int(num_classes)


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


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _check_same_order(state: nnx.State, pure: dict) -> None:
    # Guards the unflatten shortcut in apply: should a Flax release flatten State and dicts
    # in different orders, fail loudly at construction instead of mixing up weights.
    a = [p for p, _ in leaves_with_paths(state)]
    b = [p for p, _ in leaves_with_paths(pure)]
    if a != b:
        raise RuntimeError(f"nnx.State and its pure dict flatten differently: {a} vs {b}")
