"""Backprop baselines (fenchel_cvx.baselines): learning, bitwise resume, shared data pipeline and history format.

Runtime: ~5 s on a 2-core CPU (tiny synthetic problems).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fenchel_cvx.baselines import DEFAULT_LR, Backprop, BackpropSettings, BackpropState
from fenchel_cvx.bcd import BCD, HISTORY_KEYS, BCDSettings
from fenchel_cvx.checkpoint import load_checkpoint, save_checkpoint
from fenchel_cvx.data import make_synthetic_classification
from fenchel_cvx.errors import CheckpointError, FenchelError, ValueRangeError
from fenchel_cvx.network import LiftedNetwork


@pytest.fixture(scope="module")
def data():
    X, y = make_synthetic_classification(360, 12, 4, seed=3, hidden=16)
    return X[:300], y[:300], X[300:], y[300:]


def _net(loss="ce", seed=1):
    return LiftedNetwork([12, 10, 4], "relu", loss, seed=seed)


@pytest.mark.parametrize("optimizer,loss", [("adam", "ce"), ("sgd", "ce"), ("adam", "mse")])
def test_training_decreases_the_loss(data, optimizer, loss):
    X, y, Xt, yt = data
    lr = 0.1 if optimizer == "sgd" else 0.01
    bp = Backprop(_net(loss), BackpropSettings(optimizer=optimizer, lr=lr, batch_size=50, epochs=8, seed=0))
    state = bp.run(X, y, X_test=Xt, y_test=yt, progress=False)
    first, last = state.history[0], state.history[-1]
    assert len(state.history) == 8 and state.epoch == 8 and state.step == 8 * 6
    assert last["train_loss"] < 0.8 * first["train_loss"]
    assert last["train_acc"] > first["train_acc"]
    assert 0.0 <= last["test_acc"] <= 1.0 and math.isfinite(last["test_loss"])
    assert all(r["method"] == optimizer for r in state.history)
    assert all(math.isnan(r["J"]) and math.isnan(r["penalty"]) and math.isnan(r["max_residual"])
               for r in state.history)
    times = [r["time"] for r in state.history]
    assert all(b >= a for a, b in itertools.pairwise(times))


def test_history_rows_have_bcds_keys(data):
    X, y, Xt, yt = data
    bp = Backprop(_net(), BackpropSettings(batch_size=100, epochs=1, eval_every=1))
    state = bp.run(X, y, X_test=Xt, y_test=yt, progress=False)
    assert [tuple(r) for r in state.history] == [HISTORY_KEYS] * 3
    assert [r["epoch"] for r in state.history] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_same_batches_as_bcd(data, monkeypatch):
    """Same seed -> the two trainers draw the same permutation stream and cut the same batches."""
    X, y, _, _ = data
    seen = {"bcd": [], "bp": []}

    def record(key):
        def fake_step(self, state, X0, Y):
            seen[key].append(X0[0].detach().clone())  # first feature of every column identifies the batch
            state.step += 1
            return state
        return fake_step
    monkeypatch.setattr(BCD, "_checked_step", record("bcd"))
    monkeypatch.setattr(Backprop, "_checked_step", record("bp"))
    BCD(_net(), BCDSettings(batch_size=70, epochs=2, seed=5)).run(X, y, progress=False)
    Backprop(_net(), BackpropSettings(batch_size=70, epochs=2, seed=5)).run(X, y, progress=False)
    assert len(seen["bcd"]) == len(seen["bp"]) == 10
    for a, b in zip(seen["bcd"], seen["bp"], strict=True):
        assert torch.equal(a.double(), b.double())
    assert not torch.equal(seen["bp"][0], seen["bp"][5][:70])  # a fresh permutation in epoch 2


def test_initial_weights_and_objective_match_the_network(data):
    X, y, _, _ = data
    net = _net("mse")
    rho = [0.3, 0.7]
    bp = Backprop(net, BackpropSettings(rho=rho))
    state = bp.init_state()
    for w, w_net in zip(state.W, net.W, strict=True):
        assert torch.equal(w.detach(), torch.as_tensor(w_net))
    X0 = torch.as_tensor(X.T)
    T = net.loss.targets(y, 4, like=X0)
    f = float(bp.objective(state.W, state.b, X0, T).detach())
    assert f == pytest.approx(net.primal_objective(X.T, y, rho), rel=1e-12)


def test_mean_reduction_is_the_sum_with_a_smaller_step(data):
    """One SGD step: (reduction='sum', lr) equals (reduction='mean', lr * m_b): same minimizer, rescaled lr."""
    X, y, _, _ = data
    X0, m_b = torch.as_tensor(X[:50].T), 50
    out = []
    for reduction, lr in (("sum", 1e-3), ("mean", 1e-3 * m_b)):
        bp = Backprop(_net(), BackpropSettings(optimizer="sgd", lr=lr, reduction=reduction, rho=0.5))
        st = bp.step(bp.init_state(), X0, torch.as_tensor(y[:50]))
        out.append([w.detach() for w in st.W + st.b])
    moved = sum(float((a - torch.as_tensor(w)).abs().max()) for a, w in zip(out[0][:2], _net().W, strict=True))
    assert moved > 1e-4
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("kill_after", [3, 6])  # mid-epoch 1 (eval_every rows) and right at the epoch boundary
def test_resume_from_checkpoint_is_bitwise(data, tmp_path, optimizer, kill_after):
    X, y, Xt, yt = data
    settings = BackpropSettings(optimizer=optimizer, batch_size=50, epochs=3, seed=2, eval_every=3,
                                momentum=0.9 if optimizer == "sgd" else 0.0)
    ref = Backprop(_net(), settings).run(X, y, X_test=Xt, y_test=yt, progress=False)

    class Killed(Exception):
        pass
    path = tmp_path / "ck.pt"

    def kill(state, row):
        save_checkpoint(path, state.state_dict(), {"method": optimizer})
        if state.step == kill_after:
            raise Killed
    with pytest.raises(Killed):
        Backprop(_net(), settings).run(X, y, X_test=Xt, y_test=yt, callback=kill, progress=False)
    d = load_checkpoint(path)["state"]
    state = BackpropState.from_state_dict(d)
    assert state.step == kill_after and state.optimizer is None and state.opt_state is not None
    out = Backprop(_net(), settings).run(X, y, X_test=Xt, y_test=yt, state=state, progress=False)
    for a, b in zip(ref.W + ref.b, out.W + out.b, strict=True):
        assert torch.equal(a, b)
    sa, sb = ref.state_dict()["optimizer"]["state"], out.state_dict()["optimizer"]["state"]
    for k in sa:
        for name in sa[k]:
            assert torch.equal(torch.as_tensor(sa[k][name]), torch.as_tensor(sb[k][name]))
    assert _rows(out.history) == _rows(ref.history)


def _rows(history):
    """History rows without the wall time, NaN made comparable."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items() if k != "time"}
            for r in history]


def test_state_dict_is_plain_data(data, tmp_path):
    X, y, _, _ = data
    bp = Backprop(_net(), BackpropSettings(batch_size=100, epochs=1))
    state = bp.run(X, y, progress=False)
    save_checkpoint(tmp_path / "a.pt", state.state_dict())
    d = torch.load(tmp_path / "a.pt", weights_only=True)["state"]  # no code runs on load
    assert d["kind"] == "fenchel_backprop_state" and d["epoch"] == 1
    with pytest.raises(CheckpointError, match="backprop state"):
        BackpropState.from_state_dict({"kind": "fenchel_bcd_state", "W": []})
    sgd = Backprop(_net(), BackpropSettings(optimizer="sgd", momentum=0.9, epochs=2, batch_size=100))
    with pytest.raises(CheckpointError, match="optimizer"):
        sgd.run(X, y, state=BackpropState.from_state_dict(d), progress=False)


def test_network_from_state_predicts_like_the_trainer(data):
    X, y, Xt, yt = data
    bp = Backprop(_net(), BackpropSettings(batch_size=100, epochs=2))
    state = bp.run(X, y, X_test=Xt, y_test=yt, progress=False)
    net = bp.network_from_state(state)
    assert np.array_equal(net.predict(Xt), bp.predict(state, Xt))
    assert net.accuracy(Xt, yt) == pytest.approx(state.history[-1]["test_acc"])
    assert bp.evaluate(state, Xt, yt)[1] == pytest.approx(state.history[-1]["test_acc"])


def test_settings_are_checked():
    net = _net()
    assert Backprop(net, BackpropSettings(optimizer="sgd")).lr == DEFAULT_LR["sgd"] == 1e-2
    assert Backprop(net).lr == DEFAULT_LR["adam"] == 1e-3
    with pytest.raises(FenchelError, match="optimizer"):
        Backprop(net, BackpropSettings(optimizer="rmsprop"))
    with pytest.raises(ValueRangeError, match="lr"):
        Backprop(net, BackpropSettings(lr=-1.0))
    with pytest.raises(ValueRangeError, match="batch_size"):
        Backprop(net, BackpropSettings(batch_size=0))
    with pytest.raises(FenchelError, match="reduction"):
        Backprop(net, BackpropSettings(reduction="avg"))
    with pytest.raises(ValueRangeError, match="rho"):
        Backprop(net, BackpropSettings(rho=-1.0))
    s = BackpropSettings(rho=[0.0, 1.0])
    assert BackpropSettings.from_dict(s.to_dict()) == BackpropSettings(rho=[0.0, 1.0])
    with pytest.raises(FenchelError, match="unknown keys"):
        BackpropSettings.from_dict({"momentumm": 0.9})
