"""Permutation weight matching (Ainsworth et al., Git Re-Basin, ICLR 2023).

For networks A and B, find per-layer unit permutations ``P_l`` maximizing
``Σ_l ⟨W_l^A, P_l W_l^B P_{l-1}^T⟩`` (biases and normalization parameters included) by
coordinate descent: one permutation at a time, the others fixed, a linear assignment
(``scipy.optimize.linear_sum_assignment``) on the similarity of A's and B's units, their
incoming and outgoing weights together; layers are swept in a random order drawn from
``key`` until a sweep changes nothing. The descent runs from two starts, the identity and
a greedy input-to-output pass, and keeps the better result (from the identity alone it
can stall short of the exact answer on a permuted copy when a layer has few inputs, e.g.
a first convolution). Host code on numpy arrays (float64 similarities).
The specs and their application live in :mod:`jaxticket.stability.permutations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxticket._paths import leaves_with_paths
from jaxticket.stability.permutations import (
    Perms,
    apply_permutation,
    check_spec,
    leaf_moves,
    permute_axis,
    unit_rows,
)


def weight_matching(spec, params_a, params_b, *, key: jax.Array, max_iter: int = 100) -> Perms:
    """Permutations of B's hidden units that align B to A.

    Args:
      spec: a permutation spec (:func:`permutation_spec` or hand-written); entries that are
        not params leaves (BatchNorm running statistics) do not enter the objective.
      params_a: the reference network's params.
      params_b: the params to align, of the same structure and shapes.
      key: a JAX PRNG key for the order in which each sweep visits the permutations; the
        result is a deterministic function of the inputs and the key.
      max_iter: the most sweeps over all permutations (each sweep solves one assignment
        per permutation); the descent stops earlier when a sweep improves nothing.

    Returns:
      ``{name: int64 index array}``; ``apply_permutation(spec, perms, params_b, ...)``
      gives B in A's unit order (same function as B).

    Raises:
      ValueError: different structures or shapes of A and B, a bad spec, a permutation
        with no params leaf, or ``max_iter < 1``.
      TypeError: a bad spec or ``max_iter`` that is not an int.
    """
    if not isinstance(max_iter, int | np.integer) or isinstance(max_iter, bool):
        raise TypeError(f"weight_matching: max_iter must be an int, got {max_iter!r}")
    if max_iter < 1:
        raise ValueError(f"weight_matching: max_iter must be at least 1, got {max_iter}")
    a, b = _check_pair(params_a, params_b)
    spec, sizes = check_spec(_params_entries(spec, a), params_a)
    moves = leaf_moves(spec)
    # The sweep orders come from a numpy generator seeded by the key's bits: no compiled
    # JAX program per call, and the same key gives the same orders.
    seed = _key_bits(key)
    starts = [{name: np.arange(n) for name, n in sizes.items()}, _greedy_start(sizes, a, b, moves)]
    results = [
        _descend(start, sizes, a, b, moves, np.random.default_rng(seed), int(max_iter))
        for start in starts
    ]
    values = [_value(p, a, b, moves) for p in results]
    return results[int(np.argmax(values))]


def _descend(perms, sizes, a, b, moves, rng, max_iter) -> Perms:
    # Coordinate descent: up to max_iter sweeps, permutations visited in a random order; a
    # permutation changes only when its assignment strictly improves, so it terminates.
    perms = dict(perms)
    names = list(sizes)
    for _ in range(max_iter):
        order = rng.permutation(len(names))
        changed = False
        for idx in order:
            name = names[int(idx)]
            sim = _similarity(name, sizes[name], a, b, moves, perms)
            _, best = linear_sum_assignment(sim, maximize=True)
            rows = np.arange(sizes[name])
            old, new = sim[rows, perms[name]].sum(), sim[rows, best].sum()
            if new > old + 1e-12 * max(1.0, abs(old)):
                perms[name] = best.astype(np.int64)
                changed = True
        if not changed:
            break
    return perms


def _greedy_start(sizes, a, b, moves) -> Perms:
    # A second starting point: permutations decided in spec order (input to output), each
    # from the leaves whose other permuted axes are already decided (incoming weights,
    # biases, normalization, a readout). On a permuted copy of A it is already exact, where
    # descent from the identity can stall in a local optimum.
    decided: dict[str, np.ndarray] = {}
    for name, n in sizes.items():
        usable = {
            p: m
            for p, m in moves.items()
            if any(o == name for o, _ in m) and all(o == name or o in decided for o, _ in m)
        }
        if not usable:
            usable = moves
        full = {**{k: np.arange(v) for k, v in sizes.items()}, **decided}
        sim = _similarity(name, n, a, b, usable, full)
        decided[name] = linear_sum_assignment(sim, maximize=True)[1].astype(np.int64)
    return decided


def _value(perms, a, b, moves) -> float:
    # The permutation-dependent part of the objective: Σ over moved leaves of ⟨A, P(B)⟩.
    total = 0.0
    for path, path_moves in moves.items():
        wb = b[path]
        for name, axis in path_moves:
            wb = permute_axis(wb, perms[name], axis)
        total += float(np.vdot(a[path], wb))
    return total


def matching_objective(spec, perms, params_a, params_b) -> float:
    """``Σ ⟨A, permuted B⟩`` over all params leaves (float64): what matching maximizes.

    Args:
      spec: the permutation spec.
      perms: ``{name: index array}``.
      params_a: the reference params.
      params_b: the params permuted by ``perms``.

    Returns:
      The inner product of A and the permuted B, summed over every params leaf.
    """
    a, _ = _check_pair(params_a, params_b)
    permuted, _ = apply_permutation(spec, perms, params_b)
    b = dict(leaves_with_paths(permuted))
    return float(sum(np.vdot(a[p], np.asarray(b[p], np.float64)) for p in a))


def align_seeds(spec, params, model_state=None, *, key: jax.Array, max_iter: int = 100):
    """Aligns every seed of a stacked network to seed 0 by weight matching.

    Args:
      spec: the spec of one (unstacked) network.
      params: params stacked over N seeds on a leading axis.
      model_state: the state stacked likewise, or None.
      key: the key of every seed's matching (it only orders the sweeps).
      max_iter: as in :func:`weight_matching`.

    Returns:
      ``(params, model_state, perms)``: the stacked trees with seed ``j`` permuted into
      seed 0's unit order (seed 0 unchanged), and the list of N permutation dicts (seed
      0's is the identity).

    Raises:
      ValueError: leaves without a common leading seed axis, or as in
        :func:`weight_matching`.
    """
    leaves = jax.tree.leaves(params) + jax.tree.leaves(model_state)
    counts = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if len(counts) != 1 or None in counts:
        raise ValueError(f"align_seeds: leaves must share a leading seed axis, got sizes {counts}")
    n_seeds = counts.pop()

    def seed(tree, j):
        return None if tree is None else jax.tree.map(lambda x: np.asarray(x)[j], tree)

    ref = seed(params, 0)
    out_p, out_s, all_perms = [ref], [seed(model_state, 0)], []
    _, sizes = check_spec(spec, ref, seed(model_state, 0))
    all_perms.append({name: np.arange(n) for name, n in sizes.items()})
    for j in range(1, n_seeds):
        pj, sj = seed(params, j), seed(model_state, j)
        perms = weight_matching(spec, ref, pj, key=key, max_iter=max_iter)
        pj, sj = apply_permutation(spec, perms, pj, sj)
        out_p.append(pj)
        out_s.append(sj)
        all_perms.append(perms)
    stack = lambda trees: jax.tree.map(lambda *xs: np.stack(xs), *trees)  # noqa: E731
    return stack(out_p), None if model_state is None else stack(out_s), all_perms


def _similarity(name, n, a, b, moves, perms) -> np.ndarray:
    # sim[i, j] = Σ over the leaves this permutation touches of ⟨A's unit i, B's unit j⟩,
    # B's other axes already in A's order under the current other permutations.
    sim = np.zeros((n, n))
    for path, path_moves in moves.items():
        own = [axis for other, axis in path_moves if other == name]
        if not own:
            continue
        wb = b[path]
        for other, axis in path_moves:
            if other != name:
                wb = permute_axis(wb, perms[other], axis)
        sim += unit_rows(a[path], own[0], n) @ unit_rows(wb, own[0], n).T
    return sim


def _params_entries(spec: Any, a: dict) -> Any:
    # Running statistics (model_state leaves) do not enter the objective: keep the entries
    # on params leaves; apply_permutation checks the others against the state.
    if not isinstance(spec, Mapping):
        return spec
    out = {}
    for name, entries in spec.items():
        kept = [e for e in entries if not (isinstance(e, tuple | list) and e and e[0] not in a)]
        if entries and not kept:
            raise ValueError(f"weight_matching: permutation {name!r} touches no params leaf")
        out[name] = kept
    return out


def _key_bits(key: Any) -> list[int]:
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)).ravel().tolist()
    bits = np.asarray(key)
    if bits.dtype != np.uint32 or bits.ndim != 1:
        raise TypeError(
            f"weight_matching: key must be a JAX PRNG key (jax.random.key(0)), got {key!r}"
        )
    return bits.tolist()


def _check_pair(params_a: Any, params_b: Any) -> tuple[dict, dict]:
    a = {p: np.asarray(x, np.float64) for p, x in leaves_with_paths(params_a)}
    b = {p: np.asarray(x, np.float64) for p, x in leaves_with_paths(params_b)}
    if set(a) != set(b):
        raise ValueError(
            f"weight matching: params differ in structure; only in A {sorted(set(a) - set(b))}, "
            f"only in B {sorted(set(b) - set(a))}"
        )
    for p in a:
        if a[p].shape != b[p].shape:
            raise ValueError(
                f"weight matching: leaf {p!r} has shape {a[p].shape} in A, {b[p].shape} in B"
            )
    return a, b
