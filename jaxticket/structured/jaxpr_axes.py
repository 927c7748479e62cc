"""Propagates axis classes through a jaxpr, one rule per primitive.

:func:`propagate` walks the equations of a jaxpr with, for every variable, the node of each
of its axes (see :mod:`jaxticket.structured.axis_classes`) and, for arrays that are a
parameter leaf seen through shape-only operations, the leaf and which of its axes each
array axis is (the *origin*). Rules merge classes (elementwise operations, contractions),
build or split factorizations (reshapes), flag axes whose units interact (reductions,
windows) and record how parameter leaves are used (as a kernel's output or input axis, added
or multiplied), which later decides each member's role. Calls (``jit``, ``custom_jvp_call``,
``custom_vjp_call``, ``remat``) are entered recursively. Any other primitive raises
:class:`UnsupportedOp`.
"""

from __future__ import annotations

from typing import Any

from jax.extend import core as jcore

from jaxticket.structured import axis_rules as rules
from jaxticket.structured.axis_classes import AxisClasses, IncompatibleAxes
from jaxticket.structured.axis_rules import Info, UnsupportedOp, Usage, source_line

ELEMENTWISE = frozenset(
    "abs acos acosh add add_any and asin asinh atan atan2 atanh cbrt ceil clamp conj copy "
    "copy_p cos cosh div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag integer_pow "
    "is_finite le lgamma digamma log log1p logistic lt max min mul ne neg nextafter not or "
    "pow real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square "
    "stop_gradient sub tan tanh xor convert_element_type".split()
)
PASS_THROUGH = frozenset({"convert_element_type", "copy", "copy_p", "reduce_precision"})
ADDITIVE = frozenset({"add", "add_any", "sub"})
MULTIPLICATIVE = frozenset({"mul", "div"})
CALLS = frozenset(
    {
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "custom_jvp_call",
        "custom_vjp_call",
        "custom_vjp_call_jaxpr",
        "remat",
        "checkpoint",
        "custom_lin",
    }
)
FRESH = frozenset(
    {
        "iota",
        "random_bits",
        "random_seed",
        "random_wrap",
        "random_unwrap",
        "random_split",
        "random_fold_in",
        "threefry2x32",
        "rng_bit_generator",
        "rng_uniform",
        "full_like",
    }
)
REDUCTIONS = frozenset(
    {
        "reduce_sum",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
        "reduce_and",
        "reduce_or",
        "reduce_xor",
        "argmax",
        "argmin",
    }
)
CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
WINDOWS = frozenset(
    {"reduce_window_sum", "reduce_window_max", "reduce_window_min", "reduce_window"}
)


class Propagator:
    """Walks jaxprs, updating one :class:`AxisClasses` and one :class:`Usage`."""

    def __init__(self, classes: AxisClasses, usage: Usage):
        self.classes, self.usage = classes, usage
        self.calls: list[str] = []  # source lines of the calls being entered

    def locate(self, eqn: Any) -> str:
        """The source line of ``eqn``, else of the innermost call around it that has one."""
        for line in (source_line(eqn), *reversed(self.calls)):
            if line:
                return line
        return "an unknown line"

    def fresh(self, shape) -> Info:
        return Info(tuple(self.classes.new(int(s)) for s in shape))

    def propagate(self, jaxpr: Any, inputs: list[Info], consts: list[Info] | None = None):
        """Runs ``jaxpr`` (a ``Jaxpr``) on input infos; returns the output infos."""
        env: dict[Any, Info] = {}
        for var, info in zip(jaxpr.constvars, consts or [], strict=False):
            env[var] = info
        for var in jaxpr.constvars:
            env.setdefault(var, self.fresh(var.aval.shape))
        for var, info in zip(jaxpr.invars, inputs, strict=True):
            env[var] = info

        def read(atom):
            if isinstance(atom, jcore.Literal) or atom not in env:
                return self.fresh(getattr(atom.aval, "shape", ()))
            return env[atom]

        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            try:
                outs = self.rule(eqn, ins)
            except IncompatibleAxes as err:
                raise UnsupportedOp(eqn.primitive.name, self.locate(eqn), str(err)) from None
            for var, info in zip(eqn.outvars, outs, strict=True):
                env[var] = info
        return [read(v) for v in jaxpr.outvars]

    def rule(self, eqn: Any, ins: list[Info]) -> list[Info]:
        name, p = eqn.primitive.name, eqn.params
        out_shapes = [tuple(v.aval.shape) if hasattr(v.aval, "shape") else () for v in eqn.outvars]
        c = self.classes
        if name in ELEMENTWISE:
            return [self.elementwise(name, eqn, ins, out_shapes[0])]
        if name in CALLS:
            return self.call(eqn, ins)
        if name in FRESH:
            return [self.fresh(s) for s in out_shapes]
        if name == "broadcast_in_dim":
            return [self.broadcast(eqn, ins[0], out_shapes[0], p["broadcast_dimensions"])]
        if name == "reshape":
            return [self.reshape(eqn, ins[0], out_shapes[0])]
        if name == "squeeze":
            dims = {d % len(ins[0].axes) for d in p["dimensions"]}
            for d in dims:
                c.flag(ins[0].axes[d], "mixed")
            keep = [i for i in range(len(ins[0].axes)) if i not in dims]
            return [self.select_axes(ins[0], keep)]
        if name == "transpose":
            return [self.select_axes(ins[0], list(p["permutation"]))]
        if name == "dot_general":
            return [rules.dot_general(self, ins[0], ins[1], p["dimension_numbers"])]
        if name == "conv_general_dilated":
            return [rules.conv(self, eqn, ins[0], ins[1])]
        if name == "gather":
            return [rules.gather(self, eqn, ins[0], ins[1], out_shapes[0])]
        if name in REDUCTIONS:
            axes = set(p["axes"])
            for d in axes:
                c.flag(ins[0].axes[d], "mixed")
            return [Info(tuple(n for d, n in enumerate(ins[0].axes) if d not in axes))]
        if name in CUMULATIVE:
            c.flag(ins[0].axes[p["axis"]], "mixed")
            return [Info(ins[0].axes)]
        if name == "sort":
            return rules.sort(self, ins, p["dimension"])
        if name == "top_k":
            c.flag(ins[0].axes[-1], "mixed")
            return [Info((*ins[0].axes[:-1], c.new(s[-1]))) for s in out_shapes]
        if name in WINDOWS:
            return [rules.window(self, ins[0], p, out_shapes[0])]
        if name in ("slice", "dynamic_slice"):
            return [rules.partial(self, eqn, ins[0], out_shapes[0], name)]
        if name == "pad":
            pads = p["padding_config"]
            return [
                rules.sliced(self, eqn, ins[0], [tuple(cfg) == (0, 0, 0) for cfg in pads], "pad")
            ]
        if name == "rev":
            dims = set(p["dimensions"])
            same = [d not in dims for d in range(len(ins[0].axes))]
            return [rules.sliced(self, eqn, ins[0], same, "rev")]
        if name == "concatenate":
            return [rules.concatenate(self, eqn, ins, p["dimension"])]
        if name == "split":
            return rules.split(self, eqn, ins[0], p["axis"], out_shapes)
        raise UnsupportedOp(name, self.locate(eqn))

    # Elementwise and shape-only operations.

    def elementwise(self, name: str, eqn: Any, ins: list[Info], shape) -> Info:
        arrays = [i for i in ins if len(i.axes)]
        for info in arrays:
            if len(info.axes) != len(shape):
                raise UnsupportedOp(name, self.locate(eqn), "operands of different ranks")
            if info.origin is not None and name not in PASS_THROUGH:
                kind = "add" if name in ADDITIVE else "mul" if name in MULTIPLICATIVE else name
                self.usage.elementwise.setdefault(info.origin[0], set()).add(kind)
        if not arrays:
            return self.fresh(shape)
        axes = []
        for d, size in enumerate(shape):  # size-1 operand axes broadcast (rank-equal)
            full = [i.axes[d] for i in arrays if self.classes.size(i.axes[d]) == size]
            for i in arrays:
                if self.classes.size(i.axes[d]) != size:
                    self.classes.flag(i.axes[d], "mixed")
            for node in full[1:]:
                self.classes.union(full[0], node)
            axes.append(full[0] if full else self.classes.new(size))
        origin = arrays[0].origin if name in PASS_THROUGH and len(arrays) == 1 else None
        return Info(tuple(axes), origin)

    def broadcast(self, eqn: Any, info: Info, shape, dims) -> Info:
        axes = [self.classes.new(s) for s in shape]
        amap: list[int | None] = [None] * len(shape)
        for i, d in enumerate(dims):
            if self.classes.size(info.axes[i]) == shape[d]:
                axes[d] = info.axes[i]
                amap[d] = info.origin[1][i] if info.origin else None
            else:
                self.classes.flag(info.axes[i], "mixed")
        origin = (info.origin[0], tuple(amap)) if info.origin else None
        return Info(tuple(axes), origin)

    def reshape(self, eqn: Any, info: Info, shape) -> Info:
        c = self.classes
        pending = [f for n in info.axes for f in c.factors(n)]
        axes = []
        for size in shape:
            if size == 1:
                axes.append(c.new(1))
                continue
            taken, prod = [], 1
            while prod < size:
                if not pending:
                    raise UnsupportedOp("reshape", self.locate(eqn), "shapes do not factor")
                f = pending.pop(0)
                s = c.size(f)
                if s == 1:
                    c.flag(f, "mixed")
                    continue
                if prod * s > size:
                    need = size // prod
                    if size % prod or s % need:
                        raise UnsupportedOp("reshape", self.locate(eqn), "axes that do not factor")
                    f, rest = c.split_off(f, need)
                    pending.insert(0, rest)
                    s = need
                taken.append(f)
                prod *= s
            axes.append(taken[0] if len(taken) == 1 else c.compose(taken))
        for f in pending:  # trailing size-1 factors
            c.flag(f, "mixed")
        origin = None
        if info.origin is not None:  # an axis kept as is keeps its leaf axis
            by_node = {n: info.origin[1][i] for i, n in enumerate(info.axes)}
            origin = (info.origin[0], tuple(by_node.get(n) for n in axes))
        return Info(tuple(axes), origin)

    def select_axes(self, info: Info, order: list[int]) -> Info:
        origin = (info.origin[0], tuple(info.origin[1][d] for d in order)) if info.origin else None
        return Info(tuple(info.axes[d] for d in order), origin)

    def call(self, eqn: Any, ins: list[Info]) -> list[Info]:
        self.calls.append(source_line(eqn))
        try:
            return self.enter(eqn, ins)
        finally:
            self.calls.pop()

    def enter(self, eqn: Any, ins: list[Info]) -> list[Info]:
        for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
            sub = eqn.params.get(key)
            if sub is None:
                continue
            consts = [self.fresh(getattr(x, "shape", ())) for x in getattr(sub, "consts", ())]
            inner = sub.jaxpr if isinstance(sub, jcore.ClosedJaxpr) else sub
            if isinstance(inner, jcore.Jaxpr) and len(inner.invars) == len(ins):
                return self.propagate(inner, ins, consts)
        raise UnsupportedOp(eqn.primitive.name, self.locate(eqn), "no inner jaxpr that fits")
