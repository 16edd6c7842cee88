"""The benchmark scripts' command lines refuse bad options with one line naming the option (exit status 2): a bad
value is neither a traceback nor silently replaced (an audit found wrong scaled times from ``--fraction 2``)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import BENCHMARKS, load_benchmark


def test_bench_training_names_an_out_below_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(SystemExit) as exc:
        load_benchmark("bench_training").main(["--out", str(tmp_path / "afile" / "sub")])
    assert exc.value.code == 2 and "--out: cannot make the folder" in capsys.readouterr().err


@pytest.mark.parametrize("script,argv,message", [
    ("bench_subproblems", ["--sizes", "5x8", "--fraction", "2", "--no-cvxpy"], "--fraction: expected one value or 1"),
    ("bench_subproblems", ["--sizes", "5x8", "4x6", "6x8", "--fraction", "1", "0.5"], "--fraction: expected"),
    ("bench_subproblems", ["--sizes", "0x8"], "expected positive sizes PxM"),
    ("bench_subproblems", ["--repeats", "0"], "--repeats: expected a positive integer"),
    ("bench_subproblems", ["--threads", "-1"], "--threads: expected a positive integer"),
    ("tune_batched", ["--grid", "[1]"], "--grid: expected a non-empty JSON list"),
    ("tune_batched", ["--grid", '[{"lam": 0.1,}]'], "--grid: expected a JSON list"),
    ("tune_batched", ["--threads", "0"], "--threads: expected a positive integer"),
    ("bench_training", ["--full-epochs", "0"], "--full-epochs: expected a positive integer"),
    ("bench_lenet", ["--parts", "firts"], "--parts: expected first, full or first,full"),
    ("bench_training", ["--parts", "xyz"], "--parts: expected letters of a, b, c"),
    ("bench_fig1", ["--quick", "--dataset", "mnist", "--data-dir", "DIR"], "--quick runs on the shipped MNIST"),
    ("layer_motion", ["--probe", "--set", "[1]"], "--set: expected a JSON dict"),
    ("layer_motion", ["--probe", "--warm", "-1"], "--batches, --warm: expected at least 1 and 0"),
])
def test_bad_options_are_one_line_errors(script, argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        load_benchmark(script).main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_library_errors_print_one_line_not_a_traceback():
    res = subprocess.run([sys.executable, str(BENCHMARKS / "bench_lenet.py"), "--dataset", "cifar10", "--data-dir",
                          str(BENCHMARKS / "no_such_folder")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bench_lenet.py: error: data_dir: expected an existing folder"), \
        res.stderr


def test_bench_cvx_reports_failed_solves_in_its_exit_status(monkeypatch, capsys):
    """A size whose solves fail prints 'failed' rows and exits 1 (it exited 0, as if every row held a time)."""
    from fenchel_cvx.errors import SolverError
    bench = load_benchmark("bench_cvx")

    def fails(solver, fraction, polish):
        raise SolverError(f"{solver} gave up", status="solver_error", solver=solver)
    monkeypatch.setattr(bench, "cases", lambda d, exp: [("x_hidden", "relu/relu", fails, ["CLARABEL", "OSQP"])])
    assert bench.main(["--sizes", "4x6"]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("failed: CLARABEL gave up") == 1 and "failed: OSQP gave up" in captured.out
    assert "2 of 2 solves failed" in captured.err
    monkeypatch.setattr(bench, "cases", lambda d, exp: [
        ("x_hidden", "relu/relu", lambda s, f, po: bench.cvx.x_hidden(
            d["W1"], d["b1"], d["X2"], d["U0"], act="relu", act_prev="relu", lam=1.0, lam_prev=1.0, solver=s),
         ["CLARABEL"])])
    assert bench.main(["--sizes", "4x6"]) == 0
