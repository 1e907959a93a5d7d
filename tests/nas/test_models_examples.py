"""models/ holds examples produced by the tool; regenerating them must give the same files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits

from nas.datasets import load_digits, split_indices
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


def test_digits_example_reproduces_the_trials_accuracy_from_raw_pixels_and_its_cfg_alone() -> None:
    """What a user of the file does: timm's entry point, the raw data, PRETRAINED_CFG's normalisation.

    The validation split is the search's (nas.datasets: seed 0, 20 %); only its indices come from the
    project, the pixels come straight from scikit-learn (0..16)."""
    manifest = json.loads((MODELS_DIR / MANIFEST).read_text())["digits_evolution_best"]
    module = import_source(MODELS_DIR / "digits_evolution_best.py")
    cfg = module.PRETRAINED_CFG
    model = module.create_model(pretrained=True).eval()
    bunch = sk_load_digits()
    _, val = split_indices(bunch.target, val_fraction=0.2, seed=0, limit=None, source="scikit-learn digits")
    x = torch.tensor(bunch.images[val], dtype=torch.float32).unsqueeze(1) / cfg["max_pixel_value"]
    x = (x - torch.tensor(cfg["mean"]).view(1, -1, 1, 1)) / torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    assert tuple(x.shape[1:]) == cfg["input_size"]
    with torch.no_grad():
        acc = (model(x).argmax(1) == torch.from_numpy(bunch.target[val])).float().mean().item()
    assert acc == pytest.approx(manifest["header"]["val_acc"], abs=1e-6)
    model.reset_classifier(7)
    assert model(x[:3]).shape == (3, 7)


def _init_lines(source: str, class_name: str) -> list[str]:
    """The ``self.NAME = ...`` statements (joined over continuation lines) of the model's __init__."""
    body = source[source.index(f"class {class_name}("):]
    body = body[body.index("def __init__"):body.index("self.reset_parameters()")]
    return [" ".join(part.split()) for part in re.split(r"\n        (?=self\.)", body)[1:]]


def test_digits_example_has_no_repeated_block_code() -> None:
    source = (MODELS_DIR / "digits_evolution_best.py").read_text()
    lines = _init_lines(source, "DigitsEvolutionBest")
    layers = [line.partition(" = ")[2] for line in lines if "Pool2d(" not in line]  # pools between stages hold nothing
    assert len(layers) == len(set(layers))  # no two attributes build the same layers
    for block in ("AttentionBlock(", "ResidualBlock(", "conv_bn(64, 64, 5)"):  # the three stages, one call each
        assert sum(block in line for line in lines) == 1, block
    assert sum("for _ in range(3)" in line or "for in_ch in (64, 32, 32)" in line for line in lines) == 3


def test_nb201_example_is_one_cell_class_and_the_skeleton() -> None:
    source = (MODELS_DIR / "nb201_best_6111.py").read_text()
    assert len(source.splitlines()) <= 150
    assert re.findall(r"^class (\w+)\(", source, re.MULTILINE) == ["Cell", "ResNetBasicBlock", "Nb201Best6111"]
    assert source.count("Cell(channels=") == 3  # one stage of cells per resolution


def test_nb201_example_is_the_benchmark_network() -> None:
    module = import_source(MODELS_DIR / "nb201_best_6111.py")
    model = module.Nb201Best6111()
    assert sum(p.numel() for p in model.parameters()) == 1_073_466  # params_m 1.073466 in the NB-201 table
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
