"""Adam W-steps (``curvature="adam"``): one Adam step per W-block on its own objective (19)/(20), the paper's CIFAR-10
W-update. Checked against ``torch.optim.Adam`` driven by autograd gradients of the block objective (dense and conv
layers), through checkpoints (bitwise resume) and in the settings.

Runtime: a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from fenchel_cvx import torch as tf
from fenchel_cvx.bcd import BCD, BCDSettings, BCDState
from fenchel_cvx.checkpoint import load_checkpoint, run_config, save_checkpoint
from fenchel_cvx.errors import CheckpointError, ShapeError, ValueRangeError
from fenchel_cvx.layers import parse_arch
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.torch.curvature import AdamCurvature, adam_curvature, curvature_from_state_dict, hidden_curvature

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = torch.float64


def _block_objective(layer, W, b, X_in, X_next, lam, rho, gamma, W0, b0):
    """Eq. (19) for ReLU written out by hand (autograd differentiates it): the reference the steps must follow."""
    U = W @ X_in + b[:, None] if layer is None else layer.apply(W, b, X_in)
    B = 0.5 * X_next ** 2 + 0.5 * torch.relu(U) ** 2 - U * X_next
    return lam * B.sum() + rho * (W ** 2).sum() + gamma * (((W - W0) ** 2).sum() + ((b - b0) ** 2).sum())


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_adam_w_steps_are_torch_adam_on_the_block_objective(kind):
    """Five batches of ``w_hidden(method="running", curvature=AdamCurvature)`` against ``torch.optim.Adam`` stepping
    on autograd's gradient of (19), batch by batch, the proximal centre moving with the weights as in Algorithm 2."""
    g = torch.Generator().manual_seed(0)
    if kind == "dense":
        layer, p_out, p_in = None, 4, 6
        W = 0.3 * torch.randn(p_out, p_in, generator=g, dtype=F64)
        shape_in, n_patch = (p_in,), p_in
    else:
        layer = parse_arch("2x6x6-c3k3s1p1-f2")[0]
        W = 0.3 * torch.randn(*layer.weight_shape, generator=g, dtype=F64)
        p_out, shape_in, n_patch = 3, (2 * 36,), layer.patch_size
    b = 0.1 * torch.randn(p_out, generator=g, dtype=F64)
    ref = [W.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    opt = torch.optim.Adam(ref, lr=2e-2)
    ad = adam_curvature(p_out, n_patch, lr=2e-2)
    lam, rho, gamma = 1.5, 0.1, 0.3
    for _ in range(5):
        X_in = torch.randn(*shape_in, 9, generator=g, dtype=F64)
        n_next = p_out if layer is None else layer.n_out
        X_next = torch.rand(n_next, 9, generator=g, dtype=F64)
        W0, b0 = W.clone(), b.clone()
        kw = {} if layer is None else {"layer": layer}
        res = tf.w_hidden(X_in, X_next, act="relu", lam=lam, rho=rho, gamma=gamma, W0=W0, b0=b0, W_init=W, b_init=b,
                          method="running", curvature=ad, max_iter=1, warn=False, **kw)
        opt.zero_grad()
        _block_objective(layer, *ref, X_in, X_next, lam, rho, gamma, W0, b0).backward()
        opt.step()
        W, b = res.W, res.b
        assert torch.allclose(W, ref[0].detach(), rtol=1e-12, atol=1e-14)
        assert torch.allclose(b, ref[1].detach(), rtol=1e-12, atol=1e-14)
        assert res.status == "unchecked" and res.info["adam_steps"] == ad.steps
    assert ad.steps == 5 and float((W - 0.0).abs().max()) > 0


def test_adam_w_last_is_torch_adam_on_the_cross_entropy_block():
    g = torch.Generator().manual_seed(1)
    X_in, y = torch.randn(5, 30, generator=g, dtype=F64), torch.randint(0, 3, (30,), generator=g)
    W, b = 0.2 * torch.randn(3, 5, generator=g, dtype=F64), torch.zeros(3, dtype=F64)
    ref = [W.clone().requires_grad_(True), b.clone().requires_grad_(True)]
    opt = torch.optim.Adam(ref, lr=1e-2)
    ad = adam_curvature(3, 5, lr=1e-2)
    for _ in range(3):
        res = tf.w_last(X_in, y, loss="ce", rho=0.2, W_init=W, b_init=b, method="running", curvature=ad, max_iter=1,
                        warn=False)
        opt.zero_grad()
        Z = ref[0] @ X_in + ref[1][:, None]
        (torch.nn.functional.cross_entropy(Z.T, y, reduction="sum") + 0.2 * (ref[0] ** 2).sum()).backward()
        opt.step()
        W, b = res.W, res.b
        assert torch.allclose(W, ref[0].detach(), rtol=1e-12, atol=1e-14)
        assert torch.allclose(b, ref[1].detach(), rtol=1e-12, atol=1e-14)


def test_the_step_is_scale_free():
    """A gradient a hundred times smaller (still far above eps) gives the same first step: why Adam moves a
    convolution that MM steps leave where it is."""
    g = torch.Generator().manual_seed(2)
    G = (0.5 + torch.rand(3, 4, generator=g, dtype=F64)) * torch.randn(3, 4, generator=g, dtype=F64).sign()
    a, b = AdamCurvature(3, 4, lr=1e-3), AdamCurvature(3, 4, lr=1e-3)
    assert torch.allclose(a.precondition(G), b.precondition(1e-2 * G), rtol=1e-4)


def test_bcd_with_adam_steps_learns_and_resumes_bitwise(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5).astype(int)
    net = LiftedNetwork([6, 8, 3], "relu", "ce", seed=0)
    s = BCDSettings(batch_size=15, epochs=4, curvature="adam", adam_lr=0.05, eval_every=1, inexact_x_iters=5)
    full = BCD(net, s).run(X, y, progress=False)
    assert full.history[-1]["train_acc"] > max(0.7, full.history[0]["train_acc"])
    assert [type(c).__name__ for c in full.curvature] == ["AdamCurvature"] * 2
    assert {b["status"] for b in full.last["blocks"] if b["block"].startswith("w_")} == {"unchecked"}
    half_s = s.replace(epochs=2)
    bcd = BCD(net, half_s)
    half = bcd.run(X, y, progress=False)
    save_checkpoint(tmp_path / "c.pt", half.state_dict(), {"config": run_config(net, s)})
    st = BCDState.from_state_dict(load_checkpoint(tmp_path / "c.pt", config=run_config(net, s))["state"])
    assert [c.steps for c in st.curvature] == [12, 12]
    resumed = BCD(net, s).run(X, y, state=st, progress=False)
    for a, b in zip(full.W + full.b, resumed.W + resumed.b, strict=True):
        assert torch.equal(a, b)
    assert BCD(net, s).resolved()["adam_lr"] == 0.05


def test_adam_steps_move_every_layer_of_a_conv_net_at_their_rate():
    """Each W-block moves by about ``adam_lr`` per step and coordinate, whatever the size of its gradient."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 1, 8, 8))
    net = LiftedNetwork("1x8x8-c3k3p1-a2c4k3-f3", "relu", "ce", seed=5)
    y = LiftedNetwork("1x8x8-c3k3p1-a2c4k3-f3", "relu", "ce", seed=6).predict(X)
    st = BCD(net, BCDSettings(batch_size=20, epochs=1, lam=[5.0, 5.0], tol=1e-10, curvature="adam")).run(
        X, y, progress=False)
    for l in range(3):
        moved = float((st.W[l] - torch.as_tensor(net.W[l])).abs().max())
        assert 1e-3 <= moved <= 3e-3, (l, moved)  # two steps (batches) of about lr = 1e-3 per coordinate


def test_adam_state_dict_roundtrip_and_damage():
    ad = AdamCurvature(2, 3, lr=1e-3)
    assert curvature_from_state_dict(ad.state_dict()).steps == 0  # before any step: no moments
    ad.precondition(torch.randn(2, 3, dtype=F64))
    buf = io.BytesIO()
    torch.save(ad.state_dict(), buf)
    buf.seek(0)
    back = curvature_from_state_dict(torch.load(buf, weights_only=True))
    assert isinstance(back, AdamCurvature) and back.steps == 1
    assert torch.equal(back.m, ad.m) and torch.equal(back.v, ad.v)
    G = torch.randn(2, 3, dtype=F64)
    assert torch.equal(back.precondition(G.clone()), ad.precondition(G.clone()))
    for damage in ({"v": -torch.ones(2, 3, dtype=F64)}, {"m": torch.ones(3, 2, dtype=F64)}, {"steps": 0},
                   {"m": None}, {"lr": -1.0}, {"betas": [0.9, 1.0]}):
        with pytest.raises(CheckpointError, match="curvature"):
            AdamCurvature.from_state_dict({**ad.state_dict(), **damage})
    # a running curvature's state still comes back as one
    rc = hidden_curvature(3, act="relu", lam=1.0, rho=0.0, gamma=1.0)
    assert type(curvature_from_state_dict(rc.state_dict())).__name__ == "RunningCurvature"


def test_bad_adam_inputs_raise_typed_errors():
    X, V = torch.randn(4, 10, dtype=F64), torch.rand(3, 10, dtype=F64)
    W, b = torch.zeros(3, 4, dtype=F64), torch.zeros(3, dtype=F64)
    with pytest.raises(ShapeError, match="rows"):
        tf.w_hidden(X, V, act="relu", lam=1.0, rho=0.0, W_init=W, b_init=b, method="running",
                    curvature=adam_curvature(5, 4, lr=1e-3), max_iter=1, warn=False)
    with pytest.raises(ShapeError, match="augmented inputs"):
        tf.w_hidden(X, V, act="relu", lam=1.0, rho=0.0, W_init=W, b_init=b, method="running",
                    curvature=adam_curvature(3, 6, lr=1e-3), max_iter=1, warn=False)
    with pytest.raises(ShapeError, match="G: expected"):
        AdamCurvature(3, 5, lr=1e-3).precondition(torch.zeros(3, 4, dtype=F64))
    for kw in ({"lr": 0.0}, {"lr": float("nan")}, {"betas": (0.9,)}, {"betas": (1.0, 0.9)}, {"eps": 0.0}):
        with pytest.raises(ValueRangeError):
            AdamCurvature(3, 5, **{"lr": 1e-3, **kw})


@pytest.mark.parametrize("kw,match", [
    ({"curvature": "adam", "inexact": False, "batch_size": None}, "curvature"),
    ({"adam_lr": 1e-2}, "adam_lr"),
    ({"adam_lr": 1e-2, "curvature": "running"}, "adam_lr"),
    ({"adam_lr": 0.0, "curvature": "adam"}, "adam_lr"),
    ({"curvature": "adam", "curvature_line_search": True}, "curvature_line_search"),
])
def test_adam_settings_rules(kw, match):
    with pytest.raises(ValueRangeError, match=match):
        BCDSettings(**kw)


def test_a_state_must_match_the_settings_that_resume_it(tmp_path):
    """A state's W-step scalings set the steps: another kind, or another rate, must be refused, not followed."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    net = LiftedNetwork([5, 6, 3], "relu", "ce", seed=0)
    s = BCDSettings(batch_size=20, epochs=1, curvature="adam", inexact_x_iters=3)
    st = BCD(net, s).run(X, y, progress=False)
    for other, match in ((s.replace(adam_lr=0.5), "adam_lr=0.001"),
                         (s.replace(curvature="running"), "curvature='running'"),
                         (s.replace(curvature="batch", inexact_x_iters=None), "curvature='batch'")):
        with pytest.raises(ValueRangeError, match=match):
            BCD(net, other.replace(epochs=2)).run(X, y, state=st, progress=False)
    short = BCDState.from_state_dict(st.state_dict())
    short.curvature = []  # an empty list once slipped past the per-layer check
    with pytest.raises(ValueRangeError, match=r"holds 0 W-step scalings \(none\)"):
        BCD(net, s.replace(epochs=2)).run(X, y, state=short, progress=False)
    d = st.state_dict()
    d["curvature"][1]["v"] = -d["curvature"][1]["v"].abs() - 1.0
    with pytest.raises(CheckpointError, match="layer 1 is damaged"):
        BCDState.from_state_dict(d)
    d["curvature"][1] = {"kind": "adma"}
    with pytest.raises(CheckpointError, match="kind 'adma'"):
        BCDState.from_state_dict(d)


def test_k_sweeps_take_k_adam_steps_per_batch():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    st = BCD(LiftedNetwork([5, 6, 3], "relu", "ce", seed=0),
             BCDSettings(batch_size=10, epochs=1, K=2, curvature="adam", inexact_x_iters=3)).run(X, y, progress=False)
    assert [c.steps for c in st.curvature] == [6, 6]
