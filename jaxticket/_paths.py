"""Readable leaf paths ("dense1/kernel") and glob matching on them.

Every error message, per-leaf statistic and per-leaf rate in jaxticket names a leaf by
the string built here, so that a user sees the same path everywhere.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

PathPatterns = str | Sequence[str]


def path_str(path: Sequence[Any]) -> str:
    """Joins a JAX key path into a '/'-separated string: ``('params', 'dense1', 'kernel')``."""
    parts = []
    for key in path:
        if isinstance(key, DictKey):
            parts.append(str(key.key))
        elif isinstance(key, SequenceKey):
            parts.append(str(key.idx))
        elif isinstance(key, GetAttrKey):
            if key.name != "value":  # Flax NNX Variables hold their array in ``.value``
                parts.append(str(key.name))
        elif isinstance(key, FlattenedIndexKey):
            parts.append(str(key.key))
        else:
            parts.append(str(key))
    return "/".join(parts)


def leaves_with_paths(tree: Any, *, keep_none: bool = False) -> list[tuple[str, Any]]:
    """(path string, leaf) pairs in flattening order; ``None`` leaves kept if asked."""
    is_leaf = (lambda x: x is None) if keep_none else None
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
    return [(path_str(p), leaf) for p, leaf in flat]


def as_patterns(patterns: PathPatterns | None) -> tuple[str, ...]:
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        return (patterns,)
    return tuple(patterns)


def matches(path: str, patterns: PathPatterns | None) -> bool:
    """True when ``path`` matches any glob pattern (``fnmatch`` rules, ``*`` crosses '/')."""
    return any(fnmatch.fnmatchcase(path, p) for p in as_patterns(patterns))


def check_patterns_exist(patterns: Iterable[str], paths: Iterable[str], what: str) -> None:
    """Raises ValueError for a pattern that names no leaf (a typo must not pass silently)."""
    paths = list(paths)
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(p, pattern) for p in paths):
            raise ValueError(
                f"{what}: pattern {pattern!r} matches no leaf path; valid paths are: "
                + ", ".join(paths)
            )


def map_with_path_str(fn: Callable[..., Any], tree: Any, *rest: Any, keep_none: bool = True):
    """``jax.tree.map`` whose function also gets the leaf's path string first."""
    is_leaf = (lambda x: x is None) if keep_none else None
    return jax.tree_util.tree_map_with_path(
        lambda p, *xs: fn(path_str(p), *xs), tree, *rest, is_leaf=is_leaf
    )
