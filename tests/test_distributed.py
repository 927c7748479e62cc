"""Seeds spread over processes (``jaxticket.train.distributed``).

Two Python processes on localhost (``jax.distributed.initialize``, gloo CPU collectives,
2 CPU devices each: 4 global devices) train 4 seeds (and 3, padded to fill the mesh) of a
tiny MLP on digit-shaped data with ``train_seeds_global``; a third process runs the same
code with one process over 4 CPU devices. Every gathered result must be bitwise equal to the
one-process one, on both processes (``tests/test_sharding.py`` checks that a one-process
seed mesh gives ``train_seeds``'s plain results). The device count is fixed when JAX
starts, so every run is a fresh interpreter, each with a timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import optax
import pytest

import jaxticket.models
from jaxticket.data import Dataset
from jaxticket.train.distributed import global_seed_mesh, train_seeds_global

TIMEOUT_S = 300  # generous: a loaded CI machine runs three interpreters at once
NO_GLOO = 77  # a worker's exit code when this jax build has no gloo CPU collectives

WORKER = textwrap.dedent(
    """
    import sys

    pid, nproc, port, ndev = (int(a) for a in sys.argv[1:5])
    out = sys.argv[5]
    import jax

    jax.config.update("jax_platforms", "cpu")
    jax.config.update("jax_num_cpu_devices", ndev)
    if nproc > 1:
        try:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
            jax.distributed.initialize(
                coordinator_address=f"localhost:{port}", num_processes=nproc,
                process_id=pid, initialization_timeout=60,
            )
            jax.devices()
        except Exception as e:  # no gloo in this build: the test skips
            if "gloo" not in str(e).lower():
                raise
            print(f"gloo CPU collectives unavailable: {e}", file=sys.stderr)
            sys.exit(77)
    assert jax.process_count() == nproc and jax.local_device_count() == ndev
    assert jax.device_count() == 4, jax.devices()

    import numpy as np
    import optax

    import jaxticket.models
    from jaxticket.data import Dataset
    from jaxticket.train.compiled import init_seeds
    from jaxticket.train.distributed import global_seed_mesh, train_seeds_global
    from jaxticket.workflow.training import seed_keys

    mesh = global_seed_mesh()
    assert {d.process_index for d in mesh.devices.flat} == set(range(nproc))
    rng = np.random.default_rng(0)  # digits-like, without scikit-learn's slow import
    x = rng.normal(size=(96, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, size=96).astype(np.int32)
    data = Dataset(x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:],
                   name="synthetic", num_classes=10, input_shape=(8, 8, 1))
    model = jaxticket.models.get("mlp", input_shape=(8, 8, 1), num_classes=10, hidden=(16,))
    opt = optax.sgd(0.1)
    settings = dict(steps=20, batch_size=32, eval_every=10)
    saved = {}
    for n in (4, 3):
        init_keys, data_keys = seed_keys(0, 0, n), seed_keys(0, 1, n)
        result = train_seeds_global(
            model, data, opt, init_keys=init_keys, data_keys=data_keys, **settings
        )
        leaves = jax.tree_util.tree_flatten_with_path(result)[0]
        for path, leaf in leaves:
            assert type(leaf) is np.ndarray and leaf.shape[0] == n, (path, type(leaf))
            saved[f"{n}{jax.tree_util.keystr(path)}"] = leaf
    # Given params (host values of every seed, padded like the keys) give the same run.
    params, state = jax.device_get(init_seeds(model)(init_keys))
    given = train_seeds_global(model, data, opt, init_keys=init_keys, data_keys=data_keys,
                               params=params, model_state=state, **settings)
    for (path, a), b in zip(leaves, jax.tree.leaves(given), strict=True):
        assert np.array_equal(a, b), jax.tree_util.keystr(path)
    # A resumable workflow (run_workflow over train_on_devices): process 0 alone writes
    # its own run directory (process 1's stays empty), and a rerun resumes everywhere
    # from process 0's checkpoints, sent to the others.
    import dataclasses, pathlib
    from jaxticket.train import train_seeds
    from jaxticket.workflow import WorkflowConfig, field, run_workflow
    from jaxticket.workflow.run import Workflow
    from jaxticket.workflow.training import train_on_devices

    @dataclasses.dataclass(frozen=True)
    class Config(WorkflowConfig):
        seeds: int = field(3, "runs")

    class Runner:
        def __init__(self, config, devices):
            self.config, self.devices = config, tuple(jax.devices())

        def run_phase(self, phase, state, show_progress):
            n = self.config.seeds
            given = {} if state is None else dict(params=state[0], model_state=state[1])
            result = train_on_devices(
                train_seeds, model, data, opt, self.devices, init_keys=seed_keys(0, 0, n),
                data_keys=seed_keys(0, 2 + phase, n), steps=10, batch_size=32, **given)
            acc = result.history["test_accuracy"][:, -1]
            records = [{"level": phase, "seed": i, "acc": float(a)} for i, a in enumerate(acc)]
            return (result.params, result.model_state), records

        def pack(self, state):
            return {f"p{i}": np.asarray(a) for i, a in enumerate(jax.tree.leaves(state[0]))}

        def unpack(self, flat):
            leaves = [flat[f"p{i}"] for i in range(len(flat))]
            params = jax.tree.unflatten(jax.tree.structure(saved_params), leaves)
            return params, {}

    saved_params = jax.tree.map(lambda a: a[:3], params)
    flow = Workflow(name=lambda c: "toy", phases=lambda c: range(2), setup=Runner)
    root = pathlib.Path(out + ".runs")
    store, records = run_workflow(flow, Config(), out_dir=str(root))
    assert (pid == 0) == root.exists(), (pid, list(root.rglob("*")) if root.exists() else None)
    again, records2 = run_workflow(flow, Config(), out_dir=str(root))
    assert records2 == records and again.run_dir == store.run_dir
    saved["workflow_acc"] = np.array([r["acc"] for r in records])
    saved["workflow_dir"] = np.array(store.run_dir.name)
    np.savez(out, **saved)
    print("ok", pid)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(pid: int, nproc: int, port: int, devices: int, out, log) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    args = [sys.executable, "-c", WORKER, str(pid), str(nproc), str(port), str(devices), out]
    return subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


def _finish(procs: dict[str, subprocess.Popen]) -> dict[str, int]:
    """Exit codes once every process is done. A process that fails takes the others down
    (its peer would wait for it in a collective); past TIMEOUT_S all are killed."""
    deadline = time.monotonic() + TIMEOUT_S
    while any(p.poll() is None for p in procs.values()):
        failed = any(p.poll() not in (None, 0) for p in procs.values())
        if failed or time.monotonic() > deadline:
            for p in procs.values():
                if p.poll() is None:
                    p.kill()
            if not failed:
                for p in procs.values():
                    p.wait()
                return {}
        time.sleep(0.1)
    return {name: p.wait() for name, p in procs.items()}


def test_two_processes_match_one_process_bitwise(tmp_path):
    names = ("p0", "p1", "single")
    outs = {name: str(tmp_path / f"{name}.npz") for name in names}
    port = _free_port()
    with contextlib.ExitStack() as stack:
        logs = {name: stack.enter_context(open(tmp_path / f"{name}.log", "w")) for name in names}
        codes = _finish(
            {
                "p0": _launch(0, 2, port, 2, outs["p0"], logs["p0"]),
                "p1": _launch(1, 2, port, 2, outs["p1"], logs["p1"]),
                "single": _launch(0, 1, 0, 4, outs["single"], logs["single"]),
            }
        )
    tails = {name: (tmp_path / f"{name}.log").read_text()[-3000:] for name in names}
    if not codes:
        pytest.fail(f"the runs took over {TIMEOUT_S} s and were killed; output: {tails}")
    if NO_GLOO in codes.values():
        pytest.skip("this jax build has no gloo CPU collectives (jax_cpu_collectives_impl.)")
    for name, code in codes.items():
        assert code == 0, f"{name} exited {code}:\n{tails[name]}"

    single, p0, p1 = (np.load(outs[k]) for k in ("single", "p0", "p1"))
    assert sorted(p0.files) == sorted(single.files) == sorted(p1.files)
    for name in single.files:
        for label, other in (("process 0", p0), ("process 1", p1)):
            a, b = single[name], other[name]
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{label}: {name} differs"
    # Seeds differ, so the comparison was not between copies of one run.
    kernel = next(k for k in single.files if k.startswith("4.params") and "kernel" in k)
    assert not np.array_equal(single[kernel][0], single[kernel][1])
    # 3 seeds padded to the 4-device mesh: the copy of the last seed was dropped, and the
    # 3 are the first 3 of the 4 (seed s's keys do not depend on the seed count).
    for name in (k for k in single.files if k.startswith("3")):
        assert np.array_equal(single[name], single["4" + name[1:]][:3]), name


def _tiny():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int32)
    data = Dataset(
        x_train=x, y_train=y, x_test=x, y_test=y, name="tiny", num_classes=2, input_shape=(3,)
    )
    return jaxticket.models.get("mlp", input_shape=(3,), num_classes=2, hidden=(4,)), data


def test_bad_input_fails_before_training():
    model, data = _tiny()
    keys = jax.random.split(jax.random.key(0), 2)
    common = dict(steps=1, batch_size=4)
    with pytest.raises(ValueError, match="got 2 init keys but 3 data keys"):
        train_seeds_global(
            model,
            data,
            optax.sgd(0.1),
            init_keys=keys,
            data_keys=jax.random.split(jax.random.key(1), 3),
            **common,
        )
    with pytest.raises(ValueError, match="model_state without params"):
        train_seeds_global(
            model,
            data,
            optax.sgd(0.1),
            init_keys=keys,
            data_keys=keys,
            model_state={},
            **common,
        )
    two_d = jax.sharding.Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("a", "b"))
    with pytest.raises(ValueError, match="mesh must be 1-D"):
        train_seeds_global(
            model, data, optax.sgd(0.1), init_keys=keys, data_keys=keys, mesh=two_d, **common
        )


def test_global_seed_mesh_orders_devices_by_process():
    mesh = global_seed_mesh()
    order = [(d.process_index, d.id) for d in mesh.devices.flat]
    assert order == sorted(order) and len(order) == jax.device_count()
    assert mesh.axis_names == ("seeds",)
