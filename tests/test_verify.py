"""fenchel_cvx.verify: a candidate point checked against the CVXPY reference (verdicts, candidate forms, errors).

Small instances on OSQP (ReLU, MSE): runtime a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fenchel_cvx import cvx
from fenchel_cvx import torch as tf
from fenchel_cvx.errors import ChoiceError, FenchelError, ShapeError
from fenchel_cvx.optimality import objective
from fenchel_cvx.verification import Verification, verify

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def x_problem(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    W, b, U = rng.standard_normal((3, 4)) / 2, 0.1 * rng.standard_normal(3), rng.standard_normal((4, 8))
    X_next = np.maximum(W @ np.maximum(U, 0) + b[:, None] + 0.3 * rng.standard_normal((3, 8)), 0)
    return {"W": W, "b": b, "X_next": X_next, "U_prev": U, "act": "relu", "act_prev": "relu", "lam": 1.0,
            "lam_prev": 0.5}


def w_problem(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X_in = np.maximum(rng.standard_normal((4, 20)), 0)
    W0, b0 = rng.standard_normal((3, 4)), rng.standard_normal(3)
    X_next = np.maximum(W0 @ X_in + b0[:, None] + 0.3 * rng.standard_normal((3, 20)), 0)
    return {"X_in": X_in, "X_next": X_next, "act": "relu", "lam": 1.0, "rho": 0.1, "gamma": 0.5, "W0": W0, "b0": b0}


def as_torch(problem: dict) -> dict:
    return {k: torch.as_tensor(v) if isinstance(v, np.ndarray) else v for k, v in problem.items()}


def test_the_cvxpy_argmin_verifies():
    problem = x_problem()
    ref = cvx.x_hidden(**problem)
    v = verify("x_hidden", ref.Z, **problem)
    assert isinstance(v, Verification) and v.ok and v.feasible and v.subproblem == "x_hidden"
    assert v.verdict.startswith("optimal: within 1e-06 of the CVXPY optimum")
    assert v.value == pytest.approx(v.optimum, rel=1e-12) and abs(v.relative_gap) <= 1e-12
    assert v.residual.shape == (8,) and v.max_residual < 1e-6 and v.reference.backend == "cvx"
    # the objective is the faces' formula: the CVXPY face reports exactly it as value
    assert objective("x_hidden", ref.Z, **problem) == ref.value
    text = str(v)
    assert v.verdict in text and "CVXPY optimum" in text and "optimality residual" in text


def test_the_torch_argmin_verifies():
    problem = x_problem(1)
    res = tf.x_hidden(**as_torch(problem), tol=1e-12)
    v = verify("x_hidden", res.Z, **as_torch(problem))  # tensors in: checked in float64 numpy
    assert v.ok, v.verdict
    wp = w_problem(1)
    wres = tf.w_hidden(**as_torch(wp), tol=1e-10)
    v = verify("w_hidden", (wres.W, wres.b), **wp)
    assert v.ok and v.residual.shape == (3,), v.verdict
    # the residual verify reports is the one the torch face reported (the same measure)
    np.testing.assert_allclose(v.residual, wres.residual.numpy(), rtol=1e-6, atol=1e-13)


def test_a_perturbed_candidate_is_not_optimal():
    problem = x_problem(2)
    Z = cvx.x_hidden(**problem).Z
    Z[:, 5] += 0.3  # one column moved, still inside dom(relu)
    v = verify("x_hidden", Z, **problem)
    assert not v.ok and v.feasible and v.gap > 0 and v.relative_gap > 1e-6
    assert v.verdict.startswith("not optimal: objective") and "above the optimum" in v.verdict
    assert int(np.argmax(v.residual)) == 5 and "at column 5" in v.verdict
    assert v.max_residual > 1e-3


def test_an_infeasible_candidate_is_named():
    problem = x_problem(3)
    Z = cvx.x_hidden(**problem).Z
    Z[2, 1] = -0.2
    v = verify("x_hidden", Z, **problem)
    assert not v.ok and not v.feasible and math.isinf(v.value) and math.isinf(v.gap)
    assert v.verdict == "infeasible: Z[2, 1] = -0.2 is outside dom(relu) = [0, inf)"
    assert np.isfinite(v.residual).all()  # the natural residual is defined outside the domain too


@pytest.mark.parametrize("form", ["tuple", "dict", "torch"])
def test_w_update_candidates_as_a_pair_or_a_dict(form):
    problem = w_problem(4)
    ref = cvx.w_hidden(**problem)
    cand = {"tuple": (ref.W, ref.b), "dict": {"W": ref.W, "b": ref.b},
            "torch": (torch.as_tensor(ref.W), torch.as_tensor(ref.b))}[form]
    assert verify("w_hidden", cand, **problem).ok
    bad = {"W": ref.W + 0.05, "b": ref.b}
    v = verify("w_hidden", bad, **problem)
    assert not v.ok and v.gap > 0 and "at row" in v.verdict


def test_w_last_with_labels_and_without_a_bias():
    rng = np.random.default_rng(5)
    X_in, labels = rng.standard_normal((4, 30)), rng.integers(0, 3, 30)
    problem = {"X_in": X_in, "Y": labels, "loss": "mse", "rho": 0.1, "bias": False, "p": 3}
    ref = cvx.w_last(**problem)
    assert verify("w_last", {"W": ref.W}, **problem).ok
    assert verify("w_last", (torch.as_tensor(ref.W), None), **dict(problem, Y=torch.as_tensor(labels))).ok
    with pytest.raises(ShapeError, match="b must be None"):
        verify("w_last", (ref.W, np.zeros(3)), **problem)


def test_bad_inputs_raise_typed_errors_naming_the_argument():
    problem = x_problem()
    Z = np.zeros((4, 8))
    with pytest.raises(ChoiceError, match="name: expected one of 'x_hidden'.*got 'x_middle'"):
        verify("x_middle", Z, **problem)
    with pytest.raises(ChoiceError, match="x_hidden problem argument: expected one of .*got 'Z0'"):
        verify("x_hidden", Z, Z0=Z, **problem)
    with pytest.raises(ChoiceError, match="solver options are not problem data"):
        verify("x_hidden", Z, chunk=2, **problem)
    with pytest.raises(FenchelError, match="missing U_prev"):
        verify("x_hidden", Z, **{k: v for k, v in problem.items() if k != "U_prev"})
    with pytest.raises(ShapeError, match=r"Z expected shape \(4, 8\).*got \(4, 7\)"):
        verify("x_hidden", Z[:, :7], **problem)
    with pytest.raises(ShapeError, match="one array Z"):
        verify("x_hidden", (Z, Z), **problem)
    wp = w_problem()
    with pytest.raises(ShapeError, match=r"W expected shape \(3, 4\).*got \(4, 3\)"):
        verify("w_hidden", (np.zeros((4, 3)), np.zeros(3)), **wp)
    with pytest.raises(ShapeError, match="keys 'W' and 'b'"):
        verify("w_hidden", {"weights": np.zeros((3, 4))}, **wp)
    with pytest.raises(ShapeError, match="pair"):
        verify("w_hidden", np.zeros((3, 4)), **wp)
    with pytest.raises(ShapeError, match="b expected shape"):
        verify("w_hidden", (np.zeros((3, 4)), None), **wp)
