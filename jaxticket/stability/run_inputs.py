"""What a stability run reads before anything trains: the ticket masks of a lottery run,
the model's weight-matching spec, and the all-ones masks of a dense analysis.

Each check fails with a one-line ``ConfigError`` naming the field (``lottery_run``,
``level``, ``seeds``, ``match``), from ``StabilityRunner``'s setup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxticket.masks import dense_mask
from jaxticket.stability.batchnorm import has_state
from jaxticket.stability.config import StabilityConfig
from jaxticket.stability.overlap_runs import masks_from_run
from jaxticket.stability.permutations import permutation_spec
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.settings import TRAINING_FIELDS
from jaxticket.workflow.store import flatten_tree, unflatten_into

__all__ = ["dense_masks", "matching_spec", "ticket_masks"]

# Training fields a ticket analysis may set apart from its lottery run: they do not change
# the dense parents (evaluation, how many of its seeds, the pruning floor).
_FREE_FIELDS = ("seeds", "eval_every", "min_keep")


def dense_masks(template, seeds: int) -> Any:
    """The dense mask of ``template`` stacked over ``seeds`` (host ``bool`` arrays)."""
    return jax.tree.map(lambda m: np.ones((seeds, *m.shape), bool), dense_mask(template))


def ticket_masks(c: StabilityConfig, template) -> tuple[Any, int | None]:
    """The first ``seeds`` ticket masks of ``c.lottery_run`` (level ``c.level``), stacked
    in the model's mask structure, and the lottery run's rewind step; or a ``ConfigError``
    on ``lottery_run``/``level``/``seeds``."""
    run = Path(c.lottery_run)
    try:
        meta = json.loads((run / "config.json").read_text(encoding="utf-8"))
        other = meta.get("config") or {}
    except (OSError, ValueError, AttributeError):
        raise ConfigError(
            "lottery_run", f"lottery_run {str(run)!r} is not a run directory (no config.json)"
        ) from None
    if not str(meta.get("name", run.name)).startswith("lottery"):
        raise ConfigError("lottery_run", f"lottery_run {str(run)!r} is not a lottery run")
    for name in TRAINING_FIELDS:
        if name not in _FREE_FIELDS and other.get(name) != getattr(c, name):
            raise ConfigError(
                "lottery_run",
                f"lottery_run was trained with {name}={other.get(name)!r}, this analysis has "
                f"{getattr(c, name)!r}; the ticket's masks belong to the lottery run's dense "
                "networks, so the training settings must match",
            )
    try:
        found = masks_from_run(run, level=None if c.level == -1 else c.level)
    except ValueError as e:
        raise ConfigError("level", str(e)) from None
    have = len(found.labels)
    if have < c.seeds:
        raise ConfigError("seeds", f"seeds={c.seeds} but lottery_run holds {have} masks")
    flat = {
        f"mask/{path}": np.asarray(m[: c.seeds]).astype(bool) for path, m in found.masks.items()
    }
    try:
        mask = unflatten_into(dense_mask(template), flat, "mask")
    except ValueError as e:
        raise ConfigError("lottery_run", f"lottery_run masks do not fit {c.model!r}: {e}") from None
    shapes = {path: tuple(t.shape) for path, t in flatten_tree(template).items()}
    for path, m in flatten_tree(mask).items():
        if tuple(m.shape[1:]) != shapes[path]:
            raise ConfigError(
                "lottery_run",
                f"lottery_run mask {path!r} has shape {list(m.shape[1:])}, the model "
                f"{list(shapes[path])}",
            )
    return mask, other.get("rewind")


def matching_spec(model):
    """The model's permutation spec, or a ``ConfigError`` on ``match`` saying why not."""
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    params, state = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), (params, state))
    try:
        return permutation_spec(params, state if has_state(state) else None)
    except ValueError as e:
        raise ConfigError(
            "match", f"match: model {model.name!r} cannot be weight-matched: {e}"
        ) from None
