"""Evolutionary strategies: regularized (aging) evolution and the annealed-mutation variant.

Both are asynchronous (Real et al. 2019; NNI's scheme, nas-algorithms.md 1.6): a proposal is
made whenever a worker is free; a child joins the population when its result is told.

A repeated child (the base contract) is not evaluated again: when it has a full-budget score it
rejoins the population with that score at no cost (as a re-evaluation would have made it, which
keeps a good member alive in aging evolution), and the tournament and mutation run again; the
annealed schedule counts only children actually proposed. A result told at less than the
full budget (a trial stopped early by ASHA) never joins the population: a low-fidelity score
would compete with full-budget ones as if final; the member only counts as proposed.

Multi-objective (``num_objectives`` >= 2): members are ranked by NSGA-II's crowded comparison
(non-dominated rank first, then crowding distance, larger is better), so a tournament picks the
member of the best front and, within it, the least crowded one. Aging evolution still removes the
oldest member (the regularisation that defines it), but its tournaments draw from the population
together with the Pareto front of everything told so far: with aging alone (Syne Tune's
multi-objective regularized evolution) front members age out and the front is searched no better
than at random (the planted-front conformance check fails); the front keeps it elitist. The
annealed variant removes the worst member by the crowded order, so its population stays elitist.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Hashable
from typing import Any

from nas.pareto import crowded_order_keys
from nas.strategies.base import Score, Strategy
from search_spaces.errors import InputError
from search_spaces.spaces.base import SearchSpace


class _Evolution(Strategy):
    """Population bookkeeping shared by both variants: entries are (arch, score) in join order."""

    multi_objective = True

    def __init__(self, space: SearchSpace, population_size: int, sample_size: int, seed: int = 0,
                 tournament_replacement: bool = False, num_objectives: int = 1) -> None:
        super().__init__(space, seed, num_objectives)
        if population_size < 1 or not 1 <= sample_size:
            raise InputError(f"need population_size >= 1 and sample_size >= 1, got {population_size}, {sample_size}")
        if sample_size > population_size and not tournament_replacement:
            raise InputError(f"sample_size {sample_size} exceeds population_size {population_size} "
                             "(use tournament_replacement=True to sample with replacement)")
        self.population_size = population_size
        self.sample_size = sample_size
        self.tournament_replacement = tournament_replacement
        self.population: deque[tuple[Hashable, Score]] = deque()
        self.num_children = 0  # proposals made by mutation
        self._last_was_child = False
        self._discarded_child = False
        self._last_parent: Hashable | None = None

    def _tournament_parent(self) -> Hashable:
        """Best of ``sample_size`` members drawn uniformly (ties: first drawn); multi-objective: the
        first in the crowded-comparison order of the tournament pool."""
        if self.multi:
            return self._crowded_tournament()
        n = len(self.population)
        if self.tournament_replacement:
            picks = self.rng.integers(n, size=self.sample_size)
        else:
            picks = self.rng.permutation(n)[: min(self.sample_size, n)]
        members = [self.population[int(i)] for i in picks]
        return max(members, key=lambda m: m[1])[0]

    def _tournament_pool(self) -> list[tuple[Hashable, Score]]:
        """Multi-objective: the members a tournament draws from (default: the population)."""
        return list(self.population)

    def _crowded_tournament(self) -> Hashable:
        """The first, in the crowded-comparison order, of ``sample_size`` members of the pool drawn uniformly."""
        pool = self._tournament_pool()
        keys = crowded_order_keys([s for _, s in pool])
        if self.tournament_replacement:
            picks = self.rng.integers(len(pool), size=self.sample_size)
        else:
            picks = self.rng.permutation(len(pool))[: min(self.sample_size, len(pool))]
        return pool[int(min(picks, key=lambda i: keys[int(i)]))][0]

    def _propose(self) -> Hashable:
        # random initialisation until the population plus everything in flight covers P;
        # afterwards every free worker gets a mutated tournament winner
        self._last_was_child = False
        if not self.population or len(self.population) + len(self.pending) < self.population_size:
            return self.space.sample(self.rng)
        parent = self._tournament_parent()
        child = self._mutate(parent)
        self.num_children += 1
        self._last_was_child = True
        self._last_parent = parent
        return child

    def _substitute_anchors(self, arch: Hashable) -> tuple[Hashable, ...]:
        # a repeated child is replaced by another child of its parent, else by a neighbour of it
        return (self._last_parent, arch) if self._last_was_child else (arch,)

    def _discard(self, arch: Hashable) -> None:
        self._discarded_child = self._last_was_child
        if self._last_was_child:
            self.num_children -= 1
        known = self.proposed.get(arch)
        if known is not None:
            self._join(arch, known)

    def _adopt(self, arch: Hashable) -> None:
        if self._discarded_child:  # an unproposed neighbour of a repeated child: a child too
            self.num_children += 1

    def _on_result(self, trial_id: int, arch: Hashable, score: Score) -> None:
        self._join(arch, score)

    def _join(self, arch: Hashable, score: Score) -> None:
        """A member with its score joins the population (each variant removes one its own way)."""
        raise NotImplementedError

    def _mutate(self, parent: Hashable) -> Hashable:
        return self.space.mutate(parent, self.rng)

    def _extra_state(self) -> dict[str, Any]:
        return {"population": [[self._arch_json(a), list(s) if isinstance(s, tuple) else s]
                               for a, s in self.population],
                "num_children": self.num_children}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        self.population = deque((self._arch_from_json(a), self._score(s)) for a, s in state["population"])
        self.num_children = state["num_children"]


class RegularizedEvolution(_Evolution):
    """Aging evolution (Real et al. 2019, Algorithm 1).

    Population of ``population_size`` (P); each child's parent is the fittest of ``sample_size``
    (S) members drawn uniformly (without replacement by default, as in the nasbench notebook and
    NNI); the child is the parent mutated once (``space.mutate``: one variable changed); when a
    child joins, the OLDEST member is removed. The result is the best ever told (``best``).
    Failed trials never join the population.
    """

    name = "evolution"

    def __init__(self, space: SearchSpace, population_size: int = 10, sample_size: int = 3, seed: int = 0,
                 tournament_replacement: bool = False, num_objectives: int = 1) -> None:
        # defaults sized for budgets of tens to hundreds of trials (NAS-Bench-201's R_EA: P=10, S=3);
        # the paper's P=100, S=25 need thousands
        super().__init__(space, population_size, sample_size, seed, tournament_replacement, num_objectives)

    def _join(self, arch: Hashable, score: Score) -> None:
        self.population.append((arch, score))
        while len(self.population) > self.population_size:
            self.population.popleft()  # aging: remove the oldest

    def _tournament_pool(self) -> list[tuple[Hashable, Score]]:
        in_population = {a for a, _ in self.population}
        return list(self.population) + [m for m in self.pareto_front() if m[0] not in in_population]


class AnnealedEvolution(_Evolution):
    """The lecture's / EvaNet variant (Piergiovanni et al. 2019): NOT aging.

    Tournament of ``sample_size`` (default 3; the lecture's 25 for P=100); in round i (the i-th
    child) the child is the parent mutated ``max(ceil(d - i / r), 1)`` times (``initial_mutations``
    d, ``rounds_per_step`` r); when a child joins, the LEAST FIT member is removed (first one on ties).
    """

    name = "evolution-annealed"

    def __init__(self, space: SearchSpace, initial_mutations: int = 3, rounds_per_step: int = 10,
                 population_size: int = 10, sample_size: int = 3, seed: int = 0,
                 tournament_replacement: bool = False, num_objectives: int = 1) -> None:
        if initial_mutations < 1 or rounds_per_step < 1:
            raise InputError("initial_mutations and rounds_per_step must be >= 1")
        super().__init__(space, population_size, sample_size, seed, tournament_replacement, num_objectives)
        self.initial_mutations = initial_mutations
        self.rounds_per_step = rounds_per_step

    def mutations_for_round(self, i: int) -> int:
        return max(math.ceil(self.initial_mutations - i / self.rounds_per_step), 1)

    def _mutate(self, parent: Hashable) -> Hashable:
        child = parent
        for _ in range(self.mutations_for_round(self.num_children)):
            child = self.space.mutate(child, self.rng)
        return child

    def _join(self, arch: Hashable, score: Score) -> None:
        self.population.append((arch, score))
        while len(self.population) > self.population_size:
            if self.multi:
                keys = crowded_order_keys([s for _, s in self.population])
                worst = max(range(len(self.population)), key=lambda k: keys[k])  # first one on ties
            else:
                worst = min(range(len(self.population)), key=lambda k: self.population[k][1])
            del self.population[worst]
