"""A run directory: its layout, its trial records, and a read-only view of a run.

Layout (every path a run writes is named here)::

    .lock                  held by the one process writing the run (pid, host); see RunLock
    config.json            the resolved configuration (nas.config, with its schema version)
    journal.jsonl          append-only events, the single source of truth (nas.journal)
    state.json             snapshot of the strategy after journal line N
    space.json             how a built-in space was built: {"space": name, "options": {...}}
    data.json              the built-in dataset's input normalisation the trials saw (mean, std, ...)
    graphs/HASH.json       the ArchGraph of every architecture handed out for evaluation
    progress.png           best score so far (nas show, nas search)
    tune/trials/trial_N/   Ray Tune's directory of trial N (default storage; ``--storage`` puts it
                           elsewhere): checkpoint_*/weights.safetensors, train_state.safetensors
    darts/seed_S/          one-shot (DARTS) searches: alpha trajectory

:class:`RunRecords` is the trial bookkeeping both the live run (:class:`nas.run.SearchRun`) and
the read-only :class:`RunView` share: records by trial id, the best trial, counts, leaderboard.
:class:`RunView` reads a run from its files alone (``nas show``, ``nas export``, ``nas train``): it
never builds or replays a strategy, so it works for a run of a user's own space or strategy.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.journal import CONFIG, JOURNAL, Journal, atomic_write_json
from nas.objective import Criterion
from nas.pareto import non_dominated
from search_spaces.errors import InputError
from search_spaces.ir import ArchGraph
from search_spaces.spaces import SPACES, make_space
from search_spaces.spaces.base import SearchSpace

LOCK_FILE = ".lock"
SPACE_FILE = "space.json"
DATA_FILE = "data.json"
GRAPHS_SUBDIR = "graphs"
PROGRESS_PNG = "progress.png"
TRIALS_SUBDIR = Path("tune") / "trials"
TRIAL_WEIGHTS = "weights.safetensors"  # a trial's latest weights, in its latest Tune checkpoint
TRIAL_STATE = "train_state.safetensors"  # the built-in trainer's state there (to continue the trial)
ONE_SHOT_SUBDIR = "darts"


def trials_dir(run_dir: str | Path) -> Path:
    """Where Ray Tune keeps the run's trial directories (``storage_path / name``)."""
    return Path(run_dir).resolve() / TRIALS_SUBDIR


def graph_path(run_dir: str | Path, arch_hash: str) -> Path:
    return Path(run_dir) / GRAPHS_SUBDIR / f"{arch_hash}.json"


def write_graph(run_dir: str | Path, arch_hash: str, graph: ArchGraph) -> None:
    """Store a proposed architecture's graph once (atomic), so any reader can rebuild it without its space."""
    path = graph_path(run_dir, arch_hash)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, graph.to_dict())


def write_space_spec(run_dir: str | Path, name: str, options: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / SPACE_FILE, {"space": name, "options": options})


def write_data_stats(run_dir: str | Path, dataset: str, mean: Sequence[float], std: Sequence[float],
                     max_pixel_value: float) -> None:
    """Record the input normalisation of the run's built-in dataset (what an export writes into its
    ``PRETRAINED_CFG``), so reading it later needs no data."""
    atomic_write_json(Path(run_dir) / DATA_FILE, {"dataset": dataset, "mean": list(mean), "std": list(std),
                                                  "max_pixel_value": max_pixel_value})


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({str(err)[:200]})") from None


def _download(uri: str) -> Path | None:
    """A file in cloud storage, copied to a local temp file (None when it is not there)."""
    import pyarrow.fs

    try:
        fs, path = pyarrow.fs.FileSystem.from_uri(uri)
        local = Path(tempfile.mkdtemp(prefix="nas-weights-")) / Path(path).name
        with fs.open_input_stream(path) as src, local.open("wb") as dst:
            dst.write(src.read())
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read {uri} from the run's storage: {str(err)[:300]}") from None
    return local


class RunInUse(InputError):
    """Another process is writing this run directory."""


class RunLock:
    """The single-writer lock of a run directory: an advisory ``flock`` on ``RUN/.lock`` held for
    the whole search, with the holder's pid, host and start time written in the file for the error
    message. The kernel drops a ``flock`` when its process dies, so a crashed run never leaves a
    stale lock; where the filesystem has no ``flock`` (some network mounts) the pid in the file is
    checked instead (alive on this host: in use; on another host: in use until the file is removed).
    Readers (``nas show``, ``nas export``) take no lock.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"cannot write to run directory {self.run_dir}: {err.strerror or err}; a search needs a "
                             "writable run directory (`nas show` and `nas export` read any)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunInUse(self._in_use(holder)) from None
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            holder = _read_holder(fd)  # no flock here: trust a live holder's pid
            if holder and holder.get("pid") != os.getpid() and _holder_alive(holder):
                os.close(fd)
                raise RunInUse(self._in_use(holder)) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)  # closing the descriptor drops the flock
        self._fd = None

    def _in_use(self, holder: dict[str, Any] | None) -> str:
        who = (f"PID {holder.get('pid')} on {holder.get('host')} (since {holder.get('since')})" if holder
               else "another process")
        return (f"{self.run_dir} is in use by {who}: one search writes a run directory at a time. Wait for it to "
                f"finish or stop it; to watch it, use `nas show {self.run_dir}`")


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _holder_alive(holder: dict[str, Any]) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # another host's process cannot be checked from here
    try:
        os.kill(int(holder["pid"]), 0)
    except (ProcessLookupError, KeyError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """The stored configuration of a run directory (plain data); InputError if it is not one."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run directory (no {CONFIG}); pass the directory `nas search` printed")
    config = read_json(path)
    if not isinstance(config, dict):
        raise InputError(f"{path} does not hold a configuration object")
    return config


@dataclass
class TrialRecord:
    """One trial as the journal tells it. ``status``: None while pending; "ok" | "failed" | "cached"."""

    trial: int
    arch: dict[str, Any]
    hash: str
    status: str | None = None
    score: float | None = None
    reason: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    t_propose: float = 0.0
    t_result: float | None = None
    label: str | None = None  # a human description of the architecture (the space's to_string)
    budget: float | None = None  # stopped early after this many epochs (None: the full budget)
    values: tuple[float, ...] | None = None  # multi-objective: each objective's value (not signed)

    @property
    def done(self) -> bool:
        return self.status is not None

    def rank_key(self) -> tuple[bool, float, int]:
        """Sort key, best first: full-budget results before early-stopped ones, then score, then id."""
        return (self.budget is not None, -(self.score if self.score is not None else float("-inf")), self.trial)


class RunRecords:
    """Trial records of a run by id, with the best successful one, counts and the leaderboard;
    with two or more ``criteria``, the Pareto front of the trials' objective values."""

    def __init__(self, run_dir: str | Path, max_trials: int, criteria: tuple[Criterion, ...] = ()) -> None:
        self.run_dir = Path(run_dir)
        self.max_trials = max_trials
        self.criteria = tuple(criteria)
        self.records: dict[int, TrialRecord] = {}
        self.best: TrialRecord | None = None

    @property
    def num_proposed(self) -> int:
        return len(self.records)

    @property
    def num_done(self) -> int:
        return sum(r.done for r in self.records.values())

    @property
    def num_failed(self) -> int:
        return sum(r.status == "failed" or (r.status == "cached" and r.score is None) for r in self.records.values())

    @property
    def pending(self) -> list[int]:
        return sorted(t for t, r in self.records.items() if not r.done)

    @property
    def finished(self) -> bool:
        return self.num_done >= self.max_trials

    def _add_proposal(self, event: dict[str, Any]) -> TrialRecord:
        record = TrialRecord(event["trial"], event["arch"], event["hash"], t_propose=event.get("t", 0.0),
                             label=event.get("label"))
        self.records[record.trial] = record
        return record

    @property
    def multi(self) -> bool:
        return len(self.criteria) > 1

    def _apply_result(self, record: TrialRecord, status: str, score: float | None, reason: str | None,
                      metrics: dict[str, Any], budget: float | None = None,
                      values: Sequence[float] | None = None) -> None:
        record.status, record.score, record.reason, record.metrics = status, score, reason, metrics
        record.budget = budget
        record.values = None if values is None or score is None else tuple(float(v) for v in values)
        if score is not None and (self.best is None or record.rank_key()[:2] < self.best.rank_key()[:2]):
            self.best = record  # a full-budget result beats any early-stopped one

    def leaderboard(self, top: int = 10) -> list[TrialRecord]:
        """Successful trials, best first: full-budget results, then early-stopped ones, each by score."""
        scored = [r for r in self.records.values() if r.score is not None and r.status == "ok"]
        return sorted(scored, key=TrialRecord.rank_key)[:top]

    def top(self) -> TrialRecord | None:
        """The run's best trial: the leaderboard's first; multi-objective, the front's first (so a trial
        that ties on the first objective but is dominated is never it)."""
        best = self.pareto_front() if self.multi else self.leaderboard(1)
        return best[0] if best else None

    def pareto_front(self) -> list[TrialRecord]:
        """Multi-objective: the successful full-budget trials no other one dominates (a cached trial
        only when it is the first of its architecture on the front), best first by the first
        objective; single-objective: the leaderboard's first."""
        if not self.multi:
            return self.leaderboard(1)
        scored = [r for r in self.records.values()
                  if r.values is not None and r.budget is None and r.status in ("ok", "cached")]
        if not scored:
            return []
        signed = np.array([[c.signed(v) for c, v in zip(self.criteria, r.values, strict=True)]  # type: ignore[arg-type]
                           for r in scored])
        front = [r for r, keep in zip(scored, non_dominated(signed), strict=True) if keep]
        first: dict[str, TrialRecord] = {}
        for r in sorted(front, key=lambda r: r.trial):
            first.setdefault(r.hash, r)  # an architecture once, by its first trial
        return sorted(first.values(), key=TrialRecord.rank_key)

    def record(self, trial: int) -> TrialRecord:
        record = self.records.get(trial)
        if record is None:
            ids = sorted(self.records)
            known = f"trials {ids[0]}..{ids[-1]}" if ids else "no trials yet"
            raise InputError(f"run {self.run_dir} has no trial {trial} ({known}); see `nas show {self.run_dir} "
                             "--history`")
        return record

    def describe(self, record: TrialRecord) -> str:
        return record.label or json.dumps(record.arch.get("encoding", record.arch), separators=(",", ":"))


class RunView(RunRecords):
    """A run as its files tell it, read-only: nothing is dispatched, written or replayed."""

    def __init__(self, run_dir: str | Path) -> None:
        self.config = read_config(run_dir)
        objective = self.config.get("objective") if isinstance(self.config.get("objective"), dict) else {}
        try:
            criteria = tuple(Criterion.parse(o) for o in objective.get("objectives") or ())
        except InputError as err:
            raise InputError(f"{Path(run_dir) / CONFIG}: bad objectives ({err})") from None
        super().__init__(run_dir, int(self.config.get("trials", 0)), criteria)
        for event in Journal(run_dir).read():
            kind = event.get("event")
            if kind == "propose":
                self._add_proposal(event)
            elif kind == "result":
                record = self.records.get(event.get("trial"))  # type: ignore[arg-type]
                if record is None:
                    raise InputError(f"{Path(run_dir) / JOURNAL}: result for trial {event.get('trial')} "
                                     "that was never proposed")
                self._apply_result(record, event["status"], event["score"], event.get("reason"),
                                   event.get("metrics", {}), event.get("budget"), event.get("values"))
                record.t_result = event.get("t")

    def data_settings(self) -> dict[str, Any] | None:
        """The run's built-in dataset: {"dataset", "data_root", "val_fraction", "limit"}, or None (a benchmark
        run, or a user's evaluator). Reads runs from before the schema-2 configuration too."""
        data = self.config.get("data")
        if isinstance(data, dict):
            return data
        if self.config.get("dataset"):  # schema 1: flat keys
            options = self.config.get("data_options") or {}
            return {"dataset": self.config["dataset"], "data_root": self.config.get("data_root"),
                    "val_fraction": options.get("val_fraction"), "limit": options.get("limit")}
        return None

    def data_stats(self) -> dict[str, Any] | None:
        """The input normalisation the search recorded (``data.json``), or None (older runs, benchmark
        runs, a user's evaluator)."""
        path = self.run_dir / DATA_FILE
        return read_json(path) if path.is_file() else None

    @property
    def is_benchmark(self) -> bool:
        return bool(self.config.get("benchmark"))

    def builtin_space(self) -> SearchSpace | None:
        """The run's space rebuilt from ``space.json`` when it is a built-in one (None for a user's space)."""
        path = self.run_dir / SPACE_FILE
        if path.is_file():
            spec = read_json(path)
            if not isinstance(spec, dict) or not isinstance(spec.get("options"), dict):
                raise InputError(f"{path} does not describe a space: {spec!r}")
            name, options = spec.get("space"), spec["options"]
        else:  # runs from before space.json, and benchmark runs
            name, options = self.config.get("space"), self.config.get("space_options", {})
        return make_space(name, **options) if name in SPACES else None

    def describe(self, record: TrialRecord) -> str:
        if record.label is None:  # journals from before labels
            space = self.builtin_space()
            to_string = getattr(space, "to_string", None)
            if space is not None and to_string is not None:
                try:
                    return str(to_string(space.from_json(record.arch)))
                except ValueError:
                    return "?"
        return super().describe(record)

    def graph(self, trial: int) -> ArchGraph:
        """The ArchGraph trial ``trial`` evaluated: stored in ``graphs/`` by the search, or (runs from
        before it) rebuilt by the run's built-in space and checked against the journal's hash."""
        record = self.record(trial)
        path = graph_path(self.run_dir, record.hash)
        if path.is_file():
            graph = ArchGraph.from_dict(read_json(path))
            graph.validate()
            return graph
        space = self.builtin_space()
        if space is None:
            raise InputError(f"run {self.run_dir} has no stored graph for trial {trial} ({path} is missing) and "
                             f"its space {self.config.get('space')!r} is not a built-in one")
        graph = space.to_graph(space.from_json(record.arch))
        if not self.is_benchmark and graph.canonical_hash() != record.hash:  # benchmarks key by arch string
            hint = ("the search space's code changed since the search" if (self.run_dir / SPACE_FILE).is_file()
                    else f"the run has no {SPACE_FILE} (it predates it), so its space was rebuilt with default "
                         "input shape and classes")
            raise InputError(f"trial {trial} of {self.run_dir} rebuilds to a different graph than the search "
                             f"trained (hash {graph.canonical_hash()[:16]} vs journal {record.hash[:16]}): {hint}")
        return graph

    def weights(self, trial: int) -> Path | None:
        """The weights file (safetensors) trial ``trial`` saved, or None when it saved none.

        The location comes from the trial's result metrics (a ``cached`` trial shares the weights of
        the earlier trial of the same architecture): a file in the trial's last Tune checkpoint in
        the run's storage. A local one is looked up under this run's ``tune/trials/`` by its trial
        and checkpoint directory names first, so a moved or copied run directory finds its own
        files; one in cloud storage (``s3://...``, ``gs://...``) is downloaded to a temp file.
        """
        record = self.record(trial)
        saved = record.metrics.get("weights") if record.done else None
        if not saved:
            return None
        if "://" in str(saved):
            return _download(str(saved))
        recorded = Path(str(saved))
        tail = recorded.parts[-3:] if recorded.parent.name.startswith("checkpoint_") else recorded.parts[-2:]
        for candidate in (self.run_dir / TRIALS_SUBDIR / Path(*tail), recorded):
            if candidate.is_file():
                return candidate
        return None

    def pick(self, trial: int | None = None) -> TrialRecord:
        """Trial ``trial``, or the best (:meth:`RunRecords.top`); InputError
        when it does not exist, has no result yet or failed."""
        if trial is None:
            best = self.top()
            if best is None:
                raise InputError(f"run {self.run_dir} has no successful trial yet ({self.num_done} done, "
                                 f"{self.num_failed} failed); pass --trial ID or wait for the search")
            return best
        record = self.record(trial)
        if not record.done:
            raise InputError(f"trial {trial} of run {self.run_dir} has no result yet; pick a finished trial")
        if record.score is None:
            raise InputError(f"trial {trial} of run {self.run_dir} failed ({record.reason or 'no reason recorded'}); "
                             "pick another (see `nas show`)")
        return record
