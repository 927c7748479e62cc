"""Models for modular arithmetic (grokking): token pairs ``(a, b)`` → ``(a ∘ b) mod p``.

Inputs are int32 token sequences of shape ``(n_tokens,)`` (usually ``(2,)``) with values
below ``vocab`` (default ``num_classes``, i.e. p). Both models embed tokens with one
shared table ``embed/embedding`` of shape ``(vocab, dim)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxticket.models.base import Model, from_nnx
from jaxticket.models.initializers import check_scheme, dense
from jaxticket.models.registry import register


class EmbedMLP(nnx.Module):
    """Embed each token, concatenate, ReLU MLP, linear readout.

    Args:
      vocab: the number of distinct tokens.
      n_tokens: tokens per example.
      dim: embedding width.
      hidden: hidden-layer widths.
      num_classes: the number of logits.
      init: an initialization scheme name for the dense layers.
      rngs: random streams for the parameters.
    """

    def __init__(self, vocab, n_tokens, dim, hidden, num_classes, *, init, rngs):
        self.embed = _embed(vocab, dim, rngs)
        widths = (n_tokens * dim, *hidden)
        self.hidden_names = tuple(f"dense{i + 1}" for i in range(len(hidden)))
        for name, n_in, n_out in zip(self.hidden_names, widths[:-1], widths[1:], strict=True):
            setattr(self, name, dense(n_in, n_out, init=init, rngs=rngs))
        self.output = dense(widths[-1], num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del train, key  # no batch norm, no dropout
        h = self.embed(_tokens(x))
        h = h.reshape(h.shape[0], -1)
        for name in self.hidden_names:
            h = jax.nn.relu(getattr(self, name)(h))
        return self.output(h)


class Transformer1(nnx.Module):
    """A one-block transformer without LayerNorm (like Nanda et al. 2023's grokking model):
    token + learned position embeddings, causal multi-head attention, a ReLU MLP (both
    residual), and a readout of the last position.

    Args:
      vocab: the number of distinct tokens.
      n_tokens: tokens per example.
      dim: model width.
      heads: attention heads (``dim`` must be divisible by it).
      mlp_ratio: MLP hidden width over ``dim``.
      num_classes: the number of logits.
      init: an initialization scheme name for the dense layers.
      rngs: random streams for the parameters.
    """

    def __init__(self, vocab, n_tokens, dim, heads, mlp_ratio, num_classes, *, init, rngs):
        self.heads = heads
        self.head_dim = dim // heads
        self.embed = _embed(vocab, dim, rngs)
        self.pos_embed = nnx.Param(jax.random.normal(rngs.params(), (n_tokens, dim)) * dim**-0.5)
        for name in ("query", "key", "value", "attn_out"):
            setattr(self, name, dense(dim, dim, use_bias=False, init=init, rngs=rngs))
        self.mlp_in = dense(dim, mlp_ratio * dim, init=init, rngs=rngs)
        self.mlp_out = dense(mlp_ratio * dim, dim, init=init, rngs=rngs)
        self.output = dense(dim, num_classes, init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, key: jax.Array | None = None) -> jax.Array:
        del train, key  # no batch norm, no dropout
        h = self.embed(_tokens(x)) + self.pos_embed[...]
        b, t, _ = h.shape

        def split_heads(y):
            # The head count comes from the array, so a network with heads or residual
            # width removed (jaxticket.structured) runs through the same module.
            return y.reshape(b, t, -1, self.head_dim)

        q, k, v = (split_heads(layer(h)) for layer in (self.query, self.key, self.value))
        attn = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        h = h + self.attn_out(attn.reshape(b, t, -1))
        h = h + self.mlp_out(jax.nn.relu(self.mlp_in(h)))
        return self.output(h[:, -1])


@register("embed_mlp")
def embed_mlp(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dim: int = 128,
    hidden: Sequence[int] = (256,),
    vocab: int | None = None,
    init: str = "kaiming_normal",
) -> Model:
    """Embedding + MLP for modular arithmetic.

    Args:
      input_shape: ``(n_tokens,)``, e.g. ``(2,)``.
      num_classes: the number of logits (p).
      dim: embedding width.
      hidden: hidden-layer widths.
      vocab: the number of distinct tokens; defaults to ``num_classes``.
      init: initialization scheme for the dense layers.

    Returns:
      The ``Model`` (params ``embed``, ``dense1``..., ``output``).
    """
    n_tokens, vocab = _check("embed_mlp", input_shape, num_classes, vocab, init)
    hidden = tuple(int(h) for h in hidden)
    return from_nnx(
        lambda rngs: EmbedMLP(vocab, n_tokens, dim, hidden, num_classes, init=init, rngs=rngs),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        name="embed_mlp",
        input_dtype=jnp.int32,
    )


@register("transformer1")
def transformer1(
    *,
    input_shape: tuple[int, ...],
    num_classes: int,
    dim: int = 128,
    heads: int = 4,
    mlp_ratio: int = 4,
    vocab: int | None = None,
    init: str = "glorot_normal",
) -> Model:
    """A one-layer transformer for modular arithmetic, reading out the last token.

    Args:
      input_shape: ``(n_tokens,)``, e.g. ``(2,)``.
      num_classes: the number of logits (p).
      dim: model width.
      heads: attention heads; ``dim`` must be divisible by it.
      mlp_ratio: MLP hidden width as a multiple of ``dim``.
      vocab: the number of distinct tokens; defaults to ``num_classes``.
      init: initialization scheme for the dense layers.

    Returns:
      The ``Model`` (params ``embed``, ``pos_embed``, ``query``, ``key``, ``value``,
      ``attn_out``, ``mlp_in``, ``mlp_out``, ``output``).
    """
    n_tokens, vocab = _check("transformer1", input_shape, num_classes, vocab, init)
    if heads < 1 or dim % heads:
        raise ValueError(f"model 'transformer1': dim {dim} is not divisible by heads {heads}")
    return from_nnx(
        lambda rngs: Transformer1(
            vocab, n_tokens, dim, heads, mlp_ratio, num_classes, init=init, rngs=rngs
        ),
        input_shape=tuple(input_shape),
        num_classes=num_classes,
        name="transformer1",
        input_dtype=jnp.int32,
    )


def _check(name, input_shape, num_classes, vocab, init) -> tuple[int, int]:
    check_scheme(init, name)
    shape = tuple(input_shape)
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(
            f"model {name!r} needs input_shape (n_tokens,) of integer tokens, e.g. (2,); "
            f"got {shape}"
        )
    vocab = num_classes if vocab is None else int(vocab)
    if vocab < 1:
        raise ValueError(f"model {name!r}: vocab must be positive, got {vocab}")
    return shape[0], vocab


def _embed(vocab: int, dim: int, rngs: nnx.Rngs) -> nnx.Embed:
    # N(0, 1/dim) keeps the embedded vectors at unit norm on average, like the readout's input.
    init = jax.nn.initializers.normal(stddev=dim**-0.5)
    return nnx.Embed(vocab, dim, embedding_init=init, rngs=rngs)


def _tokens(x: jax.Array) -> jax.Array:
    if not jnp.issubdtype(x.dtype, jnp.integer):
        raise TypeError(f"token inputs must be integers (e.g. int32), got dtype {x.dtype}")
    return x
