"""Seeds spread over processes: one global mesh whose seed axis spans every host.

A study whose seeds do not fit one machine runs on JAX's own multi-process runtime. Every
process runs the same script: ``jax.distributed.initialize(...)`` first, then the same
calls with the same per-seed keys (they derive from the config's base seed, so every
process computes them identically). :func:`train_seeds_global` lays the seed axis over
:func:`global_seed_mesh` (all processes' devices), each process computes only the seeds
of its own devices, and the whole result comes back to every process as host NumPy
arrays, bitwise equal to a one-process run over the same number of devices (each seed is
an independent computation; only its placement differs).

Example (the same script on every host; see ``docs/multihost.md``)::

    jax.distributed.initialize()  # Cloud TPU / SLURM: no arguments needed
    result = jaxticket.train.distributed.train_seeds_global(
        model, data, optax.adam(1e-3), init_keys=keys, data_keys=data_keys,
        steps=2000, batch_size=100, eval_every=200)
    if jax.process_index() == 0:
        save(result)  # every process holds the full result; one writes it
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxticket._paths import leaves_with_paths
from jaxticket.train.checks import check_keys, check_mesh
from jaxticket.train.compiled import init_seeds
from jaxticket.train.engine import TrainResult
from jaxticket.train.runner import seed_mesh, train_seeds

__all__ = ["global_seed_mesh", "train_seeds_global"]


def global_seed_mesh() -> Mesh:
    """The 1-D seed mesh over every process's devices, the same on every process.

    Devices are ordered by process, then device id, so each process's devices (and so
    the seeds they train) form one contiguous block of the seed axis.
    """
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return seed_mesh(devices)


def train_seeds_global(
    model,
    data,
    optimizer,
    *,
    init_keys: jax.Array,
    data_keys: jax.Array,
    params: Any = None,
    model_state: Any = None,
    mask: Any = None,
    mask_per_seed: bool = False,
    mesh: Mesh | None = None,
    train_fn=train_seeds,
    **kwargs,
) -> TrainResult:
    """:func:`jaxticket.train.train_seeds` with the seeds spread over every process.

    Every process calls it with the same arguments (collective: a process that skips the
    call stalls the others). With one process it is ``train_seeds`` over a seed mesh of
    its devices, with host results.

    Args:
      model, data, optimizer: as for ``train_seeds`` (``data`` the full data set on every
        process: each device trains on all of it).
      init_keys, data_keys: the full per-seed keys, identical on every process (checked:
        a mismatch is a one-line ``ValueError``).
      params, model_state, mask: as for ``train_seeds``, as host values (NumPy or
        process-local arrays) holding every seed; each process uploads only its seeds.
        Without ``params``, each process initializes only its own seeds.
      mask_per_seed: as for ``train_seeds``.
      mesh: a 1-D seed mesh holding devices of every process; default
        :func:`global_seed_mesh`. When the seed count is not a multiple of its size, the
        last seed is repeated to fill it and the copies are dropped from the result.
      train_fn: the engine entry point (``jaxticket.train.train_seeds``); a workflow
        passes its own name for it (the one its tests replace).
      **kwargs: the rest of ``train_seeds``'s arguments (``steps``, ``batch_size``,
        ``eval_every``, ``snapshot_steps``, ``mask_update``, ...).

    Returns:
      The :class:`~jaxticket.train.TrainResult` stacked over the seeds, as host NumPy
      arrays, on every process (gathered with ``multihost_utils.process_allgather``): every
      process can go on (prune, pick the next level's mask) with the same values; let
      process 0 (``jax.process_index() == 0``) write files.
    """
    mesh = global_seed_mesh() if mesh is None else mesh
    check_mesh(mesh)
    if len(mesh.axis_names) != 1:
        raise ValueError(f"mesh must be 1-D (a seed axis), got axes {mesh.axis_names}")
    owners = {d.process_index for d in mesh.devices.flat}
    if owners != set(range(jax.process_count())):
        missing = sorted(set(range(jax.process_count())) - owners)
        raise ValueError(
            f"mesh has no device of process(es) {missing}; every process must own part of "
            "the seed axis (global_seed_mesh() uses all devices)"
        )
    n = check_keys("init_keys", init_keys)
    if check_keys("data_keys", data_keys) != n:
        raise ValueError(f"got {n} init keys but {data_keys.shape[0]} data keys")
    pad = -n % mesh.devices.size
    seeds = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
    same = NamedSharding(mesh, PartitionSpec())
    (init_raw, init_impl), (data_raw, data_impl) = (
        _host_keys(init_keys, "init_keys"),
        _host_keys(data_keys, "data_keys"),
    )
    init_raw, data_raw = _pad(init_raw, pad), _pad(data_raw, pad)
    if params is None:
        if model_state is not None:
            raise ValueError("model_state without params; pass both or neither")
        params, model_state = _init_own_seeds(model, init_raw, init_impl, seeds)
    else:
        params = _global(_pad(_host("params", params), pad), seeds)
        if model_state is not None:
            model_state = _global(_pad(_host("model_state", model_state), pad), seeds)
    if mask is not None:
        mask = _host("mask", mask)
        mask = _global(_pad(mask, pad), seeds) if mask_per_seed else _global(mask, same)
    result = train_fn(
        model,
        _global(_host("data", data), same),
        optimizer,
        init_keys=_global_keys(init_raw, init_impl, seeds),
        data_keys=_global_keys(data_raw, data_impl, seeds),
        params=params,
        model_state=model_state,
        mask=mask,
        mask_per_seed=mask_per_seed,
        mesh=mesh,
        **kwargs,
    )
    gathered = _gather(result, same)
    return jax.tree.map(lambda x: x[:n], gathered) if pad else gathered


def _gather(tree, replicated: NamedSharding):
    """``tree``'s global arrays as host NumPy arrays on every process: one all-gather
    program for the whole tree (``process_allgather`` compiles one per leaf shape)."""
    # A module-level function, so a repeated call (the next IMP level) reuses the program.
    full = jax.jit(_identity, out_shardings=replicated)(tree)
    return jax.tree.map(np.asarray, jax.device_get(full))


def _identity(tree):
    return tree


def _host_keys(keys, name: str):
    """``keys`` on the host as ``(uint32 data, impl or None)``, after checking that every
    process passed the same ones (one small collective)."""
    if isinstance(keys, jax.Array) and not keys.is_fully_addressable:
        raise ValueError(f"{name} must be host values (the same on every process)")
    typed = jax.numpy.issubdtype(keys.dtype, jax.dtypes.prng_key)
    raw = np.asarray(jax.random.key_data(keys) if typed else keys)
    if jax.process_count() > 1:
        multihost_utils.assert_equal(
            raw, fail_message=f"{name} differ between processes; pass the same keys to each"
        )
    return raw, jax.random.key_impl(keys) if typed else None


def _global_keys(raw: np.ndarray, impl, sharding: NamedSharding):
    arr = _global(raw, sharding)
    return arr if impl is None else jax.random.wrap_key_data(arr, impl=impl)


def _host(what: str, tree):
    """Every leaf of ``tree`` as a NumPy array (host values, the same on every process)."""
    for path, leaf in leaves_with_paths(tree):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            raise ValueError(
                f"{what} leaf {path!r} spans other processes' devices; pass host values "
                "(the results of train_seeds_global are)"
            )
    return jax.tree.map(np.asarray, jax.device_get(tree))


def _pad(tree, pad: int):
    """Repeats the last seed ``pad`` times (host arrays); the copies are dropped later."""
    if not pad:
        return tree
    return jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], pad, axis=0)]), tree)


def _global(tree, sharding: NamedSharding):
    """Host arrays (the full value on every process) as global arrays: each process
    places only the blocks of its own devices."""
    return jax.tree.map(
        lambda x: jax.make_array_from_callback(x.shape, sharding, lambda index: x[index]), tree
    )


def _init_own_seeds(model, raw: np.ndarray, impl, sharding: NamedSharding):
    """``init_seeds`` of only this process's block of seeds (keys ``raw`` of ``impl``),
    as global arrays."""
    n = raw.shape[0]
    blocks = sharding.addressable_devices_indices_map((n,)).values()
    lo = min(block[0].indices(n)[0] for block in blocks)
    hi = max(block[0].indices(n)[1] for block in blocks)
    own = raw[lo:hi] if impl is None else jax.random.wrap_key_data(raw[lo:hi], impl=impl)
    params, state = jax.tree.map(np.asarray, jax.device_get(init_seeds(model)(own)))

    def place(x):
        def block(index):
            start, stop, _ = index[0].indices(n)
            return x[(slice(start - lo, stop - lo), *index[1:])]

        return jax.make_array_from_callback((n, *x.shape[1:]), sharding, block)

    return jax.tree.map(place, params), jax.tree.map(place, state)
