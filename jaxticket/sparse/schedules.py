"""Schedules of the sparse-training methods: when the mask changes, and by how much.

* :func:`zhu_gupta_schedule`: the cubic sparsity schedule of Zhu & Gupta (*To prune, or
  not to prune*, 2017), ``s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(n·Δt))³`` for
  ``t = t₀, t₀+Δt, …, t₀+n·Δt``, as ``optax.polynomial_schedule(power=3)``.
* :func:`cosine_drop_fraction`: the drop fraction of RigL (Evci et al. 2020) and GraNet
  (Liu et al. 2021), ``ζ_t = ζ/2·(1 + cos(π·t/T))``, as ``optax.cosine_decay_schedule``.
* :func:`update_steps`: the steps ``start, start+every, …`` up to ``end`` (inclusive).

The schedules are optax schedules: pure functions of a (possibly traced) step count.
"""

from __future__ import annotations

import optax

from jaxticket.sparse import checks

__all__ = ["cosine_drop_fraction", "update_steps", "zhu_gupta_schedule"]


def update_steps(every: int, start: int, end: int) -> tuple[int, ...]:
    """The steps ``start, start + every, …, start + n·every`` with ``n = (end − start) // every``.

    Args:
      every: Δt, the steps between two updates (> 0).
      start: t₀, the first update step (>= 0).
      end: the last step an update may take (inclusive, >= start).

    Returns:
      A tuple of ints, strictly increasing; ``(start,)`` when ``end − start < every``.

    Raises:
      ValueError, TypeError: ``every <= 0``, a negative ``start``, ``end < start``
        ("ends before it starts"), non-integers.
    """
    checks.check_every("update_steps", every)
    checks.check_step("update_steps", "start", start)
    checks.check_step("update_steps", "end", end)
    checks.check_order("update_steps", start, end)
    return tuple(range(start, end + 1, every))


def zhu_gupta_schedule(
    initial_sparsity: float, final_sparsity: float, start: int, end: int, every: int
) -> optax.Schedule:
    """The Zhu & Gupta (2017) cubic sparsity schedule as an optax schedule of the step.

    ``s_t = s_f + (s_i − s_f)·(1 − (t − t₀)/(n·Δt))³`` with ``t₀ = start``, ``Δt = every``
    and ``n = (end − start) // every``: ``s_i`` up to ``t₀``, ``s_f`` from ``t₀ + n·Δt`` on
    (``optax.polynomial_schedule(init_value=s_i, end_value=s_f, power=3,
    transition_steps=n·Δt, transition_begin=t₀)``).

    Args:
      initial_sparsity: s_i in [0, 1).
      final_sparsity: s_f in [s_i, 1).
      start: t₀, the first update step.
      end: the last step an update may take; the schedule reaches s_f at ``t₀ + n·Δt``.
      every: Δt (> 0); ``end − start`` must be at least one Δt.

    Returns:
      ``schedule(step) -> float32 sparsity``.

    Raises:
      ValueError, TypeError: as ``update_steps``; sparsities outside [0, 1) or
        ``final_sparsity < initial_sparsity``; fewer than one Δt between start and end.
    """
    who = "zhu_gupta_schedule"
    checks.check_sparsities(who, initial_sparsity, final_sparsity)
    steps = update_steps(every, start, end)
    checks.check_cubic_span(who, start, end, every)
    n = len(steps) - 1
    return optax.polynomial_schedule(
        init_value=float(initial_sparsity),
        end_value=float(final_sparsity),
        power=3,
        transition_steps=n * every,
        transition_begin=start,
    )


def cosine_drop_fraction(zeta: float, decay_steps: float) -> optax.Schedule:
    """RigL's drop fraction ``ζ_t = ζ/2·(1 + cos(π·t/T))`` for ``t <= T``, 0 after.

    ``optax.cosine_decay_schedule(init_value=ζ, decay_steps=T)``; ``t`` counts from the
    start of the decay (the caller subtracts its start step).

    Args:
      zeta: ζ, the initial drop fraction, in (0, 1).
      decay_steps: T (> 0), e.g. RigL's ``T_end = 0.75·(run length)``.

    Raises:
      ValueError, TypeError: ζ outside (0, 1), ``decay_steps <= 0``.
    """
    checks.check_zeta("cosine_drop_fraction", zeta)
    checks.check_positive("cosine_drop_fraction", "decay_steps", decay_steps)
    return optax.cosine_decay_schedule(init_value=float(zeta), decay_steps=decay_steps)
