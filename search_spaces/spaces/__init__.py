"""Search spaces: NAS-Bench-201 cells, DARTS cells, COMBO's binary cells, and a macro space over the classic blocks."""

from __future__ import annotations

from typing import Any

from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace, Variable
from search_spaces.spaces.binary import BinarySpace
from search_spaces.spaces.darts import DartsSpace
from search_spaces.spaces.macro import MacroSpace
from search_spaces.spaces.nb201 import NB201Space

SPACES: dict[str, type[SearchSpace]] = {"nb201": NB201Space, "darts": DartsSpace, "macro": MacroSpace,
                                        "binary": BinarySpace}


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """Space by name with constructor kwargs (e.g. input_shape, num_classes); ValueError if unknown."""
    try:
        cls = SPACES[name]
    except KeyError:
        raise InputError(f"unknown search space {name!r}; choose one of {sorted(SPACES)}") from None
    return cls(**kwargs)


__all__ = ["SPACES", "BinarySpace", "DartsSpace", "MacroSpace", "NB201Space", "SearchSpace", "Variable", "make_space"]
