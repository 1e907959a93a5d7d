"""One DARTS search (Liu, Simonyan & Yang, ICLR 2019; quark0/darts ``train_search.py``).

Data: the training set is split by index, the first ``train_portion`` for the weights and the
rest for the architecture (``alpha split``). Every step of every epoch, in this order:

1. a random batch of the alpha split (drawn afresh each step, as the reference's new iterator does);
2. the **architecture step**: Adam on α (lr 3e-4, betas (0.5, 0.999), weight decay 1e-3) with the
   first- or second-order gradient (:mod:`nas.darts.architect`);
3. the **weight step**: SGD (momentum 0.9, weight decay 3e-4) on the training batch, gradient norm
   clipped at 5.

The weight learning rate follows ``CosineAnnealingLR(T_max=epochs, eta_min=0.001)`` stepped at the
start of every epoch (the reference's pre-1.1 PyTorch order), so epoch ``e`` (0-based) uses
``η_min + ½(η - η_min)(1 + cos(π (e + 1) / epochs))``. Both batches get the training
augmentation (random crop + horizontal flip). After each epoch the supernet is evaluated on the
alpha split (eval mode, no augmentation), the architecture is derived from ``softmax(α)``
(:mod:`nas.darts.adapters`) and everything is reported to ``on_epoch``: losses, accuracies, the
derived architecture, its number of skip connections and the full ``softmax(α)`` trajectory.

Skip-connect collapse remedies (nas-algorithms.md 2.9), off by default:

* ``aux_skip`` (DARTS-, Chu et al. 2021): every edge gets an extra skip weighted by β, decayed
  linearly from 1 (first epoch) to 0 (last epoch).
* ``early_stop="hessian"`` (DARTS-ES, Zela et al. 2020): the dominant eigenvalue of ``∇²_α L_val``
  is tracked each epoch; when the mean over the window of ``es_window`` epochs ending ``es_window``
  epochs ago, divided by the mean over the last ``es_window`` epochs, falls below ``es_threshold``
  (0.75), the search stops and returns the architecture of ``es_window`` epochs ago.
* ``early_stop="skips"`` (DARTS+, Liang et al. 2019): stop as soon as the derived normal cell has
  ``max_skips`` (2) or more skip connections, and return that architecture.

Data parallel (``num_workers`` > 1): the same loop runs on every worker of a
:class:`~nas.darts.distributed.ReplicaGroup`, each taking its shard of every global batch drawn as
above, with gradients, losses and batch-norm statistics summed over the workers
(:mod:`nas.darts.distributed`), so it computes what one process computes (first and second order).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nas.augment import AUGMENTS, make_augment
from nas.darts.adapters import EdgeAdapter, adapter_for, build_supernet
from nas.darts.architect import dominant_hessian_eigenvalue, first_order_grad, grad, loss_on, second_order_grad
from nas.darts.distributed import SINGLE, ReplicaGroup
from nas.darts.latency import LatencyTable, latency_table
from nas.trainer import TrialFailed, is_oom
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

EARLY_STOPS = ("none", "hessian", "skips")


@dataclass
class DartsConfig:
    """A DARTS search's settings; the defaults are the paper's / quark0/darts' (plain data, JSON).

    ``order``: 1 = first order (DARTS V1, the reference code's default), 2 = second order (V2).
    ``init_channels`` / ``layers``: the DARTS search network (16, 8); the NAS-Bench-201 search
    network is that space's own skeleton. ``hessian_every``: also log the dominant Hessian
    eigenvalue every N epochs (0: only when ``early_stop="hessian"``, which needs it every epoch).
    ``num_workers``: data-parallel workers of one search (Ray Train); ``batch_size`` is the global
    batch, split between them. ``latency_weight``: the weight of the differentiable latency term
    (:mod:`nas.darts.latency`; 0 = off), the expected latency of the mixed ops relative to the
    initial supernet's, added to the architecture step's loss. ``num_workers`` and
    ``latency_weight`` are left out of :meth:`to_dict` at their defaults, so configurations stored
    before they existed resolve to the same dict.
    """

    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    arch_lr: float = 3e-4
    arch_weight_decay: float = 1e-3
    arch_betas: tuple[float, float] = (0.5, 0.999)
    order: int = 1
    train_portion: float = 0.5
    init_channels: int = 16
    layers: int = 8
    augment: str = "crop-flip"
    aux_skip: bool = False
    early_stop: str = "none"
    es_window: int = 5
    es_threshold: float = 0.75
    max_skips: int = 2
    hessian_every: int = 0
    hessian_iterations: int = 20
    seed: int = 2
    num_workers: int = 1
    latency_weight: float = 0.0

    def validate(self) -> DartsConfig:
        """ValueError naming the first bad field; returns ``self``."""
        for name, minimum in (("epochs", 1), ("batch_size", 1), ("init_channels", 2), ("layers", 1),
                              ("es_window", 1), ("max_skips", 1), ("hessian_every", 0), ("hessian_iterations", 1),
                              ("seed", 0), ("num_workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise InputError(f"darts: {name} must be an int >= {minimum}, got {value!r}")
        if self.batch_size < self.num_workers:
            raise InputError(f"darts: batch_size ({self.batch_size}) must be at least num_workers "
                             f"({self.num_workers}): each worker takes a share of every batch; use a larger "
                             "--batch-size or fewer --num-workers")
        if self.init_channels % 2:
            raise InputError(f"darts: init_channels must be even (FactorizedReduce), got {self.init_channels}")
        if self.order not in (1, 2):
            raise InputError(f"darts: order must be 1 (first order) or 2 (second order), got {self.order!r}")
        for name, low, high in (("lr", 0.0, math.inf), ("lr_min", 0.0, math.inf), ("momentum", 0.0, 1.0),
                                ("weight_decay", 0.0, math.inf), ("grad_clip", 0.0, math.inf),
                                ("arch_lr", 0.0, math.inf), ("arch_weight_decay", 0.0, math.inf),
                                ("train_portion", 0.0, 1.0), ("es_threshold", 0.0, 1.0),
                                ("latency_weight", 0.0, math.inf)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not low <= value <= high:
                raise InputError(f"darts: {name} must be a number in [{low}, {high}], got {value!r}")
        if not 0.0 < self.train_portion < 1.0:
            raise InputError(f"darts: train_portion must be strictly between 0 and 1, got {self.train_portion}")
        if self.lr <= 0 or self.arch_lr <= 0:
            raise InputError("darts: lr and arch_lr must be > 0")
        if len(self.arch_betas) != 2 or not all(0.0 <= b < 1.0 for b in self.arch_betas):
            raise InputError(f"darts: arch_betas must be two numbers in [0, 1), got {self.arch_betas!r}")
        if self.augment not in AUGMENTS:
            raise InputError(f"darts: augment must be one of {AUGMENTS}, got {self.augment!r}")
        if self.early_stop not in EARLY_STOPS:
            raise InputError(f"darts: early_stop must be one of {EARLY_STOPS}, got {self.early_stop!r}")
        if not isinstance(self.aux_skip, bool):
            raise InputError(f"darts: aux_skip must be true or false, got {self.aux_skip!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["arch_betas"] = list(self.arch_betas)
        for name, default in (("num_workers", 1), ("latency_weight", 0.0)):
            if data[name] == default:  # absent, as in configurations stored before the option
                del data[name]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DartsConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"darts: unknown option(s) {unknown}; known options are {sorted(known)}")
        values = dict(data)
        if "arch_betas" in values:
            values["arch_betas"] = tuple(values["arch_betas"])
        return cls(**values).validate()

    def lr_at(self, epoch: int) -> float:
        """Weight learning rate of 0-based ``epoch`` (cosine, stepped before the epoch as in the reference)."""
        return self.lr_min + 0.5 * (self.lr - self.lr_min) * (1.0 + math.cos(math.pi * (epoch + 1) / self.epochs))

    def aux_beta_at(self, epoch: int) -> float:
        """DARTS-'s auxiliary-skip weight of 0-based ``epoch``: 1 -> 0 linearly (0 when off)."""
        if not self.aux_skip:
            return 0.0
        return 1.0 - epoch / (self.epochs - 1) if self.epochs > 1 else 0.0


@dataclass
class DartsResult:
    """The derived architecture, the supernet's alpha-split accuracy at the epoch it comes from
    (1-based ``epoch``), every epoch's record, and whether an early stop ended the search."""

    arch: Hashable
    valid_acc: float
    epoch: int
    history: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    stop_reason: str = ""


def split_indices(n: int, train_portion: float) -> tuple[int, int]:
    """(weights, alpha) split sizes of ``n`` samples: ``floor(portion * n)`` and the rest; ValueError if empty."""
    n_w = math.floor(train_portion * n)
    if n_w < 1 or n - n_w < 1:
        raise InputError(f"darts: {n} training samples cannot be split {train_portion:g} / {1 - train_portion:g} "
                         "into weight and architecture halves; use more data or another train_portion")
    return n_w, n - n_w


def darts_search(space: SearchSpace, config: DartsConfig, train_x: torch.Tensor, train_y: torch.Tensor,
                 device: torch.device | str = "cpu", on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
                 adapter: EdgeAdapter | None = None, replicas: ReplicaGroup = SINGLE) -> DartsResult:
    """Run one search; ``train_x`` (N, C, H, W) float, ``train_y`` (N,) int64 class ids (the whole
    training set on every worker of ``replicas``, whose size must be ``config.num_workers``).

    Raises :class:`~nas.trainer.TrialFailed` on a non-finite loss or out of memory (with the reason).
    """
    config.validate()
    if replicas.world_size != config.num_workers:
        raise InputError(f"darts: num_workers={config.num_workers} but this search runs on {replicas.world_size} "
                         "worker(s); a data-parallel search is launched by nas.Experiment / nas search "
                         "(--num-workers), which starts its workers on Ray Train")
    adapter = adapter or adapter_for(space)
    device = torch.device(device)
    num_classes = int(getattr(space, "num_classes", int(train_y.max()) + 1))
    input_shape = tuple(train_x.shape[1:])
    n_w, n_a = split_indices(len(train_x), config.train_portion)
    supernet = build_supernet(adapter, config, input_shape, num_classes).to(device)
    latency = (latency_table(supernet, input_shape, device, replicas=replicas) if config.latency_weight > 0
               else None)
    net = replicas.prepare(supernet)
    weights = list(net.weight_parameters())
    w_opt = torch.optim.SGD(weights, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=config.arch_lr, betas=config.arch_betas,
                             weight_decay=config.arch_weight_decay)
    transform = make_augment(config.augment, input_shape)
    gen = torch.Generator().manual_seed(config.seed)  # data order, alpha batches, augmentation, power iteration
    x_all, y_all = train_x.to(device), train_y.to(device)
    hessian_batch = (x_all[n_w:n_w + config.batch_size], y_all[n_w:n_w + config.batch_size])
    history: list[dict[str, Any]] = []
    derived: list[tuple[Hashable, float]] = []
    eigenvalues: list[float] = []
    try:
        for epoch in range(config.epochs):
            start = time.perf_counter()
            lr = config.lr_at(epoch)
            for group in w_opt.param_groups:
                group["lr"] = lr
            net.aux_skip_beta = config.aux_beta_at(epoch)
            train_loss, train_acc = _train_epoch(net, config, w_opt, a_opt, weights, x_all, y_all, n_w, n_a, lr,
                                                 transform, gen, epoch, replicas, latency)
            valid_loss, valid_acc = _evaluate(net, x_all[n_w:], y_all[n_w:], config.batch_size, replicas)
            soft = {k: v.detach().cpu().numpy() for k, v in net.arch_weights().items()}
            arch = adapter.derive(soft)
            record: dict[str, Any] = {
                "epoch": epoch + 1, "lr": lr, "train_loss": train_loss, "train_acc": train_acc,
                "valid_loss": valid_loss, "valid_acc": valid_acc, "skip_connects": adapter.skip_connects(arch),
                "arch": space.to_json(arch), "aux_skip_beta": net.aux_skip_beta,
                "alphas": {k: np.round(v, 6).tolist() for k, v in soft.items()},
            }
            if latency is not None:
                with torch.no_grad():
                    record["expected_latency_ms"] = round(float(latency.expected_ms(dict(net.alphas.items()))), 4)
                if epoch == 0:
                    record["latency_table_ms"] = latency.to_dict()
            if config.early_stop == "hessian" or (config.hessian_every and (epoch + 1) % config.hessian_every == 0):
                with replicas.local_statistics(net):  # the same full batch on every worker
                    eig = dominant_hessian_eigenvalue(net, *hessian_batch, config.hessian_iterations, gen)
                record["hessian_eigenvalue"] = eig
                eigenvalues.append(eig)
            record["epoch_seconds"] = round(time.perf_counter() - start, 3)
            history.append(record)
            derived.append((arch, valid_acc))
            if on_epoch is not None:
                on_epoch(epoch + 1, record)
            stop = _early_stop(config, record, eigenvalues)
            if stop is not None:
                back, reason = stop
                chosen = len(derived) - 1 - back
                return DartsResult(derived[chosen][0], derived[chosen][1], chosen + 1, history, True, reason)
    except RuntimeError as err:
        if is_oom(err):
            raise TrialFailed(f"out of memory at batch size {config.batch_size}: {err}") from None
        raise
    return DartsResult(derived[-1][0], derived[-1][1], len(derived), history)


def _train_epoch(net: nn.Module, config: DartsConfig, w_opt: torch.optim.Optimizer, a_opt: torch.optim.Optimizer,
                 weights: list[nn.Parameter], x_all: torch.Tensor, y_all: torch.Tensor, n_w: int, n_a: int, lr: float,
                 transform: Any, gen: torch.Generator, epoch: int,
                 replicas: ReplicaGroup = SINGLE, latency: LatencyTable | None = None) -> tuple[float, float]:
    """One epoch of alternating architecture / weight steps: (mean train loss, train accuracy).

    ``latency``: its weighted term's gradient is added to every architecture gradient.

    Batches (and their augmentation) are drawn whole, identically on every replica, then sharded.
    """
    net.train()
    device = x_all.device
    order = torch.randperm(n_w, generator=gen).to(device)
    total_loss, correct, seen = 0.0, 0, 0
    alphas = net.arch_parameters()  # type: ignore[operator]
    for step, lo in enumerate(range(0, n_w, config.batch_size)):
        idx_t = order[lo:lo + config.batch_size]
        idx_v = (n_w + torch.randperm(n_a, generator=gen)[: config.batch_size]).to(device)
        x_t, y_t, x_v, y_v = x_all[idx_t], y_all[idx_t], x_all[idx_v], y_all[idx_v]
        if transform is not None:
            x_t, x_v = transform(x_t, gen), transform(x_v, gen)
        n_t, n_v = len(y_t), len(y_v)  # global batch sizes
        x_t, y_t, x_v, y_v = replicas.shard(x_t, y_t, x_v, y_v)
        # 1. architecture step
        if config.order == 1:
            val_loss, grads = first_order_grad(net, x_v, y_v, replicas, n_v)  # type: ignore[arg-type]
        else:
            buffers = [w_opt.state.get(w, {}).get("momentum_buffer") for w in weights]
            val_loss, grads = second_order_grad(net, x_t, y_t, x_v, y_v, lr, config.momentum,  # type: ignore[arg-type]
                                                config.weight_decay, buffers, replicas, n_t, n_v)
        _check_finite(val_loss, "architecture", epoch, step)
        if latency is not None:
            _, penalty = latency.penalty_gradients(net, config.latency_weight)  # type: ignore[arg-type]
            grads = [g + p for g, p in zip(grads, penalty, strict=True)]
        a_opt.zero_grad(set_to_none=True)
        for alpha, g in zip(alphas, grads, strict=True):
            alpha.grad = g
        a_opt.step()
        # 2. weight step
        loss, logits = loss_on(net, x_t, y_t, n_t)  # type: ignore[arg-type]
        hits = (logits.argmax(1) == y_t).sum().to(loss.dtype)
        *w_grads, totals = replicas.sum([*grad(loss, weights), torch.stack([loss.detach(), hits])])
        _check_finite(float(totals[0]), "weight", epoch, step)
        w_opt.zero_grad(set_to_none=True)
        for w, g in zip(weights, w_grads, strict=True):
            w.grad = g
        if config.grad_clip > 0:
            nn.utils.clip_grad_norm_(weights, config.grad_clip)
        w_opt.step()
        total_loss += float(totals[0]) * n_t
        correct += round(float(totals[1]))
        seen += n_t
    return total_loss / seen, correct / seen


def _check_finite(loss: float, which: str, epoch: int, step: int) -> None:
    if not math.isfinite(loss):
        raise TrialFailed(f"non-finite {which}-step loss ({loss}) at epoch {epoch + 1}, step {step + 1}")


@torch.no_grad()
def _evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              replicas: ReplicaGroup = SINGLE) -> tuple[float, float]:
    """(mean loss, accuracy) on ``x`` (N, C, H, W), ``y`` (N,) in eval mode, by batches of ``batch_size``
    (each replica evaluates its shard of every batch; the sums are added up)."""
    net.eval()
    total_loss, correct = 0.0, 0
    for lo in range(0, len(x), batch_size):
        xb, yb = replicas.shard(x[lo:lo + batch_size], y[lo:lo + batch_size])
        logits = net(xb)
        total_loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    net.train()
    total_loss, summed_correct = replicas.sum_scalars(total_loss, correct)
    return total_loss / len(x), summed_correct / len(x)


def _early_stop(config: DartsConfig, record: dict[str, Any], eigenvalues: list[float]) -> tuple[int, str] | None:
    """None, or (how many epochs back the returned architecture is, why)."""
    if config.early_stop == "skips" and record["skip_connects"] >= config.max_skips:
        return 0, f"DARTS+: the normal cell has {record['skip_connects']} >= {config.max_skips} skip connections"
    k = config.es_window
    if config.early_stop == "hessian" and len(eigenvalues) >= 2 * k:
        earlier, recent = float(np.mean(eigenvalues[-2 * k:-k])), float(np.mean(eigenvalues[-k:]))
        if recent > 0 and earlier / recent < config.es_threshold:
            return k, (f"DARTS-ES: mean dominant Hessian eigenvalue rose from {earlier:.4g} to {recent:.4g} "
                       f"(ratio {earlier / recent:.3f} < {config.es_threshold}); architecture of {k} epochs ago")
    return None
