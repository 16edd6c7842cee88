r"""The activation-pattern relaxation: one convex problem over every ReLU pattern (docs/certified_bound.md, §4.3).

For one output, rescale unit ``k`` by ``|v_k|`` (``w_hat = |v| w``, ``c_hat = |v| c``, ``Z_hat = |v| X``,
``a_hat = |v| a``). By AM-GM on the balance of its two penalties and the 2-homogeneity of ``B``,

.. math::  \rho v_k^2 + \rho\|w_k\|^2 + \lambda \sum_j B_{kj} \;\ge\; 2\sqrt{\rho}\, N_k,\qquad
           N_k = \sqrt{\rho\|\hat w_k\|^2 + \lambda \sum_j B(\hat Z_{kj}, \hat a_{kj})},

so ``J >= loss(y - sum_k sign(v_k) Z_hat_k - b1) + 2 sqrt(rho) sum_k N_k``. On a fixed activation pattern
``D`` (``D_j = 1[a_hat_j >= 0]``) ``B`` is at least a convex quadratic: ``(Z - a)^2 / 2`` where active (equal),
``Z^2 / 2`` where inactive (``B = Z^2/2 + |a| Z`` there). With that, ``N_k`` is at least a Euclidean norm of a
linear map of ``(w_hat, c_hat, Z_hat)`` -- convex and positively homogeneous, hence subadditive -- and the
pattern is the linear constraint ``(2 D - 1) * a_hat >= 0``. One *group* of variables per pattern and output
sign holds the sum of the units that have them (summing units of one group never raises the relaxed cost), so
the problem

.. math::  \min\ t + 2\sqrt{\rho} \sum_g N_g \quad\text{s.t.}\quad
           \|y - \textstyle\sum_g \sigma_g \hat Z_g - b_1\|^2 \le t,\
           N_g \ge \|(\sqrt{\rho}\,\hat w_g,\ \sqrt{\lambda/2}\,\mathrm{dev}_g)\|,\
           (2 D_g - 1) \odot \hat a_g \ge 0,\ \hat Z_g \ge 0

over every pattern of the data's hyperplane arrangement is convex, and its minimum is at most ``G(lambda)``
for *any* width (it is the pattern-space relaxation of the convex reformulations of two-layer ReLU training,
Pilanci & Ergen 2020, with the Fenchel penalty in place of the exact ReLU). Where the hidden width or the
dropped ``|a| Z`` terms do not bind, it is nearly exact.

This module enumerates the patterns (a superset of the arrangement's cells, :func:`activation_patterns`), builds
the relaxation on :class:`~._bb_conic.ConicRelaxation` (so its number is a weak-duality bound with the solver's
tolerance and rounding accounted for) and reads a network off its solution for the upper side.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import cvxpy as cp
import numpy as np

from ..activations import ReLU
from ._bb_boxes import NodeData, down, up
from ._bb_conic import ConicRelaxation
from ._bb_problem import Point, Problem

__all__ = ["PatternGroups", "PatternRelaxation", "activation_patterns", "pattern_count_bound", "predicted_seconds",
           "unit_norm_and_ratios", "MAX_PATTERN_ENTRIES"]

# groups * (m + n + 2), the relaxation's variables, at most: measured 2026-12-06 on one core, 15k (m = 20, n = 2)
# solve in 1 s, 59k in 5 s, 116k in 14 s (0.8 GB peak), 265k in 39 s (1.3 GB)
MAX_PATTERN_ENTRIES = 150_000
_MAX_TIES = 10                 # samples on one ray beyond which the sign combinations are not enumerated
_RELU = ReLU()
_TIE = 1e-9                    # relative size under which a sample counts as on the hyperplane (both signs kept)


def predicted_seconds(variables: int) -> float:
    """Seconds to build and solve a pattern relaxation with this many variables: a fit from above to one idle
    core (2026-12-06: build + Clarabel set-up + solve 1.1 s at 18k variables, 4.8 s at 59k, 15.4 s at 116k,
    predicted 1.1 / 6.0 / 16.0 s; the set-up, which no time limit interrupts, took 0.2 / 1.1 / 4.5 s of them).
    A round is started only when this fits in the time left to the rounds."""
    return 1.1 * (variables / 18_336) ** 1.45


def _arrangement_rows(X0: np.ndarray) -> np.ndarray:
    """Rows ``(x_j, 1)`` expressed in a basis of their span: the normals of a pointed central arrangement."""
    A = np.hstack([X0.T, np.ones((X0.shape[1], 1))])
    _, s, Vt = np.linalg.svd(A, full_matrices=False)
    r = int(np.sum(s > s[0] * 1e-12))
    return A @ Vt[:r].T


def pattern_count_bound(m: int, n: int) -> int:
    """Cells of a central arrangement of ``m`` hyperplanes in ``R^(n+1)`` at most: ``2 sum_{i<=n} C(m-1, i)``."""
    return 2 * sum(math.comb(m - 1, i) for i in range(min(n, m - 1) + 1))


def activation_patterns(X0: np.ndarray) -> np.ndarray | None:
    r"""Every activation pattern ``1[w^T x_j + c >= 0]`` that a unit can have, as rows of a boolean array.

    Parameters
    ----------
    X0 : ndarray, shape (n, m)
        Inputs, paper layout.

    Returns
    -------
    ndarray of bool, shape (P, m), or None
        A superset of the patterns (``None`` when more than ``_MAX_TIES`` samples lie on one candidate ray, a
        degenerate data set whose combinations are not enumerated).

    Notes
    -----
    A pattern with ``a_j = 0`` somewhere (zero counted as active) is that of the open cell reached by raising the
    bias a little, so only the cells of the arrangement of the hyperplanes ``{(w, c): x_j^T w + c = 0}`` matter.
    In a basis of the span of the normals ``(x_j, 1)`` (dimension ``r``) every cell is a pointed cone, whose
    extreme rays each lie on ``r - 1`` linearly independent hyperplanes. So for every such subset of samples,
    both directions of the line they cut out and every sign combination of the samples that vanish there
    (within a relative ``1e-9``: more combinations only add groups, which never invalidates the bound) give all
    cells. The cell count is at most :func:`pattern_count_bound`.
    """
    A = _arrangement_rows(X0)
    m, r = A.shape
    norms = np.linalg.norm(A, axis=1)
    found: set[bytes] = set()
    if r == 1:
        rays = np.array([[1.0]])
    else:
        subsets = np.array(list(itertools.combinations(range(m), r - 1)), dtype=np.int64)
        _, sv, Vt = np.linalg.svd(A[subsets], full_matrices=True)
        independent = sv[:, -1] > sv[:, 0] * 1e-10
        rays = Vt[independent, -1, :]
    vals = A @ rays.T                                   # (m, rays)
    ties = np.abs(vals) <= _TIE * norms[:, None] * np.linalg.norm(rays, axis=1)[None, :]
    if int(ties.sum(axis=0).max(initial=0)) > _MAX_TIES:
        return None
    for k in range(rays.shape[0]):
        tied = np.flatnonzero(ties[:, k])
        for sgn in (1.0, -1.0):
            base = sgn * vals[:, k] > 0
            for combo in itertools.product((False, True), repeat=len(tied)):
                pat = base.copy()
                pat[tied] = combo
                found.add(np.packbits(pat).tobytes())
    found.add(np.packbits(np.ones(m, dtype=bool)).tobytes())   # the cell of w = 0, c > 0
    return np.array([np.unpackbits(np.frombuffer(b, dtype=np.uint8))[:m].astype(bool) for b in sorted(found)])


@dataclass
class PatternGroups:
    r"""The groups of a pattern relaxation: pattern, output sign and a box on the ratios ``alpha_j / N``.

    Group ``g`` holds units whose activation pattern is ``D[g]``, whose output weight has sign ``sign[g]`` and
    whose ratios ``alpha_kj / N_k`` (``alpha = -a_hat >= 0`` on the pattern's inactive samples) lie in
    ``[kL[g, j], kU[g, j]]``. For every (pattern, sign) the boxes of its groups cover ``[0, inf)`` per inactive
    sample: :meth:`initial` starts with one unbounded group per pair and :meth:`split` cuts a box in two.
    """

    D: np.ndarray      # (G, m) float 0/1
    sign: np.ndarray   # (G,)
    kL: np.ndarray     # (G, m) >= 0
    kU: np.ndarray     # (G, m) in (0, inf]

    @classmethod
    def initial(cls, patterns: np.ndarray) -> PatternGroups:
        D = np.repeat(patterns.astype(float), 2, axis=0)
        G, m = D.shape
        return cls(D, np.tile([1.0, -1.0], patterns.shape[0]), np.zeros((G, m)), np.full((G, m), np.inf))

    def __len__(self) -> int:
        return self.D.shape[0]

    def split(self, g: int, j: int, kappa: float) -> PatternGroups:
        """Group ``g`` keeps ratios ``>= kappa`` at sample ``j``; a new last group takes those ``<= kappa``."""
        if self.D[g, j] != 0 or not (self.kL[g, j] < kappa < self.kU[g, j]):
            raise ValueError(f"split of group {g} at sample {j}: kappa={kappa} not inside its ratio box")
        kL, kU = self.kL.copy(), self.kU.copy()
        low_L, low_U = kL[g].copy(), kU[g].copy()
        low_U[j] = kappa
        kL[g, j] = kappa
        return PatternGroups(np.vstack([self.D, self.D[g]]), np.append(self.sign, self.sign[g]),
                             np.vstack([kL, low_L]), np.vstack([kU, low_U]))

    def find(self, pattern: np.ndarray, sign: float, ratios: np.ndarray) -> int:
        """The first group with this pattern and sign whose box holds ``ratios`` (shape (m,), inactive samples)."""
        inact = ~pattern
        for g in range(len(self)):
            if self.sign[g] == sign and np.array_equal(self.D[g] > 0, pattern) and np.all(
                    (self.kL[g][inact] <= ratios[inact]) & (ratios[inact] <= self.kU[g][inact])):
                return g
        raise ValueError("no group holds this unit: the boxes do not cover the ratios")


def unit_norm_and_ratios(prob: Problem, pt: Point, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Unit ``k`` of ``pt`` rescaled by ``|v_k|``: ``N_k``, its ratios ``alpha_j / N_k`` (0 where ``N_k = 0``)
    and its pre-activations ``a_k`` (shape (m,), unscaled: their signs are the unit's pattern)."""
    s = abs(float(pt.W1[0, k]))
    a = pt.W0[k] @ prob.X0 + pt.b0[k]
    Nk = math.sqrt(prob.rho * float(np.sum((s * pt.W0[k]) ** 2)) + prob.lam * _RELU.B_sum(s * pt.X1[k], s * a))
    return Nk, (np.maximum(-s * a, 0.0) / Nk if Nk > 0 else np.zeros(prob.m)), a


class PatternRelaxation(ConicRelaxation):
    """The pattern relaxation of one ``Problem`` (one output), built once; :meth:`node` gives its boxes."""

    name = "patterns"

    def __init__(self, prob: Problem, groups: PatternGroups, *, tol: float = 1e-8, max_iter: int = 200):
        if prob.p != 1:  # pragma: no cover - guarded by the caller
            raise ValueError("the pattern relaxation needs a single output")
        self.prob, self.groups, self.tol, self.max_iter = prob, groups, tol, max_iter
        n, m = prob.n, prob.m
        X0, y = prob.X0, prob.Y[0]
        D, G = groups.D, len(groups)
        V = dict(What=cp.Variable((G, n)), chat=cp.Variable(G), Z=cp.Variable((G, m)), N=cp.Variable(G),
                 b1=cp.Variable(1), t=cp.Variable(1))
        self.vars = V
        self.lo = {k: cp.Parameter(v.shape) for k, v in V.items()}
        self.hi = {k: cp.Parameter(v.shape) for k, v in V.items()}
        self.coef = {}
        What, chat, Z, N, b1, t = (V[k] for k in ("What", "chat", "Z", "N", "b1", "t"))
        Ahat = What @ X0 + cp.reshape(chat, (G, 1), order="F") @ np.ones((1, m))
        cons: dict[str, list] = {}
        cons["box"] = [c for k, v in V.items() for c in (v >= self.lo[k], v <= self.hi[k])]
        cons["pattern"] = [cp.multiply(2.0 * D - 1.0, Ahat) >= 0]
        # ratio boxes kL N <= alpha = -a_hat <= kU N, only where a box was cut (the split points are exact data)
        a_flat = cp.vec(Ahat, order="C")
        cons["ratio"] = []
        for k, sgn in ((groups.kL, 1.0), (groups.kU, -1.0)):
            gi, ji = np.nonzero((k > 0) & np.isfinite(k))
            if gi.size:
                cons["ratio"].append(sgn * (-a_flat[gi * m + ji] - cp.multiply(k[gi, ji], N[gi])) >= 0)
        res = y - groups.sign @ Z - b1[0]
        cons["loss"] = [cp.SOC(t[0] + 1, cp.hstack([cp.reshape(t[0] - 1, (1,), order="F"),
                                                     2 * cp.reshape(res, (m,), order="F")]))]
        # N_g >= L_g + ||(sqrt(rho) w_hat, sqrt(lam/2) dev, L_g)||, L_g = (lam/2) sum_j kL_gj Z_gj: from
        # N^2 >= Q + lam sum_j alpha_j Z_j >= Q + 2 L N. Coefficients rounded down: the exact lifted point then
        # satisfies the cone with the floating-point data (a smaller L or Q keeps the inequality true).
        dev = cp.multiply(D, Z - Ahat) + cp.multiply(1.0 - D, Z)
        kcoef = down(0.5 * prob.lam * groups.kL * (1.0 - D))
        L = cp.sum(cp.multiply(np.maximum(kcoef, 0.0), Z), axis=1)
        stack = cp.vstack([float(down(math.sqrt(prob.rho))) * What.T, float(down(math.sqrt(prob.lam / 2))) * dev.T,
                           cp.reshape(L, (1, G), order="F")])
        cons["norm"] = [cp.SOC(N - L, stack, axis=0)]
        self.constraints = cons
        self.weight = float(down(2.0 * math.sqrt(prob.rho)))
        self._finish(t[0] + self.weight * cp.sum(N))

    def node(self, U: float) -> NodeData:
        """Boxes that hold the lifted image of every normalized point with ``J <= U`` (§4.3 of the notes)."""
        prob = self.prob
        G, n, m = len(self.groups), prob.n, prob.m
        rho, lam = prob.rho, prob.lam
        R = float(up(np.max(np.linalg.norm(prob.X0, axis=0))))
        Nmax = float(up(U / (2.0 * math.sqrt(rho)) * (1 + 1e-10)))
        wmax = float(up(Nmax / math.sqrt(rho)))
        cmax = float(up(wmax * R + math.sqrt(2.0 / lam) * Nmax))
        zmax = float(up(2.0 * wmax * R + 2.0 * math.sqrt(2.0 / lam) * Nmax))
        y = prob.Y[0]
        boxes = dict(What=(np.full((G, n), -wmax), np.full((G, n), wmax)),
                     chat=(np.full(G, -cmax), np.full(G, cmax)),
                     Z=(np.zeros((G, m)), np.full((G, m), zmax)),
                     N=(np.zeros(G), np.full(G, Nmax)),
                     b1=(down(np.array([float(y.min()) - zmax])), up(np.array([float(y.max()) + zmax]))),
                     t=(np.zeros(1), up(np.array([U]))))
        return NodeData(np.zeros(0), np.zeros(0), None, boxes, {})

    def lift(self, pt: Point) -> dict:
        """The relaxation point of a (normalized, one-output) point: each unit added into the group of its
        pattern, sign and ratios ``alpha / N``."""
        prob = self.prob
        G, m = len(self.groups), prob.m
        out = dict(What=np.zeros((G, prob.n)), chat=np.zeros(G), Z=np.zeros((G, m)), N=np.zeros(G),
                   b1=np.asarray(pt.b1, dtype=float).copy(), t=np.array([prob.terms(pt)["loss"]]))
        for k in range(prob.hidden):
            v = float(pt.W1[0, k])
            s = abs(v)
            Nk, ratios, a = unit_norm_and_ratios(prob, pt, k)
            g = self.groups.find(a >= 0, 1.0 if v >= 0 else -1.0, ratios)
            out["What"][g] += s * pt.W0[k]
            out["chat"][g] += s * pt.b0[k]
            out["Z"][g] += s * pt.X1[k]
            out["N"][g] += Nk
        return out

    def alpha(self, values: dict) -> np.ndarray:
        """``alpha = -a_hat`` on each group's switched-off samples at a relaxation point, 0 elsewhere."""
        Ahat = values["What"] @ self.prob.X0 + values["chat"][:, None]
        return np.maximum(-Ahat, 0.0) * (1.0 - self.groups.D)

    def slack(self, values: dict, alpha: np.ndarray) -> np.ndarray:
        r"""Per (group, sample): ``2 sqrt(rho) lam (alpha - kL N) Z / (2 N)``, the first-order rise of the group's
        cost if ``B``'s dropped ``alpha Z`` were charged beyond what the ratio box charges: where it is loose.
        ``alpha`` is :meth:`alpha` of the same values."""
        N = np.asarray(values["N"], dtype=float)
        excess = np.maximum(alpha - self.groups.kL * N[:, None], 0.0) * np.maximum(values["Z"], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            out = self.weight * self.prob.lam * excess / (2.0 * N[:, None])
        return np.where(N[:, None] > 1e-9, out, 0.0)

    def refine(self, values: dict, groups_per_round: int = 20, fraction: float = 0.5) -> PatternGroups | None:
        """Split the ratio boxes of the loosest groups at their loosest sample, between the box's lower end and
        the solution's ratio (``None`` when nothing is loose)."""
        alpha = self.alpha(values)
        sl = self.slack(values, alpha)
        worst = sl.max(axis=1)
        new = self.groups
        N = np.asarray(values["N"], dtype=float)
        for g in np.argsort(-worst)[:groups_per_round]:
            if worst[g] <= 1e-9:
                break
            j = int(np.argmax(sl[g]))
            ratio = float(alpha[g, j]) / N[g]
            lo, hi = new.kL[g, j], new.kU[g, j]
            kappa = lo + fraction * (min(ratio, hi) - lo)
            if lo < kappa < hi:
                new = new.split(int(g), j, float(kappa))
        return None if new is self.groups else new

    def point_from(self, values: dict) -> Point:
        """A network from the ``hidden`` heaviest groups, each balanced (``|v|^2 = N / sqrt(rho)``)."""
        prob = self.prob
        h = prob.hidden
        order = np.argsort(-values["N"])[:h]
        W0, b0, W1 = np.zeros((h, prob.n)), np.zeros(h), np.zeros((1, h))
        for k, g in enumerate(order):
            s = math.sqrt(max(float(values["N"][g]), 0.0) / math.sqrt(prob.rho))
            if s > 1e-12:
                W0[k], b0[k], W1[0, k] = values["What"][g] / s, values["chat"][g] / s, self.groups.sign[g] * s
        return prob.from_theta(W0, b0, W1)
