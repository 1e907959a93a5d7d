"""The GP posterior under COMBO's hyper-parameter samples, and expected improvement (3.3, 3.6).

:class:`SampledGP` holds ``S`` GPs (one per :class:`~nas.combo.posterior.HyperSample`) batched in
torch float64. Prediction follows COMBO's ``Inference.predict``: ``μ* = k*ᵀK⁻¹(y - c) + c`` and
``σ*² = k** - ‖L⁻¹k*‖²`` clamped at 1e-8, with ``K = σ_f²(G + 1e-6 I) + σ_n² I`` and
``k** = σ_f²(G(x*, x*) + 1e-6)``.

Speed: a factor's log table is a ``(n_i, n_i)`` matrix, so with a one-hot code ``O`` of the
inputs (``P = Σ n_i`` columns) the log cross-gram of every sample is one matmul,
``log G(x*, X) = O(x*) @ W`` with ``W[s, off_i + v, j] = log F_{s,i}(v, X[j, i])``; the variance
uses a precomputed ``L⁻¹`` per sample. Scoring 20,000 candidates x 10 samples is then a few
batched matmuls. We compute EI with the analytic formula here rather than through
``botorch.acquisition.ExpectedImprovement`` on a batched gpytorch model: that path builds a lazy
predictive covariance per candidate batch and was several times slower for 20k candidates x 10
samples; the formula is the same (the tests compare the two on a gpytorch model with this kernel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from nas.combo.kernel import DiffusionKernel
from nas.combo.linalg import robust_cholesky
from nas.combo.posterior import STABILISER, HyperSample

CHUNK_ELEMENTS = 1 << 22
"""Candidates are scored in chunks of about this many ``S x chunk x n`` entries (32 MiB float64)."""


def expected_improvement(mean: Tensor, var: Tensor, reference: float) -> Tensor:
    """EI for minimisation below ``reference``: ``σφ(z) + (ref - μ)Φ(z)``, ``z = (ref - μ)/σ``, >= 0."""
    sigma = var.sqrt()
    z = (reference - mean) / sigma
    pdf = torch.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    return (sigma * (pdf + z * torch.special.ndtr(z))).clamp_min(0.0)


class SampledGP:
    """``S`` exact GPs on the same inputs, one per hyper-parameter sample.

    Args:
        kernel: the diffusion kernel (graphs only; the samples give the β's).
        x: ``(n, d)`` integer inputs.
        y: ``(n,)`` outputs, or ``(S, n)`` (one row per sample, e.g. with per-sample fantasies).
        samples: ``S`` hyper-parameter samples.
    """

    def __init__(self, kernel: DiffusionKernel, x: np.ndarray, y: np.ndarray, samples: Sequence[HyperSample]) -> None:
        if not samples:
            raise ValueError("need at least one hyper-parameter sample")
        self.kernel = kernel
        self.x = np.asarray(x, dtype=np.int64)
        self.samples = list(samples)
        n, num_s = len(self.x), len(self.samples)
        y_t = torch.as_tensor(np.asarray(y, dtype=np.float64))
        self.y = y_t.expand(num_s, n).clone()  # (S, n)
        cards = kernel.cardinalities.tolist()
        self.offsets = np.concatenate([[0], np.cumsum(cards)[:-1]]).astype(np.int64)  # (d,)
        self.width = int(sum(cards))  # P
        self.var_of_col = np.repeat(np.arange(len(cards)), cards)  # (P,)
        self.val_of_col = np.concatenate([np.arange(c) for c in cards])  # (P,)
        log_beta = torch.as_tensor(np.stack([s.log_beta for s in self.samples]), dtype=torch.float64)
        log_tables = kernel.log_factor_tables(log_beta).detach()  # (S, d, N, N)
        rows = log_tables[:, self.var_of_col, self.val_of_col, :]  # (S, P, N): row v of table i
        self.w = torch.gather(rows, 2, torch.as_tensor(self.x[:, self.var_of_col].T)[None].expand(num_s, -1, -1))
        self.w_diag = log_tables[:, self.var_of_col, self.val_of_col, self.val_of_col]  # (S, P)
        self.const = torch.tensor([s.const_mean for s in self.samples], dtype=torch.float64)[:, None]  # (S, 1)
        self.amp = torch.tensor([math.exp(s.log_amp) for s in self.samples], dtype=torch.float64)[:, None]
        self.noise = torch.tensor([math.exp(s.log_noise_var) for s in self.samples], dtype=torch.float64)[:, None]
        gram = torch.exp(self.one_hot(self.x) @ self.w)  # (S, n, n)
        cov = gram * self.amp[..., None]
        cov.diagonal(dim1=-2, dim2=-1).add_(self.amp * STABILISER + self.noise)
        chol = robust_cholesky(cov)
        eye = torch.eye(n, dtype=torch.float64).expand(num_s, n, n)
        self.chol_inv = torch.linalg.solve_triangular(chol, eye, upper=False)  # (S, n, n) L⁻¹
        resid = (self.y - self.const)[..., None]  # (S, n, 1)
        # [L⁻ᵀ | K⁻¹(y - c)]: one matmul then gives L⁻¹k* and the mean
        alpha = self.chol_inv.transpose(-1, -2) @ (self.chol_inv @ resid)
        self.rhs = torch.cat([self.chol_inv.transpose(-1, -2), alpha], dim=-1)  # (S, n, n + 1)

    def one_hot(self, xq: np.ndarray) -> Tensor:
        """``(m, d)`` integer inputs -> ``(m, P)`` float64 one-hot code."""
        xq = np.asarray(xq, dtype=np.int64).reshape(-1, len(self.offsets))
        code = torch.zeros(len(xq), self.width, dtype=torch.float64)
        code.scatter_(1, torch.as_tensor(xq + self.offsets), 1.0)
        return code

    def predict(self, xq: np.ndarray) -> tuple[Tensor, Tensor]:
        """Posterior mean and variance of the latent function, each ``(S, m)``, for ``xq (m, d)``."""
        code = self.one_hot(xq)
        cross = torch.exp(code @ self.w) * self.amp[..., None]  # (S, m, n) k*
        out = cross @ self.rhs  # (S, m, n + 1)
        mean = out[..., -1] + self.const
        prior_var = self.amp * (torch.exp(code @ self.w_diag.T).T + STABILISER)  # (S, m)
        var = (prior_var - (out[..., :-1] ** 2).sum(-1)).clamp_min(1e-8)
        return mean, var

    def expected_improvement(self, xq: np.ndarray, reference: float) -> np.ndarray:
        """EI averaged over the samples (COMBO sums them: same argmax): ``(m,)`` float64."""
        xq = np.asarray(xq, dtype=np.int64)
        chunk = max(1, CHUNK_ELEMENTS // (len(self.samples) * max(len(self.x), 1)))
        out = np.empty(len(xq))
        for start in range(0, len(xq), chunk):
            mean, var = self.predict(xq[start: start + chunk])
            out[start: start + chunk] = expected_improvement(mean, var, reference).mean(0).numpy()
        return out

    def condition_on_mean(self, x_new: np.ndarray) -> SampledGP:
        """Kriging believer: the GPs with ``x_new (p, d)`` added, each observed at its own
        posterior mean (so the mean is unchanged and the variance there collapses)."""
        x_new = np.asarray(x_new, dtype=np.int64).reshape(-1, self.x.shape[1])
        if len(x_new) == 0:
            return self
        mean, _ = self.predict(x_new)
        y = torch.cat([self.y, mean], dim=1).numpy()
        return SampledGP(self.kernel, np.concatenate([self.x, x_new]), y, self.samples)
