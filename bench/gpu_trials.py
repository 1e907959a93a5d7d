"""Trials on a GPU: the new defaults against fp32 eager, DARTS in bf16, two 0.5-GPU trials sharing one dataset.

One run prints, side by side:

1. Trial throughput: images per second of a trial (``nas.trainer.train_and_evaluate``: training plus
   each epoch's validation) in steady state (median epoch after the first) and the validation
   accuracy after the same epochs, for the macro space's best model (the README's evolution run on
   digits, rebuilt for 3x32x32) and ResNet-18 (CIFAR variant), in two set-ups: ``fp32 eager`` (as
   before: float32 normalised data, fp32, NCHW, no cuDNN autotuning) and ``defaults`` (uint8 data
   normalised on the device, precision auto = bf16 on a GPU with it, channels-last and
   cudnn.benchmark on CUDA).
2. DARTS search step at batch 64, one worker (``nas.darts.search``'s step as it is; bf16 by an
   autocast around the step, from this script): median step time and peak GPU memory, fp32 vs bf16.
3. Two trials of 0.5 GPU at once (Ray tasks, ``num_gpus=0.5``) reading one ``SharedDataset``: each
   trial's peak GPU memory, with the uint8 data and with the float32 data of before.
4. ``defaults+compile`` (torch.compile) for the models of 1: steady images/s, and what compiling
   costs (the first epoch's extra seconds). Last, since compiling takes longest.

Data: "digits32", scikit-learn's digits upscaled to 32x32 on three channels with uint8 noise,
resampled to the wanted size: offline, and learnable, so the accuracies mean something. On a CPU
the sizes shrink and what needs a GPU is skipped with a line saying so.

    python bench/gpu_trials.py               # one GPU: under 5 minutes
    python bench/gpu_trials.py --smoke       # seconds on a CPU: every code path (tests/bench/test_gpu_trials.py)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import nas.trainer as trainer
from nas.tensor_dataset import SharedDataset, TensorDataset
from nas.trainer import TrainConfig, train_and_evaluate
from search_spaces.ir import ArchGraph
from search_spaces.reference import create_model
from search_spaces.spaces.macro import MacroArch, MacroSpace, StageChoice

# the README's evolution run on digits: models/digits_evolution_best.py
MACRO_BEST = MacroArch((StageChoice("attention", 64, 3, 3, True), StageChoice("conv", 64, 3, 5, True),
                        StageChoice("residual", 32, 3, 3, True)))


@dataclass(frozen=True)
class Sizes:
    image: int  # side of the square images
    train: int  # training images of section 1
    val: int
    epochs: int
    batch: int
    compiled: tuple[str, ...]  # the models section 4 compiles
    darts_batch: int
    darts_cells: int
    darts_channels: int
    darts_steps: int
    shared_train: int  # training images of section 3 (GPU only)


GPU = Sizes(32, 10_000, 2_000, 3, 64, ("macro-best", "resnet18"), 64, 8, 16, 10, 30_000)
CPU = Sizes(16, 256, 128, 2, 64, ("macro-best",), 64, 8, 16, 2, 0)  # 32x32: minutes per epoch on 2 cores
SMOKE = Sizes(8, 64, 32, 2, 32, (), 8, 2, 4, 1, 0)


def digits32(n_train: int, n_val: int, size: int, seed: int = 0) -> TensorDataset:
    """Raw uint8 images (N, 3, size, size) of digits (train and validation from disjoint digits), with
    their per-channel normalisation recorded (``raw=True``)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    rng = np.random.default_rng(seed)
    up = np.kron(bunch.images, np.ones((size // 8, size // 8))) * 15  # (1797, size, size) in 0..240
    order = rng.permutation(len(up))
    cut = int(0.8 * len(up))

    def draw(pool: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.choice(pool, n)
        noise = rng.integers(0, 16, size=(n, 3, size, size))
        return (up[idx][:, None] + noise).astype(np.uint8), bunch.target[idx].astype(np.int64)

    (tx, ty), (vx, vy) = draw(order[:cut], n_train), draw(order[cut:], n_val)
    scaled = tx.astype(np.float32) / np.float32(255)
    mean = tuple(float(m) for m in scaled.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32))
    std = tuple(float(s) for s in scaled.std(axis=(0, 2, 3), dtype=np.float64).astype(np.float32))
    return TensorDataset("digits32", torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(vx),
                         torch.from_numpy(vy), 10, mean, std, 255.0, raw=True)


def models(size: int) -> dict[str, ArchGraph]:
    return {"macro-best": MacroSpace(input_shape=(3, size, size), num_classes=10).to_graph(MACRO_BEST),
            "resnet18": create_model("resnet18_cifar", num_classes=10, img_size=size)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------- 1. throughput
def trial_throughput(graph: ArchGraph, data: TensorDataset, config: TrainConfig, device: torch.device,
                     tuned: bool) -> dict[str, Any]:
    """One trial's training: steady images/s, first-epoch seconds, final validation accuracy."""
    trainer.CUDA_TUNING = tuned
    epochs: list[float] = []
    try:
        result = train_and_evaluate(graph, data, config, device, lambda m: epochs.append(m["epoch_seconds"]))
    finally:
        trainer.CUDA_TUNING = True
    steady = statistics.median(epochs[1:] or epochs)
    return {"precision": result["precision"], "images_s": len(data.train_x) / steady, "first_s": epochs[0],
            "steady_s": steady, "val_acc": result["val_acc"]}


THROUGHPUT_HEADER = (f"   {'model':<11}{'set-up':<18}{'precision':>9}{'images/s':>10}{'vs fp32':>9}{'1st epoch s':>12}"
                     f"{'steady s':>9}{'val acc':>8}")
Setup = tuple[str, bool, dict[str, Any], bool]  # name, float32 data (as before), TrainConfig options, CUDA tuning
BASELINE: Setup = ("fp32 eager", True, {"precision": "fp32"}, False)


def throughput_rows(sizes: Sizes, device: torch.device, setups: list[Setup], baseline: dict[str, float],
                    only: tuple[str, ...] | None = None) -> None:
    """Print one row per model and set-up; ``baseline`` (model -> images/s of fp32 eager) is filled in
    when the baseline is among the set-ups."""
    data = digits32(sizes.train, sizes.val, sizes.image)
    print(THROUGHPUT_HEADER)
    for name, graph in models(sizes.image).items():
        if only is not None and name not in only:
            continue
        for setup, as_before, options, tuned in setups:
            config = TrainConfig(epochs=sizes.epochs, batch_size=sizes.batch, seed=0, **options)
            r = trial_throughput(graph, data.normalised() if as_before else data, config, device, tuned)
            if setup == BASELINE[0]:
                baseline[name] = r["images_s"]
            ratio = f"{r['images_s'] / baseline[name]:>8.2f}x" if name in baseline else f"{'-':>9}"
            print(f"   {name:<11}{setup:<18}{r['precision']:>9}{r['images_s']:>10.0f}{ratio}{r['first_s']:>12.2f}"
                  f"{r['steady_s']:>9.2f}{r['val_acc']:>8.3f}")


def throughput_section(sizes: Sizes, device: torch.device, baseline: dict[str, float]) -> None:
    print(f"\n1. trial throughput on {device}: digits32 {sizes.train} train / {sizes.val} val images "
          f"(3, {sizes.image}, {sizes.image}), batch {sizes.batch}, {sizes.epochs} epochs (images/s: median epoch "
          "after the first, validation included)")
    throughput_rows(sizes, device, [BASELINE, ("defaults", False, {}, True)], baseline)


def compile_section(sizes: Sizes, device: torch.device, baseline: dict[str, float]) -> None:
    if not sizes.compiled:
        print("\n4. torch.compile: skipped (--smoke or --no-compile)")
        return
    print(f"\n4. torch.compile on {device}, {', '.join(sizes.compiled)} (sizes of 1; what compiling costs: first "
          "epoch s minus steady s)")
    throughput_rows(sizes, device, [("defaults+compile", False, {"compile": True}, True)], baseline, sizes.compiled)


# ---------------------------------------------------------------------------------------------- 2. DARTS
def darts_section(sizes: Sizes, device: torch.device, baseline: dict[str, float]) -> None:
    """DARTS's bilevel step (first order) as nas.darts.search runs it, in fp32 and under a bf16 autocast."""
    from nas.darts.adapters import adapter_for, build_supernet
    from nas.darts.search import DartsConfig, _train_epoch
    from search_spaces.spaces.darts import DartsSpace

    shape = (3, sizes.image, sizes.image)
    b = sizes.darts_batch
    config = DartsConfig(batch_size=b, init_channels=sizes.darts_channels, layers=sizes.darts_cells,
                         augment="none", seed=2)
    print(f"\n2. DARTS search step on {device}: {sizes.darts_cells} cells, C={sizes.darts_channels}, batch {b}, "
          f"{shape}, 1 worker; median of {sizes.darts_steps} steps after one warm-up")
    print(f"   {'precision':<10}{'s/step':>9}{'peak MiB':>12}")
    for precision in ("fp32", "bf16"):
        net = build_supernet(adapter_for(DartsSpace(num_classes=10, input_shape=shape)), config, shape, 10).to(device)
        weights = list(net.weight_parameters())
        w_opt = torch.optim.SGD(weights, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
        a_opt = torch.optim.Adam(net.arch_parameters(), lr=config.arch_lr, betas=config.arch_betas,
                                 weight_decay=config.arch_weight_decay)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2 * b, *shape, generator=gen).to(device)  # b for the weights, b for the alphas
        y = torch.randint(0, 10, (2 * b,), generator=gen).to(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(1 + sizes.darts_steps):
            synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                _train_epoch(net, config, w_opt, a_opt, weights, x, y, b, b, config.lr, None, gen, 0)
            synchronize(device)
            times.append(time.perf_counter() - start)
        peak = f"{torch.cuda.max_memory_allocated(device) / 2**20:>12.0f}" if device.type == "cuda" else \
            f"{'(GPU only)':>12}"
        print(f"   {precision:<10}{statistics.median(times[1:]):>9.3f}{peak}")


# ---------------------------------------------------------------------------------------------- 3. two trials
def half_gpu_trial(shared: SharedDataset, graph_json: str, config: dict[str, Any]) -> dict[str, float]:
    """One 0.5-GPU trial (a Ray task): the shared dataset, one training, its peak GPU memory."""
    data = shared.get()
    torch.cuda.reset_peak_memory_stats()
    result = train_and_evaluate(ArchGraph.from_json(graph_json), data, TrainConfig.from_dict(config), "cuda")
    return {"peak_mib": torch.cuda.max_memory_allocated() / 2**20, "reserved_mib": torch.cuda.max_memory_reserved()
            / 2**20, "data_mib": sum(t.numel() * t.element_size() for t in (data.train_x, data.val_x)) / 2**20,
            "val_acc": result["val_acc"]}


def shared_section(sizes: Sizes, device: torch.device, baseline: dict[str, float]) -> None:
    if device.type != "cuda":
        print("\n3. two 0.5-GPU trials with the shared dataset: skipped (needs a CUDA device)")
        return
    import ray

    data = digits32(sizes.shared_train, sizes.val, sizes.image, seed=1)
    graph = models(sizes.image)["macro-best"].to_json()
    config = TrainConfig(epochs=1, batch_size=sizes.batch).to_dict()
    print(f"\n3. two 0.5-GPU trials at once (Ray tasks) on one GPU, one epoch of macro-best on {sizes.shared_train} "
          "images each; the dataset put in Ray's object store once")
    print(f"   {'data':<22}{'trial':>6}{'data on GPU MiB':>16}{'peak MiB':>10}{'reserved MiB':>13}")
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_gpus=0.5)(half_gpu_trial)
        for label, stored in (("uint8 (now)", data), ("float32 (before)", data.normalised())):
            shared = SharedDataset.put(stored)
            rows = ray.get([task.remote(shared, graph, config) for _ in range(2)])
            for i, r in enumerate(rows):
                print(f"   {label:<22}{i:>6}{r['data_mib']:>16.0f}{r['peak_mib']:>10.0f}{r['reserved_mib']:>13.0f}")
            print(f"   {label:<22}{'both':>6}{sum(r['data_mib'] for r in rows):>16.0f}"
                  f"{sum(r['peak_mib'] for r in rows):>10.0f}{sum(r['reserved_mib'] for r in rows):>13.0f}")
    finally:
        ray.shutdown()


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: every code path in seconds")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is there")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile set-up")
    parser.add_argument("--keep-going", action="store_true", help="report a failing section and go on")
    parser.add_argument("--only", nargs="+", choices=["throughput", "darts", "shared", "compile"], default=None,
                        help="run these sections only (section 4 needs section 1's baseline to print ratios)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not (args.cpu or args.smoke)
    device = torch.device("cuda" if cuda else "cpu")
    sizes = SMOKE if args.smoke else GPU if cuda else CPU
    if args.no_compile:
        sizes = Sizes(**{**sizes.__dict__, "compiled": ()})
    name = torch.cuda.get_device_name(device) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"gpu_trials: torch {torch.__version__} on {name}{' (smoke sizes)' if args.smoke else ''}")
    if not cuda:
        print("no GPU: GPU-only measurements (peak GPU memory, the 0.5-GPU trials) are skipped; auto precision "
              "is fp32 here, so 'defaults' differ from 'fp32 eager' only in the data's storage")
    failed = 0
    start = time.perf_counter()
    sections: list[Callable[[Sizes, torch.device, dict[str, float]], None]] = [
        throughput_section, darts_section, shared_section, compile_section]
    if args.only:
        sections = [s for s in sections if s.__name__.removesuffix("_section") in args.only]
    baseline: dict[str, float] = {}  # images/s of fp32 eager per model (section 1), for section 4
    for section in sections:
        try:
            section(sizes, device, baseline)
        except Exception:
            if not args.keep_going:
                raise
            failed += 1
            print(f"   {section.__name__} FAILED:\n{traceback.format_exc()}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
