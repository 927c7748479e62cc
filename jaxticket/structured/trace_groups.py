"""Dependency groups derived from a model's own computation, by tracing its ``apply``.

``dependency_groups`` traces ``model.apply(params, state, x, train=False)`` to a jaxpr and
propagates axis classes through it (:mod:`jaxticket.structured.jaxpr_axes`): a kernel's
output axis, the bias and BatchNorm vectors added to or multiplied with it, residual
additions and the next kernels' input rows all end in one class, and every class with a
kernel output axis ("producer") becomes a :class:`~jaxticket.structured.groups.Group`.
Flattening ``(..., H, W, C) -> H*W*C`` makes the consumer a member with ``inner=1`` over an
``outer=H*W`` layout; splitting ``H*D -> (H, D)`` for attention makes a group of heads
(``inner=D``) whose per-head dimensions are then not groups of their own (a leaf axis
belongs to one group; the major factor wins).

Decisions:

- Embedding tables: an ``nnx.Embed`` lookup is a producer of its output axis (the table's
  second axis), so the embedding width is a group together with whatever reads it; the
  vocabulary axis is indexed and never a group.
- Attention: a class used as a batch dimension of a contraction between two activations
  (``q @ k``, ``probs @ v``) has ``kind="heads"``; the width contracted between two
  activations (q/k per-head dimensions) is never a group, since attention scales it by a
  ``1/sqrt(d)`` that the trace sees as a constant, not as a function of the shape.
- One kernel can be in one group on two axes (a square conv inside a residual branch whose
  input and output channels are tied), never one axis in two groups.
- Classes that touch the model's input (input features, token positions) are not groups.
- Classes whose units interact (a reduction, a pooling window or an index along the
  axis: LayerNorm over features, a softmax over units) are not groups either, silently:
  removing a unit would change the other units' values.
- A slice, pad, concatenation or split along an axis that has producers cannot be
  expressed as a group: ``ValueError`` naming the operation and its source line.
- An axis of one unit (a layer already cut to width 1) is never a group: size-1 axes
  broadcast, so the trace cannot tell which leaves they belong with.
- The class of the logits axis is a group with ``prunable=False`` unless
  ``prune_outputs=True``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket.structured.axis_classes import AxisClasses
from jaxticket.structured.axis_rules import Info, UnsupportedOp, Usage
from jaxticket.structured.groups import Group, Member, check_groups, dict_path
from jaxticket.structured.jaxpr_axes import Propagator

_HINT = (
    "write the groups by hand with jaxticket.structured.declare_groups(Group(...), ...) "
    "and pass them instead"
)


def dependency_groups(
    model: Any,
    params: Any = None,
    state: Any = None,
    *,
    prune_outputs: bool = False,
    input_dtype: Any = None,
) -> tuple[Group, ...]:
    """The dependency groups of ``model``, derived by tracing ``model.apply``.

    Args:
      model: a ``jaxticket.models.Model``.
      params: the params whose shapes to trace with (a compacted model's params); by
        default the shapes ``model.init`` makes. Only shapes are used.
      state: the model state to go with ``params`` (default: ``model.init``'s).
      prune_outputs: make the group feeding the logits prunable too.
      input_dtype: the input dtype to trace with; by default float32, then int32 for
        token models that refuse floats.

    Returns:
      The groups, in the order their first producer is computed. Groups that feed the
      logits have ``prunable=False`` unless ``prune_outputs``.

    Raises:
      ValueError: an operation the analysis cannot read (the message names the primitive,
        its source line, and points to ``declare_groups``), or params/state that do not
        fit the model.
      TypeError: ``model`` is not a ``Model`` or ``prune_outputs`` not a bool.
    """
    if not all(hasattr(model, a) for a in ("init", "apply", "input_shape", "name")):
        raise TypeError(
            f"dependency_groups: expected a jaxticket.models.Model, got {type(model).__name__}"
        )
    if not isinstance(prune_outputs, bool):
        raise TypeError(f"dependency_groups: prune_outputs must be a bool, got {prune_outputs!r}")
    if params is None or state is None:
        init_params, init_state = jax.eval_shape(model.init, jax.random.key(0))
        params = init_params if params is None else params
        state = init_state if state is None else state
    params_abs, state_abs = _abstract(params), _abstract(state)
    closed, x_spec = _trace(model, params_abs, state_abs, input_dtype)
    leaves = _leaf_records(params_abs, "params") + _leaf_records(state_abs, "state")
    classes, usage = AxisClasses(), Usage()
    prop = Propagator(classes, usage)
    inputs = []
    for leaf_id, (_, _, shape) in enumerate(leaves):
        info = prop.fresh(shape)
        inputs.append(Info(info.axes, (leaf_id, tuple(range(len(shape))))))
    x_info = prop.fresh(x_spec.shape)
    for node in x_info.axes:
        classes.flag(node, "input")
    consts = [prop.fresh(getattr(c, "shape", ())) for c in closed.consts]
    try:
        (logits,) = prop.propagate(closed.jaxpr, [*inputs, x_info], consts)
    except UnsupportedOp as err:
        detail = f" ({err.detail})" if err.detail else ""
        raise ValueError(
            f"dependency_groups: model {model.name!r} uses {err.primitive}{detail} at "
            f"{err.where}, which the tracing analysis cannot handle; {_HINT}"
        ) from None
    for node in logits.axes[1:]:
        classes.flag(node, "output")
    groups = _build_groups(model.name, classes, usage, leaves, inputs, prune_outputs)
    check_groups(groups, params_abs, state_abs)
    return groups


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), tree)


def _trace(model, params, state, input_dtype):
    def logits(p, s, x):
        return model.apply(p, s, x, train=False)[0]

    dtypes = [input_dtype] if input_dtype is not None else [jnp.float32, jnp.int32]
    for i, dtype in enumerate(dtypes):
        x_spec = jax.ShapeDtypeStruct((2, *model.input_shape), dtype)
        try:
            return jax.make_jaxpr(logits)(params, state, x_spec), x_spec
        except TypeError:
            if i == len(dtypes) - 1:
                raise
    raise AssertionError("unreachable")


def _leaf_records(tree: Any, collection: str) -> list[tuple[str, tuple, tuple[int, ...]]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(collection, dict_path(path), tuple(leaf.shape)) for path, leaf in flat]


def _build_groups(name, classes, usage, leaves, inputs, prune_outputs) -> tuple[Group, ...]:
    # Candidate members: every factor of every leaf axis, keyed by its class.
    candidates: dict[int, list[tuple[Member, int, tuple[int, int]]]] = {}
    for leaf_id, info in enumerate(inputs):
        collection, path, _ = leaves[leaf_id]
        for axis, node in enumerate(info.axes):
            # A one-unit axis is never a group: size-1 axes broadcast, so their ties are lost.
            factors = [f for f in classes.factors(node) if classes.size(f) > 1]
            sizes = [classes.size(f) for f in factors]
            for i, f in enumerate(factors):
                role = _role(usage, leaves, leaf_id, axis)
                member = Member(collection, path, axis, math.prod(sizes[i + 1 :]), role)
                outer = math.prod(sizes[:i])
                candidates.setdefault(f, []).append((member, outer, (leaf_id, axis)))
    units = {}
    for root, members in candidates.items():
        producers = [m for m in members if m[0].role == "producer"]
        if not producers:
            continue
        flags = classes.flags(root)
        reason = classes.unsupported(root)
        if reason is not None and "input" not in flags:
            path = "/".join(map(str, producers[0][0].path))
            raise ValueError(
                f"dependency_groups: model {name!r}: the units of {path!r} go through {reason}, "
                f"which a dependency group cannot express; {_HINT}"
            )
        if "input" in flags or "mixed" in flags:
            continue
        units[root] = members
    # A leaf axis belongs to one group: the most major factor (heads before head dims).
    owner: dict[tuple[int, int], tuple[int, int]] = {}
    for root, members in units.items():
        for _, outer, key in members:
            if key not in owner or outer < owner[key][0]:
                owner[key] = (outer, root)
    losers = {
        root for root, members in units.items() for _, _, key in members if owner[key][1] != root
    }
    groups = []
    for root, members in units.items():
        if root in losers:
            continue
        groups.append(_group(root, members, classes, usage, leaves, prune_outputs))
    groups.sort(key=lambda pair: pair[0])
    return _unique_names([g for _, g in groups])


def _unique_names(groups: list[Group]) -> tuple[Group, ...]:
    # A kernel with separate head and head-dimension axes produces two groups.
    seen: set[str] = set()
    out = []
    for g in groups:
        if g.name in seen:
            axis = next(m.axis for m in g.members if m.role == "producer")
            g = dataclasses.replace(g, name=f"{g.name}:{axis}")
        seen.add(g.name)
        out.append(g)
    return tuple(out)


def _group(root, members, classes, usage, leaves, prune_outputs) -> tuple[int, Group]:
    producers = [(m, key) for m, _, key in members if m.role == "producer"]
    # Named after the producer computed first (every producer has a recorded order).
    order, first = min(((usage.producers[key], m) for m, key in producers), key=lambda t: t[0])
    if "batched" in classes.flags(root):
        kind = "heads"
    elif any(key[0] in usage.conv_leaves for _, key in producers):
        kind = "channels"
    else:
        kind = "units"
    prunable = prune_outputs or "output" not in classes.flags(root)
    ordered = sorted(members, key=lambda m: m[2])
    group = Group(
        "/".join(map(str, first.path)),
        classes.size(root),
        tuple(m for m, _, _ in ordered),
        prunable=prunable,
        kind=kind,
    )
    return order, group


def _role(usage: Usage, leaves, leaf_id: int, axis: int) -> str:
    if (leaf_id, axis) in usage.producers:
        return "producer"
    if (leaf_id, axis) in usage.consumers:
        return "consumer"
    collection, path, _ = leaves[leaf_id]
    if collection == "state" or "mul" in usage.elementwise.get(leaf_id, ()):
        return "norm"
    siblings = [i for i, (_, p, _) in enumerate(leaves) if p[:-1] == path[:-1] and i != leaf_id]
    if any(leaves[i][0] == "state" or "mul" in usage.elementwise.get(i, ()) for i in siblings):
        return "norm"
    return "bias"


__all__ = ["dependency_groups"]
