"""GraSP (Wang et al. 2020, "Picking Winning Tickets Before Training by Preserving Gradient
Flow"): prune at initialization the weights whose removal reduces the gradient flow least.

The paper scores every weight with ``−w ⊙ (H g)``, ``g`` the loss gradient and ``H`` the
loss Hessian on a batch, and REMOVES the weights with the LARGEST such score. jaxticket
keeps the largest scores, so the criterion here returns the negated paper score::

    scores = w ⊙ (H g)        # larger = keep; the pruner removes the largest −w ⊙ (H g)

``H g`` is a Hessian-vector product by forward-over-reverse autodiff,
``jax.jvp(jax.grad(loss), (w,), (g,))``, with ``g`` held constant: it costs about two
gradients and never forms ``H``.

The paper computes the loss on logits divided by a temperature (200). ``grasp`` takes any
scalar loss; ``grasp_loss(apply_fn, temperature)`` builds the paper's one (softmax
cross-entropy of ``apply_fn(params, x) / temperature``)::

    crit = grasp(grasp_loss(model.apply, temperature=200.0))
    mask = grasp_pruner(grasp_loss(model.apply))(params, dense_mask(params),
                                                 sparsity=0.9, batch=(x, y))

A model with state (BatchNorm statistics) closes over it in ``apply_fn`` or reads it from
the batch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import optax

from jaxticket.masks import apply_mask
from jaxticket.pruning.criteria import Criterion, _float
from jaxticket.pruning.pruner import Pruner, make_pruner

Params = Any
LossFn = Callable[[Params, Any], jax.Array]


def grasp_loss(
    apply_fn: Callable[[Params, jax.Array], jax.Array], temperature: float = 200.0
) -> LossFn:
    """The GraSP paper's loss: mean softmax cross-entropy of ``apply_fn(params, x) / T``.

    Args:
      apply_fn: ``apply_fn(params, x) -> logits`` of shape ``(batch, classes)``.
      temperature: ``T`` (200 in the paper); a positive number.

    Returns:
      ``loss_fn(params, batch) -> scalar`` with ``batch = (x, y)``, ``y`` integer labels.

    Raises:
      ValueError: ``temperature`` is not a positive finite number.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise ValueError(f"grasp_loss: temperature must be a positive number, got {temperature!r}")
    if not (0.0 < float(temperature) < float("inf")):
        raise ValueError(f"grasp_loss: temperature must be a positive number, got {temperature!r}")
    temperature = float(temperature)

    def loss_fn(params, batch):
        x, y = batch
        logits = apply_fn(params, x) / temperature
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return loss_fn


def grasp(loss_fn: LossFn) -> Criterion:
    """GraSP scores ``w ⊙ (H g)`` (larger = keep), i.e. minus the paper's score.

    ``g = ∇L(w)`` and ``H = ∇²L(w)`` on ``batch``, both at the masked params. With a mask,
    ``g`` is restricted to the alive weights (the Hessian-gradient product of the pruned
    network's own parameters; ``None`` mask leaves count as alive), and pruned weights
    score exactly 0.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar``, e.g. ``grasp_loss(apply_fn, 200.0)``
        for the paper's temperature-scaled cross-entropy.

    Returns:
      A criterion that needs ``batch=``; scores have each param leaf's float dtype
      (float32 for integer leaves). Pure: works under ``jax.jit`` and ``jax.vmap``.
    """
    if not callable(loss_fn):
        raise TypeError(
            f"grasp: loss_fn must be callable (params, batch) -> scalar, got {loss_fn!r}"
        )

    def criterion(params, *, mask=None, batch=None, **_):
        if batch is None:
            raise ValueError("grasp criterion: pass batch= (the data loss_fn takes)")
        w = params if mask is None else apply_mask(params, mask)
        grad_fn = jax.grad(lambda p: loss_fn(p, batch))
        g = jax.lax.stop_gradient(grad_fn(w))
        if mask is not None:
            g = apply_mask(g, mask)
        _, hg = jax.jvp(grad_fn, (w,), (g,))
        return jax.tree.map(lambda x, h: (x * h).astype(_float(x)), w, hg)

    return criterion


def grasp_pruner(
    loss_fn: LossFn,
    allocation="global",
    selection="unstructured",
    *,
    scale=None,
    min_keep=1,
    checked=False,
) -> Pruner:
    """GraSP at initialization (needs ``batch=``): removes the largest ``−w ⊙ (H g)``.

    ``loss_fn(params, batch) -> scalar``; ``grasp_loss(apply_fn, temperature)`` builds the
    paper's temperature-scaled cross-entropy. The other arguments are ``make_pruner``'s.
    """
    return make_pruner(
        grasp(loss_fn), allocation, selection, scale=scale, min_keep=min_keep, checked=checked
    )
