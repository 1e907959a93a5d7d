"""nas.pareto: dominance, fronts, non-dominated sorting, crowding and hypervolume, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from botorch.utils.multi_objective.hypervolume import Hypervolume

from nas.pareto import (
    crowded_order_keys,
    crowding_distance,
    dominates,
    hypervolume,
    hypervolume_contributions,
    non_dominated,
    nondominated_ranks,
)


def brute_front(values: np.ndarray) -> np.ndarray:
    return np.array([not any(dominates(o, v) for o in values) for v in values], dtype=bool)


def test_dominance() -> None:
    assert dominates((2, 2), (1, 2)) and not dominates((1, 2), (2, 2))
    assert not dominates((1, 1), (1, 1))  # equal vectors dominate neither
    assert not dominates((2, 0), (0, 2))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_front_and_ranks_match_brute_force(k: int) -> None:
    rng = np.random.default_rng(k)
    values = rng.integers(0, 6, size=(80, k)).astype(float)  # many ties and duplicates
    assert (non_dominated(values) == brute_front(values)).all()
    ranks = nondominated_ranks(values)
    remaining = np.arange(len(values))
    for rank in range(ranks.max() + 1):  # peel fronts off one by one
        front = remaining[brute_front(values[remaining])]
        assert set(np.flatnonzero(ranks == rank)) == set(front)
        remaining = np.setdiff1d(remaining, front)
    assert len(remaining) == 0
    assert non_dominated(np.zeros((0, k))).shape == (0,)


def test_crowding_distance() -> None:
    values = np.array([[0.0, 4.0], [1.0, 3.0], [2.0, 1.0], [4.0, 0.0]])
    d = crowding_distance(values)
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx(2 / 4 + 3 / 4) and d[2] == pytest.approx(3 / 4 + 3 / 4)
    assert np.isinf(crowding_distance(values[:2])).all()
    keys = crowded_order_keys(np.vstack([values, [[0.5, 0.5]]]))
    assert keys[4][0] == 1 and all(k[0] == 0 for k in keys[:4])  # dominated point: second front
    assert min(range(5), key=lambda i: keys[i]) in (0, 3)  # an extreme point first


@pytest.mark.parametrize("k", [2, 3])
def test_hypervolume_matches_botorch(k: int) -> None:
    rng = np.random.default_rng(10 + k)
    values = rng.normal(size=(40, k))
    reference = np.full(k, -1.5)
    expected = Hypervolume(torch.as_tensor(reference)).compute(torch.as_tensor(values[brute_front(values)]
                                                                               [np.all(values[brute_front(values)]
                                                                                       > reference, axis=1)]))
    assert hypervolume(values, reference) == pytest.approx(expected, rel=1e-12)


def test_hypervolume_by_hand_and_contributions() -> None:
    values = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0], [1.0, 1.0], [2.0, 2.0]])
    # the union of the boxes [0,3]x[0,1], [0,1]x[0,3] and [0,2]x[0,2], counted on a unit grid
    grid = sum(any(x < v[0] and y < v[1] for v in values) for x, y in itertools.product(np.arange(0.5, 3, 1), repeat=2))
    assert hypervolume(values, (0.0, 0.0)) == pytest.approx(grid)
    contributions = hypervolume_contributions(values, (0.0, 0.0))
    assert contributions[3] == 0 and contributions[2] == 0 and contributions[4] == 0  # dominated or duplicated
    assert contributions[0] == pytest.approx(1.0) and contributions[1] == pytest.approx(1.0)
    assert hypervolume(values, (5.0, 5.0)) == 0.0
    assert hypervolume(np.zeros((0, 2)), (0.0, 0.0)) == 0.0
