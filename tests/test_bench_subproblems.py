"""Smoke test of the subproblem benchmark (issue 15's table): one row per subproblem, the faces agree, and the
torch solves run on the device ``--device`` names (the CPU here; CUDA where there is one)."""

import time

import pytest
import torch
from conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("bench_subproblems")


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.startswith(("x_hidden", "x_last", "w_hidden", "w_last"))]


def test_table_has_every_subproblem_and_the_faces_agree(bench, capsys):
    assert bench.main(["--sizes", "12x30", "--fraction", "1", "--lbfgs-cap", "20", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert [r[0] + " " + r[1] for r in rows] == ["x_hidden relu/relu", "x_hidden relu/relu:f32", "x_last mse/relu",
                                                 "x_last ce/relu", "x_last ce/relu:f32", "w_hidden relu",
                                                 "w_hidden relu:f32", "w_last mse", "w_last ce"]
    for r in rows:
        first_ratio = next(i for i, tok in enumerate(r) if tok.endswith("x"))
        assert float(r[first_ratio - 1]) <= 1e-5, r  # rel diff of the torch and CVXPY values
        assert not any(">" in tok for tok in r), r  # L-BFGS-B reached the torch value: every ratio is measured
    assert "torch solves on cpu" in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_torch_solves_run_on_cuda(bench, capsys):  # pragma: no cover - no GPU in CI
    assert bench.main(["--sizes", "12x30", "--no-cvxpy", "--lbfgs-cap", "20", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert len(_rows(out)) == 8 and "torch solves on cuda" in out


def test_floor_columns_bound_the_solves_that_have_them(bench, capsys):
    assert bench.main(["--sizes", "12x30", "--no-cvxpy", "--lbfgs-cap", "20", "--threads", "1", "--floor"]) == 0
    rows = {r[0] + " " + r[1]: r for r in _rows(capsys.readouterr().out)}
    for key in ("x_hidden relu/relu", "w_hidden relu"):
        assert float(rows[key][-2]) > 0 and rows[key][-1].endswith("x"), rows[key]
    assert len(rows["x_last mse/relu"]) == len(rows["x_hidden relu/relu"]) - 2  # no floor where none is defined
    # the kernels are part of the solve: their time alone is below the solve's (timed here, not rounded)
    d = bench.make_data(12, 30, 0)
    for name, variant, run_t, *_ in bench.cases(d):
        if name in ("x_hidden", "w_hidden") and not variant.endswith(":f32"):
            run_t()
            t0 = time.perf_counter()
            result = run_t()
            seconds = time.perf_counter() - t0
            assert 0 < bench.kernel_floor(name, result, d) < seconds, name


def test_lbfgs_time_is_the_median_of_repeated_runs_within_the_budget(bench, capsys, monkeypatch):
    """Short L-BFGS-B runs are repeated (``--repeats``) and their median counts; a run that would pass the budget is
    not started."""
    calls, real = [], bench.lbfgs
    times = iter([0.1, 0.3, 0.2] * 9)

    def timed(*args, **kwargs):
        seconds, reached, value = real(*args, **kwargs)
        calls.append(seconds)
        return next(times), reached, value

    monkeypatch.setattr(bench, "lbfgs", timed)
    assert bench.main(["--sizes", "12x30", "--no-cvxpy", "--lbfgs-cap", "20", "--threads", "1", "--repeats", "3"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert len(calls) == 3 * len(rows)
    assert all(r[6] == "0.2" for r in rows)  # the median of 0.1, 0.3, 0.2 (the L-BFGS-B column)
    calls.clear()
    monkeypatch.setattr(bench, "LBFGS_BUDGET", 0.35)  # two runs of 0.15 s fit, a third would not
    times = iter([0.15] * 27)
    assert bench.main(["--sizes", "12x30", "--no-cvxpy", "--lbfgs-cap", "20", "--threads", "1", "--repeats", "3"]) == 0
    assert len(calls) == 2 * len(_rows(capsys.readouterr().out))
