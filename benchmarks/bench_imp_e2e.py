"""The lottery main job end to end: the ``jaxticket lottery`` command against the same
experiment as a PyTorch eager script with ``torch.nn.utils.prune``, each a fresh process.

Both sides run LeNet-300-100 (40-300-100-10, Glorot-normal init) on MNIST-1D with 500
training examples held out for validation: ``--seeds`` seeds; level 0 trains dense, each
of ``--levels`` later levels prunes 20% of the surviving weights of each hidden layer and
10% of the output layer by magnitude and rewinds the survivors to their initial values;
at every pruned level, two controls at the ticket's per-layer counts train beside the
ticket: ``reinit`` (the ticket's mask on a fresh init) and ``random_prune`` (the previous
random mask thinned at random, original init). ``--steps`` Adam (1.2e-3) steps of batch
60 per run, test and validation loss/accuracy every ``--eval-every`` steps, each level's
weights and results written to disk. With the defaults this is the README's first command
(``--levels 10 --seeds 3 --rewind 0``).

Timed, each as a whole process (imports, data generation, compilation, training, output):

- ``jaxticket cold``: ``jaxticket lottery ... --quiet`` with an empty persistent compile
  cache: what a first run costs.
- ``jaxticket warm``: the same command again with the cache the cold run filled (any later
  run of the same shapes, e.g. another seed set or a resumed run).
- ``torch (k thr)``: this script with ``--torch-only`` and ``torch.set_num_threads(k)``;
  seeds and variants train one after another (a plain eager loop).

Usage::

    python benchmarks/bench_imp_e2e.py                        # the README job (~20 min)
    python benchmarks/bench_imp_e2e.py --levels 2 --steps 500 # a quick look
"""

from __future__ import annotations

import os

# Before anything loads an OpenMP runtime (torch reads it once, at import); see bench_engine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--levels", type=int, default=10, help="pruning levels after level 0")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--reps", type=int, default=1, help="rounds (order rotates)")
    parser.add_argument("--threads", default="1", help="torch thread counts, comma-separated")
    parser.add_argument("--torch-only", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_only:
        return torch_main(args)

    from bench_engine import load_line

    work = Path(tempfile.mkdtemp(prefix="bench_imp_e2e_"))
    cache = work / "xla_cache"
    common = [
        f"--levels={args.levels}",
        f"--steps={args.steps}",
        f"--seeds={args.seeds}",
        f"--eval-every={args.eval_every}",
    ]
    runs = iter(range(10**6))

    def jaxticket(cold: bool):
        if cold and cache.exists():
            subprocess.run(["rm", "-rf", str(cache)], check=True)
        out = work / f"jax{next(runs)}"
        cmd = [sys.executable, "-m", "jaxticket.cli", "lottery", "--model=lenet_300_100"]
        cmd += ["--dataset=mnist1d", "--rewind=0", "--quiet", f"--out={out}", *common]
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache)}
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        (run_dir,) = out.iterdir()
        return json.loads((run_dir / "results.json").read_text())["records"]

    def torch_run(threads: int):
        out = work / f"torch{next(runs)}"
        cmd = [sys.executable, __file__, f"--torch-only={threads}", f"--out={out}", *common]
        subprocess.run(cmd, check=True, cwd=Path(__file__).parent)
        return json.loads((out / "results.json").read_text())["records"]

    variants = {
        "jaxticket cold": lambda: jaxticket(True),
        "jaxticket warm": lambda: jaxticket(False),
    }
    for k in (int(t) for t in args.threads.split(",")):
        variants[f"torch ({k} thr)"] = lambda k=k: torch_run(k)

    print(
        f"IMP main job: lenet_300_100 on mnist1d, levels {args.levels}, seeds {args.seeds}, "
        f"controls reinit + random_prune, {args.steps} steps/run, batch 60, eval every "
        f"{args.eval_every}; {os.cpu_count()} cores\n" + load_line("start")
    )
    times: dict[str, list[float]] = {v: [] for v in variants}
    records: dict[str, list] = {}
    names = list(variants)
    for r in range(args.reps):
        # The cold run must come before the warm one in every round.
        order = names[r % len(names) :] + names[: r % len(names)]
        order.remove("jaxticket warm")
        order.insert(order.index("jaxticket cold") + 1, "jaxticket warm")
        for name in order:
            start = time.perf_counter()
            records[name] = variants[name]()
            times[name].append(time.perf_counter() - start)
            print(f"  round {r}: {name} {times[name][-1]:.1f} s", flush=True)
    print(load_line("end"))

    med = statistics.median
    torches = [v for v in variants if v.startswith("torch")]
    print("\n| variant | wall s (median) | " + " | ".join(f"{t} / this" for t in torches) + " |")
    print("|---|---|" + "---|" * len(torches))
    for name in variants:
        ratios = " | ".join(f"{med(times[t]) / med(times[name]):.2f}" for t in torches)
        print(f"| {name} | {med(times[name]):.1f} | {ratios} |")

    print("\nticket test accuracy at the end of each level, mean over seeds (remaining %):")
    for name, recs in records.items():
        cells = []
        for level in range(args.levels + 1):
            rows = [x for x in recs if x["level"] == level and x["variant"] == "ticket"]
            acc = np.mean([x["test_accuracy_final"] for x in rows])
            cells.append(f"L{level} {100 * rows[0]['remaining']:.1f}% {100 * acc:.1f}")
        print(f"  {name}: " + ", ".join(cells))


# -------------------------------------------------------------------------- PyTorch side


def torch_main(args) -> None:
    import torch
    from torch.nn.utils import prune  # not loaded by `import torch`

    import jaxticket.data as data_lib

    torch.set_num_threads(args.torch_only)
    nn = torch.nn
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True)
    data = data_lib.with_validation(data_lib.load("mnist1d"), 500, seed=0)
    x_train, y_train, splits = torch_data(torch, data)
    widths = (x_train.shape[1], 300, 100, data.num_classes)
    amounts = [0.2, 0.2, 0.1]  # 20% per level, the output layer at half rate

    def make_net(seed: int):
        torch.manual_seed(seed)
        linears = [nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True)]
        for lin in linears:
            nn.init.xavier_normal_(lin.weight)  # Glorot normal, as jaxticket's lenet_300_100
            nn.init.zeros_(lin.bias)
        net = nn.Sequential(linears[0], nn.ReLU(), linears[1], nn.ReLU(), linears[2])
        return net, linears

    def rewind(linears, init):
        with torch.no_grad():
            for lin, (w0, b0) in zip(linears, init, strict=True):
                getattr(lin, "weight_orig", lin.weight).copy_(w0)
                lin.bias.copy_(b0)

    records = []
    for seed in range(args.seeds):
        ticket, t_lin = make_net(seed)
        random_net, r_lin = make_net(seed)
        init = [(lin.weight.detach().clone(), lin.bias.detach().clone()) for lin in t_lin]
        for level in range(args.levels + 1):
            runs = {"ticket": (ticket, t_lin)}
            if level > 0:
                for lin, amount in zip(t_lin, amounts, strict=True):
                    # Importance = the trained, masked weights; torch prunes `amount` of
                    # the still-unpruned entries.
                    scores = getattr(lin, "weight_orig", lin.weight).detach().abs()
                    prune.l1_unstructured(lin, "weight", amount=amount, importance_scores=scores)
                    # The random control removes as many of its own survivors at random.
                for lin, amount in zip(r_lin, amounts, strict=True):
                    prune.random_unstructured(lin, "weight", amount=amount)
                rewind(t_lin, init)
                rewind(r_lin, init)
                fresh, f_lin = make_net(10_000 + 100 * seed + level)
                for lin, tl in zip(f_lin, t_lin, strict=True):
                    prune.custom_from_mask(lin, "weight", tl.weight_mask.clone())
                runs["reinit"] = (fresh, f_lin)
                runs["random_prune"] = (random_net, r_lin)
            for variant, (net, lins) in runs.items():
                history = torch_train(
                    torch,
                    net,
                    (x_train, y_train, splits),
                    steps=args.steps,
                    batch=60,
                    lr=1.2e-3,
                    eval_every=args.eval_every,
                    data_seed=1000 * seed + level,
                )
                alive = sum(
                    int(getattr(lin, "weight_mask", lin.weight).bool().sum()) for lin in lins
                )
                total = sum(lin.weight.numel() for lin in lins)
                records.append(
                    {
                        "level": level,
                        "variant": variant,
                        "seed": seed,
                        "remaining": alive / total,
                        "test_accuracy_final": history["test_accuracy"][-1],
                        "history": history,
                    }
                )
                torch.save(net.state_dict(), out_dir / f"s{seed}_l{level:02d}_{variant}.pt")
                (out_dir / "results.json").write_text(json.dumps({"records": records}))


def torch_data(torch, data):
    """``(x_train, y_train, {"test": (x, y), "val": (x, y)})`` as flat float / int64 tensors."""
    as_x = lambda a: torch.from_numpy(np.asarray(a).reshape(a.shape[0], -1).copy())  # noqa: E731
    as_y = lambda a: torch.from_numpy(np.asarray(a).astype(np.int64))  # noqa: E731
    splits = {
        "test": (as_x(data.x_test), as_y(data.y_test)),
        "val": (as_x(data.x_val), as_y(data.y_val)),
    }
    return as_x(data.x_train), as_y(data.y_train), splits


def torch_train(torch, net, data, *, steps, batch, lr, eval_every, data_seed) -> dict:
    """Adam training of ``net`` in PyTorch eager, reshuffling every epoch, with test and
    validation loss/accuracy at step 0 and every ``eval_every`` steps; returns the history."""
    F = torch.nn.functional
    x_train, y_train, splits = data
    n = x_train.shape[0]
    per_epoch = n // batch
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(data_seed)
    history = {k: [] for k in ("step", "train_loss", "test_loss", "test_accuracy",
                               "val_loss", "val_accuracy")}  # fmt: skip

    def metrics(step, loss_sum, count):
        history["step"].append(step)
        history["train_loss"].append(loss_sum / max(count, 1))
        with torch.no_grad():
            for name, (x, y) in splits.items():
                logits = net(x)
                history[f"{name}_loss"].append(F.cross_entropy(logits, y).item())
                history[f"{name}_accuracy"].append((logits.argmax(-1) == y).float().mean().item())

    metrics(0, 0.0, 0)
    loss_sum, count, perm = torch.zeros(()), 0, None
    for t in range(steps):
        within = t % per_epoch
        if within == 0:
            perm = torch.randperm(n, generator=gen)
        idx = perm[within * batch : (within + 1) * batch]
        loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach()
        count += 1
        if (t + 1) % eval_every == 0 or t + 1 == steps:
            metrics(t + 1, loss_sum.item(), count)
            loss_sum, count = torch.zeros(()), 0
    return history


if __name__ == "__main__":
    main()
