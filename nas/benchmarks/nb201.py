"""NAS-Bench-201 table-lookup mode: a trial is a row lookup, with the benchmark's protocol.

Protocol (Dong & Yang 2020; ../shared/benchmarks/nb201/README.md): the search sees the 12-epoch
validation accuracy (``valid_acc_12ep``) of each queried cell and is charged its simulated
12-epoch training time (``train_seconds_200ep * 12 / 200``) against a budget (12,000 s); it stops
before the query that would exceed the budget. The reported figure is the 200-epoch test
accuracy (``test_acc``) of the returned architecture: the best by search-time fitness.

Multi-objective (``objectives``: two or more :class:`~nas.objective.Criterion` naming columns of
the table, e.g. ``valid_acc_12ep`` and ``latency_pixel3_ms``): each query's fitness is the
vector of those columns, signed so each is maximised; the result holds the Pareto front of the
queried cells (:attr:`ProtocolResult.front`). Objective columns: :meth:`NB201Table.objective_columns`
(the accuracies used in search, ``params_m``, ``flops_m`` and every ``latency_*`` column present);
``test_acc`` is what a search reports, never what it optimises.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.objective import Criterion
from nas.pareto import non_dominated
from nas.strategies.base import Strategy
from search_spaces.errors import InputError
from search_spaces.spaces.nb201 import NB201Arch, NB201Space, parse_arch_string

REQUIRED_COLUMNS = ("index", "arch", "valid_acc", "valid_acc_12ep", "test_acc", "train_seconds_200ep")
COST_COLUMNS = ("params_m", "flops_m")  # optional, like the latency_*_ms columns
REPORTED_ONLY = ("test_acc",)
"""Columns a search reports but must not optimise (the test set)."""
PROTOCOL_EPOCHS = 12
FULL_EPOCHS = 200


class TableError(InputError):
    """The benchmark table is missing or malformed (message names the file, line and column)."""


def _bounded(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _finite(text: str | None, column: str) -> float:
    """A table cell as a finite float; ValueError naming the column otherwise."""
    value = float(text)  # type: ignore[arg-type]  # None: TypeError
    if not math.isfinite(value):
        raise InputError(f"{column} is {value}")
    return value


class NB201Table:
    """The CIFAR-10 table: per-cell accuracies and simulated costs, looked up by member tuple.

    ``complete=True`` (what a search needs: a strategy may propose any cell) also checks that the
    table has every cell of the space exactly once (15,625 rows) with unique indices, so a
    truncated or doctored file is refused at load instead of failing mid-search.
    """

    def __init__(self, path: str | Path, complete: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TableError(f"NAS-Bench-201 table {self.path} does not exist; pass the CSV with --table")
        with self.path.open("rb") as f:
            if b"\x00" in f.read(1 << 16):
                raise TableError(f"{self.path}: not a text CSV file (it contains NUL bytes); pass the NAS-Bench-201 "
                                 "results CSV")
        rows: dict[str, list[float]] = {c: [] for c in REQUIRED_COLUMNS if c != "arch"}
        self.archs: list[NB201Arch] = []
        line = 1
        try:
            with self.path.open(newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
                if missing:
                    found = _bounded(str(reader.fieldnames), 120)
                    raise TableError(f"{self.path}: not a NAS-Bench-201 table: missing column(s) {missing}; found "
                                     f"{found}")
                optional: dict[str, list[float]] = {
                    name: [] for name in reader.fieldnames or []
                    if name in COST_COLUMNS or (name.startswith("latency_") and name not in rows)}
                self.unusable: dict[str, str] = {}  # optional column -> why it cannot be an objective
                for line, row in enumerate(reader, start=2):
                    try:
                        self.archs.append(parse_arch_string(row["arch"]))
                        for col in rows:
                            rows[col].append(_finite(row[col], col))
                    except (ValueError, TypeError) as err:
                        raise TableError(f"{self.path}, line {line}: {_bounded(str(err))}") from None
                    for col in [c for c in optional if c not in self.unusable]:
                        try:
                            optional[col].append(_finite(row[col], col))
                        except (ValueError, TypeError) as err:  # an optional column: unusable, not fatal
                            self.unusable[col] = f"line {line}: {_bounded(str(err), 80)}"
                rows.update({c: v for c, v in optional.items() if c not in self.unusable})
        except UnicodeDecodeError:
            raise TableError(f"{self.path}: not a text CSV file (undecodable bytes near line {line}); pass the "
                             "NAS-Bench-201 results CSV") from None
        except csv.Error as err:
            raise TableError(f"{self.path}, line {line}: not a CSV row ({_bounded(str(err))})") from None
        if not self.archs:
            raise TableError(f"{self.path}: the table has no rows")
        self.index = np.asarray(rows["index"], dtype=np.int64)
        self.valid_acc = np.asarray(rows["valid_acc"])
        self.valid_acc_12ep = np.asarray(rows["valid_acc_12ep"])
        self.test_acc = np.asarray(rows["test_acc"])
        self.cost_12ep = np.asarray(rows["train_seconds_200ep"]) * PROTOCOL_EPOCHS / FULL_EPOCHS
        self.columns: dict[str, np.ndarray] = {
            name: np.asarray(values, dtype=np.float64) for name, values in rows.items()
            if name not in ("index", "train_seconds_200ep")}
        self.row_of = {arch: i for i, arch in enumerate(self.archs)}
        if len(self.row_of) != len(self.archs):
            first_row: dict[NB201Arch, int] = {}
            for i, arch in enumerate(self.archs):
                if arch in first_row:
                    raise TableError(f"{self.path}, line {i + 2}: architecture {arch} appears in more than one row "
                                     f"(also line {first_row[arch] + 2})")
                first_row[arch] = i
        if complete:
            self._check_complete()

    def _check_complete(self) -> None:
        expected = NB201Space().size
        if len(self.archs) != expected:
            raise TableError(f"{self.path}: {len(self.archs)} rows, but NAS-Bench-201 has {expected} cells (one row "
                             "each); the file is truncated or not the full table")
        if len(np.unique(self.index)) != expected or self.index.min() != 0 or self.index.max() != expected - 1:
            raise TableError(f"{self.path}: the index column must number the rows 0..{expected - 1} once each")
        space = NB201Space()
        for arch in self.archs:  # unique and as many as the space's members: every cell is there
            space.encode(arch)

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

    def objective_columns(self) -> tuple[str, ...]:
        """Columns a search may optimise: the search accuracies and every cost column present."""
        return tuple(name for name in self.columns if name not in REPORTED_ONLY)

    def column(self, name: str) -> np.ndarray:
        """Values (one per row) of objective column ``name``; TableError naming the choices."""
        if name in REPORTED_ONLY:
            raise TableError(f"{name} is what a NAS-Bench-201 search reports (the test set), not an objective: "
                             f"optimise one of {list(self.objective_columns())}")
        if name in self.unusable:
            raise TableError(f"{self.path}: column {name!r} cannot be an objective, it has a value that is not a "
                             f"finite number ({self.unusable[name]})")
        if name not in self.columns:
            raise TableError(f"{self.path} has no column {name!r} to optimise; its objective columns are "
                             f"{list(self.objective_columns())}")
        return self.columns[name]

    def fitness(self, criteria: Sequence[Criterion]) -> np.ndarray:
        """(rows, objectives): each row's objective values, signed so that each is maximised."""
        return np.stack([self.column(c.name) * (1.0 if c.maximise else -1.0) for c in criteria], axis=1)


@dataclass
class ProtocolResult:
    """One search run: the returned cell (the best by the first objective), its accuracies, queries
    made, simulated time spent; multi-objective, the Pareto front of the queried cells."""

    best_arch: NB201Arch
    best_valid_12ep: float
    test_acc: float
    queries: int
    seconds: float
    best_test_by_query: list[float] = field(default_factory=list)  # incumbent's test acc after each query
    queried_rows: list[int] = field(default_factory=list)  # the table row of each query, in order
    front: list[int] = field(default_factory=list)  # multi-objective: rows of the queried Pareto front


DEFAULT_CRITERIA = (Criterion("valid_acc_12ep", True),)
"""The protocol's fitness: the 12-epoch validation accuracy, maximised."""


def run_protocol(ask: Callable[[], tuple[int, NB201Arch] | None], tell: Callable[[int, Any], object],
                 table: NB201Table, time_budget: float = 12_000.0, max_queries: int | None = None,
                 done: Iterable[NB201Arch] = (), criteria: Sequence[Criterion] = DEFAULT_CRITERIA) -> ProtocolResult:
    """The benchmark's protocol for any ask/tell pair (a strategy, or a journaled :class:`SearchRun`).

    ``ask() -> (trial_id, arch)`` (None: nothing left to propose); every query is charged its
    simulated 12-epoch cost, repeated architectures included, as in NB201's R_EA. Stops before
    the query that would exceed ``time_budget`` (or after ``max_queries``). ``done``: archs already
    queried by a resumed run, in order; they are charged again without being asked or told.
    ``criteria``: the fitness columns; ``tell`` gets a float (one) or a tuple of the signed values
    (two or more). The incumbent is the best by the first one.
    """
    spent, queries = 0.0, 0
    fitness = table.fitness(criteria)  # (rows, objectives), maximised
    multi = len(criteria) > 1
    incumbent: tuple[int, float] | None = None  # (row, first objective, signed)
    trace: list[float] = []
    rows: list[int] = []

    def charge(row: int) -> Any:
        nonlocal spent, queries, incumbent
        spent += float(table.cost_12ep[row])
        queries += 1
        rows.append(row)
        first = float(fitness[row, 0])
        if incumbent is None or first > incumbent[1]:
            incumbent = (row, first)
        trace.append(float(table.test_acc[incumbent[0]]))
        return tuple(float(v) for v in fitness[row]) if multi else first

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
    distinct = sorted(set(rows))
    front = [r for r, keep in zip(distinct, non_dominated(fitness[distinct]), strict=True) if keep] if multi else []
    best = incumbent[0]
    return ProtocolResult(best_arch=table.archs[best], best_valid_12ep=float(table.valid_acc_12ep[best]),
                          test_acc=float(table.test_acc[best]), queries=queries, seconds=spent,
                          best_test_by_query=trace, queried_rows=rows, front=front)


def strategy_ask_tell(strategy: Strategy) -> tuple[Callable[[], tuple[int, NB201Arch]], Callable[[int, float], None]]:
    """Adapt a bare strategy (no journal) to :func:`run_protocol`: fast, for many-seed benchmarks."""

    def ask() -> tuple[int, NB201Arch]:
        proposal = strategy.ask()
        return proposal.trial_id, proposal.arch  # type: ignore[return-value]

    return ask, strategy.tell
