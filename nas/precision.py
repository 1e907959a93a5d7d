"""Numeric precision of a training: fp32, or mixed precision with autocast (bf16; fp16 with loss scaling).

``TrainConfig.precision`` is ``auto`` (the default), ``bf16``, ``fp16`` or ``fp32``;
:func:`resolve_precision` turns it into what a training on a given device runs in: ``auto`` is
bf16 on a CUDA device that supports it natively and fp32 elsewhere (CPU trainings stay exactly as
they were). bf16 runs the forward pass under ``torch.autocast`` (weights, gradients and optimizer
state stay fp32; bf16 has fp32's range, so no loss scaling); fp16 also scales the loss
(``torch.amp.GradScaler``) and needs a GPU. :class:`MixedPrecision` is the per-training helper.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from search_spaces.errors import InputError

PRECISIONS: tuple[str, ...] = ("auto", "bf16", "fp16", "fp32")
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _bf16_native(device: torch.device) -> bool:
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.3 has no including_emulation (and reports native support only)
        return bool(torch.cuda.is_bf16_supported())


def check_precision(precision: object) -> None:
    """InputError (one line) unless ``precision`` is one of :data:`PRECISIONS`."""
    if precision not in PRECISIONS:
        raise InputError(f"TrainConfig.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}: set "
                         "--precision (or train.precision in a config file) to auto (bf16 on GPUs that have it, "
                         "fp32 on CPU), bf16, fp16 or fp32")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """What a training asked to run in ``precision`` runs in on ``device``: bf16, fp16 or fp32.

    InputError (one line: what, where, what to do) for a precision the device cannot run: fp16
    on a CPU, bf16 on a GPU without native bf16 (before Ampere)."""
    check_precision(precision)
    device = torch.device(device)
    cuda = device.type == "cuda"
    if precision == "auto":
        return "bf16" if cuda and _bf16_native(device) else "fp32"
    if precision == "fp16" and not cuda:
        raise InputError(f"precision 'fp16' needs a CUDA device, but this training runs on {device}: use "
                         "--precision bf16 or fp32 on a CPU, or give the training a GPU (--gpus-per-trial, "
                         "nas train --gpus)")
    if precision == "bf16" and cuda and not _bf16_native(device):
        raise InputError(f"precision 'bf16' needs a GPU with native bf16 (Ampere or newer), but {device} has "
                         f"none ({torch.cuda.get_device_name(device)}): use --precision fp16 or fp32 there")
    return precision


class MixedPrecision:
    """Autocast and loss scaling of one training in ``precision`` (resolved: bf16, fp16 or fp32) on
    ``device``: ``with mp.autocast(): loss = ...`` then ``mp.step(loss, optimizer, params, grad_clip)``."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.precision = precision
        self.device_type = device.type
        self.dtype = AUTOCAST_DTYPES.get(precision)
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """The forward pass's context: autocast to bf16 / fp16, or nothing for fp32."""
        if self.dtype is None:
            yield
            return
        with torch.autocast(self.device_type, dtype=self.dtype):
            yield

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
             grad_clip: float) -> None:
        """Backward pass, gradient clipping (max global norm ``grad_clip``; 0: none) and optimizer step;
        with fp16 on the scaled loss (a step whose gradients overflowed is skipped by the scaler)."""
        if self.scaler is None:
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(params, grad_clip)
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        if grad_clip > 0:
            self.scaler.unscale_(optimizer)  # clip the true gradients
            nn.utils.clip_grad_norm_(params, grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any] | None:
        """The loss scaler's state (None without one), for a checkpoint."""
        return None if self.scaler is None else self.scaler.state_dict()

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
