"""nas.trainer: a trial learns a synthetic task, reports once per epoch, is deterministic, and
fails cleanly (TrialFailed) on NaN losses, out of memory and graph/data shape mismatches; raw
(uint8) pixels normalised on the device train exactly as normalised floats; precisions."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from nas.datasets import TensorDataset, load_digits
from nas.trainer import (
    TrainConfig,
    TrialFailed,
    device_for,
    measure_latency_ms,
    train_and_evaluate,
)
from search_spaces.analysis import measure
from search_spaces.compiler import GraphModule
from search_spaces.ir import ArchGraph
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice

torch.set_num_threads(1)

REPORT_KEYS = {"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "epoch_seconds", "best_val_acc", "lr",
               "precision"}
NUM_CLASSES = 4
FAST = TrainConfig(epochs=3, batch_size=32, lr=0.05)


def textures(n: int, seed: int, shape: tuple[int, int, int] = (1, 8, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    """Four texture classes on (C, H, W) maps: horizontal stripes, vertical stripes, checkerboard,
    constant; random sign and amplitude plus noise. Returns x (n, C, H, W) float32, y (n,) int64."""
    g = torch.Generator().manual_seed(seed)
    _, h, w = shape
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    patterns = torch.stack([(rows % 2) * 2.0 - 1, (cols % 2) * 2.0 - 1, ((rows + cols) % 2) * 2.0 - 1,
                            torch.ones(h, w)])  # (4, H, W)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    sign = torch.randint(0, 2, (n, 1, 1, 1), generator=g) * 2.0 - 1
    amp = 0.5 + torch.rand(n, 1, 1, 1, generator=g)
    noise = 0.5 * torch.randn(n, *shape, generator=g)
    return (sign * amp * patterns[y].unsqueeze(1) + noise).float(), y


def dataset(n_train: int = 384, n_val: int = 192, shape: tuple[int, int, int] = (1, 8, 8),
            num_classes: int = NUM_CLASSES) -> TensorDataset:
    tx, ty = textures(n_train, 0, shape)
    vx, vy = textures(n_val, 1, shape)
    return TensorDataset("textures", tx, ty, vx, vy, num_classes)


def macro_graph(shape: tuple[int, int, int] = (1, 8, 8), num_classes: int = NUM_CLASSES) -> ArchGraph:
    """A small real member of MacroSpace: stem conv -> one residual stage -> head."""
    space = MacroSpace(input_shape=shape, num_classes=num_classes, num_stages=1, widths=(8,), depths=(1,),
                       kernels=(3,), stem_width=8, blocks=("residual",))
    return space.to_graph(MacroArch((StageChoice("residual", 8, 1, 3, False),)))


def tiny_graph(num_classes: int = NUM_CLASSES, dropout: float = 0.0, vec_norm: bool = False) -> ArchGraph:
    """input (1, 8, 8) -> conv 3x3 (4) -> global pool -> [batch norm] -> [dropout] -> linear."""
    g = ArchGraph("tiny")
    g.add("in", "input", shape=[1, 8, 8])
    g.add("c", "conv", ["in"], out=4, kernel=3)
    x = g.add("pool", "global_pool", ["c"])
    if vec_norm:  # BatchNorm1d: fails on a training batch of one sample
        x = g.add("bn", "norm", [x], kind="batch")
    if dropout:
        x = g.add("drop", "dropout", [x], p=dropout)
    g.add("fc", "linear", [x], out=num_classes)
    return g


def without_time(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if "seconds" not in k}


# ----------------------------------------------------------------------------- training
def test_learns_synthetic_task_and_reports_each_epoch() -> None:
    graph, data = macro_graph(), dataset()
    reports: list[dict] = []
    result = train_and_evaluate(graph, data, TrainConfig(epochs=4, batch_size=32), "cpu", report=reports.append)

    assert [r["epoch"] for r in reports] == [1, 2, 3, 4]
    for r in reports:
        assert set(r) == REPORT_KEYS
        assert 0.0 <= r["val_acc"] <= 1.0 and 0.0 <= r["train_acc"] <= 1.0
        assert math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) and r["epoch_seconds"] > 0
    assert [r["best_val_acc"] for r in reports] == [max(x["val_acc"] for x in reports[:i + 1])
                                                    for i in range(len(reports))]
    assert reports[-1]["val_acc"] > 0.7  # chance is 0.25
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    # cosine annealing over the epochs: lr strictly decreasing from the configured lr
    lrs = [r["lr"] for r in reports]
    assert lrs[0] == pytest.approx(0.05) and all(b < a for a, b in itertools.pairwise(lrs))

    assert result["params"] == measure(graph).params
    assert result["best_val_acc"] == max(r["val_acc"] for r in reports)
    assert reports[result["best_epoch"] - 1]["val_acc"] == result["best_val_acc"]
    assert result["epochs"] == 4 and result["stopped_early"] is False and result["device"] == "cpu"
    assert result["precision"] == "fp32" and {r["precision"] for r in reports} == {"fp32"}  # auto on CPU
    assert result["val_acc"] == reports[-1]["val_acc"]
    assert result["total_seconds"] >= sum(r["epoch_seconds"] for r in reports)
    assert "latency_ms" not in result
    json.dumps(result)  # plain data for the journal


def test_same_seed_identical_different_seed_differs() -> None:
    graph, data = tiny_graph(dropout=0.3), dataset(n_train=130, n_val=64)  # 130 % 32 == 2: a short last batch

    def run(seed: int) -> list[dict]:
        reports: list[dict] = []
        train_and_evaluate(graph, data, TrainConfig(epochs=2, batch_size=32, seed=seed), "cpu", reports.append)
        return [without_time(r) for r in reports]

    state = torch.get_rng_state()
    first = run(0)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's global RNG is untouched
    torch.rand(3)  # the global RNG moves on: dropout masks must not depend on it
    assert run(0) == first
    assert run(1) != first


def test_raw_pixels_train_exactly_like_normalised_floats() -> None:
    """uint8 digits normalised per batch on the device give the float path's training bit for bit."""
    floats, pixels = load_digits(limit=300), load_digits(limit=300, compact=True)
    assert pixels.raw and pixels.train_x.dtype == torch.uint8 and pixels.nbytes < floats.nbytes / 2
    graph = macro_graph(num_classes=10)
    config = TrainConfig(epochs=2, batch_size=32)
    runs = [train_and_evaluate(graph, d, config, "cpu") for d in (floats, pixels)]
    assert without_time(runs[0]) == without_time(runs[1])


def test_bf16_autocast_on_cpu_when_asked() -> None:
    reports: list[dict] = []
    result = train_and_evaluate(macro_graph(), dataset(), TrainConfig(epochs=3, batch_size=32, precision="bf16"),
                                "cpu", reports.append)
    assert result["precision"] == "bf16" and [r["precision"] for r in reports] == ["bf16"] * 3
    assert math.isfinite(result["train_loss"]) and result["val_acc"] > 0.6  # chance is 0.25


def test_fp16_on_cpu_is_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"precision 'fp16' needs a CUDA device.*--precision bf16 or fp32") as info:
        train_and_evaluate(tiny_graph(), dataset(n_train=64, n_val=32), TrainConfig(precision="fp16"), "cpu")
    assert "\n" not in str(info.value)


@pytest.mark.slow
def test_compiled_network_trains_like_the_eager_one() -> None:
    graph, data = tiny_graph(), dataset(n_train=64, n_val=32)
    eager, compiled = (train_and_evaluate(graph, data, TrainConfig(epochs=2, batch_size=32, compile=c), "cpu")
                       for c in (False, True))
    for key in ("train_loss", "val_loss", "val_acc"):
        assert compiled[key] == pytest.approx(eager[key], rel=1e-4, abs=1e-5), key


def test_constant_schedule_and_other_optimizers() -> None:
    # 129 % 32 == 1: the single-sample last batch is dropped (BatchNorm1d cannot train on it)
    graph, data = tiny_graph(vec_norm=True), dataset(n_train=129, n_val=32)
    for optimizer, lr in (("adam", 1e-2), ("adamw", 1e-2), ("sgd", 0.05)):
        reports: list[dict] = []
        config = TrainConfig(epochs=2, batch_size=32, optimizer=optimizer, lr=lr, schedule="constant",
                             label_smoothing=0.1, grad_clip=0.0)
        result = train_and_evaluate(graph, data, config, "cpu", reports.append)
        assert [r["lr"] for r in reports] == [lr, lr]
        assert math.isfinite(result["train_loss"]) and 0.0 <= result["val_acc"] <= 1.0


def test_should_stop_ends_after_that_epoch() -> None:
    reports: list[dict] = []
    result = train_and_evaluate(tiny_graph(), dataset(n_train=64, n_val=32), TrainConfig(epochs=5, batch_size=32),
                                "cpu", reports.append, should_stop=lambda m: m["epoch"] >= 2)
    assert [r["epoch"] for r in reports] == [1, 2]
    assert result["epochs"] == 2 and result["stopped_early"] is True


def test_latency_reported_each_epoch_without_changing_training() -> None:
    graph, data, config = tiny_graph(dropout=0.3), dataset(n_train=64, n_val=32), TrainConfig(epochs=2)
    plain: list[dict] = []
    timed: list[dict] = []
    train_and_evaluate(graph, data, config, "cpu", plain.append)
    result = train_and_evaluate(graph, data, config, "cpu", timed.append, latency_repeats=3)
    assert result["latency_ms"] > 0
    assert [r["latency_ms"] for r in timed] == [result["latency_ms"]] * 2
    assert [without_time(r) for r in plain] == [without_time({k: v for k, v in r.items() if k != "latency_ms"})
                                                for r in timed]


def test_measure_latency_restores_mode() -> None:
    module = GraphModule(tiny_graph()).train()
    state = torch.get_rng_state()
    ms = measure_latency_ms(module, (1, 8, 8), torch.device("cpu"), repeats=5)
    assert 0 < ms < 1000 and module.training
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="repeats"):
        measure_latency_ms(module, (1, 8, 8), "cpu", repeats=0)


# ----------------------------------------------------------------------------- failures
def test_nan_input_fails_naming_epoch_and_step() -> None:
    data = dataset(n_train=64, n_val=32)
    data.train_x[:] = float("nan")
    with pytest.raises(TrialFailed, match="NaN") as info:
        train_and_evaluate(tiny_graph(), data, FAST, "cpu")
    assert "epoch 1, step 1/" in info.value.reason


def test_divergent_lr_fails_with_nan() -> None:
    config = TrainConfig(epochs=3, batch_size=32, lr=1e30, grad_clip=0.0, weight_decay=0.0)
    with pytest.raises(TrialFailed, match="NaN") as info:
        train_and_evaluate(tiny_graph(), dataset(n_train=256, n_val=32), config, "cpu")
    assert "epoch" in info.value.reason and "step" in info.value.reason


@pytest.mark.parametrize("shape, classes, what", [((3, 8, 8), NUM_CLASSES, "input"), ((1, 8, 8), 10, "output")])
def test_shape_mismatch_fails_before_training(shape, classes, what) -> None:
    graph = macro_graph(shape=shape, num_classes=classes)
    calls: list[dict] = []
    with pytest.raises(TrialFailed, match=f"shape mismatch: graph {what}"):
        train_and_evaluate(graph, dataset(n_train=64, n_val=32), FAST, "cpu", calls.append)
    assert calls == []


@pytest.mark.parametrize("error", [torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("CUDA error: out of memory")])
def test_out_of_memory_becomes_trial_failed(monkeypatch, error) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))

    def forward(self, x):
        raise error

    monkeypatch.setattr(GraphModule, "forward", forward)
    with pytest.raises(TrialFailed) as info:
        train_and_evaluate(tiny_graph(), dataset(n_train=64, n_val=32), FAST, "cpu")
    assert info.value.reason.startswith("out of memory") and "out of memory" in str(info.value)
    assert emptied == [True]


def test_other_runtime_errors_propagate(monkeypatch) -> None:
    def forward(self, x):
        raise RuntimeError("some other bug")

    monkeypatch.setattr(GraphModule, "forward", forward)
    with pytest.raises(RuntimeError, match="some other bug"):
        train_and_evaluate(tiny_graph(), dataset(n_train=64, n_val=32), FAST, "cpu")


def test_bad_data_is_a_value_error() -> None:
    data = dataset(n_train=64, n_val=32)
    data.train_y[0] = NUM_CLASSES
    with pytest.raises(ValueError, match="labels"):
        train_and_evaluate(tiny_graph(), data, FAST, "cpu")
    empty = dataset(n_train=64, n_val=32)
    empty.val_x, empty.val_y = empty.val_x[:0], empty.val_y[:0]
    with pytest.raises(ValueError, match="val split is empty"):
        train_and_evaluate(tiny_graph(), empty, FAST, "cpu")


# ----------------------------------------------------------------------------- config, device
@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("epochs", 2.0), ("batch_size", 0), ("optimizer", "rmsprop"), ("lr", 0.0),
    ("lr", float("nan")), ("momentum", 1.0), ("momentum", -0.1), ("weight_decay", -1e-4), ("schedule", "linear"),
    ("grad_clip", -1.0), ("label_smoothing", 1.0), ("seed", -1), ("nesterov", "yes"), ("precision", "fp8"),
    ("precision", "bfloat16"), ("compile", 1),
])
def test_config_validation_names_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=rf"TrainConfig\.{field} "):
        TrainConfig(**{field: value}).validate()


def test_config_nesterov_needs_momentum_and_train_validates() -> None:
    with pytest.raises(ValueError, match="nesterov"):
        TrainConfig(momentum=0.0).validate()
    TrainConfig(momentum=0.0, nesterov=False).validate()
    TrainConfig(optimizer="adam", momentum=0.0).validate()  # momentum/nesterov are SGD-only
    with pytest.raises(ValueError, match=r"TrainConfig\.lr"):
        train_and_evaluate(tiny_graph(), dataset(n_train=64, n_val=32), TrainConfig(lr=-1.0), "cpu")


def test_config_dict_round_trip() -> None:
    config = TrainConfig(epochs=7, optimizer="adamw", lr=3e-4, schedule="constant", label_smoothing=0.1, seed=3)
    data = json.loads(json.dumps(config.to_dict()))
    assert TrainConfig.from_dict(data) == config
    assert TrainConfig.from_dict({}) == TrainConfig()
    # precision and compile came after runs stored their configurations: stored only when not default
    assert "precision" not in TrainConfig().to_dict() and "compile" not in TrainConfig().to_dict()
    mixed = TrainConfig(precision="bf16", compile=True)
    assert mixed.to_dict()["precision"] == "bf16" and TrainConfig.from_dict(mixed.to_dict()) == mixed
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match=r"TrainConfig\.batch_size"):
        TrainConfig.from_dict({"batch_size": -5})


def test_device_for(monkeypatch) -> None:
    assert device_for(0) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_for(0.5).type == "cuda"
    assert device_for(0) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_for(1) == torch.device("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_trains_on_cuda() -> None:
    device = device_for(1)
    reports: list[dict] = []
    result = train_and_evaluate(macro_graph(), dataset(), TrainConfig(epochs=4, batch_size=32), device,
                                reports.append, latency_repeats=5)
    assert result["device"].startswith("cuda") and len(reports) == 4
    assert result["val_acc"] > 0.7 and result["latency_ms"] > 0
    if torch.cuda.is_bf16_supported(including_emulation=False):
        assert result["precision"] == "bf16"  # auto: bf16 where the GPU has it
    pixels = load_digits(limit=1000, compact=True)  # on the CPU, fp32 and bf16 reach 0.69 and 0.70 here
    for precision in ("fp32", "fp16", "bf16"):
        out = train_and_evaluate(macro_graph(num_classes=10), pixels, TrainConfig(epochs=6, batch_size=32,
                                 precision=precision), device)
        assert out["precision"] == precision and out["val_acc"] > 0.5, out
    data = dataset(n_train=64, n_val=32)
    data.train_x[5] = float("nan")
    with pytest.raises(TrialFailed, match="NaN"):
        train_and_evaluate(tiny_graph(), data, FAST, device)
