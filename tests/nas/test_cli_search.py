"""`nas search` in benchmark mode (NAS-Bench-201 table lookups, no Ray), `nas show`, and bad input:
exit code 2 with one `nas: error:` line (or argparse's usage error), never a traceback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from datapaths import NB201_TABLE

from nas.cli import main
from nas.journal import JOURNAL, STATE

REPO = Path(__file__).resolve().parents[2]
TABLE = str(NB201_TABLE)
needs_table = pytest.mark.skipif(not NB201_TABLE.is_file(), reason="NB201 table not available (set NB201_TABLE)")


def search(run_dir: Path, *extra: str) -> list[str]:
    return ["search", "--benchmark", "nb201", "--table", TABLE, "--run-dir", str(run_dir), *extra]


def one_error_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("nas: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One finished evolution benchmark run (seed 0) and what it printed."""
    if not NB201_TABLE.is_file():
        pytest.skip("NB201 table not available (set NB201_TABLE)")
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out = io.StringIO()  # a module-scoped fixture cannot use capsys
    with contextlib.redirect_stdout(out):
        assert main(search(run_dir, "--strategy", "evolution")) == 0
    return run_dir, out.getvalue()


# ---------------------------------------------------------------------------------- benchmark mode
@needs_table
def test_benchmark_search_prints_the_returned_arch_and_test_accuracy(finished_run: tuple[Path, str]) -> None:
    from nas.benchmarks.nb201 import NB201Table
    from search_spaces.spaces.nb201 import parse_arch_string

    run_dir, out = finished_run
    assert "NAS-Bench-201 protocol, evolution, seed 0:" in out
    queries = int(re.search(r"(\d+) queries", out).group(1))
    arch = parse_arch_string(re.search(r"returned (\S+)", out).group(1))
    valid, test = map(float, re.search(r"12-epoch valid acc ([\d.]+), 200-epoch test acc ([\d.]+)", out).groups())
    assert str(run_dir) in out
    # the printed figures are the table's for the best trial of the journal
    table = NB201Table(NB201_TABLE)
    results = [json.loads(line) for line in (run_dir / JOURNAL).read_text().splitlines()]
    scores = [e["score"] for e in results if e["event"] == "result"]
    assert len(scores) == queries and 50 < queries < 200
    assert valid == pytest.approx(max(scores), abs=0.005)
    assert valid == pytest.approx(float(table.valid_acc_12ep[table.row(arch)]), abs=0.005)
    assert test == pytest.approx(float(table.test_acc[table.row(arch)]), abs=0.005)
    assert 85.0 < test <= 94.38
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 0
    assert (run_dir / STATE).is_file()


@needs_table
def test_rerun_resumes_without_new_queries(finished_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, first = finished_run
    journal = (run_dir / JOURNAL).read_bytes()
    assert main(search(run_dir, "--strategy", "evolution")) == 0
    assert capsys.readouterr().out == first
    assert (run_dir / JOURNAL).read_bytes() == journal


@needs_table
def test_interrupted_cli_run_resumes_to_the_same_result(tmp_path: Path, finished_run: tuple[Path, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, first = finished_run
    lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
    cut = tmp_path / "run"
    cut.mkdir()
    (cut / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    (cut / JOURNAL).write_text("".join(lines[:41]) + lines[41][:25])  # killed mid-write, no snapshot
    assert main(search(cut, "--strategy", "evolution")) == 0
    assert capsys.readouterr().out == first.replace(str(run_dir), str(cut))
    strip = [{k: v for k, v in json.loads(x).items() if k != "t"} for x in lines]
    assert [{k: v for k, v in json.loads(x).items() if k != "t"}
            for x in (cut / JOURNAL).read_text().splitlines()] == strip


@needs_table
def test_different_seed_on_the_same_run_dir(finished_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = finished_run
    journal = (run_dir / JOURNAL).read_bytes()
    assert main(search(run_dir, "--strategy", "evolution", "--seed", "1")) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err)
    assert "different configuration" in line and "seed: 0 -> 1" in line
    assert captured.out == ""
    assert (run_dir / JOURNAL).read_bytes() == journal


@needs_table
def test_tampered_journal_is_an_error_not_a_traceback(tmp_path: Path, finished_run: tuple[Path, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = finished_run
    bad = tmp_path / "run"
    bad.mkdir()
    (bad / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
    event = json.loads(lines[0])
    encoding = event["arch"]["encoding"]
    key = next(iter(encoding))
    encoding[key] = (encoding[key] + 1) % 5  # the code "changed": the replay proposes something else
    (bad / JOURNAL).write_text(json.dumps(event) + "\n" + "".join(lines[1:]))
    assert main(search(bad, "--strategy", "evolution")) == 2
    assert "diverged at trial 0" in one_error_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------------- nas show
@needs_table
def test_show_prints_the_leaderboard_and_writes_the_plot(finished_run: tuple[Path, str],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, first = finished_run
    (run_dir / "progress.png").unlink(missing_ok=True)
    assert main(["show", str(run_dir), "--top", "3", "--history"]) == 0
    out = capsys.readouterr().out
    queries = int(re.search(r"(\d+) queries", first).group(1))
    assert f"{queries}/100000 trials done, 0 failed" in out
    board = out.split("leaderboard:")[1].split("history:")[0].strip().splitlines()
    assert board[0].split()[:3] == ["rank", "trial", "score"] and len(board) == 4
    returned = re.search(r"returned (\S+)", first).group(1)
    assert returned in board[1]  # the best trial is the returned architecture
    assert f"{float(board[1].split()[2]):.2f}" in first
    assert "status" in out and "ok" in out
    png = run_dir / "progress.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {png}" in out


@needs_table
def test_show_never_modifies_the_journal(tmp_path: Path, finished_run: tuple[Path, str],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, first = finished_run
    live = tmp_path / "run"
    live.mkdir()
    (live / "config.json").write_bytes((run_dir / "config.json").read_bytes())
    lines = (run_dir / JOURNAL).read_text().splitlines(keepends=True)
    partial = "".join(lines[:30]) + lines[30][:20]  # the search is writing line 31 right now
    (live / JOURNAL).write_text(partial)
    assert main(["show", str(live)]) == 0
    assert "15/100000 trials done, 0 failed, 0 pending" in capsys.readouterr().out
    assert (live / JOURNAL).read_text() == partial  # read-only: a live writer's line is not cut
    assert main(search(live, "--strategy", "evolution")) == 0  # the search itself does drop the torn line
    assert capsys.readouterr().out == first.replace(str(run_dir), str(live))


def test_show_of_a_missing_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(tmp_path / "nonexistent")]) == 2
    assert "is not a run directory" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "nonexistent").exists()


# ---------------------------------------------------------------------------------- bad input
BAD_INPUTS = {
    "unknown strategy": (["--strategy", "nope"], "unknown strategy 'nope'"),
    "unknown benchmark": (["--benchmark", "foo"], "unknown benchmark 'foo'"),
    "wrong space": (["--space", "darts"], "benchmark nb201 searches the nb201 space"),
    "bad strategy option": (["--population-size", "3", "--sample-size", "5"], "sample_size 5 exceeds"),
    "zero time budget": (["--time-budget", "0"], "time_budget must be > 0"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    args, message = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    argv = search(run_dir, *args)  # a repeated option: the last one counts
    if case == "bad strategy option" and not NB201_TABLE.is_file():
        pytest.skip("NB201 table not available")
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not run_dir.exists()  # nothing was started


def test_missing_or_broken_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    missing = ["search", "--benchmark", "nb201", "--table", str(tmp_path / "no.csv"), "--run-dir", str(run_dir)]
    assert main(missing) == 2
    assert "does not exist" in one_error_line(capsys.readouterr().err)
    assert main(["search", "--benchmark", "nb201", "--run-dir", str(run_dir)]) == 2
    assert "pass --table PATH" in one_error_line(capsys.readouterr().err)
    broken = tmp_path / "broken.csv"
    broken.write_text("index,arch,valid_acc,valid_acc_12ep,test_acc,train_seconds_200ep\n"
                      "0,|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1,2,3,oops\n")
    assert main(["search", "--benchmark", "nb201", "--table", str(broken), "--run-dir", str(run_dir)]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "line 2" in line and "oops" in line
    assert not run_dir.exists()


@pytest.mark.parametrize("args", [["--trials", "0"], ["--time-budget", "-5"], ["--population-size", "x"]])
def test_argparse_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(search(tmp_path / "run", *args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nas search") and f"error: argument {args[0]}" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["search", "--benchmark", "foo", "--table", "t.csv"], "nas: error: unknown benchmark 'foo'"),
    (["search", "--benchmark", "nb201", "--trials", "0"], "error: argument --trials"),
    (["show", "/nonexistent/run"], "nas: error: /nonexistent/run is not a run directory"),
])
def test_exit_codes_in_a_subprocess(tmp_path: Path, argv: list[str], expected: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "nas.cli", *argv], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 2
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not (tmp_path / "runs").exists()
