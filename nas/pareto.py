"""Pareto dominance, non-dominated sorting, crowding distance and hypervolume.

Every function takes objective values as an array ``values`` of shape (n, k): n points, k
objectives, every one MAXIMISED (negate a minimised objective first; :meth:`nas.objective.Criterion.signed`
does that). A point dominates another when it is at least as good in every objective and better
in one. Ties (equal vectors) dominate neither.

* :func:`non_dominated`: the mask of the points no other point dominates (the Pareto front).
* :func:`nondominated_ranks`: NSGA-II's fast non-dominated sorting (rank 0 is the front).
* :func:`crowding_distance`: NSGA-II's crowding distance within one set (boundary points inf).
* :func:`hypervolume`: the volume dominated by the points and bounded by a reference point
  (exact: a sweep for k = 2, BoTorch's box decomposition for k > 2).
* :func:`hypervolume_contributions`: how much each point alone adds to the hypervolume.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def as_values(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """``values`` as a float array of shape (n, k) (a (0, k) or (0, 0) array when empty)."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, array.shape[-1] if array.ndim == 2 else 0)
    if array.ndim != 2:
        raise ValueError(f"objective values must have shape (points, objectives), got {array.shape}")
    return array


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` dominates ``b`` (all objectives maximised)."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return bool(np.all(x >= y) and np.any(x > y))


def _domination_matrix(values: np.ndarray) -> np.ndarray:
    """(n, n) bool: entry (i, j) says point i dominates point j."""
    geq = np.all(values[:, None, :] >= values[None, :, :], axis=-1)
    gt = np.any(values[:, None, :] > values[None, :, :], axis=-1)
    return geq & gt


def non_dominated(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Bool mask (n,) of the points no other point dominates (duplicates of a front point all count).

    Points are visited in lexicographic order, best first, so a point can only be dominated by
    points kept before it: O(n x front size) comparisons, fine for the whole NAS-Bench-201 table.
    """
    array = as_values(values)
    mask = np.zeros(len(array), dtype=bool)
    if len(array) == 0:
        return mask
    order = np.lexsort(-array.T[::-1])  # first objective descending, then the next, ...
    front = np.empty((0, array.shape[1]))
    for i in order:
        point = array[i]
        if len(front) and bool(np.any(np.all(front >= point, axis=1) & np.any(front > point, axis=1))):
            continue
        mask[i] = True
        front = np.vstack([front, point])
    return mask


def nondominated_ranks(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Int array (n,): 0 for the Pareto front, 1 for the front of the rest, ... (Deb et al. 2002)."""
    array = as_values(values)
    n = len(array)
    ranks = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return ranks
    dominated_by = _domination_matrix(array)  # (i, j): i dominates j
    counts = dominated_by.sum(axis=0)  # how many points dominate j
    current = np.flatnonzero(counts == 0)
    rank = 0
    while len(current):
        ranks[current] = rank
        counts = counts - dominated_by[current].sum(axis=0)
        counts[ranks >= 0] = -1
        current = np.flatnonzero(counts == 0)
        rank += 1
    return ranks


def crowding_distance(values: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Float array (n,): NSGA-II's crowding distance of each point within ``values`` (one front):
    the sum over objectives of the normalised gap between its two neighbours; the extreme points of
    every objective (and every point of a set of two or fewer) get ``inf``."""
    array = as_values(values)
    n, k = array.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(k):
        order = np.argsort(array[:, j], kind="stable")
        column = array[order, j]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def hypervolume(values: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Volume of the objective space the points dominate, bounded below by ``reference`` (every
    objective maximised; points not strictly better than the reference in every objective add
    nothing). Exact."""
    array = as_values(values)
    ref = np.asarray(reference, dtype=np.float64)
    if array.shape[1:] != ref.shape and len(array):
        raise ValueError(f"reference point has {ref.size} objectives, the points {array.shape[1]}")
    array = array[np.all(array > ref, axis=1)] if len(array) else array
    if len(array) == 0:
        return 0.0
    array = array[non_dominated(array)]
    if array.shape[1] == 1:
        return float(array[:, 0].max() - ref[0])
    if array.shape[1] == 2:
        order = np.argsort(-array[:, 0], kind="stable")  # first objective descending: second ascends on a front
        x, y = array[order, 0], array[order, 1]
        floors = np.concatenate([[ref[1]], np.maximum.accumulate(y)[:-1]])
        return float(np.sum((x - ref[0]) * np.clip(y - floors, 0.0, None)))
    import torch
    from botorch.utils.multi_objective.hypervolume import Hypervolume

    return float(Hypervolume(torch.as_tensor(ref)).compute(torch.as_tensor(array)))


def hypervolume_contributions(values: Sequence[Sequence[float]] | np.ndarray,
                              reference: Sequence[float]) -> np.ndarray:
    """Float array (n,): the hypervolume lost when each point alone is removed (0 for dominated
    points and for duplicates of another point)."""
    array = as_values(values)
    total = hypervolume(array, reference)
    return np.array([total - hypervolume(np.delete(array, i, axis=0), reference) for i in range(len(array))])


def crowded_order_keys(values: Sequence[Sequence[float]] | np.ndarray) -> list[tuple[int, float]]:
    """NSGA-II's crowded-comparison order as a sort key per point, lower is better: (non-dominated
    rank, minus the crowding distance within the point's own front)."""
    array = as_values(values)
    ranks = nondominated_ranks(array)
    crowding = np.zeros(len(array))
    for rank in np.unique(ranks):
        members = np.flatnonzero(ranks == rank)
        crowding[members] = crowding_distance(array[members])
    return [(int(r), -float(c)) for r, c in zip(ranks, crowding, strict=True)]
