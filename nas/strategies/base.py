"""The ask/tell interface every search strategy implements.

Contract (the engine, benchmark mode and tests rely on exactly this):

* ``ask() -> Proposal``: the next architecture to evaluate, with a fresh integer ``trial_id``
  (0, 1, 2, ... in ask order). ``ask`` may be called again before earlier proposals are told
  (asynchronous workers: every free worker asks), so a strategy must always be able to propose.
* ``tell(trial_id, score)``: the outcome of a proposal. ``score`` is the objective, higher is
  better (e.g. validation accuracy). ``score=None`` (or NaN/inf) means the trial FAILED (exception,
  NaN loss, out of memory): the strategy forgets that proposal (it never enters a population or a
  model's data) and counts it in ``num_failed``; the caller still charges it to the budget.
  Telling an unknown or already-told ``trial_id`` raises ``KeyError``.
* Seeded: all randomness comes from ``numpy.random.default_rng(seed)``; the same seed and the
  same sequence of tells gives the same proposals.
* ``state_dict()`` returns plain JSON-serialisable data (architectures via ``space.to_json``,
  the RNG's bit-generator state); ``load_state_dict`` restores it so a resumed search continues
  exactly where it stopped, including proposals that were asked but not yet told.
* ``best`` is the best (architecture, score) told so far, by score (first occurrence on ties).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np

from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


@dataclass(frozen=True)
class Proposal:
    trial_id: int
    arch: Hashable


def is_failure(score: float | None) -> bool:
    return score is None or not math.isfinite(score)


class Strategy(ABC):
    """Base class: bookkeeping of ids, pending proposals, best-so-far, failures and RNG state."""

    name: str = ""

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.next_id = 0
        self.pending: dict[int, Hashable] = {}
        self.num_told = 0
        self.num_failed = 0
        self.best: tuple[Hashable, float] | None = None

    # ------------------------------------------------------------------ the interface
    def ask(self) -> Proposal:
        arch = self._propose()
        proposal = Proposal(self.next_id, arch)
        self.pending[self.next_id] = arch
        self.next_id += 1
        return proposal

    def tell(self, trial_id: int, score: float | None) -> None:
        if trial_id not in self.pending:
            raise KeyError(f"trial {trial_id} was not proposed or was already told")
        arch = self.pending.pop(trial_id)
        self.num_told += 1
        if is_failure(score):
            self.num_failed += 1
            self._on_failure(trial_id, arch)
            return
        assert score is not None
        if self.best is None or score > self.best[1]:
            self.best = (arch, float(score))
        self._on_result(trial_id, arch, float(score))

    @abstractmethod
    def _propose(self) -> Hashable:
        """Next architecture (called by ask)."""

    def _on_result(self, trial_id: int, arch: Hashable, score: float) -> None:
        """A successful trial's score (called by tell)."""

    def _on_failure(self, trial_id: int, arch: Hashable) -> None:
        """A failed trial (called by tell); default: forget it."""

    # ------------------------------------------------------------------ state
    def _arch_json(self, arch: Hashable) -> dict[str, Any]:
        return self.space.to_json(arch)

    def _arch_from_json(self, data: dict[str, Any]) -> Hashable:
        return self.space.from_json(data)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "strategy": self.name,
            "seed": self.seed,
            "rng": self.rng.bit_generator.state,
            "next_id": self.next_id,
            "pending": [[tid, self._arch_json(a)] for tid, a in self.pending.items()],
            "num_told": self.num_told,
            "num_failed": self.num_failed,
            "best": None if self.best is None else [self._arch_json(self.best[0]), self.best[1]],
        }
        state.update(self._extra_state())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("strategy") != self.name:
            raise InputError(f"state is for strategy {state.get('strategy')!r}, not {self.name!r}")
        self.seed = state["seed"]
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]
        self.next_id = state["next_id"]
        self.pending = {int(tid): self._arch_from_json(a) for tid, a in state["pending"]}
        self.num_told = state["num_told"]
        self.num_failed = state["num_failed"]
        best = state["best"]
        self.best = None if best is None else (self._arch_from_json(best[0]), float(best[1]))
        self._load_extra_state(state)

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        pass
