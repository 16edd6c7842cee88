"""The ``fenchel-cvx`` command line: help, run directories, kill-and-resume, plots, clear errors.

Runs ``main(argv)`` in-process on tiny synthetic data (one subprocess checks the installed console script).
Runtime: ~30 s on a 2-core CPU.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import subprocess

import numpy as np
import pytest

from fenchel_cvx import cli, runs
from fenchel_cvx.baselines import Backprop
from fenchel_cvx.bcd import BCD, HISTORY_KEYS
from fenchel_cvx.checkpoint import load_checkpoint
from fenchel_cvx.network import LiftedNetwork

# 120 train / 60 test samples, 20 features, 10 classes; batches of 60 -> 2 per epoch.
TINY = ["--dataset", "synthetic", "--n-train", "120", "--n-test", "60", "--arch", "20-8-10", "--batch-size", "60",
        "--no-progress"]


def _train(tmp_path, name, *extra):
    out = tmp_path / name
    rc = cli.main(["train", *TINY, "--out", str(out), *extra])
    return rc, out


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["plot", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: fenchel-cvx")
    if argv[0] == "train":
        for opt in ("--method", "--dataset", "--data-dir", "--arch", "--loss", "--activation", "--batch-size",
                    "--epochs", "--lam", "--rho", "--gamma", "--K", "--inexact", "--exact", "--device", "--dtype", "--seed",
                    "--out", "--resume", "--compare", "--no-progress"):
            assert opt in text, opt


def test_console_script_is_installed():
    exe = shutil.which("fenchel-cvx")
    if exe is None:
        pytest.skip("fenchel-cvx is not on PATH (package not installed with pip install -e .)")
    res = subprocess.run([exe, "train", "--help"], check=False, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--resume" in res.stdout


def _check_run_dir(out, method, epochs):
    for f in ("config.json", "metrics.csv", "checkpoint.pt", "model.npz", "summary.json"):
        assert (out / f).is_file(), f
    with (out / "metrics.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == HISTORY_KEYS
        rows = list(reader)
    assert [float(r["epoch"]) for r in rows] == [float(e) for e in range(1, epochs + 1)]
    assert all(r["method"] == method for r in rows)
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert cfg["method"] == method and cfg["sizes"] == [20, 8, 10]
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["meta"]["epoch"] == epochs and ck["meta"]["method"] == method
    # the saved model reproduces the last row's test accuracy
    _, arrays = runs.load_data(runs.RunConfig.from_dict(cfg))
    net = LiftedNetwork.load(out / "model.npz")
    assert net.accuracy(arrays["X_test"], arrays["y_test"]) == pytest.approx(float(rows[-1]["test_acc"]))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == epochs and summary["final"]["test_acc"] == pytest.approx(float(rows[-1]["test_acc"]))
    return rows


def test_two_epoch_fenchel_run_with_adam_comparison(tmp_path, capsys):
    rc, out = _train(tmp_path, "run", "--epochs", "2")
    assert rc == 0
    rows = _check_run_dir(out, "fenchel", 2)
    assert all(math.isfinite(float(r["J"])) and float(r["penalty"]) >= 0 for r in rows)
    _check_run_dir(out / "compare-adam", "adam", 2)
    text = capsys.readouterr().out
    assert "fenchel" in text and "adam" in text and "test acc" in text


def test_two_epoch_adam_run(tmp_path):
    rc, out = _train(tmp_path, "adam", "--method", "adam", "--epochs", "2")
    assert rc == 0
    _check_run_dir(out, "adam", 2)
    assert not (out / "compare-adam").exists()


def _weights(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].copy() for k in z.files if k != "meta"}


def _rows_wo_time(out):
    return [{k: v for k, v in r.items() if k != "time"} for r in runs.read_metrics(out)]


@pytest.mark.parametrize("method,trainer", [("adam", Backprop), ("fenchel", BCD)])
def test_killed_run_resumes_bitwise(tmp_path, monkeypatch, capsys, method, trainer):
    """Kill during epoch 2 of 3 (after epoch 1's checkpoint), resume with --resume: same weights as no kill."""
    args = ["--method", method, "--epochs", "3", "--compare", "none"]
    rc, ref = _train(tmp_path, "ref", *args)
    assert rc == 0
    real_step, calls = trainer.step, {"n": 0}

    def dying_step(self, state, X0, Y):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, second batch: the epoch-1 checkpoint exists, epoch 2 is half done
            raise KeyboardInterrupt
        return real_step(self, state, X0, Y)
    monkeypatch.setattr(trainer, "step", dying_step)
    rc, out = _train(tmp_path, "killed", *args)
    assert rc == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint.pt")["meta"]["epoch"] == 1
    monkeypatch.setattr(trainer, "step", real_step)
    rc = cli.main(["train", "--out", str(out), "--resume", "--no-progress"])
    assert rc == 0
    a, b = _weights(ref / "model.npz"), _weights(out / "model.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ra, rb = _rows_wo_time(ref), _rows_wo_time(out)
    assert len(ra) == len(rb) == 3
    for x, y in zip(ra, rb):
        assert x.keys() == y.keys()
        assert all(x[k] == y[k] or (isinstance(x[k], float) and math.isnan(x[k]) and math.isnan(y[k])) for k in x)


def test_resume_extends_epochs_and_guards_settings(tmp_path, capsys):
    rc, out = _train(tmp_path, "run", "--method", "adam", "--epochs", "1")
    assert rc == 0
    rc, ref = _train(tmp_path, "ref", "--method", "adam", "--epochs", "2")
    assert rc == 0
    rc = cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])
    assert rc == 0
    a, b = _weights(ref / "model.npz"), _weights(out / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    rc = cli.main(["train", "--out", str(out), "--resume", "--seed", "7", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "seed" in err and "Traceback" not in err
    rc = cli.main(["train", *TINY, "--method", "adam", "--out", str(out)])  # no --resume on a used directory
    err = capsys.readouterr().err
    assert rc == 2 and "--resume" in err
    rc = cli.main(["train", "--out", str(tmp_path / "nothing"), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "nothing to resume" in err


def test_plot_writes_a_png(tmp_path, capsys):
    for method in ("adam", "sgd"):
        rc, _ = _train(tmp_path / "runs", method, "--method", method, "--epochs", "2")
        assert rc == 0
    png = tmp_path / "fig.png"
    assert cli.main(["plot", str(tmp_path / "runs" / "adam"), str(tmp_path / "runs" / "sgd"), "-o", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    assert "adam" in capsys.readouterr().out
    # a folder of run directories works too, and so does another metric
    png2 = tmp_path / "loss.png"
    assert cli.main(["plot", str(tmp_path / "runs"), "--metric", "train_loss", "-o", str(png2)]) == 0
    assert png2.is_file()
    assert set(runs.collect_runs([tmp_path / "runs"])) == {"adam", "sgd"}
    assert len(runs.collect_runs([tmp_path / "runs" / "adam"] * 2)) == 2  # repeated labels never drop a run
    rc = cli.main(["plot", str(tmp_path / "missing")])
    assert rc == 2 and "not a directory" in capsys.readouterr().err
    # a zoomed y range, and clear errors for a bad one
    png3 = tmp_path / "zoom.png"
    assert cli.main(["plot", str(tmp_path / "runs"), "--ylim", "0.1,0.9", "-o", str(png3)]) == 0
    assert png3.is_file()
    for bad in ("0.5", "0.9,0.1", "0.1,0.5,0.9"):
        rc = cli.main(["plot", str(tmp_path / "runs"), "--ylim", bad, "-o", str(png3)])
        assert rc == 2 and "ylim" in capsys.readouterr().err


def test_runs_that_share_a_method_are_labelled_by_the_settings_they_differ_in(tmp_path):
    for name, extra in (("a", ("--gamma", "1,100")), ("b", ("--gamma", "1,10", "--inexact-iters", "3"))):
        rc, _ = _train(tmp_path / "runs", name, "--epochs", "1", "--compare", "none", *extra)
        assert rc == 0
    labels = set(runs.collect_runs([tmp_path / "runs"]))
    assert labels == {"fenchel (inexact), gamma 1,100, inexact_iters 1",
                      "fenchel (inexact), gamma 1,10, inexact_iters 3"}, labels
    # the same settings twice: the folders tell them apart
    twice = set(runs.collect_runs([tmp_path / "runs" / "a", tmp_path / "runs" / "a"]))
    assert len(twice) == 2 and all("runs/a" in lb for lb in twice), twice


def test_running_curvature_from_the_command_line(tmp_path, capsys):
    rc, out = _train(tmp_path, "fast", "--epochs", "1", "--compare", "none", "--curvature", "running",
                     "--curvature-every", "2", "--curvature-rank", "5", "--inexact-x-iters", "5")
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert (cfg["curvature"], cfg["curvature_every"], cfg["curvature_rank"], cfg["inexact_x_iters"]) == \
        ("running", 2, 5, 5)
    ck = load_checkpoint(out / "checkpoint.pt")
    assert [c["calls"] for c in ck["state"]["curvature"]] == [2, 2]  # 120 samples in batches of 60, one epoch
    rows = runs.read_metrics(out)
    assert math.isfinite(float(rows[-1]["J"])) and math.isnan(float(rows[-1]["max_residual"]))
    rc, out = _train(tmp_path, "safe", "--epochs", "1", "--compare", "none", "--curvature", "running",
                     "--curvature-line-search", "--inexact-x-iters", "5")
    assert rc == 0 and json.loads((out / "config.json").read_text())["config"]["curvature_line_search"] is True
    rc = cli.main(["train", *TINY, "--curvature", "running", "--exact", "--out", str(tmp_path / "bad")])
    assert rc == 2 and "curvature" in capsys.readouterr().err


def test_missing_data_gives_a_clear_message(tmp_path, capsys):
    rc = cli.main(["train", "--dataset", "mnist", "--data-dir", str(tmp_path / "nowhere"), "--no-progress",
                   "--out", str(tmp_path / "r1")])
    err = capsys.readouterr().err
    assert rc == 2 and "nowhere" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = cli.main(["train", "--dataset", "mnist", "--data-dir", str(empty), "--no-progress",
                   "--out", str(tmp_path / "r2")])
    err = capsys.readouterr().err
    assert rc == 2 and "train-images-idx3-ubyte" in err and "Traceback" not in err
    rc = cli.main(["train", "--dataset", "mnist", "--no-progress", "--out", str(tmp_path / "r3")])
    assert rc == 2 and "--data-dir" in capsys.readouterr().err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def test_bad_options_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--batch-size", "-3"])
    assert exc.value.code == 2
    rc = cli.main(["train", *TINY, "--arch", "784-300-10", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "20-300-10" in err
    rc = cli.main(["train", *TINY, "--gamma", "1,2,3", "--out", str(tmp_path / "y")])
    assert rc == 2 and "gamma" in capsys.readouterr().err


def test_config_defaults_follow_appendix_c():
    batched = runs.RunConfig().resolved(784, 10)
    assert batched.sizes == [784, 300, 10] and batched.batch_size == 500 and batched.K == 1
    assert batched.lam == [0.1] and batched.rho == [0.0, 0.0] and batched.gamma == [1.0, 100.0]
    assert batched.inexact is True and batched.inexact_iters == 1
    full = runs.RunConfig(batch_size=None).resolved(784, 10)
    assert full.rho == [1e-2, 10.0] and full.gamma == [0.0, 0.0] and full.inexact is False
    assert runs.RunConfig(inexact=False).resolved(784, 10).inexact is False
    deep = runs.RunConfig(sizes=[784, 50, 40, 10], lam=0.5).resolved(784, 10)
    assert deep.lam == [0.5, 0.5] and deep.gamma == [1.0, 1.0, 100.0]
