"""Bad input never gives a silent wrong answer or a raw traceback; damaged checkpoints are caught (issue 13).

Every case a careful user or an adversarial file found is kept here, each with the typed error and the words its
message must contain (the argument as the user wrote it, in the user's samples-first layout). The certificate's
time and memory limits are in test_hardening_certify.py.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from fenchel_cvx import cli
from fenchel_cvx.baselines import Backprop, BackpropSettings
from fenchel_cvx.bcd import BCD, BCDSettings
from fenchel_cvx.checkpoint import load_checkpoint, save_checkpoint
from fenchel_cvx.data import read_idx
from fenchel_cvx.errors import CheckpointError, DataFileError, DomainError, LabelError, ShapeError
from fenchel_cvx.network import LiftedNetwork

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NET = LiftedNetwork([3, 4, 2], "relu", "ce", seed=0)  # 3 features, 2 classes
X = np.random.default_rng(0).normal(size=(6, 3))
Y = np.array([0, 1, 0, 1, 1, 0])
TINY = ["--dataset", "synthetic", "--n-train", "60", "--n-test", "20", "--arch", "20-4-10", "--batch-size", "30",
        "--epochs", "1", "--no-progress", "--compare", "none"]


def _trainers():
    return [BCD(NET, BCDSettings(epochs=1, batch_size=3)), Backprop(NET, BackpropSettings(epochs=1, batch_size=3))]


# -- the command line: no silent reinterpretation, one `error:` line in the flags' words, exit status 2 -----------
@pytest.mark.parametrize("argv,needle", [
    (["--batch-size", "0"], "--batch-size"),       # used to switch silently to full-batch Algorithm 1
    (["--threads", "0"], "--threads"),             # used to be accepted and ignored
    (["--seed", "-1"], "--seed"),                  # used to surface numpy's message without the flag
    (["--batch-size", "-3"], "--batch-size"),
    (["--epochs", "two"], "--epochs"),
])
def test_bad_flag_values_exit_2_naming_the_flag(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err and "Traceback" not in err, err


def test_a_data_dir_the_data_set_does_not_read_is_refused(tmp_path, capsys):
    rc = cli.main(["train", "--data-dir", str(tmp_path / "nonexistent"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "--data-dir" in err and "mnist-small" in err, err
    assert not (tmp_path / "r").exists()  # and nothing was written, config.json included


def test_out_naming_a_file_is_refused(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    rc = cli.main(["train", *TINY, "--out", str(afile)])
    err = capsys.readouterr().err
    assert rc == 2 and "--out" in err and "is a file" in err and "Traceback" not in err, err
    assert afile.read_text() == "x"


def test_a_failed_run_leaves_no_empty_run_directory(tmp_path, monkeypatch, capsys):
    def fail(self, state, X0, T):
        raise DomainError("X1: the iterates left the domain (simulated failure)")
    monkeypatch.setattr(BCD, "_update", fail)
    out = tmp_path / "failed"
    rc = cli.main(["train", *TINY, "--out", str(out)])
    assert rc == 2 and "simulated failure" in capsys.readouterr().err
    assert not out.exists()


# -- trainers and the network: typed errors for data they cannot use -------------------------------------------------
@pytest.mark.parametrize("trainer", _trainers(), ids=["bcd", "backprop"])
def test_empty_training_set(trainer):
    with pytest.raises(ShapeError, match="empty training set"):
        trainer.run(np.zeros((0, 3)), np.zeros(0, int), progress=False)


@pytest.mark.parametrize("trainer", _trainers(), ids=["bcd", "backprop"])
def test_meta_tensors_and_string_labels(trainer):
    with pytest.raises(DomainError, match="X: .*meta"):
        trainer.run(torch.empty(6, 3, device="meta"), Y, progress=False)
    with pytest.raises(LabelError, match="y: .*integer class labels"):
        trainer.run(X, np.array(list("ababab")), progress=False)
    with pytest.raises(LabelError, match="labels must lie in 0..1"):
        trainer.run(X, np.full(6, 5), progress=False)


@pytest.mark.parametrize("labels,needle", [
    (np.full(6, 7), r"classes 0..1 .* got 7 at labels\[0\]"),   # used to return 0.0
    (np.array([0, 1, 0, 1, 1, -1]), r"got -1 at labels\[5\]"),
    (np.array([0, 1, 0.5, 1, 1, 0]), r"got 0.5 at labels\[2\]"),
    (np.array(list("ababab")), "integer class labels"),
])
def test_accuracy_refuses_labels_the_network_cannot_output(labels, needle):
    with pytest.raises(LabelError, match=needle):
        NET.accuracy(X, labels)


def test_forward_reports_bad_entries_in_the_users_layout():
    bad = X.copy()
    bad[3, 2] = np.nan
    for f in (NET.forward, NET.predict):
        with pytest.raises(DomainError, match=r"X: .*index \(3, 2\)"):  # sample 3, feature 2, as the user wrote it
            f(bad)
    with pytest.raises(DomainError, match="X: .*meta"):
        NET.forward(torch.empty(6, 3, device="meta"))


def test_idx_header_whose_size_product_overflows(tmp_path):
    """2^31 * 2^31 * 4 wraps to 0 in int64, which an empty payload would have matched."""
    path = tmp_path / "crafted-idx3-ubyte"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">III", 2**31, 2**31, 4))
    with pytest.raises(DataFileError, match="needs 18446744073709551616 data bytes"):
        read_idx(path)


# -- checkpoints: damage is caught, kills leave no litter -------------------------------------------------------
def _checkpoint(tmp_path):
    bcd = BCD(NET, BCDSettings(epochs=1, batch_size=3))
    state = bcd.run(X, Y, progress=False)
    path = tmp_path / "c.pt"
    save_checkpoint(path, state.state_dict(), {"epoch": 1})
    return path, state


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_flipped_bytes_never_load_as_altered_weights(tmp_path, where):
    path, state = _checkpoint(tmp_path)
    raw = bytearray(path.read_bytes())
    at = int(where * len(raw))
    raw[at:at + 8] = bytes(b ^ 0xFF for b in raw[at:at + 8])
    path.write_bytes(bytes(raw))
    try:
        loaded = load_checkpoint(path)
    except CheckpointError as exc:
        assert str(path) in str(exc)
        return
    # bytes that carry no content (zip padding) may flip harmlessly; content never comes back altered
    for a, b in zip(loaded["state"]["W"] + loaded["state"]["b"], state.W + state.b, strict=True):
        assert torch.equal(a, b)


def test_damaged_tensor_data_is_refused(tmp_path):
    path, state = _checkpoint(tmp_path)
    raw = path.read_bytes()
    needle = state.W[0].numpy().tobytes()[:16]  # the first weights, as stored in the file
    at = raw.index(needle)
    damaged = raw[:at] + bytes([raw[at] ^ 0x01]) + raw[at + 1:]
    path.write_bytes(damaged)
    with pytest.raises(CheckpointError, match=r"c\.pt is damaged.*checksum.*resume from an earlier copy"):
        load_checkpoint(path)


def test_a_killed_writes_temporary_file_is_removed_by_the_next_save(tmp_path):
    path, state = _checkpoint(tmp_path)
    stale = tmp_path / ".c.pt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".notes.txt.tmp"  # not ours: left alone
    other.write_text("x")
    save_checkpoint(path, state.state_dict(), {"epoch": 1})
    assert not stale.exists() and other.exists()
    assert load_checkpoint(path)["meta"]["epoch"] == 1


def test_resume_removes_stale_temporaries(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--method", "adam", "--out", str(out)]) == 0
    litter = [out / ".checkpoint.pt.abc123.tmp", out / ".metrics.csv.def456.tmp"]
    for f in litter:
        f.write_bytes(b"x" * 100)
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert not any(f.exists() for f in litter)


# -- variants found while fixing the above ------------------------------------------------------------------------
def test_more_entry_points_raise_typed_errors(tmp_path):
    from fenchel_cvx import cvx
    from fenchel_cvx import torch as ft
    from fenchel_cvx.errors import FenchelError, TensorMismatchError, ValueRangeError
    rng = np.random.default_rng(1)
    W, U, Xn = rng.normal(size=(3, 4)), rng.normal(size=(4, 5)), np.abs(rng.normal(size=(3, 5)))
    problem = dict(act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
    with pytest.raises(ValueRangeError, match="solver_opts: expected a dict"):
        cvx.x_hidden(W, None, Xn, U, solver_opts="verbose", **problem)
    meta = [torch.as_tensor(a).to("meta") for a in (W, Xn, U)]
    with pytest.raises(TensorMismatchError, match="W: .*meta"):
        ft.x_hidden(meta[0], None, meta[1], meta[2], **problem)
    with pytest.raises(ValueRangeError, match="seed"):
        LiftedNetwork([3, 4, 2], seed="a")
    with pytest.raises(ValueRangeError, match="dtype"):
        NET.to_torch(dtype="half-precision")
    assert NET.to_torch(dtype="float64")[0].weight.dtype == torch.float64
    with pytest.raises(FenchelError, match="network: expected a LiftedNetwork"):
        BCD("my network")
    with pytest.raises(CheckpointError, match="plain data"):
        save_checkpoint(tmp_path / "x.pt", {"W": [torch.ones(2)], "extra": object()})
    assert not list(tmp_path.iterdir())  # refused before anything was written


# -- one batch at a time: the batch is checked at the door, the sweep's own results after it ---------------------
@pytest.mark.parametrize("trainer", _trainers(), ids=["bcd", "backprop"])
def test_a_step_on_a_batch_with_nan_names_X0(trainer):
    X0 = torch.as_tensor(X[:3].T.copy())
    X0[1, 2] = float("nan")
    state = trainer.init_state()
    with pytest.raises(DomainError, match=r"X0: expected finite values, got 1 NaN/inf entries "
                                          r"\(first at index \(1, 2\)"):
        trainer.step(state, X0, Y[:3])
    assert state.step == 0


def test_a_sweep_that_diverges_raises_instead_of_training_on():
    """The faces do not re-check, inside a sweep, values the sweep made; the weights are checked after it."""
    from fenchel_cvx.errors import SolverError
    from fenchel_cvx.torch import FUNCTIONS

    bcd = BCD(NET, BCDSettings(epochs=1, batch_size=3))
    real = FUNCTIONS["w_hidden"]

    def exploding(**kw):
        r = real(**kw)
        r.W = r.W * float("nan")  # the last block of the sweep goes bad: no face call would see it
        return r
    bcd.face.functions = dict(FUNCTIONS, w_hidden=exploding)
    with pytest.raises(SolverError, match=r"W_0: expected finite weights after the batch's block updates"):
        bcd.step(bcd.init_state(), torch.as_tensor(X[:3].T.copy()), Y[:3])


def test_trusted_values_skips_the_value_checks_only_inside_its_block():
    from fenchel_cvx._checks import check_finite, trusted_values
    from fenchel_cvx.activations import get_activation

    bad = torch.tensor([1.0, float("nan"), -1.0])
    with trusted_values():
        check_finite(bad, "v")
        get_activation("relu").check_domain(bad.nan_to_num(), "v")
    with pytest.raises(DomainError, match="v: expected finite values"):
        check_finite(bad, "v")
    with pytest.raises(DomainError, match="v: expected values in the domain"):
        get_activation("relu").check_domain(bad.nan_to_num(), "v")
