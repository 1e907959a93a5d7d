"""Search strategies behind one ask/tell interface (see :mod:`nas.strategies.base`)."""

from __future__ import annotations

from typing import Any

from nas.strategies.base import Proposal, Strategy
from nas.strategies.combo import Combo
from nas.strategies.evolution import AnnealedEvolution, RegularizedEvolution
from nas.strategies.nsga2 import OptunaNSGA2
from nas.strategies.random_search import RandomSearch
from nas.strategies.tpe import OptunaTPE
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

STRATEGIES: dict[str, type[Strategy]] = {
    RegularizedEvolution.name: RegularizedEvolution,
    AnnealedEvolution.name: AnnealedEvolution,
    RandomSearch.name: RandomSearch,
    OptunaTPE.name: OptunaTPE,
    Combo.name: Combo,
    OptunaNSGA2.name: OptunaNSGA2,
}


MULTI_OBJECTIVE: tuple[str, ...] = tuple(n for n, cls in STRATEGIES.items() if cls.multi_objective)
"""The strategies with a multi-objective form."""


def make_strategy(name: str, space: SearchSpace, seed: int = 0, num_objectives: int = 1, **options: Any) -> Strategy:
    """Strategy by name; ValueError naming the known strategies if unknown."""
    try:
        cls = STRATEGIES[name]
    except KeyError:
        raise InputError(f"unknown strategy {name!r}; choose one of {sorted(STRATEGIES)}") from None
    if num_objectives > 1:
        options["num_objectives"] = num_objectives
    return cls(space, seed=seed, **options)


__all__ = ["MULTI_OBJECTIVE", "STRATEGIES", "AnnealedEvolution", "Combo", "OptunaNSGA2", "OptunaTPE", "Proposal",
           "RandomSearch", "RegularizedEvolution", "Strategy", "make_strategy"]
