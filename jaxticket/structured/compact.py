"""Compaction: a structured ticket as a smaller dense network computing the same function.

:func:`compact` slices every member of every group (producers' output units, biases,
BatchNorm scale, shift and running statistics, consumers' input rows, respecting the
``(outer, size, inner)`` layout of flattened and per-head axes) by the kept unit indices,
and rebuilds the NNX model (``jaxticket.models.rebuild.rebuild_nnx``) with the sliced
variables and the layers' size attributes (``in_features``, ``out_features``,
``num_features``, ``features``) updated. The compacted model is an ordinary ``Model``:
it trains through ``jaxticket.train``, and its params checkpoint like any other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxticket.mask_checks import validate_mask
from jaxticket.models.base import Model, check_tree
from jaxticket.models.rebuild import nnx_source, rebuild_nnx
from jaxticket.structured.groups import Group, check_groups, member_leaf, unit_indices
from jaxticket.structured.masks import (
    check_keep,
    check_structured,
    collapsed_groups,
    key_tuple,
)

Slices = dict[tuple, list[tuple[int, np.ndarray]]]


def compact(
    model: Model, params: Any, state: Any, mask_or_keep: Any, groups: Iterable[Group] | None = None
) -> tuple[Any, Any, Model]:
    """Removes the pruned units for real: smaller params/state and a model that takes them.

    The compacted network's logits equal the masked network's,
    ``model.apply(apply_mask(params, mask), state, x, train=False)``, up to float rounding
    (a removed unit outputs exactly 0 there, so dropping it changes nothing); in train mode
    too (BatchNorm batch statistics are per channel), and the kept channels' running
    statistics update as in the masked network. The new
    model's ``init(key)`` is the original ``init(key)`` sliced the same way (so it can
    train the compact architecture from scratch with the original init), and its
    ``apply`` takes only the new shapes. Compaction runs on the host (the shapes depend on
    the keep), not under ``jax.jit``.

    Example::

        groups = jaxticket.structured.dependency_groups(model, params, state)
        small_params, small_state, small = compact(model, params, state, mask, groups)
        logits, _ = small.apply(small_params, small_state, x, train=False)

    Args:
      model: a ``Model`` built by ``jaxticket.models.from_nnx`` (every zoo model is one).
      params: its params (one network: stacked seeds are refused naming the leaf).
      state: its state (``{}`` when there is none).
      mask_or_keep: a structured mask like params (see
        :func:`jaxticket.structured.check_structured`), or a keep
        ``{group name: bool[size]}`` (groups left out keep every unit).
      groups: the dependency groups; derived with ``dependency_groups`` when None.

    Returns:
      ``(params, state, model)`` of the compacted network.

    Raises:
      ValueError: a mask with unstructured holes (names the group and leaf), a group that
        keeps no unit (layer collapse), a bad keep, groups that do not fit the params, or
        a module whose forward pass breaks at the new sizes (names the groups).
      TypeError: a model not built by ``from_nnx``, or a traced mask/keep.
    """
    nnx_source(model)  # a clear TypeError for models that cannot be rebuilt
    state = {} if state is None else state
    templates = jax.eval_shape(model.init, jax.random.key(0))
    check_tree(f"compact: model {model.name!r} params", params, templates[0])
    check_tree(f"compact: model {model.name!r} state", state, templates[1])
    if groups is None:
        from jaxticket.structured.trace_groups import dependency_groups

        groups = dependency_groups(model, params, state)
    groups = tuple(groups)
    check_groups(groups, params, state)
    keep = _as_keep(groups, params, mask_or_keep)
    collapsed = collapsed_groups(groups, keep)
    if collapsed:
        raise ValueError(
            f"compact: groups {collapsed} keep no unit (layer collapse): a layer of width 0 "
            "passes no signal; keep at least one unit per group"
        )
    slices = kept_indices(groups, keep, params, state)
    new_params = slice_tree(params, slices)
    new_state = slice_tree(state, slices)
    removed = [name for name, k in keep.items() if not k.all()]
    try:
        small = rebuild_nnx(model, lambda module: resize_module(module, slices))
    except (ValueError, TypeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"compact: the compacted {model.name!r} (groups {removed} narrowed) fails its "
            f"forward pass: {first}; its modules must take sizes from their inputs' shapes "
            "(e.g. reshape(b, t, -1, head_dim), not a stored width)"
        ) from e
    return new_params, new_state, small


def kept_indices(groups: tuple[Group, ...], keep: Mapping, params: Any, state: Any) -> Slices:
    """``{leaf path: [(axis, kept indices)]}`` for every member of a group that removes units.

    The kept indices of a member axis laid out as ``(outer, size, inner)`` are those of the
    kept units, in increasing order, so the axis keeps its layout with a smaller ``size``.
    """
    slices: Slices = {}
    for g in groups:
        k = keep.get(g.name)
        if k is None or k.all():
            continue
        seen = set()
        for m in g.members:
            if (m.path, m.axis) in seen:
                continue
            seen.add((m.path, m.axis))
            length = np.shape(member_leaf(m, params, state))[m.axis]
            idx = np.sort(unit_indices(m, g.size, length)[k].reshape(-1))
            slices.setdefault(tuple(m.path), []).append((m.axis, idx))
    return slices


def slice_tree(tree: Any, slices: Slices) -> Any:
    """``tree`` (nested dicts) with each listed leaf cut down to its kept indices."""

    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: _take(leaf, slices.get(key_tuple(path), ())), tree
    )


def resize_module(module: nnx.Module, slices: Slices) -> nnx.Module:
    """Slices the module's variables in place and updates its layers' size attributes."""
    for path, var in list(nnx.iter_graph(module)):
        if isinstance(var, nnx.Variable) and tuple(path) in slices:
            var.set_value(_take(var.get_value(), slices[tuple(path)]))
    for _, sub in list(nnx.iter_graph(module)):
        if isinstance(sub, nnx.Module):
            _update_sizes(sub)
    return module


def _update_sizes(layer: nnx.Module) -> None:
    # The size attributes Flax's layers keep next to their variables; their forward passes
    # read shapes from the arrays, but a later reader (repr, a re-init) should see the truth.
    if isinstance(layer, nnx.Linear):
        layer.in_features, layer.out_features = (int(d) for d in layer.kernel.shape)
    elif isinstance(layer, nnx.Conv):
        layer.in_features = int(layer.kernel.shape[-2]) * int(layer.feature_group_count)
        layer.out_features = int(layer.kernel.shape[-1])
    elif isinstance(layer, nnx.BatchNorm | nnx.LayerNorm | nnx.RMSNorm | nnx.GroupNorm):
        for name in ("scale", "bias", "mean", "var"):
            var = getattr(layer, name, None)
            if isinstance(var, nnx.Variable):
                layer.num_features = int(var.shape[-1])
                break
    elif isinstance(layer, nnx.Embed):
        layer.num_embeddings, layer.features = (int(d) for d in layer.embedding.shape)


def _take(leaf: Any, cuts: list[tuple[int, np.ndarray]]) -> Any:
    # Host-side NumPy slicing for concrete arrays (eager jnp.take would compile one program
    # per leaf and index set); traced arrays (an abstract build, a jitted init) use jnp.
    if not cuts:
        return leaf
    if isinstance(leaf, jax.core.Tracer):
        for axis, idx in cuts:
            leaf = jnp.take(leaf, idx, axis=axis)
        return leaf
    out = np.asarray(leaf)
    for axis, idx in cuts:
        out = np.take(out, idx, axis=axis)
    return jnp.asarray(out)


def _as_keep(groups: tuple[Group, ...], params: Any, mask_or_keep: Any) -> dict[str, np.ndarray]:
    # A keep has group names for keys; a mask has the params' structure.
    if not isinstance(mask_or_keep, Mapping):
        raise TypeError(
            "compact: mask_or_keep must be a mask like params or a dict {group name: "
            f"bool[size]}}, got {type(mask_or_keep).__name__}"
        )
    leaves = jax.tree.leaves(mask_or_keep)
    if any(isinstance(x, jax.core.Tracer) for x in leaves):
        raise TypeError("compact: needs a concrete mask or keep; call it outside jax.jit")
    names = {g.name for g in groups}
    if mask_or_keep and set(mask_or_keep) <= names and not set(mask_or_keep) & set(params):
        keep = check_keep(groups, mask_or_keep)
        keep = {k: np.asarray(v, bool) for k, v in keep.items()}
    else:
        validate_mask(mask_or_keep, params)
        keep = check_structured(groups, mask_or_keep)
    return {g.name: keep.get(g.name, np.ones(g.size, bool)) for g in groups if g.prunable}
