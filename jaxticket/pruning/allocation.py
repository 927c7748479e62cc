"""Allocation: how many alive units (weights, or neurons) each prunable leaf keeps.

An allocation is a callable::

    allocation(leaves, alive, *, fraction=None, sparsity=None) -> list[Group]

``leaves`` describes every prunable leaf (path, kernel shape, number of units, and the
per-leaf minimum ``min_keep``), ``alive`` holds each leaf's alive-unit count (int32,
possibly traced). Exactly one of ``fraction`` (prune this fraction of the alive units) and
``sparsity`` (target fraction of all units pruned) is given; both may be traced under
``jax.jit``. The result splits the leaves into groups, each with one keep count:
``global_`` returns one group of every leaf (one threshold), the others one group per leaf.
Keep counts never exceed the alive count, so a pruned unit never returns. Selection then
raises a one-leaf group's count to ``min(min_keep, alive)`` and reserves each leaf's best
units in a larger group, so an allocation need not read ``min_keep`` (``layerwise`` with
``exact_total`` does, to keep its total exact).

An allocation may also have a method ``check_rates(paths, *, fraction=None,
sparsity=None, checked=False)``: the pruner calls it with the rates it was given (before
jitting its core), so that concrete rates are refused eagerly with the leaf named, and
traced ones are checked with ``jax.experimental.checkify`` when ``checked``.

Counts are exact: "a fraction f of n" is ``floor(f·n + 1/2)`` (round half up), computed in
int32 arithmetic from f resolved to six decimals (``round(float32(f)·10⁶)``, see
``resolved_rate``), so float error cannot flip a half (0.7 of 5 is 4, although
float32(0.7)·5 < 3.5). Counts must stay below 2³¹.

Rates out of range: a concrete rate outside [0, 1), or one that resolves to 1.0 (such as
0.9999999), is refused by ``check_rate`` (the pruner calls it). A traced rate cannot be
checked without ``checkify``; the built-in allocations then clip it to [0, 1] and count
NaN as 0: a traced fraction 1.5 prunes everything but each leaf's ``min_keep`` units,
-0.2 or NaN prunes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxticket._paths import check_patterns_exist, matches


class LeafInfo(NamedTuple):
    """Static facts about one prunable leaf."""

    path: str
    shape: tuple[int, ...]  # the parameter's shape (ERK reads its kernel dimensions)
    units: int  # how many units selection counts in this leaf (weights or neurons)
    min_keep: int = 0  # the leaf keeps at least min(min_keep, alive) units


class Group(NamedTuple):
    """Leaves that share one top-k, and how many of their alive units to keep."""

    leaves: tuple[int, ...]
    keep: jax.Array


Allocation = Callable[..., list[Group]]

_RESOLUTION = 1_000_000


def resolved_rate(value: float) -> int:
    """A concrete rate as the allocations use it: ``round(float32(value)·10⁶)``.

    0.9999999 resolves to 1000000 (that is 1.0), 0.2 to 200000. Host-side.
    """
    return int(np.round(np.float32(value) * np.float32(_RESOLUTION)))


def check_rate(name: str, value, where: str = "pruner") -> None:
    """Refuses a concrete rate outside [0, 1) or resolving to 1.0; skips None and tracers.

    Raises:
      TypeError: not a real scalar (a string, a bool, an array of several values).
      ValueError: outside [0, 1), NaN, or resolving to 1.0 at six decimals.
    """
    if value is None:
        return
    if isinstance(value, jax.core.Tracer):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{where}: {name} must be a scalar, got shape {jnp.shape(value)}")
        return
    if isinstance(value, bool | np.bool_) or not _is_real_scalar(value):
        raise TypeError(f"{where}: {name} must be a real number in [0, 1), got {value!r}")
    v = float(value)
    if not 0.0 <= v < 1.0:
        raise ValueError(f"{where}: {name} must be in [0, 1), got {v}")
    if resolved_rate(v) >= _RESOLUTION:
        raise ValueError(
            f"{where}: {name}={v!r} resolves to 1.0 at the allocation's resolution of 1e-06 "
            "(rates are rounded to six decimals); use at most 0.999999"
        )


@functools.cache
def global_() -> Allocation:
    """One threshold across all prunable leaves (exact total count).

    Selection reserves each leaf's best ``min_keep`` alive units first, then keeps the
    best of the rest up to the total, so the total stays exact unless the reservations
    alone exceed it (then they are kept: at most ``min_keep`` units per leaf over).
    """

    def allocate(leaves, alive, *, fraction=None, sparsity=None):
        n_alive = sum(alive, jnp.zeros((), jnp.int32))
        total = sum(leaf.units for leaf in leaves)
        keep = _keep(n_alive, total, _clean(fraction), _clean(sparsity))
        return [Group(tuple(range(len(leaves))), keep)]

    return allocate


def layerwise(scale: Mapping[str, float] | None = None, *, exact_total: bool = False) -> Allocation:
    """The same fraction (or sparsity) in every leaf, optionally scaled per leaf.

    Args:
      scale: glob pattern -> factor (a finite number >= 0) on the rate of matching leaves;
        the first matching pattern wins. ``{"out/*": 0.5}`` prunes the output layer at half
        the base rate (the lottery-ticket paper's 10% output / 20% hidden).
      exact_total: when True the factors are relative rates and the requested fraction
        (of the alive units in all) or sparsity (of all units) is met exactly in total:
        one factor b solves ``sum_l min(1, b·scale_l)·n_l = target`` (n_l: the leaf's alive
        units for a fraction, all its units for a sparsity), and the counts are
        apportioned by largest remainder (ties to the earlier leaf), never pruning a leaf
        below ``min(min_keep, alive)`` or reviving a pruned unit. When those limits make
        the target unreachable, the nearest reachable total is kept.

    Without ``exact_total``, a concrete rate whose scaled value reaches 1 (0.3 with factor
    5) is refused when the allocation is called, naming the leaf and the pattern; a traced
    one is clipped to [0, 1] (``Pruner(..., checked=True)`` flags it under ``checkify``).

    Raises:
      TypeError: ``scale`` is not a mapping of str patterns to numbers.
      ValueError: a negative, NaN or infinite factor (names the pattern); when called, a
        pattern that matches no prunable leaf (the message lists them).
    """
    if not isinstance(exact_total, bool):
        raise TypeError(f"layerwise: exact_total must be True or False, got {exact_total!r}")
    return Layerwise(_check_scale(scale), exact_total)


@functools.cache
def erk() -> Allocation:
    """Erdős–Rényi-Kernel: density ∝ sum(kernel dims)/prod(kernel dims) (Evci et al. 2020).

    One ε scales every leaf so that the total hits the target density; a leaf that would
    exceed density 1 is made dense and ε solved again, until no leaf exceeds 1. A
    ``fraction`` request becomes the target sparsity ``current + f·(1 − current)``. Each
    leaf then keeps ``round(density·units)`` (at most its alive count), so the total is
    within half a unit per leaf of the target (selection then raises a leaf to
    ``min(min_keep, alive)`` units: at extreme sparsity ERK would empty small leaves).
    """
    return _erdos_renyi(lambda shape: sum(shape) / np.prod(shape, dtype=np.float64))


@functools.cache
def er() -> Allocation:
    """Erdős–Rényi: density ∝ (n_in + n_out)/(n_in·n_out), otherwise like ``erk``.

    ``n_in, n_out`` are the last two dimensions (Flax kernels: input and output channels;
    kernel height and width do not count). A 1-D leaf uses its length as both.
    """

    def raw(shape):
        n_in, n_out = (shape[-2], shape[-1]) if len(shape) >= 2 else (shape[0], shape[0])
        return (n_in + n_out) / (n_in * n_out)

    return _erdos_renyi(raw)


def erk_densities(raw: Sequence[float], sizes: Sequence[int], density: jax.Array) -> jax.Array:
    """Per-leaf densities ε·rawᵢ (capped at 1) whose size-weighted mean is ``density``.

    Args:
      raw: each leaf's unscaled density (e.g. sum/prod of its kernel dims).
      sizes: each leaf's number of weights.
      density: the overall target density in (0, 1]; may be traced.

    Returns:
      A float32 array of densities in [0, 1].
    """
    return _erk_densities(tuple(map(float, raw)), tuple(map(int, sizes)), density)


@jax.jit
def fraction_of(fraction: jax.Array | float, n: jax.Array | int) -> jax.Array:
    """``floor(f·n + 1/2)`` exactly for f resolved to six decimals; int32, jit-friendly.

    With F = round(f·10⁶) and both F and n split into base-1000 digits, every partial
    product fits in int32, so no float rounding touches the result. f is clipped to
    [0, 1] and NaN counts as 0.
    """
    big = jnp.round(jnp.asarray(fraction, jnp.float32) * _RESOLUTION)
    big = jnp.where(jnp.isnan(big), 0.0, jnp.clip(big, 0, _RESOLUTION)).astype(jnp.int32)
    n = jnp.asarray(n, jnp.int32)
    f1, f0 = big // 1000, big % 1000
    n1, n0 = n // 1000, n % 1000
    mid = f1 * n0 + f0 * n1
    low = (mid % 1000) * 1000 + f0 * n0 + _RESOLUTION // 2
    return f1 * n1 + mid // 1000 + low // _RESOLUTION


# --------------------------------------------------------------------------------------
# helpers


# Equal by value (a frozen dataclass), so equal allocations hit a jitted caller's cache.
@dataclasses.dataclass(frozen=True)
class Layerwise:
    """The allocation ``layerwise(scale, exact_total=...)`` returns (see there)."""

    scale: tuple[tuple[str, float], ...] = ()
    exact_total: bool = False

    def __call__(self, leaves, alive, *, fraction=None, sparsity=None) -> list[Group]:
        check_patterns_exist(dict(self.scale), [leaf.path for leaf in leaves], "layerwise scale")
        self.check_rates([leaf.path for leaf in leaves], fraction=fraction, sparsity=sparsity)
        factors = [self._factor(leaf.path)[1] for leaf in leaves]
        if self.exact_total:
            return _exact_total(leaves, alive, factors, _clean(fraction), _clean(sparsity))
        groups = []
        for i, (leaf, n_alive, factor) in enumerate(zip(leaves, alive, factors, strict=True)):
            f = None if fraction is None else _clean(fraction * factor)
            s = None if sparsity is None else _clean(sparsity * factor)
            groups.append(Group((i,), _keep(n_alive, leaf.units, f, s)))
        return groups

    def check_rates(self, paths, *, fraction=None, sparsity=None, checked=False) -> None:
        """Refuses a concrete scaled rate that reaches 1 (names the leaf and the pattern);
        with ``checked``, adds a ``checkify`` check for a traced one. Exact totals scale
        relatively, so only the base rate matters there (the pruner checks it)."""
        if self.exact_total:
            return
        for name, rate in (("fraction", fraction), ("sparsity", sparsity)):
            if rate is None:
                continue
            for path in paths:
                pattern, factor = self._factor(path)
                if pattern is None:
                    continue
                if isinstance(rate, jax.core.Tracer):
                    if checked:
                        scaled = jnp.asarray(rate, jnp.float32) * factor
                        ok = (scaled < 1.0) & (jnp.round(scaled * _RESOLUTION) < _RESOLUTION)
                        checkify.check(
                            ok,
                            f"layerwise: leaf {path!r} (scale pattern {pattern!r}, factor "
                            f"{factor}) gets {name} {{}}·{factor} = {{}}, which reaches 1",
                            rate,
                            scaled,
                        )
                    continue
                scaled = float(rate) * factor
                if scaled >= 1.0 or resolved_rate(scaled) >= _RESOLUTION:
                    raise ValueError(
                        f"layerwise: leaf {path!r} (scale pattern {pattern!r}, factor {factor}) "
                        f"gets {name} {float(rate)}·{factor} = {scaled:g}, which reaches 1; "
                        "scaled rates must stay below 1 (or use exact_total=True)"
                    )

    def _factor(self, path: str) -> tuple[str | None, float]:
        return next(((p, v) for p, v in self.scale if matches(path, p)), (None, 1.0))


def _check_scale(scale) -> tuple[tuple[str, float], ...]:
    if scale is None:
        return ()
    if not isinstance(scale, Mapping):
        raise TypeError(
            "layerwise: scale must be a mapping of glob pattern -> factor, "
            f"got {type(scale).__name__}"
        )
    items = []
    for pattern, factor in scale.items():
        if not isinstance(pattern, str):
            raise TypeError(f"layerwise scale: patterns must be strings, got {pattern!r}")
        if isinstance(factor, bool | np.bool_) or not _is_real_scalar(factor):
            raise TypeError(
                f"layerwise scale: pattern {pattern!r} has factor {factor!r}; "
                "expected a finite number >= 0"
            )
        factor = float(factor)
        if not (math.isfinite(factor) and factor >= 0):
            raise ValueError(
                f"layerwise scale: pattern {pattern!r} has factor {factor}; "
                "expected a finite number >= 0"
            )
        items.append((pattern, factor))
    return tuple(items)


def _is_real_scalar(x) -> bool:
    if isinstance(x, numbers.Real):
        return True
    shape, dtype = getattr(x, "shape", None), getattr(x, "dtype", None)
    return (
        shape == ()
        and dtype is not None
        and np.issubdtype(dtype, np.number)
        and not (np.issubdtype(dtype, np.complexfloating))
    )


def _clean(rate):
    """A rate as the built-in allocations use it: float32, clipped to [0, 1], NaN -> 0."""
    if rate is None:
        return None
    rate = jnp.asarray(rate, jnp.float32)
    return jnp.where(jnp.isnan(rate), 0.0, jnp.clip(rate, 0.0, 1.0))


def _exact_total(leaves, alive, factors, fraction, sparsity) -> list[Group]:
    """Per-leaf keep counts whose total meets the request exactly (see ``layerwise``)."""
    alive = jnp.stack([jnp.asarray(a, jnp.int32) for a in alive])
    units = jnp.asarray([leaf.units for leaf in leaves], jnp.int32)
    floor = jnp.minimum(jnp.asarray([leaf.min_keep for leaf in leaves], jnp.int32), alive)
    scale = jnp.asarray(factors, jnp.float32)
    if fraction is not None:  # prune p_l of the alive units: 0 <= p_l <= alive_l - floor_l
        base, lo, hi = alive, jnp.zeros_like(alive), alive - floor
        target = fraction_of(fraction, jnp.sum(alive, dtype=jnp.int32))
    else:  # p_l pruned in all: the already pruned ones at least, units_l - floor_l at most
        base, lo, hi = units, units - alive, units - floor
        target = fraction_of(sparsity, jnp.sum(units, dtype=jnp.int32))
    pruned = _apportion(*_ideal_counts(base.astype(jnp.float32) * scale, lo, hi, target))
    keep = alive - pruned if fraction is not None else units - pruned
    return [Group((i,), keep[i]) for i in range(len(leaves))]


def _ideal_counts(w, lo, hi, target):
    """Solves ``sum_l clip(b·w_l, lo_l, hi_l) = target`` for b (piecewise linear in b).

    Returns the real-valued counts at that b, with ``lo``, ``hi``, ``w`` and the target
    clipped to what the limits allow.
    """
    lo_f, hi_f = lo.astype(jnp.float32), hi.astype(jnp.float32)
    movable = w > 0
    safe_w = jnp.where(movable, w, 1.0)
    breaks = jnp.concatenate(
        [
            jnp.zeros(1, jnp.float32),
            jnp.where(movable, lo_f / safe_w, 0),
            jnp.where(movable, hi_f / safe_w, 0),
        ]
    )

    def total(b):
        return jnp.sum(jnp.clip(b[..., None] * w, lo_f, hi_f), axis=-1)

    reachable = jnp.sum(jnp.where(movable, hi, lo), dtype=jnp.int32)
    target = jnp.clip(target, jnp.sum(lo, dtype=jnp.int32), reachable)
    t = target.astype(jnp.float32)
    at = total(breaks)
    b_lo = jnp.max(jnp.where(at <= t, breaks, 0.0))
    b_hi = jnp.min(jnp.where(at >= t, breaks, jnp.max(breaks)))
    p_lo, p_hi = total(b_lo), total(b_hi)
    step = jnp.where(p_hi > p_lo, (t - p_lo) / jnp.where(p_hi > p_lo, p_hi - p_lo, 1.0), 0.0)
    b = b_lo + step * (b_hi - b_lo)
    return jnp.clip(b * w, lo_f, hi_f), lo, jnp.where(movable, hi, lo), target


def _apportion(q, lo, hi, target):
    """Integer counts in [lo, hi] summing to ``target``, near the real counts ``q``.

    Floors first; the missing units go one per leaf in order of the largest remainder
    (ties to the earlier leaf), then, should float error leave more, fill leaves in that
    order; an excess is taken back the mirrored way.
    """
    n = q.shape[0]
    down = jnp.floor(q)
    base = jnp.clip(down.astype(jnp.int32), lo, hi)
    rem = q - down
    index = jnp.arange(n, dtype=jnp.int32)
    missing = target - jnp.sum(base, dtype=jnp.int32)
    add = _fill(jnp.lexsort((index, -rem)), hi - base, jnp.maximum(missing, 0))
    take = _fill(jnp.lexsort((-index, rem)), base - lo, jnp.maximum(-missing, 0))
    return base + add - take


def _fill(order, capacity, need):
    cap = capacity[order]
    one = (cap >= 1).astype(jnp.int32)
    first = one * (jnp.cumsum(one, dtype=jnp.int32) <= need)
    cap = cap - first
    left = need - jnp.sum(first, dtype=jnp.int32)
    second = jnp.clip(left - (jnp.cumsum(cap, dtype=jnp.int32) - cap), 0, cap)
    return jnp.zeros(order.shape, jnp.int32).at[order].set(first + second)


def _keep(n_alive, units, fraction, sparsity):
    if fraction is not None:
        return n_alive - fraction_of(fraction, n_alive)
    target = jnp.int32(units) - fraction_of(sparsity, units)
    return jnp.minimum(n_alive, target)


# Jitted (shapes are static) so that an eager call compiles once, not op by op.
@functools.partial(jax.jit, static_argnums=(0, 1))
def _erk_densities(raw, sizes, density):
    raw = jnp.asarray(raw, jnp.float32)
    sizes = jnp.asarray(sizes, jnp.float32)
    target = jnp.asarray(density, jnp.float32) * jnp.sum(sizes)
    dense = jnp.zeros(raw.shape, bool)
    # Each pass makes dense every leaf that would exceed 1; a leaf once dense stays dense
    # (ε only grows), so len(raw) passes always reach the fixed point.
    for _ in range(len(raw) + 1):
        eps = _epsilon(raw, sizes, target, dense)
        dense = dense | (eps * raw > 1.0)
    eps = _epsilon(raw, sizes, target, dense)
    return jnp.where(dense, 1.0, jnp.clip(eps * raw, 0.0, 1.0))


def _epsilon(raw, sizes, target, dense):
    budget = target - jnp.sum(jnp.where(dense, sizes, 0.0))
    weight = jnp.sum(jnp.where(dense, 0.0, raw * sizes))
    return jnp.where(weight > 0, budget / jnp.where(weight > 0, weight, 1.0), 0.0)


def _erdos_renyi(raw_density: Callable[[tuple[int, ...]], float]) -> Allocation:
    def allocate(leaves, alive, *, fraction=None, sparsity=None):
        fraction, sparsity = _clean(fraction), _clean(sparsity)
        total = sum(leaf.units for leaf in leaves)
        if fraction is not None:
            n_alive = sum(alive, jnp.zeros((), jnp.int32))
            current = 1.0 - n_alive.astype(jnp.float32) / max(total, 1)
            sparsity = current + fraction * (1.0 - current)
        raw = [float(raw_density(tuple(leaf.shape))) for leaf in leaves]
        dens = erk_densities(raw, [leaf.units for leaf in leaves], 1.0 - sparsity)
        return [
            Group((i,), jnp.minimum(n_alive, fraction_of(dens[i], leaf.units)))
            for i, (leaf, n_alive) in enumerate(zip(leaves, alive, strict=True))
        ]

    return allocate
