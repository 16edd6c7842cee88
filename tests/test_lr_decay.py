"""``lr_decay``: the per-epoch factor on the step size of Adam/SGD and of Fenchel's Adam W-steps.

Checked: epoch ``e`` steps at ``rate * lr_decay**e`` (backprop: the optimizer's ``lr``; Fenchel: the Adam W-steps'
multiplier), the first epoch is the undecayed run's bit for bit, a decayed run resumes bitwise from a checkpoint
taken at an epoch boundary or mid-epoch, and the settings refuse a decay where there is no step size to decay.

Runtime: a few seconds on 2 CPU cores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fenchel_cvx.baselines import Backprop, BackpropSettings, BackpropState
from fenchel_cvx.bcd import BCD, BCDSettings, BCDState
from fenchel_cvx.errors import ValueRangeError
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.settings import PeerSettings, RunConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6))
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5).astype(int)
    return X, y


def _net():
    return LiftedNetwork([6, 8, 3], "relu", "ce", seed=0)


def _same(a, b) -> bool:
    return all(torch.equal(u, v) for u, v in zip(a.W + a.b, b.W + b.b, strict=True))


class _Spy:
    """Records the ``lr`` of every optimizer step (backprop) or the ``relax`` of every W-step (Fenchel)."""

    def __init__(self, monkeypatch, trainer):
        self.seen: list[tuple[int, float]] = []
        if isinstance(trainer, Backprop):
            step = torch.optim.Adam.step

            def spy_step(opt, *a, **k):
                self.seen.append((self.epoch, opt.param_groups[0]["lr"]))
                return step(opt, *a, **k)
            monkeypatch.setattr(torch.optim.Adam, "step", spy_step)
        else:
            face = type(trainer).face

            def spy_face(tr):
                f = face.fget(tr)

                def call(name, **kw):
                    if "relax" in kw:
                        self.seen.append((self.epoch, kw["relax"]))
                    return f(name, **kw)
                return call
            monkeypatch.setattr(type(trainer), "face", property(spy_face))
        self.epoch = 0

    def callback(self, state, row):
        self.epoch = state.epoch


@pytest.mark.parametrize("method", ["adam", "fenchel"])
def test_epoch_e_steps_at_rate_times_decay_to_the_e(data, monkeypatch, method):
    X, y = data
    if method == "adam":
        tr = Backprop(_net(), BackpropSettings(batch_size=20, epochs=3, lr=0.01, lr_decay=0.5))
        rate = 0.01
    else:
        tr = BCD(_net(), BCDSettings(batch_size=20, epochs=3, curvature="adam", adam_lr=0.05, inexact_x_iters=3,
                                     curvature_relax=1.5, lr_decay=0.5))
        rate = 1.5  # the multiplier of the Adam step (whose own rate adam_lr stays in its moments' state)
    spy = _Spy(monkeypatch, tr)
    tr.run(X, y, progress=False, callback=spy.callback)
    assert sorted({e for e, _ in spy.seen}) == [0, 1, 2]
    for e, value in spy.seen:
        assert value == rate * 0.5 ** e, (e, value)


@pytest.mark.parametrize("method", ["adam", "sgd", "fenchel"])
def test_the_first_epoch_is_the_undecayed_runs_and_a_resume_is_bitwise(data, method):
    X, y = data
    if method == "fenchel":
        def make(**kw):
            return BCD(_net(), BCDSettings(batch_size=20, curvature="adam", adam_lr=0.05, inexact_x_iters=3, **kw))
        state_class = BCDState
    else:
        def make(**kw):
            return Backprop(_net(), BackpropSettings(batch_size=20, optimizer=method, lr=0.05, **kw))
        state_class = BackpropState
    plain1 = make(epochs=1).run(X, y, progress=False)
    decayed1 = make(epochs=1, lr_decay=0.3).run(X, y, progress=False)
    assert _same(plain1, decayed1)
    plain = make(epochs=3).run(X, y, progress=False)
    full = make(epochs=3, lr_decay=0.3).run(X, y, progress=False)
    assert not _same(plain, full)
    # from an epoch boundary, and from mid-epoch (the saved optimizer lr is that of the epoch it was saved in)
    for stop in ("boundary", "mid"):
        class Stop(Exception):
            pass
        saved = {}

        def grab(state, row, stop=stop, saved=saved, Stop=Stop):
            if (stop == "boundary" and state.epoch == 2) or (stop == "mid" and state.epoch == 1 and state.batch == 2):
                saved["d"] = state.state_dict()
                raise Stop
        with pytest.raises(Stop):
            make(epochs=3, lr_decay=0.3, eval_every=1).run(X, y, progress=False, callback=grab)
        st = state_class.from_state_dict(saved["d"])
        resumed = make(epochs=3, lr_decay=0.3).run(X, y, state=st, progress=False)
        assert _same(full, resumed), stop


@pytest.mark.parametrize("make,match", [
    (lambda: BackpropSettings(lr_decay=0.0), "lr_decay"),
    (lambda: BackpropSettings(lr_decay=1.5), "lr_decay"),
    (lambda: BackpropSettings(lr_decay=float("nan")), "lr_decay"),
    (lambda: BCDSettings(lr_decay=0.9), "curvature='batch'"),
    (lambda: BCDSettings(lr_decay=0.9, curvature="running"), "curvature='running'"),
    (lambda: PeerSettings(batch_size=None, lr_decay=0.9), "no step size"),
    (lambda: RunConfig().with_values({"lr_decay": 0.9}), "lr_decay"),
])
def test_a_decay_without_a_step_size_to_decay_is_refused(make, match):
    with pytest.raises(ValueRangeError, match=match):
        make()


def test_a_run_config_passes_the_decay_to_both_trainers():
    cfg = RunConfig().with_values({"method": "adam", "lr_decay": 0.9})
    assert cfg.backprop_settings().lr_decay == 0.9
    cfg = RunConfig().with_values({"curvature": "adam", "lr_decay": 0.9})
    assert cfg.bcd_settings().lr_decay == 0.9 and cfg.backprop_settings("adam").lr_decay == 0.9


def test_a_run_configs_step_size_is_the_rate_its_trainer_takes():
    """What ``lr_decay`` decays: backprop's rate and the Adam W-steps' rate, defaults resolved; none elsewhere."""
    cfg = RunConfig()
    assert cfg.step_size() is None  # Fenchel's default mode: block minimizers and curvature-scaled steps
    assert cfg.with_values({"curvature": "adam"}).step_size() == 1e-3
    assert cfg.with_values({"curvature": "adam", "adam_lr": 5e-3}).step_size() == 5e-3
    assert cfg.with_values({"method": "sgd"}).step_size() == 1e-2
    assert cfg.with_values({"method": "adam", "lr": 3e-3}).step_size() == 3e-3
    assert cfg.with_values({"method": "taylor-admm", "batch_size": None}).step_size() is None
