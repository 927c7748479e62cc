"""Sparse training inside the compiled loop: GMP, SET, RigL, GraNet and static sparse.

Every method is a frozen dataclass of plain values (equal settings are equal and hash
alike, so the engine's compile cache keys them by value) with

* ``initial_mask(params, key)``: the mask training starts from (dense for gradual
  magnitude pruning and dense-to-sparse GraNet; random at ERK / ER / uniform densities
  for SET, RigL, sparse-to-sparse GraNet and the static baseline);
* ``check_start(mask)``: raises ValueError when a starting mask is already sparser than
  the method starts from;
* ``mask_update(steps, start_step=0)``: the engine's ``MaskUpdate`` for a run of
  ``steps`` steps (``None`` for ``Static``), checked against the run.

Example::

    method = jaxticket.sparse.RigL(sparsity=0.9, every=100)
    mask = method.initial_mask(params, jax.random.key(0))
    result = jaxticket.train.train(model, data, optax.adam(1e-3), key=key, steps=5000,
                                   batch_size=60, params=params, mask=mask,
                                   mask_update=method.mask_update(5000))

Papers: Zhu & Gupta 2017 (GMP), Mocanu et al. 2018 (SET), Evci et al. 2020 (RigL),
Liu et al. 2021 (GraNet), Liu et al. 2022 (static random sparse).
"""

from jaxticket.sparse.dynamic import SET, RigL, drop_and_grow, floor_fraction
from jaxticket.sparse.gmp import GMP
from jaxticket.sparse.granet import GraNet
from jaxticket.sparse.schedules import cosine_drop_fraction, update_steps, zhu_gupta_schedule
from jaxticket.sparse.static import Static, random_mask

__all__ = [
    "GMP",
    "SET",
    "GraNet",
    "RigL",
    "Static",
    "cosine_drop_fraction",
    "drop_and_grow",
    "floor_fraction",
    "random_mask",
    "update_steps",
    "zhu_gupta_schedule",
]
