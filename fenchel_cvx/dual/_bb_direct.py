r"""Direct formulation of the branch-and-bound: branch on ``theta = (W0, b0, W1)`` itself (any ``p``).

Section 4.1 of ``docs/certified_bound.md``. A node is a box on ``theta`` (flat: ``W0`` row-major, then
``b0``, then ``W1`` row-major). :func:`derive_direct` tightens it with the valid restrictions (sections 2-3)
and derives a box for every relaxation variable plus the envelope coefficients; :class:`DirectRelaxation`
is the DPP relaxation: exact loss, secant of the concave part of ``B``, McCormick envelopes of the output
products ``W1_qk X_kj``, lifted squares with secant caps, balance, norm budget, symmetry breaking and the
output-variation cuts. It is used for multi-output networks; for one output the perspective formulation
(:mod:`._bb_persp`) is much stronger.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from ._bb_boxes import LOOSEN, TINY, NodeData, down, interval_dot, maxsq, minsq, pairwise_distances, up
from ._bb_conic import ConicRelaxation
from ._bb_problem import Point, Problem

__all__ = ["DirectFormulation", "DirectRelaxation", "derive_direct"]


def split_theta(prob: Problem, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat ``theta`` -> ``(W0 (h, n), b0 (h,), W1 (p, h))`` (views)."""
    h, n, p = prob.hidden, prob.n, prob.p
    return (theta[:h * n].reshape(h, n), theta[h * n:h * n + h], theta[h * n + h:].reshape(p, h))


def n_theta(prob: Problem) -> int:
    return prob.hidden * (prob.n + 1 + prob.p)


def root_box(prob: Problem, U: float) -> tuple[np.ndarray, np.ndarray]:
    r"""The root theta box: ``|W0|, |W1| <= sqrt(U / (2 rho))`` entrywise; ``b0`` from the bias WLOG.

    Valid for every normalized point with ``J <= U`` (section 3: balance gives
    ``J = loss + 2 rho sum_k ||v_k||^2``, hence ``||W1||^2 <= U/(2 rho)`` and ``||W0||^2 <= ||W1||^2``).
    ``b0`` is left unbounded here and bounded by :func:`derive`.
    """
    d = n_theta(prob)
    R = float(up(np.sqrt(U / (2.0 * prob.rho))))
    lo, hi = np.full(d, -R), np.full(d, R)
    h, n = prob.hidden, prob.n
    lo[h * n:h * n + h] = -np.inf
    hi[h * n:h * n + h] = np.inf
    return lo, hi


def _secant(aL: np.ndarray, aU: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""``sigma, tau`` with ``g(a) >= sigma a + tau`` on ``[aL, aU]`` for the concave ``g(a) = -min(a,0)^2/2``.

    The secant through the end points; for a (near-)degenerate interval, the constant ``min(g(aL), g(aU))``
    (a concave function on an interval is at least the smaller end value). ``tau`` is loosened for rounding.
    """
    gL = -0.5 * np.minimum(aL, 0.0) ** 2
    gU = -0.5 * np.minimum(aU, 0.0) ** 2
    width = aU - aL
    scale = np.maximum(np.abs(aL), np.abs(aU))
    ok = width > 1e-9 * np.maximum(scale, 1.0)
    sigma = np.where(ok, (gU - gL) / np.where(ok, width, 1.0), 0.0)
    tau = np.where(ok, gL - sigma * aL, np.minimum(gL, gU))
    slack = LOOSEN * (np.abs(tau) + np.abs(sigma) * scale + np.abs(gL) + np.abs(gU)) + TINY
    return sigma, tau - slack


def derive_direct(prob: Problem, theta_lo: np.ndarray, theta_hi: np.ndarray, U: float) -> NodeData | None:
    """Tighten a theta box and derive all relaxation boxes; ``None`` when the node provably holds no point
    with ``J <= U`` that satisfies the WLOG restrictions (docs/certified_bound.md, sections 2-4)."""
    lam, rho, X0, Y = prob.lam, prob.rho, prob.X0, prob.Y
    h, p, m = prob.hidden, prob.p, prob.m
    lo, hi = theta_lo.copy(), theta_hi.copy()
    wL, cL, vL = split_theta(prob, lo)
    wU, cU, vU = split_theta(prob, hi)
    Vb = float(up(U / (2.0 * rho)))  # budget on sum_k ||v_k||^2
    for _ in range(3):
        # (S) symmetry breaking: W1[0, :] nondecreasing.
        for k in range(h - 2, -1, -1):
            vU[0, k] = min(vU[0, k], vU[0, k + 1])
        for k in range(1, h):
            vL[0, k] = max(vL[0, k], vL[0, k - 1])
        # (N) norm budget sum ||v||^2 <= U/(2 rho).
        mv = minsq(vL, vU)
        rest = Vb - (mv.sum() - mv)
        if np.any(rest < 0):
            return None
        cap = up(np.sqrt(rest))
        vL[:] = np.maximum(vL, -cap)
        vU[:] = np.minimum(vU, cap)
        # (B) balance: ||w_k||^2 <= ||v_k||^2.
        Mv = maxsq(vL, vU).sum(axis=0)  # (h,)
        mw = minsq(wL, wU)
        rest = Mv[:, None] - (mw.sum(axis=1, keepdims=True) - mw)
        if np.any(rest < 0):
            return None
        cap = up(np.sqrt(rest))
        wL[:] = np.maximum(wL, -cap)
        wU[:] = np.minimum(wU, cap)
        # ||v_k||^2 >= ||w_k||^2: with one output, |v_k| >= ||w_k||_min.
        mw_k = minsq(wL, wU).sum(axis=1)
        if p == 1:
            r = down(np.sqrt(mw_k))
            for k in range(h):
                if r[k] > 0:
                    if vL[0, k] > -r[k]:
                        vL[0, k] = max(vL[0, k], r[k])
                    if vU[0, k] < r[k]:
                        vU[0, k] = min(vU[0, k], -r[k])
        elif np.any(maxsq(vL, vU).sum(axis=0) < down(mw_k)):
            return None
        # per-sample bound on B_kj: lam sum_j B_kj = rho (||v_k||^2 - ||w_k||^2) <= ...
        betaU = np.minimum(up(rho / lam * (maxsq(vL, vU).sum(axis=0) - minsq(wL, wU).sum(axis=1))),
                           up(U / (2.0 * lam)))
        betaU = np.maximum(betaU, 0.0)
        # (C) bias WLOG: max_j a_kj >= 0 and min_j a_kj <= sqrt(2 max_j B_kj).
        dL, dU = interval_dot(wL, wU, X0)
        cL[:] = np.maximum(cL, down(-dU.max(axis=1)))
        cU[:] = np.minimum(cU, up(np.sqrt(2.0 * betaU) - dL.min(axis=1)))
        if np.any(lo > hi):
            return None
    # -- derived boxes ---------------------------------------------------------------------------------------
    dL, dU = interval_dot(wL, wU, X0)
    aL, aU = down(dL + cL[:, None]), up(dU + cU[:, None])
    sb = np.sqrt(2.0 * betaU)[:, None]
    XL = np.maximum(down(np.maximum(aL, 0.0) - sb), 0.0)
    XU = up(np.maximum(aU, 0.0) + sb)
    PL, PU, mcc = [], [], {}
    for q in range(p):
        vl = np.repeat(vL[q][:, None], m, axis=1)
        vu = np.repeat(vU[q][:, None], m, axis=1)
        corners = np.stack([vl * XL, vl * XU, vu * XL, vu * XU])
        PL.append(down(corners.min(axis=0)))
        PU.append(up(corners.max(axis=0)))
        # McCormick constants, loosened: lower envelopes subtract a larger constant, upper a smaller one.
        mcc[f"vL{q}"], mcc[f"vU{q}"] = vl, vu
        for name, prod, sign in (("LL", vl * XL, +1), ("UU", vu * XU, +1), ("UL", vu * XL, -1), ("LU", vl * XU, -1)):
            mcc[f"c{name}{q}"] = prod + sign * (LOOSEN * np.abs(prod) + TINY)
    b1L = np.array([Y[q].min() - PU[q].max(axis=1).sum() for q in range(p)])
    b1U = np.array([Y[q].max() - PL[q].min(axis=1).sum() for q in range(p)])
    sL, sU = down(minsq(vL, vU)), up(maxsq(vL, vU))
    rL, rU = down(minsq(wL, wU).sum(axis=1)), up(maxsq(wL, wU).sum(axis=1))
    sL, rL = np.maximum(sL, 0.0), np.maximum(rL, 0.0)
    HU = up(np.sqrt(sU * rU[None, :]))                                   # (p, h)
    GU = [up(np.sqrt(2.0 * sU[q][:, None] * betaU[:, None])) * np.ones((1, m)) for q in range(p)]
    sigma, tau = _secant(aL, aU)
    # secant over-estimators of the lifted squares: v^2 <= (vL + vU) v - vL vU on [vL, vU].
    sS = vL + vU
    sC = -vL * vU + LOOSEN * (np.abs(sS) * np.maximum(np.abs(vL), np.abs(vU)) + np.abs(vL * vU)) + TINY
    rS = wL + wU
    rC = (-wL * wU).sum(axis=1) + LOOSEN * (np.abs(rS) * np.maximum(np.abs(wL), np.abs(wU))
                                            + np.abs(wL * wU)).sum(axis=1) * 4 + TINY
    boxes = dict(
        W0=(wL.copy(), wU.copy()), b0=(cL.copy(), cU.copy()), W1=(vL.copy(), vU.copy()),
        b1=(down(b1L), up(b1U)), X=(XL, XU),
        beta=(np.zeros((h, m)), np.repeat(betaU[:, None], m, axis=1)),
        s=(sL, sU), r=(rL, rU), H=(np.zeros((p, h)), HU), t=(np.zeros(p), np.full(p, float(up(U)))),
    )
    for q in range(p):
        boxes[f"P{q}"] = (PL[q], PU[q])
        boxes[f"G{q}"] = (np.zeros((h, m)), GU[q])
    coef = dict(sigma=sigma, tau=tau, sS=sS, sC=sC, rS=rS, rC=rC, Vb=Vb, **mcc)
    for bl, bu in boxes.values():
        if np.any(bl > bu):
            return None
    return NodeData(lo, hi, None, boxes, coef)


def _pairs(X0: np.ndarray, max_pairs_per_point: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Sample pairs (j, j') used by the variation cuts, and their distances rounded up.

    All pairs for small ``m``; otherwise each point with its nearest neighbours (any subset of valid cuts is
    valid).
    """
    m = X0.shape[1]
    D = pairwise_distances(X0)
    if max_pairs_per_point is None or max_pairs_per_point >= m - 1:
        Ia, Ja = np.triu_indices(m, 1)
    else:
        pairs = set()
        order = np.argsort(D, axis=1)
        for j in range(m):
            for jj in order[j, 1:max_pairs_per_point + 1]:
                pairs.add((min(j, jj), max(j, jj)))
        Ia, Ja = map(np.array, zip(*sorted(pairs), strict=True))
    d = D[Ia, Ja]
    d = d * (1.0 + 1e-11) + 1e-300  # distances rounded up: the cut needs an over-estimate
    return np.stack([Ia, Ja]), d


class DirectRelaxation(ConicRelaxation):
    """The direct relaxation (R0-R10 of docs/certified_bound.md, section 4.1), compiled once."""

    def __init__(self, prob: Problem, *, max_pairs_per_point: int | None = None, variation_cuts: bool = True,
                 balance: bool = True, tol: float = 1e-7, max_iter: int = 200):
        if max_pairs_per_point is None and prob.m > 40:  # O(m^2) cuts: keep the nearest neighbours
            max_pairs_per_point = 10
        self.prob = prob
        self.tol, self.max_iter = tol, max_iter
        h, n, p, m = prob.hidden, prob.n, prob.p, prob.m
        lam, rho, X0, Y = prob.lam, prob.rho, prob.X0, prob.Y
        V = {}
        V["W0"], V["b0"], V["W1"], V["b1"] = cp.Variable((h, n)), cp.Variable(h), cp.Variable((p, h)), cp.Variable(p)
        V["X"], V["beta"] = cp.Variable((h, m)), cp.Variable((h, m))
        V["s"], V["r"], V["H"], V["t"] = cp.Variable((p, h)), cp.Variable(h), cp.Variable((p, h)), cp.Variable(p)
        for q in range(p):
            V[f"P{q}"], V[f"G{q}"] = cp.Variable((h, m)), cp.Variable((h, m))
        self.vars = V
        self.lo = {k: cp.Parameter(v.shape) for k, v in V.items()}
        self.hi = {k: cp.Parameter(v.shape) for k, v in V.items()}
        C = {}
        C["sigma"], C["tau"] = cp.Parameter((h, m)), cp.Parameter((h, m))
        C["sS"], C["sC"] = cp.Parameter((p, h)), cp.Parameter((p, h))
        C["rS"], C["rC"] = cp.Parameter((h, n)), cp.Parameter(h)
        C["Vb"] = cp.Parameter(nonneg=True)
        for q in range(p):
            for nm in ("vL", "vU", "cLL", "cUU", "cUL", "cLU"):
                C[f"{nm}{q}"] = cp.Parameter((h, m))
        self.coef = C

        W0, b0, W1, b1, X, beta = V["W0"], V["b0"], V["W1"], V["b1"], V["X"], V["beta"]
        s, r, H, t = V["s"], V["r"], V["H"], V["t"]
        ones_m = np.ones((1, m))
        A = W0 @ X0 + cp.reshape(b0, (h, 1), order="F") @ ones_m   # pre-activation, exact (X0 is data)
        cons: dict[str, list] = {}
        # R0: the boxes.
        cons["box"] = [c for k, v in V.items() for c in (v >= self.lo[k], v <= self.hi[k])]
        # R1: loss epigraph ||y_q - sum_k P_q[k] - b1_q||^2 <= t_q (rotated cone, exact).
        cons["loss"] = []
        for q in range(p):
            res = Y[q] - cp.sum(V[f"P{q}"], axis=0) - b1[q]
            cons["loss"].append(cp.SOC(t[q] + 1, cp.hstack([cp.reshape(t[q] - 1, (1,), order="F"), 2 * res])))
        # R2: B(X, a) >= (X - a)^2/2 + sigma a + tau  (secant of the concave part).
        u = cp.vec(beta - cp.multiply(C["sigma"], A) - C["tau"], order="F")
        e = cp.vec(X - A, order="F")
        cons["secant"] = [cp.SOC(u + 0.5, cp.vstack([u - 0.5, e]), axis=0)]
        # R3: McCormick envelopes of P_q = W1[q, k] X[k, j].
        cons["mccormick"] = []
        for q in range(p):
            Vq = cp.reshape(W1[q], (h, 1), order="F") @ ones_m
            Pq, vL, vU = V[f"P{q}"], C[f"vL{q}"], C[f"vU{q}"]
            XL, XU = self.lo["X"], self.hi["X"]
            cons["mccormick"] += [
                Pq >= cp.multiply(vL, X) + cp.multiply(XL, Vq) - C[f"cLL{q}"],
                Pq >= cp.multiply(vU, X) + cp.multiply(XU, Vq) - C[f"cUU{q}"],
                Pq <= cp.multiply(vU, X) + cp.multiply(XL, Vq) - C[f"cUL{q}"],
                Pq <= cp.multiply(vL, X) + cp.multiply(XU, Vq) - C[f"cLU{q}"],
            ]
        # R4: lifted squares s >= W1^2, r_k >= ||W0[k]||^2, capped by their secants.
        sv, W1v = cp.vec(s, order="F"), cp.vec(W1, order="F")
        cons["squares"] = [
            cp.SOC(sv + 1, cp.vstack([sv - 1, 2 * W1v]), axis=0),
            cp.SOC(r + 1, cp.vstack([cp.reshape(r - 1, (1, h), order="F"), 2 * W0.T]), axis=0),
            s <= cp.multiply(C["sS"], W1) + C["sC"],
            r <= cp.sum(cp.multiply(C["rS"], W0), axis=1) + C["rC"],
        ]
        # R5: norm budget from J <= U (balanced points: J = loss + 2 rho sum ||v||^2).
        cons["budget"] = [cp.sum(s) <= C["Vb"], cp.sum(r) <= C["Vb"]]
        # R6: symmetry breaking W1[0, 0] <= W1[0, 1] <= ...
        cons["symmetry"] = [W1[0, :-1] <= W1[0, 1:]] if h > 1 else []
        # R7: balance rho sum_q s_qk = rho r_k + lam sum_j beta_kj.
        cons["balance"] = [rho * cp.sum(s, axis=0) == rho * r + lam * cp.sum(beta, axis=1)] if balance else []
        # R8-R10: output-variation cuts.
        cons["variation"] = []
        self.pairs, self.dist = _pairs(X0, max_pairs_per_point)
        if variation_cuts and m > 1:
            npair = self.pairs.shape[1]
            Dm = sp.csr_matrix((np.r_[np.ones(npair), -np.ones(npair)],
                                (np.r_[np.arange(npair), np.arange(npair)], np.r_[self.pairs[0], self.pairs[1]])),
                               shape=(npair, m))
            Dabs = abs(Dm)
            sf, Hf = cp.vec(s, order="F"), cp.vec(H, order="F")
            # H_qk^2 <= s_qk r_k  and  G_qkj^2 <= 2 s_qk beta_kj  (rotated cones).
            # s is (p, h) column-major: entry (q, k) at q + p k; reorder r to match.
            rq = cp.vec(np.ones((p, 1)) @ cp.reshape(r, (1, h), order="F"), order="F")
            cons["variation"].append(cp.SOC(sf + rq, cp.vstack([2 * Hf, sf - rq]), axis=0))
            for q in range(p):
                Gq, Pq = V[f"G{q}"], V[f"P{q}"]
                Sq = cp.reshape(s[q], (h, 1), order="F") @ ones_m
                gv, Sv, bv = cp.vec(Gq, order="F"), cp.vec(Sq, order="F"), cp.vec(beta, order="F")
                cons["variation"].append(cp.SOC(2 * Sv + bv, cp.vstack([2 * gv, 2 * Sv - bv]), axis=0))
                diff = Pq @ Dm.T                                        # (h, npair)
                slack = cp.reshape(H[q], (h, 1), order="F") @ self.dist[None, :] + Gq @ Dabs.T
                cons["variation"] += [diff <= slack, -diff <= slack]
        self.constraints = cons
        self._finish(cp.sum(t) + rho * (cp.sum(s) + cp.sum(r)) + lam * cp.sum(beta))

    def lift(self, pt) -> dict:
        """The lifted values of every relaxation variable at a true point (see docs section 4)."""
        prob = self.prob
        A = pt.W0 @ prob.X0 + pt.b0[:, None]
        Bm = 0.5 * pt.X1 ** 2 + 0.5 * np.maximum(A, 0.0) ** 2 - A * pt.X1
        Bm = np.maximum(Bm, 0.0)
        vals = dict(W0=pt.W0, b0=pt.b0, W1=pt.W1, b1=pt.b1, X=pt.X1, beta=Bm, s=pt.W1 ** 2,
                    r=(pt.W0 ** 2).sum(axis=1))
        vals["H"] = np.abs(pt.W1) * np.sqrt(vals["r"])[None, :]
        R = prob.Y - pt.W1 @ pt.X1 - pt.b1[:, None]
        vals["t"] = (R ** 2).sum(axis=1)
        for q in range(prob.p):
            vals[f"P{q}"] = pt.W1[q][:, None] * pt.X1
            vals[f"G{q}"] = np.abs(pt.W1[q])[:, None] * np.sqrt(2.0 * Bm)
        return vals


class DirectFormulation:
    """Branch on ``theta = (W0, b0, W1)``; one root node."""

    name = "direct"

    def __init__(self, prob: Problem, **opts):
        self.prob = prob
        self.rel = DirectRelaxation(prob, **opts)

    def roots(self, U: float) -> list[tuple[np.ndarray, np.ndarray, tuple | None]]:
        lo, hi = root_box(self.prob, U)
        return [(lo, hi, None)]

    def derive(self, lo: np.ndarray, hi: np.ndarray, tag, U: float) -> NodeData | None:
        return derive_direct(self.prob, lo, hi, U)

    def coords(self, pt: Point) -> tuple[np.ndarray, tuple | None]:
        """Branching coordinates of a (normalized) point."""
        return np.concatenate([pt.W0.ravel(), pt.b0, pt.W1.ravel()]), None

    def point_from(self, values: dict, tag) -> Point:
        return self.prob.from_theta(values["W0"], values["b0"], values["W1"])

    def lift(self, pt: Point) -> dict:
        return self.rel.lift(pt)

    def children(self, node: NodeData, values: dict | None, width0: np.ndarray) -> list:
        """Bisect the widest interval relative to the root."""
        i = int(np.argmax((node.hi - node.lo) / width0))
        mid = 0.5 * (node.lo[i] + node.hi[i])
        lo1, hi1 = node.lo.copy(), node.hi.copy()
        lo2, hi2 = node.lo.copy(), node.hi.copy()
        hi1[i] = mid
        lo2[i] = mid
        return [(lo1, hi1, None), (lo2, hi2, None)]
