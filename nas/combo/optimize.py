"""COMBO's acquisition optimiser on the product graph (nas-algorithms.md 3.7).

1. Candidate pool: ``n_random`` uniformly random vertices plus ``n_spray`` random graph
   neighbours of the incumbent; when the space has at most ``n_random`` members, every member
   not evaluated (nor pending, nor failed) is scored instead.
2. The ``n_starts`` best candidates start a steepest greedy ascent over graph neighbours
   (Hamming-1 for categorical variables, ±1 for ordinal ones): move to the best neighbour while
   it strictly improves the acquisition.
3. The suggestion is the best local optimum not yet evaluated; else the first unevaluated
   neighbour of the optima (best first); else a uniformly random unevaluated vertex.
   Only when every vertex is excluded does it return an excluded one (a random vertex).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from search_spaces.spaces.base import Variable

ENUMERATE_LIMIT = 200_000
"""Spaces up to this size are enumerated to draw a random unexcluded vertex exactly."""


class VertexSpace:
    """The integer vertices ``∏_i {0..n_i-1}`` of a search space and their graph neighbourhoods."""

    def __init__(self, variables: Sequence[Variable]) -> None:
        self.variables = list(variables)
        self.cards = np.array([v.cardinality for v in self.variables], dtype=np.int64)
        self.d = len(self.cards)
        self.size = int(np.prod(self.cards, dtype=object))
        # neighbour values of value a of variable i, from the space's own definition
        self._nbrs = [[v.neighbour_indices(a) for a in range(v.cardinality)] for v in self.variables]
        self._all: np.ndarray | None = None

    def key(self, x: Iterable[int]) -> tuple[int, ...]:
        return tuple(int(v) for v in x)

    def random(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """``(m, d)`` uniform vertices (one ``rng.integers`` call per variable, in order)."""
        if m == 0:
            return np.zeros((0, self.d), dtype=np.int64)
        return np.stack([rng.integers(int(c), size=m) for c in self.cards], axis=1).astype(np.int64)

    def all_vertices(self) -> np.ndarray:
        """Every vertex ``(size, d)`` in lexicographic order (only for small spaces; cached)."""
        if self._all is None:
            grids = np.meshgrid(*[np.arange(c) for c in self.cards], indexing="ij")
            self._all = np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int64)
        return self._all

    def unexcluded_vertices(self, excluded: set[tuple[int, ...]]) -> np.ndarray:
        """Every vertex not in ``excluded`` (small spaces only)."""
        members = self.all_vertices()
        if not excluded:
            return members
        radix = np.concatenate([np.cumprod(self.cards[::-1])[::-1][1:], [1]])
        keys = members @ radix
        gone = np.array(sorted(excluded), dtype=np.int64).reshape(-1, self.d) @ radix
        return members[~np.isin(keys, gone)]

    def neighbours(self, x: np.ndarray) -> np.ndarray:
        """Graph neighbours of vertex ``x (d,)``: ``(k, d)``, variable by variable."""
        rows = []
        for i in range(self.d):
            for value in self._nbrs[i][int(x[i])]:
                y = x.copy()
                y[i] = value
                rows.append(y)
        return np.array(rows, dtype=np.int64).reshape(-1, self.d)

    def random_unexcluded(self, rng: np.random.Generator, excluded: set[tuple[int, ...]]) -> np.ndarray | None:
        """A uniformly random vertex not in ``excluded``; None if there is none."""
        if len(excluded) >= self.size:
            return None
        if self.size <= ENUMERATE_LIMIT:
            free = self.unexcluded_vertices(excluded)
            return free[int(rng.integers(len(free)))] if len(free) else None
        for _ in range(10_000):  # the excluded set is a vanishing fraction of a large space
            x = self.random(rng, 1)[0]
            if self.key(x) not in excluded:
                return x
        return None


def greedy_ascent(score: Callable[[np.ndarray], np.ndarray], space: VertexSpace, starts: np.ndarray,
                  start_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Steepest ascent from each start ``(k, d)``, all starts batched into one ``score`` call per
    step. Returns the local optima ``(k, d)`` and their scores ``(k,)``."""
    current, values = starts.copy(), np.asarray(start_scores, dtype=np.float64).copy()
    active = list(range(len(current)))
    while active:
        groups = [space.neighbours(current[j]) for j in active]
        sizes = [len(g) for g in groups]
        scores = score(np.concatenate(groups)) if sum(sizes) else np.zeros(0)
        still = []
        for j, group, part in zip(active, groups, np.split(scores, np.cumsum(sizes)[:-1]), strict=True):
            if len(group) and part.max() > values[j]:
                best = int(np.argmax(part))
                current[j], values[j] = group[best], part[best]
                still.append(j)
        active = still
    return current, values


def optimise_acquisition(score: Callable[[np.ndarray], np.ndarray], space: VertexSpace, rng: np.random.Generator,
                         excluded: set[tuple[int, ...]], incumbent: np.ndarray, n_random: int = 20_000,
                         n_spray: int = 10, n_starts: int = 20) -> np.ndarray:
    """COMBO's suggestion ``(d,)`` maximising ``score`` (``(m, d) -> (m,)``); see the module doc."""
    if space.size <= n_random:
        pool = space.unexcluded_vertices(excluded)
    else:
        spray = space.neighbours(np.asarray(incumbent, dtype=np.int64))
        spray = spray[rng.permutation(len(spray))[:n_spray]]
        pool = np.concatenate([spray, space.random(rng, n_random)])
    if len(pool):
        values = score(pool)
        keep = ~np.isnan(values)
        pool, values = pool[keep], values[keep]
    if len(pool) == 0:  # nothing scorable: every vertex is excluded (or NaN)
        fallback = space.random_unexcluded(rng, excluded)
        return fallback if fallback is not None else space.random(rng, 1)[0]
    top = np.argsort(-values, kind="stable")[:n_starts]
    optima, opt_values = greedy_ascent(score, space, pool[top], values[top])
    order = np.argsort(-opt_values, kind="stable")
    for j in order:
        if space.key(optima[j]) not in excluded:
            return optima[j]
    for j in order:
        for nb in space.neighbours(optima[j]):
            if space.key(nb) not in excluded:
                return nb
    fallback = space.random_unexcluded(rng, excluded)
    return fallback if fallback is not None else space.random(rng, 1)[0]
