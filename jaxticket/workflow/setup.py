"""What every training workflow builds from its config first: the model and the data.

:func:`model_and_data` checks the model name, loads the data set, builds the model for its
input shape and classes, checks that the config fits them (``check_fits``: validation
split, batch size, layer-rate patterns) and splits off the validation set, all before
anything trains.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax

from jaxticket import data as data_lib
from jaxticket import models as models_lib
from jaxticket.masks import dense_mask
from jaxticket.workflow.config import ConfigError
from jaxticket.workflow.training import check_fits

__all__ = ["Setup", "model_and_data"]


class Setup(NamedTuple):
    """A workflow's model and data.

    Attributes:
      model: the zoo ``Model``.
      params, model_state: shape templates of its params and state (``jax.eval_shape``).
      data: the data set with ``config.val_size`` training examples held out for validation
        (``jaxticket.data.with_validation`` seeded by ``config.seed``).
    """

    model: Any
    params: Any
    model_state: Any
    data: Any


def model_and_data(c, *, hidden: tuple[int, ...] = ()) -> Setup:
    """The model and data of config ``c`` (fields ``model``, ``dataset``, ``val_size``,
    ``batch_size``, ``seed`` and, where it has them, ``layer_rates``).

    Args:
      c: the workflow's config.
      hidden: hidden widths of the ``mlp`` model (empty: its default).

    Raises:
      ConfigError: an unknown model (the message lists the valid ones) or a config that
        does not fit the data (``check_fits``).
    """
    if c.model not in models_lib.names():
        valid = ", ".join(models_lib.names())
        raise ConfigError("model", f"unknown model {c.model!r}; valid: {valid}")
    data = data_lib.load(c.dataset)
    options = {"hidden": hidden} if hidden else {}
    model = models_lib.get(
        c.model, input_shape=tuple(data.input_shape), num_classes=data.num_classes, **options
    )
    params, model_state = jax.eval_shape(model.init, jax.random.key(0))
    check_fits(c, data, dense_mask(params))
    return Setup(
        model, params, model_state, data_lib.with_validation(data, c.val_size, seed=c.seed)
    )
