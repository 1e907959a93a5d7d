"""`nas search --strategy darts`: searches as Ray Tune trials (digits, tiny budgets), journaled like any
run, NAS-Bench-201 look-up of the derived cell, alpha trajectory, resume, failures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from datapaths import NB201_TABLE
from ray_helpers import events, ray_env, read_journal, run_nas

from nas.cli import main
from search_spaces.spaces.nb201 import NB201Space

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TINY = ["--strategy", "darts", "--epochs", "2", "--data-limit", "150", "--batch-size", "16", "--augment", "none"]


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nas: error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def darts_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], str]:
    """Two NB-201 DARTS searches (seeds 0, 1) through the CLI, with the table for the look-up."""
    if not NB201_TABLE.is_file():
        pytest.skip(f"NAS-Bench-201 table {NB201_TABLE} is missing")
    base = tmp_path_factory.mktemp("darts")
    run_dir = base / "run"
    argv = ["search", *TINY, "--space", "nb201", "--table", str(NB201_TABLE), "--trials", "2", "--run-dir",
            str(run_dir)]
    ray_tmp = Path(tmp_path_factory.mktemp("ray"))
    done = run_nas(argv, ray_env(ray_tmp), timeout=400)
    assert done.returncode == 0, done.stdout
    return run_dir, argv, done.stdout


def test_each_search_is_a_journaled_trial_with_its_table_lookup(darts_run: tuple[Path, list[str], str]) -> None:
    run_dir, _, stdout = darts_run
    journal = read_journal(run_dir)
    proposals, results = events(journal, "propose"), events(journal, "result")
    assert [p["trial"] for p in proposals] == [0, 1] and [r["trial"] for r in results] == [0, 1]
    space = NB201Space()
    seeds = set()
    for p, r in zip(proposals, results, strict=True):
        arch = space.from_json(p["arch"])
        m = r["metrics"]
        seeds.add(m["seed"])
        assert r["status"] == "ok" and 0 <= r["score"] <= 1 and m["epochs_run"] == 2 and m["device"] == "cpu"
        assert NB201Space.arch_from_index(NB201_TABLE, m["nb201_index"]) == arch
        assert 0 < m["nb201_test_acc"] <= 100 and m["skip_connects"] == sum(op == "skip_connect" for op in arch)
        log = [json.loads(line) for line in Path(m["alpha_log"]).read_text().splitlines()]
        assert [e["epoch"] for e in log] == [1, 2] and len(log[-1]["alphas"]["cell"]) == 6
        assert space.from_json(log[-1]["arch"]) == arch  # the returned cell is the last epoch's
        assert (Path(m["alpha_log"]).parent / "alphas.png").read_bytes().startswith(PNG_MAGIC)
    assert seeds == {0, 1}
    assert "NAS-Bench-201 index" in stdout and "rank" in stdout


def test_rerun_runs_nothing_and_show_and_export_work(darts_run: tuple[Path, list[str], str], tmp_path: Path,
                                                    ray_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, argv, _ = darts_run
    before = (run_dir / "journal.jsonl").read_bytes()
    again = run_nas(argv, ray_env(ray_tmp), timeout=200)
    assert again.returncode == 0, again.stdout
    assert (run_dir / "journal.jsonl").read_bytes() == before
    assert main(["show", str(run_dir)]) == 0
    assert "2/2 trials done" in capsys.readouterr().out
    out = tmp_path / "derived.py"
    assert main(["export", str(run_dir), "--best", "--out", str(out)]) == 2  # derived: never trained alone
    assert "one-shot search derived it" in capsys.readouterr().err
    assert main(["export", str(run_dir), "--best", "--out", str(out), "--allow-untrained"]) == 0
    assert "class " in out.read_text()


def test_a_failed_search_is_recorded_and_not_run_again(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", *TINY, "--space", "nb201", "--trials", "1", "--lr", "1e30", "--run-dir", str(run_dir)]
    env = ray_env(ray_tmp)
    first = run_nas(argv, env, timeout=300)
    assert first.returncode == 0, first.stdout
    failed = [json.loads(line) for line in (run_dir / "darts" / "failed.jsonl").read_text().splitlines()]
    assert [f["seed"] for f in failed] == [0] and "non-finite" in failed[0]["reason"]
    assert not events(read_journal(run_dir), "result")
    again = run_nas(argv, env, timeout=200)
    assert again.returncode == 0 and "failed earlier" in again.stdout, again.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--strategy", "darts", "--space", "macro"], "one op per cell edge"),
    (["--strategy", "darts", "--benchmark", "nb201", "--table", "t.csv"], "does not query a table"),
    (["--order", "2"], "strategy 'evolution' has no option(s) ['order']"),
    (["--strategy", "darts", "--train-portion", "1.5"], "darts: train_portion"),
    (["--strategy", "darts", "--population-size", "4"], "darts: unknown option(s) ['population_size']"),
    (["--strategy", "darts", "--batch-size", "1000000", "--data-limit", "200"], "--batch-size"),
])
def test_bad_input_exits_2_with_one_line_and_launches_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              args: list[str], message: str) -> None:
    run_dir = tmp_path / "run"
    assert main(["search", *args, "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert message in line
    if "--batch-size" in args:
        assert "does not fit" in line and "the largest that fits" in line
    assert not run_dir.exists()


@pytest.mark.gpu
def test_a_search_given_a_gpu_runs_on_cuda(tmp_path: Path, ray_tmp: Path) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", *TINY, "--space", "nb201", "--trials", "1", "--gpus-per-trial", "1", "--run-dir", str(run_dir)]
    done = run_nas(argv, ray_env(ray_tmp), timeout=300)
    assert done.returncode == 0, done.stdout
    results = events(read_journal(run_dir), "result")
    assert len(results) == 1 and results[0]["metrics"]["device"].startswith("cuda"), results
