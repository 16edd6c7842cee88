r"""Numerical cores of the torch W-updates (:mod:`fenchel_cvx.torch.w_updates`).

Everything here works on *augmented* matrices: with a bias, ``X_a = [X_in; 1^T]`` of shape ``(p_a, m)``,
``p_a = p_in + 1``, and a row ``z = [w; b]``. The regularization of a row is the separable quadratic

.. math::  \tfrac12 \sum_i \mu_i z_i^2 - \ell^\top z + \text{const},\qquad
           \mu_i = 2(\rho + \gamma) \text{ (weights)},\; 2\gamma \text{ (bias)},\qquad \ell = 2\gamma z^0,

which is ``rho ||w||^2 + gamma ||z - z0||^2`` up to a constant. All arithmetic is float64 (the callers cast):
the row Hessians reach condition numbers near 1e7, about 1/eps of float32. The one exception, on request
(``step_dtype``), is :func:`ssn_rows`' row Hessians and their factors, in float32 with each direction refined
against the float64 Hessian and rows float32 cannot serve redone in float64.

Solvers
-------
:func:`ssn_rows`
    Batched generalized (semismooth) Newton for ``min_z lam sum_j [F*(x_j^T z) - v_j x_j^T z] + reg(z)``, one
    problem per row, with an exact (safeguarded Newton) line search on the 1-D convex function along the step.
:func:`ridge`
    Closed form of ``min_W ||T - W X_a||_F^2 + reg(W)`` by a float64 Cholesky and one refinement step.
:func:`ce_newton`
    Ridge multinomial logistic regression ``min_W sum_j lse(W x_j) - <T, W X_a> + reg(W)`` by Newton with the
    exact ``(K p_a) x (K p_a)`` Hessian, or by Newton-CG with a Boehning preconditioner for large ``K p_a``.
:func:`mm_rows`, :func:`ce_mm`
    Majorization-minimization for the same two problems: one fixed curvature bound
    ``M = s X_a X_a^T + diag(mu)`` shared by every row, one Cholesky per call, a GEMM per step, monotone.
:func:`running_hidden_step`, :func:`running_last_step`, :func:`running_layer_step`
    One MM step with a *running* curvature estimate (:class:`~fenchel_cvx.torch.curvature.RunningCurvature`)
    in place of this batch's ``M``: one gradient and a cheap preconditioning, no certificate (the last one for a
    conv or pooled layer, its gradient taken without the patch matrix).

Each certified solver returns the point, its certificate -- a relative gradient residual (see
:func:`relative_residual`) -- the strong-convexity gap bound ``sum_i g_i^2 / (2 mu_i)`` (``inf`` when some
``mu_i = 0``), and the pieces of the gradient at the returned point from which the face builds the optimality
residual of :mod:`fenchel_cvx.optimality` without another GEMM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from .._checks import check_choice
from ..activations import Activation, LeakyReLU, ReLU
from ..errors import ShardingError, SolverError, ValueRangeError
from ..losses import CrossEntropyLoss, Loss
from ..shards import all_sum, all_sum_float, is_sharded
from ._common import sup_dphi

__all__ = ["SolveOutput", "ce_mm", "ce_newton", "gap_bound", "majorizer_cholesky", "mm_rows", "newton_rows",
           "penalty", "piecewise_slopes", "quadratic", "relative_residual", "ridge", "running_hidden_step",
           "running_last_step", "running_layer_step", "ssn_rows"]

_TINY = 1e-300
_MiB = 1 << 20
_F64 = torch.float64


@dataclass
class SolveOutput:
    """What a core solver returns (all float64, on the inputs' device).

    Attributes
    ----------
    Z : Tensor, shape (r, p_a)
        The solution rows (``[W, b]`` side by side for ``w_last``).
    residual : Tensor, shape (r,) or (1,)
        The certificate: relative gradient residual per row (one entry for a joint problem).
    gap : Tensor, same shape as ``residual``
        Upper bound on ``f(Z) - f*`` from strong convexity (``inf`` where not strongly convex).
    iterations : int
        Steps taken (the most any row took; :func:`newton_rows` counts its MM pre-steps too).
    row_iterations : Tensor of int64, same shape as ``residual``
        Steps taken per row.
    history : list of float
        ``max(residual)`` before each round of steps (every unfrozen row steps once per round) and at the end.
    info : dict
        Method-specific extras (CG iterations, regularizing shifts, ...).
    grad_sq : Tensor, shape (r,)
        ``||g_r||^2`` of each row of the gradient at the returned ``Z`` (rows of ``[W, b]`` for ``w_last`` too).
    fit_sq, target_sq : Tensor, shape (r,)
        Squared row norms of the two data pieces the gradient's data part is the difference of (``lam phi(U)
        X_a^T`` and ``lam V X_a^T``; ``h'(Yhat) X_a^T`` and ``c T X_a^T``), at the returned ``Z``: with
        ``grad_sq`` they give :func:`fenchel_cvx.optimality.gradient_residual`.
    """

    Z: torch.Tensor
    residual: torch.Tensor
    gap: torch.Tensor
    iterations: int
    row_iterations: torch.Tensor
    history: list = field(default_factory=list)
    info: dict = field(default_factory=dict)
    grad_sq: torch.Tensor | None = None
    fit_sq: torch.Tensor | None = None
    target_sq: torch.Tensor | None = None


def _sq(P: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean norm of each row."""
    return (P * P).sum(-1)


def _refuse_sharded(subproblem: str, what: str) -> None:
    """Newton's methods form per-row (or joint) Hessians that are sums over samples of ``p_a x p_a`` blocks: an
    ``all_reduce`` of ``r p_a^2`` numbers per step, more than the data. Data-parallel runs use the MM steps."""
    if is_sharded():
        raise ShardingError(f"method: {what} does not split over processes (its Hessians would cross them every "
                            f"step); in a data-parallel run call {subproblem} with method='mm' (certified, to tol) or "
                            "'running'")


# -- certificates -------------------------------------------------------------------------------------------------
def relative_residual(G: torch.Tensor, pieces: tuple[torch.Tensor, ...], floor: float = 0.0) -> torch.Tensor:
    r"""``||G|| / max(sum_k ||P_k||, floor)`` along the last axis: the relative size of the gradient ``G``.

    The gradient of every W-objective is a signed sum of pieces that cancel at the optimum -- the data term's
    ``lam phi(U) X^T`` (or ``softmax(Yhat) X^T``), the constant ``lam V X^T`` (``c Y X^T``), the regularizer's
    ``mu * z`` and ``2 gamma z0``. The ratio is 0 exactly at the minimizer, at most 1, unchanged when the whole
    objective is scaled, and reaches about ``1e-15`` in float64. ``floor`` (a typical size of the constant
    piece) keeps the ratio meaningful for a row whose pieces all vanish at the optimum; ``0/0`` counts as 0.
    """
    scale = sum(P.norm(dim=-1) for P in pieces)
    return G.norm(dim=-1) / torch.clamp(scale, min=max(floor, _TINY))


def gap_bound(G: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    r"""``sum_i G_i^2 / (2 mu_i)`` per row: ``f - f*`` is at most this when ``f - sum_i mu_i z_i^2/2`` is convex.

    Completing the square in ``f(y) >= f(z) + g^T (y - z) + (y - z)^T diag(mu) (y - z) / 2``. Rows are ``inf``
    when a coordinate has ``mu_i = 0`` (an unregularized bias, or ``rho = gamma = 0``).
    """
    if bool((mu > 0).all()):
        return 0.5 * (G * G / mu).sum(dim=-1)
    return torch.full(G.shape[:-1], math.inf, dtype=G.dtype, device=G.device)


def quadratic(p_in: int, p_out: int, rho: float, gamma: float, bias: bool, W0: Any, b0: Any, ref: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``mu``, ``lin`` and the augmented anchor ``Z0``: ``rho||W||^2 + gamma||Z - Z0||^2 = mu.z^2/2 - lin.z + c``."""
    pa = p_in + int(bias)
    mu = torch.full((pa,), 2.0 * (rho + gamma), dtype=_F64, device=ref.device)
    if bias:
        mu[-1] = 2.0 * gamma
    if gamma > 0:
        Z0 = W0.to(_F64)
        if bias:
            Z0 = torch.cat([Z0, b0.to(_F64).unsqueeze(1)], dim=1)
        return mu, 2.0 * gamma * Z0, Z0
    return mu, torch.zeros(p_out, pa, dtype=_F64, device=ref.device), None


def penalty(W: torch.Tensor, b: torch.Tensor | None, rho: float, gamma: float, W0: Any, b0: Any) -> float:
    """``rho ||W||^2 + gamma (||W - W0||^2 + ||b - b0||^2)`` for float64 ``W``, ``b``."""
    val = rho * float((W * W).sum())
    if gamma > 0:
        val += gamma * float(((W - W0.to(_F64)) ** 2).sum())
        if b is not None:
            val += gamma * float(((b - b0.to(_F64)) ** 2).sum())
    return val


def piecewise_slopes(act: Activation) -> tuple[float, float] | None:
    """The two values ``phi'`` takes for a piecewise-linear activation (ReLU, leaky ReLU), else ``None``."""
    if isinstance(act, ReLU):
        return (0.0, 1.0)
    if isinstance(act, LeakyReLU):
        return (float(act.alpha), 1.0)
    return None


def _factor_buffer(H: torch.Tensor) -> torch.Tensor:
    """An uninitialized buffer shaped like ``H`` for Cholesky factors, each matrix stored column-major.

    LAPACK writes column-major factors: into a row-major ``out`` torch factors a temporary and copies it over, a
    cost comparable to the factorization itself at the sizes of the subproblem benchmark (where this buffer made
    ``w_hidden`` faster: docs/benchmarks.md).
    """
    return torch.empty_like(H).mT


def _chol_solve(L: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^{-1} B`` by two triangular solves (torch's batched ``cholesky_solve`` is much slower on CPU)."""
    y = torch.linalg.solve_triangular(L, B, upper=False)
    return torch.linalg.solve_triangular(L.mT, y, upper=True)


# -- (c) hidden W-update: batched semismooth Newton over rows ---------------------------------------------------
class _RowHessians:
    r"""Data parts ``H_r = X_a diag(d_r) X_a^T`` of the row Hessians, formed as cheaply as the structure allows.

    For a piecewise-linear activation ``d_r`` takes two values, so ``H_r = c G + X_a diag(d_r - c) X_a^T`` with the
    Gram matrix ``G = X_a X_a^T`` (formed once) and ``c`` the more frequent slope: the correction touches only the
    minority samples (cost ``p_a^2 * min(#active, #inactive)``). Between Newton steps few samples change side,
    so when memory allows each row's last ``(d_r, H_r)`` is kept and updated by the changed samples alone
    (a rank-k update/downdate). Smooth activations (every ``d_r`` dense) use chunked GEMMs
    ``(c p_a, m) @ (m, p_a)``. Results are written into caller buffers: fresh large allocations are slow.
    """

    def __init__(self, Xa: torch.Tensor, Xt: torch.Tensor, act: Activation, n_rows: int, *, cache_bytes: int):
        self.Xa = Xa
        self.Xt = Xt  # X_a^T, contiguous: gathering samples copies contiguous rows
        self.slopes = piecewise_slopes(act)
        self.pa, self.m = Xa.shape
        esize = Xa.element_size()
        self.use_cache = self.slopes is not None and n_rows * (self.pa ** 2 + self.m) * esize <= cache_bytes
        self.cache_H: torch.Tensor | None = None
        self.cache_d: torch.Tensor | None = None
        self.n_rows = n_rows
        self.cached: set[int] = set()
        self._gram: torch.Tensor | None = None
        self._gather: torch.Tensor | None = None
        self.samples_touched = 0  # columns of X_a used to form Hessians: a cost counter for tests and benchmarks

    def gram(self) -> torch.Tensor:
        if self._gram is None:
            self._gram = self.Xa @ self.Xt
        return self._gram

    def _add_correction(self, H: torch.Tensor, delta: torch.Tensor) -> None:
        """``H += X_a diag(delta) X_a^T`` using only the samples where ``delta != 0``."""
        idx = torch.nonzero(delta).squeeze(1)
        k = int(idx.numel())
        self.samples_touched += k
        if k == 0:
            return
        if k > 0.75 * self.m:
            H.addmm_(self.Xt.T, self.Xt * delta.unsqueeze(1))
            return
        if self._gather is None or self._gather.shape[1] < k:  # grown geometrically, reused: fresh pages are slow
            size = min(self.m, max(k, 2 * (0 if self._gather is None else self._gather.shape[1])))
            self._gather = torch.empty(2, size, self.pa, dtype=self.Xa.dtype, device=self.Xa.device)
        Xs = torch.index_select(self.Xt, 0, idx, out=self._gather[0, :k])
        Xw = torch.mul(Xs, delta.index_select(0, idx).unsqueeze(1), out=self._gather[1, :k])
        H.addmm_(Xs.T, Xw)

    def rows(self, rows: torch.Tensor, D: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Write the data Hessians of ``rows`` (global ids, (c,)) with ``phi'`` weights ``D`` (c, m) into ``out``."""
        c_rows = D.shape[0]
        out, D = out[:c_rows], D.to(self.Xa.dtype)  # the Hessians' dtype (float32 Hessians on float64 rows)
        if self.slopes is None:
            self.samples_touched += c_rows * self.m
            Xs = self.Xa.unsqueeze(0) * D.unsqueeze(1)  # (c, p_a, m)
            torch.mm(Xs.reshape(-1, self.m), self.Xt, out=out.view(-1, self.pa))
            return out
        if self.use_cache and self.cache_H is None:
            n = self.n_rows
            self.cache_H = torch.empty(n, self.pa, self.pa, dtype=self.Xa.dtype, device=self.Xa.device)
            self.cache_d = torch.empty(n, self.m, dtype=self.Xa.dtype, device=self.Xa.device)
        s_lo, s_hi = self.slopes
        n_hi_all = (D == s_hi).sum(1).tolist()  # noqa: SIM300 (D: a tensor, not a constant)
        # samples changed since each row's cached Hessian, counted for the whole chunk at once
        changed = torch.ne(D, self.cache_d[rows]).sum(1).tolist() if self.use_cache else [0] * c_rows
        for i, r in enumerate(rows.tolist()):
            d, H = D[i], out[i]
            n_hi = n_hi_all[i]
            c = s_hi if n_hi >= self.m - n_hi else s_lo
            k_const = min(n_hi, self.m - n_hi)
            # a cached row is updated where it lies and copied out once (its factorization overwrites `out`)
            target = self.cache_H[r] if self.use_cache else H
            if self.use_cache and r in self.cached and changed[i] < k_const:
                self._add_correction(target, d - self.cache_d[r])
            else:
                if c == 0.0:
                    target.zero_()
                else:
                    torch.mul(self.gram(), c, out=target)
                self._add_correction(target, d - c)
            if self.use_cache:
                H.copy_(target)
                self.cache_d[r].copy_(d)
                self.cached.add(r)
        return out


def _base_shift(mean_diag: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
    """The Levenberg-Marquardt shift each row starts from: ``1e-12`` of its Hessian's mean diagonal (``||g_r||``,
    at least 1, for a zero Hessian)."""
    return torch.where(mean_diag > 0, 1e-12 * mean_diag, G.norm(dim=-1).clamp_min(1.0))


def _newton_directions(H: torch.Tensor, L: torch.Tensor, G: torch.Tensor, lam: float, mu: torch.Tensor,
                       need_shift: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Solve ``(lam H + diag(mu) + s I) D = -G`` by batched Cholesky (``H`` is overwritten, ``L`` a buffer).

    ``s > 0`` only where some ``mu_i = 0``: a row with no strongly convex coordinate (an unregularized bias) can
    have a singular Hessian. The tiny Levenberg-Marquardt shift changes the *step* only; the objective and the
    certificate stay unregularized. Returns the steps and the shift ``s`` of each row.
    """
    H.mul_(lam)
    diag = H.diagonal(dim1=-2, dim2=-1)
    diag.add_(mu)
    n = H.shape[-1]
    base = _base_shift(diag.sum(-1) / n, G)
    shift = base.clone() if need_shift else torch.zeros_like(base)
    diag.add_(shift.unsqueeze(-1))
    for _ in range(8):
        _, info = torch.linalg.cholesky_ex(H, out=(L, torch.empty(H.shape[:-2], dtype=torch.int32,
                                                                   device=H.device)))
        bad = info > 0
        if not bool(bad.any()):
            return -_chol_solve(L, G.unsqueeze(-1)).squeeze(-1), shift
        extra = torch.where(bad, torch.maximum(99.0 * shift, 100.0 * base), torch.zeros_like(shift))
        diag.add_(extra.unsqueeze(-1))
        shift = shift + extra
    raise SolverError("the row Hessians are not positive definite after regularization (round-off in huge or "
                      "badly scaled inputs?); try rho > 0 or gamma > 0, rescale X_in, or method='mm'",
                      status="numerical_error", solver="ssn")  # pragma: no cover


#: A float32 direction whose first residual exceeds this fraction of the gradient is redone in float64.
F32_TRUSTED = 0.25


def _refined_directions(H: torch.Tensor, L: torch.Tensor, G: torch.Tensor, lam: float, mu: torch.Tensor,
                        need_shift: bool, D: torch.Tensor, Xa: torch.Tensor, Xt: torch.Tensor, col_sq: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`_newton_directions` with ``H`` and ``L`` in a lower precision than ``G`` (float32 on float64):
    solve with the low-precision factors, then refine once against the exact Hessians in ``G``'s dtype, applied
    as ``lam X_a diag(d_r) X_a^T + diag(mu) + s_r I`` without forming them (two GEMMs), ``s_r`` the shift the
    float64 method would use (``1e-12`` of the mean diagonal where ``need_shift``, else 0).

    Where ``cond(H_r)`` times float32's ``6e-8`` is small the refinement squares the first solve's relative
    error. A row whose first residual is above :data:`F32_TRUSTED` of its gradient, whose float32 factorization
    needed a larger shift than float64 would, or whose refined step does not descend is redone in ``G``'s dtype
    (its Hessian formed by a GEMM, as the float64 method would factor it): float32 then could not serve that
    row's conditioning. Right-hand sides are scaled to unit rows before each cast, so tiny or huge gradients do
    not under- or overflow float32. ``L`` and ``H`` may hold one matrix (every row's Hessian equal: the cold
    start) for many rows of ``G``. ``col_sq`` holds ``||x_j||^2`` per sample (the Hessians' diagonals come from
    it). Returns the steps, each row's shift and the number of rows redone.
    """
    low, high = H.dtype, G.dtype
    shared = H.shape[0] == 1 and G.shape[0] != 1
    # the float64 method's shift, from the exact diagonal: mean of lam sum_j d_rj x_ij^2 + mu_i over i
    mean_diag = (lam * (D @ col_sq) + mu.sum()) / max(Xa.shape[0], 1)
    shift64 = _base_shift(mean_diag, G) if need_shift else torch.zeros_like(mean_diag)
    scale = G.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(high).tiny)
    first, shift32 = _newton_directions(H, L, (G[:1] / scale[:1] if shared else G / scale).to(low), lam,
                                        mu.to(low), need_shift)

    def solve(R: torch.Tensor) -> torch.Tensor:
        norm = R.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(high).tiny)
        R = (R / norm).to(low)
        out = _chol_solve(L[0], R.T).T if shared else _chol_solve(L, R.unsqueeze(-1)).squeeze(-1)
        return out.to(high) * norm

    def apply(P: torch.Tensor) -> torch.Tensor:
        return lam * ((D * (P @ Xa)) @ Xt) + (mu + shift64.unsqueeze(-1)) * P

    step = solve(-G) if shared else first.to(high) * scale  # the factorization solved the (scaled) rows already
    res = -G - apply(step)
    step = step + solve(res)
    escalated = shift32.to(high) > (1.0 + 1e-6) * (shift64 if not shared else shift64.max()) + 1e-300
    bad = (res.norm(dim=-1) > F32_TRUSTED * G.norm(dim=-1)) | ((step * G).sum(-1) >= 0) | escalated
    bad &= G.norm(dim=-1) > 0
    n_bad = int(bad.sum())
    if n_bad:
        shift64 = shift64.clone()
        rows = torch.nonzero(bad).squeeze(1)
        per = max(1, (64 << 20) // max(1, Xa.element_size() * Xa.numel()))  # (k, p_a, m) products of <= 64 MiB
        for r in rows.split(per):
            Hb = torch.matmul(Xa.unsqueeze(0) * D[r].unsqueeze(1), Xt)  # (k, p_a, p_a) in G's dtype
            step[r], shift64[r] = _newton_directions(Hb, _factor_buffer(Hb), G[r], lam, mu, need_shift)
    return step, shift64, n_bad


def _line_search(U: torch.Tensor, dU: torch.Tensor, V: torch.Tensor, act: Activation, lam: float,
                 q0: torch.Tensor, q1: torch.Tensor, slope0: torch.Tensor, max_steps: int = 40) -> torch.Tensor:
    r"""Exact line search, one step length per row, for ``phi_r(t) = f_r(z_r + t Delta_r)``.

    ``phi_r'(t) = lam sum_j dU_j (phi(U_j + t dU_j) - V_j) + q0 + t q1`` is nondecreasing; its root is found by
    Newton's method on ``phi_r'`` (exact on each linear piece when ``phi`` is piecewise linear) safeguarded by a
    bracket ``[lo, hi]`` and bisection. Cost ``O(m)`` per row and evaluation.
    """
    n = U.shape[0]
    t = torch.ones(n, dtype=U.dtype, device=U.device)
    lo = torch.zeros_like(t)
    hi = torch.full_like(t, math.inf)
    todo = torch.arange(n, device=U.device)
    for _ in range(max_steps):
        if todo.numel() == 0:
            break
        tt, dd = t[todo], dU[todo]
        Ut = U[todo] + tt.unsqueeze(1) * dd
        terms = dd * (act.forward(Ut) - V[todo])
        # the three sums over samples in one all_reduce when data-parallel
        sums = all_sum(torch.stack([terms.sum(1), (dd * dd * act.derivative(Ut)).sum(1), terms.abs().sum(1)]))
        d1 = lam * sums[0] + q0[todo] + tt * q1[todo]
        d2 = lam * sums[1] + q1[todo]
        noise = lam * sums[2] + q0[todo].abs() + (tt * q1[todo]).abs()
        done = (d1.abs() <= 1e-9 * slope0[todo].abs()) | (d1.abs() <= 1e-13 * noise)
        l, h = lo[todo], hi[todo]
        l = torch.where(d1 < 0, tt, l)
        h = torch.where(d1 > 0, tt, h)
        t_new = torch.where(d2 > 0, tt - d1 / d2.clamp_min(_TINY), torch.full_like(tt, math.inf))
        inside = (t_new > l) & (t_new < h)
        fallback = torch.where(torch.isfinite(h), 0.5 * (l + h), 2.0 * torch.maximum(tt, l))
        t_new = torch.where(inside, t_new, fallback)
        done = done | ((h - l) <= 1e-14 * h.clamp_max(1e300))
        lo[todo], hi[todo] = l, h
        t[todo] = torch.where(done, tt, t_new)
        todo = todo[~done]
    if todo.numel():
        # not settled: fall back to the largest step known to decrease phi (phi' < 0 on [0, lo])
        t[todo] = torch.where(lo[todo] > 0, lo[todo], t[todo])
    return t


def ssn_rows(Xa: torch.Tensor, V: torch.Tensor, act: Activation, lam: float, mu: torch.Tensor,
             lin: torch.Tensor, Z: torch.Tensor, *, tol: float, max_iter: int, step_dtype: torch.dtype | None = None,
             row_budget: torch.Tensor | None = None, cache_bytes: int = 2048 * _MiB,
             chunk_bytes: int = 256 * _MiB) -> SolveOutput:
    r"""Batched generalized Newton for the rows of the hidden W-update.

    Row ``r`` minimizes ``f_r(z) = lam sum_j [F*(x_j^T z) - V_rj x_j^T z] + sum_i mu_i z_i^2 / 2 - lin_r^T z``.

    Parameters
    ----------
    Xa : Tensor, shape (p_a, m)
        Augmented inputs.
    V : Tensor, shape (r, m)
        Targets ``X_next`` (inside the activation's domain).
    act : Activation
    lam : float
    mu : Tensor, shape (p_a,)
        Per-coordinate curvature of the regularizer.
    lin : Tensor, shape (r, p_a)
        Linear term of the regularizer (``2 gamma z0``).
    Z : Tensor, shape (r, p_a)
        Starting rows (modified in place and returned).
    tol : float
        Stop a row once its relative residual is ``<= tol``; it is then frozen.
    max_iter : int
        Newton steps at most.
    row_budget : Tensor of int64, shape (r,), optional
        Newton steps each row may take (at most ``max_iter``); a row that used its budget is frozen.
    step_dtype : torch.dtype, optional
        Dtype of the row Hessians and their Cholesky factors when it differs from ``Z``'s (float32 on float64
        rows): each direction is then refined once against the exact Hessian, and rows float32 cannot serve are
        redone in ``Z``'s dtype (:func:`_refined_directions`); the gradients, line searches and certificates stay
        in ``Z``'s dtype. Inputs whose Hessian entries would exceed ``1e30`` are solved in ``Z``'s dtype.

    Notes
    -----
    Per step: ``U = Z X_a`` and the gradient (``4 r p_a m`` flops), the data Hessians of the rows not yet
    converged (see :class:`_RowHessians`), a batched Cholesky (``r p_a^3 / 3``; float64, or float32 under
    ``step_dtype``), ``Delta X_a`` and the line search (``O(r m)`` per evaluation).
    """
    _refuse_sharded("w_hidden", "semismooth Newton on the hidden W-update")
    r, pa = Z.shape
    m = Xa.shape[1]
    Xt = Xa.T.contiguous()
    VX = lam * (V @ Xt)
    floor = float(VX.norm(dim=1).mean()) if r else 0.0  # a row's typical constant piece (see relative_residual)
    need_shift = not bool((mu > 0).all())
    low = step_dtype is not None and step_dtype != Z.dtype
    if low:  # Hessian entries beyond float32's range (huge inputs): float64 throughout, as info["hessian_dtype"] says
        low = lam * float((Xa * Xa).sum(1).max()) + float(mu.max()) < 1e30 if Xa.numel() else False
    hdtype = step_dtype if low else Z.dtype
    col_sq = (Xt * Xt).sum(1) if low else None  # ||x_j||^2, for the refinement's shifts (constant over the solve)
    hess = _RowHessians(Xa.to(hdtype), Xt.to(hdtype), act, r, cache_bytes=cache_bytes)
    residual = torch.full((r,), math.inf, dtype=Z.dtype, device=Z.device)
    gap = torch.full_like(residual, math.inf)
    grad_sq, fit_sq = torch.zeros_like(residual), torch.zeros_like(residual)
    row_iters = torch.zeros(r, dtype=torch.int64, device=Z.device)
    active = torch.arange(r, device=Z.device)
    history: list[float] = []
    max_shift, float64_rows = 0.0, 0
    per_row = 8 * pa * (2 * pa + (m if hess.slopes is None else 0))
    chunk = max(1, min(r, chunk_bytes // max(1, per_row)))
    Hbuf = Lbuf = None
    for it in range(max_iter + 1):
        Za = Z[active]
        U = Za @ Xa
        A = lam * (act.forward(U) @ Xt)
        VXa = VX[active]
        MZ = mu * Za
        G = A - VXa + MZ - lin[active]
        Rg = MZ - lin[active]
        res = relative_residual(G, (A, VXa, MZ, lin[active]), floor)
        residual[active] = res
        gap[active] = gap_bound(G, mu)
        grad_sq[active], fit_sq[active] = _sq(G), _sq(A)
        history.append(float(residual.max()))
        keep = ~(res <= tol)
        if row_budget is not None:
            keep &= row_iters[active] < row_budget[active]
        if it == max_iter or not bool(keep.any()):
            break
        active, G, U, Za = active[keep], G[keep], U[keep], Za[keep]
        row_iters[active] += 1
        D = act.derivative(U)
        if Hbuf is None:
            Hbuf = torch.empty(min(chunk, active.numel()), pa, pa, dtype=hdtype, device=Z.device)
            Lbuf = _factor_buffer(Hbuf)
        d0 = D.reshape(-1)[0]
        if bool((D == d0).all()):  # noqa: SIM300
            # every row has the same Hessian d0 X_a X_a^T (the usual cold start from zero): factor it once
            H1 = Hbuf[:1]
            torch.mul(hess.gram(), float(d0), out=H1[0])
            hess.samples_touched += m
            L1 = Lbuf[:1]
            if low:
                Delta, sh, redone = _refined_directions(H1, L1, G, lam, mu, need_shift, D, Xa, Xt, col_sq)
                float64_rows += redone
            else:
                _, sh = _newton_directions(H1, L1, G[:1], lam, mu, need_shift)
                Delta = -_chol_solve(L1[0], G.T).T
            max_shift = max(max_shift, float(sh.max()))
        else:
            steps = []
            for s in range(0, active.numel(), chunk):
                sl = slice(s, s + chunk)
                Hd = hess.rows(active[sl], D[sl], Hbuf)
                if low:
                    step, sh, redone = _refined_directions(Hd, Lbuf[:Hd.shape[0]], G[sl], lam, mu, need_shift,
                                                           D[sl], Xa, Xt, col_sq)
                    float64_rows += redone
                else:
                    step, sh = _newton_directions(Hd, Lbuf[:Hd.shape[0]], G[sl], lam, mu, need_shift)
                max_shift = max(max_shift, float(sh.max()))
                steps.append(step)
            Delta = torch.cat(steps)
        dU = Delta @ Xa
        q0 = (Delta * Rg[keep]).sum(1)
        q1 = (Delta * Delta * mu).sum(1)
        slope0 = (Delta * G).sum(1)
        t = _line_search(U, dU, V[active], act, lam, q0, q1, slope0)
        Z[active] = Za + t.unsqueeze(1) * Delta
    info = {"hessian_samples": hess.samples_touched, "hessian_cache": hess.use_cache, "max_shift": max_shift,
            "hessian_dtype": hdtype, "float64_rows": float64_rows}
    return SolveOutput(Z, residual, gap, int(row_iters.max()) if r else 0, row_iters, history, info, grad_sq, fit_sq,
                       _sq(VX))


#: Majorization-minimization steps :func:`newton_rows` takes before Newton's at most (when ``max_iter`` is
#: above twice as many) ...
MM_PRESTEPS = 10
#: ... stopping once a step moves fewer than this fraction of the samples across the kink
MM_SETTLED = 0.01


def newton_rows(Xa: torch.Tensor, V: torch.Tensor, act: Activation, lam: float, mu: torch.Tensor,
                lin: torch.Tensor, Z: torch.Tensor, *, tol: float, max_iter: int,
                step_dtype: torch.dtype | None = None) -> SolveOutput:
    """The hidden W-update's Newton method: for a piecewise-linear activation up to :data:`MM_PRESTEPS` steps of
    :func:`mm_rows` while they move samples across the kink, then :func:`ssn_rows`.

    The MM steps share one factorization and cost two GEMMs each, a small part of one Newton step (a factorization
    per row); from a cold start they settle most samples on their side of the kink, so the Newton steps that
    follow change fewer of them and fewer are needed. Once a step moves fewer than :data:`MM_SETTLED` of the
    samples (at once from a warm start near the answer) Newton takes over. Every step lowers every row's
    objective. Both kinds count against each row's ``max_iter`` and in ``row_iterations``;
    ``info["mm_row_steps"]`` holds each row's MM steps (each row stops on its own count, so rows stay independent
    problems) and ``info["mm_steps"]`` their maximum; ``history`` holds the largest certificate before each
    round of MM steps, then of Newton steps, and at the end. Smooth activations, and budgets of
    ``max_iter <= 2 MM_PRESTEPS`` (callers that ask for a few Newton steps), go to Newton directly.
    """
    n_mm = MM_PRESTEPS if piecewise_slopes(act) is not None and max_iter > 2 * MM_PRESTEPS else 0
    if n_mm == 0:
        out = ssn_rows(Xa, V, act, lam, mu, lin, Z, tol=tol, max_iter=max_iter, step_dtype=step_dtype)
        out.info["mm_steps"], out.info["mm_row_steps"] = 0, torch.zeros_like(out.row_iterations)
        return out
    _refuse_sharded("w_hidden", "semismooth Newton on the hidden W-update")
    pre = mm_rows(Xa, V, act, lam, mu, lin, Z, tol=tol, max_iter=n_mm, settle=MM_SETTLED)
    budget = max_iter - pre.row_iterations  # each row's own: one that settled early keeps its Newton steps
    out = ssn_rows(Xa, V, act, lam, mu, lin, pre.Z, tol=tol, max_iter=int(budget.max()), step_dtype=step_dtype,
                   row_budget=budget)
    out.row_iterations = out.row_iterations + pre.row_iterations
    out.iterations = int(out.row_iterations.max()) if out.row_iterations.numel() else 0
    out.history = pre.history[:-1] + out.history
    out.info["mm_steps"], out.info["mm_row_steps"] = pre.iterations, pre.row_iterations
    return out


# -- (d) last W-update ----------------------------------------------------------------------------------------
def _joint_residual(G: torch.Tensor, pieces: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """:func:`relative_residual` of a whole matrix problem, as a (1,) tensor."""
    return relative_residual(G.reshape(1, -1), tuple(P.reshape(1, -1) for P in pieces))


def ridge(Xa: torch.Tensor, T: torch.Tensor, mu: torch.Tensor, lin: torch.Tensor) -> SolveOutput:
    r"""``argmin_W ||T - W X_a||_F^2 + sum_i mu_i ||W_{:,i}||^2 / 2 - <lin, W>`` in closed form (W: (K, p_a)).

    ``W (2 X_a X_a^T + diag(mu)) = 2 T X_a^T + lin``, solved by a float64 Cholesky plus one step of iterative
    refinement; a singular system (``rho = gamma = 0`` with rank-deficient ``X_a``) falls back to the
    minimum-norm solution from an eigendecomposition. Cost ``p_a^2 m + 2 K p_a m + p_a^3 / 3``.
    """
    Xt = Xa.T.contiguous()
    A = 2.0 * all_sum(Xa @ Xt)
    A.diagonal().add_(mu)
    TX = 2.0 * all_sum(T @ Xt)
    rhs = TX + lin
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        solver = "cholesky"
        W = _chol_solve(L, rhs.T).T
        W = W + _chol_solve(L, (rhs - W @ A).T).T
    else:
        solver = "eigh_pinv"
        evals, Q = torch.linalg.eigh(A)
        keep = evals > evals.abs().max() * A.shape[0] * torch.finfo(A.dtype).eps
        inv = torch.where(keep, 1.0 / torch.where(keep, evals, torch.ones_like(evals)), torch.zeros_like(evals))
        W = ((rhs @ Q) * inv) @ Q.T
    YX = 2.0 * all_sum((W @ Xa) @ Xt)
    MW = mu * W
    G = YX - TX + MW - lin
    res = _joint_residual(G, (YX, TX, MW, lin))
    return SolveOutput(W, res, gap_bound(G.reshape(1, -1), mu.repeat(W.shape[0])), 0,
                       torch.zeros(1, dtype=torch.int64, device=W.device), [float(res)], {"linear_solver": solver},
                       _sq(G), _sq(YX), _sq(TX))


class _CE:
    """Objective, gradient and curvature of ``sum_j lse(W x_j) - <T, W X_a> + sum mu W^2 / 2 - <lin, W>``."""

    def __init__(self, Xa: torch.Tensor, T: torch.Tensor, mu: torch.Tensor, lin: torch.Tensor):
        self.Xa, self.Xt, self.T, self.mu, self.lin = Xa, Xa.T.contiguous(), T, mu, lin
        self.TX = all_sum(T @ self.Xt)

    def value(self, W: torch.Tensor) -> tuple[float, torch.Tensor]:
        Yh = W @ self.Xa
        lse = torch.logsumexp(Yh, dim=0)
        data = all_sum_float(lse.sum() - (self.T * Yh).sum(), W)
        return data + float(0.5 * (self.mu * W * W).sum() - (self.lin * W).sum()), torch.exp(Yh - lse)

    def gradient(self, W: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The gradient, its certificate and the data piece ``softmax(Yhat) X_a^T``."""
        SX = all_sum(S @ self.Xt)
        MW = self.mu * W
        G = SX - self.TX + MW - self.lin
        return G, _joint_residual(G, (SX, self.TX, MW, self.lin)), SX

    def hessian(self, S: torch.Tensor, chunk_bytes: int) -> torch.Tensor:
        r"""``sum_j (diag s_j - s_j s_j^T) kron x_j x_j^T + I kron diag(mu)``, shape (K p_a, K p_a).

        Index ``(k, a)`` -> ``k p_a + a``. Accumulated over sample chunks as ``blockdiag(X diag(s_k) X^T) - N N^T``
        with ``N = [s_jk x_j]`` of shape ``(K p_a, m_c)``: about ``(K p_a)^2 m`` multiply-adds in all.
        """
        K, m = S.shape
        Xa = self.Xa
        pa = Xa.shape[0]
        n = K * pa
        H = Xa.new_zeros(n, n)
        blocks = H.view(K, pa, K, pa).diagonal(dim1=0, dim2=2).permute(2, 0, 1)  # (K, p_a, p_a) view
        step = max(1, chunk_bytes // max(1, 8 * n))
        for s in range(0, m, step):
            Xc, Sc = Xa[:, s:s + step], S[:, s:s + step]
            N = (Sc.unsqueeze(1) * Xc.unsqueeze(0)).reshape(n, -1)
            H.addmm_(N, N.T, alpha=-1.0)
            blocks.add_((N @ Xc.T).reshape(K, pa, pa))
        H.diagonal().add_(self.mu.repeat(K))
        return H

    def hvp(self, S: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """Hessian-vector product for a direction ``P`` (K, p_a): ``4 K p_a m`` flops."""
        SQ = S * (P @ self.Xa)
        return (SQ - S * SQ.sum(0, keepdim=True)) @ self.Xt + self.mu * P


def _pcg(hvp, precond, g: torch.Tensor, rtol: float, max_iter: int) -> tuple[torch.Tensor, int]:
    """Preconditioned CG for ``H x = -g`` (matrices as (K, p_a) tensors); stops at ``||r|| <= rtol ||g||``."""
    x = torch.zeros_like(g)
    r = -g
    z = precond(r)
    p = z
    rz = (r * z).sum()
    g_norm = float(g.norm())
    k = 0
    for k in range(1, max_iter + 1):  # noqa: B007 (k is returned: the CG steps taken)
        Hp = hvp(p)
        pHp = (p * Hp).sum()
        if not float(pHp) > 0:
            break
        alpha = rz / pHp
        x = x + alpha * p
        r = r - alpha * Hp
        if float(r.norm()) <= rtol * g_norm:
            break
        z = precond(r)
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, k


def ce_newton(Xa: torch.Tensor, T: torch.Tensor, mu: torch.Tensor, lin: torch.Tensor, W: torch.Tensor, *,
              tol: float, max_iter: int, method: str = "auto", max_dense_dim: int = 1000,
              chunk_bytes: int = 256 * _MiB) -> SolveOutput:
    r"""Ridge multinomial logistic regression ``min_W sum_j lse(W x_j) - <T, W X_a> + reg(W)``, W: (K, p_a).

    ``method="newton"``: the exact Hessian (:meth:`_CE.hessian`), a float64 Cholesky (with a tiny shift only if
    it fails: the softmax is invariant to adding a constant to every class, so an unregularized coordinate has a
    flat direction) and Armijo backtracking. ``method="newton_cg"``: the same Newton step solved inexactly by
    conjugate gradients on Hessian-vector products, preconditioned by Boehning's bound
    ``H <= I kron (X_a X_a^T / 2 + diag(mu))`` (one ``p_a x p_a`` Cholesky per call), forcing term
    ``min(0.1, sqrt(residual))``. ``"auto"`` picks ``newton`` when ``K p_a <= max_dense_dim``.
    Stops when the relative gradient residual is ``<= tol``.
    """
    K = T.shape[0]
    pa = Xa.shape[0]
    _refuse_sharded("w_last", "Newton's method on the cross-entropy W-update")
    if method == "auto":
        method = "newton" if K * pa <= max_dense_dim else "newton_cg"
    ce = _CE(Xa, T, mu, lin)
    history: list[float] = []
    cg_total, max_shift = 0, 0.0
    precond_L = None
    f, S = ce.value(W)
    G, res_t, SX = ce.gradient(W, S)
    res = float(res_t)
    it = 0
    for it in range(max_iter + 1):
        history.append(res)
        if res <= tol or it == max_iter:
            break
        if method == "newton":
            H = ce.hessian(S, chunk_bytes)
            shift = 0.0
            while True:
                L, info = torch.linalg.cholesky_ex(H)
                if int(info) == 0:
                    break
                extra = max(99.0 * shift, 1e-12 * float(H.diagonal().mean()))
                H.diagonal().add_(extra)
                shift += extra
            max_shift = max(max_shift, shift)
            Delta = -_chol_solve(L, G.reshape(-1, 1)).reshape(K, pa)
        else:
            if precond_L is None:
                M = 0.5 * (Xa @ ce.Xt)
                M.diagonal().add_(mu)
                precond_L, info = torch.linalg.cholesky_ex(M)
                if int(info) != 0:
                    M.diagonal().add_(1e-10 * float(M.diagonal().mean()))
                    precond_L = torch.linalg.cholesky(M)
            Delta, k = _pcg(lambda P, S=S: ce.hvp(S, P), lambda R, L=precond_L: _chol_solve(L, R.T).T, G,
                            min(0.1, math.sqrt(res)), 1000)
            cg_total += k
        slope = float((G * Delta).sum())
        if not slope < 0:  # round-off at the optimum: fall back to steepest descent
            Delta, slope = -G, -float((G * G).sum())
        t = 1.0
        for _ in range(60):
            f_new, S_new = ce.value(W + t * Delta)
            if f_new <= f + 1e-4 * t * slope or abs(f_new - f) <= 4 * torch.finfo(W.dtype).eps * abs(f):
                break
            t *= 0.5
        W = W + t * Delta
        f, S = f_new, S_new
        G, res_t, SX = ce.gradient(W, S)
        res = float(res_t)
    out_res = torch.tensor([res], dtype=W.dtype, device=W.device)
    return SolveOutput(W, out_res, gap_bound(G.reshape(1, -1), mu.repeat(K)), it,
                       torch.tensor([it], dtype=torch.int64, device=W.device), history,
                       {"method": method, "cg_iterations": cg_total, "max_shift": max_shift}, _sq(G), _sq(SX),
                       _sq(ce.TX))


# -- majorization-minimization (both W-updates) -----------------------------------------------------------------
def majorizer_cholesky(Xa: torch.Tensor, Xt: torch.Tensor, s: float, mu: torch.Tensor,
                       ridge_rel: float = 1e-12) -> tuple[torch.Tensor, float]:
    r"""Cholesky factor of the curvature bound ``M = s X_a X_a^T + diag(mu) + eps I`` (shape ``(p_a, p_a)``).

    ``eps = 0`` when every ``mu_i > 0`` (``M`` is then positive definite). Where some ``mu_i = 0`` (an
    unregularized bias with ``gamma = 0``, or ``rho = gamma = 0``) and ``X_a`` may be rank deficient (MNIST has
    pixels that are 0 in every sample), ``eps = ridge_rel`` times the mean diagonal of ``M`` (grown by 100x while
    the factorization fails). The ridge enters ``M`` only, never the objective or the residual; a larger ``M``
    is still an upper bound on the Hessian, so the step stays monotone. Returns ``(L, eps)``.
    """
    M = s * all_sum(Xa @ Xt)
    M.diagonal().add_(mu)
    n = M.shape[0]
    scale = float(M.diagonal().mean()) if n else 1.0
    scale = scale if scale > 0 else 1.0
    ridge = 0.0 if bool((mu > 0).all()) else ridge_rel * scale
    M.diagonal().add_(ridge)
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(M)
        if int(info) == 0:
            return L, ridge
        extra = max(99.0 * ridge, 100.0 * ridge_rel * scale)
        M.diagonal().add_(extra)
        ridge += extra
    raise SolverError("the curvature bound s X_a X_a^T + diag(mu) is not positive definite after regularization "
                      "(round-off in huge or badly scaled inputs?); try rho > 0 or gamma > 0, or rescale X_in",
                      status="numerical_error", solver="mm")  # pragma: no cover


def mm_rows(Xa: torch.Tensor, V: torch.Tensor, act: Activation, lam: float, mu: torch.Tensor,
            lin: torch.Tensor, Z: torch.Tensor, *, tol: float, max_iter: int, form: str = "auto",
            settle: float | None = None) -> SolveOutput:
    r"""Majorization-minimization for the rows of the hidden W-update (same problem as :func:`ssn_rows`).

    Row ``r`` minimizes ``f_r(z) = lam sum_j [F*(x_j^T z) - V_rj x_j^T z] + sum_i mu_i z_i^2 / 2 - lin_r^T z``.
    ``(F*)'' = phi' <= s_max = sup phi'`` (:func:`~fenchel_cvx.torch._common.sup_dphi`), so every row's Hessian
    is bounded by the *same* ``M = lam s_max X_a X_a^T + diag(mu)`` and ``f_r`` lies below the quadratic
    ``f_r(z) + g_r^T (y - z) + (y - z)^T M (y - z) / 2``. Its minimizer ``z - M^{-1} g_r`` therefore never
    increases ``f_r``: all rows step at once as ``Z <- Z - G M^{-1}`` with one Cholesky of ``M`` per call
    (:func:`majorizer_cholesky`). Linear convergence at rate ``1 - 1/cond(M^{-1/2} H M^{-1/2})``: fast where
    ``phi'`` is near its supremum, slow for rows with many inactive ReLU samples; a warm start and a few steps
    is the intended use (inexact BCD). Residual, ``gap`` and freezing of converged rows are as in
    :func:`ssn_rows`, so ``tol`` means the same. Cost per step: ``4 r p_a m`` flops (gradient) plus
    ``2 r p_a^2`` (the solve); ``p_a^2 m + p_a^3 / 3`` once.

    ``form="kernel"`` (chosen by ``"auto"`` when there are fewer samples than coordinates, ``m < p_a``, and
    every ``mu_i > 0``) takes the same steps in sample space; see :func:`_mm_rows_kernel`.

    ``settle`` (primal form): also freeze a row once a step has moved fewer than this fraction of its samples
    across the kink at ``u = 0`` (:func:`newton_rows`' pre-steps).
    """
    check_choice(form, "form", ("auto", "primal", "kernel"))
    if form == "kernel" and settle is not None:
        raise ValueRangeError("settle: counts samples crossing the kink in the primal steps; got it with "
                              "form='kernel' (pass form='auto' or 'primal', or leave settle out)")
    if form == "kernel" and is_sharded():
        raise ShardingError("form: the sample-space ('kernel') MM steps couple every pair of samples and do not "
                            "split over processes; use form='auto' or 'primal' in a data-parallel run")
    wide = settle is None and (form == "kernel" or (form == "auto" and Xa.shape[1] < Xa.shape[0]
                                                     and not is_sharded()))
    if wide and bool((mu > 0).all()) and Z.shape[0] and Xa.shape[1]:
        return _mm_rows_kernel(Xa, V, act, lam, mu, lin, Z, tol=tol, max_iter=max_iter)
    r = Z.shape[0]
    Xt = Xa.T.contiguous()
    VX = lam * all_sum(V @ Xt)
    floor = float(VX.norm(dim=1).mean()) if r else 0.0
    L, ridge = majorizer_cholesky(Xa, Xt, lam * sup_dphi(act), mu)
    residual = torch.full((r,), math.inf, dtype=Z.dtype, device=Z.device)
    gap = torch.full_like(residual, math.inf)
    grad_sq, fit_sq = torch.zeros_like(residual), torch.zeros_like(residual)
    row_iters = torch.zeros(r, dtype=torch.int64, device=Z.device)
    active = torch.arange(r, device=Z.device)
    history: list[float] = []
    side = None  # each sample's side of the kink at the last step, when settle is given
    m_all = float(all_sum(Xa.new_tensor(float(Xa.shape[1])))) if settle is not None else 0.0
    for it in range(max_iter + 1):
        Za, la, VXa = Z[active], lin[active], VX[active]
        U = Za @ Xa
        A = lam * all_sum(act.forward(U) @ Xt)
        MZ = mu * Za
        G = A - VXa + MZ - la
        res = relative_residual(G, (A, VXa, MZ, la), floor)
        residual[active] = res
        gap[active] = gap_bound(G, mu)
        grad_sq[active], fit_sq[active] = _sq(G), _sq(A)
        history.append(float(residual.max()))
        keep = ~(res <= tol)
        if settle is not None:  # per row, so that rows stay independent problems
            now = U >= 0
            if side is not None:
                moved = all_sum(torch.ne(now, side[active]).sum(1).to(Z.dtype))
                keep &= ~(moved < settle * m_all)
            else:
                side = torch.empty(r, U.shape[1], dtype=torch.bool, device=Z.device)
            side[active] = now
        if it == max_iter or not bool(keep.any()):
            break
        active, G, Za = active[keep], G[keep], Za[keep]
        row_iters[active] += 1
        Z[active] = Za - _chol_solve(L, G.T).T
    info = {"ridge": ridge, "curvature_bound": lam * sup_dphi(act)}
    return SolveOutput(Z, residual, gap, int(row_iters.max()) if r else 0, row_iters, history, info, grad_sq, fit_sq,
                       _sq(VX))


def _mm_rows_kernel(Xa: torch.Tensor, V: torch.Tensor, act: Activation, lam: float, mu: torch.Tensor,
                    lin: torch.Tensor, Z: torch.Tensor, *, tol: float, max_iter: int) -> SolveOutput:
    r""":func:`mm_rows`'s steps carried out in sample space (``m x m`` instead of ``p_a x p_a``), for ``mu > 0``.

    With ``D = diag(mu)``, ``c = lam s_max`` and ``N = I + c X_a^T D^{-1} X_a`` (``m x m``), Woodbury gives
    ``X_a^T M^{-1} = N^{-1} X_a^T D^{-1}``. Write ``z_b = D^{-1} lin`` (the regularizer's own minimizer) and
    ``E = Z - Z_b``. The gradient is ``G = lam R X_a^T + E D`` with ``R = phi(U) - V``, so the first MM step lands
    on ``Z_1 = Z_b + A_1 X_a^T D^{-1}`` with ``A_1 = (c E X_a - lam R) N^{-1}``; from then on every iterate has
    that form, ``G = (lam R + A) X_a^T`` and the step is ``A <- A - (lam R + A) N^{-1}``, with
    ``U = Z_b X_a + A X_a^T D^{-1} X_a`` tracked in sample space. The ``p_a``-sized products are needed only at
    the start and at the end, where the point, its residual and its gap are computed exactly as in
    :func:`mm_rows`; between them a row stops once its exact gradient norm (``||G_r||^2 = q_r X_a^T X_a q_r^T``,
    ``q_r = lam r_r + a_r``) is below ``tol`` times the last exact scale, and it rejoins if the exact check at
    the end disagrees. Same iterates as the primal form up to round-off. Costs ``p_a m^2 + m^3`` once and
    ``4 r m^2`` flops per step, against ``p_a^2 m + p_a^3/3`` and ``4 r p_a m + 2 r p_a^2``. The ``m x m`` kernel
    couples every pair of samples, so unlike the primal form (whose ``X_a X_a^T`` and gradients are sums over
    samples) it does not split into per-shard work plus a sum: it is for one process's batch, and a
    data-parallel W-update keeps the primal form.
    """
    r, m = Z.shape[0], Xa.shape[1]
    c = lam * sup_dphi(act)
    Xt = Xa.T.contiguous()
    Dinv = 1.0 / mu
    VX = lam * (V @ Xt)
    floor = float(VX.norm(dim=1).mean())
    Kd = (Xt * Dinv) @ Xa  # X_a^T D^{-1} X_a
    Kx = None  # X_a^T X_a, for gradient norms between exact checks: formed only if a second step is taken
    Nm = c * Kd
    Nm.diagonal().add_(1.0)  # eigenvalues >= 1: well conditioned whatever X_a
    Ninv = torch.cholesky_inverse(torch.linalg.cholesky(Nm))
    Zb = lin * Dinv
    U = Z @ Xa
    history: list[float] = []
    row_iters = torch.zeros(r, dtype=torch.int64, device=Z.device)

    fit_sq = None

    def exact(Z: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        nonlocal fit_sq
        A = lam * (act.forward(U) @ Xt)
        MZ = mu * Z
        G = A - VX + MZ - lin
        scale = A.norm(dim=1) + VX.norm(dim=1) + MZ.norm(dim=1) + lin.norm(dim=1)
        fit_sq = _sq(A)
        return G, relative_residual(G, (A, VX, MZ, lin), floor), scale

    G, residual, scale = exact(Z, U)
    history.append(float(residual.max()))
    E = Z - Zb
    Ub = U.clone() if not bool(E.any()) else Zb @ Xa
    EXa = U - Ub
    A = torch.zeros(r, m, dtype=Z.dtype, device=Z.device)
    first = torch.ones(r, dtype=torch.bool, device=Z.device)  # rows still at Z (not yet in Z_b + A X_a^T D^{-1})
    active = residual > tol
    it = 0
    while bool(active.any()) and it < max_iter:
        # sample-space steps until every active row passes the inexpensive test or max_iter is spent
        while bool(active.any()) and it < max_iter:
            idx = active.nonzero().squeeze(1)
            R = act.forward(U[idx]) - V[idx]
            Q = lam * R + torch.where(first[idx, None], -c * EXa[idx], A[idx])
            A[idx] = A[idx] - Q @ Ninv
            first[idx] = False
            row_iters[idx] += 1
            it += 1
            if it == max_iter:
                break  # the exact check below recomputes U from Z
            U[idx] = Ub[idx] + A[idx] @ Kd
            if Kx is None:
                Kx = Kd * mu[0] if bool((mu == mu[0]).all()) else Xt @ Xa
            Qn = lam * (act.forward(U[idx]) - V[idx]) + A[idx]
            gnorm = ((Qn @ Kx) * Qn).sum(1).clamp_min(0.0).sqrt()
            approx = gnorm / scale[idx].clamp_min(max(floor, _TINY))
            history.append(float(approx.max()))
            active[idx[approx <= tol]] = False
        moved = ~first
        Z = torch.where(moved[:, None], Zb + (A @ Xt) * Dinv, Z)  # rows never moved keep Z exactly
        U = Z @ Xa
        G, residual, scale = exact(Z, U)
        history.append(float(residual.max()))
        active = (residual > tol) & (row_iters < max_iter)
        if bool(active.any()) and it < max_iter:
            # continue from the exact point: rows that moved are Z_b + A X_a^T D^{-1}, with U recomputed
            Ub = torch.where(moved[:, None], U - A @ Kd, Ub)
    info = {"ridge": 0.0, "curvature_bound": c, "form": "kernel", "U": U}
    return SolveOutput(Z, residual, gap_bound(G, mu), int(row_iters.max()) if r else 0, row_iters, history, info,
                       _sq(G), fit_sq, _sq(VX))


def ce_mm(Xa: torch.Tensor, T: torch.Tensor, mu: torch.Tensor, lin: torch.Tensor, W: torch.Tensor, *,
          tol: float, max_iter: int) -> SolveOutput:
    r"""Majorization-minimization for ridge multinomial logistic regression (same problem as :func:`ce_newton`).

    Boehning's bound: the Hessian of ``sum_j lse(W x_j)`` is ``sum_j (diag s_j - s_j s_j^T) kron x_j x_j^T
    <= (I - 11^T/K)/2 kron X_a X_a^T <= I kron X_a X_a^T / 2``, so with ``M = X_a X_a^T / 2 + diag(mu)`` (one
    ``p_a x p_a`` Cholesky, :func:`majorizer_cholesky`) the step ``W <- W - G M^{-1}`` minimizes a quadratic
    upper bound and never increases the objective. Same residual as :func:`ce_newton`. Cost per step
    ``4 K p_a m + 2 K p_a^2`` flops.
    """
    K = T.shape[0]
    ce = _CE(Xa, T, mu, lin)
    L, ridge = majorizer_cholesky(Xa, ce.Xt, 0.5, mu)
    history: list[float] = []
    _, S = ce.value(W)
    G, res_t, SX = ce.gradient(W, S)
    res = float(res_t)
    it = 0
    for it in range(max_iter + 1):
        history.append(res)
        if res <= tol or it == max_iter:
            break
        W = W - _chol_solve(L, G.T).T
        _, S = ce.value(W)
        G, res_t, SX = ce.gradient(W, S)
        res = float(res_t)
    out_res = torch.tensor([res], dtype=W.dtype, device=W.device)
    return SolveOutput(W, out_res, gap_bound(G.reshape(1, -1), mu.repeat(K)), it,
                       torch.tensor([it], dtype=torch.int64, device=W.device), history,
                       {"method": "mm", "ridge": ridge}, _sq(G), _sq(SX), _sq(ce.TX))


# -- one step with a running curvature estimate (method="running") ---------------------------------------------
def _direction(G: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, rho: float, gamma: float, W0: Any, b0: Any,
               curvature: Any, relax: float = 1.0, keep_G: bool = True) -> tuple:
    """From the data part ``G = R X_a^T`` (:func:`_data_gradient`, float64, overwritten) the gradient ``G + mu [W, b]
    - 2 gamma [W0, b0]`` and the step ``D = relax G M~^{-1}``, rows ``[w_r; b_r]``, float64; ``keep_G=False`` lets
    ``D`` overwrite ``G`` (returned as ``None``)."""
    p = W.shape[1]
    G[:, :p].add_(W.to(_F64), alpha=2.0 * (rho + gamma))
    if gamma > 0:
        G[:, :p].add_(W0.to(_F64), alpha=-2.0 * gamma)
        if b is not None:
            G[:, p].add_(b.to(_F64) - b0.to(_F64), alpha=2.0 * gamma)
    D = curvature.precondition(G, scale=relax, inplace=not keep_G)
    return (G if keep_G else None), D


def _data_gradient(R: torch.Tensor, X_in: torch.Tensor, bias: bool) -> torch.Tensor:
    """``R X_a^T = [R X_in^T, R 1]`` (float64; the last column only with ``bias``), summed over the processes of a
    data-parallel run in one ``all_reduce``."""
    p = X_in.shape[0]
    G = torch.empty(R.shape[0], p + int(bias), dtype=_F64, device=R.device)
    if R.dtype == _F64:
        torch.mm(R, X_in.T, out=G[:, :p])  # straight into the wide rows: BLAS takes their stride, no copy
    else:  # the product in the inputs' dtype, as every other GEMM of the step
        G[:, :p] = R @ X_in.T
    if bias:
        G[:, p] = R.sum(1)
    return all_sum(G) if is_sharded() else G


def _apply(W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor) -> tuple:
    """``[W, b] - D`` in float64, back in the input dtype."""
    W_new = (W.to(_F64) - D[:, :W.shape[1]]).to(W.dtype).contiguous()
    b_new = None if b is None else (b.to(_F64) - D[:, -1]).to(b.dtype).contiguous()
    return W_new, b_new


def _row_steps(X_in: torch.Tensor, U: torch.Tensor, V: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
               G: torch.Tensor, D: torch.Tensor, act: Activation, lam: float, rho: float, gamma: float, W0: Any,
               b0: Any) -> torch.Tensor:
    """Per row, the ``t`` minimizing ``f_r(z_r - t d_r)`` (eq. 19's row objective), by :func:`_line_search`."""
    p = W.shape[1]
    X64, U64, V64 = X_in.to(_F64), U.to(_F64), V.to(_F64)
    Delta = -D
    dU = Delta[:, :p] @ X64
    if b is not None:
        dU += Delta[:, p:]
    Z = W.to(_F64) if b is None else torch.cat([W.to(_F64), b.to(_F64)[:, None]], 1)
    mu, lin, _ = quadratic(p, W.shape[0], rho, gamma, b is not None, W0, b0, Z)
    q0 = ((mu * Z - lin) * Delta).sum(1)  # the regularizer's slope along Delta at t = 0
    q1 = (mu * Delta * Delta).sum(1)
    return _line_search(U64, dU, V64, act, lam, q0, q1, (G * Delta).sum(1))


def running_hidden_step(X_in: torch.Tensor, X_next: torch.Tensor, U: torch.Tensor, W: torch.Tensor,
                        b: torch.Tensor | None, act: Activation, lam: float, rho: float, gamma: float, W0: Any,
                        b0: Any, curvature: Any, relax: float, line_search: bool) -> tuple:
    r"""One step ``[W, b] <- [W, b] - omega G \tilde M^{-1}`` on eq. (19) from ``U = W X_in + b`` (input dtype).

    ``G = lam (phi(U) - X_next) X_a^T + mu [W, b] - 2 gamma [W0, b0]``: one GEMM; ``curvature.precondition``
    applies ``\tilde M^{-1}``. ``line_search``: per row the exact minimizer along the step (one more GEMM),
    else the step times ``relax``. Returns ``(W_new, b_new)`` in the input dtype.
    """
    R = act.forward(U).sub_(X_next).mul_(lam)  # forward returns a new tensor: U is left alone
    G, D = _direction(_data_gradient(R, X_in, b is not None), W, b, rho, gamma, W0, b0, curvature,
                      relax=1.0 if line_search else relax, keep_G=line_search)
    if line_search:
        D.mul_(_row_steps(X_in, U, X_next, W, b, G, D, act, lam, rho, gamma, W0, b0)[:, None])
    return _apply(W, b, D)


def running_layer_step(layer: Any, X_in: torch.Tensor, X_next: torch.Tensor, U: torch.Tensor, W: torch.Tensor,
                       b: torch.Tensor | None, act: Activation, lam: float, rho: float, gamma: float, W0: Any,
                       b0: Any, curvature: Any, relax: float) -> tuple:
    r""":func:`running_hidden_step` (no line search) for a conv or pooled layer, in the layer's own layout.

    ``X_in`` ``(layer.n_in, m)``, ``X_next`` and ``U = A(X_in; W) + b`` ``(layer.n_out, m)``, ``W`` and ``W0`` as
    ``layer.weight_matrix`` rows. The data part of the gradient, ``arrange(R) patches(X_in)^T`` with its bias
    column, comes from :meth:`~fenchel_cvx.layers.Layer.weight_gradient` without forming the patch matrix (``C_in
    k^2`` times the batch); the step is then the patch form's, up to the order of the sums.
    """
    R = act.forward(U).sub_(X_next).mul_(lam)
    p = W.shape[1]
    G = torch.empty(W.shape[0], p + int(b is not None), dtype=_F64, device=W.device)
    G[:, :p] = layer.weight_gradient(X_in, R)
    if b is not None:
        G[:, p] = R.reshape(W.shape[0], -1).sum(1)
    _, D = _direction(all_sum(G) if is_sharded() else G, W, b, rho, gamma, W0, b0, curvature, relax=relax,
                      keep_G=False)
    return _apply(W, b, D)


_HALVINGS = 30  # backtracking trials of running_last_step's line search (the step shrinks to 1e-9 of its length)


def running_last_step(X_in: torch.Tensor, Y: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, loss: Loss,
                      rho: float, gamma: float, W0: Any, b0: Any, curvature: Any, relax: float,
                      line_search: bool) -> tuple:
    r"""One step ``[W, b] <- [W, b] - omega G \tilde M^{-1}`` on eq. (20), ``Y`` (K, m) targets in the input dtype.

    ``G = h'(W X_in + b) X_a^T + mu [W, b] - 2 gamma [W0, b0]`` (``h' = softmax(.) - Y`` for cross-entropy,
    ``2(. - Y)`` for MSE): two small GEMMs. ``line_search``: halve the step until the objective does not
    increase (at most ``_HALVINGS`` times, then no step), one small GEMM per trial.
    """
    Yhat = torch.addmm(b.reshape(-1, 1), W, X_in) if b is not None else W @ X_in

    def objective(W_: torch.Tensor, b_: torch.Tensor | None, Yhat_: torch.Tensor) -> float:
        b64 = None if b_ is None else b_.to(_F64)
        return all_sum_float(loss.value(Y, Yhat_), Y) + penalty(W_.to(_F64), b64, rho, gamma, W0, b0)

    f0 = objective(W, b, Yhat) if line_search else math.nan
    H = torch.softmax(Yhat, 0).sub_(Y) if isinstance(loss, CrossEntropyLoss) else Yhat.sub_(Y).mul_(2.0)
    _, D = _direction(_data_gradient(H, X_in, b is not None), W, b, rho, gamma, W0, b0, curvature, relax=relax,
                      keep_G=False)
    W_new, b_new = _apply(W, b, D)
    for _ in range(_HALVINGS if line_search else 0):
        Yhat_new = torch.addmm(b_new[:, None], W_new, X_in) if b_new is not None else W_new @ X_in
        if objective(W_new, b_new, Yhat_new) <= f0:
            break
        D.mul_(0.5)
        W_new, b_new = _apply(W, b, D)
    else:
        if line_search:  # no trial step decreased the objective: stay put
            W_new, b_new = W.clone(), None if b is None else b.clone()
    return W_new, b_new
