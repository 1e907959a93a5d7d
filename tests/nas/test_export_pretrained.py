"""The input normalisation an export records (nas.export.pretrained): a run's dataset as its loader prepared
it, the benchmark's and reference networks' published statistics, the identity without data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits as sk_load_digits
from test_export_weights import fabricated_run

from nas.datasets import load_digits, split_indices
from nas.export.pretrained import (
    CIFAR10_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Normalisation,
    for_export,
    identity,
    imagenet,
    nb201_cifar10,
    of_run_data,
)
from nas.rundir import RunView
from search_spaces.errors import InputError
from search_spaces.reference import create_model
from search_spaces.spaces.nb201 import NB201Space, parse_arch_string


def normalise(raw: np.ndarray, norm: Normalisation) -> torch.Tensor:
    """Raw images (N, C, H, W) through the recorded normalisation alone."""
    x = torch.tensor(raw, dtype=torch.float32) / norm.max_pixel_value
    mean, std = torch.tensor(norm.mean).view(1, -1, 1, 1), torch.tensor(norm.std).view(1, -1, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize(("val_fraction", "limit"), [(0.2, None), (0.3, 200)])
def test_a_runs_normalisation_reproduces_its_loader(val_fraction: float, limit: int | None) -> None:
    norm = of_run_data({"dataset": "digits", "val_fraction": val_fraction, "limit": limit, "data_root": None}, 1)
    data = load_digits(val_fraction, limit=limit)
    assert norm == Normalisation("digits", data.mean, data.std, 16.0)
    bunch = sk_load_digits()
    _, val = split_indices(bunch.target, val_fraction=val_fraction, seed=0, limit=limit, source="digits")
    assert torch.equal(normalise(bunch.images[val][:, None], norm), data.val_x)  # bit for bit


def test_defaults_without_a_dataset() -> None:
    assert of_run_data(None, 3) == identity(3) == Normalisation(None, (0.0,) * 3, (1.0,) * 3, 1.0)
    assert of_run_data({"dataset": None}, 1) == identity(1)
    assert imagenet(3) == Normalisation("imagenet", IMAGENET_MEAN, IMAGENET_STD, 255.0)
    assert imagenet(1) == identity(1)  # ImageNet statistics only mean something for RGB
    assert nb201_cifar10(3).mean == CIFAR10_MEAN and nb201_cifar10(3).max_pixel_value == 255.0
    assert of_run_data({"dataset": "digits", "val_fraction": 0.2}, 3) == identity(3)  # channels differ


def test_an_unreadable_dataset_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"dataset 'cifar10', which cannot be read here: .*does not exist"):
        of_run_data({"dataset": "cifar10", "data_root": str(tmp_path / "missing")}, 3)


def test_for_export_by_source(tmp_path: Path) -> None:
    fabricated_run(tmp_path / "run")  # a search on digits (config default) with a (1, 8, 8) space
    run = RunView(tmp_path / "run")
    graph = run.graph(0)
    assert for_export(graph, run=str(tmp_path / "run")).dataset == "digits"
    resnet = create_model("resnet18_cifar")
    assert for_export(resnet, model="resnet18_cifar") == imagenet(3)
    assert for_export(NB201Space().to_graph(parse_arch_string(
        "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")), nb201=True).dataset == "cifar10"
    assert for_export(resnet) == identity(3)


def test_manifest_round_trip_and_malformed_entries() -> None:
    norm = nb201_cifar10(3)
    assert Normalisation.from_dict(norm.to_dict()) == norm
    with pytest.raises(InputError, match="malformed normalisation"):
        Normalisation.from_dict({"dataset": "x", "mean": [0.5]})


def test_a_search_records_its_normalisation_so_export_needs_no_data(tmp_path: Path) -> None:
    """data.json (written by the search) is read before the dataset: a run whose data is not readable
    here (data_root gone) still exports with the statistics its trials saw."""
    import json

    from nas.rundir import write_data_stats

    fabricated_run(tmp_path / "run")
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["data"] = {**(config.get("data") or {}), "dataset": "cifar10", "data_root": str(tmp_path / "gone")}
    config_path.write_text(json.dumps(config))
    graph = RunView(tmp_path / "run").graph(0)
    with pytest.raises(InputError, match="cannot be read here"):
        for_export(graph, run=str(tmp_path / "run"))
    write_data_stats(tmp_path / "run", "digits", (0.3,), (0.4,), 16.0)
    assert for_export(graph, run=str(tmp_path / "run")) == Normalisation("digits", (0.3,), (0.4,), 16.0)
