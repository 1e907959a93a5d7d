"""The linear algebra on COMBO's posterior path, each call with a fallback chain.

LAPACK builds differ in how they fail: numpy's ``eigh`` (OpenBLAS ``syevd`` on some CPU kernels)
raises "Eigenvalues did not converge" on well-conditioned, exactly symmetric matrices that
``UPLO='U'``, scipy's ``syevr`` and torch all decompose. A search must never die of that, so:

* :func:`symmetric_eigh`: numpy ``eigh`` (lower), numpy ``eigh`` (upper), scipy ``eigh``
  (``evr``), torch ``eigh``, then the same with a diagonal jitter ``trace · {1e-10, ..., 1e-6}``.
* :func:`robust_cholesky` (batched, torch): plain, then COMBO's jitter ``trace · {1e-8, ..., 1e-3}``,
  then the nearest positive-definite matrix by eigenvalue clipping.

Each raises :class:`PosteriorFailure` when the whole chain fails (the caller falls back to a
model-free proposal); every result is checked to be finite.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from torch import Tensor

CHOLESKY_JITTERS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3)
EIGH_JITTERS = (1e-10, 1e-8, 1e-6)


class PosteriorFailure(ArithmeticError):
    """No decomposition in a fallback chain succeeded."""


def _numpy_lower(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.eigh(m)


def _numpy_upper(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.linalg.eigh(m, UPLO="U")


def _scipy_evr(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vecs = scipy.linalg.eigh(m, driver="evr", check_finite=False)
    return lam, vecs


def _torch(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vecs = torch.linalg.eigh(torch.from_numpy(np.ascontiguousarray(m)))
    return lam.numpy(), vecs.numpy()


EIGH_CHAIN: tuple[Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], ...] = (
    _numpy_lower, _numpy_upper, _scipy_evr, _torch)


def symmetric_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``(n,)`` (ascending) and eigenvectors ``(n, n)`` (columns) of a symmetric ``(n, n)``
    matrix, by the first routine of the chain (module docstring) that succeeds with finite output."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise PosteriorFailure("the matrix to decompose has non-finite entries")
    scale = float(np.trace(matrix)) or 1.0
    errors = []
    for rel in (0.0, *EIGH_JITTERS):
        shifted = matrix if rel == 0.0 else matrix + np.eye(len(matrix)) * (rel * scale)
        for routine in EIGH_CHAIN:
            try:
                lam, vecs = routine(shifted)
            except (np.linalg.LinAlgError, RuntimeError, ValueError) as err:
                errors.append(f"{routine.__name__.strip('_')}: {err}")
                continue
            if np.isfinite(lam).all() and np.isfinite(vecs).all():
                return lam - rel * scale, vecs
            errors.append(f"{routine.__name__.strip('_')}: non-finite result")
    raise PosteriorFailure("symmetric eigendecomposition failed in every routine: " + "; ".join(errors[:4]))


def robust_cholesky(cov: Tensor) -> Tensor:
    """Batched lower Cholesky factor of ``cov (..., n, n)`` (symmetric); failed batch members retry
    with jitter, then with their eigenvalues clipped to ``1e-10 · max``; PosteriorFailure if that fails."""
    if not bool(torch.isfinite(cov).all()):
        raise PosteriorFailure("covariance has non-finite entries")
    chol, info = torch.linalg.cholesky_ex(cov)
    if not bool((info > 0).any()):
        return chol
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    candidates: list[Callable[[], Tensor]] = [lambda rel=rel: cov + eye * trace * rel for rel in CHOLESKY_JITTERS]
    candidates.append(lambda: nearest_positive_definite(cov))
    for make in candidates:
        try:
            candidate = make()
        except RuntimeError as err:  # torch.linalg.LinAlgError of the eigendecomposition
            raise PosteriorFailure(f"covariance could not be repaired: {err}") from None
        bad = info > 0
        fixed, info_fixed = torch.linalg.cholesky_ex(candidate)
        chol = torch.where(bad[..., None, None], fixed, chol)
        info = torch.where(bad, info_fixed, info)
        if not bool((info > 0).any()):
            return chol
    raise PosteriorFailure("covariance is not positive definite even after jitter and eigenvalue clipping")


def nearest_positive_definite(cov: Tensor, floor: float = 1e-10) -> Tensor:
    """``cov (..., n, n)`` with its eigenvalues clipped to ``floor · max eigenvalue`` (symmetrised)."""
    sym = 0.5 * (cov + cov.transpose(-1, -2))
    lam, vecs = torch.linalg.eigh(sym)
    lam = lam.clamp_min(floor * lam.amax(-1, keepdim=True).clamp_min(floor))
    return (vecs * lam[..., None, :]) @ vecs.transpose(-1, -2)
