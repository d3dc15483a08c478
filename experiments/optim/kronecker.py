"""Kronecker-factored tensor algebra shared by Shampoo, TNT and KFAC: pure functions (and one cache).

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
Batches: mode_contraction, accumulate_contraction, mode_product and precondition have `*_batch`
forms for n equal-shaped tensors at once (T: (n, d_1, ..., d_k), one matrix per member: (n, ., d_j)),
and inverse_root, damped_inverse and damped take a stack (n, d, d) as well: one kernel launch per mode for all
members instead of one per member, which is what makes optimizers of many small tensors (the kernels
and norm vectors of a CNN) cheap on a CPU. The single-tensor forms are the batch of one.
`same_shape_batches` groups tensors into such batches, `stack` makes one, and `StackCache` keeps
per-parameter state matrices as views of a stack so that no stacking copy is needed per step (its
identity-checked lookup, `ViewCache`, also serves experiments.optim.foreach.FlatCache).
"""
from __future__ import annotations

import math
from functools import reduce
from itertools import chain

import torch


class CurvatureError(FloatingPointError):
    """A curvature factor could not be inverted: it is non-finite (the run diverged) or eigh failed
    in float32 and float64. Training loops that sweep into unstable settings treat it as divergence."""


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Matrix work runs in float32, or float64 when the parameter itself is float64."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def load_in_compute_dtype(optimizer: torch.optim.Optimizer, state_dict: dict) -> None:
    """After torch's load_state_dict: each loaded state tensor (alone or in lists, None kept) again
    from the saved one, in its parameter's compute dtype and on its device. torch casts floating
    state to the parameter dtype, which would round the float32 state of a bfloat16 or float16
    parameter on every save and load."""
    saved_ids = chain.from_iterable(g["params"] for g in state_dict["param_groups"])
    params = chain.from_iterable(g["params"] for g in optimizer.param_groups)
    for pid, p in zip(saved_ids, params):
        dt = compute_dtype(p.dtype)
        if p.dtype == dt:
            continue  # torch's cast to the parameter dtype is already the compute dtype: no second copy
        saved, loaded = state_dict["state"].get(pid), optimizer.state.get(p)
        if not saved or not loaded:
            continue

        def cast(t):
            if t is None:
                return None
            return t.to(device=p.device, dtype=dt if t.is_floating_point() else t.dtype, copy=True)
        for key, value in loaded.items():
            if isinstance(value, torch.Tensor):
                loaded[key] = cast(saved[key])
            elif isinstance(value, list):
                loaded[key] = [cast(t) for t in saved[key]]


def shaped(t: torch.Tensor, shape, dtype: torch.dtype) -> torch.Tensor:
    """t reshaped to `shape` in `dtype`; t itself where it already is (on a CPU a no-op call still
    costs a dispatch, and the optimizers call this for every parameter twice a step)."""
    if t.dtype != dtype:
        t = t.to(dtype)
    return t if t.shape == shape else t.reshape(shape)


def same_shape_batches(keys: list) -> list[list[int]]:
    """Indices of `keys` grouped by equal key (shape, dtype, ...), groups in first-seen order."""
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """(n, ...) batch of equal-shaped tensors: a view for a single tensor, a stacked copy otherwise."""
    return tensors[0].unsqueeze(0) if len(tensors) == 1 else torch.stack(tensors)


def unfold(T: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-`mode` unfolding: (d_mode, prod of the other dims, in their original order)."""
    return T.movedim(mode, 0).reshape(T.shape[mode], -1)


def _gram_operands(T: torch.Tensor, mode: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y) with X @ Y = T_(mode) T_(mode)^T for each member of the batch T: (n, d_1, ..., d_k).
    The first and last modes need no unfolding copy: T_(0) is a reshape of T, and
    T_(k-1)^T = T.reshape(-1, d_{k-1})."""
    n, d = T.shape[0], T.shape[mode + 1]
    if mode == T.dim() - 2:
        V = T.reshape(n, -1, d)
        return V.transpose(1, 2), V
    U = T.reshape(n, d, -1) if mode == 0 else T.movedim(mode + 1, 1).reshape(n, d, -1)
    return U, U.transpose(1, 2)


def mode_contraction_batch(T: torch.Tensor, mode: int) -> torch.Tensor:
    """(n, d_mode, d_mode): T[i]_(mode) T[i]_(mode)^T for each member i of T: (n, d_1, ..., d_k)."""
    return torch.bmm(*_gram_operands(T, mode))


def mode_contraction(T: torch.Tensor, mode: int) -> torch.Tensor:
    """T_(mode) T_(mode)^T: (d_mode, d_mode), the Gram matrix of the mode-`mode` fibres."""
    return mode_contraction_batch(T.unsqueeze(0), mode)[0]


def accumulate_contraction_batch(H: torch.Tensor, T: torch.Tensor, mode: int, beta: float, alpha: float) -> None:
    """H[i] <- beta H[i] + alpha T[i]_(mode) T[i]_(mode)^T in place, H: (n, d, d) (one fused product)."""
    H.baddbmm_(*_gram_operands(T, mode), beta=beta, alpha=alpha)


def accumulate_contraction(H: torch.Tensor, T: torch.Tensor, mode: int, beta: float, alpha: float) -> None:
    """H <- beta H + alpha T_(mode) T_(mode)^T in place (one fused product, no temporary (d, d) matrix)."""
    accumulate_contraction_batch(H.unsqueeze(0), T.unsqueeze(0), mode, beta, alpha)


def mode_product_batch(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """T[i] x_mode M[i] for each member: T (n, d_1, ..., d_k), M (n, r, d_mode) -> (n, ..., r, ...)."""
    n, dims, r = T.shape[0], T.shape[1:], M.shape[1]
    # The first and last modes are one batched product on a reshape of T (no permuting copy); a
    # middle mode of T viewed as (n, A, d, B) is one product on the (n, d, A*B) copy, which beats
    # n*A tiny broadcast products when A is a channel count (2-3x on a CNN's kernels).
    if mode == 0:
        return torch.bmm(M, T.reshape(n, dims[0], -1)).reshape(n, r, *dims[1:])
    if mode == len(dims) - 1:
        return torch.bmm(T.reshape(n, -1, dims[-1]), M.transpose(1, 2)).reshape(n, *dims[:-1], r)
    A, B = math.prod(dims[:mode]), math.prod(dims[mode + 1:])
    unfolded = T.reshape(n, A, dims[mode], B).transpose(1, 2).reshape(n, dims[mode], A * B)
    out = torch.bmm(M, unfolded).reshape(n, r, A, B).transpose(1, 2)
    return out.reshape(n, *dims[:mode], r, *dims[mode + 1:])


def mode_product(T: torch.Tensor, M: torch.Tensor, mode: int) -> torch.Tensor:
    """T x_mode M: contracts M's second index with T's mode `mode`; M: (r, d_mode)."""
    return mode_product_batch(T.unsqueeze(0), M.unsqueeze(0), mode)[0]


def precondition_batch(T: torch.Tensor, mats: list[torch.Tensor | None]) -> torch.Tensor:
    """T[i] x_1 mats[0][i] x_2 mats[1][i] ... for each member of T: (n, d_1, ..., d_k); mats[j]:
    (n, r_j, d_j) or None (that mode left as it is)."""
    if len(mats) != T.dim() - 1:
        raise ValueError(f"need one matrix per mode: tensor of order {T.dim() - 1}, {len(mats)} matrices")
    for j, M in enumerate(mats):
        if M is not None:
            T = mode_product_batch(T, M, j)
    return T


def precondition(T: torch.Tensor, mats: list[torch.Tensor | None]) -> torch.Tensor:
    """T x_1 mats[0] x_2 mats[1] ... x_k mats[k-1]; a None entry leaves that mode as it is."""
    return precondition_batch(T.unsqueeze(0), [None if M is None else M.unsqueeze(0) for M in mats])[0]


def kron_apply(T: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Reference for `precondition`: (mats[0] kron ... kron mats[k-1]) @ vec(T), reshaped like T.

    Row-major vec makes the first mode the slowest index, which is why the Kronecker factors come in
    mode order (for a matrix G: vec(A G B^T) = (A kron B) vec(G)). Builds the full (N, N) matrix."""
    K = reduce(torch.kron, mats)
    return (K @ T.reshape(-1)).reshape(T.shape)


def _eigh(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """eigh of A: (..., d, d) in A's dtype; on failure (or non-finite output) once more in float64;
    else CurvatureError."""
    try:
        w, Q = torch.linalg.eigh(A)
        if torch.isfinite(w).all():
            return w, Q
    except torch.linalg.LinAlgError:
        pass
    try:
        w, Q = torch.linalg.eigh(A.double())
    except torch.linalg.LinAlgError as err:
        raise CurvatureError(f"eigh failed in {A.dtype} and float64 on a {tuple(A.shape[-2:])} factor "
                             f"(trace {float(A.diagonal(dim1=-2, dim2=-1).sum()):.3e})") from err
    return w.to(A.dtype), Q.to(A.dtype)


def _check_factor(H: torch.Tensor, eps: float) -> None:
    """ValueError unless eps > 0; CurvatureError if the factor H has a non-finite entry."""
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps}")
    if not torch.isfinite(H).all():
        raise CurvatureError(f"non-finite entries in a {tuple(H.shape[-2:])} curvature factor: the run diverged")


def damped(H: torch.Tensor, eps: float) -> torch.Tensor:
    """H + eps I as a new matrix (eps added to a copy's diagonal: no identity matrix is built);
    H: (..., d, d)."""
    out = H.clone()
    out.diagonal(dim1=-2, dim2=-1).add_(eps)
    return out


def inverse_root(H: torch.Tensor, p: float, eps: float) -> torch.Tensor:
    """(H + eps I)^(-1/p) for a symmetric positive semidefinite H: (d, d), or each member of a batch
    (n, d, d) (one batched eigh), by eigendecomposition.

    H + eps I = Q diag(w) Q^T, result Q diag(w^(-1/p)) Q^T. Eigenvalues are floored at eps: exact for
    PSD H, and it keeps rounding (a tiny negative eigenvalue of a rank-deficient H) from producing NaN.
    p = 1 is the inverse. Raises CurvatureError on non-finite H or when eigh fails in float64 too."""
    _check_factor(H, eps)
    w, Q = _eigh(damped(H, eps))
    return (Q * w.clamp_min(eps).pow(-1.0 / p).unsqueeze(-2)) @ Q.mT


def damped_inverse(H: torch.Tensor, eps: float) -> torch.Tensor:
    """(H + eps I)^(-1) for a symmetric PSD H: (d, d), or each member of a batch (n, d, d) (one
    batched factorisation), by Cholesky (about 5x faster than eigh at d = 1000 on a CPU); a member
    whose factorisation fails falls back to `inverse_root(H_i, 1, eps)`."""
    _check_factor(H, eps)
    L, info = torch.linalg.cholesky_ex(damped(H, eps))
    if H.dim() == 2:
        return torch.cholesky_inverse(L) if int(info) == 0 else inverse_root(H, 1, eps)
    # One inverse per member, kept in its own memory layout for a batch of one: torch's batched
    # cholesky_inverse (and its out= form) rounds differently from the single-matrix one at some
    # sizes (d = 9, 49, 145), the later products round by layout, and TNT's numerics predate batching.
    return stack([torch.cholesky_inverse(Li) if fail == 0 else inverse_root(Hi, 1, eps)
                  for Hi, Li, fail in zip(H, L, info.tolist())])


def inverse_due(t: int, t1: int, t2: int) -> bool:
    """Whether step t (1-based) refreshes the inverses of TNT's and KFAC's schedule: every T2 steps,
    and every T1 steps during the first T2 (so the preconditioner is not stale while the statistics
    are young)."""
    return (t - 1) % t2 == 0 or (t <= t2 and (t - 1) % t1 == 0)


class ViewCache:
    """Per-parameter state tensors kept as views of one buffer per key, so that one kernel on the
    buffer updates every member in place with no gathering copy per step.

    A lookup hits only when the members are exactly the views last handed out for that key (the
    same objects, in the same order); a state dict loaded, a member replaced or the order changed
    simply builds the buffer anew. One buffer per key: a new one replaces the old, and so does it
    any other key's whose views it takes over (a step whose set of parameters with gradients
    differs has another key: without that, every new set would keep one more buffer alive)."""

    def __init__(self) -> None:
        self._buffers: dict = {}

    def _lookup(self, key, members: list[torch.Tensor]) -> torch.Tensor | None:
        """The buffer of `key` when `members` are its views, else None."""
        hit = self._buffers.get(key)
        if hit is not None and len(hit[1]) == len(members) and all(a is b for a, b in zip(hit[1], members)):
            return hit[0]
        return None

    def _keep(self, key, buffer: torch.Tensor, views: list[torch.Tensor], replaced: list[torch.Tensor]) -> None:
        """Keep `buffer` and its `views` under `key`; `replaced`: the state tensors they take the place of."""
        gone = {id(t) for t in replaced}
        for stale in [k for k, (_, vs) in self._buffers.items() if k != key and any(id(v) in gone for v in vs)]:
            del self._buffers[stale]
        self._buffers[key] = (buffer, views)


class StackCache(ViewCache):
    """Same-shaped per-parameter state matrices kept as views of one (n, d, d) tensor, which a
    batched kernel then updates in place. `get(key, members)` returns the stack whose views are
    exactly `members`, or stacks them anew and returns the new views too; the caller stores those
    views in its state in place of the old tensors. One member needs no copy: its stack is a view
    of it."""

    def get(self, key, members: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """(stack, new member views or None when `members` already are the stack's views)."""
        if len(members) == 1:
            return members[0].unsqueeze(0), None
        base = self._lookup(key, members)
        if base is not None:
            return base, None
        base = torch.stack(members)
        views = list(base.unbind(0))
        self._keep(key, base, views, members)
        return base, views

    def stacked(self, key, states: list[dict], name: str, j: int) -> torch.Tensor:
        """(n, d, d) stack of state[name][j] over `states`; the entries become views of it."""
        stacked, views = self.get(key, [state[name][j] for state in states])
        if views is not None:
            for state, view in zip(states, views):
                state[name][j] = view
        return stacked

    def put(self, key, base: torch.Tensor, states: list[dict], name: str, j: int) -> None:
        """Register a freshly computed (n, d, d) stack (e.g. new inverse roots) as state[name][j] of
        `states`: the entries become views of it."""
        views = list(base.unbind(0))
        if len(views) > 1:
            self._keep(key, base, views, [state[name][j] for state in states])
        for state, view in zip(states, views):
            state[name][j] = view
