"""nas.run.SearchRun: journal replay and resume after an interruption, dedup, feasibility, budget.

Trials are scored by a synthetic function of the NB-201 encoding (no table, no training); the
dispatcher below keeps a few trials in flight and finishes the oldest first, like async workers.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nas.journal import JOURNAL, STATE, ConfigMismatch, repair_journal
from nas.run import ResumeError, SearchRun
from nas.strategies import AnnealedEvolution, RandomSearch, RegularizedEvolution, Strategy
from search_spaces.spaces.nb201 import NB201Space

SPACE = NB201Space()
WEIGHTS = np.array([3.0, 1.0, 2.0, 5.0, 0.5, 4.0])
CONFIG = {"strategy": "evolution", "seed": 0, "trials": 40}


def score_of(arch: Hashable) -> float | None:
    x = SPACE.encode(arch)
    if x[0] == 0 and x[5] == 0:
        return None  # a failed trial
    return float(x @ WEIGHTS)


def by_string(arch: Hashable) -> tuple[str, Hashable]:
    return SPACE.to_string(arch), arch


STRATEGIES: dict[str, Callable[[int], Strategy]] = {
    "evolution": lambda seed: RegularizedEvolution(SPACE, population_size=6, sample_size=3, seed=seed),
    "evolution-annealed": lambda seed: AnnealedEvolution(SPACE, initial_mutations=3, rounds_per_step=4,
                                                         population_size=6, sample_size=3, seed=seed),
    "random": lambda seed: RandomSearch(SPACE, seed=seed),
}


def make_run(run_dir: Path, name: str = "evolution", seed: int = 0, max_trials: int = 40, config: Any = None,
             **kwargs: Any) -> SearchRun:
    kwargs.setdefault("identify", by_string)
    return SearchRun(run_dir, config or {**CONFIG, "strategy": name}, SPACE, STRATEGIES[name](seed), max_trials,
                     durable=False, **kwargs)


def crash(run: SearchRun) -> None:
    """The process dies: the journal is left as it is and the kernel drops the run's lock."""
    run.journal.close()
    run.lock.release()


class Dispatcher:
    """Keeps ``workers`` trials in flight and finishes the oldest; counts every dispatch per trial id."""

    def __init__(self, workers: int = 3) -> None:
        self.workers = workers
        self.dispatched: list[int] = []

    def drive(self, run: SearchRun, stop_after: int | None = None) -> bool:
        """Run to the end (True), or 'crash' after ``stop_after`` results with trials still in flight."""
        inflight: deque[tuple[int, Hashable]] = deque()
        finished = 0
        while True:
            while len(inflight) < self.workers:
                nxt = run.next_trial()
                if nxt is None:
                    break
                record, arch = nxt
                assert not record.done
                self.dispatched.append(record.trial)
                inflight.append((record.trial, arch))
            if stop_after is not None and finished >= stop_after:
                crash(run)  # the process dies: no final snapshot, trials in flight lost
                return False
            if not inflight:
                run.close()
                return True
            trial, arch = inflight.popleft()
            run.finish(trial, score_of(arch), metrics={"n": trial})
            finished += 1


def journal_events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / JOURNAL).read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "t"} for line in lines]


def uninterrupted(tmp_path: Path, name: str, **kwargs: Any) -> tuple[SearchRun, Dispatcher]:
    run = make_run(tmp_path / "full", name, **kwargs)
    dispatcher = Dispatcher()
    assert dispatcher.drive(run)
    return run, dispatcher


# ---------------------------------------------------------------------------------- resume
@pytest.mark.parametrize("mode", ["snapshot", "replay", "stale-snapshot"])
@pytest.mark.parametrize("name", ["evolution", "evolution-annealed", "random"])
def test_interrupted_run_resumes_exactly(tmp_path: Path, name: str, mode: str) -> None:
    full, _ = uninterrupted(tmp_path, name)
    snapshot_every = 7 if mode == "stale-snapshot" else 1
    run_dir = tmp_path / "interrupted"
    dispatcher = Dispatcher()
    for stop in (9, 17):  # two crashes
        run = make_run(run_dir, name, snapshot_every=snapshot_every)
        assert not dispatcher.drive(run, stop_after=stop)
        pending = sorted(t for t, r in run.records.items() if not r.done)
        assert len(pending) == 3
        if mode == "replay":
            (run_dir / STATE).unlink()
        elif mode == "stale-snapshot":
            assert json.loads((run_dir / STATE).read_text())["journal_lines"] < len(journal_events(run_dir))

        resumed = make_run(run_dir, name, snapshot_every=snapshot_every)
        assert resumed.resumed
        assert list(resumed.redispatch) == pending
        assert resumed.num_done == len(run.records) - 3
        assert {t: r.status for t, r in resumed.records.items()} == {t: r.status for t, r in run.records.items()}
        assert resumed.strategy.state_dict() == run.strategy.state_dict()
        # the pending trials are dispatched first, under their original ids and architectures
        for trial in pending:
            record, arch = resumed.next_trial()
            assert record.trial == trial and arch == SPACE.from_json(run.records[trial].arch)
        crash(resumed)
    final = make_run(run_dir, name, snapshot_every=snapshot_every)
    before = len(journal_events(run_dir))
    assert dispatcher.drive(final)

    # nothing finished ran twice; only the trials in flight at a crash were dispatched again
    counts = Counter(dispatcher.dispatched)
    trained = sorted(t for t, r in final.records.items() if r.status != "cached")  # cached: never dispatched
    assert sorted(counts) == trained and sorted(counts.values()) == [1] * (len(trained) - 6) + [2] * 6
    assert len(final.records) == final.max_trials == 40 and final.finished
    events = journal_events(run_dir)
    assert len(events) > before
    assert Counter(e["trial"] for e in events if e["event"] == "result") == Counter(range(40))
    # identical to the uninterrupted run with the same seed
    assert events == journal_events(tmp_path / "full")
    assert final.strategy.state_dict() == full.strategy.state_dict()
    assert final.best.trial == full.best.trial and final.best.score == full.best.score


def test_snapshot_ahead_of_the_journal_is_ignored(tmp_path: Path) -> None:
    # a non-durable journal can lose its last lines in a crash while state.json survives
    uninterrupted(tmp_path, "evolution")
    run_dir = tmp_path / "lost"
    assert not Dispatcher().drive(make_run(run_dir), stop_after=15)
    lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
    (run_dir / JOURNAL).write_text("".join(lines[:-4]))
    assert json.loads((run_dir / STATE).read_text())["journal_lines"] > len(lines) - 4
    assert Dispatcher().drive(make_run(run_dir))
    assert journal_events(run_dir) == journal_events(tmp_path / "full")


def test_dispatches_after_a_crash_are_only_the_lost_ones(tmp_path: Path) -> None:
    run = make_run(tmp_path, max_trials=20, dedup=False)
    first = Dispatcher()
    assert not first.drive(run, stop_after=5)
    assert first.dispatched == list(range(8))  # 5 finished, 3 in flight
    second = Dispatcher()
    assert second.drive(make_run(tmp_path, max_trials=20, dedup=False))
    assert second.dispatched == list(range(5, 20))
    finished = make_run(tmp_path, max_trials=20, dedup=False)
    assert finished.finished and finished.next_trial() is None and not finished.redispatch


def test_resume_of_a_finished_run_changes_nothing(tmp_path: Path) -> None:
    full, _ = uninterrupted(tmp_path, "evolution")
    before = (tmp_path / "full" / JOURNAL).read_bytes()
    again = make_run(tmp_path / "full")
    assert again.finished and again.next_trial() is None
    again.close()
    assert (tmp_path / "full" / JOURNAL).read_bytes() == before
    assert [r.trial for r in again.leaderboard(5)] == [r.trial for r in full.leaderboard(5)]


def test_diverging_replay_raises(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert not Dispatcher().drive(run, stop_after=12)
    (tmp_path / STATE).unlink()  # full replay from trial 0
    # same stored config, but the strategy now draws differently (e.g. the code's defaults changed)
    with pytest.raises(ResumeError, match="diverged at trial 0"):
        make_run(tmp_path, seed=1)


def test_snapshot_restores_the_strategy_state(tmp_path: Path) -> None:
    # with a snapshot covering the journal the strategy's state (RNG included) comes from it
    run = make_run(tmp_path)
    assert not Dispatcher().drive(run, stop_after=12)
    resumed = make_run(tmp_path, seed=1)
    assert resumed.strategy.state_dict() == run.strategy.state_dict()


def test_tampered_journal_raises(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    assert not Dispatcher().drive(run, stop_after=4)
    (tmp_path / STATE).unlink()
    lines = (tmp_path / JOURNAL).read_text().splitlines()
    event = json.loads(lines[2])
    assert event["event"] == "propose"
    encoding = event["arch"]["encoding"]
    first = next(iter(encoding))
    encoding[first] = (encoding[first] + 1) % 5
    lines[2] = json.dumps(event)
    (tmp_path / JOURNAL).write_text("\n".join(lines) + "\n")
    with pytest.raises(ResumeError):
        make_run(tmp_path)


def test_different_config_refused(tmp_path: Path) -> None:
    make_run(tmp_path).close()
    with pytest.raises(ConfigMismatch, match="seed: 0 -> 1"):
        make_run(tmp_path, config={**CONFIG, "seed": 1})
    with pytest.raises(ConfigMismatch, match=r"trials: 40 -> 30 \(a run's trials can grow, never shrink\)"):
        make_run(tmp_path, config={**CONFIG, "trials": 30}, max_trials=30)
    grown = make_run(tmp_path, config={**CONFIG, "trials": 50}, max_trials=50)  # a larger budget extends the run
    grown.close()
    assert json.loads((tmp_path / "config.json").read_text())["trials"] == 50


def test_torn_journal_line_resumes(tmp_path: Path) -> None:
    uninterrupted(tmp_path, "evolution")
    run_dir = tmp_path / "torn"
    run = make_run(run_dir)
    assert not Dispatcher().drive(run, stop_after=10)
    with (run_dir / JOURNAL).open("a") as f:
        f.write('{"event":"result","trial":10,"sta')  # died mid-write
    (run_dir / STATE).unlink()
    assert Dispatcher().drive(make_run(run_dir))
    assert journal_events(run_dir) == journal_events(tmp_path / "full")


# ---------------------------------------------------------------------------------- budget, dedup, failures
def test_budget_counts_every_proposal(tmp_path: Path) -> None:
    run = make_run(tmp_path, max_trials=7)
    handed = []
    while (nxt := run.next_trial()) is not None:
        handed.append(nxt[0].trial)
    assert handed == list(range(7)) and run.num_proposed == 7 and not run.finished
    for trial in handed:
        run.finish(trial, 1.0)
    assert run.finished and run.num_done == 7
    with pytest.raises(ValueError):
        make_run(tmp_path / "zero", max_trials=0)


def test_dedup_finishes_repeats_as_cached_without_dispatch(tmp_path: Path) -> None:
    def coarse(arch: Hashable) -> tuple[str, Hashable]:
        return arch[0], arch  # only 5 keys: repeats are certain

    run = make_run(tmp_path, "random", max_trials=25, identify=coarse)
    dispatched: list[int] = []
    scores: dict[str, float | None] = {"none": None}  # failures are cached too
    while (nxt := run.next_trial()) is not None:
        record, arch = nxt
        assert record.hash not in {run.records[t].hash for t in dispatched}  # never handed out again
        dispatched.append(record.trial)
        run.finish(record.trial, scores.get(arch[0], float(len(dispatched))))
    assert len(run.records) == 25 and run.finished
    cached = [r for r in run.records.values() if r.status == "cached"]
    assert len(dispatched) == len({r.hash for r in run.records.values()}) <= 5
    assert len(cached) == 25 - len(dispatched) > 0
    first_of = {run.records[t].hash: run.records[t] for t in dispatched}
    for r in cached:
        earlier = first_of[r.hash]
        assert r.score == earlier.score and f"trial {earlier.trial}" in r.reason
    assert run.strategy.num_told == 25  # cached results are told too
    failed = sum(r.score is None for r in run.records.values())
    assert run.strategy.num_failed == failed == run.num_failed
    assert run.leaderboard()[0].status == "ok"  # cached duplicates do not crowd the leaderboard
    assert len(run.leaderboard(25)) == sum(r.status == "ok" for r in run.records.values())
    events = journal_events(tmp_path)
    assert sum(e["event"] == "result" and e["status"] == "cached" for e in events) == len(cached)

    plain = make_run(tmp_path / "nodedup", "random", max_trials=25, identify=coarse, dedup=False)
    count = 0
    while (nxt := plain.next_trial()) is not None:
        plain.finish(nxt[0].trial, 1.0)
        count += 1
    assert count == 25


def test_dedup_survives_resume(tmp_path: Path) -> None:
    def coarse(arch: Hashable) -> tuple[str, Hashable]:
        return arch[0], arch

    run = make_run(tmp_path, "random", max_trials=30, identify=coarse)
    for _ in range(4):
        record, _arch = run.next_trial()
        run.finish(record.trial, 1.0)
    seen = {r.hash for r in run.records.values() if r.status == "ok"}
    crash(run)
    resumed = make_run(tmp_path, "random", max_trials=30, identify=coarse)
    while (nxt := resumed.next_trial()) is not None:
        assert nxt[0].hash not in seen
        seen.add(nxt[0].hash)
        resumed.finish(nxt[0].trial, 2.0)


def test_infeasible_trials_fail_without_dispatch(tmp_path: Path) -> None:
    def feasibility(arch: Hashable) -> str | None:
        return "too many params" if arch[3] == "nor_conv_3x3" else None

    run = make_run(tmp_path, max_trials=40, feasibility=feasibility)
    while (nxt := run.next_trial()) is not None:
        assert nxt[1][3] != "nor_conv_3x3"
        run.finish(nxt[0].trial, 1.0)
    infeasible = [r for r in run.records.values() if r.status == "failed"]
    assert infeasible and all(r.reason == "too many params" and r.score is None for r in infeasible)
    assert all(SPACE.from_json(r.arch)[3] == "nor_conv_3x3" for r in infeasible)
    assert run.strategy.num_failed == len(infeasible) == run.num_failed
    assert all(arch[3] != "nor_conv_3x3" for arch, _ in run.strategy.population)


@pytest.mark.parametrize("bad", [None, float("nan"), float("inf")])
def test_failed_results_are_told_as_none(tmp_path: Path, bad: float | None) -> None:
    run = make_run(tmp_path)
    record, _ = run.next_trial()
    run.finish(record.trial, bad, metrics={"error": "loss diverged"})
    assert record.status == "failed" and record.score is None and record.reason == "no finite score"
    assert run.strategy.num_failed == 1 and not run.strategy.population and run.num_failed == 1
    raw = (tmp_path / JOURNAL).read_text()
    assert "NaN" not in raw and "Infinity" not in raw
    assert journal_events(tmp_path)[-1] == {"event": "result", "trial": 0, "status": "failed", "score": None,
                                            "reason": "no finite score", "metrics": {"error": "loss diverged"}}
    with pytest.raises(KeyError):
        run.finish(record.trial, 1.0)
    explicit = run.next_trial()[0]
    run.finish(explicit.trial, None, status="failed", reason="out of memory")
    assert explicit.reason == "out of memory"
    run.close()
    resumed = make_run(tmp_path)
    assert resumed.records[0].status == "failed" and resumed.records[1].reason == "out of memory"
    assert resumed.strategy.num_failed == 2


def test_best_survives_a_zero_score(tmp_path: Path) -> None:
    # scores may be 0 or negative (accuracy minus penalties): a best of 0.0 must not be overtaken by -1.0
    run = make_run(tmp_path, "random", dedup=False)
    for score in (0.0, -1.0, -0.5, None):
        run.finish(run.next_trial()[0].trial, score)
    assert run.best.trial == 0 and run.best.score == 0.0
    run.close()
    assert make_run(tmp_path, "random", dedup=False).best.trial == 0  # also after a replay


def test_default_identity_is_the_canonical_graph_hash(tmp_path: Path) -> None:
    run = SearchRun(tmp_path, CONFIG, SPACE, RandomSearch(SPACE, seed=0), 2, durable=False)
    record, graph = run.next_trial()
    arch = SPACE.from_json(record.arch)
    assert record.hash == SPACE.to_graph(arch).canonical_hash() == graph.canonical_hash()


# ---------------------------------------------------------------------------------- every query counts
def coarse_key(arch: Hashable) -> tuple[str, Hashable]:
    return arch[0], arch  # 5 keys for 15,625 members: distinct members share a "network"


def test_an_in_flight_duplicate_waits_and_gets_the_result(tmp_path: Path) -> None:
    run = make_run(tmp_path, "random", max_trials=12, identify=coarse_key)
    handed: list[tuple[int, str]] = []
    while (nxt := run.next_trial()) is not None:  # everything in flight at once: nothing finished yet
        handed.append((nxt[0].trial, nxt[0].hash))
    hashes = [h for _, h in handed]
    assert len(hashes) == len(set(hashes)) <= 5, "a hash being evaluated was dispatched again"
    waiting = [t for t, r in run.records.items() if not r.done and t not in dict(handed)]
    assert len(handed) + len(waiting) == 12 and waiting
    first, key = handed[0]
    parked = list(run.waiting.get(key, []))
    run.finish(first, 7.0, metrics={"val_acc": 0.7})
    for trial in parked:  # answered the moment the original ended
        r = run.records[trial]
        assert r.status == "cached" and r.score == 7.0 and f"trial {first}" in r.reason
    for trial, _ in handed[1:]:
        run.finish(trial, 1.0)
    assert run.finished and run.num_done == 12 and run.strategy.num_told == 12


def test_in_flight_duplicates_survive_a_crash(tmp_path: Path) -> None:
    run = make_run(tmp_path, "random", max_trials=10, identify=coarse_key)
    handed = []
    while (nxt := run.next_trial()) is not None:
        handed.append(nxt[0].trial)
    crash(run)  # every trial in flight, the duplicates parked
    resumed = make_run(tmp_path, "random", max_trials=10, identify=coarse_key)
    again = []
    while (nxt := resumed.next_trial()) is not None:
        again.append(nxt[0].trial)
    assert again == handed  # the same originals run again; their duplicates wait again
    for trial in again:
        resumed.finish(trial, float(trial))
    assert resumed.finished and all(r.done for r in resumed.records.values())
    assert {r.status for r in resumed.records.values()} <= {"ok", "cached"}


def test_early_stopped_results_are_journaled_told_and_replayed(tmp_path: Path) -> None:
    run = make_run(tmp_path, "evolution", max_trials=8, identify=by_string)
    trials = [run.next_trial()[0].trial for _ in range(4)]
    run.finish(trials[0], 0.9, metrics={"epochs_run": 3})
    run.finish(trials[1], 0.95, metrics={"epochs_run": 1}, budget=1)  # stopped early: higher, not final
    run.finish(trials[2], None, budget=2)  # a failure is a failure, whatever the budget
    assert run.best.trial == trials[0] and [r.trial for r in run.leaderboard()] == [trials[0], trials[1]]
    assert run.strategy.num_partial == 1 and run.strategy.best[1] == 0.9
    assert all(arch != run.records[trials[1]].arch for arch, _ in
               [(SPACE.to_json(a), s) for a, s in run.strategy.population])  # never in the population
    events = [e for e in journal_events(tmp_path) if e["event"] == "result"]
    assert [e.get("budget") for e in events] == [None, 1, None]
    crash(run)
    (tmp_path / STATE).unlink()  # replay the journal from the start
    resumed = make_run(tmp_path, "evolution", max_trials=8, identify=by_string)
    assert resumed.strategy.num_partial == 1 and resumed.records[trials[1]].budget == 1
    assert resumed.best.trial == trials[0]


# ---------------------------------------------------------------------------------- integrity and one writer
def damage(line: bytes) -> bytes:
    """One corrupted byte pattern per line (the issue's repro: an event name no longer parses)."""
    if b'"event":"result"' in line:
        return line.replace(b'"event":"result"', b'"event":"res#ult"')
    return line[: len(line) // 2] + b"\n"  # a propose line cut in half (still newline-terminated)


def test_a_damaged_line_at_any_position_is_refused_then_repaired(tmp_path: Path) -> None:
    from nas.journal import JournalDamaged
    from nas.rundir import RunView

    source = tmp_path / "source"
    assert Dispatcher().drive(make_run(source, "random", max_trials=8))
    lines = (source / JOURNAL).read_bytes().splitlines(keepends=True)
    original = [e for e in journal_events(source)]
    for position in range(len(lines)):
        run_dir = tmp_path / f"damaged_{position}"
        run_dir.mkdir()
        (run_dir / "config.json").write_bytes((source / "config.json").read_bytes())
        (run_dir / JOURNAL).write_bytes(b"".join([*lines[:position], damage(lines[position]), *lines[position + 1:]]))
        for reader in (lambda d=run_dir: make_run(d, "random", max_trials=8), lambda d=run_dir: RunView(d)):
            with pytest.raises(JournalDamaged) as err:
                reader()
            assert err.value.line == position + 1 and "nas repair" in str(err.value)
        assert (run_dir / JOURNAL).read_bytes() != b"".join(lines)  # nothing was truncated or rewritten
        report = repair_journal(run_dir)
        assert report.damaged == [position + 1]
        dispatcher = Dispatcher()
        resumed = make_run(run_dir, "random", max_trials=8)
        lost_result = original[position]["event"] == "result"
        assert dispatcher.drive(resumed)
        events = journal_events(run_dir)
        results = Counter(e["trial"] for e in events if e["event"] == "result")
        assert all(n == 1 for n in results.values()) and len(results) == 8, f"position {position}: {results}"
        if lost_result:  # only that trial is evaluated again; every other result is kept
            assert dispatcher.dispatched == [original[position]["trial"]]
            kept = [e for e in original if e != original[position]]
            assert events[: len(kept)] == kept
        else:  # a lost proposal: the trials from it on are proposed anew, earlier results are kept
            first_lost = original[position]["trial"]
            assert all(t >= first_lost for t in dispatcher.dispatched)


def test_a_second_writer_is_refused_and_a_crashed_one_is_not(tmp_path: Path) -> None:
    from nas.rundir import RunInUse

    first = make_run(tmp_path, "random", max_trials=4)
    with pytest.raises(RunInUse, match=r"is in use by PID \d+ on "):
        make_run(tmp_path, "random", max_trials=4)
    assert not (tmp_path / JOURNAL).exists()  # the refused writer wrote nothing
    first.close()
    second = make_run(tmp_path, "random", max_trials=4)  # released at close
    crash(second)  # the kernel drops a dead process's lock
    make_run(tmp_path, "random", max_trials=4).close()


def test_the_lock_is_released_when_the_config_is_refused(tmp_path: Path) -> None:
    make_run(tmp_path, "random", max_trials=4).close()
    with pytest.raises(ConfigMismatch):
        make_run(tmp_path, "random", max_trials=4, config={**CONFIG, "strategy": "random", "seed": 5})
    make_run(tmp_path, "random", max_trials=4).close()
