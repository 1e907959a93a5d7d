"""NAS-Bench-201 search protocol on CIFAR-10: regularized evolution, Optuna TPE and random search.

Protocol (the benchmark's): fitness = 12-epoch validation accuracy, each query charged its
simulated 12-epoch training time against 12,000 s, report the 200-epoch test accuracy of the
returned cell. Evolution uses NB-201's R_EA settings (P=10, S=3). Prints mean +- std over runs
next to the published numbers (random 93.70 +- 0.36; REA 93.92 +- 0.30; optimum 94.37).

    python bench/nb201_protocol.py [--table ../shared/benchmarks/nb201/nb201_cifar10.csv] [--runs 500]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from nas.benchmarks.nb201 import NB201Table, run_protocol, strategy_ask_tell
from nas.strategies import make_strategy
from search_spaces.spaces.nb201 import NB201Space

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"
PUBLISHED = {"random": "93.70 +- 0.36", "evolution": "93.92 +- 0.30 (REA)", "tpe": "-"}
SETTINGS = {"random": {}, "evolution": {"population_size": 10, "sample_size": 3}, "tpe": {}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--time-budget", type=float, default=12_000.0)
    args = parser.parse_args()
    table = NB201Table(args.table)
    space = NB201Space()
    print(f"NAS-Bench-201 CIFAR-10, {args.time_budget:,.0f} simulated s, {args.runs} runs per strategy "
          f"(optimum {table.best_test_acc:.2f})")
    print(f"{'strategy':<10} {'test acc mean +- std':>22} {'median':>7} {'queries':>8} {'wall s':>7}   published")
    for name, options in SETTINGS.items():
        start = time.perf_counter()
        results = [run_protocol(*strategy_ask_tell(make_strategy(name, space, seed=seed, **options)), table,
                                time_budget=args.time_budget) for seed in range(args.runs)]
        accs = [r.test_acc for r in results]
        queries = statistics.mean(r.queries for r in results)
        print(f"{name:<10} {statistics.mean(accs):>13.2f} +- {statistics.stdev(accs):.2f} "
              f"{statistics.median(accs):>7.2f} {queries:>8.1f} {time.perf_counter() - start:>7.1f}   "
              f"{PUBLISHED[name]}")


if __name__ == "__main__":
    main()
