"""Optuna's TPE sampler behind the ask/tell interface: a strong model-based baseline.

Each space variable becomes an Optuna parameter over its value indices: categorical variables as
``CategoricalDistribution`` (no order), ordinal ones as ``IntDistribution`` (ordered). Proposals
use Optuna's ask-and-tell API; ``constant_liar`` makes concurrent proposals (asynchronous Ray
workers) avoid each other. A failed trial is told to Optuna as FAIL, so TPE ignores it.

State: Optuna's study and sampler are not plain data, so ``state_dict`` keeps the ordered log of
asks and tells; ``load_state_dict`` rebuilds the study from the seed and replays that log, which
restores the sampler's random state exactly (the same seed and log give the same next proposal).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from nas.strategies.base import Strategy
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


class OptunaTPE(Strategy):
    """TPE (Bergstra et al. 2011) via ``optuna.samplers.TPESampler``; maximises the score."""

    name = "tpe"

    def __init__(self, space: SearchSpace, seed: int = 0, n_startup_trials: int = 10, multivariate: bool = True,
                 constant_liar: bool = True) -> None:
        super().__init__(space, seed)
        if n_startup_trials < 0:
            raise InputError(f"n_startup_trials must be >= 0, got {n_startup_trials}")
        self.options = {"n_startup_trials": n_startup_trials, "multivariate": multivariate,
                        "constant_liar": constant_liar}
        self.log: list[list[Any]] = []  # ["ask"] or ["tell", trial_id, score | None], in order
        self._new_study()

    def _new_study(self) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        sampler = optuna.samplers.TPESampler(seed=self.seed, **self.options)
        self.study = optuna.create_study(direction="maximize", sampler=sampler)
        self.distributions = {
            v.name: IntDistribution(0, v.cardinality - 1) if v.ordinal
            else CategoricalDistribution(list(range(v.cardinality)))
            for v in self.space.variables
        }
        self.optuna_trials: dict[int, Any] = {}

    def _propose(self) -> Hashable:
        trial = self.study.ask(self.distributions)
        self.optuna_trials[self.next_id] = trial
        self.log.append(["ask"])
        return self.space.decode([trial.params[v.name] for v in self.space.variables])

    def _on_result(self, trial_id: int, arch: Hashable, score: float) -> None:
        self.study.tell(self.optuna_trials.pop(trial_id), score)
        self.log.append(["tell", trial_id, score])

    def _on_failure(self, trial_id: int, arch: Hashable) -> None:
        from optuna.trial import TrialState

        self.study.tell(self.optuna_trials.pop(trial_id), state=TrialState.FAIL)
        self.log.append(["tell", trial_id, None])

    def _extra_state(self) -> dict[str, Any]:
        return {"options": dict(self.options), "log": [list(entry) for entry in self.log]}  # a snapshot

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Rebuild the study and replay the log (the base class already restored the bookkeeping)."""
        from optuna.trial import TrialState

        self.options = dict(state["options"])
        self.log = []
        self._new_study()
        asked = 0
        for entry in state["log"]:
            if entry[0] == "ask":
                self.optuna_trials[asked] = self.study.ask(self.distributions)
                asked += 1
            else:
                _, trial_id, score = entry
                trial = self.optuna_trials.pop(trial_id)
                if score is None:
                    self.study.tell(trial, state=TrialState.FAIL)
                else:
                    self.study.tell(trial, score)
        self.log = [list(e) for e in state["log"]]
