"""The hidden W-update's Newton method with float32 row Hessians (``step_dtype=torch.float32``): the answer
against the CVXPY face and the float64 solver, the certificate still float64, the refinement doing its work, a
conv layer and the cold start's shared Hessian, and the arguments it refuses.

Runtime: a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from test_torch_w import ACTS, hidden_instance, rel

from fenchel_cvx import cvx
from fenchel_cvx import torch as ft
from fenchel_cvx.errors import ValueRangeError
from fenchel_cvx.layers import parse_arch
from fenchel_cvx.optimality import w_hidden_residual
from fenchel_cvx.torch import _wsolvers

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F32, F64 = torch.float32, torch.float64


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias,gamma", [(True, 0.5), (False, 0.0), (True, 0.0)])
def test_float32_hessians_match_cvxpy_and_the_float64_solver(act, bias, gamma):
    X, V, W0, b0 = hidden_instance(act, seed=31, p_in=8, p_out=5, m=50)
    kw = {"act": act, "lam": 1.3, "rho": 0.1, "gamma": gamma, "bias": bias, "W0": W0, "b0": b0}
    ours = ft.w_hidden(X, V, tol=1e-10, step_dtype=F32, **kw)
    assert ours.status == "optimal" and ours.W.dtype == F64 and ours.solver == "ssn"
    assert float(ours.info["certificate"].max()) <= 1e-10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a Clarabel 'optimal_inaccurate' is still far inside 1e-4
        ref = cvx.w_hidden(X.numpy(), V.numpy(), **{k: (v.numpy() if torch.is_tensor(v) else v)
                                                    for k, v in kw.items()})
    assert rel(ours.value, ref.value) < 1e-6
    np.testing.assert_allclose(ours.W.numpy(), ref.W, atol=1e-4 * max(1.0, float(np.abs(ref.W).max())), rtol=0)
    full = ft.w_hidden(X, V, tol=1e-10, **kw)
    assert rel(ours.value, full.value) < 1e-12
    torch.testing.assert_close(ours.W, full.W, rtol=0, atol=1e-8 * max(1.0, float(full.W.abs().max())))
    # the certificate is the float64 gradient's: the optimality module's residual at the returned point agrees
    kkt = w_hidden_residual(ours.W, ours.b, X, V, **{k: kw[k] for k in ("act", "lam", "rho", "gamma", "W0", "b0")})
    torch.testing.assert_close(ours.residual, kkt.per_item / kkt.scale, rtol=1e-5, atol=1e-14)


def test_the_same_newton_steps_as_in_float64():
    """Refined float32 directions take the float64 method's path: as many steps per row, the same answer."""
    X, V, _, _ = hidden_instance("relu", seed=32, p_in=30, p_out=12, m=200)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.01, "tol": 1e-10}
    ours, full = ft.w_hidden(X, V, step_dtype=F32, **kw), ft.w_hidden(X, V, **kw)
    assert int(ours.info["row_iterations"].max()) >= 3
    assert torch.equal(ours.info["row_iterations"], full.info["row_iterations"])
    assert rel(ours.value, full.value) < 1e-13


def test_one_refinement_step_beats_the_float32_solve_alone():
    """On row Hessians of condition ~2e5 (inputs of very different scales) the float32 factor alone leaves a
    relative error of float32's order; the refined direction is accurate to float64's."""
    g = torch.Generator().manual_seed(33)
    p, m, r = 20, 120, 3
    Xa = torch.randn(p, m, generator=g, dtype=F64) * torch.logspace(0, 2.5, p, dtype=F64).unsqueeze(1)
    Xt = Xa.T.contiguous()
    D = (torch.rand(r, m, generator=g, dtype=F64) > 0.4).to(F64)
    G = torch.randn(r, p, generator=g, dtype=F64)
    mu = torch.full((p,), 1e-3, dtype=F64)
    exact = torch.stack([torch.linalg.solve(Xa @ torch.diag(D[i]) @ Xt + torch.diag(mu), -G[i]) for i in range(r)])
    H32 = torch.stack([(Xa @ torch.diag(D[i]) @ Xt).float() for i in range(r)])
    alone, _ = _wsolvers._newton_directions(H32.clone(), torch.empty_like(H32), G.float(), 1.0, mu.float(), False)
    refined, shift, redone = _wsolvers._refined_directions(H32.clone(), torch.empty_like(H32), G, 1.0, mu, False, D,
                                                           Xa, Xt, (Xt * Xt).sum(1))
    err = lambda d: float(((d.double() - exact).norm(dim=1) / exact.norm(dim=1)).max())  # noqa: E731
    assert float(shift.max()) == 0.0 and redone == 0  # float32's own factors served every row
    assert err(alone) > 1e-8  # float32's round-off
    assert err(refined) < 1e-12


def test_the_solver_takes_float32_hessians_when_asked():
    X, V, _, _ = hidden_instance("relu", seed=38, p_in=12, p_out=6, m=90)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "tol": 1e-10}
    assert ft.w_hidden(X, V, step_dtype=F32, **kw).info["hessian_dtype"] == F32
    assert ft.w_hidden(X, V, **kw).info["hessian_dtype"] == F64
    assert ft.w_hidden(X.float(), V.float(), step_dtype=F32, **kw).info["hessian_dtype"] == F32  # solved in float64


def test_rows_float32_cannot_serve_are_redone_in_float64():
    """Nearly collinear inputs and a tiny ridge (row Hessians of condition ~1e7, float32's limit): float32
    factors alone gave uphill or wildly wrong directions and the solve stalled at max_iter; the rows whose
    refined float32 direction is not trustworthy are redone in float64, and the solve converges like float64's."""
    g = torch.Generator().manual_seed(0)
    p, m, r = 12, 80, 16
    X = (torch.randn(p, 3, generator=g, dtype=F64) @ torch.randn(3, m, generator=g, dtype=F64)
         + 1e-4 * torch.randn(p, m, generator=g, dtype=F64))
    V = torch.relu(torch.randn(r, p, generator=g, dtype=F64) @ X / p ** 0.5
                   + 0.3 * torch.randn(r, m, generator=g, dtype=F64))
    kw = {"act": "relu", "lam": 1.0, "rho": 0.5e-7 * float((X * X).sum(1).mean()), "bias": False, "tol": 1e-10}
    ours, full = ft.w_hidden(X, V, step_dtype=F32, **kw), ft.w_hidden(X, V, **kw)
    assert ours.status == "optimal" and float(ours.info["certificate"].max()) <= 1e-10
    assert ours.info["float64_rows"] > 0
    assert rel(ours.value, full.value) < 1e-12
    assert ours.iterations <= full.iterations + 5


@pytest.mark.parametrize("case", ["X*1e20", "V*1e-42"])
def test_inputs_beyond_float32_are_solved_as_in_float64(case):
    """Hessian entries beyond float32's range take float64 throughout; gradients far below it are scaled before
    each cast (they underflowed, and the solve stalled)."""
    X, V, _, _ = hidden_instance("relu", seed=39, p_in=8, p_out=5, m=60)
    if case == "X*1e20":
        X = X * 1e20
    else:
        V = V * 1e-42
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "tol": 1e-10}
    ours, full = ft.w_hidden(X, V, step_dtype=F32, **kw), ft.w_hidden(X, V, **kw)
    assert ours.status == "optimal" and ours.iterations <= full.iterations + 2
    assert ours.info["hessian_dtype"] == (F64 if case == "X*1e20" else F32)
    assert abs(ours.value - full.value) <= 1e-9 * abs(full.value)


def test_cold_start_shares_one_factor_and_still_matches():
    """From zero every row has the same Hessian (one float32 factor for all rows, refined row by row)."""
    X, V, _, _ = hidden_instance("leaky_relu", seed=34, p_in=10, p_out=7, m=60)
    kw = {"act": "leaky_relu", "lam": 0.8, "rho": 0.05, "tol": 1e-11}
    ours = ft.w_hidden(X, V, step_dtype=F32, max_iter=1, warn=False, **kw)
    full = ft.w_hidden(X, V, max_iter=1, warn=False, **kw)
    torch.testing.assert_close(ours.W, full.W, rtol=0, atol=1e-10 * max(1.0, float(full.W.abs().max())))


def test_conv_layer_takes_float32_hessians_too():
    layer = parse_arch("2x5x5-a2c3k2p1-f3")[0]  # pooling, then a conv with padding
    g = torch.Generator().manual_seed(35)
    X = torch.relu(torch.randn(layer.n_in, 8, generator=g, dtype=F64))
    V = torch.relu(torch.randn(layer.n_out, 8, generator=g, dtype=F64))
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "tol": 1e-10, "layer": layer}
    ours, full = ft.w_hidden(X, V, step_dtype=F32, **kw), ft.w_hidden(X, V, **kw)
    assert tuple(ours.W.shape) == tuple(layer.weight_shape) and ours.status == "optimal"
    assert rel(ours.value, full.value) < 1e-12


def test_float32_inputs_and_float64_steps_are_the_plain_solve():
    X, V, _, _ = hidden_instance("relu", seed=36)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "tol": 1e-10}
    assert torch.equal(ft.w_hidden(X, V, step_dtype=F64, **kw).W, ft.w_hidden(X, V, **kw).W)
    X32, V32 = X.float(), V.float()
    ours = ft.w_hidden(X32, V32, step_dtype=F32, **kw)
    assert ours.W.dtype == F32 and ours.status == "optimal"
    assert rel(ours.value, ft.w_hidden(X32, V32, **kw).value) < 1e-12


@pytest.mark.parametrize("bad,match", [({"step_dtype": torch.int32}, "step_dtype: expected"),
                                       ({"step_dtype": "float32"}, "step_dtype: expected"),
                                       ({"step_dtype": F32, "method": "mm"}, "method='mm'")])
def test_bad_step_dtype_is_refused(bad, match):
    X, V, _, _ = hidden_instance("relu", seed=37)
    with pytest.raises(ValueRangeError, match=match):
        ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.1, **bad)
