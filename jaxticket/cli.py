"""The ``jaxticket`` command: ``lottery`` runs IMP, ``report`` reprints a run, ``train``
trains dense seeds; flags are generated from the config dataclass (experiments as data)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import typing

from jaxticket.lottery.config import LotteryConfig


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _enable_compilation_cache()
    _use_cpu_cores(getattr(args, "cpu_devices", None))
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        # Bad input gets one clear line, not a traceback.
        parser.exit(2, f"jaxticket {args.command}: error: {err}\n")


def _lottery(args) -> int:
    from jaxticket import models
    from jaxticket.lottery.imp import run_lottery
    from jaxticket.lottery.plots import plot_accuracy_vs_remaining, plot_training_curves
    from jaxticket.lottery.report import format_table, summarize

    config = _config_from_args(args)
    if config.model not in models.names():
        raise ValueError(f"unknown model {config.model!r}; valid: {', '.join(models.names())}")
    start = time.time()
    store, records = run_lottery(
        config, out_dir=args.out, show_progress=not args.quiet, log=_log(args.quiet)
    )
    print(format_table(summarize(records)))
    acc = plot_accuracy_vs_remaining(records, store.run_dir / "accuracy_vs_remaining.png")
    levels = sorted({r["level"] for r in records})
    chosen = sorted({levels[0], levels[len(levels) // 2], levels[-1]})
    curves = plot_training_curves(records, chosen, store.run_dir / "training_curves.png")
    print(f"\nrun directory: {store.run_dir}\nplots: {acc}, {curves}")
    print(f"wall time: {time.time() - start:.1f} s")
    return 0


def _report(args) -> int:
    from jaxticket.lottery.report import report

    print(report(args.run_dir))
    return 0


def _train(args) -> int:
    import jax
    import numpy as np
    import optax

    from jaxticket import data as data_lib
    from jaxticket import models
    from jaxticket.train import seed_mesh, train_seeds

    data = data_lib.load(args.dataset)
    model = models.get(args.model, input_shape=data.input_shape, num_classes=data.num_classes)
    keys = jax.random.split(jax.random.key(args.seed), args.seeds)
    devices = jax.devices()[: args.seeds]
    result = train_seeds(
        model,
        data,
        optax.adam(args.learning_rate),
        mesh=seed_mesh(devices) if len(devices) > 1 else None,
        init_keys=keys,
        data_keys=jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
        steps=args.steps,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        show_progress=not args.quiet,
    )
    acc = np.asarray(result.history["test_accuracy"])[:, -1] * 100
    print(
        f"{args.model} on {args.dataset}, {args.steps} steps, {args.seeds} seeds: "
        f"test accuracy {acc.mean():.2f} ± {acc.std():.2f}% (per seed: "
        + ", ".join(f"{a:.2f}" for a in acc)
        + ")"
    )
    return 0


# ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxticket", description="Lottery tickets and pruning for JAX/Flax."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    lot = sub.add_parser(
        "lottery",
        help="find winning tickets by iterative magnitude pruning with rewinding",
        description="Iterative magnitude pruning with rewinding and controls; resumable "
        "(rerunning the same command skips finished levels).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(LotteryConfig):
        _add_field(lot, f)
    lot.add_argument("--out", default="runs", help="folder holding run directories")
    lot.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    _add_cpu_devices(lot)
    lot.set_defaults(func=_lottery)

    rep = sub.add_parser("report", help="print the results table of a finished run")
    rep.add_argument("run_dir", help="a run directory written by `jaxticket lottery`")
    rep.set_defaults(func=_report)

    tr = sub.add_parser(
        "train",
        help="train dense seeds and print test accuracy",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    tr.add_argument("--model", default="mlp", help="model name")
    tr.add_argument("--dataset", default="mnist1d", help="data set name")
    tr.add_argument("--steps", type=_positive_int, default=6000, help="training iterations")
    tr.add_argument("--batch-size", type=_positive_int, default=100, help="minibatch size")
    tr.add_argument(
        "--learning-rate", type=float, default=1e-2, help="Adam learning rate (MNIST-1D reference)"
    )
    tr.add_argument(
        "--eval-every", type=_positive_int, default=500, help="iterations between evaluations"
    )
    tr.add_argument("--seeds", type=_positive_int, default=3, help="seeds trained together")
    tr.add_argument("--seed", type=int, default=0, help="base seed")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_cpu_devices(tr)
    tr.set_defaults(func=_train)
    return parser


def _add_field(parser: argparse.ArgumentParser, f: dataclasses.Field) -> None:
    flag = "--" + f.name.replace("_", "-")
    kind = typing.get_type_hints(LotteryConfig)[f.name]
    help_text = f.metadata.get("help", "")
    if f.name == "layer_rates":
        parser.add_argument(
            flag, type=_layer_rates, default=f.default, help=help_text + " (comma-separated)"
        )
    elif kind == tuple[str, ...]:
        parser.add_argument(
            flag,
            type=_str_list,
            default=f.default,
            help=help_text + " (comma-separated; '' for none)",
        )
    elif kind == tuple[float, ...]:
        parser.add_argument(
            flag, type=_float_list, default=f.default, help=help_text + " (comma-separated)"
        )
    else:
        parser.add_argument(flag, type=kind, default=f.default, help=help_text)


def _config_from_args(args) -> LotteryConfig:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(LotteryConfig)}
    return LotteryConfig(**values)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _str_list(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def _float_list(text: str) -> tuple[float, ...]:
    return tuple(float(s) for s in _str_list(text))


def _layer_rates(text: str) -> tuple[tuple[str, float], ...]:
    out = []
    for item in _str_list(text):
        pattern, sep, scale = item.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected PATTERN=SCALE, got {item!r}")
        out.append((pattern, float(scale)))
    return tuple(out)


def _enable_compilation_cache() -> None:
    # Compilation dominates short runs on CPU; a persistent cache makes a resumed or
    # repeated command skip it. JAX_COMPILATION_CACHE_DIR overrides the location.
    import os

    import jax

    default = os.path.join(os.path.expanduser("~"), ".cache", "jaxticket", "xla")
    jax.config.update(
        "jax_compilation_cache_dir", os.environ.get("JAX_COMPILATION_CACHE_DIR", default)
    )
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def _add_cpu_devices(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cpu-devices",
        type=_positive_int,
        default=None,
        help="JAX CPU devices to split this machine into (default: one per core); seeds "
        "are spread over them and train in parallel. Ignored on accelerators",
    )


def _use_cpu_cores(count: int | None) -> None:
    # On a CPU-only machine JAX has one device, and a small network's training step keeps
    # about one core busy. One device per core lets the seeds of a level train in parallel
    # (about 1.4-1.5x per run on 2 cores). An explicit XLA device-count flag wins.
    import os

    import jax

    if count is None and "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return
    try:
        jax.config.update("jax_num_cpu_devices", count or os.cpu_count() or 1)
    except RuntimeError:
        pass  # JAX already started in this process (main() called from Python): keep it.


def _log(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr))


if __name__ == "__main__":
    sys.exit(main())
