r"""Perspective formulation of the branch-and-bound for one output (``p = 1``); section 4.2 of the docs.

Write unit ``k`` with its output weight ``v_k = sigma_k |v_k|`` and scale everything by ``|v_k|``:

.. math::  \hat w_k = |v_k| w_k,\quad \hat c_k = |v_k| c_k,\quad \hat Z_k = |v_k| X_k \ge 0,\quad
           s_k = v_k^2,\quad \hat a_{kj} = \hat w_k^T x_j + \hat c_k = |v_k| a_{kj}.

Then the output is ``sum_k sigma_k Zhat_k`` (linear), ``rho ||w_k||^2 = rho ||what_k||^2 / s_k`` (convex
quad-over-lin), and, because ``B`` is 2-homogeneous,

.. math::  B(X_{kj}, a_{kj}) = \tfrac12 (\hat Z_{kj} - \hat a_{kj})^2 / s_k \;+\; f(\hat a_{kj}, s_k),\qquad
           f(\hat a, s) = -\tfrac12\,\mathrm{relu}(-\hat a)^2 / s ,

a convex quad-over-lin plus ``f``, which is jointly *concave* on ``s > 0``. So for a fixed sign pattern
``sigma`` the problem is convex except for ``f``, which the relaxation replaces by affine minorants over the
node's box of ``(a_hat, s)``; they become exact as the box shrinks. There is no bilinear term left. The
branched coordinates are ``(What (h, n) row-major, chat (h), s (h))``; the sign pattern is the node's tag.

Sorting the units by ``v_k`` (WLOG) makes the sign pattern ``(-1, ..., -1, +1, ..., +1)``: ``h + 1`` root
nodes, and inside a sign group the order is ``s`` descending (negative group) or ascending (positive group).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from ._bb_boxes import LOOSEN, TINY, NodeData, down, interval_dot, minsq, pairwise_distances, up
from ._bb_conic import ConicRelaxation
from ._bb_direct import _pairs
from ._bb_problem import Point, Problem

__all__ = ["PerspectiveFormulation", "PerspectiveRelaxation", "derive_persp"]

N_PLANES = 4   # affine minorants of f per (unit, sample), one per triangle of the rectangle's corners
_S_RATIO = 1e-6  # below sL / sU = this, corner planes are skipped (they would be huge); the D-plane remains


def _split(prob: Problem, phi: np.ndarray):
    h, n = prob.hidden, prob.n
    return phi[:h * n].reshape(h, n), phi[h * n:h * n + h], phi[h * n + h:]


def _ordered_pairs(X0: np.ndarray, k: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Ordered sample pairs (j, j') for the convexity cuts: all, or each sample with its k nearest."""
    m = X0.shape[1]
    if k is None or k >= m - 1:
        return np.nonzero(~np.eye(m, dtype=bool))
    D = pairwise_distances(X0)
    pairs = set()
    for j in range(m):
        for jj in np.argsort(D[j])[1:k + 1]:
            pairs.add((j, int(jj)))
            pairs.add((int(jj), j))
    Ia, Ja = map(np.array, zip(*sorted(pairs), strict=True))
    return Ia, Ja


def sample_diameters(X0: np.ndarray) -> np.ndarray:
    """``D_j = max_j' ||x_j - x_j'||``, rounded up (used by the D-plane)."""
    D = pairwise_distances(X0).max(axis=1)
    return up(D * (1.0 + 1e-12))


def f_concave(a: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``f(a, s) = -relu(-a)^2 / (2 s)`` (``0`` where ``a >= 0``)."""
    neg = np.maximum(-a, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(neg > 0, -0.5 * neg * neg / s, 0.0)


def envelope_planes(aL, aU, sL, sU, Dsq):
    r"""Affine minorants ``alpha a + gamma s + delta <= f(a, s)`` on the box ``[aL, aU] x [sL, sU]``.

    ``f`` is concave, so an affine function below ``f`` at the four corners is below ``f`` on the whole box
    (every point is a convex combination of corners). Each of the four triangles of corners gives a plane;
    it is shifted down until it is below all four corner values, then loosened for rounding. Where ``aL >= 0``
    the planes are exactly zero (``f = 0``); where ``sL`` is (near) zero they are replaced by the D-plane
    ``f >= -Dsq s / 2`` (``Dsq``: squared sample diameters, broadcast to the box shape).

    Returns arrays ``alpha, gamma, delta`` of shape ``(N_PLANES,) + aL.shape``.
    """
    shape = aL.shape
    alpha = np.zeros((N_PLANES,) + shape)
    gamma = np.zeros((N_PLANES,) + shape)
    delta = np.zeros((N_PLANES,) + shape)
    active = aL >= 0
    small = sL <= _S_RATIO * np.maximum(sU, TINY)
    corners_a = [aL, aL, aU, aU]
    corners_s = [sL, sU, sL, sU]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        F = [f_concave(a, np.where(small, 1.0, s)) for a, s in zip(corners_a, corners_s, strict=True)]
        wa = aU - aL
        ws = sU - sL
        ok_a = wa > 1e-12 * np.maximum(np.maximum(np.abs(aL), np.abs(aU)), 1e-300)
        ok_s = ws > 1e-12 * np.maximum(sU, 1e-300)
        # corner indices: 0 = (aL, sL), 1 = (aL, sU), 2 = (aU, sL), 3 = (aU, sU)
        tris = [(0, 1, 2), (1, 2, 3), (0, 1, 3), (0, 2, 3)]
        for t, (i, _j, _k) in enumerate(tris):
            # plane through three corners of a rectangle: slopes along a at fixed s and along s at fixed a.
            if t == 0:    # 0, 2 share sL; 0, 1 share aL
                ga, gs = (F[2] - F[0]), (F[1] - F[0])
            elif t == 1:  # 1, 3 share sU; 2, 3 share aU
                ga, gs = (F[3] - F[1]), (F[3] - F[2])
            elif t == 2:  # 1, 3 share sU; 0, 1 share aL
                ga, gs = (F[3] - F[1]), (F[1] - F[0])
            else:         # 0, 2 share sL; 2, 3 share aU
                ga, gs = (F[2] - F[0]), (F[3] - F[2])
            al = np.where(ok_a, ga / np.where(ok_a, wa, 1.0), 0.0)
            gm = np.where(ok_s, gs / np.where(ok_s, ws, 1.0), 0.0)
            de = F[i] - al * corners_a[i] - gm * corners_s[i]
            # shift below every corner value (valid by concavity), then loosen for rounding.
            over = np.max([al * ca + gm * cs + de - Fc
                           for ca, cs, Fc in zip(corners_a, corners_s, F, strict=True)], axis=0)
            de = de - np.maximum(over, 0.0)
            scale = (np.abs(al) * np.maximum(np.abs(aL), np.abs(aU)) + np.abs(gm) * np.abs(sU) + np.abs(de)
                     + np.max(np.abs(F), axis=0))
            de = de - 4 * LOOSEN * scale - TINY
            alpha[t], gamma[t], delta[t] = al, gm, de
    # Where corner planes are unusable (sL ~ 0, or overflow), repeat the D-plane f >= -D_j^2 s / 2 instead.
    bad = (small | ~np.isfinite(alpha).all(axis=0) | ~np.isfinite(gamma).all(axis=0)
           | ~np.isfinite(delta).all(axis=0)) & ~active
    alpha[:, bad] = 0.0
    gamma[:, bad] = np.broadcast_to(-0.5 * Dsq, shape)[bad]
    delta[:, bad] = -TINY
    # The feasible part of the box is the polygon {ahat >= -D_j s} (N5: relu(-ahat) <= s D_j); where it has a
    # usable vertex set, the lower hull of f over its vertices replaces the rectangle planes (never weaker there).
    pa, pg, pd, ok = polygon_planes(aL, aU, sL, sU, np.sqrt(np.broadcast_to(Dsq, shape)) * (1.0 + 1e-9))
    ok &= ~active
    alpha[:, ok], gamma[:, ok], delta[:, ok] = pa[:, ok], pg[:, ok], pd[:, ok]
    alpha[:, active] = 0.0
    gamma[:, active] = 0.0
    delta[:, active] = 0.0
    return alpha, gamma, delta


def polygon_planes(aL, aU, sL, sU, Dl):
    r"""Affine minorants of ``f`` on the polygon ``{aL <= a <= aU, sL <= s <= sU, a >= -Dl s}`` (docs, P4'').

    Every lifted point lies in it (``relu(-ahat) <= s D_j`` by N5, and ``Dl >= D_j``). ``f`` is concave there and
    bounded (``|f| <= D_j^2 s / 2``; at ``s = 0`` only ``a >= 0``, where ``f = 0``), so an affine function below
    ``f`` at the polygon's vertices is below it on the polygon. Candidate vertices: the four corners (kept where
    ``a + Dl s >= 0``) and the four crossings of the line ``a = -Dl s`` with the edges. For every triple of
    candidates the plane through it is shifted down below ``f`` at all candidates, then loosened for rounding;
    the ``N_PLANES`` with the least shift are kept (the facets of the lower hull need none: with at most five
    vertices there are at most three, so the kept planes contain the convex envelope of ``f`` on the polygon).
    Returns ``alpha, gamma, delta`` and a mask of the entries where at least three vertices were found.
    """
    shape = aL.shape
    aL, aU, sL, sU, Dl = (np.asarray(v, dtype=float).ravel() for v in np.broadcast_arrays(aL, aU, sL, sU, Dl))
    K = aL.size
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        Dp = np.where(Dl > 0, Dl, np.inf)
        ca = [aL, aL, aU, aU, -Dl * sL, -Dl * sU, aL, aU]
        cs = [sL, sU, sL, sU, sL, sU, -aL / Dp, -aU / Dp]
        CA, CS = np.array(ca), np.array(cs)                 # (8, K)
        # Tolerant membership, then clipping into the box: a true vertex must never be lost to rounding (that
        # would lose a triangle of the polygon); a kept point slightly outside the polygon is harmless, since f
        # is concave on all of {s > 0} and on its closure {s = 0, a >= 0} (where f = 0).
        ta = 1e-12 * (np.abs(aL) + np.abs(aU) + Dl * sU) + TINY
        ts = 1e-12 * (np.abs(sL) + np.abs(sU)) + TINY
        inside = ((aL - ta <= CA) & (aU + ta >= CA) & (sL - ts <= CS) & (sU + ts >= CS)
                  & (CA + Dl * CS >= -1e-12 * (np.abs(CA) + Dl * np.abs(CS))) & np.isfinite(CA) & np.isfinite(CS))
        CA = np.where(inside, np.clip(CA, aL, aU), 0.0)
        CS = np.where(inside, np.clip(CS, sL, sU), 0.0)
        inside &= (CS > 0) | (CA >= 0)
        neg = np.maximum(-CA, 0.0)
        F = np.where(inside & (neg > 0), -0.5 * neg * neg / np.where(CS > 0, CS, 1.0), 0.0)
        cand = []
        for i in range(8):
            for j in range(i + 1, 8):
                for k in range(j + 1, 8):
                    use = inside[i] & inside[j] & inside[k]
                    # plane F = al a + gm s + de through the three points
                    M = np.stack([np.stack([CA[t], CS[t], np.ones(K)], axis=-1) for t in (i, j, k)], axis=1)
                    det = np.linalg.det(M)
                    scale_m = (np.abs(CA[[i, j, k]]).max(axis=0) + 1.0) * (np.abs(CS[[i, j, k]]).max(axis=0) + 1e-300)
                    use &= np.abs(det) > 1e-9 * scale_m * np.maximum(np.abs(CA[[i, j, k]]).max(axis=0), 1e-300)
                    rhs = np.stack([F[i], F[j], F[k]], axis=-1)
                    Msafe = np.where(use[:, None, None], M, np.eye(3)[None])
                    sol = np.linalg.solve(Msafe, np.where(use[:, None], rhs, 0.0)[..., None])[..., 0]
                    al, gm, de = sol[:, 0], sol[:, 1], sol[:, 2]
                    over = np.max(np.where(inside, al * CA + gm * CS + de - F, -np.inf), axis=0)
                    use &= np.isfinite(al) & np.isfinite(gm) & np.isfinite(de) & np.isfinite(over)
                    de = de - np.maximum(over, 0.0)
                    sc = (np.abs(al) * np.maximum(np.abs(aL), np.abs(aU)) + np.abs(gm) * np.abs(sU) + np.abs(de)
                          + np.max(np.where(inside, np.abs(F), 0.0), axis=0))
                    de = de - 4 * LOOSEN * sc - TINY
                    cand.append((np.where(use, np.maximum(over, 0.0), np.inf), al, gm, de))
    shift = np.array([c[0] for c in cand])                    # (T, K)
    order = np.argsort(shift, axis=0, kind="stable")[:N_PLANES]
    take = lambda q: np.take_along_axis(np.array([c[q] for c in cand]), order, axis=0)  # noqa: E731
    al, gm, de = take(1), take(2), take(3)
    ok = (inside.sum(axis=0) >= 3) & np.all(np.isfinite(np.take_along_axis(shift, order, axis=0)), axis=0)
    al, gm, de = (np.where(ok[None], v, 0.0) for v in (al, gm, de))
    out = (v.reshape((N_PLANES,) + shape) for v in (al, gm, de))
    return (*out, ok.reshape(shape))


def root_box_persp(prob: Problem, U: float) -> tuple[np.ndarray, np.ndarray]:
    """``|what| <= s <= U/(2 rho)``; ``chat`` left free (bounded by :func:`derive_persp`)."""
    h, n = prob.hidden, prob.n
    Vb = float(up(U / (2.0 * prob.rho)))
    lo = np.concatenate([np.full(h * n, -Vb), np.full(h, -np.inf), np.zeros(h)])
    hi = np.concatenate([np.full(h * n, Vb), np.full(h, np.inf), np.full(h, Vb)])
    return lo, hi


def derive_persp(prob: Problem, lo: np.ndarray, hi: np.ndarray, tag: tuple, U: float,
                 D: np.ndarray) -> NodeData | None:
    """Tighten a perspective box and derive all relaxation boxes and plane coefficients.

    Returns ``None`` when the node provably holds no normalized point with ``J <= U``.
    """
    lam, rho, X0, Y = prob.lam, prob.rho, prob.X0, prob.Y
    h, m = prob.hidden, prob.m
    lo, hi = lo.copy(), hi.copy()
    WL, cL, sL = _split(prob, lo)
    WU, cU, sU = _split(prob, hi)
    sigma, act = tag
    g = int(sum(1 for x in sigma if x < 0))
    Vb = float(up(U / (2.0 * rho)))
    for _ in range(3):
        # budget sum_k s_k <= U / (2 rho)
        rest = Vb - (sL.sum() - sL)
        if np.any(rest < 0):
            return None
        sU[:] = np.minimum(sU, up(rest))
        # symmetry: s descending inside the negative group, ascending inside the positive group
        for k in range(g - 2, -1, -1):
            sL[k] = max(sL[k], sL[k + 1])
        for k in range(1, g):
            sU[k] = min(sU[k], sU[k - 1])
        for k in range(h - 2, g - 1, -1):
            sU[k] = min(sU[k], sU[k + 1])
        for k in range(g + 1, h):
            sL[k] = max(sL[k], sL[k - 1])
        # ||what_k|| <= s_k (balance: ||w_k|| <= |v_k|)
        mw = minsq(WL, WU)
        rest = sU[:, None] ** 2 - (mw.sum(axis=1, keepdims=True) - mw)
        if np.any(rest < 0):
            return None
        cap = up(np.sqrt(rest))
        WL[:] = np.maximum(WL, -cap)
        WU[:] = np.minimum(WU, cap)
        sL[:] = np.maximum(sL, down(np.sqrt(minsq(WL, WU).sum(axis=1))))
        betaU = np.maximum(np.minimum(up(rho / lam * sU), up(U / (2.0 * lam))), 0.0)
        # bias WLOG (scaled by |v|): chat >= -max_j what x_j; chat <= |v| sqrt(2 max B) - min_j what x_j
        dL, dU = interval_dot(WL, WU, X0)
        cL[:] = np.maximum(cL, down(-dU.max(axis=1)))
        cU[:] = np.minimum(cU, up(np.sqrt(sU) * np.sqrt(2.0 * betaU) - dL.min(axis=1)))
        # fixed activation signs: ahat_kj >= 0 gives chat >= -what x_j, ahat_kj <= 0 gives chat <= -what x_j
        cL[:] = np.maximum(cL, np.max(np.where(act > 0, down(-dU), -np.inf), axis=1))
        cU[:] = np.minimum(cU, np.min(np.where(act < 0, up(-dL), np.inf), axis=1))
        if np.any(lo > hi):
            return None
    dL, dU = interval_dot(WL, WU, X0)
    aL, aU = down(dL + cL[:, None]), up(dU + cU[:, None])
    aL = np.where(act > 0, np.maximum(aL, 0.0), aL)
    aU = np.where(act < 0, np.minimum(aU, 0.0), aU)
    if np.any(aL > aU):
        return None
    dev = up(np.sqrt(sU) * np.sqrt(2.0 * betaU))[:, None]
    ZL = np.maximum(down(np.maximum(aL, 0.0) - dev), 0.0)
    ZU = up(np.maximum(aU, 0.0) + dev)
    sig = np.asarray(sigma, dtype=float)[:, None]
    cLo = np.where(sig > 0, ZL, -ZU)
    cHi = np.where(sig > 0, ZU, -ZL)
    b1L = down(Y[0].min() - cHi.max(axis=1).sum())
    b1U = up(Y[0].max() - cLo.min(axis=1).sum())
    Sl = np.repeat(sL[:, None], m, axis=1)
    Su = np.repeat(sU[:, None], m, axis=1)
    alpha, gamma, delta = envelope_planes(aL, aU, Sl, Su, D[None, :] ** 2)
    boxes = dict(
        What=(WL.copy(), WU.copy()), chat=(cL.copy(), cU.copy()), s=(sL.copy(), sU.copy()),
        Z=(ZL, ZU), b1=(np.atleast_1d(b1L), np.atleast_1d(b1U)),
        qw=(np.zeros(h), sU.copy()),
        qz=(np.zeros((h, m)), up(2.0 * betaU[:, None] + sU[:, None] * (D[None, :] ** 2))),
        beta=(np.zeros((h, m)), np.repeat(betaU[:, None], m, axis=1)),
        t=(np.zeros(1), np.full(1, float(up(U)))),
        G=(np.zeros((h, m)), np.repeat(up(np.sqrt(2.0 * sU * betaU))[:, None], m, axis=1)),
        L=(np.zeros(h), sU.copy()),
        **{f"g{i}": (np.repeat(np.minimum(WL[:, i], 0.0)[:, None], m, axis=1),
                     np.repeat(np.maximum(WU[:, i], 0.0)[:, None], m, axis=1)) for i in range(prob.n)},
        theta=(np.where(act > 0, 1.0, 0.0) * 1.0, np.where(act < 0, 0.0, 1.0)),
        # qzz = X^2 with X <= relu(a) + sqrt(2B) and a_j <= min_j' a_j' + ||w|| D_j <= sqrt(2 betaU) + sqrt(s) D_j
        qzz=(np.zeros((h, m)), up((2.0 * np.sqrt(2.0 * betaU)[:, None] + np.sqrt(sU)[:, None] * D[None, :]) ** 2)),
    )
    e = np.zeros(max(h - 1, 1))
    for k in range(h - 1):
        if k + 1 < g:
            e[k] = -1.0   # s_k >= s_{k+1}
        elif k >= g:
            e[k] = 1.0    # s_k <= s_{k+1}
    # secant of relu over [aL, aU] (an over-estimator), loosened upward
    pos_aU, pos_aL = np.maximum(aU, 0.0), np.maximum(aL, 0.0)
    wide = (aU - aL) > 1e-12 * np.maximum(np.abs(aU), 1.0)
    slope = np.where(wide, (pos_aU - pos_aL) / np.where(wide, aU - aL, 1.0), 0.0)
    icpt = np.where(wide, pos_aL - slope * aL, pos_aU)
    icpt = icpt + LOOSEN * (np.abs(icpt) + np.abs(slope) * np.maximum(np.abs(aL), np.abs(aU)) + pos_aU) + TINY
    coef = dict(sigma=np.asarray(sigma, dtype=float), sym=e, Vb=Vb, ell_slope=slope, ell_icpt=icpt,
                act=act.astype(float), inact=(act < 0).astype(float), aL=aL, aU=aU,
                aLp=np.minimum(aL, 0.0), aUp=np.maximum(aU, 0.0))
    for i in range(N_PLANES):
        coef[f"alpha{i}"], coef[f"gamma{i}"], coef[f"delta{i}"] = alpha[i], gamma[i], delta[i]
    for bl, bu in boxes.values():
        if np.any(bl > bu):
            return None
    return NodeData(lo, hi, (tuple(sigma), act), boxes, coef)


class PerspectiveRelaxation(ConicRelaxation):
    """Relaxation P1-P11 of docs/certified_bound.md, section 4.2 (``p = 1``), compiled once."""

    def __init__(self, prob: Problem, *, tol: float = 1e-7, max_iter: int = 200, variation_cuts: bool = True,
                 max_pairs_per_point: int | None = None, convexity_cuts: bool = True):
        if max_pairs_per_point is None and prob.m > 40:  # O(m^2) cuts: keep the nearest neighbours
            max_pairs_per_point = 10
        if prob.p != 1:  # pragma: no cover - guarded by the caller
            raise ValueError("the perspective formulation needs a single output")
        self.prob = prob
        self.tol, self.max_iter = tol, max_iter
        h, n, m = prob.hidden, prob.n, prob.m
        lam, rho, X0, y = prob.lam, prob.rho, prob.X0, prob.Y[0]
        self.D = sample_diameters(X0)
        V = dict(What=cp.Variable((h, n)), chat=cp.Variable(h), s=cp.Variable(h), Z=cp.Variable((h, m)),
                 b1=cp.Variable(1), qw=cp.Variable(h), qz=cp.Variable((h, m)), beta=cp.Variable((h, m)),
                 t=cp.Variable(1), G=cp.Variable((h, m)), L=cp.Variable(h), qzz=cp.Variable((h, m)))
        n_ = prob.n
        for i in range(n_ if convexity_cuts else 0):
            V[f"g{i}"] = cp.Variable((h, m))   # i-th component of a subgradient of relu(ahat_k(x)) at x_j
        if convexity_cuts:
            V["theta"] = cp.Variable((h, m))   # activity in [0, 1]: g_kj = theta_kj what_k, relu(ahat) = theta ahat
        self.vars = V
        self.lo = {k: cp.Parameter(v.shape) for k, v in V.items()}
        self.hi = {k: cp.Parameter(v.shape) for k, v in V.items()}
        C = dict(sigma=cp.Parameter(h), sym=cp.Parameter(max(h - 1, 1)), Vb=cp.Parameter(nonneg=True),
                 ell_slope=cp.Parameter((h, m)), ell_icpt=cp.Parameter((h, m)), act=cp.Parameter((h, m)),
                 inact=cp.Parameter((h, m), nonneg=True), aLp=cp.Parameter((h, m)), aUp=cp.Parameter((h, m)))
        for i in range(N_PLANES):
            for nm in ("alpha", "gamma", "delta"):
                C[f"{nm}{i}"] = cp.Parameter((h, m))
        self.coef = C
        What, chat, s, Z, b1, qw, qz, beta, t = (V[k] for k in ("What", "chat", "s", "Z", "b1", "qw", "qz",
                                                                 "beta", "t"))
        ones_m = np.ones((1, m))
        Ahat = What @ X0 + cp.reshape(chat, (h, 1), order="F") @ ones_m
        S = cp.reshape(s, (h, 1), order="F") @ ones_m
        cons: dict[str, list] = {}
        cons["box"] = [c for k, v in V.items() for c in (v >= self.lo[k], v <= self.hi[k])]
        # P1: loss epigraph ||y - sigma^T Z - b1||^2 <= t.
        res = y - cp.reshape(C["sigma"], (1, h), order="F") @ Z - b1[0]
        cons["loss"] = [cp.SOC(t[0] + 1, cp.hstack([cp.reshape(t[0] - 1, (1,), order="F"),
                                                     2 * cp.reshape(res, (m,), order="F")]))]
        # P2: qw_k >= ||what_k||^2 / s_k.
        cons["qw"] = [cp.SOC(s + qw, cp.vstack([2 * What.T, cp.reshape(s - qw, (1, h), order="F")]), axis=0)]
        # P3: qz_kj >= (Z_kj - ahat_kj)^2 / s_k.
        Sv, qzv = cp.vec(S, order="F"), cp.vec(qz, order="F")
        cons["qz"] = [cp.SOC(Sv + qzv, cp.vstack([2 * cp.vec(Z - Ahat, order="F"), Sv - qzv]), axis=0)]
        # P4: beta >= qz/2 + (affine minorant of f(ahat, s)); the D-plane f >= -D_j^2 s / 2.
        cons["planes"] = [beta >= 0.5 * qz + cp.multiply(C[f"alpha{i}"], Ahat) + cp.multiply(C[f"gamma{i}"], S)
                          + C[f"delta{i}"] for i in range(N_PLANES)]
        cons["planes"].append(beta >= 0.5 * qz - 0.5 * cp.multiply(np.repeat(self.D[None, :] ** 2, h, axis=0), S))
        # P4': fixed activation signs act_kj ahat_kj >= 0; on inactive samples B = X^2/2 - a X >= X^2/2,
        # i.e. beta >= qzz / 2 with qzz >= Z^2 / s.
        qzz = V["qzz"]
        qzzv = cp.vec(qzz, order="F")
        cons["signs"] = [cp.multiply(C["act"], Ahat) >= 0,
                         cp.SOC(Sv + qzzv, cp.vstack([2 * cp.vec(Z, order="F"), Sv - qzzv]), axis=0),
                         beta >= cp.multiply(C["inact"], 0.5 * qzz)]
        # P5: balance rho s_k = rho qw_k + lam sum_j beta_kj.
        cons["balance"] = [rho * s == rho * qw + lam * cp.sum(beta, axis=1)]
        # P6: norm budget, P7: symmetry inside sign groups.
        cons["budget"] = [cp.sum(s) <= C["Vb"]]
        cons["symmetry"] = [cp.multiply(C["sym"], s[1:] - s[:-1]) >= 0] if h > 1 else []
        # P8: G_kj >= |Z_kj - relu(ahat_kj)| via G^2 <= 2 s beta (|X - relu(a)| <= sqrt(2B), scaled by |v|);
        # relu(ahat) >= ahat and relu(ahat) <= its secant ell on [aL, aU].
        G, L = V["G"], V["L"]
        Gv, bv = cp.vec(G, order="F"), cp.vec(beta, order="F")
        cons["deviation"] = [
            cp.SOC(2 * Sv + bv, cp.vstack([2 * Gv, 2 * Sv - bv]), axis=0),
            Ahat - Z <= G,
            Z - cp.multiply(C["ell_slope"], Ahat) - C["ell_icpt"] <= G,
        ]
        # P9: output variation: relu(ahat_k) is ||what_k||-Lipschitz, so
        # |Z_kj - Z_kj'| <= L_k ||x_j - x_j'|| + G_kj + G_kj', with ||what_k|| <= L_k.
        # ||what_k|| <= L_k <= sqrt(s_k qw_k)  (equal at true points: |v| ||w|| = sqrt(v^2 ||w||^2)).
        cons["variation"] = [cp.SOC(L, What.T, axis=0),
                             cp.SOC(s + qw, cp.vstack([cp.reshape(2 * L, (1, h), order="F"),
                                                       cp.reshape(s - qw, (1, h), order="F")]), axis=0)]
        if variation_cuts and not convexity_cuts:  # implied by P10 with ||g|| <= L (both orders of a pair)
            self.pairs, self.dist = _pairs(X0, max_pairs_per_point)
            npair = self.pairs.shape[1]
            Dm = sp.csr_matrix((np.r_[np.ones(npair), -np.ones(npair)],
                                (np.r_[np.arange(npair), np.arange(npair)], np.r_[self.pairs[0], self.pairs[1]])),
                               shape=(npair, m))
            diff = Z @ Dm.T
            slack = cp.reshape(L, (h, 1), order="F") @ self.dist[None, :] + G @ abs(Dm).T
            cons["variation"] += [diff <= slack, -diff <= slack]
        # P10: convexity of x -> relu(what_k x + chat_k): with g_kj a subgradient at x_j (||g_kj|| <= L_k),
        # Z_kj' - Z_kj >= g_kj^T (x_j' - x_j) - G_kj - G_kj' for every ordered pair.
        cons["convexity"] = []
        if convexity_cuts:
            Ia, Ja = _ordered_pairs(X0, max_pairs_per_point)
            npair = len(Ia)
            Dpos = sp.csr_matrix((np.ones(npair), (np.arange(npair), Ja)), shape=(npair, m))
            Dneg = sp.csr_matrix((np.ones(npair), (np.arange(npair), Ia)), shape=(npair, m))
            lhs = Z @ Dpos.T - Z @ Dneg.T                            # Z_j' - Z_j, (h, npair)
            inner = 0
            for i in range(n_):
                dx = X0[i, Ja] - X0[i, Ia]                             # (npair,)
                inner = inner + cp.multiply(V[f"g{i}"] @ Dneg.T, np.repeat(dx[None, :], h, axis=0))
            cons["convexity"].append(lhs >= inner - G @ Dpos.T - G @ Dneg.T)
            gstack = cp.vstack([cp.reshape(cp.vec(V[f"g{i}"], order="F"), (1, h * m), order="F") for i in range(n_)])
            Lrep = cp.vec(cp.reshape(L, (h, 1), order="F") @ ones_m, order="F")
            cons["convexity"].append(cp.SOC(Lrep, gstack, axis=0))
            # P11: g_kj = theta_kj what_k and relu(ahat_kj) = theta_kj ahat_kj with theta in [0, 1]: McCormick
            # envelopes with the node's boxes on what and ahat (exact once the sign is fixed: theta = 0 or 1).
            th = V["theta"]
            for i in range(n_):
                wl = cp.reshape(self.lo["What"][:, i], (h, 1), order="F") @ ones_m
                wu = cp.reshape(self.hi["What"][:, i], (h, 1), order="F") @ ones_m
                wv = cp.reshape(What[:, i], (h, 1), order="F") @ ones_m
                gi = V[f"g{i}"]
                cons["convexity"] += [gi >= cp.multiply(wl, th), gi >= wv - cp.multiply(wu, 1 - th),
                                      gi <= cp.multiply(wu, th), gi <= wv - cp.multiply(wl, 1 - th)]
            aLp, aUp = C["aLp"], C["aUp"]
            cons["convexity"] += [cp.multiply(aUp, th) + G >= Z, Ahat - cp.multiply(aLp, 1 - th) + G >= Z]
        self.constraints = cons
        self._finish(t[0] + rho * cp.sum(s) + rho * cp.sum(qw) + lam * cp.sum(beta))

    def lift(self, pt: Point) -> dict:
        """Lifted values at a normalized true point (``qz = (X - a)^2``, ``beta = B``, ``qw = ||w||^2``)."""
        prob = self.prob
        A = pt.W0 @ prob.X0 + pt.b0[:, None]
        Bm = np.maximum(0.5 * pt.X1 ** 2 + 0.5 * np.maximum(A, 0.0) ** 2 - A * pt.X1, 0.0)
        av = np.abs(pt.W1[0])
        R = prob.Y - pt.W1 @ pt.X1 - pt.b1[:, None]
        return dict(What=av[:, None] * pt.W0, chat=av * pt.b0, s=pt.W1[0] ** 2, Z=av[:, None] * pt.X1,
                    b1=pt.b1.copy(), qw=(pt.W0 ** 2).sum(axis=1), qz=(pt.X1 - A) ** 2, beta=Bm,
                    t=np.array([float((R ** 2).sum())]), G=av[:, None] * np.sqrt(2.0 * Bm),
                    L=av * np.sqrt((pt.W0 ** 2).sum(axis=1)), qzz=pt.X1 ** 2,
                    **{f"g{i}": (av[:, None] * pt.W0[:, i:i + 1]) * (A > 0) for i in range(prob.n)},
                    theta=(A > 0).astype(float))


class PerspectiveFormulation:
    """Branch on ``(What, chat, s)`` with the sign pattern as tag; ``h + 1`` root nodes."""

    name = "perspective"
    box_frac = 0.25

    def __init__(self, prob: Problem, *, box_frac: float | None = None, **opts):
        self.prob = prob
        if box_frac is not None:
            self.box_frac = box_frac
        self.rel = PerspectiveRelaxation(prob, **opts)
        self.D = self.rel.D

    def roots(self, U: float) -> list:
        lo, hi = root_box_persp(self.prob, U)
        h = self.prob.hidden
        act = np.zeros((h, self.prob.m), dtype=np.int8)
        return [(lo, hi, (tuple([-1] * g + [1] * (h - g)), act)) for g in range(h + 1)]

    def derive(self, lo, hi, tag, U: float) -> NodeData | None:
        return derive_persp(self.prob, lo, hi, tag, U, self.D)

    def coords(self, pt: Point) -> tuple[np.ndarray, tuple]:
        """Branching coordinates and sign pattern of a normalized point (zero units join the + group)."""
        av = np.abs(pt.W1[0])
        sigma = tuple(-1 if v < 0 else 1 for v in pt.W1[0])
        act = np.zeros((self.prob.hidden, self.prob.m), dtype=np.int8)
        return np.concatenate([(av[:, None] * pt.W0).ravel(), av * pt.b0, pt.W1[0] ** 2]), (sigma, act)

    def point_from(self, values: dict, tag) -> Point:
        s = np.maximum(values["s"], 0.0)
        t = np.sqrt(s)
        safe = np.where(t > 1e-12, t, 1.0)
        W0 = np.where(t[:, None] > 1e-12, values["What"] / safe[:, None], 0.0)
        b0 = np.where(t > 1e-12, values["chat"] / safe, 0.0)
        W1 = (np.asarray(tag[0], dtype=float) * t)[None, :]
        return self.prob.from_theta(W0, b0, W1)

    def lift(self, pt: Point) -> dict:
        return self.rel.lift(pt)

    def envelope_error(self, node: NodeData, values: dict) -> np.ndarray:
        """``f - max(planes)`` at the relaxation point, per (unit, sample): where the relaxation is loose."""
        prob = self.prob
        Ahat = values["What"] @ prob.X0 + values["chat"][:, None]
        S = np.repeat(np.maximum(values["s"], 0.0)[:, None], prob.m, axis=1)
        c = node.coef
        planes = [c[f"alpha{i}"] * Ahat + c[f"gamma{i}"] * S + c[f"delta{i}"] for i in range(N_PLANES)]
        planes.append(-0.5 * self.D[None, :] ** 2 * S)
        best = np.max(planes, axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(S > 1e-14, f_concave(Ahat, np.maximum(S, 1e-14)), best)
        return np.maximum(f - best, 0.0)

    def children(self, node: NodeData, values: dict | None, width0: np.ndarray) -> list:
        """Child specs ``(lo, hi, tag)``.

        Looseness of the relaxation point per (unit, sample), in units of ``B``: the envelope error of ``f`` plus
        ``(|Z - relu(ahat)| - G)_+^2 / (2 s)``. Take the loosest unit. If its box (``What_k, chat_k, s_k``) is
        still wider than ``box_frac`` of the root in some coordinate, bisect that coordinate; otherwise split
        its loosest sample with an undecided activation sign into ``ahat >= 0`` and ``ahat <= 0``; with no
        undecided sample left, bisect its widest coordinate. A node whose own bound did not beat its parent's
        (``node.stall`` odd) splits a sign at once, whatever its box widths: box and sign splits alternate
        while the bound is stuck (docs, section 6; branching only, no effect on validity).
        """
        lam = self.prob.lam
        h, n = self.prob.hidden, self.prob.n
        sigma, act = node.tag
        aL, aU = node.coef["aL"], node.coef["aU"]
        undecided = (aL < 0) & (aU > 0) & (act == 0)
        rel = (node.hi - node.lo) / width0
        k = None
        score = None
        if values is not None:
            Ahat = values["What"] @ self.prob.X0 + values["chat"][:, None]
            S = np.maximum(values["s"], 1e-9)[:, None]
            viol = np.maximum(np.abs(values["Z"] - np.maximum(Ahat, 0.0)) - np.maximum(values["G"], 0.0), 0.0)
            score = lam * (self.envelope_error(node, values) + viol ** 2 / (2.0 * S))
            if np.max(score.sum(axis=1)) > 0:
                k = int(np.argmax(score.sum(axis=1)))
        if k is None:
            i = int(np.argmax(rel))
        else:
            idx = np.r_[np.arange(k * n, (k + 1) * n), h * n + k, h * n + h + k]
            i = int(idx[np.argmax(rel[idx])])
            # a node whose split did not raise the bound alternates: odd stall counts split a sign at once
            frac = 1.0 if node.stall % 2 else self.box_frac
            if rel[i] <= frac and np.any(undecided[k]):
                j = int(np.argmax(np.where(undecided[k], score[k] + 1e-12, -1.0)))
                out = []
                for sign in (1, -1):
                    a2 = act.copy()
                    a2[k, j] = sign
                    out.append((node.lo, node.hi, (sigma, a2)))
                return out
        mid = 0.5 * (node.lo[i] + node.hi[i])
        lo1, hi1 = node.lo.copy(), node.hi.copy()
        lo2, hi2 = node.lo.copy(), node.hi.copy()
        hi1[i] = mid
        lo2[i] = mid
        return [(lo1, hi1, node.tag), (lo2, hi2, node.tag)]
