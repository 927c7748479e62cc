"""Tests for jaxticket.stability.overlap (issue 12): N × N Jaccard / Hamming of masks against
plain-numpy loops, the hand cases (itself: 1 / 0; complement: 0 / 1), the random baseline
against the hypergeometric closed form (itself checked by enumerating every subset), masks
read from the session's tiny lottery run, the ``jaxticket overlap`` command on it, and bad input."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lottery_shared import shared_tiny_run
from test_lottery import MAIN

from jaxticket.lottery.imp import run_lottery
from jaxticket.stability import overlap_command
from jaxticket.stability.overlap import (
    expected_hamming,
    expected_jaccard,
    overlap_matrix,
    pairs_mean,
    random_baseline,
)
from jaxticket.stability.overlap_runs import masks_from_run, masks_from_runs

# One structure for the compiled cases (a None leaf is ignored): every test below with
# these shapes shares one compiled program per mask count.
SHAPES = {"a": (3, 4), "b": (5,)}


def make_masks(bits: np.ndarray) -> list[dict]:
    """Masks of SHAPES from a (N, 17) bool array, with a None leaf in between."""
    return [{"a": row[:12].reshape(3, 4), "bias": None, "b": row[12:]} for row in bits]


def reference(masks: list[dict]) -> dict:
    """Jaccard and Hamming of every pair by Python loops over the entries."""
    n = len(masks)
    out = {k: np.zeros((n, n)) for k in ("jaccard", "hamming", "a_jaccard", "a_hamming")}
    for i, j in itertools.product(range(n), repeat=2):
        for prefix, leaves in (("", ("a", "b")), ("a_", ("a",))):
            x = [bool(v) for k in leaves for v in np.ravel(masks[i][k])]
            y = [bool(v) for k in leaves for v in np.ravel(masks[j][k])]
            inter = sum(p and q for p, q in zip(x, y, strict=True))
            union = sum(p or q for p, q in zip(x, y, strict=True))
            out[prefix + "jaccard"][i, j] = inter / union if union else 1.0
            out[prefix + "hamming"][i, j] = sum(p != q for p, q in zip(x, y, strict=True)) / len(x)
    return out


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=3 * 17, max_size=3 * 17))  # N = 3: one compile
def test_overlap_matches_numpy_loops(bits):
    masks = make_masks(np.array(bits, bool).reshape(-1, 17))
    got, want = overlap_matrix(masks), reference(masks)
    np.testing.assert_allclose(got["jaccard"], want["jaccard"], rtol=1e-6)
    np.testing.assert_allclose(got["hamming"], want["hamming"], rtol=1e-6)
    np.testing.assert_allclose(got["layers"]["a"]["jaccard"], want["a_jaccard"], rtol=1e-6)
    np.testing.assert_allclose(got["layers"]["a"]["hamming"], want["a_hamming"], rtol=1e-6)
    for name in ("jaccard", "hamming"):
        np.testing.assert_array_equal(got[name], got[name].T)  # symmetric
    assert sorted(got["layers"]) == ["a", "b"] and got["total"] == 17


def test_itself_is_one_zero_and_complement_zero_one():
    rng = np.random.default_rng(0)
    bits = rng.random(17) < 0.4
    bits[0], bits[1] = True, False  # neither empty nor full
    out = overlap_matrix(make_masks(np.stack([bits, bits, ~bits])))
    np.testing.assert_array_equal(out["jaccard"], [[1, 1, 0], [1, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(out["hamming"], [[0, 0, 1], [0, 0, 1], [1, 1, 0]])
    # Stacked on the leading axis: the same numbers.
    stacked = {"a": np.stack([bits[:12].reshape(3, 4)] * 3), "b": np.stack([bits[12:]] * 3)}
    stacked["a"][2], stacked["b"][2] = ~stacked["a"][2], ~stacked["b"][2]
    np.testing.assert_array_equal(overlap_matrix(stacked)["jaccard"], out["jaccard"])


def test_expected_jaccard_by_enumeration():
    # Every pair of subsets of sizes k1, k2 of 6 items, averaged: the closed form.
    n = 6
    for k1, k2 in ((0, 0), (0, 3), (2, 3), (6, 6), (1, 5)):
        js, hs = [], []
        for a in itertools.combinations(range(n), k1):
            for b in itertools.combinations(range(n), k2):
                union = len(set(a) | set(b))
                js.append(len(set(a) & set(b)) / union if union else 1.0)
                hs.append(len(set(a) ^ set(b)) / n)
        assert expected_jaccard(k1, k2, n) == pytest.approx(np.mean(js), abs=1e-12)
        assert expected_hamming(k1, k2, n) == pytest.approx(np.mean(hs), abs=1e-12)


def test_bad_masks_one_line_naming_the_leaf():
    a = {"a": np.ones((3, 4), bool), "b": np.ones(5, bool)}
    cases = [
        ([a, {"a": np.ones((3, 4), bool), "b": np.ones(6, bool)}], ValueError, "'b'"),
        ([a, {"a": np.ones((3, 4), bool), "c": np.ones(5, bool)}], ValueError, "'b'"),
        ([a, {"a": np.ones((3, 4), bool), "b": None}], ValueError, "'b'"),
        ([a, {"a": np.ones((3, 4)), "b": np.ones(5, bool)}], TypeError, "'a'"),
        ({"a": np.ones((2, 3), bool), "b": np.ones((3, 5), bool)}, ValueError, "'b'"),
        ([], ValueError, "empty"),
        ([{"a": None}], ValueError, "no prunable"),
    ]
    for masks, error, text in cases:
        with pytest.raises(error, match=text) as info:
            overlap_matrix(masks)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="draws"):
        random_baseline(jax.random.key(0), [a], draws=0)
    with pytest.raises(ValueError, match="k1, k2 <= n"):
        expected_jaccard(3, 7, 5)


# --------------------------------------------------------------------------------------
# masks of a finished run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A copy of the session's shared tiny lottery run (test_lottery's MAIN: MLP, 2 seeds,
    levels 0-3): whichever module comes first trains it, later ones only load it."""
    dest = tmp_path_factory.mktemp("overlap-runs")
    run = lambda out: run_lottery(MAIN, out_dir=str(out))  # noqa: E731
    run_dir, (_, records) = shared_tiny_run(tmp_path_factory, dest, run)
    return run_dir, records


@pytest.fixture(scope="module")
def four_masks(tiny_run):
    """Levels 1 and 2 of both seeds (4 masks): the run's masks every test below compares,
    so that they share one compiled program per kind."""
    run_dir, _ = tiny_run
    one, two = masks_from_run(run_dir, level=1), masks_from_run(run_dir, level=2)
    return one, two, {p: np.concatenate([one.masks[p], two.masks[p]]) for p in one.masks}


def test_masks_from_lottery_run(tiny_run, four_masks):
    run_dir, records = tiny_run
    one, two, four = four_masks
    assert MAIN.seeds == 2 and MAIN.levels == 3
    assert masks_from_run(run_dir).labels == ["lottery L3 seed 0", "lottery L3 seed 1"]
    assert one.labels == ["lottery L1 seed 0", "lottery L1 seed 1"]
    tickets = [r for r in records if r["variant"] == "ticket"]
    remaining = {(r["level"], r["seed"]): r["remaining"] for r in tickets}
    for s in range(2):
        assert two.sparsities[s] == pytest.approx(1 - remaining[(2, s)])
    dense = masks_from_run(run_dir, level=0)
    assert all(m.all() for m in dense.masks.values()) and dense.sparsities == [0.0, 0.0]
    by_sparsity = masks_from_run(run_dir, sparsity=1 - remaining[(1, 0)])
    assert by_sparsity.labels == one.labels
    both = masks_from_runs([run_dir, run_dir], level=2)
    assert len(both.labels) == 4 and both.runs == [str(run_dir)] * 4
    # IMP masks are nested: level 2 inside level 1, so J(L1, L2) = |L2| / |L1| per seed.
    out = overlap_matrix(four)
    alive = out["alive"]
    for s in range(2):
        assert out["jaccard"][s, 2 + s] == pytest.approx(alive[2 + s] / alive[s], rel=1e-6)


DRAWS = 100  # the command test below draws as many: one compiled baseline program


def test_random_baseline_mean_matches_closed_form(four_masks):
    *_, four = four_masks
    base = random_baseline(jax.random.key(0), four, draws=DRAWS)
    for path, masks in four.items():
        layer, n = base["layers"][path], masks[0].size
        counts = masks.reshape(4, -1).sum(1)
        for i, j in itertools.product(range(4), repeat=2):
            k1, k2 = int(counts[i]), int(counts[j])
            # The mean of DRAWS symmetrized draws: its standard error is std / sqrt(DRAWS).
            tol = 5 * layer["jaccard_std"][i, j] / np.sqrt(DRAWS) + 1e-6
            assert abs(layer["jaccard"][i, j] - expected_jaccard(k1, k2, n)) <= tol
            tol = 5 * layer["hamming_std"][i, j] / np.sqrt(DRAWS) + 1e-6
            assert abs(layer["hamming"][i, j] - expected_hamming(k1, k2, n)) <= tol
    assert base["draws"] == DRAWS and base["jaccard"].shape == (4, 4)
    np.testing.assert_array_equal(base["alive"], overlap_matrix(four)["alive"])


def test_masks_from_run_errors(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    with pytest.raises(ValueError, match="not a run directory"):
        masks_from_run(tmp_path)
    with pytest.raises(ValueError, match="no finished level 7"):
        masks_from_run(run_dir, level=7)
    with pytest.raises(ValueError, match="no level at sparsity 0.99"):
        masks_from_run(run_dir, sparsity=0.99)
    with pytest.raises(ValueError, match="not both"):
        masks_from_run(run_dir, level=1, sparsity=0.2)
    empty = tmp_path / "empty-run"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"name": "x", "digest": "0", "config": {}}))
    with pytest.raises(ValueError, match="no finished level"):
        masks_from_run(empty)


def test_overlap_command_on_tiny_run(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    parser = argparse.ArgumentParser()
    overlap_command.add_arguments(parser)
    png = tmp_path / "heat.png"
    argv = [str(run_dir)] * 2 + ["--level", "2", "--out", str(png), "--draws", str(DRAWS)]
    args = parser.parse_args(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert overlap_command.run_command(args) == 0
    text = out.getvalue()
    assert "lottery L2 seed 1" in text and "all layers" in text and f"{DRAWS} draws" in text
    lines = text.splitlines()
    row = lines[lines.index("global Jaccard |a ∧ b| / |a ∨ b|:") + 2].split()
    assert row[0] == "0" and row[1] == "1.000"  # a mask with itself
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        parser.parse_args([str(run_dir), "--level", "1", "--sparsity", "0.5"])


def test_pairs_mean():
    assert pairs_mean(np.array([[1.0, 0.2], [0.4, 1.0]])) == pytest.approx(0.3)
    assert np.isnan(pairs_mean(np.ones((1, 1))))
