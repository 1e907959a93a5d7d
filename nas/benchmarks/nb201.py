"""NAS-Bench-201 table-lookup mode: a trial is a row lookup, with the benchmark's protocol.

Protocol (Dong & Yang 2020; ../shared/benchmarks/nb201/README.md): the search sees the 12-epoch
validation accuracy (``valid_acc_12ep``) of each queried cell and is charged its simulated
12-epoch training time (``train_seconds_200ep * 12 / 200``) against a budget (12,000 s); it stops
before the query that would exceed the budget. The reported figure is the 200-epoch test
accuracy (``test_acc``) of the returned architecture: the best by search-time fitness.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nas.strategies.base import Strategy
from search_spaces.errors import InputError
from search_spaces.spaces.nb201 import NB201Arch, parse_arch_string

REQUIRED_COLUMNS = ("index", "arch", "valid_acc", "valid_acc_12ep", "test_acc", "train_seconds_200ep")
PROTOCOL_EPOCHS = 12
FULL_EPOCHS = 200


class TableError(InputError):
    """The benchmark table is missing or malformed (message names the file, line and column)."""


class NB201Table:
    """The CIFAR-10 table: per-cell accuracies and simulated costs, looked up by member tuple."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TableError(f"NAS-Bench-201 table {self.path} does not exist; pass the CSV with --table")
        rows: dict[str, list[float]] = {c: [] for c in REQUIRED_COLUMNS if c != "arch"}
        self.archs: list[NB201Arch] = []
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise TableError(f"{self.path}: missing column(s) {missing}; found {reader.fieldnames}")
            for line, row in enumerate(reader, start=2):
                try:
                    self.archs.append(parse_arch_string(row["arch"]))
                    for col in rows:
                        value = float(row[col])
                        if not math.isfinite(value):
                            raise InputError(f"{col} is {value}")
                        rows[col].append(value)
                except (ValueError, TypeError) as err:
                    raise TableError(f"{self.path}, line {line}: {err}") from None
        if not self.archs:
            raise TableError(f"{self.path}: the table has no rows")
        self.index = np.asarray(rows["index"], dtype=np.int64)
        self.valid_acc = np.asarray(rows["valid_acc"])
        self.valid_acc_12ep = np.asarray(rows["valid_acc_12ep"])
        self.test_acc = np.asarray(rows["test_acc"])
        self.cost_12ep = np.asarray(rows["train_seconds_200ep"]) * PROTOCOL_EPOCHS / FULL_EPOCHS
        self.row_of = {arch: i for i, arch in enumerate(self.archs)}
        if len(self.row_of) != len(self.archs):
            raise TableError(f"{self.path}: an architecture appears in more than one row")

    def __len__(self) -> int:
        return len(self.archs)

    def row(self, arch: NB201Arch) -> int:
        try:
            return self.row_of[tuple(arch)]  # type: ignore[index]
        except KeyError:
            raise KeyError(f"architecture {arch} is not in table {self.path}") from None

    @property
    def best_test_acc(self) -> float:
        return float(self.test_acc.max())


@dataclass
class ProtocolResult:
    """One search run: the returned cell, its accuracies, queries made, simulated time spent."""

    best_arch: NB201Arch
    best_valid_12ep: float
    test_acc: float
    queries: int
    seconds: float
    best_test_by_query: list[float] = field(default_factory=list)  # incumbent's test acc after each query


def run_protocol(ask: Callable[[], tuple[int, NB201Arch] | None], tell: Callable[[int, float], object],
                 table: NB201Table, time_budget: float = 12_000.0, max_queries: int | None = None,
                 done: Iterable[NB201Arch] = ()) -> ProtocolResult:
    """The benchmark's protocol for any ask/tell pair (a strategy, or a journaled :class:`SearchRun`).

    ``ask() -> (trial_id, arch)`` (None: nothing left to propose); every query is charged its
    simulated 12-epoch cost, repeated architectures included, as in NB201's R_EA. Stops before
    the query that would exceed ``time_budget`` (or after ``max_queries``). ``done``: archs already
    queried by a resumed run, in order; they are charged again without being asked or told.
    """
    spent, queries = 0.0, 0
    incumbent: tuple[int, float] | None = None  # (row, valid_12ep)
    trace: list[float] = []

    def charge(row: int) -> float:
        nonlocal spent, queries, incumbent
        spent += float(table.cost_12ep[row])
        queries += 1
        score = float(table.valid_acc_12ep[row])
        if incumbent is None or score > incumbent[1]:
            incumbent = (row, score)
        trace.append(float(table.test_acc[incumbent[0]]))
        return score

    for arch in done:
        charge(table.row(arch))
    while max_queries is None or queries < max_queries:
        asked = ask()
        if asked is None:
            break
        trial, arch = asked
        row = table.row(arch)
        if spent + float(table.cost_12ep[row]) > time_budget:
            break
        tell(trial, charge(row))
    if incumbent is None:
        raise InputError(f"time budget {time_budget} s is smaller than the cost of the first query")
    return ProtocolResult(best_arch=table.archs[incumbent[0]], best_valid_12ep=incumbent[1],
                          test_acc=float(table.test_acc[incumbent[0]]), queries=queries, seconds=spent,
                          best_test_by_query=trace)


def strategy_ask_tell(strategy: Strategy) -> tuple[Callable[[], tuple[int, NB201Arch]], Callable[[int, float], None]]:
    """Adapt a bare strategy (no journal) to :func:`run_protocol`: fast, for many-seed benchmarks."""

    def ask() -> tuple[int, NB201Arch]:
        proposal = strategy.ask()
        return proposal.trial_id, proposal.arch  # type: ignore[return-value]

    return ask, strategy.tell
