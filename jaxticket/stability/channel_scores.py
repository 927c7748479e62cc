"""BatchNorm channel scores for early-bird channel masks (network slimming, You et al. 2020).

A kernel's output channel is scored by the |γ| of the BatchNorm after it: the channel's
first weight scores |γ| and the others 0, so its L1 norm (``neurons("l1")``) is exactly |γ|
and a global neuron pruner keeps the channels with the largest scales. Pairs of kernel and
BatchNorm scale come from the zoo's names (:func:`bn_channel_pairs`) or are given by hand
(:func:`check_channel_pairs`).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from jaxticket._paths import leaves_with_paths, map_with_path_str
from jaxticket.pruning import global_, make_pruner, neurons

__all__ = ["BatchNormScores", "bn_channel_pairs", "channel_pruner", "check_channel_pairs"]


def bn_channel_pairs(params) -> dict[str, str]:
    """Kernel path -> BatchNorm scale path by the zoo's names: ``.../bnK/scale`` follows
    ``.../convK/kernel``, ``.../shortcut_bn/scale`` follows ``.../shortcut_conv/kernel``."""
    shapes = {p: jnp.shape(x) for p, x in leaves_with_paths(params)}
    pairs = {}
    for path, shape in shapes.items():
        parts = path.split("/")
        if len(parts) < 2 or parts[-1] != "scale" or "bn" not in parts[-2]:
            continue
        kernel = "/".join([*parts[:-2], parts[-2].replace("bn", "conv"), "kernel"])
        if kernel not in shapes or shapes[kernel][-1:] != shape:
            raise ValueError(
                f"BatchNorm scale {path!r} has no kernel {kernel!r} with {shape} output "
                "channels before it; pass channel_pairs={kernel_path: scale_path}"
            )
        pairs[kernel] = path
    if not pairs:
        raise ValueError("pruning='channels': the params have no BatchNorm scale (*/bn*/scale)")
    return pairs


def check_channel_pairs(params, channel_pairs) -> dict[str, str]:
    """``channel_pairs`` (kernel path -> BatchNorm scale path) after checking each kernel is
    followed by a scale of its output channels."""
    shapes = {p: jnp.shape(x) for p, x in leaves_with_paths(params)}
    for kernel, scale in dict(channel_pairs).items():
        if kernel not in shapes or scale not in shapes or shapes[kernel][-1:] != shapes[scale]:
            raise ValueError(
                f"channel_pairs: {kernel!r} -> {scale!r} is not a kernel followed by a scale "
                f"of its output channels (shapes {shapes.get(kernel)} and {shapes.get(scale)})"
            )
    return dict(channel_pairs)


def channel_pruner(pairs: dict[str, str]):
    """The global pruner of whole channels by their BatchNorm scale."""
    return make_pruner(BatchNormScores(tuple(sorted(pairs.items()))), global_(), neurons("l1"))


@dataclasses.dataclass(frozen=True)
class BatchNormScores:
    """Criterion: the first weight of a kernel's output channel scores |γ| of the BatchNorm
    after it and the others 0, so a channel's L1 norm (``neurons("l1")``) is exactly |γ|.
    Hashable by value (``pairs``: (kernel path, scale path) tuples), so a jitted program
    taking the pruner as a static argument is reused."""

    pairs: tuple[tuple[str, str], ...]

    def __call__(self, params, **_):
        flat = dict(leaves_with_paths(params))
        scale_of = dict(self.pairs)

        def score(path, w):
            if path not in scale_of:
                return jnp.zeros(jnp.shape(w), jnp.float32)
            # |γ| on the channel's first weight, 0 on the rest: the L1 norm is |γ| exactly
            # (spreading |γ| / fan-in over the channel rounds, and can swap close scales).
            gamma = jnp.abs(flat[scale_of[path]]).astype(jnp.float32)
            first = (0,) * (jnp.ndim(w) - 1)
            return jnp.zeros(jnp.shape(w), jnp.float32).at[first].set(gamma)

        return map_with_path_str(score, params, keep_none=False)
