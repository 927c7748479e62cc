"""Tests for jaxticket.data: shapes, dtypes, determinism, labels, tfds paths, errors."""

from __future__ import annotations

import os
import random

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxticket.data as data
from jaxticket.data import mnist1d as mnist1d_module
from jaxticket.data import tfds as tfds_module


def _check_common(ds: data.Dataset, *, x_dtype=jnp.float32) -> None:
    assert ds.x_train.dtype == x_dtype and ds.x_test.dtype == x_dtype
    assert ds.y_train.dtype == jnp.int32 and ds.y_test.dtype == jnp.int32
    assert ds.x_train.shape == (ds.y_train.shape[0], *ds.input_shape)
    assert ds.x_test.shape == (ds.y_test.shape[0], *ds.input_shape)
    for y in (ds.y_train, ds.y_test):
        assert int(y.min()) >= 0 and int(y.max()) < ds.num_classes
    assert isinstance(ds.x_train, jax.Array)
    assert ds.x_val is None and ds.y_val is None


# --- MNIST-1D ---------------------------------------------------------------------------


def test_mnist1d_default_is_the_published_set():
    ds = data.load()
    assert ds is data.load("mnist1d")  # cached within the process
    assert ds.name == "mnist1d" and ds.num_classes == 10 and ds.input_shape == (40, 1)
    assert ds.x_train.shape == (4000, 40, 1) and ds.x_test.shape == (1000, 40, 1)
    _check_common(ds)
    assert set(np.unique(np.asarray(ds.y_train))) == set(range(10))
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
    assert abs(x.mean()) < 1e-3 and abs(x.std() - 1.0) < 1e-3  # mnist1d standardises


def test_mnist1d_generation_is_deterministic_side_effect_free_and_offline(tmp_path, monkeypatch):
    # Bypass both caches (process and disk): really regenerate.
    monkeypatch.setenv("JAXTICKET_CACHE_DIR", "")
    generate = mnist1d_module._generate.__wrapped__
    monkeypatch.chdir(tmp_path)
    random.seed(5)
    np.random.seed(5)
    expected = (random.random(), np.random.rand())
    random.seed(5)
    np.random.seed(5)
    a, b, c = generate(1, 100), generate(1, 100), generate(2, 100)
    assert (random.random(), np.random.rand()) == expected  # global RNGs restored
    assert os.listdir(tmp_path) == []  # no pickle written, nothing downloaded
    assert a.x_train.shape == (80, 40, 1) and a.x_test.shape == (20, 40, 1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.x_train, c.x_train)


def test_mnist1d_rejects_tiny_sizes():
    with pytest.raises(ValueError, match="num_samples"):
        data.load("mnist1d", num_samples=5)


# --- Digits -----------------------------------------------------------------------------


def test_digits_shapes_range_and_split():
    ds = data.load("digits", test_fraction=0.2, seed=0)
    _check_common(ds)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.input_shape == (8, 8, 1)
    assert ds.x_test.shape[0] == 359 and ds.x_train.shape[0] == 1797 - 359
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0


def test_digits_split_is_seeded():
    a, b = data.load_digits(seed=3), data.load_digits(seed=3)
    c = data.load_digits(seed=4)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    assert not np.array_equal(a.y_test, c.y_test)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_digits_rejects_bad_test_fraction(fraction):
    with pytest.raises(ValueError, match="test_fraction"):
        data.load("digits", test_fraction=fraction)


# --- Modular arithmetic -----------------------------------------------------------------


def _reference_label(a: int, b: int, op: str, p: int) -> int:
    if op == "+":
        return (a + b) % p
    if op == "-":
        return (a - b) % p
    if op == "*":
        return (a * b) % p
    return next(c for c in range(p) if (c * b) % p == a)  # c = a / b: the c with c*b = a


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
@pytest.mark.parametrize("p", [2, 5, 7])
def test_modular_labels_match_slow_reference(op, p):
    ds = data.load("modular", p=p, op=op, train_fraction=0.5, seed=0)
    _check_common(ds, x_dtype=jnp.int32)
    assert ds.num_classes == p and ds.input_shape == (2,)
    x = np.concatenate([np.asarray(ds.x_train), np.asarray(ds.x_test)])
    y = np.concatenate([np.asarray(ds.y_train), np.asarray(ds.y_test)])
    pairs = {(int(a), int(b)) for a, b in x}
    expected = {(a, b) for a in range(p) for b in range(p) if op != "/" or b != 0}
    assert pairs == expected and len(x) == len(expected)
    for (a, b), label in zip(x, y, strict=True):
        assert label == _reference_label(int(a), int(b), op, p)


@settings(max_examples=25, deadline=None)
@given(
    p=st.sampled_from([3, 11, 13, 23]),
    op=st.sampled_from(["+", "-", "*", "/"]),
    fraction=st.floats(0.1, 0.9),
    seed=st.integers(0, 2**31 - 1),
)
def test_modular_split_partitions_all_pairs(p, op, fraction, seed):
    ds = data.load_modular(p=p, op=op, train_fraction=fraction, seed=seed)
    n = p * p if op != "/" else p * (p - 1)
    assert ds.x_train.shape[0] == round(n * fraction)
    assert ds.x_train.shape[0] + ds.x_test.shape[0] == n
    train = {tuple(r) for r in np.asarray(ds.x_train).tolist()}
    test = {tuple(r) for r in np.asarray(ds.x_test).tolist()}
    assert not train & test
    again = data.load_modular(p=p, op=op, train_fraction=fraction, seed=seed)
    np.testing.assert_array_equal(ds.x_train, again.x_train)


def test_modular_names_and_nonprime_ops():
    assert data.load("modular", p=6, op="*").name == "modular_mul_6"
    assert data.load("modular").name == "modular_add_67"  # the grokking-ticket default


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"p": 6, "op": "/"}, "prime"),
        ({"p": 1}, "p must be"),
        ({"p": 5.0}, "p must be"),
        ({"op": "%"}, "op must be"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"p": 2, "op": "/", "train_fraction": 0.1}, "empty split"),
    ],
)
def test_modular_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        data.load("modular", **kwargs)


# --- with_validation and the Dataset pytree --------------------------------------------


def test_with_validation_moves_examples_without_overlap():
    ds = data.load_modular(p=11, train_fraction=0.5, seed=0)
    n = ds.x_train.shape[0]
    split = data.with_validation(ds, 10, seed=1)
    assert split.x_val.shape == (10, 2) and split.y_val.shape == (10,)
    assert split.x_train.shape == (n - 10, 2)
    np.testing.assert_array_equal(split.x_test, ds.x_test)
    train = {tuple(r) for r in np.asarray(split.x_train).tolist()}
    val = {tuple(r) for r in np.asarray(split.x_val).tolist()}
    assert not train & val
    assert train | val == {tuple(r) for r in np.asarray(ds.x_train).tolist()}
    same = data.with_validation(ds, 10, seed=1)
    np.testing.assert_array_equal(same.x_val, split.x_val)
    other = data.with_validation(ds, 10, seed=2)
    assert not np.array_equal(other.x_val, split.x_val)


def test_with_validation_rejects_bad_sizes():
    ds = data.load_modular(p=5, train_fraction=0.4)  # 10 training pairs
    for size in (0, 10, 11):
        with pytest.raises(ValueError, match="size must satisfy"):
            data.with_validation(ds, size, seed=0)
    with pytest.raises(TypeError, match="size must be an int"):
        data.with_validation(ds, 2.0, seed=0)
    with pytest.raises(ValueError, match="already has a validation split"):
        data.with_validation(data.with_validation(ds, 2, seed=0), 2, seed=0)


def test_dataset_is_a_pytree_with_static_metadata():
    ds = data.with_validation(data.load_modular(p=5, train_fraction=0.6), 3, seed=0)
    assert len(jax.tree.leaves(ds)) == 6
    total = jax.jit(lambda d: d.y_train.sum() + d.y_val.sum() + d.num_classes)(ds)
    assert int(total) == int(ds.y_train.sum() + ds.y_val.sum()) + 5
    assert jax.jit(lambda d: d.x_test.shape[0])(data.load_modular(p=5)) == 15


# --- Registry ---------------------------------------------------------------------------


def test_names_lists_builtins():
    assert data.names() == ["digits", "mnist1d", "modular"]


@pytest.mark.parametrize("name", ["no_such_set", "tfds:no_such_set", "tfds:", "huggingface:x"])
def test_unknown_name_lists_builtins(name):
    with pytest.raises(ValueError, match="builtin names are .*'mnist1d'"):
        data.load(name)


def test_load_rejects_non_string_and_tfds_loader_rejects_unknown():
    with pytest.raises(TypeError, match="must be a str"):
        data.load(3)
    with pytest.raises(ValueError, match="not a registered TensorFlow Datasets name"):
        data.load_tfds("no_such_set")


# --- TensorFlow Datasets ----------------------------------------------------------------


@pytest.fixture
def mock_tfds(monkeypatch):
    """tfds' mock data (random examples from the builder's features, no files, no TF)."""
    from tensorflow_datasets.testing import mocking

    # tfds 4.9 sets `__getitems__` on a MagicMock as a plain attribute, so its partial gets
    # no `self` and fails; this replacement takes the keys in either calling convention.
    def getitems(*args, generator, serialized=False):
        return [generator[key] for key in args[-1]]

    monkeypatch.setattr(mocking, "_getitems", getitems)
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        yield


@pytest.mark.parametrize("name", ["mnist", "tfds:mnist"])
def test_tfds_mock_mnist(mock_tfds, name):
    ds = data.load(name)
    _check_common(ds)
    assert ds.name == "mnist" and ds.num_classes == 10 and ds.input_shape == (28, 28, 1)
    assert ds.x_train.shape == (40, 28, 28, 1) and ds.x_test.shape == (40, 28, 28, 1)
    x = np.asarray(ds.x_train, dtype=np.float64)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1.0) < 1e-4  # standardised on train


def test_tfds_mock_cifar10_channels(mock_tfds):
    ds = data.load("cifar10", standardize=False)
    assert ds.input_shape == (32, 32, 3) and ds.num_classes == 10
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0


class JaxticketTinyImages(tfds.core.GeneratorBasedBuilder):
    """A tiny image set written as real ArrayRecord files (Tensor features need no TF)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(4, 4, 2), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=3),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(12, 0), "test": self._generate_examples(5, 1)}

    def _generate_examples(self, n, seed):
        for i, image in enumerate(_tiny_images(n, seed)):
            yield i, {"image": image, "label": i % 3}


def _tiny_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 4, 4, 2), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    JaxticketTinyImages(data_dir=data_dir, file_format="array_record").download_and_prepare()
    return data_dir


def _by_content(x: np.ndarray) -> np.ndarray:
    # ArrayRecord shuffles examples when writing; compare sets of images in a fixed order.
    flat = x.reshape(len(x), -1)
    return flat[np.lexsort(flat.T[::-1])]


def test_tfds_real_array_record_batches_and_normalisation(tiny_dir, monkeypatch):
    monkeypatch.setattr(tfds_module, "READ_BATCH", 5)  # 12 examples: batches 5, 5, 2
    raw = data.load("jaxticket_tiny_images", data_dir=tiny_dir, standardize=False)
    _check_common(raw)
    assert raw.input_shape == (4, 4, 2) and raw.num_classes == 3
    x = np.asarray(raw.x_train)
    pixels = np.rint(x * 255).astype(np.uint8)
    np.testing.assert_array_equal(_by_content(pixels), _by_content(_tiny_images(12, 0)))
    np.testing.assert_array_equal(np.bincount(np.asarray(raw.y_train)), [4, 4, 4])

    std = data.load("tfds:jaxticket_tiny_images", data_dir=tiny_dir)
    mean, scale = x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))
    np.testing.assert_allclose(std.x_train, (x - mean) / scale, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std.x_test, (np.asarray(raw.x_test) - mean) / scale, atol=1e-5)


def test_tfds_split_slices(tiny_dir):
    ds = data.load("jaxticket_tiny_images", data_dir=tiny_dir, train_split="train[:7]")
    assert ds.x_train.shape == (7, 4, 4, 2) and ds.x_test.shape == (5, 4, 4, 2)


@pytest.mark.parametrize("name", ["mnist", "jaxticket_tiny_images"])
def test_tfds_unprepared_data_fails_fast_with_instructions(tmp_path, name):
    with pytest.raises(FileNotFoundError, match=f"tfds build {name} --file_format=array_record"):
        data.load(name, data_dir=tmp_path)
    assert os.listdir(tmp_path) == []  # nothing downloaded or written


def test_mnist1d_disk_cache_round_trip_and_recovery(tmp_path, monkeypatch):
    # A small set keeps generation quick; the cache must give back exactly the generated
    # arrays, and a damaged file is regenerated and replaced.
    from jaxticket.data import mnist1d

    monkeypatch.setenv("JAXTICKET_CACHE_DIR", str(tmp_path))
    fresh = mnist1d._cached_arrays(7, 100)
    (path,) = (tmp_path / "data").iterdir()
    assert path.name.startswith("mnist1d-") and path.name.endswith("-seed7-n100.npz")
    cached = mnist1d._cached_arrays(7, 100)
    for a, b in zip(fresh, cached, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    path.write_bytes(path.read_bytes()[:50])  # truncated
    again = mnist1d._cached_arrays(7, 100)
    for a, b in zip(fresh, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert mnist1d._cached_arrays(7, 100)[0].shape == fresh[0].shape
    monkeypatch.setenv("JAXTICKET_CACHE_DIR", "")
    assert mnist1d._cache_path(7, 100) is None
