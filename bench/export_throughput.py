"""Throughput of the exported module vs the compiled graph module vs a hand-written module.

CIFAR ResNet-18, forward + backward, same process, interleaved repetitions. The exported module
is the standalone source `nas export` writes (imported from a temp file) with the compiled
module's weights; the hand-written one (bench/compiled_vs_handwritten.py) gets the same weights;
all three must give the same outputs before timing. Reports median per-repetition throughput
ratios exported/compiled and exported/hand-written (target >= 0.98 for both).

    python bench/export_throughput.py [--batch 32] [--reps 7] [--iters 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from compiled_vs_handwritten import ResNet18Cifar, copy_weights, step_time

from nas.export.codegen import generate_model_source
from nas.export.exporter import check_equivalence, exported_module
from search_spaces.compiler import GraphModule
from search_spaces.reference import create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    graph = create_model("resnet18_cifar")
    compiled = GraphModule(graph, seed=0)
    exported = exported_module(generate_model_source(graph, "ResNet18Cifar"), compiled)
    hand = ResNet18Cifar()
    copy_weights(compiled, hand)
    diff = check_equivalence(exported, compiled, atol=1e-5)
    x = torch.randn(args.batch, 3, 32, 32)
    models = {"exported": exported, "compiled": compiled, "hand-written": hand}
    for model in models.values():
        model.train()
        step_time(model, x, 1)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in models}
    for rep in range(args.reps):
        names = list(models) if rep % 2 == 0 else list(models)[::-1]
        for name in names:
            times[name].append(step_time(models[name], x, args.iters))

    print(f"CIFAR ResNet-18, batch {args.batch}, {args.threads} threads, {args.reps} reps x {args.iters} fwd+bwd "
          f"steps; exported vs compiled max output diff {diff:.1e}")
    for name, t in times.items():
        print(f"  {name:<13}: {args.batch / statistics.median(t):8.1f} img/s")
    for base in ("compiled", "hand-written"):
        ratios = [b / e for e, b in zip(times["exported"], times[base], strict=True)]
        print(f"  throughput ratio exported/{base}: median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f}); target >= 0.98")


if __name__ == "__main__":
    main()
