"""The base of every workflow's config: a frozen dataclass that names a run completely.

A workflow declares its settings as fields with a default and a help text::

    @dataclasses.dataclass(frozen=True)
    class SparseTrainConfig(WorkflowConfig):
        method: str = field("rigl", "gmp, set, rigl, granet or static")
        sparsities: tuple[float, ...] = field((0.9,), "target sparsities, one run each")

        def check(self):
            if not self.sparsities:
                raise ConfigError("sparsities", "sparsities: give at least one")

Building one coerces every field to its type hint (lists become tuples, ints become
floats; a wrong type is a one-line TypeError naming the field), then calls ``check()`` for
ranges and combinations (a ``ConfigError(field, message)``). ``to_dict``/``from_dict``
round-trip through JSON and ``digest`` hashes the canonical JSON, so equal configs name
the same run directory. ``jaxticket.workflow.flags`` turns the fields into CLI flags.

Field types understood: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``,
``tuple[int, ...]``, ``tuple[float, ...]`` and ``tuple[tuple[str, float], ...]``
(PATTERN=SCALE pairs, e.g. per-layer rates; a dict is accepted too).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import numbers
import typing
from typing import Any

# The key under which a workflow records the runtime settings beside the config (in
# config.json and results.json); ``from_dict`` ignores it.
RUNTIME_KEY = "runtime"

PatternScales = tuple[tuple[str, float], ...]


class ConfigError(ValueError):
    """A config value out of range or a bad combination; ``field`` names the setting."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def field(default: Any, help: str, **metadata: Any) -> Any:
    """A config field with its default and the help text its CLI flag shows.

    Args:
      default: the default value (an immutable one: a tuple, not a list).
      help: one phrase, shown by ``--help`` followed by the default.
      **metadata: more ``dataclasses.field`` metadata; ``added=True`` marks a setting added
        after runs were stored (:meth:`WorkflowConfig.to_dict` omits it at its default).
    """
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


class WorkflowConfig:
    """Mixin base of workflow configs (subclasses are ``@dataclasses.dataclass(frozen=True)``).

    Subclasses override :meth:`check` for ranges and combinations.
    """

    def __post_init__(self):
        # Every field is checked here, before anything trains: a typo must not cost a run.
        for name, kind in field_types(type(self)).items():
            object.__setattr__(self, name, coerce_field(name, kind, getattr(self, name)))
        self.check()

    def check(self) -> None:
        """Raises ``ConfigError(field, message)`` for a value out of range or a bad
        combination; called once the fields are coerced. The base checks nothing."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples become lists).

        A field declared with ``field(..., added=True)`` (a setting added after runs were
        stored) is left out while it holds its default, so the digest, and with it the run
        directory, of every config that does not use it stays what it was.
        """
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            if f.metadata.get("added") and d[f.name] == f.default:
                del d[f.name]
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """Inverse of :meth:`to_dict`; a stored run's ``"runtime"`` entry is ignored.

        Raises:
          ValueError: ``d`` holds keys that are not config fields.
          TypeError, ConfigError: as the constructor.
        """
        d = {k: v for k, v in dict(d).items() if k != RUNTIME_KEY}
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{cls.__name__}.from_dict: unknown fields {unknown}")
        return cls(**d)

    def digest(self) -> str:
        """A stable sha256 hex digest of the config's canonical JSON."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hint of each dataclass field of ``cls``, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce_field(name: str, kind: Any, value: Any) -> Any:
    """``value`` as the field's type ``kind`` (lists to tuples, ints to floats), or a
    TypeError naming ``name``."""
    if kind is str:
        return _str(name, value)
    if kind is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
        return value
    if kind is int:
        return _int(name, value)
    if kind is float:
        return _float(name, value)
    item = _ITEMS.get(kind)
    if item is None:
        raise TypeError(f"{name}: unsupported config field type {kind!r}")
    if isinstance(value, str):
        hint = "(('output/*', 0.5),)" if kind == PatternScales else f"({value!r},)"
        raise TypeError(
            f"{name} must be a tuple, got the string {value!r}; write {hint} "
            "(the command line takes a comma-separated list)"
        )
    if kind == PatternScales and isinstance(value, dict):
        value = tuple(value.items())
    if not isinstance(value, tuple | list):
        raise TypeError(f"{name} must be a tuple, got {type(value).__name__} {value!r}")
    return tuple(item(f"{name}[{i}]", v) for i, v in enumerate(value))


def _int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__} {value!r}")
    return value


def _pair(name: str, item: Any) -> tuple[str, float]:
    if isinstance(item, str) or not isinstance(item, tuple | list) or len(item) != 2:
        raise TypeError(f"{name} must be a (pattern, scale) pair, got {item!r}")
    return _str(f"{name} pattern", item[0]), _float(f"{name} scale", item[1])


_ITEMS = {
    tuple[str, ...]: _str,
    tuple[int, ...]: _int,
    tuple[float, ...]: _float,
    PatternScales: _pair,
}
