"""Durable run directory: config, append-only journal, strategy snapshots.

Layout of a run directory::

    config.json     the run's configuration (resume refuses a different one, showing the diff)
    journal.jsonl   one JSON event per line, appended and fsynced: the single source of truth
    state.json      snapshot of the strategy after journal line N (atomic replace)

Events: ``{"event": "propose", "trial": id, "arch": {...}, "hash": h, "t": seconds}`` and
``{"event": "result", "trial": id, "status": "ok" | "failed" | "cached", "score": x | null,
"reason": str | null, "metrics": {...}, "t": seconds}``. A torn last line (the process died
mid-write) is dropped on read and truncated away before the next append.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from search_spaces.errors import InputError

CONFIG = "config.json"
JOURNAL = "journal.jsonl"
STATE = "state.json"


class ConfigMismatch(InputError):
    """A run directory holds a run with a different configuration."""


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON to ``path`` atomically: temp file in the same directory, fsync, rename, fsync dir."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with tmp.open("w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write (unserialisable data, full disk) leaves nothing behind
        raise
    _fsync_dir(path.parent)


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
        """All complete events; a torn final line is dropped (and truncated before the next append).

        Reading never modifies the file: ``nas show`` may read the journal of a live run.
        """
        if not self.path.exists():
            return []
        events = []
        good_bytes = 0
        with self.path.open("rb") as f:
            for raw in f:
                if not raw.endswith(b"\n"):
                    break
                try:
                    events.append(json.loads(raw))
                except json.JSONDecodeError:
                    break
                good_bytes += len(raw)
        self._lines = len(events)
        self._good_bytes = good_bytes
        return events

    def append(self, event: dict[str, Any]) -> int:
        """Append one event durably; returns the number of lines in the journal after it."""
        if self._file is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if self.path.exists():
                if self._good_bytes is None:
                    self.read()
                if self._good_bytes is not None and self.path.stat().st_size > self._good_bytes:
                    with self.path.open("r+b") as f:  # drop a torn last line before appending
                        f.truncate(self._good_bytes)
            self._file = self.path.open("a")
        event = {**event, "t": round(time.time() - self.start, 3)}
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()
        if self.durable:
            os.fsync(self._file.fileno())
        self._lines += 1
        return self._lines

    @property
    def lines(self) -> int:
        return self._lines

    def sync(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    # ------------------------------------------------------------------ snapshots
    def save_state(self, strategy_state: dict[str, Any]) -> None:
        atomic_write_json(self.run_dir / STATE, {"journal_lines": self._lines, "strategy": strategy_state})

    def load_state(self) -> tuple[int, dict[str, Any]] | None:
        path = self.run_dir / STATE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return int(data["journal_lines"]), data["strategy"]

    def set_time_offset(self, seconds: float) -> None:
        """Continue the run's clock on resume (``t`` keeps increasing across restarts)."""
        self.start = time.time() - seconds
