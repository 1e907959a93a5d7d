"""Datasets for trials: scikit-learn digits (default, offline), CIFAR-10, MNIST, Fashion-MNIST, image folders.

Every loader returns a :class:`~nas.tensor_dataset.TensorDataset` whose images are float32 tensors of
shape (N, C, H, W), scaled to [0, 1] and then normalised per channel with the mean / std of the
*training* split, and whose labels are int64 tensors of shape (N,); with ``compact=True`` the
images stay raw pixels (uint8 where exact, a quarter of the memory) with the same normalisation
recorded, applied per batch on the trial's device (``raw=True``; trials use this form). The
train / validation split is stratified by class and fully determined by ``seed``. ``limit`` caps
the number of training samples (the validation split is cut in proportion), so trials and tests
can run on tiny subsets.

Problems with the data on disk (missing directory or file, wrong magic number, truncated file,
empty folder, too few samples, ...) raise :class:`DatasetError` with one message naming the path,
what is wrong and what to do about it.

The official CIFAR-10 "python version" is a set of pickles. Our own state is never pickled; to read
these files we use :class:`RestrictedUnpickler`, which resolves only the handful of numpy globals
needed to rebuild arrays and refuses every other global, so a tampered batch cannot run code.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from nas.tensor_dataset import TensorDataset, compact_pixels
from search_spaces.errors import InputError

DATASETS: tuple[str, ...] = ("digits", "cifar10", "mnist", "fashion_mnist", "folder")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))

MNIST_IMAGES = "train-images-idx3-ubyte"
MNIST_LABELS = "train-labels-idx1-ubyte"
# variant -> (base URL, {file name: md5}, torchvision sub-directory also searched under root)
MNIST_SOURCES: dict[str, tuple[str, dict[str, str], str]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        {
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        },
        "MNIST",
    ),
    "fashion": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        {
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        },
        "FashionMNIST",
    ),
}
IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
DOWNLOAD_TIMEOUT_S = 60.0


class DatasetError(InputError):
    """A dataset cannot be loaded; the message names the path, the problem and the fix."""


# ----------------------------------------------------------------------------------------------
# split and normalisation (shared by every loader)


def _check_split_args(val_fraction: float, limit: int | None) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise DatasetError(f"limit must be a positive integer or None, got {limit!r}")


def split_indices(
    labels: np.ndarray, *, val_fraction: float, seed: int, limit: int | None, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded split of sample indices into (train, val), both shuffled int64 arrays.

    ``labels``: (N,) integer class ids. ``round(N * val_fraction)`` samples (at least one) go to
    validation, shared between classes in proportion to their sizes (largest remainders first, ties
    broken by ``seed``); every class keeps at least one training sample. With ``limit`` the training
    indices are cut to ``limit`` and the validation ones to ``ceil(limit * val_fraction / (1 - val_fraction))``.
    """
    _check_split_args(val_fraction, limit)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    capacity = counts - 1  # validation may take all but one sample of each class
    if capacity.sum() < 1:
        raise DatasetError(
            f"{source}: too few samples ({len(labels)}) to split into train and validation: every class has "
            "a single sample, which training needs; add more samples"
        )
    target = min(max(round(len(labels) * val_fraction), 1), int(capacity.sum()))
    quota = counts * val_fraction
    n_val = np.minimum(np.floor(quota).astype(np.int64), capacity)
    tie_break = rng.permutation(len(classes))
    order = tie_break[np.argsort(-(quota - np.floor(quota))[tie_break], kind="stable")]
    while n_val.sum() < target:  # hand out the remainder, largest fractional part first
        for k in order:
            if n_val.sum() < target and n_val[k] < capacity[k]:
                n_val[k] += 1
    train_parts, val_parts = [], []
    for c, k in zip(classes, n_val, strict=True):
        idx = rng.permutation(np.flatnonzero(labels == c))
        val_parts.append(idx[:k])
        train_parts.append(idx[k:])
    train = rng.permutation(np.concatenate(train_parts))
    val = rng.permutation(np.concatenate(val_parts))
    if limit is not None:
        train = train[:limit]
        val = val[: max(1, math.ceil(limit * val_fraction / (1.0 - val_fraction)))]
    return train.astype(np.int64), val.astype(np.int64)


def _normalise_(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    """float32 (N, C, H, W), in place: x = (x - mean[c]) / std[c]; returned as a tensor sharing memory."""
    x -= mean[None, :, None, None]
    x /= std[None, :, None, None]
    return torch.from_numpy(x)


def _build(
    name: str, images: np.ndarray | Callable[[np.ndarray], np.ndarray], labels: np.ndarray, num_classes: int,
    *, scale: float, val_fraction: float, seed: int, limit: int | None, source: str, compact: bool = False,
) -> TensorDataset:
    """Split, scale to [0, 1] (divide by ``scale``), normalise per channel with train statistics.

    ``images``: (N, C, H, W) array (any numeric dtype), or a function mapping an index array to
    the (len(idx), C, H, W) images (so lazily-read sources only decode the samples they keep).
    ``labels``: (N,) integers in [0, num_classes). ``compact``: keep the raw pixels (uint8 where
    exact, :func:`~nas.tensor_dataset.compact_pixels`) and only record the normalisation
    (``raw=True``); the statistics are the same either way.
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{source}: labels must lie in [0, {num_classes}), found values from {labels.min()} to "
            f"{labels.max()}; the file is corrupt or not this dataset"
        )
    train_idx, val_idx = split_indices(labels, val_fraction=val_fraction, seed=seed, limit=limit, source=source)
    take = images if callable(images) else (lambda idx: images[idx])
    train_raw, val_raw = np.asarray(take(train_idx)), np.asarray(take(val_idx))
    if compact:
        train_raw, val_raw = compact_pixels(train_raw, val_raw)
    train_x = np.array(train_raw, dtype=np.float32, order="C")
    train_x /= np.float32(scale)
    mean = train_x.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = train_x.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    std = np.maximum(std, np.float32(1e-6))  # constant channels (tiny subsets): avoid dividing by 0
    if compact:
        del train_x
        stored = torch.from_numpy(train_raw), torch.from_numpy(val_raw)
    else:
        val_x = np.array(val_raw, dtype=np.float32, order="C")
        val_x /= np.float32(scale)
        stored = _normalise_(train_x, mean, std), _normalise_(val_x, mean, std)
    return TensorDataset(
        name=name,
        train_x=stored[0],
        train_y=torch.from_numpy(labels[train_idx].copy()),
        val_x=stored[1],
        val_y=torch.from_numpy(labels[val_idx].copy()),
        num_classes=num_classes,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        max_pixel_value=float(scale),
        raw=compact,
    )


# ----------------------------------------------------------------------------------------------
# digits (scikit-learn, bundled: works offline)


def load_digits(val_fraction: float = 0.2, seed: int = 0, *, limit: int | None = None,
                compact: bool = False) -> TensorDataset:
    """scikit-learn's bundled 8x8 digits (1797 images, 10 classes) -> x (N, 1, 8, 8), y (N,).

    Pixel values 0..16 are scaled to [0, 1], then normalised with the train split's mean / std.
    """
    _check_split_args(val_fraction, limit)
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:
        raise DatasetError(
            f"the 'digits' dataset needs scikit-learn ({exc}); install it with `pip install scikit-learn`"
        ) from exc
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None, :, :]  # (1797, 1, 8, 8)
    return _build(
        "digits", images, np.asarray(bunch.target), 10,
        scale=16.0, val_fraction=val_fraction, seed=seed, limit=limit, source="scikit-learn digits",
        compact=compact,
    )


# ----------------------------------------------------------------------------------------------
# downloads (atomic, checksummed) and safe archive extraction


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(url: str, dest: Path, md5: str | None = None) -> Path:
    """Fetch ``url`` to ``dest`` atomically (temporary file in the same directory, then rename).

    With ``md5`` the download is checked before it is moved into place. Any failure raises
    :class:`DatasetError` telling the user where to put the file by hand; ``dest`` is then absent.
    """
    dest = Path(dest)
    manual = f"Without internet access, fetch {url} elsewhere and place it at {dest}, then run again."
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DatasetError(f"cannot write to {dest.parent}: {exc}. {manual}") from exc
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                shutil.copyfileobj(resp, out, 1 << 20)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise DatasetError(f"could not download {url}: {exc}. {manual}") from exc
        if md5 is not None and (got := _md5(tmp)) != md5:
            raise DatasetError(
                f"checksum mismatch for {url}: md5 {got}, expected {md5} (incomplete or altered download). {manual}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def safe_extract_tar(archive: Path, dest: Path) -> None:
    """Extract a .tar / .tar.gz into ``dest``, refusing absolute paths, '..', links and devices."""
    dest = Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            root = dest.resolve()
            for m in members:
                parts = PurePosixPath(m.name).parts
                inside = (root / m.name).resolve().is_relative_to(root)
                if m.name.startswith(("/", "\\")) or ".." in parts or not inside or not (m.isfile() or m.isdir()):
                    raise DatasetError(
                        f"{archive}: unsafe archive entry {m.name!r} (absolute path, '..', link or special "
                        "file); refusing to extract. Delete the archive and fetch the official one."
                    )
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python < 3.11.4; entries were checked above
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise DatasetError(
            f"{archive}: cannot extract ({exc}); the archive is truncated or corrupt. Delete it and download again."
        ) from exc


# ----------------------------------------------------------------------------------------------
# CIFAR-10 (python version: pickled batches, read with a restricted unpickler)

_ARRAY = np.zeros(1, dtype=np.uint8)
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    # ndarray.__reduce__ (protocols 0-4; numpy < 2 spells the module numpy.core)
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY.__reduce__()[0],
    # ndarray.__reduce_ex__(5) (pickle protocol 5, Python 3's default)
    ("numpy.core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy._core.numeric", "_frombuffer"): _ARRAY.__reduce_ex__(5)[0],
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


# what a truncated or mangled (but not malicious) pickle raises while loading
_CORRUPT_PICKLE = (pickle.UnpicklingError, EOFError, OSError, ValueError, TypeError, AttributeError, LookupError)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for something :class:`RestrictedUnpickler` does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds plain containers and numpy arrays and refuses every other global.

    ``find_class`` only resolves the numpy array reconstruction helpers, ``numpy.ndarray`` and
    ``numpy.dtype`` (looked up here, never imported by name), so a pickle that references e.g.
    ``os.system`` fails with :class:`UnsafePickleError` before anything is called.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: only numpy arrays are allowed in a CIFAR batch"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("refusing persistent ids: not allowed in a CIFAR batch")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images uint8 (n, 3, 32, 32), labels int64 (n,)."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            obj = RestrictedUnpickler(fh, encoding="bytes").load()
    except UnsafePickleError as exc:
        raise DatasetError(f"{path}: not a genuine CIFAR-10 batch: {exc}. Replace it with the official file.") from exc
    except _CORRUPT_PICKLE as exc:
        raise DatasetError(
            f"{path}: cannot read CIFAR-10 batch ({type(exc).__name__}: {exc}); the file is truncated or "
            "corrupt. Replace it with the official one."
        ) from exc
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}: a CIFAR-10 batch must be a dict, got {type(obj).__name__}")
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DatasetError(f"{path}: b'data' must be a uint8 array of shape (N, 3072), got {got}")
    try:
        labels_arr = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{path}: b'labels' must be a list of integers ({exc})") from exc
    if labels_arr.shape != (data.shape[0],):
        raise DatasetError(
            f"{path}: {data.shape[0]} images but b'labels' has shape {labels_arr.shape}; the file is corrupt"
        )
    return data.reshape(-1, 3, 32, 32), labels_arr


def _cifar_dir(root: Path, download_ok: bool) -> Path:
    """The directory holding data_batch_1..5: root/cifar-10-batches-py, or root itself."""
    for candidate in (root / CIFAR10_DIR, root):
        if (candidate / CIFAR10_TRAIN_BATCHES[0]).is_file():
            return candidate
    archive = root / CIFAR10_ARCHIVE
    if not archive.is_file() and download_ok:
        download_file(CIFAR10_URL, archive, CIFAR10_MD5)
    if archive.is_file():
        if (got := _md5(archive)) != CIFAR10_MD5:
            raise DatasetError(
                f"{archive}: md5 {got} does not match the official {CIFAR10_MD5}; delete it and fetch {CIFAR10_URL}"
            )
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=".cifar-extract-"))
        try:
            safe_extract_tar(archive, tmp)
            if not (tmp / CIFAR10_DIR).is_dir():
                raise DatasetError(f"{archive}: the archive has no {CIFAR10_DIR}/ directory; it is not CIFAR-10")
            if not (root / CIFAR10_DIR).exists():
                os.replace(tmp / CIFAR10_DIR, root / CIFAR10_DIR)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return root / CIFAR10_DIR
    raise DatasetError(
        f"CIFAR-10 not found under {root}: expected {root / CIFAR10_DIR}/data_batch_1..5. Download the "
        f"'python version' ({CIFAR10_URL}) and place {CIFAR10_ARCHIVE} or its extracted {CIFAR10_DIR}/ in "
        f"{root}, or pass download=True"
    )


def load_cifar10(
    root: str | os.PathLike[str], val_fraction: float = 0.1, seed: int = 0, download: bool = False,
    *, limit: int | None = None, compact: bool = False,
) -> TensorDataset:
    """CIFAR-10 training batches (50000 images, 10 classes) -> x (N, 3, 32, 32), y (N,).

    ``root`` holds ``cifar-10-batches-py/`` (or is it), or ``cifar-10-python.tar.gz`` which is then
    extracted; with ``download=True`` the archive is fetched first. Train and validation both come
    from the 50000 training images (``test_batch`` is not used); normalisation is per channel.
    """
    _check_split_args(val_fraction, limit)
    root = _existing_root(root, "CIFAR-10", create=download)
    batch_dir = _cifar_dir(root, download)
    images, labels = [], []
    for name in CIFAR10_TRAIN_BATCHES:
        path = batch_dir / name
        if not path.is_file():
            raise DatasetError(
                f"{path} is missing: a complete CIFAR-10 {CIFAR10_DIR}/ has data_batch_1..5; "
                f"extract the official archive ({CIFAR10_URL}) again"
            )
        x, y = read_cifar_batch(path)
        images.append(x)
        labels.append(y)
    return _build(
        "cifar10", np.concatenate(images), np.concatenate(labels), 10,
        scale=255.0, val_fraction=val_fraction, seed=seed, limit=limit, source=str(batch_dir), compact=compact,
    )


# ----------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST (IDX files)


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """An IDX file of unsigned bytes (gzip-compressed if its name ends in .gz) -> uint8 array.

    Images (magic 2051) give (n, rows, cols); labels (magic 2049) give (n,). Dimensions are big-endian
    uint32 after the magic number.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DatasetError(
            f"{path}: cannot read ({type(exc).__name__}: {exc}); the file is truncated or corrupt, download it again"
        ) from exc
    kind = "image" if expected_magic == IDX_IMAGES_MAGIC else "label"
    if len(raw) < 4:
        raise DatasetError(f"{path}: only {len(raw)} bytes, too short for an IDX header; the file is truncated")
    magic = int(np.frombuffer(raw, dtype=">u4", count=1)[0])
    if magic != expected_magic:
        raise DatasetError(
            f"{path}: wrong magic number {magic} (0x{magic:08x}), expected {expected_magic} for an IDX {kind} "
            "file; is this the right file (images vs labels, or not IDX at all)?"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: IDX header needs {header} bytes but the file has {len(raw)}; it is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        problem = "is truncated" if len(raw) < expected else "has unexpected trailing bytes"
        raise DatasetError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file has {len(raw)} bytes; it {problem}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(dirs: list[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (f"{stem}.gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def load_mnist(
    root: str | os.PathLike[str], variant: str = "mnist", val_fraction: float = 0.1, seed: int = 0,
    download: bool = False, *, limit: int | None = None, compact: bool = False,
) -> TensorDataset:
    """MNIST or Fashion-MNIST (``variant="mnist" | "fashion"``) training set -> x (N, 1, 28, 28), y (N,).

    Reads ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` from ``root`` (or from
    torchvision's ``root/MNIST/raw`` / ``root/FashionMNIST/raw``); ``download=True`` fetches missing
    .gz files. Train and validation both come from the 60000 training images.
    """
    if variant not in MNIST_SOURCES:
        raise DatasetError(f"unknown MNIST variant {variant!r}; choose one of {', '.join(MNIST_SOURCES)}")
    _check_split_args(val_fraction, limit)
    base_url, md5s, tv_dir = MNIST_SOURCES[variant]
    title = "MNIST" if variant == "mnist" else "Fashion-MNIST"
    root = _existing_root(root, title, create=download)
    dirs = [root, root / tv_dir / "raw"]
    found: dict[str, Path] = {}
    for stem in (MNIST_IMAGES, MNIST_LABELS):
        path = _find_idx(dirs, stem)
        if path is None and download:
            path = download_file(base_url + f"{stem}.gz", root / f"{stem}.gz", md5s.get(f"{stem}.gz"))
        if path is None:
            raise DatasetError(
                f"{title} file {stem}.gz (or uncompressed {stem}) not found in {root}. Download it from "
                f"{base_url}{stem}.gz and place it at {root / (stem + '.gz')}, or pass download=True"
            )
        found[stem] = path
    images = read_idx(found[MNIST_IMAGES], IDX_IMAGES_MAGIC)
    labels = read_idx(found[MNIST_LABELS], IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DatasetError(
            f"{found[MNIST_IMAGES]} has {len(images)} images but {found[MNIST_LABELS]} has {len(labels)} "
            "labels; the two files do not belong together"
        )
    return _build(
        "mnist" if variant == "mnist" else "fashion_mnist", images[:, None, :, :], labels, 10,
        scale=255.0, val_fraction=val_fraction, seed=seed, limit=limit, source=str(found[MNIST_IMAGES]),
        compact=compact,
    )


# ----------------------------------------------------------------------------------------------
# image folders: root/<class_name>/*.png|jpg|jpeg|bmp


def _read_image(path: Path, size: int) -> np.ndarray:
    """One image file -> uint8 (3, size, size), RGB, resized bilinearly."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot read image ({type(exc).__name__}: {exc}); fix or remove the file") from exc
    return arr.transpose(2, 0, 1)


def load_image_folder(
    root: str | os.PathLike[str], image_size: int = 32, val_fraction: float = 0.2, seed: int = 0,
    *, limit: int | None = None, compact: bool = False,
) -> TensorDataset:
    """``root/<class_name>/*.png|jpg|jpeg|bmp`` -> x (N, 3, image_size, image_size), y (N,).

    Classes are the sub-directories sorted by name (label = position); hidden entries are ignored.
    Images are converted to RGB and resized; only the images kept after ``limit`` are decoded.
    """
    _check_split_args(val_fraction, limit)
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
    try:
        import PIL  # noqa: F401
    except ImportError as exc:
        raise DatasetError(f"image folders need Pillow ({exc}); install it with `pip install pillow`") from exc
    root = _existing_root(root, "image folder", create=False)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DatasetError(
            f"{root}: found {len(classes)} class sub-directories ({', '.join(classes) or 'none'}); an image folder "
            "needs root/<class_name>/<image>.png|jpg|jpeg|bmp with at least 2 classes"
        )
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = sorted(
            p for p in (root / cls).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not found:
            raise DatasetError(
                f"{root / cls}: class directory has no images ({', '.join(IMAGE_SUFFIXES)}); add images or remove it"
            )
        files.extend(found)
        labels.extend([label] * len(found))

    def decode(idx: np.ndarray) -> np.ndarray:
        return np.stack([_read_image(files[i], image_size) for i in idx])

    return _build(
        root.name or "folder", decode, np.asarray(labels), len(classes),
        scale=255.0, val_fraction=val_fraction, seed=seed, limit=limit, source=str(root), compact=compact,
    )


# ----------------------------------------------------------------------------------------------
# dispatch


def _existing_root(root: str | os.PathLike[str] | None, what: str, *, create: bool) -> Path:
    if root is None or str(root) == "":
        raise DatasetError(f"{what} needs a data directory (root); none was given")
    path = Path(root).expanduser()
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatasetError(f"cannot create the {what} directory {path}: {exc}") from exc
    if not path.exists():
        raise DatasetError(f"{what} directory {path} does not exist; create it and put the data there "
                           "(or pass --download where the internet is reachable)")
    if not path.is_dir():
        raise DatasetError(f"{what} path {path} is not a directory")
    return path


def load_dataset(name: str, root: str | os.PathLike[str] | None = None, **kw: Any) -> TensorDataset:
    """Load dataset ``name`` (one of :data:`DATASETS`) from ``root``; ``kw`` goes to its loader.

    ``digits`` ignores ``root``; the others need it. Common keywords: ``val_fraction``, ``seed``,
    ``limit``, ``compact`` (raw uint8 pixels, normalised per batch on the device); ``download`` for
    cifar10 / mnist / fashion_mnist; ``image_size`` for folder.
    """
    key = name.strip().lower().replace("-", "_")
    if key == "digits":
        return load_digits(**kw)
    if key not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if root is None:
        raise DatasetError(f"dataset {key!r} needs a data directory: pass root (digits is the only built-in one)")
    if key == "cifar10":
        return load_cifar10(root, **kw)
    if key == "mnist":
        return load_mnist(root, variant="mnist", **kw)
    if key == "fashion_mnist":
        return load_mnist(root, variant="fashion", **kw)
    return load_image_folder(root, **kw)
