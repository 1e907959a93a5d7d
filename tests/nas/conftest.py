"""Fixtures for the tests that start Ray (helpers: ray_helpers.py)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short, private temp dir for one test's Ray (sessions, sockets, logs); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="nasray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
