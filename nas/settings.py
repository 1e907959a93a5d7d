"""Settings dataclasses as stored (``config.json``, a retraining's checkpoint identity).

A stored configuration is compared exactly when a run resumes, so a field added to a settings
dataclass later would make every configuration stored before it differ. Such a field is declared
with :func:`added_later`: :func:`stored_dict` leaves it out while it has its default (which must
be the behaviour of the configurations stored before it existed, or its automatic choice), and a
configuration stored without it reads back with that default.
"""

from __future__ import annotations

from dataclasses import asdict, field, fields
from typing import Any

ADDED_LATER = "added_later"
"""Metadata key marking a field added after configurations with its dataclass were stored."""


def added_later(default: Any) -> Any:
    """A dataclass field with ``default`` that is stored only when it differs from it."""
    return field(default=default, metadata={ADDED_LATER: True})


def stored_dict(settings: Any) -> dict[str, Any]:
    """``asdict(settings)`` without the :func:`added_later` fields that have their default."""
    data = asdict(settings)
    for f in fields(settings):
        if f.metadata.get(ADDED_LATER) and data[f.name] == f.default:
            del data[f.name]
    return data
