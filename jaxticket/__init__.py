"""jaxticket: lottery tickets and network pruning for JAX/Flax.

Masks are pytrees shaped like the params (``bool`` leaves, ``None`` for leaves never
pruned), applied by pure functions inside jitted train steps. Pruning composes a criterion
(scores), an allocation (how many per leaf) and a selection (which ones). A whole training
run is one jitted ``lax.scan`` program and ``jax.vmap`` trains many seeds at once.

Public API (everything below is importable from ``jaxticket``):

Masks
  ``dense_mask``, ``apply_mask``, ``validate_mask``, ``count_alive``, ``count_total``,
  ``sparsity``, ``density``, ``sparsity_by_leaf``, ``alive_by_leaf``, ``mask_and``,
  ``mask_or``, ``mask_not``, ``jaccard``, ``hamming``, ``default_prunable``;
  ``collapsed_leaves`` (prunable leaves left with no weight) and ``LayerCollapseWarning``.
Pruning (also ``jaxticket.pruning``)
  criteria ``magnitude``, ``random``, ``snip``, ``grasp`` (GraSP's ``w ⊙ Hg`` by
  forward-over-reverse autodiff; ``grasp_loss`` adds the temperature), ``synflow`` (data-free
  path scores), ``weighted_sum``, ``restrict_to_alive``, ``override``; ``synflow_prune``
  (SynFlow's iterative rounds, one jitted program), ``grasp_pruner``; allocations
  ``global_``, ``layerwise`` (``exact_total=True`` meets a total with relative per-layer
  rates), ``erk``, ``er``; selections ``unstructured``, ``n_m``,
  ``neurons``; ``Pruner``, ``make_pruner``, ``magnitude_pruner``, ``random_pruner``,
  ``snip_pruner``, ``prune``, ``topk_mask``, ``count_nonfinite``. Every pruner keeps at
  least ``min_keep=1`` unit per prunable leaf (no silent layer collapse; 0 allows it), and
  ``checked=True`` adds ``jax.experimental.checkify`` checks for traced rates and
  non-finite scores. Under jit, NaN scores rank lowest (pruned first).
Optimizer
  ``zero_pruned`` (optax wrapper keeping pruned weights exactly zero; not ``optax.masked``,
  which means the opposite), its state ``PruneMaskState``, ``get_mask``, ``replace_mask``.
  Regrowth (``jaxticket.regrow``): ``regrow`` swaps a ``zero_pruned`` state's mask, regrown
  weights starting at exactly 0 with their optimizer state reset; ``reset_optimizer_state``
  resets the per-weight state of any optax optimizer (found by
  ``optax.tree_utils.tree_map_params``) where a mask says.
  ``masked`` and ``MaskedState`` are deprecated aliases (DeprecationWarning).
Training (``jaxticket.train``)
  ``train_seeds``, ``make_train_fn``, ``TrainResult`` (with ``diverged`` /
  ``diverged_step``, ``mask_updates``), ``seed_mesh``, ``evaluate``; one seed:
  ``jaxticket.train.train``. A run whose loss or parameters become non-finite warns
  ``DivergenceWarning``. Pluggable ``loss_fn(logits, labels)`` and ``metrics``.
  ``MaskUpdate(fn, steps, needs_grad=False)``: the mask changes inside the compiled run at
  its steps; ``fn(UpdateInputs)`` sees params, optimizer state, mask, step, a key and, when
  asked, the dense gradient on a fresh minibatch (computed at update steps only) and
  returns the new mask (or an ``UpdateOutput``); the engine regrows at exactly 0 with
  fresh optimizer state.
Sparse training (``jaxticket.sparse``)
  ``GMP`` (Zhu & Gupta's cubic schedule, one-shot or constant; layerwise or global),
  ``SET``, ``RigL``, ``GraNet`` and ``Static`` (random ERK / ER / uniform): frozen
  dataclasses with ``initial_mask(params, key)``, ``check_start(mask)`` and
  ``mask_update(steps)`` (a ``MaskUpdate`` for the engine); schedules
  ``zhu_gupta_schedule``, ``cosine_drop_fraction``, ``update_steps``.
Workflows (``jaxticket.lottery``)
  ``LotteryConfig``, ``run_lottery``; ``jaxticket.lottery.ConfigError`` (a bad config, named
  field), ``StorageError`` / ``RunDirectoryBusyError`` (the run directory cannot be written,
  or another process holds it), ``BrokenLevelWarning`` (a damaged or edited level, recomputed).
Pruning at initialization (``jaxticket.at_init``)
  ``SNIP`` (one-shot or iterative), ``GraSP``, ``SynFlow``, ``RandomInit`` (ERK / ER /
  uniform), ``MagnitudeInit``: frozen dataclasses with ``mask(model, params, model_state,
  data, key, sparsity)``, ``inverted=True`` for score inversion; ``get(name)``; sanity
  checks ``layerwise_shuffle``, ``invert_scores``, ``reinit``.
Workflows (``jaxticket.at_init``, ``jaxticket.scratch``, ``jaxticket.compare``)
  ``AtInitConfig``, ``run_at_init``: an at-init method at several sparsities with its sanity
  controls (layerwise shuffle, reinit, score inversion) in one vmapped program per
  sparsity (``jaxticket at-init``); ``ScratchConfig``, ``run_scratch``: fine-tuning a
  magnitude-pruned network against Scratch-E / Scratch-B (``jaxticket scratch``);
  ``CompareConfig``, ``run_compare``: every method with the same model, data order,
  steps, seeds and sparsities, one table and plots (``jaxticket compare``).
Stability (``jaxticket.stability``)
  Linear-mode-connectivity barriers of stacked seeds (``path_errors``, ``barriers``), weight
  matching (``permutation_spec``, ``weight_matching``), mask overlap (``overlap_matrix``,
  ``random_baseline``, ``masks_from_run``) and early-bird tickets (``early_bird``).
Structured tickets (``jaxticket.structured``)
  ``dependency_groups`` (a unit with its bias, BatchNorm and consumers, traced from the
  model's ``apply``: residual stages tied, flattening, attention heads), ``declare_groups``
  (by hand); structured masks ``expand_keep`` / ``check_structured``; ``compact`` (a
  smaller dense network computing the masked one's function); group scores and
  ``structured_pruner`` (``LotteryConfig(structure="channels")`` is structured IMP);
  PreCropping (``precrop``), layer tickets (``removable_blocks``, ``block_imp``,
  ``compact_blocks``); BCOO sparse inference (``jaxticket.structured.sparse_inference``).
Newer ticket results (``jaxticket.grokking``, ``.transfer``, ``.soups``, ``.colt``, ``.supermask``)
  ``GrokkingConfig`` / ``run_grokking`` (grokking tickets against dense, memorization,
  at-init and norm-matched controls; steps to 95 %); ``TransferConfig`` / ``run_transfer``
  (a ticket on another task with the same shapes, with reinit and shuffle controls);
  ``SoupConfig`` / ``run_soups`` and ``soups.average`` (sparse model soups);
  ``ColtConfig`` / ``run_colt`` (cyclic overlapping tickets from data segments);
  ``SupermaskConfig`` / ``run_supermask`` (edge-popup, lottery jackpots, HideNseek sign
  supermasks: scores trained next to frozen weights by the ordinary engine).
Workflows (``jaxticket.sparse_train``)
  ``SparseTrainConfig``, ``run_sparse_training``: one sparse-training method at several
  target sparsities, seeds vmapped, resumable (``jaxticket sparse-train``); its
  ``report`` (table) and ``plots`` (accuracy against sparsity with seed bands, sparsity
  over training).
Workflow layer (``jaxticket.workflow``)
  What every workflow is built on: ``WorkflowConfig`` (a frozen dataclass whose fields
  generate CLI flags and the digest naming the run directory), ``run_workflow`` (the
  resumable phase loop over the run store), ``seed_records``, ``group_summary`` and plots.
Subpackages
  ``jaxticket.data`` (``load``, ``Dataset``), ``jaxticket.models`` (``get``, ``Model``).

Example::

    import jax, optax, jaxticket

    data = jaxticket.data.load("mnist1d")
    model = jaxticket.models.get("lenet_300_100", input_shape=data.input_shape,
                                 num_classes=data.num_classes)
    params, state = model.init(jax.random.key(0))
    mask = jaxticket.dense_mask(params)
    mask = jaxticket.magnitude_pruner("layerwise")(params, mask, fraction=0.5)
    result = jaxticket.train.train(model, data, optax.adam(1.2e-3), key=jax.random.key(1),
                                   params=params, model_state=state, mask=mask,
                                   steps=2000, batch_size=60, eval_every=500)
"""

from jaxticket import (
    at_init,
    colt,
    compare,
    data,
    grokking,
    lottery,
    models,
    pruning,
    scratch,
    soups,
    sparse,
    sparse_train,
    stability,
    structured,
    supermask,
    train,
    transfer,
    workflow,
)
from jaxticket.at_init import AtInitConfig, run_at_init
from jaxticket.colt import ColtConfig, run_colt
from jaxticket.compare import CompareConfig, run_compare
from jaxticket.grokking import GrokkingConfig, run_grokking
from jaxticket.lottery.config import LotteryConfig
from jaxticket.lottery.imp import run_lottery
from jaxticket.masks import (
    LayerCollapseWarning,
    alive_by_leaf,
    apply_mask,
    collapsed_leaves,
    count_alive,
    count_total,
    default_prunable,
    dense_mask,
    density,
    hamming,
    jaccard,
    mask_and,
    mask_not,
    mask_or,
    sparsity,
    sparsity_by_leaf,
    validate_mask,
)
from jaxticket.optim import PruneMaskState, get_mask, replace_mask, zero_pruned
from jaxticket.pruning import (
    Pruner,
    count_nonfinite,
    er,
    erk,
    global_,
    layerwise,
    magnitude,
    magnitude_pruner,
    make_pruner,
    n_m,
    neurons,
    override,
    prune,
    random,
    random_pruner,
    restrict_to_alive,
    snip,
    snip_pruner,
    topk_mask,
    unstructured,
    weighted_sum,
)
from jaxticket.regrow import regrow, reset_optimizer_state
from jaxticket.scratch import ScratchConfig, run_scratch
from jaxticket.soups import SoupConfig, run_soups
from jaxticket.sparse_train import SparseTrainConfig, run_sparse_training
from jaxticket.structured import compact, declare_groups, dependency_groups
from jaxticket.supermask import SupermaskConfig, run_supermask
from jaxticket.train import (
    DivergenceWarning,
    MaskUpdate,
    TrainResult,
    UpdateInputs,
    UpdateOutput,
    evaluate,
    make_train_fn,
    seed_mesh,
    train_seeds,
)
from jaxticket.transfer import TransferConfig, run_transfer

__version__ = "0.1.0"

__all__ = [
    "ColtConfig",
    "GrokkingConfig",
    "SoupConfig",
    "SupermaskConfig",
    "TransferConfig",
    "colt",
    "compact",
    "declare_groups",
    "dependency_groups",
    "grokking",
    "run_colt",
    "run_grokking",
    "run_soups",
    "run_supermask",
    "run_transfer",
    "soups",
    "structured",
    "supermask",
    "transfer",
    "AtInitConfig",
    "CompareConfig",
    "DivergenceWarning",
    "LayerCollapseWarning",
    "LotteryConfig",
    "ScratchConfig",
    "MaskUpdate",
    "Pruner",
    "PruneMaskState",
    "TrainResult",
    "UpdateInputs",
    "UpdateOutput",
    "alive_by_leaf",
    "apply_mask",
    "at_init",
    "collapsed_leaves",
    "compare",
    "count_alive",
    "count_nonfinite",
    "count_total",
    "data",
    "default_prunable",
    "dense_mask",
    "density",
    "er",
    "erk",
    "evaluate",
    "get_mask",
    "global_",
    "hamming",
    "jaccard",
    "layerwise",
    "lottery",
    "magnitude",
    "magnitude_pruner",
    "make_pruner",
    "make_train_fn",
    "mask_and",
    "mask_not",
    "mask_or",
    "models",
    "n_m",
    "neurons",
    "override",
    "prune",
    "pruning",
    "random",
    "random_pruner",
    "regrow",
    "replace_mask",
    "reset_optimizer_state",
    "restrict_to_alive",
    "run_at_init",
    "run_compare",
    "run_lottery",
    "run_scratch",
    "run_sparse_training",
    "seed_mesh",
    "snip",
    "snip_pruner",
    "SparseTrainConfig",
    "scratch",
    "sparse",
    "sparse_train",
    "stability",
    "sparsity",
    "sparsity_by_leaf",
    "topk_mask",
    "train",
    "train_seeds",
    "unstructured",
    "validate_mask",
    "weighted_sum",
    "workflow",
    "zero_pruned",
]


def __getattr__(name: str):
    # ``masked`` / ``MaskedState``: deprecated aliases, forwarded with their warning.
    if name in ("masked", "MaskedState"):
        from jaxticket.optim import deprecated_alias

        return deprecated_alias(name, stacklevel=3)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
