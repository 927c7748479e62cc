"""The soup and COLT workflows end to end on a tiny MNIST-1D MLP (40 -> 8 -> 10: prunable
kernels of 320 and 80 weights), each run once per module and then rerun:

* soups: the soup and IMP prune to the hand-worked layerwise counts, the soup is exactly
  zero off its mask, members × seeds and IMP train in one program per level;
* COLT: the stored overlap is the AND of the copies' masks, each recomputed here by numpy
  magnitude pruning of the copies' trained weights; IMP's mask has the overlap's count;
  iterations are exact;
* a rerun of either trains nothing.

Both use the same training settings, so their dense level compiles once."""

from __future__ import annotations

import numpy as np
import pytest

from jaxticket.colt import ColtConfig, run_colt
from jaxticket.colt import run as colt_run
from jaxticket.colt.report import format_table as colt_table
from jaxticket.colt.report import summarize as colt_summary
from jaxticket.soups import SoupConfig, run_soups
from jaxticket.soups import run as soup_run_lib
from jaxticket.soups.report import format_table, summarize

TINY = dict(model="mlp", hidden=(8,), seeds=2, steps=20, eval_every=10, val_size=100, batch_size=32)
LEAVES = ("dense1/kernel", "output/kernel")


class Recorder:
    """``train_seeds`` that records each call's run count, data size and result."""

    def __init__(self, inner):
        self.calls, self.inner = [], inner

    def __call__(self, model, data, *args, **kwargs):
        result = self.inner(model, data, *args, **kwargs)
        self.calls.append((int(kwargs["data_keys"].shape[0]), int(data.x_train.shape[0]), result))
        return result


def run_twice(module, run, config, out):
    out_calls = []
    for _ in range(2):
        with pytest.MonkeyPatch.context() as mp:
            recorder = Recorder(module.train_seeds)
            mp.setattr(module, "train_seeds", recorder)
            store, records = run(config, out_dir=out)
        out_calls.append(recorder.calls)
    return store, records, out_calls


@pytest.fixture(scope="module")
def soups(tmp_path_factory):
    out = tmp_path_factory.mktemp("soups")
    return run_twice(soup_run_lib, run_soups, SoupConfig(**TINY, levels=1, members=2), out)


@pytest.fixture(scope="module")
def colt(tmp_path_factory):
    out = tmp_path_factory.mktemp("colt")
    return run_twice(colt_run, run_colt, ColtConfig(**TINY, cycles=1, segments=2), out)


def test_soup_prunes_to_the_hand_worked_counts_and_keeps_its_mask(soups):
    store, records, _ = soups
    arrays, _ = store.load_level(1)
    # 20 % of 320 = 64 pruned in dense1, half the rate (10 %) of 80 = 8 in the output.
    for field in ("mask", "imp_mask"):
        for leaf, pruned in zip(LEAVES, (64, 8), strict=True):
            m = np.asarray(arrays[f"{field}/{leaf}"])
            assert [int((~m[s]).sum()) for s in range(2)] == [pruned, pruned]
    for leaf in LEAVES:
        mask = np.asarray(arrays[f"mask/{leaf}"])
        assert np.all(np.asarray(arrays[f"soup/{leaf}"])[~mask] == 0)
    soup = [r for r in records if r["kind"] == "soup"]
    assert [r["seed"] for r in soup] == [0, 1]
    assert all(r["remaining"] == pytest.approx(328 / 400) for r in soup)


def test_soup_members_and_imp_train_in_one_program_with_exact_iterations(soups):
    _, records, calls = soups
    # Level 0: the 2 dense seeds; level 1: 2 members x 2 seeds + 2 IMP seeds, one call.
    assert [n for n, _, _ in calls[0]] == [2, 6]
    kinds = [(r["level"], r["kind"], r["member"]) for r in records]
    assert kinds.count((1, "member", 0)) == kinds.count((1, "member", 1)) == 2
    assert all(r["iterations"] == 20 for r in records if r["kind"] != "soup")
    assert all(r["history"]["step"][-1] == 20 for r in records if r["kind"] != "soup")
    rows = summarize(records)
    assert [row["level"] for row in rows] == [0, 1]
    assert "soup acc %" in format_table(rows)


def numpy_magnitude_mask(w, alive, prune):
    """``alive`` with the ``prune`` smallest |w| among the alive entries switched off."""
    scores = np.where(alive, np.abs(w), np.inf).ravel()
    off = np.argsort(scores, kind="stable")[:prune]
    keep = alive.ravel().copy()
    keep[off] = False
    return keep.reshape(alive.shape)


def test_colt_overlap_is_the_and_of_the_copies_magnitude_masks(colt):
    store, _, calls = colt
    # Cycle 0: the dense run on all 3900 examples, then one call per segment of 1950.
    (dense_n, dense_size, _), *copies = calls[0][:3]
    assert (dense_n, dense_size) == (2, 3900)
    assert [(n, size) for n, size, _ in copies] == [(2, 1950), (2, 1950)]
    arrays, _ = store.load_level(0)
    for leaf, prune in zip(LEAVES, (64, 8), strict=True):
        key = tuple(leaf.split("/"))
        stored = np.asarray(arrays[f"mask/{leaf}"])
        for s in range(2):
            expected = np.ones(stored.shape[1:], bool)
            for _, _, result in copies:
                w = np.asarray(result.params[key[0]][key[1]][s])
                expected &= numpy_magnitude_mask(w, np.ones(w.shape, bool), prune)
            np.testing.assert_array_equal(stored[s], expected)
    # IMP's mask at the overlap's total sparsity, seed by seed.
    for s in range(2):
        colt_alive = sum(int(np.asarray(arrays[f"mask/{leaf}"])[s].sum()) for leaf in LEAVES)
        imp_alive = sum(int(np.asarray(arrays[f"imp_mask/{leaf}"])[s].sum()) for leaf in LEAVES)
        assert imp_alive == colt_alive <= 400 - 72


def test_colt_iterations_are_exact(colt):
    _, records, calls = colt
    assert [n for n, _, _ in calls[0]] == [2, 2, 2, 4]  # dense, 2 copies, tickets (2 x 2)
    by_kind = {(r["cycle"], r["kind"]): r for r in records}
    # COLT: 1 cycle x 2 copies x 20 // 2 steps; IMP: its dense level of 20 steps.
    assert by_kind[(1, "colt")]["find_iterations"] == 20
    assert by_kind[(1, "colt")]["find_iterations_parallel"] == 10
    assert by_kind[(1, "imp")]["find_iterations"] == 20
    assert by_kind[(0, "copy")]["history"]["step"][-1] == 10
    assert by_kind[(1, "colt")]["history"]["step"][-1] == 20
    assert "find iters" in colt_table(colt_summary(records))


def test_reruns_train_nothing(soups, colt):
    assert soups[2][1] == [] and colt[2][1] == []
