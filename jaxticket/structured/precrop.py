"""PreCropping (*Structured Pruning is All You Need for Pruning CNNs at Initialization*).

At initialization, what a pruning criterion decides is mostly how dense each layer is, not
which weights survive. PreCropping keeps those layerwise densities but spends them on whole
channels: each prunable group keeps as many units as make its layer's kept parameter count
match the density the criterion gave, and the result is a smaller *dense* network, built
at initialization and trained from scratch.

**The channel-count rule** (``channel_counts``). Groups are visited in the order given
(``dependency_groups`` lists them through the network). For a group of ``size`` units with
producer kernels ``p`` of ``n_p`` entries and density ``d_p`` (1 for a kernel the criterion
did not prune), each unit owns ``n_p / size`` entries of ``p`` at full width; the input axes
of ``p`` that earlier groups index shrink by the fraction of units those groups keep
(``c_in' / c_in``). The group keeps

    c' = round( Σ_p d_p · n_p  /  Σ_p (n_p / size) · Π (kept fraction of p's input groups) )

units, clipped to ``[1, size]`` — never zero, and never more than it has. For a chain of
convolutions this is ``c_in' · c_out' · k = d · c_in · c_out · k`` solved layer by layer with
the previous layer's kept inputs. Groups that are not prunable (the logits) keep every
unit; their layer's density is then not met (only its inputs shrink). An input group
visited later (a residual cycle) counts at full width. Biases and BatchNorm parameters do
not enter the rule.

**Initialization** (``precrop``): the compact network's weights are the original
initialization sliced to the kept units (``compact``), then, by default, rescaled to the
narrower layer's own fan-in — ``w · sqrt(fan_in / fan_in')`` for every kernel and its bias —
which is what drawing the smaller network afresh with a fan-in-scaled scheme (Kaiming,
LeCun, PyTorch's default) gives in distribution; ``rescale="fan_avg"`` matches Glorot's
``sqrt(2 / (fan_in + fan_out))`` instead, ``rescale=None`` keeps the sliced values.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import jax
import numpy as np

from jaxticket.masks import sparsity_by_leaf
from jaxticket.models.base import Model
from jaxticket.structured.compact import compact
from jaxticket.structured.groups import Group, member_leaf

RESCALES = ("fan_in", "fan_avg", None)


def densities_of(mask: Any) -> dict[str, float]:
    """Per prunable leaf of ``mask``, keyed by path (``"conv1/kernel"``): its density."""
    return {path: 1.0 - float(s) for path, s in sparsity_by_leaf(mask).items()}


def channel_counts(
    groups: Iterable[Group], densities: Mapping[str, float], params: Any
) -> dict[str, int]:
    """Units each group keeps so its layers' kept parameters follow ``densities``.

    See the module docstring for the rule.

    Args:
      groups: dependency groups, in network order.
      densities: leaf path (``"conv1/kernel"``) -> density in ``[0, 1]``; a producer kernel
        not listed counts as dense. ``densities_of(mask)`` gives them for an at-init mask.
      params: the model's params (for the leaf shapes).

    Returns:
      Group name -> kept units (``size`` for groups that are not prunable).

    Raises:
      ValueError: a density outside ``[0, 1]``, or one for a path no producer has.
    """
    groups = tuple(groups)
    producers = {"/".join(m.path) for g in groups for m in g.members if m.role == "producer"}
    for path, d in densities.items():
        if not isinstance(d, int | float | np.floating | np.integer) or not 0.0 <= d <= 1.0:
            raise ValueError(f"channel_counts: density of {path!r} must be in [0, 1], got {d!r}")
    unknown = sorted(set(densities) - producers)
    if unknown:
        raise ValueError(
            f"channel_counts: density given for {unknown[0]!r}, which is no group's producer "
            f"kernel; producers: {', '.join(sorted(producers))}"
        )
    consumers: dict[tuple, list[Group]] = {}
    for g in groups:
        for m in g.members:
            if m.role == "consumer" and m.collection == "params":
                consumers.setdefault(m.path, []).append(g)
    counts: dict[str, int] = {}
    for g in groups:
        if not g.prunable:
            counts[g.name] = g.size
            continue
        target = full = 0.0
        for m in g.members:
            if m.role != "producer" or m.collection != "params":
                continue
            n = float(np.prod(np.shape(member_leaf(m, params, {}))))
            shrink = math.prod(
                counts[c.name] / c.size for c in consumers.get(m.path, ()) if c.name in counts
            )
            target += float(densities.get("/".join(m.path), 1.0)) * n
            full += n / g.size * shrink
        counts[g.name] = int(min(max(math.floor(target / full + 0.5), 1), g.size))
    return counts


def precrop_keep(groups: Iterable[Group], counts: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The keep ``{group: bool[size]}`` keeping each prunable group's first ``counts[name]`` units.

    At initialization the units of a layer are exchangeable (drawn i.i.d.), so which ones
    are kept does not matter; the first ones make the choice reproducible.

    Raises:
      ValueError: a count outside ``[1, size]`` or a group without a count.
    """
    keep = {}
    for g in groups:
        if not g.prunable:
            continue
        if g.name not in counts:
            raise ValueError(f"precrop_keep: no channel count for group {g.name!r}")
        c = counts[g.name]
        if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 1 <= c <= g.size:
            raise ValueError(
                f"precrop_keep: count of group {g.name!r} must be an int in [1, {g.size}], "
                f"got {c!r}"
            )
        keep[g.name] = np.arange(g.size) < c
    return keep


def precrop(
    model: Model,
    params: Any,
    state: Any,
    groups: Iterable[Group],
    densities: Mapping[str, float],
    *,
    rescale: str | None = "fan_in",
) -> tuple[Any, Any, Model]:
    """The PreCropped network at initialization: ``(params, state, model)``, all dense.

    Args:
      model: the full model (built by ``from_nnx``, as every zoo model is).
      params, state: its initialization.
      groups: its dependency groups (``dependency_groups(model, params, state)``).
      densities: leaf path -> density (``densities_of(at_init_mask)``).
      rescale: ``"fan_in"`` (default), ``"fan_avg"`` or None (see the module docstring).

    Returns:
      The compact params and state and the compact ``Model`` (its ``init`` is the full
      model's init sliced, without the rescaling).
    """
    if rescale not in RESCALES:
        raise ValueError(f"precrop: rescale must be one of {RESCALES}, got {rescale!r}")
    groups = tuple(groups)
    keep = precrop_keep(groups, channel_counts(groups, densities, params))
    small_params, small_state, small = compact(model, params, state, keep, groups)
    if rescale is not None:
        small_params = rescaled(params, small_params, rescale)
    return small_params, small_state, small


def rescaled(full: Any, small: Any, mode: str = "fan_in") -> Any:
    """``small``'s kernels (and their biases) rescaled from ``full``'s fan to their own.

    Every leaf named ``kernel`` with ``ndim >= 2`` (layout ``(*receptive, in, out)``) is
    multiplied by ``sqrt(fan / fan')`` — ``fan`` its fan-in (``"fan_in"``) or the mean of
    its fan-in and fan-out (``"fan_avg"``) in ``full``, ``fan'`` in ``small`` — and so is the
    ``bias`` next to it.
    """
    if mode not in ("fan_in", "fan_avg"):
        raise ValueError(f"rescaled: mode must be 'fan_in' or 'fan_avg', got {mode!r}")

    def fan(shape):
        fan_in = math.prod(shape[:-1])
        return fan_in if mode == "fan_in" else (fan_in + math.prod(shape[:-2]) * shape[-1]) / 2

    def walk(f, s):
        if not isinstance(s, Mapping):
            return s
        out = {k: walk(f[k], v) for k, v in s.items()}
        kernel = s.get("kernel")
        if kernel is not None and not isinstance(kernel, Mapping) and np.ndim(kernel) >= 2:
            factor = math.sqrt(fan(np.shape(f["kernel"])) / fan(np.shape(kernel)))
            out["kernel"] = kernel * factor
            if "bias" in s and not isinstance(s["bias"], Mapping):
                out["bias"] = s["bias"] * factor
        return out

    return jax.tree.map(lambda x: x, walk(full, small))
