"""Compile-cache keys by value: equal models and optimizers share compiled programs.

An optax ``GradientTransformation`` is a NamedTuple of closures and a zoo ``Model`` a
NamedTuple of a name, closures and shapes, so two ``optax.adam(1e-3)`` calls (or two
``models.get("mlp", ...)`` calls) build different objects that compute the same thing.
The engine's caches (``compiled_train_fn``, ``init_seeds``) key on :func:`fingerprint`,
so such equal configurations compile once.

What two objects must share to hit the cache (``fingerprint(a) == fingerprint(b)``):

- ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes`` and NumPy
  scalars: the same type and value (``0.0`` and ``-0.0`` differ; NaN equals NaN).
- tuples, lists, dicts, sets, NamedTuples, dataclasses, ``functools.partial`` and bound
  methods: the same type and, element by element (dicts in order), equal fingerprints.
- Python functions (lambdas, closures, nested functions: optax's ``init``/``update``
  pairs and schedules, a model's ``init``/``apply``): the same code (``==`` of code
  objects), module, qualified name, default arguments and closure-cell contents
  (recursively), and the same values of the module globals the code names (plain values
  by value; modules, classes, functions and anything else by identity).
- other containers JAX can flatten (an ``nnx.State``): the same tree structure and
  leaves with equal fingerprints.
- any other hashable object: its own ``==`` (identity unless its class defines value
  equality, as jax's ``PyTreeDef`` and ``ShapeDtypeStruct``, dtypes and NNX ``GraphDef``
  do).
- everything else (jax and NumPy arrays, mutable objects without a hash): the very same
  object. Such a key holds a reference to it, so it can never be confused with a later
  object at the same address; the caches that hold keys are bounded.

So a different learning rate, schedule constant or layer width compiles its own
program, and nothing that could change the program is ever matched by accident. As with
``jax.jit`` itself, mutating a container a closure captured after the first call is not
seen: build a new optimizer instead.
"""

from __future__ import annotations

import dataclasses
import functools
import types
from collections.abc import Hashable
from typing import Any

import jax
import numpy as np

_MAX_DEPTH = 64
_PLAIN = (type(None), bool, int, str, bytes)


class ByValue:
    """Wraps ``value`` so that it hashes and compares by :func:`fingerprint`.

    ``functools.lru_cache`` on ``ByValue`` arguments is a cache keyed by value; the
    wrapped object is ``.value``.
    """

    __slots__ = ("_hash", "key", "value")

    def __init__(self, value: Any):
        self.value = value
        self.key = fingerprint(value)
        self._hash = hash(self.key)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByValue) and self.key == other.key

    def __repr__(self) -> str:
        return f"ByValue({self.value!r})"


def fingerprint(obj: Any) -> Hashable:
    """A hashable key equal for objects that compute the same thing (see module docstring).

    Args:
      obj: a model, an optimizer, or any value.

    Returns:
      A hashable, comparable key.
    """
    return _Fingerprinter().of(obj, 0)


class _Same:
    """Identity key: equal only to a key of the very same object, which it keeps alive."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.obj is self.obj


class _Fingerprinter:
    def __init__(self):
        self.active: dict[int, int] = {}  # id -> visit order, to break reference cycles

    def of(self, obj: Any, depth: int) -> Hashable:
        if isinstance(obj, _PLAIN):
            return (type(obj), obj)
        if isinstance(obj, float):
            return (type(obj), float(obj).hex())
        if isinstance(obj, complex):
            return (complex, obj.real.hex(), obj.imag.hex())
        if isinstance(obj, np.generic):
            return (type(obj), obj.dtype.str, obj.tobytes())
        if isinstance(obj, np.dtype):
            return (np.dtype, obj.str)
        if depth > _MAX_DEPTH:
            return self.identity(obj)
        if id(obj) in self.active:
            return ("cycle", self.active[id(obj)])
        self.active[id(obj)] = len(self.active)
        try:
            return self.compound(obj, depth + 1)
        finally:
            del self.active[id(obj)]

    def compound(self, obj: Any, depth: int) -> Hashable:
        each = functools.partial(self.of, depth=depth)
        if isinstance(obj, (tuple, list)):
            return (type(obj), tuple(each(x) for x in obj))
        if isinstance(obj, dict):
            return (type(obj), tuple((each(k), each(v)) for k, v in obj.items()))
        if isinstance(obj, (set, frozenset)):
            return (type(obj), frozenset(each(x) for x in obj))
        if isinstance(obj, types.FunctionType):
            return self.function(obj, depth)
        if isinstance(obj, types.MethodType):
            return (types.MethodType, each(obj.__func__), each(obj.__self__))
        if isinstance(obj, functools.partial):
            return (functools.partial, each(obj.func), each(obj.args), each(obj.keywords))
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
            extra = {k: v for k, v in getattr(obj, "__dict__", {}).items() if k not in fields}
            return (type(obj), each(fields), each(extra))
        return self.pytree(obj, depth)

    def pytree(self, obj: Any, depth: int) -> Hashable:
        # An unhashable container JAX knows how to flatten (an ``nnx.State``, say) is its
        # tree structure and its leaves; anything else is itself.
        try:
            hash(obj)
            return self.identity(obj)
        except TypeError:
            pass
        try:
            leaves, treedef = jax.tree.flatten(obj)
            hash(treedef)
        except Exception:  # noqa: BLE001  (no structure to go by: identity is safe)
            return self.identity(obj)
        if treedef.num_nodes == 1 and treedef.num_leaves == 1:  # a leaf: an array, say
            return self.identity(obj)
        return ("pytree", treedef, tuple(self.of(leaf, depth) for leaf in leaves))

    def function(self, fn: types.FunctionType, depth: int) -> Hashable:
        each = functools.partial(self.of, depth=depth)
        cells = []
        for cell in fn.__closure__ or ():
            try:
                cells.append(each(cell.cell_contents))
            except ValueError:  # a cell not yet filled
                cells.append(("empty cell",))
        named = {
            name: _global_key(fn.__globals__[name])
            for name in sorted(_names(fn.__code__))
            if name in fn.__globals__
        }
        return (
            types.FunctionType,
            fn.__code__,
            fn.__module__,
            fn.__qualname__,
            each(fn.__defaults__),
            each(fn.__kwdefaults__),
            tuple(cells),
            tuple(named.items()),
            each(dict(fn.__dict__)),
        )

    @staticmethod
    def identity(obj: Any) -> Hashable:
        try:
            hash(obj)
        except TypeError:
            return _Same(obj)
        return (type(obj), obj)


def _names(code: types.CodeType) -> set[str]:
    """Names a code object and the code nested in it look up (globals among them)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _global_key(value: Any) -> Hashable:
    # Shallow on purpose: a global function or module is the same object for as long as
    # it is not redefined, and following globals by value could walk whole libraries.
    if isinstance(value, (*_PLAIN, float, complex, np.generic)):
        return _Fingerprinter().of(value, 0)
    if isinstance(value, tuple) and all(isinstance(v, (*_PLAIN, float)) for v in value):
        return _Fingerprinter().of(value, 0)
    return _Fingerprinter.identity(value)
