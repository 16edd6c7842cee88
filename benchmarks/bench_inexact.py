"""Benchmark: inexact BCD (majorization-minimization W-updates) vs Adam, per epoch, on MNIST 784-300-10.

Adds to ``bench_training.py`` what it does not sweep: the number of MM steps per W-update (``inexact_iters``),
with the per-epoch wall time (training only) and test accuracy after every epoch, and Adam's time per epoch in
the same process for the ratio. Settings of Appendix C's batched run: batch 500, K = 1, lam 0.1, rho 0,
gamma (1, 100), cross-entropy, ReLU, float64.

Then, with ``--breakdown N``, where the time of one batch goes: ``N`` batches of BCD (``inexact_iters`` = the
first of ``--iters``) and of Adam on the same batches, per block (``x_last``, ``x_hidden``, ``w_last``,
``w_hidden``) and the rest of a step (feed-forward, argument checks), in milliseconds per batch.

``--x-iters 5,10`` adds runs whose FISTA X-updates are capped too (``BCDSettings.inexact_x_iters``).

Usage::

    python benchmarks/bench_inexact.py --threads 1 --epochs 3 --iters 1,3,5     # shipped 10k/2k subset
    python benchmarks/bench_inexact.py --threads 1 --epochs 0 --iters 1 --breakdown 40
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

from fenchel_cvx.baselines import Backprop
from fenchel_cvx.bcd import BCD
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.runs import RunConfig, load_data, read_metrics, train_run


def _curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds of training in that epoch, test accuracy at its end) per whole epoch."""
    rows = [r for r in read_metrics(run_dir) if float(r["epoch"]).is_integer() and float(r["epoch"]) > 0]
    out, prev = [], 0.0
    for r in rows:
        out.append((float(r["time"]) - prev, float(r["test_acc"])))
        prev = float(r["time"])
    return out


def _breakdown(cfg: RunConfig, data, batches: int) -> str:
    """Milliseconds per batch: each BCD block, the rest of a BCD step, and an Adam step, on the same batches."""
    arrays = data[1]
    rc = cfg.resolved(arrays["X"].shape[1], int(arrays["y"].max()) + 1)
    net = LiftedNetwork(rc.sizes, rc.activation, rc.loss, seed=rc.seed)
    bcd = BCD(net, rc.trainer_settings())
    adam = Backprop(net, replace(rc, method="adam").trainer_settings())
    X0, Y, _ = bcd._prepare(arrays["X"], arrays["y"], "X", "y")
    sb, sa = bcd.init_state(), adam.init_state()
    bs = rc.batch_size
    n = min(batches, X0.shape[1] // bs - 1)  # one more batch warms up
    blocks: dict[str, float] = defaultdict(float)
    step = 0.0
    for k in range(n + 1):  # batch 0 warms up (allocations, thread pools) and is not counted
        cols = slice(k * bs, (k + 1) * bs)
        bcd.step(sb, X0[:, cols], Y[:, cols])
        adam.step(sa, X0[:, cols], Y[:, cols])
        if k == 0:
            sb.elapsed = sa.elapsed = 0.0
            continue
        for blk in sb.last["blocks"]:
            blocks[blk["block"]] += blk["time"]
    step, t_adam = sb.elapsed / n, sa.elapsed / n
    rows = [f"| {name} | {t / n * 1e3:.1f} |" for name, t in blocks.items()]
    rows.append(f"| rest of the step (feed-forward, checks) | {(step - sum(blocks.values()) / n) * 1e3:.1f} |")
    rows.append(f"| **BCD step** | **{step * 1e3:.1f}** |")
    rows.append(f"| Adam step (same batches) | {t_adam * 1e3:.1f} |")
    rows.append(f"| ratio | {step / t_adam:.1f} |")
    head = (f"Per batch of {bs}, mean over {n} batches, {torch.get_num_threads()} torch thread(s), "
            f"inexact_iters={rc.inexact_iters}:\n\n| part | ms / batch |\n|---|---|")
    return head + "\n" + "\n".join(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", default="1,3,5", help="inexact_iters values, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    p.add_argument("--breakdown", type=int, default=0, help="batches for the per-block time table (0: none)")
    p.add_argument("--x-iters", default="", help="also cap the FISTA X-updates (inexact_x_iters) at these values, "
                   "comma-separated, one run each with the first of --iters (default: X-updates solved to tol)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = RunConfig(dataset="mnist-small", loss="ce", batch_size=500, epochs=args.epochs, lam=0.1, rho=0.0,
                     gamma=[1.0, 100.0], K=1, inexact=True, seed=args.seed)
    data = load_data(base)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_inexact_"))
    runs = {f"fenchel mm x{k}": replace(base, inexact_iters=int(k)) for k in args.iters.split(",")}
    for x in filter(None, args.x_iters.split(",")):
        runs[f"fenchel mm x{args.iters.split(',')[0]}, X capped at {x}"] = replace(
            base, inexact_iters=int(args.iters.split(",")[0]), inexact_x_iters=int(x))
    runs["adam"] = replace(base, method="adam", inexact=None)
    if args.breakdown:
        print(_breakdown(replace(base, inexact_iters=int(args.iters.split(",")[0])), data, args.breakdown))
    if args.epochs < 1:
        return 0
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
