"""Expected hypervolume improvement (EHVI) for multi-objective COMBO: one diffusion-kernel GP per
objective, independent, under each objective's hyper-parameter samples.

Every objective is MAXIMISED here. The region a new point would add to the front's hypervolume
is split into hyper-rectangles by BoTorch's ``FastNondominatedPartitioning``
(:func:`improvement_cells`); EHVI under independent Gaussian predictions is then the closed form
of Yang et al. (2019), computed exactly as ``botorch.acquisition.multi_objective.analytic.
ExpectedHypervolumeImprovement`` does (``psi``/``nu`` per cell and outcome, the product over
outcomes of each of the 2^m factor choices, summed over choices and cells), but batched over
the hyper-parameter samples and scored for tens of thousands of candidates at once; a test
compares the two. The reference point, when none is given, is BoTorch's
``infer_reference_point`` on the observed front (the nadir minus 10 % of the front's range).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from nas.combo.acquisition import CHUNK_ELEMENTS, SampledGP
from nas.pareto import non_dominated


def reference_point(values: np.ndarray) -> np.ndarray:
    """BoTorch's inferred reference point (m,) for observed values ``(n, m)``, all maximised."""
    from botorch.utils.multi_objective.hypervolume import infer_reference_point

    front = values[non_dominated(values)]
    return infer_reference_point(torch.as_tensor(front, dtype=torch.float64)).numpy()


def improvement_cells(values: np.ndarray, reference: np.ndarray) -> tuple[Tensor, Tensor]:
    """Lower and upper bounds, each ``(cells, m)``, of the hyper-rectangles that partition the
    region a new point would dominate beyond the front of ``values`` ``(n, m)`` (maximised) and
    above ``reference``; upper bounds may be ``inf``."""
    from botorch.utils.multi_objective.box_decompositions.non_dominated import FastNondominatedPartitioning

    partitioning = FastNondominatedPartitioning(torch.as_tensor(reference, dtype=torch.float64),
                                                torch.as_tensor(values, dtype=torch.float64))
    bounds = partitioning.get_hypercell_bounds()  # (2, cells, m)
    return bounds[0], bounds[1]


def expected_hypervolume_improvement(mean: Tensor, var: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """EHVI of independent Gaussian predictions.

    Args:
        mean, var: ``(..., m)`` predictive means and variances of the m (maximised) objectives.
        lower, upper: ``(cells, m)`` from :func:`improvement_cells`.

    Returns:
        ``(...)`` expected hypervolume improvements, >= 0.
    """
    normal = torch.distributions.Normal(torch.zeros((), dtype=mean.dtype), torch.ones((), dtype=mean.dtype))
    mu = mean[..., None, :]  # (..., 1, m)
    sigma = var.clamp_min(1e-9).sqrt()[..., None, :]
    upper = upper.clamp_max(1e10)

    def psi(lo: Tensor, up: Tensor) -> Tensor:
        u = (up - mu) / sigma
        return sigma * normal.log_prob(u).exp() + (mu - lo) * (1 - normal.cdf(u))

    psi_diff = psi(lower, lower) - psi(lower, upper)  # (..., cells, m)
    nu = (upper - lower) * (1 - normal.cdf((upper - mu) / sigma))
    factors = torch.stack([psi_diff, nu], dim=-2)  # (..., cells, 2, m)
    m = mean.shape[-1]
    total = torch.zeros(mean.shape[:-1], dtype=mean.dtype)
    for choice in itertools.product((0, 1), repeat=m):  # 2^m products of one factor per outcome
        term = torch.ones(factors.shape[:-2], dtype=mean.dtype)
        for k, pick in enumerate(choice):
            term = term * factors[..., pick, k]
        total = total + term.sum(-1)
    return total.clamp_min(0.0)


def ehvi_scorer(gps: Sequence[SampledGP], lower: Tensor, upper: Tensor) -> Callable[[np.ndarray], np.ndarray]:
    """``score(xq (c, d)) -> (c,)``: EHVI averaged over the hyper-parameter samples, for one GP per
    objective, each modelling the objective NEGATED (COMBO minimises; sample s of every objective
    is used together)."""

    def score(xq: np.ndarray) -> np.ndarray:
        xq = np.asarray(xq, dtype=np.int64)
        num_samples, n = len(gps[0].samples), len(gps[0].x)
        chunk = max(1, CHUNK_ELEMENTS // (num_samples * max(n, len(lower), 1) * len(gps)))
        out = np.empty(len(xq))
        for start in range(0, len(xq), chunk):
            predictions = [gp.predict(xq[start: start + chunk]) for gp in gps]
            mean = torch.stack([-m for m, _ in predictions], dim=-1)  # (S, c, m), maximised
            var = torch.stack([v for _, v in predictions], dim=-1)
            out[start: start + chunk] = expected_hypervolume_improvement(mean, var, lower, upper).mean(0).numpy()
        return out

    return score
