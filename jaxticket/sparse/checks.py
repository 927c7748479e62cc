"""Argument checks of the sparse-training methods: one-line errors naming the setting.

Construction-time checks (Δt, ζ, sparsities, steps, allocations, per-layer scales), the
run checks of ``mask_update(steps)`` (an update after training), the eager starting-mask
check behind every method's ``check_start`` and the trace-time check that a gradient-based
update got the dense gradient of every prunable leaf.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.pruning import allocation as alloc


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_every(who: str, every) -> None:
    """Δt must be an int > 0."""
    if not _is_int(every):
        raise TypeError(f"{who}: every (Δt, steps between updates) must be an int, got {every!r}")
    if every <= 0:
        raise ValueError(f"{who}: every (Δt, steps between updates) must be > 0, got {every}")


def check_step(who: str, name: str, value) -> None:
    """A step must be an int >= 0."""
    if not _is_int(value):
        raise TypeError(f"{who}: {name} must be an int step, got {value!r}")
    if value < 0:
        raise ValueError(f"{who}: {name} must be a step >= 0, got {value}")


def check_order(who: str, start: int, end: int) -> None:
    if end < start:
        raise ValueError(f"{who}: the schedule ends before it starts (end={end} < start={start})")


def check_cubic_span(who: str, start: int, end: int, every: int) -> None:
    if end - start < every:
        raise ValueError(
            f"{who}: the cubic schedule needs end - start >= every (at least one Δt), got "
            f"start={start}, end={end}, every={every} (use schedule='one_shot' for one update)"
        )


def check_zeta(who: str, zeta) -> None:
    """ζ must be a real number in (0, 1)."""
    if not _is_real(zeta):
        raise TypeError(f"{who}: zeta (drop fraction) must be a number in (0, 1), got {zeta!r}")
    if not 0.0 < float(zeta) < 1.0:
        raise ValueError(f"{who}: zeta (drop fraction) must be in (0, 1), got {zeta}")


def check_positive(who: str, name: str, value) -> None:
    if not _is_real(value):
        raise TypeError(f"{who}: {name} must be a number > 0, got {value!r}")
    if not float(value) > 0:
        raise ValueError(f"{who}: {name} must be > 0, got {value}")


def check_sparsity(who: str, name: str, value) -> None:
    """A sparsity must be in [0, 1) (and not resolve to 1 at the pruner's six decimals)."""
    if not _is_real(value):
        raise TypeError(f"{who}: {name} must be a number in [0, 1), got {value!r}")
    alloc.check_rate(name, value, where=who)


def check_sparsities(who: str, initial, final) -> None:
    check_sparsity(who, "initial_sparsity", initial)
    check_sparsity(who, "final_sparsity", final)
    if float(final) < float(initial):
        raise ValueError(
            f"{who}: final_sparsity={final} is below initial_sparsity={initial} "
            "(a schedule that prunes never revives weights)"
        )


def check_choice(who: str, name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{who}: unknown {name} {value!r}; valid: {sorted(valid)}")


def check_min_keep(who: str, min_keep) -> None:
    if not _is_int(min_keep) or min_keep < 0:
        raise ValueError(f"{who}: min_keep must be an int >= 0, got {min_keep!r}")


def as_scale(who: str, scale) -> tuple[tuple[str, float], ...]:
    """Per-layer scales as a tuple of ``(pattern, factor)`` pairs (a mapping is accepted)."""
    if isinstance(scale, Mapping):
        scale = tuple(scale.items())
    try:
        pairs = tuple(tuple(pair) for pair in scale)
    except TypeError:
        raise TypeError(
            f"{who}: scale must be (pattern, factor) pairs or a mapping, got {scale!r}"
        ) from None
    out = []
    for pair in pairs:
        if len(pair) != 2 or not isinstance(pair[0], str) or not _is_real(pair[1]):
            raise TypeError(f"{who}: scale entries must be (pattern, factor) pairs, got {pair!r}")
        if not (math.isfinite(float(pair[1])) and float(pair[1]) >= 0):
            raise ValueError(
                f"{who}: scale pattern {pair[0]!r} has factor {pair[1]}; expected a finite "
                "number >= 0"
            )
        out.append((pair[0], float(pair[1])))
    return tuple(out)


def check_run(who: str, steps, start_step) -> None:
    """``mask_update(steps, start_step)``'s own arguments."""
    if not _is_int(steps) or steps <= 0:
        raise ValueError(f"{who}: steps (the run length) must be an int > 0, got {steps!r}")
    check_step(who, "start_step", start_step)


def check_within_run(who: str, name: str, value: int, steps: int, start_step: int) -> None:
    """An update step must lie in ``[start_step, start_step + steps)``."""
    if value < start_step:
        raise ValueError(
            f"{who}: {name}={value} is before the run starts (start_step={start_step})"
        )
    if value >= start_step + steps:
        raise ValueError(
            f"{who}: {name}={value} is after training (the run covers steps [{start_step}, "
            f"{start_step + steps}); an update must leave steps to train after it)"
        )


def check_start(who: str, mask, limit: float, what: str, *, slack: bool) -> None:
    """Refuses a concrete mask sparser than ``limit`` (the sparsity the method starts from).

    Args:
      who: the method's name, for the message.
      mask: a concrete mask.
      limit: the largest sparsity the method accepts at the start.
      what: the setting ``limit`` comes from (e.g. ``"initial_sparsity=0.0"``).
      slack: allow one weight per prunable leaf above ``limit`` (random ERK/ER/uniform
        masks round each leaf's count, so they sit within half a weight per leaf of it).
    """
    flat = [(p, m) for p, m in leaves_with_paths(mask) if m is not None]
    if any(isinstance(m, jax.core.Tracer) for _, m in flat):
        raise TypeError(f"{who}.check_start: needs a concrete mask (call it outside jax.jit)")
    if not flat:
        raise ValueError(f"{who}.check_start: the mask has no prunable leaves")
    total = sum(int(np.size(m)) for _, m in flat)
    alive = sum(int(np.count_nonzero(np.asarray(m))) for _, m in flat)
    allowed = int(alloc.fraction_of(limit, total)) + (len(flat) if slack else 0)
    if total - alive > allowed:
        raise ValueError(
            f"{who}: the starting mask has sparsity {(total - alive) / total:.6g}, above "
            f"{what} the method starts from; start from method.initial_mask(params, key)"
        )


def check_grad(who: str, grad, mask) -> None:
    """Trace-time check: ``grad`` holds a float gradient shaped like every prunable leaf."""
    if grad is None:
        raise ValueError(
            f"{who} needs the dense gradient (inputs.grad is None); run its MaskUpdate with "
            "needs_grad=True (method.mask_update(steps) sets it)"
        )
    by_path = dict(leaves_with_paths(grad))
    for path, m in leaves_with_paths(mask):
        if m is None:
            continue
        g = by_path.get(path)
        hint = "; the loss must be differentiable in every prunable leaf"
        if g is None:
            raise ValueError(
                f"{who} needs the dense gradient of leaf {path!r}: it is missing{hint}"
            )
        dtype = getattr(g, "dtype", None)
        if dtype == jax.dtypes.float0 or dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(
                f"{who} needs the dense gradient of leaf {path!r}: got dtype {dtype} "
                f"(float0: not differentiable){hint}"
            )
        if tuple(jnp.shape(g)) != tuple(jnp.shape(m)):
            raise ValueError(
                f"{who} needs the dense gradient of leaf {path!r}: got shape "
                f"{tuple(jnp.shape(g))}, the leaf has shape {tuple(jnp.shape(m))}"
            )
