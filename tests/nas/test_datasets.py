"""Dataset loaders on small files written in the real on-disk formats (no downloads: urlopen is faked)."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import os
import pickle
import struct
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas import datasets as ds
from nas.datasets import DATASETS, DatasetError, TensorDataset

# ------------------------------------------------------------------------------------------------
# helpers: writers for the real formats, and checks shared by the loaders


def _images_for(labels: np.ndarray, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """uint8 images (n, *shape) whose brightness encodes the label: 20 * label + noise in [0, 10)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 10, size=(len(labels), *shape))
    return (20 * labels.reshape(-1, *([1] * len(shape))) + noise).astype(np.uint8)


def _assert_dataset(d: TensorDataset, shape: tuple[int, int, int], num_classes: int) -> None:
    assert d.input_shape == shape
    assert d.train_x.dtype == torch.float32 and d.val_x.dtype == torch.float32
    assert d.train_y.dtype == torch.int64 and d.val_y.dtype == torch.int64
    assert d.train_x.shape[0] == d.train_y.shape[0] > 0 and d.val_x.shape[0] == d.val_y.shape[0] > 0
    assert d.val_x.shape[1:] == d.train_x.shape[1:]
    assert d.num_classes == num_classes
    for y in (d.train_y, d.val_y):
        assert 0 <= int(y.min()) and int(y.max()) < num_classes
    # per-channel normalisation with the train split's statistics
    mean = d.train_x.mean(dim=(0, 2, 3))
    std = d.train_x.std(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
    assert torch.allclose(std, torch.ones_like(std), atol=1e-3)


def _assert_compact(compact: TensorDataset, floats: TensorDataset) -> None:
    """``compact=True`` keeps exact uint8 pixels and the float path's split and statistics; normalised
    per batch they are the float path's images bit for bit."""
    assert compact.raw and compact.train_x.dtype == torch.uint8 and compact.val_x.dtype == torch.uint8
    assert (compact.mean, compact.std, compact.max_pixel_value) == (floats.mean, floats.std, floats.max_pixel_value)
    assert torch.equal(compact.train_y, floats.train_y) and torch.equal(compact.val_y, floats.val_y)
    normalised = compact.normalised()
    assert torch.equal(normalised.train_x, floats.train_x) and torch.equal(normalised.val_x, floats.val_x)


def _assert_aligned(x: torch.Tensor, y: torch.Tensor) -> None:
    """Images made by _images_for: per-sample brightness ranges are disjoint and increase with the label."""
    brightness = x.mean(dim=(1, 2, 3))
    ranges = [(float(brightness[y == c].min()), float(brightness[y == c].max())) for c in sorted(set(y.tolist()))]
    for (_, hi), (lo, _) in itertools.pairwise(ranges):
        assert hi < lo


def _cifar_batch(labels: np.ndarray, seed: int) -> dict[bytes, object]:
    images = _images_for(labels, (3, 32, 32), seed) + np.array([0, 30, 60], np.uint8)[:, None, None]  # channel offsets
    return {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in labels],
        b"data": images.reshape(len(labels), 3072),
        b"filenames": [b"img_%d.png" % i for i in range(len(labels))],
    }


def _write_cifar(root: Path, per_batch: int = 10, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    """root/cifar-10-batches-py/ with data_batch_1..5, test_batch, batches.meta; labels cycle 0..9."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i, name in enumerate([*ds.CIFAR10_TRAIN_BATCHES, "test_batch"]):
        labels = (np.arange(per_batch) + i) % 10
        (d / name).write_bytes(pickle.dumps(_cifar_batch(labels, seed=i), protocol=protocol))
    meta = {b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072, b"num_cases_per_batch": per_batch}
    (d / "batches.meta").write_bytes(pickle.dumps(meta))
    return d


def _py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch laid out as Python 2's cPickle (protocol 2) wrote the official files: byte strings as
    SHORT_BINSTRING / BINSTRING and the array via numpy.core.multiarray._reconstruct."""

    def s(b: bytes) -> bytes:
        return b"U" + bytes([len(b)]) + b if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b

    def i(v: int) -> bytes:
        return b"K" + bytes([v]) if 0 <= v < 256 else b"J" + struct.pack("<i", v)

    out = b"\x80\x02}(" + s(b"batch_label") + s(b"training batch 1 of 5")
    out += s(b"labels") + b"](" + b"".join(i(v) for v in labels) + b"e"
    out += s(b"data") + b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n" + i(0) + b"\x85" + s(b"b") + b"\x87R"
    out += b"(" + i(1) + i(data.shape[0]) + i(data.shape[1]) + b"\x86"
    out += b"cnumpy\ndtype\n" + s(b"u1") + i(0) + i(1) + b"\x87R"
    out += b"(" + i(3) + s(b"|") + b"NNN" + i(-1) + i(-1) + i(0) + b"tb"
    out += b"\x89" + s(data.tobytes()) + b"tbu."
    return out


def _idx(arr: np.ndarray, magic: int) -> bytes:
    return struct.pack(">I", magic) + struct.pack(">" + "I" * arr.ndim, *arr.shape) + arr.astype(np.uint8).tobytes()


def _write_mnist(root: Path, n: int = 40, compressed: bool = True, rows: int = 28) -> tuple[Path, Path]:
    labels = np.arange(n) % 10
    files = []
    for stem, payload in (
        ("train-images-idx3-ubyte", _idx(_images_for(labels, (rows, rows)), 2051)),
        ("train-labels-idx1-ubyte", _idx(labels, 2049)),
    ):
        path = root / (stem + (".gz" if compressed else ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(payload) if compressed else payload)
        files.append(path)
    return files[0], files[1]


def _write_folder(root: Path, per_class: int = 5) -> Path:
    """root/{cat,dog,zebra}/ with PNG / JPEG / BMP images of assorted sizes and modes; brightness ~ label."""
    rng = np.random.default_rng(0)
    for label, (cls, ext) in enumerate([("cat", "png"), ("dog", "bmp"), ("zebra", "png")]):
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            size = (10 + 3 * k, 7 + k)
            arr = (60 * label + rng.integers(0, 5, size=(size[1], size[0], 3))).astype(np.uint8)
            img = Image.fromarray(arr, "RGB")
            if k == 0:
                img = img.convert("L")  # grayscale files are converted to RGB
            img.save(root / cls / f"{k}.{ext}")
        (root / cls / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """urlopen raises as it would offline; the list collects the URLs asked for."""
    asked: list[str] = []

    def offline(url: str, timeout: float | None = None) -> object:
        asked.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    return asked


def _serve(monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]) -> list[str]:
    asked: list[str] = []

    def fake(url: str, timeout: float | None = None) -> io.BytesIO:
        asked.append(url)
        return io.BytesIO(files[url])

    monkeypatch.setattr(urllib.request, "urlopen", fake)
    return asked


# ------------------------------------------------------------------------------------------------
# split


def labels_of(labels: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """The labels of the validation split."""
    return labels[ds.split_indices(labels, val_fraction=val_fraction, seed=seed, limit=None, source="x")[1]]


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    labels = np.repeat(np.arange(4), [10, 20, 30, 40])
    train, val = ds.split_indices(labels, val_fraction=0.2, seed=3, limit=None, source="x")
    assert sorted([*train.tolist(), *val.tolist()]) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [2, 4, 6, 8]
    again = ds.split_indices(labels, val_fraction=0.2, seed=3, limit=None, source="x")
    assert np.array_equal(train, again[0]) and np.array_equal(val, again[1])
    other = ds.split_indices(labels, val_fraction=0.2, seed=4, limit=None, source="x")
    assert not np.array_equal(val, other[1])
    ties = np.repeat(np.arange(3), 3)  # quotas 1.5 each, 4 val: the seed picks the class giving 2
    assert sorted(np.bincount(labels_of(ties, 0.5, seed=0), minlength=3).tolist()) == [1, 1, 2]
    capped = np.repeat(np.arange(3), [3, 3, 1])  # a singleton class keeps its sample for training
    assert np.bincount(labels_of(capped, 0.5, seed=0), minlength=3).tolist() == [2, 2, 0]
    small_train, small_val = ds.split_indices(labels, val_fraction=0.2, seed=3, limit=10, source="x")
    assert len(small_train) == 10 and len(small_val) == 3  # ceil(10 * 0.2 / 0.8)
    assert set(small_train) <= set(train) and set(small_val) <= set(val)


def test_split_errors() -> None:
    with pytest.raises(DatasetError, match=r"too few samples \(2\)"):
        ds.split_indices(np.array([0, 1]), val_fraction=0.2, seed=0, limit=None, source="here")
    for bad in (0.0, 1.0, 1.5, float("nan")):
        with pytest.raises(DatasetError, match="val_fraction must be strictly between 0 and 1"):
            ds.split_indices(np.arange(10) % 2, val_fraction=bad, seed=0, limit=None, source="x")
    for bad_limit in (0, -3, 2.5, True):
        with pytest.raises(DatasetError, match="limit must be a positive integer"):
            ds.split_indices(np.arange(10) % 2, val_fraction=0.2, seed=0, limit=bad_limit, source="x")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_split_and_normalisation() -> None:
    d = ds.load_digits()
    _assert_dataset(d, (1, 8, 8), 10)
    assert d.name == "digits"
    assert len(d.train_y) + len(d.val_y) == 1797
    assert abs(len(d.val_y) - 0.2 * 1797) <= 10
    assert set(d.train_y.tolist()) == set(d.val_y.tolist()) == set(range(10))
    again = ds.load_digits()
    assert torch.equal(d.train_x, again.train_x) and torch.equal(d.val_y, again.val_y)
    other = ds.load_digits(seed=1)
    assert not torch.equal(d.val_y, other.val_y)
    small = ds.load_digits(val_fraction=0.5, limit=30)
    assert len(small.train_y) == 30 and len(small.val_y) == 30
    _assert_compact(ds.load_digits(compact=True), d)  # 0..16 floats: exact in uint8


# ------------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar10_loads_python_batches(tmp_path: Path) -> None:
    _write_cifar(tmp_path, per_batch=10)
    d = ds.load_cifar10(tmp_path, val_fraction=0.2, seed=1)
    _assert_dataset(d, (3, 32, 32), 10)
    assert d.name == "cifar10" and len(d.train_y) + len(d.val_y) == 50
    assert np.bincount(d.val_y.numpy(), minlength=10).tolist() == [1] * 10
    _assert_aligned(d.train_x, d.train_y)
    _assert_compact(ds.load_cifar10(tmp_path, val_fraction=0.2, seed=1, compact=True), d)
    # root may also be the batch directory itself; limit trims the training split
    small = ds.load_cifar10(tmp_path / "cifar-10-batches-py", limit=7)
    assert len(small.train_y) == 7 and len(small.val_y) == 1


@pytest.mark.parametrize("protocol", [3, 4, 5])
def test_cifar_batch_round_trips_python3_protocols(tmp_path: Path, protocol: int) -> None:
    batch = _cifar_batch(np.arange(6) % 10, seed=2)
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = ds.read_cifar_batch(path)
    assert x.shape == (6, 3, 32, 32) and x.dtype == np.uint8
    assert np.array_equal(x.reshape(6, 3072), batch[b"data"]) and y.tolist() == batch[b"labels"]


def test_cifar_batch_in_python2_layout(tmp_path: Path) -> None:
    data = np.random.default_rng(0).integers(0, 256, size=(4, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(_py2_cifar_pickle(data, [3, 1, 4, 1]))
    x, y = ds.read_cifar_batch(path)
    assert np.array_equal(x, data.reshape(4, 3, 32, 32)) and y.tolist() == [3, 1, 4, 1]
    assert x[2, 1, 0, 5] == data[2, 1024 + 5]  # rows are 1024 red, 1024 green, 1024 blue values


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("payload", [_RunsShell, _Evaluates])
def test_restricted_unpickler_refuses_code(tmp_path: Path, payload: type) -> None:
    marker = tmp_path / "pwned"
    root = tmp_path / "data"
    d = _write_cifar(root, per_batch=4)
    evil = {b"data": payload(marker), b"labels": [0]}
    (d / "data_batch_2").write_bytes(pickle.dumps(evil))
    with pytest.raises(DatasetError, match=r"data_batch_2: not a genuine CIFAR-10 batch: refusing to load global"):
        ds.load_cifar10(root)
    assert not marker.exists()
    with pytest.raises(ds.UnsafePickleError):
        ds.RestrictedUnpickler(io.BytesIO(pickle.dumps(evil))).load()
    assert not marker.exists()


def test_cifar10_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"CIFAR-10 directory .*nowhere does not exist"):
        ds.load_cifar10(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match=r"CIFAR-10 not found under .*place cifar-10-python.tar.gz.*download=True"):
        ds.load_cifar10(tmp_path)
    d = _write_cifar(tmp_path / "a", per_batch=4)
    (d / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match=r"data_batch_3 is missing"):
        ds.load_cifar10(tmp_path / "a")
    d = _write_cifar(tmp_path / "b", per_batch=4)
    good = (d / "data_batch_4").read_bytes()
    (d / "data_batch_4").write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"data_batch_4: cannot read CIFAR-10 batch .*truncated or corrupt"):
        ds.load_cifar10(tmp_path / "b")
    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}))
    with pytest.raises(DatasetError, match=r"data_batch_4: b'data' must be a uint8 array of shape \(N, 3072\)"):
        ds.load_cifar10(tmp_path / "b")
    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}))
    with pytest.raises(DatasetError, match=r"4 images but b'labels' has shape \(3,\)"):
        ds.load_cifar10(tmp_path / "b")
    (d / "data_batch_4").write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 11]}))
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 10\)"):
        ds.load_cifar10(tmp_path / "b")
    (d / "data_batch_4").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DatasetError, match="must be a dict, got list"):
        ds.load_cifar10(tmp_path / "b")


def _cifar_tar(tmp_path: Path) -> bytes:
    src = tmp_path / "src"
    _write_cifar(src, per_batch=6)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return buf.getvalue()


def test_cifar10_archive_placed_by_hand_is_checked_and_extracted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob = _cifar_tar(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    (root / "cifar-10-python.tar.gz").write_bytes(blob)
    with pytest.raises(DatasetError, match=r"cifar-10-python.tar.gz: md5 .* does not match the official"):
        ds.load_cifar10(root)
    monkeypatch.setattr(ds, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    d = ds.load_cifar10(root)
    assert len(d.train_y) + len(d.val_y) == 30
    assert (root / "cifar-10-batches-py" / "data_batch_5").is_file()
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_cifar10_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = _cifar_tar(tmp_path)
    monkeypatch.setattr(ds, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    asked = _serve(monkeypatch, {ds.CIFAR10_URL: blob})
    d = ds.load_cifar10(tmp_path / "new" / "root", download=True)
    assert asked == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]
    assert d.input_shape == (3, 32, 32)


def test_cifar10_download_failures_leave_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[str]
) -> None:
    with pytest.raises(DatasetError, match=r"could not download .*cifar-10-python.tar.gz.*place it at .*root"):
        ds.load_cifar10(tmp_path / "root", download=True)
    assert no_network == [ds.CIFAR10_URL]
    assert list((tmp_path / "root").iterdir()) == []
    _serve(monkeypatch, {ds.CIFAR10_URL: b"<html>captive portal</html>"})
    with pytest.raises(DatasetError, match=r"checksum mismatch .* expected c58f30108f718f92721af3b95e74349a"):
        ds.load_cifar10(tmp_path / "root", download=True)
    assert list((tmp_path / "root").iterdir()) == []


def _tar_with(entry: tarfile.TarInfo, data: bytes = b"x") -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        entry.size = len(data) if entry.isfile() else 0
        tar.addfile(entry, io.BytesIO(data) if entry.isfile() else None)
    return buf.getvalue()  # type: ignore[return-value]


@pytest.mark.parametrize("name", ["../escaped.txt", "ok/../../escaped.txt", "/tmp/absolute-escaped.txt", "link"])
def test_safe_extract_refuses_path_traversal_and_links(tmp_path: Path, name: str) -> None:
    entry = tarfile.TarInfo(name)
    if name == "link":
        entry.type, entry.linkname = tarfile.SYMTYPE, "../../etc/passwd"
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_with(entry))  # type: ignore[arg-type]
    dest = tmp_path / "out" / "dest"
    with pytest.raises(DatasetError, match=r"evil.tar.gz: unsafe archive entry"):
        ds.safe_extract_tar(archive, dest)
    assert not (tmp_path / "out" / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()
    assert not dest.exists()


def test_safe_extract_reports_corrupt_archive(tmp_path: Path) -> None:
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(_cifar_tar(tmp_path)[:2000])
    with pytest.raises(DatasetError, match=r"cut.tar.gz: cannot extract .*truncated or corrupt"):
        ds.safe_extract_tar(archive, tmp_path / "dest")


# ------------------------------------------------------------------------------------------------
# MNIST / Fashion-MNIST


@pytest.mark.parametrize("compressed", [True, False])
@pytest.mark.parametrize(("name", "variant"), [("mnist", "mnist"), ("fashion_mnist", "fashion")])
def test_mnist_idx(tmp_path: Path, compressed: bool, name: str, variant: str) -> None:
    _write_mnist(tmp_path, n=40, compressed=compressed)
    d = ds.load_mnist(tmp_path, variant=variant, val_fraction=0.25)
    _assert_dataset(d, (1, 28, 28), 10)
    assert d.name == name and len(d.train_y) == 30 and len(d.val_y) == 10
    _assert_aligned(d.train_x, d.train_y)
    _assert_aligned(d.val_x, d.val_y)
    via = ds.load_dataset(name, tmp_path, val_fraction=0.25)
    assert torch.equal(via.train_x, d.train_x) and torch.equal(via.val_y, d.val_y)
    _assert_compact(ds.load_dataset(name, tmp_path, val_fraction=0.25, compact=True), d)


def test_mnist_torchvision_layout(tmp_path: Path) -> None:
    _write_mnist(tmp_path / "FashionMNIST" / "raw", n=20, compressed=False)
    assert ds.load_mnist(tmp_path, variant="fashion", limit=5).train_x.shape == (5, 1, 28, 28)
    with pytest.raises(DatasetError, match=r"MNIST file train-images-idx3-ubyte.gz .*not found in"):
        ds.load_mnist(tmp_path, variant="mnist")


def test_read_idx_header(tmp_path: Path) -> None:
    path = tmp_path / "imgs"
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    path.write_bytes(_idx(arr, 2051))
    assert np.array_equal(ds.read_idx(path, 2051), arr)


def test_mnist_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown MNIST variant 'kmnist'"):
        ds.load_mnist(tmp_path, variant="kmnist")
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz .*not found in .*place it at .*download=True"):
        ds.load_mnist(tmp_path)
    images, labels = _write_mnist(tmp_path, n=20, compressed=True)
    good_images, good_labels = images.read_bytes(), labels.read_bytes()

    images.write_bytes(good_labels)  # labels file where the images belong
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: wrong magic number 2049 .*expected 2051"):
        ds.load_mnist(tmp_path)
    images.write_bytes(gzip.compress(gzip.decompress(good_images)[:-100]))
    with pytest.raises(DatasetError, match=r"header says shape \(20, 28, 28\) .*it is truncated"):
        ds.load_mnist(tmp_path)
    images.write_bytes(gzip.compress(gzip.decompress(good_images) + b"\0\0"))
    with pytest.raises(DatasetError, match="trailing bytes"):
        ds.load_mnist(tmp_path)
    images.write_bytes(gzip.compress(b"\0\0"))
    with pytest.raises(DatasetError, match="too short for an IDX header"):
        ds.load_mnist(tmp_path)
    images.write_bytes(gzip.compress(struct.pack(">II", 2051, 20)))
    with pytest.raises(DatasetError, match="IDX header needs 16 bytes but the file has 8"):
        ds.load_mnist(tmp_path)
    images.write_bytes(good_images[: len(good_images) // 2])
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte.gz: cannot read .*truncated or corrupt"):
        ds.load_mnist(tmp_path)
    images.write_bytes(good_images)

    labels.write_bytes(gzip.compress(_idx(np.arange(19) % 10, 2049)))
    with pytest.raises(DatasetError, match=r"has 20 images but .* has 19 labels"):
        ds.load_mnist(tmp_path)
    labels.write_bytes(gzip.compress(_idx(np.full(20, 10), 2049)))
    with pytest.raises(DatasetError, match=r"labels must lie in \[0, 10\)"):
        ds.load_mnist(tmp_path)
    labels.write_bytes(good_labels)
    assert len(ds.load_mnist(tmp_path).train_y) == 18


def test_mnist_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, labels = _write_mnist(tmp_path / "src", n=20)
    base = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
    served = {base + images.name: images.read_bytes(), base + labels.name: labels.read_bytes()}
    md5s = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (images, labels)}
    monkeypatch.setitem(ds.MNIST_SOURCES, "fashion", (base, md5s, "FashionMNIST"))
    asked = _serve(monkeypatch, served)
    d = ds.load_mnist(tmp_path / "dst", variant="fashion", download=True)
    assert sorted(asked) == sorted(served) and d.name == "fashion_mnist"
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == sorted(md5s)
    ds.load_mnist(tmp_path / "dst", variant="fashion", download=True)  # present: nothing fetched again
    assert len(asked) == 2


def test_mnist_download_failure_says_where_to_put_files(tmp_path: Path, no_network: list[str]) -> None:
    with pytest.raises(DatasetError, match=r"could not download .*Temporary failure.*place it at .*train-images-idx3"):
        ds.load_mnist(tmp_path, download=True)
    assert no_network == ["https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"]
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------
# image folders


def test_image_folder(tmp_path: Path) -> None:
    root = _write_folder(tmp_path / "animals", per_class=5)
    d = ds.load_image_folder(root, image_size=12, val_fraction=0.2)
    _assert_dataset(d, (3, 12, 12), 3)
    assert d.name == "animals" and len(d.train_y) == 12 and len(d.val_y) == 3
    assert np.bincount(d.val_y.numpy()).tolist() == [1, 1, 1]
    _assert_aligned(d.train_x, d.train_y)  # cat=0 darkest, zebra=2 brightest: sorted class names
    _assert_compact(ds.load_image_folder(root, image_size=12, val_fraction=0.2, compact=True), d)
    small = ds.load_dataset("folder", root, image_size=8, limit=4)
    assert small.train_x.shape == (4, 3, 8, 8)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="needs a data directory"):
        ds.load_image_folder(None)  # type: ignore[arg-type]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: found 0 class sub-directories \(none\)"):
        ds.load_image_folder(tmp_path / "empty")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is not a directory"):
        ds.load_image_folder(tmp_path / "file")
    root = _write_folder(tmp_path / "f", per_class=3)
    with pytest.raises(DatasetError, match="image_size must be a positive integer"):
        ds.load_image_folder(root, image_size=0)
    with pytest.raises(DatasetError, match=r"too few samples \(3\)"):
        ds.load_image_folder(_write_folder(tmp_path / "tiny", per_class=1))
    (root / "dog" / "1.bmp").write_bytes(b"BM not really a bitmap")
    with pytest.raises(DatasetError, match=r"dog/1.bmp: cannot read image"):
        ds.load_image_folder(root)
    (root / "eel").mkdir()
    (root / "eel" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"eel: class directory has no images"):
        ds.load_image_folder(root)


# ------------------------------------------------------------------------------------------------
# dispatch


def test_load_dataset_dispatch_and_errors(tmp_path: Path) -> None:
    assert DATASETS == ("digits", "cifar10", "mnist", "fashion_mnist", "folder")
    assert issubclass(DatasetError, ValueError)
    assert ds.load_dataset("digits", None, limit=20).input_shape == (1, 8, 8)
    _write_mnist(tmp_path, n=20)
    assert ds.load_dataset("Fashion-MNIST", str(tmp_path)).name == "fashion_mnist"
    with pytest.raises(DatasetError, match=r"unknown dataset 'imagenet'; choose one of digits, cifar10, mnist"):
        ds.load_dataset("imagenet", tmp_path)
    with pytest.raises(DatasetError, match="dataset 'cifar10' needs a data directory"):
        ds.load_dataset("cifar10", None)
