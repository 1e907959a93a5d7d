"""Data-parallel DARTS: the pieces that make N replicas compute exactly what one process computes.

One search on N workers (``num_workers``, :mod:`nas.darts.workers` launches them on Ray Train) is
the single-process search with every global batch split between the workers:

* every worker draws the same data order, alpha batches and augmentation from the same seeded
  generator, for the **whole** global batch, and then takes its own rows (:meth:`ReplicaGroup.shard`:
  contiguous, sizes differing by at most one; a shard may be empty when a batch is smaller than N);
* losses are summed over the shard and divided by the **global** batch size, so the sum of the
  workers' gradients (all-reduced with SUM, :meth:`ReplicaGroup.sum`) is the gradient of the global
  mean loss, also for unequal shards; gradient clipping and both optimizer steps then run on identical
  reduced gradients, so weights and alphas stay identical on every worker;
* batch norm uses the statistics of the global batch (:class:`GlobalBatchNorm2d`: per-worker
  statistics gathered with autograd support and combined exactly, so the backward pass is the global
  one too), and its running statistics are updated from them, identically everywhere;
* second order: the virtual step's training gradient, the validation gradient at ``w'`` and the two
  finite-difference gradients at ``w ± R v`` are each all-reduced (:mod:`nas.darts.architect`), so
  the unrolled gradient is exactly the single-process one;
* evaluation: every worker walks the same batches of the alpha split, takes its shard of each and
  the loss and correct counts are summed.

The result equals one worker's with the same global batch and seed up to the order of floating-point
reductions. torch's own ``SyncBatchNorm`` is not used: in torch 2.13 it refuses CPU tensors (so gloo
runs could not use it), and in eval mode it does not synchronise the batch norms that keep no running
statistics (NAS-Bench-201's search cells), whose evaluation would then depend on N.

The collectives are plain ``torch.distributed`` calls on the default process group that Ray Train
sets up (gloo on CPU, NCCL on GPU); gradients are reduced explicitly rather than by a
``DistributedDataParallel`` wrapper because the architect takes several ``autograd.grad``s per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


class AllGather(torch.autograd.Function):
    """Differentiable all-gather over the default process group: (k,) on each rank -> (world, k), the
    same on every rank. Backward: each rank's row gets the gradients all ranks sent to it (summed)."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        summed = grad.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed[dist.get_rank()]


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` over the global batch: (B_local, C, H, W) -> (B_local, C, H, W).

    Whenever batch statistics are used (training mode, or no running statistics kept), every worker's
    per-channel count, mean and sum of squared deviations (two passes over its shard) are gathered in
    one differentiable collective (:class:`AllGather`) and combined exactly (Chan et al.'s parallel
    variance), so outputs, gradients and running statistics are those of the whole batch, as accurate
    in float32 as torch's own batch norm (a one-pass ``E[x²] - E[x]²`` is not: channels whose
    variance is tiny next to their mean lose most of its digits). With ``synchronize`` False, or in
    eval mode with running statistics, it is plain ``BatchNorm2d``.
    """

    synchronize: bool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_statistics = self.training or self.running_mean is None
        if not (self.synchronize and batch_statistics and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        channels = x.shape[1]
        count = x.numel() // channels
        local_mean = x.sum((0, 2, 3)) / max(count, 1)
        local_m2 = (x - local_mean.view(1, -1, 1, 1)).square().sum((0, 2, 3))
        counts_column = torch.full((1,), float(count), dtype=x.dtype, device=x.device)
        gathered = AllGather.apply(torch.cat([counts_column, local_mean, local_m2]))  # (world, 1 + 2C)
        counts, means, m2s = gathered[:, :1], gathered[:, 1:channels + 1], gathered[:, channels + 1:]
        n = counts.detach().sum()  # a tensor: reading it would wait for the device at every layer
        mean = (counts * means).sum(0) / n
        var = (m2s.sum(0) + (counts * (means - mean).square()).sum(0)) / n
        if self.training and self.track_running_stats and self.running_mean is not None:
            self._update_running_statistics(mean.detach(), var.detach(), n)
        out = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out

    @torch.no_grad()
    def _update_running_statistics(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        """As ``F.batch_norm``: exponential (or, with momentum None, cumulative) average; unbiased variance
        over the ``n`` values per channel (a single value, which torch's batch norm refuses, keeps it biased)."""
        assert self.num_batches_tracked is not None and self.running_mean is not None
        assert self.running_var is not None
        self.num_batches_tracked.add_(1)
        factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        unbiased = var * n / (n - 1).clamp_min(1)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def use_global_batch_norm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` of ``module`` (in place) by a :class:`GlobalBatchNorm2d` with the
    same settings, parameters and buffers; returns ``module``."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            like = next(iter([*child.parameters(), *child.buffers()]), None)
            replacement = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                            child.track_running_stats)
            if like is not None:
                replacement.to(device=like.device, dtype=like.dtype if like.is_floating_point() else None)
            replacement.load_state_dict(child.state_dict())
            replacement.train(child.training)
            setattr(module, name, replacement)
        else:
            use_global_batch_norm(child)
    return module


class ReplicaGroup:
    """This process's place among the ``world_size`` replicas of one search (rank 0 .. world_size-1).

    :data:`SINGLE` (world size 1) makes every method a no-op, so the single-process search runs the
    same code. With a larger world size the default ``torch.distributed`` process group must be
    initialised (Ray Train's ``TorchTrainer`` does it); ``device`` is where this worker's tensors
    live (NCCL reduces CUDA tensors only).
    """

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu") -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.rank = rank
        self.world_size = world_size
        self.device = torch.device(device)

    @classmethod
    def from_process_group(cls, device: torch.device | str = "cpu") -> ReplicaGroup:
        """This process's rank and the world size of the initialised default process group."""
        if not dist.is_initialized():
            return cls(device=device)
        return cls(dist.get_rank(), dist.get_world_size(), device)

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """This rank's rows of each global batch (B, ...) -> (B_rank, ...): contiguous ranges whose
        sizes differ by at most one (the first ``B mod N`` ranks take one more)."""
        if not self.distributed:
            return tensors
        return tuple(torch.tensor_split(t, self.world_size)[self.rank] for t in tensors)

    def sum(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The element-wise sums over all replicas of ``tensors`` (detached; one collective for all of
        them, flattened); the tensors themselves when there is one replica."""
        if not self.distributed or not tensors:
            return list(tensors)
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        out, offset = [], 0
        for t in tensors:
            out.append(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
        return out

    def sum_scalars(self, *values: float) -> list[float]:
        """Python numbers summed over all replicas (float64)."""
        if not self.distributed:
            return [float(v) for v in values]
        summed = self.sum([torch.tensor(values, dtype=torch.float64, device=self.device)])[0]
        return [float(v) for v in summed.cpu()]

    def prepare(self, net: nn.Module) -> nn.Module:
        """Make ``net`` a replica: global batch norm, and rank 0's parameters and buffers everywhere
        (they are already equal when built from the same seed; this makes sure of it)."""
        if not self.distributed:
            return net
        use_global_batch_norm(net)
        with torch.no_grad():
            for tensor in [*net.parameters(), *net.buffers()]:
                dist.broadcast(tensor.data, src=0)
        return net

    @contextlib.contextmanager
    def local_statistics(self, net: nn.Module) -> Iterator[None]:
        """Batch norm on this worker's own inputs only, for computations every worker runs on the same
        full batch (the Hessian eigenvalue): no collectives, the single-process result."""
        norms = [m for m in net.modules() if isinstance(m, GlobalBatchNorm2d)]
        for m in norms:
            m.synchronize = False
        try:
            yield
        finally:
            for m in norms:
                m.synchronize = True


SINGLE = ReplicaGroup()
"""One replica: the single-process search."""


def sharded_cross_entropy(logits: torch.Tensor, y: torch.Tensor, global_batch: int) -> torch.Tensor:
    """Cross-entropy summed over this shard's ``logits`` (B_rank, classes) and divided by the global
    batch size: summed over the replicas it is the global batch's mean loss."""
    return F.cross_entropy(logits, y, reduction="sum") / global_batch
