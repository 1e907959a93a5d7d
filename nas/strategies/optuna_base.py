"""Optuna samplers behind the ask/tell interface (:class:`OptunaStrategy`; TPE and NSGA-II subclass it).

Each space variable becomes an Optuna parameter over its value indices: categorical variables as
``CategoricalDistribution`` (no order), ordinal ones as ``IntDistribution`` (ordered). Proposals
use Optuna's ask-and-tell API. A failed trial is told to Optuna as FAIL, so the sampler ignores
it. A repeated proposal is told at once (its known score, or FAIL) and the sampler asked again
(see the base contract); a trial stopped early is told as PRUNED with its score as the
intermediate value at the step (epoch) it reached, Optuna's own way of ranking low-fidelity
results below full ones (multi-objective studies take no intermediate values: PRUNED alone).
Multi-objective: the study has one "maximize" direction per objective and is told the vector.

State: Optuna's study and sampler are not plain data, so ``state_dict`` keeps the ordered log of
asks and tells; ``load_state_dict`` rebuilds the study from the seed and replays that log, which
restores the sampler's random state exactly (the same seed and log give the same next proposal).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Hashable
from typing import Any

from nas.strategies.base import Score, Strategy, score_to_json
from search_spaces.spaces.base import SearchSpace


class OptunaStrategy(Strategy):
    """An Optuna sampler (:meth:`_make_sampler`, built from ``self.options``) maximising the score."""

    multi_objective = True

    def __init__(self, space: SearchSpace, seed: int = 0, num_objectives: int = 1, **options: Any) -> None:
        super().__init__(space, seed, num_objectives)
        self.options = options
        self.log: list[list[Any]] = []  # ["ask"] or ["tell", trial_id, score | None], in order
        self._new_study()

    @abstractmethod
    def _make_sampler(self) -> Any:
        """The Optuna sampler for ``self.options`` and ``self.seed``."""

    def _new_study(self) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, IntDistribution

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.study = optuna.create_study(directions=["maximize"] * self.num_objectives, sampler=self._make_sampler())
        self.distributions = {
            v.name: IntDistribution(0, v.cardinality - 1) if v.ordinal
            else CategoricalDistribution(list(range(v.cardinality)))
            for v in self.space.variables
        }
        self.optuna_trials: dict[int, Any] = {}

    def _propose(self) -> Hashable:
        trial = self.study.ask(self.distributions)
        self.optuna_trials[self.next_id] = trial  # the id ask gives it (a discarded repeat is replaced)
        self.log.append(["ask"])
        return self.space.decode([trial.params[v.name] for v in self.space.variables])

    def _discard(self, arch: Hashable) -> None:
        """A repeated proposal is told without spending a trial: the known full-budget score when
        there is one (Optuna's usual answer to a duplicate), else FAIL (pending, failed, early-stopped)."""
        from optuna.trial import TrialState

        trial = self.optuna_trials.pop(self.next_id)
        known = score_to_json(self.proposed.get(arch))
        if known is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, known)
        self.log.append(["tell", trial.number, known])

    def _adopt(self, arch: Hashable) -> None:
        """The substitute for a repeat becomes an Optuna trial with fixed parameters (``enqueue_trial``)."""
        params = {v.name: int(i) for v, i in zip(self.space.variables, self.space.encode(arch), strict=True)}
        self.study.enqueue_trial(params)
        self.optuna_trials[self.next_id] = self.study.ask(self.distributions)
        self.log += [["enqueue", params], ["ask"]]

    def _on_result(self, trial_id: int, arch: Hashable, score: Score) -> None:
        trial = self.optuna_trials.pop(trial_id)
        value = score_to_json(score)
        self.study.tell(trial, value)
        self.log.append(["tell", trial.number, value])

    def _on_partial(self, trial_id: int, arch: Hashable, score: Score, budget: float) -> None:
        """Optuna's own multi-fidelity: the score is the trial's intermediate value at step ``budget``
        and the trial is PRUNED, so the sampler ranks it below trials that ran to the full budget
        (multi-objective: PRUNED without an intermediate value, which Optuna does not take there)."""
        trial = self.optuna_trials.pop(trial_id)
        step = max(0, round(budget))
        value = None if self.multi else float(score)  # type: ignore[arg-type]
        _tell_pruned(self.study, trial, value, step)
        self.log.append(["prune", trial.number, value, step])

    def _on_failure(self, trial_id: int, arch: Hashable) -> None:
        from optuna.trial import TrialState

        trial = self.optuna_trials.pop(trial_id)
        self.study.tell(trial, state=TrialState.FAIL)
        self.log.append(["tell", trial.number, None])

    def _extra_state(self) -> dict[str, Any]:
        return {"options": dict(self.options), "log": [list(entry) for entry in self.log],  # a snapshot
                "optuna_numbers": {str(tid): t.number for tid, t in self.optuna_trials.items()}}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        """Rebuild the study and replay the log (the base class already restored the bookkeeping).

        Log entries: ``["ask"]`` (the next Optuna trial), ``["enqueue", params]`` (the next ask's
        fixed parameters), ``["tell", number, score | None]`` (None: FAIL) and ``["prune", number,
        score, step]``; Optuna numbers trials in ask order.
        """
        from optuna.trial import TrialState

        self.options = dict(state["options"])
        self.log = []
        self._new_study()
        by_number: dict[int, Any] = {}
        for entry in state["log"]:
            if entry[0] == "ask":
                trial = self.study.ask(self.distributions)
                by_number[trial.number] = trial
            elif entry[0] == "enqueue":
                self.study.enqueue_trial(entry[1])
            elif entry[0] == "prune":
                _, number, score, step = entry
                _tell_pruned(self.study, by_number.pop(number), score, step)
            else:
                _, number, score = entry
                trial = by_number.pop(number)
                if score is None:
                    self.study.tell(trial, state=TrialState.FAIL)
                else:
                    self.study.tell(trial, score)
        # states written before repeats were discarded: Optuna numbers equal the trial ids
        numbers = state.get("optuna_numbers") or {str(tid): tid for tid in self.pending}
        self.optuna_trials = {int(tid): by_number[int(number)] for tid, number in numbers.items()}
        self.log = [list(e) for e in state["log"]]


def _tell_pruned(study: Any, trial: Any, score: float | None, step: int) -> None:
    from optuna.trial import TrialState

    if score is not None:
        trial.report(score, step)
    study.tell(trial, state=TrialState.PRUNED)

