"""The CVXPY reference face (fenchel_cvx.cvx): DCP/DPP, known answers, optimality, chunks, re-solves, errors.

Every parametrization is taken from the registries (SUBPROBLEMS, ACTIVATIONS, LOSSES) so that a new entry
cannot be silently left out. Instances are tiny (a few units, 12-40 data points); runtime about 40 s on a
quiet 2-core CPU.
"""

from __future__ import annotations

import inspect
import itertools
import warnings
import zlib

import numpy as np
import pytest
import scipy.optimize
import torch
from conftest import SEED, assert_close

from fenchel_cvx import cvx
from fenchel_cvx.activations import ACTIVATIONS, get_activation
from fenchel_cvx.errors import (
    ChoiceError,
    DomainError,
    FenchelError,
    InaccurateSolutionWarning,
    LabelError,
    NoMinimizerWarning,
    ShapeError,
    SolverError,
    ValueRangeError,
)
from fenchel_cvx.losses import LOSSES, get_loss
from fenchel_cvx.optimality import (
    OBJECTIVES,
    RESIDUALS,
    objective,
    residual,
    w_hidden_residual,
    w_last_residual,
    x_hidden_residual,
    x_last_residual,
)
from fenchel_cvx.subproblems import SUBPROBLEMS, SubproblemResult

ACTS = sorted(ACTIVATIONS)
LOSS_NAMES = sorted(LOSSES)
KKT_TOL = 1e-6  # relative first-order residual every returned point must meet


# -- data -------------------------------------------------------------------------------------------------------
def _rng(*salt: object) -> np.random.Generator:
    # crc32, not hash(): str hashes change from one interpreter run to the next
    return np.random.default_rng([SEED, *[zlib.crc32(s.encode()) for s in map(str, salt)]])


def _scaled(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    return rng.standard_normal((rows, cols)) / np.sqrt(cols)


def x_hidden_data(act: str, act_prev: str, p_in: int = 5, p_out: int = 4, m: int = 16, seed: object = 0):
    rng = _rng("xh", act, act_prev, seed)
    a, ap = get_activation(act), get_activation(act_prev)
    W, b, U = _scaled(rng, p_out, p_in), 0.3 * rng.standard_normal(p_out), rng.standard_normal((p_in, m))
    X_next = a.forward(W @ ap.forward(U) + b[:, None] + 0.5 * rng.standard_normal((p_out, m)))
    return W, b, X_next, U


def x_last_data(loss: str, act_prev: str, p_in: int = 5, p: int = 3, m: int = 16, seed: object = 0):
    rng = _rng("xl", loss, act_prev, seed)
    W, b, U = _scaled(rng, p, p_in), 0.3 * rng.standard_normal(p), rng.standard_normal((p_in, m))
    labels = rng.integers(0, p, m)
    Y = get_loss(loss).targets(labels, p) if loss == "ce" else rng.standard_normal((p, m))
    return W, b, Y, U


def w_hidden_data(act: str, p_in: int = 4, p_out: int = 3, m: int = 24, seed: object = 0):
    rng = _rng("wh", act, seed)
    a = get_activation(act)
    X_in = rng.standard_normal((p_in, m))
    X_next = a.forward(_scaled(rng, p_out, p_in) @ X_in + 0.5 * rng.standard_normal((p_out, m)))
    W0, b0 = _scaled(rng, p_out, p_in), rng.standard_normal(p_out)
    return X_in, X_next, W0, b0


def w_last_data(loss: str, p_in: int = 4, p: int = 3, m: int = 24, seed: object = 0):
    rng = _rng("wl", loss, seed)
    X_in = rng.standard_normal((p_in, m))
    labels = rng.integers(0, p, m)
    Y = get_loss(loss).targets(labels, p) if loss == "ce" else rng.standard_normal((p, m))
    W0, b0 = _scaled(rng, p, p_in), rng.standard_normal(p)
    return X_in, Y, W0, b0, labels


# -- the registry -------------------------------------------------------------------------------------------------
def test_every_subproblem_has_a_function_and_a_builder():
    assert set(cvx.FUNCTIONS) == set(SUBPROBLEMS) == set(cvx.BUILDERS)
    for name in SUBPROBLEMS:
        assert getattr(cvx, name) is cvx.FUNCTIONS[name]
        assert getattr(cvx, f"build_{name}") is cvx.BUILDERS[name]


@pytest.mark.parametrize("name, args", [
    ("x_hidden", ["W", "b", "X_next", "U_prev", "act", "act_prev", "lam", "lam_prev"]),
    ("x_last", ["W", "b", "Y", "U_prev", "loss", "act_prev", "lam_prev"]),
    ("w_hidden", ["X_in", "X_next", "act", "lam", "rho", "gamma", "W0", "b0", "bias"]),
    ("w_last", ["X_in", "Y", "loss", "rho", "gamma", "W0", "b0", "bias"]),
])
def test_signatures_follow_the_contract(name, args):
    params = list(inspect.signature(cvx.FUNCTIONS[name]).parameters)
    assert params[:len(args)] == args


# -- DCP and DPP for every combination ------------------------------------------------------------------------
def _all_models():
    for act, act_prev, bias in itertools.product(ACTS, ACTS, (True, False)):
        yield f"x_hidden-{act}-{act_prev}-bias{bias}", lambda a=act, ap=act_prev, bi=bias: cvx.build_x_hidden(
            (3, 4), 5, act=a, act_prev=ap, lam=0.5, lam_prev=2.0, bias=bi)
    for loss, act_prev, bias in itertools.product(LOSS_NAMES, ACTS, (True, False)):
        yield f"x_last-{loss}-{act_prev}-bias{bias}", lambda lo=loss, ap=act_prev, bi=bias: cvx.build_x_last(
            (3, 4), 5, loss=lo, act_prev=ap, lam_prev=2.0, bias=bi)
    for act, gamma, bias in itertools.product(ACTS, (0.0, 0.5), (True, False)):
        yield f"w_hidden-{act}-gamma{gamma}-bias{bias}", lambda a=act, g=gamma, bi=bias: cvx.build_w_hidden(
            (3, 4), 5, act=a, lam=0.5, rho=0.1, gamma=g, bias=bi)
    for loss, gamma, bias in itertools.product(LOSS_NAMES, (0.0, 0.5), (True, False)):
        yield f"w_last-{loss}-gamma{gamma}-bias{bias}", lambda lo=loss, g=gamma, bi=bias: cvx.build_w_last(
            (3, 4), 5, loss=lo, rho=0.1, gamma=g, bias=bi)


_MODELS = dict(_all_models())


def test_the_combination_list_covers_every_subproblem():
    assert {k.split("-")[0] for k in _MODELS} == set(SUBPROBLEMS)
    assert len(_MODELS) == 2 * len(ACTS) ** 2 + 2 * len(LOSS_NAMES) * len(ACTS) + 4 * len(ACTS) + 4 * len(LOSS_NAMES)


@pytest.mark.parametrize("key", sorted(_MODELS))
def test_models_are_dcp_and_dpp(key):
    model = _MODELS[key]()
    assert model.problem.is_dcp()
    assert model.problem.is_dpp()
    assert model.is_dcp() and model.is_dpp()
    # parameters only in the constraints (what keeps compilation cheap), one scalar offset in the objective
    assert [p.name() for p in model.problem.objective.parameters()] == ["offset"]
    assert model.subproblem in key and model.subproblem in str(model)


@pytest.mark.parametrize("act_prev", ACTS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_default_solver_follows_the_cone(loss, act_prev):
    qp = act_prev in ("relu", "leaky_relu") and loss == "mse"
    model = cvx.build_x_last((3, 4), 5, loss=loss, act_prev=act_prev, lam_prev=1.0)
    assert model.default_solver == ("OSQP" if qp else "CLARABEL")
    assert model.problem.is_qp() == qp


# -- known answers ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act_prev", ACTS)
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_x_hidden_with_W_zero_returns_phi_of_U_prev(act, act_prev):
    W, b, X_next, U = x_hidden_data(act, act_prev)
    W = np.zeros_like(W)
    a, ap = get_activation(act), get_activation(act_prev)
    res = cvx.x_hidden(W, b, X_next, U, act=act, act_prev=act_prev, lam=0.7, lam_prev=1.3)
    assert res.status == "optimal"
    assert_close(res.Z, ap.forward(U), rtol=1e-8, atol=1e-8)
    # the first penalty does not depend on Z; the second is zero at the answer
    assert_close(res.value, 0.7 * a.B_sum(X_next, np.broadcast_to(b[:, None], X_next.shape)), rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("act", ACTS)
def test_appendix_b_w_hidden_recovers_the_teacher(act):
    rng = _rng("appB", act)
    n, p, m = 4, 3, 60
    W_star, b_star = rng.standard_normal((p, n)), np.abs(rng.standard_normal(p)) + 0.5
    X_in = rng.standard_normal((n, m))
    U_star = W_star @ X_in + b_star[:, None]
    # "data that determine W*": for a ReLU each unit needs n + 1 samples on its active side (a dead unit's
    # weights are not determined -- the value is still 0 there)
    assert np.all((U_star > 0).sum(axis=1) >= 2 * (n + 1))
    X_next = get_activation(act).forward(U_star)
    res = cvx.w_hidden(X_in, X_next, act=act, lam=1.0, rho=0.0)
    assert res.status == "optimal"
    assert abs(res.value) < 1e-8
    assert_close(res.W, W_star, rtol=1e-6, atol=1e-6)
    assert_close(res.b, b_star, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rho, gamma", [(0.3, 0.0), (0.0, 0.7), (0.2, 0.5)])
def test_w_last_mse_is_the_closed_form_ridge(rho, gamma, bias):
    X_in, Y, W0, b0, _ = w_last_data("mse")
    n = X_in.shape[0]
    Xa = np.vstack([X_in, np.ones((1, X_in.shape[1]))]) if bias else X_in
    # normal equations of ||Y - [W b] Xa||^2 + rho ||W||^2 + gamma ||[W b] - [W0 b0]||^2
    D = np.diag(np.r_[np.full(n, rho + gamma), [gamma] if bias else []])
    A0 = np.hstack([W0, b0[:, None]]) if bias else W0
    theta = np.linalg.solve(Xa @ Xa.T + D, (Y @ Xa.T + gamma * A0).T).T
    res = cvx.w_last(X_in, Y, loss="mse", rho=rho, gamma=gamma, W0=W0, b0=b0, bias=bias)
    assert res.status == "optimal"
    assert_close(res.W, theta[:, :n], rtol=1e-7, atol=1e-8)
    if bias:
        assert_close(res.b, theta[:, n], rtol=1e-7, atol=1e-8)
    else:
        assert res.b is None
    ridge_value = np.sum((Y - theta @ Xa) ** 2) + rho * np.sum(theta[:, :n] ** 2) + gamma * np.sum((theta - A0) ** 2)
    assert_close(res.value, ridge_value, rtol=1e-9)


@pytest.mark.parametrize("bias", [True, False])
def test_x_last_mse_relu_is_nonnegative_least_squares(bias):
    # ||Y - b - W z||^2 + lam B_relu(z, u) = ||A z - y||^2 + lam (relu(u)^2 - u^2) / 2 on z >= 0,
    # A = [W; sqrt(lam/2) I], y = [Y - b; sqrt(lam/2) u]  (the remark after eq. 15)
    W, b, Y, U = x_last_data("mse", "relu")
    b = b if bias else None
    lam = 0.8
    s = np.sqrt(lam / 2.0)
    A = np.vstack([W, s * np.eye(W.shape[1])])
    Yb = Y - (b[:, None] if bias else 0.0)
    Z = np.column_stack([scipy.optimize.nnls(A, np.r_[Yb[:, j], s * U[:, j]])[0] for j in range(Y.shape[1])])
    const = lam * 0.5 * np.sum(np.maximum(U, 0) ** 2 - U ** 2)
    nnls_value = sum(np.sum((A @ Z[:, j] - np.r_[Yb[:, j], s * U[:, j]]) ** 2) for j in range(Y.shape[1])) + const
    res = cvx.x_last(W, b, Y, U, loss="mse", act_prev="relu", lam_prev=lam)
    assert res.status == "optimal"
    assert_close(res.Z, Z, rtol=1e-7, atol=1e-8)
    assert_close(res.value, nnls_value, rtol=1e-9)


@pytest.mark.parametrize("act_prev", ACTS)
def test_x_last_with_W_zero_returns_phi_of_U_prev(act_prev):
    W, b, Y, U = x_last_data("ce", act_prev)
    res = cvx.x_last(np.zeros_like(W), b, Y, U, loss="ce", act_prev=act_prev, lam_prev=1.0)
    assert_close(res.Z, get_activation(act_prev).forward(U), rtol=1e-8, atol=1e-8)


# -- optimality on random instances ---------------------------------------------------------------------------
@pytest.mark.parametrize("act_prev", ACTS)
@pytest.mark.parametrize("act", ACTS)
def test_x_hidden_optimality(act, act_prev):
    W, b, X_next, U = x_hidden_data(act, act_prev, seed="kkt")
    res = cvx.x_hidden(W, b, X_next, U, act=act, act_prev=act_prev, lam=0.6, lam_prev=1.4)
    assert isinstance(res, SubproblemResult) and res.subproblem == "x_hidden"
    assert res.status == "optimal" and res.converged and res.backend == "cvx"
    assert res.Z.shape == U.shape and get_activation(act_prev).in_domain(res.Z).all()
    r = x_hidden_residual(res.Z, W, b, X_next, U, act=act, act_prev=act_prev, lam=0.6, lam_prev=1.4)
    assert r.relative < KKT_TOL and r.per_item.shape == (U.shape[1],)
    assert res.info["kkt_residual"] == pytest.approx(r.relative)
    # the reported residual: per column, relative to the problem's scale (the same measure as the torch face)
    np.testing.assert_allclose(res.residual, r.per_item / r.scale, rtol=1e-12)
    assert res.max_residual == float(res.residual.max())
    # the numeric value and the solver's objective agree (both include the constants), and B >= 0
    assert res.info["value_gap"] < 1e-6 and res.value >= 0
    # nearby points in the domain are worse
    for eps in (1e-3, -1e-3):
        Zp = np.clip(res.Z + eps, *get_activation(act_prev).domain)
        val = 0.6 * get_activation(act).B_sum(X_next, W @ Zp + b[:, None]) + 1.4 * get_activation(
            act_prev).B_sum(Zp, U)
        assert val >= res.value - 1e-12


@pytest.mark.parametrize("act_prev", ACTS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_x_last_optimality(loss, act_prev):
    W, b, Y, U = x_last_data(loss, act_prev, seed="kkt")
    res = cvx.x_last(W, b, Y, U, loss=loss, act_prev=act_prev, lam_prev=0.9)
    assert res.status == "optimal"
    r = x_last_residual(res.Z, W, b, Y, U, loss=loss, act_prev=act_prev, lam_prev=0.9)
    assert r.relative < KKT_TOL
    assert res.info["value_gap"] < 1e-6


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.4])
@pytest.mark.parametrize("act", ACTS)
def test_w_hidden_optimality(act, gamma, bias):
    X_in, X_next, W0, b0 = w_hidden_data(act, seed="kkt")
    res = cvx.w_hidden(X_in, X_next, act=act, lam=0.8, rho=0.1, gamma=gamma, W0=W0, b0=b0, bias=bias)
    assert res.status == "optimal" and res.W.shape == W0.shape
    assert (res.b is None) == (not bias)
    r = w_hidden_residual(res.W, res.b, X_in, X_next, act=act, lam=0.8, rho=0.1, gamma=gamma, W0=W0,
                          b0=b0 if bias else None)
    assert r.relative < KKT_TOL and r.per_item.shape == (W0.shape[0],)
    np.testing.assert_allclose(res.residual, r.per_item / r.scale, rtol=1e-12)
    assert res.info["value_gap"] < 1e-6


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("gamma", [0.0, 0.4])
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_w_last_optimality(loss, gamma, bias):
    X_in, Y, W0, b0, _ = w_last_data(loss, seed="kkt")
    res = cvx.w_last(X_in, Y, loss=loss, rho=0.2, gamma=gamma, W0=W0, b0=b0, bias=bias)
    assert res.status == "optimal"
    r = w_last_residual(res.W, res.b, X_in, Y, loss=loss, rho=0.2, gamma=gamma, W0=W0, b0=b0 if bias else None)
    assert r.relative < KKT_TOL
    assert res.residual.shape == (W0.shape[0],)  # per row of [W, b], like the torch face
    np.testing.assert_allclose(res.residual, r.per_item / r.scale, rtol=1e-12)
    assert res.info["value_gap"] < 1e-6


def test_relu_x_hidden_kkt_with_cvxpy_duals():
    # stationarity grad f(Z) = nu and complementarity nu * Z = 0 with CVXPY's dual of Z >= 0
    act = act_prev = "relu"
    W, b, X_next, U = x_hidden_data(act, act_prev, seed="duals")
    lam, lam_prev = 0.6, 1.4
    res = cvx.x_hidden(W, b, X_next, U, act=act, act_prev=act_prev, lam=lam, lam_prev=lam_prev)
    nu = res.info["duals"]["lower"]
    grad = lam * W.T @ (np.maximum(W @ res.Z + b[:, None], 0) - X_next) + lam_prev * (res.Z - U)
    scale = np.abs(lam * W.T @ X_next).max() + lam_prev * np.abs(U).max()
    assert np.all(nu >= -1e-9 * scale)
    assert np.max(np.abs(grad - nu)) < 1e-7 * scale
    assert np.max(np.abs(nu * res.Z)) < 1e-7 * scale
    assert (res.Z == 0).any() and (nu > 1e-6).any()  # the constraint is active somewhere: a real test


# -- the residual functions themselves ------------------------------------------------------------------------
def test_residuals_cover_the_registry():
    assert set(RESIDUALS) == set(SUBPROBLEMS) == set(OBJECTIVES)


@pytest.mark.parametrize("name", sorted(SUBPROBLEMS))
def test_the_face_value_is_the_shared_objective(name):
    """Every CVXPY result's ``value`` is ``fenchel_cvx.optimality.objective`` at its point (one formula)."""
    if name == "x_hidden":
        W, b, X_next, U = x_hidden_data("relu", "sigmoid", seed="objective")
        data = {"W": W, "b": b, "X_next": X_next, "U_prev": U, "act": "relu", "act_prev": "sigmoid", "lam": 0.6,
                "lam_prev": 1.4}
    elif name == "x_last":
        W, b, Y, U = x_last_data("ce", "relu", seed="objective")
        data = {"W": W, "b": b, "Y": Y, "U_prev": U, "loss": "ce", "act_prev": "relu", "lam_prev": 0.9}
    elif name == "w_hidden":
        X_in, X_next, W0, b0 = w_hidden_data("relu", seed="objective")
        data = {"X_in": X_in, "X_next": X_next, "act": "relu", "lam": 0.8, "rho": 0.1, "gamma": 0.4, "W0": W0,
                "b0": b0}
    else:
        X_in, Y, W0, b0, _ = w_last_data("mse", seed="objective")
        data = {"X_in": X_in, "Y": Y, "loss": "mse", "rho": 0.2, "gamma": 0.4, "W0": W0, "b0": b0}
    res = cvx.FUNCTIONS[name](**data)
    point = res.Z if name.startswith("x") else {"W": res.W, "b": res.b}
    assert objective(name, point, **data) == res.value
    assert residual(name, point, **data).relative == res.info["kkt_residual"]


@pytest.mark.parametrize("act", ACTS)
def test_w_hidden_residual_is_the_gradient(act):
    X_in, X_next, W0, b0 = w_hidden_data(act, seed="fd")
    rng = _rng("fd-point", act)
    W, b = rng.standard_normal(W0.shape), rng.standard_normal(b0.shape)
    a, lam, rho, gamma = get_activation(act), 0.8, 0.3, 0.2

    def f(theta):
        Wt, bt = theta[:, :-1], theta[:, -1]
        return (lam * a.B_sum(X_next, Wt @ X_in + bt[:, None]) + rho * np.sum(Wt ** 2)
                + gamma * (np.sum((Wt - W0) ** 2) + np.sum((bt - b0) ** 2)))

    theta, h = np.hstack([W, b[:, None]]), 1e-6
    G = np.zeros_like(theta)
    for i, j in np.ndindex(*theta.shape):
        e = np.zeros_like(theta)
        e[i, j] = h
        G[i, j] = (f(theta + e) - f(theta - e)) / (2 * h)
    r = w_hidden_residual(W, b, X_in, X_next, act=act, lam=lam, rho=rho, gamma=gamma, W0=W0, b0=b0)
    assert_close(r.per_item, np.linalg.norm(G, axis=1), rtol=1e-5)


@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_w_last_residual_is_the_gradient(loss):
    X_in, Y, W0, b0, _ = w_last_data(loss, seed="fd")
    rng = _rng("fd-point", loss)
    W, b = rng.standard_normal(W0.shape), rng.standard_normal(b0.shape)
    L, rho = get_loss(loss), 0.3

    def f(theta):
        return L.value(Y, theta[:, :-1] @ X_in + theta[:, -1:]) + rho * np.sum(theta[:, :-1] ** 2)

    theta, h = np.hstack([W, b[:, None]]), 1e-6
    G = np.zeros_like(theta)
    for i, j in np.ndindex(*theta.shape):
        e = np.zeros_like(theta)
        e[i, j] = h
        G[i, j] = (f(theta + e) - f(theta - e)) / (2 * h)
    r = w_last_residual(W, b, X_in, Y, loss=loss, rho=rho)
    assert_close(r.per_item, np.linalg.norm(G, axis=1), rtol=1e-5)


@pytest.mark.parametrize("act_prev", ACTS)
def test_x_residual_zero_at_the_answer_and_positive_elsewhere(act_prev):
    W, b, X_next, U = x_hidden_data("tanh", act_prev, seed="res")
    Z = get_activation(act_prev).forward(U)
    kw = {"act": "tanh", "act_prev": act_prev, "lam": 1.0, "lam_prev": 1.0}
    assert x_hidden_residual(Z, 0 * W, b, X_next, U, **kw).relative < 1e-15
    assert x_hidden_residual(Z + 0.01 * (Z < 0.5), 0 * W, b, X_next, U, **kw).relative > 1e-4


def test_residuals_accept_torch_tensors():
    W, b, X_next, U = x_hidden_data("sigmoid", "relu", seed="torch")
    Z = np.maximum(U, 0)
    kw = {"act": "sigmoid", "act_prev": "relu", "lam": 0.5, "lam_prev": 1.5}
    rn = x_hidden_residual(Z, W, b, X_next, U, **kw)
    rt = x_hidden_residual(*(torch.as_tensor(x) for x in (Z, W, b, X_next, U)), **kw)
    assert isinstance(rt.per_item, torch.Tensor)
    assert_close(rt.per_item, rn.per_item, rtol=1e-12)
    assert rt.relative == pytest.approx(rn.relative, rel=1e-12)


# -- chunks, re-solves, polishing --------------------------------------------------------------------------------
def test_chunked_x_updates_equal_unchunked():
    W, b, X_next, U = x_hidden_data("sigmoid", "relu", m=20, seed="chunk")
    kw = {"act": "sigmoid", "act_prev": "relu", "lam": 0.6, "lam_prev": 1.4}
    one = cvx.x_hidden(W, b, X_next, U, chunk=None, **kw)
    many = cvx.x_hidden(W, b, X_next, U, chunk=7, **kw)  # blocks of 7, 7, 6: two compiled models
    assert one.info["chunks"] == 1 and many.info["chunks"] == 3
    # iterations: the longest-running chunk (the chunks are independent problems), not their sum
    assert many.iterations == max(many.info["chunk_iterations"]) > 0 and len(many.info["chunk_iterations"]) == 3
    assert_close(many.Z, one.Z, rtol=1e-8, atol=1e-9)
    assert many.value == pytest.approx(one.value, rel=1e-10)
    W, b, Y, U = x_last_data("mse", "relu", m=20, seed="chunk")
    one = cvx.x_last(W, b, Y, U, loss="mse", act_prev="relu", lam_prev=0.7, chunk=None)
    many = cvx.x_last(W, b, Y, U, loss="mse", act_prev="relu", lam_prev=0.7, chunk=6)
    assert many.info["chunks"] == 4
    assert_close(many.Z, one.Z, rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_chunked_w_hidden_equals_unchunked(act):
    X_in, X_next, W0, b0 = w_hidden_data(act, p_out=5, seed="chunk")
    kw = {"act": act, "lam": 0.8, "rho": 0.1, "gamma": 0.3, "W0": W0, "b0": b0}
    one = cvx.w_hidden(X_in, X_next, chunk=None, **kw)
    rows = cvx.w_hidden(X_in, X_next, chunk=2, **kw)
    assert rows.info["chunks"] == 3
    assert_close(rows.W, one.W, rtol=1e-8, atol=1e-9)
    assert_close(rows.b, one.b, rtol=1e-8, atol=1e-9)
    assert rows.value == pytest.approx(one.value, rel=1e-10)


@pytest.mark.parametrize("act_prev", ["relu", "sigmoid"])  # OSQP (compiled once, DPP) and Clarabel
def test_builder_resolve_with_new_data_equals_a_fresh_solve(act_prev):
    W1, b1, X1, U1 = x_hidden_data("relu", act_prev, seed="dpp1")
    W2, b2, X2, U2 = x_hidden_data("relu", act_prev, seed="dpp2")
    kw = {"act": "relu", "act_prev": act_prev, "lam": 0.6, "lam_prev": 1.4}
    model = cvx.build_x_hidden(W1.shape, X1.shape[1], **kw)
    first = model.solve(W1, b1, X1, U1)
    program = model.problem._cache.param_prog
    again = model.solve(W2, b2, X2, U2)
    if first.solver == "OSQP":
        assert model.problem._cache.param_prog is program  # compiled once, re-used
    assert np.array_equal(model.params["W"].value, W2)
    fresh = cvx.x_hidden(W2, b2, X2, U2, chunk=None, **kw)
    assert_close(again.Z, fresh.Z, rtol=1e-8, atol=1e-9)
    assert again.value == pytest.approx(fresh.value, rel=1e-10)
    assert not np.allclose(first.Z, again.Z)


def test_w_builders_resolve_with_new_data():
    X1, Xn1, W01, b01 = w_hidden_data("sigmoid", seed="dpp1")
    X2, Xn2, W02, b02 = w_hidden_data("sigmoid", seed="dpp2")
    model = cvx.build_w_hidden(W01.shape, X1.shape[1], act="sigmoid", lam=1.0, rho=0.1, gamma=0.5)
    model.solve(X1, Xn1, W0=W01, b0=b01)
    again = model.solve(X2, Xn2, W0=W02, b0=b02)
    fresh = cvx.w_hidden(X2, Xn2, act="sigmoid", lam=1.0, rho=0.1, gamma=0.5, W0=W02, b0=b02)
    assert_close(again.W, fresh.W, rtol=1e-8, atol=1e-9)
    X_in, Y, W0, _b0, labels = w_last_data("ce", seed="dpp")
    model = cvx.build_w_last(W0.shape, X_in.shape[1], loss="ce", rho=0.1)
    a = model.solve(X_in, labels)
    fresh = cvx.w_last(X_in, Y, loss="ce", rho=0.1)
    assert a.value == pytest.approx(fresh.value, rel=1e-10)


def test_model_rejects_data_of_another_shape():
    model = cvx.build_x_hidden((3, 4), 5, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
    rng = _rng("shape")
    with pytest.raises(ShapeError, match=r"built for W of shape \(3, 4\)"):
        model.solve(rng.standard_normal((3, 4)), None, np.ones((3, 6)), np.ones((4, 6)))
    model = cvx.build_x_hidden((3, 4), 5, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0, bias=False)
    with pytest.raises(ShapeError, match="bias=False"):
        model.solve(rng.standard_normal((3, 4)), np.ones(3), np.ones((3, 5)), np.ones((4, 5)))


def test_polishing_only_improves_and_is_reported():
    W, b, X_next, U = x_hidden_data("tanh", "sigmoid", seed="polish")
    kw = {"act": "tanh", "act_prev": "sigmoid", "lam": 0.6, "lam_prev": 1.4, "solver_opts": {"tol_gap_abs": 1e-5,
                                                                                  "tol_gap_rel": 1e-5}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InaccurateSolutionWarning)
        raw = cvx.x_hidden(W, b, X_next, U, polish=False, **kw)
    polished = cvx.x_hidden(W, b, X_next, U, **kw)
    assert "polish" not in raw.info and polished.info["polish"]["accepted"]
    assert polished.info["kkt_residual"] < 1e-10 < raw.info["kkt_residual"]
    assert polished.value <= raw.value + 1e-12


# -- solver status handling ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "sigmoid"])  # OSQP and Clarabel
def test_forced_failure_raises_solver_error(act):
    W, b, X_next, U = x_hidden_data(act, "relu", seed="fail")
    with pytest.raises(SolverError, match="try another solver") as info:
        cvx.x_hidden(W, b, X_next, U, act=act, act_prev="relu", lam=1.0, lam_prev=1.0,
                     solver_opts={"max_iter": 1})
    assert info.value.subproblem == "x_hidden"
    assert info.value.status == "user_limit"
    assert info.value.solver == ("OSQP" if act == "relu" else "CLARABEL")


def test_unknown_solver_is_a_choice_error_and_a_cone_mismatch_a_solver_error():
    W, b, X_next, U = x_hidden_data("sigmoid", "relu", seed="fail")
    with pytest.raises(ChoiceError, match="solver: expected one of .*got 'NO_SUCH'; x_hidden: not installed"):
        cvx.x_hidden(W, b, X_next, U, act="sigmoid", act_prev="relu", lam=1.0, lam_prev=1.0, solver="NO_SUCH")
    with pytest.raises(SolverError) as info:  # OSQP cannot take an exponential cone
        cvx.x_hidden(W, b, X_next, U, act="sigmoid", act_prev="relu", lam=1.0, lam_prev=1.0, solver="OSQP")
    assert info.value.solver == "OSQP" and "CLARABEL" in str(info.value)


def test_inaccurate_status_warns_unless_the_point_is_certified():
    W, b, X_next, U = x_hidden_data("sigmoid", "sigmoid", seed="scs")
    kw = {"act": "sigmoid", "act_prev": "sigmoid", "lam": 1.0, "lam_prev": 1.0, "solver": "SCS",
              "solver_opts": {"max_iters": 20}}
    with pytest.warns(InaccurateSolutionWarning, match=r"x_hidden: solver SCS returned 'optimal_inaccurate'"):
        raw = cvx.x_hidden(W, b, X_next, U, polish=False, **kw)
    assert raw.status == "optimal_inaccurate" and not raw.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error", InaccurateSolutionWarning)
        certified = cvx.x_hidden(W, b, X_next, U, **kw)  # Newton polishing certifies the point
    assert certified.status == "optimal" and certified.info["solver_status"] == "optimal_inaccurate"
    assert certified.info["kkt_residual"] <= 1e-9


def test_w_hidden_without_a_minimizer():
    # X_next = 0 on a sigmoid: B(0, u) = softplus(u) decreases forever as u -> -inf, so with rho = 0 the
    # infimum 0 is not attained (rho alone does not help: it leaves b free): the solver returns an
    # epsilon-optimal point far out (value ~ 0, b << 0), an error message, should it fail, says what to do,
    # and with gamma > 0 there is a proper minimizer.
    X_in = _rng("unbounded").standard_normal((3, 10))
    res = cvx.w_hidden(X_in, np.zeros((2, 10)), act="sigmoid", lam=1.0, rho=0.0)
    assert 0 <= res.value < 1e-8 and np.all(res.b < -10)
    with pytest.raises(SolverError, match="gamma > 0 or bias=False"):
        cvx.w_hidden(X_in, np.zeros((2, 10)), act="sigmoid", lam=1.0, rho=0.1, solver_opts={"max_iter": 2})
    res = cvx.w_hidden(X_in, np.zeros((2, 10)), act="sigmoid", lam=1.0, rho=0.1, gamma=0.1, W0=np.zeros((2, 3)),
                       b0=np.zeros(2))
    assert res.status == "optimal" and res.info["kkt_residual"] < KKT_TOL and np.all(np.abs(res.b) < 10)


# -- input validation ---------------------------------------------------------------------------------------------
def test_x_hidden_validation():
    W, b, X_next, U = x_hidden_data("relu", "relu", seed="bad")
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 1.0}
    with pytest.raises(ShapeError, match=r"X_next: expected shape \(4, any\).*got \(5, 16\)"):
        cvx.x_hidden(W, b, np.ones((5, 16)), U, **kw)
    with pytest.raises(ShapeError, match=r"U_prev: expected shape \(5, 16\).*got \(5, 15\)"):
        cvx.x_hidden(W, b, X_next, U[:, :15], **kw)
    with pytest.raises(ShapeError, match=r"b: expected shape \(4,\)"):
        cvx.x_hidden(W, b[:3], X_next, U, **kw)
    with pytest.raises(ShapeError, match="2-D"):
        cvx.x_hidden(W[0], b, X_next, U, **kw)
    bad = U.copy()
    bad[1, 2] = np.nan
    with pytest.raises(DomainError, match="U_prev: expected finite"):
        cvx.x_hidden(W, b, X_next, bad, **kw)
    with pytest.raises(DomainError, match="X_next: expected values in the domain"):
        cvx.x_hidden(W, b, X_next - 1.0, U, **kw)
    with pytest.raises(ValueRangeError, match="lam: expected > 0"):
        cvx.x_hidden(W, b, X_next, U, **{**kw, "lam": 0.0})
    with pytest.raises(ValueRangeError, match="lam_prev: expected > 0"):
        cvx.x_hidden(W, b, X_next, U, **{**kw, "lam_prev": -1.0})
    with pytest.raises(ValueRangeError, match="chunk"):
        cvx.x_hidden(W, b, X_next, U, chunk=0, **kw)
    with pytest.raises(ChoiceError, match="chunk: expected one of 'auto', got 'big'"):
        cvx.x_hidden(W, b, X_next, U, chunk="big", **kw)
    with pytest.raises(FenchelError, match="act: expected one of"):
        cvx.x_hidden(W, b, X_next, U, **{**kw, "act": "swish"})


def test_x_last_validation():
    W, b, Y, U = x_last_data("ce", "relu", seed="bad")
    kw = {"loss": "ce", "act_prev": "relu", "lam_prev": 1.0}
    with pytest.raises(LabelError, match="labels must lie in 0..2"):
        cvx.x_last(W, b, np.full(16, 3), U, **kw)
    with pytest.raises(LabelError, match="probability columns"):
        cvx.x_last(W, b, 2.0 * Y, U, **kw)
    with pytest.raises(ShapeError, match="Y: expected 16 samples"):
        cvx.x_last(W, b, Y[:, :10], U, **kw)
    labels = np.argmax(Y, axis=0)
    a = cvx.x_last(W, b, labels, U, **kw)
    c = cvx.x_last(W, b, Y, U, **kw)
    assert_close(a.Z, c.Z, rtol=1e-10, atol=1e-12)


def test_w_validation():
    X_in, X_next, W0, b0 = w_hidden_data("sigmoid", seed="bad")
    kw = {"act": "sigmoid", "lam": 1.0, "rho": 0.1}
    with pytest.raises(ShapeError, match="W0: required when gamma > 0"):
        cvx.w_hidden(X_in, X_next, gamma=0.5, **kw)
    with pytest.raises(ShapeError, match="b0: required when gamma > 0 and bias=True"):
        cvx.w_hidden(X_in, X_next, gamma=0.5, W0=W0, **kw)
    with pytest.raises(ShapeError, match=r"W0: expected shape \(3, 4\)"):
        cvx.w_hidden(X_in, X_next, gamma=0.5, W0=W0.T, b0=b0, **kw)
    with pytest.raises(ValueRangeError, match="rho: expected >= 0"):
        cvx.w_hidden(X_in, X_next, **{**kw, "rho": -0.1})
    with pytest.raises(ValueRangeError, match="gamma: expected >= 0"):
        cvx.w_hidden(X_in, X_next, gamma=-1.0, **kw)
    with pytest.raises(DomainError, match="X_next: expected values in the domain \\[0, 1\\]"):
        cvx.w_hidden(X_in, X_next + 1.0, **kw)
    with pytest.raises(ShapeError, match=r"X_next: expected shape \(any, 24\)"):
        cvx.w_hidden(X_in, X_next[:, :5], **kw)
    res = cvx.w_hidden(X_in, X_next, gamma=0.5, W0=W0, bias=False, **kw)  # b0 not needed without a bias
    assert res.b is None
    X_in, Y, W0, b0, labels = w_last_data("ce", seed="bad")
    with pytest.raises(ShapeError, match="Y: expected 20 samples"):
        cvx.w_last(X_in[:, :20], labels, loss="ce", rho=0.1)
    with pytest.raises(ShapeError, match="Y: expected 5 rows"):
        cvx.w_last(X_in, Y, loss="ce", rho=0.1, p=5)


def test_w_last_labels_infer_the_output_count():
    X_in, Y, _W0, _b0, labels = w_last_data("ce", seed="labels")
    a = cvx.w_last(X_in, labels, loss="ce", rho=0.1)
    assert a.W.shape == (Y.shape[0], X_in.shape[0])
    with pytest.warns(NoMinimizerWarning, match="classes 3, 4 of the 5"):  # two classes absent from the batch
        wide = cvx.w_last(X_in, labels, loss="ce", rho=0.1, p=5)
    assert wide.W.shape == (5, X_in.shape[0])
    assert_close(a.value, cvx.w_last(X_in, Y, loss="ce", rho=0.1).value, rtol=1e-10)


def test_torch_inputs_are_accepted():
    W, b, X_next, U = x_hidden_data("relu", "relu", seed="torch")
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 1.0}
    a = cvx.x_hidden(*(torch.as_tensor(x, dtype=torch.float32) for x in (W, b, X_next, U)), **kw)
    c = cvx.x_hidden(*(torch.as_tensor(x, dtype=torch.float32).double().numpy() for x in (W, b, X_next, U)), **kw)
    assert isinstance(a.Z, np.ndarray)
    assert_close(a.Z, c.Z, rtol=1e-12, atol=1e-14)


def test_cache_reuses_models_and_can_be_cleared():
    from fenchel_cvx.cvx import _model

    cvx.clear_model_cache()
    W, b, X_next, U = x_hidden_data("relu", "relu", m=12, seed="cache")
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 1.0}
    cvx.x_hidden(W, b, X_next, U, chunk=4, **kw)  # three blocks of one shape: one model
    assert len(_model._CACHE) == 1
    cvx.clear_model_cache()
    assert len(_model._CACHE) == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("act, act_prev", list(itertools.product(ACTS, ACTS)))
def test_x_hidden_optimality_bigger(act, act_prev, seed):
    W, b, X_next, U = x_hidden_data(act, act_prev, p_in=15, p_out=12, m=80, seed=seed)
    res = cvx.x_hidden(W, b, X_next, U, act=act, act_prev=act_prev, lam=1.0, lam_prev=0.5)
    assert res.status == "optimal" and res.info["kkt_residual"] < KKT_TOL


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_last_layer_optimality_bigger(loss, seed):
    W, b, Y, U = x_last_data(loss, "relu", p_in=15, p=6, m=80, seed=seed)
    res = cvx.x_last(W, b, Y, U, loss=loss, act_prev="relu", lam_prev=0.5)
    assert res.status == "optimal" and res.info["kkt_residual"] < KKT_TOL
    X_in, Y, _W0, _b0, _ = w_last_data(loss, p_in=15, p=6, m=80, seed=seed)
    res = cvx.w_last(X_in, Y, loss=loss, rho=0.05)
    assert res.status == "optimal" and res.info["kkt_residual"] < KKT_TOL


def test_a_block_the_default_solver_fails_on_is_solved_column_by_column(monkeypatch):
    """With the default solver, a failed multi-column block is solved again one column at a time (Clarabel failed on
    this cross-entropy / leaky-ReLU instance as one block and solves each column); a named solver is not retried."""
    from fenchel_cvx import torch as ft
    from fenchel_cvx.cvx import _model

    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 50)), 0.1 * rng.standard_normal(3)
    U, Y = rng.standard_normal((50, 5)), np.eye(3)[:, rng.integers(0, 3, 5)]
    kw = {"loss": "ce", "act_prev": "leaky_relu", "lam_prev": 0.7}
    ref = ft.x_last(torch.tensor(W), torch.tensor(b), torch.tensor(Y), torch.tensor(U), tol=1e-12, **kw)
    r = cvx.x_last(W, b, Y, U, **kw)
    assert r.status == "optimal" and abs(r.value - ref.value) <= 1e-6 * abs(ref.value)
    # the mechanism, whatever this machine's Clarabel does: every block of more than one column fails
    real = _model.CvxModel._run

    def flaky(self, solver, solver_opts, hint=""):
        if self.m > 1:
            raise SolverError("a block failed", status="solver_error", subproblem=self.subproblem, solver="X")
        return real(self, solver, solver_opts, hint)
    monkeypatch.setattr(_model.CvxModel, "_run", flaky)
    cvx.clear_model_cache()
    r = cvx.x_last(W, b, Y, U, **kw)
    assert r.status == "optimal" and r.info["chunks"] == 5 and abs(r.value - ref.value) <= 1e-6 * abs(ref.value)
    with pytest.raises(SolverError, match="a block failed"):
        cvx.x_last(W, b, Y, U, solver="CLARABEL", **kw)
