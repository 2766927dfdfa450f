"""Tests for vgcourse.data: shapes, determinism, task definitions, the shipped and full MNIST, bad input."""

from __future__ import annotations

import gzip
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from vgcourse import data as data_module
from vgcourse.data import (
    MNIST_DIR,
    MNIST_MD5,
    DataSplit,
    DataUnavailableError,
    adding_problem,
    check_data,
    circles,
    digits,
    mnist,
    random_batches,
    shared_digits,
)

LOADERS = {"circles": circles, "digits": digits, "adding": adding_problem}
MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


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
    ],
)
def test_shapes_and_dtypes(name, x_shape, y_shape, y_dtype, n_classes):
    split = LOADERS[name]()
    assert isinstance(split, DataSplit) and split.name == name
    assert tuple(split.x_train.shape) == x_shape and split.x_train.dtype == torch.float32
    assert tuple(split.y_train.shape) == y_shape and split.y_train.dtype == y_dtype
    assert split.x_val.shape[1:] == split.x_train.shape[1:]
    assert split.n_classes == n_classes
    assert split.n_train == x_shape[0] and split.in_features == x_shape[-1]
    assert name in repr(split) and "tensor" not in repr(split)


@pytest.mark.parametrize("name", ["circles", "digits", "adding"])
def test_same_seed_same_data_other_seed_differs(name):
    a, b, c = LOADERS[name](seed=1), LOADERS[name](seed=1), LOADERS[name](seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)


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


def test_shared_digits_is_digits_loaded_once_per_seed():
    shared = shared_digits(3)
    hits = shared_digits.cache_info().hits
    assert shared is not shared_digits(3) and shared_digits.cache_info().hits == hits + 1  # kept, copied
    fresh = digits(seed=3)
    assert torch.equal(shared.x_train, fresh.x_train) and torch.equal(shared.y_val, fresh.y_val)


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


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: circles(val_fraction=0.0), ValueError, "val_fraction must be > 0.0; got 0.0"),
        (lambda: circles(val_fraction=1.0), ValueError, "val_fraction must be in (0, 1); got 1.0"),
        (lambda: circles(val_fraction=-0.1), ValueError, "val_fraction must be > 0.0; got -0.1"),
        (lambda: circles(val_fraction="half"), TypeError, "val_fraction must be a number; got str"),
        (lambda: circles(n_samples=1), ValueError, "n_samples must be >= 2; got 1"),
        (lambda: circles(n_samples=2.5), TypeError, "n_samples must be an integer; got float"),
        (lambda: circles(noise=-1.0), ValueError, "noise must be >= 0.0; got -1.0"),
        (lambda: circles(factor=1.0), ValueError, "factor must be in (0, 1); got 1.0"),
        (lambda: circles(factor=0.0), ValueError, "factor must be > 0.0; got 0.0"),
        (lambda: circles(n_samples=4, val_fraction=0.1), ValueError, "with 4 examples leaves an empty split"),
        (lambda: circles(seed=-1), ValueError, "seed must be >= 0; got -1"),
        (lambda: digits(val_fraction=1.5), ValueError, "val_fraction must be <= 1.0; got 1.5"),
        (lambda: adding_problem(n_samples=1), ValueError, "n_samples must be >= 2; got 1"),
        (lambda: adding_problem(seq_len=1), ValueError, "seq_len must be >= 2; got 1"),
        (lambda: adding_problem(n_samples=10, val_fraction=0.01), ValueError, "leaves an empty split"),
        (lambda: adding_problem(val_fraction=float("nan")), ValueError, "val_fraction must be finite"),
        (
            lambda: mnist(root=3, source="full", download=False),
            TypeError,
            "root must be a str, a Path or None",
        ),
        (lambda: mnist(download="yes"), TypeError, "download must be True, False or None"),
        (lambda: mnist(flatten=1), TypeError, "flatten must be a bool; got 1"),
        (lambda: mnist(val_fraction=0.0), ValueError, "val_fraction must be > 0.0; got 0.0"),
        (lambda: mnist(source="train"), ValueError, "unknown source 'train'; valid choices: shipped, full"),
        (lambda: mnist(source=None), TypeError, "source must be a string, one of: shipped, full"),
        (lambda: mnist(seed=-1), ValueError, "seed must be >= 0; got -1"),
    ],
)
def test_bad_input(call, error, message):
    # the message names the argument: an error from further in (scikit-learn's make_circles refusing
    # n_samples=2.5, NumPy on a NaN fraction, an empty split) is no check of it
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_random_batches_draw_distinct_examples_seeded() -> None:
    data = adding_problem(n_samples=40, seq_len=4)
    first, again = random_batches(data, 8, seed=3), random_batches(data, 8, seed=3)
    for _ in range(2):
        (x, y), (x2, y2) = first(), again()
        assert torch.equal(x, x2) and torch.equal(y, y2)
        assert x.shape == (8, 4, 2) and len({tuple(row.flatten().tolist()) for row in x}) == 8
    assert random_batches(data, data.n_train, seed=0, dtype=torch.float64)()[0].dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # size 0, -1, n_train + 1 and True gave 0, n_train - 1, n_train and 1 examples, silently
        ({"size": 0}, ValueError, "size must be >= 1; got 0"),
        ({"size": -1}, ValueError, "size must be >= 1; got -1"),
        ({"size": 33}, ValueError, "size must be <= 32; got 33"),  # n_train is 32: at most 32 distinct
        ({"size": True}, TypeError, "size must be an integer; got bool"),
        ({"size": 2.5}, TypeError, "size must be an integer; got float"),  # not a slice's own TypeError
        ({"seed": -1}, ValueError, "seed must be >= 0; got -1"),
        ({"dtype": torch.int64}, TypeError, "dtype must be a floating torch.dtype"),  # inputs truncated
        ({"dtype": "float64"}, TypeError, "dtype must be a floating torch.dtype"),
        ({"data": (torch.zeros(4, 2), torch.zeros(4))}, TypeError, "data must be a DataSplit"),
    ],
)
def test_random_batches_rejects_bad_input(kwargs: dict, error: type[Exception], message: str) -> None:
    arguments = {"data": adding_problem(n_samples=40, seq_len=4), "size": 4, "seed": 0} | kwargs
    with pytest.raises(error, match=re.escape(message)):
        random_batches(**arguments)()


def test_datasplit_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same number"):
        DataSplit("x", torch.zeros(3, 2), torch.zeros(2), torch.zeros(1, 2), torch.zeros(1), 2)


# -- MNIST: the shipped test split (the default) ---------------------------------------------------------


def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download or socket use fails the test: the default MNIST must need neither."""

    def never(*args, **kwargs):
        raise AssertionError("the shipped MNIST must not touch the network")

    monkeypatch.setattr(data_module, "_download_mnist", never)
    monkeypatch.setattr(socket, "socket", never)
    monkeypatch.setattr(socket, "create_connection", never)


def _copy_shipped(tmp_path: Path) -> Path:
    folder = tmp_path / "mnist"
    shutil.copytree(MNIST_DIR, folder)
    return folder


def test_shipped_files_have_the_published_md5() -> None:
    # the md5 sums torchvision's MNIST resource list publishes for the two t10k files
    assert MNIST_MD5 == {
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    }
    for name, expected in MNIST_MD5.items():
        assert data_module._md5(MNIST_DIR / name) == expected
    assert "md5 verified" in check_data() and str(MNIST_DIR) in check_data()


def test_wheel_carries_the_shipped_files_and_their_licence_note() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["vgcourse.datasets"]
    package_dir = MNIST_DIR.parent
    carried = {p.relative_to(package_dir) for pattern in patterns for p in package_dir.glob(pattern)}
    assert carried == {p.relative_to(package_dir) for p in MNIST_DIR.iterdir()}
    note = (MNIST_DIR / "README.md").read_text()
    for words in ("Yann LeCun", "Corinna Cortes", "Burges", "CC BY-SA 3.0", *MNIST_MD5.values()):
        assert words in note


def test_shipped_mnist_loads_without_env_var_or_network(monkeypatch, tmp_path) -> None:
    _no_network(monkeypatch)
    monkeypatch.setenv("VGCOURSE_DATA", str(tmp_path))  # an empty folder: the default must not look there
    split = mnist()
    assert split.name == "mnist" and split.n_classes == 10
    assert split.n_train + split.n_val == 10_000 and split.x_train.shape[1] == 784
    counts = torch.bincount(split.y_train, minlength=10) + torch.bincount(split.y_val, minlength=10)
    assert counts.tolist() == MNIST_COUNTS
    expected_val = np.round(np.array(MNIST_COUNTS) / 6)
    assert torch.bincount(split.y_val, minlength=10).tolist() == expected_val.astype(int).tolist()
    x = split.x_train
    assert abs(x.min().item() - (-0.1307 / 0.3081)) < 1e-5 and abs(x.max().item() - (0.8693 / 0.3081)) < 1e-5
    assert abs(x.mean().item()) < 0.05 and abs(x.std().item() - 1) < 0.05
    monkeypatch.delenv("VGCOURSE_DATA")
    again = mnist()
    assert torch.equal(again.x_train, split.x_train) and torch.equal(again.y_val, split.y_val)


def test_shipped_split_is_seeded_and_images_match_the_flat_rows() -> None:
    flat, images, other = mnist(seed=3), mnist(seed=3, flatten=False), mnist(seed=4)
    assert images.x_val.shape == (flat.n_val, 1, 28, 28) and images.in_features == 784
    assert torch.equal(images.x_val.reshape(flat.n_val, -1), flat.x_val)
    assert not torch.equal(other.y_train, flat.y_train)


@pytest.mark.parametrize(
    ("given", "match"), [({"root": "/data"}, "root="), ({"download": True}, "download=True")]
)
def test_shipped_source_rejects_root_and_download(given, match) -> None:
    with pytest.raises(ValueError, match=f"{match} only applies to source='full'"):
        mnist(**given)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_damaged_shipped_file_gives_one_clear_error(tmp_path, monkeypatch, damage) -> None:
    folder = _copy_shipped(tmp_path)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    if damage == "corrupt":
        raw = bytearray(labels.read_bytes())
        raw[100] ^= 0xFF
        labels.write_bytes(bytes(raw))
    else:
        labels.unlink()
    monkeypatch.setattr(data_module, "MNIST_DIR", folder)
    _no_network(monkeypatch)
    for call in (mnist, check_data):
        with pytest.raises(DataUnavailableError) as info:
            call()
        message = str(info.value)
        assert str(labels) in message and "git checkout -- vgcourse/datasets/mnist" in message
        assert ("md5" in message) == (damage == "corrupt") and ("missing" in message) == (damage == "missing")


def test_check_command_says_ok_or_names_the_way_out(tmp_path, monkeypatch, capsys) -> None:
    from vgcourse.datasets.__main__ import main

    assert main(["--check"]) == 0
    assert "md5 verified" in capsys.readouterr().out
    folder = _copy_shipped(tmp_path)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not MNIST")
    monkeypatch.setattr(data_module, "MNIST_DIR", folder)
    assert main(["--check"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "md5" in captured.err and "Way out" in captured.err


def test_check_command_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vgcourse.datasets", "--check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("vgcourse data OK") and "Warning" not in done.stderr


# -- MNIST: the full 60,000-image train split, an explicit option -----------------------------------------


def test_full_empty_folder_without_download_names_the_ways_out(tmp_path, monkeypatch):
    def never(root):
        raise AssertionError("download=False must not download")

    monkeypatch.setattr(data_module, "_download_mnist", never)
    with pytest.raises(DataUnavailableError) as info:
        mnist(tmp_path, source="full", download=False)
    message = str(info.value)
    assert "connect to the internet so vgcourse can download MNIST" in message
    assert "VGCOURSE_DATA=/path" in message and "root=" in message and str(tmp_path) in message
    assert "source='shipped'" in message
    assert isinstance(info.value, FileNotFoundError)


@pytest.mark.parametrize("download", [None, True])
def test_full_offline_download_failure_gives_one_clear_error(tmp_path, monkeypatch, download):
    calls = []

    def offline(root):
        calls.append(root)
        raise OSError("Network is unreachable")

    monkeypatch.setattr(data_module, "_download_mnist", offline)
    with pytest.raises(DataUnavailableError, match="connect to the internet") as info:
        mnist(tmp_path, source="full", download=download)
    assert calls == [tmp_path]
    assert "Network is unreachable" in str(info.value) and "VGCOURSE_DATA" in str(info.value)


def test_full_env_var_without_files(tmp_path, monkeypatch):
    monkeypatch.setenv("VGCOURSE_DATA", str(tmp_path))
    with pytest.raises(DataUnavailableError, match=str(tmp_path)):
        mnist(source="full", download=False)


def test_full_needs_the_train_files_not_the_test_split(tmp_path):
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((20, 28, 28)))
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    with pytest.raises(DataUnavailableError, match="60,000-image train files"):
        mnist(tmp_path, source="full", download=False)


def _fake_train_files(folder: Path, suffix: str) -> None:
    rng = np.random.default_rng(0)
    _write_idx(folder / f"train-images-idx3-ubyte{suffix}", rng.integers(0, 256, (60, 28, 28)))
    _write_idx(folder / f"train-labels-idx1-ubyte{suffix}", np.repeat(np.arange(10), 6))


def test_full_reads_train_files_in_torchvision_layout_and_from_the_env_var(tmp_path, monkeypatch):
    raw = tmp_path / "gz" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    _fake_train_files(raw, ".gz")
    split = mnist(tmp_path / "gz", source="full", val_fraction=1 / 6, download=False)
    assert split.n_train == 50 and split.n_val == 10
    assert torch.bincount(split.y_val).tolist() == [1] * 10
    (tmp_path / "plain").mkdir()
    _fake_train_files(tmp_path / "plain", "")
    monkeypatch.setenv("VGCOURSE_DATA", str(tmp_path / "plain"))
    plain = mnist(source="full", download=False)
    assert torch.equal(plain.x_train, split.x_train) and torch.equal(plain.y_val, split.y_val)


def test_full_rejects_a_file_that_is_not_idx(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(3))
    with pytest.raises(ValueError, match="not an IDX file"):
        mnist(tmp_path, source="full", download=False)


def test_full_download_uses_a_per_request_timeout_and_checks_md5(tmp_path, monkeypatch):
    # the download never changes process-wide settings (the socket default timeout): each request has its own
    import hashlib
    import urllib.request

    from torchvision.datasets import MNIST

    payloads = {"train-images-idx3-ubyte.gz": b"images", "train-labels-idx1-ubyte.gz": b"labels"}
    md5 = {name: hashlib.md5(data, usedforsecurity=False).hexdigest() for name, data in payloads.items()}
    resources = [(name, md5[name]) for name in payloads] + [("t10k-labels-idx1-ubyte.gz", "0" * 32)]
    monkeypatch.setattr(MNIST, "resources", resources)
    monkeypatch.setattr(MNIST, "mirrors", ["https://first.invalid/", "https://second.invalid/"])
    requests = []

    class Response:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            return None

        def read(self) -> bytes:
            return self.data

    def urlopen(request, timeout=None):
        requests.append((request.full_url, timeout, socket.getdefaulttimeout()))
        if request.full_url.startswith("https://first"):
            raise urllib.error.URLError("unreachable")
        return Response(payloads[request.full_url.rsplit("/", 1)[1]])

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    default = socket.getdefaulttimeout()
    data_module._download_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    assert {p.name: p.read_bytes() for p in raw.iterdir()} == payloads  # the test split is not fetched
    assert [(url.split("/")[2], t) for url, t, _ in requests] == [
        ("first.invalid", data_module._DOWNLOAD_TIMEOUT_S),
        ("second.invalid", data_module._DOWNLOAD_TIMEOUT_S),
    ] * 2
    assert all(d == default for _, _, d in requests) and socket.getdefaulttimeout() == default
    monkeypatch.setattr(MNIST, "resources", [("train-labels-idx1-ubyte.gz", "1" * 32)])
    (raw / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(OSError, match="md5 is not the published"):
        data_module._download_mnist(tmp_path)
