"""Union-find over "axis classes": which array axes of a computation index the same units.

Every axis of every array in a traced computation is a *node*. Nodes that must index the
same units (the output axis of a kernel, the bias added to it, the input rows of the next
kernel) are merged. A node can also be *split* into factors, major to minor: flattening
``(H, W, C) -> H*W*C`` makes one node whose factors are the three axes, and splitting an
axis ``H*D -> (H, D)`` refines the node of ``H*D`` into two factors. Merging two nodes
merges their factorizations too, refining either side where needed.

Flags on classes: ``"input"`` (an axis of the model's input), ``"output"`` (the logits
axis), ``"mixed"`` (the units interact: a reduction, a window or an index runs along the
axis, so they cannot be removed one by one) and *unsupported* reasons (a slice, pad or
concatenation along the axis that the group format cannot express).
"""

from __future__ import annotations

import math


class IncompatibleAxes(ValueError):
    """Two axes that must be merged have factorizations that do not line up."""


class AxisClasses:
    """Nodes with sizes, merged by union-find, each class optionally split into factors."""

    def __init__(self) -> None:
        self._parent: list[int] = []
        self._size: list[int] = []
        self._split: dict[int, tuple[int, ...]] = {}
        self._flags: dict[int, set[str]] = {}
        self._unsupported: dict[int, str] = {}

    def new(self, size: int) -> int:
        """A fresh node of ``size``."""
        self._parent.append(len(self._parent))
        self._size.append(int(size))
        return len(self._parent) - 1

    def size(self, node: int) -> int:
        return self._size[self.find(node)]

    def find(self, node: int) -> int:
        root = node
        while self._parent[root] != root:
            root = self._parent[root]
        while self._parent[node] != root:  # path compression
            self._parent[node], node = root, self._parent[node]
        return root

    def factors(self, node: int) -> list[int]:
        """The leaf-level class roots that make up ``node``, major to minor."""
        root = self.find(node)
        if root not in self._split:
            return [root]
        return [f for child in self._split[root] for f in self.factors(child)]

    def compose(self, parts: list[int]) -> int:
        """A node whose factors are ``parts`` (size-1 parts dropped and marked mixed)."""
        kept = [p for p in parts if self.size(p) > 1]
        for p in parts:
            if self.size(p) == 1:
                self.flag(p, "mixed")
        if len(kept) == 1:
            return kept[0]
        node = self.new(math.prod(self.size(p) for p in kept))
        if kept:
            self._split[node] = tuple(kept)
        return node

    def split_off(self, node: int, major: int) -> tuple[int, int]:
        """Splits the leaf-level class of ``node`` into ``(major, size // major)`` factors."""
        root = self.find(node)
        assert root not in self._split, "split_off takes a leaf-level class"
        size = self._size[root]
        if size % major:
            raise IncompatibleAxes(f"an axis of size {size} cannot split by {major}")
        a, b = self.new(major), self.new(size // major)
        self._split[root] = (a, b)
        for child in (a, b):
            self._flags[child] = set(self._flags.get(root, ()))
            if root in self._unsupported:
                self._unsupported[child] = self._unsupported[root]
        return a, b

    def union(self, a: int, b: int) -> None:
        """Merges the classes of ``a`` and ``b`` (same size), lining up their factors."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self._size[ra] != self._size[rb]:
            raise IncompatibleAxes(f"axes of sizes {self._size[ra]} and {self._size[rb]}")
        split_a, split_b = self._split.pop(ra, None), self._split.pop(rb, None)
        self._parent[rb] = ra
        self._flags[ra] = self._flags.get(ra, set()) | self._flags.pop(rb, set())
        if rb in self._unsupported:
            self._unsupported.setdefault(ra, self._unsupported.pop(rb))
        if split_a is None and split_b is None:
            return
        self._split[ra] = split_a or split_b
        if split_a is not None and split_b is not None:
            self.align(list(split_a), list(split_b))
        for flag in self._flags[ra]:
            self.flag(ra, flag)
        if ra in self._unsupported:
            self.mark_unsupported(ra, self._unsupported[ra])

    def align(self, left: list[int], right: list[int]) -> None:
        """Merges two factor sequences of equal total size, refining factors as needed."""
        left = [f for n in left for f in self.factors(n)]
        right = [f for n in right for f in self.factors(n)]
        while left and right:
            a, b = self.find(left[0]), self.find(right[0])
            sa, sb = self._size[a], self._size[b]
            if sa == 1 or sb == 1:
                for side, s in ((left, sa), (right, sb)):
                    if s == 1:
                        self.flag(side.pop(0), "mixed")
                continue
            if sa == sb:
                self.union(a, b)
                left.pop(0), right.pop(0)
            elif sa > sb:
                left[0:1] = list(self.split_off(a, sb))
            else:
                right[0:1] = list(self.split_off(b, sa))
        for rest in left + right:
            if self.size(rest) != 1:
                raise IncompatibleAxes("factorizations of different total size")
            self.flag(rest, "mixed")

    def flag(self, node: int, flag: str) -> None:
        """Adds ``flag`` to every leaf-level class of ``node``."""
        root = self.find(node)
        self._flags.setdefault(root, set()).add(flag)
        for f in self.factors(root):
            self._flags.setdefault(f, set()).add(flag)

    def mark_unsupported(self, node: int, reason: str) -> None:
        """Records why the classes of ``node`` cannot be groups (an error if they have units)."""
        root = self.find(node)
        self._unsupported.setdefault(root, reason)
        for f in self.factors(root):
            self._unsupported.setdefault(f, reason)

    def flags(self, node: int) -> set[str]:
        return set(self._flags.get(self.find(node), ()))

    def unsupported(self, node: int) -> str | None:
        return self._unsupported.get(self.find(node))
