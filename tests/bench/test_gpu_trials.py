"""bench/gpu_trials.py --smoke: every section's code path runs on a CPU, so the GPU benchmark cannot rot."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "gpu_trials.py"


@pytest.mark.slow
def test_smoke_mode_runs_every_section_on_cpu(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("gpu_trials", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gpu_trials", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    assert bench.main(["--smoke"]) == 0
    out = capsys.readouterr().out
    rows = {(m, s): float(acc) for m, s, acc in
            re.findall(r"^ {3}(macro-best|resnet18)\s+(fp32 eager|defaults)\s+fp32\s+\d+\s+\S+\s+\S+\s+\S+\s+(\S+)$",
                       out, re.MULTILINE)}
    assert len(rows) == 4, out
    for model in ("macro-best", "resnet18"):  # fp32 on CPU: uint8 data normalised per batch trains identically
        assert rows[(model, "fp32 eager")] == rows[(model, "defaults")], out
    assert re.search(r"^ {3}fp32\s+[\d.]+\s+\(GPU only\)$", out, re.MULTILINE), out
    assert re.search(r"^ {3}bf16\s+[\d.]+\s+\(GPU only\)$", out, re.MULTILINE), out
    assert "3. two 0.5-GPU trials with the shared dataset: skipped (needs a CUDA device)" in out
    assert "4. torch.compile: skipped" in out
    assert bench.trainer.CUDA_TUNING  # restored
