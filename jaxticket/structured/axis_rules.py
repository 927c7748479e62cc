"""Propagation rules for the primitives that contract, index or cut along axes.

Shared by :mod:`jaxticket.structured.jaxpr_axes`: the per-array :class:`Info`, the record
of how parameter leaves are used (:class:`Usage`), the error for an operation the analysis
cannot read (:class:`UnsupportedOp`), and the rules for ``dot_general``,
``conv_general_dilated``, ``gather``, sorting, pooling windows, slices, pads,
concatenations and splits. Each rule takes the running
:class:`~jaxticket.structured.jaxpr_axes.Propagator` first.
"""

from __future__ import annotations

import dataclasses
from typing import Any


class UnsupportedOp(ValueError):
    """A primitive the analysis has no rule for; carries the equation for the message."""

    def __init__(self, primitive: str, where: str, detail: str = ""):
        self.primitive, self.where, self.detail = primitive, where, detail
        super().__init__(f"{primitive}{f' ({detail})' if detail else ''} at {where}")


@dataclasses.dataclass(frozen=True)
class Info:
    """One array: the node of each axis, and its parameter-leaf origin if any."""

    axes: tuple[int, ...]
    origin: tuple[int, tuple[int | None, ...]] | None = None  # (leaf, leaf axis per axis)


@dataclasses.dataclass
class Usage:
    """How parameter leaves are used: per (leaf, axis) roles, per leaf elementwise kinds."""

    producers: dict[tuple[int, int], int] = dataclasses.field(default_factory=dict)
    consumers: set[tuple[int, int]] = dataclasses.field(default_factory=set)
    elementwise: dict[int, set[str]] = dataclasses.field(default_factory=dict)
    conv_leaves: set[int] = dataclasses.field(default_factory=set)

    def producer(self, leaf: int, axis: int | None) -> None:
        if axis is not None:
            self.producers.setdefault((leaf, axis), len(self.producers))

    def consumer(self, leaf: int, axis: int | None) -> None:
        if axis is not None:
            self.consumers.add((leaf, axis))


def source_line(eqn: Any) -> str:
    """The user-code line an equation comes from, or ``""`` when JAX does not know it."""
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # noqa: BLE001 (private API; the message degrades to no line)
        return ""


# Contractions.


def dot_general(prop: Any, lhs: Info, rhs: Info, dimension_numbers) -> Info:
    (lc, rc), (lb, rb) = dimension_numbers
    activations = lhs.origin is None and rhs.origin is None
    for a, b in zip(lc, rc, strict=True):
        prop.classes.union(lhs.axes[a], rhs.axes[b])
        if activations:  # q.k over head dims: scaled by a shape-derived 1/sqrt(d)
            prop.classes.flag(lhs.axes[a], "mixed")
    for a, b in zip(lb, rb, strict=True):
        prop.classes.union(lhs.axes[a], rhs.axes[b])
        prop.classes.flag(lhs.axes[a], "batched")  # attention heads are batch dimensions
    for info, contract in ((lhs, lc), (rhs, rc)):
        if info.origin is None:
            continue
        leaf, amap = info.origin
        for d in range(len(info.axes)):
            if d in contract:
                prop.usage.consumer(leaf, amap[d])
            else:
                prop.usage.producer(leaf, amap[d])
    lfree = [d for d in range(len(lhs.axes)) if d not in lc and d not in lb]
    rfree = [d for d in range(len(rhs.axes)) if d not in rc and d not in rb]
    axes = [lhs.axes[d] for d in lb] + [lhs.axes[d] for d in lfree]
    return Info(tuple(axes + [rhs.axes[d] for d in rfree]))


def conv(prop: Any, eqn: Any, lhs: Info, rhs: Info) -> Info:
    c, p = prop.classes, eqn.params
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    if p["batch_group_count"] != 1:
        raise UnsupportedOp("conv_general_dilated", prop.locate(eqn), "batch_group_count > 1")
    groups = p["feature_group_count"]
    in_feat, out_feat = rhs.axes[rhs_spec[1]], rhs.axes[rhs_spec[0]]
    if groups == 1:
        c.union(lhs.axes[lhs_spec[1]], in_feat)
    elif c.size(in_feat) == 1 and c.size(out_feat) == groups:  # depthwise, multiplier 1
        c.flag(in_feat, "mixed")
        c.union(lhs.axes[lhs_spec[1]], out_feat)
    else:
        raise UnsupportedOp("conv_general_dilated", prop.locate(eqn), "grouped convolution")
    for d in lhs_spec[2:]:
        c.flag(lhs.axes[d], "mixed")
    for d in rhs_spec[2:]:
        c.flag(rhs.axes[d], "mixed")
    if rhs.origin is not None:
        leaf, amap = rhs.origin
        prop.usage.conv_leaves.add(leaf)
        prop.usage.producer(leaf, amap[rhs_spec[0]])
        if groups == 1:
            prop.usage.consumer(leaf, amap[rhs_spec[1]])
    shape = eqn.outvars[0].aval.shape
    axes = [c.new(s) for s in shape]
    axes[out_spec[0]] = lhs.axes[lhs_spec[0]]
    axes[out_spec[1]] = out_feat
    return Info(tuple(axes))


def gather(prop: Any, eqn: Any, operand: Info, indices: Info, shape) -> Info:
    c, p = prop.classes, eqn.params
    dn = p["dimension_numbers"]
    if tuple(getattr(dn, "operand_batching_dims", ())):
        raise UnsupportedOp("gather", prop.locate(eqn), "batched gather")
    sizes = p["slice_sizes"]
    indexed = set(dn.collapsed_slice_dims) | set(dn.start_index_map)
    kept = [d for d in range(len(operand.axes)) if d not in dn.collapsed_slice_dims]
    axes: list[int | None] = [None] * len(shape)
    for d, out in zip(kept, dn.offset_dims, strict=True):
        full = sizes[d] == c.size(operand.axes[d]) and d not in indexed
        axes[out] = operand.axes[d] if full else c.new(shape[out])
        if not full:
            c.flag(operand.axes[d], "mixed")
        if full and operand.origin is not None:
            prop.usage.producer(operand.origin[0], operand.origin[1][d])
    for d in indexed:
        c.flag(operand.axes[d], "mixed")
    batch = iter(indices.axes[:-1])
    return Info(tuple(a if a is not None else next(batch) for a in axes))


# Reductions along an axis, windows, slices.


def sort(prop: Any, ins: list[Info], dim: int) -> list[Info]:
    for info in ins:
        prop.classes.flag(info.axes[dim], "mixed")
        for a, b in zip(ins[0].axes, info.axes, strict=True):
            prop.classes.union(a, b)
    return [Info(ins[0].axes) for _ in ins]


def window(prop: Any, info: Info, p: dict, shape) -> Info:
    axes = []
    ones = [1] * len(shape)
    for d, node in enumerate(info.axes):
        trivial = (
            p["window_dimensions"][d] == 1
            and p["window_strides"][d] == 1
            and tuple(p["padding"][d]) == (0, 0)
            and p.get("base_dilation", ones)[d] == 1
            and p.get("window_dilation", ones)[d] == 1
        )
        if not trivial:
            prop.classes.flag(node, "mixed")
        axes.append(node if trivial else prop.classes.new(shape[d]))
    return Info(tuple(axes))


def partial(prop: Any, eqn: Any, info: Info, shape, name: str) -> Info:
    p = eqn.params
    same = [prop.classes.size(n) == s for n, s in zip(info.axes, shape, strict=True)]
    if name == "slice" and p.get("strides"):
        same = [ok and s == 1 for ok, s in zip(same, p["strides"], strict=True)]
    return sliced(prop, eqn, info, same, name, shape)


def sliced(prop: Any, eqn: Any, info: Info, same: list[bool], name: str, shape=None) -> Info:
    shape = shape or eqn.outvars[0].aval.shape
    axes = []
    for d, node in enumerate(info.axes):
        if same[d]:
            axes.append(node)
        else:
            prop.classes.flag(node, "mixed")
            prop.classes.mark_unsupported(node, f"{name} at {prop.locate(eqn)}")
            axes.append(prop.classes.new(shape[d]))
    return Info(tuple(axes), info.origin if all(same) else None)


def concatenate(prop: Any, eqn: Any, ins: list[Info], dim: int) -> Info:
    for info in ins:
        prop.classes.mark_unsupported(info.axes[dim], f"concatenate at {prop.locate(eqn)}")
        prop.classes.flag(info.axes[dim], "mixed")
        for d, (a, b) in enumerate(zip(ins[0].axes, info.axes, strict=True)):
            if d != dim:
                prop.classes.union(a, b)
    axes = list(ins[0].axes)
    axes[dim] = prop.classes.new(eqn.outvars[0].aval.shape[dim])
    return Info(tuple(axes))


def split(prop: Any, eqn: Any, info: Info, axis: int, shapes) -> list[Info]:
    prop.classes.mark_unsupported(info.axes[axis], f"split at {prop.locate(eqn)}")
    prop.classes.flag(info.axes[axis], "mixed")
    outs = []
    for shape in shapes:
        axes = list(info.axes)
        axes[axis] = prop.classes.new(shape[axis])
        outs.append(Info(tuple(axes)))
    return outs
