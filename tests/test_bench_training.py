"""Smoke tests of the Fig. 2 benchmarks: issue 15's over-relaxed run and the descent count with its settings."""

import json

import pytest
from conftest import load_benchmark

from fenchel_cvx import settings as S


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_training")


def test_over_relaxed_run_has_its_settings_and_a_ratio(bench, tmp_path):
    out = tmp_path / "out"
    rc = bench.main(["--n-train", "1000", "--n-test", "300", "--epochs", "1", "--runs",
                     "fenchel-fast-r2,fenchel-fast-r175,fenchel-fast-r175-x15,adam", "--parts", "ac", "--threads",
                     "1", "--out", str(out), "--no-progress"])
    assert rc == 0
    table = (out / "results.md").read_text().splitlines()
    for name, relax, x_iters, x32 in (("fenchel-fast-r2", 2.0, 10, None), ("fenchel-fast-r175", 1.75, 10, None),
                                      ("fenchel-fast-r175-x15", 1.75, 15, True)):
        fenchel = json.loads((out / "a" / name / "config.json").read_text())["config"]["fenchel"]
        assert (fenchel["curvature"], fenchel["curvature_relax"], fenchel["gamma"]) == ("running", relax, [0.1, 100.0])
        assert (fenchel["inexact_x_iters"], fenchel["inexact_x_float32"]) == (x_iters, x32)
        cells = next(line for line in table if line.startswith(f"| {name} |")).split("|")
        assert 0.0 < float(cells[2]) <= 1.0 and float(cells[4]) > 0  # test accuracy; ratio to Adam of the same run


def test_descent_count_takes_gamma_and_relax(capsys):
    inexact = load_benchmark("bench_inexact")
    assert inexact.main(["--epochs", "0", "--descent", "3", "--relax", "2", "--gamma", "0.1", "100"]) == 0
    out = capsys.readouterr().out
    assert "relax 2, gamma 0.1, 100)" in out
    counts = {line.split("|")[1].strip(): int(line.split("|")[2]) for line in out.splitlines()
              if line.startswith("| w_")}
    assert counts == {"w_last": 3, "w_hidden": 3}


def test_interleaved_runs_train_exactly_as_runs_one_after_the_other(bench, tmp_path):
    """``--interleave`` resumes each run epoch by epoch: the same history, bit for bit, and the default run is the
    fast mode (no mode flag in its config, the fast values in its resolved settings)."""
    args = ["--n-train", "600", "--n-test", "200", "--epochs", "2", "--runs", "fenchel-default,adam", "--parts", "ac",
            "--threads", "1", "--no-progress"]
    assert bench.main([*args, "--out", str(tmp_path / "seq")]) == 0
    assert bench.main([*args, "--interleave", "--out", str(tmp_path / "int")]) == 0
    for name in ("fenchel-default", "adam"):
        rows = [(tmp_path / d / "a" / name / "metrics.csv").read_text().splitlines() for d in ("seq", "int")]
        head = rows[0][0].split(",")
        keep = [i for i, k in enumerate(head) if k != "time"]
        seq, inter = ([[line.split(",")[i] for i in keep] for line in r] for r in rows)
        assert seq == inter and len(seq) == 3, name  # header and two epochs
    saved = json.loads((tmp_path / "int" / "a" / "fenchel-default" / "config.json").read_text())
    assert saved["config"]["fenchel"]["curvature"] is None
    fenchel = saved["resolved"]
    assert (fenchel["curvature"], fenchel["curvature_relax"], fenchel["inexact_x_iters"]) == ("running", [2.0, 2.0], 15)
    assert fenchel["gamma"] == [0.1, 100.0]
    # the mode follows from the settings and the network: left out of the resume identity, so run directories
    # written before the fast default existed still resume
    assert not set(S.MODE_FLAGS) & set(saved["identity"]["settings"]["resolved"])
