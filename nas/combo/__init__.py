"""COMBO (Oh et al., NeurIPS 2019): Bayesian optimisation on the product graph of the variables.

* :mod:`nas.combo.kernel`: the ARD diffusion kernel (a gpytorch ``Kernel``).
* :mod:`nas.combo.linalg`: eigendecomposition and Cholesky with fallback chains (never crash a search).
* :mod:`nas.combo.posterior`: COMBO's priors and slice sampler of the GP hyper-parameters.
* :mod:`nas.combo.acquisition`: the GP under the posterior samples and expected improvement.
* :mod:`nas.combo.optimize`: random + spray starts, greedy ascent on graph neighbours, fallbacks.

The search strategy is :class:`nas.strategies.combo.Combo`.
"""

from nas.combo.acquisition import SampledGP, expected_improvement
from nas.combo.kernel import DiffusionKernel
from nas.combo.linalg import PosteriorFailure, robust_cholesky, symmetric_eigh
from nas.combo.optimize import VertexSpace, greedy_ascent, optimise_acquisition
from nas.combo.posterior import GraphGPSampler, HyperSample, univariate_slice_sampling

__all__ = ["DiffusionKernel", "GraphGPSampler", "HyperSample", "PosteriorFailure", "SampledGP", "VertexSpace",
           "expected_improvement", "greedy_ascent", "optimise_acquisition", "robust_cholesky", "symmetric_eigh",
           "univariate_slice_sampling"]
