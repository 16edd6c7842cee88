"""Theorem 1 in numbers: each activation's F, F*, B, and their numpy / torch / CVXPY forms agree.

Runtime: about 10 s on one CPU core (``python -m pytest -q tests/test_activations.py``).
"""

from __future__ import annotations

import math
import warnings

import cvxpy as cp
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from conftest import DEVICES, SEED, assert_close
from hypothesis import assume, given
from scipy.optimize import minimize_scalar

from fenchel_cvx.activations import ACTIVATIONS, Activation, LeakyReLU, ReLU, Sigmoid, Tanh, get_activation

ACTS = [ReLU(), LeakyReLU(0.1), LeakyReLU(2.5), Sigmoid(), Tanh()]
IDS = [repr(a) for a in ACTS]
BOUNDED = [a for a in ACTS if math.isfinite(a.domain[0]) or math.isfinite(a.domain[1])]


def lipschitz(act: Activation) -> float:
    """Lipschitz constant of phi; F is (1/Lip)-strongly convex, hence B(v, u) >= (v - phi(u))^2 / (2 Lip)."""
    if isinstance(act, LeakyReLU):
        return max(1.0, act.alpha)
    return 0.25 if isinstance(act, Sigmoid) else 1.0


def v_bounds(act: Activation, wide: float = 50.0) -> tuple[float, float]:
    lo, hi = act.domain
    return (max(lo, -wide), min(hi, wide))


def pair(act: Activation, u_max: float = 30.0, n_max: int = 16):
    """Strategy: equal-length float64 vectors (v in the domain, u) for ``act``."""
    lo, hi = v_bounds(act)
    v_el = st.floats(lo, hi, allow_nan=False)
    u_el = st.floats(-u_max, u_max, allow_nan=False)
    return st.integers(1, n_max).flatmap(
        lambda n: st.tuples(hnp.arrays(np.float64, n, elements=v_el), hnp.arrays(np.float64, n, elements=u_el)))


U_VEC = hnp.arrays(np.float64, st.integers(1, 16), elements=st.floats(-30, 30, allow_nan=False))


# -- Fenchel-Young: B >= 0, B = 0 on the graph, B > 0 off it ------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(data=st.data())
def test_B_is_the_fenchel_young_gap_and_nonnegative(act, data):
    v, u = data.draw(pair(act))
    Fv, Fu = act.F(v), act.F_conj(u)
    gap = Fv + Fu - u * v  # computed from F and F* independently of B's stable rewriting
    scale = np.maximum(1.0, np.abs(Fv) + np.abs(Fu) + np.abs(u * v))
    assert np.all(gap >= -1e-12 * scale), "Fenchel-Young inequality F(v) + F*(u) >= u v fails"
    B = act.B(v, u)
    assert np.all(B >= 0)
    assert_close(B, gap, rtol=1e-12, atol=0.0, scale=scale)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(u=U_VEC)
def test_B_vanishes_on_the_graph(act, u):
    assert np.all(act.B(act.forward(u), u) <= 1e-12)
    ut = torch.tensor(u, dtype=torch.float64)
    assert bool((act.B(act.forward(ut), ut) <= 1e-12).all())


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(data=st.data())
def test_B_is_positive_off_the_graph(act, data):
    v, u = data.draw(pair(act))
    keep = np.abs(v - act.forward(u)) >= 1e-3
    assume(keep.any())
    v, u = v[keep], u[keep]
    dist = np.abs(v - act.forward(u))
    B = act.B(v, u)
    assert np.all(B > 0)
    # Strong convexity of F gives a quantitative floor, a sharper check than "> 0".
    floor = dist ** 2 / (2.0 * lipschitz(act))
    assert np.all(floor * (1 - 1e-9) - 1e-12 * np.maximum(1.0, u * u) <= B), (B, floor)


# -- F* is the conjugate of F ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(u=st.floats(-8, 8, allow_nan=False))
def test_F_conj_is_the_conjugate_of_F(act, u):
    lo, hi = act.domain
    guess = float(act.forward(u))
    lo = lo if math.isfinite(lo) else guess - 5.0
    hi = hi if math.isfinite(hi) else guess + 5.0
    res = minimize_scalar(lambda v: -(u * v - float(act.F(v))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-13, "maxiter": 2000})
    sup = -res.fun
    Fc = float(act.F_conj(u))
    assert abs(sup - Fc) <= 1e-8 * max(1.0, abs(Fc)), (u, sup, Fc)
    # No v beats F*(u) (Fenchel-Young on a fine grid), so the optimizer's value is the sup, not a local max.
    grid = np.linspace(lo, hi, 20001)
    assert np.max(u * grid - act.F(grid)) <= Fc + 1e-12 * max(1.0, abs(Fc))


# -- ReLU is eq. (5), literally -----------------------------------------------------------------------------------
@given(v=st.floats(0, 50, allow_nan=False), u=st.floats(-50, 50, allow_nan=False))
def test_relu_matches_eq5(v, u):
    eq5 = 0.5 * v * v + 0.5 * max(u, 0.0) ** 2 - u * v
    got = float(ReLU().B(np.array(v), np.array(u)))
    assert abs(got - eq5) <= 1e-12 * max(1.0, v * v + u * u)
    assert float(ReLU().B(np.array(-v - 1e-9), np.array(u))) == math.inf


# -- outside the domain, B is +inf -----------------------------------------------------------------------------------
@pytest.mark.parametrize("act", BOUNDED, ids=[repr(a) for a in BOUNDED])
@given(excess=st.floats(1e-9, 1e3), u=st.floats(-30, 30), below=st.booleans())
def test_B_is_inf_outside_the_domain(act, excess, u, below):
    lo, hi = act.domain
    v = lo - excess if below or not math.isfinite(hi) else hi + excess
    assert float(act.B(np.array(v), np.array(u))) == math.inf
    assert float(act.F(np.array(v))) == math.inf
    assert act.B(torch.tensor([v], dtype=torch.float64), torch.tensor([u], dtype=torch.float64)).item() == math.inf
    assert not bool(act.in_domain(np.array(v)))


def test_leaky_relu_domain_is_the_real_line():
    act = LeakyReLU(0.2)
    v = np.array([-1e6, -1.0, 0.0, 1e6])
    assert np.all(np.isfinite(act.B(v, np.zeros(4))))


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_nan_propagates_instead_of_becoming_inf(act):
    B = act.B(np.array([np.nan]), np.array([0.3]))
    assert np.isnan(B).all()
    assert torch.isnan(act.B(torch.tensor([np.nan]), torch.tensor([0.3]))).all()


# -- numpy, torch and CVXPY agree ------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(data=st.data())
def test_numpy_and_torch_agree(act, data):
    v, u = data.draw(pair(act))
    for device in DEVICES:
        vt = torch.tensor(v, dtype=torch.float64, device=device)
        ut = torch.tensor(u, dtype=torch.float64, device=device)
        scale = np.maximum(1.0, np.abs(u * v) + u * u)
        for name, np_val, t_val in [
            ("forward", act.forward(u), act.forward(ut)),
            ("derivative", act.derivative(u), act.derivative(ut)),
            ("F", act.F(v), act.F(vt)),
            ("F_conj", act.F_conj(u), act.F_conj(ut)),
            ("B", act.B(v, u), act.B(vt, ut)),
        ]:
            assert t_val.device.type == device and t_val.dtype == torch.float64, name
            assert_close(t_val, np_val, rtol=1e-12, scale=scale, err_msg=f"{name} on {device}")


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_keeps_dtype_and_device(act, dtype, device):
    u = torch.linspace(-3, 3, 7, dtype=dtype, device=device)
    v = act.forward(u)
    for out in (v, act.B(v, u), act.F(v), act.F_conj(u), act.derivative(u)):
        assert out.dtype == dtype and out.device.type == device


def _random_pair(act: Activation, rng: np.random.Generator, shape=(3, 4)):
    lo, hi = v_bounds(act, wide=3.0)
    v = rng.uniform(lo, hi, size=shape)
    u = rng.normal(scale=2.0, size=shape)
    return v, u


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_cvx_forms_match_numpy(act):
    rng = np.random.default_rng(SEED)
    for _ in range(3):
        v0, u0 = _random_pair(act, rng)
        ref = act.B_sum(v0, u0)
        # variable on the v side, numeric u
        v = cp.Variable(v0.shape)
        expr, cons = act.cvx_B(v, u0)
        assert expr.is_convex() and cp.Problem(cp.Minimize(expr), cons).is_dcp()
        v.value = v0
        assert_close(expr.value, ref, rtol=1e-9, atol=1e-12)
        assert all(float(np.max(c.violation())) <= 0 for c in cons)
        # variable on the u side, numeric v
        u = cp.Variable(u0.shape)
        expr, cons = act.cvx_B(v0, u)
        assert expr.is_convex() and cp.Problem(cp.Minimize(expr), cons).is_dcp() and cons == []
        u.value = u0
        assert_close(expr.value, ref, rtol=1e-9, atol=1e-12)
        # the pieces
        assert_close(act.cvx_F(cp.Constant(v0)).value, np.sum(act.F(v0)), rtol=1e-9, atol=1e-12)
        assert_close(act.cvx_F_conj(cp.Constant(u0)).value, np.sum(act.F_conj(u0)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", BOUNDED, ids=[repr(a) for a in BOUNDED])
def test_cvx_domain_constraints_reject_outside_points(act):
    lo, hi = act.domain
    v = cp.Variable(2)
    _, cons = act.cvx_B(v, np.zeros(2))
    v.value = np.array([lo - 0.5, 0.5 * (lo + min(hi, lo + 2))])
    assert max(float(np.max(c.violation())) for c in cons) == pytest.approx(0.5)


# B(v0, .) is flat (curvature phi' <= 1/4 for the sigmoid): the argmin needs a tight duality gap.
TIGHT = {"tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11}


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_cvx_minimizers_are_phi_and_phi_inverse(act):
    """min_v B(v, u0) is attained at phi(u0); min_u B(v0, u) at phi^{-1}(v0) for v0 inside the domain."""
    rng = np.random.default_rng(SEED)
    u0 = rng.normal(scale=1.5, size=5)
    v = cp.Variable(5)
    expr, cons = act.cvx_B(v, u0)
    prob = cp.Problem(cp.Minimize(expr), cons)
    prob.solve(solver=cp.CLARABEL, **TIGHT)
    assert prob.status == cp.OPTIMAL
    assert_close(v.value, act.forward(u0), rtol=0, atol=1e-5)
    assert abs(prob.value) <= 1e-6

    lo, hi = v_bounds(act, wide=2.0)
    v0 = rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), size=5)
    u = cp.Variable(5)
    expr, cons = act.cvx_B(v0, u)
    prob = cp.Problem(cp.Minimize(expr), cons)
    prob.solve(solver=cp.CLARABEL, **TIGHT)
    assert prob.status == cp.OPTIMAL
    assert_close(u.value, act.inverse(v0), rtol=0, atol=1e-6)


# -- gradients ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(data=st.data())
def test_gradients_of_B(act, data):
    """d/du B(v, u) = phi(u) - v everywhere on the domain; d/dv B(v, u) = phi^{-1}(v) - u inside it."""
    lo, hi = v_bounds(act, wide=20.0)
    pad = 1e-3 * (hi - lo)
    v_el = st.floats(lo + pad, hi - pad)
    n = data.draw(st.integers(1, 8))
    v = data.draw(hnp.arrays(np.float64, n, elements=v_el))
    u = data.draw(hnp.arrays(np.float64, n, elements=st.floats(-10, 10)))
    # Away from B = 0 (where B's clip at zero stops the gradient) and from the kink of (leaky) ReLU at u = 0.
    keep = (np.abs(v - act.forward(u)) > 1e-6) & (np.abs(u) > 1e-9)
    assume(keep.any())
    v, u = v[keep], u[keep]
    vt = torch.tensor(v, requires_grad=True)
    ut = torch.tensor(u, requires_grad=True)
    act.B(vt, ut).sum().backward()
    scale = 1.0 + np.abs(u) + np.abs(act.inverse(v))
    assert_close(ut.grad, act.forward(u) - v, rtol=1e-9, scale=scale)
    assert_close(vt.grad, act.inverse(v) - u, rtol=1e-9, scale=scale)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
@given(u=hnp.arrays(np.float64, st.integers(1, 8), elements=st.floats(-8, 8)))
def test_derivative_and_inverse(act, u):
    u = u[np.abs(u) > 1e-6]  # the kink of (leaky) ReLU
    assume(u.size > 0)
    ut = torch.tensor(u, requires_grad=True)
    act.forward(ut).sum().backward()
    assert_close(act.derivative(u), ut.grad, rtol=1e-10, atol=1e-14)
    if isinstance(act, ReLU):
        u = np.abs(u)  # phi is invertible on the domain's interior only
    assert_close(act.inverse(act.forward(u)), u, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("act", ACTS, ids=IDS)
def test_derivative_of_nan_is_nan_and_of_infinities_is_the_limit(act):
    """NaN in, NaN out, for numpy and torch alike (a comparison alone turned NaN into ReLU's slope 0 or the leaky
    ReLU's alpha); at +-inf the limits of phi'."""
    u = [math.nan, -math.inf, math.inf]
    for d in (np.asarray(act.derivative(np.array(u))), act.derivative(torch.tensor(u, dtype=torch.float64)).numpy()):
        assert np.isnan(d[0])
        lo, hi = (0.0, 0.0) if isinstance(act, (Sigmoid, Tanh)) else \
            (getattr(act, "alpha", 0.0), 1.0)
        assert (d[1], d[2]) == (lo, hi)


@pytest.mark.parametrize("act", [ReLU(), LeakyReLU(0.1)], ids=["relu", "leaky"])
def test_B_of_an_infinite_v_in_the_domain_is_inf(act):
    """v = +inf is in ReLU's domain: B is +inf there (ReLU's select-free formula alone gives inf * 0 = NaN)."""
    for v, u in ((np.array([np.inf, np.inf]), np.array([1.0, -1.0])),
                 (torch.tensor([math.inf, math.inf]), torch.tensor([0.0, -2.0]))):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            val = act.B(v, u)
        assert np.all(np.asarray(val) == np.inf)
    assert np.isnan(act.B(np.array([np.nan]), np.array([1.0]))[0])


# -- registry ----------------------------------------------------------------------------------------------------------
def test_registry_names_and_instances():
    assert set(ACTIVATIONS) == {"relu", "leaky_relu", "sigmoid", "tanh"}
    for name, cls in ACTIVATIONS.items():
        act = get_activation(name)
        assert type(act) is cls and act.name == name
        assert get_activation(act) is act
    assert get_activation("leaky_relu", alpha=0.3) == LeakyReLU(0.3) != LeakyReLU(0.2)
    assert hash(LeakyReLU(0.3)) == hash(LeakyReLU(0.3))
    assert Tanh() == Tanh() and Tanh() != Sigmoid()
