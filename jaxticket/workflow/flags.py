"""Command-line flags generated from a workflow config class (experiments as data).

Each field ``some_name`` becomes ``--some-name``, parsed by its type hint: ints and numbers
with a one-line error for bad text, tuples as comma-separated lists (``''`` for none),
``tuple[tuple[str, float], ...]`` as ``PATTERN=SCALE,...`` and bools as
``--name``/``--no-name``. The help text is the field's, followed by its default written in
the flag's own syntax (``output/*=0.5``, not a tuple repr)::

    parser = argparse.ArgumentParser()
    add_config_flags(parser, LotteryConfig)
    config = config_from_args(LotteryConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from jaxticket.workflow.config import PatternScales, field_types


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Adds one flag per field of the config dataclass ``cls`` to ``parser``.

    Raises:
      TypeError: a field's type has no flag syntax.
    """
    kinds = field_types(cls)
    for f in dataclasses.fields(cls):
        _add_field(parser, f, kinds[f.name])


def add_run_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """What every workflow command takes: one flag per field of the config class ``cls``
    (:func:`add_config_flags`), ``--out`` (the folder holding run directories) and
    ``--quiet`` (no progress bars or log lines)."""
    add_config_flags(parser, cls)
    parser.add_argument(
        "--out", default="runs", help="folder holding run directories (default: runs)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def config_from_args(cls: type, args: argparse.Namespace):
    """The config ``cls`` built from the parsed flags of :func:`add_config_flags`.

    Raises:
      TypeError, ConfigError: as the config's constructor (a value out of range).
    """
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field, kind: Any) -> None:
    flag = "--" + f.name.replace("_", "-")
    help_text = f.metadata.get("help", "").replace("%", "%%")
    if kind is bool:
        shown = "true" if f.default else "false"
        help_text += f" (default: {shown})"
        parser.add_argument(
            flag, action=argparse.BooleanOptionalAction, default=f.default, help=help_text
        )
        return
    if kind == PatternScales:
        parse, shown = parse_pattern_scales, ",".join(f"{p}={s:g}" for p, s in f.default)
        help_text += " (comma-separated"
    elif kind == tuple[str, ...]:
        parse, shown = parse_str_list, ",".join(f.default)
        help_text += " (comma-separated; '' for none"
    elif kind == tuple[float, ...]:
        parse, shown = parse_float_list, ",".join(f"{x:g}" for x in f.default)
        help_text += " (comma-separated"
    elif kind == tuple[int, ...]:
        parse, shown = parse_int_list, ",".join(str(x) for x in f.default)
        help_text += " (comma-separated"
    elif kind in _SCALARS:
        parse, shown = _SCALARS[kind], str(f.default)
        help_text += " ("
    else:
        raise TypeError(f"add_config_flags: field {f.name!r} has type {kind!r}, no flag syntax")
    help_text += ("; " if help_text[-1] != "(" else "") + f"default: {shown or chr(39) * 2})"
    parser.add_argument(flag, type=parse, default=f.default, help=help_text)


def parse_int(text: str) -> int:
    """An integer flag value, or argparse's one-line error."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def parse_number(text: str) -> float:
    """A number flag value, or argparse's one-line error."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def parse_str_list(text: str) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``; ``""`` -> ``()``."""
    return tuple(s.strip() for s in text.split(",") if s.strip())


def parse_float_list(text: str) -> tuple[float, ...]:
    """Comma-separated numbers."""
    try:
        return tuple(float(s) for s in parse_str_list(text))
    except ValueError:
        message = f"expected comma-separated numbers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def parse_int_list(text: str) -> tuple[int, ...]:
    """Comma-separated integers."""
    try:
        return tuple(int(s) for s in parse_str_list(text))
    except ValueError:
        message = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def parse_pattern_scales(text: str) -> tuple[tuple[str, float], ...]:
    """``"output/*=0.5,dense1/*=0.75"`` -> ``(("output/*", 0.5), ("dense1/*", 0.75))``."""
    out = []
    for item in parse_str_list(text):
        pattern, sep, scale = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected PATTERN=SCALE, got {item!r}")
        try:
            out.append((pattern, float(scale)))
        except ValueError:
            message = f"scale of {pattern!r}: expected a number, got {scale!r}"
            raise argparse.ArgumentTypeError(message) from None
    return tuple(out)


_SCALARS = {int: parse_int, float: parse_number, str: str}
