"""Bad input to the command line, the training loop and the dual-bound module: a typed error or a warning that
names the argument, never a silent answer (found by an audit with tiny scripts; each case failed before its fix)."""

import math
import warnings

import numpy as np
import pytest
import torch

from fenchel_cvx import cli
from fenchel_cvx.bcd import BCD
from fenchel_cvx.dual import certify_lower_bound, estimate_G
from fenchel_cvx.errors import ChoiceError, DomainError, FenchelError, ShapeError, ValueRangeError
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.plots import figure_path
from fenchel_cvx.scaling import rescale
from fenchel_cvx.settings import BCDSettings, TrainerSettings

TINY = ["--dataset", "synthetic", "--n-train", "20", "--n-test", "10", "--arch", "20-3-10", "--epochs", "1",
        "--threads", "1", "--no-progress", "--compare", "none"]


def _data(m=6, n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((m, n))


# -- dual bound ----------------------------------------------------------------------------------------------
def test_an_overflowing_upper_bound_certifies_nothing():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5, 1))
    Y = (np.maximum(X[:, 0], 0) + 0.1 * rng.standard_normal(5)) * 1e155  # squares overflow float64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        c = certify_lower_bound(X, Y, hidden=1, lam=0.5, rho=0.1, time_limit=1.0, n_starts=2)
    assert c.status != "certified" and not (math.isfinite(c.upper) and c.rel_gap == 0.0)
    assert c.rel_gap == 1.0


def test_integer_targets_of_a_one_output_network_are_targets_not_labels():
    net = LiftedNetwork([2, 2, 1], "relu", "mse", seed=0)
    X = _data()
    y = np.array([0, 1, 2, 0, 1, 2])
    as_int = estimate_G(net, X, y, lam=0.1, rho=0.01, starts=1, iterations=0)
    as_float = estimate_G(net, X, y.astype(float), lam=0.1, rho=0.01, starts=1, iterations=0)
    assert math.isclose(as_int.P, as_float.P, rel_tol=1e-12)


@pytest.mark.parametrize("bad", ["0.1", True, b"1"])
def test_numbers_given_as_strings_or_bools_are_refused(bad):
    net = LiftedNetwork([2, 2, 1], "relu", "mse", seed=0)
    with pytest.raises(ValueRangeError, match="lam"):
        estimate_G(net, _data(), np.zeros(6), lam=bad, rho=0.01, starts=1, iterations=0)


def test_seeds_beyond_64_bits_are_refused():
    net = LiftedNetwork([2, 2, 1], "relu", "mse", seed=0)
    with pytest.raises(ValueRangeError, match="seed"):
        estimate_G(net, _data(), np.zeros(6), lam=0.1, rho=0.01, starts=1, iterations=0, seed=2 ** 64)


def test_rescale_checks_the_x_variables():
    net = LiftedNetwork([2, 2, 1], "relu", "mse", seed=0)
    with pytest.raises(DomainError, match=r"Xvars\[0\] \(X_1\): expected finite values"):
        rescale(net, [np.full((2, 6), np.nan)], lam=1.0, rho=0.1)
    with pytest.raises(ShapeError, match=r"Xvars\[0\] \(X_1\): expected shape \(2, 6\)"):
        rescale(net, [np.ones((3, 6))], lam=1.0, rho=0.1)
    with pytest.raises(DomainError, match="expected real numbers"):
        rescale(net, [[["a", "b"]]], lam=1.0, rho=0.1)
    assert rescale(net, [np.ones((2, 6))], lam=2.0, rho=0.1).Xvars[0].shape == (2, 6)


# -- training loop ---------------------------------------------------------------------------------------------
def _bcd(**kw):
    net = LiftedNetwork([4, 3, 2], "relu", "ce", seed=0)
    return BCD(net, BCDSettings(epochs=1, batch_size=kw.pop("batch_size", 4), **kw))


def test_a_batch_larger_than_the_data_is_said():
    X, y = _data(8, 4), np.arange(8) % 2
    with pytest.warns(UserWarning, match="batch_size: 100 is larger than the 8 training samples"):
        _bcd(batch_size=100).run(X, y)


def test_solver_options_must_be_keywords_every_subproblem_takes_and_the_trainer_does_not_set():
    X, y = _data(8, 4), np.arange(8) % 2
    with pytest.raises(ChoiceError, match=r"solver_options: \['bogus'\] are not keyword arguments"):
        _bcd(solver_options={"bogus": 1}).run(X, y)
    with pytest.raises(ChoiceError, match=r"solver_options: \['tol'\] are set by the trainer"):
        _bcd(solver_options={"tol": 1e-3}).run(X, y)
    # a keyword every subproblem of the face takes and the trainer leaves alone
    _bcd(backend="cvx", inexact=False, solver_options={"solver": "CLARABEL"}).run(X, y)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has an MPS device")
def test_a_device_torch_cannot_use_is_named():
    with pytest.raises(FenchelError, match="device: 'mps' requested"):
        _bcd(device="mps")


@pytest.mark.parametrize("field,value", [("seed", 2 ** 63), ("threads", 100_000)])
def test_settings_have_upper_ends(field, value):
    with pytest.raises(ValueRangeError, match=f"{field}: expected an integer >= "):
        TrainerSettings(**{field: value})


# -- command line ------------------------------------------------------------------------------------------------
def test_train_names_an_out_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli.main(["train", *TINY, "--out", str(tmp_path / "afile" / "sub")]) != 0
    assert "'afile' is a file, not a folder" in capsys.readouterr().err.replace(str(tmp_path) + "/", "'")


def test_settings_errors_name_the_flag_that_turns_a_setting_off(capsys):
    assert cli.main(["train", *TINY, "--backend", "cvx"]) != 0
    err = capsys.readouterr().err
    assert "--exact" in err and "--no-inexact" not in err


def test_plot_names_its_output_flag(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *TINY, "--method", "adam", "--batch-size", "10", "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["plot", str(out), "-o", str(tmp_path / "fig.foo")]) == 2
    assert "error: -o: expected a figure file ending in one of" in capsys.readouterr().err


def test_figure_paths_are_checked(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ChoiceError, match="expected a figure file ending in one of"):
        figure_path(tmp_path / "noext")
    with pytest.raises(ChoiceError, match="expected a figure file ending in one of"):
        figure_path(tmp_path / "out.txt")
    with pytest.raises(FenchelError, match="is a file, not a folder"):
        figure_path(tmp_path / "afile" / "p.png")
    (tmp_path / "d.png").mkdir()
    with pytest.raises(FenchelError, match="got the folder"):
        figure_path(tmp_path / "d.png")
    assert figure_path(tmp_path / "new" / "p.png").parent.is_dir()
