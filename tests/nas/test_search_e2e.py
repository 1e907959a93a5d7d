"""End-to-end searches on Ray Tune (digits, tiny budgets): the `nas search` command, resuming after
the driver is SIGKILLed, failing / NaN / infeasible trials, and reproducible proposals.

CLI tests run `nas search` in a subprocess with their own Ray temp dir and auth token (see
conftest.py); the Python-API tests share one in-process local Ray (module fixture) to save its
start-up time, and replace the trial function where they need trials to fail on purpose.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ray_helpers import AUTH_TOKEN, Reaper, events, nas_command, ray_env, read_journal, run_nas

from nas.cli import build_parser, search_config_from_args
from nas.config import SearchConfig
from nas.engine import build_source, run_search
from nas.evaluators import Evaluator
from nas.progress import Progress
from nas.run import SearchRun

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FAST = ["--epochs", "1", "--data-limit", "300"]


# ---------------------------------------------------------------------------------------------- helpers
def search_config(*argv: str) -> SearchConfig:
    """The run configuration `nas search ARGV` would store."""
    return search_config_from_args(build_parser().parse_args(["search", *argv]))


def proposals(journal: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any], str]]:
    return [(e["trial"], e["arch"], e["hash"]) for e in events(journal, "propose")]


def results_by_trial(journal: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    results = events(journal, "result")
    counts = Counter(e["trial"] for e in results)
    assert all(n == 1 for n in counts.values()), f"trials with more than one result: {counts}"
    return {e["trial"]: e for e in results}


def driverless_run(config: SearchConfig, run_dir: Path, evaluator: Evaluator | None = None) -> SearchRun:
    """The SearchRun `nas search` would build for ``config`` (engine.build_source), to be driven by
    hand: no Ray, no training."""
    return build_source(config, run_dir, evaluator=evaluator).run


def reference_proposals(argv: list[str], run_dir: Path) -> list[tuple[int, dict[str, Any], str]]:
    """Proposals of an uninterrupted sequential run of `nas search ARGV` with the same seed, made by
    SearchRun alone (no Ray, no training; every trial scored 0.5).

    Valid as the proposals of any run of ARGV while the budget stays within evolution's random
    initialisation (trials <= population size): those proposals do not depend on scores or on
    how many trials were in flight."""
    config = search_config(*argv)
    assert config.strategy == "evolution" and config.trials <= config.strategy_options["population_size"]
    run = driverless_run(config, run_dir)
    while (nxt := run.next_trial()) is not None:
        run.finish(nxt[0].trial, 0.5)
    run.close()
    return proposals(read_journal(run_dir))


def leaderboard(stdout: str) -> list[dict[str, str]]:
    """The leaderboard table `nas search` prints: rows as {column: cell}."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(r"rank\s+trial\s+score\b", line)), None)
    assert start is not None, f"no leaderboard in the output:\n{stdout}"
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, line.split(), strict=False)))
    return rows


def quiet_run(config: SearchConfig, run_dir: Path, **kw: Any) -> SearchRun:
    # Tune pickles the searcher (and so the Progress): pytest's captured sys.stdout cannot be pickled
    execution = kw.pop("execution", None)
    if "max_concurrent" in kw:
        from nas.config import Execution

        execution = Execution(max_concurrent=kw.pop("max_concurrent"))
    if execution is not None:
        kw["execution"] = execution
    return run_search(config, run_dir, progress=Progress(config.trials, stream=io.StringIO(), quiet=True),
                      log=lambda line: None, **kw)


def reset_auth_state() -> None:
    """Make this process re-read RAY_AUTH_* from the environment (as Ray's own test utilities do)."""
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray (2 CPUs, no dashboard, token auth, private temp dir) in this process, shared by
    the Python-API tests; run_on_ray uses an already initialised Ray and leaves it running."""
    import ray

    temp_dir = Path(tempfile.mkdtemp(prefix="nasray-", dir="/tmp"))
    keys = ("RAY_TMPDIR", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.update(RAY_TMPDIR=str(temp_dir), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=AUTH_TOKEN,
                      RAY_USAGE_STATS_ENABLED="0")
    reaper = Reaper()
    reaper.track_temp_dir(temp_dir)
    assert not ray.is_initialized()
    reset_auth_state()  # this process may have read the auth settings already (importing ray does)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)
        yield
    finally:
        ray.shutdown()
        leftovers = reaper.kill_all(timeout=10)  # normally nothing: shutdown stops them
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_auth_state()
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not leftovers, f"Ray processes survived: {leftovers}"


# ---------------------------------------------------------------------------------------------- CLI
def test_search_end_to_end_then_rerun_runs_nothing(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", "--trials", "4", *FAST, "--seed", "0", "--run-dir", str(run_dir)]
    env = ray_env(ray_tmp)
    first = run_nas(argv, env)
    assert first.returncode == 0, first.stdout

    journal = read_journal(run_dir)
    assert [p[0] for p in proposals(journal)] == [0, 1, 2, 3]
    results = results_by_trial(journal)
    assert sorted(results) == [0, 1, 2, 3]
    for r in results.values():
        assert r["status"] == "ok", r
        assert math.isfinite(r["score"]) and 0 <= r["score"] <= 1
        m = r["metrics"]
        assert m["epochs_run"] == 1 and m["device"] == "cpu" and m["node"] and m["params"] > 0
        assert m["precision"] == "fp32"  # auto on CPU, journaled with the result
    for name in ("config.json", "state.json", "journal.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "progress.png").read_bytes().startswith(PNG_MAGIC)
    assert proposals(journal) == reference_proposals(argv[1:], tmp_path / "reference")  # same seed

    board = leaderboard(first.stdout)
    assert sorted(int(row["trial"]) for row in board) == [0, 1, 2, 3]
    best = max(results.values(), key=lambda r: (r["score"], -r["trial"]))
    assert int(board[0]["trial"]) == best["trial"] and float(board[0]["score"]) == pytest.approx(best["score"],
                                                                                                  abs=1e-4)

    before = (run_dir / "journal.jsonl").read_bytes()
    again = run_nas(argv, env)
    assert again.returncode == 0, again.stdout
    assert (run_dir / "journal.jsonl").read_bytes() == before, "the rerun of a finished search ran trials"
    assert leaderboard(again.stdout) == board


def test_sigkill_driver_mid_search_then_resume(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", "--trials", "8", *FAST, "--seed", "0", "--run-dir", str(run_dir)]
    env = ray_env(ray_tmp)
    log = tmp_path / "killed-driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(nas_command(*argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    reaper = Reaper()
    reaper.track_group(driver)
    reaper.track_temp_dir(ray_tmp)
    try:
        deadline = time.monotonic() + 180
        while True:
            reaper.refresh()  # the driver's Ray processes (gcs_server, raylet, workers, ...) as they appear
            journal = read_journal(run_dir)
            done = {e["trial"] for e in events(journal, "result")}
            pending = {e["trial"] for e in events(journal, "propose")} - done
            if 2 <= len(done) < 8 and pending:
                break
            assert driver.poll() is None, \
                f"the search ended (rc {driver.returncode}) before it could be killed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no kill point within 180 s:\n{log.read_text()}"
            time.sleep(0.05)
        reaper.refresh()
        started = {p.name() for p in reaper.alive()}
        assert {"gcs_server", "raylet"} <= started, f"the driver's local Ray processes were not found: {started}"
        os.kill(driver.pid, signal.SIGKILL)
        survivors = reaper.kill_all()
        assert not survivors, f"processes of the killed search survived: {survivors}"
    finally:
        reaper.kill_all()

    killed = read_journal(run_dir)
    done_at_kill = {e["trial"] for e in events(killed, "result")}
    pending_at_kill = {e["trial"] for e in events(killed, "propose")} - done_at_kill
    assert 2 <= len(done_at_kill) < 8 and pending_at_kill

    resumed = run_nas(argv, env)
    assert resumed.returncode == 0, resumed.stdout
    journal = read_journal(run_dir)
    assert journal[:len(killed)] == killed, "resuming rewrote journal events"
    props = proposals(journal)
    assert sorted(p[0] for p in props) == list(range(8)), "a trial id was proposed twice or never"
    results = results_by_trial(journal)  # asserts: no trial with two results
    assert sorted(results) == list(range(8))
    assert all(r["status"] == "ok" for r in results.values()), results
    new = journal[len(killed):]
    assert not {e["trial"] for e in events(new, "propose")} & pending_at_kill, "pending trials got new ids"
    assert {e["trial"] for e in events(new, "result")} >= pending_at_kill, "pending trials were not re-run"
    assert props == reference_proposals(argv[1:], tmp_path / "reference"), "proposals differ from an uninterrupted run"


# ---------------------------------------------------------------------------------------------- failures
def test_nan_loss_fails_every_trial_and_the_search_finishes(tmp_path: Path, local_ray: None) -> None:
    config = search_config("--trials", "2", "--epochs", "1", "--data-limit", "200", "--lr", "1e30")
    run = quiet_run(config, tmp_path / "run")
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == [0, 1]
    for r in results.values():
        assert r["status"] == "failed" and r["score"] is None, r
        assert re.search(r"nan|non-finite", r["reason"], re.IGNORECASE), r["reason"]
        assert r["metrics"]["node"], r  # it ran on a worker
    assert run.num_done == 2 and run.num_failed == 2 and run.best is None and run.leaderboard() == []


def faulty_evaluator() -> Evaluator:
    """An evaluator that trains nothing: trial 1 raises, trial 2's trial process dies (a Tune-level
    error), trial 3 reports a NaN accuracy, trial 5 returns a NaN score; every other trial t
    succeeds with val_acc 0.1 + 0.05 t. (Nested so Ray pickles it by value: the worker processes
    cannot import this test module.)"""

    class Faulty(Evaluator):
        name = "faulty"

        def evaluate(self, graph: Any, trial: Any) -> Any:
            if trial.id == 1:
                raise RuntimeError("boom while training")
            if trial.id == 2:
                os._exit(3)  # the trial's worker process dies
            if trial.id == 3:
                trial.report(epoch=1, val_acc=float("nan"))
            if trial.id == 5:
                return float("nan")
            return {"val_acc": 0.1 + 0.05 * trial.id}

    return Faulty()


def test_failing_and_nan_trials_are_recorded_and_the_search_goes_on(tmp_path: Path, local_ray: None) -> None:
    config = search_config("--trials", "6", "--epochs", "1", "--data-limit", "100")
    run = quiet_run(config, tmp_path / "run", evaluator=faulty_evaluator())
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == list(range(6))
    failed = {t: r for t, r in results.items() if r["status"] == "failed"}
    assert sorted(failed) == [1, 2, 3, 5], results
    assert "RuntimeError: boom while training" in failed[1]["reason"]
    # trial 2's worker dies in every attempt: retried twice, then failed as infrastructure (not cached)
    assert "worker or node died" in failed[2]["reason"] and "3 attempt(s)" in failed[2]["reason"]
    assert failed[2].get("infrastructure") is True and "infrastructure" not in failed[1]
    retries = events(read_journal(tmp_path / "run"), "retry")
    assert [(e["trial"], e["attempt"]) for e in retries] == [(2, 1), (2, 2)]
    assert run.strategy.num_told == 6  # each trial told once
    assert re.search(r"nan|non-finite", failed[3]["reason"], re.IGNORECASE), failed[3]["reason"]
    assert re.search(r"nan|non-finite", failed[5]["reason"], re.IGNORECASE), failed[5]["reason"]
    assert all(r["score"] is None for r in failed.values())
    ok = {t: r for t, r in results.items() if t not in failed}
    for t, r in ok.items():
        assert r["status"] == "ok" and r["score"] == pytest.approx(0.1 + 0.05 * t), r
    assert sorted(ok) == [0, 4]
    assert run.best is not None and run.best.trial == 4 and run.best.score == pytest.approx(0.3)
    assert [r.trial for r in run.leaderboard()] == [4, 0]
    # both CPUs of the local Ray were used: a second trial was handed out before the first result
    kinds = [e["event"] for e in read_journal(tmp_path / "run")]
    assert kinds.index("result") >= 2, kinds


def dies_once_evaluator(marker: Path) -> Evaluator:
    """Trial 1's worker dies on its first attempt only (a lost node); every trial t scores 0.1 + 0.05 t."""

    class DiesOnce(Evaluator):
        name = "dies-once"

        def __init__(self) -> None:
            self.marker = str(marker)

        def evaluate(self, graph: Any, trial: Any) -> Any:
            if trial.id == 1 and not Path(self.marker).exists():
                Path(self.marker).write_text("died")
                os._exit(3)
            return {"val_acc": 0.1 + 0.05 * trial.id}

    return DiesOnce()


def test_a_trial_whose_worker_dies_is_retried_and_told_once(tmp_path: Path, local_ray: None) -> None:
    config = search_config("--trials", "3", "--epochs", "1", "--data-limit", "100")
    run = quiet_run(config, tmp_path / "run", evaluator=dies_once_evaluator(tmp_path / "died"))
    journal = read_journal(tmp_path / "run")
    results = results_by_trial(journal)
    assert (tmp_path / "died").exists() and sorted(results) == [0, 1, 2]
    assert all(r["status"] == "ok" for r in results.values()), results
    assert results[1]["score"] == pytest.approx(0.15)
    assert [(e["trial"], e["attempt"]) for e in events(journal, "retry")] == [(1, 1)]
    assert run.strategy.num_told == 3 and run.strategy.num_failed == 0


def stalls_evaluator() -> Evaluator:
    """Trial 0 hangs (a stalled data loader, a deadlocked collective); the others score at once."""

    class Stalls(Evaluator):
        name = "stalls"

        def evaluate(self, graph: Any, trial: Any) -> Any:
            if trial.id == 0:
                time.sleep(3600)
            return {"val_acc": 0.5}

    return Stalls()


def test_the_watchdog_ends_a_stalled_trial_and_records_it(tmp_path: Path, local_ray: None) -> None:
    from nas.config import Execution

    config = search_config("--trials", "3", "--epochs", "1", "--data-limit", "100")
    start = time.monotonic()
    run = quiet_run(config, tmp_path / "run", evaluator=stalls_evaluator(), execution=Execution(trial_timeout=15))
    assert time.monotonic() - start < 120
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert results[0]["status"] == "failed" and "--trial-timeout 15 s" in results[0]["reason"], results[0]
    assert [results[t]["status"] for t in (1, 2)] == ["ok", "ok"]
    assert run.num_done == 3


def test_trial_capacity_counts_what_the_cluster_fits(local_ray: None) -> None:
    from nas.ray_backend import check_resources, trial_capacity

    assert trial_capacity(1, 0) == 2 and trial_capacity(0.5, 0) == 4 and trial_capacity(3, 0) == 1
    assert trial_capacity(1, 1) == 1  # no GPU in the cluster: at least one (Tune then reports it pending)
    # searches on 2 Ray Train workers each: the workers of one search are what must fit
    assert trial_capacity(1, 0, workers=2) == 1 and trial_capacity(0.5, 0, workers=2) == 2
    check_resources(1, 0, workers=2)
    with pytest.raises(ValueError, match="cannot place a search's 3 workers"):
        check_resources(1, 0, workers=3)


def test_params_limit_fails_infeasible_trials_untrained(tmp_path: Path, local_ray: None) -> None:
    config = search_config("--trials", "4", "--epochs", "1", "--data-limit", "200", "--max-params", "20000")
    run = quiet_run(config, tmp_path / "run")
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == [0, 1, 2, 3]
    infeasible = [r for r in results.values() if r["status"] == "failed"]
    trained = [r for r in results.values() if r["status"] == "ok"]
    # seed 0 proposes three architectures over the limit and one (about 17k params) under it
    assert infeasible and trained, results
    for r in infeasible:
        assert re.fullmatch(r"params [\d,]+ > limit 20,000", r["reason"]), r["reason"]
        assert r["metrics"] == {} and r["score"] is None, r  # never dispatched, never trained
    for r in trained:
        assert r["metrics"]["params"] <= 20_000 and r["metrics"]["epochs_run"] == 1, r
    assert run.best is not None and run.best.status == "ok"


# ---------------------------------------------------------------------------------------------- shared data
def memory_probe_evaluator(data: Any, meeting: Path) -> Evaluator:
    """The built-in trainer holding ``data``, whose trials measure, instead of training, what getting the
    shared dataset costs them: each reads every byte of it, waits until the other trial has too
    (so both map its pages), measures, and waits again before returning. Reported: the process's
    USS / PSS / RSS before and after getting the data, and the private and shared bytes of the
    mappings that hold the dataset's tensors (/proc/self/smaps). Nested: pickled by value."""
    from nas.evaluators import Trainer

    class MemoryProbe(Trainer):
        def evaluate(self, graph: Any, trial: Any) -> Any:
            import psutil  # Ray's bundled copy: importable in a worker, where ray is imported

            def meet(stage: str) -> bool:
                (meeting / f"{stage}-{trial.id}").write_text("")
                deadline = time.monotonic() + 90
                while len(list(meeting.glob(f"{stage}-*"))) < 2:
                    if time.monotonic() > deadline:
                        return False
                    time.sleep(0.05)
                return True

            def smaps_bytes(tensors: list[Any]) -> dict[str, int]:
                """Private and shared bytes of the mappings holding ``tensors``' memory."""
                spans = [(t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in tensors]
                out = {"private": 0, "shared": 0}
                inside = False
                for line in Path("/proc/self/smaps").read_text().splitlines():
                    head = line.split()[0]
                    if "-" in head and not head.endswith(":"):
                        lo, hi = (int(v, 16) for v in head.split("-"))
                        inside = any(a < hi and lo < b for a, b in spans)
                    elif inside and head in ("Private_Clean:", "Private_Dirty:", "Shared_Clean:", "Shared_Dirty:"):
                        out["private" if head.startswith("Private") else "shared"] += int(line.split()[1]) * 1024
                return out

            process = psutil.Process()
            before = process.memory_full_info()
            data = self.trial_data()
            checksum = sum(int(t.sum()) for t in (data.train_x, data.val_x))  # touches every page
            together = meet("read")
            after = process.memory_full_info()
            mapped = smaps_bytes([data.train_x, data.val_x])
            meet("measured")
            return {"val_acc": 0.5, "together": float(together), "checksum": float(checksum),
                    "data_bytes": float(data.nbytes), "mapped_private": float(mapped["private"]),
                    "mapped_shared": float(mapped["shared"]),
                    **{f"{k}_{when}": float(getattr(m, k)) for when, m in (("before", before), ("after", after))
                       for k in ("uss", "pss", "rss")}}

    probe = MemoryProbe()
    probe.data = data
    return probe


def test_two_concurrent_trials_share_one_copy_of_the_data(tmp_path: Path, local_ray: None) -> None:
    """One copy of the dataset per node: two trials running at once on the 2 CPUs each read all of a
    67 MB uint8 dataset, which costs each of them far less private memory than the data's size."""
    import numpy as np
    import torch

    from nas.tensor_dataset import TensorDataset

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(22_000, 3, 32, 32), dtype=np.uint8)  # 67.6 MB
    labels = torch.from_numpy(rng.integers(0, 10, size=22_000))
    data = TensorDataset("noise", torch.from_numpy(images[:20_000]), labels[:20_000], torch.from_numpy(images[20_000:]),
                         labels[20_000:], 10, mean=(0.5,) * 3, std=(0.29,) * 3, max_pixel_value=255.0, raw=True)
    size = data.nbytes
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    config = search_config("--trials", "2", "--epochs", "1")
    quiet_run(config, tmp_path / "run", evaluator=memory_probe_evaluator(data, meeting), max_concurrent=2)
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == [0, 1] and all(r["status"] == "ok" for r in results.values()), results
    expected = float(sum(int(t.sum()) for t in (data.train_x, data.val_x)))
    mib = {}
    for trial, r in results.items():
        m = r["metrics"]
        assert m["together"] == 1.0, f"the two trials did not run at the same time: {m}"
        assert m["checksum"] == expected and m["data_bytes"] == size
        mib[trial] = {k: round(m[k] / 2**20, 1) for k in m if k.endswith(("_before", "_after")) or "mapped" in k}
        # the data lies in memory both trials map: shared pages, not a private copy
        assert m["mapped_shared"] > 0.9 * size and m["mapped_private"] < 0.1 * size, mib
        assert m["uss_after"] - m["uss_before"] < 0.25 * size, mib  # a private copy would cost >= size
    print(f"data {size / 2**20:.1f} MiB; per trial (MiB): {mib}")


# ---------------------------------------------------------------------------------------------- reproducibility
def arch_score(arch: dict[str, Any]) -> float:
    """A deterministic stand-in for training: a hash of the architecture's encoding, in [0, 1)."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(arch, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2**32


def arch_scored_evaluator() -> Evaluator:
    """An evaluator that trains nothing and returns ``arch_score`` of its architecture (the same code:
    nested, so Ray pickles it by value; workers cannot import this test module)."""

    class ArchScored(Evaluator):
        name = "arch-scored"

        def evaluate(self, graph: Any, trial: Any) -> float:
            import hashlib
            import json

            digest = hashlib.sha256(json.dumps(trial.arch, sort_keys=True).encode()).digest()
            return int.from_bytes(digest[:4], "big") / 2**32

    return ArchScored()


def replay(config: SearchConfig, run_dir: Path) -> list[dict[str, Any]]:
    """A whole search driven by SearchRun alone (no Ray), one trial at a time, scored by arch_score
    (with the same space as a run with arch_scored_evaluator: its default input shape)."""
    run = driverless_run(config, run_dir, arch_scored_evaluator())
    while (nxt := run.next_trial()) is not None:
        run.finish(nxt[0].trial, arch_score(nxt[0].arch))
    run.close()
    return read_journal(run_dir)


def test_same_seed_gives_the_same_proposals(tmp_path: Path, local_ray: None) -> None:
    """A search on Ray proposes exactly what a sequential replay with the same seed and scores does,
    past evolution's random initialisation (population 3, 7 trials), where proposals depend on the
    scores; one trial at a time makes the order of results a function of the seed."""
    argv = ["--trials", "7", "--population-size", "3", "--sample-size", "2", "--data-limit", "100"]
    config = search_config(*argv, "--seed", "0")
    quiet_run(config, tmp_path / "ray", max_concurrent=1, evaluator=arch_scored_evaluator())
    on_ray = read_journal(tmp_path / "ray")
    replayed = replay(config, tmp_path / "replay")
    assert proposals(on_ray) == proposals(replayed)
    assert [(e["trial"], e["status"], e["score"]) for e in events(on_ray, "result")] == \
        [(e["trial"], e["status"], e["score"]) for e in events(replayed, "result")]
    # trials 3.. are mutants (one variable changed from an earlier proposal): the scores mattered
    encodings = [p[1]["encoding"] for p in proposals(on_ray)]
    assert len(encodings) == 7
    for i in range(3, 7):
        assert min(sum(encodings[i][k] != e[k] for k in e) for e in encodings[:i]) <= 1, i
    other = replay(search_config(*argv, "--seed", "1"), tmp_path / "seed1")
    assert proposals(other) != proposals(on_ray), "seed 1 proposed what seed 0 did"


# ---------------------------------------------------------------------------------------------- GPU
@pytest.mark.gpu
def test_fractional_gpu_trials_train_on_cuda(tmp_path: Path, ray_tmp: Path) -> None:
    import torch

    run_dir = tmp_path / "run"
    argv = ["search", "--gpus-per-trial", "0.5", "--trials", "2", "--epochs", "1", "--data-limit", "300",
            "--run-dir", str(run_dir)]
    result = run_nas(argv, ray_env(ray_tmp))
    assert result.returncode == 0, result.stdout
    results = results_by_trial(read_journal(run_dir))
    assert sorted(results) == [0, 1]
    for r in results.values():
        assert r["status"] == "ok", r
        assert r["metrics"]["device"].startswith("cuda"), r
        if torch.cuda.is_bf16_supported(including_emulation=False):
            assert r["metrics"]["precision"] == "bf16", r  # auto on a GPU with bf16


def test_asha_scheduler_runs_trials_and_records_how_far_each_got(tmp_path: Path, local_ray: None) -> None:
    from ray import tune

    ended: list[int] = []

    class Completions(tune.Callback):  # a user's Tune callback, passed through to the Tuner
        def on_trial_complete(self, iteration: int, trials: Any, trial: Any, **info: Any) -> None:
            ended.append(int(trial.config["trial"]))

    config = search_config("--trials", "6", "--epochs", "3", "--data-limit", "200", "--scheduler", "asha")
    run = quiet_run(config, tmp_path / "run", callbacks=[Completions()], max_concurrent=1)
    assert sorted(ended) == list(range(6))
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == list(range(6)) and run.num_done == 6
    stopped = 0
    for r in results.values():
        assert r["status"] in ("ok", "cached"), r
        assert 1 <= r["metrics"]["epochs_run"] <= 3  # ASHA may stop a trial at its 1-epoch rung
        assert r["score"] == pytest.approx(r["metrics"]["val_acc"])
        if r["status"] == "ok" and r["metrics"]["epochs_run"] < 3:  # stopped early: journaled with its budget
            assert r["budget"] == r["metrics"]["epochs_run"], r
            stopped += 1
        elif r["status"] == "ok":
            assert "budget" not in r, r
    # one trial at a time: the later trials meet full rungs, and ASHA stops some of them
    assert stopped >= 1
    assert run.strategy.num_partial == sum("budget" in r for r in results.values())


# ---------------------------------------------------------------------------------------------- objectives
def test_multi_objective_search_records_each_objective_and_the_front(tmp_path: Path, local_ray: None) -> None:
    """Accuracy against the measured latency and parameters: every result carries the three values
    (latency measured on the trial's device under the recorded protocol) and the run has a front."""
    from nas.objective import LATENCY_PROTOCOL
    from nas.pareto import dominates
    from nas.rundir import RunView

    config = search_config("--trials", "4", *FAST, "--objectives", "val_acc,latency_ms,params")
    run = quiet_run(config, tmp_path / "run")
    assert run.strategy.num_objectives == 3
    results = results_by_trial(read_journal(tmp_path / "run"))
    assert sorted(results) == [0, 1, 2, 3]
    for r in results.values():
        assert r["status"] == "ok", r
        m = r["metrics"]
        assert r["values"] == [m["val_acc"], m["latency_ms"], m["params"]] and m["latency_ms"] > 0
        assert m["latency_protocol"] == LATENCY_PROTOCOL and r["score"] == m["val_acc"]
    view = RunView(tmp_path / "run")
    signed = {t: (v[0], -v[1], -v[2]) for t, v in ((t, r["values"]) for t, r in results.items())}
    front = {r.trial for r in view.pareto_front()}
    assert front and front == {t for t, p in signed.items() if not any(dominates(q, p) for q in signed.values())}


@pytest.mark.parametrize("returned", ["a mapping without the objective", "one number"])
def test_an_evaluator_that_does_not_report_an_objective_stops_the_search(tmp_path: Path, local_ray: None,
                                                                        returned: str) -> None:
    """Every trial would fail the same way: the search stops at the first with one clear error and
    records nothing for it (a rerun with a fixed evaluator trains it)."""
    import nas
    from search_spaces.errors import InputError

    as_number = returned == "one number"

    def evaluate(model: Any, trial: Any) -> Any:
        return 0.5 if as_number else {"val_acc": 0.5}

    exp = nas.Experiment(evaluator=evaluate, objectives=["val_acc", "energy:min"], trials=3, run_dir=tmp_path / "run",
                         max_concurrent=1)
    with pytest.raises(InputError, match="the search stopped") as err:
        exp.run()
    assert ("one number" in str(err.value)) if as_number else ("'energy'" in str(err.value))
    assert events(read_journal(tmp_path / "run"), "result") == []
