"""DARTS with its latency term: what ``latency_weight`` does to the derived architecture.

Short DARTS searches on scikit-learn's digits (offline; 1 x 8 x 8, 10 classes) for each
``--weights`` value and ``--seeds`` seed: a search network of ``--layers`` cells with C=8, first
order, ``--epochs`` epochs, no augmentation. For each search it reports the supernet's final
validation accuracy (the alpha split), the mixed ops' expected latency under the final alphas
(:mod:`nas.darts.latency`, ms on this CPU), the derived normal cell's parameter-free edges (pools,
skips), and the derived network as the DARTS space builds it for these inputs (``--eval-layers``
cells, C=16): its parameters, FLOPs (torch's count) and measured latency (batch 1, median of 20).
Searches alternate over the weights within each seed, so drifts of the machine spread evenly.
Prints mean +- std per weight.

    python bench/darts_latency.py [--weights 0 0.3 1 3] [--seeds 3] [--epochs 6]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

from nas.darts import DartsConfig, darts_search
from nas.datasets import load_digits
from nas.trainer import measure_latency_ms
from search_spaces.analysis import measure
from search_spaces.compiler import compile_graph
from search_spaces.spaces.darts import DartsSpace

PARAMETER_FREE = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect")


def one_search(weight: float, seed: int, args: argparse.Namespace, data: object) -> dict[str, float]:
    space = DartsSpace(C=16, layers=args.eval_layers, num_classes=10, input_shape=(1, 8, 8))
    config = DartsConfig(epochs=args.epochs, batch_size=64, init_channels=8, layers=args.layers, augment="none",
                         seed=seed, latency_weight=weight)
    start = time.perf_counter()
    result = darts_search(space, config, data.train_x, data.train_y)  # type: ignore[attr-defined]
    seconds = time.perf_counter() - start
    graph = space.to_graph(result.arch)
    cost = measure(graph)
    latency = measure_latency_ms(compile_graph(graph), (1, 8, 8), "cpu")
    last = result.history[-1]
    free = sum(op in PARAMETER_FREE for op, _ in result.arch.normal)  # type: ignore[attr-defined]
    return {"val_acc": last["valid_acc"], "expected_ms": last.get("expected_latency_ms", float("nan")),
            "free_edges": free, "params_k": cost.params / 1e3, "mflops": cost.flops / 1e6, "latency_ms": latency,
            "search_s": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--layers", type=int, default=5)
    parser.add_argument("--eval-layers", type=int, default=8)
    args = parser.parse_args(argv)
    data = load_digits()
    rows: dict[float, list[dict[str, float]]] = {w: [] for w in args.weights}
    for seed in range(args.seeds):
        for weight in args.weights:
            rows[weight].append(one_search(weight, seed, args, data))
            print(f"seed {seed} weight {weight:g}: {rows[weight][-1]}", flush=True)
    keys = ("val_acc", "expected_ms", "free_edges", "params_k", "mflops", "latency_ms", "search_s")
    print(f"\nDARTS on digits, {args.layers} cells C=8, {args.epochs} epochs, first order, {args.seeds} seeds; "
          f"derived network {args.eval_layers} cells C=16 (expected_ms: the supernet's mixed ops, NaN at weight 0; "
          "free_edges: parameter-free ops of the 8 normal-cell edges)")
    print(f"{'weight':>7}" + "".join(f"{k:>17}" for k in keys))
    for weight in args.weights:
        cells = []
        for k in keys:
            values = [r[k] for r in rows[weight] if not math.isnan(r[k])]  # expected_ms is NaN at weight 0
            if not values:
                cells.append(f"{'-':>17}")
                continue
            spread = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.mean(values):>10.3f} +-{spread:>5.2f}")
        print(f"{weight:>7g}" + "".join(cells))


if __name__ == "__main__":
    main()
