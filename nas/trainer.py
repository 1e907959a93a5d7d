"""One trial's training: compile an architecture, train it on in-memory tensors, evaluate each epoch.

Independent of Ray: the engine wraps :func:`train_and_evaluate` in a Tune trial, passing a
``report`` callback (one call per epoch) and picking the device with :func:`device_for` from the
trial's resources.

Failures that belong to the *architecture* (the trial fails, the search goes on) raise
:class:`TrialFailed` with a short human ``reason``:

* a NaN/inf training loss (the epoch and step are named), or a non-finite validation loss;
* out of memory (``torch.cuda.OutOfMemoryError`` or a ``RuntimeError`` saying "out of memory"):
  the trial's tensors are released and the CUDA cache emptied before raising;
* a graph that does not fit the data (input shape, or output classes), checked before training.

Problems of the *data or configuration* (empty splits, labels out of range, a bad
:class:`TrainConfig`) raise ``ValueError``: they would fail every trial alike.

Efficiency: the data is moved to the device once; each step indexes it with a slice of a
permutation drawn from a seeded CPU ``torch.Generator`` (the same order on every device). Losses
and correct counts are accumulated on the device; the host synchronises only every
:data:`NAN_CHECK_EVERY` steps (one ``isfinite`` check over the losses since the last check, which
still names the exact failing step) and once at the end of each epoch for the metrics.

Retraining (:mod:`nas.retrain`) uses three optional hooks of :func:`train_and_evaluate`: a
per-batch ``transform`` (data augmentation, drawing from a seeded generator owned by the loop),
``on_epoch_end`` receiving a :class:`TrainState` after every epoch (for checkpoints), and
``resume`` to continue from such a state. All randomness of the loop (data order, augmentation,
the global torch RNG used by dropout) lives in generators whose states are part of the
:class:`TrainState`, so a resumed run is bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import gc
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import nn

from nas.precision import MixedPrecision, check_precision, resolve_precision
from nas.settings import added_later, stored_dict
from nas.tensor_dataset import Normaliser, TensorDataset
from search_spaces.compiler import GraphModule
from search_spaces.errors import ArchGraphError, InputError
from search_spaces.ir import ArchGraph

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("cosine", "constant", "step")
# schedule "step": the learning rate is multiplied by STEP_GAMMA at these fractions of the epochs
STEP_MILESTONES: tuple[float, ...] = (0.5, 0.75)
STEP_GAMMA = 0.1
# seed offset of the augmentation generator (independent of the data-order generator)
TRANSFORM_SEED_OFFSET = 0x5EED
# the host checks the accumulated per-step losses for NaN/inf every this many steps (and at the
# end of each epoch): one device sync per check instead of one per step
NAN_CHECK_EVERY = 16
# on CUDA: channels-last memory format for image networks and cuDNN's autotuner (bench/gpu_trials.py turns
# them off to measure the plain fp32 eager baseline)
CUDA_TUNING = True

Metrics = dict[str, float]
# per-batch training transform: (x (B, C, H, W) on the device, CPU generator) -> x' (B, C, H, W)
Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


REPORTED_METRICS: tuple[str, ...] = ("train_loss", "train_acc", "val_loss", "val_acc", "best_val_acc", "lr",
                                     "epoch_seconds")
"""What :func:`train_and_evaluate` reports after every epoch (besides ``epoch``): an objective of a
search with the built-in trainer names one of these or a cost (``params``, ``flops``, ``latency_ms``)."""


class TrialFailed(Exception):
    """The trial's architecture could not be trained; ``reason`` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class TrainConfig:
    """Hyper-parameters of one trial's training (plain data; JSON via :meth:`to_dict`).

    ``momentum`` and ``nesterov`` apply to SGD only. ``schedule="cosine"`` anneals the learning
    rate from ``lr`` towards 0 over ``epochs`` (stepped once per epoch); ``"step"`` multiplies it by
    :data:`STEP_GAMMA` after 50% and 75% of the epochs. ``grad_clip`` is the max
    global gradient norm (0 = no clipping). ``label_smoothing`` applies to the training loss; the
    reported validation loss is always plain cross-entropy. ``seed`` fixes the weights, the data
    order and dropout. ``precision``: ``auto`` (bf16 on a GPU with native bf16, fp32 elsewhere),
    ``bf16``, ``fp16`` (GPU only) or ``fp32`` (:mod:`nas.precision`). ``compile``: run the network
    through ``torch.compile`` (off by default: per architecture it costs more than it saves in
    short trials; see bench/gpu_trials.py).
    """

    epochs: int = 5
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    grad_clip: float = 5.0
    label_smoothing: float = 0.0
    seed: int = 0
    precision: str = added_later("auto")
    compile: bool = added_later(False)

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the first bad field; returns ``self`` for chaining."""
        _check_int("epochs", self.epochs, 1)
        _check_int("batch_size", self.batch_size, 1)
        _check_int("seed", self.seed, 0)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_float("lr", self.lr, 0.0, low_open=True)
        _check_float("momentum", self.momentum, 0.0, 1.0, high_open=True)
        _check_float("weight_decay", self.weight_decay, 0.0)
        _check_float("grad_clip", self.grad_clip, 0.0)
        _check_float("label_smoothing", self.label_smoothing, 0.0, 1.0, high_open=True)
        check_precision(self.precision)
        for name in ("nesterov", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"TrainConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.optimizer == "sgd" and self.nesterov and self.momentum == 0:
            raise InputError("TrainConfig.nesterov needs momentum > 0 with optimizer 'sgd' "
                             "(set nesterov=False or a positive momentum)")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``precision`` and ``compile`` only when not at their defaults (they were added
        after runs stored their configuration: :mod:`nas.settings`)."""
        return stored_dict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (missing keys take defaults); validated, unknown keys rejected."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"TrainConfig: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**data).validate()


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InputError(f"TrainConfig.{name} must be an int >= {minimum}, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"TrainConfig.{name} must be one of {choices}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False,
                 high_open: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        lo = f"{'>' if low_open else '>='} {low:g}"
        hi = "" if high == math.inf else f" and {'<' if high_open else '<='} {high:g}"
        raise InputError(f"TrainConfig.{name} must be a finite number {lo}{hi}, got {value!r}")


@dataclass
class TrainState:
    """The training state after ``epoch`` completed epochs: enough to continue exactly.

    ``model`` / ``optimizer`` / ``scheduler`` / ``scaler`` are ``state_dict()``s (``scheduler`` None
    for the constant schedule, ``scaler`` None unless fp16 scales the loss); ``rng`` maps
    ``"order"`` (data order), ``"torch"`` (global CPU RNG: dropout), ``"transform"``
    (augmentation, when a transform is used) and ``"cuda"`` (on CUDA) to generator states (uint8
    tensors). ``history`` holds the metrics of every epoch so far.
    The tensors handed to ``on_epoch_end`` are the live ones: serialise them before returning.
    """

    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any] | None
    rng: dict[str, torch.Tensor]
    best_val_acc: float = -1.0
    best_epoch: int = 0
    history: list[Metrics] = field(default_factory=list)
    scaler: dict[str, Any] | None = None


def device_for(gpus: float) -> torch.device:
    """The device a trial with ``gpus`` GPUs (possibly fractional) should train on."""
    if gpus > 0 and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def _free_memory() -> None:
    gc.collect()
    torch.cuda.empty_cache()  # a no-op when CUDA was never initialised


def train_and_evaluate(graph: ArchGraph, data: TensorDataset, config: TrainConfig, device: torch.device | str,
                       report: Callable[[Metrics], None] | None = None,
                       should_stop: Callable[[Metrics], bool] | None = None,
                       *, latency_repeats: int = 0, transform: Transform | None = None,
                       on_epoch_end: Callable[[TrainState], None] | None = None,
                       resume: TrainState | None = None) -> dict[str, Any]:
    """Train ``graph`` on ``data`` for ``config.epochs`` epochs on ``device``; evaluate after each.

    Data: ``data.train_x`` (N, C, H, W), ``data.train_y`` (N,) int64; likewise val. They are moved
    to ``device`` once; raw pixels (``data.raw``, e.g. uint8) are normalised there per batch.
    After every epoch ``report`` receives ``{"epoch", "train_loss", "train_acc", "val_loss",
    "val_acc", "best_val_acc", "lr", "epoch_seconds", "precision"}`` (accuracies are fractions in
    [0, 1]; ``lr`` is the rate used in that epoch; ``precision`` the one the training runs in,
    :func:`nas.precision.resolve_precision`). On CUDA, image networks train in channels-last
    memory format with cuDNN's autotuner on. If ``should_stop(metrics)`` then returns True,
    training ends after that epoch. With ``latency_repeats`` > 0 the batch-1 latency of the
    network on ``device`` (:func:`measure_latency_ms`, measured once before training: it does not
    depend on the weights, and it leaves the training itself unchanged) is included in every
    report and the result as ``latency_ms``, so a latency objective can be scored each epoch.

    ``transform(x, generator)`` is applied to every training batch x (B, C, H, W) (not to
    validation), drawing its randomness from a CPU generator seeded from ``config.seed``.
    ``on_epoch_end(state)`` receives a :class:`TrainState` after each epoch (before ``report``);
    ``resume`` continues from such a state (1 <= ``resume.epoch`` < ``config.epochs``; same
    graph, data and config), giving the same results as never having stopped.

    Returns the last epoch's metrics plus ``best_val_acc``, ``best_epoch``, ``epochs`` (completed),
    ``stopped_early``, ``params`` (trainable), ``device``, ``precision`` and ``total_seconds``. Raises
    :class:`TrialFailed` (see the module docstring) or ``ValueError``. Bit-identical results for
    the same seed on CPU (in fp32); on CUDA up to cuDNN's non-determinism.
    """
    config.validate()
    device = torch.device(device)
    _check_data(data)
    precision = resolve_precision(config.precision, device)
    if resume is not None and not 1 <= resume.epoch < config.epochs:
        raise InputError(f"cannot resume after epoch {resume.epoch} of a {config.epochs}-epoch training")
    hooks = _Hooks(transform, on_epoch_end, resume)
    oom: str | None = None
    try:
        return _train(graph, data, config, device, MixedPrecision(precision, device), report, should_stop,
                      latency_repeats, hooks)
    except RuntimeError as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if not is_oom(error):
            raise
        oom = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
    # outside the except block the traceback (and with it the model, optimizer and device data of
    # _train's frame) is released, so the memory can actually be returned
    _free_memory()
    raise TrialFailed(f"out of memory on {device} (batch size {config.batch_size}): {oom}")


def _check_data(data: TensorDataset) -> None:
    for split, x, y in (("train", data.train_x, data.train_y), ("val", data.val_x, data.val_y)):
        if x.ndim < 2 or len(x) == 0:
            raise InputError(f"dataset {data.name!r}: the {split} split is empty or has no sample dimension "
                             f"(x shape {tuple(x.shape)})")
        if y.shape != (len(x),):
            raise InputError(f"dataset {data.name!r}: {split} labels have shape {tuple(y.shape)}, "
                             f"expected ({len(x)},)")
        if y.is_floating_point() or y.min() < 0 or y.max() >= data.num_classes:
            raise InputError(f"dataset {data.name!r}: {split} labels must be integers in "
                             f"[0, {data.num_classes}), got range [{y.min().item()}, {y.max().item()}]")
    if tuple(data.val_x.shape[1:]) != tuple(data.train_x.shape[1:]):
        raise InputError(f"dataset {data.name!r}: val samples {tuple(data.val_x.shape[1:])} differ from "
                         f"train samples {tuple(data.train_x.shape[1:])}")
    if len(data.train_x) < 2:
        raise InputError(f"dataset {data.name!r}: need at least 2 training samples, got {len(data.train_x)}")


def _compile(graph: ArchGraph, data: TensorDataset, seed: int) -> GraphModule:
    """Build the network (on CPU) and check it fits the data; TrialFailed when it does not."""
    try:
        model = GraphModule(graph, seed=seed)
    except ArchGraphError as error:
        raise TrialFailed(f"invalid graph: {error}") from error
    want_in = tuple(data.input_shape)
    if tuple(model.input_shape) != want_in:
        raise TrialFailed(f"shape mismatch: graph input {tuple(model.input_shape)} but data samples "
                          f"{want_in} ({data.name})")
    if tuple(model.output_shape) != (data.num_classes,):
        raise TrialFailed(f"shape mismatch: graph output {tuple(model.output_shape)} but data has "
                          f"{data.num_classes} classes ({data.name})")
    return model


def _make_optimizer(params: list[nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def _make_scheduler(optimizer: torch.optim.Optimizer,
                    config: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The per-epoch learning-rate schedule of ``config.schedule`` (None: constant)."""
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.schedule == "step":
        milestones = sorted({max(1, round(config.epochs * f)) for f in STEP_MILESTONES})
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=STEP_GAMMA)
    return None


@dataclass
class _Hooks:
    """The optional retraining hooks of :func:`train_and_evaluate`, passed to ``_train`` together."""

    transform: Transform | None = None
    on_epoch_end: Callable[[TrainState], None] | None = None
    resume: TrainState | None = None


def _batches(n: int, batch_size: int) -> list[tuple[int, int]]:
    """(start, stop) of each training batch; a trailing batch of one sample is dropped (BatchNorm
    cannot normalise a single sample in training mode; the permutation changes every epoch)."""
    out = [(lo, min(lo + batch_size, n)) for lo in range(0, n, batch_size)]
    if batch_size > 1 and out[-1][1] - out[-1][0] == 1:
        out.pop()  # n >= 2 and batch_size >= 2, so a full batch precedes it
    return out


def _rng_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


def _memory_format(device: torch.device, input_shape: tuple[int, ...]) -> torch.memory_format:
    """Channels-last for image networks on CUDA (tensor-core convolutions want NHWC), else as stored."""
    tuned = CUDA_TUNING and device.type == "cuda" and len(input_shape) == 3
    return torch.channels_last if tuned else torch.contiguous_format


def _on_device(data: TensorDataset, device: torch.device) -> tuple[torch.Tensor, ...]:
    """train_x, train_y, val_x, val_y on ``device`` (one copy each; none on CPU): raw pixels in their
    stored dtype, other samples as float32, labels int64."""
    x_dtype = None if data.raw else torch.float32
    return (data.train_x.to(device=device, dtype=x_dtype), data.train_y.to(device=device, dtype=torch.long),
            data.val_x.to(device=device, dtype=x_dtype), data.val_y.to(device=device, dtype=torch.long))


def _train(graph: ArchGraph, data: TensorDataset, config: TrainConfig, device: torch.device, mp: MixedPrecision,
           report: Callable[[Metrics], None] | None, should_stop: Callable[[Metrics], bool] | None,
           latency_repeats: int, hooks: _Hooks) -> dict[str, Any]:
    t_start = time.perf_counter()
    model = _compile(graph, data, config.seed).to(device)
    extra: dict[str, Any] = {}
    if latency_repeats > 0:  # fp32 eager, whatever the training's precision: the recorded latency protocol
        extra["latency_ms"] = measure_latency_ms(model, data.input_shape, device, repeats=latency_repeats)
    extra["precision"] = mp.precision
    memory_format = _memory_format(device, data.input_shape)
    model = model.to(memory_format=memory_format)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = CUDA_TUNING  # fixed batch shapes: autotune each convolution once
    forward = torch.compile(model) if config.compile else model
    params = [p for p in model.parameters() if p.requires_grad]
    num_params = sum(p.numel() for p in params)
    train_x, train_y, val_x, val_y = _on_device(data, device)
    to_inputs = data.normaliser(device)

    optimizer = _make_optimizer(params, config)
    scheduler = _make_scheduler(optimizer, config)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    order = torch.Generator().manual_seed(config.seed)  # CPU: same data order on every device
    transform = hooks.transform
    augment = (torch.Generator().manual_seed(config.seed + TRANSFORM_SEED_OFFSET)
               if transform is not None else None)
    resume = hooks.resume
    history: list[Metrics] = []
    n = len(train_x)
    batches = _batches(n, config.batch_size)
    n_used = batches[-1][1]
    losses = torch.zeros(len(batches), device=device)  # per-step sum of losses over the batch
    best_val_acc, best_epoch = -1.0, 0
    metrics: Metrics = {}
    stopped = False
    if resume is not None:
        model.load_state_dict(resume.model)
        optimizer.load_state_dict(resume.optimizer)
        if scheduler is not None and resume.scheduler is not None:
            # milestones follow from the config (and a serialised Counter may come back as a dict)
            scheduler.load_state_dict({k: v for k, v in resume.scheduler.items() if k != "milestones"})
        mp.load_state_dict(resume.scaler)
        order.set_state(resume.rng["order"])
        if augment is not None and "transform" in resume.rng:
            augment.set_state(resume.rng["transform"])
        best_val_acc, best_epoch = resume.best_val_acc, resume.best_epoch
        history = [dict(m) for m in resume.history]

    with torch.random.fork_rng(devices=_rng_devices(device)):  # dropout: seeded, caller's RNG untouched
        torch.manual_seed(config.seed)
        if resume is not None:
            torch.set_rng_state(resume.rng["torch"])
            if device.type == "cuda" and "cuda" in resume.rng:
                torch.cuda.set_rng_state(resume.rng["cuda"], device)
        for epoch in range(resume.epoch if resume is not None else 0, config.epochs):
            t_epoch = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            model.train()
            perm = torch.randperm(n, generator=order).to(device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            checked = 0
            for step, (lo, hi) in enumerate(batches):
                idx = perm[lo:hi]
                xb, yb = to_inputs(train_x[idx]), train_y[idx]
                if transform is not None:
                    xb = transform(xb, augment)  # type: ignore[arg-type]
                with mp.autocast():
                    logits = forward(xb.contiguous(memory_format=memory_format))  # (B, num_classes)
                    loss = criterion(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                mp.step(loss, optimizer, params, config.grad_clip)
                losses[step] = loss.detach() * (hi - lo)
                correct += (logits.detach().argmax(1) == yb).sum()
                if step + 1 - checked >= NAN_CHECK_EVERY or step + 1 == len(batches):
                    _check_finite(losses, checked, step + 1, epoch)
                    checked = step + 1
            if scheduler is not None:
                scheduler.step()
            train_loss, train_acc = (losses.sum() / n_used).item(), correct.item() / n_used
            with mp.autocast():
                val_loss, val_acc = _evaluate(model, forward, to_inputs, val_x, val_y, 2 * config.batch_size,
                                              memory_format)
            if not math.isfinite(val_loss):
                raise TrialFailed(f"non-finite validation loss ({val_loss}) after epoch {epoch + 1}")
            if val_acc > best_val_acc:
                best_val_acc, best_epoch = val_acc, epoch + 1
            metrics = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc,
                       "val_loss": val_loss, "val_acc": val_acc, "best_val_acc": best_val_acc, "lr": lr,
                       "epoch_seconds": time.perf_counter() - t_epoch, **extra}
            history.append(dict(metrics))
            if hooks.on_epoch_end is not None:
                rng = {"order": order.get_state(), "torch": torch.get_rng_state()}
                if augment is not None:
                    rng["transform"] = augment.get_state()
                if device.type == "cuda":
                    rng["cuda"] = torch.cuda.get_rng_state(device)
                hooks.on_epoch_end(TrainState(
                    epoch + 1, model.state_dict(), optimizer.state_dict(),
                    None if scheduler is None else scheduler.state_dict(), rng, best_val_acc, best_epoch,
                    [dict(m) for m in history], mp.state_dict()))
            if report is not None:
                report(dict(metrics))
            if should_stop is not None and epoch + 1 < config.epochs and should_stop(dict(metrics)):
                stopped = True
                break

    result: dict[str, Any] = {**metrics, "best_val_acc": best_val_acc, "best_epoch": best_epoch,
                              "epochs": int(metrics["epoch"]), "stopped_early": stopped, "params": num_params,
                              "device": str(device), "precision": mp.precision}
    result["total_seconds"] = time.perf_counter() - t_start
    return result


def _check_finite(losses: torch.Tensor, lo: int, hi: int, epoch: int) -> None:
    """Raise TrialFailed naming the first step in [lo, hi) whose loss is NaN/inf (one host sync)."""
    bad = ~torch.isfinite(losses[lo:hi])
    if bool(bad.any()):
        step = lo + int(bad.nonzero()[0, 0])
        value = losses[step].item()
        raise TrialFailed(f"NaN/inf loss ({value}) at epoch {epoch + 1}, step {step + 1}/{len(losses)}")


@torch.no_grad()
def _evaluate(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], to_inputs: Normaliser,
              x: torch.Tensor, y: torch.Tensor, batch_size: int,
              memory_format: torch.memory_format = torch.contiguous_format) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (fraction) of ``model`` (run as ``forward``: itself or its
    compiled form) on stored samples x (N, C, H, W) made inputs by ``to_inputs``, labels y (N,)."""
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for lo in range(0, len(x), batch_size):
        logits = forward(to_inputs(x[lo:lo + batch_size]).contiguous(memory_format=memory_format))
        yb = y[lo:lo + batch_size]
        loss_sum += nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
        correct += (logits.argmax(1) == yb).sum()
    return loss_sum.item() / len(x), correct.item() / len(x)


@torch.no_grad()
def measure_latency_ms(module: nn.Module, input_shape: Sequence[int], device: torch.device | str,
                       repeats: int = 20) -> float:
    """Median wall-clock latency (ms) of one forward pass of a batch of one, (1, *input_shape).

    Runs in eval mode under ``no_grad`` on ``device`` (the module is moved there) after a few
    warm-up passes; on CUDA each pass is synchronised. The module's train/eval mode is restored,
    and the global RNG is not used (the input comes from a private generator).
    """
    if repeats < 1:
        raise InputError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    was_training = module.training
    module.to(device).eval()
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(0)).to(device)
    cuda = device.type == "cuda"
    try:
        for _ in range(max(3, repeats // 4)):
            module(x)
        times = []
        for _ in range(repeats):
            if cuda:
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            module(x)
            if cuda:
                torch.cuda.synchronize(device)
            times.append((time.perf_counter() - t0) * 1e3)
    finally:
        module.train(was_training)
    return float(statistics.median(times))
