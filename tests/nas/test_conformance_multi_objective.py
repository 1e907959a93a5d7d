"""MultiObjectiveConformance (nas.testing) applied to every strategy with a multi-objective form."""

from __future__ import annotations

import pytest

from nas.strategies import (
    MULTI_OBJECTIVE,
    STRATEGIES,
    AnnealedEvolution,
    Combo,
    OptunaNSGA2,
    OptunaTPE,
    RandomSearch,
    RegularizedEvolution,
)
from nas.strategies.base import Strategy
from nas.testing import MultiObjectiveConformance
from search_spaces.spaces.base import SearchSpace
from search_spaces.spaces.nb201 import NB201Space


class TestRegularizedEvolution(MultiObjectiveConformance):
    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return RegularizedEvolution(space, seed=seed, num_objectives=num_objectives)


class TestAnnealedEvolution(MultiObjectiveConformance):
    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return AnnealedEvolution(space, seed=seed, num_objectives=num_objectives)


class TestOptunaTPE(MultiObjectiveConformance):
    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return OptunaTPE(space, seed=seed, num_objectives=num_objectives)


class TestOptunaNSGA2(MultiObjectiveConformance):
    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return OptunaNSGA2(space, seed=seed, num_objectives=num_objectives)


class TestCombo(MultiObjectiveConformance):
    drive_steps = 14  # 6 random, then model-based asks (two GP fits each)
    front_budget = 40  # a GP fit per ask: a short run (random search reaches 0.25 there, COMBO 0.39)

    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return Combo(space, seed=seed, n_initial=6, n_burn=20, n_samples=3, n_random=200, n_spray=5, n_starts=4,
                     num_objectives=num_objectives)


class TestRandomSearch(MultiObjectiveConformance):
    searches_front = False  # the baseline the others must beat

    def make_strategy(self, space: SearchSpace, seed: int, num_objectives: int) -> Strategy:
        return RandomSearch(space, seed=seed, num_objectives=num_objectives)


def test_every_multi_objective_strategy_has_a_conformance_class() -> None:
    covered = {type(cls().make_strategy(cls().make_space(), 0, 2)) for cls in globals().values()
               if isinstance(cls, type) and issubclass(cls, MultiObjectiveConformance)
               and cls is not MultiObjectiveConformance}
    missing = sorted(name for name in MULTI_OBJECTIVE if STRATEGIES[name] not in covered)
    assert not missing, f"multi-objective strategies without a MultiObjectiveConformance class: {missing}"


def test_a_single_objective_strategy_refuses_several_objectives() -> None:
    class OneObjective(Strategy):
        name = "one-objective"

        def _propose(self):  # type: ignore[no-untyped-def]
            return self.space.sample(self.rng)

    with pytest.raises(ValueError, match="single-objective"):
        OneObjective(NB201Space(), num_objectives=2)
    with pytest.raises(ValueError, match="num_objectives"):
        RandomSearch(NB201Space(), num_objectives=0)
    assert set(MULTI_OBJECTIVE) == set(STRATEGIES)
