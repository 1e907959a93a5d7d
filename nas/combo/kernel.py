"""COMBO's ARD diffusion kernel on a Cartesian product of per-variable graphs (nas-algorithms.md 3.1-3.2).

Variable ``i`` with ``n_i`` values is a graph ``G_i``: a complete graph for a categorical variable,
a path graph for an ordinal one. Its Laplacian ``L_i = U_i diag(Λ_i) U_iᵀ`` gives the factor

    F_i(a, b) = U_i[a] diag(exp(-β_i Λ_i)) U_i[b]ᵀ / mean(exp(-β_i Λ_i))

(the mean is COMBO's normalisation "hack"), and the kernel is ``∏_i F_i(x[i], x'[i])``, i.e.
``exp(-L(G))`` of the product graph with edge weights ``β_i`` up to the per-factor normalisation.
For a complete graph ``F_i = 1`` if ``a == b`` else ``ρ_i = (1 - e^{-n β}) / (1 + (n - 1) e^{-n β})``.

Every factor is a small ``n_i x n_i`` lookup table, so a gram matrix is a product of table
look-ups indexed by the integer inputs; :meth:`DiffusionKernel.factor_tables` exposes the tables
(the sampler and the acquisition code use them directly for speed). Wrap the kernel in
``gpytorch.kernels.ScaleKernel`` for the amplitude ``σ_f²``; COMBO's ``1e-6`` diagonal stabiliser
belongs to the training covariance (see :mod:`nas.combo.posterior`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import networkx as nx
import numpy as np
import torch
from gpytorch.kernels import Kernel
from torch import Tensor

LOG_BETA_BOUNDS = (-12.0, math.log(100.0))
"""COMBO's support of log β (priors.py: LOG_LOWER_BND and ln 100)."""


def graph_spectrum(n: int, ordinal: bool) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(n,)`` (ascending) and eigenvectors ``(n, n)`` (columns) of the Laplacian of
    ``path_graph(n)`` (ordinal) or ``complete_graph(n)`` (categorical)."""
    graph = nx.path_graph(n) if ordinal else nx.complete_graph(n)
    laplacian = nx.laplacian_matrix(graph, nodelist=range(n)).toarray().astype(np.float64)
    freq, basis = np.linalg.eigh(laplacian)
    return np.clip(freq, 0.0, None), basis


class DiffusionKernel(Kernel):
    """ARD diffusion kernel on ``∏_i {0..n_i-1}``; one ``log β_i`` per variable.

    Args:
        cardinalities: ``n_i`` per variable (``d`` entries).
        ordinal: per variable, True for a path graph, False (default) for a complete graph.
        batch_shape: batch of kernels (e.g. posterior samples); ``log_beta`` is ``(*batch_shape, d)``.
        closed_form: use the closed form for complete graphs (False: the eigendecomposition,
            identical up to rounding; the tests compare the two).

    Inputs are integer-valued float tensors ``(..., n, d)``; outputs are ``(..., n1, n2)``
    (``(..., n1)`` with ``diag=True``), broadcasting the input batch against ``batch_shape``.
    ``log β`` is clamped to COMBO's bounds ``[-12, ln 100]`` when used. Buffers and ``log_beta``
    are float64.
    """

    has_lengthscale = False

    def __init__(self, cardinalities: Sequence[int], ordinal: Sequence[bool] | None = None,
                 batch_shape: torch.Size | None = None, closed_form: bool = True, **kwargs: object) -> None:
        super().__init__(batch_shape=batch_shape, **kwargs)
        cards = [int(n) for n in cardinalities]
        if not cards or min(cards) < 1:
            raise ValueError(f"cardinalities must be a non-empty list of positive ints, got {list(cardinalities)}")
        flags = [False] * len(cards) if ordinal is None else [bool(o) for o in ordinal]
        if len(flags) != len(cards):
            raise ValueError(f"ordinal has {len(flags)} entries for {len(cards)} variables")
        d, n_max = len(cards), max(cards)
        freq, basis = np.zeros((d, n_max)), np.zeros((d, n_max, n_max))
        for i, (n, o) in enumerate(zip(cards, flags, strict=True)):
            freq[i, :n], basis[i, :n, :n] = graph_spectrum(n, o)
        dtype = torch.float64  # the spectra are exact in float64; ``.float()`` converts if wanted
        self.register_buffer("cardinalities", torch.tensor(cards, dtype=torch.long))
        self.register_buffer("ordinal", torch.tensor(flags, dtype=torch.bool))
        self.register_buffer("fourier_freq", torch.tensor(freq, dtype=dtype))  # (d, n_max), zero-padded
        self.register_buffer("fourier_basis", torch.tensor(basis, dtype=dtype))  # (d, n_max, n_max)
        self.register_buffer("freq_mask", torch.arange(n_max)[None, :] < torch.tensor(cards)[:, None])
        self.register_parameter("log_beta", torch.nn.Parameter(torch.zeros(*self.batch_shape, d, dtype=dtype)))
        self.closed_form = closed_form
        self.num_vars, self.n_max = d, n_max
        self._spectra = [graph_spectrum(n, o) for n, o in zip(cards, flags, strict=True)]  # numpy copies

    # ---------------------------------------------------------------------------------- tables
    def factor_tables(self, log_beta: Tensor | None = None, dims: Sequence[int] | None = None) -> Tensor:
        """Per-variable factor tables ``F_i[a, b]``: ``(..., k, n_max, n_max)``.

        ``log_beta``: ``(..., k)`` for the variables ``dims`` (default: all ``d``, and the
        kernel's own ``log_beta``). Entries beyond ``n_i`` are padding (never indexed).
        """
        idx = list(range(self.num_vars)) if dims is None else list(dims)
        lb = self.log_beta if log_beta is None else log_beta
        beta = lb.clamp(*LOG_BETA_BOUNDS).exp()  # (..., k)
        freq, basis, mask = self.fourier_freq[idx], self.fourier_basis[idx], self.freq_mask[idx]
        n = self.cardinalities[idx].to(beta)
        weights = torch.exp(-beta.unsqueeze(-1) * freq) * mask  # (..., k, n_max)
        tables = torch.einsum("kpq,...kq,krq->...kpr", basis, weights, basis)
        tables = tables / (weights.sum(-1) / n)[..., None, None]
        complete = ~self.ordinal[idx]
        if self.closed_form and bool(complete.any()):
            decay = torch.exp(-n * beta)
            rho = -torch.expm1(-n * beta) / (1.0 + (n - 1.0) * decay)  # (..., k)
            eye = torch.eye(self.n_max, dtype=beta.dtype, device=beta.device)
            closed = rho[..., None, None] + (1.0 - rho)[..., None, None] * eye
            tables = torch.where(complete[:, None, None], closed, tables)
        return tables

    def factor_table(self, i: int, log_beta_i: float) -> np.ndarray:
        """Factor table of variable ``i`` alone, ``(n_i, n_i)`` float64: a numpy fast path (no torch
        overhead) for the slice sampler; equal to ``factor_tables(...)[i, :n_i, :n_i]``."""
        beta = math.exp(min(max(log_beta_i, LOG_BETA_BOUNDS[0]), LOG_BETA_BOUNDS[1]))
        freq, basis = self._spectra[i]
        n = len(freq)
        if self.closed_form and not bool(self.ordinal[i]):
            decay = math.exp(-n * beta)
            rho = -math.expm1(-n * beta) / (1.0 + (n - 1.0) * decay)
            table = np.full((n, n), rho)
            np.fill_diagonal(table, 1.0)
            return table
        weights = np.exp(-beta * freq)
        return (basis * weights) @ basis.T / weights.mean()

    def log_factor_tables(self, log_beta: Tensor | None = None, dims: Sequence[int] | None = None) -> Tensor:
        """``log`` of :meth:`factor_tables` (entries clamped at 1e-300 first): ``(..., k, n_max, n_max)``."""
        return self.factor_tables(log_beta, dims).clamp_min(1e-300).log()

    def amplitude_range(self) -> tuple[float, float]:
        """COMBO's ``(k_min, k_max)`` for the amplitude prior, at β = 1 (nas-algorithms.md 3.4):
        ``k_max = ∏ 1/mean(e^{-Λ_i})``, ``k_min = ∏ e^{-λ_i,max}/mean(e^{-Λ_i})``."""
        weights = torch.exp(-self.fourier_freq) * self.freq_mask
        means = weights.sum(-1) / self.cardinalities.to(weights)
        lam_max = (self.fourier_freq * self.freq_mask).amax(-1)
        return float(torch.prod(torch.exp(-lam_max) / means)), float(torch.prod(1.0 / means))

    # ---------------------------------------------------------------------------------- gpytorch
    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params: object) -> Tensor:
        """``x1 (..., n1, d)``, ``x2 (..., n2, d)`` -> ``(..., n1, n2)`` or ``(..., n1)`` if ``diag``."""
        if last_dim_is_batch:
            raise NotImplementedError("DiffusionKernel does not support last_dim_is_batch")
        tables = self.factor_tables()  # (*batch, d, N, N)
        oh1 = torch.nn.functional.one_hot(x1.round().long(), self.n_max).to(tables)  # (..., n1, d, N)
        left = torch.einsum("...adp,...dpq->...adq", oh1, tables)
        if diag:
            return (left * oh1).sum(-1).prod(-1)
        oh2 = torch.nn.functional.one_hot(x2.round().long(), self.n_max).to(tables)
        return torch.einsum("...adq,...bdq->...abd", left, oh2).prod(-1)
