"""Throughput of a compiled IR graph vs a hand-written PyTorch module of the same architecture.

CIFAR ResNet-18 (11.17 M params), forward + backward, same process, interleaved repetitions;
reports images/s of each and the median of the per-repetition ratio compiled / hand-written
(target >= 0.97). Before timing, the hand-written module receives the compiled module's weights
and both must give the same outputs: the comparison is of one architecture, two implementations.

    python bench/compiled_vs_handwritten.py [--batch 32] [--reps 7] [--iters 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from search_spaces.compiler import GraphModule
from search_spaces.reference import create_model


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18Cifar(nn.Module):
    """Hand-written CIFAR ResNet-18: (B, 3, 32, 32) -> (B, 10)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        layers, in_ch = [], 64
        for planes, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            layers += [BasicBlock(in_ch, planes, stride), BasicBlock(planes, planes, 1)]
            in_ch = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def copy_weights(src: nn.Module, dst: nn.Module) -> None:
    """Copy parameters and buffers in registration order (both modules register in data-flow order)."""
    src_state, dst_state = list(src.state_dict().values()), dst.state_dict()
    if len(src_state) != len(dst_state):
        raise SystemExit(f"state sizes differ: {len(src_state)} vs {len(dst_state)}")
    for (key, dst_tensor), tensor in zip(dst_state.items(), src_state, strict=True):
        if dst_tensor.shape != tensor.shape:
            raise SystemExit(f"shape mismatch at {key}: {tuple(tensor.shape)} vs {tuple(dst_tensor.shape)}")
        dst_tensor.copy_(tensor)


def step_time(model: nn.Module, x: torch.Tensor, iters: int) -> float:
    """Seconds per forward+backward step, mean over ``iters`` steps."""
    start = time.perf_counter()
    for _ in range(iters):
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
    return (time.perf_counter() - start) / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    compiled = GraphModule(create_model("resnet18_cifar"), seed=0)
    hand = ResNet18Cifar()
    copy_weights(compiled, hand)
    x = torch.randn(args.batch, 3, 32, 32)
    compiled.eval(), hand.eval()
    with torch.no_grad():
        diff = (compiled(x) - hand(x)).abs().max().item()
    if diff > 1e-4:
        raise SystemExit(f"outputs differ by {diff}: not the same architecture")
    compiled.train(), hand.train()
    n_params = sum(p.numel() for p in compiled.parameters())

    for model in (compiled, hand):  # warm-up
        step_time(model, x, 1)
    ratios, t_compiled, t_hand = [], [], []
    for rep in range(args.reps):
        order = [(compiled, t_compiled), (hand, t_hand)]
        for model, times in order if rep % 2 == 0 else order[::-1]:
            times.append(step_time(model, x, args.iters))
        ratios.append(t_hand[-1] / t_compiled[-1])

    def ips(times: list[float]) -> float:
        return args.batch / statistics.median(times)

    print(f"CIFAR ResNet-18 ({n_params:,} params), batch {args.batch}, {args.threads} threads, "
          f"{args.reps} reps x {args.iters} fwd+bwd steps; max output diff {diff:.1e}")
    print(f"  compiled graph : {ips(t_compiled):8.1f} img/s")
    print(f"  hand-written   : {ips(t_hand):8.1f} img/s")
    print(f"  throughput ratio compiled/hand-written: median {statistics.median(ratios):.3f} "
          f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target >= 0.97")


if __name__ == "__main__":
    main()
