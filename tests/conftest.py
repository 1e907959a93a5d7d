"""Shared test set-up: one torch thread (tiny nets, shared CI cores), Ray environment, shared data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI clones main with shared/ beside it); NB201_TABLE overrides
NB201_TABLE = Path(os.environ.get("NB201_TABLE", REPO.parent / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
