"""Paths to shared test data (importable from any test directory: tests/ is on sys.path)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ../shared beside the checkout (CI clones main with shared/ beside it); NB201_TABLE overrides
NB201_TABLE = Path(os.environ.get("NB201_TABLE", REPO.parent / "shared" / "benchmarks" / "nb201" / "nb201_cifar10.csv"))
FIXTURES = REPO.parent / "shared" / "fixtures"  # small files that reproduce reported bugs
