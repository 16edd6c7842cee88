"""Host reads -- the calls that make Python wait for a GPU -- counted on any device (issue 15, item 4).

``benchmarks/host_syncs.py`` counts them while a trainer takes its batches; here: that the counter counts what it
should (and could fail), that the fast default mode reads no value inside its steps (the count does not grow with
the steps), and that the helpers on the per-batch path read once where they used to read per tensor or per
iteration.
"""


import numpy as np
import pytest
import torch
from conftest import BENCHMARKS, load_benchmark

from fenchel_cvx._checks import first_not_finite
from fenchel_cvx.layers import parse_arch
from fenchel_cvx.settings import FAST_GAMMA, FAST_MODE
from fenchel_cvx.torch._common import spectral_norm_sq


@pytest.fixture(scope="module")
def hs():
    return load_benchmark("host_syncs")


def test_counter_counts_the_package_reads_only(hs):
    t = torch.arange(6, dtype=torch.float64)
    with hs.HostReads() as reads:
        assert first_not_finite([("a", t), ("b", 2 * t), ("c", t[:2])]) is None
        bool(t.sum() > 0)  # this module's own read: not the package's, not counted
    assert reads.total == 1
    assert sum(reads.sites.values()) == 1 and "_checks.py" in next(iter(reads.sites))
    bad = t.clone()
    bad[3] = float("nan")
    with hs.HostReads() as reads:
        assert first_not_finite([("a", t), ("b", bad)]) == "b"
    assert reads.total == 3  # the sum, then a and b alone


def test_counter_lets_host_copies_be_read_freely(hs):
    """A conv layer's norm runs ARPACK on a host copy of the kernel: one copy out, its reads free."""
    layer = parse_arch("1x8x8-c2k3s1p1-f3")[0]
    W = torch.randn(layer.weight_shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with hs.HostReads() as reads:
        layer.norm_sq(W)
    assert reads.total == 1
    assert "copy to host" in next(iter(reads.sites))


def test_power_iteration_reads_once(hs):
    W = torch.randn(64, 80, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    true = float(torch.linalg.matrix_norm(W, 2)) ** 2
    with hs.HostReads() as reads:
        spectral_norm_sq(W)
    assert reads.total == 1  # was one per iteration (60)
    assert true <= spectral_norm_sq(W) <= 1.011 * true
    assert spectral_norm_sq(torch.zeros(64, 80, dtype=torch.float64)) == 0.0


def test_power_iteration_restarts_when_its_start_is_in_the_null_space():
    x0 = torch.randn(80, 1, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)  # its fixed start
    b = torch.linspace(1.0, 2.0, 80, dtype=torch.float64)[:, None]
    b -= (b.T @ x0) / (x0.T @ x0) * x0  # W x0 = 0: rank one, orthogonal to the start
    a = torch.linspace(-1.0, 1.0, 64, dtype=torch.float64)[:, None] + 0.5
    W = a @ b.T
    assert float((W @ x0).abs().max()) < 1e-12
    true = float(a.norm() * b.norm()) ** 2
    assert true <= spectral_norm_sq(W) <= 1.011 * true


def test_certified_x_update_reads_once_per_check(hs):
    """A certified FISTA check reads the device once (the worst certificate and how many columns are done), the
    steps between checks never: the reads grow with the checks by exactly one each."""
    import fenchel_cvx.torch as ft
    g = torch.Generator().manual_seed(0)
    W = torch.randn(40, 60, generator=g, dtype=torch.float64) / 8
    U = torch.randn(60, 300, generator=g, dtype=torch.float64)
    V = torch.relu(W @ torch.relu(U) + 0.1 * torch.randn(40, 300, generator=g, dtype=torch.float64))
    extra = {}
    for tol in (1e-4, 1e-12):
        with hs.HostReads() as reads:
            res = ft.x_hidden(W, None, V, U, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0, tol=tol)
        assert res.converged
        extra[tol] = (reads.total - len(res.info["history"]), len(res.info["history"]), res.iterations)
    assert extra[1e-12][1] > extra[1e-4][1] and extra[1e-12][2] > extra[1e-4][2] + 5
    assert extra[1e-12][0] == extra[1e-4][0]


def test_fast_default_reads_no_value_inside_its_steps(hs):
    """The default mode's capped X-steps and running-curvature W-steps run without a host read: the reads per
    batch are the same at 3 and at 30 X-steps, and few (the Lipschitz constant and the weights' finiteness)."""
    args = hs._parse_args(["--n-train", "1000"])
    base = hs._config("fenchel-default", None, args)
    data = hs.load_data(base)
    counts = {}
    for steps in (3, 30):
        mode = {**FAST_MODE, "gamma": list(FAST_GAMMA), "inexact_x_iters": steps}  # a flag given: all of them
        batches, reads, ops = hs.count(base.with_values(mode), data)
        counts[steps] = (reads.total / batches, ops.total / batches)
    assert counts[3][0] == counts[30][0]
    assert counts[30][1] > counts[3][1] + 27 * 5  # the steps did run: each is several operators
    assert counts[3][0] <= 8


def test_script_prints_one_row_per_run(hs, capsys):
    assert hs.main(["--runs", "fenchel-default,adam", "--n-train", "500"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("fenchel", "adam"))]
    assert [r[0] for r in rows] == ["fenchel-default", "adam"]
    assert all(r[1] == "1" and float(r[2]) > 0 and float(r[3]) >= 1 for r in rows)
    assert np.isfinite([float(r[3]) for r in rows]).all()


@pytest.mark.slow
def test_gpu_report_runs_every_table_on_the_cpu(tmp_path):
    """The prepared GPU script (issue 15, item 4) at smoke scale with DEVICE=cpu: every table written."""
    import os
    import subprocess
    out = tmp_path / "report"
    script = BENCHMARKS / "gpu_report.sh"
    done = subprocess.run(["bash", str(script), "-", str(out), "--quick"], env={**os.environ, "DEVICE": "cpu"},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "device cpu" in (out / "device.txt").read_text()
    assert "fenchel-default" in (out / "host_syncs.txt").read_text()
    assert sum(line.startswith(("x_hidden", "w_hidden")) for line in (out / "subproblems.txt").read_text()
               .splitlines()) == 8  # two variants each at two sizes
    assert "| 2 |" in (out / "fig2.txt").read_text()
    assert "| fenchel-adam |" in (out / "lenet.txt").read_text()
