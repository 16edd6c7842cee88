"""BCD (Algorithms 1 and 2): monotone J, backend agreement, history, learning, prediction, bad settings.

Runtime: about 20-40 s on 2 CPU cores (the cvx-vs-torch pairing is most of it).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from fenchel_cvx.bcd import BCD, HISTORY_KEYS, BCDSettings, BCDState, feed_forward, lagrangian_terms
from fenchel_cvx.errors import FenchelError, NotConvergedWarning, ShapeError, ValueRangeError
from fenchel_cvx.network import LiftedNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(n=6, m=24, p=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n)), rng.integers(0, p, size=m)


def _block_Js(state_rows):
    """J before the first block and after every block, over all recorded steps, in order."""
    out = []
    for last in state_rows:
        out.append(last["J0"])
        out.extend(b["J"] for b in last["blocks"])
    return np.array(out)


# -- the Lagrangian -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh", "leaky_relu"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_lagrangian_terms_match_network(act, loss):
    net = LiftedNetwork([6, 5, 4, 3], act, loss, seed=3)
    X, y = _data()
    X0 = X.T
    rng = np.random.default_rng(1)
    # perturbed feed-forward X-variables, kept inside each activation's domain
    Xs = [np.clip(x + 0.05 * rng.normal(size=x.shape), a.domain[0] + 1e-3, a.domain[1] - 1e-3)
          for x, a in zip(net.init_X(X0), net.acts, strict=True)]
    ref = net.lagrangian_terms(X0, y, Xs, lam=[0.3, 0.7], rho=[0.1, 0.2, 0.3])
    W, b = net.weights_as_torch(dtype=torch.float64)
    T = net.loss.targets(y, 3, like=torch.zeros(1, dtype=torch.float64))
    got = lagrangian_terms(W, b, [torch.as_tensor(X0)] + [torch.as_tensor(x) for x in Xs], T, acts=net.acts,
                           loss=net.loss, lam=[0.3, 0.7], rho=[0.1, 0.2, 0.3])
    assert ref["penalty"] > 0
    for k in ("loss", "penalty", "regularization", "total"):
        assert got[k] == pytest.approx(ref[k], rel=1e-12, abs=1e-12), k
    # at the feed-forward X the penalty vanishes and J equals the primal objective (eq. 3)
    ff = feed_forward(W, b, net.acts, torch.as_tensor(X0))
    t = lagrangian_terms(W, b, ff[:-1], T, acts=net.acts, loss=net.loss, lam=1.0, rho=[0.1, 0.2, 0.3])
    assert t["penalty"] == pytest.approx(0.0, abs=1e-10)
    assert t["total"] == pytest.approx(net.primal_objective(X0, y, [0.1, 0.2, 0.3]), rel=1e-12)


# -- Algorithm 1: every block is an exact minimization, so J never goes up ----------------------------------------
@pytest.mark.parametrize("act", ["relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["mse", "ce"])
def test_algorithm1_never_increases_J(act, loss):
    net = LiftedNetwork([6, 5, 4, 3], act, loss, seed=1)
    X, y = _data()
    s = BCDSettings(batch_size=None, lam=[0.5, 0.8], rho=[0.05, 0.1, 0.2], epochs=4, tol=1e-10, record_blocks=True)
    bcd = BCD(net, s)
    lasts = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        state = bcd.run(X, y, callback=lambda st, row: lasts.append(st.last), progress=False)
    names = [(b["block"], b["layer"]) for b in lasts[0]["blocks"]]
    assert names == [("x_last", 2), ("x_hidden", 1), ("w_last", 2), ("w_hidden", 1), ("w_hidden", 0)]
    J = _block_Js(lasts)
    # one sweep per epoch; the X-variables persist, so each step starts where the last one ended
    assert len(J) == 4 * 6
    for k in range(1, 4):
        assert J[6 * k] == pytest.approx(J[6 * k - 1], rel=1e-12)
    rise = np.diff(J) / np.maximum(np.abs(J[:-1]), 1.0)
    assert rise.max() <= 1e-7, f"J rose by {rise.max():.3g} (relative) at block {int(rise.argmax())}: {J}"
    assert J[-1] < 0.9 * J[0]  # and it actually moved
    assert state.history[-1]["J"] == pytest.approx(J[-1], rel=1e-12)
    assert state.X is not None and [x.shape for x in state.X] == [(5, 24), (4, 24)]


def test_algorithm1_with_gamma_is_proximal_and_monotone():
    net = LiftedNetwork([6, 5, 3], "relu", "ce", seed=2)
    X, y = _data()
    s = BCDSettings(batch_size=None, lam=0.5, rho=0.1, gamma=[0.5, 2.0], epochs=3, tol=1e-10, record_blocks=True)
    lasts = []
    BCD(net, s).run(X, y, callback=lambda st, row: lasts.append(st.last), progress=False)
    J = _block_Js(lasts)
    assert (np.diff(J) / np.abs(J[:-1])).max() <= 1e-7


# -- the two faces give the same trajectory --------------------------------------------------------------------------
@pytest.mark.parametrize("act,loss", [("relu", "mse"), ("relu", "ce"), ("sigmoid", "ce")])
def test_cvx_and_torch_backends_agree(act, loss):
    """Three Algorithm-1 iterations on a 3-4-3-2 net: same weights from both faces to 1e-5 relative.

    rho > 0 makes every block strongly convex in W (and the B terms in X), so each argmin is unique -- except the
    cross-entropy output bias, which softmax sees only up to a common shift; it is compared after centring.
    The torch tolerance is a relative Fenchel gap: an argmin is only accurate to about sqrt(gap / modulus), so
    1e-5 agreement on the weights needs a gap tolerance far below 1e-10 (1e-14 gives about 1e-7).
    """
    net = LiftedNetwork([3, 4, 3, 2], act, loss, seed=5)
    X, y = _data(n=3, m=10, p=2, seed=4)
    common = {"batch_size": None, "lam": [0.7, 1.3], "rho": [0.2, 0.3, 0.5], "epochs": 3}
    st_t = BCD(net, BCDSettings(**common, backend="torch", tol=1e-14)).run(X, y, progress=False)
    st_c = BCD(net, BCDSettings(**common, backend="cvx", solver_options=_tight_cvx_options(loss))).run(
        X, y, progress=False)
    if loss == "ce":
        st_t.b[-1], st_c.b[-1] = st_t.b[-1] - st_t.b[-1].mean(), st_c.b[-1] - st_c.b[-1].mean()
    for k, (wt, wc) in enumerate(zip(st_t.W + st_t.b, st_c.W + st_c.b, strict=True)):
        err = float((wt - wc).abs().max() / wc.abs().max())
        assert err <= 1e-5, f"{'W' if k < 3 else 'b'}[{k % 3}]: relative difference {err:.3g}"
    assert st_t.history[-1]["J"] == pytest.approx(st_c.history[-1]["J"], rel=1e-7)


def _tight_cvx_options(loss: str) -> dict:
    """Tight conic tolerances: Clarabel handles both the QPs and the exponential cone of cross-entropy."""
    import inspect

    import fenchel_cvx.cvx as fcvx
    params = inspect.signature(fcvx.x_last).parameters
    opts = {}
    if "solver" in params:
        opts["solver"] = "CLARABEL"
    if "solver_opts" in params:
        opts["solver_opts"] = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12}
    return opts


# -- Algorithm 2 ----------------------------------------------------------------------------------------------------
def test_batched_history_rows_and_counters():
    net = LiftedNetwork([6, 8, 3], "relu", "ce", seed=0)
    X, y = _data(m=50)
    Xt, yt = _data(m=20, seed=9)
    s = BCDSettings(batch_size=16, K=2, lam=0.5, rho=0.0, gamma=1.0, epochs=2, eval_every=2, seed=3)
    rows = []
    state = BCD(net, s).run(X, y, X_test=Xt, y_test=yt, callback=lambda st, r: rows.append(r), progress=False)
    # 4 batches per epoch (16, 16, 16, 2): rows after batches 2 and 4 of each epoch
    assert [r["epoch"] for r in state.history] == [0.5, 1.0, 1.5, 2.0]
    assert rows == state.history
    assert (state.epoch, state.batch, state.step, state.perm) == (2, 0, 8, None)
    for r in state.history:
        assert tuple(r) == HISTORY_KEYS and r["method"] == "fenchel"
        assert 0 <= r["train_acc"] <= 1 and 0 <= r["test_acc"] <= 1
        assert r["penalty"] >= 0 and r["J"] >= r["penalty"]
        assert math.isfinite(r["primal"]) and r["time"] > 0
    assert state.history[-1]["time"] >= state.history[0]["time"]
    assert len(state.last["blocks"]) == 2 * 3  # K=2 sweeps of (x_last, w_last, w_hidden)


def test_batched_step_reinitializes_X_and_uses_W0():
    """With an enormous gamma the proximal term pins W to the weights before the batch (Algorithm 2, line 3)."""
    net = LiftedNetwork([6, 5, 3], "relu", "mse", seed=0)
    X, y = _data(m=30)
    bcd = BCD(net, BCDSettings(batch_size=10, lam=0.5, rho=0.0, gamma=1e9, K=3))
    state = bcd.init_state()
    W_before = [w.clone() for w in state.W]
    bcd.step(state, torch.as_tensor(X[:10].T), y[:10])
    for w0, w in zip(W_before, state.W, strict=True):
        assert torch.allclose(w, w0, atol=1e-6)
    assert state.X is None  # Algorithm 2 keeps no X-variables between batches
    assert state.step == 1


def test_batched_bcd_learns_teacher_labels():
    """Labels from a random 10-12-3 ReLU teacher (classes balanced by standardizing its outputs).

    Threshold: the classes are balanced (largest 36 %), so chance is about 1/3 and the untrained student sits there.
    Exact batched BCD reached 0.87 train accuracy in these 4 epochs when this test was written; Adam (lr 1e-3,
    same batches) needs about 40 epochs to pass 0.85. Requiring 0.75 (more than twice chance) leaves margin for
    solver tolerances while failing clearly if the updates do nothing or diverge.
    """
    from fenchel_cvx.data import teacher
    t = teacher(10, 3, 600, hidden=12, seed=7)
    y = ((t.Y - t.Y.mean(0)) / t.Y.std(0)).argmax(1)
    assert np.bincount(y).max() / len(y) < 0.4
    net = LiftedNetwork([10, 32, 3], "relu", "ce", seed=0)
    s = BCDSettings(batch_size=100, lam=0.5, rho=0.0, gamma=[1.0, 10.0], epochs=4, seed=0)
    acc0 = (net.predict(t.X) == y).mean()
    state = BCD(net, s).run(t.X, y, progress=False)
    accs = [r["train_acc"] for r in state.history]
    assert accs[-1] >= 0.75, accs
    assert accs[-1] >= acc0 + 0.3, (acc0, accs)
    assert state.history[-1]["penalty"] < state.history[0]["penalty"]  # the relaxation tightens as it trains


def test_inexact_w_updates_cap_iterations_without_warnings():
    net = LiftedNetwork([6, 8, 3], "relu", "ce", seed=0)
    X, y = _data(m=40)
    s = BCDSettings(batch_size=20, lam=0.5, rho=0.0, gamma=1.0, inexact=True, inexact_iters=2, tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        state = BCD(net, s).run(X, y, progress=False)
    for blk in state.last["blocks"]:
        if blk["block"].startswith("w_"):
            assert blk["iterations"] <= 2, blk


@pytest.mark.parametrize("act,loss", [("relu", "ce"), ("sigmoid", "mse"), ("tanh", "ce")])
@pytest.mark.parametrize("gamma", [0.0, [0.5, 2.0, 1.0]])
def test_inexact_mode_never_increases_J(act, loss, gamma):
    """Inexact W-updates are majorization-minimization steps: each never increases its block objective, and with
    ``W_init = W0`` the proximal term starts at 0, so J itself never rises block to block (Algorithm 1). Capped
    FISTA X-updates keep, per column, the lower of start and last iterate, so they never raise J either."""
    net = LiftedNetwork([6, 5, 4, 3], act, loss, seed=1)
    X, y = _data()
    s = BCDSettings(batch_size=None, lam=[0.5, 0.8], rho=[0.05, 0.0, 0.2], gamma=gamma, epochs=6, tol=1e-10,
                    inexact=True,
                    inexact_iters=1, inexact_x_iters=2, record_blocks=True)
    lasts = []
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotConvergedWarning)
        BCD(net, s).run(X, y, callback=lambda st, row: lasts.append(st.last), progress=False)
    w_blocks = [b for last in lasts for b in last["blocks"] if b["block"].startswith("w_")]
    assert all(b["iterations"] <= 1 for b in w_blocks)
    assert any(not b["converged"] for b in w_blocks)  # really inexact, not solved by luck
    fista = [b for last in lasts for b in last["blocks"]
             if b["block"] == "x_hidden" or (b["block"] == "x_last" and loss == "ce")]
    assert fista and all(b["iterations"] <= 2 for b in fista)
    J = _block_Js(lasts)
    rise = np.diff(J) / np.maximum(np.abs(J[:-1]), 1.0)
    assert rise.max() <= 1e-9, f"J rose by {rise.max():.3g} (relative) at block {int(rise.argmax())}: {J}"
    assert J[-1] < 0.9 * J[0]


def test_running_curvature_mode_learns_like_the_mm_mode():
    """``curvature="running"``: one preconditioned step per W-block with a running curvature and uncertified capped
    X-updates. On the teacher problem of ``test_batched_bcd_learns_teacher_labels`` it must learn about as well as
    the per-batch MM steps (when written: 0.90 vs 0.89 train accuracy after 4 epochs), and report no certificates."""
    from fenchel_cvx.data import teacher
    t = teacher(10, 3, 600, hidden=12, seed=7)
    y = ((t.Y - t.Y.mean(0)) / t.Y.std(0)).argmax(1)
    net = LiftedNetwork([10, 32, 3], "relu", "ce", seed=0)
    base = {"batch_size": 100, "lam": 0.5, "rho": 0.0, "gamma": [1.0, 10.0], "epochs": 4, "seed": 0,
            "inexact": True, "inexact_x_iters": 10}
    mm = BCD(net, BCDSettings(**base)).run(t.X, y, progress=False)
    fast = BCD(net, BCDSettings(**base, curvature="running", curvature_every=3, curvature_rank=4)).run(
        t.X, y, progress=False)
    acc_mm, acc_fast = mm.history[-1]["train_acc"], fast.history[-1]["train_acc"]
    assert acc_fast >= 0.75 and acc_fast >= acc_mm - 0.05, (acc_fast, acc_mm)
    assert fast.history[-1]["penalty"] < fast.history[0]["penalty"]
    assert all(math.isnan(r["max_residual"]) for r in fast.history)
    assert {b["status"] for b in fast.last["blocks"]} == {"unchecked"}
    assert [c.calls for c in fast.curvature] == [24, 24] and [c.refreshes for c in fast.curvature] == [8, 8]
    # the same run with its X-steps in float32 (inexact_x_float32) learns the same, and its weights stay float64
    f32 = BCD(net, BCDSettings(**base, curvature="running", curvature_every=3, curvature_rank=4,
                               inexact_x_float32=True)).run(t.X, y, progress=False)
    assert all(w.dtype == torch.float64 for w in f32.W)
    assert abs(f32.history[-1]["train_acc"] - acc_fast) <= 0.02, (f32.history[-1]["train_acc"], acc_fast)
    assert f32.history[-1]["J"] != fast.history[-1]["J"]  # the float32 steps did run


@pytest.mark.parametrize("sizes,act,loss", [([10, 32, 3], "sigmoid", "mse"), ([10, 24, 16, 3], "tanh", "ce"),
                                            ([10, 24, 16, 3], "relu", "mse")])
def test_running_curvature_mode_is_stable_across_activations_losses_and_depths(sizes, act, loss):
    """No descent guarantee per step, so check the run: J falls and training accuracy keeps up with the MM mode
    (when written, final train accuracy running vs MM: 0.798 vs 0.785, 0.807 vs 0.803, 0.783 vs 0.815)."""
    from fenchel_cvx.data import teacher
    t = teacher(10, 3, 600, hidden=12, seed=7)
    y = ((t.Y - t.Y.mean(0)) / t.Y.std(0)).argmax(1)
    runs = {}
    for curv in ("batch", "running"):
        s = BCDSettings(batch_size=100, lam=0.5, rho=0.0, gamma=1.0, epochs=6, seed=0, inexact=True,
                        inexact_x_iters=10, curvature=curv, curvature_every=3, curvature_rank=8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            runs[curv] = BCD(LiftedNetwork(sizes, act, loss, seed=0), s).run(t.X, y, progress=False).history
    h = runs["running"]
    assert all(math.isfinite(r["J"]) for r in h)
    assert h[-1]["J"] < 0.6 * h[0]["J"], [r["J"] for r in h]
    assert h[-1]["train_acc"] >= runs["batch"][-1]["train_acc"] - 0.05


@pytest.mark.parametrize("act,loss", [("relu", "ce"), ("sigmoid", "mse"), ("tanh", "ce")])
@pytest.mark.parametrize("gamma", [0.0, [0.5, 2.0, 1.0]])
def test_running_mode_with_line_search_never_increases_J(act, loss, gamma):
    """With ``curvature_line_search`` every running W-step minimizes its block along the step and the uncertified
    X-steps keep the better of start and end, so J never rises block to block -- as in the MM mode's test --
    even with a curvature estimate refreshed only every 4 batches at rank 2."""
    net = LiftedNetwork([6, 5, 4, 3], act, loss, seed=1)
    X, y = _data()
    s = BCDSettings(lam=[0.5, 0.8], rho=[0.05, 0.0, 0.2], gamma=gamma, epochs=6, batch_size=12, inexact=True,
                    inexact_x_iters=2, curvature="running", curvature_every=4, curvature_rank=2,
                    curvature_line_search=True, record_blocks=True, eval_every=1)
    lasts = []
    BCD(net, s).run(X, y, callback=lambda st, row: lasts.append(st.last), progress=False)
    assert {len(last["blocks"]) for last in lasts} == {5}  # x_last, x_hidden, w_last, w_hidden x 2
    for last in lasts:  # each batch brings new data, so compare within a batch
        J = _block_Js([last])
        rise = np.diff(J) / np.maximum(np.abs(J[:-1]), 1.0)
        assert rise.max() <= 1e-9, f"J rose by {rise.max():.3g} (relative) at block {int(rise.argmax())}: {J}"
    firsts = [last["J0"] for last in lasts]
    assert firsts[-1] < firsts[0]


def test_per_layer_relax_scales_each_layers_running_step():
    """``curvature_relax`` per layer: one step of a batch moves ``W_l`` by ``relax[l]`` times its preconditioned
    step -- in one sweep the W-steps read the X's, not each other's weights, so each layer of a run with
    ``(1, 2, 0.5)`` equals the same layer of the run with that value for every layer."""
    X, y = _data()
    net = LiftedNetwork([6, 5, 4, 3], "relu", "ce", seed=1)
    base = {"batch_size": 12, "epochs": 1, "inexact": True, "inexact_x_iters": 2, "curvature": "running",
            "curvature_every": 4, "curvature_rank": 2}

    def one_step(relax):
        bcd = BCD(net, BCDSettings(**base, curvature_relax=relax))
        state = bcd.init_state()
        bcd.step(state, torch.as_tensor(X[:12].T.copy()), torch.as_tensor(y[:12]))
        return bcd, state

    mixed, state = one_step([1.0, 2.0, 0.5])
    assert mixed.relax == [1.0, 2.0, 0.5] and mixed.resolved()["curvature_relax"] == [1.0, 2.0, 0.5]
    for layer, value in enumerate((1.0, 2.0, 0.5)):
        one, alone = one_step(value)
        assert one.resolved()["curvature_relax"] == [value] * 3  # one value broadcast, reported per layer
        assert torch.equal(state.W[layer], alone.W[layer]), layer
    _, plain = one_step(1.0)
    assert not torch.equal(state.W[1], plain.W[1])  # the multiplier did act


def test_running_curvature_in_a_deep_net_reuses_only_valid_products():
    """Two hidden layers, K = 2: the W_0 step may reuse W_0 X_0 + b_0 only while W_0 is unchanged (first sweep).
    Check one step against the same step computed by hand from the public functions."""
    from fenchel_cvx.torch import w_hidden, w_last, x_hidden, x_last
    from fenchel_cvx.torch.curvature import hidden_curvature, last_curvature
    net = LiftedNetwork([6, 5, 4, 3], "relu", "ce", seed=2)
    X, y = _data(m=20)
    s = BCDSettings(batch_size=20, lam=[0.5, 0.8], rho=0.0, gamma=[1.0, 2.0, 5.0], K=2, inexact=True,
                    inexact_x_iters=3, curvature="running", curvature_rank=None)
    bcd = BCD(net, s)
    st = bcd.init_state()
    Xs_, Y, _ = bcd._prepare(X, y, "X", "y")
    X0 = Xs_.T.contiguous()
    W, b = [w.clone() for w in st.W], [v.clone() for v in st.b]
    bcd.step(st, X0, Y)
    W0, b0 = [w.clone() for w in W], [v.clone() for v in b]
    acts = [a for a in net.acts]
    curv = [hidden_curvature(6, act="relu", lam=0.5, rho=0.0, gamma=1.0, rank=None),
            hidden_curvature(5, act="relu", lam=0.8, rho=0.0, gamma=2.0, rank=None),
            last_curvature(4, loss="ce", rho=0.0, gamma=5.0, rank=None)]
    Xs = feed_forward(W, b, acts, X0)[:-1]
    for k in range(2):
        U1 = W[1] @ Xs[1] + b[1][:, None]
        Xs[2] = x_last(W[2], b[2], Y, U1, loss="ce", act_prev="relu", lam_prev=0.8, Z0=Xs[2], max_iter=3,
                       warn=False, certify=False).Z
        U0 = W[0] @ X0 + b[0][:, None]
        Xs[1] = x_hidden(W[1], b[1], Xs[2], U0, act="relu", act_prev="relu", lam=0.8, lam_prev=0.5, Z0=Xs[1],
                         max_iter=3, warn=False, certify=False).Z
        if k == 0:
            for l in range(3):
                curv[l].observe(Xs[l])
        r = w_last(Xs[2], Y, loss="ce", rho=0.0, gamma=5.0, W0=W0[2], b0=b0[2], W_init=W[2], b_init=b[2],
                   method="running", curvature=curv[2], max_iter=1, warn=False)
        W[2], b[2] = r.W, r.b
        for l, lam, g in ((1, 0.8, 2.0), (0, 0.5, 1.0)):
            U = W[l] @ Xs[l] + b[l][:, None]
            r = w_hidden(Xs[l], Xs[l + 1], act="relu", lam=lam, rho=0.0, gamma=g, W0=W0[l], b0=b0[l], W_init=W[l],
                         b_init=b[l], U=U, method="running", curvature=curv[l], max_iter=1, warn=False)
            W[l], b[l] = r.W, r.b
    for a, e in zip(st.W + st.b, W + b, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


# -- prediction -------------------------------------------------------------------------------------------------------
def test_argmin_prediction_is_feedforward_for_mse():
    net = LiftedNetwork([6, 5, 4, 3], "relu", "mse", seed=0)
    X, _ = _data(m=40)
    bcd = BCD(net, BCDSettings(prediction="argmin"))
    state = bcd.init_state()
    np.testing.assert_array_equal(bcd.predict(state, X), net.predict(X))


def test_argmin_prediction_ce_one_hidden_layer():
    """Eq. (12) for CE: the chosen class attains the smallest objective, which is at most the feed-forward one."""
    net = LiftedNetwork([6, 5, 3], "relu", "ce", seed=0)
    X, _ = _data(m=30)
    bcd = BCD(net, BCDSettings(prediction="argmin", lam=2.0, tol=1e-10))
    state = bcd.init_state()
    lab = bcd.predict(state, X)
    ff = net.predict(X)
    assert lab.shape == (30,) and set(lab) <= {0, 1, 2}
    # with a huge multiplier the X-variables are pinned to feed-forward: the rule reduces to argmax
    big = BCD(net, BCDSettings(prediction="argmin", lam=1e6, tol=1e-10))
    assert (big.predict(big.init_state(), X) == ff).mean() >= 0.95
    # the objective of (12) at the argmin rule's labels never exceeds that at the feed-forward labels
    import fenchel_cvx.torch as ft
    W, b = state.W, state.b
    X0 = torch.as_tensor(X.T)
    U = W[0] @ X0 + b[0][:, None]

    def value(labels):
        T = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).T.double()
        Z = ft.x_last(W[1], b[1], T, U, loss="ce", act_prev="relu", lam_prev=2.0, tol=1e-10, Z0=U.clamp(min=0)).Z
        return net.loss.per_sample(T, W[1] @ Z + b[1][:, None]) + 2.0 * net.acts[0].B(Z, U).sum(0)
    assert bool((value(lab) <= value(ff) + 1e-8).all())


def test_argmin_prediction_ce_two_hidden_layers_runs_local_sweeps():
    net = LiftedNetwork([6, 5, 4, 3], "relu", "ce", seed=0)
    X, _ = _data(m=20)
    big = BCD(net, BCDSettings(prediction="argmin", lam=1e6, tol=1e-10))
    assert (big.predict(big.init_state(), X) == net.predict(X)).mean() >= 0.95
    small = BCD(net, BCDSettings(prediction="argmin", lam=0.5))
    lab = small.predict(small.init_state(), X)
    assert lab.shape == (20,) and set(lab.tolist()) <= {0, 1, 2}


# -- settings and input checks ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,err", [
    ({"lam": 0.0}, ValueRangeError), ({"lam": [0.1, -1.0]}, ValueRangeError), ({"rho": -1.0}, ValueRangeError),
    ({"rho": [1.0, 1.0]}, ShapeError), ({"gamma": -0.1}, ValueRangeError), ({"batch_size": 0}, ValueRangeError),
    ({"K": 0}, ValueRangeError), ({"epochs": -1}, ValueRangeError), ({"tol": 0.0}, ValueRangeError),
    ({"backend": "jax"}, FenchelError), ({"prediction": "vote"}, FenchelError), ({"dtype": "float16"}, FenchelError),
    ({"backend": "cvx", "inexact": True}, FenchelError), ({"inexact_iters": 0}, ValueRangeError),
    ({"inexact_x_iters": 0}, ValueRangeError), ({"inexact_x_iters": 2.5}, ValueRangeError),
    ({"device": "quantum"}, FenchelError), ({"curvature": "exact"}, FenchelError),
    ({"curvature": "running", "batch_size": None}, FenchelError),
    ({"curvature_every": 0, "inexact": True}, ValueRangeError),
    ({"curvature_rank": 0, "inexact": True}, ValueRangeError), ({"curvature_relax": 0.0}, ValueRangeError),
    ({"curvature_relax": float("inf")}, ValueRangeError), ({"curvature_line_search": 1}, ValueRangeError),
    ({"curvature_line_search": True, "curvature_relax": 2.0}, ValueRangeError),
    ({"curvature_relax": [1.0, 2.0]}, ShapeError), ({"curvature_relax": [1.0, -2.0, 1.0, 1.0]}, ValueRangeError),
    ({"curvature_line_search": True, "curvature_relax": [1.0, 2.0, 1.0, 1.0]}, ValueRangeError),
])
def test_bad_settings_raise_typed_errors(kw, err):
    net = LiftedNetwork([4, 3, 3, 2], "relu", "mse", seed=0)
    with pytest.raises(err) as info:
        BCD(net, BCDSettings(**kw))
    assert str(info.value)


def test_bad_data_raise_typed_errors():
    net = LiftedNetwork([4, 3, 2], "relu", "ce", seed=0)
    bcd = BCD(net, BCDSettings())
    X = np.zeros((5, 4))
    with pytest.raises(ShapeError, match=r"X: expected shape \(m, 4\)"):
        bcd.run(np.zeros((5, 3)), np.zeros(5, int), progress=False)
    with pytest.raises(ShapeError, match="y"):
        bcd.run(X, np.zeros(4, int), progress=False)
    with pytest.raises(FenchelError, match="labels"):
        bcd.run(X, np.full(5, 7), progress=False)
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(FenchelError, match="NaN"):
        bcd.run(bad, np.zeros(5, int), progress=False)


def test_state_dict_roundtrip_is_exact():
    net = LiftedNetwork([6, 5, 3], "relu", "ce", seed=0)
    X, y = _data()
    bcd = BCD(net, BCDSettings(batch_size=10, epochs=1, gamma=0.5, lam=0.5, rho=0.0))
    st = bcd.run(X, y, progress=False)
    st.perm = torch.randperm(24, generator=st.rng)
    d = st.state_dict()
    st2 = BCDState.from_state_dict(d)
    for a, b_ in zip(st.W + st.b, st2.W + st2.b, strict=True):
        assert torch.equal(a, b_)
    assert torch.equal(st.perm, st2.perm) and st2.history == st.history
    assert torch.equal(torch.randperm(50, generator=st.rng), torch.randperm(50, generator=st2.rng))
    trained = bcd.network_from_state(st2)
    np.testing.assert_array_equal(trained.W[0], st.W[0].numpy())
    assert net.W[0] is not trained.W[0]
