"""The ``jaxticket`` command: ``lottery`` runs IMP, ``report`` reprints a run, ``train``
trains dense seeds; a workflow's flags are generated from its config dataclass
(``jaxticket.workflow.flags``: experiments as data)."""

from __future__ import annotations

import argparse
import math
import sys
import time

from jaxticket.commands import WORKFLOW_COMMANDS, workflow_command
from jaxticket.lottery.config import SEED_LIMIT, ConfigError, LotteryConfig
from jaxticket.workflow.flags import add_config_flags, config_from_args
from jaxticket.workflow.flags import parse_int as _int
from jaxticket.workflow.flags import parse_number as _number


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``jaxticket <cmd>: error: ...``), like every other error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    """Runs the command ``argv`` (default: ``sys.argv[1:]``) and returns its exit code.

    Called from Python with ``argv``, it leaves the process's JAX devices as they are
    unless ``--cpu-devices`` is given (a library call must not reconfigure JAX, and the
    device count names the run directory).
    """
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # named by the subcommand that got them, like every other usage error
        what = f"unrecognized arguments: {' '.join(extra)}"
        parser.exit(2, f"jaxticket {args.command}: error: {what} (see --help)\n")
    _enable_compilation_cache()
    _use_cpu_cores(getattr(args, "cpu_devices", None), command_line=argv is None)
    try:
        return args.func(args)
    except ConfigError as err:
        flag = "--" + err.field.replace("_", "-")
        parser.exit(2, f"jaxticket {args.command}: error: argument {flag}: {_one_line(err)}\n")
    except (ValueError, OSError) as err:
        # Bad input and storage problems (a file where a folder should be, a read-only or
        # full disk: OSError, PermissionError, the run store's StorageError) get one clear
        # line, not a traceback. What finished is on disk already; a rerun resumes it.
        parser.exit(2, f"jaxticket {args.command}: error: {_one_line(err)}\n")


def _one_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _lottery(args) -> int:
    from jaxticket import models
    from jaxticket.lottery.imp import run_lottery
    from jaxticket.lottery.plots import plot_accuracy_vs_remaining, plot_training_curves
    from jaxticket.lottery.report import format_table, summarize

    config = _config_from_args(args)
    if config.model not in models.names():
        raise ConfigError(
            "model", f"unknown model {config.model!r}; valid: {', '.join(models.names())}"
        )
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
    from jaxticket.commands import report_for

    print(report_for(args.run_dir)(args.run_dir))
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
    optimizer = {
        "adam": lambda lr: optax.adam(lr),
        "sgd": lambda lr: optax.sgd(lr),
        "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
    }[args.optimizer](args.learning_rate)
    result = train_seeds(
        model,
        data,
        optimizer,
        mesh=seed_mesh(devices) if len(devices) > 1 else None,
        init_keys=keys,
        data_keys=jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys),
        steps=args.steps,
        batch_size=args.batch_size,
        eval_every=args.eval_every,
        show_progress=not args.quiet,
    )
    acc = np.asarray(result.history["test_accuracy"])[:, -1] * 100
    bad = np.asarray(result.diverged)
    at = np.asarray(result.diverged_step)
    per_seed = ", ".join(
        f"{a:.2f}" + (f" DIVERGED at step {int(t)}" if b else "")
        for a, b, t in zip(acc, bad, at, strict=True)
    )
    head = f"{args.model} on {args.dataset}, {args.steps} steps, {args.seeds} seeds: "
    if bad.all():
        print(head + f"DIVERGED, all seeds (non-finite loss or weights; per seed: {per_seed})")
    elif bad.any():
        ok = acc[~bad]
        print(
            head + f"test accuracy {ok.mean():.2f} ± {ok.std():.2f}% over the {ok.size} "
            f"finite seeds; {int(bad.sum())} DIVERGED (per seed: {per_seed})"
        )
    else:
        print(head + f"test accuracy {acc.mean():.2f} ± {acc.std():.2f}% (per seed: {per_seed})")
    return 1 if bad.any() else 0


# ----------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jaxticket", description="Lottery tickets and pruning for JAX/Flax.")
    sub = parser.add_subparsers(dest="command", required=True)

    lot = sub.add_parser(
        "lottery",
        help="find winning tickets by iterative magnitude pruning with rewinding",
        description="Iterative magnitude pruning with rewinding and controls; resumable "
        "(rerunning the same command skips finished levels).",
    )
    add_config_flags(lot, LotteryConfig)
    lot.add_argument("--out", default="runs", help="folder holding run directories (default: runs)")
    lot.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    _add_cpu_devices(lot)
    lot.set_defaults(func=_lottery)

    rep = sub.add_parser("report", help="print the results table of a finished run")
    rep.add_argument(
        "run_dir",
        help="a run directory written by `jaxticket lottery`, `sparse-train`, `at-init`, "
        "`scratch` or `compare`",
    )
    rep.set_defaults(func=_report)

    for name, module, help_text, description in WORKFLOW_COMMANDS:
        import importlib

        command = sub.add_parser(name, help=help_text, description=description)
        importlib.import_module(module).add_arguments(command)
        _add_cpu_devices(command)
        command.set_defaults(func=workflow_command(module))

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
        "--learning-rate",
        type=_positive_float,
        default=1e-2,
        help="learning rate, finite and > 0 (1e-2: the MNIST-1D reference with Adam)",
    )
    tr.add_argument(
        "--optimizer", choices=("adam", "sgd", "momentum"), default="adam", help="optimizer"
    )
    tr.add_argument(
        "--eval-every", type=_positive_int, default=500, help="iterations between evaluations"
    )
    tr.add_argument("--seeds", type=_positive_int, default=3, help="seeds trained together")
    tr.add_argument("--seed", type=_seed, default=0, help="base seed in [0, 2**32)")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_cpu_devices(tr)
    tr.set_defaults(func=_train)
    return parser


def _config_from_args(args) -> LotteryConfig:
    return config_from_args(LotteryConfig, args)


def _positive_int(text: str) -> int:
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text}")
    return value


def _seed(text: str) -> int:
    value = _int(text)
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be in [0, 2**32), got {value}")
    return value


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
        "are spread over them and train in parallel, and the count names the run "
        "directory (results differ in float rounding). Ignored on accelerators",
    )


def _use_cpu_cores(count: int | None, *, command_line: bool) -> None:
    # On a CPU-only machine JAX has one device, and a small network's training step keeps
    # about one core busy. One device per core lets the seeds of a level train in parallel
    # (about 1.4-1.5x per run on 2 cores). An explicit XLA device-count flag wins.
    import os

    import jax

    if count is None and not command_line:
        return  # main(argv) from Python: JAX's devices are the caller's choice
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
