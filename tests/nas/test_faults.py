"""Faults as an operator meets them, through the `nas` command: signals, a second writer, a damaged
journal, an unreachable cluster, resources no node has, a full disk, a read-only run directory.

Each test asserts the journal afterwards: no event lost, none duplicated, and a rerun resumes.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from datapaths import NB201_TABLE
from ray_helpers import Reaper, events, nas_command, ray_env, read_journal, run_nas

from nas.cli import main

FAST = ["--epochs", "1", "--data-limit", "300"]


def one_result_per_trial(journal: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    counts = Counter(e["trial"] for e in events(journal, "result"))
    assert all(n == 1 for n in counts.values()), f"trials with more than one result: {counts}"
    proposed = [e["trial"] for e in events(journal, "propose")]
    assert proposed == list(range(len(proposed))), "proposals are not numbered 0, 1, 2, ..."
    return {e["trial"]: e for e in events(journal, "result")}


def start_search(argv: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], Reaper]:
    with log.open("w") as out:
        driver = subprocess.Popen(nas_command(*argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    reaper = Reaper()
    reaper.track_group(driver)
    return driver, reaper


def wait_until_mid_search(driver: subprocess.Popen[bytes], reaper: Reaper, run_dir: Path, log: Path,
                          trials: int) -> None:
    deadline = time.monotonic() + 180
    while True:
        reaper.refresh()
        journal = read_journal(run_dir)
        done = {e["trial"] for e in events(journal, "result")}
        pending = {e["trial"] for e in events(journal, "propose")} - done
        checkpointed = {e["trial"] for e in events(journal, "checkpoint")} & pending
        if 1 <= len(done) < trials and checkpointed:  # a running trial has a checkpoint to continue from
            return
        assert driver.poll() is None, f"the search ended (rc {driver.returncode}) too early:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no mid-search point within 180 s:\n{log.read_text()}"
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_search_gracefully_and_a_rerun_resumes(tmp_path: Path, ray_tmp: Path,
                                                                   signum: int) -> None:
    run_dir = tmp_path / "run"
    argv = ["search", "--trials", "6", "--epochs", "6", "--data-limit", "600", "--run-dir", str(run_dir)]
    env = ray_env(ray_tmp)
    log = tmp_path / "driver.log"
    driver, reaper = start_search(argv, env, log)
    reaper.track_temp_dir(ray_tmp)
    try:
        wait_until_mid_search(driver, reaper, run_dir, log, 6)
        if signum == signal.SIGINT:  # meanwhile, a second writer is refused at once
            second = run_nas(argv, env, timeout=60)
            assert second.returncode == 2, second.stdout
            assert f"is in use by PID {driver.pid} on " in second.stdout and "Traceback" not in second.stdout
        assert driver.poll() is None, f"the search ended before the signal:\n{log.read_text()}"
        os.kill(driver.pid, signum)
        rc = driver.wait(timeout=90)
        reaper.refresh()
        time.sleep(2)
        survivors = reaper.kill_all()
    finally:
        reaper.kill_all()
    output = log.read_text()
    assert rc == 128 + signum, output
    assert "nas: interrupted" in output and "search finished" not in output, output
    assert "Traceback" not in output and "Aborted" not in output and "core dumped" not in output, output
    assert not survivors, f"processes of the stopped search survived: {survivors}"
    stopped = read_journal(run_dir)
    one_result_per_trial(stopped)
    done_at_stop = {e["trial"] for e in events(stopped, "result")}
    checkpointed = {e["trial"]: e["epoch"] for e in events(stopped, "checkpoint") if e["trial"] not in done_at_stop}

    resumed = run_nas(argv, env)
    assert resumed.returncode == 0, resumed.stdout
    journal = read_journal(run_dir)
    assert journal[: len(stopped)] == stopped, "resuming rewrote journal events"
    results = one_result_per_trial(journal)
    assert sorted(results) == list(range(6)) and all(r["status"] == "ok" for r in results.values())
    assert checkpointed, "no trial was stopped with a checkpoint"
    for trial, epoch in checkpointed.items():  # a trial running at the stop continues after its checkpoint
        after = [e["epoch"] for e in events(journal[len(stopped):], "checkpoint") if e["trial"] == trial]
        assert after and after[0] == (epoch + 1 if epoch < 6 else 1), (trial, epoch, after)
    if signum == signal.SIGTERM:
        return

    # a damaged middle line is refused by the search and by `nas show`; `nas repair` makes the run resume
    lines = (run_dir / "journal.jsonl").read_bytes().splitlines(keepends=True)
    position = next(i for i, line in enumerate(lines[:-2]) if b'"event":"result"' in line)
    damaged_trial = journal[position]["trial"]
    lines[position] = lines[position].replace(b'"event":"result"', b'"event":"res#ult"')
    (run_dir / "journal.jsonl").write_bytes(b"".join(lines))
    for command in (argv, ["show", str(run_dir)]):
        refused = run_nas(command, env, timeout=120)
        assert refused.returncode == 2, refused.stdout
        assert f"journal.jsonl, line {position + 1}:" in refused.stdout and "nas repair" in refused.stdout
        assert "Traceback" not in refused.stdout
    repaired = run_nas(["repair", str(run_dir)], env, timeout=60)
    assert repaired.returncode == 0 and "set aside 1 damaged line" in repaired.stdout, repaired.stdout
    again = run_nas(argv, env)
    assert again.returncode == 0, again.stdout
    final = read_journal(run_dir)
    results = one_result_per_trial(final)
    assert sorted(results) == list(range(6))
    rerun = [e["trial"] for e in final[len(lines) - 1:] if e["event"] == "result"]
    assert rerun == [damaged_trial], "only the trial whose result was damaged runs again"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_address_is_one_error_line_within_30_s(tmp_path: Path, ray_tmp: Path) -> None:
    start = time.monotonic()
    result = run_nas(["search", "--trials", "1", *FAST, "--address", f"127.0.0.1:{free_port()}", "--run-dir",
                      str(tmp_path / "run")], ray_env(ray_tmp), timeout=60)
    assert time.monotonic() - start < 30
    assert result.returncode == 2, result.stdout
    assert "nas: error: cannot reach the Ray cluster at --address 127.0.0.1:" in result.stdout
    assert "Traceback" not in result.stdout


def test_resources_no_node_has_are_one_error_line_within_60_s(tmp_path: Path, ray_tmp: Path) -> None:
    start = time.monotonic()
    result = run_nas(["search", "--trials", "1", *FAST, "--gpus-per-trial", "64", "--run-dir", str(tmp_path / "run")],
                     ray_env(ray_tmp), timeout=90)
    assert time.monotonic() - start < 60
    assert result.returncode == 2, result.stdout
    assert "no node of the Ray cluster can run a trial: each asks for 1 CPU and 64 GPU" in result.stdout
    assert "Traceback" not in result.stdout
    assert events(read_journal(tmp_path / "run"), "result") == []


def test_a_full_disk_is_one_error_line_and_the_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    if not NB201_TABLE.is_file():
        pytest.skip("the NB-201 table is not here")
    run_dir = tmp_path / "run"
    argv = ["search", "--benchmark", "nb201", "--table", str(NB201_TABLE), "--strategy", "random", "--trials", "30",
            "--run-dir", str(run_dir)]
    real_open = Path.open
    written = {"lines": 0}

    class FillingUp:
        """The journal's file on a disk that fills up after 25 lines (a partial last write, then ENOSPC)."""

        def __init__(self, f: Any) -> None:
            self.f = f

        def write(self, text: str) -> int:
            written["lines"] += 1
            if written["lines"] > 25:
                self.f.write(text[: len(text) // 2])  # the part that still fit
                raise OSError(errno.ENOSPC, "No space left on device")
            return int(self.f.write(text))

        def __getattr__(self, name: str) -> Any:
            return getattr(self.f, name)

    def open_on_a_full_disk(path: Path, *args: Any, **kwargs: Any) -> Any:
        f = real_open(path, *args, **kwargs)
        return FillingUp(f) if path.name == "journal.jsonl" and args[:1] == ("a",) else f

    monkeypatch.setattr(Path, "open", open_on_a_full_disk)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas: error: cannot write ") and "No space left on device" in err and "resume" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    monkeypatch.setattr(Path, "open", real_open)
    before = read_journal(run_dir)
    assert before, "something was recorded before the disk filled"
    assert main(argv) == 0
    journal = read_journal(run_dir)
    assert journal[: len(before)] == before
    assert sorted(one_result_per_trial(journal)) == list(range(30))


def test_show_works_on_a_read_only_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    if not NB201_TABLE.is_file():
        pytest.skip("the NB-201 table is not here")
    run_dir = tmp_path / "run"
    assert main(["search", "--benchmark", "nb201", "--table", str(NB201_TABLE), "--trials", "5", "--run-dir",
                 str(run_dir)]) == 0
    capsys.readouterr()

    def read_only(*args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EROFS, "Read-only file system")

    import nas.cli

    monkeypatch.setattr(nas.cli, "plot_progress", read_only)  # root ignores chmod: simulate the mount
    assert main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "leaderboard" in out and "plot: not written" in out and "Read-only file system" in out
