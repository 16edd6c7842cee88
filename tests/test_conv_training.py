"""Convolutional lifted networks train like dense ones: BCD (exact, inexact, running), backprop, resume, bounds.

Tiny image problems (a teacher conv net on 8x8 images) so every mode runs in seconds; LeNet-5 itself is exercised
through the command line on a handful of the shipped MNIST images.
"""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch

from fenchel_cvx import cli
from fenchel_cvx.baselines import Backprop, BackpropSettings
from fenchel_cvx.bcd import BCD, BCDSettings, BCDState
from fenchel_cvx.checkpoint import load_checkpoint, run_config, save_checkpoint
from fenchel_cvx.dual import estimate_G, lambda_sweep
from fenchel_cvx.errors import NotConvergedWarning
from fenchel_cvx.network import LiftedNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ARCH = "1x8x8-c3k3p1-a2c4k3-f3"  # conv 3@3x3 pad 1, ReLU, pool 2, conv 4@3x3, ReLU, dense 3


def _images(m=60, seed=0):
    """Images labelled by a random teacher conv net of the same architecture (so the classes are learnable); its
    outputs are standardized over the images first, so every class is present (a random teacher's raw argmax often
    gives one class alone)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 1, 8, 8))
    Z = LiftedNetwork(ARCH, "relu", "ce", seed=seed + 100).forward(X)
    y = ((Z - Z.mean(0)) / Z.std(0)).argmax(1)
    return X, y


def _block_Js(lasts):
    out = []
    for last in lasts:
        out.append(last["J0"])
        out.extend(b["J"] for b in last["blocks"])
    return np.array(out)


@pytest.mark.parametrize("mode", ["exact", "inexact", "inexact-x"])
def test_bcd_on_a_conv_net_never_increases_J(mode):
    """Exact and MM blocks are minimizations (or majorization steps) of the Lagrangian: J never rises, conv or not."""
    X, y = _images()
    extra = {"exact": {"inexact": False}, "inexact": {"inexact": True},
             "inexact-x": {"inexact": True, "inexact_x_iters": 3}}[mode]
    s = BCDSettings(batch_size=None, epochs=4, lam=[1.0, 1.0], rho=[0.05, 0.05, 0.1], tol=1e-9, record_blocks=True,
                    **extra)
    lasts = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        state = BCD(LiftedNetwork(ARCH, "relu", "ce", seed=1), s).run(
            X, y, callback=lambda st, row: lasts.append(st.last), progress=False)
    J = _block_Js(lasts)
    rise = np.diff(J) / np.maximum(np.abs(J[:-1]), 1.0)
    assert rise.max() <= 1e-7, f"J rose by {rise.max():.3g} at block {int(rise.argmax())}"
    assert J[-1] < 0.9 * J[0]
    assert [tuple(w.shape) for w in state.W] == [(3, 1, 3, 3), (4, 3, 3, 3), (3, 16)]


def test_batched_modes_learn_and_the_fast_one_certifies_its_x_updates_on_request():
    X, y = _images(m=120)
    net = LiftedNetwork(ARCH, "relu", "ce", seed=2)
    base = dict(batch_size=30, epochs=4, lam=[1.0, 1.0], gamma=[1.0, 1.0, 10.0], inexact_x_iters=5)
    mm = BCD(net, BCDSettings(**base)).run(X, y, progress=False)
    fast = BCD(net, BCDSettings(**base, curvature="running", curvature_every=2, inexact_x_certify=True)).run(
        X, y, progress=False)
    blind = BCD(net, BCDSettings(**base, curvature="running", curvature_every=2)).run(X, y, progress=False)
    for st in (mm, fast, blind):  # three classes, the largest 45 of the 120 images: 0.5 is well above chance
        assert st.history[-1]["train_acc"] > max(0.5, st.history[0]["train_acc"]), st.history[-1]
    x_status = {b["status"] for b in fast.last["blocks"] if b["block"].startswith("x_")}
    assert "unchecked" not in x_status  # inexact_x_certify keeps the X certificates
    assert {b["status"] for b in blind.last["blocks"] if b["block"] == "x_hidden"} == {"unchecked"}
    # the running curvature of a conv layer lives on its patches: C_in k^2 + 1 coordinates
    assert [c.p_a for c in fast.curvature] == [1 * 9 + 1, 3 * 9 + 1, 16 + 1]


def test_backprop_on_a_conv_net_and_the_same_batches():
    X, y = _images(m=120)
    net = LiftedNetwork(ARCH, "relu", "ce", seed=3)
    adam = Backprop(net, BackpropSettings(batch_size=30, epochs=6, lr=1e-2)).run(X, y, progress=False)
    assert adam.history[-1]["train_loss"] < adam.history[0]["train_loss"]
    trained = Backprop(net, BackpropSettings(batch_size=30, epochs=6, lr=1e-2)).network_from_state(adam)
    assert np.array_equal(trained.predict(X), trained.to_torch(dtype=torch.float64)(
        torch.as_tensor(X)).argmax(1).numpy())


def test_conv_runs_resume_bitwise(tmp_path):
    X, y = _images(m=60)
    net = LiftedNetwork(ARCH, "relu", "ce", seed=4)
    s = BCDSettings(batch_size=20, epochs=2, lam=[1.0, 1.0], gamma=[1.0, 1.0, 10.0], curvature="running",
                    curvature_every=2, inexact_x_iters=3)
    full = BCD(net, s).run(X, y, progress=False)
    bcd = BCD(net, s.replace(epochs=1))
    half = bcd.run(X, y, progress=False)
    save_checkpoint(tmp_path / "c.pt", half.state_dict(), {"config": run_config(net, s)})
    ck = load_checkpoint(tmp_path / "c.pt", config=run_config(net, s))
    resumed = BCD(net, s).run(X, y, state=BCDState.from_state_dict(ck["state"]), progress=False)
    for a, b in zip(full.W + full.b, resumed.W + resumed.b, strict=True):
        assert torch.equal(a, b)


def test_estimate_G_accepts_a_conv_net():
    X, y = _images(m=20)
    Y = np.eye(3)[y]
    rep = estimate_G(LiftedNetwork(ARCH, "relu", "mse", seed=5), X.reshape(len(X), -1), Y, lam=1.0, rho=0.1,
                     starts=2, iterations=2)  # the second start draws a fresh conv net of the same layers
    assert math.isfinite(rep.G_hat) and rep.G_hat <= rep.P + 1e-9
    sweep = lambda_sweep(LiftedNetwork(ARCH, "relu", "mse", seed=5), X.reshape(len(X), -1), Y, [0.5, 2.0],
                         rho=0.1, starts=1, iterations=2)
    assert sweep.G_hat[0] <= sweep.G_hat[1] + 1e-9


def test_lenet5_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "lenet"
    rc = cli.main(["train", "--arch", "lenet5", "--n-train", "100", "--n-test", "50", "--batch-size", "50",
                   "--epochs", "1", "--curvature", "running",
                   "--inexact-x-iters", "5", "--inexact-x-certify", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["resolved"]["sizes"] == [784, 4704, 1600, 120, 84, 10]
    rows = (out / "metrics.csv").read_text().splitlines()
    assert len(rows) == 2 and (out / "compare-adam" / "metrics.csv").is_file()
    back = LiftedNetwork.load(out / "model.npz")
    assert back.arch.startswith("1x28x28-c6k5p2-a2c16k5")
