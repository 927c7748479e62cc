"""How ``from_nnx`` calls an NNX module, feeds the module's own ``Rngs``, checks its logits.

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


def probe(name, make_apply, label, module_type, params, state, x):
    """Runs the forward pass abstractly in train mode; returns (convention, logits width).

    Under ``"auto"``, a ``TypeError`` (a call the module's signature rejects) moves on to
    the other conventions; when none works, one line names each convention tried and why
    it failed.

    Args:
      name: the model's name, for messages.
      make_apply: ``make_apply(convention) -> apply`` (the ``Model.apply`` it would build).
      label: the convention asked for (``"auto"``, ``"train_key"``, ``"modes"``, ``"custom"``).
      module_type: the module's class, for messages.
      params, state: abstract params and state (``ShapeDtypeStruct`` leaves).
      x: a ``ShapeDtypeStruct`` batch of one example.

    Raises:
      TypeError, ValueError: the forward pass failed under every convention tried.
      ModelOutputError: the call worked but the logits have the wrong shape.
    """
    failures = []
    for candidate in (label, *fallbacks(label)):
        try:
            width = _logits_width(make_apply(candidate), params, state, x)
        except ModelOutputError:
            raise
        except Exception as err:  # noqa: BLE001 (reported below, one line per convention)
            failures.append((candidate, err))
            if not isinstance(err, TypeError):
                break
        else:
            return candidate, width
    tried = "; ".join(
        f"{describe(c, module_type)} raised {type(e).__name__}: {_first_line(e)}"
        for c, e in failures
    )
    kind = TypeError if all(isinstance(e, TypeError) for _, e in failures) else ValueError
    raise kind(
        f"from_nnx {name!r}: the forward pass on a {x.dtype} batch of shape {x.shape} "
        f"failed; tried {tried}. Supported: call='train_key'"
        " (module(x, train=, key=)), call='modes' (module.train()/eval() then module(x)), or "
        "call=fn(module, x, train, key) -> logits"
    ) from None


def _logits_width(apply, params, state, x) -> int:
    # Train mode: the path through Dropout and BatchNorm batch statistics, the one that
    # needs keys and mode switches (one trace; eval mode is checked at its first call).
    out = jax.eval_shape(
        lambda p, s, x: apply(p, s, x, train=True, key=jax.random.key(0))[0], params, state, x
    )
    return int(out.shape[-1])


class ModelOutputError(ValueError):
    """Logits of the wrong shape: the call itself worked, so no other convention is tried."""


def check_logits(name: str, logits: Any, batch: int, num_classes: int | None) -> None:
    """Raises ModelOutputError unless ``logits`` has shape ``(batch, num_classes)``.

    Args:
      name: the model's name, for the message.
      logits: what the module returned.
      batch: the batch size given to it.
      num_classes: the expected width, or ``None`` when it is still being inferred.
    """
    shape = tuple(jnp.shape(logits)) if hasattr(logits, "shape") else None
    if shape is None or len(shape) != 2 or shape[0] != batch:
        got = f"shape {shape}" if shape is not None else f"a {type(logits).__name__}"
        raise ModelOutputError(
            f"model {name!r} must return logits of shape (batch, num_classes); on a batch of "
            f"{batch} it returned {got}"
        )
    if num_classes is not None and shape[1] != num_classes:
        raise ModelOutputError(
            f"model {name!r}: num_classes={num_classes} but the module returns {shape[1]} "
            "logits per example"
        )


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split("\n")[0].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
