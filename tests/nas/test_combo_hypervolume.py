"""nas.combo.hypervolume: EHVI equals BoTorch's analytic ExpectedHypervolumeImprovement; its scorer and
reference point."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from botorch.acquisition.multi_objective.analytic import ExpectedHypervolumeImprovement
from botorch.models import ModelListGP, SingleTaskGP
from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning

from nas.combo import DiffusionKernel, GraphGPSampler, SampledGP
from nas.combo.hypervolume import (
    ehvi_scorer,
    expected_hypervolume_improvement,
    improvement_cells,
    reference_point,
)


@pytest.mark.parametrize("m", [2, 3])
def test_ehvi_equals_botorch(m: int) -> None:
    torch.manual_seed(m)
    x = torch.rand(14, 2, dtype=torch.float64)
    y = torch.stack([torch.sin(3 * x[:, 0] + j) - j * x[:, 1] for j in range(m)], dim=-1)
    model = ModelListGP(*[SingleTaskGP(x, y[:, j:j + 1]) for j in range(m)])
    ref = y.min(0).values - 0.1
    botorch_ehvi = ExpectedHypervolumeImprovement(model, ref.tolist(), FastNondominatedPartitioning(ref, y))
    xq = torch.rand(40, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        expected = botorch_ehvi(xq)
        posterior = model.posterior(xq)
        lower, upper = improvement_cells(y.numpy(), ref.numpy())
        ours = expected_hypervolume_improvement(posterior.mean.squeeze(1), posterior.variance.squeeze(1), lower, upper)
    assert expected.max() > 1e-3
    assert torch.allclose(ours, expected, rtol=1e-9, atol=1e-12)


def test_reference_point_is_below_the_front() -> None:
    values = np.array([[1.0, 5.0], [3.0, 2.0], [0.0, 0.0]])
    ref = reference_point(values)
    # the nadir of the front, (1, 2), minus 10 % of the front's range (2, 3)
    assert ref == pytest.approx([1.0 - 0.2, 2.0 - 0.3])


def test_scorer_prefers_a_point_beyond_the_front() -> None:
    """Two objectives on a 1-variable path graph: f1 = v, f2 = -v observed at the ends only; the
    middle is uncertain and would extend the front, observed points add nothing."""
    kernel = DiffusionKernel([5], [True])
    x = np.array([[0], [4]])
    rng = np.random.default_rng(0)
    gps = []
    for column in (np.array([0.0, 4.0]), np.array([0.0, -4.0])):  # maximised objective values
        sampler = GraphGPSampler(kernel, x, -column)
        _, samples = sampler.run(sampler.initial_state(), rng, 5)
        gps.append(SampledGP(kernel, x, -column, samples))
    values = np.array([[0.0, 0.0], [4.0, -4.0]])
    lower, upper = improvement_cells(values, reference_point(values))
    scores = ehvi_scorer(gps, lower, upper)(np.arange(5)[:, None])
    assert scores.shape == (5,) and (scores >= 0).all()
    assert scores[1:4].max() > max(scores[0], scores[4])
