"""Structured IMP (issue 13) through ``LotteryConfig(structure="channels")``: exact unit
counts per level, masks that are structured and compact to a smaller network that
computes the same logits, and the output group never pruned."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lottery_shared import compile_cache  # noqa: F401  (fixture: shared XLA cache)

from jaxticket import models
from jaxticket.lottery.config import ConfigError, LotteryConfig
from jaxticket.lottery.imp import run_lottery
from jaxticket.masks import apply_mask
from jaxticket.structured import dependency_groups
from jaxticket.structured.compact import compact
from jaxticket.structured.masks import check_structured
from jaxticket.structured.pruner import structured_dense_mask, structured_pruner
from jaxticket.workflow.store import unflatten_into

# The shared tiny lottery run's training settings (tests/test_lottery.py's MAIN), so that
# in a full session its dense level and init come from the shared persistent XLA cache.
IMP = LotteryConfig(
    levels=2,  # LeNet-300-100 on MNIST-1D (40 inputs)
    rewind=20,
    structure="channels",
    controls=("reinit",),
    seeds=2,
    steps=40,
    eval_every=20,
    val_size=200,
    batch_size=60,
)


@pytest.fixture(scope="module")
def imp_run(tmp_path_factory):
    store, records = run_lottery(IMP, out_dir=str(tmp_path_factory.mktemp("structured-imp")))
    return store, records


def test_structured_imp_removes_exact_units_per_level(imp_run):
    """Layerwise 20 % of each hidden group's units per level (the output layer never):
    300 -> 240 -> 192 and 100 -> 80 -> 64 units, so dense1 keeps 192 of its 300 columns,
    dense2 192·64 of 300·100 weights and the output layer its 64 live rows of 100."""
    _, records = imp_run
    last = [r for r in records if r["level"] == 2]
    assert {r["variant"] for r in last} == {"ticket", "reinit"}
    for r in last:
        layer = r["layer_remaining"]
        assert layer["dense1/kernel"] == layer["dense1/bias"] == layer["dense2/bias"] == 0.64
        assert layer["dense2/kernel"] == pytest.approx(0.4096, abs=1e-12)
        assert layer["output/kernel"] == 0.64 and "output/bias" not in layer
        assert r["collapsed"] == []


def test_structured_imp_masks_are_structured_and_compact(imp_run):
    store, _ = imp_run
    arrays, _ = store.load_level(2)
    model = models.get("lenet_300_100", input_shape=(40,), num_classes=10)
    params, state = jax.eval_shape(model.init, jax.random.key(0))  # templates
    groups = dependency_groups(model, params, state)
    masks = unflatten_into(structured_dense_mask(groups, params), arrays, "mask")
    trained = unflatten_into(params, arrays, "trained")
    seed0 = lambda tree: jax.tree.map(lambda x: None if x is None else np.asarray(x)[0], tree)
    mask, weights = seed0(masks), seed0(trained)
    keep = check_structured(groups, mask)
    assert [int(keep[g].sum()) for g in ("dense1/kernel", "dense2/kernel")] == [192, 64]
    small, small_state, small_model = compact(model, weights, state, mask, groups)
    assert small["dense1"]["kernel"].shape == (40, 192)
    assert small["dense2"]["kernel"].shape == (192, 64) and small["output"]["kernel"].shape == (
        64,
        10,
    )
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 40)), jnp.float32)
    want, _ = model.apply(apply_mask(weights, mask), state, x, train=False)
    got, _ = small_model.apply(small, small_state, x, train=False)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_structured_imp_config_refuses_unstructured_controls():
    with pytest.raises(ConfigError, match="controls") as err:
        LotteryConfig(structure="channels")
    assert err.value.field == "controls"
    with pytest.raises(ConfigError, match="structure must be one of"):
        LotteryConfig(structure="filters", controls=())
    # the new fields at their defaults leave a config's digest alone
    assert "structure" not in LotteryConfig().to_dict()


def test_structured_pruner_skips_the_output_group_unless_asked():
    model = models.get("mlp", input_shape=(40,), num_classes=10)
    by_name = lambda p: {g.name: g.prunable for g in p.groups}
    assert by_name(structured_pruner(model))["output/kernel"] is False
    assert by_name(structured_pruner(model, prune_outputs=True))["output/kernel"] is True
    with pytest.raises(ValueError, match="needs loss_fn"):
        structured_pruner(model, score="taylor")
