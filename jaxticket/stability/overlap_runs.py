"""The masks finished runs stored, labelled, for ``overlap_matrix`` (issue 12).

Every workflow stores a phase's masks in its checkpoint, stacked on the leading axis:

- lottery levels (``lottery-*``): ``mask/<leaf>``, one per seed (level 0 is dense);
- sparse training and scratch phases: ``mask/<leaf>``, one per seed;
- at-init phases: ``masks/<leaf>``, the method's seeds first, then each control's
  (``jaxticket.at_init.run.variants``): the first ``seeds`` rows are the method's masks;
- a compare directory holds such runs under ``runs/``.

Only the flat arrays of the chosen level are read (``RunStore.load_level``); no model or
template is needed. The level is chosen by number, by sparsity (the phase's target
sparsity from its records; for IMP levels, the tickets' measured sparsity) or, by
default, the last finished one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from jaxticket.workflow.store import RunStore
from jaxticket.workflow.store_files import read_json

__all__ = ["RunMasks", "masks_from_run", "masks_from_runs"]

_PREFIXES = ("mask", "masks")  # sparse-train/lottery/scratch, at-init


class RunMasks(NamedTuple):
    """Masks read from run directories, stacked over masks.

    Attributes:
      labels: one per mask, e.g. ``"lottery L5 seed 1"``, ``"rigl 0.9 seed 0"``.
      masks: ``{leaf path: (N, ...) bool array}``, a stacked mask (``overlap_matrix``
        takes it as it is).
      sparsities: the measured sparsity of each mask (fraction of prunable weights pruned).
      runs: the run directory each mask came from.
    """

    labels: list[str]
    masks: dict[str, np.ndarray]
    sparsities: list[float]
    runs: list[str]


def masks_from_run(
    run_dir: str | os.PathLike,
    *,
    level: int | None = None,
    sparsity: float | None = None,
    tolerance: float = 0.01,
) -> RunMasks:
    """The seeds' masks of one level of a finished run (or of every run of a compare
    directory that has that level).

    Args:
      run_dir: a run directory (with ``config.json``) or a compare directory (``runs/``).
      level: the level (phase) number; or
      sparsity: the level whose sparsity is within ``tolerance`` of this (the nearest);
        neither: the last finished level. Not both.
      tolerance: for ``sparsity``.

    Returns:
      The masks, seeds in order (a compare directory: its runs in name order).

    Raises:
      ValueError: both ``level`` and ``sparsity``, a directory that is not a run, a level
        not finished, no level at that sparsity, or a level without stored masks (names
        the directory and what it has).
    """
    if level is not None and sparsity is not None:
        raise ValueError("masks_from_run: give level or sparsity, not both")
    if level is not None and (isinstance(level, bool) or not isinstance(level, int) or level < 0):
        raise ValueError(f"masks_from_run: level must be an int >= 0, got {level!r}")
    if sparsity is not None and not 0.0 <= float(sparsity) <= 1.0:
        raise ValueError(f"masks_from_run: sparsity must lie in [0, 1], got {sparsity!r}")
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file() and not (run_dir / "runs").is_dir():
        raise ValueError(f"masks_from_run: {run_dir} is not a run directory (no config.json)")
    if (run_dir / "runs").is_dir():
        return _from_compare(run_dir, level, sparsity, tolerance)
    return _from_one_run(run_dir, level, sparsity, tolerance)


def masks_from_runs(run_dirs: Sequence[str | os.PathLike], **selection) -> RunMasks:
    """``masks_from_run`` of each directory, concatenated (same leaves required).

    Raises:
      ValueError: no directories, masks with different leaves or shapes (names the leaf
        and both runs), and ``masks_from_run``'s errors.
    """
    if not run_dirs:
        raise ValueError("masks_from_runs: no run directories given")
    return _concat([masks_from_run(d, **selection) for d in run_dirs])


# --------------------------------------------------------------------------------------
# helpers


def _from_compare(run_dir: Path, level, sparsity, tolerance) -> RunMasks:
    runs = sorted(p for p in (run_dir / "runs").iterdir() if (p / "config.json").is_file())
    found, skipped = [], []
    for sub in runs:
        try:
            found.append(_from_one_run(sub, level, sparsity, tolerance))
        except _NoSuchLevel as e:
            skipped.append(str(e))
    if not found:
        raise ValueError(
            f"masks_from_run: no run under {run_dir / 'runs'} has the level asked for"
            + (f" ({'; '.join(skipped)})" if skipped else " (no runs)")
        )
    return _concat(found)


class _NoSuchLevel(ValueError):
    pass


def _from_one_run(run_dir: Path, level, sparsity, tolerance) -> RunMasks:
    meta = read_json(run_dir / "config.json", "masks_from_run")
    name = str(meta.get("name", run_dir.name)) if isinstance(meta, dict) else run_dir.name
    config = meta.get("config", {}) if isinstance(meta, dict) else {}
    store = RunStore(run_dir)
    levels = store.finished_levels()
    if not levels:
        raise _NoSuchLevel(f"masks_from_run: {run_dir} has no finished level")
    nominal = {lvl: _nominal_sparsity(run_dir, lvl) for lvl in levels}
    if level is None and sparsity is None:
        level = levels[-1]
    elif sparsity is not None:
        near = [lvl for lvl in levels if nominal[lvl] is not None]
        near = [lvl for lvl in near if abs(nominal[lvl] - sparsity) <= tolerance]
        if not near:
            known = [lvl for lvl in levels if nominal[lvl] is not None]
            have = ", ".join(f"L{lvl} {nominal[lvl]:.3g}" for lvl in known)
            raise _NoSuchLevel(
                f"masks_from_run: {run_dir.name} has no level at sparsity {sparsity:g} "
                f"(± {tolerance:g}); its levels: {have}"
            )
        level = min(near, key=lambda lvl: abs(nominal[lvl] - sparsity))
    elif level not in levels:
        raise _NoSuchLevel(
            f"masks_from_run: {run_dir.name} has no finished level {level}; finished: {levels}"
        )
    loaded = store.load_level(level)
    if loaded is None:
        raise ValueError(f"masks_from_run: level {level} of {run_dir} could not be loaded")
    arrays, _ = loaded
    masks = _stored_masks(arrays, run_dir, level)
    seeds = int(config.get("seeds", next(iter(masks.values())).shape[0]))
    masks = {path: np.asarray(m[:seeds]) for path, m in masks.items()}
    alive = sum(m.reshape(seeds, -1).sum(1) for m in masks.values())
    total = sum(m[0].size for m in masks.values())
    measured = [float(1 - a / max(total, 1)) for a in alive]
    if name.startswith("lottery"):
        head = f"lottery L{level}"
    else:
        method = config.get("method") or name.split("-")[0]
        target = nominal[level] if nominal[level] is not None else float(np.mean(measured))
        head = f"{method} {target:g}"
    return RunMasks(
        [f"{head} seed {s}" for s in range(seeds)], masks, measured, [str(run_dir)] * seeds
    )


def _stored_masks(arrays: dict, run_dir: Path, level: int) -> dict[str, np.ndarray]:
    for prefix in _PREFIXES:
        found = {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
        if found:
            return found
    heads = sorted({k.split("/")[0] for k in arrays})
    raise ValueError(
        f"masks_from_run: level {level} of {run_dir} stores no masks (no 'mask/<leaf>' or "
        f"'masks/<leaf>' arrays; it has {heads})"
    )


def _nominal_sparsity(run_dir: Path, level: int) -> float | None:
    """The level's target sparsity from its records, else (IMP) its tickets' measured one."""
    meta = read_json(run_dir / f"level_{level:02d}.json", "masks_from_run")
    records = [r for r in meta.get("records", []) if isinstance(r, dict)]
    for r in records:
        if isinstance(r.get("sparsity"), int | float):
            return float(r["sparsity"])
    here = [r for r in records if r.get("level", level) == level]
    tickets = [r["remaining"] for r in here if r.get("variant", "ticket") == "ticket"]
    return float(1 - np.mean(tickets)) if tickets else None


def _concat(parts: list[RunMasks]) -> RunMasks:
    first = parts[0]
    for part in parts[1:]:
        if list(part.masks) != list(first.masks):
            odd = sorted(set(part.masks) ^ set(first.masks))
            raise ValueError(
                f"masks_from_runs: {part.runs[0]} and {first.runs[0]} store masks of "
                f"different leaves (first difference: {odd[0] if odd else 'leaf order'!r})"
            )
        for path, m in part.masks.items():
            if m.shape[1:] != first.masks[path].shape[1:]:
                raise ValueError(
                    f"masks_from_runs: leaf {path!r} has shape {m.shape[1:]} in "
                    f"{part.runs[0]} and {first.masks[path].shape[1:]} in {first.runs[0]}"
                )
    return RunMasks(
        [label for p in parts for label in p.labels],
        {path: np.concatenate([p.masks[path] for p in parts]) for path in first.masks},
        [s for p in parts for s in p.sparsities],
        [r for p in parts for r in p.runs],
    )
