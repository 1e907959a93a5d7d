"""NAS-Bench-201 table-lookup mode: the table loader, the protocol's budget accounting, resuming a
protocol run (``done=``), a random-search smoke check against the published mean, and the
engine's journaled benchmark run resuming after a crash."""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pytest
from datapaths import NB201_TABLE

from nas.benchmarks.nb201 import NB201Table, ProtocolResult, TableError, run_protocol, strategy_ask_tell
from nas.cli import build_parser, search_config_from_args
from nas.config import SearchConfig
from nas.engine import run_benchmark
from nas.journal import JOURNAL, STATE
from nas.objective import Criterion
from nas.strategies import RandomSearch, RegularizedEvolution
from search_spaces.spaces.nb201 import NB201Arch, NB201Space, arch_to_string

SPACE = NB201Space()
needs_table = pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available (set NB201_TABLE)")
HEADER = "index,arch,valid_acc,valid_acc_12ep,test_acc,train_seconds_200ep,extra"


@pytest.fixture(scope="module")
def table() -> NB201Table:
    if not NB201_TABLE.is_file():
        pytest.skip("NB201 table not available (set NB201_TABLE)")
    return NB201Table(NB201_TABLE)


def arch_at(k: int) -> NB201Arch:
    return SPACE.decode(np.unravel_index(k, (5,) * 6))  # type: ignore[return-value]


def tiny_csv(tmp_path: Path, rows: list[str], header: str = HEADER) -> Path:
    path = tmp_path / "table.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def row(k: int, valid: str = "80.0", valid12: str = "70.0", test: str = "90.0", seconds: str = "1000") -> str:
    return f"{k},{arch_to_string(arch_at(k))},{valid},{valid12},{test},{seconds},x"


def list_ask(archs: Iterable[NB201Arch], log: list[NB201Arch] | None = None
             ) -> Callable[[], tuple[int, NB201Arch] | None]:
    it = iter(archs)
    counter = itertools.count()

    def ask() -> tuple[int, NB201Arch] | None:
        arch = next(it, None)
        if arch is None:
            return None
        if log is not None:
            log.append(arch)
        return next(counter), arch

    return ask


# ---------------------------------------------------------------------------------- table loader
def test_tiny_table_loads(tmp_path: Path) -> None:
    t = NB201Table(tiny_csv(tmp_path, [row(0, test="91.5", seconds="2000"), row(7, test="93.25")]), complete=False)
    assert len(t) == 2 and t.row(arch_at(7)) == 1 and t.best_test_acc == 93.25
    assert t.cost_12ep[0] == pytest.approx(2000 * 12 / 200)
    with pytest.raises(KeyError, match="not in table"):
        t.row(arch_at(3))


def test_objective_columns_and_an_unusable_optional_column(tmp_path: Path) -> None:
    header = HEADER + ",params_m,latency_pixel3_ms,latency_fpga_ms"
    rows = [row(0) + ",0.1,3.5,1.0", row(7) + ",0.2,n/a,2.0"]
    t = NB201Table(tiny_csv(tmp_path, rows, header), complete=False)  # an optional column's bad cell is not fatal
    assert t.objective_columns() == ("valid_acc", "valid_acc_12ep", "params_m", "latency_fpga_ms")
    assert t.column("latency_fpga_ms").tolist() == [1.0, 2.0]
    fitness = t.fitness((Criterion("valid_acc_12ep", True), Criterion("params_m", False)))
    assert fitness.tolist() == [[70.0, -0.1], [70.0, -0.2]]
    with pytest.raises(TableError, match=r"'latency_pixel3_ms' cannot be an objective.*line 3"):
        t.column("latency_pixel3_ms")
    with pytest.raises(TableError, match="reports"):
        t.column("test_acc")  # the test set: reported, never optimised
    with pytest.raises(TableError, match=r"no column 'latency_mars_ms'.*params_m"):
        t.column("latency_mars_ms")


def test_missing_table(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="does not exist"):
        NB201Table(tmp_path / "nope.csv")


def test_missing_column(tmp_path: Path) -> None:
    header = HEADER.replace("valid_acc_12ep,", "")
    path = tiny_csv(tmp_path, ["0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,2,3,x"], header)
    with pytest.raises(TableError, match=r"missing column\(s\) \['valid_acc_12ep'\]"):
        NB201Table(path, complete=False)


@pytest.mark.parametrize(("bad_row", "what"), [
    (row(5, test="abc"), "abc"),
    (row(5, seconds=""), "could not convert"),
    (row(5, valid12="nan"), "valid_acc_12ep is nan"),
    (row(5, valid="inf"), "valid_acc is inf"),
    ("5,|none~0|+|bogus~0|none~1|+|none~0|none~1|none~2|,1,2,3,4,x", "unknown NB201 op 'bogus'"),
    ("5,not-an-arch,1,2,3,4,x", "3 '+'-separated nodes"),
    ("5,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "NoneType"),  # short row
])
def test_bad_row_names_the_line(tmp_path: Path, bad_row: str, what: str) -> None:
    path = tiny_csv(tmp_path, [row(0), row(1), bad_row, row(9)])
    with pytest.raises(TableError, match=r"line 4: .*" + re.escape(what)) as err:
        NB201Table(path, complete=False)
    assert str(path) in str(err.value)


def test_empty_and_duplicate_tables(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no rows"):
        NB201Table(tiny_csv(tmp_path, []), complete=False)
    with pytest.raises(TableError, match="more than one row"):
        NB201Table(tiny_csv(tmp_path, [row(3), row(3)]), complete=False)


@needs_table
def test_real_table_facts(table: NB201Table) -> None:
    assert len(table) == 15_625
    assert table.best_test_acc == pytest.approx(94.3733)
    assert int(table.index[int(np.argmax(table.test_acc))]) == 6111
    assert table.cost_12ep.min() > 0


# ---------------------------------------------------------------------------------- protocol
@needs_table
@pytest.mark.parametrize("budget", [500.0, 3000.0, 12_000.0])
def test_budget_never_exceeded_and_stops_before_the_overrunning_query(table: NB201Table, budget: float) -> None:
    asked: list[NB201Arch] = []
    told: list[tuple[int, float]] = []
    strategy = RandomSearch(SPACE, seed=3)
    ask, tell = strategy_ask_tell(strategy)

    def logging_ask() -> tuple[int, NB201Arch]:
        trial, arch = ask()
        asked.append(arch)
        return trial, arch

    def logging_tell(trial: int, score: float) -> None:
        told.append((trial, score))
        tell(trial, score)

    result = run_protocol(logging_ask, logging_tell, table, time_budget=budget)
    costs = [float(table.cost_12ep[table.row(a)]) for a in asked]
    assert result.queries == len(told) == len(asked) - 1  # the last one asked would overrun
    assert result.seconds == pytest.approx(sum(costs[:-1])) and result.seconds <= budget
    assert result.seconds + costs[-1] > budget
    assert [t for t, _ in told] == list(range(result.queries))
    assert [s for _, s in told] == [float(table.valid_acc_12ep[table.row(a)]) for a in asked[:-1]]
    # the returned arch is the best by 12-epoch validation accuracy; the report is its test accuracy
    best = max(range(result.queries), key=lambda i: (told[i][1], -i))
    assert result.best_arch == asked[best] and result.best_valid_12ep == told[best][1]
    assert result.test_acc == float(table.test_acc[table.row(asked[best])])
    assert len(result.best_test_by_query) == result.queries and result.best_test_by_query[-1] == result.test_acc


@needs_table
def test_repeated_archs_are_charged(table: NB201Table) -> None:
    arch = arch_at(1234)
    cost = float(table.cost_12ep[table.row(arch)])
    told: list[int] = []
    result = run_protocol(list_ask(itertools.repeat(arch)), lambda t, s: told.append(t), table,
                          time_budget=10.5 * cost)
    assert result.queries == 10 and told == list(range(10))
    assert result.seconds == pytest.approx(10 * cost)
    capped = run_protocol(list_ask(itertools.repeat(arch)), lambda t, s: None, table, time_budget=1e9, max_queries=7)
    assert capped.queries == 7


@needs_table
def test_protocol_edge_cases(table: NB201Table) -> None:
    arch = arch_at(99)
    with pytest.raises(ValueError, match="smaller than the cost of the first query"):
        run_protocol(list_ask([arch]), lambda t, s: None, table,
                     time_budget=0.5 * float(table.cost_12ep[table.row(arch)]))
    short = run_protocol(list_ask([arch, arch_at(5)]), lambda t, s: None, table, time_budget=1e9)
    assert short.queries == 2  # ask() returned None: nothing left to propose
    with pytest.raises(KeyError):
        run_protocol(list_ask([("none",) * 5]), lambda t, s: None, table)  # not a member


def same_result(a: ProtocolResult, b: ProtocolResult) -> None:
    assert (a.best_arch, a.best_valid_12ep, a.test_acc, a.queries) == (b.best_arch, b.best_valid_12ep, b.test_acc,
                                                                        b.queries)
    assert a.seconds == pytest.approx(b.seconds) and a.best_test_by_query == b.best_test_by_query


@needs_table
def test_done_resume_equivalence(table: NB201Table) -> None:
    rng = np.random.default_rng(0)
    archs = [arch_at(int(k)) for k in rng.integers(15_625, size=400)]
    full = run_protocol(list_ask(archs), lambda t, s: None, table, time_budget=6000.0)
    assert 20 < full.queries < 400
    for k in (0, 1, 17, full.queries - 1, full.queries):
        told: list[int] = []
        resumed = run_protocol(list_ask(archs[k:]), lambda t, s, told=told: told.append(t), table,
                               time_budget=6000.0, done=archs[:k])
        same_result(full, resumed)
        assert len(told) == full.queries - k  # the done ones are charged, not asked or told again


@needs_table
def test_random_search_smoke(table: NB201Table) -> None:
    results = [run_protocol(*strategy_ask_tell(RandomSearch(SPACE, seed=s)), table) for s in range(30)]
    accs = np.array([r.test_acc for r in results])
    assert all(r.seconds <= 12_000 for r in results)
    assert all(50 < r.queries < 250 for r in results)
    assert 93.0 <= accs.mean() <= 94.4  # published 93.70 +- 0.36
    assert accs.max() <= table.best_test_acc
    evolution = [run_protocol(*strategy_ask_tell(RegularizedEvolution(SPACE, 10, 3, seed=s)), table)
                 for s in range(30)]
    assert 93.0 <= np.mean([r.test_acc for r in evolution]) <= 94.4  # published 93.92 +- 0.30


# ---------------------------------------------------------------------------------- engine (journaled)
def benchmark_config(*extra: str) -> SearchConfig:
    args = build_parser().parse_args(["search", "--benchmark", "nb201", "--table", str(NB201_TABLE), *extra])
    return search_config_from_args(args)


def events(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "t"}
            for line in (run_dir / JOURNAL).read_text().splitlines()]


@needs_table
@pytest.mark.parametrize("strategy", ["evolution", "random"])
def test_run_benchmark_resumes_after_a_crash(tmp_path: Path, strategy: str) -> None:
    config = benchmark_config("--strategy", strategy, "--seed", "4", "--time-budget", "4000")
    run, full = run_benchmark(config, tmp_path / "full")
    reference = events(tmp_path / "full")
    assert full.queries == run.num_done == sum(e["event"] == "result" for e in reference)
    assert run.best.score == full.best_valid_12ep
    for cut in (1, 2, 15, 30, len(reference) - 1):  # odd: ends on a proposal without result
        run_dir = tmp_path / f"cut{cut}"
        run_benchmark(config, run_dir)
        lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
        (run_dir / JOURNAL).write_text("".join(lines[:cut]))  # crashed here
        (run_dir / STATE).unlink()
        _, resumed = run_benchmark(config, run_dir)
        same_result(full, resumed)
        assert events(run_dir) == reference
    _, again = run_benchmark(config, tmp_path / "full")  # a finished run: no new queries
    same_result(full, again)
    assert events(tmp_path / "full") == reference


@needs_table
def test_run_benchmark_trial_cap(tmp_path: Path) -> None:
    _, result = run_benchmark(benchmark_config("--trials", "12"), tmp_path)
    assert result.queries == 12 and result.seconds < 12_000


def test_a_truncated_or_incomplete_table_is_refused_at_load(tmp_path: Path) -> None:
    if not NB201_TABLE.is_file():
        pytest.skip("the NB-201 table is not here")
    lines = NB201_TABLE.read_text().splitlines(keepends=True)
    truncated = tmp_path / "truncated.csv"
    truncated.write_text("".join(lines[:1001]))
    with pytest.raises(TableError, match="1000 rows, but NAS-Bench-201 has 15625 cells"):
        NB201Table(truncated)
    assert len(NB201Table(truncated, complete=False)) == 1000  # a subset on purpose
    renumbered = tmp_path / "renumbered.csv"
    renumbered.write_text(lines[0] + "".join("0" + line[line.index(","):] for line in lines[1:]))
    with pytest.raises(TableError, match="index column"):
        NB201Table(renumbered)


@pytest.mark.parametrize("content", [b"\x00" * 16384, bytes(range(256)) * 64, b"\x89PNG\r\n\x1a\n" + b"\xff" * 500])
def test_a_binary_file_gets_one_short_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "table.csv"
    path.write_bytes(content)
    with pytest.raises(TableError) as err:
        NB201Table(path)
    assert str(path) in str(err.value) and len(str(err.value)) < 300 + len(str(path))
