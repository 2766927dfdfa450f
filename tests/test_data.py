"""Tests for vgcourse.data: shapes, determinism, the task definitions, MNIST files and bad input."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vgcourse import data as data_module
from vgcourse.data import (
    DATASETS,
    DataSplit,
    DataUnavailableError,
    adding_problem,
    circles,
    digits,
    load_dataset,
    mnist,
    recall_task,
)

MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _mnist_dir() -> Path | None:
    candidates = [os.environ.get("VGCOURSE_DATA"), Path(__file__).parents[2] / "shared/data/mnist"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").exists():
            return Path(candidate)
    return None


MNIST_DIR = _mnist_dir()
needs_mnist = pytest.mark.skipif(
    MNIST_DIR is None,
    reason="MNIST t10k files not found (set VGCOURSE_DATA or put them in ../shared/data/mnist)",
)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when the name ends in .gz)."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if path.suffix == ".gz" else raw)


@pytest.mark.parametrize(
    ("name", "x_shape", "y_shape", "y_dtype", "n_classes"),
    [
        ("circles", (800, 2), (800,), torch.int64, 2),
        ("digits", (1438, 64), (1438,), torch.int64, 10),
        ("adding", (1600, 50, 2), (1600, 1), torch.float32, None),
        ("recall", (1600, 21, 9), (1600,), torch.int64, 8),
    ],
)
def test_shapes_and_dtypes(name, x_shape, y_shape, y_dtype, n_classes):
    split = load_dataset(name)
    assert isinstance(split, DataSplit) and split.name == name
    assert tuple(split.x_train.shape) == x_shape and split.x_train.dtype == torch.float32
    assert tuple(split.y_train.shape) == y_shape and split.y_train.dtype == y_dtype
    assert split.x_val.shape[1:] == split.x_train.shape[1:]
    assert split.n_classes == n_classes
    assert split.n_train == x_shape[0] and split.in_features == x_shape[-1]
    assert name in repr(split) and "tensor" not in repr(split)


@pytest.mark.parametrize("name", ["circles", "digits", "adding", "recall"])
def test_same_seed_same_data_other_seed_differs(name):
    a, b, c = load_dataset(name, seed=1), load_dataset(name, seed=1), load_dataset(name, seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)


def test_datasets_names():
    assert DATASETS == ("circles", "digits", "mnist", "adding", "recall")


def test_circles_split_is_stratified():
    split = circles(n_samples=1000, val_fraction=0.2)
    assert split.n_val == 200
    assert torch.bincount(split.y_val).tolist() == [100, 100]
    # the inner circle has the smaller radius
    radius = split.x_train.norm(dim=1)
    assert radius[split.y_train == 1].mean() < radius[split.y_train == 0].mean()


def test_digits_is_standardized_with_train_statistics():
    split = digits()
    assert split.n_train + split.n_val == 1797
    mean, std = split.x_train.mean(0), split.x_train.std(0)
    assert mean.abs().max() < 1e-5
    varying = std > 0
    assert torch.allclose(std[varying], torch.ones_like(std[varying]), atol=1e-4)
    assert split.x_val.mean(0).abs().max() > 1e-3  # val is not re-standardized with its own statistics
    assert torch.bincount(split.y_val, minlength=10).min() >= 35


def test_adding_problem_definition_and_baseline():
    split = adding_problem(n_samples=2000, seq_len=20)
    x = torch.cat([split.x_train, split.x_val])
    y = torch.cat([split.y_train, split.y_val])
    values, markers = x[..., 0], x[..., 1]
    assert ((values >= 0) & (values < 1)).all()
    assert (markers.sum(1) == 2).all()
    assert (markers[:, :10].sum(1) == 1).all() and (markers[:, 10:].sum(1) == 1).all()
    assert torch.allclose(y[:, 0], (values * markers).sum(1))
    baseline_mse = ((y - 1.0) ** 2).mean().item()
    assert abs(baseline_mse - 1 / 6) < 0.015


def test_recall_task_definition():
    split = recall_task(n_samples=500, lag=7, n_symbols=5)
    x, y = split.x_train, split.y_train
    assert x.shape[1:] == (8, 6) and split.n_classes == 5 and split.in_features == 6
    assert torch.equal(x[:, 0, :5].argmax(1), y) and (x[:, 0].sum(1) == 1).all()
    assert (x[:, 1:-1] == 0).all()
    assert (x[:, -1, 5] == 1).all() and (x[:, -1, :5] == 0).all() and (x[:, :-1, 5] == 0).all()
    assert set(y.tolist()) == set(range(5))


def test_load_dataset_forwards_kwargs():
    direct = recall_task(n_samples=100, lag=3, seed=4)
    loaded = load_dataset("recall", n_samples=100, lag=3, seed=4)
    assert torch.equal(direct.x_val, loaded.x_val) and torch.equal(direct.y_train, loaded.y_train)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: circles(val_fraction=0.0), ValueError),
        (lambda: circles(val_fraction=1.0), ValueError),
        (lambda: circles(val_fraction=-0.1), ValueError),
        (lambda: circles(val_fraction="half"), TypeError),
        (lambda: circles(n_samples=1), ValueError),
        (lambda: circles(n_samples=2.5), TypeError),
        (lambda: circles(noise=-1.0), ValueError),
        (lambda: circles(factor=1.0), ValueError),
        (lambda: circles(factor=0.0), ValueError),
        (lambda: circles(n_samples=4, val_fraction=0.1), ValueError),  # empty validation split
        (lambda: circles(seed=-1), ValueError),
        (lambda: digits(val_fraction=1.5), ValueError),
        (lambda: adding_problem(n_samples=1), ValueError),
        (lambda: adding_problem(seq_len=1), ValueError),
        (lambda: adding_problem(n_samples=10, val_fraction=0.01), ValueError),
        (lambda: recall_task(lag=0), ValueError),
        (lambda: recall_task(lag=-3), ValueError),
        (lambda: recall_task(n_symbols=1), ValueError),
        (lambda: recall_task(n_samples=0), ValueError),
        (lambda: recall_task(val_fraction=float("nan")), ValueError),
        (lambda: load_dataset("cifar"), ValueError),
        (lambda: load_dataset(3), TypeError),
        (lambda: load_dataset("circles", bogus=1), TypeError),
        (lambda: mnist(root=3, download=False), TypeError),
        (lambda: mnist(download="yes"), TypeError),
        (lambda: mnist(flatten=1, download=False), TypeError),
        (lambda: mnist(val_fraction=0.0, download=False), ValueError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="circles, digits, mnist, adding, recall"):
        load_dataset("imagenet")


def test_datasplit_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same number"):
        DataSplit("x", torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1), 2)


def test_mnist_empty_folder_without_download_names_both_ways_out(tmp_path, monkeypatch):
    def never(root):
        raise AssertionError("download=False must not download")

    monkeypatch.setattr(data_module, "_download_mnist", never)
    with pytest.raises(DataUnavailableError) as info:
        mnist(tmp_path, download=False)
    message = str(info.value)
    assert "connect to the internet so torchvision can download MNIST" in message
    assert "VGCOURSE_DATA=/path" in message and "root=" in message and str(tmp_path) in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("download", [None, True])
def test_mnist_offline_download_failure_gives_the_same_clear_error(tmp_path, monkeypatch, download):
    calls = []

    def offline(root):
        calls.append(root)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data_module, "_download_mnist", offline)
    with pytest.raises(DataUnavailableError, match="connect to the internet") as info:
        mnist(tmp_path, download=download)
    assert calls == [tmp_path]
    assert "Network is unreachable" in str(info.value) and "VGCOURSE_DATA" in str(info.value)


def test_mnist_env_var_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VGCOURSE_DATA", str(tmp_path))
    with pytest.raises(DataUnavailableError, match=str(tmp_path)):
        mnist(download=False)


def test_mnist_prefers_train_files_in_torchvision_layout(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 6)
    _write_idx(raw / "train-images-idx3-ubyte", rng.integers(0, 256, (60, 28, 28)))
    _write_idx(raw / "train-labels-idx1-ubyte", labels)
    _write_idx(raw / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28)))
    _write_idx(raw / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    split = mnist(tmp_path, val_fraction=1 / 6, download=False)
    assert split.n_train == 50 and split.n_val == 10
    assert torch.bincount(split.y_val).tolist() == [1] * 10


def test_mnist_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"not an idx file")
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist(tmp_path, download=False)


@needs_mnist
def test_mnist_t10k_split_is_stratified_and_standardized():
    split = mnist(MNIST_DIR, download=False)
    assert split.name == "mnist" and split.n_classes == 10
    assert split.n_train + split.n_val == 10_000 and split.x_train.shape[1] == 784
    counts = torch.bincount(split.y_train, minlength=10) + torch.bincount(split.y_val, minlength=10)
    assert counts.tolist() == MNIST_COUNTS
    expected_val = np.round(np.array(MNIST_COUNTS) / 6)
    assert torch.bincount(split.y_val, minlength=10).tolist() == expected_val.astype(int).tolist()
    x = split.x_train
    assert abs(x.min().item() - (-0.1307 / 0.3081)) < 1e-5 and abs(x.max().item() - (0.8693 / 0.3081)) < 1e-5
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05


@needs_mnist
def test_mnist_env_var_images_and_plain_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VGCOURSE_DATA", str(MNIST_DIR))
    flat = mnist(download=False, seed=3)
    images = mnist(download=False, seed=3, flatten=False)
    assert images.x_val.shape == (flat.n_val, 1, 28, 28) and images.in_features == 784
    assert torch.equal(images.x_val.reshape(flat.n_val, -1), flat.x_val)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # gunzipped copies in tmp only
        (tmp_path / name).write_bytes(gzip.decompress((MNIST_DIR / f"{name}.gz").read_bytes()))
    plain = mnist(tmp_path, download=False, seed=3)
    assert torch.equal(plain.x_train, flat.x_train) and torch.equal(plain.y_val, flat.y_val)
