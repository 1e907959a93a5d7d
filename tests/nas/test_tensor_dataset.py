"""nas.tensor_dataset: compact storage (uint8 where exact), device normalisation equal to the float
path, and the numpy form that Ray's serialiser ships out of band (zero-copy reads)."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import torch

from nas.datasets import load_digits
from nas.tensor_dataset import TensorDataset, compact_pixels, normalise_pixels


def pixels_dataset(dtype: type = np.uint8, n: int = 40) -> TensorDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n, 3, 4, 4)).astype(dtype)
    y = torch.from_numpy(rng.integers(0, 5, size=n))
    return TensorDataset("px", torch.from_numpy(x[:30]), y[:30], torch.from_numpy(x[30:]), y[30:], 5,
                         mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3), max_pixel_value=255.0, raw=True)


@pytest.mark.parametrize("values, dtype", [
    (np.array([0, 16, 255], np.uint8), np.uint8),
    (np.array([0.0, 3.0, 16.0]), np.uint8),  # the digits' 0..16 floats
    (np.array([0, 7, 255], np.int64), np.uint8),
    (np.array([0.0, 0.5, 1.0]), np.float32),  # not integers
    (np.array([0, 256]), np.float32),  # out of range
    (np.array([-1.0, 2.0]), np.float32),
    (np.array([1.0, np.nan]), np.float32),
])
def test_compact_pixels_is_uint8_only_where_exact(values: np.ndarray, dtype: type) -> None:
    (out,) = compact_pixels(values)
    assert out.dtype == dtype and np.array_equal(out.astype(np.float64), values, equal_nan=True)


def test_splits_share_one_dtype() -> None:
    train, val = compact_pixels(np.array([1.0, 2.0]), np.array([0.5]))
    assert train.dtype == val.dtype == np.float32


def test_normaliser_matches_the_float_path_bit_for_bit() -> None:
    for limit in (None, 97):
        floats, pixels = load_digits(limit=limit), load_digits(limit=limit, compact=True)
        assert pixels.raw and pixels.train_x.dtype == torch.uint8 and not floats.raw
        assert (pixels.mean, pixels.std, pixels.max_pixel_value) == (floats.mean, floats.std, floats.max_pixel_value)
        assert torch.equal(pixels.train_y, floats.train_y) and torch.equal(pixels.val_y, floats.val_y)
        to_inputs = pixels.normaliser("cpu")
        assert torch.equal(to_inputs(pixels.train_x), floats.train_x)
        assert torch.equal(to_inputs(pixels.val_x[5:9]), floats.val_x[5:9])  # per batch, any slice
        assert torch.equal(pixels.normalised().train_x, floats.train_x) and not pixels.normalised().raw
    assert floats.normalised() is floats
    assert torch.equal(floats.normaliser("cpu")(floats.val_x), floats.val_x)


def test_float_pixels_normalise_like_uint8() -> None:
    as_uint8, as_float = pixels_dataset(np.uint8), pixels_dataset(np.float32)
    assert torch.equal(as_uint8.normaliser("cpu")(as_uint8.train_x), as_float.normaliser("cpu")(as_float.train_x))
    expected = (as_float.train_x / 255.0 - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    torch.testing.assert_close(as_uint8.normaliser("cpu")(as_uint8.train_x), expected, rtol=0, atol=1e-6)


def test_raw_pixels_need_one_mean_and_std_per_channel() -> None:
    data = pixels_dataset()
    data.mean = (0.5,)
    with pytest.raises(ValueError, match=r"records 1 means and 3 stds for its 3 channels"):
        data.normaliser("cpu")


def test_normalise_pixels_shapes() -> None:
    x = torch.full((2, 3, 4, 4), 51, dtype=torch.uint8)
    out = normalise_pixels(x, torch.full((1, 1, 1, 1), 255.0), torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    assert out.dtype == torch.float32 and out.shape == (2, 3, 4, 4) and torch.allclose(out, torch.tensor(0.2))


def test_pickles_as_out_of_band_numpy_buffers_read_without_copying() -> None:
    """What Ray's serialiser does (protocol 5, buffers out of band): the tensors read back are views of
    the buffers, as they would be of Ray's shared memory; read-only buffers work (no warning)."""
    data = pixels_dataset()
    buffers: list[pickle.PickleBuffer] = []
    payload = pickle.dumps(data, protocol=5, buffer_callback=buffers.append)
    assert len(payload) < 2000 and sum(b.raw().nbytes for b in buffers) == data.nbytes
    shared = [memoryview(b.raw().tobytes()).toreadonly() for b in buffers]  # like Ray's read-only views
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = pickle.loads(payload, buffers=shared)
    assert back.raw and back.name == "px" and back.mean == data.mean and back.max_pixel_value == 255.0
    for name in ("train_x", "train_y", "val_x", "val_y"):
        assert torch.equal(getattr(back, name), getattr(data, name)), name
    addresses = {np.frombuffer(v, dtype=np.uint8).ctypes.data for v in shared}
    assert {back.train_x.data_ptr(), back.val_x.data_ptr(), back.train_y.data_ptr()} <= addresses  # no copies
