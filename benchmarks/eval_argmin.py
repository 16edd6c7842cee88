"""Test accuracy of trained Fenchel runs under both prediction rules: feed-forward and the argmin rule (eq. 12).

Reads each run directory's ``model.npz`` and ``config.json`` (written by ``fenchel-cvx train`` or
``bench_training.py``), rebuilds the test set the run used, and prints one row per run. The argmin rule solves,
for every test image and class ``k``, ``min_x CE(e_k, W_L x + b_L) + sum_l lam_l B_l(...)`` (see
:mod:`fenchel_cvx.bcd`), so it costs ``p`` X-updates over the test set.

Usage::

    python benchmarks/eval_argmin.py bench_runs/a/fenchel-inexact bench_runs/a/fenchel-tuned --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from fenchel_cvx.bcd import BCD, BCDSettings
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.runs import load_data
from fenchel_cvx.settings import RunConfig


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run directories of Fenchel runs")
    p.add_argument("--data-dir", default=None, help="override the data folder saved in the run's config")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print("| run | feed-forward test acc | argmin (eq. 12) test acc | argmin seconds |")
    print("|---|---|---|---|")
    for run in map(Path, args.runs):
        cfg = RunConfig.from_dict(json.loads((run / "config.json").read_text())["config"])
        if cfg.method != "fenchel":
            raise SystemExit(f"{run}: a {cfg.method!r} run; the argmin rule needs a Fenchel run")
        if args.data_dir:
            cfg = cfg.with_values({"data_dir": args.data_dir})
        _, d = load_data(cfg)
        net = LiftedNetwork.load(run / "model.npz")
        accs = []
        for rule in ("feedforward", "argmin"):
            t0 = time.perf_counter()
            bcd = BCD(net, BCDSettings(lam=cfg.fenchel.lam, prediction=rule, tol=cfg.fenchel.tol,
                                       dtype=cfg.train.dtype))
            accs.append(bcd.evaluate(bcd.init_state(), d["X_test"], d["y_test"])[1])
        print(f"| {run} | {accs[0]:.4f} | {accs[1]:.4f} | {time.perf_counter() - t0:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
