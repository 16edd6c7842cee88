"""Data-parallel BCD and backprop on torch.distributed: two gloo processes give the one-process answer.

Each job of ``tests/dist_jobs.py`` runs twice: here, in one process with no process group, and under
``torchrun --nproc-per-node 2`` (gloo, CPU), where each process holds half of every batch and the sums over samples
meet in ``all_reduce``. Same seed, same global batches: the weights must agree to 1e-10 relative (float64) and so
must ``J`` and the accuracies -- for the fast (running-curvature) mode, the inexact MM mode, exact updates solved to
round-off, Algorithm 1 (full batch, X-variables gathered for the checkpoint), a conv net, Adam and SGD, and a run
killed mid-epoch and resumed by new processes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fenchel_cvx import shards
from fenchel_cvx.errors import NotConvergedWarning, ShardingError

sys.path.insert(0, str(Path(__file__).parent))
from dist_jobs import run_job  # noqa: E402 (the jobs module sits beside this file)

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")]

DENSE, CONV = [12, 8, 6, 3], "1x8x8-c3k3p1-a2c4k3-f3"
EXACT = {"tol": 1e-30, "max_iter": 400}  # every block solved to round-off: one and two processes meet exactly
JOBS = [
    {"name": "fast", "kind": "bcd", "arch": DENSE, "loss": "ce", "m": 60,
     "settings": {"batch_size": 20, "epochs": 2, "curvature": "running", "inexact_x_iters": 10,
                  "curvature_every": 2}},
    {"name": "inexact", "kind": "bcd", "arch": DENSE, "loss": "ce", "m": 60,
     "settings": {"batch_size": 20, "epochs": 1, "inexact_iters": 3, **EXACT}},
    {"name": "exact", "kind": "bcd", "arch": DENSE, "loss": "ce", "m": 60,
     "settings": {"batch_size": 20, "epochs": 1, "inexact": False, **EXACT}},
    {"name": "alg1", "kind": "bcd", "arch": [12, 8, 3], "loss": "mse", "m": 41,
     "settings": {"batch_size": None, "epochs": 3, "rho": 0.1, "gamma": 1.0, **EXACT}},
    {"name": "conv", "kind": "bcd", "arch": CONV, "loss": "ce", "m": 30,
     "settings": {"batch_size": 10, "epochs": 1, "curvature": "running", "inexact_x_iters": 10,
                  "curvature_every": 1}},
    {"name": "conv-mm", "kind": "bcd", "arch": CONV, "loss": "ce", "m": 30,
     "settings": {"batch_size": 10, "epochs": 1, "lam": [1.0, 1.0], **EXACT}},
    {"name": "bound", "kind": "bound", "arch": [12, 8, 3], "loss": "mse", "m": 41,
     "settings": {"lam": 1.0, "rho": 0.1, "starts": 1, "iterations": 2, "tol": 1e-12}, "rtol": 1e-8},
    {"name": "adam", "kind": "backprop", "arch": DENSE, "loss": "ce", "m": 60,
     "settings": {"batch_size": 20, "epochs": 2, "rho": 0.01}},
    {"name": "sgd", "kind": "backprop", "arch": DENSE, "loss": "mse", "m": 60,
     "settings": {"batch_size": 20, "epochs": 2, "optimizer": "sgd", "momentum": 0.9}},
]
# killed after the 4th of 6 batches (mid-epoch) and continued by a second torchrun from rank 0's checkpoint
KILLED = [dict(JOBS[0], name="fast-killed", stop_after=4, settings=dict(JOBS[0]["settings"], eval_every=1)),
          dict(JOBS[3], name="alg1-killed", stop_after=2, settings=dict(JOBS[3]["settings"], eval_every=1))]
RESUMED = [dict(j, name=j["name"].replace("killed", "resumed"), stop_after=None, resume=j["name"]) for j in KILLED]


def _torchrun(jobs: list, out: Path) -> None:
    spec = out / f"jobs-{len(list(out.glob('jobs-*')))}.json"
    spec.write_text(json.dumps(jobs))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(Path(__file__).parent / "dist_jobs.py"), str(spec), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """Rank 0's results of every job trained by two gloo processes (two torchrun launches)."""
    out = tmp_path_factory.mktemp("dist")
    _torchrun(JOBS + KILLED, out)
    _torchrun(RESUMED, out)
    return out


def _one_process(job: dict, tmp_path: Path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)
        return run_job(dict(job, stop_after=None, resume=None), tmp_path)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-300))


def _assert_same_run(got: dict, ref: dict, rtol: float = 1e-10) -> None:
    assert got["world"] == 2 and ref["world"] == 1
    for i, (a, b) in enumerate(zip(got["W"] + got["b"], ref["W"] + ref["b"], strict=True)):
        assert _rel(a, b) <= rtol, f"parameter {i}: relative difference {_rel(a, b):.3g}"
    assert len(got["history"]) == len(ref["history"])
    for g, r in zip(got["history"], ref["history"], strict=True):
        for key in ("J", "primal", "penalty", "train_loss"):
            if math.isnan(r[key]):
                assert math.isnan(g[key]), key
            else:
                assert g[key] == pytest.approx(r[key], rel=rtol, abs=1e-12), key
        assert g["train_acc"] == r["train_acc"] or (math.isnan(g["train_acc"]) and math.isnan(r["train_acc"]))
        assert (g["epoch"], g["step"]) == (r["epoch"], r["step"])
    if ref["X"] is not None:  # Algorithm 1: the X-variables gathered from both processes
        for a, b in zip(got["X"], ref["X"], strict=True):
            assert _rel(a, b) <= rtol


@pytest.mark.parametrize("job", JOBS, ids=[j["name"] for j in JOBS])
def test_two_gloo_processes_train_the_one_process_weights(job, two_processes, tmp_path):
    """Same seed, same global batches: weights, J, losses and accuracies equal to 1e-10 (float64).

    The dual bound's job solves to 1e-12 (not to round-off: MM steps on an unregularized bias are slow), so its
    G_hat and weights are compared to 1e-8."""
    got = torch.load(two_processes / f"{job['name']}.pt", weights_only=False)
    _assert_same_run(got, _one_process(job, tmp_path), job.get("rtol", 1e-10))


@pytest.mark.parametrize("job", RESUMED, ids=[j["name"] for j in RESUMED])
def test_killed_mid_epoch_and_resumed_by_new_processes(job, two_processes, tmp_path):
    """Rank 0's checkpoint after batch 4 of 6 (Algorithm 1: sweep 2 of 3, X gathered), continued by a second pair
    of processes, ends where one uninterrupted process ends."""
    got = torch.load(two_processes / f"{job['name']}.pt", weights_only=False)
    _assert_same_run(got, _one_process(dict(job, name=job["name"] + "-ref"), tmp_path))


# -- one process: the same code, no communication -----------------------------------------------------------------
def test_without_a_process_group_all_sum_is_the_identity():
    t = torch.arange(4.0)
    with shards.sharded() as (rank, size):
        assert (rank, size) == (0, 1) and not shards.is_sharded()
        assert shards.all_sum(t) is t and t.tolist() == [0.0, 1.0, 2.0, 3.0]
        assert shards.all_sum_float(2.5) == 2.5
    idx = torch.arange(7)
    parts = [shards.local_part(idx, r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), idx) and [len(p) for p in parts] == [3, 2, 2]


def test_newton_refuses_to_run_sharded_and_names_the_method_to_use(monkeypatch):
    """Newton's Hessians would cross processes every step: a sharded call says to use method='mm'."""
    from fenchel_cvx.torch import w_hidden, w_last

    monkeypatch.setattr(shards, "is_sharded", lambda: True)
    import fenchel_cvx.torch._wsolvers as ws

    monkeypatch.setattr(ws, "is_sharded", lambda: True)
    rng = np.random.default_rng(0)
    X, V = torch.tensor(rng.normal(size=(4, 9))), torch.tensor(rng.random((3, 9)))
    with pytest.raises(ShardingError, match="method='mm'"):
        w_hidden(X, V, act="relu", lam=1.0, rho=0.1)
    with pytest.raises(ShardingError, match="method='mm'"):
        w_last(X, torch.tensor([0, 1, 2] * 3), loss="ce", rho=0.1, p=3)
    with pytest.raises(ShardingError, match="kernel"):
        ws.mm_rows(X, V, ws.ReLU(), 1.0, torch.ones(4, dtype=X.dtype), torch.zeros(3, 4, dtype=X.dtype),
                   torch.zeros(3, 4, dtype=X.dtype), tol=1e-6, max_iter=2, form="kernel")


# -- the command line under torchrun -------------------------------------------------------------------------------
CLI_ARGS = ["train", "--dataset", "mnist-small", "--n-train", "400", "--n-test", "200", "--arch", "784-20-10",
            "--batch-size", "100", "--epochs", "2", "--compare", "none", "--no-progress", "--threads", "1",
            "--curvature", "running", "--inexact-x-iters", "10"]  # X-updates of fixed length: equal to round-off


def test_torchrun_runs_the_cli_data_parallel_and_resumes(tmp_path):
    """``torchrun --nproc-per-node 2 -m fenchel_cvx train``: rank 0 writes the run directory (metrics equal to a
    one-process run's), prints once, and a second launch with ``--resume`` extends it."""
    from fenchel_cvx import cli
    from fenchel_cvx.runs import read_metrics

    dist_dir, ref_dir = tmp_path / "dist", tmp_path / "ref"
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
            "fenchel_cvx"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(base + CLI_ARGS + ["--epochs", "1", "--out", str(dist_dir)], capture_output=True,
                           text=True, env=env, timeout=600)
    assert first.returncode == 0, first.stderr[-4000:]
    assert first.stdout.count("fenchel-cvx: 784-20-10") == 1  # one report, from rank 0
    again = subprocess.run(base + CLI_ARGS + ["--out", str(dist_dir), "--resume"], capture_output=True, text=True,
                           env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert cli.main(CLI_ARGS + ["--out", str(ref_dir)]) == 0
    got, ref = read_metrics(dist_dir), read_metrics(ref_dir)
    assert len(got) == len(ref) == 2
    for g, r in zip(got, ref, strict=True):
        for key in ("J", "primal", "train_loss", "test_loss"):
            assert g[key] == pytest.approx(r[key], rel=1e-10), key
        assert (g["train_acc"], g["test_acc"]) == (r["train_acc"], r["test_acc"])
    assert not list(dist_dir.glob("*.tmp*"))  # one writer: no leftovers of a second process's files


def test_a_batch_too_small_for_the_processes_is_refused(monkeypatch):
    """Each process needs a sample of every batch: a last batch of 1 over 2 processes is refused, naming the size."""
    import fenchel_cvx.trainer as tr
    from fenchel_cvx.bcd import BCD, BCDSettings
    from fenchel_cvx.network import LiftedNetwork

    monkeypatch.setattr(tr, "world", lambda group=None: (0, 2))
    X, y = np.random.default_rng(0).normal(size=(21, 4)), np.arange(21) % 3
    bcd = BCD(LiftedNetwork([4, 5, 3], "relu", "ce", seed=0), BCDSettings(batch_size=10, epochs=1))
    with pytest.raises(ShardingError, match="batch_size.*2 processes.*one of 1"):
        bcd.run(X, y, progress=False)


def test_the_cvxpy_face_refuses_to_run_sharded(monkeypatch):
    import fenchel_cvx.bcd as bcd_mod
    from fenchel_cvx.bcd import BCD, BCDSettings
    from fenchel_cvx.network import LiftedNetwork

    monkeypatch.setattr(bcd_mod, "is_sharded", lambda: True)
    X, y = np.random.default_rng(0).normal(size=(6, 3)), np.arange(6) % 2
    bcd = BCD(LiftedNetwork([3, 2, 2], "relu", "ce", seed=0), BCDSettings(batch_size=None, epochs=1, backend="cvx"))
    with pytest.raises(ShardingError, match="backend='torch'"):
        bcd.run(X, y, progress=False)
