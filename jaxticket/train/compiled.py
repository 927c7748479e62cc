"""The engine's compiled programs, cached by value (``jaxticket.train.cache_key``).

``compiled_train_fn`` gives the jitted, seed-vmapped run (optionally split over a device
mesh, optionally cut into chunks for a progress bar); ``init_seeds`` the jitted, vmapped
initializer. Equal configurations, even from freshly built models and optimizers, hit the
same entry, so repeated runs (IMP levels, controls, a notebook cell run again) compile once.
"""

from __future__ import annotations

import functools

import jax
from jax.sharding import Mesh, PartitionSpec

from jaxticket.train.cache_key import ByValue
from jaxticket.train.engine import make_engine
from jaxticket.train.loss_checks import check_loss_and_metrics
from jaxticket.train.progress import ChunkedRun


def compiled_train_fn(
    model,
    optimizer,
    *,
    steps: int,
    batch_size: int,
    eval_every: int | None,
    snapshot_steps: tuple[int, ...],
    start_step: int,
    mask_per_seed: bool,
    progress: bool,
    mesh: Mesh | None = None,
    loss_fn=None,
    metrics=None,
    mask_update=None,
):
    """The jitted, seed-vmapped train function, cached by value: repeated runs (IMP
    levels, controls, a fresh but equal optimizer or model) with the same configuration
    compile once (see ``jaxticket.train.cache_key`` for what counts as equal). ``loss_fn``
    and ``metrics`` (defaults filled in first) and ``mask_update`` are part of the key the
    same way: an equal function hits, a different one compiles its own program.

    With a ``mesh`` the seeds are split over its (first) axis and every output stays split
    the same way. With ``progress`` the run is a :class:`~jaxticket.train.progress.ChunkedRun`
    (the same computation in a few calls, with a bar).
    """
    loss_fn, metrics = check_loss_and_metrics(loss_fn, metrics)
    return _compiled_train_fn(
        ByValue(model),
        ByValue(optimizer),
        ByValue(loss_fn),
        ByValue(metrics),
        ByValue(mask_update),
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        start_step=start_step,
        mask_per_seed=mask_per_seed,
        progress=progress,
        mesh=mesh,
    )


@functools.lru_cache(maxsize=32)
def _compiled_train_fn(
    model: ByValue,
    optimizer: ByValue,
    loss_fn: ByValue,
    metrics: ByValue,
    mask_update: ByValue,
    *,
    steps: int,
    batch_size: int,
    eval_every: int | None,
    snapshot_steps: tuple[int, ...],
    start_step: int,
    mask_per_seed: bool,
    progress: bool,
    mesh: Mesh | None,
):
    config = dict(
        steps=steps,
        batch_size=batch_size,
        eval_every=eval_every,
        snapshot_steps=snapshot_steps,
        start_step=start_step,
        loss_fn=loss_fn.value,
        metrics=metrics.value,
        mask_update=mask_update.value,
    )
    engine = make_engine(model.value, optimizer.value, **config)
    m = mask_per_seed
    start = jax.vmap(engine.start, in_axes=_axes((True, True, m, False)))
    run = jax.vmap(engine.run, in_axes=_axes((True, False, m, True, True, False)))
    finish = jax.vmap(engine.finish)
    if progress:
        return ChunkedRun(
            engine,
            _on_mesh(start, (True, True, m, False), mesh),
            _on_mesh(run, (True, False, m, True, True, False), mesh),
            _on_mesh(finish, None, mesh),
            total=start_step + steps,
        )
    rows = engine.rows

    def whole(params, model_state, mask, data_key, dropout_key, data):
        # The parts a ChunkedRun calls separately, in one program. Vmapping them one by
        # one (not their composition) batches the carry over seeds in both (a seed-free
        # count stays a scalar under one vmap), and the barrier keeps XLA from
        # specializing the scan on the initial state: the scan body compiles the same
        # way, so a run with a progress bar gives the same bits as one without.
        carry = jax.lax.optimization_barrier(start(params, model_state, mask, data))
        carry, records = run(carry, rows, mask, data_key, dropout_key, data)
        return finish(carry, records)

    return _on_mesh(whole, (True, True, m, True, True, False), mesh)


def _axes(per_seed: tuple[bool, ...]) -> tuple[int | None, ...]:
    return tuple(0 if p else None for p in per_seed)


def _on_mesh(fn, per_seed: tuple[bool, ...] | None, mesh: Mesh | None):
    """``jit(fn)``; with a mesh, each device runs ``fn`` on its block of the arguments
    marked ``per_seed`` (all when ``None``) and of every output."""
    if mesh is None:
        return jax.jit(fn)
    # Each device trains its own block of seeds with no communication: shard_map, not
    # sharding propagation, which would turn every reduction over the seed axis (a
    # while-loop predicate under vmap, for one) into a cross-device all-reduce per step.
    seeds, same = PartitionSpec(mesh.axis_names[0]), PartitionSpec()
    if per_seed is None:
        in_specs = seeds
    else:
        in_specs = tuple(seeds if p else same for p in per_seed)
    sharded = jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=seeds, check_vma=False)
    return jax.jit(sharded)


def init_seeds(model):
    """``keys -> (params, model_state)`` stacked over seeds: the model's jitted, vmapped init.

    Cached by value (``jaxticket.train.cache_key``): a fresh ``jax.jit(jax.vmap(...))``
    wrapper would retrace and recompile the initializer on every call (seconds each on
    CPU), and an equal model built again reuses it.
    """
    return _init_seeds(ByValue(model))


@functools.lru_cache(maxsize=32)
def _init_seeds(model: ByValue):
    return jax.jit(jax.vmap(model.value.init))
