"""``layerwise``: the same rate in every leaf, optionally scaled per leaf, or an exact total.

The allocation protocol, the rounding rules and the other allocations are in
``allocation``; here are the scale checks (when built, eagerly per leaf, and under
``checkify``) and the exact-total solve (one factor b, counts apportioned by largest
remainder).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from jaxticket._paths import check_patterns_exist, matches
from jaxticket.pruning.allocation import (
    _RESOLUTION,
    Allocation,
    Group,
    _clean,
    _is_real_scalar,
    _keep,
    fraction_of,
    resolved_rate,
)


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
