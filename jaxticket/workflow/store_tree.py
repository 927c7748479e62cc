"""Flat, path-named views of pytrees, as the run store saves them, and back."""

from __future__ import annotations

from typing import Any

from jaxticket._paths import leaves_with_paths, map_with_path_str


def flatten_tree(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Flat ``{"prefix/leaf/path": array}`` dict of a pytree; ``None`` leaves are skipped.

    Args:
      tree: a pytree of arrays (e.g. params or a mask with ``None`` leaves).
      prefix: prepended to every path with a ``/`` (e.g. ``"mask"``); ``""`` for none.

    Returns:
      A dict from path string to leaf, in flattening order.
    """
    return {_join(prefix, path): leaf for path, leaf in leaves_with_paths(tree)}


def unflatten_into(template: Any, flat: dict[str, Any], prefix: str = "") -> Any:
    """Inverse of ``flatten_tree``: ``template``'s structure with leaves taken from ``flat``.

    Args:
      template: a pytree with the wanted structure; its ``None`` leaves stay ``None``. Leaf
        shapes are not checked, so a per-seed template can receive arrays stacked over seeds.
      flat: the dict ``flatten_tree`` (or ``load_level``) produced.
      prefix: the prefix used when flattening.

    Returns:
      The rebuilt pytree.

    Raises:
      ValueError: ``flat`` lacks an entry for a non-``None`` leaf of ``template``.
    """

    def take(path, leaf):
        if leaf is None:
            return None
        key = _join(prefix, path)
        if key not in flat:
            raise ValueError(f"unflatten_into: no stored array for leaf {path!r} (key {key!r})")
        return flat[key]

    return map_with_path_str(take, template)


def _join(prefix: str, path: str) -> str:
    return f"{prefix}/{path}" if prefix else path
