"""Search strategies: the ask/tell contract (nas.strategies.base), regularized (aging) evolution
exactly as nas-algorithms.md 1.1/1.2/1.6, the annealed EvaNet variant (1.5) and random search."""

from __future__ import annotations

import json
import math
from collections import Counter, deque
from collections.abc import Callable, Hashable
from fractions import Fraction

import numpy as np
import pytest

from nas.strategies import STRATEGIES, AnnealedEvolution, RandomSearch, RegularizedEvolution, Strategy, make_strategy
from search_spaces.spaces.nb201 import NB201_OPS, NB201Space

SPACE = NB201Space()
WEIGHTS = np.array([3.0, 1.0, 2.0, 5.0, 0.5, 4.0])

Factory = Callable[..., Strategy]
FACTORIES: dict[str, Factory] = {
    "random": lambda space=SPACE, seed=0: RandomSearch(space, seed=seed),
    "evolution": lambda space=SPACE, seed=0: RegularizedEvolution(space, population_size=5, sample_size=2, seed=seed),
    "evolution-annealed": lambda space=SPACE, seed=0: AnnealedEvolution(
        space, initial_mutations=3, rounds_per_step=2, population_size=5, sample_size=2, seed=seed),
}


def score_of(arch: Hashable) -> float | None:
    """Deterministic synthetic objective of the encoding; about 1 in 25 archs 'fails'."""
    x = SPACE.encode(arch)
    if x[0] == 0 and x[5] == 0:
        return None
    return float(x @ WEIGHTS)


def distance(a: Hashable, b: Hashable) -> int:
    return int(np.sum(SPACE.encode(a) != SPACE.encode(b)))


def uniform_arch(k: int) -> tuple[str, ...]:
    """Member with op k on every edge: any two of these differ in all 6 variables."""
    return (NB201_OPS[k],) * 6


def drive(strategy: Strategy, steps: int, workers: int = 3) -> list[tuple[int, Hashable]]:
    """Asynchronous schedule: keep ``workers`` proposals in flight, tell the oldest; leaves them pending."""
    proposals: list[tuple[int, Hashable]] = []
    inflight: deque[tuple[int, Hashable]] = deque()
    for _ in range(steps):
        while len(inflight) < workers:
            p = strategy.ask()
            proposals.append((p.trial_id, p.arch))
            inflight.append((p.trial_id, p.arch))
        trial, arch = inflight.popleft()
        strategy.tell(trial, score_of(arch))
    return proposals


class CountingSpace(NB201Space):
    """NB201 space that counts sample and mutate calls."""

    def __init__(self) -> None:
        super().__init__()
        self.samples = 0
        self.mutations = 0

    def sample(self, rng: np.random.Generator) -> Hashable:
        self.samples += 1
        return super().sample(rng)

    def mutate(self, arch: Hashable, rng: np.random.Generator) -> Hashable:
        self.mutations += 1
        return super().mutate(arch, rng)


class ScriptedRng:
    """Stands in for the generator in a tournament: returns the given draw order."""

    def __init__(self, order: list[int]) -> None:
        self.order = np.array(order)

    def permutation(self, n: int) -> np.ndarray:
        assert sorted(self.order.tolist()) == list(range(n))
        return self.order

    def integers(self, n: int, size: int) -> np.ndarray:
        assert len(self.order) == size and self.order.max() < n
        return self.order


# ---------------------------------------------------------------------------------- the contract
def test_registry_and_make_strategy() -> None:
    assert set(STRATEGIES) == {"random", "evolution", "evolution-annealed", "tpe", "combo", "nsga2"}
    strategy = make_strategy("evolution", SPACE, seed=3, population_size=4, sample_size=2)
    assert isinstance(strategy, RegularizedEvolution) and strategy.seed == 3 and strategy.population_size == 4
    with pytest.raises(ValueError, match="unknown strategy 'nope'"):
        make_strategy("nope", SPACE)


@pytest.mark.parametrize("name", FACTORIES)
def test_ids_increase_and_asks_before_tells(name: str) -> None:
    strategy = FACTORIES[name]()
    proposals = [strategy.ask() for _ in range(12)]  # more in flight than the population size
    assert [p.trial_id for p in proposals] == list(range(12))
    assert all(SPACE.encode(p.arch).shape == (6,) for p in proposals)
    assert len(strategy.pending) == 12
    for p in reversed(proposals):  # any order
        strategy.tell(p.trial_id, 1.0 + p.trial_id)
    assert strategy.pending == {} and strategy.num_told == 12 and strategy.num_failed == 0
    assert strategy.ask().trial_id == 12
    assert strategy.best is not None and strategy.best[1] == 12.0 and strategy.best[0] == proposals[11].arch


@pytest.mark.parametrize("name", FACTORIES)
def test_tell_unknown_or_twice_raises(name: str) -> None:
    strategy = FACTORIES[name]()
    p = strategy.ask()
    with pytest.raises(KeyError):
        strategy.tell(p.trial_id + 1, 1.0)  # never proposed
    strategy.tell(p.trial_id, 1.0)
    with pytest.raises(KeyError):
        strategy.tell(p.trial_id, 1.0)  # already told
    with pytest.raises(KeyError):
        strategy.tell(p.trial_id, None)
    assert strategy.num_told == 1


@pytest.mark.parametrize("bad", [None, math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("name", FACTORIES)
def test_failures_are_counted_and_never_join_the_population(name: str, bad: float | None) -> None:
    strategy = FACTORIES[name]()
    proposals = [strategy.ask() for _ in range(5)]
    strategy.tell(proposals[0].trial_id, bad)
    strategy.tell(proposals[1].trial_id, 2.0)
    strategy.tell(proposals[2].trial_id, bad)
    assert strategy.num_told == 3 and strategy.num_failed == 2
    assert strategy.best == (proposals[1].arch, 2.0)
    if isinstance(strategy, RegularizedEvolution | AnnealedEvolution):
        assert list(strategy.population) == [(proposals[1].arch, 2.0)]
        assert all(math.isfinite(s) for _, s in strategy.population)
    json.dumps(strategy.state_dict(), allow_nan=False)


@pytest.mark.parametrize("name", FACTORIES)
def test_same_seed_same_proposals(name: str) -> None:
    a = drive(FACTORIES[name](seed=7), 40)
    b = drive(FACTORIES[name](seed=7), 40)
    c = drive(FACTORIES[name](seed=8), 40)
    assert a == b
    assert [arch for _, arch in a] != [arch for _, arch in c]


@pytest.mark.parametrize("name", FACTORIES)
def test_state_dict_round_trip_continues_identically(name: str) -> None:
    original = FACTORIES[name](seed=11)
    drive(original, 23, workers=4)  # leaves 3 proposals pending
    assert len(original.pending) == 3
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = FACTORIES[name](seed=999)  # the seed comes from the state
    restored.load_state_dict(state)
    assert restored.state_dict() == original.state_dict()
    assert restored.pending == original.pending
    # tell the pending ones (restored knows them) and keep going: identical proposals
    for strategy in (original, restored):
        for trial, arch in sorted(strategy.pending.items()):
            strategy.tell(trial, score_of(arch))
    assert drive(original, 30) == drive(restored, 30)
    assert restored.state_dict() == original.state_dict()


@pytest.mark.parametrize("name", FACTORIES)
def test_best_is_the_first_of_equal_scores(name: str) -> None:
    strategy = FACTORIES[name]()
    a, b, c = (strategy.ask() for _ in range(3))
    strategy.tell(a.trial_id, 2.0)
    strategy.tell(b.trial_id, 3.0)
    strategy.tell(c.trial_id, 3.0)
    assert strategy.best == (b.arch, 3.0)


def test_load_state_of_another_strategy_raises() -> None:
    state = FACTORIES["random"]().state_dict()
    with pytest.raises(ValueError, match="random"):
        FACTORIES["evolution"]().load_state_dict(state)


# ---------------------------------------------------------------------------------- regularized evolution
def test_population_fills_with_random_samples_until_population_plus_pending_reaches_p() -> None:
    space = CountingSpace()
    strategy = RegularizedEvolution(space, population_size=4, sample_size=2, seed=0)
    asked = [strategy.ask() for _ in range(5)]  # empty population: everything random
    assert (space.samples, space.mutations, strategy.num_children) == (5, 0, 0)
    strategy.tell(asked[0].trial_id, 1.0)  # population 1 + pending 4 >= 4: children from now on
    child = strategy.ask()
    assert (space.samples, space.mutations, strategy.num_children) == (5, 1, 1)
    assert distance(child.arch, asked[0].arch) == 1  # the only member is the tournament winner
    for p in asked[1:4]:
        strategy.tell(p.trial_id, None)  # failures: population 1 + pending 2 (trials 4, 5) < 4
    strategy.ask()  # random again
    assert (space.samples, space.mutations) == (6, 1)
    strategy.ask()  # population 1 + pending 3 (trials 4, 5, 6) >= 4: a child
    assert (space.samples, space.mutations) == (6, 2)


def test_sequential_fill_then_only_children() -> None:
    space = CountingSpace()
    strategy = RegularizedEvolution(space, population_size=6, sample_size=3, seed=1)
    for i in range(30):
        p = strategy.ask()
        assert space.samples == min(i + 1, 6) and strategy.num_children == max(i - 5, 0)
        assert space.mutations >= strategy.num_children  # a repeated child is mutated again
        strategy.tell(p.trial_id, score_of(p.arch))
    assert len(strategy.population) == 6


def test_children_are_one_mutation_of_the_tournament_winner() -> None:
    # sample_size == population_size without replacement: the sample is the whole population, so
    # the winner is always the best member, and every child differs from it in exactly one variable
    strategy = RegularizedEvolution(SPACE, population_size=5, sample_size=5, seed=2)
    scores = [3.0, 1.0, 9.0, 4.0, 2.0]
    strategy.population = deque((uniform_arch(k), s) for k, s in enumerate(scores))
    children = [strategy.ask().arch for _ in range(24)]
    neighbours = set(SPACE.neighbours(uniform_arch(2)))
    assert set(children) == neighbours and len(neighbours) == 24  # each one-mutation child once: no repeats
    beyond = strategy.ask().arch  # every neighbour proposed: an unproposed neighbour of a repeated child
    assert distance(beyond, uniform_arch(2)) == 2


def test_tournament_with_replacement_can_miss_the_best() -> None:
    # the same population with replacement: 5 draws miss the best with probability (4/5)**5
    strategy = RegularizedEvolution(SPACE, population_size=5, sample_size=5, seed=2, tournament_replacement=True)
    strategy.population = deque((uniform_arch(k), s) for k, s in enumerate([3.0, 1.0, 9.0, 4.0, 2.0]))
    parents = []
    for _ in range(30):  # 5 x 24 distinct children exist: no substitute is needed this early
        child = strategy.ask().arch
        (parent,) = [k for k in range(5) if distance(child, uniform_arch(k)) == 1]
        parents.append(parent)
    counts = Counter(parents)
    assert 12 < counts[2] < 30 and set(counts) - {2}


def test_tournament_picks_best_of_the_sample_first_on_ties() -> None:
    strategy = RegularizedEvolution(SPACE, population_size=4, sample_size=3, seed=0)
    strategy.population = deque([(uniform_arch(0), 1.0), (uniform_arch(1), 5.0), (uniform_arch(2), 5.0),
                                 (uniform_arch(3), 9.0)])
    strategy.rng = ScriptedRng([2, 1, 0, 3])  # sample = members 2, 1, 0 (not the best member 3)
    assert strategy._tournament_parent() == uniform_arch(2)  # tie 5.0: the first drawn
    strategy.rng = ScriptedRng([1, 2, 0, 3])
    assert strategy._tournament_parent() == uniform_arch(1)
    strategy.rng = ScriptedRng([0, 3, 1, 2])
    assert strategy._tournament_parent() == uniform_arch(3)
    replacing = RegularizedEvolution(SPACE, population_size=4, sample_size=3, seed=0, tournament_replacement=True)
    replacing.population = strategy.population
    replacing.rng = ScriptedRng([0, 0, 1])
    assert replacing._tournament_parent() == uniform_arch(1)


def test_tournament_without_replacement_draws_distinct_members() -> None:
    class Recording(RegularizedEvolution):
        def _tournament_parent(self) -> Hashable:
            state = self.rng.bit_generator.state
            parent = super()._tournament_parent()
            replay = np.random.default_rng()
            replay.bit_generator.state = state
            # the strategy consumed exactly one permutation: the sample is its first S entries
            self.samples.append(replay.permutation(len(self.population))[: self.sample_size].tolist())
            assert replay.bit_generator.state == self.rng.bit_generator.state
            return parent

    strategy = Recording(SPACE, population_size=4, sample_size=4, seed=5)
    strategy.samples = []
    strategy.population = deque((uniform_arch(k), float(k)) for k in range(4))
    for _ in range(20):
        strategy.ask()
    assert all(sorted(sample) == [0, 1, 2, 3] for sample in strategy.samples)


def test_sample_size_larger_than_population() -> None:
    with pytest.raises(ValueError, match="sample_size 6 exceeds population_size 5"):
        RegularizedEvolution(SPACE, population_size=5, sample_size=6)
    with pytest.raises(ValueError):
        AnnealedEvolution(SPACE, initial_mutations=2, rounds_per_step=2, population_size=5, sample_size=6)
    RegularizedEvolution(SPACE, population_size=5, sample_size=6, tournament_replacement=True)  # allowed
    for p, s in ((0, 1), (3, 0)):
        with pytest.raises(ValueError):
            RegularizedEvolution(SPACE, population_size=p, sample_size=s)


def test_aging_removes_the_oldest_even_when_it_is_the_best() -> None:
    strategy = RegularizedEvolution(SPACE, population_size=3, sample_size=2, seed=0)
    init = [strategy.ask() for _ in range(3)]
    for p, score in zip(init, [100.0, 1.0, 2.0], strict=True):  # the oldest is by far the best
        strategy.tell(p.trial_id, score)
    child = strategy.ask()
    strategy.tell(child.trial_id, 0.5)  # the worst joins, the oldest (best) leaves
    assert list(strategy.population) == [(init[1].arch, 1.0), (init[2].arch, 2.0), (child.arch, 0.5)]
    assert strategy.best == (init[0].arch, 100.0)  # the result is the best ever told
    child2 = strategy.ask()
    strategy.tell(child2.trial_id, 50.0)
    assert [s for _, s in strategy.population] == [2.0, 0.5, 50.0]


def test_age_is_join_order_for_out_of_order_results() -> None:
    strategy = RegularizedEvolution(SPACE, population_size=2, sample_size=1, seed=0)
    a, b, c = (strategy.ask() for _ in range(3))
    strategy.tell(b.trial_id, 1.0)
    strategy.tell(a.trial_id, 2.0)
    strategy.tell(c.trial_id, 3.0)  # b joined first, so b leaves
    assert list(strategy.population) == [(a.arch, 2.0), (c.arch, 3.0)]


# ---------------------------------------------------------------------------------- annealed variant
@pytest.mark.parametrize(("d", "r"), [(3, 2), (1, 1), (4, 3), (2, 10)])
def test_mutations_for_round(d: int, r: int) -> None:
    strategy = AnnealedEvolution(SPACE, initial_mutations=d, rounds_per_step=r, population_size=3, sample_size=2)
    for i in range(60):
        exact = Fraction(d) - Fraction(i, r)
        assert strategy.mutations_for_round(i) == max(math.ceil(exact), 1)
    assert strategy.mutations_for_round(0) == d
    assert strategy.mutations_for_round(10**6) == 1


def test_mutations_for_round_values() -> None:
    strategy = AnnealedEvolution(SPACE, initial_mutations=3, rounds_per_step=2, population_size=3, sample_size=2)
    assert [strategy.mutations_for_round(i) for i in range(8)] == [3, 3, 2, 2, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        AnnealedEvolution(SPACE, initial_mutations=0, rounds_per_step=2)
    with pytest.raises(ValueError):
        AnnealedEvolution(SPACE, initial_mutations=2, rounds_per_step=0)


def test_annealed_children_mutated_per_schedule() -> None:
    class Recording(AnnealedEvolution):
        def _mutate(self, parent: Hashable) -> Hashable:
            before = self.space.mutations
            child = super()._mutate(parent)
            self.made.append((parent, child, self.space.mutations - before))
            return child

    space = CountingSpace()
    strategy = Recording(space, initial_mutations=4, rounds_per_step=5, population_size=5, sample_size=2, seed=3)
    strategy.made = []
    strategy.population = deque((uniform_arch(k), float(k)) for k in range(5))
    distances = []
    for i in range(40):
        assert strategy.num_children == i  # only children actually proposed advance the schedule
        child = strategy.ask().arch
        parent, made, mutations = strategy.made[-1]
        assert made == child, "a child proposal is the last one mutated (repeats are mutated again)"
        k = strategy.mutations_for_round(i)
        assert mutations == k  # round i mutates max(ceil(d - i/r), 1) times
        distances.append(distance(child, parent))
        assert distances[-1] <= k
    assert max(distances[:5]) == 4  # early children do differ in up to d variables
    assert all(dist == 1 for dist in distances[15:])  # after (d-1)*r rounds: one mutation


def test_annealed_removes_the_least_fit_first_on_ties() -> None:
    strategy = AnnealedEvolution(SPACE, initial_mutations=2, rounds_per_step=2, population_size=3, sample_size=2)
    init = [strategy.ask() for _ in range(3)]
    for p, score in zip(init, [100.0, 1.0, 2.0], strict=True):
        strategy.tell(p.trial_id, score)
    child = strategy.ask()
    strategy.tell(child.trial_id, 50.0)  # least fit (1.0) leaves, not the oldest (100.0)
    assert list(strategy.population) == [(init[0].arch, 100.0), (init[2].arch, 2.0), (child.arch, 50.0)]
    child2 = strategy.ask()
    strategy.tell(child2.trial_id, 2.0)  # tie at 2.0: the first (older) one leaves
    assert list(strategy.population) == [(init[0].arch, 100.0), (child.arch, 50.0), (child2.arch, 2.0)]
    child3 = strategy.ask()
    strategy.tell(child3.trial_id, 0.1)  # a child worse than everyone leaves again at once
    assert [s for _, s in strategy.population] == [100.0, 50.0, 2.0]


# ---------------------------------------------------------------------------------- random search
def test_random_search_is_uniform_and_seeded() -> None:
    strategy = RandomSearch(SPACE, seed=4)
    archs = [strategy.ask().arch for _ in range(5000)]
    codes = np.stack([SPACE.encode(a) for a in archs])
    for var in range(6):
        counts = np.bincount(codes[:, var], minlength=5)
        assert counts.min() > 870 and counts.max() < 1130, counts  # expected 1000, sd about 28
    assert len(set(archs)) > 4000  # 15,625 members: few repeats
    again = RandomSearch(SPACE, seed=4)
    assert [again.ask().arch for _ in range(50)] == archs[:50]


def test_random_search_ignores_scores() -> None:
    a, b = RandomSearch(SPACE, seed=1), RandomSearch(SPACE, seed=1)
    for i in range(20):
        pa, pb = a.ask(), b.ask()
        assert pa == pb
        a.tell(pa.trial_id, float(i))
        b.tell(pb.trial_id, None if i % 3 else -float(i))
    assert a.num_failed == 0 and b.num_failed == 13
