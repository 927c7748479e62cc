"""Dependency groups traced from ``apply`` (jaxticket.structured.dependency_groups).

Expected groups are written out by hand for small models. The property test is independent
of the analysis' reasoning: for one unit of each group it zeroes, in plain numpy, every
member slice the group names (kernel columns, biases, BatchNorm scale and shift) and checks
that the unit then contributes nothing (perturbing its consumer rows leaves the logits
unchanged), while the same perturbation does change the logits of the intact network and
leaks when the bias is left in place. (The test models use activations with f(0) = 0;
after a sigmoid a zeroed unit would still send 0.5 to its consumer rows, which is why the
rows are members.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from jaxticket import models
from jaxticket.structured import Group, Member, check_groups, declare_groups, dependency_groups


class ResidualCNN(nnx.Module):
    """A user-written NNX CNN: conv-BN-ReLU, a conv-BN branch added back, mean, linear."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(3, 6, (3, 3), rngs=rngs)
        self.bn1 = nnx.BatchNorm(6, rngs=rngs)
        self.conv2 = nnx.Conv(6, 6, (3, 3), rngs=rngs)
        self.bn2 = nnx.BatchNorm(6, rngs=rngs)
        self.head = nnx.Linear(6, 4, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn1(self.conv1(x)))
        h = nnx.relu(h + self.bn2(self.conv2(h)))
        return self.head(h.mean(axis=(1, 2)))


class AttentionNet(nnx.Module):
    """A residual ``nnx.MultiHeadAttention`` block: kernels with separate head axes."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.inp = nnx.Linear(3, 8, rngs=rngs)
        self.att = nnx.MultiHeadAttention(
            num_heads=2, in_features=8, qkv_features=8, decode=False, rngs=rngs
        )
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        h = self.inp(x)
        return self.head((h + self.att(h)).mean(axis=1))


class NormDepthwiseNet(nnx.Module):
    """LayerNorm over the first layer's units, then a depthwise conv tied to its input."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.a = nnx.Linear(4, 6, rngs=rngs)
        self.ln = nnx.LayerNorm(6, rngs=rngs)
        self.b = nnx.Linear(6, 5, rngs=rngs)
        self.dw = nnx.Conv(5, 5, (3,), feature_group_count=5, rngs=rngs)
        self.c = nnx.Linear(5, 3, rngs=rngs)

    def __call__(self, x):
        h = self.b(nnx.gelu(self.ln(self.a(x))))
        h = self.dw(jnp.repeat(h[:, None, :], 4, axis=1)).mean(axis=1)
        return self.c(nnx.tanh(h))


class LoopNet(nnx.Module):
    """Applies its layer in a ``fori_loop``: a ``while`` the analysis has no rule for."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.dense = nnx.Linear(4, 4, rngs=rngs)
        self.head = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(jax.lax.fori_loop(0, 2, lambda i, h: nnx.relu(self.dense(h)), x))


def _residual_cnn():
    return models.from_nnx(lambda rngs: ResidualCNN(rngs=rngs), input_shape=(6, 6, 3))


MODELS = {
    "mlp": lambda: models.get("mlp", input_shape=(4,), num_classes=3, hidden=(3, 2)),
    "conv2": lambda: models.get("conv2", input_shape=(8, 8, 3), num_classes=3),
    "resnet20": lambda: models.get("resnet20", input_shape=(8, 8, 3), num_classes=3, width=4),
    "transformer1": lambda: models.get(
        "transformer1", input_shape=(2,), num_classes=5, dim=8, heads=2, mlp_ratio=2
    ),
    "embed_mlp": lambda: models.get(
        "embed_mlp", input_shape=(2,), num_classes=5, dim=3, hidden=(4,)
    ),
    "cnn1d": lambda: models.get("cnn1d", input_shape=(12,), num_classes=3, channels=4),
    "residual_cnn": _residual_cnn,
    "nnx_attention": lambda: models.from_nnx(
        lambda rngs: AttentionNet(rngs=rngs), input_shape=(4, 3)
    ),
    "norm_depthwise": lambda: models.from_nnx(
        lambda rngs: NormDepthwiseNet(rngs=rngs), input_shape=(4,)
    ),
}


def P(*path, axis, inner=1, role="producer"):
    return Member("params", tuple(path), axis, inner, role)


def S(*path):
    return Member("state", tuple(path), 0, 1, "norm")


def _same(groups, expected):
    def canon(g):
        return (g.name, g.size, g.prunable, g.kind, frozenset(g.members))

    assert [canon(g) for g in groups] == [canon(g) for g in expected]


def _by_name(groups):
    return {g.name: g for g in groups}


# Hand-worked groups.


def test_mlp_groups_by_hand(lab):
    groups = lab.groups("mlp")
    dense = [
        Group(
            f"dense{i}/kernel",
            width,
            (
                P(f"dense{i}", "kernel", axis=1),
                P(f"dense{i}", "bias", axis=0, role="bias"),
                P(nxt, "kernel", axis=0, role="consumer"),
            ),
        )
        for i, width, nxt in ((1, 3, "dense2"), (2, 2, "output"))
    ]
    out = (P("output", "kernel", axis=1), P("output", "bias", axis=0, role="bias"))
    _same(groups, [*dense, Group("output/kernel", 3, out, prunable=False)])
    outputs = dependency_groups(MODELS["mlp"](), prune_outputs=True)
    assert _by_name(outputs)["output/kernel"].prunable


def test_conv2_flatten_feeds_dense_rows_channel_minor(lab):
    groups = _by_name(lab.groups("conv2"))
    assert list(groups) == [
        "conv1/kernel", "conv2/kernel", "dense1/kernel", "dense2/kernel", "output/kernel"
    ]  # fmt: skip
    # (4, 4, 64) flattened: unit j owns rows {o * 64 + j}, o < 16, so inner=1, outer=16.
    want = Group(
        "conv2/kernel",
        64,
        (
            P("conv2", "kernel", axis=3),
            P("conv2", "bias", axis=0, role="bias"),
            P("dense1", "kernel", axis=0, role="consumer"),
        ),
        kind="channels",
    )
    _same([groups["conv2/kernel"]], [want])
    assert groups["dense1/kernel"].kind == "units"


def test_resnet_stage_is_one_group_through_the_additions(lab):
    groups = lab.groups("resnet20")
    by = _by_name(groups)
    assert len(groups) == 1 + 9 + 2 + 1  # stage 1 with stem, 9 block interiors, 2 stages, output
    stage1 = by["conv1/kernel"]
    blocks = [f"stage1_block{b}" for b in (1, 2, 3)]
    producers = {("conv1", "kernel")} | {(b, "conv2", "kernel") for b in blocks}
    consumers = {(b, "conv1", "kernel") for b in blocks} | {
        ("stage2_block1", "conv1", "kernel"),
        ("stage2_block1", "shortcut_conv", "kernel"),
    }
    norms = [("bn1",)] + [(b, "bn2") for b in blocks]
    want = (
        [P(*p, axis=3) for p in producers]
        + [P(*c, axis=2, role="consumer") for c in consumers]
        + [P(*n, leaf, axis=0, role="norm") for n in norms for leaf in ("scale", "bias")]
        + [S(*n, leaf) for n in norms for leaf in ("mean", "var")]
    )
    _same([stage1], [Group("conv1/kernel", 4, tuple(want), kind="channels")])
    stage2 = by["stage2_block1/conv2/kernel"]
    produced = {m.path for m in stage2.members if m.role == "producer"}
    assert produced == {
        ("stage2_block1", "conv2", "kernel"),
        ("stage2_block1", "shortcut_conv", "kernel"),
        ("stage2_block2", "conv2", "kernel"),
        ("stage2_block3", "conv2", "kernel"),
    }
    stage3 = by["stage3_block1/conv2/kernel"]
    assert P("output", "kernel", axis=0, role="consumer") in stage3.members
    interior = by["stage2_block2/conv1/kernel"]
    assert {(m.path[-2], m.axis, m.role) for m in interior.members if m.collection == "params"} == {
        ("conv1", 3, "producer"),
        ("bn1", 0, "norm"),
        ("conv2", 2, "consumer"),
    }
    assert by["output/kernel"].prunable is False


def test_attention_heads_and_residual_stream(lab):
    groups = _by_name(lab.groups("transformer1"))
    qkv = [P(n, "kernel", axis=1, inner=4) for n in ("query", "key", "value")]
    heads = Group(
        "query/kernel",
        2,
        (*qkv, P("attn_out", "kernel", axis=0, inner=4, role="consumer")),
        kind="heads",
    )
    stream = Group(
        "embed/embedding",
        8,
        (
            P("embed", "embedding", axis=1),
            P("pos_embed", axis=1, role="bias"),
            P("attn_out", "kernel", axis=1),
            P("mlp_out", "kernel", axis=1),
            P("mlp_out", "bias", axis=0, role="bias"),
            *(P(n, "kernel", axis=0, role="consumer") for n in ("query", "key", "value")),
            P("mlp_in", "kernel", axis=0, role="consumer"),
            P("output", "kernel", axis=0, role="consumer"),
        ),
    )
    mlp = Group(
        "mlp_in/kernel",
        16,
        (
            P("mlp_in", "kernel", axis=1),
            P("mlp_in", "bias", axis=0, role="bias"),
            P("mlp_out", "kernel", axis=0, role="consumer"),
        ),
    )
    _same([groups[n] for n in ("embed/embedding", "query/kernel", "mlp_in/kernel")],
          [stream, heads, mlp])  # fmt: skip
    assert set(groups) == {"embed/embedding", "query/kernel", "mlp_in/kernel", "output/kernel"}


def test_embedding_width_feeds_flattened_rows(lab):
    groups = _by_name(lab.groups("embed_mlp"))
    want = Group(
        "embed/embedding",
        3,
        (P("embed", "embedding", axis=1), P("dense1", "kernel", axis=0, role="consumer")),
    )
    _same([groups["embed/embedding"]], [want])


def test_user_nnx_cnn_with_batchnorm_and_residual(lab):
    groups = lab.groups("residual_cnn")
    bn = [("bn1",), ("bn2",)]
    want = (
        P("conv1", "kernel", axis=3),
        P("conv1", "bias", axis=0, role="bias"),
        P("conv2", "kernel", axis=3),
        P("conv2", "bias", axis=0, role="bias"),
        P("conv2", "kernel", axis=2, role="consumer"),
        P("head", "kernel", axis=0, role="consumer"),
        *(P(*n, leaf, axis=0, role="norm") for n in bn for leaf in ("scale", "bias")),
        *(S(*n, leaf) for n in bn for leaf in ("mean", "var")),
    )
    head = (P("head", "kernel", axis=1), P("head", "bias", axis=0, role="bias"))
    _same(
        groups,
        [Group("conv1/kernel", 6, want, kind="channels"), Group("head/kernel", 4, head, False)],
    )


def test_nnx_attention_heads_on_their_own_kernel_axis(lab):
    groups = _by_name(lab.groups("nnx_attention"))
    qkv = [("att", n) for n in ("query", "key", "value")]
    heads = Group(
        "att/query/kernel",
        2,
        (
            *(P(*n, "kernel", axis=1) for n in qkv),
            *(P(*n, "bias", axis=0, role="bias") for n in qkv),
            P("att", "out", "kernel", axis=0, role="consumer"),
        ),
        kind="heads",
    )
    _same([groups["att/query/kernel"]], [heads])
    # The per-head value width is a group; the query/key width is not (q.k is scaled by
    # 1/sqrt of it, a constant the trace cannot tie to the shape).
    assert set(groups) == {"inp/kernel", "att/query/kernel", "att/value/kernel", "head/kernel"}


def test_layernorm_units_are_not_a_group_and_depthwise_ties_channels(lab):
    groups = lab.groups("norm_depthwise")
    tied = Group(
        "b/kernel",
        5,
        (
            P("b", "kernel", axis=1),
            P("b", "bias", axis=0, role="bias"),
            P("dw", "kernel", axis=2),
            P("dw", "bias", axis=0, role="bias"),
            P("c", "kernel", axis=0, role="consumer"),
        ),
        kind="channels",
    )
    out = (P("c", "kernel", axis=1), P("c", "bias", axis=0, role="bias"))
    # a's units are normalized together (mean and variance over them): no group.
    _same(groups, [tied, Group("c/kernel", 3, out, prunable=False)])


def _plain_mlp(widths, n_in):
    sizes = (n_in, *widths)

    def init(key):
        del key
        return {
            f"l{i}": {"w": jnp.zeros((a, b)), "b": jnp.zeros(b)}
            for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))
        }, {}

    def apply(params, state, x, *, train, key=None):
        del train, key
        for i in range(len(widths)):
            x = x @ params[f"l{i}"]["w"] + params[f"l{i}"]["b"]
            x = jax.nn.relu(x) if i < len(widths) - 1 else x
        return x, state

    return models.Model("plain_mlp", init, apply, (n_in,), widths[-1])


@given(st.lists(st.integers(2, 5), min_size=1, max_size=4), st.integers(1, 3))
def test_plain_function_mlp_groups_follow_the_widths(widths, n_in):
    groups = dependency_groups(_plain_mlp(widths, n_in))
    want = []
    for i, width in enumerate(widths):
        members = [P(f"l{i}", "w", axis=1), P(f"l{i}", "b", axis=0, role="bias")]
        if i < len(widths) - 1:
            members.append(P(f"l{i + 1}", "w", axis=0, role="consumer"))
        want.append(Group(f"l{i}/w", width, tuple(members), prunable=i < len(widths) - 1))
    _same(groups, want)


@pytest.mark.parametrize(
    "name, kwargs, shape, sizes",
    [
        ("lenet_300_100", {}, (4,), [300, 100, 3]),
        ("conv4", {}, (8, 8, 3), [64, 64, 128, 128, 256, 256, 3]),
        ("conv6", {}, (8, 8, 3), [64, 64, 128, 128, 256, 256, 256, 256, 3]),
        ("vgg16", {}, (32, 32, 3), [64, 64, 128, 128, 256, 256, 256, *[512] * 6, 3]),
        ("cnn1d", {}, (40,), [25, 25, 25, 3]),
    ],
)
def test_zoo_models_trace(name, kwargs, shape, sizes):
    model = models.get(name, input_shape=shape, num_classes=3, **kwargs)
    groups = dependency_groups(model)
    assert [g.size for g in groups] == sizes
    assert [g.prunable for g in groups] == [True] * (len(sizes) - 1) + [False]
    params, state = jax.eval_shape(model.init, jax.random.key(0))
    check_groups(groups, params, state)


# The property: a unit whose member slices are zero contributes nothing.


def _unit_index(length, size, inner, j):
    outer = length // (size * inner)
    return np.array([o * size * inner + j * inner + i for o in range(outer) for i in range(inner)])


def _edit(trees, member, size, j, fn):
    node = trees[member.collection]
    for key in member.path[:-1]:
        node = node[key]
    leaf = node[member.path[-1]]
    idx = [slice(None)] * leaf.ndim
    idx[member.axis] = _unit_index(leaf.shape[member.axis], size, member.inner, j)
    leaf[tuple(idx)] = fn(leaf[tuple(idx)])


def _copy(trees):
    return jax.tree.map(np.array, trees)


class Lab:
    """Per-model groups, random params and a compiled forward pass, each made once."""

    def __init__(self):
        self._models, self._groups, self._setups = {}, {}, {}

    def model(self, name):
        """(model, abstract params, abstract state)."""
        if name not in self._models:
            model = MODELS[name]()
            self._models[name] = (model, *jax.eval_shape(model.init, jax.random.key(1)))
        return self._models[name]

    def groups(self, name):
        if name not in self._groups:
            self._groups[name] = dependency_groups(*self.model(name))
        return self._groups[name]

    def setup(self, name):
        """(groups, {"params", "state"} as numpy, logits(trees)) for model ``name``."""
        if name not in self._setups:
            model, params, state = self.model(name)
            rng = np.random.default_rng(0)
            params = jax.tree.map(lambda a: _random_leaf(rng, a.shape), params)
            state = jax.tree.map(lambda a: rng.uniform(0.5, 1.5, a.shape), state)
            if name in ("transformer1", "embed_mlp"):
                x = rng.integers(0, 5, (16, *model.input_shape)).astype(np.int32)
            else:
                x = rng.normal(size=(16, *model.input_shape)).astype(np.float32)
            fn = jax.jit(lambda t: model.apply(t["params"], t["state"], x, train=False)[0])
            trees = jax.tree.map(np.float32, {"params": params, "state": state})
            self._setups[name] = (self.groups(name), trees, lambda t: np.asarray(fn(t)))
        return self._setups[name]


def _random_leaf(rng, shape):
    # Kernels at unit gain; vectors (biases, BatchNorm scale and shift) around 0.5.
    if len(shape) == 1:
        return rng.normal(0.5, 0.3, shape)
    return rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))


@pytest.fixture(scope="module")
def lab():
    return Lab()


def _live_unit(group, trees, logits, base, rng):
    """A unit whose consumer rows matter in the intact network (so the test is not vacuous)."""
    for j in rng.permutation(group.size):
        if not np.allclose(logits(_perturb_consumers(trees, group, j, rng)), base, atol=1e-4):
            return int(j)
    raise AssertionError(f"no unit of {group.name} reaches the logits")


def _perturb_consumers(trees, group, j, rng):
    out = _copy(trees)
    for m in group.members:
        if m.role == "consumer":
            _edit(out, m, group.size, j, lambda a: a + rng.normal(3.0, 1.0, a.shape))
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_zeroed_unit_contributes_nothing(lab, name):
    groups, trees, logits = lab.setup(name)
    rng = np.random.default_rng(1)
    base = logits(trees)
    for group in (g for g in groups if g.prunable):
        j = _live_unit(group, trees, logits, base, rng)
        zeroed = _copy(trees)
        for m in group.members:
            if m.role != "consumer" and m.collection == "params":
                _edit(zeroed, m, group.size, j, np.zeros_like)
        before = logits(zeroed)
        after = logits(_perturb_consumers(zeroed, group, j, rng))
        np.testing.assert_allclose(after, before, atol=1e-5, err_msg=group.name)


@pytest.mark.parametrize("model_name, group_name", [("mlp", "dense1/kernel"),
                                                    ("residual_cnn", "conv1/kernel"),
                                                    ("resnet20", "conv1/kernel")])  # fmt: skip
def test_bias_and_shift_belong_to_the_group(lab, model_name, group_name):
    groups, trees, logits = lab.setup(model_name)
    group = _by_name(groups)[group_name]
    rng = np.random.default_rng(2)
    trees = _copy(trees)
    for m in group.members:
        if m.role == "producer":  # the kernel columns only: biases and shifts stay
            _edit(trees, m, group.size, 0, np.zeros_like)
    moved = logits(_perturb_consumers(trees, group, 0, rng))
    assert not np.allclose(moved, logits(trees), atol=1e-4)


# Bad input.


def test_unsupported_operation_is_named_in_one_line():
    model = models.from_nnx(lambda rngs: LoopNet(rngs=rngs), input_shape=(4,))
    with pytest.raises(ValueError, match=r"uses (while|scan) .*declare_groups") as err:
        dependency_groups(model)
    assert "\n" not in str(err.value)
    assert "test_structured_groups.py" in str(err.value)


def test_channel_padding_shortcut_is_refused_with_the_line():
    model = models.get(
        "resnet", input_shape=(4, 4, 3), num_classes=3, depth=8, width=2, shortcut="pad"
    )
    with pytest.raises(ValueError, match=r"go through pad at .*resnet\.py.*declare_groups"):
        dependency_groups(model)


def test_bad_arguments_are_refused_in_one_line(lab):
    model, params, state = lab.model("mlp")
    with pytest.raises(TypeError, match="expected a jaxticket.models.Model"):
        dependency_groups(params)
    with pytest.raises(TypeError, match="prune_outputs must be a bool"):
        dependency_groups(model, prune_outputs="yes")
    stacked = jax.tree.map(lambda a: jax.ShapeDtypeStruct((2, *a.shape), a.dtype), params)
    with pytest.raises(ValueError, match="leaf 'dense1/bias' has shape"):
        dependency_groups(model, stacked, state)


def test_declared_groups_are_checked_against_the_leaves():
    params = {"d": {"kernel": jnp.zeros((4, 6)), "bias": jnp.zeros(6)}}
    good = Group("d/kernel", 3, (P("d", "kernel", axis=1), P("d", "bias", axis=0, role="bias")))
    assert declare_groups(good, params=params, state={}) == (good,)
    bad = [
        (Group("g", 4, (P("d", "kernel", axis=1),)), "not a multiple of size\\*inner"),
        (Group("g", 3, (P("d", "weights", axis=1),)), "'d/weights' does not exist"),
        (Group("g", 3, (P("d", "kernel", axis=2),)), "no axis 2"),
        (Group("g", 3, (P("d", "bias", axis=0, role="bias"),)), "role='producer'"),
        (Group("g", 3, (P("d", "kernel", axis=1, role="weight"),)), "role must be one of"),
    ]
    for group, message in bad:
        with pytest.raises(ValueError, match=message):
            declare_groups(group, params=params, state={})
    with pytest.raises(ValueError, match="is in groups 'd/kernel' and 'h'"):
        declare_groups(good, Group("h", 2, (P("d", "kernel", axis=1),)), params=params)
    with pytest.raises(TypeError, match="expected Group"):
        declare_groups("d/kernel")
