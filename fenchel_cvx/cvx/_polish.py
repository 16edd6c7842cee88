r"""Newton polishing of a conic solver's answer, the analogue of OSQP's solution polishing.

Why: Clarabel's exponential-cone iterations often stall near a relative gap of 1e-9 and report
``AlmostSolved`` (``optimal_inaccurate``) with first-order residuals up to ~1e-5 on random instances (sigmoid,
tanh, cross-entropy; measured with CVXPY 1.9.3 / Clarabel 0.11.1). A reference must be tighter than the solvers
it referees, so from the solver's point we take a few safeguarded (projected) Newton steps on the smooth
objective and keep the result only if its optimality residual (:mod:`fenchel_cvx.optimality`) went down.

* X-updates, per column ``z`` (all columns batched): ``f(z) = g(W z + b) - <c, z> + lam_prev F_prev(z)`` with
  ``grad = W^T g'(T) + lam_prev (phi_prev^{-1}(z) - u)`` and
  ``Hess = W^T g''(T) W + lam_prev diag(F_prev''(z))``, ``F_prev'' = 1 / phi_prev'(phi_prev^{-1}(z))``.
  Domains: ``z >= 0`` (ReLU) by a projected Newton step with an active set (Bertsekas 1982); ``[0, 1]`` and
  ``[-1, 1]`` (sigmoid, tanh) stay strictly inside (their ``F'`` is infinite at the boundary, so the minimizer
  is interior) with a fraction-to-boundary rule.
* Hidden W-update, per row ``theta = [w; b_r]``: ``Hess = lam X_a diag(phi'(t)) X_a^T + 2 diag(rho + gamma, ...,
  gamma)`` with ``X_a = [X_in; 1^T]``.
* Last W-update: the full ``(p q) x (p q)`` Hessian, blocks ``X_a diag(d^2 L / dYhat_k dYhat_l) X_a^T``.

Each step is accepted by backtracking on the objective with a round-off allowance (near the optimum the
decrease is below the resolution of the objective, and the full Newton step is what we want).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..activations import Activation
from ..losses import CrossEntropyLoss, Loss, MSELoss

__all__ = ["can_polish_loss", "loss_hessian", "polish_w_full", "polish_w_rows", "polish_x"]

_ARMIJO = 1e-4
_ROUNDOFF = 1e-13
_MAX_HALVINGS = 30


def can_polish_loss(loss: Loss) -> bool:
    """Whether we know the loss's Hessian (MSE, cross-entropy)."""
    return isinstance(loss, (MSELoss, CrossEntropyLoss))


def loss_hessian(loss: Loss, Yhat: np.ndarray) -> tuple[str, np.ndarray]:
    """``d^2 L / dYhat^2`` per column: ``("diag", (p, m))`` for MSE, ``("full", (m, p, p))`` for cross-entropy."""
    if isinstance(loss, MSELoss):
        return "diag", np.full(Yhat.shape, 2.0)
    S = np.exp(Yhat - Yhat.max(axis=0))
    S /= S.sum(axis=0)
    St = S.T
    return "full", np.einsum("mk,kl->mkl", St, np.eye(Yhat.shape[0])) - St[:, :, None] * St[:, None, :]


def _converged(r: float, r_prev: float, tol: float, steps: int) -> bool:
    """Stop at the target, or once Newton stops gaining (round-off floor, or a far-away infimum)."""
    return r <= tol or (steps >= 3 and r > 0.5 * r_prev)


def _solve_batched(H: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Solve ``H[i] d[i] = -g[i]``, falling back to least squares where a Hessian is singular."""
    try:
        return -np.linalg.solve(H, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return -np.stack([np.linalg.lstsq(Hi, gi, rcond=None)[0] for Hi, gi in zip(H, g, strict=True)])


def _inv_dF(act: Activation, Z: np.ndarray) -> np.ndarray:
    """F''(z) = 1 / phi'(phi^{-1}(z)) on the interior of the domain."""
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return 1.0 / act.derivative(act.inverse(Z))


def polish_x(Z: np.ndarray, W: np.ndarray, b: np.ndarray | None, U_prev: np.ndarray, *,
             act_prev: Activation, lam_prev: float,
             grad_hess_T: Callable[[np.ndarray], tuple[np.ndarray, tuple[str, np.ndarray]]],
             col_objective: Callable[[np.ndarray], np.ndarray],
             residual: Callable[[np.ndarray], float], max_iter: int = 30, tol: float = 1e-12
             ) -> tuple[np.ndarray, dict[str, Any]]:
    """Polish an X-update's ``Z`` (p_in, m) column by column.

    Parameters
    ----------
    grad_hess_T : callable
        ``T -> (G, (kind, H))``: gradient ``(p_out, m)`` of the smooth part with respect to the
        pre-activation ``T = W Z + b`` (the linear data term included) and its Hessian per column,
        ``("diag", (p_out, m))`` or ``("full", (m, p_out, p_out))``.
    col_objective : callable
        ``Z -> (m,)`` objective of each column (for the line search).
    residual : callable
        ``Z -> relative residual`` of the whole block; decides whether the polished point is kept.
    """
    lo, hi = act_prev.domain
    boxed = np.isfinite(lo) and np.isfinite(hi)
    lower_only = np.isfinite(lo) and not np.isfinite(hi)
    r0 = residual(Z)
    if not r0 > tol:
        return Z, {"residual_before": r0, "residual_after": r0, "steps": 0, "accepted": False}
    Zk = Z.copy()
    if boxed:  # F' is infinite on the boundary: start strictly inside
        width = hi - lo
        Zk = np.clip(Zk, lo + 1e-12 * width, hi - 1e-12 * width)
    U_prev = np.asarray(U_prev)
    m = Z.shape[1]
    steps, r_prev = 0, r0
    for _ in range(max_iter):
        T = W @ Zk if b is None else W @ Zk + b[:, None]
        G, (kind, HT) = grad_hess_T(T)
        grad = W.T @ G + lam_prev * (act_prev.inverse(Zk) - U_prev)
        # W^T H_j W for every column j as batched GEMMs (a three-operand einsum would not use BLAS)
        H = (W.T[None, :, :] * HT.T[:, None, :]) @ W if kind == "diag" else W.T[None, :, :] @ HT @ W
        d2 = lam_prev * _inv_dF(act_prev, Zk)  # (p_in, m)
        idx = np.arange(Zk.shape[0])
        H[:, idx, idx] += d2.T
        g = grad.T.copy()  # (m, p_in)
        active = None
        if lower_only:
            # Bertsekas' projected Newton: coordinates at the bound with a positive gradient stay there.
            eps = min(1e-8, float(np.linalg.norm(Zk - np.maximum(Zk - grad, lo))))
            active = ((Zk <= lo + eps) & (grad > 0)).T
            g[active] = 0.0
            mi, ii = np.nonzero(active)
            H[mi, ii, :] = 0.0
            H[mi, :, ii] = 0.0
            H[mi, ii, ii] = 1.0
        D = _solve_batched(H, g).T  # (p_in, m)
        if active is not None:
            D[active.T] = lo - Zk[active.T]
        smax = np.ones(m)
        if boxed:
            with np.errstate(divide="ignore", invalid="ignore"):
                to_lo = np.where(D < 0, (lo - Zk) / D, np.inf)
                to_hi = np.where(D > 0, (hi - Zk) / D, np.inf)
            smax = np.minimum(1.0, 0.99 * np.minimum(to_lo.min(axis=0), to_hi.min(axis=0)))
        f0 = col_objective(Zk)
        slope = np.einsum("im,im->m", grad, D)
        s = smax.copy()
        done = np.zeros(m, dtype=bool)
        Znew = Zk.copy()
        for _ in range(_MAX_HALVINGS):
            trial = Zk + s * D
            if lower_only:
                trial = np.maximum(trial, lo)
            f1 = col_objective(trial)
            ok = (~done) & (f1 <= f0 + _ARMIJO * s * np.minimum(slope, 0.0) + _ROUNDOFF * (1.0 + np.abs(f0)))
            Znew[:, ok] = trial[:, ok]
            done |= ok
            if done.all():
                break
            s = np.where(done, s, 0.5 * s)
        Zk = Znew
        steps += 1
        r = residual(Zk)
        if _converged(r, r_prev, tol, steps):
            break
        r_prev = r
    r1 = residual(Zk)
    if r1 < r0:
        return Zk, {"residual_before": r0, "residual_after": r1, "steps": steps, "accepted": True}
    return Z, {"residual_before": r0, "residual_after": r0, "steps": steps, "accepted": False}


def _penalty_diag(q: int, rho: float, gamma: float, bias: bool) -> np.ndarray:
    diag = np.full(q, 2.0 * (rho + gamma))
    if bias:
        diag[-1] = 2.0 * gamma
    return diag


def polish_w_rows(W: np.ndarray, b: np.ndarray | None, X_in: np.ndarray, *, grad_hess_T: Callable,
                  row_objective: Callable[[np.ndarray, np.ndarray | None], np.ndarray], rho: float, gamma: float,
                  W0: np.ndarray | None, b0: np.ndarray | None, residual: Callable[[np.ndarray, Any], float],
                  max_iter: int = 30, tol: float = 1e-12) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Polish the hidden W-update row by row (rows are independent).

    ``grad_hess_T(T) -> (G, h)``: gradient and diagonal Hessian ``(p_out, m)`` of the smooth part with respect
    to ``T = W X_in + b 1^T``; ``row_objective(W, b) -> (p_out,)``.
    """
    r0 = residual(W, b)
    if not r0 > tol:
        return W, b, {"residual_before": r0, "residual_after": r0, "steps": 0, "accepted": False}
    bias = b is not None
    Xa = np.vstack([X_in, np.ones((1, X_in.shape[1]))]) if bias else X_in
    theta = np.hstack([W, b[:, None]]) if bias else W.copy()
    theta0 = None
    if gamma > 0:
        theta0 = np.hstack([W0, b0[:, None]]) if bias else W0
    q = theta.shape[1]
    pen = _penalty_diag(q, rho, gamma, bias)
    p_out = theta.shape[0]

    def split(th: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return (th[:, :-1], th[:, -1]) if bias else (th, None)

    steps, r_prev = 0, r0
    for _ in range(max_iter):
        G, h = grad_hess_T(theta @ Xa)
        grad = G @ Xa.T + 2.0 * rho * theta
        if bias:
            grad[:, -1] -= 2.0 * rho * theta[:, -1]
        if gamma > 0:
            grad += 2.0 * gamma * (theta - theta0)
        H = np.stack([(Xa * hr) @ Xa.T for hr in h])  # one GEMM per row: q x m x q
        H[:, np.arange(q), np.arange(q)] += pen
        H[:, np.arange(q), np.arange(q)] += 1e-14 * np.abs(H).max(axis=(1, 2))[:, None]
        D = _solve_batched(H, grad)
        f0 = row_objective(*split(theta))
        slope = np.einsum("ri,ri->r", grad, D)
        s = np.ones(p_out)
        done = np.zeros(p_out, dtype=bool)
        new = theta.copy()
        for _ in range(_MAX_HALVINGS):
            trial = theta + s[:, None] * D
            f1 = row_objective(*split(trial))
            ok = (~done) & (f1 <= f0 + _ARMIJO * s * np.minimum(slope, 0.0) + _ROUNDOFF * (1.0 + np.abs(f0)))
            new[ok] = trial[ok]
            done |= ok
            if done.all():
                break
            s = np.where(done, s, 0.5 * s)
        theta = new
        steps += 1
        r = residual(*split(theta))
        if _converged(r, r_prev, tol, steps):
            break
        r_prev = r
    W1, b1 = split(theta)
    r1 = residual(W1, b1)
    if r1 < r0:
        return W1, b1, {"residual_before": r0, "residual_after": r1, "steps": steps, "accepted": True}
    return W, b, {"residual_before": r0, "residual_after": r0, "steps": steps, "accepted": False}


def polish_w_full(W: np.ndarray, b: np.ndarray | None, X_in: np.ndarray, Y: np.ndarray, *, loss: Loss, rho: float,
                  gamma: float, W0: np.ndarray | None, b0: np.ndarray | None,
                  objective: Callable[[np.ndarray, np.ndarray | None], float],
                  residual: Callable[[np.ndarray, Any], float], max_iter: int = 30, tol: float = 1e-12
                  ) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """Polish the last-layer W-update with the full Hessian (cross-entropy couples the rows)."""
    r0 = residual(W, b)
    if not r0 > tol:
        return W, b, {"residual_before": r0, "residual_after": r0, "steps": 0, "accepted": False}
    bias = b is not None
    Xa = np.vstack([X_in, np.ones((1, X_in.shape[1]))]) if bias else X_in
    theta = np.hstack([W, b[:, None]]) if bias else W.copy()
    theta0 = (np.hstack([W0, b0[:, None]]) if bias else W0) if gamma > 0 else None
    p, q = theta.shape
    pen = np.tile(_penalty_diag(q, rho, gamma, bias), p)

    def split(th: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        return (th[:, :-1], th[:, -1]) if bias else (th, None)

    steps, r_prev = 0, r0
    for _ in range(max_iter):
        Yhat = theta @ Xa
        grad = loss.grad(Y, Yhat) @ Xa.T + 2.0 * rho * theta
        if bias:
            grad[:, -1] -= 2.0 * rho * theta[:, -1]
        if gamma > 0:
            grad += 2.0 * gamma * (theta - theta0)
        kind, HY = loss_hessian(loss, Yhat)
        H = np.zeros((p, q, p, q))
        if kind == "diag":
            for k in range(p):
                H[k, :, k, :] = (Xa * HY[k]) @ Xa.T
        else:
            for k in range(p):
                for l in range(k, p):
                    blk = (Xa * HY[:, k, l]) @ Xa.T
                    H[k, :, l, :] = blk
                    H[l, :, k, :] = blk.T
        H = H.reshape(p * q, p * q)
        H[np.diag_indices_from(H)] += pen + 1e-14 * np.abs(H).max()
        g = grad.reshape(-1)
        try:
            D = -np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            D = -np.linalg.lstsq(H, g, rcond=None)[0]
        D = D.reshape(p, q)
        f0 = objective(*split(theta))
        slope = float(np.sum(grad * D))
        s = 1.0
        for _ in range(_MAX_HALVINGS):
            trial = theta + s * D
            if objective(*split(trial)) <= f0 + _ARMIJO * s * min(slope, 0.0) + _ROUNDOFF * (1.0 + abs(f0)):
                theta = trial
                break
            s *= 0.5
        steps += 1
        r = residual(*split(theta))
        if _converged(r, r_prev, tol, steps):
            break
        r_prev = r
    W1, b1 = split(theta)
    r1 = residual(W1, b1)
    if r1 < r0:
        return W1, b1, {"residual_before": r0, "residual_after": r1, "steps": steps, "accepted": True}
    return W, b, {"residual_before": r0, "residual_after": r0, "steps": steps, "accepted": False}
