"""Certified X-updates whose FISTA steps run in float32 on float64 inputs (``step_dtype=torch.float32``): the
answer against the CVXPY face and the float64 solver, the reported certificate recomputed in float64, columns that
float32 cannot certify finished in float64, and a capped solve never worse than its start.

Runtime: a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_torch_x import col_objective_hidden, hidden_instance, last_instance, np_, rel

from fenchel_cvx import cvx
from fenchel_cvx import torch as ft
from fenchel_cvx.errors import NotConvergedWarning, ValueRangeError
from fenchel_cvx.optimality import x_hidden_residual

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("act,act_prev", [("relu", "relu"), ("tanh", "sigmoid"), ("sigmoid", "leaky_relu")])
def test_float32_steps_match_cvxpy_and_the_float64_solver(act, act_prev):
    W, b, V, U = hidden_instance(act, act_prev, seed=21, q=6, p=5, m=12)
    kw = {"act": act, "act_prev": act_prev, "lam": 1.0, "lam_prev": 0.6, "tol": 1e-10}
    ours = ft.x_hidden(W, b, V, U, step_dtype=F32, **kw)
    assert ours.status == "optimal" and ours.Z.dtype == F64
    assert float(ours.info["certificate"].max()) <= 1e-10
    ref = cvx.x_hidden(np_(W), np_(b), np_(V), np_(U), **{k: v for k, v in kw.items() if k != "tol"})
    assert rel(ours.value, ref.value) < 1e-6
    assert np.abs(np_(ours.Z) - ref.Z).max() <= 1e-4 * max(1.0, np.abs(ref.Z).max())
    full = ft.x_hidden(W, b, V, U, **kw)
    assert rel(ours.value, full.value) < 1e-9
    assert rel(ours.value, float(col_objective_hidden(ours.Z, W, b, V, U, **{k: kw[k] for k in
                                                                              ("act", "act_prev", "lam",
                                                                               "lam_prev")}).sum())) < 1e-12


def test_float32_steps_for_x_last_with_cross_entropy_match_cvxpy():
    W, b, Y, U = last_instance("ce", seed=22, K=4, p=6, m=12)
    kw = {"loss": "ce", "act_prev": "relu", "lam_prev": 0.3}
    ours = ft.x_last(W, b, Y, U, tol=1e-10, step_dtype=F32, **kw)
    assert ours.status == "optimal" and float(ours.info["certificate"].max()) <= 1e-10
    ref = cvx.x_last(np_(W), np_(b), np_(Y), np_(U), **kw)
    assert rel(ours.value, ref.value) < 1e-6
    assert np.abs(np_(ours.Z) - ref.Z).max() <= 1e-4 * max(1.0, np.abs(ref.Z).max())


def test_the_reported_certificate_is_the_float64_one():
    """Restarting the float64 solver at the returned point certifies it at once with the same numbers: the
    reported certificate came from float64 products, not from the float32 steps. (That holds for columns confirmed
    when the float32 steps hand over, as all are here; a column that went on stepping in float64 reports the
    certificate of its last step, whose dual point is the extrapolated iterate's, as a float64 solve does.)"""
    W, b, V, U = hidden_instance("relu", "relu", seed=23, q=8, p=6, m=20)
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-9}
    ours = ft.x_hidden(W, b, V, U, step_dtype=F32, **kw)
    again = ft.x_hidden(W, b, V, U, Z0=ours.Z, **kw)
    assert again.iterations == 0 and torch.equal(again.Z, ours.Z)
    torch.testing.assert_close(ours.info["certificate"], again.info["certificate"], rtol=1e-12, atol=0.0)
    torch.testing.assert_close(ours.residual, again.residual, rtol=1e-12, atol=0.0)


def test_columns_float32_cannot_certify_finish_in_float64():
    """tol = 1e-14 lies below float32's round-off floor (float32 inputs stall there); with float32 steps on float64
    inputs the columns go on in float64, soon, and are certified, without a warning."""
    W, b, V, U = hidden_instance("relu", "sigmoid", seed=19, m=10)
    kw = {"act": "relu", "act_prev": "sigmoid", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-14, "max_iter": 100_000}
    with pytest.warns(NotConvergedWarning, match="stalled"):
        alone = ft.x_hidden(*(x.float() for x in (W, b, V, U)), **kw)
    assert alone.status == "stalled"
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        ours = ft.x_hidden(W, b, V, U, step_dtype=F32, **kw)
    assert ours.status == "optimal" and float(ours.info["certificate"].max()) <= 1e-14
    # float32's steps hand over after a few dozen without progress, not after the 500 of a float32 run's stall
    assert ours.iterations < 100 < alone.iterations


def test_a_capped_solve_with_float32_steps_is_never_worse_than_its_start(monkeypatch):
    """Force bad steps (a prox that throws the point away): every column comes back to its start (to float32
    round-off, and no worse in float64), and the residual reported is the returned point's."""
    from fenchel_cvx.torch import x_updates
    W, b, V, U = hidden_instance("relu", "leaky_relu", seed=24, q=5, p=6, m=20)
    Z0 = torch.relu(U)
    kw = {"act": "relu", "act_prev": "leaky_relu", "lam": 1.0, "lam_prev": 0.5}  # FISTA: its prox is patched
    monkeypatch.setattr(x_updates._PrevTerm, "solve", lambda self, r, a, Zg: r.abs() + 50.0)
    ours = ft.x_hidden(W, b, V, U, Z0=Z0, max_iter=3, step_dtype=F32, warn=False, **kw)
    assert ours.status == "max_iter"
    torch.testing.assert_close(ours.Z, Z0, rtol=1e-7, atol=1e-7)
    objective = col_objective_hidden(ours.Z, W, b, V, U, **kw)
    assert bool((objective <= col_objective_hidden(Z0, W, b, V, U, **kw)).all())
    kkt = x_hidden_residual(ours.Z, W, b, V, U, **kw)
    torch.testing.assert_close(ours.residual, kkt.per_item / kkt.scale, rtol=1e-6, atol=1e-15)


def test_step_dtype_must_be_a_float_dtype():
    W, b, Y, U = last_instance("ce", seed=25)
    with pytest.raises(ValueRangeError, match="step_dtype: expected"):
        ft.x_last(W, b, Y, U, loss="ce", act_prev="relu", lam_prev=0.3, step_dtype=torch.int32)


def test_all_zero_columns_are_certified_with_float32_steps():
    """A column whose every term is zero (scale 0) is optimal at its start: the float32 guide must not divide by
    zero there and leave it to stall."""
    W, b, V, U = hidden_instance("relu", "relu", seed=26, q=4, p=3, m=6)
    V[:, 0], U[:, 0] = 0.0, -1.0  # z = 0 is optimal and every term of the column vanishes when W z + b <= 0
    b = -b.abs() - 1.0
    r = ft.x_hidden(W, b, V, U, act="relu", act_prev="relu", lam=1.0, lam_prev=0.5, tol=1e-10,
                    step_dtype=F32, max_iter=2000)
    assert r.status == "optimal" and float(r.info["certificate"].max()) <= 1e-10
    assert bool((r.Z[:, 0] == 0).all())
    assert r.iterations < 100  # not the float32 stall (500 steps) the float64 confirmation would then rescue


def test_a_start_already_certified_comes_back_unchanged_at_no_step():
    """Its own float64 certificate is checked first: the start is not rounded to float32 and stepped (which took
    500 steps where tol lies below float32's floor, and returned a rounded point with a higher objective)."""
    W, b, V, U = hidden_instance("relu", "relu", seed=5, q=8, p=6, m=30)
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.4, "max_iter": 20000}
    opt = ft.x_hidden(W, b, V, U, tol=1e-15, **kw)
    for tol in (1e-9, 1e-14):
        ours = ft.x_hidden(W, b, V, U, Z0=opt.Z, tol=tol, step_dtype=F32, **kw)
        assert ours.iterations == 0 and torch.equal(ours.Z, opt.Z) and ours.status == "optimal"
    # a value tiny against its scale (lam = 1e-30): the start solves it, and the value is the float64 solve's
    tiny = {"act": "relu", "act_prev": "relu", "lam": 1e-30, "lam_prev": 0.4, "tol": 1e-9}
    assert ft.x_hidden(W, b, V, U, step_dtype=F32, **tiny).value == ft.x_hidden(W, b, V, U, **tiny).value


@pytest.mark.parametrize("case", ["U*1e39", "lam_prev=1e-40"])
def test_inputs_beyond_float32_run_as_the_float64_solve_does(case):
    """Data or scalars that overflow float32: the float32 steps' columns restart in float64, or the whole solve
    runs there -- the float64 solve's answer, not a SolverError (or a RuntimeError) about NaN objectives."""
    W, b, V, U = hidden_instance("relu", "relu", seed=5, q=8, p=6, m=30)
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.4, "tol": 1e-9, "max_iter": 300,
          "warn": False}
    if case == "U*1e39":
        U = U * 1e39
    else:
        kw["lam_prev"] = 1e-40
    full = ft.x_hidden(W, b, V, U, **kw)
    ours = ft.x_hidden(W, b, V, U, step_dtype=F32, **kw)
    assert ours.status == full.status and bool(torch.isfinite(ours.Z).all())
    assert rel(ours.value, full.value) < 1e-9
    loose = ft.x_hidden(W, b, V, U, step_dtype=F32, **dict(kw, certify=False, max_iter=5))
    assert bool(torch.isfinite(loose.Z).all())  # uncertified float32 steps: overflowed columns keep their start
