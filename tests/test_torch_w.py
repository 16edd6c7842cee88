"""The torch W-updates (fenchel_cvx.torch.w_hidden / w_last) against the CVXPY face, and their own contract.

Order: argument checks, certificates on their own (certificate, gap, the reported optimality residual),
agreement with CVXPY (value 1e-6 relative; argmin 1e-4 where strictly convex), then properties (batched == row
by row, float32 == float64, warm starts, NotConvergedWarning, cuda == cpu), then ``method="mm"``
(majorization-minimization): monotone step by step, and run to convergence the same answer as Newton. Seeded
float64 instances, small sizes.
Runtime: about 15-30 s on 2 busy CPU cores (most of it in the CVXPY reference solves).
"""

from __future__ import annotations

import inspect
import math
import warnings

import numpy as np
import pytest
import torch

from fenchel_cvx import cvx
from fenchel_cvx import torch as ft
from fenchel_cvx.activations import get_activation
from fenchel_cvx.errors import (
    ChoiceError,
    DomainError,
    LabelError,
    NoMinimizerWarning,
    NotConvergedWarning,
    ShapeError,
    TensorMismatchError,
    ValueRangeError,
)
from fenchel_cvx.optimality import w_hidden_residual, w_last_residual

ACTS = ["relu", "leaky_relu", "sigmoid", "tanh"]
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def hidden_instance(act: str, seed: int = 0, p_in: int = 6, p_out: int = 4, m: int = 40, dtype=F64):
    """X_in >= 0 like a ReLU layer's output; X_next = act(W X_in + b + noise) inside act's domain."""
    g = torch.Generator().manual_seed(seed)
    a = get_activation(act)
    X = torch.relu(torch.randn(p_in, m, generator=g, dtype=F64))
    W = torch.randn(p_out, p_in, generator=g, dtype=F64) / math.sqrt(p_in)
    U = W @ X + 0.2 * torch.randn(p_out, 1, generator=g, dtype=F64) + 0.4 * torch.randn(p_out, m, generator=g,
                                                                                     dtype=F64)
    V = a.forward(U)
    if act == "relu":  # targets that no W fits exactly
        V = torch.relu(V + 0.2 * torch.randn(p_out, m, generator=g, dtype=F64))
    W0 = torch.randn(p_out, p_in, generator=g, dtype=F64)
    b0 = torch.randn(p_out, generator=g, dtype=F64)
    return X.to(dtype), V.to(dtype), W0.to(dtype), b0.to(dtype)


def last_instance(K: int = 3, seed: int = 0, p_in: int = 6, m: int = 40):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(p_in, m, generator=g, dtype=F64)
    labels = torch.randint(0, K, (m,), generator=g)
    W0 = torch.randn(K, p_in, generator=g, dtype=F64)
    b0 = torch.randn(K, generator=g, dtype=F64)
    return X, labels, W0, b0


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


# -- argument checks --------------------------------------------------------------------------------------------
def test_same_arguments_as_the_cvxpy_face():
    contract = {"w_hidden": ["X_in", "X_next", "act", "lam", "rho", "gamma", "W0", "b0", "bias"],
                "w_last": ["X_in", "Y", "loss", "rho", "gamma", "W0", "b0", "bias", "p"]}
    for name, args in contract.items():
        ours = inspect.signature(getattr(ft, name)).parameters
        ref = inspect.signature(getattr(cvx, name)).parameters
        assert list(ours)[:len(args)] == args and list(ref)[:len(args)] == args, name
        assert [ours[a].default for a in args] == [ref[a].default for a in args], name
        assert [ours[a].kind for a in args] == [ref[a].kind for a in args], name
        assert ours["tol"].default == 1e-6 and {"max_iter", "W_init", "b_init", "warn"} <= set(ours)
        # the two docstrings open with the same line of math
        assert getattr(ft, name).__doc__.split("\n")[0] == getattr(cvx, name).__doc__.split("\n")[0]


def test_argument_errors_are_typed():
    X, V, W0, b0 = hidden_instance("relu")
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1}
    with pytest.raises(TensorMismatchError, match="X_in"):
        ft.w_hidden(X.numpy(), V, **kw)
    with pytest.raises(TensorMismatchError, match="X_next"):
        ft.w_hidden(X, V.float(), **kw)
    with pytest.raises(ShapeError, match="X_next"):
        ft.w_hidden(X, V[:, :-1], **kw)
    with pytest.raises(DomainError, match="X_next"):
        ft.w_hidden(X, V - 1.0, **kw)
    Xn = X.clone()
    Xn[0, 0] = math.nan
    with pytest.raises(DomainError, match="X_in"):
        ft.w_hidden(Xn, V, **kw)
    with pytest.raises(ValueRangeError, match="lam"):
        ft.w_hidden(X, V, act="relu", lam=0.0, rho=0.1)
    with pytest.raises(ValueRangeError, match="rho"):
        ft.w_hidden(X, V, act="relu", lam=1.0, rho=-0.1)
    with pytest.raises(ValueRangeError, match="gamma"):
        ft.w_hidden(X, V, **kw, gamma=-1.0, W0=W0, b0=b0)
    with pytest.raises(ShapeError, match="W0"):
        ft.w_hidden(X, V, **kw, gamma=1.0)
    with pytest.raises(ShapeError, match="b0"):
        ft.w_hidden(X, V, **kw, gamma=1.0, W0=W0)
    with pytest.raises(ShapeError, match="W0"):
        ft.w_hidden(X, V, **kw, gamma=1.0, W0=W0.T, b0=b0)
    with pytest.raises(ShapeError, match="W_init"):
        ft.w_hidden(X, V, **kw, W_init=W0[:1])
    with pytest.raises(ValueRangeError, match="tol"):
        ft.w_hidden(X, V, **kw, tol=0.0)
    with pytest.raises(ValueRangeError, match="max_iter"):
        ft.w_hidden(X, V, **kw, max_iter=0)
    Xl, labels, _, _ = last_instance()
    with pytest.raises(LabelError):
        ft.w_last(Xl, torch.rand(3, Xl.shape[1], dtype=F64), loss="ce", rho=0.1)  # columns not summing to 1
    with pytest.raises(ShapeError, match="Y"):
        ft.w_last(Xl, labels[:-1], loss="mse", rho=0.1)
    with pytest.raises(ChoiceError, match="method: expected one of"):
        ft.w_last(Xl, labels, loss="ce", rho=0.1, method="bfgs")
    with pytest.raises(ChoiceError, match="method: expected one of"):
        ft.w_hidden(X, V, **kw, method="newton_cg")


def test_b0_and_b_init_are_ignored_without_a_bias():
    X, V, W0, b0 = hidden_instance("relu")
    a = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.1, gamma=0.5, W0=W0, bias=False)
    b = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.1, gamma=0.5, W0=W0, b0=b0, b_init=b0, bias=False)
    assert a.b is None and b.b is None
    torch.testing.assert_close(a.W, b.W, rtol=1e-10, atol=1e-12)
    assert a.value == pytest.approx(b.value, rel=1e-12)


# -- certificates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
def test_w_hidden_certificates(act):
    X, V, W0, b0 = hidden_instance(act, seed=3)
    res = ft.w_hidden(X, V, act=act, lam=0.7, rho=0.05, gamma=0.2, W0=W0, b0=b0, tol=1e-9)
    assert res.converged and res.status == "optimal" and res.solver == "ssn" and res.backend == "torch"
    cert = res.info["certificate"]
    assert cert.shape == (V.shape[0],) and float(cert.max()) <= 1e-9
    # the reported residual is the optimality residual of fenchel_cvx.optimality, built from the solver's gradient
    kkt = w_hidden_residual(res.W, res.b, X, V, act=act, lam=0.7, rho=0.05, gamma=0.2, W0=W0, b0=b0)
    assert kkt.relative < 1e-8
    assert res.residual.shape == (V.shape[0],) and res.max_residual == pytest.approx(float(res.residual.max()))
    torch.testing.assert_close(res.residual, kkt.per_item / kkt.scale, rtol=1e-5, atol=1e-14)
    # the strong-convexity gap bound is finite (gamma > 0) and tiny at the optimum
    assert res.info["gap"].shape == (V.shape[0],) and res.info["gap_bound"] < 1e-10 * max(1.0, res.value)
    # value = the full objective, constants included, penalty >= 0
    a = get_activation(act)
    U = res.W @ X + res.b[:, None]
    direct = (0.7 * a.B_sum(V, U) + 0.05 * float((res.W ** 2).sum())
              + 0.2 * float(((res.W - W0) ** 2).sum() + ((res.b - b0) ** 2).sum()))
    assert res.value == pytest.approx(direct, rel=1e-12)


@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_targets_on_the_domain_boundary(act):
    # X_next exactly 0/1 (sigmoid) or -1/1 (tanh) is allowed: only F*(W X_in + b) depends on W
    X, V, _, _ = hidden_instance(act, seed=4)
    lo, hi = get_activation(act).domain
    V[0, :5], V[1, :5] = lo, hi
    res = ft.w_hidden(X, V, act=act, lam=1.0, rho=0.1, tol=1e-10)
    assert res.converged and math.isfinite(res.value)
    kkt = w_hidden_residual(res.W, res.b, X, V, act=act, lam=1.0, rho=0.1)
    assert kkt.relative < 1e-8


def test_gap_bound_covers_an_inexact_step():
    X, V, W0, b0 = hidden_instance("relu", seed=5, p_in=10, p_out=6, m=80)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "gamma": 0.1, "W0": W0, "b0": b0}
    exact = ft.w_hidden(X, V, **kw, tol=1e-12)
    one = ft.w_hidden(X, V, **kw, max_iter=1, warn=False)
    assert not one.converged and one.status == "max_iter"
    excess = one.value - exact.value
    assert excess > 0
    assert one.info["gap_bound"] >= excess * (1 - 1e-9)


def test_dead_unit_and_unregularized_bias():
    # a unit whose target row is all zero, and rho = gamma = 0 with a bias (singular Hessians): still certified
    X, V, _, _ = hidden_instance("relu", seed=2)
    V[0] = 0.0
    res = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.0, gamma=0.0, tol=1e-10)
    assert res.converged and math.isinf(res.info["gap_bound"])
    assert float(torch.relu(res.W[0] @ X + res.b[0]).abs().max()) < 1e-8  # the dead unit stays dead
    ref = cvx.w_hidden(X.numpy(), V.numpy(), act="relu", lam=1.0, rho=0.0)
    assert rel(res.value, ref.value) < 1e-6


# -- agreement with the CVXPY face ----------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias,gamma", [(True, 0.5), (False, 0.0)])
def test_w_hidden_matches_cvxpy(act, bias, gamma):
    X, V, W0, b0 = hidden_instance(act, seed=1)
    kw = {"act": act, "lam": 1.3, "rho": 0.1, "gamma": gamma, "bias": bias}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a Clarabel 'optimal_inaccurate' is still far inside 1e-4
        ref = cvx.w_hidden(X.numpy(), V.numpy(), **kw, W0=W0.numpy(), b0=b0.numpy())
    res = ft.w_hidden(X, V, **kw, W0=W0, b0=b0, tol=1e-10)
    assert res.converged
    assert rel(res.value, ref.value) < 1e-6
    scale = max(1.0, float(np.abs(ref.W).max()))
    np.testing.assert_allclose(res.W.numpy(), ref.W, atol=1e-4 * scale, rtol=0)
    if bias:
        np.testing.assert_allclose(res.b.numpy(), ref.b, atol=1e-4 * scale, rtol=0)
    else:
        assert res.b is None


@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("bias,gamma", [(True, 0.5), (False, 0.0), (True, 0.0)])
def test_w_last_matches_cvxpy(loss, bias, gamma):
    X, labels, W0, b0 = last_instance(seed=2)
    kw = {"loss": loss, "rho": 0.1, "gamma": gamma, "bias": bias}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cvx.w_last(X.numpy(), labels.numpy(), **kw, W0=W0.numpy(), b0=b0.numpy())
    res = ft.w_last(X, labels, **kw, W0=W0, b0=b0, tol=1e-10)
    assert res.converged and res.info["certificate"].shape == (1,) and res.residual.shape == (3,)
    assert rel(res.value, ref.value) < 1e-6
    scale = max(1.0, float(np.abs(ref.W).max()))
    np.testing.assert_allclose(res.W.numpy(), ref.W, atol=1e-4 * scale, rtol=0)
    if bias:
        b, b_ref = res.b.numpy(), ref.b
        if loss == "ce" and gamma == 0:  # softmax shift: b is unique up to a constant; ours has mean 0
            assert abs(b.mean()) < 1e-12
            b_ref = b_ref - b_ref.mean()
        np.testing.assert_allclose(b, b_ref, atol=1e-4 * scale, rtol=0)
    kkt = w_last_residual(res.W, res.b, X, labels, loss=loss, rho=0.1, gamma=gamma, W0=W0,
                          b0=b0 if bias else None)
    assert kkt.relative < 1e-8
    torch.testing.assert_close(res.residual, kkt.per_item / kkt.scale, rtol=1e-5, atol=1e-14)


@pytest.mark.parametrize("as_targets", [False, True], ids=["labels", "one-hot"])
def test_w_last_ce_without_a_minimizer_warns_on_both_faces(as_targets):
    # classes 3 and 4 have no sample: with a bias and gamma = 0 (rho leaves b free) their biases decrease without
    # bound, so both faces stop "optimal" at different far-out points of near-infimal value -- and say so
    X, labels, _, _ = last_instance(K=3, seed=21)
    Y = torch.nn.functional.one_hot(labels, 5).T.to(F64) if as_targets else labels
    kw = {"loss": "ce", "rho": 0.1, "p": 5}
    said = (r"^w_last: cross-entropy with bias=True and gamma=0 has no minimizer: classes 3, 4 of the 5 in Y have no "
            r"sample .*a point of near-infimal value far out, not a minimizer .*Expected gamma > 0 \(with W0, b0\) "
            r"or a batch Y in which every class is present$")
    with pytest.warns(NoMinimizerWarning, match=said) as caught:
        res = ft.w_last(X, Y, **kw)
    with pytest.warns(NoMinimizerWarning, match=said):
        ref = cvx.w_last(X.numpy(), Y.numpy(), **kw)
    assert caught[0].filename == __file__  # points at the caller
    assert res.status == ref.status == "optimal" and rel(res.value, ref.value) < 1e-5
    # every class present, a proximal term on the bias, or no bias: a minimizer exists, no warning
    g = torch.Generator().manual_seed(21)
    W0, b0 = torch.randn(5, X.shape[0], generator=g, dtype=F64), torch.randn(5, generator=g, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoMinimizerWarning)
        for face, arr in ((ft.w_last, lambda t: t), (cvx.w_last, lambda t: t.numpy())):
            face(arr(X), arr(labels), loss="ce", rho=0.1)
            face(arr(X), arr(Y), **kw, gamma=0.5, W0=arr(W0), b0=arr(b0))
            face(arr(X), arr(Y), **kw, bias=False)
            face(arr(X), arr(Y), loss="mse", rho=0.1, p=5)


def test_w_last_ce_newton_cg_matches_exact_newton():
    X, labels, W0, b0 = last_instance(K=4, seed=4, p_in=12, m=120)
    a = ft.w_last(X, labels, loss="ce", rho=0.05, gamma=0.1, W0=W0, b0=b0, method="newton", tol=1e-10)
    b = ft.w_last(X, labels, loss="ce", rho=0.05, gamma=0.1, W0=W0, b0=b0, method="newton_cg", tol=1e-10)
    assert a.solver == "newton" and b.solver == "newton_cg" and b.info["cg_iterations"] > 0
    assert rel(a.value, b.value) < 1e-12
    torch.testing.assert_close(a.W, b.W, rtol=0, atol=1e-7)


def test_w_last_mse_singular_system_gives_a_minimizer():
    # rho = gamma = 0 and fewer samples than features: many minimizers, all with zero loss
    g = torch.Generator().manual_seed(7)
    X = torch.randn(12, 5, generator=g, dtype=F64)
    Y = torch.randn(3, 5, generator=g, dtype=F64)
    res = ft.w_last(X, Y, loss="mse", rho=0.0, tol=1e-8)
    assert res.converged and res.value < 1e-12 * float((Y ** 2).sum())


# -- properties -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
def test_batched_equals_row_by_row(act):
    X, V, W0, b0 = hidden_instance(act, seed=6, p_out=5)
    kw = {"act": act, "lam": 1.0, "rho": 0.1, "gamma": 0.3, "tol": 1e-12}
    full = ft.w_hidden(X, V, **kw, W0=W0, b0=b0)
    for r in range(V.shape[0]):
        one = ft.w_hidden(X, V[r:r + 1], **kw, W0=W0[r:r + 1], b0=b0[r:r + 1])
        torch.testing.assert_close(one.W[0], full.W[r], rtol=0, atol=1e-10)
        torch.testing.assert_close(one.b[0], full.b[r], rtol=0, atol=1e-10)
        assert int(full.info["row_iterations"][r]) == one.iterations


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_float32_gives_the_float64_answer(act):
    X, V, W0, b0 = hidden_instance(act, seed=8)
    X32, V32, W032, b032 = (t.float() for t in (X, V, W0, b0))
    kw = {"act": act, "lam": 1.0, "rho": 0.2, "gamma": 0.1}
    r64 = ft.w_hidden(X, V, **kw, W0=W0, b0=b0)
    r32 = ft.w_hidden(X32, V32, **kw, W0=W032, b0=b032)
    assert r32.W.dtype == torch.float32 and r32.b.dtype == torch.float32 and r32.residual.dtype == torch.float32
    assert r32.converged
    torch.testing.assert_close(r32.W.double(), r64.W, rtol=1e-4, atol=1e-4 * float(r64.W.abs().max()))
    assert rel(r32.value, r64.value) < 1e-4
    Xl, labels, _, _ = last_instance(seed=8)
    for loss in ("mse", "ce"):
        l64 = ft.w_last(Xl, labels, loss=loss, rho=0.1)
        l32 = ft.w_last(Xl.float(), labels, loss=loss, rho=0.1)
        assert l32.W.dtype == torch.float32
        torch.testing.assert_close(l32.W.double(), l64.W, rtol=1e-4, atol=1e-4 * float(l64.W.abs().max()))
        assert rel(l32.value, l64.value) < 1e-4


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "sigmoid"])
def test_warm_start_cuts_iterations(act):
    X, V, _, _ = hidden_instance(act, seed=9, p_in=15, p_out=8, m=150)
    kw = {"act": act, "lam": 1.0, "rho": 0.01}
    cold = ft.w_hidden(X, V, **kw)
    assert cold.iterations >= 3
    again = ft.w_hidden(X, V, **kw, W_init=cold.W, b_init=cold.b)
    assert again.iterations == 0 and again.converged
    # a nearby problem (the next BCD sweep): fewer Newton steps than from zero
    g = torch.Generator().manual_seed(0)
    V2 = V + 1e-3 * torch.rand(V.shape, generator=g, dtype=F64)
    if act == "sigmoid":
        V2 = V2.clamp(0.0, 1.0)
    near = ft.w_hidden(X, V2, **kw, W_init=cold.W, b_init=cold.b)
    near_cold = ft.w_hidden(X, V2, **kw)
    assert near.converged and near.iterations < near_cold.iterations
    assert rel(near.value, near_cold.value) < 1e-9


@pytest.mark.parametrize("act", ["relu", "leaky_relu"])
def test_newton_starts_with_mm_steps_that_settle_the_kinks(act, monkeypatch):
    """Piecewise-linear activations: MM steps (one shared factorization) come first while they move samples
    across the kink; the answer is the plain semismooth Newton's, with fewer Newton steps per row, and the
    steps of both kinds count in ``row_iterations`` and against ``max_iter``."""
    from fenchel_cvx.torch import _wsolvers
    X, V, _, _ = hidden_instance(act, seed=11, p_in=20, p_out=10, m=300)
    kw = {"act": act, "lam": 1.0, "rho": 0.05, "tol": 1e-10}
    ours = ft.w_hidden(X, V, **kw)
    assert 1 <= ours.info["mm_steps"] <= _wsolvers.MM_PRESTEPS and ours.converged
    monkeypatch.setattr(_wsolvers, "MM_PRESTEPS", 0)
    plain = ft.w_hidden(X, V, **kw)
    assert plain.info["mm_steps"] == 0
    torch.testing.assert_close(ours.W, plain.W, rtol=0, atol=1e-9)
    assert rel(ours.value, plain.value) < 1e-12
    newton_steps = ours.info["row_iterations"] - ours.info["mm_row_steps"]
    assert int(ours.info["mm_row_steps"].max()) == ours.info["mm_steps"]
    assert int(newton_steps.sum()) < int(plain.info["row_iterations"].sum())
    monkeypatch.undo()
    # a budget of max_iter <= 20 steps is spent on Newton steps alone, a larger one by each row on both kinds
    for max_iter in (1, 4, 20):
        assert ft.w_hidden(X, V, **dict(kw, max_iter=max_iter), warn=False).info["mm_steps"] == 0
    for max_iter in (21, 22, 25):
        capped = ft.w_hidden(X, V, **dict(kw, max_iter=max_iter, tol=1e-300), warn=False)
        assert capped.info["mm_steps"] >= 1 and int(capped.info["row_iterations"].max()) <= max_iter
        # a row not certified used its whole budget, also when it left the MM steps early
        open_rows = capped.info["certificate"] > 1e-300
        assert bool(open_rows.any()) and int(capped.info["mm_row_steps"].min()) < capped.info["mm_steps"]
        assert bool((capped.info["row_iterations"][open_rows] == max_iter).all())


def test_smooth_activations_and_warm_starts_go_to_newton_at_once():
    X, V, _, _ = hidden_instance("tanh", seed=12, p_in=10, p_out=6, m=100)
    assert ft.w_hidden(X, V, act="tanh", lam=1.0, rho=0.05).info["mm_steps"] == 0
    X, V, _, _ = hidden_instance("relu", seed=12, p_in=10, p_out=6, m=100)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.05, "tol": 1e-10}
    cold = ft.w_hidden(X, V, **kw)
    # a slightly different problem from the last answer: its first MM step moves (almost) no sample across the
    # kink, so each row hands over to Newton after it
    g = torch.Generator().manual_seed(1)
    near = ft.w_hidden(X, torch.relu(V + 1e-4 * torch.randn(V.shape, generator=g, dtype=F64)), **kw,
                       W_init=cold.W, b_init=cold.b)
    assert near.info["mm_steps"] <= 1 and near.converged


def test_w_last_ce_warm_start_cuts_iterations():
    X, labels, _, _ = last_instance(seed=10, m=80)
    cold = ft.w_last(X, labels, loss="ce", rho=0.1)
    warm = ft.w_last(X, labels, loss="ce", rho=0.1, W_init=cold.W, b_init=cold.b)
    assert cold.iterations >= 3 and warm.iterations == 0


def test_not_converged_warns_and_can_be_silenced():
    X, V, _, _ = hidden_instance("relu", seed=11, p_in=10, p_out=6, m=80)
    with pytest.warns(NotConvergedWarning, match=r"w_hidden: stopped at max_iter=1 with certificate"):
        res = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.01, max_iter=1)
    assert not res.converged and res.status == "max_iter" and float(res.info["certificate"].max()) > 1e-6
    assert res.max_residual > 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quiet = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.01, max_iter=1, warn=False)
    assert not quiet.converged
    torch.testing.assert_close(quiet.W, res.W)
    Xl, labels, _, _ = last_instance(seed=11)
    with pytest.warns(NotConvergedWarning, match=r"w_last.*certificate"):
        ft.w_last(Xl, labels, loss="ce", rho=0.01, max_iter=1)


def test_inputs_that_require_grad_build_no_graph():
    X, V, _, _ = hidden_instance("relu", seed=13)
    res = ft.w_hidden(X.requires_grad_(), V, act="relu", lam=1.0, rho=0.1)
    assert res.W.grad_fn is None and not res.W.requires_grad
    Xl, labels, _, _ = last_instance(seed=13)
    assert ft.w_last(Xl.requires_grad_(), labels, loss="ce", rho=0.1).W.grad_fn is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: cuda == cpu is checked on GPU machines")
def test_cuda_matches_cpu():
    X, V, W0, b0 = hidden_instance("relu", seed=12)
    cpu = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.1, gamma=0.2, W0=W0, b0=b0)
    dev = [t.cuda() for t in (X, V, W0, b0)]
    gpu = ft.w_hidden(dev[0], dev[1], act="relu", lam=1.0, rho=0.1, gamma=0.2, W0=dev[2], b0=dev[3])
    assert gpu.W.is_cuda and gpu.residual.is_cuda
    torch.testing.assert_close(gpu.W.cpu(), cpu.W, rtol=1e-8, atol=1e-10)
    Xl, labels, _, _ = last_instance(seed=12)
    for loss in ("mse", "ce"):
        c = ft.w_last(Xl, labels, loss=loss, rho=0.1)
        gl = ft.w_last(Xl.cuda(), labels.cuda(), loss=loss, rho=0.1)
        torch.testing.assert_close(gl.W.cpu(), c.W, rtol=1e-8, atol=1e-10)


# -- method="mm": majorization-minimization -----------------------------------------------------------------------
# (rho, gamma) cases: (0.1, 0) leaves the bias unpenalized (mu = 0 there: the ridge path of the majorizer),
# (0, 0.5) has only the proximal term, (0, 0) for CE leaves the softmax shift free.
MM_REG = [(0.1, 0.0), (0.0, 0.5)]


def _mm_hidden_start(X, V, seed=3):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(V.shape[0], X.shape[0], generator=g, dtype=F64),
            torch.randn(V.shape[0], generator=g, dtype=F64))


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rho,gamma", MM_REG)
def test_w_hidden_mm_matches_newton(act, rho, gamma):
    X, V, W0, b0 = hidden_instance(act, seed=1)
    kw = {"act": act, "lam": 1.0, "rho": rho, "gamma": gamma, "W0": W0, "b0": b0, "tol": 1e-10}
    newton = ft.w_hidden(X, V, **kw, method="newton")
    mm = ft.w_hidden(X, V, **kw, method="mm", max_iter=20000)
    assert mm.converged and mm.solver == "mm" and newton.solver == "ssn"
    assert mm.iterations > newton.iterations  # it really ran its own (linearly convergent) iteration
    assert rel(mm.value, newton.value) <= 1e-6
    torch.testing.assert_close(mm.W, newton.W, rtol=0, atol=1e-4)
    torch.testing.assert_close(mm.b, newton.b, rtol=0, atol=1e-4)
    assert mm.W.is_contiguous() and mm.b.is_contiguous() and mm.W.dtype == F64
    assert (mm.info["ridge"] > 0) == (gamma == 0)  # the ridge only where the bias has mu = 0
    # same residual definition: the Newton answer is already converged for MM's test, and vice versa
    assert ft.w_hidden(X, V, **kw, method="mm", W_init=newton.W, b_init=newton.b, max_iter=1).iterations == 0


@pytest.mark.parametrize("rho,gamma", MM_REG + [(0.0, 0.0)])
def test_w_last_ce_mm_matches_newton(rho, gamma):
    X, labels, W0, b0 = last_instance(seed=1)
    kw = {"loss": "ce", "rho": rho, "gamma": gamma, "W0": W0, "b0": b0, "p": 3, "tol": 1e-10}
    with warnings.catch_warnings():  # rho = gamma = 0: Newton may stall at round-off above 1e-10
        warnings.simplefilter("ignore", NotConvergedWarning)
        newton = ft.w_last(X, labels, **kw, method="newton", max_iter=200)
    mm = ft.w_last(X, labels, **kw, method="mm", max_iter=20000)
    assert mm.converged and mm.solver == "mm"
    assert rel(mm.value, newton.value) <= 1e-6
    if rho + gamma > 0:  # strictly convex (up to the softmax shift, removed on both)
        torch.testing.assert_close(mm.W, newton.W, rtol=0, atol=1e-4)
        torch.testing.assert_close(mm.b, newton.b, rtol=0, atol=1e-4)
    assert mm.W.is_contiguous() and mm.b.is_contiguous()


def test_w_last_mse_mm_is_the_closed_form():
    X, _, W0, b0 = last_instance()
    Y = torch.randn(3, X.shape[1], generator=torch.Generator().manual_seed(0), dtype=F64)
    a = ft.w_last(X, Y, loss="mse", rho=0.1, gamma=0.5, W0=W0, b0=b0)
    b = ft.w_last(X, Y, loss="mse", rho=0.1, gamma=0.5, W0=W0, b0=b0, method="mm")
    assert b.solver == "cholesky"
    torch.testing.assert_close(a.W, b.W, rtol=0, atol=0)


def _steps(call, W, b, k):
    """Objective after 1..k MM steps: one step per call (M depends on the data only, so k calls = k steps)."""
    vals = []
    for _ in range(k):
        r = call(W, b)
        vals.append(r.value)
        W, b = r.W, r.b
    return np.array(vals)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rho,gamma", MM_REG)
def test_w_hidden_mm_is_monotone(act, rho, gamma):
    X, V, W0, b0 = hidden_instance(act, seed=2)
    Ws, bs = _mm_hidden_start(X, V)
    kw = {"act": act, "lam": 1.0, "rho": rho, "gamma": gamma, "W0": W0, "b0": b0, "tol": 1e-14, "max_iter": 1,
          "warn": False, "method": "mm"}
    vals = _steps(lambda W, b: ft.w_hidden(X, V, **kw, W_init=W, b_init=b), Ws, bs, 40)
    rise = np.diff(vals) / np.abs(vals[:-1])
    assert rise.max() <= 1e-12, rise.max()
    assert vals[-1] < vals[0]
    # k steps in one call land where k single-step calls do
    many = ft.w_hidden(X, V, **dict(kw, max_iter=40), W_init=Ws, b_init=bs)
    assert many.value == pytest.approx(vals[-1], rel=1e-12)


@pytest.mark.parametrize("rho,gamma", MM_REG + [(0.0, 0.0)])
def test_w_last_ce_mm_is_monotone(rho, gamma):
    X, labels, W0, b0 = last_instance(seed=2)
    g = torch.Generator().manual_seed(4)
    Ws, bs = 3 * torch.randn(3, X.shape[0], generator=g, dtype=F64), torch.randn(3, generator=g, dtype=F64)
    kw = {"loss": "ce", "rho": rho, "gamma": gamma, "W0": W0, "b0": b0, "p": 3, "tol": 1e-14, "max_iter": 1,
          "warn": False, "method": "mm"}
    vals = _steps(lambda W, b: ft.w_last(X, labels, **kw, W_init=W, b_init=b), Ws, bs, 40)
    rise = np.diff(vals) / np.abs(vals[:-1])
    assert rise.max() <= 1e-12, rise.max()
    assert vals[-1] < vals[0]


def test_mm_float32_gives_float64_answer_contiguous():
    X, V, W0, b0 = hidden_instance("relu")
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "gamma": 0.5, "tol": 1e-9, "max_iter": 5000, "method": "mm"}
    r64 = ft.w_hidden(X, V, W0=W0, b0=b0, **kw)
    r32 = ft.w_hidden(X.float(), V.float(), W0=W0.float(), b0=b0.float(), **kw)
    assert r32.W.dtype == torch.float32 and r32.W.is_contiguous() and r32.b.is_contiguous()
    torch.testing.assert_close(r32.W.double(), r64.W, rtol=0, atol=1e-5)


# -- mm_rows in sample space (m < p_a: wide inputs, few samples, as MNIST 784 inputs with batch 500) -------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("rho,gamma", MM_REG)
@pytest.mark.parametrize("at_anchor", [True, False])
def test_mm_kernel_form_takes_the_primal_steps(act, rho, gamma, at_anchor):
    from fenchel_cvx.torch._wsolvers import mm_rows
    X, V, W0, b0 = hidden_instance(act, seed=5, p_in=30, p_out=5, m=12)
    Xa = torch.cat([X, torch.ones(1, X.shape[1], dtype=F64)])
    mu = torch.full((31,), 2.0 * (rho + gamma), dtype=F64)
    mu[-1] = 2.0 * gamma
    Z0 = torch.cat([W0, b0[:, None]], 1)
    lin = 2.0 * gamma * Z0
    Z = Z0.clone() if at_anchor else Z0 + 0.3 * torch.randn(Z0.shape, generator=torch.Generator().manual_seed(1),
                                                            dtype=F64)
    for k in (1, 3, 30):
        a = mm_rows(Xa, V, get_activation(act), 0.7, mu, lin, Z.clone(), tol=1e-13, max_iter=k, form="primal")
        if gamma == 0:  # the bias has mu = 0: no Woodbury form, "kernel" must fall back to the primal steps
            b = mm_rows(Xa, V, get_activation(act), 0.7, mu, lin, Z.clone(), tol=1e-13, max_iter=k, form="kernel")
            assert "form" not in b.info
        else:
            b = mm_rows(Xa, V, get_activation(act), 0.7, mu, lin, Z.clone(), tol=1e-13, max_iter=k, form="kernel")
            assert b.info["form"] == "kernel"
        torch.testing.assert_close(b.Z, a.Z, rtol=0, atol=1e-10)
        torch.testing.assert_close(b.residual, a.residual, rtol=1e-6, atol=1e-12)
        assert abs(b.iterations - a.iterations) <= 1  # the kernel form's early test may take one more step


def test_w_hidden_mm_uses_the_kernel_form_for_wide_inputs_and_matches_newton():
    X, V, W0, b0 = hidden_instance("relu", seed=6, p_in=30, p_out=4, m=12)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.0, "gamma": 0.5, "W0": W0, "b0": b0, "tol": 1e-11}
    mm = ft.w_hidden(X, V, **kw, method="mm", max_iter=20000)
    newton = ft.w_hidden(X, V, **kw, method="newton")
    assert mm.info.get("form") == "kernel" and mm.converged and "U" not in mm.info
    assert rel(mm.value, newton.value) <= 1e-9
    torch.testing.assert_close(mm.W, newton.W, rtol=0, atol=1e-6)
    # the value reported is the objective at the returned point
    U = mm.W @ X + mm.b[:, None]
    assert mm.value == pytest.approx(float(get_activation("relu").B_sum(V, U)) + 0.5 * float(
        ((mm.W - W0) ** 2).sum() + ((mm.b - b0) ** 2).sum()), rel=1e-12)
