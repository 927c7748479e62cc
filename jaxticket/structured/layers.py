"""Layer tickets (*When Layers Play the Lottery*): remove whole residual blocks.

A residual block ``relu(branch(x) + x)`` whose input and output shapes match computes the
identity once its residual branch is zero, because its input ``x`` is itself the output of
a ReLU (``relu(x) = x``). In the zoo's CIFAR ResNets these are every block but the first of
stages 2 and 3 (which halve the resolution and double the channels, so their shortcut is a
projection or a zero-padding): ResNet-20 has 7 removable blocks of 9 —
``stage1_block{1,2,3}``, ``stage2_block{2,3}``, ``stage3_block{2,3}``.

A block is removed by a mask that is ``False`` on every parameter of its branch (both
convolutions and both BatchNorm scales and shifts): with ``bn2``'s scale and shift at zero the
branch outputs exactly zero in train and eval mode, whatever the running statistics, and
``zero_pruned`` keeps it there during training. ``compact_blocks`` then drops those blocks
and returns the shallower ResNet (``resnet(..., skip_blocks=...)``) that computes the same
function. Blocks are scored by any per-weight score tree reduced over the block
(``block_scores``: magnitude ``|w|``, or an at-init criterion such as SNIP or SynFlow) or by
the scale of the branch's last BatchNorm (``bn_scale_scores``); ``lowest_blocks`` picks the
ones to remove. IMP over blocks lives in ``jaxticket.structured.layer_imp``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.models.base import Model
from jaxticket.models.resnet import resnet

_BRANCH = ("conv1", "bn1", "conv2", "bn2")


def removable_blocks(params: Mapping[str, Any]) -> tuple[str, ...]:
    """The residual blocks of ``params`` that are the identity when their branch is zero.

    A block is a top-level entry with ``conv1``, ``bn1``, ``conv2`` and ``bn2`` (the zoo
    ResNet's ``BasicBlock``); it is removable when it has no projection shortcut and its
    first convolution's input channels equal its second's output channels (so the
    shortcut is the identity: a stride-2 block of the zoo always changes channels).

    Args:
      params: a ResNet's params (``jaxticket.models.get("resnet20", ...)``).

    Returns:
      Block names in network order.

    Raises:
      ValueError: ``params`` has no residual block of that layout.
    """
    if not isinstance(params, Mapping):
        raise TypeError(f"removable_blocks: params must be a dict, got {type(params).__name__}")
    blocks = [
        name
        for name, sub in params.items()
        if isinstance(sub, Mapping) and all(k in sub for k in _BRANCH)
    ]
    if not blocks:
        raise ValueError(
            "removable_blocks: params have no residual block (entries with conv1, bn1, conv2, "
            "bn2 as in the zoo ResNet's stage{s}_block{b})"
        )
    return tuple(
        name
        for name in blocks
        if "shortcut_conv" not in params[name]
        and np.shape(params[name]["conv1"]["kernel"])[-2]
        == np.shape(params[name]["conv2"]["kernel"])[-1]
    )


def block_mask(params: Mapping[str, Any], removed: Iterable[str]) -> dict[str, Any]:
    """The mask that removes the ``removed`` blocks' residual branches.

    Every parameter of every removable block gets a bool leaf (all ``False`` for a removed
    block, all ``True`` otherwise); every other leaf is ``None`` (never pruned), so masks
    with different removed blocks share one structure (and one compiled training program).

    Args:
      params: a ResNet's params.
      removed: names of removable blocks to remove.

    Raises:
      ValueError: a name that is not a removable block (the message lists them).
    """
    blocks = removable_blocks(params)
    removed = _check_removed(removed, blocks)
    return {
        name: (
            jax.tree.map(lambda w, keep=name not in removed: jnp.full(jnp.shape(w), keep), sub)
            if name in blocks
            else jax.tree.map(lambda _: None, sub)
        )
        for name, sub in params.items()
    }


def removed_blocks(mask: Mapping[str, Any]) -> tuple[str, ...]:
    """The blocks a mask removes: blocks whose every mask leaf is all ``False``.

    Raises:
      ValueError: a block whose branch is partly removed (some but not all entries
        ``False``): that is not a layer ticket.
    """
    out = []
    for name, sub in mask.items():
        if not isinstance(sub, Mapping) or not all(k in sub for k in _BRANCH):
            continue
        leaves = [np.asarray(m) for m in jax.tree.leaves(sub)]
        if not leaves:
            continue
        alive = sum(int(m.sum()) for m in leaves)
        total = sum(m.size for m in leaves)
        if alive == 0:
            out.append(name)
        elif alive != total:
            raise ValueError(
                f"removed_blocks: block {name!r} is partly masked ({total - alive} of {total} "
                "entries removed); a layer ticket removes a block's whole branch or none of it"
            )
    return tuple(out)


def block_scores(
    scores: Mapping[str, Any], blocks: Sequence[str], *, reduce: str = "mean"
) -> dict[str, float]:
    """Reduces a per-weight score tree over each block's convolution kernels.

    ``block_scores(jax.tree.map(jnp.abs, params), blocks)`` is the mean weight magnitude of
    each branch (comparable between blocks of different widths); with SNIP's ``|g ⊙ w|``
    and ``reduce="sum"`` it is the first-order estimate of the loss change from removing
    the whole block.

    Args:
      scores: a tree shaped like the params (e.g. ``criteria.snip(loss)(params, batch=b)``).
      blocks: block names (``removable_blocks(params)``).
      reduce: ``"mean"`` or ``"sum"`` over the kernels' entries.
    """
    if reduce not in ("mean", "sum"):
        raise ValueError(f"block_scores: reduce must be 'mean' or 'sum', got {reduce!r}")
    out = {}
    for name in blocks:
        if name not in scores:
            raise ValueError(f"block_scores: scores have no block {name!r}")
        kernels = [np.asarray(scores[name][c]["kernel"], np.float64) for c in ("conv1", "conv2")]
        total = sum(float(k.sum()) for k in kernels)
        count = sum(k.size for k in kernels)
        out[name] = total / count if reduce == "mean" else total
    return out


def bn_scale_scores(params: Mapping[str, Any], blocks: Sequence[str]) -> dict[str, float]:
    """Mean ``|scale|`` of each block's last BatchNorm: how strongly its branch is added."""
    return {
        name: float(np.mean(np.abs(np.asarray(params[name]["bn2"]["scale"])))) for name in blocks
    }


def lowest_blocks(scores: Mapping[str, float], count: int, *, exclude: Iterable[str] = ()) -> tuple:
    """The ``count`` lowest-scoring blocks not in ``exclude`` (ties: network order).

    Raises:
      ValueError: ``count`` is negative or more than the blocks left.
    """
    exclude = set(exclude)
    left = [name for name in scores if name not in exclude]
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= len(left):
        raise ValueError(
            f"lowest_blocks: count must be an int in [0, {len(left)}] (blocks left), got {count!r}"
        )
    order = sorted(range(len(left)), key=lambda i: (scores[left[i]], i))
    return tuple(left[i] for i in sorted(order[:count]))


def compact_blocks(
    model: Model, params: Mapping[str, Any], state: Mapping[str, Any], removed: Iterable[str]
) -> tuple[dict, dict, Model]:
    """Drops removed blocks: the shallower ResNet computing the masked network's function.

    Args:
      model: the zoo ResNet (``resnet20`` or ``resnet{depth}``) the params belong to.
      params, state: its params and model state (a removed block's entries may hold
        anything: they are dropped).
      removed: the removed blocks (``removed_blocks(mask)``).

    Returns:
      ``(params, state, model)``: the entries of the remaining blocks, and
      ``resnet(..., skip_blocks=removed)`` with the same depth, width and shortcut (read
      from the params). Its ``init`` draws a fresh shallower network; keep these params.

    Raises:
      ValueError: ``model`` is not a zoo ResNet, or a name is not a removable block.
    """
    match = re.fullmatch(r"resnet(\d+)", model.name)
    if match is None:
        raise ValueError(f"compact_blocks: model must be a zoo ResNet, got {model.name!r}")
    removed = _check_removed(removed, removable_blocks(params))
    shortcut = "conv" if any("shortcut_conv" in sub for sub in _blocks_of(params)) else "pad"
    shallower = resnet(
        input_shape=model.input_shape,
        num_classes=model.num_classes,
        depth=int(match.group(1)),
        width=int(np.shape(params["conv1"]["kernel"])[-1]),
        shortcut=shortcut,
        skip_blocks=tuple(removed),
    )
    keep = lambda tree: {k: v for k, v in tree.items() if k not in removed}  # noqa: E731
    return keep(params), keep(state), shallower


def _blocks_of(params):
    return [s for s in params.values() if isinstance(s, Mapping) and "conv1" in s]


def _check_removed(removed: Iterable[str], blocks: Sequence[str]) -> tuple[str, ...]:
    if isinstance(removed, str):
        raise ValueError(f"removed blocks must be a sequence of names, got the string {removed!r}")
    removed = tuple(removed)
    for name in removed:
        if name not in blocks:
            raise ValueError(
                f"{name!r} is not a removable residual block; removable: {', '.join(blocks)}"
            )
    return removed
