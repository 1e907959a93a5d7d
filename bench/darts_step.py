"""DARTS search-step time and peak memory on CPU, first and second order, at the paper's configuration.

Configuration (quark0/darts ``train_search.py`` defaults): search network of 8 cells, C=16, 4
intermediate nodes, stem multiplier 3, 10 classes; batch 64 of 32x32x3 inputs (random data, no
augmentation: the step's cost does not depend on the values); SGD lr 0.025 momentum 0.9 wd 3e-4,
grad clip 5; Adam on the alphas (3e-4, betas (0.5, 0.999), wd 1e-3); fp32. One *step* is one
iteration of the search loop: an architecture step (first order: ``∇_α L_val``; second order:
virtual step + finite-difference Hessian-vector product) followed by a weight step.

Each order runs in its own subprocess (so peak memory is its own): ``--warmup`` steps, then the
median wall time of ``--steps`` timed steps; peak memory = the process's peak resident set size
minus its size just before the first step, next to our pre-launch estimate
(:mod:`nas.darts.memory`). Threads: torch's default (all cores) unless ``--threads``.

    python bench/darts_step.py [--steps 5] [--warmup 1] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure(order: int, steps: int, warmup: int, threads: int | None) -> dict[str, float]:
    """Runs in the child process."""
    import torch

    from nas.darts.adapters import adapter_for, build_supernet
    from nas.darts.memory import estimate_memory
    from nas.darts.search import DartsConfig, _train_epoch
    from search_spaces.spaces.darts import DartsSpace

    if threads:
        torch.set_num_threads(threads)
    space = DartsSpace(num_classes=10, input_shape=(3, 32, 32))
    config = DartsConfig(order=order, batch_size=64, init_channels=16, layers=8, augment="none", seed=2)
    estimate = estimate_memory(space, config, (3, 32, 32)).at(64)
    net = build_supernet(adapter_for(space), config, (3, 32, 32), 10)
    weights = list(net.weight_parameters())
    w_opt = torch.optim.SGD(weights, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    a_opt = torch.optim.Adam(net.arch_parameters(), lr=config.arch_lr, betas=config.arch_betas,
                             weight_decay=config.arch_weight_decay)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 3, 32, 32, generator=gen)  # 64 for the weights, 64 for the alphas
    y = torch.randint(0, 10, (128,), generator=gen)
    base = rss_bytes()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        # one step: the epoch loop over a 64-sample weight split is exactly one iteration
        _train_epoch(net, config, w_opt, a_opt, weights, x, y, 64, 64, config.lr_at(0), None, gen, 0)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"order": order, "median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "peak_mib": (peak - base) / 2**20, "estimate_mib": estimate / 2**20, "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.steps, args.warmup, args.threads)))
        return
    print("DARTS search step on CPU: 8 cells, C=16, batch 64, 32x32x3, 10 classes (quark0/darts defaults)")
    print(f"{'order':<14}{'median s/step':>14}{'min':>8}{'max':>8}{'peak MiB':>10}{'estimate MiB':>14}{'threads':>8}")
    rows = []
    for order in (1, 2):
        cmd = [sys.executable, __file__, "--child", str(order), "--steps", str(args.steps), "--warmup",
               str(args.warmup)] + (["--threads", str(args.threads)] if args.threads else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        rows.append(r)
        name = "first (V1)" if order == 1 else "second (V2)"
        print(f"{name:<14}{r['median_s']:>14.2f}{r['min_s']:>8.2f}{r['max_s']:>8.2f}{r['peak_mib']:>10.0f}"
              f"{r['estimate_mib']:>14.0f}{r['threads']:>8}")
    print(f"second / first order time: {rows[1]['median_s'] / rows[0]['median_s']:.2f}x; "
          f"peak memory ratio {rows[1]['peak_mib'] / rows[0]['peak_mib']:.2f}x")


if __name__ == "__main__":
    main()
