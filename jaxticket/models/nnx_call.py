"""How ``from_nnx`` calls a Flax NNX module, and how it feeds the module's own ``Rngs``.

NNX modules come in two styles. jaxticket's zoo takes the mode and the dropout key as
arguments, ``module(x, train=..., key=...)``. The Flax NNX tutorials instead switch modes
with ``model.train()`` / ``model.eval()`` (which set the ``deterministic`` and
``use_running_average`` attributes of Dropout and BatchNorm layers) and keep their random
streams in the module (``nnx.Dropout(0.5, rngs=rngs)``), then call ``model(x)``.

Calling conventions (the ``call=`` argument of ``from_nnx``):

- ``"auto"`` (default): read ``type(module).__call__``'s signature. The mode is passed as
  ``train=`` when ``__call__`` takes ``train``, else set with ``module.train()`` /
  ``module.eval()``; the key is passed as ``key=`` when ``__call__`` takes ``key``.
- ``"train_key"``: ``module(x, train=train, key=key)``.
- ``"modes"``: ``module.train()`` or ``module.eval()``, then ``module(x)``.
- a callable ``call(module, x, train, key) -> logits``.

Whatever the convention, the module's random-stream variables (``nnx.RngKey`` /
``nnx.RngCount``, the state behind ``nnx.Rngs``) are neither params nor model state: each
``apply`` re-seeds them from its ``key`` (``RngKey`` number ``i`` gets
``jax.random.fold_in(key, i)``, counts start at 0), so a fixed key gives the same dropout
masks and different keys give different ones. Without a key, eval mode seeds them from
``jax.random.key(0)``; train mode without a key is an error when the module's randomness
can only come from those streams.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Call = Callable[[Any, jax.Array, bool, "jax.Array | None"], jax.Array]

#: The named calling conventions ``from_nnx`` accepts besides a callable.
CONVENTIONS = ("auto", "train_key", "modes")

_DESCRIPTIONS = {
    "train_key": "module(x, train=..., key=...)",
    "modes": "module.train()/module.eval() then module(x), dropout keys from the module's nnx.Rngs",
}


def call_train_key(module: Any, x: jax.Array, train: bool, key: jax.Array | None) -> jax.Array:
    """The ``"train_key"`` convention: ``module(x, train=train, key=key)``."""
    return module(x, train=train, key=key)


def call_modes(module: Any, x: jax.Array, train: bool, key: jax.Array | None) -> jax.Array:
    """The ``"modes"`` convention: ``module.train()`` / ``module.eval()``, then ``module(x)``."""
    del key  # the module's own Rngs state carries the randomness (re-seeded by the caller)
    _set_mode(module, train)
    return module(x)


def call_by_signature(module: Any, x: jax.Array, train: bool, key: jax.Array | None):
    """The ``"auto"`` convention: pass ``train=`` / ``key=`` where ``__call__`` names them."""
    takes = call_keywords(type(module))
    kwargs = {}
    if "train" in takes:
        kwargs["train"] = train
    else:
        _set_mode(module, train)
    if "key" in takes:
        kwargs["key"] = key
    return module(x, **kwargs)


def call_keywords(module_type: type) -> frozenset[str]:
    """Which of ``train`` and ``key`` the module's ``__call__`` takes by name."""
    try:
        params = inspect.signature(module_type.__call__).parameters
    except (TypeError, ValueError):  # no introspectable signature
        return frozenset()
    named = {n for n, p in params.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    return frozenset(named & {"train", "key"})


def resolve(call: str | Call) -> tuple[str, Call]:
    """The (label, function) for a ``call=`` argument of ``from_nnx``.

    Raises:
      ValueError: an unknown convention name.
      TypeError: neither a name nor a callable.
    """
    if callable(call):
        return "custom", call
    if isinstance(call, str):
        functions = {"auto": call_by_signature, "train_key": call_train_key, "modes": call_modes}
        if call in functions:
            return call, functions[call]
        raise ValueError(
            f"from_nnx: unknown calling convention call={call!r}; valid: "
            f"{', '.join(map(repr, CONVENTIONS))}, or a function (module, x, train, key) -> logits"
        )
    raise TypeError(
        f"from_nnx: call must be one of {CONVENTIONS} or a function, got {type(call).__name__}"
    )


def fallbacks(label: str) -> tuple[str, ...]:
    """Conventions worth trying when ``label``'s call fails with a ``TypeError``."""
    return ("train_key", "modes") if label == "auto" else ()


def describe(label: str, module_type: type) -> str:
    """How convention ``label`` calls a module of ``module_type``, for error messages."""
    if label == "custom":
        return "the given call(module, x, train, key)"
    if label != "auto":
        return _DESCRIPTIONS[label]
    takes = call_keywords(module_type)
    args = ["x"] + [f"{k}=..." for k in ("train", "key") if k in takes]
    text = f"module({', '.join(args)})"
    if "train" not in takes:
        text = f"module.train()/module.eval() then {text}"
    return f"{text} (auto: __call__ takes {', '.join(sorted(takes)) or 'neither train nor key'})"


def rng_seeder(abstract_rngs: nnx.State) -> Callable[[jax.Array], nnx.State]:
    """A function ``key -> nnx.State`` giving the module's random streams fresh values.

    Args:
      abstract_rngs: the module's ``nnx.RngState`` variables (abstract values suffice).

    Returns:
      ``seed(key)``: a State of the same structure whose ``RngKey`` number ``i`` holds
      ``fold_in(key, i)`` (split to the variable's shape if it is not a scalar) and whose
      counts are zero.
    """
    treedef = jax.tree.structure(abstract_rngs)
    variables = jax.tree.leaves(abstract_rngs, is_leaf=lambda v: isinstance(v, nnx.Variable))
    avals = jax.tree.leaves(abstract_rngs)
    if len(variables) != len(avals):  # one array per variable, or the unflatten below is wrong
        raise RuntimeError("from_nnx: an nnx.RngState variable holds more than one array")
    is_key = [isinstance(v, nnx.RngKey) for v in variables]

    def seed(key: jax.Array) -> nnx.State:
        key = as_typed_key(key)
        values = []
        for i, (key_leaf, aval) in enumerate(zip(is_key, avals, strict=True)):
            if key_leaf:
                k = jax.random.fold_in(key, i)
                values.append(jax.random.split(k, aval.shape) if aval.shape else k)
            else:
                values.append(jnp.zeros(aval.shape, aval.dtype))
        return jax.tree.unflatten(treedef, values)

    return seed


def as_typed_key(key: jax.Array) -> jax.Array:
    """``key`` as a typed PRNG key (a raw ``uint32`` ``PRNGKey`` is wrapped)."""
    key = jnp.asarray(key) if not hasattr(key, "dtype") else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(key)


def _set_mode(module: Any, train: bool) -> None:
    if not (hasattr(module, "train") and hasattr(module, "eval")):
        raise TypeError(
            f"{type(module).__name__} has no train()/eval() methods (not an nnx.Module?)"
        )
    module.train() if train else module.eval()
