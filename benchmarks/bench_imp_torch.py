"""Iterative magnitude pruning end to end: jaxticket's ``run_lottery`` against PyTorch eager.

Both sides run the same experiment: LeNet-300-100 (40-300-100-10, Glorot-normal init) on
MNIST-1D with 500 training examples held out for validation; ``--levels`` pruning levels
after the dense level 0, ``--steps`` Adam (1.2e-3) steps of batch 60 per level; each level
prunes 20% of the surviving weights of every hidden layer and 10% of the output layer by
magnitude, per layer, and rewinds the survivors (and biases) to their initial values; test
and validation loss/accuracy every ``--eval-every`` steps and at step 0; one seed, no
controls. Each level's weights and the results so far are written to disk.

- ``jaxticket cold``: ``run_lottery(LotteryConfig(...), out_dir=<fresh tmp dir>)`` after
  ``jax.clear_caches()``, so that every program is traced and compiled again, as in a new
  process (imports and data generation excluded): the end-to-end figure. Every level is
  one jitted ``lax.scan`` program, levels 1.. share one; orbax checkpoints and
  results.json/csv per level. The script also reports it less its compile time (the time
  spent inside JAX's trace, lowering and backend-compile phases, from ``jax.monitoring``)
  and less the run store's I/O.
- ``jaxticket warm``: the same, reusing the programs compiled by earlier runs in this
  process (a second experiment of the same shape in one session or notebook).
- ``torch (k thr)``: a Python loop with ``torch.nn.utils.prune.l1_unstructured`` per layer
  (20%, output 10%), rewinding by copying the initial weights into ``weight_orig``, a new
  ``torch.optim.Adam`` per level, ``torch.save`` of the state dict and a results.json per
  level; for each k in ``--threads``.

Data generation is done once, before timing, for both. After a warm-up run of each
variant, ``--reps`` rounds are timed with the order rotating; medians are reported, and
ratios are medians over rounds of torch time / jaxticket time in the same round.

Usage::

    python benchmarks/bench_imp_torch.py            # levels 3, 1000 steps, 5 rounds
    python benchmarks/bench_imp_torch.py --quick    # levels 2, 300 steps
"""

from __future__ import annotations

import os

# Before anything loads an OpenMP runtime (torch reads it once, at import); see bench_engine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from bench_engine import (  # noqa: E402
    import_torch,
    load_line,
    machine_header,
    paired_ratio,
    time_interleaved,
)
from bench_imp_e2e import torch_data, torch_train  # noqa: E402

import jaxticket.data as data_lib  # noqa: E402
from jaxticket.lottery.config import LotteryConfig  # noqa: E402
from jaxticket.lottery.imp import run_lottery  # noqa: E402
from jaxticket.workflow import store as store_lib  # noqa: E402

COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--levels", type=int, default=3, help="pruning levels after level 0")
    parser.add_argument("--steps", type=int, default=1000, help="training steps per level")
    parser.add_argument("--eval-every", type=int, default=100, help="steps between evaluations")
    parser.add_argument("--reps", type=int, default=5, help="timed rounds (>= 5)")
    parser.add_argument(
        "--threads",
        default=f"1,{os.cpu_count()}",
        help="comma-separated torch.set_num_threads values, one torch variant each",
    )
    parser.add_argument("--no-torch", action="store_true", help="time jaxticket alone")
    parser.add_argument("--quick", action="store_true", help="short run: levels 2, 300 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels, args.steps = min(args.levels, 2), min(args.steps, 300)

    config = LotteryConfig(
        model="lenet_300_100",
        dataset="mnist1d",
        levels=args.levels,
        seeds=1,
        steps=args.steps,
        batch_size=60,
        learning_rate=1.2e-3,
        controls=(),
        eval_every=args.eval_every,
    )
    torch = None if args.no_torch else import_torch()
    print(machine_header(torch))
    print(
        f"IMP: {config.model} on {config.dataset}, levels {config.levels}, steps/level "
        f"{config.steps}, batch {config.batch_size}, eval every {config.eval_every}, "
        f"reps {args.reps} (interleaved)\n"
    )
    data = data_lib.with_validation(data_lib.load(config.dataset), config.val_size, seed=0)

    probe = Probe()
    tmp = tempfile.TemporaryDirectory(prefix="bench_imp_")
    runs = iter(range(10**6))
    last: dict[str, list] = {}

    def jaxticket_run(cold: bool):
        name = "jaxticket cold" if cold else "jaxticket warm"
        out = Path(tmp.name) / f"jax{next(runs)}"
        if cold:
            jax.clear_caches()
        with probe.measure(name):
            _, records = run_lottery(config, out_dir=str(out))
        last["jaxticket"] = records

    variants = {
        "jaxticket cold": lambda: jaxticket_run(cold=True),
        "jaxticket warm": lambda: jaxticket_run(cold=False),
    }
    if torch is not None:
        for k in [int(t) for t in args.threads.split(",")]:

            def torch_run(k=k):
                out = Path(tmp.name) / f"torch{next(runs)}"
                last[f"torch ({k} thr)"] = torch_imp(torch, data, config, out, threads=k)

            variants[f"torch ({k} thr)"] = torch_run

    time_interleaved(variants, 1)  # warm-up: imports, allocator, first compilations
    probe.reset()
    print(load_line("start"))
    times, cpu = time_interleaved(variants, args.reps)
    print(load_line("after"))
    tmp.cleanup()

    print("\nper level (last run): remaining fraction, final test accuracy")
    for name, records in last.items():
        cells = ", ".join(
            f"L{r['level']} {r['remaining']:.3f} {r['test_accuracy_final']:.3f}" for r in records
        )
        print(f"  {name}: {cells}")

    med = statistics.median
    cold, warm = "jaxticket cold", "jaxticket warm"
    rows = {cold: (times[cold], cpu[cold]), warm: (times[warm], cpu[warm])}
    rows["jaxticket cold excl. compile"] = (
        [t - c for t, c in zip(times[cold], probe.compile_s[cold], strict=True)],
        [t - c for t, c in zip(cpu[cold], probe.compile_cpu_s[cold], strict=True)],
    )
    excl = rows["jaxticket cold excl. compile"][0]
    rows["jaxticket cold excl. compile, store I/O"] = (
        [t - s for t, s in zip(excl, probe.store_s[cold], strict=True)],
        None,
    )
    print()
    for name in (cold, warm):
        print(
            f"{name} per run (medians): compile {med(probe.compile_s[name]):.2f} s wall, "
            f"{med(probe.compile_cpu_s[name]):.2f} s CPU; run-store I/O "
            f"{med(probe.store_s[name]):.2f} s"
        )
    print()
    torches = [v for v in variants if v.startswith("torch")]
    header = "".join(f" {t} / this (wall, CPU) |" for t in torches)
    print(f"| variant | median wall s | median CPU s |{header}")
    print("|---|---|---|" + "---|" * len(torches))
    for name, (wall, cpu_s) in rows.items():
        cells = "".join(
            f" {paired_ratio(times[t], wall):.2f}, "
            + (f"{paired_ratio(cpu[t], cpu_s):.2f} |" if cpu_s else "– |")
            for t in torches
        )
        cpu_med = f"{med(cpu_s):.2f}" if cpu_s else "–"
        print(f"| {name} | {med(wall):.2f} | {cpu_med} |{cells}")
    for t in torches:
        print(f"| {t} | {med(times[t]):.2f} | {med(cpu[t]):.2f} |" + " – |" * len(torches))
    print()
    print(load_line("end"))


class Probe:
    """Per labelled run: JAX compile time (wall and process CPU seconds spent inside JAX's
    trace, lowering and backend-compile phases, nested phases counted once) and run-store
    I/O (``RunStore.save_level`` and ``write_results``)."""

    def __init__(self):
        self.compile_s: dict[str, list[float]] = defaultdict(list)
        self.compile_cpu_s: dict[str, list[float]] = defaultdict(list)
        self.store_s: dict[str, list[float]] = defaultdict(list)
        self._active = False
        # JAX reports each phase's start as a scalar event and its end as a time span.
        jax.monitoring.register_scalar_listener(self._on_start)
        jax.monitoring.register_event_time_span_listener(self._on_end)
        for method in ("save_level", "write_results"):
            original = getattr(store_lib.RunStore, method)
            setattr(store_lib.RunStore, method, self._timed(original))

    def reset(self):
        for d in (self.compile_s, self.compile_cpu_s, self.store_s):
            d.clear()

    @contextlib.contextmanager
    def measure(self, label: str):
        self._depth, self._wall, self._cpu, self._io = 0, 0.0, 0.0, 0.0
        self._active = True
        try:
            yield self
        finally:
            self._active = False
            self.compile_s[label].append(self._wall)
            self.compile_cpu_s[label].append(self._cpu)
            self.store_s[label].append(self._io)

    def _on_start(self, event, value, **kwargs):
        if self._active and event in COMPILE_EVENTS:
            if self._depth == 0:
                self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
            self._depth += 1

    def _on_end(self, event, start, end, **kwargs):
        if self._active and event in COMPILE_EVENTS and self._depth > 0:
            self._depth -= 1
            if self._depth == 0:
                self._wall += time.perf_counter() - self._wall0
                self._cpu += time.process_time() - self._cpu0

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                if self._active:
                    self._io += time.perf_counter() - start

        return wrapper


def torch_imp(torch, data, config: LotteryConfig, out_dir: Path, *, threads: int) -> list:
    """The IMP experiment of ``config`` in PyTorch eager; returns per-level records."""
    from torch.nn.utils import prune  # not loaded by `import torch`

    nn = torch.nn
    torch.set_num_threads(threads)
    out_dir.mkdir(parents=True)
    x_train, y_train, splits = torch_data(torch, data)

    torch.manual_seed(config.seed)
    widths = (x_train.shape[1], 300, 100, data.num_classes)
    linears = [nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)]
    for lin in linears:
        nn.init.xavier_normal_(lin.weight)  # Glorot normal, as jaxticket's lenet_300_100
        nn.init.zeros_(lin.bias)
    net = nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
    init = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in linears]
    scale = dict(config.layer_rates).get("output/*", 1.0)
    amounts = [config.prune_fraction] * (len(linears) - 1) + [config.prune_fraction * scale]

    records = []
    for level in range(config.levels + 1):
        if level > 0:
            for lin, amount in zip(linears, amounts, strict=True):
                # Importance = the current (trained, masked) weights; torch prunes `amount`
                # of the still-unpruned entries.
                scores = getattr(lin, "weight_orig", lin.weight).detach().abs()
                prune.l1_unstructured(lin, "weight", amount=amount, importance_scores=scores)
            with torch.no_grad():
                for lin, (w0, b0) in zip(linears, init, strict=True):
                    lin.weight_orig.copy_(w0)
                    lin.bias.copy_(b0)
        history = torch_train(
            torch,
            net,
            (x_train, y_train, splits),
            steps=config.steps,
            batch=config.batch_size,
            lr=config.learning_rate,
            eval_every=config.eval_every,
            data_seed=config.seed + level,
        )
        records.append(level_record(level, linears, history))
        torch.save(net.state_dict(), out_dir / f"level_{level:02d}.pt")
        (out_dir / "results.json").write_text(json.dumps({"records": records}))
    return records


def level_record(level: int, linears, history) -> dict:
    """The fields of a jaxticket record that the comparison prints."""
    masks = [getattr(lin, "weight_mask", None) for lin in linears]
    alive = sum(int(m.sum()) if m is not None else lin.weight.numel()
                for m, lin in zip(masks, linears, strict=True))  # fmt: skip
    total = sum(lin.weight.numel() for lin in linears)
    val = np.asarray(history["val_loss"])
    best = 1 + int(np.argmin(val[1:])) if len(val) > 1 else 0
    return {
        "level": level,
        "remaining": alive / total,
        "test_accuracy_early": history["test_accuracy"][best],
        "test_accuracy_final": history["test_accuracy"][-1],
        "early_stop_step": history["step"][best],
        "history": history,
    }


if __name__ == "__main__":
    main()
