"""In-memory datasets of trials: :class:`TensorDataset`, its compact storage (raw pixels, normalised on
the device per batch) and its zero-copy form in Ray's object store (:class:`SharedDataset`).

Storage. ``train_x`` / ``val_x`` hold either the model's inputs (float32; ``raw=False``, the form
every loader returned before and still returns by default) or raw pixel values (``raw=True``):
uint8 where that is exact (CIFAR-10, MNIST, image folders, the digits' 0..16), else float32 (see
:func:`compact_pixels`). Raw uint8 images take a quarter of the memory; a trial moves them to
its device once and turns each batch into model inputs there (:meth:`TensorDataset.normaliser`):
``(x / max_pixel_value - mean[c]) / std[c]`` in float32, the operations and order of the
loaders' float path, so the inputs are bit-identical to it.

Sharing. A :class:`TensorDataset` pickles as numpy arrays. Ray serialises numpy arrays out of band
(pickle protocol 5), so :meth:`SharedDataset.put` (one ``ray.put`` in the driver) keeps one copy
per node in Ray's object store, and :meth:`SharedDataset.get` in a trial returns a dataset whose
tensors are read-only views of that shared memory: no deserialised private copy per trial
(torch tensors would be pickled, i.e. copied, into every trial). Nothing may write to them.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from search_spaces.errors import InputError

Normaliser = Callable[[torch.Tensor], torch.Tensor]
"""Stored samples (B, C, H, W) on the device -> the model's inputs (B, C, H, W) float32."""

UINT8_MAX = 255


@dataclass
class TensorDataset:
    """A classification dataset held in memory as tensors, split into train and validation.

    ``train_x``: (N_train, C, H, W) samples, ``train_y``: (N_train,) int64 in [0, num_classes);
    likewise ``val_x`` / ``val_y``. ``input_shape`` = (C, H, W). The loaders record their
    normalisation: a raw pixel value v of channel c becomes ``(v / max_pixel_value - mean[c]) /
    std[c]`` (empty ``mean`` / ``std``: not recorded). ``raw=False``: the samples are the model's
    inputs already (float32, normalised when recorded); ``raw=True``: they are the raw pixel
    values (uint8, or float32 where uint8 is not exact) and :meth:`normaliser` makes the inputs.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    num_classes: int
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    max_pixel_value: float = 1.0
    raw: bool = False

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        """Bytes of the four tensors."""
        return sum(t.numel() * t.element_size() for t in (self.train_x, self.train_y, self.val_x, self.val_y))

    def normaliser(self, device: torch.device | str) -> Normaliser:
        """The function that turns stored samples (B, C, H, W) on ``device`` into model inputs
        (float32): the recorded normalisation for raw pixels, else a float32 cast (a no-op on float32)."""
        if not self.raw:
            return _as_float32
        channels = self.train_x.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise InputError(f"dataset {self.name!r} holds raw pixels but records {len(self.mean)} means and "
                             f"{len(self.std)} stds for its {channels} channels; build it with one per channel")

        def per_channel(values: tuple[float, ...] | list[float]) -> torch.Tensor:  # (1, C, 1, 1) float32
            return torch.tensor(values, dtype=torch.float32).view(1, -1, 1, 1).to(device)

        # (1, 1, 1, 1) rather than a scalar: a device tensor, never a CPU scalar (CUDA would multiply by
        # its reciprocal instead of dividing, which is not bit-identical)
        scale = per_channel([self.max_pixel_value]).view(1, 1, 1, 1)
        return functools.partial(normalise_pixels, scale=scale, mean=per_channel(self.mean),
                                 std=per_channel(self.std))

    def normalised(self) -> TensorDataset:
        """The same data as model inputs (``raw=False``, float32): ``self`` when it is already so."""
        if not self.raw:
            return self
        to_inputs = self.normaliser("cpu")
        return replace(self, train_x=to_inputs(self.train_x), val_x=to_inputs(self.val_x), raw=False)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # numpy arrays, not tensors: Ray stores them out of band and reads them back without copying
        arrays = tuple(t.detach().cpu().numpy() for t in (self.train_x, self.train_y, self.val_x, self.val_y))
        return _from_arrays, (self.name, *arrays, self.num_classes, tuple(self.mean), tuple(self.std),
                              self.max_pixel_value, self.raw)


def normalise_pixels(x: torch.Tensor, scale: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Raw pixels x (B, C, H, W), any dtype -> ``(x / scale - mean) / std`` float32 (B, C, H, W);
    ``scale`` (1, 1, 1, 1), ``mean`` / ``std`` (1, C, 1, 1) float32 on x's device."""
    return (x.to(torch.float32) / scale - mean) / std


def _as_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.float32)


def _tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s memory, also when it is read-only (Ray's shared memory)."""
    with warnings.catch_warnings():  # torch warns that it cannot protect read-only memory: it is never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def _from_arrays(name: str, train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                 num_classes: int, mean: tuple[float, ...], std: tuple[float, ...], max_pixel_value: float,
                 raw: bool) -> TensorDataset:
    return TensorDataset(name, _tensor(train_x), _tensor(train_y), _tensor(val_x), _tensor(val_y), num_classes,
                         mean, std, max_pixel_value, raw)


def compact_pixels(*splits: np.ndarray) -> tuple[np.ndarray, ...]:
    """The smallest exact storage of raw pixel arrays (all splits alike): uint8 when every value is an
    integer in [0, 255] (or the arrays are uint8 already), else float32 (what the float path
    computes with). Returns C-contiguous arrays (copies only where the dtype changes)."""
    exact = all(a.dtype == np.uint8 for a in splits) or all(_fits_uint8(a) for a in splits)
    dtype = np.uint8 if exact else np.float32
    return tuple(np.ascontiguousarray(a, dtype=dtype) for a in splits)


def _fits_uint8(values: np.ndarray) -> bool:
    if values.size == 0:
        return True
    if values.dtype.kind in "iu":
        return bool(values.min() >= 0 and values.max() <= UINT8_MAX)
    if values.dtype.kind != "f":
        return False
    with np.errstate(invalid="ignore"):
        return bool(np.all((values >= 0) & (values <= UINT8_MAX) & (values == np.floor(values))))


class SharedDataset:
    """A :class:`TensorDataset` in Ray's object store: put once in the driver, read without copying in
    every trial on every node (see the module docstring). Knows the dataset's shape, classes and
    size without fetching it."""

    def __init__(self, ref: Any, name: str, input_shape: tuple[int, ...], num_classes: int, nbytes: int) -> None:
        self.ref = ref
        self.name = name
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.nbytes = nbytes

    @classmethod
    def put(cls, data: TensorDataset) -> SharedDataset:
        """Store ``data`` in the object store of the Ray this process is connected to."""
        import ray

        return cls(ray.put(data), data.name, tuple(data.input_shape), data.num_classes, data.nbytes)

    def get(self) -> TensorDataset:
        """The dataset, its tensors backed by the node's shared copy (read-only: never write to them)."""
        import ray

        return ray.get(self.ref)
