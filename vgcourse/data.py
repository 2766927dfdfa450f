"""Small data sets: toy classification, a long-range sequence task and MNIST, each a seeded :class:`DataSplit`
(float32 inputs; int64 labels or float32 (N, 1) regression targets)."""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vgcourse._cache import copied_cache
from vgcourse._validation import check_choice, check_float, check_int

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_SOURCES = ("shipped", "full")
#: The MNIST test split shipped inside the package, and the md5 of each file (as torchvision lists them).
MNIST_DIR = Path(__file__).parent / "datasets" / "mnist"
MNIST_MD5 = {
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
_CACHE_DIR = Path("~/.cache/vgcourse").expanduser()
_DOWNLOAD_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class DataSplit:
    """A train/validation split of one data set."""

    name: str  # "circles", "digits", "mnist", "adding", ...
    x_train: Tensor  # (N, F) tabular, (N, T, F) sequences or (N, 1, 28, 28) images
    y_train: Tensor  # int64 (N,) class labels or float32 (N, 1) regression targets
    x_val: Tensor
    y_val: Tensor
    n_classes: int | None  # None for regression

    def __post_init__(self) -> None:
        if len(self.x_train) != len(self.y_train) or len(self.x_val) != len(self.y_val):
            raise ValueError("x and y must have the same number of examples in each split")

    @property
    def in_features(self) -> int:
        """Input size of one example: F for (N, F) and for sequences (N, T, F); C*H*W for images."""
        if self.x_train.ndim == 3:
            return int(self.x_train.shape[-1])
        return int(np.prod(self.x_train.shape[1:]))

    @property
    def n_train(self) -> int:
        return len(self.x_train)

    @property
    def n_val(self) -> int:
        return len(self.x_val)

    def __repr__(self) -> str:
        shapes = f"x_train={tuple(self.x_train.shape)}, x_val={tuple(self.x_val.shape)}"
        return f"DataSplit(name={self.name!r}, {shapes}, n_classes={self.n_classes})"


class DataUnavailableError(FileNotFoundError):
    """The data files are not on disk (or fail their checksum) and could not be downloaded."""


def _check_fraction(val_fraction: Any) -> float:
    fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, strict_minimum=True)
    if fraction >= 1.0:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
    return fraction


def _split_sizes(n: int, val_fraction: float) -> tuple[int, int]:
    n_val = round(n * val_fraction)
    if n_val < 1 or n_val > n - 1:
        raise ValueError(f"val_fraction={val_fraction} with {n} examples leaves an empty split")
    return n - n_val, n_val


def _stratified_split(y: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (train, val): ``round(n_c * val_fraction)`` random examples of each class c go to val."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in torch.unique(y):
        idx = torch.nonzero(y == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_val = round(len(idx) * val_fraction)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    train_idx, val_idx = torch.cat(train), torch.cat(val)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise ValueError(f"val_fraction={val_fraction} with {len(y)} examples leaves an empty split")
    # shuffle so that the classes are interleaved, not in blocks
    train_idx = train_idx[torch.randperm(len(train_idx), generator=generator)]
    val_idx = val_idx[torch.randperm(len(val_idx), generator=generator)]
    return train_idx, val_idx


def _classification_split(name: str, x: Tensor, y: Tensor, val_fraction: float, seed: int) -> DataSplit:
    train_idx, val_idx = _stratified_split(y, val_fraction, seed)
    n_classes = int(y.max()) + 1
    return DataSplit(name, x[train_idx], y[train_idx], x[val_idx], y[val_idx], n_classes)


def circles(
    n_samples: int = 1000, noise: float = 0.1, factor: float = 0.5, val_fraction: float = 0.2, seed: int = 0
) -> DataSplit:
    """Two concentric circles (sklearn ``make_circles``, inner radius ``factor``): x (N, 2), 2 classes."""
    from sklearn.datasets import make_circles

    check_int("n_samples", n_samples, minimum=2)
    noise = check_float("noise", noise, minimum=0.0)
    factor = check_float("factor", factor, 0.0, 1.0, strict_minimum=True)
    if factor >= 1.0:
        raise ValueError(f"factor must be in (0, 1); got {factor!r}")
    val_fraction = _check_fraction(val_fraction)
    check_int("seed", seed, minimum=0)
    x, y = make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)
    x, y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.int64)
    return _classification_split("circles", x, y, val_fraction, seed)


def digits(val_fraction: float = 0.2, seed: int = 0) -> DataSplit:
    """8x8 digits (sklearn, no download), x (N, 64), 10 classes: x' = (x/16 - mean) / std with the train
    split's per-pixel mean and std (std 0 -> 1)."""
    from sklearn.datasets import load_digits

    val_fraction = _check_fraction(val_fraction)
    check_int("seed", seed, minimum=0)
    bunch = load_digits()
    x = torch.as_tensor(bunch.data, dtype=torch.float32) / 16.0
    y = torch.as_tensor(bunch.target, dtype=torch.int64)
    split = _classification_split("digits", x, y, val_fraction, seed)
    mean, std = split.x_train.mean(0), split.x_train.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return DataSplit(
        "digits", (split.x_train - mean) / std, split.y_train, (split.x_val - mean) / std, split.y_val, 10
    )


@copied_cache(maxsize=8)
def shared_digits(seed: int = 0) -> DataSplit:
    """``digits(seed=seed)``, loaded once per process; each call gets its own copy of the tensors."""
    return digits(seed=seed)


def adding_problem(
    n_samples: int = 2000, seq_len: int = 50, val_fraction: float = 0.2, seed: int = 0
) -> DataSplit:
    """Adding problem (Hochreiter & Schmidhuber, 1997): x (N, T, 2) holds U(0, 1) values and marks on two
    of them, one per half; y (N, 1) their sum. Predicting 1.0 gives MSE = 2/12 ~ 0.167, the bar to beat."""
    check_int("n_samples", n_samples, minimum=2)
    check_int("seq_len", seq_len, minimum=2)
    val_fraction = _check_fraction(val_fraction)
    check_int("seed", seed, minimum=0)
    n_train, _ = _split_sizes(n_samples, val_fraction)
    generator = torch.Generator().manual_seed(seed)
    values = torch.rand(n_samples, seq_len, generator=generator)
    half = seq_len // 2
    first = torch.randint(0, half, (n_samples,), generator=generator)
    second = torch.randint(half, seq_len, (n_samples,), generator=generator)
    rows = torch.arange(n_samples)
    markers = torch.zeros(n_samples, seq_len)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = torch.stack([values, markers], dim=-1)
    y = (values[rows, first] + values[rows, second]).unsqueeze(1)
    return DataSplit("adding", x[:n_train], y[:n_train], x[n_train:], y[n_train:], None)


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (MNIST's format), plain or gzipped, into a uint8 array."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    ndim = raw[3] if len(raw) >= 4 else 0
    if raw[:3] != b"\x00\x00\x08" or ndim < 1:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(shape):
        raise ValueError(f"{path} is truncated: header says {shape}, found {data.size} values")
    return data.reshape(shape)


def _find_mnist_files(folder: Path, prefix: str) -> tuple[Path, Path] | None:
    """(images, labels) for ``prefix`` ("train" or "t10k") in ``folder`` or ``folder/MNIST/raw``."""
    for base in (folder, folder / "MNIST" / "raw"):
        found = []
        for kind, dims in (("images", 3), ("labels", 1)):
            matches = sorted(base.glob(f"{prefix}-{kind}[-.]idx{dims}-ubyte*"))
            matches = [p for p in matches if p.name.endswith(("ubyte", "ubyte.gz"))]
            if matches:
                found.append(matches[0])
        if len(found) == 2:
            return found[0], found[1]
    return None


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def shipped_mnist_files() -> tuple[Path, Path]:
    """(images, labels) of the MNIST test split shipped in the package, md5-checked."""
    paths = []
    for name, expected in MNIST_MD5.items():
        path = MNIST_DIR / name
        if not path.is_file():
            problem = f"{path} is missing"
        elif (found := _md5(path)) != expected:
            problem = f"{path} has md5 {found}, not the published {expected} (corrupted or replaced)"
        else:
            paths.append(path)
            continue
        raise DataUnavailableError(
            f"The MNIST test split shipped with vgcourse cannot be used: {problem}. Way out: restore the "
            "package's data files (in a clone of the repository: git checkout -- vgcourse/datasets/mnist; "
            "otherwise: pip install --force-reinstall vgcourse)."
        )
    return paths[0], paths[1]


def check_data() -> str:
    """Verify the data the book needs (the shipped MNIST files, by md5) without loading it; one line back."""
    images, labels = shipped_mnist_files()
    size = (images.stat().st_size + labels.stat().st_size) / 1e6
    return f"vgcourse data OK: MNIST test split in {images.parent} ({size:.1f} MB, md5 verified)"


def _download_mnist(root: Path) -> None:
    """Download MNIST's train files into ``root/MNIST/raw`` from torchvision's mirrors, md5-checked."""
    from urllib.request import Request, urlopen

    from torchvision.datasets import MNIST

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for filename, md5 in MNIST.resources:
        target = raw / filename
        if not filename.startswith("train-") or (target.is_file() and _md5(target) == md5):
            continue
        errors = []
        for mirror in MNIST.mirrors:
            url = f"{mirror}{filename}"
            try:
                request = Request(url, headers={"User-Agent": "vgcourse"})
                with urlopen(request, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
            except OSError as error:  # URLError, timeouts, refused connections
                errors.append(f"{url}: {error}")
                continue
            if hashlib.md5(payload, usedforsecurity=False).hexdigest() != md5:
                errors.append(f"{url}: the file's md5 is not the published {md5}")
                continue
            partial = target.with_name(f"{filename}.part")
            partial.write_bytes(payload)
            partial.replace(target)
            break
        else:
            raise OSError(f"could not download {filename}: {'; '.join(errors)}")


def _full_mnist_files(root: str | Path | None, download: bool | None) -> tuple[Path, Path]:
    """(images, labels) of the 60,000-image train split from root, $VGCOURSE_DATA or the cache."""
    if root is None:
        root = os.environ.get("VGCOURSE_DATA") or _CACHE_DIR
    folder = Path(root).expanduser()
    files = _find_mnist_files(folder, "train")
    reason = "download=False"
    if files is None and download is not False:
        try:
            _download_mnist(folder)
            files = _find_mnist_files(folder, "train")
            reason = "the download produced no files"
        except Exception as error:  # offline, blocked, read-only folder...: one clear message below
            reason = f"the download failed ({type(error).__name__}: {error})"
    if files is None:
        raise DataUnavailableError(
            f"source='full' needs MNIST's 60,000-image train files, not found in {folder} or "
            f"{folder / 'MNIST' / 'raw'} ({reason}). Ways out: connect to the internet so vgcourse can "
            "download MNIST (download=True), or set VGCOURSE_DATA=/path (or pass root=) to a folder with "
            "train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz], or use the default "
            "source='shipped' (the 10,000-image test split inside the package, no download)."
        )
    return files


def mnist(
    root: str | Path | None = None,
    *,
    source: str = "shipped",
    val_fraction: float = 1 / 6,
    seed: int = 0,
    download: bool | None = None,
    flatten: bool = True,
) -> DataSplit:
    """MNIST, x' = (x / 255 - 0.1307) / 0.3081, x (N, 784) or (N, 1, 28, 28), a stratified seeded split.

    ``source="shipped"``: the 10,000-image test split in the package (no network). ``source="full"``: the
    60,000-image train split from ``root``, ``$VGCOURSE_DATA`` or ``~/.cache/vgcourse``, downloaded there
    when missing unless ``download=False``.
    """
    if root is not None and not isinstance(root, (str, Path)):
        raise TypeError(f"root must be a str, a Path or None; got {type(root).__name__}")
    if download is not None and not isinstance(download, bool):
        raise TypeError(f"download must be True, False or None; got {download!r}")
    if not isinstance(flatten, bool):
        raise TypeError(f"flatten must be a bool; got {flatten!r}")
    check_choice("source", source, MNIST_SOURCES)
    val_fraction = _check_fraction(val_fraction)
    check_int("seed", seed, minimum=0)
    if source == "shipped":
        if root is not None or download:
            given = "root=" if root is not None else "download=True"
            raise ValueError(
                f"{given} only applies to source='full'; the default source='shipped' reads the test split "
                "inside the package and never downloads"
            )
        files = shipped_mnist_files()
    else:
        files = _full_mnist_files(root, download)

    images, labels = (torch.from_numpy(_read_idx(path).copy()) for path in files)
    if len(images) != len(labels) or images.shape[1:] != (28, 28):
        raise ValueError(f"{files[0]} and {files[1]} do not hold matching 28x28 MNIST images and labels")
    x = (images.float() / 255.0 - MNIST_MEAN) / MNIST_STD
    x = x.reshape(len(x), 784) if flatten else x.unsqueeze(1)
    return _classification_split("mnist", x, labels.long(), val_fraction, seed)


def random_batches(data: DataSplit, size: int, seed: int, dtype: torch.dtype | None = None) -> Any:
    """batch(step) -> (x, y): ``size`` distinct training examples per call (a batch source for ``train``),
    a fresh random permutation each time from a generator seeded by ``seed``; x in ``dtype`` if given."""
    if not isinstance(data, DataSplit):
        raise TypeError(f"data must be a DataSplit (see vgcourse.data); got {type(data).__name__}")
    check_int("size", size, minimum=1, maximum=data.n_train)  # distinct examples: at most n_train
    check_int("seed", seed, minimum=0)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype (torch.float64, ...) or None; got {dtype!r}")
    x_all = data.x_train if dtype is None else data.x_train.to(dtype)
    generator = torch.Generator().manual_seed(seed)

    def batch(_step: int = 0) -> tuple[Tensor, Tensor]:
        idx = torch.randperm(data.n_train, generator=generator)[:size]
        return x_all[idx], data.y_train[idx]

    return batch
