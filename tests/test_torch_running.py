"""The W-updates' ``method="running"`` (inexact BCD's fast mode: preconditioned steps with a running curvature),
paired with the MM steps, the closed form and the CVXPY reference; plus the uncertified capped X-updates they run
with.

Runtime: a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fenchel_cvx import cvx
from fenchel_cvx import torch as tf
from fenchel_cvx.errors import CheckpointError, ChoiceError, DomainError, ShapeError, ValueRangeError
from fenchel_cvx.losses import Loss
from fenchel_cvx.torch.curvature import RunningCurvature, hidden_curvature, last_curvature

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = torch.float64


def w_hidden_step(X_in, X_next, U, W, b, **kw):
    """One running step from ``(W, b)`` with the feed-forward's ``U``: BCD's call."""
    return tf.w_hidden(X_in, X_next, W_init=W, b_init=b, U=U, method="running", max_iter=1, warn=False, **kw)


def w_last_step(X_in, Y, W, b, **kw):
    return tf.w_last(X_in, Y, W_init=W, b_init=b, method="running", max_iter=1, warn=False, **kw)


def _hidden(p_in=7, r=5, m=40, seed=0, act="relu"):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(p_in, m, generator=g, dtype=F64)
    W = 0.5 * torch.randn(r, p_in, generator=g, dtype=F64)
    b = 0.1 * torch.randn(r, generator=g, dtype=F64)
    V = torch.rand(r, m, generator=g, dtype=F64)
    if act in ("sigmoid",):
        V = 0.05 + 0.9 * V
    return X, V, W, b


class _Hinge(Loss):
    """A loss the torch face does not solve."""

    name = "hinge"


def _rel(a, b):
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


# -- the step with an exact curvature is the MM step ------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("rho,gamma,m", [(0.0, 0.7, 12), (0.3, 0.7, 40), (0.3, 0.0, 40)])
def test_hidden_step_with_this_batchs_curvature_is_the_mm_step(act, rho, gamma, m):
    """Refreshed from the same batch at full rank, ``\\hat M`` is the MM bound ``lam s X_a X_a^T + diag(mu)``:
    the step must equal ``w_hidden(method="mm", max_iter=1)`` (its sample-space form when m < p_a)."""
    X, V, W, b = _hidden(m=m, act=act)
    W0, b0 = W + 0.1, b - 0.2
    lam = 0.8
    kw = {"act": act, "lam": lam, "rho": rho, "gamma": gamma, "W0": W0 if gamma else None, "b0": b0 if gamma else None}
    ref = tf.w_hidden(X, V, **kw, W_init=W, b_init=b, max_iter=1, warn=False, method="mm")
    curv = hidden_curvature(X.shape[0], act=act, lam=lam, rho=rho, gamma=gamma, rank=None)
    assert curv.observe(X)
    U = W @ X + b[:, None]
    out = w_hidden_step(X, V, U, W, b, curvature=curv, **kw)
    assert _rel(out.W, ref.W) < 1e-9 and _rel(out.b, ref.b) < 1e-9
    assert out.status == "unchecked" and np.isnan(out.max_residual) and np.isnan(out.value)
    assert out.iterations == 1 and not out.converged and out.backend == "torch" and out.solver == "running_mm"
    assert out.residual.shape == (V.shape[0],) and bool(torch.isnan(out.residual).all())
    assert bool(torch.isnan(out.info["certificate"]).all())


def test_last_step_with_this_batchs_curvature_is_the_mm_step_or_the_closed_form():
    X, _, _, _ = _hidden(p_in=6, m=50)
    g = torch.Generator().manual_seed(3)
    K = 4
    W, b = 0.3 * torch.randn(K, 6, generator=g, dtype=F64), torch.zeros(K, dtype=F64)
    labels = torch.randint(0, K, (50,), generator=g)
    Y = torch.nn.functional.one_hot(labels, K).T.to(F64)
    for loss in ("ce", "mse"):
        kw = {"loss": loss, "rho": 0.2, "gamma": 1.5, "W0": W - 0.1, "b0": b + 0.1}
        curv = last_curvature(6, loss=loss, rho=0.2, gamma=1.5, rank=None)
        curv.observe(X)
        out = w_last_step(X, Y, W, b, curvature=curv, **kw)
        if loss == "ce":  # Boehning's bound: the MM step
            ref = tf.w_last(X, Y, **kw, W_init=W, b_init=b, max_iter=1, warn=False, method="mm")
        else:  # MSE is quadratic and 2 X_a X_a^T + diag(mu) is its Hessian: one step is the exact solution
            ref = tf.w_last(X, Y, **kw)
        assert _rel(out.W, ref.W) < 1e-9 and _rel(out.b, ref.b) < 1e-9, loss


def test_relax_scales_the_step():
    X, V, W, b = _hidden()
    kw = {"act": "relu", "lam": 0.5, "rho": 0.1, "gamma": 1.0, "W0": W - 0.2, "b0": b}
    c = hidden_curvature(7, act="relu", lam=0.5, rho=0.1, gamma=1.0, rank=3)
    c.observe(X)
    U = W @ X + b[:, None]
    one = w_hidden_step(X, V, U, W, b, curvature=c, **kw)
    three = w_hidden_step(X, V, U, W, b, curvature=c, relax=3.0, **kw)
    torch.testing.assert_close(three.W - W, 3.0 * (one.W - W), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(three.b - b, 3.0 * (one.b - b), rtol=1e-12, atol=1e-14)
    for bad in (0.0, -1.0, float("nan"), "big"):
        with pytest.raises(ValueRangeError, match="relax"):
            w_hidden_step(X, V, U, W, b, curvature=c, relax=bad, **kw)


def _hidden_objective(X, V, W, b, lam, rho, gamma, W0, b0):
    """Eq. (19) per row, relu: lam sum B(v, W x + b) + rho ||w||^2 + gamma ||[w, b] - [w0, b0]||^2."""
    U = W @ X + b[:, None]
    B = 0.5 * V ** 2 + 0.5 * torch.relu(U) ** 2 - U * V
    return lam * B.sum(1) + rho * (W ** 2).sum(1) + gamma * (((W - W0) ** 2).sum(1) + (b - b0) ** 2)


def test_line_search_makes_a_bad_curvature_safe_and_finds_the_row_minimum():
    """A curvature estimate 1000x too small overshoots; with the line search every row still decreases, to the
    minimum along its step (checked by perturbing the step length both ways)."""
    X, V, W, b = _hidden(r=6, m=60, seed=8)
    kw = {"act": "relu", "lam": 0.7, "rho": 0.05, "gamma": 0.5, "W0": W + 0.05, "b0": b}
    bad = RunningCurvature(0.7e-3, torch.full((8,), 1e-3, dtype=F64), rank=None)
    bad.observe(X)
    U = W @ X + b[:, None]
    f0 = _hidden_objective(X, V, W, b, 0.7, 0.05, 0.5, kw["W0"], kw["b0"])
    plain = w_hidden_step(X, V, U, W, b, curvature=bad, **kw)
    assert bool((_hidden_objective(X, V, plain.W, plain.b, 0.7, 0.05, 0.5, kw["W0"], kw["b0"]) > f0).any())
    safe = w_hidden_step(X, V, U, W, b, curvature=bad, line_search=True, **kw)
    f1 = _hidden_objective(X, V, safe.W, safe.b, 0.7, 0.05, 0.5, kw["W0"], kw["b0"])
    assert bool((f1 < f0).all())
    dW, db = safe.W - W, safe.b - b
    for scale in (0.98, 1.02):
        g = _hidden_objective(X, V, W + scale * dW, b + scale * db, 0.7, 0.05, 0.5, kw["W0"], kw["b0"])
        assert bool((g >= f1 - 1e-12 * f1.abs()).all()), scale
    with pytest.raises(ValueRangeError, match="relax"):
        w_hidden_step(X, V, U, W, b, curvature=bad, line_search=True, relax=2.0, **kw)
    with pytest.raises(ValueRangeError, match="line_search"):
        w_hidden_step(X, V, U, W, b, curvature=bad, line_search="yes", **kw)


def test_last_step_line_search_never_increases_the_objective():
    X, _, _, _ = _hidden(p_in=6, m=50, seed=9)
    g = torch.Generator().manual_seed(9)
    W, b = torch.randn(4, 6, generator=g, dtype=F64), torch.zeros(4, dtype=F64)
    Y = torch.nn.functional.one_hot(torch.randint(0, 4, (50,), generator=g), 4).T.to(F64)
    bad = RunningCurvature(0.5e-3, torch.full((7,), 1e-3, dtype=F64), rank=None)
    bad.observe(X)

    def f(W_, b_):
        return float(-(Y * torch.log_softmax(W_ @ X + b_[:, None], 0)).sum()) + 0.1 * float((W_ ** 2).sum())
    plain = w_last_step(X, Y, W, b, loss="ce", rho=0.1, curvature=bad)
    safe = w_last_step(X, Y, W, b, loss="ce", rho=0.1, curvature=bad, line_search=True)
    assert f(plain.W, plain.b) > f(W, b) > f(safe.W, safe.b)


# -- iterated on one batch it solves the W-update (CVXPY reference) --------------------------------------------------
def test_hidden_steps_converge_to_the_cvxpy_argmin():
    X, V, W, b = _hidden(p_in=4, r=3, m=30, seed=5)
    kw = {"act": "relu", "lam": 1.0, "rho": 0.1, "gamma": 0.5, "W0": W.clone(), "b0": b.clone()}
    ref = cvx.w_hidden(X.numpy(), V.numpy(), **{k: (v.numpy() if torch.is_tensor(v) else v) for k, v in kw.items()})
    curv = hidden_curvature(4, act="relu", lam=1.0, rho=0.1, gamma=0.5, rank=2, every=10**9)
    curv.observe(X)  # one refresh; low rank: a conservative (larger) bound, so plain MM convergence, slower
    r = tf.w_hidden(X, V, W_init=W, b_init=b, method="running", curvature=curv, max_iter=400, **kw)
    assert r.iterations == 400 and r.status == "unchecked"
    W, b = r.W, r.b
    np.testing.assert_allclose(W.numpy(), ref.W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.numpy(), ref.b, rtol=1e-5, atol=1e-6)
    # and the torch solver certifies the point as optimal
    cert = tf.w_hidden(X, V, **kw, W_init=W, b_init=b, max_iter=1, warn=False, method="mm")
    assert float(cert.info["certificate"].max()) < 1e-7 and cert.max_residual < 1e-7


def test_more_steps_recompute_U_and_equal_repeated_single_steps():
    X, V, W, b = _hidden(seed=6)
    kw = {"act": "relu", "lam": 0.5, "rho": 0.1, "gamma": 1.0, "W0": W + 0.1, "b0": b}
    c = hidden_curvature(7, act="relu", lam=0.5, rho=0.1, gamma=1.0, rank=3)
    c.observe(X)
    three = tf.w_hidden(X, V, W_init=W, b_init=b, method="running", curvature=c, max_iter=3, **kw)
    Wk, bk = W, b
    for _ in range(3):  # U=None: each call forms W X_in + b itself, as the later steps of one call do
        r = tf.w_hidden(X, V, W_init=Wk, b_init=bk, method="running", curvature=c, max_iter=1, **kw)
        Wk, bk = r.W, r.b
    assert three.iterations == 3 and torch.equal(three.W, Wk) and torch.equal(three.b, bk)
    # w_last likewise
    g = torch.Generator().manual_seed(6)
    Y = torch.nn.functional.one_hot(torch.randint(0, 5, (40,), generator=g), 5).T.to(F64)
    WL, bL = 0.3 * torch.randn(5, 7, generator=g, dtype=F64), torch.zeros(5, dtype=F64)
    cl = last_curvature(7, loss="ce", rho=0.1, gamma=0.0, rank=None)
    cl.observe(X)
    two = tf.w_last(X, Y, loss="ce", rho=0.1, W_init=WL, b_init=bL, method="running", curvature=cl, max_iter=2)
    one = w_last_step(X, Y, WL, bL, loss="ce", rho=0.1, curvature=cl)
    one = w_last_step(X, Y, one.W, one.b, loss="ce", rho=0.1, curvature=cl)
    assert two.iterations == 2 and torch.equal(two.W, one.W) and torch.equal(two.b, one.b)
    assert two.residual.shape == (5,) and bool(torch.isnan(two.residual).all())


# -- the running estimate -----------------------------------------------------------------------------------------
def test_low_rank_bound_lies_above_the_estimate_and_preconditions_with_its_inverse():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(9, 30, generator=g, dtype=F64) * torch.linspace(0.1, 3.0, 9, dtype=F64)[:, None]
    mu = torch.full((10,), 0.5, dtype=F64)
    exact = RunningCurvature(2.0, mu, rank=None)
    low = RunningCurvature(2.0, mu, rank=3)
    exact.observe(X)
    low.observe(X)
    Xa = torch.cat([X, torch.ones(1, 30, dtype=F64)])
    M = 2.0 * Xa @ Xa.T + torch.diag(mu)
    torch.testing.assert_close(exact.matrix(), M, rtol=1e-10, atol=1e-10)
    gap = torch.linalg.eigvalsh(low.matrix() - M)
    assert float(gap.min()) >= -1e-9 * float(M.diagonal().max())  # never below: a conservative step
    assert float(gap.max()) > 1e-3  # and really approximate
    G = torch.randn(4, 10, generator=g, dtype=F64)
    torch.testing.assert_close(low.precondition(G), G @ torch.linalg.inv(low.matrix()), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(exact.precondition(G), torch.linalg.solve(M, G.T).T, rtol=1e-9, atol=1e-12)
    for c in (low, exact):  # a scaled step, in place or not, is the scaled step; only inplace touches G
        want, G2 = 1.7 * c.precondition(G), G.clone()
        torch.testing.assert_close(c.precondition(G2, scale=1.7), want, rtol=1e-12, atol=1e-14)
        assert torch.equal(G2, G)
        out = c.precondition(G2, scale=1.7, inplace=True)
        assert out.data_ptr() == G2.data_ptr()
        torch.testing.assert_close(G2, want, rtol=1e-12, atol=1e-14)


def test_running_mean_and_refresh_cadence():
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(3, 8, generator=g, dtype=F64) for _ in range(5)]
    c = RunningCurvature(1.0, torch.ones(4, dtype=F64), every=2, decay=0.9)
    refreshed = [c.observe(Xb) for Xb in batches]
    assert refreshed == [True, False, True, False, True] and c.refreshes == 3 and c.calls == 5
    used = torch.cat([batches[0], batches[2], batches[4]], 1)
    Xa = torch.cat([used, torch.ones(1, used.shape[1], dtype=F64)])
    torch.testing.assert_close(c.S, Xa @ Xa.T / used.shape[1], rtol=1e-12, atol=1e-12)  # plain mean so far
    ema = RunningCurvature(1.0, torch.ones(4, dtype=F64), every=1, decay=0.5, bias=True)
    for Xb in batches[:3]:
        ema.observe(Xb)
    S = [torch.cat([Xb, torch.ones(1, 8, dtype=F64)]) for Xb in batches[:3]]
    S = [A @ A.T / 8 for A in S]
    expect = 0.5 * (0.5 * (S[0] + S[1])) + 0.5 * S[2]  # mean of two, then weight 1 - decay = 0.5
    torch.testing.assert_close(ema.S, expect, rtol=1e-12, atol=1e-12)


def test_state_dict_roundtrip_through_a_weights_only_file():
    X = _hidden()[0]
    c = hidden_curvature(7, act="relu", lam=0.5, rho=0.0, gamma=1.0, rank=3)
    c.observe(X)
    G = torch.randn(5, 8, dtype=F64)
    before = c.precondition(G)
    buf = io.BytesIO()
    torch.save(c.state_dict(), buf)
    buf.seek(0)
    c2 = RunningCurvature.from_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(c2.precondition(G), before)
    assert (c2.calls, c2.refreshes, c2.m, c2.rank, c2.every) == (c.calls, c.refreshes, c.m, c.rank, c.every)
    with pytest.raises(CheckpointError, match="curvature"):
        RunningCurvature.from_state_dict({"s": 1.0})


@pytest.mark.parametrize("kw,err,match", [
    ({"s": 0.0}, ValueRangeError, "s"), ({"mu": torch.tensor([-1.0, 1.0], dtype=F64)}, ValueRangeError, "mu"),
    ({"every": 0}, ValueRangeError, "every"), ({"rank": 0}, ValueRangeError, "rank"),
    ({"decay": 1.0}, ValueRangeError, "decay"), ({"bias": "yes"}, ValueRangeError, "bias"),
])
def test_bad_curvature_settings(kw, err, match):
    args = {"s": 1.0, "mu": torch.ones(3, dtype=F64)}
    args.update(kw)
    s, mu = args.pop("s"), args.pop("mu")
    with pytest.raises(err, match=match):
        RunningCurvature(s, mu, **args)


def test_bad_step_inputs_raise_typed_errors():
    X, V, W, b = _hidden()
    c = hidden_curvature(7, act="relu", lam=0.5, rho=0.0, gamma=1.0)
    U = W @ X + b[:, None]
    with pytest.raises(ValueRangeError, match="observe"):
        w_hidden_step(X, V, U, W, b, act="relu", lam=0.5, rho=0.0, gamma=1.0, W0=W, b0=b, curvature=c)
    with pytest.raises(ShapeError, match=r"X_in: expected the layer's inputs of shape \(7, m\)"):
        c.observe(X[:5])
    bad = X.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(DomainError, match="NaN"):
        c.observe(bad)
    c.observe(X)
    with pytest.raises(ShapeError, match="W0"):
        w_hidden_step(X, V, U, W, b, act="relu", lam=0.5, rho=0.0, gamma=1.0, curvature=c)
    with pytest.raises(ShapeError, match="curvature: built for 8"):
        w_hidden_step(X[:6], V, U, W[:, :6], b, act="relu", lam=0.5, rho=0.0, gamma=0.0, curvature=c)
    with pytest.raises(ShapeError, match="U"):
        w_hidden_step(X, V, U[:, :3], W, b, act="relu", lam=0.5, rho=0.0, gamma=1.0, W0=W, b0=b, curvature=c)
    with pytest.raises(DomainError, match="X_next"):
        w_hidden_step(X, -V, U, W, b, act="relu", lam=0.5, rho=0.0, gamma=1.0, W0=W, b0=b, curvature=c)
    with pytest.raises(ValueRangeError, match="lam"):
        w_hidden_step(X, V, U, W, b, act="relu", lam=-1.0, rho=0.0, gamma=1.0, W0=W, b0=b, curvature=c)
    with pytest.raises(ValueRangeError, match="curvature: expected a RunningCurvature"):
        w_hidden_step(X, V, U, W, b, act="relu", lam=0.5, rho=0.0, gamma=1.0, W0=W, b0=b, curvature="exact")
    with pytest.raises(ShapeError, match="W_init: required with method='running'"):
        tf.w_hidden(X, V, act="relu", lam=0.5, rho=0.0, method="running", curvature=c)
    with pytest.raises(ShapeError, match="b_init: required with method='running'"):
        tf.w_hidden(X, V, act="relu", lam=0.5, rho=0.0, method="running", curvature=c, W_init=W)
    with pytest.raises(ChoiceError, match="loss: expected one of"):
        w_last_step(X, V[:4], W[:4], b[:4], loss=_Hinge(), rho=0.0, curvature=c)


@pytest.mark.parametrize("arg", [{"curvature": "exact"}, {"relax": 1.5}, {"line_search": True}, {"U": "U"}])
@pytest.mark.parametrize("method", ["auto", "mm"])
def test_running_arguments_are_refused_by_the_other_methods(arg, method):
    X, V, W, b = _hidden()
    if "U" in arg:
        arg = {"U": W @ X + b[:, None]}
    name = next(iter(arg))
    with pytest.raises(ValueRangeError, match=f"{name}: only method='running' takes it"):
        tf.w_hidden(X, V, act="relu", lam=0.5, rho=0.1, method=method, W_init=W, b_init=b, **arg)
    if name != "U":
        Y = torch.nn.functional.one_hot(torch.arange(X.shape[1]) % 3, 3).T.to(F64)
        with pytest.raises(ValueRangeError, match=f"{name}: only method='running' takes it"):
            tf.w_last(X, Y, loss="ce", rho=0.1, method=method, **arg)


# -- uncertified capped X-updates -----------------------------------------------------------------------------------
def _x_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(4, 12, generator=g, dtype=F64)
    b = 0.1 * torch.randn(4, generator=g, dtype=F64)
    U = torch.randn(12, 30, generator=g, dtype=F64)
    labels = torch.randint(0, 4, (30,), generator=g)
    return W, b, U, labels


def test_uncertified_capped_x_last_takes_the_certified_steps():
    W, b, U, labels = _x_problem()
    # FISTA's steps are the same certified or not (every act_prev but ReLU: certified solves with ReLU's B_prev
    # take heavy-ball steps, uncertified ones FISTA's)
    kw = {"loss": "ce", "act_prev": "leaky_relu", "lam_prev": 0.3, "max_iter": 6, "warn": False}
    fast = tf.x_last(W, b, labels, U, certify=False, **kw)
    ref = tf.x_last(W, b, labels, U, tol=1e-300, **kw)  # no column can stop early: the same six steps
    assert torch.equal(fast.Z, ref.Z) and ref.solver == fast.solver == "fista"
    kw = dict(kw, act_prev="relu")
    fast = tf.x_last(W, b, labels, U, certify=False, **kw)
    assert fast.status == "unchecked" and np.isnan(fast.value) and bool(torch.isnan(fast.residual).all())
    Y = torch.nn.functional.one_hot(labels, 4).T.to(F64)

    def P(Z):  # the column objectives: cross-entropy + 0.3 B_relu(z, u)
        ce = -(Y * torch.log_softmax(W @ Z + b[:, None], 0)).sum(0)
        return ce + 0.3 * (0.5 * Z ** 2 + 0.5 * torch.relu(U) ** 2 - U * Z).sum(0)
    assert bool((P(fast.Z) <= P(torch.relu(U)) + 1e-12).all())  # never worse than the start (the default Z0)
    assert float(P(fast.Z).sum()) < float(P(torch.relu(U)).sum())


@pytest.mark.parametrize("step_dtype", [None, torch.float32], ids=["own-dtype", "float32-steps"])
def test_uncertified_x_hidden_keeps_the_start_where_the_steps_made_it_worse(monkeypatch, step_dtype):
    """Force bad steps (a prox that throws the point away): every column must come back to its start (with float32
    steps: bitwise the float64 start, not its float32 round trip)."""
    from fenchel_cvx.torch import x_updates
    g = torch.Generator().manual_seed(4)
    W = torch.randn(5, 6, generator=g, dtype=F64)
    Xn, U = torch.rand(5, 20, generator=g, dtype=F64), torch.randn(6, 20, generator=g, dtype=F64)
    Z0 = torch.relu(U)
    monkeypatch.setattr(x_updates._PrevTerm, "solve", lambda self, r, a, Zg: r.abs() + 50.0)
    out = tf.x_hidden(W, None, Xn, U, act="relu", act_prev="relu", lam=1.0, lam_prev=0.5, Z0=Z0, max_iter=3,
                      certify=False, warn=False, step_dtype=step_dtype)
    assert torch.equal(out.Z, Z0)


def test_float32_steps_on_float64_inputs_stay_close_and_never_worse_than_the_start():
    """``step_dtype=float32``: the same steps to float32 round-off; the answer is float64 and, per column, never
    worse than the start in float64 (x_last with cross-entropy, x_hidden)."""
    W, b, U, labels = _x_problem()
    kw = {"loss": "ce", "act_prev": "relu", "lam_prev": 0.3, "max_iter": 6, "warn": False, "certify": False}
    full = tf.x_last(W, b, labels, U, **kw)
    fast = tf.x_last(W, b, labels, U, step_dtype=torch.float32, **kw)
    assert fast.Z.dtype == F64 and fast.status == "unchecked"
    assert not torch.equal(fast.Z, full.Z)  # the steps really ran in float32
    torch.testing.assert_close(fast.Z, full.Z, rtol=1e-4, atol=1e-5)
    Y = torch.nn.functional.one_hot(labels, 4).T.to(F64)

    def P(Z):
        ce = -(Y * torch.log_softmax(W @ Z + b[:, None], 0)).sum(0)
        return ce + 0.3 * (0.5 * Z ** 2 + 0.5 * torch.relu(U) ** 2 - U * Z).sum(0)
    assert bool((P(fast.Z) <= P(torch.relu(U))).all()) and float(P(fast.Z).sum()) < float(P(torch.relu(U)).sum())
    g = torch.Generator().manual_seed(5)
    Wh = torch.randn(5, 6, generator=g, dtype=F64)
    Xn, Uh = torch.rand(5, 20, generator=g, dtype=F64), torch.randn(6, 20, generator=g, dtype=F64)
    hk = {"act": "relu", "act_prev": "relu", "lam": 1.0, "lam_prev": 0.5, "max_iter": 5, "certify": False,
          "warn": False}
    torch.testing.assert_close(tf.x_hidden(Wh, None, Xn, Uh, step_dtype=torch.float32, **hk).Z,
                               tf.x_hidden(Wh, None, Xn, Uh, **hk).Z, rtol=1e-4, atol=1e-5)


def test_step_dtype_must_be_a_float_dtype():
    W, b, U, labels = _x_problem()
    kw = {"loss": "ce", "act_prev": "relu", "lam_prev": 0.3, "max_iter": 3, "warn": False}
    with pytest.raises(ValueRangeError, match="step_dtype: expected"):
        tf.x_last(W, b, labels, U, step_dtype=torch.int32, certify=False, **kw)
    with pytest.raises(ValueRangeError, match="step_dtype: expected"):  # MSE ignores the steps' dtype, not a bad one
        tf.x_last(W, b, torch.zeros(4, 30, dtype=F64), U, **dict(kw, loss="mse"), step_dtype="half")
    # the inputs' own dtype is no change, certified or not
    assert torch.equal(tf.x_last(W, b, labels, U, step_dtype=F64, **kw).Z, tf.x_last(W, b, labels, U, **kw).Z)


def test_certify_must_be_a_bool():
    W, b, U, labels = _x_problem()
    with pytest.raises(ValueRangeError, match="certify"):
        tf.x_last(W, b, labels, U, loss="ce", act_prev="relu", lam_prev=0.3, max_iter=3, certify="no")


def test_float32_inputs_step_in_float64_and_come_back_in_float32():
    X, V, W, b = _hidden()
    kw = {"act": "relu", "lam": 0.5, "rho": 0.0, "gamma": 1.0}
    c = hidden_curvature(7, **kw, rank=3)
    c.observe(X)
    ref = w_hidden_step(X, V, W @ X + b[:, None], W, b, curvature=c, W0=W, b0=b, **kw)
    X32, V32, W32, b32 = X.float(), V.float(), W.float(), b.float()
    out = w_hidden_step(X32, V32, W32 @ X32 + b32[:, None], W32, b32, curvature=c, W0=W32, b0=b32, **kw)
    assert out.W.dtype == torch.float32 and out.b.dtype == torch.float32
    assert _rel(out.W.double(), ref.W) < 1e-5 and _rel(out.b.double(), ref.b) < 1e-5


def test_the_step_follows_the_device(device):
    """Built and stepped on ``device`` (cpu; cuda too on a GPU machine), it matches the cpu answer."""
    X, V, W, b = _hidden()
    kw = {"act": "relu", "lam": 0.5, "rho": 0.1, "gamma": 1.0}
    ref_c = hidden_curvature(7, **kw, rank=3)
    ref_c.observe(X)
    ref = w_hidden_step(X, V, W @ X + b[:, None], W, b, curvature=ref_c, W0=W, b0=b, **kw)
    Xd, Vd, Wd, bd = (t.to(device) for t in (X, V, W, b))
    c = hidden_curvature(7, **kw, rank=3, device=device)
    c.observe(Xd)
    out = w_hidden_step(Xd, Vd, Wd @ Xd + bd[:, None], Wd, bd, curvature=c, W0=Wd, b0=bd, **kw)
    assert out.W.device.type == torch.device(device).type
    torch.testing.assert_close(out.W.cpu(), ref.W, rtol=1e-9, atol=1e-12)
    moved = RunningCurvature.from_state_dict(c.state_dict(), device=device)
    assert moved.S.device.type == torch.device(device).type
