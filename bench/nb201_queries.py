"""NAS-Bench-201 by number of queries: COMBO, Optuna TPE, regularized evolution, random search.

Each run queries the table (``--table``: any NB-201 results CSV) 150 times (fitness: the 12-epoch
validation accuracy, as in the benchmark's protocol; no time budget); after 50, 100 and 150
queries the incumbent (best fitness so far) is reported by its 200-epoch test accuracy. Every
query is charged, repeats included (the protocol's rule), so the ``distinct`` column (mean and
minimum number of distinct architectures a run queried) shows how many queries a strategy
wasted on repeats. Prints mean +- std over ``--runs`` seeds per strategy and budget, and writes a
plot of the mean test regret (the table's optimum minus the incumbent's test accuracy, shaded +-
one standard error) against queries.

Settings: COMBO with its defaults (20 random initial points, 100 burn-in sweeps, 10 samples per
iteration, 20,000 random + 10 spray starts, 20 greedy ascents); evolution with NB-201's R_EA
settings (P=10, S=3); TPE with the strategy's defaults. Runs are spread over ``--workers``
processes (one BLAS thread each).

    python bench/nb201_queries.py [--table ../shared/benchmarks/nb201/nb201_cifar10.csv] [--runs 30]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"
STRATEGY_OPTIONS = {"combo": {}, "tpe": {}, "evolution": {"population_size": 10, "sample_size": 3}, "random": {}}
BUDGETS = (50, 100, 150)


def one_run(args: tuple[str, int, str, int]) -> tuple[str, int, list[float], int, float]:
    """(strategy, seed, incumbent test accuracy after each query, distinct architectures queried, seconds)."""
    name, seed, table_path, queries = args
    import torch
    from threadpoolctl import threadpool_limits

    from nas.benchmarks.nb201 import NB201Table, run_protocol, strategy_ask_tell
    from nas.strategies import make_strategy
    from search_spaces.spaces.nb201 import NB201Space

    torch.set_num_threads(1)
    table = _table(table_path)
    assert isinstance(table, NB201Table)
    start = time.perf_counter()
    with threadpool_limits(1):
        strategy = make_strategy(name, NB201Space(), seed=seed, **STRATEGY_OPTIONS[name])
        ask, tell = strategy_ask_tell(strategy)
        queried: set[object] = set()

        def recording_ask() -> tuple[int, object]:
            trial_id, arch = ask()
            queried.add(arch)
            return trial_id, arch

        result = run_protocol(recording_ask, tell, table, time_budget=math.inf, max_queries=queries)
    return name, seed, result.best_test_by_query, len(queried), time.perf_counter() - start


_TABLES: dict[str, object] = {}


def _table(path: str) -> object:
    from nas.benchmarks.nb201 import NB201Table

    if path not in _TABLES:
        _TABLES[path] = NB201Table(path)
    return _TABLES[path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGY_OPTIONS), choices=list(STRATEGY_OPTIONS))
    parser.add_argument("--plot", default="bench/nb201_queries.png", help="regret plot (PNG)")
    args = parser.parse_args()
    table = _table(args.table)
    optimum = table.best_test_acc  # type: ignore[attr-defined]
    queries = max(BUDGETS)
    jobs = [(name, seed, args.table, queries) for name in args.strategies for seed in range(args.runs)]
    traces: dict[str, list[list[float]]] = {name: [] for name in args.strategies}
    seconds: dict[str, float] = dict.fromkeys(args.strategies, 0.0)
    distinct: dict[str, list[int]] = {name: [] for name in args.strategies}
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, _seed, trace, n_distinct, secs in pool.map(one_run, jobs):
            traces[name].append(trace)
            distinct[name].append(n_distinct)
            seconds[name] += secs
    print(f"NAS-Bench-201 table {args.table}, fitness valid_acc_12ep, {args.runs} runs per strategy, test accuracy "
          f"of the incumbent (optimum {optimum:.2f}); {time.perf_counter() - start:.0f} s wall on {args.workers} "
          "workers")
    header = "".join(f"{f'after {b} queries':>22}" for b in BUDGETS)
    print(f"{'strategy':<10}{header}{f'distinct/{queries}':>18}{'s/run':>8}")
    for name in args.strategies:
        cells = []
        for b in BUDGETS:
            accs = [t[b - 1] for t in traces[name]]
            cells.append(f"{statistics.mean(accs):>14.2f} +- {statistics.stdev(accs):.2f}")
        counts = distinct[name]
        print(f"{name:<10}{''.join(cells)}{f'{statistics.mean(counts):.1f} (min {min(counts)})':>18}"
              f"{seconds[name] / args.runs:>8.1f}")
    plot(traces, optimum, Path(args.plot), Path(args.table).stem)
    print(f"plot: {args.plot}")


def plot(traces: dict[str, list[list[float]]], optimum: float, path: Path, table_name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in traces.items():
        regret = optimum - np.asarray(runs)  # (runs, queries)
        mean, sem = regret.mean(0), regret.std(0, ddof=1) / math.sqrt(len(runs))
        x = np.arange(1, regret.shape[1] + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, np.maximum(mean - sem, 1e-3), mean + sem, alpha=0.2)
    ax.set_yscale("log")
    ax.set_xlabel("queries")
    ax.set_ylabel("test regret (%), mean +- s.e.")
    ax.set_title(f"NAS-Bench-201, {table_name} ({len(next(iter(traces.values())))} runs each)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
