"""Optuna's TPE sampler: a strong model-based baseline, single- and multi-objective.

``constant_liar`` makes concurrent proposals (asynchronous Ray workers) avoid each other. With
several objectives Optuna's TPESampler runs its multi-objective form (MOTPE, Ozaki et al. 2020:
the good/bad split by non-dominated rank and hypervolume contribution). See
:mod:`nas.strategies.optuna_base` for repeats, failures, early-stopped trials and state.
"""

from __future__ import annotations

from typing import Any

from nas.strategies.optuna_base import OptunaStrategy
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


class OptunaTPE(OptunaStrategy):
    """TPE (Bergstra et al. 2011) via ``optuna.samplers.TPESampler``; maximises the score."""

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup_trials: int = 10, multivariate: bool = True,
                 constant_liar: bool = True, num_objectives: int = 1) -> None:
        if n_startup_trials < 0:
            raise InputError(f"n_startup_trials must be >= 0, got {n_startup_trials}")
        super().__init__(space, seed, num_objectives, n_startup_trials=n_startup_trials, multivariate=multivariate,
                         constant_liar=constant_liar)

    def _make_sampler(self) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=self.seed, **self.options)
