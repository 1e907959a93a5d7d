"""Durable run directory: config, append-only journal, strategy snapshots.

Layout of a run directory::

    config.json     the run's configuration (resume refuses a different one, showing the diff)
    journal.jsonl   one JSON event per line, appended and fsynced: the single source of truth
    state.json      snapshot of the strategy after journal line N (atomic replace)

Events: ``{"event": "propose", "trial": id, "arch": {...}, "hash": h, "t": seconds}``,
``{"event": "result", "trial": id, "status": "ok" | "failed" | "cached", "score": x | null,
"reason": str | null, "metrics": {...}, "t": seconds}`` (optionally ``budget``, epochs reached by
a trial stopped early, ``infrastructure``: its worker died in every attempt, and ``values``: each
objective's value, in the configuration's order, in a multi-objective search),
``{"event": "retry", "trial": id, "attempt": n, "reason": str}`` and ``{"event": "checkpoint",
"trial": id, "path": uri, "epoch": n}`` (the trial's latest checkpoint in the run's storage).
A torn last line (the process died mid-write) is dropped on read and truncated away before the
next append; any other damaged line is refused (:class:`JournalDamaged`, ``nas repair``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search_spaces.errors import InputError

CONFIG = "config.json"
JOURNAL = "journal.jsonl"
STATE = "state.json"


EVENT_KINDS = ("propose", "result", "retry", "checkpoint")
STATUSES = ("ok", "failed", "cached")
SNIPPET = 80
"""Characters of a damaged line quoted in an error message."""


class ConfigMismatch(InputError):
    """A run directory holds a run with a different configuration."""


class StorageError(InputError):
    """The run directory cannot be written (disk full, read-only, gone): nothing recorded so far is lost."""

    def __init__(self, path: Path, err: OSError) -> None:
        super().__init__(f"cannot write {path}: {err.strerror or err}; everything recorded before is intact: free "
                         "space (or fix the directory's permissions) and rerun the same command to resume")


class JournalDamaged(InputError):
    """A line of journal.jsonl other than a torn last one cannot be used."""

    def __init__(self, path: Path, line: int, problem: str, raw: bytes) -> None:
        self.path, self.line, self.problem = path, line, problem
        super().__init__(
            f"{path}, line {line}: {problem} (line starts {snippet(raw)}); the journal is damaged there and "
            f"nothing after it was used. Run `nas repair {path.parent}` to set damaged lines aside (the journal "
            "is backed up first), then rerun to resume")


def snippet(raw: bytes) -> str:
    """A bounded, printable quote of a raw line (at most about ``SNIPPET`` characters)."""
    text = repr(raw.rstrip(b"\n")[: SNIPPET * 4].decode("utf-8", errors="replace"))
    return text if len(text) <= SNIPPET else text[:SNIPPET] + "..."


def read_lines(path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The complete lines of ``path`` as (1-based number, bytes) and their total length; a final
    line without a newline (a torn write) is left out."""
    lines, good_bytes = [], 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                break
            lines.append((number, raw))
            good_bytes += len(raw)
    return lines, good_bytes


def parse_event(raw: bytes) -> tuple[dict[str, Any], str | None]:
    """(event, None) or ({}, what is wrong with the line's form)."""
    try:
        event = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return {}, "not UTF-8 text"
    except json.JSONDecodeError as err:
        return {}, f"not JSON ({err.msg} at column {err.colno})"
    if not isinstance(event, dict):
        return {}, f"a JSON {type(event).__name__}, not an event object"
    return event, None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class EventChecker:
    """Checks each event, in journal order, against what this journal writes: proposals numbered
    0, 1, 2, ...; one result per proposed trial; retries and checkpoints only of pending trials."""

    def __init__(self) -> None:
        self.proposed = 0
        self.finished: set[int] = set()

    def check(self, event: dict[str, Any]) -> str | None:
        kind = event.get("event")
        if kind not in EVENT_KINDS:
            return f"unknown event {str(kind)[:SNIPPET]!r} (expected one of {', '.join(EVENT_KINDS)})"
        trial = event.get("trial")
        if not isinstance(trial, int) or isinstance(trial, bool):
            return f"{kind} event without an integer trial id"
        if "t" in event and not _is_number(event["t"]):
            return f"{kind} event of trial {trial} with a non-numeric time"
        if kind == "propose":
            if trial != self.proposed:
                return f"proposal of trial {trial} where trial {self.proposed} comes next"
            if not isinstance(event.get("arch"), dict) or not isinstance(event.get("hash"), str):
                return f"proposal of trial {trial} without an architecture and hash"
            self.proposed += 1
            return None
        if not 0 <= trial < self.proposed:
            return f"{kind} for trial {trial}, which was never proposed"
        if trial in self.finished:
            return f"{kind} for trial {trial}, which already has a result"
        if kind == "retry":
            return None
        if kind == "checkpoint":
            return None if isinstance(event.get("path"), str) else f"checkpoint of trial {trial} without a path"
        if event.get("status") not in STATUSES:
            return f"result of trial {trial} with status {str(event.get('status'))[:SNIPPET]!r}"
        score = event.get("score")
        if score is not None and not _is_number(score):
            return f"result of trial {trial} with a non-numeric score"
        if not isinstance(event.get("metrics", {}), dict):
            return f"result of trial {trial} whose metrics are not an object"
        if event.get("budget") is not None and not _is_number(event["budget"]):
            return f"result of trial {trial} with a non-numeric budget"
        values = event.get("values")
        if values is not None and not (isinstance(values, list) and values and all(map(_is_number, values))):
            return f"result of trial {trial} whose objective values are not a list of numbers"
        self.finished.add(trial)
        return None


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)  # a failed write (unserialisable data, full disk) leaves nothing behind
        if isinstance(err, OSError):
            raise StorageError(path, err) from None
        raise


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two nested config dicts."""
    lines = []
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if key not in old:
            lines.append(f"{name}: (absent) -> {new[key]!r}")
        elif key not in new:
            lines.append(f"{name}: {old[key]!r} -> (absent)")
        elif isinstance(old[key], dict) and isinstance(new[key], dict):
            lines += config_diff(old[key], new[key], f"{name}.")
        elif old[key] != new[key]:
            lines.append(f"{name}: {old[key]!r} -> {new[key]!r}")
    return lines


class Journal:
    """Append-only event log of one run directory (see module docstring)."""

    def __init__(self, run_dir: str | Path, durable: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / JOURNAL
        self.durable = durable
        self.start = time.time()
        self._file = None
        self._lines = 0
        self._good_bytes: int | None = None  # length of the complete lines seen by the last read

    # ------------------------------------------------------------------ config
    def open_config(self, config: dict[str, Any], ignore: tuple[str, ...] = (), grow: tuple[str, ...] = ()) -> bool:
        """Create the run dir with ``config``, or check it matches the stored one.

        Returns True when resuming an existing run. Keys in ``ignore`` may differ (e.g. the
        cluster address); keys in ``grow`` (the trial budget) may increase, and the stored config
        is then rewritten with the larger value. Raises ConfigMismatch listing the differences
        otherwise.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / CONFIG
        if not path.exists():
            atomic_write_json(path, config)
            return False
        try:
            stored = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigMismatch(f"{path} is not valid JSON ({err}); remove the run directory or pick another") \
                from None
        skip = set(ignore) | set(grow)
        diff = config_diff({k: v for k, v in stored.items() if k not in skip},
                           {k: v for k, v in config.items() if k not in skip})
        for key in grow:
            if config.get(key) is not None and stored.get(key) is not None and config[key] < stored[key]:
                diff.append(f"{key}: {stored[key]!r} -> {config[key]!r} (a run's {key} can grow, never shrink)")
        if diff:
            raise ConfigMismatch(f"run directory {self.run_dir} holds a run with a different configuration; "
                                 f"use another --run-dir or the original flags. Differences (stored -> new): "
                                 + "; ".join(diff))
        if any(config.get(k) != stored.get(k) for k in grow):
            atomic_write_json(path, {**stored, **{k: config[k] for k in grow}})
        return True

    def stored_config(self) -> dict[str, Any] | None:
        """The configuration stored in the run directory, or None for a new run."""
        path = self.run_dir / CONFIG
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigMismatch(f"{path} is not valid JSON ({err}); remove the run directory or pick another") \
                from None

    # ------------------------------------------------------------------ events
    def read(self) -> list[dict[str, Any]]:
        """All events; a torn final line (no newline: the process died mid-write) is dropped and
        truncated away before the next append. A damaged line anywhere else (not JSON, not UTF-8,
        or not a record this journal writes) raises :class:`JournalDamaged` naming the file, the
        line and ``nas repair``: nothing after it is silently dropped.

        Reading never modifies the file: ``nas show`` may read the journal of a live run.
        """
        if not self.path.exists():
            return []
        lines, good_bytes = read_lines(self.path)
        checker = EventChecker()
        events = []
        for number, raw in lines:
            event, problem = parse_event(raw)
            if problem is None:
                problem = checker.check(event)
            if problem is not None:
                raise JournalDamaged(self.path, number, problem, raw)
            events.append(event)
        self._lines = len(events)
        self._good_bytes = good_bytes
        return events

    def append(self, event: dict[str, Any]) -> int:
        """Append one event durably; returns the number of lines in the journal after it."""
        line = json.dumps({**event, "t": round(time.time() - self.start, 3)}, separators=(",", ":")) + "\n"
        try:
            if self._file is None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                if self.path.exists():
                    if self._good_bytes is None:
                        self.read()
                    if self._good_bytes is not None and self.path.stat().st_size > self._good_bytes:
                        with self.path.open("r+b") as f:  # drop a torn last line before appending
                            f.truncate(self._good_bytes)
                self._file = self.path.open("a")
            self._file.write(line)
            self._file.flush()
            if self.durable:
                os.fsync(self._file.fileno())
        except OSError as err:
            self._abandon()  # a partial line is a torn tail: the next run truncates it away
            raise StorageError(self.path, err) from None
        self._lines += 1
        return self._lines

    def _abandon(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
            self._good_bytes = None

    @property
    def lines(self) -> int:
        return self._lines

    def sync(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as err:
                self._abandon()
                raise StorageError(self.path, err) from None

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ snapshots
    def save_state(self, strategy_state: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / STATE, {"journal_lines": self._lines, "strategy": strategy_state})

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        """The latest snapshot, or None (none yet, or an unreadable one: the journal is the source of
        truth and is then replayed from its start)."""
        path = self.run_dir / STATE
        if not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return int(data["journal_lines"]), dict(data["strategy"])
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def set_time_offset(self, seconds: float) -> None:
        """Continue the run's clock on resume (``t`` keeps increasing across restarts)."""
        self.start = time.time() - seconds


@dataclass
class RepairReport:
    """What :func:`repair_journal` did."""

    kept: int
    damaged: list[int]  # line numbers set aside as damaged
    quarantined: list[int]  # readable lines set aside because an earlier proposal was lost
    backup: Path | None
    quarantine: Path | None

    def describe(self) -> str:
        if not self.damaged and not self.quarantined:
            return "the journal is intact; nothing to repair"
        parts = [f"kept {self.kept} events"]
        if self.damaged:
            parts.append(f"set aside {len(self.damaged)} damaged line(s) ({_ranges(self.damaged)})")
        if self.quarantined:
            parts.append(f"set aside {len(self.quarantined)} later line(s) ({_ranges(self.quarantined)}) that depend "
                         "on a lost proposal; those trials will be proposed anew")
        return "; ".join(parts) + f". Backup: {self.backup}; set-aside lines: {self.quarantine}. Rerun to resume."


def _ranges(numbers: list[int]) -> str:
    shown = ", ".join(str(n) for n in numbers[:10])
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > 10 else "")


def repair_journal(run_dir: str | Path) -> RepairReport:
    """Set aside what a resume cannot use, keeping everything it can.

    Damaged lines (see :meth:`Journal.read`) are removed. Proposals must stay numbered 0, 1, ...:
    from the first proposal that no longer follows (its predecessor was damaged) on, proposals and
    the results of trials not kept are set aside too; results of kept trials are kept wherever they
    are. A torn last line is dropped. The original file is copied to ``journal.jsonl.bak-TIME``
    first and the set-aside lines go to ``journal.quarantine-TIME.jsonl``; the strategy snapshot
    is removed (its line count no longer matches), so the next resume replays the journal.
    """
    run_dir = Path(run_dir)
    path = run_dir / JOURNAL
    if not path.is_file():
        raise InputError(f"{run_dir} has no {JOURNAL}: nothing to repair")
    lines, _ = read_lines(path)
    checker = EventChecker()
    kept: list[bytes] = []
    damaged: list[int] = []
    quarantined: list[int] = []
    aside: list[bytes] = []
    cut = False  # a proposal was lost: later proposals cannot be replayed
    for number, raw in lines:
        event, problem = parse_event(raw)
        if problem is None and not (cut and event.get("event") == "propose"):
            problem = checker.check(event)
            if problem is None:
                kept.append(raw)
                continue
            if event.get("event") == "propose":  # lost numbering (or a broken proposal): cut here
                cut = True
                (quarantined if "comes next" in problem else damaged).append(number)
            elif (cut or damaged) and isinstance(event.get("trial"), int) and event["trial"] >= checker.proposed:
                quarantined.append(number)  # the result of a trial whose proposal was set aside
            else:
                damaged.append(number)
        elif problem is None:
            quarantined.append(number)
        else:
            damaged.append(number)
        aside.append(raw)
    if not aside and path.stat().st_size == sum(len(raw) for raw in kept):
        return RepairReport(len(kept), [], [], None, None)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{JOURNAL}.bak-{stamp}")
    quarantine = path.with_name(f"journal.quarantine-{stamp}.jsonl")
    shutil.copy2(path, backup)
    quarantine.write_bytes(b"".join(aside))
    tmp = path.with_name(f".{JOURNAL}.tmp")
    with tmp.open("wb") as f:
        f.write(b"".join(kept))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    (run_dir / STATE).unlink(missing_ok=True)
    _fsync_dir(run_dir)
    return RepairReport(len(kept), damaged, quarantined, backup, quarantine)
