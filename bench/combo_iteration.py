"""Seconds per COMBO iteration (10 sweeps of hyper-parameter sampling + acquisition optimisation).

One iteration is one ``ask()`` after a ``tell()``. Runs COMBO sequentially on the NAS-Bench-201
space (6 categorical variables x 5 ops) with the table's 12-epoch validation accuracy as the
objective (a synthetic objective when the table is missing) and times the asks made with 50,
150 and 260 observations (median over ``--repeats`` consecutive iterations from each point).
The reference implementation's figures (nas-algorithms.md 3.11) are printed alongside; the best
value reached and its regret show that speed is not bought with search quality.

    python bench/combo_iteration.py [--table ../shared/benchmarks/nb201/nb201_cifar10.csv] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from nas.strategies.combo import Combo
from search_spaces.spaces.nb201 import NB201Space

DEFAULT_TABLE = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"
REFERENCE_SECONDS = {50: "1.8", 150: "4.1", 260: "-"}


def objective(space: NB201Space, table_path: Path) -> tuple[Callable[[Hashable], float], float, str]:
    """(score of a member, the best score in the space, description)."""
    if table_path.is_file():
        from nas.benchmarks.nb201 import NB201Table

        table = NB201Table(table_path)
        return (lambda arch: float(table.valid_acc_12ep[table.row(arch)]), float(table.valid_acc_12ep.max()),
                f"NAS-Bench-201 valid_acc_12ep ({table_path.name})")
    weights = np.random.default_rng(0).normal(size=(6, 5))
    members = np.stack(np.meshgrid(*[np.arange(5)] * 6, indexing="ij"), -1).reshape(-1, 6)
    values = weights[np.arange(6), members].sum(1) + 0.5 * np.sin(members.sum(1))
    score = lambda arch: float(weights[np.arange(6), space.encode(arch)].sum()  # noqa: E731
                               + 0.5 * np.sin(space.encode(arch).sum()))
    return score, float(values.max()), "synthetic additive objective (table missing)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default=str(DEFAULT_TABLE))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", type=int, nargs="+", default=[50, 150, 260], help="observation counts")
    parser.add_argument("--repeats", type=int, default=5, help="iterations timed at each point")
    args = parser.parse_args()
    space = NB201Space()
    score, best_possible, what = objective(space, Path(args.table))
    strategy = Combo(space, seed=args.seed)
    times: dict[int, list[tuple[float, float, float]]] = {p: [] for p in args.points}
    best_at: dict[int, float] = {}
    total = max(args.points) + args.repeats
    start = time.perf_counter()
    for _ in range(total):
        n_obs = len(strategy.observations)
        t0 = time.perf_counter()
        proposal = strategy.ask()
        seconds = time.perf_counter() - t0
        for p in args.points:
            if p <= n_obs < p + args.repeats:
                times[p].append((seconds, strategy.last_timing["sampling"], strategy.last_timing["acquisition"]))
        strategy.tell(proposal.trial_id, score(proposal.arch))
        best_at[len(strategy.observations)] = strategy.best[1]  # type: ignore[index]
    print(f"COMBO on the NB-201 space (6 x 5 categorical), {what}, seed {args.seed}; "
          f"{total} evaluations in {time.perf_counter() - start:.0f} s")
    print(f"{'observations':>12} {'s/iteration':>12} {'sampling':>9} {'acq. opt.':>9} {'reference':>10} "
          f"{'speed-up':>9} {'best so far':>12} {'regret':>8}")
    for p in args.points:
        med = [statistics.median(t[k] for t in times[p]) for k in range(3)]
        ref = REFERENCE_SECONDS.get(p, "-")
        speedup = f"{float(ref) / med[0]:.1f}x" if ref != "-" else "-"
        best = best_at[p]
        print(f"{p:>12} {med[0]:>12.3f} {med[1]:>9.3f} {med[2]:>9.3f} {ref:>10} {speedup:>9} {best:>12.3f} "
              f"{best_possible - best:>8.3f}")


if __name__ == "__main__":
    main()
