"""Figure 1 of the paper: Fenchel lifted networks against the earlier lifted models and an SGD network.

Section 5.1: 784-300-10 ReLU network, MSE loss, full MNIST, full batch for the lifted models; final test accuracy
in the paper: Taylor et al. (ADMM) 0.834, Lau et al. (proximal BCD) 0.914, Askari et al. (BCD) 0.863, neural
network (SGD) 0.957, Fenchel 0.961. Every model is a ``--method`` of ``fenchel-cvx train`` with its defaults:

* ``fenchel``: Algorithm 1 with Appendix C's full-batch values (``lam = 0.1``, ridge ``rho = (1e-2, 10)``); the
  W-updates take ``--fenchel-iters`` warm-started majorization-minimization steps per iteration (exact W-updates
  cost about 25 min per sweep at m = 60,000 on two CPU cores; MM steps never raise J);
* ``askari``: the same BCD on Askari et al.'s penalty (``fenchel_cvx.peers.askari``), the same ``lam`` and ``rho``
  ("our model used these same parameters"), exact updates (its hidden W-update is ridge least squares);
* ``taylor-admm`` and ``lau-bcd``: the hyperparameters of their public code (``fenchel_cvx.settings.PeerOptions``);
* ``sgd``: the same network by backprop and SGD, batches of ``--sgd-batch`` (one row per epoch).

One row of history per iteration (per epoch for SGD). Prints a table -- final test accuracy against the paper's,
seconds per iteration, and the test accuracy every model has at equal iterations and at equal wall time -- and
writes it to ``OUT/results.md``. Draw the figure with ``fenchel-cvx plot OUT -o fig1.png`` (per iteration) and
``fenchel-cvx plot OUT --x time -o fig1_time.png`` (per second).

Usage (``DIR`` holds the four MNIST IDX files)::

    python benchmarks/bench_fig1.py --data-dir DIR --iters 50 --threads 1
    python benchmarks/bench_fig1.py --quick            # smoke scale: the shipped MNIST subset
"""

from __future__ import annotations

import argparse
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from fenchel_cvx.runs import load_data, read_metrics, train_run
from fenchel_cvx.settings import RunConfig

PAPER = {"taylor-admm": 0.834, "lau-bcd": 0.914, "askari": 0.863, "sgd": 0.957, "fenchel": 0.961}
METHODS = ("fenchel", "askari", "taylor-admm", "lau-bcd", "sgd")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist", choices=("mnist", "mnist-small"))
    p.add_argument("--data-dir", help="folder with the MNIST IDX files (not needed for mnist-small)")
    p.add_argument("--iters", type=int, default=50, help="iterations of every lifted model (epochs of SGD)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {list(METHODS)}")
    p.add_argument("--fenchel-iters", type=int, default=5, help="MM steps per Fenchel W-update")
    p.add_argument("--sgd-batch", type=int, default=500, help="batch size of the SGD network")
    p.add_argument("--n-train", type=int, default=None, help="random training subsample (default: all)")
    p.add_argument("--n-test", type=int, default=None, help="random test subsample (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--out", default="bench_fig1", help="output folder (each run directory is replaced)")
    p.add_argument("--quick", action="store_true", help="smoke scale: the shipped MNIST subset, 3 iterations")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.quick and (args.dataset not in (p.get_default("dataset"), "mnist-small") or args.data_dir is not None):
        p.error("--quick runs on the shipped MNIST subset; drop --dataset/--data-dir, or drop --quick")
    if args.quick:
        args.dataset, args.data_dir, args.iters = "mnist-small", None, min(args.iters, 3)
    if args.iters < 1:
        p.error(f"--iters: expected a positive integer, got {args.iters}")
    unknown = [m for m in args.methods.split(",") if m not in METHODS]
    if unknown:
        p.error(f"--methods: unknown {unknown}; choose from {list(METHODS)}")
    return args


def settings_of(method: str, args: argparse.Namespace) -> dict:
    """The settings of one model's run on top of the Fig. 1 base."""
    if method == "fenchel":
        return {"method": method, "inexact": True, "inexact_iters": args.fenchel_iters}
    if method == "sgd":
        return {"method": method, "batch_size": args.sgd_batch}
    return {"method": method}


def accuracy_at(rows: list[dict], key: str, x: float) -> float:
    """Test accuracy of the last row with ``rows[key] <= x`` (NaN when there is none)."""
    before = [r["test_acc"] for r in rows if r[key] <= x]
    return before[-1] if before else math.nan


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    base = RunConfig().with_values({
        "dataset": args.dataset, "data_dir": args.data_dir, "loss": "mse", "batch_size": None,
        "epochs": args.iters, "seed": args.seed, "threads": args.threads, "n_train": args.n_train,
        "n_test": args.n_test})
    data = load_data(base)
    out = Path(args.out)
    results = {}
    for method in args.methods.split(","):
        cfg = base.with_values(settings_of(method, args))
        run_dir = out / method
        if run_dir.exists():
            shutil.rmtree(run_dir)
        t0 = time.perf_counter()
        s = train_run(cfg, run_dir, progress=not args.no_progress, data=data)
        results[method] = {"rows": read_metrics(run_dir), "summary": s}
        print(f"{method:<12} test acc {s['final']['test_acc']:.4f}  {s['time_per_epoch']:.2f} s/iteration "
              f"(wall {time.perf_counter() - t0:.0f} s)", flush=True)
    machine = (f"{platform.machine()}, {args.threads or torch.get_num_threads()} torch thread(s), torch "
               f"{torch.__version__}, cpu, float64")
    # equal wall time: the training time of the fastest lifted model's whole run (SGD is the backprop reference);
    # equal iterations: the first, the tenth and the last
    lifted = [r["summary"]["time"] for m, r in results.items() if m != "sgd"] or \
        [r["summary"]["time"] for r in results.values()]
    t_eq = min(lifted)
    its = sorted({1, min(10, args.iters), args.iters})
    report = [f"# Fig. 1: 784-300-10, MSE, {args.dataset} ({len(data[1]['y'])} train / {len(data[1]['y_test'])} "
              "test)", "",
              f"Command: `python benchmarks/bench_fig1.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
              f"Machine: {machine}; {time.strftime('%Y-%m-%d')}.", "",
              "| method | final test acc | paper | s / iteration | " + " | ".join(f"acc @ it {i}" for i in its)
              + f" | acc @ {t_eq:.0f} s |", "|---|---|---|---|" + "---|" * (len(its) + 1)]
    for method, r in results.items():
        s, rows = r["summary"], r["rows"]
        report.append(f"| {method} | {s['final']['test_acc']:.4f} | {PAPER[method]} | {s['time_per_epoch']:.2f} | "
                      + " | ".join(f"{accuracy_at(rows, 'epoch', i):.4f}" for i in its)
                      + f" | {accuracy_at(rows, 'time', t_eq):.4f} |")
    text = "\n".join(report)
    print("\n" + text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(text + "\n")
    print(f"\nfigure: fenchel-cvx plot {out} -o fig1.png   (per second: fenchel-cvx plot {out} --x time -o "
          "fig1_time.png)")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
