"""The torch X-updates (fenchel_cvx.torch.x_hidden / x_last) against the CVXPY face, and their own contract.

Order: argument checks; certificates on their own (the gap bounds the true suboptimality, the certificate meets
tol, the reported residual is the optimality residual of fenchel_cvx.optimality and is small); agreement with
CVXPY for every activation x activation and loss x activation (value 1e-6 relative, argmin 1e-4); then
properties (batched == column by column, float32 == float64, warm starts, NotConvergedWarning, W = 0, boundary
data, cuda == cpu). Seeded float64 instances, small sizes. Runtime: about 15-30 s on 2 busy CPU cores (half of
it in the CVXPY reference solves).
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
from fenchel_cvx.activations import Activation, get_activation
from fenchel_cvx.errors import (
    ChoiceError,
    DomainError,
    LabelError,
    NotConvergedWarning,
    ShapeError,
    TensorMismatchError,
    ValueRangeError,
)
from fenchel_cvx.losses import Loss, get_loss
from fenchel_cvx.optimality import x_hidden_residual, x_last_residual
from fenchel_cvx.subproblems import SUBPROBLEMS

ACTS = ["relu", "leaky_relu", "sigmoid", "tanh"]
LOSSES = ["mse", "ce"]
F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Softsign(Activation):
    """An activation the torch face does not solve (a subclass of none of its four)."""

    name, domain = "softsign", (-1.0, 1.0)


class Hinge(Loss):
    """A loss the torch face does not solve."""

    name = "hinge"


def hidden_instance(act: str, act_prev: str, seed: int = 0, q: int = 5, p: int = 4, m: int = 7):
    """W, b, X_next in dom(act) (a noisy feed-forward value), U_prev."""
    g = torch.Generator().manual_seed(seed)
    a, ap = get_activation(act), get_activation(act_prev)
    W = torch.randn(q, p, generator=g, dtype=F64) / math.sqrt(p)
    b = 0.3 * torch.randn(q, generator=g, dtype=F64)
    U = torch.randn(p, m, generator=g, dtype=F64)
    V = a.forward(W @ ap.forward(U) + b[:, None] + 0.7 * torch.randn(q, m, generator=g, dtype=F64))
    return W, b, V, U


def last_instance(loss: str, seed: int = 0, K: int = 3, p: int = 4, m: int = 7, soft: bool = False):
    """W, b, Y (labels, or soft probability columns), U_prev."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(K, p, generator=g, dtype=F64) / math.sqrt(p)
    b = 0.3 * torch.randn(K, generator=g, dtype=F64)
    U = torch.randn(p, m, generator=g, dtype=F64)
    if soft:
        Y = torch.softmax(2 * torch.randn(K, m, generator=g, dtype=F64), dim=0)
    else:
        Y = torch.randint(0, K, (m,), generator=g)
    return W, b, Y, U


def col_objective_hidden(Z, W, b, V, U, act, act_prev, lam, lam_prev):
    """Per-column objective of eq. (14) with the public activation methods."""
    a, ap = get_activation(act), get_activation(act_prev)
    return lam * a.B(V, W @ Z + b[:, None]).sum(0) + lam_prev * ap.B(Z, U).sum(0)


def col_objective_last(Z, W, b, Y, U, loss, act_prev, lam_prev):
    L, ap = get_loss(loss), get_activation(act_prev)
    return L.per_sample(Y, W @ Z + b[:, None]) + lam_prev * ap.B(Z, U).sum(0)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def np_(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


# -- argument checks --------------------------------------------------------------------------------------------
def test_every_registry_entry_has_a_torch_twin():
    for name in SUBPROBLEMS:
        assert callable(getattr(ft, name, None)), name


def test_same_arguments_as_the_cvxpy_face():
    face_only = {"solver", "solver_opts", "chunk", "polish", "tol", "max_iter", "Z0", "warn", "certify", "step_dtype"}
    for name in ("x_hidden", "x_last"):
        ours = inspect.signature(getattr(ft, name)).parameters
        ref = inspect.signature(getattr(cvx, name)).parameters
        assert [(k, p.default, p.kind) for k, p in ours.items() if k not in face_only] == \
               [(k, p.default, p.kind) for k, p in ref.items() if k not in face_only], name
        assert ours["tol"].default == 1e-6
        assert ours["Z0"].default is None


def test_argument_errors_are_typed():
    W, b, V, U = hidden_instance("relu", "relu")
    kw = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 1.0}
    bad = [
        (lambda: ft.x_hidden(W.numpy(), b, V, U, **kw), TensorMismatchError, "torch.Tensor"),
        (lambda: ft.x_hidden(W, b, V.float(), U, **kw), TensorMismatchError, "dtype"),
        (lambda: ft.x_hidden(W, b, V, U.to("meta"), **kw), TensorMismatchError, "device"),
        (lambda: ft.x_hidden(W.long(), b, V, U, **kw), TensorMismatchError, "float32 or float64"),
        (lambda: ft.x_hidden(W, b, V, U[:, :3], **kw), ShapeError, "U_prev"),
        (lambda: ft.x_hidden(W, b, V[:3], U, **kw), ShapeError, "X_next"),
        (lambda: ft.x_hidden(W, b[:2], V, U, **kw), ShapeError, "b"),
        (lambda: ft.x_hidden(W[0], b, V, U, **kw), ShapeError, "W"),
        (lambda: ft.x_hidden(W, b, V[:, :0], U[:, :0], **kw), ShapeError, "m = 0"),
        (lambda: ft.x_hidden(W, b, -V - 1, U, **kw), DomainError, "X_next"),
        (lambda: ft.x_hidden(W, b, V, U * math.nan, **kw), DomainError, "U_prev"),
        (lambda: ft.x_hidden(W, b, V, U, **dict(kw, lam=0.0)), ValueRangeError, "lam"),
        (lambda: ft.x_hidden(W, b, V, U, **dict(kw, lam_prev=-1.0)), ValueRangeError, "lam_prev"),
        (lambda: ft.x_hidden(W, b, V, U, tol=0.0, **kw), ValueRangeError, "tol"),
        (lambda: ft.x_hidden(W, b, V, U, max_iter=0, **kw), ValueRangeError, "max_iter"),
        (lambda: ft.x_hidden(W, b, V, U, warn="no", **kw), ValueRangeError, "warn"),
        (lambda: ft.x_hidden(W, b, V, U, Z0=-torch.ones_like(U), **kw), DomainError, "Z0"),
        (lambda: ft.x_hidden(W, b, V, U, Z0=torch.ones(2, 7, dtype=F64), **kw), ShapeError, "Z0"),
        (lambda: ft.x_hidden(W, b, V, U, **dict(kw, act=Softsign())), ChoiceError, "act: expected one of"),
    ]
    Wl, bl, Yl, Ul = last_instance("ce")
    kl = {"loss": "ce", "act_prev": "relu", "lam_prev": 1.0}
    bad += [
        (lambda: ft.x_last(Wl, bl, Yl + 5, Ul, **kl), LabelError, "labels"),
        (lambda: ft.x_last(Wl, bl, torch.ones(3, 7, dtype=F64), Ul, **kl), LabelError, "probability"),
        (lambda: ft.x_last(Wl, bl, Yl.to("meta"), Ul, **kl), TensorMismatchError, "device"),
        (lambda: ft.x_last(Wl, bl, torch.ones(4, 7, dtype=F64), Ul, **kl), ShapeError, "Y"),
        (lambda: ft.x_last(Wl, bl, Yl, Ul, **dict(kl, loss=Hinge())), ChoiceError, "loss: expected one of"),
    ]
    for call, err, match in bad:
        with pytest.raises(err, match=match):
            call()


# -- certificates ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act,act_prev", [("relu", "relu"), ("tanh", "sigmoid"), ("sigmoid", "leaky_relu")])
def test_gap_bounds_the_suboptimality_of_every_iterate(act, act_prev):
    W, b, V, U = hidden_instance(act, act_prev, seed=1, m=9)
    kw = {"act": act, "act_prev": act_prev, "lam": 2.0, "lam_prev": 0.3}
    best = ft.x_hidden(W, b, V, U, tol=1e-14, **kw)
    p_star = col_objective_hidden(best.Z, W, b, V, U, **kw)
    for max_iter in (1, 2, 5):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            r = ft.x_hidden(W, b, V, U, tol=1e-14, max_iter=max_iter, **kw)
        sub = col_objective_hidden(r.Z, W, b, V, U, **kw) - p_star
        assert bool((sub <= r.info["gap"] * (1 + 1e-9) + 1e-13).all()), (max_iter, sub, r.info["gap"])
        assert bool((r.info["gap"] > 0).any())


@pytest.mark.parametrize("loss", LOSSES)
def test_x_last_gap_bounds_the_suboptimality(loss):
    W, b, Y, U = last_instance(loss, seed=2, m=9)
    kw = {"loss": loss, "act_prev": "relu", "lam_prev": 0.2}
    p_star = col_objective_last(ft.x_last(W, b, Y, U, tol=1e-14, **kw).Z, W, b, Y, U, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        r = ft.x_last(W, b, Y, U, tol=1e-14, max_iter=1, **kw)
    sub = col_objective_last(r.Z, W, b, Y, U, **kw) - p_star
    assert bool((sub <= r.info["gap"] * (1 + 1e-9) + 1e-13).all())


# The gap is quadratic in the distance to the argmin, the KKT (natural) residual linear: a relative gap of
# 1e-13 puts the KKT residual near sqrt(1e-13) ~ 3e-7 times the problem's scale.
@pytest.mark.parametrize("act,act_prev", [(a, ap) for a in ACTS for ap in ACTS])
def test_x_hidden_certificates(act, act_prev):
    W, b, V, U = hidden_instance(act, act_prev, seed=3)
    kw = {"act": act, "act_prev": act_prev, "lam": 1.5, "lam_prev": 0.5}
    r = ft.x_hidden(W, b, V, U, tol=1e-13, **kw)
    assert r.converged and r.status == "optimal" and r.backend == "torch"
    assert r.solver == ("heavy_ball" if act_prev == "relu" else "fista")
    cert = r.info["certificate"]
    assert cert.shape == (U.shape[1],) and float(cert.max()) <= 1e-13
    assert bool(get_activation(act_prev).in_domain(r.Z).all())
    kkt = x_hidden_residual(r.Z, W, b, V, U, **kw)
    assert r.residual.shape == (U.shape[1],) and r.max_residual == float(r.residual.max()) < 1e-5
    torch.testing.assert_close(r.residual, kkt.per_item / kkt.scale, rtol=1e-6, atol=1e-15)
    assert rel(r.value, float(col_objective_hidden(r.Z, W, b, V, U, **kw).sum())) < 1e-12


@pytest.mark.parametrize("loss,act_prev", [(lo, ap) for lo in LOSSES for ap in ACTS])
def test_x_last_certificates(loss, act_prev):
    W, b, Y, U = last_instance(loss, seed=4, soft=(loss == "ce"))
    kw = {"loss": loss, "act_prev": act_prev, "lam_prev": 0.4}
    r = ft.x_last(W, b, Y, U, tol=1e-13, **kw)
    assert r.converged and r.solver == ("dual_newton" if loss == "mse" else "heavy_ball" if act_prev == "relu" else
                                        "fista")
    assert float(r.info["certificate"].max()) <= 1e-13
    kkt = x_last_residual(r.Z, W, b, Y, U, **kw)
    assert r.max_residual < 1e-5 and kkt.relative < 1e-5
    torch.testing.assert_close(r.residual, kkt.per_item / kkt.scale, rtol=1e-6, atol=1e-15)
    assert rel(r.value, float(col_objective_last(r.Z, W, b, Y, U, **kw).sum())) < 1e-12


# -- agreement with the CVXPY face ----------------------------------------------------------------------------
@pytest.mark.parametrize("act,act_prev", [(a, ap) for a in ACTS for ap in ACTS])
def test_x_hidden_matches_cvxpy(act, act_prev):
    W, b, V, U = hidden_instance(act, act_prev, seed=5)
    kw = {"act": act, "act_prev": act_prev, "lam": 1.0, "lam_prev": 0.6}
    ours = ft.x_hidden(W, b, V, U, tol=1e-12, **kw)
    ref = cvx.x_hidden(np_(W), np_(b), np_(V), np_(U), **kw)
    assert rel(ours.value, ref.value) < 1e-6
    assert ours.value <= ref.value + 1e-9 * abs(ref.value)  # certified to 1e-12: never worse than the reference
    assert np.abs(np_(ours.Z) - ref.Z).max() <= 1e-4 * max(1.0, np.abs(ref.Z).max())


@pytest.mark.parametrize("loss,act_prev", [(lo, ap) for lo in LOSSES for ap in ACTS])
def test_x_last_matches_cvxpy(loss, act_prev):
    W, b, Y, U = last_instance(loss, seed=6)
    kw = {"loss": loss, "act_prev": act_prev, "lam_prev": 0.3}
    ours = ft.x_last(W, b, Y, U, tol=1e-12, **kw)
    ref = cvx.x_last(np_(W), np_(b), np_(Y), np_(U), **kw)
    assert rel(ours.value, ref.value) < 1e-6
    assert ours.value <= ref.value + 1e-9 * abs(ref.value)
    assert np.abs(np_(ours.Z) - ref.Z).max() <= 1e-4 * max(1.0, np.abs(ref.Z).max())


def test_no_bias_matches_cvxpy():
    W, _, V, U = hidden_instance("relu", "tanh", seed=7)
    kw = {"act": "relu", "act_prev": "tanh", "lam": 1.0, "lam_prev": 0.5}
    ours, ref = ft.x_hidden(W, None, V, U, tol=1e-12, **kw), cvx.x_hidden(np_(W), None, np_(V), np_(U), **kw)
    assert rel(ours.value, ref.value) < 1e-6
    Wl, _, Y, Ul = last_instance("mse", seed=7)
    kl = {"loss": "mse", "act_prev": "relu", "lam_prev": 0.5}
    ours, ref = ft.x_last(Wl, None, Y, Ul, tol=1e-12, **kl), cvx.x_last(np_(Wl), None, np_(Y), np_(Ul), **kl)
    assert rel(ours.value, ref.value) < 1e-6


# -- properties -------------------------------------------------------------------------------------------------
def _distance_bound(gap, mu):
    return torch.sqrt(2 * gap / mu)  # strong convexity: ||z - z*|| <= sqrt(2 gap / mu)


@pytest.mark.parametrize("act,act_prev", [("relu", "relu"), ("tanh", "sigmoid")])
def test_batched_equals_column_by_column(act, act_prev):
    W, b, V, U = hidden_instance(act, act_prev, seed=8, m=6)
    kw = {"act": act, "act_prev": act_prev, "lam": 1.0, "lam_prev": 0.5, "tol": 1e-13}
    full = ft.x_hidden(W, b, V, U, **kw)
    mu = full.info["mu"]
    for j in range(U.shape[1]):
        one = ft.x_hidden(W, b, V[:, j:j + 1], U[:, j:j + 1], **kw)
        diff = float((one.Z[:, 0] - full.Z[:, j]).norm())
        bound = float(_distance_bound(one.info["gap"][0], mu) + _distance_bound(full.info["gap"][j], mu))
        assert diff <= bound + 1e-12 and diff < 1e-6, (j, diff, bound)


@pytest.mark.parametrize("loss", LOSSES)
def test_x_last_batched_equals_column_by_column(loss):
    W, b, Y, U = last_instance(loss, seed=9, m=5)
    kw = {"loss": loss, "act_prev": "relu", "lam_prev": 0.5, "tol": 1e-13}
    full = ft.x_last(W, b, Y, U, **kw)
    for j in range(U.shape[1]):
        one = ft.x_last(W, b, Y[j:j + 1], U[:, j:j + 1], **kw)
        assert float((one.Z[:, 0] - full.Z[:, j]).norm()) < 1e-6


def test_cpu_column_blocks_equal_one_batch(monkeypatch):
    from fenchel_cvx.torch import x_updates
    W, b, V, U = hidden_instance("relu", "sigmoid", seed=10, m=40)
    kw = {"act": "relu", "act_prev": "sigmoid", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-13}
    one = ft.x_hidden(W, b, V, U, **kw)
    monkeypatch.setattr(x_updates, "_CPU_BLOCK", 1)
    monkeypatch.setattr(x_updates, "_MIN_BLOCK", 16)
    blocked = ft.x_hidden(W, b, V, U, **kw)
    assert blocked.info["blocks"] == 3 and one.info["blocks"] == 1
    assert float((blocked.Z - one.Z).abs().max()) < 1e-6 and rel(blocked.value, one.value) < 1e-12


@pytest.mark.parametrize("case", ["hidden-relu", "hidden-sigmoid", "last-mse", "last-ce"])
def test_float32_gives_the_float64_answer(case):
    if case.startswith("hidden"):
        ap = case.split("-")[1]
        W, b, V, U = hidden_instance("relu", ap, seed=11, m=20)
        kw = {"act": "relu", "act_prev": ap, "lam": 1.0, "lam_prev": 0.5}
        data = (W, b, V, U)
        fn = ft.x_hidden
    else:
        loss = case.split("-")[1]
        W, b, Y, U = last_instance(loss, seed=11, m=20)
        kw = {"loss": loss, "act_prev": "relu", "lam_prev": 0.5}
        data = (W, b, Y, U)
        fn = ft.x_last
    r64 = fn(*data, tol=1e-12, **kw)
    f32 = [x.float() if x.is_floating_point() else x for x in data]
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)  # the default tol is reachable in float32
        fn(*f32, **kw)
        r32 = fn(*f32, tol=1e-9, **kw)
    assert r32.Z.dtype == torch.float32 and r32.residual.dtype == torch.float32
    assert float((r32.Z.double() - r64.Z).norm()) <= 1e-4 * float(r64.Z.norm())
    assert rel(r32.value, r64.value) < 1e-4


@pytest.mark.parametrize("case", ["hidden-relu", "hidden-tanh", "last-mse", "last-ce"])
def test_warm_start_cuts_iterations(case):
    g = torch.Generator().manual_seed(12)
    if case.startswith("hidden"):
        ap = case.split("-")[1]
        W, b, V, U = hidden_instance("relu", ap, seed=12, m=30)
        kw = {"act": "relu", "act_prev": ap, "lam": 1.0, "lam_prev": 0.2, "tol": 1e-10}
        fn, data = ft.x_hidden, [W, b, V, U]
    else:
        W, b, Y, U = last_instance(case.split("-")[1], seed=12, m=30)
        kw = {"loss": case.split("-")[1], "act_prev": "relu", "lam_prev": 0.05, "tol": 1e-10}
        fn, data = ft.x_last, [W, b, Y, U]
    first = fn(*data, **kw)
    data[3] = U + 1e-3 * torch.randn(U.shape, generator=g, dtype=F64)  # the next BCD sweep: a nearby problem
    cold = fn(*data, **kw)
    warm = fn(*data, Z0=first.Z, **kw)
    assert warm.converged and cold.converged
    assert warm.iterations < cold.iterations, (warm.iterations, cold.iterations)
    assert rel(warm.value, cold.value) < 1e-8


def test_an_optimal_warm_start_costs_no_iteration():
    W, b, V, U = hidden_instance("sigmoid", "tanh", seed=13)
    kw = {"act": "sigmoid", "act_prev": "tanh", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-8}
    first = ft.x_hidden(W, b, V, U, **dict(kw, tol=1e-13))
    again = ft.x_hidden(W, b, V, U, Z0=first.Z, **kw)
    assert again.iterations == 0 and torch.equal(again.Z, first.Z)


def test_not_converged_warns_and_reports():
    W, b, V, U = hidden_instance("relu", "relu", seed=14)
    with pytest.warns(NotConvergedWarning, match=r"x_hidden: stopped at max_iter=1 with certificate "):
        r = ft.x_hidden(W, b, V, U, act="relu", act_prev="relu", lam=1.0, lam_prev=0.1, tol=1e-15, max_iter=1)
    assert not r.converged and r.status == "max_iter" and r.iterations == 1
    assert float(r.info["certificate"].max()) > 1e-15 and r.max_residual > 0
    Wl, bl, Y, Ul = last_instance("ce", seed=14)
    with pytest.warns(NotConvergedWarning, match="x_last"):
        r = ft.x_last(Wl, bl, Y, Ul, loss="ce", act_prev="relu", lam_prev=0.1, tol=1e-15, max_iter=1)
    assert not r.converged
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        r = ft.x_last(Wl, bl, Y, Ul, loss="ce", act_prev="relu", lam_prev=0.1, tol=1e-15, max_iter=1, warn=False)
    assert not r.converged and r.status == "max_iter"


def test_a_round_off_floor_above_tol_stalls_early():
    # float32 cannot certify a relative gap of 1e-14: the solver notices and stops long before max_iter.
    W, b, V, U = (x.float() for x in hidden_instance("relu", "sigmoid", seed=19, m=10))
    with pytest.warns(NotConvergedWarning, match="stalled"):
        r = ft.x_hidden(W, b, V, U, act="relu", act_prev="sigmoid", lam=1.0, lam_prev=0.5, tol=1e-14,
                        max_iter=100_000)
    assert r.status == "stalled" and not r.converged and r.iterations < 2000


@pytest.mark.parametrize("act_prev", ACTS)
def test_zero_weights_give_the_feed_forward_point(act_prev):
    _, b, V, U = hidden_instance("relu", act_prev, seed=15)
    W = torch.zeros(V.shape[0], U.shape[0], dtype=F64)
    r = ft.x_hidden(W, b, V, U, act="relu", act_prev=act_prev, lam=1.0, lam_prev=0.5)
    assert r.converged and r.iterations <= 1
    assert float((r.Z - get_activation(act_prev).forward(U)).abs().max()) < 1e-12


def test_saturated_sigmoid_data_stay_in_the_domain():
    # X_next on the boundary {0, 1}, U_prev far in the tails: the entropic F_prev has infinite slope there.
    W, b, _, U = hidden_instance("sigmoid", "sigmoid", seed=16, m=8)
    V = (torch.arange(W.shape[0] * 8, dtype=F64).reshape(W.shape[0], 8) % 2)
    U = 40.0 * torch.sign(U)
    kw = {"act": "sigmoid", "act_prev": "sigmoid", "lam": 3.0, "lam_prev": 0.2}
    r = ft.x_hidden(W, b, V, U, tol=1e-10, **kw)
    assert r.converged and bool(((r.Z >= 0) & (r.Z <= 1)).all()) and math.isfinite(r.value)
    assert x_hidden_residual(r.Z, W, b, V, U, **kw).relative < 1e-5


def test_inputs_that_require_grad_are_fine():
    W, b, V, U = hidden_instance("relu", "relu", seed=17)
    r = ft.x_hidden(W.requires_grad_(), b, V, U, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
    assert not r.Z.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the cuda == cpu check needs a GPU")
def test_cuda_matches_cpu():
    W, b, V, U = hidden_instance("relu", "sigmoid", seed=18, m=50)
    kw = {"act": "relu", "act_prev": "sigmoid", "lam": 1.0, "lam_prev": 0.5, "tol": 1e-11}
    cpu = ft.x_hidden(W, b, V, U, **kw)
    gpu = ft.x_hidden(*(x.cuda() for x in (W, b, V, U)), **kw)
    assert gpu.Z.device.type == "cuda" and gpu.residual.device.type == "cuda"
    assert float((gpu.Z.cpu() - cpu.Z).abs().max()) < 1e-6 and rel(gpu.value, cpu.value) < 1e-9
    for loss in LOSSES:
        Wl, bl, Y, Ul = last_instance(loss, seed=18, m=50)
        kl = {"loss": loss, "act_prev": "relu", "lam_prev": 0.5, "tol": 1e-11}
        c = ft.x_last(Wl, bl, Y, Ul, **kl)
        g = ft.x_last(*(x.cuda() for x in (Wl, bl, Y, Ul)), **kl)
        assert float((g.Z.cpu() - c.Z).abs().max()) < 1e-6 and rel(g.value, c.value) < 1e-9


def test_a_capped_solve_keeps_the_start_where_the_last_iterate_is_worse(monkeypatch):
    # Make every FISTA prox step land far off (still in the leaky ReLU's domain): the last iterate is worse than
    # the start in every column, so a capped solve must hand back the start itself -- with its own certificate.
    from fenchel_cvx.torch import x_updates as xu
    W, b, V, U = hidden_instance("relu", "leaky_relu", seed=3, m=20)
    Z0 = torch.relu(U)
    kw = {"act": "relu", "act_prev": "leaky_relu", "lam": 1.0, "lam_prev": 0.3, "Z0": Z0, "warn": False}
    one = ft.x_hidden(W, b, V, U, **kw, max_iter=1)
    assert one.solver == "fista"
    good = xu._PrevTerm.solve
    monkeypatch.setattr(xu._PrevTerm, "solve", lambda self, *a, **kw: good(self, *a, **kw) + 5.0)
    r = ft.x_hidden(W, b, V, U, **kw, max_iter=3)
    torch.testing.assert_close(r.Z, Z0, rtol=0, atol=0)
    start = col_objective_hidden(Z0, W, b, V, U, "relu", "leaky_relu", 1.0, 0.3)
    assert r.value == pytest.approx(float(start.sum()), rel=1e-12)
    # the start's certificate and residual, not the step's
    assert float(r.info["certificate"].max()) > float(one.info["certificate"].max())
    kkt = x_hidden_residual(Z0, W, b, V, U, act="relu", act_prev="leaky_relu", lam=1.0, lam_prev=0.3)
    torch.testing.assert_close(r.residual, kkt.per_item / kkt.scale, rtol=1e-9, atol=0)


@pytest.mark.parametrize("act_prev", ["relu", "sigmoid", "tanh"])
def test_a_capped_solve_never_raises_a_column_objective(act_prev):
    # capped FISTA (inexact BCD) returns, per column, the lower of its start and its last accelerated iterate
    W, b, V, U = hidden_instance("relu", act_prev, seed=3, m=60)
    W = 4.0 * W  # ill-conditioned: momentum overshoots in the first iterations
    ap = get_activation(act_prev)
    Z0 = ap.forward(U + torch.randn(U.shape, generator=torch.Generator().manual_seed(2), dtype=F64))
    kw = {"act": "relu", "act_prev": act_prev, "lam": 1.0, "lam_prev": 0.3}
    start = col_objective_hidden(Z0, W, b, V, U, "relu", act_prev, 1.0, 0.3)
    for k in (1, 2, 3, 5, 8):
        r = ft.x_hidden(W, b, V, U, **kw, Z0=Z0, max_iter=k, warn=False)
        end = col_objective_hidden(r.Z, W, b, V, U, "relu", act_prev, 1.0, 0.3)
        assert bool((end <= start + 1e-12 * start.abs()).all()), (k, float((end - start).max()))
    Wl, bl, Y, Ul = last_instance("ce", seed=4, m=60)
    Wl = 5.0 * Wl
    Zl = ap.forward(Ul)
    start = col_objective_last(Zl, Wl, bl, Y, Ul, "ce", act_prev, 0.3)
    for k in (1, 2, 3, 5, 8):
        r = ft.x_last(Wl, bl, Y, Ul, loss="ce", act_prev=act_prev, lam_prev=0.3, Z0=Zl, max_iter=k, warn=False)
        end = col_objective_last(r.Z, Wl, bl, Y, Ul, "ce", act_prev, 0.3)
        assert bool((end <= start + 1e-12 * start.abs()).all()), (k, float((end - start).max()))
