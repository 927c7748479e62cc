"""The two tasks of a transfer config, and the check that their parameters line up.

* :func:`class_subset`: a data set restricted to some classes, relabelled ``0..k-1``;
* :func:`task_data`: the source or target data set of a ``TransferConfig`` (with its
  validation split);
* :func:`check_same_shapes`: two parameter trees with the same leaves and shapes, or a
  one-line ``ValueError`` naming the first leaf that differs.
"""

from __future__ import annotations

import numpy as np

from jaxticket import data as data_lib
from jaxticket.data.base import to_device
from jaxticket.workflow.store_tree import flatten_tree

__all__ = ["check_same_shapes", "class_subset", "task_data"]


def class_subset(ds, classes):
    """``ds`` with only the examples of ``classes`` (train and test), relabelled so that
    ``classes[i]`` becomes ``i``.

    Raises:
      ValueError: a class is outside ``[0, ds.num_classes)`` or repeats, or leaves a split
        empty.
    """
    classes = [int(k) for k in classes]
    if len(set(classes)) != len(classes) or not all(0 <= k < ds.num_classes for k in classes):
        raise ValueError(
            f"classes must be distinct labels in [0, {ds.num_classes}) of {ds.name!r}, "
            f"got {classes}"
        )
    lookup = np.full(ds.num_classes, -1, np.int64)
    lookup[classes] = np.arange(len(classes))
    splits = []
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        x, y = np.asarray(x), np.asarray(y)
        keep = lookup[y] >= 0
        if not keep.any():
            raise ValueError(f"classes {classes} leave a split of {ds.name!r} empty")
        splits += [x[keep], lookup[y[keep]]]
    name = f"{ds.name}_classes_{'_'.join(map(str, classes))}"
    return to_device(*splits, name=name, num_classes=len(classes))


def task_data(c, which: str):
    """The ``which`` (``"source"`` or ``"target"``) data set of config ``c``, before the
    validation split."""
    if c.dataset == "modular":
        op = getattr(c, f"{which}_op")
        return data_lib.load("modular", p=c.p, op=op, train_fraction=c.train_fraction, seed=c.seed)
    if c.dataset == "mnist1d":
        ds = data_lib.load("mnist1d", seed=getattr(c, f"{which}_seed"))
    else:
        ds = data_lib.load(c.dataset, seed=c.seed)
    classes = getattr(c, f"{which}_classes")
    return class_subset(ds, classes) if classes else ds


def check_same_shapes(source, target) -> None:
    """Raises a one-line ``ValueError`` naming the first leaf whose shape (or presence)
    differs between the parameter trees ``source`` and ``target``."""
    a = {p: tuple(x.shape) for p, x in flatten_tree(source).items()}
    b = {p: tuple(x.shape) for p, x in flatten_tree(target).items()}
    for path in [*a, *(p for p in b if p not in a)]:
        if a.get(path) != b.get(path):
            raise ValueError(
                f"transfer: the tasks' parameter shapes differ at leaf {path!r}: source "
                f"{a.get(path, 'absent')}, target {b.get(path, 'absent')}; a mask moves only "
                "between networks of the same shapes"
            )
