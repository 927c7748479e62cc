"""Dependency groups of the zoo models written out by hand (an independent reference).

The structured-mask and compaction tests use these, so that they check compaction against
groups read off the model code, not against the tracing analysis under test elsewhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxticket._paths import map_with_path_str
from jaxticket.models.base import from_nnx
from jaxticket.structured.groups import Group, Member


def m(path: str, axis: int, role: str = "producer", *, inner: int = 1, state: bool = False):
    """A member on ``path`` (``"conv1/kernel"``)."""
    return Member("state" if state else "params", tuple(path.split("/")), axis, inner, role)


def bn(prefix: str) -> tuple[Member, ...]:
    """A BatchNorm's scale and shift (params) and running statistics (state)."""
    return (
        m(f"{prefix}/scale", 0, "norm"),
        m(f"{prefix}/bias", 0, "norm"),
        m(f"{prefix}/mean", 0, "norm", state=True),
        m(f"{prefix}/var", 0, "norm", state=True),
    )


def dense_group(layer: str, size: int, consumer: str, **kw) -> Group:
    """A dense layer's units: kernel columns, bias, the consumer's rows."""
    members = (m(f"{layer}/kernel", 1), m(f"{layer}/bias", 0, "bias"))
    return Group(f"{layer}/kernel", size, (*members, m(f"{consumer}/kernel", 0, "consumer")), **kw)


def output_group(size: int) -> Group:
    """The logits: never prunable."""
    members = (m("output/kernel", 1), m("output/bias", 0, "bias"))
    return Group("output/kernel", size, members, prunable=False)


def mlp_groups(hidden) -> tuple[Group, ...]:
    names = [f"dense{i + 1}" for i in range(len(hidden))] + ["output"]
    return tuple(dense_group(a, h, b) for a, b, h in zip(names, names[1:], hidden, strict=False))


def convnet_groups(blocks: int) -> tuple[Group, ...]:
    widths = [w for w in (64, 128, 256)[:blocks] for _ in range(2)]
    convs = [f"conv{i + 1}" for i in range(2 * blocks)]
    groups = []
    for i, (name, width) in enumerate(zip(convs, widths, strict=True)):
        nxt = f"{convs[i + 1]}/kernel" if i + 1 < len(convs) else "dense1/kernel"
        axis = 2 if i + 1 < len(convs) else 0  # the flattened (H, W, C) rows of dense1
        members = (m(f"{name}/kernel", 3), m(f"{name}/bias", 0, "bias"), m(nxt, axis, "consumer"))
        groups.append(Group(f"{name}/kernel", width, members, kind="channels"))
    return (*groups, dense_group("dense1", 256, "dense2"), dense_group("dense2", 256, "output"))


def vgg16_groups() -> tuple[Group, ...]:
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    groups = []
    for i, width in enumerate(widths):
        nxt = (
            m(f"conv{i + 2}/kernel", 2, "consumer") if i < 12 else m("output/kernel", 0, "consumer")
        )
        members = (m(f"conv{i + 1}/kernel", 3), *bn(f"bn{i + 1}"), nxt)
        groups.append(Group(f"conv{i + 1}/kernel", width, members, kind="channels"))
    return tuple(groups)


def resnet_groups(width: int, blocks: int = 3) -> tuple[Group, ...]:
    """Stage-tied channel groups (residual additions) and one group per block's inner conv."""
    groups = []
    for s in range(3):
        w = width * 2**s
        stage = [f"stage{s + 1}_block{b + 1}" for b in range(blocks)]
        first = stage[0]
        if s == 0:
            members = [m("conv1/kernel", 3), *bn("bn1")]
        else:
            members = [m(f"{first}/shortcut_conv/kernel", 3), *bn(f"{first}/shortcut_bn")]
        for block in stage:
            members += [m(f"{block}/conv2/kernel", 3), *bn(f"{block}/bn2")]
            if block != first or s == 0:
                members.append(m(f"{block}/conv1/kernel", 2, "consumer"))
        if s < 2:
            nxt = f"stage{s + 2}_block1"
            members += [
                m(f"{nxt}/conv1/kernel", 2, "consumer"),
                m(f"{nxt}/shortcut_conv/kernel", 2, "consumer"),
            ]
        else:
            members.append(m("output/kernel", 0, "consumer"))
        name = "conv1/kernel" if s == 0 else f"{first}/shortcut_conv/kernel"
        groups.append(Group(name, w, tuple(members), kind="channels"))
        for block in stage:
            inner = (m(f"{block}/conv1/kernel", 3), *bn(f"{block}/bn1"))
            members = (*inner, m(f"{block}/conv2/kernel", 2, "consumer"))
            groups.append(Group(f"{block}/conv1/kernel", w, members, kind="channels"))
    return tuple(groups)


def cnn1d_groups(channels: int, layers: int = 3) -> tuple[Group, ...]:
    groups = []
    for i in range(layers):
        nxt = m(f"conv{i + 2}/kernel", 1, "consumer") if i + 1 < layers else None
        nxt = nxt or m("output/kernel", 0, "consumer")  # flattened (length, channels)
        members = (m(f"conv{i + 1}/kernel", 2), m(f"conv{i + 1}/bias", 0, "bias"), nxt)
        groups.append(Group(f"conv{i + 1}/kernel", channels, members, kind="channels"))
    return tuple(groups)


def embed_mlp_groups(dim: int, hidden: int) -> tuple[Group, ...]:
    # The tokens' embeddings are concatenated: dense1's rows are laid out (n_tokens, dim).
    embed = Group(
        "embed/embedding",
        dim,
        (m("embed/embedding", 1), m("dense1/kernel", 0, "consumer")),
    )
    return (embed, dense_group("dense1", hidden, "output"))


def transformer1_groups(dim: int, heads: int, mlp: int) -> tuple[Group, ...]:
    d = dim // heads
    qkv = tuple(m(f"{n}/kernel", 1, inner=d) for n in ("query", "key", "value"))
    attn = Group(
        "query/kernel", heads, (*qkv, m("attn_out/kernel", 0, "consumer", inner=d)), kind="heads"
    )
    return (attn, dense_group("mlp_in", mlp, "mlp_out"))


class UserCNN(nnx.Module):
    """A user's NNX CNN: conv-BN stem, a residual conv-BN-conv-BN block, pooling, a head."""

    def __init__(self, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 6, (3, 3), rngs=rngs)
        self.stem_bn = nnx.BatchNorm(6, rngs=rngs)
        self.a = nnx.Conv(6, 5, (3, 3), rngs=rngs)
        self.a_bn = nnx.BatchNorm(5, rngs=rngs)
        self.b = nnx.Conv(5, 6, (3, 3), use_bias=False, rngs=rngs)
        self.b_bn = nnx.BatchNorm(6, rngs=rngs)
        self.head = nnx.Linear(6, 3, rngs=rngs)

    def __call__(self, x, *, train: bool):
        h = jax.nn.relu(self.stem_bn(self.stem(x), use_running_average=not train))
        y = jax.nn.relu(self.a_bn(self.a(h), use_running_average=not train))
        h = jax.nn.relu(h + self.b_bn(self.b(y), use_running_average=not train))
        return self.head(h.mean(axis=(1, 2)))


@functools.cache
def user_cnn():
    """The user's CNN as a ``Model`` (8×8×3 inputs, 3 classes); one object for every test
    module, so that they share its compiled programs."""
    return from_nnx(lambda rngs: UserCNN(rngs), input_shape=(8, 8, 3), name="user_cnn")


def user_cnn_groups() -> tuple[Group, ...]:
    tied = (
        m("stem/kernel", 3),
        m("stem/bias", 0, "bias"),
        *bn("stem_bn"),
        m("b/kernel", 3),
        *bn("b_bn"),
        m("a/kernel", 2, "consumer"),
        m("head/kernel", 0, "consumer"),
    )
    inner = (m("a/kernel", 3), m("a/bias", 0, "bias"), *bn("a_bn"), m("b/kernel", 2, "consumer"))
    return (
        Group("stem/kernel", 6, tied, kind="channels"),
        Group("a/kernel", 5, inner, kind="channels"),
    )


def random_variables(model, seed):
    """Params and state drawn with NumPy at the model's shapes (no init program to compile):
    kernels with variance 1/fan-in, BatchNorm scales near 1, and running means and
    variances far from their init, so eval mode uses them for real."""
    rng = np.random.default_rng(seed)
    params, state = jax.eval_shape(model.init, jax.random.key(0))

    def draw(path, x):
        shape = x.shape
        if path.endswith(("var", "scale")):
            value = rng.uniform(0.5, 2.0, shape)
        elif len(shape) >= 2 and not path.endswith(("embedding", "pos_embed")):
            value = rng.normal(0, np.prod(shape[:-1]) ** -0.5, shape)
        else:
            value = rng.normal(0, 0.5, shape)
        return jnp.asarray(value, x.dtype)

    return map_with_path_str(draw, params), map_with_path_str(draw, state)


def logits(model, params, state, x, train_mode):
    """``model.apply`` jitted (one compiled program per model, shapes and mode)."""
    out, new_state = jax.jit(model.apply, static_argnames="train")(
        params, state, x, train=train_mode
    )
    return np.asarray(out), new_state
