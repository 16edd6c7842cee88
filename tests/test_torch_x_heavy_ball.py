"""The heavy-ball iteration of the certified X-updates with a ReLU ``B_prev``: fewer iterations than FISTA to the
same certificate and argmin, and its safeguard (no step that raises a column's objective is taken)."""

from __future__ import annotations

import pytest
import torch
from test_torch_x import col_objective_hidden, hidden_instance, last_instance

import fenchel_cvx.torch as ft
from fenchel_cvx.activations import get_activation
from fenchel_cvx.torch import x_updates as xu

F64 = torch.float64


def _terms(W, b, V, U, lam, lam_prev):
    relu = get_activation("relu")
    A = xu._Matrix(W)
    smooth, prev = xu._ActTerm(relu, lam, V), xu._PrevTerm(relu, lam_prev, U)
    return smooth, prev, A, b.reshape(-1, 1), smooth.curv * A.norm_sq()


# kappa = (L + lam_prev) / lam_prev from about 5 to about 4e3 (the last: W three times larger, lam_prev 0.01)
@pytest.mark.parametrize("seed,lam_prev,scale", [(0, 1.0, 1.0), (1, 0.3, 1.0), (2, 0.1, 1.0), (1, 0.01, 3.0)])
def test_heavy_ball_needs_fewer_iterations_than_fista_for_the_same_certificate(seed, lam_prev, scale):
    W, b, V, U = hidden_instance("relu", "relu", seed=seed, q=40, p=30, m=200)
    W = scale * W
    smooth, prev, A, bcol, L = _terms(W, b, V, U, 1.0, lam_prev)
    Z0 = torch.relu(U)
    tol = 1e-10
    hb = xu._heavy_ball(smooth, prev, A, bcol, Z0, tol, 5000, L)
    fista = xu._fista(smooth, prev, A, bcol, Z0, tol, 5000, L)
    assert float(hb["residual"].max()) <= tol and float(fista["residual"].max()) <= tol
    assert hb["iterations"] < fista["iterations"], (hb["iterations"], fista["iterations"])
    # the same argmin: each within sqrt(2 tol scale / mu) of it (module docstring), so close to each other
    torch.testing.assert_close(hb["Z"], fista["Z"], rtol=0, atol=1e-3 * float(Z0.abs().max()))
    # the kept W z + b is that of the returned point
    torch.testing.assert_close(hb["T"], W @ hb["Z"] + b.reshape(-1, 1), rtol=1e-12, atol=1e-12)


def test_the_public_solvers_take_heavy_ball_steps_for_a_relu_prev_term_only():
    W, b, V, U = hidden_instance("relu", "relu", seed=5, m=30)
    kw = {"act": "relu", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-10}
    assert ft.x_hidden(W, b, V, U, act_prev="relu", **kw).solver == "heavy_ball"
    for act_prev in ("leaky_relu", "sigmoid"):
        W2, b2, V2, U2 = hidden_instance("relu", act_prev, seed=5, m=30)
        assert ft.x_hidden(W2, b2, V2, U2, act_prev=act_prev, **kw).solver == "fista"
    # uncertified capped runs keep FISTA's steps (the fast training default is tuned on them)
    r = ft.x_hidden(W, b, V, U, act_prev="relu", act="relu", lam=1.0, lam_prev=0.5, certify=False, max_iter=5)
    assert r.solver == "fista" and r.status == "unchecked"
    Wl, bl, Y, Ul = last_instance("ce", seed=5, m=30)
    assert ft.x_last(Wl, bl, Y, Ul, loss="ce", act_prev="relu", lam_prev=0.5, tol=1e-10).solver == "heavy_ball"


def test_the_safeguard_refuses_every_step_that_would_raise_a_column_objective(monkeypatch):
    """With the curvature bound made ten times too small, heavy ball's (and the projected gradient's) steps
    overshoot: the steps that would raise a column's objective are refused, so each column ends no worse than
    it started, and the columns whose every step was refused come back exactly as they started."""
    W, b, V, U = hidden_instance("relu", "relu", seed=7, q=20, p=15, m=80)
    W = 3.0 * W
    Z0 = torch.relu(U + torch.randn(U.shape, generator=torch.Generator().manual_seed(1), dtype=F64))
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.2}
    true_norm = xu._Matrix.norm_sq
    monkeypatch.setattr(xu._Matrix, "norm_sq", lambda self: 0.1 * true_norm(self))
    start = col_objective_hidden(Z0, W, b, V, U, **kw)
    for k in (1, 2, 5, 20):
        r = ft.x_hidden(W, b, V, U, Z0=Z0, max_iter=k, warn=False, **kw)
        assert r.solver == "heavy_ball"
        end = col_objective_hidden(r.Z, W, b, V, U, **kw)
        assert bool((end <= start + 1e-12 * start.abs()).all()), (k, float((end - start).max()))
    stayed = (r.Z == Z0).all(0)
    assert 0 < int(stayed.sum()) < Z0.shape[1]  # some columns refused every step, others moved down
    assert bool((end[~stayed] < start[~stayed]).all())


def test_a_capped_heavy_ball_solve_reports_the_certificate_of_the_point_it_returns():
    W, b, V, U = hidden_instance("relu", "relu", seed=9, m=40)
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.2}
    capped = ft.x_hidden(W, b, V, U, tol=1e-14, max_iter=3, warn=False, **kw)
    assert capped.status == "max_iter" and not capped.converged
    again = ft.x_hidden(W, b, V, U, tol=1e-14, max_iter=1, Z0=capped.Z, warn=False, **kw)
    # the second solve's first certificate is taken at the same point: the first's reported one
    first = xu._certificate(xu._ActTerm(get_activation("relu"), 1.0, V), xu._PrevTerm(get_activation("relu"), 0.2, U),
                            capped.Z, W @ capped.Z + b.reshape(-1, 1), W @ capped.Z + b.reshape(-1, 1),
                            W.T @ (torch.relu(W @ capped.Z + b.reshape(-1, 1)) - V))[1]
    torch.testing.assert_close(capped.info["certificate"], first, rtol=1e-9, atol=1e-18)
    assert float(again.info["certificate"].max()) < float(capped.info["certificate"].max())


@pytest.mark.parametrize("loss", [None, "mse", "ce"])
def test_the_scratch_certificate_is_the_general_one(loss):
    """Heavy ball's checks compute the gap and scale of ReLU's B_prev in scratch arrays, with the dual point of
    ``t = W z + b`` itself; the same numbers as without the arrays, with that dual point given (any data term)."""
    relu = get_activation("relu")
    if loss is None:
        W, b, V, U = hidden_instance("relu", "relu", seed=11, q=6, p=5, m=9)
        smooth = xu._ActTerm(relu, 1.3, V)
    else:
        W, b, Y, U = last_instance(loss, seed=11, K=4, p=5, m=9, soft=True)
        smooth = xu._MSETerm(Y) if loss == "mse" else xu._CETerm(Y)
    prev = xu._PrevTerm(relu, 0.4, U)
    Z = torch.relu(U + 0.5 * torch.randn(U.shape, generator=torch.Generator().manual_seed(3), dtype=F64))
    T = W @ Z + b.reshape(-1, 1)
    G = W.T @ smooth.grad_part(T)
    pool = {}

    def scratch(name, like):
        return pool.setdefault(name, torch.empty_like(like))

    gap, scale = xu._gap_and_scale(smooth, prev, Z, T, None, G, False, scratch)
    gap_ref, scale_ref = xu._gap_and_scale(smooth, prev, Z, T, T, G)
    torch.testing.assert_close(gap, gap_ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(scale, scale_ref, rtol=1e-12, atol=0)
    assert float(gap.max()) > 0  # not at the argmin: the test compares something


def test_data_too_large_for_the_value_comparisons_go_to_fista():
    """In float32, ``u`` of order 1e18 puts ``||z||^2 / 2`` near 1e36, within a factor 1e4 of float32's range:
    heavy ball's value comparisons could overflow, so FISTA solves it (and the same data in float64 take heavy
    ball); both answers are certified."""
    W, b, V, U = hidden_instance("relu", "relu", seed=13, q=5, p=4, m=7)
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 1.0, "tol": 1e-5}
    big = [x * s for x, s in ((W, 1.0), (b, 1e18), (V, 1e18), (U, 1e18))]
    f32 = ft.x_hidden(*(x.float() for x in big), **kw)
    f64 = ft.x_hidden(*big, **kw)
    assert f32.solver == "fista" and f64.solver == "heavy_ball"
    assert f32.converged and f64.converged
    torch.testing.assert_close(f32.Z.double(), f64.Z, rtol=1e-2, atol=1e-2 * float(f64.Z.abs().max()))
