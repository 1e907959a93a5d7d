"""``MultiObjectiveConformance``: the multi-objective part of the ask/tell contract, and a planted
Pareto front to test that a strategy searches it.

Apply it by subclassing in a test module (the subclass's name must start with ``Test``)::

    class TestMyStrategyMultiObjective(MultiObjectiveConformance):
        def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
            return MyStrategy(space, seed=seed, num_objectives=num_objectives)

The checks (every objective maximised, as strategies are told):

* a vector of the wrong length, or a float, is refused with ``ValueError`` and changes nothing;
* a vector with a NaN/inf component or None is a failure: counted, never on the front;
* :meth:`Strategy.pareto_front` is exactly the non-dominated subset of the told full-budget
  vectors (brute force), and ``best`` their lexicographic maximum; early-stopped vectors stay
  off both;
* no repeats while unproposed members exist (an asynchronous run with failures);
* same seed, same proposals; ``state_dict()`` is JSON and a restored strategy continues with
  identical proposals while restored proposals are in flight;
* on a :class:`PlantedFront` (additive random utilities against correlated additive costs, so
  the front is a real trade-off), the mean normalised hypervolume reached within
  ``front_budget`` queries over ``front_seeds`` beats by ``front_margin`` each of: random search
  on the same seeds, the same strategy told the second objective as a constant (it must use
  every objective) and told it negated (it must honour the direction: maximised). Set
  ``searches_front = False`` for a strategy not meant to search (random).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np
import pytest

from nas.pareto import hypervolume, non_dominated
from nas.strategies.base import Proposal, Strategy
from nas.strategies.random_search import RandomSearch
from nas.testing.spaces import IndexSpace, assert_member
from search_spaces.spaces.base import SearchSpace


class PlantedFront:
    """Two objectives on ``space`` with a known Pareto front, both maximised.

    Each value of each variable gets a utility ``u ~ U(0, 1)`` and a cost ``c = u + U(0, 0.5)``
    (better values cost more); a member's objectives are ``(sum u, -sum c)``. :attr:`front_hv`
    is the hypervolume of the true front (members enumerated; spaces up to ``max_members``) from
    :attr:`reference`, the componentwise median member (as a
    latency reference at the median makes the front's knee count).
    """

    def __init__(self, space: SearchSpace, seed: int = 0, max_members: int = 100_000) -> None:
        if space.size > max_members:
            raise ValueError(f"PlantedFront enumerates the space: {space.size} members > {max_members}")
        rng = np.random.default_rng(seed)
        self.space = space
        self.utility = [rng.uniform(size=c) for c in space.cardinalities]
        self.cost = [u + rng.uniform(0.0, 0.5, size=len(u)) for u in self.utility]
        grids = np.stack(np.meshgrid(*[np.arange(c) for c in space.cardinalities], indexing="ij"), -1)
        everything = self._values(grids.reshape(-1, len(space.cardinalities)))
        self.reference = np.median(everything, axis=0)
        self.front = everything[non_dominated(everything)]
        self.front_hv = hypervolume(self.front, self.reference)

    def _values(self, codes: np.ndarray) -> np.ndarray:
        """(n, 2) objective values of encodings ``codes`` (n, variables)."""
        utility = sum(u[codes[:, i]] for i, u in enumerate(self.utility))
        cost = sum(c[codes[:, i]] for i, c in enumerate(self.cost))
        return np.stack([utility, -cost], axis=1)

    def __call__(self, arch: Hashable) -> tuple[float, float]:
        u, c = self._values(self.space.encode(arch)[None, :])[0]
        return float(u), float(c)

    def normalised_hypervolume(self, told: list[tuple[float, ...]]) -> float:
        """Hypervolume of the told vectors as a fraction of the true front's."""
        return hypervolume(np.asarray(told, dtype=np.float64).reshape(-1, 2), self.reference) / self.front_hv


def run_front(strategy: Strategy, problem: PlantedFront, budget: int, workers: int = 1,
              told_as: Callable[[tuple[float, float]], tuple[float, float]] = lambda v: v) -> float:
    """Ask/tell ``budget`` queries (``workers`` in flight), telling ``told_as(values)``; the normalised
    hypervolume the proposals reach on the true objectives."""
    reached: list[tuple[float, ...]] = []
    inflight: deque[Proposal] = deque()
    for _ in range(budget):
        while len(inflight) < workers:
            inflight.append(strategy.ask())
        p = inflight.popleft()
        values = problem(p.arch)
        strategy.tell(p.trial_id, told_as(values))
        reached.append(values)
    return problem.normalised_hypervolume(reached)


def _plain(state: dict[str, Any]) -> Any:
    return json.loads(json.dumps(state, allow_nan=False))


class MultiObjectiveConformance:
    """Test-class mixin: the multi-objective contract for :meth:`make_strategy` (see the module docstring)."""

    workers: int = 3
    drive_steps: int = 30
    fail_every: int = 5
    searches_front: bool = True
    front_budget: int = 100
    front_seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    front_margin: float = 0.05
    """How much the strategy's mean normalised hypervolume must exceed each baseline's."""

    # ------------------------------------------------------------------ hooks
    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        raise NotImplementedError(f"{type(self).__name__} must override make_strategy(space, seed, num_objectives)")

    def make_space(self) -> SearchSpace:
        """A fresh space (default: 5 variables of 4 values, 1,024 members, two of them ordinal)."""
        return IndexSpace((4, 4, 4, 4, 4), ordinal=(False, False, False, True, True))

    # ------------------------------------------------------------------ helpers
    def _fresh(self, seed: int, num_objectives: int = 2) -> tuple[Strategy, PlantedFront]:
        space = self.make_space()
        return self.make_strategy(space, seed, num_objectives), PlantedFront(space, seed=777)

    def _drive(self, strategy: Strategy, problem: PlantedFront, steps: int) -> list[Proposal]:
        proposals: list[Proposal] = []
        inflight: deque[Proposal] = deque()
        for _ in range(steps):
            while len(inflight) < self.workers:
                proposals.append(strategy.ask())
                inflight.append(proposals[-1])
            p = inflight.popleft()
            failed = self.fail_every and p.trial_id % self.fail_every == self.fail_every - 1
            strategy.tell(p.trial_id, None if failed else problem(p.arch))
        return proposals

    # ------------------------------------------------------------------ the contract
    def test_wrong_shapes_are_refused_and_change_nothing(self) -> None:
        strategy, problem = self._fresh(0)
        p = strategy.ask()
        for bad in (1.0, (1.0,), (1.0, 2.0, 3.0)):
            with pytest.raises(ValueError):
                strategy.tell(p.trial_id, bad)
        assert strategy.num_told == 0 and list(strategy.pending) == [p.trial_id]
        strategy.tell(p.trial_id, problem(p.arch))
        assert strategy.num_told == 1 and strategy.best is not None

    def test_failures_never_reach_the_front(self) -> None:
        strategy, problem = self._fresh(1)
        a, b, c, d = (strategy.ask() for _ in range(4))
        strategy.tell(a.trial_id, (float("nan"), 1.0))
        strategy.tell(b.trial_id, (1.0, float("inf")))
        strategy.tell(c.trial_id, None)
        assert strategy.num_failed == 3 and strategy.best is None and strategy.pareto_front() == []
        strategy.tell(d.trial_id, (0.5, 0.5))
        assert strategy.pareto_front() == [(d.arch, (0.5, 0.5))]
        for _ in range(2 * self.workers + 4):  # the strategy keeps proposing
            p = strategy.ask()
            assert_member(strategy.space, p.arch)
            strategy.tell(p.trial_id, problem(p.arch))
        _plain(strategy.state_dict())

    def test_front_and_best_follow_the_told_vectors(self) -> None:
        strategy, problem = self._fresh(2)
        told: list[tuple[Hashable, tuple[float, float]]] = []
        inflight: deque[Proposal] = deque()
        for step in range(self.drive_steps):
            while len(inflight) < self.workers:
                inflight.append(strategy.ask())
            p = inflight.popleft()
            values = problem(p.arch)
            if step % 7 == 3:  # stopped early: never final
                strategy.tell(p.trial_id, (values[0] + 100.0, values[1] + 100.0), budget=1)
                continue
            strategy.tell(p.trial_id, values)
            told.append((p.arch, values))
            mask = non_dominated(np.array([v for _, v in told]))
            expected = [m for m, keep in zip(told, mask, strict=True) if keep]
            assert sorted(strategy.pareto_front(), key=repr) == sorted(expected, key=repr)
            assert strategy.best is not None and strategy.best[1] == max(v for _, v in told)

    def test_no_repeats_while_unproposed_members_exist(self) -> None:
        strategy, problem = self._fresh(3)
        archs = [p.arch for p in self._drive(strategy, problem, self.drive_steps)]
        assert len(set(archs)) == len(archs), f"repeated proposals: {[a for a in set(archs) if archs.count(a) > 1]}"

    def test_same_seed_same_proposals_and_the_state_resumes_identically(self) -> None:
        a, problem = self._fresh(4)
        b, _ = self._fresh(4)
        assert self._drive(a, problem, self.drive_steps) == self._drive(b, problem, self.drive_steps)
        state = _plain(a.state_dict())
        assert state["num_objectives"] == 2 and a.pending
        restored, _ = self._fresh(4)
        restored.load_state_dict(state)
        assert restored.pending == a.pending and restored.best == a.best
        assert restored.pareto_front() == a.pareto_front()
        assert restored.ask() == a.ask()
        assert self._drive(restored, problem, self.drive_steps) == self._drive(a, problem, self.drive_steps)
        single = self.make_strategy(self.make_space(), 4, 1)
        with pytest.raises(ValueError, match="objective"):
            single.load_state_dict(state)

    # ------------------------------------------------------------------ search
    def test_searches_a_planted_front(self) -> None:
        if not self.searches_front:
            pytest.skip(f"{type(self).__name__}.searches_front is False")
        runs: dict[str, list[float]] = {"told the objectives": [], "random search": [],
                                        "told a constant second objective": [], "told the second one negated": []}
        for seed in self.front_seeds:
            problem = PlantedFront(self.make_space(), seed=500 + seed)
            for key, told_as in (("told the objectives", lambda v: v),
                                 ("told a constant second objective", lambda v: (v[0], 0.0)),
                                 ("told the second one negated", lambda v: (v[0], -v[1]))):
                strategy = self.make_strategy(self.make_space(), seed, 2)
                runs[key].append(run_front(strategy, problem, self.front_budget, told_as=told_as))
            runs["random search"].append(run_front(RandomSearch(self.make_space(), seed=seed, num_objectives=2),
                                                   problem, self.front_budget))
        means = {key: float(np.mean(values)) for key, values in runs.items()}
        ours = means.pop("told the objectives")
        worse = {key: mean for key, mean in means.items() if not ours > mean + self.front_margin}
        assert not worse, (f"mean normalised hypervolume after {self.front_budget} queries: {ours:.3f}, not "
                           f"{self.front_margin} above {worse}")
