"""Benchmark: inexact BCD (majorization-minimization W-updates) vs Adam, per epoch, on MNIST 784-300-10.

Adds to ``bench_training.py`` what it does not sweep: the number of MM steps per W-update (``inexact_iters``),
with the per-epoch wall time (training only) and test accuracy after every epoch, and Adam's time per epoch in
the same process for the ratio. Settings of Appendix C's batched run: batch 500, K = 1, lam 0.1, rho 0,
gamma (1, 100), cross-entropy, ReLU, float64.

Usage::

    python benchmarks/bench_inexact.py --threads 1 --epochs 3 --iters 1,3,5     # shipped 10k/2k subset
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from fenchel_cvx.runs import RunConfig, load_data, read_metrics, train_run


def _curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds of training in that epoch, test accuracy at its end) per whole epoch."""
    rows = [r for r in read_metrics(run_dir) if float(r["epoch"]).is_integer() and float(r["epoch"]) > 0]
    out, prev = [], 0.0
    for r in rows:
        out.append((float(r["time"]) - prev, float(r["test_acc"])))
        prev = float(r["time"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", default="1,3,5", help="inexact_iters values, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = RunConfig(dataset="mnist-small", loss="ce", batch_size=500, epochs=args.epochs, lam=0.1, rho=0.0,
                     gamma=[1.0, 100.0], K=1, inexact=True, seed=args.seed)
    data = load_data(base)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_inexact_"))
    runs = {f"fenchel mm x{k}": replace(base, inexact_iters=int(k)) for k in args.iters.split(",")}
    runs["adam"] = replace(base, method="adam", inexact=None)
    curves = {}
    for name, cfg in runs.items():
        d = root / name.replace(" ", "_")
        train_run(cfg, d, progress=False, data=data)
        curves[name] = _curve(d)
        print(name, curves[name], flush=True)
    adam = sum(t for t, _ in curves["adam"]) / len(curves["adam"])
    lines = ["| run | s / epoch (mean) | ratio to Adam | " + " | ".join(f"test acc ep {e + 1}"
                                                                         for e in range(args.epochs)) + " |",
             "|---|---|---|" + "---|" * args.epochs]
    for name, c in curves.items():
        t = sum(x for x, _ in c) / len(c)
        lines.append(f"| {name} | {t:.2f} | {t / adam:.1f} | " + " | ".join(f"{a:.4f}" for _, a in c) + " |")
    lines.append(f"\nMachine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
                 f"threads, torch {torch.__version__}, float64, mnist-small (10k train / 2k test).")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
