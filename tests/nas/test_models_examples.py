"""models/ holds examples produced by the tool; regenerating them must give the same files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nas.datasets import load_digits
from nas.export.examples import MANIFEST, MODELS_DIR, regenerate
from nas.export.exporter import import_source
from nas.export.weights import load_weights


def test_regenerating_the_examples_gives_identical_files(tmp_path: Path) -> None:
    written = regenerate(MODELS_DIR, tmp_path)
    manifest = json.loads((MODELS_DIR / MANIFEST).read_text())
    expected = {f"{name}.py" for name in manifest} | {f"{n}.safetensors" for n, e in manifest.items() if e["weights"]}
    assert {p.name for p in written} == expected
    for path in written:
        assert path.read_bytes() == (MODELS_DIR / path.name).read_bytes(), f"{path.name} differs from models/"


def test_digits_example_reproduces_its_search_accuracy() -> None:
    manifest = json.loads((MODELS_DIR / MANIFEST).read_text())["digits_evolution_best"]
    module = import_source(MODELS_DIR / "digits_evolution_best.py")
    model = module.DigitsEvolutionBest()
    model.load_state_dict(load_weights(MODELS_DIR / "digits_evolution_best.safetensors"))
    model.eval()
    data = load_digits()  # the search's validation split (seed 0, 20 %)
    with torch.no_grad():
        acc = (model(data.val_x).argmax(1) == data.val_y).float().mean().item()
    assert acc == pytest.approx(manifest["header"]["val_acc"], abs=1e-6)


def test_nb201_example_is_the_benchmark_network() -> None:
    module = import_source(MODELS_DIR / "nb201_best_6111.py")
    model = module.Nb201Best6111()
    assert sum(p.numel() for p in model.parameters()) == 1_073_466  # params_m 1.073466 in the NB-201 table
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
