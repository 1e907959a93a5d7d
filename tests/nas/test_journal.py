"""nas.journal: append/read round trip, torn last line, atomic JSON writes, config checks, snapshots."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nas.journal import (
    CONFIG,
    JOURNAL,
    STATE,
    ConfigMismatch,
    Journal,
    JournalDamaged,
    atomic_write_json,
    config_diff,
    repair_journal,
)

EVENTS = [
    {"event": "propose", "trial": 0, "arch": {"space": "nb201", "encoding": {"e": 1}}, "hash": "h0"},
    {"event": "result", "trial": 0, "status": "ok", "score": 0.5, "reason": None, "metrics": {"params": 3}},
    {"event": "propose", "trial": 1, "arch": {"space": "nb201", "encoding": {"e": 2}}, "hash": "h1"},
]


def strip_t(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "t"} for e in events]


def append_raw(run_dir: Path, *lines: bytes | dict) -> None:
    """Append lines as they are (bytes) or as one JSON event per line, bypassing the journal's checks."""
    with (run_dir / JOURNAL).open("ab") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps(line).encode() + b"\n")


def write_events(run_dir: Path, events: list[dict], durable: bool = True) -> Journal:
    journal = Journal(run_dir, durable=durable)
    for i, event in enumerate(events, start=1):
        assert journal.append(event) == i
    journal.close()
    return journal


@pytest.mark.parametrize("durable", [True, False])
def test_append_read_round_trip(tmp_path: Path, durable: bool) -> None:
    write_events(tmp_path / "run", EVENTS, durable)
    journal = Journal(tmp_path / "run")
    events = journal.read()
    assert strip_t(events) == EVENTS
    assert all(isinstance(e["t"], float) and e["t"] >= 0 for e in events)
    assert journal.lines == 3
    lines = (tmp_path / "run" / JOURNAL).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)  # one event per line
    assert journal.append({"event": "result", "trial": 1, "status": "failed", "score": None}) == 4
    journal.close()
    assert len(Journal(tmp_path / "run").read()) == 4
    assert Journal(tmp_path / "empty").read() == []


@pytest.mark.parametrize("torn", [b'{"event":"res', b'{"event":"result","trial":1}', b"{"])
def test_torn_last_line_is_dropped_and_truncated(tmp_path: Path, torn: bytes) -> None:
    write_events(tmp_path, EVENTS[:2])
    path = tmp_path / JOURNAL
    good = path.read_bytes()
    with path.open("ab") as f:
        f.write(torn)  # the process died mid-write (no newline)
    journal = Journal(tmp_path)
    assert strip_t(journal.read()) == EVENTS[:2]
    assert path.read_bytes() == good + torn  # reading never writes (`nas show` of a live run)
    assert journal.append(EVENTS[2]) == 3  # the torn line is truncated away before the append
    assert path.read_bytes().startswith(good + b'{"event":"propose","trial":1,')
    journal.close()
    assert strip_t(Journal(tmp_path).read()) == EVENTS


def test_append_without_read_truncates_a_torn_line_first(tmp_path: Path) -> None:
    write_events(tmp_path, EVENTS[:1])
    with (tmp_path / JOURNAL).open("ab") as f:
        f.write(b'{"event":"result","tri')
    journal = Journal(tmp_path)
    assert journal.append(EVENTS[1]) == 2  # counts the one good line already there
    journal.close()
    raw = (tmp_path / JOURNAL).read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 2
    assert strip_t(Journal(tmp_path).read()) == EVENTS[:2]


DAMAGE = {
    "garbage": b"not json\n",
    "binary": b"\xff\xfe\x00\x01 binary\n",
    "nul-filled": b"\x00" * 16384 + b"\n",
    "unknown event": b'{"event":"res#ult","trial":0,"status":"ok","score":0.5}\n',
    "unknown trial": b'{"event":"result","trial":99999,"status":"ok","score":0.5}\n',
    "a list": b"[1, 2]\n",
    "bad status": b'{"event":"result","trial":0,"status":"done","score":0.5}\n',
    "proposal out of order": b'{"event":"propose","trial":7,"arch":{},"hash":"h"}\n',
    "objective values not numbers": b'{"event":"result","trial":0,"status":"ok","score":0.5,"values":["a",1]}\n',
    "objective values not a list": b'{"event":"result","trial":0,"status":"ok","score":0.5,"values":0.5}\n',
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_a_damaged_line_is_refused_with_its_file_and_line(tmp_path: Path, kind: str) -> None:
    write_events(tmp_path, EVENTS[:1])
    path = tmp_path / JOURNAL
    append_raw(tmp_path, DAMAGE[kind], *EVENTS[2:])  # lines after the damage must not be silently dropped
    before = path.read_bytes()
    with pytest.raises(JournalDamaged) as err:
        Journal(tmp_path).read()
    message = str(err.value)
    assert err.value.line == 2 and f"{path}, line 2:" in message and f"nas repair {tmp_path}" in message
    assert len(message) < 400 + 2 * len(str(tmp_path)), "the message quotes a bounded part of the line"
    assert path.read_bytes() == before  # reading never writes
    with pytest.raises(JournalDamaged):
        Journal(tmp_path).append(EVENTS[1])  # nor does a writer truncate it
    assert path.read_bytes() == before


def test_repair_sets_damaged_lines_aside_with_a_backup(tmp_path: Path) -> None:
    write_events(tmp_path, EVENTS[:1])
    path = tmp_path / JOURNAL
    append_raw(tmp_path, DAMAGE["garbage"], *EVENTS[1:])
    original = path.read_bytes()
    (tmp_path / STATE).write_text('{"journal_lines": 4, "strategy": {}}')
    report = repair_journal(tmp_path)
    assert report.damaged == [2] and report.quarantined == [] and report.kept == 3
    assert report.backup is not None and report.backup.read_bytes() == original
    assert report.quarantine is not None and report.quarantine.read_bytes() == DAMAGE["garbage"]
    assert strip_t(Journal(tmp_path).read()) == EVENTS
    assert not (tmp_path / STATE).exists()  # its line count no longer matches: the journal is replayed
    assert "damaged" in report.describe()
    assert repair_journal(tmp_path).describe() == "the journal is intact; nothing to repair"


def test_repair_sets_aside_what_follows_a_lost_proposal(tmp_path: Path) -> None:
    events = [*EVENTS, {"event": "propose", "trial": 2, "arch": {"e": 3}, "hash": "h2"},
              {"event": "result", "trial": 1, "status": "ok", "score": 0.7},
              {"event": "result", "trial": 2, "status": "ok", "score": 0.9}]
    write_events(tmp_path, events)
    path = tmp_path / JOURNAL
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"garbage\n"  # trial 1's proposal is lost: trial 2's cannot be replayed after it
    path.write_bytes(b"".join(lines))
    report = repair_journal(tmp_path)
    assert report.damaged == [3] and report.quarantined == [4, 5, 6]
    assert strip_t(Journal(tmp_path).read()) == EVENTS[:2]


def test_an_unreadable_snapshot_is_ignored(tmp_path: Path) -> None:
    write_events(tmp_path, EVENTS)
    for text in ("{not json", '{"journal_lines": "x"}', "[]"):
        (tmp_path / STATE).write_text(text)
        assert Journal(tmp_path).load_state() is None


def test_time_offset_continues_the_clock(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.set_time_offset(100.0)
    journal.append(EVENTS[0])
    journal.close()
    assert 100.0 <= Journal(tmp_path).read()[0]["t"] < 110.0


def test_atomic_write_json_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    atomic_write_json(path, {"b": [1, 2], "a": None})
    atomic_write_json(path, {"c": 3.5})  # replaces
    assert json.loads(path.read_text()) == {"c": 3.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"c": 3.5}  # a failed write leaves the old file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.json"]  # and no temp file


def test_snapshot_round_trip(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    assert journal.load_state() is None
    journal.append(EVENTS[0])
    journal.append(EVENTS[1])
    journal.save_state({"strategy": "random", "next_id": 1})
    journal.close()
    assert Journal(tmp_path).load_state() == (2, {"strategy": "random", "next_id": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == [JOURNAL, STATE]


CONFIG_A = {"strategy": "evolution", "seed": 0, "train": {"lr": 0.05, "epochs": 3}, "address": None, "trials": 20}


def test_open_config_creates_then_resumes(tmp_path: Path) -> None:
    run_dir = tmp_path / "deep" / "run"
    assert Journal(run_dir).open_config(CONFIG_A) is False
    assert json.loads((run_dir / CONFIG).read_text()) == CONFIG_A
    assert Journal(run_dir).open_config(dict(CONFIG_A)) is True


def test_config_mismatch_lists_the_differing_keys(tmp_path: Path) -> None:
    Journal(tmp_path).open_config(CONFIG_A)
    changed = {**CONFIG_A, "seed": 1, "train": {"lr": 0.1, "epochs": 3}, "new_key": "x"}
    del changed["trials"]
    with pytest.raises(ConfigMismatch) as err:
        Journal(tmp_path).open_config(changed)
    message = str(err.value)
    assert "seed: 0 -> 1" in message and "train.lr: 0.05 -> 0.1" in message
    assert "new_key: (absent) -> 'x'" in message and "trials: 20 -> (absent)" in message
    assert "epochs" not in message and "strategy" not in message
    assert json.loads((tmp_path / CONFIG).read_text()) == CONFIG_A  # untouched


def test_ignored_keys_may_differ(tmp_path: Path) -> None:
    Journal(tmp_path).open_config(CONFIG_A, ignore=("address",))
    assert Journal(tmp_path).open_config({**CONFIG_A, "address": "auto"}, ignore=("address",)) is True
    with pytest.raises(ConfigMismatch, match="address"):
        Journal(tmp_path).open_config({**CONFIG_A, "address": "auto"})


def test_corrupt_config_is_a_mismatch(tmp_path: Path) -> None:
    (tmp_path / CONFIG).write_text("{not json")
    with pytest.raises(ConfigMismatch, match="not valid JSON"):
        Journal(tmp_path).open_config(CONFIG_A)


def test_config_diff() -> None:
    assert config_diff(CONFIG_A, CONFIG_A) == []
    assert config_diff({"a": {"b": {"c": 1}}}, {"a": {"b": {"c": 2}}}) == ["a.b.c: 1 -> 2"]
    assert config_diff({"a": {"b": 1}}, {"a": 5}) == ["a: {'b': 1} -> 5"]
