"""The lottery workflow: paper's remaining fractions, IMP end to end on a tiny MNIST-1D run
(records, shrinking masks, controls, late rewinding, LR rewinding, fine-tuning, one-shot)
and resuming.

Every config here shares its compiled programs with ``MAIN`` (LeNet-300-100, 2 seeds, 40
steps, rewind 20, 4 variants per level), the tiny run tests/test_cli.py and
tests/test_resume.py use as well (see ``shared_tiny_run``).
"""

from __future__ import annotations

import dataclasses
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxticket import models
from jaxticket.lottery import imp
from jaxticket.lottery.config import LotteryConfig
from jaxticket.lottery.imp import Experiment, make_optimizer, run_identity, run_lottery
from jaxticket.lottery.records import LayerCollapseWarning
from jaxticket.lottery.report import format_table, summarize
from jaxticket.masks import alive_by_leaf, dense_mask
from jaxticket.pruning import magnitude_pruner
from jaxticket.train import DivergenceWarning, train_seeds
from jaxticket.workflow.store import RunStore, config_digest, flatten_tree, unflatten_into

TINY = dict(seeds=2, steps=40, eval_every=20, val_size=200, batch_size=60)
K = 20  # the late-rewinding iteration of MAIN
# One-shot configs keep IMP-only settings at their defaults (anything else is refused).
ONE_SHOT_LEVELS = LotteryConfig().levels
MAIN = LotteryConfig(levels=3, rewind=K, controls=("reinit", "random_prune", "shuffle"), **TINY)
VARIANTS = ("ticket", "reinit", "random_prune", "shuffle")

# LeNet-300-100 on MNIST-1D (40 inputs): per-layer weight counts.
SIZES = {"dense1/kernel": 40 * 300, "dense2/kernel": 300 * 100, "output/kernel": 100 * 10}
# Rate per layer in millionths: 20%, the output layer at half rate.
RATES = {"dense1/kernel": 200_000, "dense2/kernel": 200_000, "output/kernel": 100_000}


from lottery_shared import compile_cache, shared_tiny_run  # noqa: E402, F401  (fixture)

# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("lottery")


@pytest.fixture(scope="module")
def main_run(tmp_path_factory, out_dir):
    """MAIN's run (a private copy): its store and records."""
    run_dir, _ = shared_tiny_run(
        tmp_path_factory, out_dir, lambda out: run_lottery(MAIN, out_dir=str(out))
    )
    return RunStore(run_dir), RunStore.read_results(run_dir)["records"]


@pytest.fixture(scope="module")
def main_exp():
    return Experiment(MAIN)


# -- the paper's remaining fractions (no training) -------------------------------------


def recurrence(sizes, rates, levels):
    """Exact per-layer alive counts: each level prunes round-half-up(rate·alive)."""
    alive = dict(sizes)
    out = [alive]
    for _ in range(levels):
        alive = {p: n - (rates[p] * n + 500_000) // 1_000_000 for p, n in alive.items()}
        out.append(alive)
    return out


def test_lenet_784_remaining_fraction_follows_the_paper():
    """P_m = (265,200·0.8^k + 1,000·0.9^k)/266,200 for k = 0..15 (Frankle & Carbin 2019).

    The pruner removes exactly round(f·alive) weights of each layer per level (round half up),
    so the per-layer counts must equal the integer recurrence exactly. The paper's formula is
    the real-valued version: each layer's count differs from it by at most ½ weight per level
    (rounding errors are only shrunk by later levels), so the total is within 3·½·k weights,
    and in practice within a relative 1e-4.
    """
    model = models.get("lenet_300_100", input_shape=(784,), num_classes=10)
    # Only the shapes matter for the counts: random weights from numpy (no compiles).
    rng = np.random.default_rng(0)
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.normal(size=s.shape), s.dtype),
        jax.eval_shape(model.init, jax.random.key(0))[0],
    )
    # The workflow's pruner with the paper's defaults.
    config = LotteryConfig()
    assert (config.allocation, dict(config.layer_rates)) == ("layerwise", {"output/*": 0.5})
    assert config.prune_fraction == 0.2
    pruner = magnitude_pruner("layerwise", scale={"output/*": 0.5})
    step = jax.jit(lambda p, m: pruner(p, m, fraction=0.2))
    sizes = {"dense1/kernel": 784 * 300, "dense2/kernel": 300 * 100, "output/kernel": 1000}
    expected = recurrence(sizes, RATES, 15)
    mask = dense_mask(params)
    fractions = []
    for k in range(16):
        alive = {p: int(a) for p, a in alive_by_leaf(mask).items()}
        assert alive == expected[k], f"level {k}"
        total = sum(alive.values())
        paper = (265_200 * 0.8**k + 1_000 * 0.9**k) / 266_200
        assert abs(total - paper * 266_200) <= 1.5 * k
        assert total / 266_200 == pytest.approx(paper, rel=1e-4)
        fractions.append(total / 266_200)
        # Pruning keeps the mask a subset of the previous one.
        new = step(params, mask)
        for n, o in zip(jax.tree.leaves(new), jax.tree.leaves(mask), strict=True):
            assert not np.any(np.asarray(n) & ~np.asarray(o))
        mask = new
    paper_pct = {3: 51.3, 7: 21.1, 9: 13.5, 15: 3.6}
    assert {k: round(100 * fractions[k], 1) for k in paper_pct} == paper_pct


# -- IMP end to end ----------------------------------------------------------------------


def stored(store: RunStore, exp: Experiment, level: int, name: str):
    """``name`` ("mask", "random_mask", "init", "rewind", "trained") of a stored level,
    stacked over seeds, rebuilt from the flat arrays ``RunStore.load_level`` returns."""
    loaded = store.load_level(level)
    assert loaded is not None, f"level {level} is not stored"
    template = dense_mask(exp.template) if "mask" in name else exp.template
    return unflatten_into(template, loaded[0], name)


def counts(mask) -> list[dict[str, int]]:
    """Per-seed alive counts by layer of a mask stacked over seeds."""
    by_leaf = {p: np.asarray(a) for p, a in jax.vmap(alive_by_leaf)(mask).items()}
    n = len(next(iter(by_leaf.values())))
    return [{p: int(a[s]) for p, a in by_leaf.items()} for s in range(n)]


def is_subset(new, old) -> bool:
    return all(
        not np.any(np.asarray(n) & ~np.asarray(o))
        for n, o in zip(jax.tree.leaves(new), jax.tree.leaves(old), strict=True)
    )


def by_key(records):
    return {(r["level"], r["variant"], r["seed"]): r for r in records}


def test_records_one_per_level_variant_seed(main_run):
    store, records = main_run
    expected = {(0, "ticket", s) for s in range(2)}
    expected |= {(lvl, v, s) for lvl in (1, 2, 3) for v in VARIANTS for s in range(2)}
    assert len(records) == len(expected) and set(by_key(records)) == expected
    for r in records:
        h = r["history"]
        steps = [0, 20, 40] if r["level"] == 0 else [K, 40]
        assert h["step"] == steps
        metrics = {"train_loss", "test_loss", "test_accuracy", "val_loss", "val_accuracy"}
        assert set(h) == {"step"} | metrics
        assert all(len(v) == len(steps) for v in h.values())
        assert r["test_accuracy_final"] == h["test_accuracy"][-1]
        assert r["early_stop_step"] in steps[1:]
        i = h["step"].index(r["early_stop_step"])
        assert h["val_loss"][i] == min(h["val_loss"][1:])
        assert r["test_accuracy_early"] == h["test_accuracy"][i]
        assert all(0.0 <= a <= 1.0 for a in h["test_accuracy"])
        assert set(r["layer_remaining"]) == set(SIZES)
        assert (r["collapsed"], r["diverged"], r["diverged_step"]) == ([], False, -1)
        alive = sum(r["layer_remaining"][p] * n for p, n in SIZES.items())
        assert r["remaining"] == pytest.approx(alive / sum(SIZES.values()), rel=1e-6)
    # The dense net learns something in 40 steps (chance is 10%).
    assert all(r["test_accuracy_final"] > 0.15 for r in records if r["level"] == 0)
    # results.json holds the config and, in level order, the records of every level file.
    runtime = {"x64": False, "devices": 1, "platform": "cpu"}  # tests see one CPU device
    assert RunStore.read_results(store.run_dir)["config"] == {**MAIN.to_dict(), "runtime": runtime}
    assert records == [r for lvl in range(4) for r in store.load_level(lvl)[1]]
    assert len((store.run_dir / "results.csv").read_text().splitlines()) == 1 + len(records)
    assert store.finished_levels() == [0, 1, 2, 3]


def test_ticket_masks_only_shrink_at_the_configured_rates(main_run, main_exp):
    store, records = main_run
    expected = recurrence(SIZES, RATES, 3)
    prev = None
    for level in range(4):
        mask = stored(store, main_exp, level, "mask")
        for s, alive in enumerate(counts(mask)):
            assert alive == expected[level], (level, s)
            record = by_key(records)[(level, "ticket", s)]
            assert record["layer_remaining"] == {p: alive[p] / SIZES[p] for p in SIZES}
        if prev is not None:
            assert is_subset(mask, prev) and not is_subset(prev, mask)
        # Pruned weights of the trained ticket are exactly zero.
        trained = flatten_tree(stored(store, main_exp, level, "trained"))
        for path, m in flatten_tree(mask).items():
            assert not np.any(np.asarray(trained[path])[~np.asarray(m)]), (level, path)
        prev = mask


def test_controls_have_the_tickets_per_layer_counts(main_run, main_exp):
    store, records = main_run
    recs = by_key(records)
    for level in (1, 2, 3):
        for s in range(2):
            ticket = recs[(level, "ticket", s)]
            for variant in VARIANTS[1:]:
                control = recs[(level, variant, s)]
                assert control["layer_remaining"] == ticket["layer_remaining"], (level, variant)
                assert control["remaining"] == ticket["remaining"]
    # Random pruning is applied level after level: each random mask thins the previous one,
    # to the ticket's counts, and is not the ticket's mask.
    prev = stored(store, main_exp, 0, "random_mask")
    for level in (1, 2, 3):
        rand = stored(store, main_exp, level, "random_mask")
        ticket = stored(store, main_exp, level, "mask")
        assert counts(rand) == counts(ticket)
        assert is_subset(rand, prev)
        assert not np.array_equal(rand["dense1"]["kernel"], ticket["dense1"]["kernel"])
        prev = rand


def test_control_starting_points(main_run, main_exp):
    """reinit: the ticket's mask on a fresh init; random_prune/shuffle: the ticket's start
    with another mask of the same per-layer counts."""
    store, _ = main_run
    exp = main_exp
    prev = exp.unpack(store.load_level(1)[0])
    mask = exp._prune_step(prev.trained, prev.mask)
    assert counts(mask) == counts(stored(store, exp, 2, "mask"))
    starts = exp._starts(prev, mask, 2)
    assert set(starts) == set(VARIANTS)
    t_params, _, t_mask = starts["ticket"]
    assert jax.tree.all(jax.tree.map(np.array_equal, t_params, prev.rewind))
    r_params, _, r_mask = starts["reinit"]
    assert r_mask is t_mask
    assert not np.array_equal(r_params["dense1"]["kernel"], t_params["dense1"]["kernel"])
    for variant in ("random_prune", "shuffle"):
        params, _, m = starts[variant]
        assert params is t_params
        assert counts(m) == counts(t_mask)
        assert not np.array_equal(m["dense1"]["kernel"], t_mask["dense1"]["kernel"])


def test_late_rewinding_restarts_at_step_k(main_run, main_exp):
    store, records = main_run
    exp = main_exp
    # θ_k: the dense run's params after k steps, from the same init and data-order keys.
    reference = train_seeds(
        exp.model,
        exp.data,
        make_optimizer(MAIN),
        init_keys=exp.init_keys,
        data_keys=exp.data_keys,
        steps=K,
        batch_size=MAIN.batch_size,
        eval_every=K,
    )
    rewind = stored(store, exp, 0, "rewind")
    init = stored(store, exp, 0, "init")
    for path, want in flatten_tree(reference.params).items():
        got = flatten_tree(rewind)[path]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=path)
        assert not np.array_equal(got, flatten_tree(init)[path])  # k > 0 is not θ₀
    # The level-0 history at step k evaluated those same params.
    dense = [by_key(records)[(0, "ticket", s)]["history"] for s in range(2)]
    ref_loss = np.asarray(reference.history["test_loss"])[:, -1]
    np.testing.assert_allclose([h["test_loss"][1] for h in dense], ref_loss, rtol=1e-5)
    # Every later level keeps θ_k and starts its history at step k.
    for level in (1, 2, 3):
        later = stored(store, exp, level, "rewind")
        assert jax.tree.all(jax.tree.map(np.array_equal, later, rewind))
        assert all(r["history"]["step"][0] == K for r in records if r["level"] == level)


@pytest.mark.slow
def test_rewind_zero_resets_survivors_to_their_initial_values(out_dir):
    """The original lottery ticket: survivors go back to θ₀ and retrain from step 0.

    Slow only because rewind 0 needs two training programs of its own (a tiny config)."""
    config = dataclasses.replace(MAIN, rewind=0, levels=1, controls=())
    store, records = run_lottery(config, out_dir=str(out_dir))
    exp = Experiment(config)
    init = stored(store, exp, 0, "init")
    assert jax.tree.all(jax.tree.map(np.array_equal, stored(store, exp, 0, "rewind"), init))
    assert jax.tree.all(jax.tree.map(np.array_equal, stored(store, exp, 1, "rewind"), init))
    prev = exp.unpack(store.load_level(0)[0])
    mask = exp._prune_step(prev.trained, prev.mask)
    assert jax.tree.all(jax.tree.map(np.array_equal, exp._starts(prev, mask, 1)["ticket"][0], init))
    assert [r["history"]["step"] for r in records] == [[0, 20, 40]] * 4
    assert {(r["level"], r["variant"]) for r in records} == {(0, "ticket"), (1, "ticket")}


def test_lr_rewinding_and_finetuning_start_from_trained_weights(main_run):
    store, records = main_run
    main = by_key(records)
    first_losses = {}
    for mode in ("lr", "finetune"):
        exp = Experiment(dataclasses.replace(MAIN, rewind_mode=mode, levels=1))
        # Level 0 does not depend on the rewind mode: continue from MAIN's.
        prev = exp.unpack(store.load_level(0)[0])
        mask = exp._prune_step(prev.trained, prev.mask)
        starts = exp._starts(prev, mask, 1)
        assert starts["ticket"][0] is prev.trained
        assert starts["random_prune"][0] is prev.trained
        _, level_records = exp.run_level(1, prev, False)
        recs = by_key(level_records)
        assert set(recs) == {(1, v, s) for v in VARIANTS for s in range(2)}
        first_losses[mode] = []
        for s in range(2):
            ticket = recs[(1, "ticket", s)]
            assert ticket["history"]["step"] == [K, 40]
            assert np.isfinite(ticket["history"]["test_loss"]).all()
            assert ticket["layer_remaining"] == main[(1, "ticket", s)]["layer_remaining"]
            # History entry 0 evaluates the starting point: the pruned trained net, not θ_k.
            loss = ticket["history"]["test_loss"][0]
            assert loss != main[(1, "ticket", s)]["history"]["test_loss"][0]
            first_losses[mode].append(loss)
    # Both modes start from the same (pruned, trained) weights: same first evaluation.
    assert first_losses["lr"] == first_losses["finetune"]


def test_lr_schedule_is_rewound_or_held_at_its_final_value():
    """LR rewinding restarts the schedule at k; fine-tuning trains at the final rate."""
    config = LotteryConfig(optimizer="sgd", schedule="linear", learning_rate=1.0, steps=100)
    grads = {"w": jnp.ones(3)}

    def first_lr(opt):
        updates, _ = opt.update(grads, opt.init(grads), grads)
        return -float(updates["w"][0])

    assert first_lr(make_optimizer(config)) == pytest.approx(1.0)
    assert first_lr(make_optimizer(config, offset=30)) == pytest.approx(0.7)
    assert first_lr(make_optimizer(config, offset=30, final=True)) == pytest.approx(0.0)
    cosine = dataclasses.replace(config, schedule="cosine")
    assert first_lr(make_optimizer(cosine, offset=50)) == pytest.approx(0.5)
    assert isinstance(make_optimizer(config), optax.GradientTransformation)


def test_one_shot_prunes_the_dense_net_to_each_sparsity(main_run, out_dir):
    store_main, records_main = main_run
    config = dataclasses.replace(
        MAIN, one_shot=(0.5, 0.8), levels=ONE_SHOT_LEVELS, controls=("reinit",)
    )
    store, records = run_lottery(config, out_dir=str(out_dir))
    assert store.run_dir != store_main.run_dir and store.run_dir.parent == out_dir
    recs = by_key(records)
    assert set(recs) == {(0, "ticket", s) for s in range(2)} | {
        (lvl, v, s) for lvl in (1, 2) for v in ("ticket", "reinit") for s in range(2)
    }
    # The dense level is the same run as MAIN's (controls and one-shot do not touch it).
    assert [r for r in records if r["level"] == 0] == [r for r in records_main if r["level"] == 0]
    total = sum(SIZES.values())
    for level, s in ((1, 0.5), (2, 0.8)):
        for r in (r for r in records if r["level"] == level):
            # The requested sparsity exactly, to the weight (43,000 weights: 21,500 and
            # 8,600 remain), though the output layer is pruned at a relative half rate.
            alive = {p: round(r["layer_remaining"][p] * n) for p, n in SIZES.items()}
            assert sum(alive.values()) == total - round(s * total)
            assert r["remaining"] == (total - round(s * total)) / total
            assert r["layer_remaining"]["output/kernel"] > 1 - s
            assert r["history"]["step"][0] == K


def test_rerun_loads_every_level_and_trains_nothing(main_run, out_dir, monkeypatch):
    store, records = main_run
    before = (store.run_dir / "results.json").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished level was trained again")

    monkeypatch.setattr(imp, "train_seeds", no_training)
    log: list[str] = []
    store2, records2 = run_lottery(MAIN, out_dir=str(out_dir), log=log.append)
    assert store2.run_dir == store.run_dir
    assert records2 == records
    assert log == [f"run directory: {store.run_dir}"] + [
        f"level {lvl}: finished earlier, loaded" for lvl in range(4)
    ]
    assert (store.run_dir / "results.json").read_text() == before


def test_different_configs_get_different_run_dirs(main_run, out_dir):
    store, _ = main_run
    other = dataclasses.replace(MAIN, seed=1)
    assert other.digest() != MAIN.digest()
    one = jax.devices()[:1]
    name = "lottery-lenet_300_100-mnist1d"
    opened = RunStore.open(out_dir, run_identity(other, one), name=name)
    assert opened.run_dir != store.run_dir
    assert store.run_dir.name.endswith(config_digest(run_identity(MAIN, one))[:12])
    again = LotteryConfig.from_dict(MAIN.to_dict())
    assert RunStore.open(out_dir, run_identity(again, one), name=name).run_dir == store.run_dir


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_finetuning_at_a_final_rate_of_zero_is_refused(schedule):
    # Both schedules decay to 0, so fine-tuning at their final rate would not train.
    with pytest.raises(ValueError, match="final rate, which is 0"):
        LotteryConfig(rewind_mode="finetune", schedule=schedule)
    LotteryConfig(rewind_mode="lr", schedule=schedule)  # LR rewinding is fine


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_one_shot_meets_the_requested_sparsity_exactly(main_run, main_exp, sparsity):
    """(No training: the pruning of the stored dense level.) Layerwise one-shot with the
    output layer's relative half rate: the total is met to the weight."""
    store, _ = main_run
    exp = Experiment(dataclasses.replace(MAIN, one_shot=(sparsity,), levels=ONE_SHOT_LEVELS))
    prev = exp.unpack(store.load_level(0)[0])
    total = sum(SIZES.values())
    for alive in counts(exp._prune_to(prev, sparsity)):
        assert sum(alive.values()) == total - round(sparsity * total)
        # The output layer keeps more than the others (its rate is relatively halved).
        assert alive["output/kernel"] / SIZES["output/kernel"] > 1 - sparsity
        assert alive["dense1/kernel"] / SIZES["dense1/kernel"] < 1 - sparsity


def test_extreme_sparsity_keeps_a_weight_in_every_layer_by_default(main_run):
    """IMP at fraction 0.99999 and one-shot 0.999999 left layers with no weight; the
    default min_keep=1 keeps one in each (no training: the pruning of level 0)."""
    store, _ = main_run
    for kwargs, prune in (
        (dict(prune_fraction=0.99999), lambda e, p: e._prune_step(p.trained, p.mask)),
        (dict(one_shot=(0.999999,), levels=ONE_SHOT_LEVELS), lambda e, p: e._prune_to(p, 0.999999)),
    ):
        for min_keep, collapses in ((1, False), (0, True)):
            exp = Experiment(dataclasses.replace(MAIN, min_keep=min_keep, **kwargs))
            prev = exp.unpack(store.load_level(0)[0])
            for alive in counts(prune(exp, prev)):
                assert alive["dense1/kernel"] == (0 if collapses else 1), (kwargs, min_keep)
                assert min(alive.values()) >= min_keep


def test_layer_collapse_is_reported_in_records_table_and_warning(out_dir):
    """With min_keep=0, IMP at fraction 0.99999 empties both hidden layers (the output
    layer, at half rate, keeps half): every level-1 record names them, the table counts
    them and run_lottery warns. Shares MAIN's compiled training programs."""
    config = dataclasses.replace(MAIN, levels=1, prune_fraction=0.99999, min_keep=0)
    with pytest.warns(LayerCollapseWarning) as caught:
        _, records = run_lottery(config, out_dir=str(out_dir))
    collapsed = ["dense1/kernel", "dense2/kernel"]
    for r in records:
        assert r["collapsed"] == (collapsed if r["level"] == 1 else []), r["variant"]
    (message,) = [str(w.message) for w in caught if w.category is LayerCollapseWarning]
    assert "level 1" in message and "dense1/kernel, dense2/kernel" in message
    assert "ticket seeds 0, 1" in message
    rows = summarize(records)
    assert [row["collapsed"] for row in rows] == [[], collapsed]
    table = format_table(rows).splitlines()
    assert table[0].split()[-2] == "collapsed"
    assert [line.split()[-2] for line in table[2:]] == ["-", "2"]


def test_divergence_is_reported_in_records_table_and_one_warning(out_dir, monkeypatch):
    """A NaN in seed 1's initial weights (MAIN's level-0 program, compiled already):
    seed 1 is marked diverged in its record and the table, and one warning names it."""
    original = imp.init_seeds

    def poisoned(model):
        init = original(model)

        def fn(keys):
            params, state = jax.device_get(init(keys))
            params = jax.tree.map(np.array, params)
            params["dense1"]["kernel"][1, 0, 0] = np.nan
            return params, state

        return fn

    monkeypatch.setattr(imp, "init_seeds", poisoned)
    config = dataclasses.replace(MAIN, levels=0, seed=7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, records = run_lottery(config, out_dir=str(out_dir))
    assert [r["diverged"] for r in records] == [False, True]
    assert records[0]["diverged_step"] == -1 and records[1]["diverged_step"] >= 0
    (message,) = [str(w.message) for w in caught if issubclass(w.category, DivergenceWarning)]
    assert f"ticket seed 1 at step {records[1]['diverged_step']}" in message
    table = format_table(summarize(records)).splitlines()
    assert table[0].split()[-1] == "diverged" and table[2].split()[-1] == "1"


def test_run_directory_names_device_count_and_x64(main_run, out_dir, monkeypatch):
    store, _ = main_run
    one = jax.devices()[:1]
    # Resuming on one device (as MAIN ran) finds MAIN's run; its config.json says so.
    assert run_identity(MAIN, one)["runtime"] == {"x64": False, "devices": 1, "platform": "cpu"}
    stored_config = RunStore.read_results(store.run_dir)["config"]
    assert stored_config == run_identity(MAIN, one)

    class Started(Exception):
        pass

    def no_training(*args, **kwargs):
        raise Started

    monkeypatch.setattr(imp, "train_seeds", no_training)
    assert run_lottery(MAIN, out_dir=str(out_dir), devices=one)[0].run_dir == store.run_dir
    # Two devices (the seeds split over them changes float rounding): another directory.
    before = set(out_dir.iterdir())
    with pytest.raises(Started):
        run_lottery(MAIN, out_dir=str(out_dir), devices=one * 2)
    (new,) = set(out_dir.iterdir()) - before
    assert new.name.startswith("lottery-lenet_300_100-mnist1d-") and new != store.run_dir
    # x64 mode as well.
    jax.config.update("jax_enable_x64", True)
    try:
        x64 = run_identity(MAIN, one)
    finally:
        jax.config.update("jax_enable_x64", False)
    assert x64["runtime"]["x64"] is True
    dirs = {RunStore.open(out_dir / "ids", d, name="x").run_dir for d in (x64, stored_config)}
    assert len(dirs) == 2


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
def test_sgd_weight_decay_is_coupled_l2_as_in_pytorch(optimizer):
    """Weight decay with sgd/momentum joins the gradient: w <- w - lr (g + wd w) (plain
    SGD), hand-computed; momentum accumulates g + wd w. Without it the weights differ."""
    lr, wd, beta = 0.1, 0.01, 0.9
    config = LotteryConfig(optimizer=optimizer, learning_rate=lr, weight_decay=wd)
    target = np.array([1.0, -2.0, 0.5], np.float32)
    grad = lambda w: w - target  # noqa: E731  (loss ½|w − target|²)

    def run(opt):
        w = {"w": jnp.asarray([0.3, 0.7, -1.1], jnp.float32)}
        state = opt.init(w)
        for _ in range(5):
            updates, state = opt.update({"w": grad(w["w"])}, state, w)
            w = optax.apply_updates(w, updates)
        return np.asarray(w["w"])

    w = np.array([0.3, 0.7, -1.1], np.float32)
    velocity = np.zeros(3, np.float32)
    for _ in range(5):
        g = grad(w) + wd * w
        velocity = g + beta * velocity if optimizer == "momentum" else g
        w = w - lr * velocity
    decayed = run(make_optimizer(config))
    np.testing.assert_allclose(decayed, w, rtol=1e-6)
    plain = run(make_optimizer(dataclasses.replace(config, weight_decay=0.0)))
    assert not np.allclose(plain, decayed, rtol=1e-4)
