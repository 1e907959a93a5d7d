"""Multi-objective searches end to end without Ray: NAS-Bench-201 table lookups with accuracy against
latency through the CLI and the Python API (journaled values, the front, resume, `nas show --pareto`,
`nas export --pareto-pick`), the run layer's front, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from datapaths import NB201_TABLE

import nas
from nas.benchmarks.nb201 import NB201Table
from nas.cli import main
from nas.front import pick
from nas.journal import JOURNAL
from nas.objective import Criterion, Objective, parse_objectives
from nas.pareto import dominates
from nas.run import SearchRun
from nas.rundir import RunView
from nas.strategies import RandomSearch, RegularizedEvolution
from search_spaces.spaces.nb201 import NB201Space

TABLE = str(NB201_TABLE)
OBJECTIVES = "valid_acc_12ep,latency_pixel3_ms"
needs_table = pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available (set NB201_TABLE)")


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def table() -> NB201Table:
    if not NB201_TABLE.is_file():
        pytest.skip("NB201 table not available (set NB201_TABLE)")
    return NB201Table(NB201_TABLE)


@pytest.fixture(scope="module")
def mo_run(tmp_path_factory: pytest.TempPathFactory, table: NB201Table) -> tuple[Path, str]:
    run_dir = tmp_path_factory.mktemp("mo") / "run"
    code, out, err = run_cli("search", "--benchmark", "nb201", "--table", TABLE, "--run-dir", str(run_dir),
                             "--strategy", "tpe", "--trials", "40", "--objectives", OBJECTIVES)
    assert code == 0, err
    return run_dir, out


# ---------------------------------------------------------------------------------- objectives
def test_objectives_parse_with_directions() -> None:
    assert parse_objectives("valid_acc_12ep, latency_pixel3_ms") == ("valid_acc_12ep:max", "latency_pixel3_ms:min")
    assert parse_objectives(["params_m", "val_loss", "top1:max", "energy:min"]) == (
        "params_m:min", "val_loss:min", "top1:max", "energy:min")
    with pytest.raises(ValueError, match="maximise or minimise"):
        parse_objectives("throughput")
    with pytest.raises(ValueError, match="more than once"):
        parse_objectives("val_acc,val_acc:max")
    with pytest.raises(ValueError, match="direction"):
        parse_objectives("val_acc:up")
    objective = Objective(objectives=("val_acc", "latency_ms")).validate()
    assert objective.multi and objective.needs_latency and objective.primary == "val_acc"
    assert objective.values({"val_acc": 0.9}, 10, 20, 3.5) == (0.9, 3.5)
    assert objective.signed_values((0.9, 3.5)) == (0.9, -3.5)
    assert objective.evaluate({"val_acc": 0.9}, 10, 20, 3.5) == (0.9, None)
    assert objective.evaluate({"val_acc": 0.9}, 10, 20, float("nan"))[0] is None
    assert objective.describe() == "maximise val_acc, minimise latency_ms; no limits"
    assert Objective.from_dict(json.loads(json.dumps(objective.to_dict()))) == objective
    assert "objectives" not in Objective().to_dict()  # single-objective configurations stay as they were
    with pytest.raises(ValueError, match="penalties"):
        Objective(objectives=("val_acc", "params"), params_penalty=0.1).validate()
    assert Criterion.parse("latency_ms").signed(2.0) == -2.0


# ---------------------------------------------------------------------------------- CLI, benchmark mode
@needs_table
def test_search_journals_values_and_prints_the_front(mo_run: tuple[Path, str], table: NB201Table) -> None:
    run_dir, out = mo_run
    assert "Pareto front (" in out and "--pareto-pick" in out
    events = [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]
    results = [e for e in events if e["event"] == "result"]
    assert len(results) == 40
    space = NB201Space()
    points = []
    for event, proposal in zip(results, [e for e in events if e["event"] == "propose"], strict=True):
        row = table.row(space.from_json(proposal["arch"]))
        expected = [table.valid_acc_12ep[row], table.column("latency_pixel3_ms")[row]]
        assert event["values"] == pytest.approx(expected)
        assert event["score"] == pytest.approx(expected[0])
        points.append((event["trial"], (expected[0], -expected[1])))
    view = RunView(run_dir)
    front = {r.trial for r in view.pareto_front()}
    brute = {t for t, p in points if not any(dominates(q, p) for _, q in points)}
    hashes = {r.trial: r.hash for r in view.records.values()}
    assert {hashes[t] for t in front} == {hashes[t] for t in brute} and front <= brute
    accuracies = [r.values[0] for r in view.pareto_front()]
    assert accuracies == sorted(accuracies, reverse=True)  # best first by the first objective


@needs_table
def test_rerun_resumes_and_a_larger_budget_extends(mo_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = mo_run
    copy = tmp_path / "run"
    import shutil

    shutil.copytree(run_dir, copy)
    before = (copy / JOURNAL).read_text()
    code, _, err = run_cli("search", "--benchmark", "nb201", "--table", TABLE, "--run-dir", str(copy),
                           "--strategy", "tpe", "--trials", "50", "--objectives", OBJECTIVES)
    assert code == 0, err
    after = (copy / JOURNAL).read_text()
    assert after.startswith(before) and sum('"result"' in line for line in after.splitlines()) == 50
    code, _, err = run_cli("search", "--benchmark", "nb201", "--table", TABLE, "--run-dir", str(copy),
                           "--strategy", "tpe", "--objectives", "valid_acc_12ep,latency_raspi4_ms")
    assert code == 2 and "objective" in one_error_line(err)  # another objective: another run


@needs_table
def test_show_pareto_prints_the_front_and_writes_the_plot(mo_run: tuple[Path, str]) -> None:
    run_dir, _ = mo_run
    code, out, err = run_cli("show", str(run_dir), "--pareto")
    assert code == 0, err
    assert "Pareto front of valid_acc_12ep:max, latency_pixel3_ms:min" in out
    assert "latency_pixel3_ms (min)" in out
    assert (run_dir / "pareto.png").stat().st_size > 1000


@needs_table
def test_export_pareto_pick(mo_run: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, _ = mo_run
    view = RunView(run_dir)
    front = view.pareto_front()
    fast = [r for r in front if r.values[1] < 5]
    assert fast, "the test run's front has no member under 5 ms"
    assert pick(view, "latency_pixel3_ms<5") is fast[0]
    assert pick(view, "latency_pixel3_ms < 5, valid_acc_12ep>=0") is fast[0]
    assert pick(view, "0") is front[0] and pick(view, str(len(front) - 1)) is front[-1]
    out = tmp_path / "fast.py"
    code, _, err = run_cli("export", str(run_dir), "--pareto-pick", "latency_pixel3_ms<5", "--allow-untrained",
                           "--out", str(out))
    assert code == 0, err
    assert f"trial {fast[0].trial}" in out.read_text() or str(fast[0].trial) in out.read_text()
    for spec, words in ((str(len(front)), "members"), ("latency_pixel3_ms<0", "none of"), ("lat<<5", "condition"),
                        ("energy<3", "no value for 'energy'")):
        code, _, err = run_cli("export", str(run_dir), "--pareto-pick", spec, "--allow-untrained", "--out",
                               str(tmp_path / "x.py"))
        assert code == 2 and words in one_error_line(err), (spec, err)


@needs_table
@pytest.mark.parametrize("argv, words", [
    (["--objectives", "test_acc,latency_pixel3_ms"], "reports"),
    (["--objectives", "valid_acc_12ep,latency_mars_ms"], "no column 'latency_mars_ms'"),
    (["--objectives", "valid_acc_12ep,throughput"], "maximise or minimise"),
    (["--objectives", OBJECTIVES, "--params-penalty", "0.1"], "penalties"),
])
def test_bad_objectives_in_benchmark_mode(tmp_path: Path, argv: list[str], words: str) -> None:
    code, _, err = run_cli("search", "--benchmark", "nb201", "--table", TABLE, "--run-dir", str(tmp_path / "r"),
                           "--trials", "5", *argv)
    assert code == 2 and words in one_error_line(err)


@pytest.mark.parametrize("argv, words", [
    (["--objectives", "val_acc,latency_ms", "--strategy", "darts"], "multi-trial strategy"),
    (["--objectives", "val_acc,latency_ms", "--scheduler", "asha"], "fifo"),
    (["--objectives", "val_acc,throughput:max"], "built-in trainer reports"),
])
def test_bad_objectives_with_the_trainer(tmp_path: Path, argv: list[str], words: str) -> None:
    code, _, err = run_cli("search", "--run-dir", str(tmp_path / "r"), "--trials", "2", *argv)
    assert code == 2 and words in one_error_line(err)


def test_show_pareto_of_a_single_objective_run_is_one_error(tmp_path: Path) -> None:
    run = SearchRun(tmp_path / "r", {"trials": 2}, NB201Space(), RandomSearch(NB201Space()), 2, durable=False,
                    identify=lambda a: (str(a), a))
    record, _ = run.next_trial()
    run.finish(record.trial, 0.5)
    run.close()
    code, _, err = run_cli("show", str(tmp_path / "r"), "--pareto")
    assert code == 2 and "one objective" in one_error_line(err)


# ---------------------------------------------------------------------------------- Python API
@needs_table
def test_experiment_result_exposes_the_front(tmp_path: Path, table: NB201Table) -> None:
    exp = nas.Experiment(benchmark="nb201", table=TABLE, strategy="evolution", trials=30, run_dir=tmp_path / "r",
                         objectives=["valid_acc_12ep", "latency_pixel3_ms"])
    result = exp.run()
    assert result.pareto_front and result.best is not None
    assert [t.trial for t in result.pareto_front] == [r.trial for r in RunView(tmp_path / "r").pareto_front()]
    for t in result.pareto_front:
        row = table.row(t.arch)
        assert t.values == pytest.approx({"valid_acc_12ep": table.valid_acc_12ep[row],
                                          "latency_pixel3_ms": table.column("latency_pixel3_ms")[row]})
    assert result.protocol is not None and len(result.protocol.front) >= 1
    with pytest.raises(ValueError, match="num_objectives"):
        nas.Experiment(benchmark="nb201", table=TABLE, strategy=RegularizedEvolution(NB201Space()), trials=5,
                       run_dir=tmp_path / "u", objectives=OBJECTIVES).run()


# ---------------------------------------------------------------------------------- the run layer
def test_cached_answers_carry_values_and_the_front_lists_an_architecture_once(tmp_path: Path) -> None:
    space = NB201Space()
    criteria = (Criterion("acc", True), Criterion("ms", False))
    strategy = RandomSearch(space, seed=0, num_objectives=2)
    # every member has the same hash: the later proposals wait for the first and get its result
    run = SearchRun(tmp_path / "r", {"trials": 3}, space, strategy, 3, durable=False,
                    identify=lambda a: ("same", a), criteria=criteria)
    first, _ = run.next_trial()
    assert run.next_trial() is None  # trials 1 and 2 wait for trial 0
    with pytest.raises(ValueError, match="one value per objective"):
        run.finish(first.trial, 0.8)  # refused before anything is recorded
    assert not run.records[first.trial].done
    run.finish(first.trial, 0.8, values=(0.8, 2.0))
    assert [(r.status, r.values) for r in run.records.values()] == [("ok", (0.8, 2.0))] + [("cached", (0.8, 2.0))] * 2
    assert [r.trial for r in run.pareto_front()] == [first.trial]
    assert {v for _, v in strategy.pareto_front()} == {(0.8, -2.0)}  # told signed: both maximised
    run.close()
    view = RunView(tmp_path / "r")
    assert view.criteria == () and not view.multi  # the stored config names no objectives


def test_resume_replays_the_values(tmp_path: Path) -> None:
    space = NB201Space()
    criteria = (Criterion("a", True), Criterion("b", False))
    rng = np.random.default_rng(0)

    def start() -> SearchRun:
        return SearchRun(tmp_path / "r", {"trials": 12, "objective": {"objectives": ["a", "b"]}}, space,
                         RegularizedEvolution(space, seed=3, num_objectives=2), 12, durable=False,
                         identify=lambda arch: (space.to_string(arch), arch), criteria=criteria)

    run = start()
    for _ in range(8):
        record, _ = run.next_trial()
        run.finish(record.trial, 1.0, values=tuple(rng.uniform(size=2)))
    state = run.strategy.state_dict()
    run.journal.close()
    run.lock.release()  # a crash: no final snapshot
    resumed = start()
    assert json.dumps(resumed.strategy.state_dict(), sort_keys=True) == json.dumps(state, sort_keys=True)
    assert [r.values for r in resumed.records.values()] == [r.values for r in run.records.values()]
    resumed.close()


def test_the_best_trial_of_a_multi_objective_run_is_on_the_front(tmp_path: Path) -> None:
    """Two trials tie on the first objective; the later one is faster: it, not the earlier (dominated)
    one, is the run's best (export's and retraining's default)."""
    space = NB201Space()
    criteria = (Criterion("val_acc", True), Criterion("latency_ms", False))
    run = SearchRun(tmp_path / "r", {"trials": 2, "objective": {"objectives": ["val_acc", "latency_ms"]}}, space,
                    RandomSearch(space, num_objectives=2), 2, durable=False,
                    identify=lambda arch: (space.to_string(arch), arch), criteria=criteria)
    for values in ((0.9, 5.0), (0.9, 3.0)):
        record, _ = run.next_trial()
        run.finish(record.trial, values[0], values=values)
    run.close()
    view = RunView(tmp_path / "r")
    assert view.leaderboard(1)[0].trial == 0  # the scalar order: first objective, then the lower id
    assert [r.trial for r in view.pareto_front()] == [1] and view.top().trial == 1 and view.pick().trial == 1
