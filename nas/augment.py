"""Training-time data augmentation on device tensors: random crop (zero padding) and horizontal flip.

A transform is ``(x (B, C, H, W) on the device, CPU generator) -> x' (B, C, H, W)``
(:data:`nas.trainer.Transform`); all its randomness comes from the generator, so a training loop
that owns the generator (and checkpoints its state) is reproducible and resumable.
"""

from __future__ import annotations

from functools import partial

import torch
from torch.nn import functional as F

from nas.trainer import Transform
from search_spaces.errors import InputError

AUGMENTS: tuple[str, ...] = ("crop-flip", "crop", "none")



def crop_padding(size: int) -> int:
    """Padding of the random crop for images whose smaller side is ``size`` pixels: 4 from 16 px
    up (the CIFAR recipe), else ``size // 8`` but at least 1 (8x8 digits: 1)."""
    return 4 if size >= 16 else max(1, size // 8)


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4,
                     flip: bool = True) -> torch.Tensor:
    """Random crop with zero padding and random horizontal flip, independently per sample.

    ``x``: (B, C, H, W) on any device -> (B, C, H, W) on the same device. Each sample is padded
    by ``padding`` zeros (the channel mean, the data being normalised) on every side, an H x W
    window at a random offset in [0, 2 * padding] is cut out, and with ``flip`` it is mirrored
    left-right with probability 1/2. The randomness comes from ``generator`` (CPU) alone.
    """
    if x.ndim != 4:
        raise InputError(f"random_crop_flip needs images (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator)  # (2, B): row, column
    rows = offsets[0, :, None] + torch.arange(h)  # (B, H) rows of the padded image
    cols = offsets[1, :, None] + torch.arange(w)  # (B, W)
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5  # (B,)
        cols = torch.where(mirror[:, None], cols.flip(1), cols)
    padded = F.pad(x, (padding, padding, padding, padding))  # (B, C, H + 2p, W + 2p)
    dev = x.device
    return padded[torch.arange(b, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None],
                  rows.to(dev)[:, None, :, None], cols.to(dev)[:, None, None, :]]


def make_augment(kind: str, input_shape: tuple[int, ...]) -> Transform | None:
    """The training transform for ``--augment kind`` on samples of ``input_shape`` (C, H, W)."""
    if kind not in AUGMENTS:
        raise InputError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTS)}")
    if kind == "none":
        return None
    if len(input_shape) != 3:
        raise InputError(f"augmentation {kind!r} needs image samples (C, H, W), got {tuple(input_shape)}; "
                         "pass --augment none")
    return partial(random_crop_flip, padding=crop_padding(min(input_shape[1:])), flip=kind == "crop-flip")
