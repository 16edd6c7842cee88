"""Askari et al. (2018) on the toolkit's faces: each block of J_A, stated directly in CVXPY, equals what the
translation to Fenchel's subproblems returns on both faces; BCD on J_A descends; the CLI trains it."""

from __future__ import annotations

import json
import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from conftest import SEED

from fenchel_cvx import LiftedNetwork
from fenchel_cvx.bcd import lagrangian_terms
from fenchel_cvx.cvx import FUNCTIONS as CVX
from fenchel_cvx.errors import ChoiceError, ValueRangeError
from fenchel_cvx.peers import AskariBCD, AskariPenalty
from fenchel_cvx.peers.askari import askari_subproblem
from fenchel_cvx.settings import BCDSettings
from fenchel_cvx.torch import FUNCTIONS as TORCH


def _solve(face: dict, name: str, kw: dict):
    called, args, scale, offset = askari_subproblem(name, kw)
    if face is CVX:
        args = {k: (v.numpy() if torch.is_tensor(v) else v) for k, v in args.items()
                if k not in ("tol", "max_iter", "Z0", "W_init", "b_init")}
    res = face[called](**args)
    return res, scale * float(res.value) + offset


def _instance(rng, p=5, q=4, m=12):
    t = lambda *s: torch.as_tensor(rng.standard_normal(s))  # noqa: E731
    return {"W": t(q, p), "b": t(q), "X_next": torch.relu(t(q, m)), "U_prev": t(p, m), "X_in": t(p, m)}


@pytest.mark.parametrize("lam, lam_prev", [(0.1, 0.1), (2.0, 0.5)])
def test_x_hidden_block_of_J_A_equals_its_direct_cvxpy_statement_on_both_faces(lam, lam_prev):
    rng = np.random.default_rng(SEED)
    d = _instance(rng)
    W, b, V, U = (d[k].numpy() for k in ("W", "b", "X_next", "U_prev"))
    Z = cp.Variable(U.shape, nonneg=True)
    direct = cp.Problem(cp.Minimize(lam_prev / 2 * cp.sum_squares(Z - U)
                                    + lam / 2 * cp.sum_squares(V - W @ Z - b[:, None])))
    direct.solve(solver=cp.CLARABEL)
    kw = {"W": d["W"], "b": d["b"], "X_next": d["X_next"], "U_prev": d["U_prev"], "act": "relu",
          "act_prev": "relu", "lam": lam, "lam_prev": lam_prev, "tol": 1e-10}
    for face in (TORCH, CVX):
        res, value = _solve(face, "x_hidden", kw)
        assert value == pytest.approx(direct.value, rel=1e-6)
        np.testing.assert_allclose(np.asarray(res.Z), Z.value, atol=1e-4 * max(1.0, np.abs(Z.value).max()))


@pytest.mark.parametrize("lam, rho, gamma", [(0.1, 0.01, 0.0), (1.5, 0.3, 2.0)])
def test_w_hidden_block_of_J_A_equals_its_direct_cvxpy_statement_on_both_faces(lam, rho, gamma):
    rng = np.random.default_rng(SEED + 1)
    d = _instance(rng)
    X, V = d["X_in"].numpy(), d["X_next"].numpy()
    W0, b0 = rng.standard_normal((4, 5)), rng.standard_normal(4)
    Wv, bv = cp.Variable((4, 5)), cp.Variable(4)
    obj = lam / 2 * cp.sum_squares(V - Wv @ X - bv[:, None]) + rho * cp.sum_squares(Wv)
    obj += gamma * (cp.sum_squares(Wv - W0) + cp.sum_squares(bv - b0))
    direct = cp.Problem(cp.Minimize(obj))
    direct.solve(solver=cp.CLARABEL)
    kw = {"X_in": d["X_in"], "X_next": d["X_next"], "act": "relu", "lam": lam, "rho": rho, "gamma": gamma,
          "W0": torch.as_tensor(W0), "b0": torch.as_tensor(b0), "tol": 1e-10}
    for face in (TORCH, CVX):
        res, value = _solve(face, "w_hidden", kw)
        assert value == pytest.approx(direct.value, rel=1e-6)
        np.testing.assert_allclose(np.asarray(res.W), Wv.value, atol=1e-5)
        np.testing.assert_allclose(np.asarray(res.b), bv.value, atol=1e-5)


def test_the_penalty_is_fenchels_relu_penalty_plus_a_function_of_u_alone():
    rng = np.random.default_rng(SEED)
    v, u = np.abs(rng.standard_normal(50)), rng.standard_normal(50)
    from fenchel_cvx import ReLU

    np.testing.assert_allclose(AskariPenalty().B(v, u) - ReLU().B(v, u), 0.5 * np.minimum(u, 0) ** 2, atol=1e-12)
    assert np.isinf(AskariPenalty().B(-1.0, 0.3))


def _data(m=60, n=6, p=3):
    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((m, n))
    return X, (X[:, :p].argmax(1))


@pytest.mark.parametrize("sizes, backend", [([6, 5, 3], "torch"), ([6, 5, 4, 3], "torch"), ([6, 5, 4, 3], "cvx")])
def test_bcd_on_J_A_never_raises_it_block_to_block_and_reports_J_A(sizes, backend):
    X, y = _data()
    net = LiftedNetwork(sizes, "relu", "mse", seed=0)
    bcd = AskariBCD(net, BCDSettings(batch_size=None, epochs=3, backend=backend, record_blocks=True, tol=1e-10))
    state = bcd.run(X, y, progress=False)
    Js = [state.last["J0"]] + [blk["J"] for blk in state.last["blocks"]]
    assert all(b <= a + 1e-8 * abs(a) for a, b in zip(Js, Js[1:], strict=False)), Js
    assert [r["J"] for r in state.history] == sorted((r["J"] for r in state.history), reverse=True)
    # J is J_A, with B_A: recomputed from its definition on the kept X-variables
    X0 = torch.as_tensor(X.T)
    Xs = [X0] + list(state.X)
    T = net.loss.targets(torch.as_tensor(y), sizes[-1], like=X0)
    direct = lagrangian_terms(state.W, state.b, Xs, T, acts=[AskariPenalty()] * (len(sizes) - 2), loss=net.loss,
                              lam=bcd.lam, rho=bcd.rho)["total"]
    assert state.history[-1]["J"] == pytest.approx(direct, rel=1e-12)
    fenchel = lagrangian_terms(state.W, state.b, Xs, T, acts=net.acts, loss=net.loss, lam=bcd.lam, rho=bcd.rho)
    assert fenchel["total"] <= direct  # B_A >= B pointwise


def test_J_A_at_the_feed_forward_point_exceeds_the_loss_so_it_bounds_nothing():
    X, y = _data()
    net = LiftedNetwork([6, 5, 3], "relu", "mse", seed=0)
    bcd = AskariBCD(net, BCDSettings(batch_size=None, epochs=1))
    state = bcd.init_state()
    X0 = torch.as_tensor(X.T)
    ff = [X0, torch.relu(state.W[0] @ X0 + state.b[0][:, None])]
    T = net.loss.targets(torch.as_tensor(y), 3, like=X0)
    t = lagrangian_terms(state.W, state.b, ff, T, acts=bcd.penalties, loss=net.loss, lam=bcd.lam, rho=[0.0, 0.0])
    off = 0.5 * float((torch.clamp(state.W[0] @ X0 + state.b[0][:, None], max=0) ** 2).sum())
    assert off > 0 and t["penalty"] == pytest.approx(bcd.lam[0] * off, rel=1e-12)
    assert t["total"] > t["loss"]


def test_askari_refuses_what_belongs_to_fenchels_penalty():
    with pytest.raises(ChoiceError, match="activation"):
        AskariBCD(LiftedNetwork([6, 5, 3], "sigmoid", "mse", seed=0), BCDSettings(batch_size=None))
    with pytest.raises(ValueRangeError, match="curvature"):
        AskariBCD(LiftedNetwork([6, 5, 3], "relu", "ce", seed=0), BCDSettings(curvature="running"))
    with pytest.raises(ValueRangeError, match="prediction"):
        AskariBCD(LiftedNetwork([6, 5, 3], "relu", "ce", seed=0), BCDSettings(prediction="argmin"))


def test_cli_trains_askari_full_batch_and_resumes_to_the_same_result(tmp_path, capsys):
    from fenchel_cvx.cli import main
    from fenchel_cvx.runs import read_metrics

    common = ["train", "--method", "askari", "--dataset", "synthetic", "--n-train", "200", "--n-test", "50",
              "--batch-size", "full", "--loss", "mse", "--no-progress"]
    assert main(common + ["--epochs", "4", "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--epochs", "2", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "--out", str(tmp_path / "b"), "--resume", "--epochs", "4", "--no-progress"]) == 0
    a, b = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert [r["method"] for r in a] == ["askari"] * 4
    assert [r["test_acc"] for r in a] == [r["test_acc"] for r in b]
    assert [r["J"] for r in a] == [r["J"] for r in b] and all(math.isfinite(r["J"]) for r in a)
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["config"]["method"] == "askari"
    assert not (tmp_path / "a" / "compare-adam").exists()  # no baseline unless asked
