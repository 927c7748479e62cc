"""Allocation: exact rounding, layerwise scale, ERK/ER densities worked by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxticket.pruning import LeafInfo, er, erk, erk_densities, fraction_of, global_, layerwise


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 1_000_000), st.integers(0, 2**31 - 10**7))
def test_fraction_of_is_exact_round_half_up(big, n):
    f = big / 1_000_000
    assert int(fraction_of(f, n)) == (big * n + 500_000) // 1_000_000


def test_fraction_of_halves_round_up_despite_float32():
    # float32(0.7)·5 = 3.4999998, but 0.7 of 5 is 3.5, which rounds up to 4.
    assert int(fraction_of(0.7, 5)) == 4
    assert int(fraction_of(0.3, 5)) == 2
    assert int(fraction_of(0.5, 1)) == 1
    assert int(fraction_of(0.25, 2)) == 1
    assert int(fraction_of(0.2, 235_200)) == 47_040
    traced = jax.jit(fraction_of)(jnp.float32(0.7), jnp.int32(5))
    assert int(traced) == 4


def test_fraction_of_clips_and_counts_nan_as_zero():
    # Traced rates cannot be refused: out of range they clip, NaN prunes nothing.
    run = jax.jit(fraction_of)
    assert [int(run(f, 10)) for f in (jnp.nan, -0.2, 1.5, jnp.inf, -jnp.inf)] == [0, 0, 10, 10, 0]


def _leaves(*shapes, paths=None):
    paths = paths or [f"l{i}/kernel" for i in range(len(shapes))]
    return [LeafInfo(p, s, int(np.prod(s))) for p, s in zip(paths, shapes, strict=True)]


def test_global_one_group_exact():
    leaves = _leaves((4, 5), (5, 2))
    groups = global_()(leaves, [jnp.int32(20), jnp.int32(7)], fraction=0.3)
    assert len(groups) == 1 and groups[0].leaves == (0, 1)
    assert int(groups[0].keep) == 27 - 8  # 0.3·27 = 8.1 -> 8 pruned
    groups = global_()(leaves, [jnp.int32(20), jnp.int32(10)], sparsity=0.5)
    assert int(groups[0].keep) == 15
    # A sparsity below the current one prunes nothing (keep <= alive).
    groups = global_()(leaves, [jnp.int32(5), jnp.int32(5)], sparsity=0.5)
    assert int(groups[0].keep) == 10


def test_layerwise_scale_halves_the_rate():
    leaves = _leaves((10, 10), (10, 10), paths=["hidden/kernel", "out/kernel"])
    alive = [jnp.int32(100), jnp.int32(100)]
    groups = layerwise({"out/*": 0.5})(leaves, alive, fraction=0.2)
    assert [int(g.keep) for g in groups] == [80, 90]
    groups = layerwise({"out/*": 0.5})(leaves, alive, sparsity=0.6)
    assert [int(g.keep) for g in groups] == [40, 70]


def test_layerwise_unknown_pattern_names_pattern_and_paths():
    leaves = _leaves((2, 2), paths=["dense/kernel"])
    with pytest.raises(ValueError, match=r"'output/\*'.*dense/kernel"):
        layerwise({"output/*": 0.5})(leaves, [jnp.int32(4)], fraction=0.2)


def test_erk_densities_by_hand():
    # Three dense kernels (n_in, n_out); ERK raw density = (n_in + n_out)/(n_in·n_out):
    #   A (4, 4):   8/16  = 0.5,   16 weights
    #   B (8, 4):  12/32  = 0.375, 32 weights
    #   C (40, 10): 50/400 = 0.125, 400 weights        (448 in all)
    # Target: keep 184 of 448 (density 184/448).
    # Pass 1: ε = 184 / (0.5·16 + 0.375·32 + 0.125·400) = 184/70 = 2.629;
    #         A would get 1.31 > 1 -> dense (B 0.99 and C 0.33 are fine).
    # Pass 2: ε = (184 - 16) / (12 + 50) = 168/62 = 2.710; now B would get 1.016 > 1 -> dense.
    # Pass 3: ε = (184 - 16 - 32) / 50 = 2.72; C gets 0.125·2.72 = 0.34, and nothing exceeds 1.
    # So densities are [1, 1, 0.34]: 16 + 32 + 136 = 184 weights kept.
    raw = [0.5, 0.375, 0.125]
    dens = erk_densities(raw, [16, 32, 400], 184 / 448)
    np.testing.assert_allclose(dens, [1.0, 1.0, 0.34], rtol=1e-5)
    leaves = _leaves((4, 4), (8, 4), (40, 10))
    alive = [jnp.int32(16), jnp.int32(32), jnp.int32(400)]
    groups = erk()(leaves, alive, sparsity=264 / 448)
    assert [int(g.keep) for g in groups] == [16, 32, 136]
    # A fraction is a target sparsity: from dense, fraction = sparsity.
    groups = erk()(leaves, alive, fraction=264 / 448)
    assert [int(g.keep) for g in groups] == [16, 32, 136]
    # Traced sparsity gives the same counts.
    keeps = jax.jit(lambda s: [g.keep for g in erk()(leaves, alive, sparsity=s)])(264 / 448)
    assert [int(k) for k in keeps] == [16, 32, 136]


def test_erk_no_clipping_uniform_epsilon():
    # Both raw 0.5 (4x4 kernels): density = target everywhere.
    dens = erk_densities([0.5, 0.5], [16, 16], 0.25)
    np.testing.assert_allclose(dens, [0.25, 0.25], rtol=1e-6)


def test_erk_fraction_of_current_sparsity():
    # Current: 16 of 32 alive (sparsity 0.5); fraction 0.5 -> target sparsity 0.75 -> keep 8.
    leaves = _leaves((4, 4), (4, 4))
    groups = erk()(leaves, [jnp.int32(8), jnp.int32(8)], fraction=0.5)
    assert [int(g.keep) for g in groups] == [4, 4]


def test_er_uses_channels_only():
    # Conv kernel (3, 3, 2, 4): ERK raw = (3+3+2+4)/72 = 1/6, ER raw = (2+4)/8 = 0.75.
    # Paired with a (6, 6) dense layer (raw 1/3 for both), the ratios of densities differ.
    leaves = _leaves((3, 3, 2, 4), (6, 6))
    alive = [jnp.int32(72), jnp.int32(36)]
    k_erk = [int(g.keep) for g in erk()(leaves, alive, sparsity=0.75)]
    k_er = [int(g.keep) for g in er()(leaves, alive, sparsity=0.75)]
    # ERK: ε = 27/(12 + 12) = 1.125 -> densities 0.1875, 0.375 -> keep 13.5 -> 14, 13.5 -> 14
    assert k_erk == [14, 14]
    # ER: ε = 27/(54 + 12) = 0.409 -> densities 0.307, 0.136 -> keep 22.09 -> 22, 4.91 -> 5
    assert k_er == [22, 5]
