"""The grokking workflow's task, model and masks, built from its config.

* :func:`modular_task`: the modular-arithmetic split of the config, its training pairs
  doubling as the validation split (so every evaluation records train accuracy, which the
  memorization point is read from);
* :func:`task_model`: the zoo model for the task;
* :func:`all_inputs_model`: the model as SynFlow's data-free score sees it on token inputs
  (see its docstring);
* :func:`at_init_masks`: every seed's mask from its init by a ``jaxticket.at_init`` method.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxticket import models as models_lib
from jaxticket.at_init import methods
from jaxticket.data.modular import load_modular
from jaxticket.grokking.config import AT_INIT_VARIANTS
from jaxticket.workflow.config import ConfigError

__all__ = ["all_inputs_model", "at_init_masks", "modular_task", "task_model"]


def modular_task(c):
    """``(a op b) mod p`` split by ``c.seed`` (``c.p``, ``c.op``, ``c.train_fraction``),
    with ``x_val``/``y_val`` set to the training pairs.

    Raises:
      ConfigError: the task is impossible (``op='/'`` with a non-prime ``p``, an empty
        split) or ``batch_size`` exceeds the training pairs.
    """
    try:
        data = load_modular(p=c.p, op=c.op, train_fraction=c.train_fraction, seed=c.seed)
    except ValueError as err:
        field = "train_fraction" if "train_fraction" in str(err) else "p"
        raise ConfigError(field, str(err)) from None
    n = int(data.y_train.shape[0])
    if c.batch_size > n:
        raise ConfigError(
            "batch_size",
            f"batch_size must be <= {n} (the training pairs of p={c.p}, train_fraction="
            f"{c.train_fraction}; 0 is full batch), got {c.batch_size}",
        )
    return data.replace(x_val=data.x_train, y_val=data.y_train)


def task_model(c, data):
    """The zoo model ``c.model`` for the task's token pairs and ``p`` classes (width
    ``c.dim``; ``c.hidden`` for ``embed_mlp``).

    Raises:
      ConfigError: an unknown model (the valid names listed) or one that does not take
        token pairs.
    """
    if c.model not in models_lib.names():
        valid = ", ".join(models_lib.names())
        raise ConfigError("model", f"unknown model {c.model!r}; valid: {valid}")
    options = {"dim": c.dim} | ({"hidden": c.hidden} if c.model == "embed_mlp" else {})
    try:
        return models_lib.get(
            c.model, input_shape=tuple(data.input_shape), num_classes=data.num_classes, **options
        )
    except (TypeError, ValueError) as err:
        raise ConfigError("model", f"model {c.model!r} does not fit the task: {err}") from None


def all_inputs_model(model, x_all):
    """``model`` whose output, whatever its input, is the sum of its logits over every
    input in ``x_all`` (one row).

    SynFlow's score is data-free: the network with ``|θ|`` on an all-ones input. For token
    inputs the all-ones input of their one-hot encoding is every token at once, which an
    embedding lookup cannot take; summing the output over every input combination is the
    same thing for a network linear in its embeddings (the embedding MLP once ``|θ|`` makes
    every ReLU pass, up to its biases) and ranks the weights the same way (a positive
    factor). ``jaxticket.at_init.SynFlow`` then runs on this model unchanged.
    """
    x_all = jnp.asarray(x_all)

    def apply(params, model_state, x, *, train, key=None):
        del x
        logits, new_state = model.apply(params, model_state, x_all, train=train, key=key)
        return jnp.sum(logits, axis=0, keepdims=True), new_state

    return model._replace(apply=apply, name=f"{model.name}_all_inputs")


def every_input(p: int) -> np.ndarray:
    """Every pair ``(a, b)`` in ``[0, p)^2`` as ``int32`` tokens, shape ``(p*p, 2)``."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int32)


def at_init_masks(variant: str, c, model, params, model_state, data, keys):
    """Every seed's mask at ``c.sparsity`` from its init, drawn by the at-init method of
    ``variant`` (``AT_INIT_VARIANTS``) in one vmapped program; host arrays.

    SNIP and GraSP score on every training pair (full batch, as the training); SynFlow
    scores the :func:`all_inputs_model` of ``model``; random keeps the same fraction in
    every layer.
    """
    name = AT_INIT_VARIANTS[variant]
    options = {"min_keep": c.min_keep}
    if name in ("snip", "grasp"):
        options["batch_size"] = int(data.y_train.shape[0])
    if name == "synflow":
        options["rounds"] = c.synflow_rounds
        model = all_inputs_model(model, every_input(c.p))
    method = methods.get(name, **options)
    draw = jax.vmap(lambda p, s, k: method.mask(model, p, s, data, k, c.sparsity))
    return jax.device_get(draw(params, model_state, keys))
