"""Mask overlap across seeds, levels and methods (issue 12; DESIGN.md §4).

For N masks, ``overlap_matrix`` gives the N × N Jaccard index ``|a ∧ b| / |a ∨ b|`` and
normalized Hamming distance (the fraction of prunable weights where two masks differ),
over all prunable weights and per prunable leaf, in one jitted program: per leaf, the
intersection counts of every pair (a ``vmap`` over one side, ``lax.map`` over the other,
so memory stays at N masks) and from them, with the alive counts, every metric exactly.

``random_baseline`` is the reference level: the same matrices against random masks with
each mask's per-layer counts, averaged over many draws.
``expected_jaccard`` / ``expected_hamming`` are the closed forms for two independent
uniform random masks keeping ``k1`` and ``k2`` of ``n`` (the intersection is
hypergeometric, ``E|A ∧ B| = k1·k2/n``).

Example::

    out = overlap_matrix([mask_seed0, mask_seed1, mask_seed2])
    out["jaccard"]                    # 3 × 3, ones on the diagonal
    out["layers"]["dense1/kernel"]["hamming"]
    base = random_baseline(jax.random.key(0), [mask_seed0, mask_seed1, mask_seed2])
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths
from jaxticket.lottery.controls import RANDOM_PRUNE
from jaxticket.mask_checks import without_variables
from jaxticket.pruning.match_counts import leaf_counts

__all__ = [
    "expected_hamming",
    "expected_jaccard",
    "overlap_matrix",
    "pairs_mean",
    "random_baseline",
    "stack_masks",
]

Mask = Any


def stack_masks(masks: Any, what: str = "overlap_matrix") -> tuple[list[str], list[jax.Array]]:
    """The prunable leaves of N masks as ``(paths, leaves)``, each leaf stacked ``(N, ...)``.

    Args:
      masks: a list or tuple of mask pytrees (same structure and shapes; ``None`` leaves
        ignored), or ONE mask pytree whose every prunable leaf is stacked over the N masks
        on its leading axis (what ``train_seeds`` gives). A list or tuple at the top level
        is always read as a list of masks.
      what: the caller's name, for the error messages.

    Raises:
      ValueError: no masks, no prunable leaf, leaves that differ between masks in
        structure, ``None``-ness or shape, or stacked leaves of different lengths (the
        message names the leaf).
      TypeError: a leaf that is not a bool array (names the leaf).
    """
    if isinstance(masks, list | tuple):
        if not masks:
            raise ValueError(f"{what}: got an empty list of masks, expected at least one")
        flat = [leaves_with_paths(without_variables(m), keep_none=True) for m in masks]
        paths = [p for p, m in flat[0] if m is not None]
        for i, leaves in enumerate(flat[1:], start=1):
            _check_like_first(flat[0], leaves, i, what)
        rows = [[m for _, m in leaves if m is not None] for leaves in flat]
        for path, *leaves in zip(paths, *rows, strict=True):
            for leaf in leaves:
                _check_bool(path, leaf, what)
        columns = zip(*rows, strict=True)
        stacked = [jnp.stack([jnp.asarray(leaf) for leaf in col]) for col in columns]
    else:
        pairs = [(p, m) for p, m in leaves_with_paths(without_variables(masks)) if m is not None]
        paths, stacked, n = [], [], None
        for path, leaf in pairs:
            _check_bool(path, leaf, what)
            if jnp.ndim(leaf) < 1:
                raise ValueError(
                    f"{what}: stacked mask leaf {path!r} is a scalar; a stacked mask has the "
                    "N masks on every leaf's leading axis"
                )
            if n is not None and jnp.shape(leaf)[0] != n:
                raise ValueError(
                    f"{what}: stacked mask leaf {path!r} holds {jnp.shape(leaf)[0]} masks on "
                    f"its leading axis, the leaves before it {n}"
                )
            n = jnp.shape(leaf)[0]
            paths.append(path)
            stacked.append(jnp.asarray(leaf))
    if not paths:
        raise ValueError(f"{what}: the masks have no prunable (non-None) leaf")
    return paths, stacked


def overlap_matrix(masks: Any) -> dict[str, Any]:
    """Pairwise Jaccard and normalized Hamming of N masks, globally and per prunable leaf.

    Args:
      masks: a list of N mask pytrees, or one mask stacked over N on the leading axis
        (see ``stack_masks``).

    Returns:
      ``{"jaccard": (N, N), "hamming": (N, N), "alive": (N,) alive counts, "total":
      prunable weights, "layers": {leaf path: {"jaccard", "hamming": (N, N), "alive":
      (N,), "total": int}}}`` as NumPy arrays. Jaccard is 1 for two empty masks (as
      ``jaxticket.masks.jaccard``); Hamming is ``|a xor b| / total``.

    Raises:
      ValueError, TypeError: as ``stack_masks``.
    """
    paths, leaves = stack_masks(masks, "overlap_matrix")
    flat = tuple(leaf.reshape(leaf.shape[0], -1) for leaf in leaves)
    out = jax.device_get(_overlap_program(flat, flat))
    return _as_result(paths, flat, out)


def random_baseline(key: jax.Array, masks: Any, *, draws: int = 100) -> dict[str, Any]:
    """The overlap of random masks with the same per-layer counts as ``masks``.

    Each draw gives every mask j a uniform random mask with exactly its per-layer alive
    counts (``CountsPruner`` with random scores, the lottery's random-pruning control)
    and takes the overlap of mask i with random mask j. Its law is that of two
    independent uniform random masks with mask i's and mask j's counts (for any fixed
    mask, the intersection with a uniform random one is hypergeometric), so entry (i, j)
    is the reference level of the pair, the diagonal included. The matrices are
    symmetrized ((i, j) and (j, i) are equally good draws) and averaged over the draws,
    all in one jitted program.

    Args:
      key: a ``jax.random`` key.
      masks: as for ``overlap_matrix``.
      draws: number of draws, an int >= 1.

    Returns:
      ``overlap_matrix``'s layout with, next to each "jaccard"/"hamming" matrix, its
      standard deviation over draws ("jaccard_std"/"hamming_std"), and ``"draws"``.

    Raises:
      ValueError: ``draws`` not an int >= 1, and ``stack_masks``'s errors.
    """
    if isinstance(draws, bool) or not isinstance(draws, int | np.integer) or draws < 1:
        raise ValueError(f"random_baseline: draws must be an int >= 1, got {draws!r}")
    paths, leaves = stack_masks(masks, "random_baseline")
    mean, std = jax.device_get(_baseline_program(key, tuple(leaves), int(draws)))
    flat = tuple(leaf.reshape(leaf.shape[0], -1) for leaf in leaves)
    out = _as_result(paths, flat, mean)
    spread = _as_result(paths, flat, std)
    for name in ("jaccard", "hamming"):
        out[f"{name}_std"] = spread[name]
        for path in paths:
            out["layers"][path][f"{name}_std"] = spread["layers"][path][name]
    out["draws"] = int(draws)
    return out


def expected_jaccard(k1: int, k2: int, n: int) -> float:
    """E[|A ∧ B| / |A ∨ B|] for independent uniform random A, B keeping k1 and k2 of n.

    Exact: ``I = |A ∧ B|`` is hypergeometric (n, k1, k2), ``|A ∨ B| = k1 + k2 - I``, so
    the expectation is a finite sum over I's support (1 when k1 = k2 = 0).

    Raises:
      ValueError: counts that are not ints with ``0 <= k1, k2 <= n``.
    """
    _check_counts(k1, k2, n, "expected_jaccard")
    if k1 == 0 and k2 == 0:
        return 1.0
    total = 0.0
    for i in range(max(0, k1 + k2 - n), min(k1, k2) + 1):
        log_p = _log_comb(k1, i) + _log_comb(n - k1, k2 - i) - _log_comb(n, k2)
        total += math.exp(log_p) * i / (k1 + k2 - i)
    return total


def expected_hamming(k1: int, k2: int, n: int) -> float:
    """E[|A xor B|] / n for independent uniform random A, B keeping k1 and k2 of n:
    ``(k1 + k2 - 2·k1·k2/n) / n`` (exact, from ``E|A ∧ B| = k1·k2/n``)."""
    _check_counts(k1, k2, n, "expected_hamming")
    return (k1 + k2 - 2 * k1 * k2 / n) / n if n else 0.0


def pairs_mean(matrix: np.ndarray) -> float:
    """The mean of a square matrix's off-diagonal entries (every pair i != j once per
    order); NaN for a 1 × 1 matrix."""
    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    if n < 2:
        return float("nan")
    return float((m.sum() - np.trace(m)) / (n * (n - 1)))


# --------------------------------------------------------------------------------------
# helpers


def _pair_metrics(a_flat, b_flat):
    """Per leaf ``(L, N, M)`` and global ``(N, M)`` Jaccard and Hamming of every pair."""
    inter, union, differ = [], [], []
    for a, b in zip(a_flat, b_flat, strict=True):
        both = jax.lax.map(lambda row, b=b: jax.vmap(partial(_count_both, row))(b), a)
        ka = jnp.sum(a, axis=1, dtype=jnp.int32)[:, None]
        kb = jnp.sum(b, axis=1, dtype=jnp.int32)[None, :]
        inter.append(both)
        union.append(ka + kb - both)
        differ.append(ka + kb - 2 * both)
    inter, union, differ = (jnp.stack(x) for x in (inter, union, differ))
    sizes = jnp.array([a.shape[1] for a in a_flat], jnp.float32)[:, None, None]

    def jaccard(i, u):
        return jnp.where(u > 0, i / jnp.maximum(u, 1).astype(jnp.float32), 1.0)

    return {
        "jaccard": jaccard(inter.sum(0), union.sum(0)),
        "hamming": differ.sum(0) / jnp.maximum(sizes.sum(), 1.0),
        "layer_jaccard": jaccard(inter, union),
        "layer_hamming": differ / jnp.maximum(sizes, 1.0),
    }


def _count_both(x, y):
    return jnp.sum(x & y, dtype=jnp.int32)


_overlap_program = jax.jit(_pair_metrics)


def _random_like(key, leaves):
    """A uniform random mask with ``leaves``' per-leaf alive counts (exact)."""
    dense = tuple(jnp.ones(x.shape, bool) for x in leaves)
    return RANDOM_PRUNE(dense, dense, leaf_counts(leaves), key=key)


@partial(jax.jit, static_argnames="draws")
def _baseline_program(key, leaves, draws):
    keys = jax.random.split(key, (draws, leaves[0].shape[0]))
    flat = lambda t: tuple(x.reshape(x.shape[0], -1) for x in t)  # noqa: E731

    def one_draw(k):
        out = _pair_metrics(flat(leaves), flat(jax.vmap(_random_like)(k, leaves)))
        return jax.tree.map(lambda m: 0.5 * (m + jnp.swapaxes(m, -1, -2)), out)

    per_draw = jax.lax.map(one_draw, keys)
    return (
        jax.tree.map(lambda x: jnp.mean(x, axis=0), per_draw),
        jax.tree.map(lambda x: jnp.std(x, axis=0), per_draw),
    )


def _as_result(paths, flat, out) -> dict[str, Any]:
    alive = [np.asarray(jnp.sum(a, axis=1, dtype=jnp.int32)) for a in flat]
    return {
        "jaccard": np.asarray(out["jaccard"]),
        "hamming": np.asarray(out["hamming"]),
        "alive": np.sum(alive, axis=0),
        "total": int(sum(a.shape[1] for a in flat)),
        "layers": {
            path: {
                "jaccard": np.asarray(out["layer_jaccard"][i]),
                "hamming": np.asarray(out["layer_hamming"][i]),
                "alive": alive[i],
                "total": int(flat[i].shape[1]),
            }
            for i, path in enumerate(paths)
        },
    }


def _check_like_first(first, leaves, i: int, what: str) -> None:
    first_paths, paths = [p for p, _ in first], [p for p, _ in leaves]
    if first_paths != paths:
        differ = next(
            (a, b) for a, b in zip([*first_paths, None], [*paths, None], strict=False) if a != b
        )
        raise ValueError(
            f"{what}: mask {i}'s leaves differ from mask 0's at leaf "
            f"{differ[1] if differ[0] is None else differ[0]!r} (mask 0: {differ[0]!r}, "
            f"mask {i}: {differ[1]!r})"
        )
    for (path, a), (_, b) in zip(first, leaves, strict=True):
        if (a is None) != (b is None):
            raise ValueError(
                f"{what}: leaf {path!r} is prunable in mask {'0' if b is None else i} and "
                f"None in mask {i if b is None else '0'}"
            )
        if a is not None and jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"{what}: leaf {path!r} has shape {jnp.shape(b)} in mask {i} and "
                f"{jnp.shape(a)} in mask 0"
            )


def _check_bool(path: str, leaf: Any, what: str) -> None:
    dtype = getattr(leaf, "dtype", None)
    if dtype != jnp.bool_:
        got = f"dtype {dtype}" if dtype is not None else type(leaf).__name__
        raise TypeError(f"{what}: mask leaf {path!r}: expected a bool array, got {got}")


def _check_counts(k1, k2, n, what: str) -> None:
    for name, v in (("k1", k1), ("k2", k2), ("n", n)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"{what}: {name} must be an int, got {v!r}")
    if not (0 <= k1 <= n and 0 <= k2 <= n):
        raise ValueError(f"{what}: counts must satisfy 0 <= k1, k2 <= n, got {k1}, {k2}, {n}")


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
