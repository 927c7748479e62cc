"""The optax optimizer a lottery config names, with its schedule rewound or held."""

from __future__ import annotations

import functools

import optax

from jaxticket.lottery.config import LotteryConfig


def make_optimizer(config: LotteryConfig, *, offset: int = 0, final: bool = False):
    """The config's optax optimizer; its schedule starts at ``offset`` (LR rewinding), or
    is held at the schedule's final value (fine-tuning). Cached so that levels share one
    compiled program."""
    return _make_optimizer(config, offset, final)


@functools.lru_cache(maxsize=16)
def _make_optimizer(config: LotteryConfig, offset: int, final: bool):
    c = config
    base = {
        "constant": optax.constant_schedule(c.learning_rate),
        "cosine": optax.cosine_decay_schedule(c.learning_rate, c.steps),
        "linear": optax.linear_schedule(c.learning_rate, 0.0, c.steps),
    }[c.schedule]
    lr = (lambda count: base(c.steps)) if final else (lambda count: base(count + offset))
    if c.optimizer == "adam":
        return optax.adam(lr)  # the config refuses a weight decay with adam
    if c.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=c.weight_decay)
    sgd = optax.sgd(lr, momentum=0.9 if c.optimizer == "momentum" else None)
    if c.weight_decay == 0:
        return sgd
    # Coupled L2, as PyTorch's SGD weight_decay: the decay joins the gradient before the
    # (momentum) step, so w <- w - lr * (g + wd * w) for plain SGD.
    return optax.chain(optax.add_decayed_weights(c.weight_decay), sgd)
