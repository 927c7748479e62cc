"""Early-bird tickets (You et al. 2020): the pruning mask settles early in dense training.

At the end of every epoch (``every`` steps) the mask that pruning would give is drawn:
unstructured magnitude pruning to ``sparsity`` (``pruning="global"`` or ``"layerwise"``,
the ``jaxticket.pruning`` magnitude pruners), or whole channels by |BatchNorm scale|
(``pruning="channels"``, network slimming's criterion: a kernel's output channel scores
the |γ| of the BatchNorm that follows it, the global ``neurons`` selection keeps the best
channels, and the mask covers only kernels followed by a BatchNorm). A FIFO keeps the last
``window`` masks; the ticket is drawn at the first epoch whose mask is within normalized
Hamming distance ``threshold`` (``jaxticket.masks.hamming``, over the mask's weights) of
each of the ``window - 1`` masks before it.

How it runs on the engine: the dense seeds train once with ``train_seeds(...,
snapshot_steps=<epoch ends>)``; the masks of every snapshot are then drawn by one vmapped
program and the FIFO scan runs over them. Drawing masks does not change training, so this
post-hoc scan finds the same epoch an online FIFO would, and the full run also yields the
mask of full training (the one-shot ticket) to compare against; a ``mask_update`` hook
would have to carry a mask through the optimizer to record it. ``retrain_tickets`` then
retrains both masks from the original init, as one-shot IMP does.

Example::

    eb = early_bird(model, data, optax.adam(1e-3), init_keys=ik, data_keys=dk,
                    sparsity=0.8, steps=4000, batch_size=100, every=40)
    eb.detected_epoch          # int[N], -1 where never detected
    retrain_tickets(model, data, optax.adam(1e-3), eb, data_keys=dk, steps=4000,
                    batch_size=100)["early_bird_accuracy"]
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket.masks import count_alive, dense_mask
from jaxticket.pruning import magnitude_pruner
from jaxticket.stability.channel_scores import (
    bn_channel_pairs,
    channel_pruner,
    check_channel_pairs,
)
from jaxticket.train import train_seeds
from jaxticket.train.checks import check_keys
from jaxticket.train.runner import init_seeds

PRUNING = ("global", "layerwise", "channels")
_is_none = lambda x: x is None


class EarlyBird(NamedTuple):
    """Early-bird detection for N seeds (host NumPy arrays; masks stacked over seeds).

    Attributes:
      steps: the epoch-end steps at which masks were drawn (``every, 2·every, ...``).
      total_steps: the dense run's steps (those of full training).
      detected_epoch: ``int[N]``, 1-based epoch of the ticket, ``-1`` when never.
      detected_step: ``int[N]``, ``detected_epoch · every``, ``-1`` when never.
      distances: ``float[N, E]``, per epoch the largest distance from its mask to the
        (up to ``window - 1``) masks before it; NaN at the first epoch.
      mask: the early-bird mask per seed (where never detected: ``final_mask``'s).
      final_mask: the mask of the fully trained network (one-shot pruning).
      masks: every epoch's mask, leaves ``[E, N, ...]``.
      init_params, init_state: the seeds' initial variables (to retrain from).
      history: the dense run's history (``jaxticket.train.TrainResult.history``).
    """

    steps: tuple[int, ...]
    total_steps: int
    detected_epoch: np.ndarray
    detected_step: np.ndarray
    distances: np.ndarray
    mask: Any
    final_mask: Any
    masks: Any
    init_params: Any
    init_state: Any
    history: dict[str, np.ndarray]


def early_bird(
    model,
    data,
    optimizer,
    *,
    init_keys: jax.Array,
    data_keys: jax.Array,
    sparsity: float,
    steps: int,
    batch_size: int,
    every: int | None = None,
    window: int = 5,
    threshold: float = 0.1,
    pruning: str = "global",
    exclude=None,
    channel_pairs: dict[str, str] | None = None,
    eval_every: int | None = None,
) -> EarlyBird:
    """Trains N dense seeds and finds each one's early-bird ticket.

    Args:
      model, data, optimizer, init_keys, data_keys, steps, batch_size, eval_every: as in
        :func:`jaxticket.train.train_seeds`.
      sparsity: the tickets' sparsity in [0, 1) (of prunable weights, or of channels).
      every: steps per epoch (default ``n_train // batch_size``).
      window: masks in the FIFO (at least 2); threshold: the distance bound in (0, 1).
      pruning: ``"global"`` / ``"layerwise"`` magnitude, or ``"channels"`` (BatchNorm).
      exclude: leaf-path patterns never pruned (unstructured pruning only).
      channel_pairs: kernel path -> BatchNorm scale path (``"channels"``; default
        :func:`bn_channel_pairs`).
    """
    check_keys("init_keys", init_keys)  # before the init below uses them
    _check_int("batch_size", batch_size, 1)
    if every is None:
        every = data.x_train.shape[0] // batch_size
    check_settings(sparsity=sparsity, every=every, window=window, threshold=threshold)
    _check_int("steps", steps, 1)
    if steps // every < window:
        raise ValueError(
            f"steps={steps} gives {steps // every} epochs of every={every} steps; the FIFO "
            f"needs at least window={window}"
        )
    params, state = init_seeds(model)(init_keys)
    template = _template(_first(params), pruning, exclude, channel_pairs)
    ends = tuple(range(every, steps + 1, every))
    result = train_seeds(
        model,
        data,
        optimizer,
        init_keys=init_keys,
        data_keys=data_keys,
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        params=params,
        model_state=state,
        snapshot_steps=ends,
    )
    # The epoch ends and the final params in one stack: one program draws every mask.
    stack = [p for p, _ in result.snapshots] + [result.params]
    drawn = epoch_masks(
        jax.tree.map(lambda *xs: jnp.stack(xs), *stack),
        template,
        sparsity=sparsity,
        pruning=pruning,
        channel_pairs=channel_pairs,
    )
    drawn, params, state, history = jax.device_get((drawn, params, state, result.history))
    masks = jax.tree.map(lambda m: m[:-1], drawn)
    final = jax.tree.map(lambda m: m[-1], drawn)
    eb = EarlyBird(ends, steps, None, None, None, None, final, masks, params, state, history)
    return redetect(eb, window=window, threshold=threshold)


def redetect(eb: EarlyBird, *, window: int = 5, threshold: float = 0.1) -> EarlyBird:
    """``eb`` with detection redone on its epoch masks for another window or threshold
    (no training); ``mask`` becomes the new detection epoch's mask."""
    check_settings(window=window, threshold=threshold)
    epoch, trace = detect(mask_distances(eb.masks, window=window), threshold=threshold)
    found = epoch >= 0
    chosen = np.where(found, epoch - 1, len(eb.steps) - 1)

    def pick(stack, last):
        picked = np.take_along_axis(stack, chosen.reshape(1, -1, *[1] * (stack.ndim - 2)), 0)[0]
        return np.where(found.reshape(-1, *[1] * (last.ndim - 1)), picked, last)

    return eb._replace(
        detected_epoch=epoch,
        detected_step=np.where(found, epoch * eb.steps[0], -1),
        distances=trace,
        mask=jax.tree.map(pick, eb.masks, eb.final_mask),
    )


def retrain_tickets(
    model, data, optimizer, eb: EarlyBird, *, data_keys, steps, batch_size, eval_every=None
) -> dict[str, np.ndarray]:
    """Retrains the early-bird and the full-training masks from the original init.

    Both sets of N seeds train in one vmapped program with the same data order per seed.

    Returns:
      ``early_bird_accuracy`` and ``full_accuracy`` (``float[N]``, final test accuracy),
      ``early_bird_steps`` (dense steps until detection, ``steps`` of the dense run where
      never detected) and ``full_steps`` (the dense run's steps), ``steps_saved`` (their
      difference; retraining costs both the same ``steps``).
    """
    both = lambda a, b: jax.tree.map(lambda x, y: np.concatenate([x, y]), a, b)
    n = len(eb.detected_epoch)
    result = train_seeds(
        model,
        data,
        optimizer,
        init_keys=jnp.concatenate([data_keys, data_keys]),
        data_keys=jnp.concatenate([data_keys, data_keys]),
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        params=both(eb.init_params, eb.init_params),
        model_state=both(eb.init_state, eb.init_state),
        mask=both(eb.mask, eb.final_mask),
        mask_per_seed=True,
    )
    acc = np.asarray(result.history["test_accuracy"])[:, -1]
    full_steps = eb.total_steps
    eb_steps = np.where(eb.detected_step >= 0, eb.detected_step, full_steps)
    return {
        "early_bird_accuracy": acc[:n],
        "full_accuracy": acc[n:],
        "early_bird_steps": eb_steps,
        "full_steps": np.full(n, full_steps),
        "steps_saved": full_steps - eb_steps,
    }


def epoch_masks(params, template=None, *, sparsity, pruning="global", channel_pairs=None):
    """The masks of params stacked ``[E, N, ...]`` (epochs, seeds), one vmapped program.

    Args:
      params: leaves ``[E, N, ...]``.
      template: one network's starting mask; default every prunable leaf
        (``dense_mask``), or for ``"channels"`` the kernels of ``channel_pairs``.
      sparsity, pruning, channel_pairs: as in :func:`early_bird`.

    Returns:
      The masks, leaves ``[E, N, ...]`` (``None`` where never pruned).
    """
    check_settings(sparsity=sparsity)
    one = jax.tree.map(lambda x: x[0, 0], params)
    if template is None:
        template = _template(one, pruning, None, channel_pairs)
    pruner = _pruner(pruning, _resolve_pairs(one, pruning, channel_pairs))
    return _draw_masks(params, template, jnp.float32(sparsity), pruner=pruner)


@functools.partial(jax.jit, static_argnames="pruner")
def _draw_masks(params, template, sparsity, *, pruner):
    one = lambda p, s: pruner(p, template, sparsity=s)
    return jax.vmap(jax.vmap(one, in_axes=(0, None)), in_axes=(0, None))(params, sparsity)


def mask_distances(masks, *, window: int) -> np.ndarray:
    """``float[E, N, window - 1]``: entry ``[e, n, j - 1]`` is the normalized Hamming
    distance (``jaxticket.masks.hamming``) of seed n's masks at epochs e and e - j, NaN
    where ``e - j < 0``; one compiled program.

    The differing weights are counted in int32 and divided here in float64, so a distance
    equal to the threshold compares exactly (a float32 quotient may round either way).
    """
    _check_int("window", window, 2)
    n_epochs = jax.tree.leaves(masks)[0].shape[0]
    total = sum(int(np.prod(np.shape(m)[2:])) for m in jax.tree.leaves(masks))
    e, j = np.meshgrid(np.arange(n_epochs), np.arange(1, window), indexing="ij")
    counts = np.asarray(_pair_differences(masks, e.ravel(), np.maximum(e - j, 0).ravel()))
    d = (counts.astype(np.float64) / max(total, 1)).reshape(n_epochs, window - 1, -1)
    return np.where((e - j < 0)[:, None, :], np.nan, d.transpose(0, 2, 1))


@jax.jit
def _pair_differences(masks, first, second):
    # One pair of epochs at a time (lax.map): no [pairs, N, ...] copy of the masks.
    def differ(a, b):  # hamming(a, b) times the number of prunable weights
        xor = jax.tree.map(lambda x, y: None if x is None else x ^ y, a, b, is_leaf=_is_none)
        return count_alive(xor)

    def pair(ij):
        take = lambda i: jax.tree.map(lambda m: m[i], masks)
        return jax.vmap(differ)(take(ij[0]), take(ij[1]))

    return jax.lax.map(pair, (first, second))


def detect(distances: np.ndarray, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The first epoch with a full FIFO whose largest distance is under ``threshold``.

    Args:
      distances: ``float[E, N, window - 1]`` from :func:`mask_distances`.

    Returns:
      ``(epoch int[N] 1-based or -1, trace float[N, E])``, trace the largest distance to
      the newest mask per epoch (NaN at the first epoch).
    """
    check_settings(threshold=threshold)
    full = ~np.isnan(distances).any(axis=2)  # [E, N]: the FIFO is full
    trace = np.fmax.reduce(distances, axis=2)  # NaN only where every entry is NaN
    hit = full & (trace < threshold)
    epoch = np.where(hit.any(axis=0), hit.argmax(axis=0) + 1, -1)
    return epoch.astype(np.int32), trace.T


def check_settings(*, sparsity=None, every=None, window=None, threshold=None) -> None:
    """One-line errors for early-bird settings out of range (None: not checked)."""
    if sparsity is not None and not (_is_real(sparsity) and 0 <= sparsity < 1):
        raise ValueError(f"sparsity must be a number in [0, 1), got {sparsity!r}")
    if every is not None:
        _check_int("every", every, 1)
    if window is not None:
        _check_int("window", window, 2)
    if threshold is not None and not (_is_real(threshold) and 0 < threshold < 1):
        raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}")


# --------------------------------------------------------------------------------------
# helpers


def _is_real(x) -> bool:
    return isinstance(x, (int, float, np.floating, np.integer)) and not isinstance(x, bool)


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _template(params, pruning: str, exclude, channel_pairs):
    """One network's starting mask: every prunable leaf, or the paired kernels."""
    pairs = _resolve_pairs(params, pruning, channel_pairs)
    if pairs is None:
        return dense_mask(params, exclude=exclude)
    if exclude is not None:
        raise ValueError("exclude= is for unstructured pruning; channels use channel_pairs=")
    return dense_mask(params, include=list(pairs))


def _resolve_pairs(params, pruning: str, channel_pairs):
    """None for unstructured pruning; else the checked kernel -> BatchNorm scale pairs."""
    if pruning not in PRUNING:
        raise ValueError(f"pruning must be one of {PRUNING}, got {pruning!r}")
    if pruning != "channels":
        if channel_pairs is not None:
            raise ValueError(f"channel_pairs= goes with pruning='channels', got {pruning!r}")
        return None
    if channel_pairs is None:
        return bn_channel_pairs(params)
    return check_channel_pairs(params, channel_pairs)


def _pruner(pruning: str, pairs):
    if pruning != "channels":
        return magnitude_pruner(pruning)
    return channel_pruner(pairs)


def _first(tree):
    return jax.tree.map(lambda x: x[0], tree)
