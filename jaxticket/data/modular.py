"""Modular arithmetic: every pair ``(a, b)`` in ``[0, p)^2`` labelled ``(a op b) mod p``.

The task behind grokking (Power et al. 2022; grokking tickets, Minegishi et al. 2023).
Inputs are the two operands as ``int32`` tokens, shape ``(2,)``, for a model to embed;
there are ``p`` classes. Division is ``a * b^-1 mod p``: it needs ``p`` prime, and pairs
with ``b = 0`` are left out. The other operations accept any modulus ``p >= 2``.
"""

from __future__ import annotations

import numpy as np

from jaxticket.data.base import Dataset, check_fraction, check_int, split_indices, to_device

#: The supported operations, with the word each contributes to the data set's name.
OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def load_modular(
    *, p: int = 67, op: str = "+", train_fraction: float = 0.4, seed: int = 0
) -> Dataset:
    """Builds all pairs for ``(a op b) mod p`` and splits them at random.

    The defaults are the grokking-ticket setting: ``(a + b) mod 67``, 40% of pairs to train.

    Args:
      p: the modulus (and number of classes); must be prime for ``op='/'``.
      op: one of ``'+'``, ``'-'``, ``'*'``, ``'/'``.
      train_fraction: share of the pairs used for training, in (0, 1).
      seed: seeds the split.

    Returns:
      A ``Dataset`` named e.g. ``"modular_add_67"`` (safe in file names): ``x`` are
      ``int32`` pairs ``(a, b)``, ``num_classes == p``.

    Raises:
      ValueError: unknown ``op``, ``p < 2``, non-prime ``p`` with ``op='/'``, or a
        ``train_fraction`` that leaves a split empty, or ``seed`` < 0.
      TypeError: ``seed`` is not an int.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {list(OPS)}, got {op!r}")
    if isinstance(p, bool) or not isinstance(p, int | np.integer) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    p = int(p)
    if op == "/" and not _is_prime(p):
        raise ValueError(f"op='/' needs a prime p (so every b != 0 has an inverse), got p={p}")
    check_fraction(train_fraction, "train_fraction")
    seed = check_int(seed, "modular seed")

    a, b = (g.ravel() for g in np.meshgrid(np.arange(p), np.arange(p), indexing="ij"))
    if op == "/":
        a, b = a[b != 0], b[b != 0]
    labels = _apply(op, a, b, p)
    x = np.stack([a, b], axis=1)
    n = len(labels)
    n_train = round(n * train_fraction)
    if not 1 <= n_train < n:
        raise ValueError(
            f"train_fraction={train_fraction} leaves an empty split of the {n} pairs for p={p}"
        )
    train_idx, test_idx = split_indices(n, n_train, seed)
    return to_device(
        x[train_idx],
        labels[train_idx],
        x[test_idx],
        labels[test_idx],
        name=f"modular_{OPS[op]}_{p}",
        num_classes=p,
    )


def _apply(op: str, a: np.ndarray, b: np.ndarray, p: int) -> np.ndarray:
    # int64 keeps a * b exact for any p a table of p^2 pairs could hold.
    a, b = a.astype(np.int64), b.astype(np.int64)
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    inverse = np.array([0] + [pow(int(v), -1, p) for v in range(1, p)], dtype=np.int64)
    return (a * inverse[b]) % p


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(p**0.5) + 1))
