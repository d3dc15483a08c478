"""Kronecker-factored tensor algebra shared by Shampoo, TNT and KFAC: pure functions, no state.

For a tensor T of order k with modes (d_1, ..., d_k):
    unfold(T, j)            T_(j): (d_j, prod_{l != j} d_l), the mode-j unfolding
    mode_contraction(T, j)  T_(j) T_(j)^T: (d_j, d_j)
    accumulate_contraction(H, T, j, beta, alpha)   H <- beta H + alpha T_(j) T_(j)^T in place
    mode_product(T, M, j)   T x_j M, i.e. (T x_j M)_(j) = M T_(j), M: (r, d_j)
    precondition(T, mats)   T x_1 mats[0] x_2 mats[1] ... (None = identity on that mode)
    kron_apply(T, mats)     the same through the explicit (prod d)^2 Kronecker matrix: the
                            readable reference, (mats[0] kron ... kron mats[k-1]) vec(T) with
                            vec the row-major flatten of torch; only for tiny tensors (tests)
    damped(H, eps)          H + eps I (a new matrix)
    inverse_root(H, p, eps) (H + eps I)^(-1/p) for a symmetric PSD H via eigh
    damped_inverse(H, eps)  (H + eps I)^(-1) via Cholesky, eigh as the fallback
"""
from __future__ import annotations

from functools import reduce

import torch


class CurvatureError(FloatingPointError):
    """A curvature factor could not be inverted: it is non-finite (the run diverged) or eigh failed
    in float32 and float64. Training loops that sweep into unstable settings treat it as divergence."""


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Matrix work runs in float32, or float64 when the parameter itself is float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-`mode` unfolding: (d_mode, prod of the other dims, in their original order)."""
    return T.movedim(mode, 0).reshape(T.shape[mode], -1)


def _gram_operands(T: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y) with X @ Y = T_(mode) T_(mode)^T. The first and last modes need no unfolding copy:
    T_(0) is a reshape of T, and T_(k-1)^T = T.reshape(-1, d_{k-1})."""
    if mode == T.dim() - 1:
        V = T.reshape(-1, T.shape[mode])
        return V.T, V
    U = T.reshape(T.shape[0], -1) if mode == 0 else unfold(T, mode)
    return U, U.T


def mode_contraction(T: torch.Tensor, mode: int) -> torch.Tensor:
    """T_(mode) T_(mode)^T: (d_mode, d_mode), the Gram matrix of the mode-`mode` fibres."""
    X, Y = _gram_operands(T, mode)
    return X @ Y


def accumulate_contraction(H: torch.Tensor, T: torch.Tensor, mode: int, beta: float, alpha: float) -> None:
    """H <- beta H + alpha T_(mode) T_(mode)^T in place (one fused product, no temporary (d, d) matrix)."""
    X, Y = _gram_operands(T, mode)
    H.addmm_(X, Y, beta=beta, alpha=alpha)


def mode_product(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """T x_mode M: contracts M's second index with T's mode `mode`; M: (r, d_mode)."""
    # First and last modes as one matrix product on a reshape (tensordot would permute and copy).
    if mode == 0:
        return (M @ T.reshape(T.shape[0], -1)).reshape(M.shape[0], *T.shape[1:])
    if mode == T.dim() - 1:
        return (T.reshape(-1, T.shape[-1]) @ M.T).reshape(*T.shape[:-1], M.shape[0])
    return torch.tensordot(T, M, dims=([mode], [1])).movedim(-1, mode)


def precondition(T: torch.Tensor, mats: list[torch.Tensor | None]) -> torch.Tensor:
    """T x_1 mats[0] x_2 mats[1] ... x_k mats[k-1]; a None entry leaves that mode as it is."""
    if len(mats) != T.dim():
        raise ValueError(f"need one matrix per mode: tensor of order {T.dim()}, {len(mats)} matrices")
    for j, M in enumerate(mats):
        if M is not None:
            T = mode_product(T, M, j)
    return T


def kron_apply(T: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Reference for `precondition`: (mats[0] kron ... kron mats[k-1]) @ vec(T), reshaped like T.

    Row-major vec makes the first mode the slowest index, which is why the Kronecker factors come in
    mode order (for a matrix G: vec(A G B^T) = (A kron B) vec(G)). Builds the full (N, N) matrix."""
    K = reduce(torch.kron, mats)
    return (K @ T.reshape(-1)).reshape(T.shape)


def _eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """eigh in A's dtype; on failure (or non-finite output) once more in float64; else CurvatureError."""
    try:
        w, Q = torch.linalg.eigh(A)
        if torch.isfinite(w).all():
            return w, Q
    except torch.linalg.LinAlgError:
        pass
    try:
        w, Q = torch.linalg.eigh(A.double())
    except torch.linalg.LinAlgError as err:
        raise CurvatureError(f"eigh failed in {A.dtype} and float64 on a {tuple(A.shape)} factor "
                             f"(trace {float(A.diagonal().sum()):.3e})") from err
    return w.to(A.dtype), Q.to(A.dtype)


def damped(H: torch.Tensor, eps: float) -> torch.Tensor:
    """H + eps I as a new matrix (eps added to a copy's diagonal: no identity matrix is built)."""
    out = H.clone()
    out.diagonal().add_(eps)
    return out


def inverse_root(H: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """(H + eps I)^(-1/p) for a symmetric positive semidefinite H: (d, d), by eigendecomposition.

    H + eps I = Q diag(w) Q^T, result Q diag(w^(-1/p)) Q^T. Eigenvalues are floored at eps: exact for
    PSD H, and it keeps rounding (a tiny negative eigenvalue of a rank-deficient H) from producing NaN.
    p = 1 is the inverse. Raises CurvatureError on non-finite H or when eigh fails in float64 too."""
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if not torch.isfinite(H).all():
        raise CurvatureError(f"non-finite entries in a {tuple(H.shape)} curvature factor: the run diverged")
    w, Q = _eigh(damped(H, eps))
    return (Q * w.clamp_min(eps).pow(-1.0 / p)) @ Q.T


def damped_inverse(H: torch.Tensor, eps: float) -> torch.Tensor:
    """(H + eps I)^(-1) for a symmetric PSD H by Cholesky (about 5x faster than eigh at d = 1000 on a
    CPU); falls back to `inverse_root(H, 1, eps)` when the factorisation fails."""
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if not torch.isfinite(H).all():
        raise CurvatureError(f"non-finite entries in a {tuple(H.shape)} curvature factor: the run diverged")
    L, info = torch.linalg.cholesky_ex(damped(H, eps))
    if int(info) != 0:
        return inverse_root(H, 1, eps)
    return torch.cholesky_inverse(L)
