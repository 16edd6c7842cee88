"""The ``fenchel-cvx`` command line: help, run directories, kill-and-resume, plots, clear errors.

Runs ``main(argv)`` in-process on tiny synthetic data (one subprocess checks the installed console script).
Runtime: ~30 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fenchel_cvx import cli, runs
from fenchel_cvx.baselines import Backprop
from fenchel_cvx.bcd import BCD, HISTORY_KEYS
from fenchel_cvx.checkpoint import load_checkpoint
from fenchel_cvx.errors import CheckpointError
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.settings import FAST_MODE, MM_MODE, BackpropSettings, BCDSettings, RunConfig, fields_of

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
                    "--epochs", "--lam", "--rho", "--gamma", "--K", "--inexact", "--exact", "--device", "--dtype",
                    "--seed",
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
    saved = json.loads((out / "config.json").read_text())
    cfg = saved["config"]
    assert cfg["method"] == method and saved["resolved"]["sizes"] == [20, 8, 10]
    ck = load_checkpoint(out / "checkpoint.pt")
    assert ck["meta"]["epoch"] == epochs and ck["meta"]["method"] == method
    # the saved model reproduces the last row's test accuracy
    _, arrays = runs.load_data(RunConfig.from_dict(cfg))
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
    real_step, calls = trainer._checked_step, {"n": 0}

    def dying_step(self, state, X0, Y):
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, second batch: the epoch-1 checkpoint exists, epoch 2 is half done
            raise KeyboardInterrupt
        return real_step(self, state, X0, Y)
    monkeypatch.setattr(trainer, "_checked_step", dying_step)
    rc, out = _train(tmp_path, "killed", *args)
    assert rc == 130
    assert "--resume" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoint.pt")["meta"]["epoch"] == 1
    monkeypatch.setattr(trainer, "_checked_step", real_step)
    rc = cli.main(["train", "--out", str(out), "--resume", "--no-progress"])
    assert rc == 0
    a, b = _weights(ref / "model.npz"), _weights(out / "model.npz")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    ra, rb = _rows_wo_time(ref), _rows_wo_time(out)
    assert len(ra) == len(rb) == 3
    for x, y in zip(ra, rb, strict=True):
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
    assert set(runs.collect_runs([tmp_path / "runs"])) == {"adam, lr 0.001", "sgd, lr 0.01"}  # rates differ
    shutil.copytree(tmp_path / "runs" / "adam", tmp_path / "copy" / "adam")  # the same run in two places
    assert len(runs.collect_runs([tmp_path / "runs" / "adam", tmp_path / "copy" / "adam"])) == 2  # both drawn
    rc = cli.main(["plot", str(tmp_path / "missing")])
    assert rc == 2 and "not a directory" in capsys.readouterr().err
    # a zoomed y range, and clear errors for a bad one
    png3 = tmp_path / "zoom.png"
    assert cli.main(["plot", str(tmp_path / "runs"), "--ylim", "0.1,0.9", "-o", str(png3)]) == 0
    assert png3.is_file()
    png4 = tmp_path / "negative.png"  # a range below zero needs no '=' (argparse alone reads -1,... as an option)
    argv = ["plot", str(tmp_path / "runs"), "--metric", "train_loss", "--ylim", "-1,-0.5", "-o", str(png4)]
    assert cli.main(argv) == 0
    assert png4.is_file()
    for bad in ("0.5", "0.9,0.1", "0.1,0.5,0.9"):
        rc = cli.main(["plot", str(tmp_path / "runs"), "--ylim", bad, "-o", str(png3)])
        assert rc == 2 and "ylim" in capsys.readouterr().err


def test_runs_that_share_a_method_are_labelled_by_the_settings_they_differ_in(tmp_path):
    for name, extra in (("a", ("--gamma", "1,100")), ("b", ("--gamma", "1,10", "--inexact-iters", "3"))):
        rc, _ = _train(tmp_path / "runs", name, "--epochs", "1", "--compare", "none", *extra)
        assert rc == 0
    labels = set(runs.collect_runs([tmp_path / "runs"]))
    assert labels == {"fenchel, gamma 1,100, inexact_iters default", "fenchel, gamma 1,10, inexact_iters 3"}, labels
    # the same settings twice: the folders tell them apart
    shutil.copytree(tmp_path / "runs" / "a", tmp_path / "again" / "a")
    twice = set(runs.collect_runs([tmp_path / "runs" / "a", tmp_path / "again" / "a"]))
    assert twice == {"fenchel: runs/a", "fenchel: again/a"}, twice


def test_every_label_names_the_loop_settings_any_two_runs_differ_in(tmp_path):
    """A setting every trainer reads (here lr_decay, and the step size) labels every run once two runs differ in
    it, a lone run of its method included; one the runs share labels none."""
    for name, extra in (("f", ("--curvature", "adam", "--inexact-x-iters", "2", "--lr-decay", "0.9",
                               "--compare", "none")),
                        ("a", ("--method", "adam", "--lr", "0.005", "--lr-decay", "0.9")),
                        ("p", ("--method", "adam"))):
        rc, _ = _train(tmp_path / "runs", name, "--epochs", "1", *extra)
        assert rc == 0
    labels = set(runs.collect_runs([tmp_path / "runs"]))
    assert labels == {"fenchel, lr 0.001, lr_decay 0.9", "adam, lr 0.005, lr_decay 0.9", "adam, lr 0.001, lr_decay 1"
                      }, labels
    # the step size is one setting across trainers (backprop's lr, the Adam W-steps' adam_lr), defaults resolved
    labels = set(runs.collect_runs([tmp_path / "runs" / "f", tmp_path / "runs" / "p"]))
    assert labels == {"fenchel, lr_decay 0.9", "adam, lr_decay 1"}, labels
    labels = set(runs.collect_runs([tmp_path / "runs" / "f", tmp_path / "runs" / "a"]))
    assert labels == {"fenchel, lr 0.001", "adam, lr 0.005"}, labels


def test_running_curvature_from_the_command_line(tmp_path, capsys):
    rc, out = _train(tmp_path, "fast", "--epochs", "1", "--compare", "none", "--curvature", "running",
                     "--curvature-every", "2", "--curvature-rank", "5", "--inexact-x-iters", "5")
    assert rc == 0
    cfg = json.loads((out / "config.json").read_text())["config"]["fenchel"]
    assert (cfg["curvature"], cfg["curvature_every"], cfg["curvature_rank"], cfg["inexact_x_iters"]) == \
        ("running", 2, 5, 5)
    ck = load_checkpoint(out / "checkpoint.pt")
    assert [c["calls"] for c in ck["state"]["curvature"]] == [2, 2]  # 120 samples in batches of 60, one epoch
    rows = runs.read_metrics(out)
    assert math.isfinite(float(rows[-1]["J"])) and math.isnan(float(rows[-1]["max_residual"]))
    rc, out = _train(tmp_path, "safe", "--epochs", "1", "--compare", "none", "--curvature", "running",
                     "--curvature-line-search", "--inexact-x-iters", "5")
    assert rc == 0 and json.loads((out / "config.json").read_text())["config"]["fenchel"]["curvature_line_search"]
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
    assert rc == 2 and "train-images-idx3-ubyte" in err and "--data-dir: " in err and "Traceback" not in err
    rc = cli.main(["train", "--dataset", "cifar10", "--data-dir", str(empty), "--no-progress",
                   "--out", str(tmp_path / "r4")])
    err = capsys.readouterr().err
    assert rc == 2 and "--data-dir: CIFAR-10 not found" in err and "Traceback" not in err
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


def test_config_defaults_are_the_fast_mode_batched_and_appendix_c_otherwise():
    net = LiftedNetwork([784, 300, 10], "relu", "ce", seed=0)
    batched = BCD(net, RunConfig().bcd_settings())
    assert batched.settings.batch_size == 500 and batched.settings.K == 1
    assert batched.resolved() == {"lam": [0.1], "rho": [0.0, 0.0], "gamma": [0.1, 100.0], "inexact": True,
                                  **FAST_MODE, "curvature_relax": [FAST_MODE["curvature_relax"]] * 2}
    # one mode flag: Appendix C's MM mode and proximal weights for everything left unset
    mm = BCD(net, RunConfig().with_values({"fenchel.curvature": "batch"}).bcd_settings())
    per_layer = {"curvature_relax": [MM_MODE["curvature_relax"]] * 2}
    assert mm.resolved() == {"lam": [0.1], "rho": [0.0, 0.0], "gamma": [1.0, 100.0], "inexact": True, **MM_MODE,
                             **per_layer}
    full = BCD(net, RunConfig().with_values({"train.batch_size": None}).bcd_settings())
    assert full.resolved() == {"lam": [0.1], "rho": [1e-2, 10.0], "gamma": [0.0, 0.0], "inexact": False,
                               **MM_MODE, **per_layer}
    assert BCD(net, BCDSettings(inexact=False)).resolved()["inexact"] is False
    deep = BCD(LiftedNetwork([784, 50, 40, 10], "relu", "ce"), BCDSettings(lam=0.5)).resolved()
    assert deep["lam"] == [0.5, 0.5] and deep["gamma"] == [0.1, 0.1, 100.0]  # hidden layers the first value
    deep_mm = BCD(LiftedNetwork([784, 50, 40, 10], "relu", "ce"), BCDSettings(inexact_iters=1)).resolved()
    assert deep_mm["gamma"] == [1.0, 1.0, 100.0]


# -- one definition per setting: flags, defaults and resume rules all come from fenchel_cvx.settings ----------------
def _train_actions():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    return [a for a in sub._actions if a.option_strings and a.dest != "help"]


def test_every_setting_has_exactly_one_flag_and_every_flag_a_setting():
    fields = [path for path, _, _ in fields_of(RunConfig)]
    by_dest: dict[str, list[str]] = {}
    for action in _train_actions():
        by_dest.setdefault(action.dest, []).extend(action.option_strings)
    settings_dests = {d for d in by_dest if d in fields}
    assert settings_dests == set(fields), set(fields) ^ settings_dests
    for path in fields:
        flags = by_dest[path]
        # a boolean has its on and off spelling; everything else exactly one flag
        assert len(flags) == (2 if fields_spec(path).kind == "bool" else 1), (path, flags)
    actions = {f for d, fl in by_dest.items() if d not in fields for f in fl}
    assert actions == set(cli.ACTIONS), actions ^ set(cli.ACTIONS)
    assert len(set(cli.FLAGS.values())) == len(cli.FLAGS)  # no two settings share a flag


def fields_spec(path):
    return next(spec for p, _, spec in fields_of(RunConfig) if p == path)


def test_cli_defaults_are_the_api_defaults():
    """With no flags the command line builds RunConfig(), and that is the API's BCDSettings() / BackpropSettings()."""
    args = cli.build_parser().parse_args(["train"])
    assert cli.settings_given(args) == {}
    cfg = RunConfig().with_values(cli.settings_given(args))
    assert cfg == RunConfig()
    assert cfg.bcd_settings() == BCDSettings()
    assert cfg.backprop_settings("adam") == BackpropSettings()
    # and each generated --help line quotes the field's own default
    helps = {a.dest: a.help for a in _train_actions()}
    assert "(default: 500)" in helps["train.batch_size"]
    assert "(default: Appendix C: 0.1; LeNet-5 5,5,1,1)" in helps["fenchel.lam"]


def test_flags_parse_to_the_settings_values():
    args = cli.build_parser().parse_args(["train", "--batch-size", "full", "--gamma", "1,10", "--arch", "20-8-10",
                                          "--exact", "--curvature-rank", "full", "--solver-options",
                                          '{"solver": "CLARABEL"}', "--no-shuffle", "--curvature-relax", "1,2"])
    got = cli.settings_given(args)
    assert got == {"train.batch_size": None, "fenchel.gamma": (1.0, 10.0), "network.arch": (20, 8, 10),
                   "fenchel.inexact": False, "fenchel.curvature_rank": None,
                   "fenchel.solver_options": {"solver": "CLARABEL"}, "train.shuffle": False,
                   "fenchel.curvature_relax": (1.0, 2.0)}


@pytest.mark.parametrize("argv,needle", [
    (["--lam", "0"], "--lam"), (["--curvature-relax", "inf"], "--curvature-relax"), (["--arch", "5"], "--arch"),
    (["--solver-options", "{oops"], "--solver-options"),
])
def test_bad_values_are_refused_in_the_flags_words(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", *argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and needle in err and "Traceback" not in err, err


def test_settings_errors_speak_the_command_line(tmp_path, capsys):
    rc = cli.main(["train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])  # mnist-small reads no files
    err = capsys.readouterr().err
    assert rc == 2 and "--data-dir" in err and "data_dir" not in err, err
    rc = cli.main(["train", *TINY, "--curvature", "running", "--exact", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and "--curvature" in err and "--inexact" in err and "inexact=True" not in err, err
    rc = cli.main(["train", *TINY, "--device", "quantum", "--out", str(tmp_path / "q")])
    err = capsys.readouterr().err
    assert rc == 2 and "--device" in err and "device=" not in err, err


def test_resuming_a_finished_run_says_so(tmp_path, capsys):
    rc, out = _train(tmp_path, "done", "--method", "adam", "--epochs", "1")
    assert rc == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "nothing left to do" in text and "--epochs" in text


def test_run_files_are_readable_by_others(tmp_path):
    rc, out = _train(tmp_path, "modes", "--method", "adam", "--epochs", "1")
    assert rc == 0
    for f in ("config.json", "metrics.csv", "checkpoint.pt", "model.npz", "summary.json"):
        assert (out / f).stat().st_mode & 0o044 == 0o044, f


def test_default_run_names_tell_runs_apart():
    a = runs.default_run_name(RunConfig())
    b = runs.default_run_name(RunConfig().with_values({"fenchel.curvature": "running", "fenchel.curvature_relax": 1.5}))
    c = runs.default_run_name(RunConfig().with_values({"fenchel.gamma": (1.0, 10.0)}))
    stems = {Path(n).name.rsplit("-", 2)[0] for n in (a, b, c)}
    assert len(stems) == 3, stems
    assert "running" in b and "1.5" in b and "1,10" in c


def test_help_imports_neither_torch_nor_cvxpy():
    code = ("import sys\nfrom fenchel_cvx import cli\ntry:\n    cli.main(['train', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'cvxpy') if m in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120)
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout[-300:]


def test_resume_continues_the_comparisons_it_holds_and_no_others(tmp_path):
    """``--resume`` without ``--compare`` extends the compare-* runs the directory holds and starts none."""
    rc, out = _train(tmp_path, "with", "--epochs", "1")
    assert rc == 0 and (out / "compare-adam").is_dir()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    _check_run_dir(out, "fenchel", 2)
    _check_run_dir(out / "compare-adam", "adam", 2)

    rc, bare = _train(tmp_path, "bare", "--epochs", "1", "--compare", "none")
    assert rc == 0
    assert cli.main(["train", "--out", str(bare), "--resume", "--epochs", "2", "--no-progress"]) == 0
    _check_run_dir(bare, "fenchel", 2)
    assert not any(bare.glob("compare-*"))


def test_another_trainers_settings_are_named_as_unused(tmp_path, capsys):
    """``--method adam --lam 5`` trains Adam and says that ``--lam`` (a Fenchel option) was not used; the same
    option beside a Fenchel run, or ``--lr`` beside its Adam comparison, is read and draws no warning."""
    rc, _ = _train(tmp_path, "a", "--method", "adam", "--epochs", "1", "--lam", "5", "--K", "2")
    err = capsys.readouterr().err
    assert rc == 0 and "warning: --lam, --K set but not used" in err and "trains adam" in err, err
    rc, _ = _train(tmp_path, "f", "--epochs", "1", "--compare", "none", "--lr", "0.1")
    err = capsys.readouterr().err
    assert rc == 0 and "warning: --lr set but not used" in err and "trains fenchel" in err, err
    rc, _ = _train(tmp_path, "fa", "--epochs", "1", "--lr", "0.1", "--lam", "2")
    err = capsys.readouterr().err
    assert rc == 0 and "warning" not in err, err


def test_resume_refuses_other_data_under_the_same_name(tmp_path):
    """The data's digest is kept in the checkpoint: another folder's images under the same dataset name and sizes
    (a changed --data-dir) are refused, the same data are not."""
    rc, out = _train(tmp_path, "run", "--method", "adam", "--epochs", "1")
    assert rc == 0
    cfg = runs._saved_config(out)
    ds, arrays = runs.load_data(cfg)
    runs.train_run(None, out, resume=True, overrides={"train.epochs": 2}, progress=False, data=(ds, arrays))
    other = dict(arrays, X=arrays["X"][::-1].copy())  # the same images in another order: other data per index
    with pytest.raises(CheckpointError, match="the data differ from the data"):
        runs.train_run(None, out, resume=True, overrides={"train.epochs": 3}, progress=False, data=(ds, other))


def test_resume_with_fewer_epochs_keeps_the_runs_length(tmp_path, capsys):
    """``--resume --epochs 1`` on a 2-epoch run trains nothing and leaves config.json at 2 epochs (it was
    rewritten to 1, and every later resume said '2 of 1 epochs')."""
    rc, out = _train(tmp_path, "run", "--method", "adam", "--epochs", "2")
    assert rc == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "1", "--no-progress"]) == 0
    assert "already trained 2 of 2 epochs" in capsys.readouterr().out
    assert runs._saved_config(out).train.epochs == 2


def test_resume_of_a_fenchel_run_without_comparisons_says_so(tmp_path, capsys):
    rc, out = _train(tmp_path, "bare", "--epochs", "1", "--compare", "none")
    assert rc == 0
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"]) == 0
    assert "holds no comparison run" in capsys.readouterr().err
    assert not any(out.glob("compare-*"))


def test_resume_accepts_values_that_make_the_same_run(tmp_path, capsys):
    """``--rho 0`` and ``--lam 0.1`` on a run trained with the defaults (which resolve to exactly those) resume it
    bitwise, as given nothing; ``--lam 0.2`` is refused. (Both were refused as "other settings".)"""
    rc, out = _train(tmp_path, "run", "--epochs", "1", "--compare", "none")
    assert rc == 0
    rc, ref = _train(tmp_path, "ref", "--epochs", "2", "--compare", "none")
    assert rc == 0
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "2", "--rho", "0", "--lam", "0.1",
                     "--no-progress"]) == 0
    a, b = _weights(ref / "model.npz"), _weights(out / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert runs._saved_config(out).train.rho is None  # left as saved
    capsys.readouterr()
    assert cli.main(["train", "--out", str(out), "--resume", "--epochs", "3", "--lam", "0.2", "--no-progress"]) == 2
    assert "fenchel.lam: saved default vs now 0.2" in capsys.readouterr().err


def test_a_run_named_twice_is_plotted_once(tmp_path):
    rc, out = _train(tmp_path, "run", "--method", "adam", "--epochs", "1")
    assert rc == 0
    runs_ = runs.collect_runs([out, out, tmp_path])  # by name twice, and through its parent folder
    assert len(runs_) == 1 and list(runs_) == ["adam"]
