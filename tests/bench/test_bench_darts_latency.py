"""bench/darts_latency.py at toy sizes: the searches run with and without the latency term and the table prints."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "darts_latency.py"


@pytest.mark.slow
def test_toy_run_prints_one_row_per_weight(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("darts_latency", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "darts_latency", bench)
    spec.loader.exec_module(bench)
    bench.main(["--weights", "0", "2", "--seeds", "2", "--epochs", "1", "--layers", "2", "--eval-layers", "2"])
    out = capsys.readouterr().out
    rows = {w: cells for w, cells in re.findall(r"^\s+(0|2)((?:\s+\S+ \+-\s*\S+|\s+-)+)$", out, re.MULTILINE)}
    assert sorted(rows) == ["0", "2"], out
    accuracy, expected_ms = (cell.split()[0] for cell in re.findall(r"\S+ \+-\s*\S+|-", rows["0"])[:2])
    assert 0.0 <= float(accuracy) <= 1.0 and expected_ms == "-", out  # no latency term at weight 0
    assert float(re.findall(r"\S+ \+-\s*\S+|-", rows["2"])[1].split()[0]) > 0, out
