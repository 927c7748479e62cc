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

import functools
import numbers
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


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
