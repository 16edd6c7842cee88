"""Hyperparameter selection for the batched Fenchel network (cross-entropy) on a validation split.

The test set is never looked at: the training set is split (seeded) into ``--n-val`` validation images and the
rest, every configuration trains on the rest for ``--epochs`` epochs (Algorithm 2, batch 500, K from the
configuration, inexact W-updates: MM steps, or with ``"curvature": "running"`` one preconditioned step) and the
table lists the validation accuracy after each epoch. This is how the ``fenchel-tuned`` run of
``bench_training.py`` was chosen (gamma_L = 10 instead of Appendix C's 100, three MM steps per W-update instead of
one), and ``fenchel-fast-tuned``'s settings for the running-curvature mode; with ``--arch lenet5`` the tuned
proximal weights of ``bench_lenet.py`` (Figs. 3-4). A configuration may also name ``"method": "adam"`` (or
``"sgd"``) for the baseline on the same split, with ``"lr"`` its learning rate (``"adam_lr"`` is the rate of
Fenchel's Adam W-steps).

Usage::

    python benchmarks/tune_batched.py --data-dir DIR --threads 1                 # the default grid, 5 epochs
    python benchmarks/tune_batched.py --data-dir DIR --grid '[{"lam": 0.1, "gamma": [1, 10], "inexact_iters": 3}]'
    python benchmarks/tune_batched.py --dataset cifar10 --data-dir DIR --arch lenet5 --n-val 2000 --n-fit 10000 \
        --epochs 3 --threads 1 --grid '[{}, {"gamma": [10, 10, 10, 10, 100]}, {"method": "adam"}]'
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

from fenchel_cvx.runs import load_data, make_trainer
from fenchel_cvx.settings import BCDOptions, RunConfig

#: Appendix C's batched values (our reading) and the neighbours tried around them.
DEFAULT_GRID = [
    {"lam": 0.1, "gamma": [1.0, 100.0], "inexact_iters": 1},
    {"lam": 0.1, "gamma": [1.0, 100.0], "inexact_iters": 3},
    {"lam": 0.1, "gamma": [1.0, 10.0], "inexact_iters": 1},
    {"lam": 0.1, "gamma": [1.0, 10.0], "inexact_iters": 3},
    {"lam": 0.1, "gamma": [1.0, 10.0], "inexact_iters": 5},
]
_KEYS = ("method", "inexact", "lam", "rho", "gamma", "inexact_iters", "K", "inexact_x_iters", "curvature",
         "curvature_every", "curvature_rank", "curvature_relax", "curvature_line_search", "inexact_x_certify",
         "inexact_x_float32", "adam_lr", "lr", "tol")


def _running(f: BCDOptions, mode: dict) -> str:
    """``mode``: the mode flags' values the trainer uses (``BCD.resolved()``), the fast default's included."""
    if mode["curvature"] == "adam":
        return f" (lr {mode['adam_lr']:g})"
    if mode["curvature"] != "running":
        return ""
    relax = mode["curvature_relax"]  # one per layer; one value when they agree
    relax = f"{relax[0]:g}" if len(set(relax)) == 1 else ",".join(f"{v:g}" for v in relax)
    return f" ({f.curvature_every}, {f.curvature_rank}, {relax})"


def _x_iters(f: BCDOptions, mode: dict) -> str:
    if mode["inexact_x_iters"] is None:
        return f"to tol {f.tol:g}"
    certified = mode["curvature"] == "batch" or mode["inexact_x_certify"]
    float32 = ", float32" if mode["inexact_x_float32"] else ""
    return f"{mode['inexact_x_iters']}{'' if certified else ', uncertified'}{float32}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mnist", "cifar10", "mnist-small"), default=None,
                   help="default: mnist with --data-dir, else the shipped subset")
    p.add_argument("--data-dir", help="folder with the MNIST IDX files or the CIFAR-10 files")
    p.add_argument("--arch", default=None, help="network spec as for fenchel-cvx train (default: <features>-300-10)")
    p.add_argument("--n-fit", type=int, default=None, help="train on the first N images of the rest (default: all)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-val", type=int, default=10000, help="validation images split off the training set")
    p.add_argument("--grid", default=None, help=f"JSON list of settings with keys from {_KEYS} (default: "
                   "Appendix C and its neighbours)")
    p.add_argument("--seed", type=int, default=0, help="weight initialization and batch order")
    p.add_argument("--split-seed", type=int, default=123, help="seed of the train/validation split")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        grid = json.loads(args.grid) if args.grid else DEFAULT_GRID
    except json.JSONDecodeError as exc:
        p.error(f"--grid: expected a JSON list of settings dicts, got {args.grid!r} ({exc})")
    if not isinstance(grid, list) or not grid or not all(isinstance(g, dict) for g in grid):
        p.error(f"--grid: expected a non-empty JSON list of settings dicts, e.g. '[{{\"lam\": 0.1}}]', got "
                f"{args.grid!r}")
    for g in grid:
        extra = set(g) - set(_KEYS)
        if extra:
            p.error(f"--grid: unknown keys {sorted(extra)}; use {_KEYS}")
    if args.epochs < 1:
        p.error(f"--epochs: expected a positive integer, got {args.epochs}")
    dataset = args.dataset or ("mnist" if args.data_dir else "mnist-small")
    base = RunConfig().with_values({"dataset": dataset, "data_dir": args.data_dir, "arch": args.arch, "loss": "ce",
                                    "batch_size": 500, "epochs": args.epochs, "inexact": True, "seed": args.seed})
    ds, d = load_data(base)
    m = len(d["y"])
    if not 0 < args.n_val < m:
        raise SystemExit(f"--n-val: expected 0 < n_val < {m} (training images), got {args.n_val}")
    perm = np.random.default_rng(args.split_seed).permutation(m)
    fit, val = perm[args.n_val:][:args.n_fit], perm[:args.n_val]
    if args.n_fit is not None and not 0 < args.n_fit <= m - args.n_val:
        raise SystemExit(f"--n-fit: expected 0 < n_fit <= {m - args.n_val}, got {args.n_fit}")
    print(f"{len(fit)} training / {args.n_val} validation images, {args.epochs} epochs", flush=True)
    lines = ["| method | lam | gamma | MM steps | K | curvature | X iters | " + " | ".join(f"val ep {e + 1}" for e in
                                                                             range(args.epochs))
             + " | train acc | s / epoch |", "|---|---|---|---|---|---|---|" + "---|" * (args.epochs + 2)]
    lines[0] = lines[0].replace("curvature |", "curvature (every, rank, relax) |")
    for g in grid:
        cfg = base.with_values(g)
        bcd = make_trainer(cfg, ds.image_shape, ds.n_classes)
        f = cfg.fenchel
        resolved = {"lam": [], "gamma": [], **bcd.resolved()}  # a backprop baseline has neither
        t0 = time.perf_counter()
        state = bcd.run(d["X"][fit], d["y"][fit], X_test=d["X"][val], y_test=d["y"][val], progress=False)
        accs = [r["test_acc"] for r in state.history]
        per_epoch = state.elapsed / max(state.epoch, 1)
        lam, gamma = (", ".join(f"{x:g}" for x in resolved[k]) for k in ("lam", "gamma"))
        fenchel = f" | | lr {bcd.lr:g} | " if cfg.method in ("adam", "sgd") else " | | | "
        if cfg.method == "fenchel":
            steps = ("exact" if f.inexact is False else resolved["inexact_iters"] if resolved["curvature"] == "batch"
                     else 1)
            fenchel = f"{steps} | {f.K} | {resolved['curvature']}{_running(f, resolved)} | {_x_iters(f, resolved)}"
        lines.append(f"| {cfg.method} | {lam} | {gamma} | {fenchel} | "
                     + " | ".join(f"{a:.4f}" for a in accs)
                     + f" | {state.history[-1]['train_acc']:.4f} | {per_epoch:.1f} |")
        print(lines[-1], f"(wall {time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}.\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
