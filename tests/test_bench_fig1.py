"""Smoke test of the Fig. 1 benchmark: every model trains full batch in one harness and lands in one table."""

import json

from conftest import load_benchmark


def test_fig1_runs_every_model_and_tabulates_equal_iterations_and_equal_time(tmp_path):
    bench = load_benchmark("bench_fig1")
    out = tmp_path / "fig1"
    rc = bench.main(["--quick", "--n-train", "300", "--n-test", "100", "--iters", "2", "--threads", "1",
                     "--sgd-batch", "100", "--out", str(out), "--no-progress"])
    assert rc == 0
    table = (out / "results.md").read_text()
    for method in bench.METHODS:
        config = json.loads((out / method / "config.json").read_text())["config"]
        assert config["method"] == method and config["network"]["loss"] == "mse"
        assert config["train"]["batch_size"] == (100 if method == "sgd" else None)
        cells = next(line for line in table.splitlines() if line.startswith(f"| {method} |")).split("|")
        assert 0.0 < float(cells[2]) <= 1.0 and float(cells[3]) == bench.PAPER[method] and float(cells[4]) > 0
    assert bench.accuracy_at([{"epoch": 1.0, "test_acc": 0.5}, {"epoch": 2.0, "test_acc": 0.7}], "epoch", 1.5) == 0.5
