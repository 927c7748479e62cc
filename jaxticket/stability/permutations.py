"""Permutation specs: which axes of which leaves each hidden layer's unit permutation moves.

A *spec* is a mapping ``permutation name -> list of (leaf path, axis)``. Every entry names
a leaf of ``params`` (or, for BatchNorm running statistics, of ``model_state``; paths are
looked up in ``params`` first) and the axis that the permutation reorders. The size ``n``
of a permutation is the smallest length among its entries' axes; an axis of length
``m * n`` is read as a channels-last flatten, i.e. viewed as ``(m, n)`` in row-major order,
and the permutation reorders the ``n`` (channel) index inside it. That is the layout of a
dense layer after ``x.reshape(batch, -1)`` of an ``(..., channels)`` feature map.

For a hidden layer ``L`` followed by ``M`` the derived spec lists ``L/kernel`` on its last
(output) axis, ``L/bias``, the BatchNorm ``scale``/``bias`` and running ``mean``/``var``
that follow ``L``, and ``M/kernel`` on its input axis (second to last). Inputs and
logits are never permuted. A permutation ``perm`` (an index array) maps B to
``B'[..., i, ...] = B[..., perm[i], ...]`` on every listed axis.

Example of a hand-written spec for a two-hidden-layer MLP::

    {"h1": [("dense1/kernel", 1), ("dense1/bias", 0), ("dense2/kernel", 0)],
     "h2": [("dense2/kernel", 1), ("dense2/bias", 0), ("output/kernel", 0)]}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket._paths import leaves_with_paths, map_with_path_str

Spec = dict[str, tuple[tuple[str, int], ...]]
Perms = dict[str, np.ndarray]

_LAYER = re.compile(r"^(conv|dense|bn)(\d+)$")
_LAYER_LEAVES = {"conv": {"kernel", "bias"}, "dense": {"kernel", "bias"}, "bn": {"scale", "bias"}}
_BN_STATS = ("mean", "var")
_RESIDUAL_WORDS = ("block", "shortcut", "residual", "downsample")
_ATTENTION_WORDS = ("query", "key", "value", "attn", "attention", "head")


def permutation_spec(params: Any, model_state: Any = None) -> Spec:
    """Derives the spec of a zoo-style sequential network from its parameter names.

    Recognized layouts: top-level layers ``conv1..convK`` (kernels ``(*window, in, out)``,
    run in index order, each optionally followed by ``bn{i}``), then ``dense1..denseJ``,
    then ``output``; the conv features reach ``dense1`` (or ``output``) through a
    channels-last flatten or a global pool. This covers mlp, lenet_300_100, cnn1d,
    conv2/4/6 and vgg16. Names are trusted to mean this order; the shapes are checked.

    Args:
      params: the model's params (one network, not stacked over seeds).
      model_state: the model's state; required when there is BatchNorm (its running
        statistics are permuted with the channels).

    Returns:
      ``{layer name: ((leaf path, axis), ...)}`` for every hidden layer.

    Raises:
      ValueError: a residual block, attention, an unknown leaf or state entry, a BatchNorm
        without its state, or shapes that do not chain (the message names the leaf).
    """
    paths = dict(leaves_with_paths(params))
    state_paths = dict(leaves_with_paths(model_state)) if model_state is not None else {}
    layers = _layers(paths)
    bns = {i for kind, i in layers if kind == "bn"}
    chain = sorted((i, kind) for kind, i in layers if kind == "conv")
    chain = [(kind, i) for i, kind in chain] + sorted((k, i) for k, i in layers if k == "dense")
    _check_contiguous(chain)
    for i in sorted(bns):
        if ("conv", i) not in layers and ("dense", i) not in layers:
            raise ValueError(f"permutation_spec: 'bn{i}' follows no layer conv{i} or dense{i}")
    _check_state(state_paths, bns, model_state is None)
    if "output/kernel" not in paths:
        raise ValueError("permutation_spec: no 'output/kernel' leaf (the readout layer)")
    names = [f"{kind}{i}" for kind, i in chain] + ["output"]
    for layer in names:
        _check_kernel(layer, paths)
    for i in sorted(bns):
        for leaf in ("scale", "bias"):
            if f"bn{i}/{leaf}" not in paths:
                raise ValueError(f"permutation_spec: BatchNorm 'bn{i}' has no {leaf!r} leaf")
    spec: Spec = {}
    for layer, nxt in zip(names[:-1], names[1:], strict=True):
        kernel = paths[f"{layer}/kernel"]
        n = int(np.shape(kernel)[-1])
        entries = [(f"{layer}/kernel", len(np.shape(kernel)) - 1)]
        entries += [(f"{layer}/bias", 0)] if f"{layer}/bias" in paths else []
        i = int(_LAYER.match(layer).group(2))
        if i in bns and _bn_owner(layers, i) == layer:
            entries += [(f"bn{i}/scale", 0), (f"bn{i}/bias", 0)]
            entries += [(f"bn{i}/{s}", 0) for s in _BN_STATS]
        nxt_kernel = np.shape(paths[f"{nxt}/kernel"])
        n_in = int(nxt_kernel[-2])
        flatten = layer.startswith("conv") and not nxt.startswith("conv")
        if (n_in % n if flatten else n_in != n) or n_in < n:
            raise ValueError(
                f"permutation_spec: '{nxt}/kernel' has {n_in} inputs but '{layer}' gives {n} "
                f"{'channels (flattened, so a multiple)' if flatten else 'units'}"
            )
        entries.append((f"{nxt}/kernel", len(nxt_kernel) - 2))
        for path, _ in entries[1:-1]:
            shape = np.shape(paths.get(path, state_paths.get(path)))
            if shape != (n,):
                raise ValueError(
                    f"permutation_spec: {path!r} has shape {shape}, expected ({n},) for the "
                    f"{n} units of {layer!r} (stacked seeds? pass one network)"
                )
        spec[layer] = tuple(entries)
    return spec


def _check_kernel(layer: str, paths: Mapping[str, Any]) -> None:
    if f"{layer}/kernel" not in paths:
        raise ValueError(f"permutation_spec: layer {layer!r} has no 'kernel' leaf")
    ndim = len(np.shape(paths[f"{layer}/kernel"]))
    conv = layer.startswith("conv")
    if (conv and ndim < 3) or (not conv and ndim != 2):
        want = "(*window, in, out)" if conv else "(in, out)"
        raise ValueError(
            f"permutation_spec: '{layer}/kernel' has shape {np.shape(paths[f'{layer}/kernel'])}"
            f", expected {want} (stacked seeds? pass one network)"
        )


def _bn_owner(layers: set[tuple[str, int]], i: int) -> str:
    # bn{i} normalizes conv{i} when there is one, else dense{i}.
    return f"conv{i}" if ("conv", i) in layers else f"dense{i}"


def check_spec(spec: Mapping[str, Sequence[tuple[str, int]]], params: Any, model_state=None):
    """Validates a spec against the trees and returns ``(spec, sizes)``.

    Args:
      spec: ``{name: [(leaf path, axis), ...]}``.
      params: the params the spec acts on.
      model_state: the state, or None (then every entry must be a params leaf).

    Returns:
      The spec as ``{name: ((path, axis), ...)}`` and ``{name: size}``.

    Raises:
      ValueError: a path in neither tree, an axis out of range, an axis claimed by two
        permutations, or an axis length that is not a multiple of the permutation size.
      TypeError: the spec is not a mapping of lists of (str, int) pairs.
    """
    if not isinstance(spec, Mapping) or not spec:
        raise TypeError(
            f"spec must be a non-empty mapping name -> [(leaf path, axis)], got {spec!r}"
        )
    shapes = {p: np.shape(x) for p, x in leaves_with_paths(params)}
    if model_state is not None:
        for p, x in leaves_with_paths(model_state):
            shapes.setdefault(p, np.shape(x))
    out: Spec = {}
    sizes: dict[str, int] = {}
    claimed: dict[tuple[str, int], str] = {}
    for name, entries in spec.items():
        fixed = []
        for entry in entries:
            if not (
                isinstance(entry, tuple | list)
                and len(entry) == 2
                and isinstance(entry[0], str)
                and isinstance(entry[1], int | np.integer)
            ):
                raise TypeError(f"spec[{name!r}]: entries must be (leaf path, axis), got {entry!r}")
            path, axis = entry[0], int(entry[1])
            if path not in shapes:
                where = (
                    "params or model_state"
                    if model_state is not None
                    else "params (pass model_state=?)"
                )
                raise ValueError(f"spec[{name!r}]: leaf {path!r} is not in {where}")
            ndim = len(shapes[path])
            if not -ndim <= axis < ndim:
                raise ValueError(
                    f"spec[{name!r}]: axis {axis} out of range for {path!r} {shapes[path]}"
                )
            axis %= ndim
            if (path, axis) in claimed:
                raise ValueError(
                    f"spec: axis {axis} of {path!r} is in both {claimed[path, axis]!r} and {name!r}"
                )
            claimed[path, axis] = name
            fixed.append((path, axis))
        if not fixed:
            raise ValueError(f"spec[{name!r}] lists no leaves")
        n = min(shapes[p][a] for p, a in fixed)
        for p, a in fixed:
            if shapes[p][a] % n:
                raise ValueError(
                    f"spec[{name!r}]: axis {a} of {p!r} has length {shapes[p][a]}, "
                    f"not a multiple of {n}"
                )
        out[str(name)] = tuple(fixed)
        sizes[str(name)] = int(n)
    return out, sizes


def check_perms(perms: Mapping[str, Any], sizes: Mapping[str, int]) -> Perms:
    """Each permutation as an int array that is a permutation of ``range(size)``."""
    if not isinstance(perms, Mapping) or set(perms) != set(sizes):
        got = sorted(perms) if isinstance(perms, Mapping) else type(perms).__name__
        raise ValueError(f"perms must have exactly the spec's names {sorted(sizes)}, got {got}")
    out = {}
    for name, n in sizes.items():
        p = np.asarray(perms[name])
        if (
            p.shape != (n,)
            or not np.issubdtype(p.dtype, np.integer)
            or not np.array_equal(np.sort(p), np.arange(n))
        ):
            raise ValueError(f"perms[{name!r}] must be a permutation of range({n}), got {p!r}")
        out[name] = p.astype(np.int64)
    return out


def permute_axis(x: np.ndarray, perm: np.ndarray, axis: int) -> np.ndarray:
    """Reorders ``x`` along ``axis`` by ``perm``, reading an axis of ``m * n`` as ``(m, n)``."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    n = len(perm)
    y = x.reshape(x.shape[0] // n, n, *x.shape[1:])[:, perm]
    return np.moveaxis(y.reshape(x.shape), 0, axis)


def unit_rows(x: np.ndarray, axis: int, n: int) -> np.ndarray:
    """``x`` as an ``(n, -1)`` matrix whose row ``i`` holds everything of unit ``i``."""
    x = np.moveaxis(np.asarray(x), axis, 0)
    x = x.reshape(x.shape[0] // n, n, -1)
    return np.swapaxes(x, 0, 1).reshape(n, -1)


def leaf_moves(spec: Spec) -> dict[str, list[tuple[str, int]]]:
    """``{leaf path: [(permutation name, axis), ...]}``: the inverse view of a spec."""
    moves: dict[str, list[tuple[str, int]]] = {}
    for name, entries in spec.items():
        for path, axis in entries:
            moves.setdefault(path, []).append((name, axis))
    return moves


def apply_permutation(spec, perms, params, model_state=None):
    """Permutes the hidden units of one network; its function is unchanged.

    Args:
      spec: from :func:`permutation_spec` or hand-written (see the module docstring).
      perms: ``{name: index array}``, e.g. from :func:`weight_matching`.
      params: the params.
      model_state: the state (BatchNorm statistics), or None.

    Returns:
      ``(params, model_state)`` with every listed axis reordered; other leaves unchanged.
      Permuted leaves keep their array type (numpy or JAX) and dtype.

    Raises:
      ValueError / TypeError: as in :func:`check_spec` and for perms that are not
        permutations of the right sizes.
    """
    spec, sizes = check_spec(spec, params, model_state)
    perms = check_perms(perms, sizes)
    moves = leaf_moves(spec)

    def move(path, leaf):
        if leaf is None or path not in moves:
            return leaf
        out = np.asarray(leaf)
        for name, axis in moves[path]:
            out = permute_axis(out, perms[name], axis)
        return jnp.asarray(out) if isinstance(leaf, jax.Array) else out

    params_map = {p for p, _ in leaves_with_paths(params)}
    new_params = map_with_path_str(move, params)
    if model_state is None:
        return new_params, None
    new_state = map_with_path_str(lambda p, x: x if p in params_map else move(p, x), model_state)
    return new_params, new_state


def _layers(paths: Mapping[str, Any]) -> set[tuple[str, int]]:
    layers = set()
    for path in paths:
        low = path.lower()
        if any(w in low for w in _RESIDUAL_WORDS):
            raise ValueError(
                f"permutation_spec: leaf {path!r} is in a residual block; its addition "
                "(y + shortcut) ties channels across layers, so per-layer permutations are not "
                "consistent; pass a hand-written spec with shared permutations"
            )
        if any(w in low.split("/")[0] for w in _ATTENTION_WORDS):
            raise ValueError(
                f"permutation_spec: leaf {path!r} belongs to attention, whose heads and residual "
                "stream tie units across layers; pass a hand-written spec"
            )
        parts = path.split("/")
        match = _LAYER.match(parts[0])
        if parts[0] == "output" and len(parts) == 2 and parts[1] in ("kernel", "bias"):
            continue
        if not match or len(parts) != 2 or parts[1] not in _LAYER_LEAVES[match.group(1)]:
            raise ValueError(
                f"permutation_spec: unknown layout at leaf {path!r} (expected conv{{i}}/dense{{i}}"
                "/{kernel,bias}, bn{i}/{scale,bias}, output/{kernel,bias}); pass a hand-written "
                "spec"
            )
        layers.add((match.group(1), int(match.group(2))))
    return layers


def _check_contiguous(chain: list[tuple[str, int]]) -> None:
    for kind in ("conv", "dense"):
        idx = [i for k, i in chain if k == kind]
        if idx != list(range(1, len(idx) + 1)):
            raise ValueError(
                f"permutation_spec: {kind} layers are numbered {idx}, expected 1..{len(idx)} "
                "in order; pass a hand-written spec"
            )


def _check_state(state_paths: Mapping[str, Any], bns: set[int], missing: bool) -> None:
    if bns and missing:
        raise ValueError(
            f"permutation_spec: BatchNorm layer 'bn{min(bns)}' keeps running statistics in "
            "model_state; pass model_state= so they are permuted too"
        )
    want = {f"bn{i}/{s}" for i in bns for s in _BN_STATS}
    for path in state_paths:
        if path not in want:
            raise ValueError(
                f"permutation_spec: unknown model_state leaf {path!r} (only BatchNorm "
                "bn{i}/mean and bn{i}/var are understood); pass a hand-written spec"
            )
    for path in sorted(want - set(state_paths)):
        raise ValueError(f"permutation_spec: model_state has no {path!r}")
