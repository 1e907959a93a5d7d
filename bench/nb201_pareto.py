"""NAS-Bench-201 Pareto search: hypervolume of accuracy against latency after 50/100/150 queries.

Each run queries the table (``--table``: any NB-201 results CSV) 150 times with two objectives,
``valid_acc_12ep`` (maximised) and ``latency_pixel3_ms`` (minimised; ``--objectives`` for others),
every query charged (repeats included). After 50, 100 and 150 queries the hypervolume of the
queried cells is computed from the reference point (75 % accuracy, the table's median of the
second objective: 10.68 ms for Pixel 3) and normalised by the hypervolume of the true front (all
15,625 cells). Prints mean +- std over ``--runs`` seeds per strategy, the mean number of distinct
cells queried, seconds per run, and writes a plot of the mean normalised hypervolume against
queries.

Strategies, each with its defaults and its multi-objective form: regularized evolution (P=10,
S=3, NSGA-II order in the tournament, aging), annealed evolution, Optuna's MOTPE, Optuna's
NSGA-II (population 20), COMBO with ParEGO scalarisations, and random search. Runs are spread over
``--workers`` processes (one BLAS thread each).

    python bench/nb201_pareto.py [--table ../shared/benchmarks/nb201/nb201_cifar10.csv] [--runs 30]
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
STRATEGIES = ("evolution", "evolution-annealed", "tpe", "nsga2", "combo", "random")
BUDGETS = (50, 100, 150)
ACCURACY_REFERENCE = 75.0


def one_run(args: tuple[str, int, str, tuple[str, ...], int]) -> tuple[str, int, list[int], float]:
    """(strategy, seed, table row of each query, seconds)."""
    name, seed, table_path, objectives, queries = args
    import torch
    from threadpoolctl import threadpool_limits

    from nas.benchmarks.nb201 import run_protocol, strategy_ask_tell
    from nas.objective import Criterion
    from nas.strategies import make_strategy
    from search_spaces.spaces.nb201 import NB201Space

    torch.set_num_threads(1)
    table = _table(table_path)
    criteria = tuple(Criterion.parse(o) for o in objectives)
    start = time.perf_counter()
    with threadpool_limits(1):
        strategy = make_strategy(name, NB201Space(), seed=seed, num_objectives=len(criteria))
        result = run_protocol(*strategy_ask_tell(strategy), table, time_budget=math.inf, max_queries=queries,
                              criteria=criteria)
    return name, seed, result.queried_rows, time.perf_counter() - start


_TABLES: dict[str, object] = {}


def _table(path: str):  # type: ignore[no-untyped-def]
    from nas.benchmarks.nb201 import NB201Table

    if path not in _TABLES:
        _TABLES[path] = NB201Table(path)
    return _TABLES[path]


def hypervolume_trace(rows: list[int], fitness, reference) -> list[float]:  # type: ignore[no-untyped-def]
    """Hypervolume of the first q queried rows, for q = 1..len(rows)."""
    from nas.pareto import hypervolume

    return [hypervolume(fitness[rows[:q]], reference) for q in range(1, len(rows) + 1)]


def main() -> None:
    import numpy as np

    from nas.objective import Criterion, parse_objectives
    from nas.pareto import hypervolume

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--objectives", default="valid_acc_12ep,latency_pixel3_ms")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--plot", default="bench/nb201_pareto.png", help="hypervolume plot (PNG)")
    args = parser.parse_args()
    objectives = parse_objectives(args.objectives)
    criteria = [Criterion.parse(o) for o in objectives]
    if len(criteria) != 2 or not criteria[0].maximise or criteria[1].maximise:
        parser.error("--objectives: an accuracy to maximise, then a cost to minimise")
    table = _table(args.table)
    fitness = table.fitness(criteria)  # signed: both maximised
    median_cost = float(np.median(table.column(criteria[1].name)))
    reference = np.array([ACCURACY_REFERENCE, -median_cost])
    true_hv = hypervolume(fitness, reference)
    queries = max(BUDGETS)
    jobs = [(name, seed, args.table, objectives, queries) for name in args.strategies for seed in range(args.runs)]
    traces: dict[str, list[list[float]]] = {name: [] for name in args.strategies}
    distinct: dict[str, list[int]] = {name: [] for name in args.strategies}
    seconds: dict[str, float] = dict.fromkeys(args.strategies, 0.0)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for name, _seed, rows, secs in pool.map(one_run, jobs):
            traces[name].append([h / true_hv for h in hypervolume_trace(rows, fitness, reference)])
            distinct[name].append(len(set(rows)))
            seconds[name] += secs
    print(f"NAS-Bench-201 table {args.table}: {criteria[0]} vs {criteria[1]}, reference point "
          f"({ACCURACY_REFERENCE:g}, {median_cost:.4g}), normalised by the true front's hypervolume "
          f"({true_hv:.4g}); {args.runs} runs per strategy; {time.perf_counter() - start:.0f} s wall on "
          f"{args.workers} workers")
    header = "".join(f"{f'after {b} queries':>20}" for b in BUDGETS)
    print(f"{'strategy':<20}{header}{f'distinct/{queries}':>14}{'s/run':>8}")
    for name in args.strategies:
        cells = []
        for b in BUDGETS:
            hv = [t[b - 1] for t in traces[name]]
            spread = statistics.stdev(hv) if len(hv) > 1 else 0.0
            cells.append(f"{statistics.mean(hv):>12.3f} +- {spread:.3f}")
        print(f"{name:<20}{''.join(cells)}{statistics.mean(distinct[name]):>14.1f}{seconds[name] / args.runs:>8.1f}")
    plot(traces, Path(args.plot), f"{criteria[0].name} vs {criteria[1].name}")
    print(f"plot: {args.plot}")


def plot(traces: dict[str, list[list[float]]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, runs in traces.items():
        hv = np.asarray(runs)  # (runs, queries)
        mean, sem = hv.mean(0), hv.std(0, ddof=1) / math.sqrt(len(runs)) if len(runs) > 1 else 0.0 * hv.mean(0)
        x = np.arange(1, hv.shape[1] + 1)
        ax.plot(x, mean, label=name)
        ax.fill_between(x, mean - sem, mean + sem, alpha=0.2)
    ax.set_xlabel("queries")
    ax.set_ylabel("normalised hypervolume, mean +- s.e.")
    ax.set_title(f"NAS-Bench-201 Pareto search: {title}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
