"""The lifted network: init, feed-forward, Lagrangian (7) vs primal (3), torch export/import, save/load, App. A.

Runtime: about 5 s (``python -m pytest -q tests/test_network.py``).
"""

from __future__ import annotations

import json
import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from conftest import DEVICES, SEED, assert_close
from hypothesis import given
from torch import nn

from fenchel_cvx.activations import LeakyReLU, ReLU, Sigmoid, Tanh
from fenchel_cvx.errors import FenchelError
from fenchel_cvx.losses import CrossEntropyLoss, MSELoss, one_hot
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.scaling import rescale

ACT_SPECS = ["relu", LeakyReLU(0.2), "sigmoid", "tanh"]
ACT_IDS = ["relu", "leaky", "sigmoid", "tanh"]
SIZES = [5, 7, 6, 3]  # two hidden layers


def data(rng: np.random.Generator, sizes=SIZES, m: int = 11):
    X0 = rng.normal(size=(sizes[0], m))  # paper layout (n, m)
    labels = rng.integers(0, sizes[-1], size=m)
    return X0, labels


def random_Xvars(net: LiftedNetwork, m: int, rng: np.random.Generator) -> list[np.ndarray]:
    """X-variables inside each activation's domain but off the feed-forward graph (so B > 0)."""
    out = []
    for l, act in enumerate(net.acts):
        lo, hi = act.domain
        lo, hi = max(lo, -3.0), min(hi, 3.0)
        out.append(rng.uniform(lo, hi, size=(net.sizes[l + 1], m)))
    return out


# -- construction ------------------------------------------------------------------------------------------------------
def test_xavier_init_is_seeded_and_bounded():
    a = LiftedNetwork([300, 200, 10], "relu", seed=3)
    b = LiftedNetwork([300, 200, 10], "relu", seed=3)
    c = LiftedNetwork([300, 200, 10], "relu", seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.W, b.W, strict=True))
    assert not np.array_equal(a.W[0], c.W[0])
    for l, W in enumerate(a.W):
        bound = math.sqrt(6.0 / (a.sizes[l] + a.sizes[l + 1]))
        assert W.shape == (a.sizes[l + 1], a.sizes[l]) and W.dtype == np.float64
        assert np.abs(W).max() <= bound
        assert np.abs(W).max() > 0.95 * bound  # uses the whole interval, not a narrower one
        # U(-a, a) has variance a^2 / 3; 60,000 draws pin it to about 1%
        if W.size > 10_000:
            assert W.var() == pytest.approx(bound ** 2 / 3, rel=0.03)
        assert np.array_equal(a.b[l], np.zeros(a.sizes[l + 1]))
    assert a.n_params == 300 * 200 + 200 + 200 * 10 + 10
    assert a.L == 1 and len(a.acts) == 1 and len(a.W) == len(a.b) == 2
    # the dense network is a sequence of plain dense layers with the same shapes
    assert a.arch == "300-200-10" and a.in_shape == (300,) and len(a.layers) == a.L + 1
    assert all(la.is_plain_dense for la in a.layers)
    assert [la.weight_shape for la in a.layers] == [w.shape for w in a.W]
    assert [la.bias_shape for la in a.layers] == [v.shape for v in a.b]


def test_activation_list_and_loss_names():
    net = LiftedNetwork([4, 3, 3, 3, 2], ["relu", "sigmoid", LeakyReLU(0.3)], "ce")
    assert [type(a) for a in net.acts] == [ReLU, Sigmoid, LeakyReLU] and net.acts[2].alpha == 0.3
    assert isinstance(net.loss, CrossEntropyLoss) and net.L == 3
    assert isinstance(LiftedNetwork([2, 1]).loss, MSELoss) and LiftedNetwork([2, 1]).L == 0


# -- feed-forward ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACT_SPECS, ids=ACT_IDS)
def test_feed_forward_recursion(act):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork(SIZES, act, seed=1)
    net.set_weights(net.W, [rng.normal(size=s) for s in SIZES[1:]])
    X0, _ = data(rng)
    chain = net.feed_forward(X0)
    assert len(chain) == net.L + 2 and np.array_equal(chain[0], X0)
    X = X0
    for l, a in enumerate(net.acts):
        X = a.forward(net.W[l] @ X + net.b[l][:, None])
        assert_close(chain[l + 1], X, rtol=0)
        assert_close(net.pre_activation(l, chain[l]), net.W[l] @ chain[l] + net.b[l][:, None], rtol=0)
    assert_close(chain[-1], net.W[-1] @ X + net.b[-1][:, None], rtol=0)
    assert all(np.array_equal(x, y) for x, y in zip(net.init_X(X0), chain[1:-1], strict=True))
    # samples-first user API
    assert_close(net.forward(X0.T), chain[-1].T, rtol=0)
    assert np.array_equal(net.predict(X0.T), np.argmax(chain[-1], axis=0))
    labels = np.argmax(chain[-1], axis=0)
    labels[:3] = (labels[:3] + 1) % SIZES[-1]
    assert net.accuracy(X0.T, labels) == pytest.approx(1 - 3 / X0.shape[1])


@pytest.mark.parametrize("act", ACT_SPECS, ids=ACT_IDS)
def test_torch_inputs_keep_device_dtype_and_agree(act):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork(SIZES, act, seed=2)
    X0, labels = data(rng)
    ref = net.feed_forward(X0)
    for device in DEVICES:
        for dtype, rtol in [(torch.float64, 1e-12), (torch.float32, 1e-5)]:
            chain = net.feed_forward(torch.tensor(X0, dtype=dtype, device=device))
            for got, want in zip(chain, ref, strict=True):
                assert got.dtype == dtype and got.device.type == device
                assert_close(got, want, rtol=rtol, scale=np.abs(want).max())
        Xt = torch.tensor(X0, device=device)
        Xs = net.init_X(Xt)
        assert net.lagrangian(Xt, torch.tensor(labels, device=device), Xs, 0.5, 0.1) == pytest.approx(
            net.lagrangian(X0, labels, net.init_X(X0), 0.5, 0.1), rel=1e-12)
        pred = net.predict(Xt.T)
        assert pred.device.type == device and np.array_equal(pred.cpu().numpy(), np.argmax(ref[-1], axis=0))


# -- torch export / import ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ACT_SPECS, ids=ACT_IDS)
def test_to_torch_matches_forward(act):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork([20, 30, 25, 10], act, seed=5)
    net.set_weights(net.W, [rng.normal(scale=0.3, size=s) for s in net.sizes[1:]])
    X = rng.normal(size=(64, 20))  # samples first
    want = net.forward(X)
    seq = net.to_torch()  # float32
    assert isinstance(seq, nn.Sequential) and len(seq) == 2 * net.L + 1
    with torch.no_grad():
        got32 = seq(torch.tensor(X, dtype=torch.float32))
        ours32 = net.forward(torch.tensor(X, dtype=torch.float32))
    # 1e-6 relative to the output's magnitude (entries near zero carry absolute, not relative, round-off)
    assert_close(got32, want, rtol=1e-6, scale=np.abs(want).max())
    assert_close(got32, ours32, rtol=1e-6, scale=np.abs(want).max())
    with torch.no_grad():
        got64 = net.to_torch(torch.float64)(torch.tensor(X))
    assert_close(got64, want, rtol=1e-12, scale=np.abs(want).max())


@pytest.mark.parametrize("act", ACT_SPECS, ids=ACT_IDS)
def test_from_torch_round_trip(act):
    net = LiftedNetwork(SIZES, act, "ce", seed=6)
    back = LiftedNetwork.from_torch(net.to_torch(torch.float64), loss="ce")
    assert back.sizes == net.sizes and back.acts == net.acts and back.loss == net.loss
    assert all(np.array_equal(x, y) for x, y in zip(back.W, net.W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back.b, net.b, strict=True))


def test_from_torch_reads_a_torch_built_model():
    torch.manual_seed(SEED)
    seq = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 5, bias=False), nn.LeakyReLU(0.05),
                        nn.Linear(5, 2)).double()
    net = LiftedNetwork.from_torch(seq)
    assert net.sizes == [4, 6, 5, 2] and net.acts == [Tanh(), LeakyReLU(0.05)]
    assert np.array_equal(net.b[1], np.zeros(5))
    X = torch.randn(8, 4, dtype=torch.float64)
    with torch.no_grad():
        assert_close(net.forward(X), seq(X), rtol=1e-12, atol=1e-14)


def test_from_torch_rejects_other_layers():
    with pytest.raises(FenchelError, match=r"seq\[2\].*Dropout"):
        LiftedNetwork.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Dropout(0.1), nn.Linear(4, 1)))
    with pytest.raises(FenchelError, match=r"seq\[1\].*activation"):
        LiftedNetwork.from_torch(nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1)))
    with pytest.raises(FenchelError, match="last layer"):
        LiftedNetwork.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))


# -- save / load -------------------------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork([5, 4, 3, 2], [LeakyReLU(0.07), "tanh"], "ce", seed=7)
    net.set_weights(net.W, [rng.normal(size=s) for s in net.sizes[1:]])
    path = tmp_path / "model.weights"  # no .npz suffix: written exactly where asked
    assert net.save(path) == path and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.weights"]  # no temporary file left behind
    back = LiftedNetwork.load(path)
    assert back.sizes == net.sizes and back.acts == net.acts and back.loss == net.loss
    assert all(np.array_equal(x, y) for x, y in zip(back.W, net.W, strict=True))
    assert all(np.array_equal(x, y) for x, y in zip(back.b, net.b, strict=True))
    with np.load(path, allow_pickle=False) as z:  # every entry loads without pickle
        assert all(z[k].dtype != object for k in z.files)
    net.save(path)  # overwriting is fine
    assert LiftedNetwork.load(path).sizes == net.sizes
    with np.load(path, allow_pickle=False) as z:  # the architecture is stored as its spec
        assert json.loads(str(z["meta"]))["arch"] == "5-4-3-2"


# -- the Lagrangian (7) and the primal (3) -----------------------------------------------------------------------------
@pytest.mark.parametrize("loss", ["mse", "ce"])
@pytest.mark.parametrize("act", ACT_SPECS, ids=ACT_IDS)
def test_lagrangian_equals_primal_at_feed_forward(act, loss):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork(SIZES, act, loss, seed=8)
    net.set_weights(net.W, [rng.normal(size=s) for s in SIZES[1:]])
    X0, labels = data(rng)
    lam, rho = [0.3, 7.0], [0.1, 0.0, 2.0]
    P = net.primal_objective(X0, labels, rho)
    for X in (X0, torch.tensor(X0)):
        terms = net.lagrangian_terms(X, labels, net.init_X(X), lam, rho)
        assert 0 <= terms["penalty"] <= 1e-12 * P  # B = 0 on the graph
        assert terms["total"] == pytest.approx(P, rel=1e-12)
        assert terms["total"] == pytest.approx(terms["loss"] + terms["penalty"] + terms["regularization"], rel=1e-15)


def test_lagrangian_is_eq7_term_by_term():
    """Mixed activations, per-layer lam and rho, X off the graph: J against a direct transcription of eq. (7)."""
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork([4, 6, 5, 3, 3], ["sigmoid", "relu", "tanh"], "ce", seed=9)
    net.set_weights(net.W, [rng.normal(size=s) for s in net.sizes[1:]])
    X0, labels = data(rng, sizes=net.sizes, m=8)
    Xs = random_Xvars(net, 8, rng)
    lam, rho = [0.5, 2.0, 3.5], [0.1, 0.2, 0.3, 0.4]
    chain = [X0] + Xs
    Yhat = net.W[3] @ Xs[2] + net.b[3][:, None]
    Y = one_hot(labels, 3)
    loss = -np.sum(Y * (Yhat - np.log(np.sum(np.exp(Yhat), axis=0))))
    reg = sum(r * np.sum(W ** 2) for r, W in zip(rho, net.W, strict=True))
    pen = [lam[l] * np.sum(a.B(chain[l + 1], net.W[l] @ chain[l] + net.b[l][:, None])) for l, a in enumerate(net.acts)]
    terms = net.lagrangian_terms(X0, labels, Xs, lam, rho)
    assert terms["loss"] == pytest.approx(loss, rel=1e-12)
    assert terms["regularization"] == pytest.approx(reg, rel=1e-12)
    assert_close(terms["penalty_per_layer"], pen, rtol=1e-12)
    assert min(pen) > 0
    assert net.lagrangian(X0, labels, Xs, lam, rho) == pytest.approx(loss + reg + sum(pen), rel=1e-12)
    # biases are not penalized: shifting them leaves the regularization alone
    net2 = net.copy()
    net2.set_weights(net.W, [b + 5.0 for b in net.b])
    assert net2.regularization(rho) == terms["regularization"]


@given(lam=st.lists(st.floats(0, 50), min_size=2, max_size=2), bump=st.floats(0.01, 10))
def test_lagrangian_is_nondecreasing_in_lambda(lam, bump):
    rng = np.random.default_rng(SEED)
    net = LiftedNetwork(SIZES, "relu", seed=10)
    X0, labels = data(rng)
    Xs = random_Xvars(net, X0.shape[1], rng)
    J = net.lagrangian(X0, labels, Xs, lam, 0.1)
    assert net.lagrangian(X0, labels, Xs, [lam[0] + bump, lam[1]], 0.1) >= J
    assert net.lagrangian(X0, labels, Xs, 0.0, 0.1) == pytest.approx(
        net.lagrangian_terms(X0, labels, Xs, 1.0, 0.1)["loss"] + net.regularization(0.1), rel=1e-14)


# -- Appendix A: rescaling per-layer lambdas into rho ------------------------------------------------------------------
def _relu_problem(act="relu", L=3, m=10):
    rng = np.random.default_rng(SEED)
    sizes = [4] + [5] * L + [2]
    net = LiftedNetwork(sizes, act, seed=11)
    net.set_weights(net.W, [rng.normal(size=s) for s in sizes[1:]])
    X0 = rng.normal(size=(4, m))
    Y = rng.normal(size=(2, m))
    Xs = random_Xvars(net, m, rng)
    return net, X0, Y, Xs


@given(lam=st.lists(st.floats(1e-2, 1e2), min_size=3, max_size=3),
       rho=st.lists(st.floats(0, 10), min_size=4, max_size=4))
def test_appendix_a_rescaling_leaves_the_lagrangian_unchanged(lam, rho):
    net, X0, Y, Xs = _relu_problem()
    J = net.lagrangian(X0, Y, Xs, lam, rho)
    out = rescale(net, Xs, lam, rho)
    assert out.lam == [1.0, 1.0, 1.0]
    assert net.lagrangian(X0, Y, Xs, lam, rho) == J  # the input network is untouched
    assert out.net.lagrangian(X0, Y, out.Xvars, out.lam, out.rho) == pytest.approx(J, rel=1e-10)
    # the terms themselves move: penalty and regularization are redistributed, the loss stays put
    before = net.lagrangian_terms(X0, Y, Xs, lam, rho)
    after = out.net.lagrangian_terms(X0, Y, out.Xvars, out.lam, out.rho)
    assert after["loss"] == pytest.approx(before["loss"], rel=1e-12)
    assert_close(after["penalty_per_layer"], before["penalty_per_layer"], rtol=1e-10)


def test_appendix_a_variables_are_eq21():
    """X_l -> sqrt(lam_{l-1}) X_l, W_l -> sqrt(lam_l / lam_{l-1}) W_l, b_l -> sqrt(lam_l) b_l,
    rho_l -> rho_l lam_{l-1} / lam_l, with lam_{-1} = 1 and lam_L := 1 (the loss keeps no multiplier)."""
    net, _, _, Xs = _relu_problem()
    lam, rho = [0.25, 4.0, 9.0], [1.0, 2.0, 3.0, 4.0]
    out = rescale(net, Xs, lam, rho)
    ext = [1.0] + lam + [1.0]
    for l in range(net.L + 1):
        assert_close(out.net.W[l], math.sqrt(ext[l + 1] / ext[l]) * net.W[l], rtol=1e-15)
        assert_close(out.net.b[l], math.sqrt(ext[l + 1]) * net.b[l], rtol=1e-15)
        assert out.rho[l] == pytest.approx(rho[l] * ext[l] / ext[l + 1], rel=1e-15)
    for l in range(1, net.L + 1):
        assert_close(out.Xvars[l - 1], math.sqrt(ext[l]) * Xs[l - 1], rtol=1e-15)


def test_rescale_to_one_lambda_and_back():
    net, X0, Y, Xs = _relu_problem(act=LeakyReLU(0.1))
    lam, rho = [0.3, 5.0, 1.7], 0.2
    J = net.lagrangian(X0, Y, Xs, lam, rho)
    one = rescale(net, Xs, lam, rho, lam_to=0.8)  # a single lambda for every layer
    assert one.lam == [0.8] * 3
    assert one.net.lagrangian(X0, Y, one.Xvars, one.lam, one.rho) == pytest.approx(J, rel=1e-10)
    back = rescale(one.net, one.Xvars, one.lam, one.rho, lam_to=lam)
    assert all(np.allclose(x, y, rtol=1e-13, atol=0) for x, y in zip(back.net.W, net.W, strict=True))
    assert all(np.allclose(x, y, rtol=1e-13, atol=0) for x, y in zip(back.Xvars, Xs, strict=True))
    assert np.allclose(back.rho, [rho] * 4, rtol=1e-13)
    # torch X-variables are scaled in place of numpy ones
    tor = rescale(net, [torch.tensor(x) for x in Xs], lam, rho)
    assert all(isinstance(x, torch.Tensor) for x in tor.Xvars)


def test_rescale_refuses_non_homogeneous_activations():
    net, _, _, Xs = _relu_problem(act="sigmoid", L=1)
    with pytest.raises(FenchelError, match="homogeneous"):
        rescale(net, Xs, 2.0, 0.1)


# -- copies and weight access ------------------------------------------------------------------------------------------
def test_copy_set_weights_and_torch_weights():
    net = LiftedNetwork(SIZES, "tanh", seed=12)
    twin = net.copy()
    twin.W[0][0, 0] += 1.0
    assert net.W[0][0, 0] != twin.W[0][0, 0]
    W, b = net.weights_as_torch(dtype=torch.float32)
    assert all(w.dtype == torch.float32 and tuple(w.shape) == x.shape for w, x in zip(W, net.W, strict=True))
    twin.set_weights([w * 2 for w in W], b)  # torch in, float64 numpy stored
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float64 for w in twin.W)
    assert_close(twin.W[1], 2 * net.W[1], rtol=1e-6)
    twin.set_weights(net.W)  # b=None: zero biases
    assert all(not v.any() for v in twin.b)
