"""``StrategyConformance``: the checks every search strategy must pass (the ask/tell contract of
:mod:`nas.strategies.base`), and a planted-solution objective to test that a strategy searches.

Apply it by subclassing in a test module (the subclass's name must start with ``Test``)::

    class TestMyStrategy(StrategyConformance):
        planted_budget = 200

        def make_strategy(self, space: SearchSpace, seed: int) -> Strategy:
            return MyStrategy(space, seed=seed)

The checks, all on the space of :meth:`StrategyConformance.make_space` (NAS-Bench-201 unless
overridden):

* ids are 0, 1, 2, ... in ask order, and many asks may precede any tell (asynchronous workers);
  results may be told in any order;
* every proposal is a member of the space (encode/decode and to_json/from_json round trips);
* telling an unknown or an already-told id raises ``KeyError`` and changes nothing;
* failures (``None``, NaN, +-inf) are counted in ``num_failed``, never become ``best``, never
  reach the state as non-finite numbers, and the strategy keeps proposing;
* no repeats: no architecture is proposed twice while an unproposed member exists, on the
  main space and on a small space (:meth:`StrategyConformance.make_small_space`) asked until
  every member is proposed; after that ``ask`` still answers (a repeat);
* a result told with ``budget=`` (stopped early) never becomes ``best`` and survives the state;
* a one-member space: the strategy keeps proposing its member without error;
* ``best`` is the best told score, the first one on ties;
* same seed and same tells give the same proposals; a different seed gives different ones; no
  global generator (``random``, ``numpy.random``, torch's) is consumed;
* ``state_dict()`` survives ``json`` (no NaN), is a snapshot (later asks and tells do not change
  it), and a fresh strategy with the same seed that loads it continues with identical proposals,
  including while restored proposals are still in flight; another strategy's state is refused
  with ``ValueError``;
* on a :class:`PlantedObjective` (score = number of variables equal to a hidden target, plus a
  tie-break below 1) the strategy reaches the optimum, or ``planted_fraction`` of the variables
  with ``planted_mode = "fraction"``, within ``planted_budget`` queries for each of
  ``planted_seeds``. Set ``finds_planted = False`` for a strategy that is not meant to optimise.

All schedules are deterministic (fixed seeds), so a check passes or fails the same way every run.
The planted check is not marked slow here; a subclass whose search is slow marks its own
override::

    @pytest.mark.slow
    def test_finds_a_planted_optimum(self) -> None:
        super().test_finds_a_planted_optimum()
"""

from __future__ import annotations

import json
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pytest

from nas.strategies.base import Proposal, Strategy
from nas.testing.spaces import IndexSpace, assert_member, untouched_global_rngs
from search_spaces.spaces.base import SearchSpace


# ---------------------------------------------------------------------------------- planted solution
class PlantedObjective:
    """A synthetic objective with one planted optimum on ``space``.

    ``score(arch) = matches(arch) + tie_break * mean_i u_i[x_i]``, where ``matches`` counts the
    variables whose value equals the hidden ``target`` encoding and ``u_i`` are fixed uniform
    [0, 1) tables; with ``0 <= tie_break < 1`` the ranking is by matches first, scores rarely tie,
    and the unique maximum is the target (``optimum``). Everything is drawn from ``seed``.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, tie_break: float = 0.5) -> None:
        if not 0.0 <= tie_break < 1.0:
            raise ValueError(f"tie_break must be in [0, 1), got {tie_break}")
        rng = np.random.default_rng(seed)
        self.space = space
        self.tie_break = tie_break
        self.target = np.array([rng.integers(c) for c in space.cardinalities], dtype=np.int64)
        self._ties = [rng.random(c) for c in space.cardinalities]

    @property
    def num_variables(self) -> int:
        return len(self.target)

    @property
    def target_arch(self) -> Hashable:
        """The planted optimum as a member of the space."""
        return self.space.decode(self.target)

    @property
    def optimum(self) -> float:
        """The maximal score (that of :attr:`target_arch`)."""
        return self(self.target_arch)

    def matches(self, arch: Hashable) -> int:
        """Number of variables of ``arch`` equal to the target's."""
        return int((self.space.encode(arch) == self.target).sum())

    def __call__(self, arch: Hashable) -> float:
        x = self.space.encode(arch)
        tie = float(np.mean([table[int(i)] for table, i in zip(self._ties, x, strict=True)]))
        return float((x == self.target).sum()) + self.tie_break * tie


@dataclass(frozen=True)
class PlantedRun:
    """Outcome of :func:`run_planted`."""

    queries: int
    """Queries made (the budget, or fewer when the goal was reached)."""
    best_matches: int
    """Most target variables matched by any proposal."""
    hit_at: int | None
    """1-based query at which ``required`` matches were first reached; None if never."""


def run_planted(strategy: Strategy, objective: PlantedObjective, budget: int,
                required: int | None = None) -> PlantedRun:
    """Ask/tell sequentially until a proposal matches ``required`` variables (default: all) or
    ``budget`` queries are spent."""
    goal = objective.num_variables if required is None else required
    best = -1
    for query in range(1, budget + 1):
        proposal = strategy.ask()
        matches = objective.matches(proposal.arch)
        strategy.tell(proposal.trial_id, objective(proposal.arch))
        best = max(best, matches)
        if matches >= goal:
            return PlantedRun(query, best, query)
    return PlantedRun(budget, best, None)


# ---------------------------------------------------------------------------------- the suite
class _ForeignStrategy(Strategy):
    """Another strategy (by name): the source of a foreign ``state_dict``."""

    name = "nas.testing.foreign-strategy"

    def _propose(self) -> Hashable:
        return self.space.sample(self.rng)


def _plain(state: dict[str, Any]) -> Any:
    """``state`` as it comes back from a JSON file (raises on NaN/inf or non-JSON values)."""
    return json.loads(json.dumps(state, allow_nan=False))


class StrategyConformance:
    """Test-class mixin: the :mod:`nas.strategies.base` contract for :meth:`make_strategy`.

    Override :meth:`make_strategy` (and :meth:`make_space` for another space); tune with the
    class attributes below.
    """

    async_asks: int = 12
    """Proposals asked before any tell in the asynchronous check."""
    workers: int = 3
    """Proposals kept in flight by the asynchronous schedule of the determinism and resume checks."""
    drive_steps: int = 30
    """Tells per run in the determinism and resume checks."""
    fail_every: int = 5
    """In those runs every ``fail_every``-th trial (by id) fails; 0: none fails."""
    finds_planted: bool = True
    """False: skip the planted-optimum check (for strategies not meant to optimise)."""
    planted_budget: int = 300
    """Queries allowed per seed to reach the planted goal."""
    planted_mode: Literal["optimum", "fraction"] = "optimum"
    """``optimum``: find the planted member; ``fraction``: match ``planted_fraction`` of the variables."""
    planted_fraction: float = 1.0
    planted_seeds: tuple[int, ...] = (0, 1, 2)

    # ------------------------------------------------------------------ hooks
    def make_strategy(self, space: SearchSpace, seed: int) -> Strategy:
        """A fresh strategy under test on ``space`` seeded with ``seed``."""
        raise NotImplementedError(f"{type(self).__name__} must override make_strategy(space, seed)")

    def make_space(self) -> SearchSpace:
        """A fresh search space (default: NAS-Bench-201's 15,625 cells)."""
        from search_spaces.spaces.nb201 import NB201Space

        return NB201Space()

    def make_small_space(self) -> SearchSpace | None:
        """A small space (tens of members) the strategy can exhaust, or None to skip those checks
        (default: 3 x 2 x 3 index tuples, the last variable ordinal)."""
        return IndexSpace((3, 2, 3), ordinal=(False, False, True))

    # ------------------------------------------------------------------ helpers
    def _score(self, objective: PlantedObjective, proposal: Proposal) -> float | None:
        failed = self.fail_every and proposal.trial_id % self.fail_every == self.fail_every - 1
        return None if failed else objective(proposal.arch)

    def _drive(self, strategy: Strategy, objective: PlantedObjective, steps: int,
               workers: int | None = None) -> list[Proposal]:
        """Asynchronous schedule: keep ``workers`` proposals in flight and tell the oldest, ``steps``
        times; leaves ``workers - 1`` proposals pending. Returns every proposal in ask order."""
        workers = self.workers if workers is None else workers
        proposals: list[Proposal] = []
        inflight: deque[Proposal] = deque()
        for _ in range(steps):
            while len(inflight) < workers:
                proposals.append(strategy.ask())
                inflight.append(proposals[-1])
            proposal = inflight.popleft()
            strategy.tell(proposal.trial_id, self._score(objective, proposal))
        return proposals

    def _fresh(self, seed: int) -> tuple[Strategy, PlantedObjective]:
        space = self.make_space()
        return self.make_strategy(space, seed), PlantedObjective(space, seed=12345)

    def planted_required(self, space: SearchSpace) -> int:
        """Matches the planted check requires on ``space``."""
        n = len(space.variables)
        if self.planted_mode == "optimum":
            return n
        return math.ceil(self.planted_fraction * n - 1e-9)

    # ------------------------------------------------------------------ ask / tell
    def test_ids_are_sequential_and_asks_may_precede_tells(self) -> None:
        strategy, _ = self._fresh(0)
        n = self.async_asks
        proposals = [strategy.ask() for _ in range(n)]  # n workers ask before any result
        assert all(isinstance(p, Proposal) for p in proposals)
        assert [p.trial_id for p in proposals] == list(range(n))
        assert sorted(strategy.pending) == list(range(n))
        for p in reversed(proposals):  # results arrive in any order
            strategy.tell(p.trial_id, 1.0 + p.trial_id)
        assert strategy.pending == {} and strategy.num_told == n and strategy.num_failed == 0
        assert [strategy.ask().trial_id for _ in range(3)] == [n, n + 1, n + 2]

    def test_proposals_are_members_of_the_space(self) -> None:
        strategy, objective = self._fresh(1)
        proposals = self._drive(strategy, objective, self.drive_steps)
        for p in proposals:
            assert_member(strategy.space, p.arch)
        for trial_id, arch in strategy.pending.items():
            assert arch == proposals[trial_id].arch

    def test_tell_of_an_unknown_or_told_id_raises_key_error(self) -> None:
        strategy, _ = self._fresh(0)
        p = strategy.ask()
        for bad in (p.trial_id + 1, -1):
            with pytest.raises(KeyError):
                strategy.tell(bad, 1.0)  # never proposed
        assert strategy.num_told == 0 and list(strategy.pending) == [p.trial_id]
        strategy.tell(p.trial_id, 1.0)
        for score in (2.0, None):
            with pytest.raises(KeyError):
                strategy.tell(p.trial_id, score)  # already told
        assert strategy.num_told == 1 and strategy.num_failed == 0 and strategy.best == (p.arch, 1.0)
        assert strategy.ask().trial_id == 1

    @pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf], ids=["None", "nan", "inf", "-inf"])
    def test_failures_are_counted_never_best_and_the_search_goes_on(self, bad: float | None) -> None:
        strategy, _ = self._fresh(2)
        first = [strategy.ask() for _ in range(4)]
        strategy.tell(first[0].trial_id, bad)
        assert strategy.best is None and strategy.num_failed == 1 and strategy.num_told == 1
        strategy.tell(first[1].trial_id, 2.0)
        strategy.tell(first[2].trial_id, bad)
        strategy.tell(first[3].trial_id, 1.0)
        assert strategy.num_told == 4 and strategy.num_failed == 2
        assert strategy.best == (first[1].arch, 2.0)
        more = 2 * self.workers + 4
        for k in range(more):  # every later result fails: the strategy must still propose members
            p = strategy.ask()
            assert p.trial_id == 4 + k
            assert_member(strategy.space, p.arch)
            strategy.tell(p.trial_id, bad)
        assert strategy.num_told == 4 + more and strategy.num_failed == 2 + more and strategy.pending == {}
        assert strategy.best == (first[1].arch, 2.0)
        _plain(strategy.state_dict())  # failed scores must not leak into the state as NaN/inf

    # ------------------------------------------------------------------ every query counts
    def test_no_repeats_while_unproposed_members_exist(self) -> None:
        strategy, objective = self._fresh(21)
        proposals = self._drive(strategy, objective, self.drive_steps)
        archs = [p.arch for p in proposals]
        assert len(set(archs)) == len(archs), f"repeated proposals on {strategy.space.name}: " \
            f"{[a for a in set(archs) if archs.count(a) > 1]}"
        space = self.make_small_space()
        if space is None:
            pytest.skip(f"{type(self).__name__}.make_small_space() is None")
        strategy = self.make_strategy(space, 22)
        objective = PlantedObjective(space, seed=23)
        seen: list[Hashable] = []
        inflight: deque[Proposal] = deque()
        while len(seen) < space.size:  # two workers, every fifth trial fails
            while len(inflight) < 2 and len(seen) < space.size:
                inflight.append(strategy.ask())
                seen.append(inflight[-1].arch)
            p = inflight.popleft()
            strategy.tell(p.trial_id, None if p.trial_id % 5 == 4 else objective(p.arch))
        assert len(set(seen)) == space.size, f"{space.size - len(set(seen))} repeats before {space.name} " \
                                             "was exhausted"
        for p in inflight:
            strategy.tell(p.trial_id, objective(p.arch))
        extra = strategy.ask()  # exhausted: a repeat, but an answer
        assert_member(space, extra.arch)
        strategy.tell(extra.trial_id, objective(extra.arch))

    def test_early_stopped_results_are_not_final(self) -> None:
        strategy, _ = self._fresh(24)
        a, b, c = (strategy.ask() for _ in range(3))
        strategy.tell(a.trial_id, 1.0)
        strategy.tell(b.trial_id, 5.0, budget=1)  # higher, but measured after 1 unit of the budget
        assert strategy.best == (a.arch, 1.0), "an early-stopped score became best"
        strategy.tell(c.trial_id, 2.0, budget=2.5)
        assert strategy.best == (a.arch, 1.0) and strategy.num_told == 3
        state = _plain(strategy.state_dict())
        restored, _ = self._fresh(24)
        restored.load_state_dict(state)
        nxt = strategy.ask()
        assert restored.ask() == nxt
        assert nxt.arch not in (a.arch, b.arch, c.arch)

    def test_a_one_member_space_is_proposed_without_error(self) -> None:
        space = IndexSpace((1, 1), name="one-member")
        strategy = self.make_strategy(space, 25)
        for k in range(4):
            p = strategy.ask()
            assert p.arch == (0, 0)
            strategy.tell(p.trial_id, None if k == 1 else float(k))
        assert strategy.best == ((0, 0), 3.0)
        _plain(strategy.state_dict())

    def test_best_is_the_best_told_score_first_on_ties(self) -> None:
        strategy, objective = self._fresh(3)
        a, b, c, d = (strategy.ask() for _ in range(4))
        for p, score in zip((a, b, c, d), (2.0, 3.0, 3.0, 1.0), strict=True):
            strategy.tell(p.trial_id, score)
        assert strategy.best == (b.arch, 3.0)
        # an asynchronous run with integer scores (many ties) and failures: check after every tell
        strategy, _ = self._fresh(4)
        expected: tuple[Hashable, float] | None = None
        inflight: deque[Proposal] = deque()
        for _ in range(self.drive_steps):
            while len(inflight) < self.workers:
                inflight.append(strategy.ask())
            p = inflight.popleft()
            score = None if self._score(objective, p) is None else float(objective.matches(p.arch))
            strategy.tell(p.trial_id, score)
            if score is not None and (expected is None or score > expected[1]):
                expected = (p.arch, score)
            assert strategy.best == expected

    # ------------------------------------------------------------------ seeding
    def test_same_seed_same_proposals_and_another_seed_differs(self) -> None:
        runs = {}
        for key, seed in (("a", 7), ("b", 7), ("c", 8)):
            strategy, objective = self._fresh(seed)
            runs[key] = self._drive(strategy, objective, self.drive_steps)
        assert runs["a"] == runs["b"], "the same seed and tells gave different proposals"
        if self.make_space().size > 1:
            assert [p.arch for p in runs["a"]] != [p.arch for p in runs["c"]], "seeds 7 and 8 gave the same run"

    def test_no_global_rng_is_consumed(self) -> None:
        space = self.make_space()
        objective = PlantedObjective(space, seed=12345)
        self._drive(self.make_strategy(space, 0), objective, 2)  # lazy imports happen outside the check
        with untouched_global_rngs(f"strategy {type(self).__name__}"):
            strategy = self.make_strategy(space, 5)
            self._drive(strategy, objective, self.drive_steps)

    # ------------------------------------------------------------------ state
    def test_state_dict_is_json_and_resumes_identically(self) -> None:
        original, objective = self._fresh(11)
        self._drive(original, objective, self.drive_steps, workers=self.workers + 1)
        assert len(original.pending) == self.workers  # proposals in flight at save time
        state = _plain(original.state_dict())
        restored, _ = self._fresh(11)
        restored.load_state_dict(state)
        assert restored.pending == original.pending
        assert (restored.next_id, restored.num_told, restored.num_failed, restored.best) == \
            (original.next_id, original.num_told, original.num_failed, original.best)
        assert _plain(restored.state_dict()) == _plain(original.state_dict())
        assert restored.ask() == original.ask()  # a worker asks while restored proposals are in flight
        for strategy in (original, restored):
            for trial_id, arch in sorted(strategy.pending.items()):
                strategy.tell(trial_id, self._score(objective, Proposal(trial_id, arch)))
        assert self._drive(original, objective, self.drive_steps) == self._drive(restored, objective,
                                                                                 self.drive_steps)
        assert _plain(restored.state_dict()) == _plain(original.state_dict())

    def test_state_dict_is_a_snapshot(self) -> None:
        strategy, objective = self._fresh(12)
        self._drive(strategy, objective, self.drive_steps // 2)
        state = strategy.state_dict()
        frozen = json.dumps(state, sort_keys=True)
        self._drive(strategy, objective, self.drive_steps // 2)
        assert json.dumps(state, sort_keys=True) == frozen, "state_dict() shares data with the live strategy"
        restored, _ = self._fresh(12)
        restored.load_state_dict(state)
        self._drive(restored, objective, self.drive_steps // 2)
        assert json.dumps(state, sort_keys=True) == frozen, "load_state_dict() keeps using the caller's dict"

    def test_load_state_dict_of_another_strategy_raises(self) -> None:
        strategy, objective = self._fresh(13)
        assert isinstance(strategy.name, str) and strategy.name, \
            "a strategy needs a non-empty name: load_state_dict tells states apart by it"
        self._drive(strategy, objective, 3)
        next_id = strategy.next_id
        foreign = _ForeignStrategy(strategy.space, seed=13)
        self._drive(foreign, objective, 3)
        with pytest.raises(ValueError):
            strategy.load_state_dict(_plain(foreign.state_dict()))
        renamed = _plain(strategy.state_dict())
        renamed["strategy"] = f"{strategy.name}.other"
        with pytest.raises(ValueError):
            strategy.load_state_dict(renamed)
        assert strategy.ask().trial_id == next_id  # a refused state leaves the strategy as it was

    # ------------------------------------------------------------------ search
    def test_finds_a_planted_optimum(self) -> None:
        if not self.finds_planted:
            pytest.skip(f"{type(self).__name__}.finds_planted is False")
        runs: dict[int, PlantedRun] = {}
        for seed in self.planted_seeds:
            space = self.make_space()
            objective = PlantedObjective(space, seed=1000 + seed)
            strategy = self.make_strategy(space, seed)
            required = self.planted_required(space)
            runs[seed] = run = run_planted(strategy, objective, self.planted_budget, required)
            if run.hit_at is not None:
                assert strategy.best is not None and objective.matches(strategy.best[0]) >= required
                if required == len(space.variables):
                    assert strategy.best == (objective.target_arch, objective.optimum)
        missed = {seed: run for seed, run in runs.items() if run.hit_at is None}
        assert not missed, (f"{self.planted_mode} goal ({self.planted_required(self.make_space())} matching "
                            f"variables) not reached within {self.planted_budget} queries: {runs}")
