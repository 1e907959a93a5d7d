"""COMBO's GP hyper-parameter posterior: priors, univariate slice sampler, one continued chain.

The GP (nas-algorithms.md 3.3): constant mean ``c``, Gaussian noise ``σ_n²``, covariance
``σ_f² (G + 1e-6 I) + σ_n² I`` with ``G`` the :class:`~nas.combo.kernel.DiffusionKernel` gram and
``1e-6`` COMBO's stabiliser. ``y`` is used as given (COMBO does not standardise). The state
``(c, log σ_f², log σ_n², log β_1..β_d)`` is a :class:`HyperSample`; one *sweep* (3.5) slice-samples
``c``, ``log σ_f²``, ``log σ_n²`` and then every ``log β_i`` in a freshly shuffled order, each
with COMBO's priors (3.4). All randomness comes from a ``numpy.random.Generator``.

Speed (same NLL as COMBO, computed differently):

* ``c``, ``σ_f²``, ``σ_n²`` updates use one eigendecomposition ``G = Q diag(λ) Qᵀ`` per sweep
  (:func:`nas.combo.linalg.symmetric_eigh`, which falls back across LAPACK routines):
  the covariance's eigenvalues are ``σ_f² (λ + 1e-6) + σ_n²`` and each NLL costs O(n).
* a ``β_i`` update changes only factor ``i``: the product of the other factors is computed once
  per update and each NLL is one table look-up, one product and one Cholesky
  (scipy's LAPACK call: for a single n <= ~300 matrix it is several times faster than torch's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.linalg
import torch
from threadpoolctl import threadpool_limits

from nas.combo.kernel import LOG_BETA_BOUNDS, DiffusionKernel
from nas.combo.linalg import symmetric_eigh

LOG_VAR_BOUNDS = (-12.0, math.log(1e4))
"""Support of ``log σ_f²`` and ``log σ_n²`` (priors.py: LOG_LOWER_BND and ln 10⁴)."""
STABILISER = 1e-6
"""COMBO's diagonal stabiliser, relative to ``σ_f²`` (diffusionkernel.py)."""
SLICE_WIDTHS = (0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1)
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass
class HyperSample:
    """One state of the chain; ``log_beta`` is ``(d,)``."""

    const_mean: float
    log_amp: float
    log_noise_var: float
    log_beta: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def copy(self) -> HyperSample:
        return HyperSample(self.const_mean, self.log_amp, self.log_noise_var, self.log_beta.copy())

    def to_json(self) -> dict[str, Any]:
        return {"const_mean": float(self.const_mean), "log_amp": float(self.log_amp),
                "log_noise_var": float(self.log_noise_var), "log_beta": [float(b) for b in self.log_beta]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HyperSample:
        return cls(float(data["const_mean"]), float(data["log_amp"]), float(data["log_noise_var"]),
                   np.asarray(data["log_beta"], dtype=np.float64))


# ------------------------------------------------------------------------------ slice sampling
def univariate_slice_sampling(logp: Callable[[float], float], x0: float, rng: np.random.Generator,
                              width: float = 1.0, max_steps_out: int = 10) -> float:
    """COMBO's sampler (tool_slice_sampling.py): for each width in 0.9..0.1 (times ``width``), a
    randomly placed interval, doubling step-out (at most ``max_steps_out``), then shrinkage with
    Neal's doubling acceptance test. Returns ``x0`` if every width collapses."""
    llh0 = logp(x0)  # COMBO re-evaluates this per width; it does not change
    for scaled_width in np.asarray(SLICE_WIDTHS) * width:
        lower = x0 - scaled_width * rng.random()
        upper = lower + scaled_width
        slice_h = math.log1p(-rng.random()) + llh0  # log U, U in (0, 1]
        record: dict[float, float] = {}

        def cached(x: float, record: dict[float, float] = record) -> float:
            if x not in record:
                record[x] = logp(x)
            return record[x]

        steps_out = 0
        logp_lower, logp_upper = cached(lower), cached(upper)
        while (logp_lower > slice_h or logp_upper > slice_h) and steps_out < max_steps_out:
            if rng.random() < 0.5:
                lower -= upper - lower
            else:
                upper += upper - lower
            steps_out += 1
            logp_lower, logp_upper = cached(lower), cached(upper)
        start_lower, start_upper = lower, upper
        while abs(lower - upper) > 1e-8 + 1e-5 * abs(upper):  # not np.isclose(lower, upper)
            x1 = (upper - lower) * rng.random() + lower
            if logp(x1) > slice_h and _accept(cached, x0, x1, slice_h, scaled_width, start_lower, start_upper):
                return float(x1)
            if x1 < x0:
                lower = x1
            else:
                upper = x1
    return float(x0)


def _accept(logp: Callable[[float], float], x0: float, x1: float, slice_h: float, width: float,
            lower: float, upper: float) -> bool:
    """Neal's (2003) acceptance test for the doubling procedure, as coded in COMBO."""
    acceptance = False
    while upper - lower > 1.1 * width:
        mid = (lower + upper) / 2.0
        if (x0 < mid <= x1) or (x1 < mid <= x0):
            acceptance = True
        if x1 < mid:
            upper = mid
        else:
            lower = mid
        if acceptance and slice_h >= logp(lower) and slice_h >= logp(upper):
            return False
    return True


# ------------------------------------------------------------------------------ priors (3.4)
def log_prior_const_mean(c: float, y_min: float, y_max: float) -> float:
    """Truncated Gaussian on ``[y_min, y_max]``, centre the midpoint, sd a quarter of the range."""
    if not y_min <= c <= y_max:
        return -math.inf
    sd = (y_max - y_min) / 4.0
    return -math.log(sd) - 0.5 * ((c - 0.5 * (y_min + y_max)) / sd) ** 2


def log_prior_log_amp(log_amp: float, y_var: float, k_min: float, k_max: float) -> float:
    """Gaussian in ``log σ_f²`` between ``ln var(y) - ln k_max`` and ``ln var(y) - ln k_min``."""
    if not LOG_VAR_BOUNDS[0] <= log_amp <= LOG_VAR_BOUNDS[1]:
        return -math.inf
    lo, hi = math.log(y_var) - math.log(k_max), math.log(y_var) - math.log(max(k_min, 1e-100))
    sd = (hi - lo) / 4.0
    if not sd > 0.0:  # k_min == k_max: every variable has one value, the gram is all ones
        sd = 1.0
    return -math.log(sd) - 0.5 * ((log_amp - 0.5 * (lo + hi)) / sd) ** 2


def log_prior_log_noise_var(log_noise_var: float) -> float:
    """Horseshoe-style bound ``log log(1 + (0.1/σ_n²)²)``."""
    if not LOG_VAR_BOUNDS[0] <= log_noise_var <= LOG_VAR_BOUNDS[1]:
        return -math.inf
    return math.log(math.log1p((0.1 * math.exp(-log_noise_var)) ** 2))


def log_prior_log_beta(log_beta: float) -> float:
    """Horseshoe bound at β (τ = 5) used directly on ``log β`` (no Jacobian, as coded)."""
    if not LOG_BETA_BOUNDS[0] <= log_beta <= LOG_BETA_BOUNDS[1]:
        return -math.inf
    return math.log(math.log1p(2.0 / (math.exp(log_beta) / 5.0) ** 2))


def cholesky_nll(cov: np.ndarray, resid: np.ndarray) -> float:
    """Gaussian NLL ``½‖L⁻¹r‖² + Σ log diag L + (n/2) log 2π`` for ``cov (n, n)``, ``resid (n,)``;
    on failure retries with jitter ``trace · {1e-8, ..., 1e-3}`` (COMBO), else (or for a non-finite
    result) returns ``inf``: the slice sampler then never moves there."""
    jitter_base = float(np.trace(cov))
    for rel in (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3):
        matrix = cov if rel == 0.0 else cov + np.eye(len(cov)) * (rel * jitter_base)
        try:
            chol = scipy.linalg.cholesky(matrix, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        sol = scipy.linalg.solve_triangular(chol, resid, lower=True, check_finite=False)
        nll = 0.5 * float(sol @ sol) + float(np.log(np.diagonal(chol)).sum()) + len(resid) * HALF_LOG_2PI
        return nll if math.isfinite(nll) else math.inf  # NaN (a non-finite covariance) is no likelihood
    return math.inf


# ------------------------------------------------------------------------------ the sampler
class GraphGPSampler:
    """Slice sampler of COMBO's GP hyper-parameters for one data set.

    Args:
        kernel: the diffusion kernel (its graphs; its own ``log_beta`` is not used).
        x: ``(n, d)`` integer inputs.
        y: ``(n,)`` outputs (COMBO minimises; the GP does not care).
    """

    def __init__(self, kernel: DiffusionKernel, x: np.ndarray, y: np.ndarray) -> None:
        self.kernel = kernel
        self.x = np.asarray(x, dtype=np.int64)
        self.y = np.asarray(y, dtype=np.float64)
        n, d = self.x.shape
        if d != kernel.num_vars or len(self.y) != n or n < 1:
            raise ValueError(f"need x (n, {kernel.num_vars}) and y (n,) with n >= 1; got {self.x.shape}, "
                             f"{self.y.shape}")
        self.n, self.d = n, d
        big = kernel.n_max
        self.pair_index = self.x.T[:, :, None] * big + self.x.T[:, None, :]  # (d, n, n) into a flat table
        self.cards = kernel.cardinalities.tolist()
        # prior constants; guards for degenerate data (COMBO would divide by zero)
        self.y_min, self.y_max = float(self.y.min()), float(self.y.max())
        if self.y_max - self.y_min <= 1e-12 * max(1.0, abs(self.y_max)):
            self.y_min, self.y_max = self.y_min - 0.5, self.y_max + 0.5
        y_var = float(np.var(self.y, ddof=1)) if n > 1 else 0.0
        self.y_var = y_var if y_var > 0 else 1.0
        self.k_min, self.k_max = kernel.amplitude_range()

    # ------------------------------------------------------------------ state
    def initial_state(self) -> HyperSample:
        """COMBO's ``init_param``: c = mean(y), σ_f² = var(y)/2, log σ_n² = mean(y)/1000 (sic), log β = 0."""
        clip = lambda v, lo_hi: float(min(max(v, lo_hi[0]), lo_hi[1]))  # noqa: E731
        return HyperSample(const_mean=float(self.y.mean()), log_amp=clip(math.log(0.5 * self.y_var), LOG_VAR_BOUNDS),
                           log_noise_var=clip(float(self.y.mean()) / 1000.0, LOG_VAR_BOUNDS),
                           log_beta=np.zeros(self.d))

    def log_factors(self, log_beta: np.ndarray) -> np.ndarray:
        """``log F_i(x_a[i], x_b[i])`` for all variables: ``(d, n, n)``."""
        tables = self.kernel.log_factor_tables(torch.as_tensor(log_beta, dtype=torch.float64)).numpy()
        return np.take_along_axis(tables.reshape(self.d, -1), self.pair_index.reshape(self.d, -1), 1).reshape(
            self.d, self.n, self.n)

    def log_joint(self, state: HyperSample) -> float:
        """Unnormalised log posterior of a state (priors + log likelihood)."""
        gram = np.exp(self.log_factors(state.log_beta).sum(0))
        prior = (log_prior_const_mean(state.const_mean, self.y_min, self.y_max)
                 + log_prior_log_amp(state.log_amp, self.y_var, self.k_min, self.k_max)
                 + log_prior_log_noise_var(state.log_noise_var) + sum(log_prior_log_beta(b) for b in state.log_beta))
        if prior == -math.inf:
            return prior
        return prior - cholesky_nll(self._covariance(gram, state.log_amp, state.log_noise_var),
                                    self.y - state.const_mean)

    @staticmethod
    def _covariance(gram: np.ndarray, log_amp: float, log_noise_var: float) -> np.ndarray:
        amp = math.exp(log_amp)
        cov = gram * amp
        cov.flat[:: len(cov) + 1] += amp * STABILISER + math.exp(log_noise_var)
        return cov

    # ------------------------------------------------------------------ sweeps
    def sweep(self, state: HyperSample, rng: np.random.Generator) -> HyperSample:
        """One COMBO sweep (c, log σ_f², log σ_n², then every log β_i in shuffled order)."""
        s = state.copy()
        log_f = self.log_factors(s.log_beta)
        log_g = log_f.sum(0)
        self._sweep_scalars(s, np.exp(log_g), rng)
        resid = self.y - s.const_mean
        for i in rng.permutation(self.d):
            if self.cards[i] < 2:
                continue  # a one-value variable never changes the gram: its β is irrelevant
            rest_log = log_g - log_f[i]
            rest = np.exp(rest_log)
            index = self.pair_index[i]

            def logp(lb: float, i: int = i, rest: np.ndarray = rest, index: np.ndarray = index) -> float:
                prior = log_prior_log_beta(lb)
                if prior == -math.inf:
                    return prior
                gram = rest * self._flat_table(i, lb)[index]
                return prior - cholesky_nll(self._covariance(gram, s.log_amp, s.log_noise_var), resid)

            s.log_beta[i] = univariate_slice_sampling(logp, float(s.log_beta[i]), rng)
            log_f[i] = np.log(np.maximum(self._flat_table(i, float(s.log_beta[i])), 1e-300))[index]
            log_g = rest_log + log_f[i]
        return s

    def _flat_table(self, i: int, log_beta_i: float) -> np.ndarray:
        """Variable ``i``'s factor table padded to ``n_max x n_max`` and flattened (``pair_index`` order)."""
        table = self.kernel.factor_table(i, log_beta_i)
        big = self.kernel.n_max
        if len(table) == big:
            return table.reshape(-1)
        padded = np.ones((big, big))
        padded[: len(table), : len(table)] = table
        return padded.reshape(-1)

    def scalar_nll(self, gram: np.ndarray) -> Callable[[float, float, float], float]:
        """NLL as a function of ``(c, log σ_f², log σ_n²)`` for a fixed unit gram ``(n, n)``, O(n) per
        call after one eigendecomposition: the covariance's eigenvalues are ``σ_f²(λ + 1e-6) + σ_n²``."""
        lam, vecs = symmetric_eigh(gram)
        qy, q1 = vecs.T @ self.y, vecs.T @ np.ones(self.n)
        const = self.n * HALF_LOG_2PI

        def nll(c: float, log_amp: float, log_noise_var: float) -> float:
            eig = math.exp(log_amp) * (lam + STABILISER) + math.exp(log_noise_var)
            if eig.min() <= 0.0:
                return math.inf
            r = qy - c * q1
            return 0.5 * float((r * r / eig).sum()) + 0.5 * float(np.log(eig).sum()) + const

        return nll

    def _sweep_scalars(self, s: HyperSample, gram: np.ndarray, rng: np.random.Generator) -> None:
        """Slice-sample c, log σ_f², log σ_n² (in place) with :meth:`scalar_nll`."""
        nll = self.scalar_nll(gram)

        def logp_c(c: float) -> float:
            prior = log_prior_const_mean(c, self.y_min, self.y_max)
            return prior if prior == -math.inf else prior - nll(c, s.log_amp, s.log_noise_var)

        def logp_amp(v: float) -> float:
            prior = log_prior_log_amp(v, self.y_var, self.k_min, self.k_max)
            return prior if prior == -math.inf else prior - nll(s.const_mean, v, s.log_noise_var)

        def logp_noise(v: float) -> float:
            prior = log_prior_log_noise_var(v)
            return prior if prior == -math.inf else prior - nll(s.const_mean, s.log_amp, v)

        s.const_mean = univariate_slice_sampling(logp_c, s.const_mean, rng)
        s.log_amp = univariate_slice_sampling(logp_amp, s.log_amp, rng)
        s.log_noise_var = univariate_slice_sampling(logp_noise, s.log_noise_var, rng)

    def run(self, state: HyperSample, rng: np.random.Generator, n_sweeps: int) -> tuple[HyperSample, list[HyperSample]]:
        """``n_sweeps`` sweeps from ``state``: (last state, the state after every sweep)."""
        samples = []
        with threadpool_limits(1):  # one BLAS thread: multi-threading small matrices only costs time
            for _ in range(n_sweeps):
                state = self.sweep(state, rng)
                samples.append(state.copy())
        return state, samples
