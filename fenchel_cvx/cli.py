"""The ``fenchel-cvx`` command line: ``train`` a Fenchel lifted network (or a backprop baseline) and ``plot`` runs.

Main job, no arguments needed::

    fenchel-cvx train

trains the batched (Algorithm 2) 784-300-10 ReLU cross-entropy network on the MNIST subset shipped with the
package (10,000 train / 2,000 test), with Appendix C's batched hyperparameters (batch 500, K = 1, lam = 0.1, no
ridge, proximal weights gamma = (1, 100)) and inexact W-updates (one warm-started majorization-minimization step
per block), for 3 epochs; then an Adam network (lr 1e-3) of the same architecture, initial weights, batches and
epochs; and prints both final test accuracies (0.930 vs 0.9185 with seed 0; 13-19 s on a quiet 2-core CPU,
about 30 s with ``--threads 1`` on a busy one). Every run writes a run directory (see :mod:`fenchel_cvx.runs`); ``fenchel-cvx plot
RUN_DIR ...`` overlays their test-accuracy curves (paper Figs. 1-2) into a PNG.

Errors the user can fix (a missing data file, a bad option, a checkpoint of another run) print one message
naming the culprit and exit with status 2; an interrupted run prints how to resume it and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import __version__
from .errors import FenchelError

__all__ = ["build_parser", "main"]

_ACTIVATIONS = ("relu", "leaky_relu", "sigmoid", "tanh")
_DATASETS = ("mnist-small", "mnist", "cifar10", "synthetic")


def _floats(text: str) -> float | list[float]:
    """``"0.1"`` -> 0.1, ``"1,100"`` -> [1.0, 100.0] (per-layer values)."""
    try:
        vals = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or a comma-separated list of numbers "
                                         f"(one per layer, e.g. 1,100), got {text!r}") from None
    return vals[0] if len(vals) == 1 else vals


def _arch(text: str) -> list[int]:
    try:
        sizes = [int(t) for t in text.replace("x", "-").split("-")]
    except ValueError:
        sizes = []
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"expected layer sizes joined by '-', e.g. 784-300-10, got {text!r}")
    return sizes


def _batch(text: str) -> int:
    if text.lower() in ("full", "none", "0"):
        return 0  # full batch; 0 keeps None free to mean "not given"
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'full' (Algorithm 1), got {text!r}")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return v


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``fenchel-cvx`` (subcommands ``train`` and ``plot``)."""
    parser = argparse.ArgumentParser(
        prog="fenchel-cvx",
        description="Fenchel lifted networks (Gu, Askari, El Ghaoui, AISTATS 2020): train by block coordinate "
                    "descent, compare with backprop, plot. Run `fenchel-cvx train` for the main job.")
    parser.add_argument("--version", action="version", version=f"fenchel-cvx {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{train,plot}")

    t = sub.add_parser(
        "train", help="train a network into a run directory (default: Fenchel BCD vs Adam on the MNIST subset)",
        description="Train a Fenchel lifted network by block coordinate descent (Algorithms 1-2) or a backprop\n"
                    "baseline, into a run directory (config.json, metrics.csv, checkpoint.pt, model.npz,\n"
                    "summary.json). With no options: batched 784-300-10 ReLU cross-entropy on the shipped MNIST\n"
                    "subset, Appendix C hyperparameters, next to an Adam run of the same budget.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  fenchel-cvx train                                   # main job: Fenchel vs Adam\n"
               "  fenchel-cvx train --dataset mnist --data-dir data --epochs 10 --out runs/fig2\n"
               "  fenchel-cvx train --out runs/fig2 --resume --epochs 12   # continue / extend a run\n"
               "  fenchel-cvx train --batch-size full --loss mse --compare sgd   # Algorithm 1, Fig. 1 setting\n"
               "  fenchel-cvx plot runs/fig2 -o fig2.png")
    g = t.add_argument_group("model and data")
    g.add_argument("--method", choices=("fenchel", "adam", "sgd"), help="trainer (default: fenchel)")
    g.add_argument("--dataset", choices=_DATASETS, help="data set (default: mnist-small, shipped; mnist and "
                   "cifar10 need --data-dir)")
    g.add_argument("--data-dir", metavar="DIR", help="folder holding the data files (mnist: the four IDX files; "
                   "cifar10: cifar-10-batches-py or cifar10_*.npz); nothing is downloaded")
    g.add_argument("--arch", type=_arch, metavar="N-H-P", help="layer sizes, e.g. 784-300-10 (default: "
                   "<features>-300-<classes> of the data set)")
    g.add_argument("--loss", choices=("ce", "mse"), help="output loss, summed over samples (default: ce)")
    g.add_argument("--activation", choices=_ACTIVATIONS, help="hidden activation (default: relu)")
    g.add_argument("--n-train", type=_positive_int, metavar="M", help="synthetic: training samples (default "
                   "1000); real data: random subsample of this size")
    g.add_argument("--n-test", type=_positive_int, metavar="M", help="as --n-train for the test set (synthetic "
                   "default 200)")
    g.add_argument("--seed", type=int, help="seed of the initial weights, batch order and synthetic data "
                   "(default: 0)")
    g = t.add_argument_group("training")
    g.add_argument("--batch-size", type=_batch, metavar="M|full", help="samples per batch (default: 500, "
                   "Appendix C); 'full' runs Algorithm 1 / full-batch gradient descent")
    g.add_argument("--epochs", type=_positive_int, help="passes over the training data (default: 3); with "
                   "--resume, the new total")
    g.add_argument("--lam", type=_floats, metavar="L", help="Lagrange multipliers lam_l, one or per hidden layer "
                   "(default: 0.1)")
    g.add_argument("--rho", type=_floats, metavar="R", help="ridge weights rho_l ||W_l||^2, one or per layer, "
                   "also the baselines' weight penalty (default: 0 batched, 0.01,10 full batch)")
    g.add_argument("--gamma", type=_floats, metavar="G", help="proximal weights gamma_l ||W_l - W_l^0||^2 to the "
                   "previous batch, one or per layer (default: 1,100 batched, 0 full batch)")
    g.add_argument("--K", type=_positive_int, help="BCD alternations per batch (default: 1)")
    ex = g.add_mutually_exclusive_group()
    ex.add_argument("--inexact", action="store_true", default=None, help="inexact W-updates: --inexact-iters "
                    "warm-started majorization-minimization steps per block (J still never increases) instead of "
                    "exact solves (default for batched runs)")
    ex.add_argument("--exact", dest="inexact", action="store_false", default=None, help="solve every W-update to --tol (default "
                    "for --batch-size full; slow on a CPU for batched runs)")
    g.add_argument("--inexact-iters", type=_positive_int, metavar="N", help="iterations per inexact W-update "
                   "(default: 1)")
    g.add_argument("--inexact-x-iters", type=_positive_int, metavar="N", help="with --inexact, also cap the "
                   "FISTA X-updates at N iterations (default: solved to --tol)")
    g.add_argument("--curvature", choices=("batch", "running"), help="with --inexact, the curvature of the W-steps: "
                   "'batch' (default), the batch's own majorization bound, monotone and certified; 'running', one "
                   "step per block with a running estimate of it, about a backprop step's cost, uncertified (pair it "
                   "with --inexact-x-iters)")
    g.add_argument("--curvature-every", type=_positive_int, metavar="N", help="batches between refreshes of the "
                   "running curvature (default: 100)")
    g.add_argument("--curvature-rank", type=_positive_int, metavar="K", help="eigenpairs kept of each running "
                   "curvature (default: 64)")
    g.add_argument("--curvature-relax", type=float, metavar="OMEGA", help="step multiplier of the running-curvature "
                   "W-steps (default: 1; values above 2 over-relax)")
    g.add_argument("--curvature-line-search", action="store_true", default=None, help="running-curvature W-steps "
                   "take their length from a line search, so J never rises block to block (one more GEMM per hidden "
                   "layer)")
    g.add_argument("--tol", type=float, help="subproblem solver tolerance (default: 1e-6)")
    g.add_argument("--lr", type=float, help="learning rate of adam/sgd (default: Appendix C, adam 1e-3, sgd "
                   "1e-2, on the mean loss of a batch)")
    g.add_argument("--device", help="torch device, e.g. cpu or cuda (default: cpu)")
    g.add_argument("--dtype", choices=("float64", "float32"), help="precision (default: float64)")
    g.add_argument("--eval-every", type=_positive_int, metavar="N", help="also evaluate every N batches (default: "
                   "once per epoch)")
    g.add_argument("--threads", type=_positive_int, metavar="N", help="torch CPU threads (default: torch's choice; "
                   "use 1 on a machine shared with other jobs, where more threads oversubscribe the cores and "
                   "small operations slow down 10-50x)")
    g = t.add_argument_group("output")
    g.add_argument("--out", metavar="DIR", help="run directory (default: runs/<method>-<dataset>-...-<time>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint "
                   "(options other than --epochs, --device, --eval-every, --data-dir must match)")
    g.add_argument("--compare", choices=("adam", "sgd", "none"), help="also train this baseline with the same "
                   "architecture, initial weights, batches and epochs, into DIR/compare-<name> (default: adam "
                   "for --method fenchel, none otherwise)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")

    p = sub.add_parser("plot", help="overlay test-accuracy curves of run directories into a PNG",
                       description="Overlay a history column (default: test accuracy) against epochs for several "
                                   "run directories, like the paper's Figs. 1-2. A run directory's compare-* runs "
                                   "are included; a folder of run directories (a benchmark output) works too.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories written by `fenchel-cvx train`")
    p.add_argument("-o", "--output", metavar="PNG", help="output file (default: <first RUN_DIR>/<metric>.png)")
    p.add_argument("--metric", default="test_acc", help="history column on the y axis: test_acc (default), "
                   "train_acc, test_loss, train_loss, J, primal, penalty")
    p.add_argument("--x", default="epoch", choices=("epoch", "step", "time"), help="x axis (default: epoch)")
    p.add_argument("--title", help="figure title")
    p.add_argument("--ylim", type=_floats, metavar="LO,HI", help="range of the y axis, e.g. 0.93,0.98 to tell close "
                   "curves apart (default: fit every curve)")
    p.add_argument("--no-nested", action="store_true", help="ignore compare-* runs inside the run directories")
    return parser


_TRAIN_KEYS = {"method": "method", "dataset": "dataset", "data_dir": "data_dir", "arch": "sizes", "loss": "loss",
               "activation": "activation", "batch_size": "batch_size", "epochs": "epochs", "lam": "lam",
               "rho": "rho", "gamma": "gamma", "K": "K", "inexact": "inexact", "inexact_iters": "inexact_iters",
               "inexact_x_iters": "inexact_x_iters", "curvature": "curvature", "curvature_every": "curvature_every",
               "curvature_rank": "curvature_rank", "curvature_relax": "curvature_relax",
               "curvature_line_search": "curvature_line_search", "tol": "tol", "lr": "lr", "device": "device", "dtype": "dtype", "seed": "seed",
               "eval_every": "eval_every", "n_train": "n_train", "n_test": "n_test"}


def _overrides(args: argparse.Namespace) -> dict:
    """The RunConfig fields the user set explicitly."""
    out = {}
    for arg, key in _TRAIN_KEYS.items():
        v = getattr(args, arg)
        if v is not None:
            out[key] = (None if v == 0 else v) if arg == "batch_size" else v
    return out


def _fmt(v: Any, spec: str) -> str:
    try:
        return format(float(v), spec)
    except (TypeError, ValueError):
        return "-"


def _report(summaries: Sequence[dict]) -> str:
    lines = [f"{'method':<9}{'epochs':>7}{'test acc':>10}{'train acc':>11}{'train time':>12}{'s/epoch':>9}  run dir"]
    for s in summaries:
        f = s.get("final") or {}
        lines.append(f"{s['method']:<9}{s['epochs']:>7}{_fmt(f.get('test_acc'), '.4f'):>10}"
                     f"{_fmt(f.get('train_acc'), '.4f'):>11}{_fmt(s.get('time'), '.1f') + ' s':>12}"
                     f"{_fmt(s.get('time_per_epoch'), '.2f'):>9}  {s['run_dir']}")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from .runs import CONFIG, RunConfig, default_run_name, load_data, train_run

    overrides = _overrides(args)
    progress = not args.no_progress
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    if args.resume:
        if not args.out:
            raise FenchelError("--resume: expected --out DIR naming the run directory to continue, got none")
        out = Path(args.out)
    else:
        out = Path(args.out) if args.out else Path(default_run_name(replace(RunConfig(), **overrides)))
        args.out = str(out)  # so that an interruption message names it
    summary = train_run(None, out, resume=args.resume, overrides=overrides, progress=progress)
    cfg = RunConfig.from_dict(json.loads((out / CONFIG).read_text())["config"])
    compare = args.compare or ("adam" if cfg.method == "fenchel" else "none")
    summaries = [summary]
    if compare != "none" and compare != cfg.method:
        cdir = out / f"compare-{compare}"
        data = load_data(cfg)
        if args.resume and (cdir / CONFIG).exists():
            keep = {k: v for k, v in overrides.items() if k in RunConfig.RESUMABLE}
            summaries.append(train_run(None, cdir, resume=True, overrides=keep, progress=progress, data=data))
        else:
            summaries.append(train_run(replace(cfg, method=compare), cdir, progress=progress, data=data))
    print(f"fenchel-cvx: {'-'.join(map(str, cfg.sizes))} {cfg.activation} {cfg.loss} on {cfg.dataset} "
          f"({summary['n_train']} train / {summary['n_test']} test), batch {cfg.batch_size or 'full'}, "
          f"{cfg.epochs} epochs, seed {cfg.seed}, {cfg.device} {cfg.dtype}")
    print(_report(summaries))
    print(f"plot the curves with: fenchel-cvx plot {out}")
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from .plots import plot_accuracy
    from .runs import collect_runs

    runs = collect_runs(args.runs, nested=not args.no_nested)
    output = Path(args.output) if args.output else Path(args.runs[0]) / f"{args.metric}.png"
    if args.ylim is not None and (not isinstance(args.ylim, list) or len(args.ylim) != 2):
        raise FenchelError(f"--ylim: expected two numbers LO,HI (e.g. 0.93,0.98), got {args.ylim}")
    plot_accuracy(runs, output, metric=args.metric, x=args.x, title=args.title,
                  ylim=None if args.ylim is None else tuple(args.ylim))
    print(f"wrote {output} ({', '.join(runs)})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fenchel-cvx`` console script; returns the exit status.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments after the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _cmd_train(args) if args.command == "train" else _cmd_plot(args)
    except FenchelError as exc:
        print(f"fenchel-cvx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        where = f" --out {args.out}" if getattr(args, "out", None) else " --out <run dir>"
        print(f"\nfenchel-cvx {args.command}: interrupted; the last completed epoch is checkpointed, continue "
              f"with: fenchel-cvx train{where} --resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover - `python -m fenchel_cvx.cli`
    sys.exit(main())
