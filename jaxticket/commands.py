"""The workflow subcommands of the ``jaxticket`` command line, as a table.

Each entry is (name, module, help, description); the module has ``add_arguments(parser)``
and ``run_command(args)``, imported only when its command runs (``jaxticket.cli`` builds
one subparser per entry). ``REPORTS`` says which module's ``report(run_dir)`` prints a
finished run directory of each kind for ``jaxticket report``.
"""

from __future__ import annotations

__all__ = ["REPORTS", "WORKFLOW_COMMANDS", "report_for", "workflow_command"]

# The workflow subcommands: (name, module with add_arguments/run_command, help, description).
WORKFLOW_COMMANDS = (
    (
        "sparse-train",
        "jaxticket.sparse_train.command",
        "sparse training (gmp, set, rigl, granet, static) or the dense baseline",
        "Trains one method at each target sparsity, seeds vmapped; resumable (rerunning "
        "the same command loads finished sparsities).",
    ),
    (
        "at-init",
        "jaxticket.at_init.command",
        "prune at initialization (snip, grasp, synflow, random, magnitude) with sanity controls",
        "Draws each seed's mask at init, trains it beside its layerwise shuffle, reinit and "
        "score-inversion controls in one vmapped program per sparsity; resumable.",
    ),
    (
        "scratch",
        "jaxticket.scratch.command",
        "fine-tuning a pruned network against training its architecture from scratch",
        "Trains the dense network, prunes it by magnitude to each target sparsity, then "
        "fine-tunes the pruned weights and trains the pruned architecture from a fresh init "
        "for the same steps (Scratch-E) and the same compute (Scratch-B); seeds vmapped; "
        "resumable.",
    ),
    (
        "stability",
        "jaxticket.stability.command",
        "instability analysis: error barriers between copies trained from θ_k, a sweep "
        "over k, weight matching",
        "Trains the parents once, snapshotted at every rewind step k (dense, or an IMP "
        "ticket of --lottery-run); from each θ_k trains copies that differ only in data "
        "order (seeds x copies in one vmapped program), evaluates the test error along the "
        "straight path between copies of one parent and prints the barrier (mean ± std "
        "[min, max], stable < 2 %) per k; with --match also the barrier between different "
        "inits before and after weight matching; resumable; writes error_vs_alpha.png and "
        "instability_vs_rewind.png.",
    ),
    (
        "overlap",
        "jaxticket.stability.overlap_command",
        "mask overlap (Jaccard, Hamming) across seeds, levels and methods of finished runs",
        "Reads one level of each run directory (a compare directory: each of its runs), "
        "prints the N x N Jaccard and normalized-Hamming matrices, a per-layer summary "
        "against random masks with the same per-layer counts, and writes a heatmap PNG.",
    ),
    (
        "compare",
        "jaxticket.compare.command",
        "compare every method (imp, at-init, sparse training) on equal terms",
        "Runs every method with the same model, data order, steps, seeds and sparsities, "
        "each as its own resumable run, then prints one table (accuracy mean ± std, "
        "per-layer densities, collapse) and draws accuracy against sparsity and the "
        "per-layer densities.",
    ),
    (
        "grokking",
        "jaxticket.grokking.command",
        "grokking tickets on modular arithmetic against dense, memorization, at-init and "
        "norm-matched controls",
        "Trains the dense network to generalization, takes the grokking ticket (global "
        "magnitude pruning, rewound to init), the memorization ticket, random / SNIP / "
        "GraSP / SynFlow masks and the norm-matched dense network, trains them side by side "
        "and prints the steps until test accuracy first reaches the threshold; resumable.",
    ),
    (
        "transfer",
        "jaxticket.transfer.command",
        "ticket transfer: a mask found on one task trained on another with the same shapes",
        "Finds a magnitude ticket on the source task, trains it on the target task beside "
        "the target's own ticket and the reinit and shuffled-mask controls; resumable.",
    ),
    (
        "soups",
        "jaxticket.soups.command",
        "sparse model soups: IMP whose every level averages retrained copies of one mask",
        "At each level retrains copies of the pruned model that differ in data order or "
        "weight decay (vmapped), averages them (the soup keeps the mask), prunes the soup "
        "for the next level, and compares soup, members and plain IMP; resumable.",
    ),
    (
        "colt",
        "jaxticket.colt.command",
        "COLT: tickets from the overlap of copies trained on disjoint data segments",
        "Splits the training data into K segments, trains a copy on each, keeps the weights "
        "alive in every copy's magnitude mask, rewinds and repeats; compares with IMP at "
        "equal sparsity in accuracy and training iterations; resumable.",
    ),
    (
        "supermask",
        "jaxticket.supermask.command",
        "supermasks: masks learned over frozen weights (edge-popup, lottery jackpots, HideNseek)",
        "Learns a score per weight while the weights stay fixed (the top k % of each layer "
        "is used; straight-through gradient), from random or trained weights, or a sign "
        "supermask over an at-init mask; seeds vmapped, one phase per k; resumable.",
    ),
)


def workflow_command(module: str):
    """The ``func`` of a workflow subcommand: ``<module>.run_command`` imported when run."""

    def run(args) -> int:
        import importlib

        return importlib.import_module(module).run_command(args)

    return run


# ``jaxticket report RUN_DIR``: (module, its "is this kind of run?" function, its report
# function), tried in order; a directory of no listed kind is a lottery run.
REPORTS = (
    ("jaxticket.compare.report", "is_compare_run", "report"),
    ("jaxticket.at_init.command", "is_at_init_run", "report"),
    ("jaxticket.scratch.command", "is_scratch_run", "report"),
    ("jaxticket.sparse_train.report", "is_sparse_train_run", "report"),
    ("jaxticket.grokking.report", "is_grokking_run", "report"),
    ("jaxticket.transfer.report", "is_transfer_run", "report"),
    ("jaxticket.soups.report", "is_soups_run", "report"),
    ("jaxticket.colt.report", "is_colt_run", "report"),
    ("jaxticket.supermask.report", "is_supermask_run", "report"),
)


def report_for(run_dir):
    """The ``report(run_dir) -> str`` function for the kind of run in ``run_dir``."""
    import importlib

    for module, is_kind, report in REPORTS:
        mod = importlib.import_module(module)
        if getattr(mod, is_kind)(run_dir):
            return getattr(mod, report)
    from jaxticket.lottery.report import report as lottery_report

    return lottery_report
