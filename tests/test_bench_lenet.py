"""Smoke test of the Figs. 3-4 benchmark: a tuned run takes its data set's gamma; the table, accuracy and ratio."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_lenet.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_lenet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tuned_runs_use_the_datasets_tuned_gamma(bench, tmp_path):
    out = tmp_path / "out"
    rc = bench.main(["--dataset", "mnist-small", "--n-train", "500", "--n-test", "200", "--epochs", "1",
                     "--runs", "fenchel-fast-tuned,adam", "--parts", "full", "--threads", "1", "--out", str(out),
                     "--no-progress"])
    assert rc == 0
    config = json.loads((out / "full" / "fenchel-fast-tuned" / "config.json").read_text())["config"]
    assert config["fenchel"]["gamma"] == list(bench.TUNED_GAMMA["mnist"])
    assert config["fenchel"]["curvature"] == "running"
    table = (out / "results.md").read_text()
    cells = next(line for line in table.splitlines() if line.startswith("| fenchel-fast-tuned |")).split("|")
    assert 0.0 < float(cells[2]) <= 1.0 and float(cells[5]) > 0  # test accuracy, ratio to Adam of the same run
    assert len(bench.TUNED_GAMMA["mnist"]) == len(bench.TUNED_GAMMA["cifar10"]) == 5
