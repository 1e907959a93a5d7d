"""Will the DARTS supernet fit? An estimate of its training memory before anything is launched.

Activations dominate (nas-algorithms.md 2.7: about 129 MB per CIFAR sample for the 8-cell, C=16
network, 8 GiB at batch 64). They are measured, not guessed: one forward pass of the real search
network on 2 CPU samples of the real input shape, counting every tensor autograd saves for the
backward pass (each storage once, parameters excluded), gives the bytes per sample. The peak of a
search step is then about ``per_sample · batch + fixed``, where ``fixed`` covers the weights, their
gradients, the SGD momentum and the weight copies of the second-order step, all times a 20%
margin (allocator, convolution workspaces). Second order keeps one autograd graph alive at a time,
but its four graphs per step of different shapes leave the allocator holding more: measured on
CPU (bench/darts_step.py, 8 cells, C=16, batch 64, 32x32) its peak resident memory is 1.33x first
order's (12.0 vs 9.05 GiB), so its activations are counted 1.35 times.

A data-parallel search (``num_workers`` N) holds on each worker the supernet and that worker's share
of the batch, at most ``ceil(batch / N)`` samples: the check is made per worker at that batch, and
a refusal names the largest global batch that fits (N times the largest per-worker batch).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nas.darts.adapters import adapter_for, build_supernet
from nas.darts.search import DartsConfig
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

MARGIN = 1.20
SECOND_ORDER_ACTIVATIONS = 1.35
GIB = 1024**3


@dataclass(frozen=True)
class MemoryEstimate:
    per_sample: int  # activation bytes saved for backward, per sample (x 1.35 for second order)
    fixed: int  # bytes independent of the batch (weights, gradients, optimizer state, copies)

    def at(self, batch_size: int) -> int:
        """Estimated peak bytes of a search step at ``batch_size``."""
        return int(MARGIN * (self.per_sample * batch_size + self.fixed))

    def largest_batch(self, available: int) -> int:
        """The largest batch size whose estimate fits ``available`` bytes (0 if none)."""
        return max(0, int((available / MARGIN - self.fixed) // max(self.per_sample, 1)))


def estimate_memory(space: SearchSpace, config: DartsConfig, input_shape: tuple[int, ...],
                    num_classes: int | None = None) -> MemoryEstimate:
    """Measure the search network's saved activations for ``input_shape`` (C, H, W)."""
    classes = int(num_classes or getattr(space, "num_classes", 10))
    net = build_supernet(adapter_for(space), config, tuple(input_shape), classes)
    param_ids = {p.untyped_storage().data_ptr() for p in net.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in param_ids:
            storages[ptr] = max(storages.get(ptr, 0), storage.nbytes())
        return t

    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(net(x), torch.zeros(2, dtype=torch.long))
    del loss
    param_bytes = sum(p.numel() * p.element_size() for p in net.parameters())
    copies = 4 if config.order == 1 else 7  # w, grad, momentum, Adam/α (+ w backup, v, virtual-step grads)
    factor = 1.0 if config.order == 1 else SECOND_ORDER_ACTIVATIONS
    return MemoryEstimate(per_sample=int(factor * sum(storages.values()) / 2), fixed=copies * param_bytes)


def available_memory(device: torch.device | str) -> int:
    """Free bytes on ``device``: CUDA's free memory, or the machine's (and its cgroup's) available RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    available = _meminfo_available()
    limit = _cgroup_limit()
    return min(available, limit) if limit else available


def _meminfo_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _cgroup_limit() -> int | None:
    """Remaining bytes under this process's cgroup v2 memory limit, if it has one."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((base / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def check_memory(space: SearchSpace, config: DartsConfig, input_shape: tuple[int, ...], available: int,
                 where: str = "the device") -> MemoryEstimate:
    """The estimate; InputError (with a batch size that fits) when a worker's share of the configured
    batch does not fit ``available`` bytes (the memory of one worker's device)."""
    estimate = estimate_memory(space, config, input_shape)
    workers = config.num_workers
    per_worker = math.ceil(config.batch_size / workers)
    need = estimate.at(per_worker)
    if need <= available:
        return estimate
    fits = estimate.largest_batch(available) * workers
    shape = "x".join(map(str, input_shape))
    share, on = (f" ({per_worker} per worker of {workers})", f" on {workers} workers") if workers > 1 else ("", "")
    advice = (f"use --batch-size {fits} (the largest that fits{on})" if fits >= 1 else
              "even batch size 1 does not fit: use fewer --init-channels / --layers, or a larger device")
    raise InputError(f"DARTS supernet does not fit: about {need / GIB:.2f} GiB at batch size {config.batch_size}"
                     f"{share} ({estimate.per_sample / 2**20:.1f} MiB of activations per {shape} sample) but {where} "
                     f"has {available / GIB:.2f} GiB free; {advice}")
