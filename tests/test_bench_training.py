"""Smoke tests of the Fig. 2 benchmarks: issue 15's over-relaxed run and the descent count with its settings."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("bench_training")


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
    inexact = _load("bench_inexact")
    assert inexact.main(["--epochs", "0", "--descent", "3", "--relax", "2", "--gamma", "0.1", "100"]) == 0
    out = capsys.readouterr().out
    assert "relax 2, gamma 0.1, 100)" in out
    counts = {line.split("|")[1].strip(): int(line.split("|")[2]) for line in out.splitlines()
              if line.startswith("| w_")}
    assert counts == {"w_last": 3, "w_hidden": 3}
