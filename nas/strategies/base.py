"""The ask/tell interface every search strategy implements.

Contract (the engine, benchmark mode and tests rely on exactly this):

* ``ask() -> Proposal``: the next architecture to evaluate, with a fresh integer ``trial_id``
  (0, 1, 2, ... in ask order). ``ask`` may be called again before earlier proposals are told
  (asynchronous workers: every free worker asks), so a strategy must always be able to propose.
* No repeats: ``ask`` never returns an architecture that was already proposed in this run
  (evaluated, pending or failed) while an unproposed member of the space exists. Strategies
  propose as they like (``_propose``); the base class rejects a repeat, lets the strategy
  discard it (``_discard``: e.g. TPE tells it to its model) and asks again up to
  ``max_redraws`` times, then substitutes an unproposed neighbour of the repeat (or of what the
  strategy names in ``_substitute_anchors``; else a uniformly random unproposed member) and
  hands it to the strategy (``_adopt``). Only when every
  member has been proposed does ``ask`` repeat one (``num_repeats`` counts those).
* ``tell(trial_id, score, budget=None)``: the outcome of a proposal. ``score`` is the objective,
  higher is better (e.g. validation accuracy). ``budget=None`` means the score was measured at
  the search's full budget; a number means the trial was stopped early (e.g. by ASHA) after
  ``budget`` units of it (epochs), so the score is a low-fidelity one: it never updates ``best``
  and each strategy says what it does with it (``_on_partial``; default: nothing, the member
  only counts as proposed). ``score=None`` (or NaN/inf) means the trial FAILED (exception, NaN
  loss, out of memory): the strategy forgets that proposal (it never enters a population or a
  model's data) and counts it in ``num_failed``; the caller still charges it to the budget.
  Telling an unknown or already-told ``trial_id`` raises ``KeyError``.
* Seeded: all randomness comes from ``numpy.random.default_rng(seed)``; the same seed and the
  same sequence of tells gives the same proposals.
* ``state_dict()`` returns plain JSON-serialisable data (architectures via ``space.to_json``,
  the RNG's bit-generator state); ``load_state_dict`` restores it so a resumed search continues
  exactly where it stopped, including proposals that were asked but not yet told.
* ``best`` is the best full-budget (architecture, score) told so far, by score (first
  occurrence on ties).
* Multi-objective (``num_objectives`` k >= 2, only for strategies whose class sets
  ``multi_objective = True``): ``score`` is a sequence of k floats, EACH MAXIMISED (the engine
  negates minimised objectives); a failure is None or any non-finite component. ``best`` is
  then the lexicographic maximum (first objective first) and :meth:`Strategy.pareto_front` the
  told full-budget members no other one dominates. Everything else above holds unchanged.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

from nas.pareto import non_dominated
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace

MAX_EXACT_SIZE = 2**62
"""Spaces up to this size draw unproposed members exactly (by rank); larger ones by rejection."""
REJECTION_DRAWS = 64


@dataclass(frozen=True)
class Proposal:
    trial_id: int
    arch: Hashable


Score: TypeAlias = float | tuple[float, ...]
"""A told result: a float, or one float per objective (multi-objective; each maximised)."""


def is_failure(score: float | Sequence[float] | None) -> bool:
    """A failed trial's score: None, NaN, +-inf, or a vector with any such component."""
    if score is None:
        return True
    if isinstance(score, numbers.Real):
        return not math.isfinite(score)
    return any(v is None or not math.isfinite(v) for v in score)


class Strategy(ABC):
    """Base class: bookkeeping of ids, pending proposals, best-so-far, failures and RNG state."""

    name: str = ""
    max_redraws: int = 10
    """How often a repeated proposal is redrawn from the strategy before a substitute is chosen."""
    multi_objective: bool = False
    """Whether the strategy has a multi-objective form (accepts ``num_objectives`` >= 2)."""

    def __init__(self, space: SearchSpace, seed: int = 0, num_objectives: int = 1) -> None:
        if isinstance(num_objectives, bool) or not isinstance(num_objectives, int) or num_objectives < 1:
            raise InputError(f"num_objectives must be an integer >= 1, got {num_objectives!r}")
        if num_objectives > 1 and not self.multi_objective:
            raise InputError(f"strategy {self.name or type(self).__name__!r} is single-objective; it cannot search "
                             f"{num_objectives} objectives (a strategy with multi_objective = True can)")
        self.num_objectives = num_objectives
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.pending: dict[int, Hashable] = {}
        self.num_told = 0
        self.num_failed = 0
        self.best: tuple[Hashable, Score] | None = None
        # every member proposed in this run -> its full-budget score (None: pending, failed or partial)
        self.proposed: dict[Hashable, Score | None] = {}
        self.num_redraws = 0  # repeated proposals rejected (redrawn or substituted)
        self.num_repeats = 0  # repeats returned because every member had been proposed
        self.num_partial = 0  # results told at less than the full budget

    # ------------------------------------------------------------------ the interface
    def ask(self) -> Proposal:
        arch = self._propose()
        for _ in range(self.max_redraws):
            if arch not in self.proposed:
                break
            self.num_redraws += 1
            self._discard(arch)
            arch = self._propose()
        if arch in self.proposed:
            substitute = self._unproposed_member(*self._substitute_anchors(arch))
            if substitute is None:
                self.num_repeats += 1
            else:
                self.num_redraws += 1
                self._discard(arch)
                arch = substitute
                self._adopt(arch)
        proposal = Proposal(self.next_id, arch)
        self.pending[self.next_id] = arch
        self.proposed.setdefault(arch, None)
        self.next_id += 1
        return proposal

    @property
    def multi(self) -> bool:
        return self.num_objectives > 1

    def tell(self, trial_id: int, score: float | Sequence[float] | None, budget: float | None = None) -> None:
        if trial_id not in self.pending:
            raise KeyError(f"trial {trial_id} was not proposed or was already told")
        value = None if score is None else self._score(score)  # checked before anything changes
        arch = self.pending.pop(trial_id)
        self.num_told += 1
        if value is None or is_failure(value):
            self.num_failed += 1
            self._on_failure(trial_id, arch)
            return
        if budget is not None:
            self.num_partial += 1
            self._on_partial(trial_id, arch, value, float(budget))
            return
        if self.proposed.get(arch) is None:
            self.proposed[arch] = value
        if self.best is None or value > self.best[1]:  # type: ignore[operator]
            self.best = (arch, value)
        self._on_result(trial_id, arch, value)

    def _score(self, score: Any) -> Score:
        """A told score in this strategy's form: a float (also from a 0-d array or tensor), or a tuple of
        ``num_objectives`` floats (may be non-finite: a failure); InputError for the wrong shape."""
        scalar = not isinstance(score, bool) and np.ndim(score) == 0
        if not self.multi:
            if scalar:
                try:
                    return float(score)
                except (TypeError, ValueError):
                    pass
            raise InputError(f"strategy {self.name!r} searches one objective: tell a float, got {score!r}")
        if scalar or np.ndim(score) != 1 or len(score) != self.num_objectives:
            raise InputError(f"strategy {self.name!r} searches {self.num_objectives} objectives: tell one value per "
                             f"objective, got {score!r}")
        return tuple(float(v) for v in score)

    def pareto_front(self) -> list[tuple[Hashable, Score]]:
        """The told full-budget members no other told member dominates, in the order they were first
        proposed (single objective: the best ones)."""
        told = [(a, s) for a, s in self.proposed.items() if s is not None]
        if not told:
            return []
        values = np.array([s if self.multi else (s,) for _, s in told], dtype=np.float64)
        return [m for m, keep in zip(told, non_dominated(values), strict=True) if keep]

    @abstractmethod
    def _propose(self) -> Hashable:
        """Next architecture (called by ask; a repeat is discarded and redrawn, see the contract)."""

    def _discard(self, arch: Hashable) -> None:
        """The last ``_propose`` returned ``arch``, which was proposed before: it is dropped (default:
        nothing; a strategy that booked the proposal undoes or resolves that here)."""

    def _adopt(self, arch: Hashable) -> None:
        """``ask`` returns ``arch`` in place of the strategy's own (repeated) proposal; a strategy that
        books its proposals books this one (default: nothing)."""

    def _on_result(self, trial_id: int, arch: Hashable, score: Score) -> None:
        """A successful trial's full-budget score (called by tell; a tuple when multi-objective)."""

    def _on_partial(self, trial_id: int, arch: Hashable, score: Score, budget: float) -> None:
        """A trial stopped early after ``budget`` units with a low-fidelity ``score`` (default: nothing)."""

    def _on_failure(self, trial_id: int, arch: Hashable) -> None:
        """A failed trial (called by tell); default: forget it."""

    def _substitute_anchors(self, arch: Hashable) -> tuple[Hashable, ...]:
        """Members whose unproposed neighbours may replace the repeated proposal ``arch``, in order of
        preference (default: ``arch`` itself; evolution prefers the parent's other children)."""
        return (arch,)

    # ------------------------------------------------------------------ unproposed members
    def _unproposed_member(self, *anchors: Hashable) -> Hashable | None:
        """An unproposed neighbour of the first anchor that has one (uniformly), else a uniformly
        random unproposed member, else None (every member has been proposed)."""
        for near in anchors:
            fresh = [a for a in self.space.neighbours(near) if a not in self.proposed]
            if fresh:
                return fresh[int(self.rng.integers(len(fresh)))]
        size = self.space.size
        if len(self.proposed) >= size:
            return None
        if size > MAX_EXACT_SIZE or len(self.proposed) < size // 2:
            for _ in range(REJECTION_DRAWS):
                arch = self.space.sample(self.rng)
                if arch not in self.proposed:
                    return arch
        if size > MAX_EXACT_SIZE:
            return None
        # exact: the r-th unproposed rank in mixed-radix order of the encodings
        cards = self.space.cardinalities
        taken = sorted(_rank(self.space.encode(a), cards) for a in self.proposed)
        r = int(self.rng.integers(size - len(taken)))
        for t in taken:
            if t > r:
                break
            r += 1
        return self.space.decode(_unrank(r, cards))

    # ------------------------------------------------------------------ state
    def _arch_json(self, arch: Hashable) -> dict[str, Any]:
        return self.space.to_json(arch)

    def _arch_from_json(self, data: dict[str, Any]) -> Hashable:
        return self.space.from_json(data)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "strategy": self.name,
            "seed": self.seed,
            "num_objectives": self.num_objectives,
            "rng": self.rng.bit_generator.state,
            "next_id": self.next_id,
            "pending": [[tid, self._arch_json(a)] for tid, a in self.pending.items()],
            "num_told": self.num_told,
            "num_failed": self.num_failed,
            "best": None if self.best is None else [self._arch_json(self.best[0]), score_to_json(self.best[1])],
            "proposed": [[self._arch_json(a), score_to_json(s)] for a, s in self.proposed.items()],
            "counts": {"redraws": self.num_redraws, "repeats": self.num_repeats, "partial": self.num_partial},
        }
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("strategy") != self.name:
            raise InputError(f"state is for strategy {state.get('strategy')!r}, not {self.name!r}")
        if int(state.get("num_objectives", 1)) != self.num_objectives:
            raise InputError(f"state is for {state.get('num_objectives', 1)} objective(s), this strategy searches "
                             f"{self.num_objectives}")
        self.seed = state["seed"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.next_id = state["next_id"]
        self.pending = {int(tid): self._arch_from_json(a) for tid, a in state["pending"]}
        self.num_told = state["num_told"]
        self.num_failed = state["num_failed"]
        best = state["best"]
        self.best = None if best is None else (self._arch_from_json(best[0]), self._score(best[1]))
        # states written before the no-repeat contract lack these: the pending ones are known
        self.proposed = {self._arch_from_json(a): None if s is None else self._score(s)
                         for a, s in state.get("proposed", [])}
        for arch in self.pending.values():
            self.proposed.setdefault(arch, None)
        counts = state.get("counts", {})
        self.num_redraws = int(counts.get("redraws", 0))
        self.num_repeats = int(counts.get("repeats", 0))
        self.num_partial = int(counts.get("partial", 0))
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass


def score_to_json(score: Score | None) -> float | list[float] | None:
    """A score as JSON data (a vector as a list)."""
    return list(score) if isinstance(score, tuple) else score


def _rank(x: np.ndarray, cards: list[int]) -> int:
    """Mixed-radix rank of an encoding (first variable most significant)."""
    rank = 0
    for value, card in zip(x.tolist(), cards, strict=True):
        rank = rank * card + int(value)
    return rank


def _unrank(rank: int, cards: list[int]) -> list[int]:
    values = []
    for card in reversed(cards):
        rank, value = divmod(rank, card)
        values.append(value)
    return values[::-1]
