"""Dynamic sparse training: SET and RigL, sharing one drop-and-grow step.

Both keep the number of alive weights of every layer fixed and, every ΔT steps, move a
fraction ζ of them:

* **drop** the ``floor(ζ·alive)`` alive weights of smallest ``|w|`` (per layer);
* **grow** as many among the positions dead after the drop: at random (SET, Mocanu et al.
  2018) or where the dense gradient ``|∇L|`` is largest (RigL, Evci et al. 2020).

The grow candidates include the positions just dropped, as in RigL's implementation
(``reinit_when_same=False``): such a position is alive before and after the update, so
the engine's ``regrow`` keeps its weight and optimizer state. Every other grown position
was dead before the update and starts at exactly 0 with a fresh optimizer state.

Counts are exact: ``floor(ζ·n)`` with ζ resolved to six decimals, ``floor(round(ζ·10⁶)·n
/ 10⁶)`` in int32 arithmetic (:func:`floor_fraction`); ties in ``|w|`` or in the grow
scores go to the earlier position (``jaxticket.pruning.topk_mask``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

from jaxticket import _random
from jaxticket._paths import leaves_with_paths
from jaxticket.pruning import topk_mask
from jaxticket.pruning.allocation import _RESOLUTION
from jaxticket.sparse import checks, schedules
from jaxticket.sparse.static import random_mask
from jaxticket.train.mask_update import MaskUpdate, UpdateInputs

__all__ = ["RigL", "SET", "drop_and_grow", "floor_fraction"]

_is_none = lambda x: x is None  # noqa: E731


def floor_fraction(fraction, n) -> jax.Array:
    """``floor(F·n / 10⁶)`` with ``F = round(fraction·10⁶)``, exactly, in int32.

    ``fraction`` is clipped to [0, 1] (NaN counts as 0); ``n < 2³¹``. Both may be traced.
    """
    big = jnp.round(jnp.asarray(fraction, jnp.float32) * _RESOLUTION)
    big = jnp.where(jnp.isnan(big), 0.0, jnp.clip(big, 0, _RESOLUTION)).astype(jnp.int32)
    n = jnp.asarray(n, jnp.int32)
    f1, f0 = big // 1000, big % 1000
    n1, n0 = n // 1000, n % 1000
    mid = f1 * n0 + f0 * n1
    low = (mid % 1000) * 1000 + f0 * n0
    return f1 * n1 + mid // 1000 + low // _RESOLUTION


def drop_and_grow(mask: Any, drop_scores: Any, grow_scores: Any, fraction) -> Any:
    """Per prunable leaf: drop ``floor(fraction·alive)`` lowest-scored alive entries, grow
    as many highest-scored entries among those dead after the drop.

    Args:
      mask: the current mask (``None`` leaves are returned as they are).
      drop_scores: a pytree with the params' paths; larger = keep (``|w|``).
      grow_scores: a pytree with the params' paths; larger = grow first (``|∇L|``, or
        uniform noise for SET).
      fraction: ζ, the drop fraction (may be traced).

    Returns:
      A mask with the structure of ``mask`` and exactly the same alive count per leaf.
    """
    drop_by_path = dict(leaves_with_paths(drop_scores))
    grow_by_path = dict(leaves_with_paths(grow_scores))
    flat, treedef = jax.tree.flatten(mask, is_leaf=_is_none)
    paths = [p for p, _ in leaves_with_paths(mask, keep_none=True)]
    out = []
    for path, m in zip(paths, flat, strict=True):
        if m is None:
            out.append(None)
            continue
        n = jnp.sum(m, dtype=jnp.int32)
        n_drop = floor_fraction(fraction, n)
        drop_s = _as_score(drop_by_path[path])
        grow_s = _as_score(grow_by_path[path])
        (kept,) = topk_mask([drop_s], [m], n - n_drop)
        (grown,) = topk_mask([grow_s], [~kept], n_drop)
        out.append(kept | grown)
    return jax.tree.unflatten(treedef, out)


def _as_score(x) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.floating) else x.astype(jnp.float32)


def magnitude_scores(params: Any) -> Any:
    """``|w|`` per leaf (the drop criterion of SET, RigL and GraNet)."""
    return jax.tree.map(jnp.abs, params)


def _random_scores(key: jax.Array, mask: Any) -> Any:
    flat, treedef = jax.tree.flatten(mask, is_leaf=_is_none)
    keys = jax.random.split(key, len(flat))
    leaves = [
        None if m is None else _random.uniform(k, m.shape, jnp.float32)
        for k, m in zip(keys, flat, strict=True)
    ]
    return jax.tree.unflatten(treedef, leaves)


def _steps_every(who, every, start_step, last) -> tuple[int, ...]:
    if last < start_step + every:
        raise ValueError(
            f"{who}: no update fits: the first would be at step {start_step + every} "
            f"(start_step + every), after the last allowed step {last}"
        )
    return schedules.update_steps(every, start_step + every, last)


@dataclasses.dataclass(frozen=True)
class SET:
    """Sparse Evolutionary Training (Mocanu et al. 2018).

    Starts from a random mask at ``sparsity`` (``allocation`` "er" by default, as in the
    paper; "erk" or "uniform"); every ``every`` steps, per layer, drops the
    ``floor(ζ·alive)`` smallest-``|w|`` alive weights and regrows as many at uniformly
    random positions among those dead after the drop (new weights start at 0). Updates at
    ``start_step + every, start_step + 2·every, …`` up to ``end`` (inclusive; ``None``:
    the run's last step). ``decay="constant"`` keeps ζ fixed (Mocanu et al.);
    ``"cosine"`` decays it as RigL does, ``ζ_t = ζ/2·(1 + cos(π·(t − start_step)/T))``
    with ``T`` the span the updates may take (``end − start_step + 1``, or the run), which
    is how Evci et al. ran SET beside RigL (same schedule, only the growth differs).

    Attributes:
      sparsity: the fraction of prunable weights pruned, in [0, 1).
      every: ΔT, steps between updates (> 0).
      zeta: ζ, the fraction of alive weights moved at each update, in (0, 1).
      end: the last step an update may take, or ``None``.
      allocation: "er", "erk" or "uniform" (per-layer densities of the initial mask).
      min_keep: weights every layer keeps in the initial mask.
      decay: "constant" (ζ at every update) or "cosine" (RigL's decay of ζ).
    """

    sparsity: float
    every: int = 100
    zeta: float = 0.3
    end: int | None = None
    allocation: str = "er"
    min_keep: int = 1
    decay: str = "constant"

    def __post_init__(self):
        who = type(self).__name__
        checks.check_sparsity(who, "sparsity", self.sparsity)
        checks.check_every(who, self.every)
        checks.check_zeta(who, self.zeta)
        if self.end is not None:
            checks.check_step(who, "end", self.end)
        checks.check_choice(who, "allocation", self.allocation, ("er", "erk", "uniform"))
        checks.check_min_keep(who, self.min_keep)
        checks.check_choice(who, "decay", self.decay, ("constant", "cosine"))

    def initial_mask(self, params: Any, key: jax.Array, *, base: Any = None) -> Any:
        """A random mask at ``sparsity`` (``base``: which leaves are prunable; default
        ``dense_mask(params)``)."""
        return random_mask(params, key, self.sparsity, self.allocation, self.min_keep, base)

    def check_start(self, mask: Any) -> None:
        """Raises ValueError when ``mask`` is sparser than ``sparsity`` (one weight per
        layer of rounding allowed)."""
        who = type(self).__name__
        checks.check_start(who, mask, self.sparsity, f"sparsity={self.sparsity}", slack=True)

    def mask_update(self, steps: int, start_step: int = 0) -> MaskUpdate:
        """The engine hook for a run of ``steps`` steps from ``start_step``."""
        who = f"{type(self).__name__}.mask_update"
        checks.check_run(who, steps, start_step)
        last = start_step + steps - 1
        if self.end is not None:
            checks.check_within_run(who, "end", self.end, steps, start_step)
            last = self.end
        update_at = _steps_every(who, self.every, start_step, last)
        # The update reads only ζ (and its decay): runs at other target sparsities share
        # one compiled program.
        horizon = None if self.decay == "constant" else float(last - start_step + 1)
        return MaskUpdate(functools.partial(_set_update, self.zeta, start_step, horizon), update_at)


def _set_update(zeta: float, start_step: int, horizon, inputs: UpdateInputs) -> Any:
    """SET's new mask (``MaskUpdate.fn``): drop by ``|w|``, regrow at random, with ζ
    constant (``horizon`` None) or cosine-decayed over ``horizon`` steps."""
    if horizon is not None:
        zeta = schedules.cosine_drop_fraction(zeta, horizon)(inputs.step - start_step)
    grow = _random_scores(inputs.key, inputs.mask)
    return drop_and_grow(inputs.mask, magnitude_scores(inputs.params), grow, zeta)


@dataclasses.dataclass(frozen=True)
class RigL:
    """Rigged Lottery (Evci et al. 2020).

    Starts from a random mask at ``sparsity`` (ERK by default); at steps
    ``start_step + every, start_step + 2·every, …`` while ``t − start_step < T_end =
    end_fraction·steps``, per layer drops the ``floor(ζ_t·alive)`` smallest-``|w|`` alive
    weights and regrows as many where the dense gradient ``|∇L|`` (``inputs.grad``, on a
    fresh minibatch) is largest among the positions dead after the drop, with
    ``ζ_t = ζ/2·(1 + cos(π·(t − start_step)/T_end))``.

    Attributes:
      sparsity: the fraction of prunable weights pruned, in [0, 1).
      every: ΔT (> 0), 100 in the paper.
      zeta: ζ, the initial drop fraction, in (0, 1) (0.3 in the paper).
      end_fraction: updates stop at this fraction of the run, in (0, 1] (0.75).
      allocation: "erk", "er" or "uniform" (per-layer densities of the initial mask).
      min_keep: weights every layer keeps in the initial mask.
    """

    sparsity: float
    every: int = 100
    zeta: float = 0.3
    end_fraction: float = 0.75
    allocation: str = "erk"
    min_keep: int = 1

    def __post_init__(self):
        who = type(self).__name__
        checks.check_sparsity(who, "sparsity", self.sparsity)
        checks.check_every(who, self.every)
        checks.check_zeta(who, self.zeta)
        checks.check_positive(who, "end_fraction", self.end_fraction)
        if float(self.end_fraction) > 1.0:
            raise ValueError(f"{who}: end_fraction must be in (0, 1], got {self.end_fraction}")
        checks.check_choice(who, "allocation", self.allocation, ("er", "erk", "uniform"))
        checks.check_min_keep(who, self.min_keep)

    def initial_mask(self, params: Any, key: jax.Array, *, base: Any = None) -> Any:
        """A random mask at ``sparsity`` (see ``SET.initial_mask``)."""
        return random_mask(params, key, self.sparsity, self.allocation, self.min_keep, base)

    def check_start(self, mask: Any) -> None:
        """As ``SET.check_start``."""
        who = type(self).__name__
        checks.check_start(who, mask, self.sparsity, f"sparsity={self.sparsity}", slack=True)

    def mask_update(self, steps: int, start_step: int = 0) -> MaskUpdate:
        """The engine hook (``needs_grad=True``) for a run of ``steps`` from ``start_step``."""
        who = f"{type(self).__name__}.mask_update"
        checks.check_run(who, steps, start_step)
        t_end = float(self.end_fraction) * steps
        last = start_step + math.ceil(t_end) - 1  # the last t with t - start_step < T_end
        update_at = _steps_every(who, self.every, start_step, last)
        # Only ζ and the horizon enter the update: every target sparsity shares a program.
        fn = functools.partial(_rigl_update, self.zeta, start_step, t_end)
        return MaskUpdate(fn, update_at, needs_grad=True)

    def drop_fraction(self, t_end: float) -> Any:
        """ζ_t as a schedule of ``t − start_step``."""
        return schedules.cosine_drop_fraction(self.zeta, t_end)


def _rigl_update(zeta: float, start_step: int, t_end: float, inputs: UpdateInputs) -> Any:
    checks.check_grad("RigL", inputs.grad, inputs.mask)
    zeta_t = schedules.cosine_drop_fraction(zeta, t_end)(inputs.step - start_step)
    grow = magnitude_scores(inputs.grad)
    return drop_and_grow(inputs.mask, magnitude_scores(inputs.params), grow, zeta_t)
