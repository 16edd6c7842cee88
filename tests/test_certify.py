"""Tests of the certified lower bound (issue 6, item 4): soundness first, then the pieces of the proof.

Soundness is checked against quantities computed independently of the certificate code:
``lower <= P(W)`` for the best of a separate many-start L-BFGS-B search on the ordinary training problem (3)
(written here from scratch), ``upper`` recomputed with :class:`fenchel_cvx.network.LiftedNetwork`, and every
relaxation inequality at normalized random true points (feasible lifted points satisfy every constraint and the
relaxed objective equals J), for both formulations, at the root and in random sub-boxes that contain the point.
The weak-duality routine is checked with random dual vectors: any projected ``y`` must give a bound below the
objective at every feasible boxed point.

Runtime: ~35 s for the default (not slow) tests on a loaded 2-core machine (load ~8); the slow ones ~11 minutes.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so

from fenchel_cvx.dual import Certificate, certify_lower_bound
from fenchel_cvx.dual._bb_direct import DirectFormulation
from fenchel_cvx.dual._bb_persp import PerspectiveFormulation
from fenchel_cvx.dual._bb_problem import Problem
from fenchel_cvx.dual._bb_threads import single_thread_blas
from fenchel_cvx.errors import DomainError, ShapeError, ValueRangeError


# -- data and an independent primal search -----------------------------------------------------------------
def tiny_instance(seed: int, m: int, n: int = 2, h: int = 2, p: int = 1, noise: float = 0.1):
    """Samples-first data from a random ReLU teacher plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    W0, b0 = rng.standard_normal((h, n)), 0.5 * rng.standard_normal(h)
    W1 = rng.standard_normal((p, h))
    Y = np.maximum(X @ W0.T + b0, 0.0) @ W1.T + noise * rng.standard_normal((m, p))
    return X, (Y[:, 0] if p == 1 else Y)


def primal_value(theta, X, Y, h, rho):
    """Eq. (3) with biases, samples-first, and its gradient (written independently of the package)."""
    m, n = X.shape
    p = Y.shape[1]
    W0 = theta[:h * n].reshape(h, n)
    b0 = theta[h * n:h * n + h]
    W1 = theta[h * n + h:h * n + h + p * h].reshape(p, h)
    b1 = theta[h * n + h + p * h:]
    Apre = X @ W0.T + b0
    H = np.maximum(Apre, 0.0)
    R = H @ W1.T + b1 - Y
    f = np.sum(R * R) + rho * (np.sum(W0 ** 2) + np.sum(W1 ** 2))
    gR = 2 * R
    gW1 = gR.T @ H + 2 * rho * W1
    gb1 = gR.sum(axis=0)
    gH = gR @ W1 * (Apre > 0)
    gW0 = gH.T @ X + 2 * rho * W0
    gb0 = gH.sum(axis=0)
    return f, np.concatenate([gW0.ravel(), gb0, gW1.ravel(), gb1])


def best_primal(X, Y, h, rho, starts=40, seed=123):
    Y = Y[:, None] if Y.ndim == 1 else Y
    rng = np.random.default_rng(seed)
    with single_thread_blas():  # tiny L-BFGS-B problems: OpenBLAS threads only add contention
        best = _multistart_primal(X, Y, h, rho, starts, rng)
    return best


def _multistart_primal(X, Y, h, rho, starts, rng):
    n, p = X.shape[1], Y.shape[1]
    best = np.inf
    for i in range(starts):
        scale = (0.5, 1.0, 2.0, 3.0)[i % 4]
        th = rng.standard_normal(h * n + h + p * h + p) * scale
        res = so.minimize(primal_value, th, args=(X, Y, h, rho), jac=True, method="L-BFGS-B",
                          options=dict(maxiter=2000))
        best = min(best, float(res.fun), float(primal_value(res.x, X, Y, h, rho)[0]))
    return best


def lagrangian_by_network(cert: Certificate, X, Y):
    """J at the certificate's point, recomputed by LiftedNetwork (an independent implementation of eq. 7)."""
    from fenchel_cvx.network import LiftedNetwork
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    net = LiftedNetwork([X.shape[1], cert.hidden, Y2.shape[1]], "relu", "mse")
    net.set_weights([cert.W0, cert.W1], [cert.b0, cert.b1])
    return net.lagrangian(X.T, Y2.T, [cert.X1], cert.lam, cert.rho)


def check_certificate(X, Y, h, lam, rho, cert, starts=40):
    p_best = best_primal(X, Y, h, rho, starts=starts)
    tol = 1e-9 * max(1.0, abs(p_best))
    assert cert.lower <= cert.upper + tol
    assert cert.lower <= p_best + tol, (cert.lower, p_best)
    J = lagrangian_by_network(cert, X, Y)
    assert np.isclose(J, cert.upper, rtol=1e-10, atol=1e-12)
    assert np.all(cert.X1 >= 0)
    return p_best


# -- input checking ------------------------------------------------------------------------------------------
def test_domain_errors():
    X, Y = tiny_instance(0, 8)
    with pytest.raises(ValueRangeError, match="rho"):
        certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=0.0)
    with pytest.raises(ValueRangeError, match="rho"):
        certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=-1.0)
    with pytest.raises(ValueRangeError, match="lam"):
        certify_lower_bound(X, Y, hidden=2, lam=0.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="hidden"):
        certify_lower_bound(X, Y, hidden=5, lam=1.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="hidden"):  # 4 * (2 + 1 + 3) = 24 branched weights
        certify_lower_bound(X, np.zeros((8, 3)), hidden=4, lam=1.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="hidden"):
        certify_lower_bound(X, Y, hidden=0, lam=1.0, rho=0.1)
    with pytest.raises(ShapeError, match="Y"):
        certify_lower_bound(X, Y[:5], hidden=2, lam=1.0, rho=0.1)
    with pytest.raises(ShapeError, match="X"):
        certify_lower_bound(X.ravel(), Y, hidden=2, lam=1.0, rho=0.1)
    with pytest.raises(DomainError, match="X"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        certify_lower_bound(Xn, Y, hidden=2, lam=1.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="patterns: expected True or False"):  # "no" is truthy: it was "yes"
        certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=0.1, patterns="no")
    with pytest.raises(ValueRangeError, match="verbose: expected True or False"):
        certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=0.1, verbose=2)
    with pytest.raises(ValueRangeError, match="lam: expected > 0, got -1.0; a Lagrange multiplier must be positive"):
        certify_lower_bound(X, Y, hidden=2, lam=-1.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="hidden: .*handles 1 to 4 hidden units"):
        certify_lower_bound(X, Y, hidden=1.0, lam=1.0, rho=0.1)
    assert issubclass(ValueRangeError, DomainError)


@pytest.mark.parametrize("Y", [np.full(6, 3.0), np.zeros(6), np.full((6, 2), -1.5)], ids=["3", "0", "two-outputs"])
def test_constant_targets_are_certified_at_zero(Y):
    """The optimum is 0 (weights zero, b1 the constant): the constant predictor is an incumbent, so the run
    certifies at once. A local search left weights near 1e-21 and J near 1e-42, a 100% relative gap, and the
    run spent its whole time limit."""
    X = np.random.default_rng(0).standard_normal((6, 2))
    cert = certify_lower_bound(X, Y, hidden=1, lam=1.0, rho=0.1, time_limit=5.0)
    assert cert.status == "certified" and cert.upper == 0.0 and cert.lower == 0.0 and cert.seconds < 4.0


# -- the WLOG map ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_normalize_never_increases_J_and_balances(seed):
    rng = np.random.default_rng(seed)
    X, Y = tiny_instance(seed, 12, h=3, p=1 + seed % 2)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    prob = Problem(X.T, Y2.T, 3, lam=0.5 + seed, rho=0.05 * (1 + seed))
    pt = prob.random_start(rng, scale=2.0)
    pt.X1 = np.maximum(pt.X1 + 0.3 * rng.standard_normal(pt.X1.shape), 0.0)
    pt.b0[0] = -50.0   # a dead unit
    pt.b0[1] = 50.0    # an always-on unit
    J0 = prob.J(pt)
    q = prob.normalize(pt)
    assert q.J <= J0 * (1 + 1e-12) + 1e-12
    A = q.W0 @ prob.X0 + q.b0[:, None]
    from fenchel_cvx.activations import ReLU
    for k in range(3):
        lhs = prob.rho * float(q.W1[:, k] @ q.W1[:, k])
        rhs = prob.rho * float(q.W0[k] @ q.W0[k]) + prob.lam * ReLU().B_sum(q.X1[k], A[k])
        assert np.isclose(lhs, rhs, rtol=1e-9, atol=1e-12)
        if np.any(q.W1[:, k] != 0):
            assert A[k].max() >= -1e-9                         # not dead
    assert np.all(np.diff(q.W1[0]) >= 0)                      # sorted by the first output weight


# -- every relaxation inequality at true points --------------------------------------------------------------
def assert_in_cone(rel, v, tol):
    """``v = A x + b`` lies in CVXPY's cone K (zero cone, orthant, second-order cones, in this order)."""
    z0, nn = rel.dims.zero, rel.dims.nonneg
    assert np.all(np.abs(v[:z0]) <= tol)
    assert np.all(v[z0:z0 + nn] >= -tol)
    for st, d in zip(rel.soc_starts, rel.soc_dims, strict=True):
        assert v[st] >= np.linalg.norm(v[st + 1:st + d]) - tol


def _random_subbox(form, prob, pt, U, rng):
    """A random node box that contains the normalized point ``pt`` (and, perspective, consistent signs)."""
    x, tag = form.coords(pt)
    lo, hi, _ = form.roots(U)[0]
    if isinstance(form, PerspectiveFormulation):
        sigma, act = tag
        for r_lo, r_hi, r_tag in form.roots(U):
            if tuple(r_tag[0]) == tuple(sigma):
                lo, hi = r_lo, r_hi
        A = np.abs(pt.W1[0])[:, None] * (pt.W0 @ prob.X0 + pt.b0[:, None])
        act = np.where(rng.random(A.shape) < 0.3, np.sign(A), 0).astype(np.int8)
        act[np.abs(A) < 1e-9] = 0
        tag = (sigma, act)
    lo, hi = lo.copy(), hi.copy()
    fin_lo = np.where(np.isfinite(lo), lo, x - 10.0)
    fin_hi = np.where(np.isfinite(hi), hi, x + 10.0)
    for i in range(len(x)):
        if rng.random() < 0.6:
            lo[i] = x[i] - rng.random() * (x[i] - fin_lo[i])
            hi[i] = x[i] + rng.random() * (fin_hi[i] - x[i])
    return lo, hi, tag


@pytest.mark.parametrize("formulation", ["direct", "perspective"])
@pytest.mark.parametrize("seed", range(4))
def test_relaxation_holds_at_true_points(formulation, seed):
    rng = np.random.default_rng(100 + seed)
    p = 1 if formulation == "perspective" else 1 + seed % 2
    X, Y = tiny_instance(seed, 10, h=2 + seed % 2, p=p)
    Y2 = Y[:, None] if Y.ndim == 1 else Y
    h = 2 + seed % 2
    prob = Problem(X.T, Y2.T, h, lam=[0.3, 1.0, 3.0, 10.0][seed], rho=[0.05, 0.1, 0.3, 1.0][seed])
    with single_thread_blas():
        form = DirectFormulation(prob) if formulation == "direct" else PerspectiveFormulation(prob)
        for trial in range(4):
            pt = prob.normalize(prob.local_search(prob.random_start(rng, scale=1.0 + trial), maxiter=30 * trial + 1))
            U = pt.J * (1.0 + 0.5 * rng.random())
            lo, hi, tag = _random_subbox(form, prob, pt, U, rng) if trial else (*form.roots(U)[0][:2], None)
            if tag is None:
                x, tag = form.coords(pt)
                if formulation == "perspective":
                    lo, hi = [r for r in form.roots(U) if tuple(r[2][0]) == tuple(tag[0])][0][:2]
            node = form.derive(lo, hi, tag, U)
            assert node is not None, "a box containing a normalized point with J <= U was declared empty"
            x, _ = form.coords(pt)
            assert np.all(node.lo <= x + 1e-9 * (1 + np.abs(x))) and np.all(x <= node.hi + 1e-9 * (1 + np.abs(x)))
            form.rel.set_node(node, cvxpy_values=True)
            vals = form.lift(pt)
            for name, (blo, bhi) in node.boxes.items():
                v = np.asarray(vals[name], dtype=float).reshape(np.shape(blo))
                assert np.all(blo <= v + 1e-9 * (1 + np.abs(v))), name
                assert np.all(v <= bhi + 1e-9 * (1 + np.abs(v))), name
            viol = form.rel.violations(vals)
            scale = 1.0 + pt.J + np.max(np.abs(prob.Y))
            for group, worst in viol.items():
                assert worst <= 1e-8 * scale, (group, worst)
            assert form.rel.objective_at(vals) <= pt.J + 1e-9 * scale
            assert np.isclose(form.rel.objective_at(vals), pt.J, rtol=1e-8, atol=1e-10)
            # weak duality with *random* dual vectors: any y in K* gives a bound below c^T x + d here
            c, d, Am, b = form.rel.conic_data()
            xv = form.rel.vector(vals)
            assert_in_cone(form.rel, Am @ xv + b, 1e-8 * scale)
            assert float(c @ xv + d) == pytest.approx(pt.J, rel=1e-8, abs=1e-10)
            for _ in range(3):
                y = rng.standard_normal(len(b)) * rng.choice([1e-3, 1.0, 10.0])
                assert form.rel.dual_bound(y, c, d, Am, b) <= float(c @ xv + d) + 1e-9 * scale
            res = form.rel.solve(node)
            assert res.bound <= pt.J + 1e-9 * scale
            if np.isfinite(res.solver_value) and "Solved" in res.status:
                assert res.bound <= res.solver_value + 1e-6 * scale


def test_dual_bound_is_tight_at_solver_optimum():
    X, Y = tiny_instance(3, 10)
    prob = Problem(X.T, Y[None, :], 2, lam=1.0, rho=0.1)
    with single_thread_blas():
        form = PerspectiveFormulation(prob)
        best = prob.multistart(3, np.random.default_rng(0))
        U = best.J
        sigma = form.coords(best)[1][0]
        lo, hi, tag = [r for r in form.roots(U) if tuple(r[2][0]) == tuple(sigma)][0]
        node = form.derive(lo, hi, tag, U)
        res = form.rel.solve(node)
    assert "Solved" in res.status
    assert res.bound <= res.solver_value + 1e-7 * (1 + abs(res.solver_value))
    assert res.bound >= res.solver_value - 1e-4 * (1 + abs(res.solver_value))
    assert res.bound <= U


# -- end-to-end soundness ---------------------------------------------------------------------------------------
FAST = [(0, 8, 2, 1.0, 0.1), (1, 10, 2, 0.5, 0.3), (2, 12, 3, 2.0, 0.1), (3, 9, 2, 1.0, 1.0), (4, 10, 2, 5.0, 0.05)]


@pytest.mark.parametrize("seed,m,h,lam,rho", FAST)
def test_certificate_is_sound_fast(seed, m, h, lam, rho):
    X, Y = tiny_instance(seed, m, h=h)
    cert = certify_lower_bound(X, Y, hidden=h, lam=lam, rho=rho, time_limit=2.0, n_starts=4, seed=seed)
    check_certificate(X, Y, h, lam, rho, cert, starts=20)
    assert cert.nodes >= 1 and cert.status in ("certified", "time_limit")
    assert "G(lambda)" in str(cert) and cert.lower >= 0


def test_multi_output_uses_direct_formulation_and_is_sound():
    X, Y = tiny_instance(7, 9, h=2, p=2)
    cert = certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=0.2, time_limit=3.0, n_starts=4)
    check_certificate(X, Y, 2, 1.0, 0.2, cert, starts=30)
    assert cert.W1.shape == (2, 2)


def test_loose_rel_gap_certifies_and_stays_valid():
    X, Y = tiny_instance(5, 8)
    cert = certify_lower_bound(X, Y, hidden=2, lam=1.0, rho=1.0, time_limit=20.0, rel_gap=0.5, n_starts=4)
    assert cert.status == "certified" and cert.rel_gap <= 0.5
    check_certificate(X, Y, 2, 1.0, 1.0, cert, starts=20)


@pytest.mark.slow
@pytest.mark.parametrize("k", range(50))
def test_certificate_is_sound_50_instances(k):
    rng = np.random.default_rng(1000 + k)
    m = int(rng.integers(8, 21))
    h = int(rng.integers(2, 4))
    lam = float(10 ** rng.uniform(-1, 1))
    rho = float(10 ** rng.uniform(-1.5, 0))
    X, Y = tiny_instance(2000 + k, m, h=h)
    cert = certify_lower_bound(X, Y, hidden=h, lam=lam, rho=rho, time_limit=8.0, n_starts=6, seed=k)
    check_certificate(X, Y, h, lam, rho, cert, starts=60)


@pytest.mark.slow
def test_strength_2_3_1_twenty_points_eight_seeds():
    """Issue 16's target on the benchmark's instances (benchmarks/bench_certify.py, seeds 0-7): every seed within
    5% after 30 s and the median within 1%. Measured 2026-12-06 on one core: worst 2.46%, median 0.14%.
    Timing-dependent: a heavily loaded machine can miss it."""
    gaps = []
    for seed in range(8):
        X, Y = tiny_instance(seed, 20, h=3)
        cert = certify_lower_bound(X, Y, hidden=3, lam=1.0, rho=0.1, time_limit=30.0)
        assert cert.lower <= cert.upper
        gaps.append(cert.rel_gap)
    assert max(gaps) <= 0.05, gaps
    assert float(np.median(gaps)) <= 0.01, gaps


def test_polygon_planes_are_minorants_of_f():
    """P4'': the planes fitted on the polygon ``box & {a >= -D s}`` stay below ``f`` everywhere on it,
    including ``s -> 0`` (where ``f -> 0``), the line ``a = -D s`` and the corners; and they are at least as
    tight as the D-plane ``-D^2 s / 2`` at the polygon's vertices."""
    from fenchel_cvx.dual._bb_persp import envelope_planes, f_concave, polygon_planes
    rng = np.random.default_rng(5)
    K = 3000
    D = rng.uniform(0.1, 4.0, K)
    aL = -rng.uniform(0, 6, K) * rng.choice([1.0, 0.01], K)
    aU = aL + rng.uniform(0, 6, K) * rng.choice([1.0, 0.01], K)
    sL = rng.uniform(0, 2, K) * rng.choice([0.0, 1e-8, 1.0], K)
    sU = sL + rng.uniform(0, 2, K) * rng.choice([1e-6, 1.0], K)
    for fn in (polygon_planes, envelope_planes):
        out = fn(aL, aU, sL, sU, D if fn is polygon_planes else D ** 2)
        al, gm, de = out[:3]
        used = out[3] if fn is polygon_planes else np.ones(K, dtype=bool)   # elsewhere the caller falls back
        for _ in range(60):
            u, t = rng.random(K) ** rng.choice([1, 8]), rng.random(K) ** rng.choice([1, 8])
            s = sL + t * (sU - sL)
            a = np.maximum(aL + u * (aU - aL), -D * s)       # a point of the polygon
            inpoly = (a <= aU) & used
            f = np.where(s > 0, f_concave(a, np.where(s > 0, s, 1.0)), 0.0)
            pl = np.max(al * a + gm * s + de, axis=0)
            assert np.all(pl[inpoly] <= f[inpoly] + 1e-12 * (1 + np.abs(f[inpoly]))), fn.__name__
    al, gm, de, ok = polygon_planes(aL, aU, sL, sU, D)
    assert ok.mean() > 0.5
    s = sU[ok]
    a = np.maximum(aL[ok], -D[ok] * s)                      # the vertex where the D-plane is tight
    pl = np.max(al[:, ok] * a + gm[:, ok] * s + de[:, ok], axis=0)
    assert np.all(pl >= -0.5 * D[ok] ** 2 * s - 1e-9 * (1 + D[ok] ** 2 * s))
