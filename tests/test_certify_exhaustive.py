"""``certify_lower_bound`` against exhaustive answers on nets small enough to enumerate every activation pattern.

The reference value is computed here, from scratch, without any code of ``fenchel_cvx.dual``. With one input
(``n = 1``) a unit's activation pattern (the signs of ``a_j = w x_j + c`` on the samples) depends only on the
direction ``phi`` of ``(w, c) = r (cos phi, sin phi)``; the ``2m`` directions orthogonal to some ``(x_j, 1)`` cut
the circle into ``2m`` arcs, one per pattern, and every pattern of the unit is one arc (closed arcs also hold the
points with some ``a_j = 0``). So "every activation pattern" is "every arc", and the search below visits each.

*What is exact and what is an estimate.*

* For fixed ``theta = (w, c, v)`` the problem in ``(X1 >= 0, b1)`` is convex (the loss is a convex quadratic,
  ``B(X, a) = X^2/2 + relu(a)^2/2 - a X`` is convex in ``X``). For ``h = 1`` it is solved *exactly* in closed
  form: for fixed ``b1`` each ``X_j = max(0, (2 v (y_j - b1) + lam a_j) / (2 v^2 + lam))``, and the remaining
  function of ``b1`` is convex and piecewise quadratic with breakpoints ``tau_j = y_j + lam a_j / (2 v)``; its
  minimum is the smallest value at the stationary point of each piece clipped to that piece
  (:func:`inner_min`). This closed form is checked against CVXPY (:func:`test_inner_min_matches_cvxpy`).
* The remaining three scalars ``(phi, r, v)`` are searched by a dense grid on every arc (pattern), and the best
  grid point of every arc is polished by L-BFGS-B on the full ``J`` (C^1). Every evaluated point is feasible, so
  ``G_hat = min`` of the values found is an *upper estimate*: ``G_hat >= G`` always. Its quality is checked two
  ways: a grid of half the resolution gives the same value after polishing (to ``1e-6`` relative), and
  ``G_hat`` is no worse than the certifier's own ``upper`` (an independent local search).
* For ``h = 2`` (``m = 3, 4``) the reference is a multistart over every pair of arcs (each unit started inside
  its pattern, both signs of each output weight, two scales), polished by L-BFGS-B: again ``G_hat >= G``.

The assertion that can fail: ``lower <= G_hat + tol``. ``lower`` is a claimed lower bound on ``G`` and
``G <= G_hat``, so any violation is a soundness bug of the certifier (or a rounding bug larger than ``tol``).
On these instances the certifier closes to ``1e-6``-``1e-4`` relative and ``G_hat`` agrees with its ``upper``
to ``1e-12``, so ``G_hat`` is (numerically) ``G``: an unsound excess of ``1e-5 G`` fails the test (checked by
hand with ``lower`` multiplied by ``1 + 1e-5``: 8 of the 9 instances failed with the tree alone, all 9 since the
activation-pattern relaxation).
A second assertion (``lower >= 0.99 G_hat``, ``0.9`` for two units) keeps the check from passing trivially
with ``lower = 0``.

Runtime: about 15 s in total on one core of the shared 2-core machine (2026-12-06).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize as so

from fenchel_cvx.dual import certify_lower_bound


# -- J written from scratch (paper's eq. 7, ReLU penalty, MSE as a sum of squares, unpenalized biases) ---------
def J_full(z, x, y, h, lam, rho):
    """``J`` and its gradient at ``z = (w (h), c (h), v (h), b1, X (h, m))`` for ``n = p = 1``."""
    m = x.size
    w, c, v, b1 = z[:h], z[h:2 * h], z[2 * h:3 * h], z[3 * h]
    X = z[3 * h + 1:].reshape(h, m)
    a = w[:, None] * x[None, :] + c[:, None]
    R = y - v @ X - b1
    pos = np.maximum(a, 0.0)
    f = R @ R + rho * (w @ w + v @ v) + lam * np.sum(X * X / 2 + pos * pos / 2 - a * X)
    gA = lam * (pos - X)
    gX = -2.0 * np.outer(v, R) + lam * (X - a)
    g = np.concatenate([gA @ x + 2 * rho * w, gA.sum(axis=1), -2.0 * X @ R + 2 * rho * v, [-2.0 * R.sum()],
                        gX.ravel()])
    return float(f), g


def polish(z0, x, y, h, lam, rho):
    m = x.size
    bounds = [(None, None)] * (3 * h + 1) + [(0.0, None)] * (h * m)
    z0 = z0.copy()
    z0[3 * h + 1:] = np.maximum(z0[3 * h + 1:], 0.0)
    res = so.minimize(J_full, z0, args=(x, y, h, lam, rho), jac=True, method="L-BFGS-B", bounds=bounds,
                      options=dict(maxiter=3000, ftol=1e-15, gtol=1e-12, maxcor=30))
    z = res.x.copy()
    z[3 * h + 1:] = np.maximum(z[3 * h + 1:], 0.0)
    return J_full(z, x, y, h, lam, rho)[0], z


# -- exact inner minimization over (X1 >= 0, b1) for h = 1 ----------------------------------------------------
def _value(w, c, v, b, x, y, lam, rho):
    """``J`` at ``(w, c, v, b)`` with the optimal ``X_j`` for that ``b``; also that ``X`` (shape (N, m))."""
    a = w[:, None] * x + c[:, None]
    X = np.maximum(0.0, (2 * v[:, None] * (y - b[:, None]) + lam * a) / (2 * v[:, None] ** 2 + lam))
    R = y - v[:, None] * X - b[:, None]
    pos = np.maximum(a, 0.0)
    B = X * X / 2 + pos * pos / 2 - a * X
    return np.sum(R * R, axis=1) + rho * (w * w + v * v) + lam * np.sum(B, axis=1), X


def inner_min(w, c, v, x, y, lam, rho):
    """Exact ``min over X1 >= 0, b1`` of ``J`` for each ``theta = (w_i, c_i, v_i)`` (arrays of shape (N,)), h = 1.

    ``F(b) = sum_j min_{X_j >= 0}(...)`` is convex (partial minimum of a jointly convex function). On the piece of
    ``b`` between consecutive breakpoints ``tau_j`` the set ``P`` of samples with ``X_j > 0`` is fixed and ``F`` is
    the quadratic whose stationary point is ``b = (sum_P k (y_j - v a_j) + sum_notP y_j) / (k |P| + |not P|)``,
    ``k = lam / (2 v^2 + lam)``. The minimum of a convex piecewise quadratic is the least value over pieces of
    the piece's stationary point clipped into the piece. Returns ``(value, b1)``.
    """
    a = w[:, None] * x + c[:, None]
    vs = np.where(v == 0.0, 1e-300, v)
    tau = np.sort(y + lam * a / (2.0 * vs[:, None]), axis=1)
    tau = np.clip(tau, -1e150, 1e150)
    m = x.size
    edges = np.concatenate([np.full((w.size, 1), -np.inf), tau, np.full((w.size, 1), np.inf)], axis=1)
    k = lam / (2 * v * v + lam)
    best = np.full(w.size, np.inf)
    best_b = np.zeros(w.size)
    for i in range(m + 1):
        lo, hi = edges[:, i], edges[:, i + 1]
        mid = np.where(np.isfinite(lo) & np.isfinite(hi), 0.5 * (lo + hi),
                       np.where(np.isfinite(lo), lo + 1.0, np.where(np.isfinite(hi), hi - 1.0, 0.0)))
        P = (2 * v[:, None] * (y - mid[:, None]) + lam * a) > 0
        num = np.sum(np.where(P, k[:, None] * (y - v[:, None] * a), y), axis=1)
        den = k * P.sum(axis=1) + (~P).sum(axis=1)
        b = np.clip(num / den, lo, hi)
        val, _ = _value(w, c, v, b, x, y, lam, rho)
        better = val < best
        best, best_b = np.where(better, val, best), np.where(better, b, best_b)
    return best, best_b


def arcs(x):
    """The ``2m`` closed arcs of directions ``phi`` of ``(w, c)``, one per activation pattern of a unit."""
    br = np.concatenate([np.arctan2(-x, 1.0), np.arctan2(x, -1.0)]) % (2 * math.pi)
    br = np.sort(br)
    return list(zip(br, np.append(br[1:], br[0] + 2 * math.pi), strict=True))


def exhaustive_h1(x, y, lam, rho, n_phi=24, n_r=48, n_v=96):
    """``G_hat >= G`` for h = 1, n = 1: every pattern (arc), a dense grid, the exact inner minimum, polishing.

    Returns ``(G_hat, per-pattern grid minima)``.
    """
    U0 = float(np.sum((y - y.mean()) ** 2))          # J of the zero network, an upper bound on G
    vmax = math.sqrt(U0 / (2 * rho)) * 1.05           # normalized points have v^2 <= U / (2 rho)
    rmax = vmax * (1.0 + np.max(np.abs(x))) * 2.0 + math.sqrt(U0 / lam) * 2.0
    rs = np.concatenate([[0.0], np.geomspace(rmax * 1e-3, rmax, n_r - 1)])
    vs = np.concatenate([-np.geomspace(vmax, vmax * 1e-3, n_v // 2), np.geomspace(vmax * 1e-3, vmax, n_v // 2)])
    best, per_pattern = math.inf, []
    for lo, hi in arcs(x):
        phi = np.linspace(lo, hi, n_phi)
        P, R, V = (g.ravel() for g in np.meshgrid(phi, rs, vs, indexing="ij"))
        w, c = R * np.cos(P), R * np.sin(P)
        val, b = inner_min(w, c, V, x, y, lam, rho)
        i = int(np.argmin(val))
        per_pattern.append(float(val[i]))
        _, X = _value(w[i:i + 1], c[i:i + 1], V[i:i + 1], b[i:i + 1], x, y, lam, rho)
        z0 = np.concatenate([[w[i], c[i], V[i], b[i]], X[0]])
        best = min(best, float(val[i]), polish(z0, x, y, 1, lam, rho)[0])
    return best, per_pattern


def multistart_h2(x, y, lam, rho, seed=0):
    """``G_hat >= G`` for h = 2, n = 1: a start inside every pair of patterns (arcs), both output signs, two
    scales, each polished by L-BFGS-B on the full ``J``."""
    rng = np.random.default_rng(seed)
    U0 = float(np.sum((y - y.mean()) ** 2))
    scale0 = (U0 / (2 * rho)) ** 0.25
    A = arcs(x)
    best = math.inf
    for i1 in range(len(A)):
        for i2 in range(i1, len(A)):
            for s1 in (-1, 1):
                for s2 in (-1, 1):
                    for sc in (0.3, 1.0):
                        phi = np.array([rng.uniform(*A[i1]), rng.uniform(*A[i2])])
                        r = sc * scale0 * np.array([1.0, 1.0])
                        w, c, v = r * np.cos(phi), r * np.sin(phi), sc * scale0 * np.array([s1, s2])
                        X = np.maximum(w[:, None] * x + c[:, None], 0.0)
                        b1 = float(np.mean(y - v @ X))
                        z0 = np.concatenate([w, c, v, [b1], X.ravel()])
                        best = min(best, polish(z0, x, y, 2, lam, rho)[0])
    return best


def instance(seed, m, noise=0.2):
    rng = np.random.default_rng(seed)
    x = np.sort(rng.standard_normal(m))
    y = 1.3 * np.maximum(x - 0.2, 0.0) - 0.7 * np.maximum(-x - 0.4, 0.0) + noise * rng.standard_normal(m)
    return x, y


# -- the reference itself ------------------------------------------------------------------------------------
def test_inner_min_matches_cvxpy():
    """The closed-form inner minimum over ``(X1 >= 0, b1)`` equals CVXPY's (an independent convex solve)."""
    cp = pytest.importorskip("cvxpy")
    x, y = instance(3, 5)
    lam, rho = 0.7, 0.2
    rng = np.random.default_rng(0)
    for _ in range(6):
        w, c, v = rng.standard_normal(3) * 1.5
        val, _ = inner_min(np.array([w]), np.array([c]), np.array([v]), x, y, lam, rho)
        X, b = cp.Variable(x.size, nonneg=True), cp.Variable()
        a = w * x + c
        obj = (cp.sum_squares(y - v * X - b) + rho * (w * w + v * v)
               + lam * cp.sum(cp.square(X) / 2 + np.maximum(a, 0) ** 2 / 2 - cp.multiply(a, X)))
        ref = cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL)
        assert val[0] == pytest.approx(ref, rel=1e-6, abs=1e-8)
        assert val[0] <= ref + 1e-9 * (1 + abs(ref))   # closed form is exact, a solver only approximates


def test_grid_reference_is_converged():
    """Halving the grid resolution gives the same polished ``G_hat``: the reference is not grid-limited."""
    x, y = instance(1, 4)
    fine, per = exhaustive_h1(x, y, 1.0, 0.1)
    coarse, _ = exhaustive_h1(x, y, 1.0, 0.1, n_phi=12, n_r=24, n_v=48)
    assert len(per) == 2 * x.size                    # one minimum per activation pattern
    assert coarse == pytest.approx(fine, rel=1e-6)
    assert fine <= min(per) + 1e-12


# -- the certifier against the exhaustive answer -------------------------------------------------------------
H1 = [(0, 3, 1.0, 0.1), (1, 4, 1.0, 0.1), (2, 5, 0.3, 0.05), (3, 4, 3.0, 0.3), (4, 5, 1.0, 1.0),
      (5, 3, 10.0, 0.1)]


@pytest.mark.parametrize("seed,m,lam,rho", H1)
def test_one_unit_lower_below_exhaustive_minimum(seed, m, lam, rho):
    x, y = instance(seed, m)
    G_hat, _ = exhaustive_h1(x, y, lam, rho)
    cert = certify_lower_bound(x[:, None], y, hidden=1, lam=lam, rho=rho, time_limit=4.0, rel_gap=1e-4,
                               n_starts=4, seed=seed)
    tol = 1e-7 * (1.0 + G_hat)
    assert cert.lower <= G_hat + tol, (cert.lower, G_hat)          # soundness: lower <= G <= G_hat
    assert G_hat <= cert.upper + tol, (G_hat, cert.upper)          # the reference is at least as good as upper
    assert cert.lower >= 0.99 * G_hat, (cert.lower, G_hat, cert.status)  # and not trivial (measured: 1e-6 off)


# The first instance's optimum has a vanishing second unit (G_hat equals the one-unit G_hat); on the other two,
# two units do better than one (G_hat 0.0429 vs 0.0510, 0.0924 vs 0.1075), so both units matter.
H2 = [(10, 3, 1.0, 0.1, 0.2), (24, 4, 2.0, 0.02, 0.1), (30, 4, 1.0, 0.03, 0.1)]


@pytest.mark.parametrize("seed,m,lam,rho,noise", H2)
def test_two_units_lower_below_exhaustive_minimum(seed, m, lam, rho, noise):
    x, y = instance(seed, m, noise)
    G_hat = multistart_h2(x, y, lam, rho, seed=seed)
    cert = certify_lower_bound(x[:, None], y, hidden=2, lam=lam, rho=rho, time_limit=4.0, rel_gap=1e-4,
                               n_starts=4, seed=seed)
    tol = 1e-7 * (1.0 + G_hat)
    assert cert.lower <= G_hat + tol, (cert.lower, G_hat)
    assert G_hat <= cert.upper + tol, (G_hat, cert.upper)
    assert cert.lower >= 0.9 * G_hat, (cert.lower, G_hat, cert.status)  # measured: 4e-6 to 1e-4 off
