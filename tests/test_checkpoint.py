"""Checkpoints: bitwise kill-and-resume of BCD, atomic writes, clear errors for missing/corrupt/foreign files.

Runtime: about 10-20 s on 2 CPU cores.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

import fenchel_cvx.checkpoint as ckpt
from fenchel_cvx.bcd import BCD, BCDSettings, BCDState
from fenchel_cvx.checkpoint import load_checkpoint, run_config, run_fingerprint, save_checkpoint
from fenchel_cvx.errors import CheckpointError
from fenchel_cvx.network import LiftedNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Killed(Exception):
    """Stands in for the process dying between two batches."""


def _problem(m=45, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, 6))
    y = (X[:, :3] @ rng.normal(size=(3, 3))).argmax(1)
    net = LiftedNetwork([6, 7, 5, 3], "relu", "ce", seed=seed)
    return net, X, y


def _settings(**kw):
    base = {"batch_size": 10, "K": 1, "lam": [0.5, 0.8], "rho": 0.0, "gamma": [1.0, 2.0, 5.0], "epochs": 3, "seed": 11,
                "shuffle": True, "tol": 1e-8}
    base.update(kw)
    return BCDSettings(**base)


def _save(path, bcd, state):
    save_checkpoint(path, state.state_dict(), {"config": run_config(bcd.network, bcd.settings)})


def _resume(path, net, settings):
    bcd = BCD(net, settings)
    d = load_checkpoint(path, config=run_config(net, settings))
    return bcd, BCDState.from_state_dict(d["state"])


def _assert_same_run(a: BCDState, b: BCDState):
    for x, y in zip(a.W + a.b, b.W + b.b, strict=True):
        assert torch.equal(x, y)
    assert (a.epoch, a.batch, a.step) == (b.epoch, b.batch, b.step)
    assert len(a.history) == len(b.history)
    for ra, rb in zip(a.history, b.history, strict=True):
        assert ra.keys() == rb.keys()
        for k in ra:
            if k != "time":  # wall time is the one thing a resumed run may not reproduce
                assert ra[k] == rb[k] or (ra[k] != ra[k] and rb[k] != rb[k]), (k, ra[k], rb[k])


def test_resume_after_an_epoch_is_bitwise_identical(tmp_path):
    net, X, y = _problem()
    full = BCD(net, _settings()).run(X, y, progress=False)

    first = BCD(net, _settings(epochs=1))
    st = first.run(X, y, progress=False)
    path = tmp_path / "ckpt.pt"
    _save(path, first, st)
    bcd, st2 = _resume(path, LiftedNetwork([6, 7, 5, 3], "relu", "ce", seed=123), _settings())  # other init: unused
    st2 = bcd.run(X, y, state=st2, progress=False)
    _assert_same_run(full, st2)


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    net, X, y = _problem()
    full = BCD(net, _settings(eval_every=1)).run(X, y, progress=False)

    path = tmp_path / "ckpt.pt"
    bcd = BCD(net, _settings(eval_every=1))

    def save_then_die(state, row):
        _save(path, bcd, state)
        if state.step == 7:  # epoch 1, batch 2 of 5: the permutation of epoch 1 must come back from the file
            raise Killed

    with pytest.raises(Killed):
        bcd.run(X, y, callback=save_then_die, progress=False)
    bcd2, st = _resume(path, net, _settings(eval_every=1))
    assert (st.epoch, st.batch) == (1, 2) and st.perm is not None
    st = bcd2.run(X, y, state=st, progress=False)
    _assert_same_run(full, st)


@pytest.mark.parametrize("x32", [False, True], ids=["x64", "x-steps-float32"])
def test_resume_with_running_curvature_is_bitwise_identical(tmp_path, x32):
    """The running curvature estimates (their mean, counters and factors) travel in the checkpoint."""
    kw = {"eval_every": 1, "inexact": True, "inexact_x_iters": 4, "curvature": "running", "curvature_every": 3,
          "curvature_rank": 2, "inexact_x_float32": x32}
    net, X, y = _problem()
    full = BCD(net, _settings(**kw)).run(X, y, progress=False)
    path = tmp_path / "ckpt.pt"
    bcd = BCD(net, _settings(**kw))

    def save_then_die(state, row):
        _save(path, bcd, state)
        if state.step == 8:  # mid-epoch, and between two refreshes (every 3 batches)
            raise Killed

    with pytest.raises(Killed):
        bcd.run(X, y, callback=save_then_die, progress=False)
    bcd2, st = _resume(path, net, _settings(**kw))
    assert st.curvature is not None and [c.calls for c in st.curvature] == [8, 8, 8]
    st = bcd2.run(X, y, state=st, progress=False)
    _assert_same_run(full, st)


def test_resume_algorithm1_keeps_the_X_variables(tmp_path):
    net, X, y = _problem(m=20)
    s = {"batch_size": None, "gamma": 0.0, "rho": 0.1}
    full = BCD(net, _settings(**s)).run(X, y, progress=False)
    first = BCD(net, _settings(**s, epochs=2))
    st = first.run(X, y, progress=False)
    path = tmp_path / "alg1.pt"
    _save(path, first, st)
    bcd, st2 = _resume(path, net, _settings(**s))
    assert st2.X is not None
    st2 = bcd.run(X, y, state=st2, progress=False)
    _assert_same_run(full, st2)
    for a, b in zip(full.X, st2.X, strict=True):
        assert torch.equal(a, b)


def test_wrong_run_is_refused_with_the_differing_setting(tmp_path):
    net, X, y = _problem(m=20)
    bcd = BCD(net, _settings(epochs=1))
    path = tmp_path / "c.pt"
    _save(path, bcd, bcd.run(X, y, progress=False))
    with pytest.raises(CheckpointError, match=r"c\.pt.*seed: saved 11 vs now 12"):
        load_checkpoint(path, config=run_config(net, _settings(seed=12)))
    # epochs and device may change on resume
    load_checkpoint(path, config=run_config(net, _settings(epochs=9, device="cpu")))
    other = LiftedNetwork([6, 9, 5, 3], "relu", "ce", seed=0)
    with pytest.raises(CheckpointError, match="sizes"):
        load_checkpoint(path, config=run_config(other, _settings()))


# -- files that must not load ------------------------------------------------------------------------------------------
def _valid(tmp_path):
    path = tmp_path / "good.pt"
    save_checkpoint(path, {"W": [torch.arange(6.0).reshape(2, 3)], "epoch": 1}, {"config": {"a": 1}})
    return path


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "nope.pt"
    with pytest.raises(CheckpointError, match="nope.pt.*does not exist"):
        load_checkpoint(path)


def test_truncated_checkpoint(tmp_path):
    path = _valid(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="good.pt.*corrupt"):
        load_checkpoint(path)


def test_random_bytes_checkpoint(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match="noise.pt"):
        load_checkpoint(path)


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.makedirs, (self.target,))


def test_checkpoint_with_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, "meta": {}, "state": _Evil(str(marker))}, path)
    with pytest.raises(CheckpointError, match="evil.pt"):
        load_checkpoint(path)
    assert not marker.exists()


def test_foreign_torch_file_is_refused(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"W": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="weights.pt.*format"):
        load_checkpoint(path)


def test_kill_during_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = _valid(tmp_path)
    before = path.read_bytes()

    def dying_save(obj, fh):
        fh.write(b"PK\x03\x04 half a zip")
        raise Killed

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(Killed):
        save_checkpoint(path, {"W": [torch.ones(3)]}, {"config": {"a": 2}})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.pt"]  # no temporary file left behind
    d = load_checkpoint(path, config={"a": 1})
    assert torch.equal(d["state"]["W"][0], torch.arange(6.0).reshape(2, 3))


def test_save_rejects_bad_meta_and_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="meta"):
        save_checkpoint(tmp_path / "x.pt", {}, {"f": object()})
    with pytest.raises(CheckpointError, match="does not exist"):
        save_checkpoint(tmp_path / "no_dir" / "x.pt", {}, {})


def test_fingerprint_is_canonical():
    a = {"settings": {"lam": (0.1, 0.2), "seed": 0}, "sizes": [3, 2]}
    b = {"sizes": [3, 2], "settings": {"seed": 0, "lam": [0.1, 0.2]}}
    assert run_fingerprint(a) == run_fingerprint(b)
    assert run_fingerprint(a) != run_fingerprint({**a, "sizes": [3, 3]})
