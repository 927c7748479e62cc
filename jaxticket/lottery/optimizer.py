"""The optax optimizer a lottery config names, with its schedule rewound or held."""

from __future__ import annotations

import functools

import optax

from jaxticket.lottery.config import LotteryConfig


def make_optimizer(config: LotteryConfig, *, offset: int = 0, final: bool = False):
    """The config's optax optimizer; its schedule starts at ``offset`` (LR rewinding), or
    is held at the schedule's final value (fine-tuning).

    Built from the config's optimizer values only (``optimizer``, ``learning_rate``,
    ``schedule``, ``steps``, ``weight_decay``), so any workflow's config with equal values
    gets an equal optimizer, and the engine's compile cache (keyed by value) shares the
    train programs between levels and between workflows (a comparison's methods)."""
    c = config
    return _make_optimizer(
        c.optimizer, c.learning_rate, c.schedule, c.steps, c.weight_decay, offset, final
    )


@functools.lru_cache(maxsize=16)
def _make_optimizer(
    optimizer: str,
    learning_rate: float,
    schedule: str,
    steps: int,
    weight_decay: float,
    offset: int,
    final: bool,
):
    base = {
        "constant": optax.constant_schedule(learning_rate),
        "cosine": optax.cosine_decay_schedule(learning_rate, steps),
        "linear": optax.linear_schedule(learning_rate, 0.0, steps),
    }[schedule]
    lr = (lambda count: base(steps)) if final else (lambda count: base(count + offset))
    if optimizer == "adam":
        return optax.adam(lr)  # the config refuses a weight decay with adam
    if optimizer == "adamw":
        return optax.adamw(lr, weight_decay=weight_decay)
    sgd = optax.sgd(lr, momentum=0.9 if optimizer == "momentum" else None)
    if weight_decay == 0:
        return sgd
    # Coupled L2, as PyTorch's SGD weight_decay: the decay joins the gradient before the
    # (momentum) step, so w <- w - lr * (g + wd * w) for plain SGD.
    return optax.chain(optax.add_decayed_weights(weight_decay), sgd)
