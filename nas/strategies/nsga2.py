"""NSGA-II (Deb et al. 2002) via Optuna's ``NSGAIISampler``: the classic multi-objective genetic algorithm.

Generations of ``population_size`` trials; parents by binary tournament on non-dominated rank and
crowding distance among the elite (the best ``population_size`` by that order of the previous
generations), children by uniform crossover (probability ``crossover_prob``, each variable
swapped with ``swapping_prob``) and mutation (each variable redrawn with ``mutation_prob``,
default 1 / number of variables). Asynchronous workers are fine: a trial belongs to the
generation being filled when it is asked. With one objective it is a plain genetic algorithm.
See :mod:`nas.strategies.optuna_base` for repeats, failures, early-stopped trials and state.
"""

from __future__ import annotations

from typing import Any

from nas.strategies.optuna_base import OptunaStrategy
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


class OptunaNSGA2(OptunaStrategy):
    """NSGA-II via ``optuna.samplers.NSGAIISampler``; maximises every objective."""

    name = "nsga2"

    def __init__(self, space: SearchSpace, seed: int = 0, population_size: int = 20, crossover_prob: float = 0.9,
                 swapping_prob: float = 0.5, mutation_prob: float | None = None, num_objectives: int = 1) -> None:
        # population 20 (Optuna's default is 50): NAS budgets are tens to hundreds of trials, so a
        # generation must be a small share of the budget for selection to act at all
        if isinstance(population_size, bool) or not isinstance(population_size, int) or population_size < 2:
            raise InputError(f"nsga2: population_size must be an integer >= 2, got {population_size!r}")
        for name, value in (("crossover_prob", crossover_prob), ("swapping_prob", swapping_prob),
                            ("mutation_prob", mutation_prob)):
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise InputError(f"nsga2: {name} must be a probability in [0, 1], got {value!r}")
        super().__init__(space, seed, num_objectives, population_size=population_size, crossover_prob=crossover_prob,
                         swapping_prob=swapping_prob, mutation_prob=mutation_prob)

    def _make_sampler(self) -> Any:
        import optuna

        return optuna.samplers.NSGAIISampler(seed=self.seed, **self.options)
