"""Helpers for the tests that start Ray: isolated environments, `nas search` in a
subprocess, journal reading, and killing exactly the processes a test started.

Isolation: every Ray a test starts gets its own short temp dir (``RAY_TMPDIR``; Ray's AF_UNIX
socket paths must stay under ~107 bytes, so not under pytest's long tmp_path), token
authentication with a token generated here (never ~/.ray/auth_token), no usage stats, and no
``RAY_ADDRESS``: a local run never joins another user's cluster on this machine. Processes are
only ever ended by PID (or by the process group of a session the test itself created).
"""

from __future__ import annotations

import importlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
# one token for every Ray this test session starts (in-process and in subprocesses): Ray's C++ side
# caches the token of a process, so the pytest process must keep using the same one
AUTH_TOKEN = secrets.token_hex(16)


def psutil_module() -> Any:
    """psutil as bundled with Ray (ray/thirdparty_files; importing ray puts it on sys.path)."""
    import ray  # noqa: F401

    return importlib.import_module("psutil")  # only importable once ray is imported


def ray_env(temp_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a subprocess that starts or joins a Ray of this test (see module docstring)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_"))}
    env.update(RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=AUTH_TOKEN,
               RAY_TMPDIR=str(temp_dir), PYTHONUNBUFFERED="1", **extra)
    return env



def nas_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nas.cli", *args]


def run_nas(args: Iterable[str], env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run ``nas ARGS`` to completion in a subprocess; the output is returned (and kept on failure)."""
    proc = subprocess.Popen(nas_command(*args), env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    reaper = Reaper()
    reaper.track_group(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        reaper.kill_all()
        out, _ = proc.communicate()
        pytest.fail(f"`nas {' '.join(args)}` did not finish in {timeout:.0f} s; output:\n{out}")
    finally:
        reaper.kill_all()  # nothing should be left; a crashed driver may leave Ray processes behind
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, None)


def read_journal(run_dir: Path) -> list[dict[str, Any]]:
    """Complete events of a run's journal (a torn last line, being written right now, is skipped)."""
    path = Path(run_dir) / "journal.jsonl"
    if not path.exists():
        return []
    events = []
    for raw in path.read_bytes().splitlines(keepends=True):
        if not raw.endswith(b"\n"):
            break
        events.append(json.loads(raw))
    return events


def events(journal: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in journal if e["event"] == kind]


class Reaper:
    """Processes a test started: session leaders (Popen with start_new_session=True) and every
    descendant seen so far, keyed by (pid, create_time) so a recycled PID is never signalled."""

    def __init__(self) -> None:
        self.psutil = psutil_module()
        self.groups: list[subprocess.Popen[Any]] = []
        self.procs: dict[int, float] = {}
        self.temp_dirs: list[str] = []

    def track_group(self, popen: subprocess.Popen[Any]) -> None:
        self.groups.append(popen)
        self.record(popen.pid)

    def track_temp_dir(self, path: Path) -> None:
        """Also count as ours any process whose environment has RAY_TMPDIR=path (unique per test)."""
        self.temp_dirs.append(str(path))

    def record(self, pid: int) -> None:
        """Remember ``pid`` and all its current descendants."""
        try:
            root = self.psutil.Process(pid)
            if pid in self.procs and root.create_time() != self.procs[pid]:
                return  # that process is gone and its PID reused by another
            found = [root, *root.children(recursive=True)]
        except self.psutil.NoSuchProcess:
            return
        for p in found:
            try:
                self.procs.setdefault(p.pid, p.create_time())
            except self.psutil.NoSuchProcess:
                pass

    def refresh(self) -> None:
        """Record the current descendants of everything recorded, members of our process groups and
        processes carrying one of our Ray temp dirs."""
        for pid in list(self.procs):
            self.record(pid)
        pgids = set()
        for popen in self.groups:  # a group id is ours while its leader is ours or gone (not recycled)
            try:
                leader_ours = self.psutil.Process(popen.pid).create_time() == self.procs.get(popen.pid)
            except self.psutil.NoSuchProcess:
                leader_ours = True
            if leader_ours:
                pgids.add(popen.pid)
        for p in self.psutil.process_iter(["pid", "create_time"]):
            try:
                if os.getpgid(p.pid) in pgids:
                    self.procs.setdefault(p.pid, p.info["create_time"])
                elif self.temp_dirs and p.pid != os.getpid() and \
                        p.environ().get("RAY_TMPDIR") in self.temp_dirs:
                    self.procs.setdefault(p.pid, p.info["create_time"])
            except (self.psutil.NoSuchProcess, self.psutil.AccessDenied, ProcessLookupError, OSError):
                pass

    def alive(self) -> list[Any]:
        out = []
        for pid, created in self.procs.items():
            try:
                p = self.psutil.Process(pid)
                if p.create_time() == created and p.status() != self.psutil.STATUS_ZOMBIE:
                    out.append(p)
            except self.psutil.NoSuchProcess:
                pass
        return out

    def _signal_groups(self, sig: int) -> None:
        for popen in self.groups:
            if popen.poll() is None:  # leader not reaped: the group id is still ours
                try:
                    os.killpg(popen.pid, sig)
                except ProcessLookupError:
                    pass

    def kill_all(self, term_grace: float = 0.0, timeout: float = 15.0) -> list[Any]:
        """SIGTERM (when ``term_grace`` > 0, waiting that long) then SIGKILL everything ours, until
        nothing ours is left or ``timeout`` passes; returns the survivors (normally [])."""
        self.refresh()
        if term_grace > 0:
            self._signal_groups(signal.SIGTERM)
            for p in self.alive():
                try:
                    p.terminate()
                except self.psutil.NoSuchProcess:
                    pass
            self.psutil.wait_procs(self.alive(), timeout=term_grace)
        deadline = time.monotonic() + timeout
        while True:
            self.refresh()
            self._signal_groups(signal.SIGKILL)
            survivors = self.alive()
            for p in survivors:
                try:
                    p.kill()
                except self.psutil.NoSuchProcess:
                    pass
            self.psutil.wait_procs(survivors, timeout=1.0)
            for popen in self.groups:
                if popen.poll() is None:
                    try:
                        popen.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        pass
            self.refresh()
            survivors = self.alive()
            if not survivors or time.monotonic() > deadline:
                return survivors
