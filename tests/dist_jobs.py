"""Training jobs that run the same way in one process and under ``torchrun`` (data-parallel), for
``tests/test_distributed.py``.

``python -m torch.distributed.run --standalone --nproc-per-node 2 tests/dist_jobs.py JOBS.json OUT_DIR`` runs every
job of the JSON list on two gloo processes and writes rank 0's results to ``OUT_DIR/<name>.pt``; the test runs the
same jobs in its own process (no process group) with :func:`run_job` and compares.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from fenchel_cvx.baselines import Backprop, BackpropSettings, BackpropState
from fenchel_cvx.bcd import BCD, BCDSettings, BCDState
from fenchel_cvx.errors import NotConvergedWarning
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.shards import init_from_environment, world


class _Stop(Exception):
    """Raised by a job's callback to stop it mid-epoch, as if the process had been killed."""


def data(job: dict) -> tuple[np.ndarray, np.ndarray]:
    """Inputs labelled by a random teacher net of the job's architecture (learnable classes)."""
    rng = np.random.default_rng(job.get("data_seed", 0))
    teacher = LiftedNetwork(job["arch"], "relu", job["loss"], seed=100)
    X = rng.normal(size=(job["m"], *teacher.layers[0].in_shape))
    return X, (teacher.forward(X) if job["loss"] == "mse" else teacher.predict(X))


def trainer_for(job: dict) -> BCD | Backprop:
    net = LiftedNetwork(job["arch"], "relu", job["loss"], seed=job.get("seed", 0))
    if job["kind"] == "bcd":
        return BCD(net, BCDSettings(**job["settings"]))
    return Backprop(net, BackpropSettings(**job["settings"]))


def run_job(job: dict, out_dir: str | Path) -> dict | None:
    """Train ``job``; return (and, on rank 0, save) the weights, the history and, for Algorithm 1, the gathered X.

    ``stop_after``: save ``trainer.checkpoint`` to ``<out_dir>/<name>.ckpt`` after that many batches and stop.
    ``resume``: continue from the checkpoint of the job of that name.
    """
    out_dir = Path(out_dir)
    X, y = data(job)
    if job["kind"] == "bound":  # the dual-bound module: BCD sweeps from several starts, then G_hat
        from fenchel_cvx.dual import estimate_G

        net = LiftedNetwork(job["arch"], "relu", job["loss"], seed=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotConvergedWarning)
            rep = estimate_G(net, X, y, **job["settings"])
        result = {"W": [torch.as_tensor(w) for w in rep.network.W], "b": [torch.as_tensor(v) for v in rep.network.b],
                  "history": [{"J": rep.G_hat, "primal": rep.P, "penalty": rep.penalty, "train_loss": rep.loss,
                               "train_acc": math.nan, "epoch": 0, "step": 0}],
                  "X": [torch.as_tensor(x) for x in rep.Xvars], "world": world()[1]}
        if world()[0] == 0:
            torch.save(result, out_dir / f"{job['name']}.pt")
        return result
    trainer = trainer_for(job)
    state = None
    if job.get("resume"):
        cls = BCDState if job["kind"] == "bcd" else BackpropState
        state = cls.from_state_dict(torch.load(out_dir / f"{job['resume']}.ckpt", weights_only=True))
    lead = world()[0] == 0

    def callback(st, row):
        if job.get("stop_after") and st.step == job["stop_after"]:
            sd = trainer.checkpoint(st)
            if lead:
                torch.save(sd, out_dir / f"{job['name']}.ckpt")
            raise _Stop

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotConvergedWarning)  # the exact jobs solve to round-off on purpose
        try:
            state = trainer.run(X, y, state=state, callback=callback, progress=False)
        except _Stop:
            return None
    sd = trainer.checkpoint(state)
    result = {"W": [w.detach().cpu() for w in state.W], "b": [v.detach().cpu() for v in state.b],
              "history": state.history, "X": sd.get("X"), "world": world()[1]}
    if lead:
        torch.save(result, out_dir / f"{job['name']}.pt")
    return result


def main(argv: list[str]) -> int:
    jobs, out_dir = json.loads(Path(argv[0]).read_text()), argv[1]
    torch.set_num_threads(1)
    init_from_environment("gloo", "cpu")
    for job in jobs:
        run_job(job, out_dir)
    # both processes past their last collective before either tears gloo down: without it one process at exit
    # was seen to abort ("terminate called without an active exception") while the other was still leaving
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Results are on disk; leave without the interpreter's teardown, where gloo's last threads have been seen to
    # abort a worker (SIGABRT after destroy_process_group) and fail the whole torchrun.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
