"""IMP over residual blocks, and block tickets scored at initialization.

``block_imp`` is iterative magnitude pruning with whole blocks as the unit (*When Layers Play
the Lottery*): train, remove the ``per_level`` lowest-scoring removable blocks still present,
rewind the remaining weights to their values at ``rewind_step`` (0: the initialization),
retrain; ``levels`` times. ``init_block_ticket`` scores the blocks once at initialization
(magnitude, SNIP or SynFlow summed over each block) and removes the lowest ones before any
training. Both train through ``jaxticket.train.train`` with ``layers.block_mask``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxticket.pruning import criteria
from jaxticket.pruning.synflow import synflow
from jaxticket.structured import layers
from jaxticket.train import train

SCORES = ("magnitude", "bn_scale", "snip", "synflow")


class BlockLevel(NamedTuple):
    """One IMP level: the blocks removed before it was trained and how it did.

    Attributes:
      level: 0 for the full network.
      removed: the blocks removed (network order).
      test_accuracy: the final test accuracy.
      result: the ``TrainResult`` of the level's training.
    """

    level: int
    removed: tuple[str, ...]
    test_accuracy: float
    result: Any


def score_blocks(how: str, model, params, state, *, batch=None, blocks=None) -> dict[str, float]:
    """Block scores by ``how``: ``"magnitude"`` (mean ``|w|`` of the branch's kernels),
    ``"bn_scale"`` (mean ``|scale|`` of its last BatchNorm), ``"snip"`` (``Σ |g ⊙ w|`` on
    ``batch``) or ``"synflow"`` (``Σ`` SynFlow scores, data-free, eval mode).

    Raises:
      ValueError: an unknown ``how``, or ``"snip"`` without ``batch``.
    """
    blocks = layers.removable_blocks(params) if blocks is None else tuple(blocks)
    if how == "magnitude":
        return layers.block_scores(jax.tree.map(jnp.abs, params), blocks)
    if how == "bn_scale":
        return layers.bn_scale_scores(params, blocks)
    if how == "snip":
        if batch is None:
            raise ValueError("score_blocks: how='snip' needs batch=(x, y)")

        def loss(p, b):
            logits, _ = model.apply(p, state, b[0], train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, b[1]).mean()

        scores = jax.jit(criteria.snip(loss))(params, batch=batch)
        return layers.block_scores(scores, blocks, reduce="sum")
    if how == "synflow":
        apply_fn = lambda p, x: model.apply(p, state, x, train=False)[0]  # noqa: E731
        scores = jax.jit(synflow(apply_fn, model.input_shape))(params)
        return layers.block_scores(scores, blocks, reduce="sum")
    raise ValueError(f"score_blocks: how must be one of {', '.join(SCORES)}, got {how!r}")


def block_imp(
    model,
    data,
    optimizer: optax.GradientTransformation,
    *,
    key: jax.Array,
    steps: int,
    batch_size: int,
    levels: int,
    per_level: int = 1,
    score: str | Callable[..., dict[str, float]] = "magnitude",
    rewind_step: int = 0,
    eval_every: int | None = None,
) -> list[BlockLevel]:
    """IMP over blocks: ``levels`` rounds of train, remove, rewind (see the module docstring).

    Args:
      model: a zoo ResNet (``removable_blocks`` must find blocks in its params).
      data: a dataset as for ``jaxticket.train.train``.
      optimizer: the optimizer of every level.
      key: the seed: the initialization and the data order (the same every level).
      steps, batch_size, eval_every: of every level's training.
      levels: pruning rounds (``levels * per_level`` blocks removed in the end).
      per_level: blocks removed per round.
      score: ``"magnitude"`` / ``"bn_scale"`` on the trained weights, or
        ``score(params, state) -> {block: score}``.
      rewind_step: the step whose weights the remaining blocks restart from (0: init).

    Returns:
      One ``BlockLevel`` per level, the full network first.

    Raises:
      ValueError: bad ``levels``/``per_level``/``rewind_step``, more blocks asked than
        removable, or an unknown ``score``.
    """
    params0, state0 = model.init(key)
    blocks = layers.removable_blocks(params0)
    for name, value, low in (("levels", levels, 0), ("per_level", per_level, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"block_imp: {name} must be an int >= {low}, got {value!r}")
    if levels * per_level > len(blocks):
        raise ValueError(
            f"block_imp: levels * per_level = {levels * per_level} blocks but the model has "
            f"only {len(blocks)} removable ({', '.join(blocks)})"
        )
    if isinstance(rewind_step, bool) or not isinstance(rewind_step, int):
        raise ValueError(f"block_imp: rewind_step must be an int, got {rewind_step!r}")
    if not 0 <= rewind_step < steps:
        raise ValueError(f"block_imp: rewind_step must be in [0, steps={steps}), got {rewind_step}")
    if callable(score):
        score_fn = score
    elif score in ("magnitude", "bn_scale"):
        score_fn = lambda p, s: score_blocks(score, model, p, s, blocks=blocks)  # noqa: E731
    else:
        raise ValueError(
            f"block_imp: score must be 'magnitude', 'bn_scale' or a callable, got {score!r}"
        )
    common = dict(key=key, steps=steps, batch_size=batch_size, eval_every=eval_every)
    start, removed, out = (params0, state0), (), []
    # Every level asks for the same snapshot so that all levels share one compiled program.
    snap = (rewind_step,) if rewind_step > 0 else ()
    for level in range(levels + 1):
        result = train(
            model,
            data,
            optimizer,
            params=start[0],
            model_state=start[1],
            mask=layers.block_mask(params0, removed),
            snapshot_steps=snap,
            **common,
        )
        accuracy = float(result.history["test_accuracy"][-1])
        out.append(BlockLevel(level, removed, accuracy, result))
        if snap and level == 0:
            start = result.snapshots[0]
        if level == levels:
            break
        scores = score_fn(result.params, result.model_state)
        new = layers.lowest_blocks(scores, per_level, exclude=removed)
        removed = tuple(b for b in blocks if b in removed or b in new)
    return out


def init_block_ticket(
    model, params, state, count: int, *, score: str = "snip", batch=None
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """Blocks to remove at initialization and their mask: the ``count`` lowest by ``score``.

    Returns:
      ``(removed, mask)`` with ``mask = layers.block_mask(params, removed)``.
    """
    scores = score_blocks(score, model, params, state, batch=batch)
    removed = layers.lowest_blocks(scores, count)
    return removed, layers.block_mask(params, removed)
