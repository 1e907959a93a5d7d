"""`nas search --strategy darts --num-workers 2`: one search on 2 Ray Train workers (gloo, CPU) is one
journaled trial and matches the same search on 1 worker; a worker's failure fails the search with its
reason and the run goes on; clusters that cannot place the workers and bad settings are one error line.
The exactness of the data-parallel arithmetic itself is tested without Ray in test_darts_distributed.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ray_helpers import Reaper, events, nas_command, ray_env, read_journal, run_nas

from nas.cli import main
from nas.darts.workers import WorkersDied, failure_of
from nas.ray_backend import worker_slots
from nas.trainer import TrialFailed
from search_spaces.spaces.nb201 import NB201Space

# 60 digits: 48 for training, 24 + 24 for weights and alphas, 2 steps an epoch: few enough float32 steps
# that the two runs stay within ~1e-7 (over many steps this tiny near-chance search amplifies rounding
# differences chaotically, as float32 against float64 on one worker shows too)
TINY = ["--strategy", "darts", "--space", "nb201", "--epochs", "2", "--data-limit", "60", "--batch-size", "16",
        "--augment", "none", "--trials", "1"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and "Traceback" not in err, err
    return lines[0]


def epoch_results(run_dir: Path) -> list[dict[str, Any]]:
    """The trial's per-epoch reports as Tune recorded them."""
    (path,) = (run_dir / "tune" / "trials").glob("*/result.json")
    return [r for r in map(json.loads, path.read_text().splitlines()) if "epoch" in r]


def alpha_log(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "darts" / "seed_0" / "alphas.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """The same search on 1 and on 2 workers, through the CLI."""
    out = {}
    for workers in (1, 2):
        run_dir = tmp_path_factory.mktemp(f"workers{workers}") / "run"
        ray_tmp = tmp_path_factory.mktemp("ray")
        done = run_nas(["search", *TINY, "--num-workers", str(workers), "--run-dir", str(run_dir)], ray_env(ray_tmp),
                       timeout=400)
        assert done.returncode == 0, done.stdout
        out[workers] = run_dir
    return out


def test_two_workers_match_one_worker(runs: dict[int, Path]) -> None:
    one, two = runs[1], runs[2]
    results = [events(read_journal(r), "result") for r in (one, two)]
    assert [len(r) for r in results] == [1, 1] and all(r[0]["status"] == "ok" for r in results)
    proposals = [events(read_journal(r), "propose")[0]["arch"] for r in (one, two)]
    assert proposals[0] == proposals[1]
    metrics = [r[0]["metrics"] for r in results]
    for key in ("val_acc", "train_acc", "epochs_run", "returned_epoch", "skip_connects", "device"):
        assert metrics[0][key] == metrics[1][key], key
    assert metrics[1]["device"] == "cpu" and metrics[1]["epochs_run"] == 2
    logs = [alpha_log(r) for r in (one, two)]
    assert [e["epoch"] for e in logs[1]] == [1, 2]
    largest = 0.0
    for a, b in zip(logs[0], logs[1], strict=True):
        for name, rows in a["alphas"].items():
            for row_a, row_b in zip(rows, b["alphas"][name], strict=True):
                largest = max(largest, *(abs(x - y) for x, y in zip(row_a, row_b, strict=True)))
        assert a["arch"] == b["arch"]
    assert largest <= 2e-6, largest  # softmax(alpha) logged to 6 decimals
    assert logs[0][0]["alphas"] != logs[0][1]["alphas"]  # the alphas did move
    for a, b in zip(epoch_results(one), epoch_results(two), strict=True):
        for key in ("train_loss", "val_loss", "train_acc", "val_acc"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
    assert (two / "darts" / "seed_0" / "alphas.png").is_file()  # rank 0 wrote the log and its plot


def test_the_workers_run_is_resumable_and_shown(runs: dict[int, Path], tmp_path: Path, ray_tmp: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    two = runs[2]
    config = json.loads((two / "config.json").read_text())
    assert config["strategy_options"]["num_workers"] == 2
    assert "num_workers" not in json.loads((runs[1] / "config.json").read_text())["strategy_options"]
    before = (two / "journal.jsonl").read_bytes()
    again = run_nas(["search", *TINY, "--num-workers", "2", "--run-dir", str(two)], ray_env(ray_tmp), timeout=200)
    assert again.returncode == 0, again.stdout
    assert (two / "journal.jsonl").read_bytes() == before
    changed = run_nas(["search", *TINY, "--num-workers", "1", "--run-dir", str(two)], ray_env(ray_tmp), timeout=200)
    assert changed.returncode == 2 and "num_workers" in changed.stdout, changed.stdout
    assert main(["show", str(two)]) == 0
    assert "1/1 trials done" in capsys.readouterr().out
    arch = NB201Space().from_json(events(read_journal(two), "propose")[0]["arch"])
    assert len(arch) == 6


def test_a_failing_worker_fails_the_search_with_its_reason(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", *TINY, "--num-workers", "2", "--lr", "1e30", "--run-dir", str(run_dir)]
    done = run_nas(argv, ray_env(ray_tmp), timeout=300)
    assert done.returncode == 0, done.stdout
    failed = [json.loads(line) for line in (run_dir / "darts" / "failed.jsonl").read_text().splitlines()]
    assert [f["seed"] for f in failed] == [0]
    assert failed[0]["reason"].startswith("worker 0: non-finite"), failed
    assert not events(read_journal(run_dir), "result")


def test_a_cluster_that_cannot_place_the_workers_is_one_error(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    done = run_nas(["search", *TINY, "--num-workers", "3", "--cpus-per-trial", "64", "--run-dir", str(run_dir)],
                   ray_env(ray_tmp), timeout=120)
    assert done.returncode == 2, done.stdout
    assert "nas: error: the Ray cluster cannot place a search's 3 workers (--num-workers): each asks for 64 CPU" \
        in done.stdout and "fit 0" in done.stdout and "Traceback" not in done.stdout
    assert events(read_journal(run_dir), "result") == []


@pytest.mark.parametrize(("args", "message"), [
    (["--num-workers", "3", "--batch-size", "2"], "darts: batch_size (2) must be at least num_workers (3)"),
    (["--num-workers", "2", "--gpus-per-trial", "0.5"], "needs whole GPUs of its own"),
    (["--strategy", "evolution", "--num-workers", "2"], "has no option(s) ['num_workers']"),
])
def test_bad_worker_settings_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 args: list[str], message: str) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", "--strategy", "darts", "--space", "nb201", "--data-limit", "60", *args, "--run-dir",
            str(run_dir)]
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not run_dir.exists()
    with pytest.raises(SystemExit):
        main(["search", "--strategy", "darts", "--num-workers", "0"])
    assert "expected a positive integer, got '0'" in capsys.readouterr().err


def test_worker_slots_count_whole_workers_per_node() -> None:
    nodes = [{"CPU": 4.0, "GPU": 1.0}, {"CPU": 2.0}, {"CPU": 3.0, "GPU": 2.0}]
    assert worker_slots(nodes, 1.0, 0.0) == 9
    assert worker_slots(nodes, 2.0, 0.0) == 4  # 2 + 1 + 1: a worker never spans nodes
    assert worker_slots(nodes, 1.0, 1.0) == 3
    assert worker_slots(nodes, 0.1, 0.0) == 90  # no float shortfall (0.3 / 0.1 = 2.999...)


def test_worker_failures_become_the_search_failure() -> None:
    from ray.exceptions import ActorDiedError
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2.api.exceptions import PreemptionError

    nan = WorkerGroupError("...", {1: TrialFailed("non-finite weight-step loss"), 0: TrialFailed("non-finite x")})
    assert isinstance(failure_of(nan), TrialFailed) and failure_of(nan).reason == "worker 0: non-finite x"
    oom = failure_of(WorkerGroupError("...", {1: RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")}))
    assert isinstance(oom, TrialFailed) and oom.reason.startswith("worker 1: out of memory")
    died = failure_of(WorkerGroupError("...", {0: ActorDiedError()}))
    assert isinstance(died, WorkersDied) and "worker 0 of the data-parallel search died" in str(died)
    controller = failure_of(ControllerError(RuntimeError("placement failed")))
    assert isinstance(controller, TrialFailed)
    assert controller.reason == "Ray Train failed: RuntimeError: placement failed"
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:54183: Connection reset by peer")
    died_under = failure_of(WorkerGroupError("...", {0: gloo, 1: ActorDiedError()}))  # the survivor's error first
    assert isinstance(died_under, WorkersDied) and "worker 1 of the data-parallel search died" in str(died_under)
    survivor_only = failure_of(WorkerGroupError("...", {0: gloo}))  # the dead worker not reported at all
    assert isinstance(survivor_only, WorkersDied) and "worker 0 of the data-parallel search lost a peer" \
        in str(survivor_only)
    real = failure_of(WorkerGroupError("...", {0: TrialFailed("non-finite x"), 1: gloo}))  # a real error ends it
    assert isinstance(real, TrialFailed) and real.reason == "worker 0: non-finite x"
    preempted = failure_of(PreemptionError(SimpleNamespace(preempted_ranks=[1])))  # type: ignore[arg-type]
    assert isinstance(preempted, WorkersDied) and "preempted" in str(preempted)


@pytest.mark.slow
def test_a_killed_worker_reruns_the_search_and_the_run_completes(tmp_path: Path, ray_tmp: Path) -> None:
    """SIGKILL one Ray Train worker mid-search (a lost process or node): the survivor's collective fails
    too, and neither is the architecture's fault, so the dispatcher runs the search again; its alpha log
    starts again, and the run ends with one ok result."""
    run_dir = tmp_path / "run"
    argv = ["search", *TINY, "--epochs", "12", "--num-workers", "2", "--run-dir", str(run_dir)]
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        driver = subprocess.Popen(nas_command(*argv), env=ray_env(ray_tmp), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    reaper = Reaper()
    reaper.track_group(driver)
    reaper.track_temp_dir(ray_tmp)
    alphas = run_dir / "darts" / "seed_0" / "alphas.jsonl"
    try:
        deadline = time.monotonic() + 240
        victim = None
        while victim is None:
            assert driver.poll() is None, f"the search ended before a worker was killed:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no mid-search worker within 240 s:\n{log.read_text()}"
            time.sleep(0.1)
            reaper.refresh()
            if alphas.exists() and alphas.read_text().strip():
                workers = [p for p in reaper.alive() if "RayTrainWorker" in " ".join(_cmdline(p))]
                victim = workers[0] if workers else None
        victim.send_signal(signal.SIGKILL)
        rc = driver.wait(timeout=300)
    finally:
        reaper.kill_all()
    assert rc == 0, log.read_text()
    journal = read_journal(run_dir)
    assert "seed 0: its worker or node died" in log.read_text() and "running the search again (attempt 2)" \
        in log.read_text(), log.read_text()
    (result,) = events(journal, "result")
    assert result["status"] == "ok" and result["metrics"]["epochs_run"] == 12, result
    assert [e["epoch"] for e in alpha_log(run_dir)] == list(range(1, 13))  # the rerun's trajectory, once
    assert not (run_dir / "darts" / "failed.jsonl").exists()


def _cmdline(process: Any) -> list[str]:
    try:
        return list(process.cmdline())
    except Exception:  # gone, or not ours to read
        return []
