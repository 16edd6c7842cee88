"""Benchmark: inexact BCD (majorization-minimization W-updates) vs Adam, per epoch, on MNIST 784-300-10.

Adds to ``bench_training.py`` what it does not sweep: the number of MM steps per W-update (``inexact_iters``),
with the per-epoch wall time (training only) and test accuracy after every epoch, and Adam's time per epoch in
the same process for the ratio. Settings of Appendix C's batched run: batch 500, K = 1, lam 0.1, rho 0,
gamma (1, 100), cross-entropy, ReLU, float64.

Then, with ``--breakdown N``, where the time of one batch goes: ``N`` batches of BCD (``inexact_iters`` = the
first of ``--iters``) and of Adam on the same batches, per block (``x_last``, ``x_hidden``, ``w_last``,
``w_hidden``) and the rest of a step (feed-forward, argument checks), in milliseconds per batch.

``--x-iters 5,10`` adds runs whose FISTA X-updates are capped too (``BCDSettings.inexact_x_iters``).

``--running`` adds a run with ``curvature="running"`` (one preconditioned W-step per block with a running curvature
estimate, X-updates capped at ``--running-x-iters`` (10) uncertified iterations, steps times ``--relax``) and makes
``--breakdown`` time that mode (``--x-float32``: its X-steps in float32). ``--gamma G0 GL`` sets every run's
proximal weights (Appendix C's 1 100).
``--descent N`` runs that mode for ``N`` batches and counts the W-steps that increased their block objective
(each block's objective evaluated before and after its step; the running steps are not guaranteed to decrease it).
``--data-dir DIR`` uses full MNIST instead of the shipped subset.

Usage::

    python benchmarks/bench_inexact.py --threads 1 --epochs 3 --iters 1,3,5     # shipped 10k/2k subset
    python benchmarks/bench_inexact.py --threads 1 --epochs 0 --iters 1 --breakdown 40
    python benchmarks/bench_inexact.py --threads 1 --epochs 0 --running --breakdown 100 --data-dir DIR
    python benchmarks/bench_inexact.py --threads 1 --epochs 0 --descent 240 --data-dir DIR
    python benchmarks/bench_inexact.py --threads 1 --epochs 0 --descent 240 --data-dir DIR --relax 2 --gamma 0.1 100
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from fenchel_cvx.runs import load_data, make_trainer, read_metrics, train_run
from fenchel_cvx.settings import RunConfig


def _curve(run_dir: Path) -> list[tuple[float, float]]:
    """(seconds of training in that epoch, test accuracy at its end) per whole epoch."""
    rows = [r for r in read_metrics(run_dir) if float(r["epoch"]).is_integer() and float(r["epoch"]) > 0]
    out, prev = [], 0.0
    for r in rows:
        out.append((float(r["time"]) - prev, float(r["test_acc"])))
        prev = float(r["time"])
    return out


def _gammas(f) -> str:
    """The proximal weights of a run, as its tables print them."""
    return ", ".join(f"{g:g}" for g in f.gamma)


def _breakdown(cfg: RunConfig, data, batches: int) -> str:
    """Milliseconds per batch: each BCD block, the rest of a BCD step, and an Adam step, on the same batches."""
    ds, arrays = data
    bcd = make_trainer(cfg, ds.image_shape, ds.n_classes)
    adam = make_trainer(cfg.replace(method="adam"), ds.image_shape, ds.n_classes)
    Xs, Y, _ = bcd._prepare(arrays["X"], arrays["y"], "X", "y")
    X0 = Xs.T.contiguous()
    sb, sa = bcd.init_state(), adam.init_state()
    bs = cfg.train.batch_size
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
    f = cfg.fenchel
    mode = (f"curvature=running, inexact_x_iters={f.inexact_x_iters}{' (float32)' if f.inexact_x_float32 else ''}, "
            f"relax {f.curvature_relax:g}, gamma {_gammas(f)}" if f.curvature == "running"
            else f"inexact_iters={f.inexact_iters}")
    head = (f"Per batch of {bs}, mean over {n} batches, {torch.get_num_threads()} torch thread(s), "
            f"{mode}:\n\n| part | ms / batch |\n|---|---|")
    return head + "\n" + "\n".join(rows)


def _descent(cfg: RunConfig, data, batches: int) -> str:
    """Run ``batches`` batches of the running-curvature mode; count W-steps that raised their block objective."""
    ds, arrays = data
    bcd = make_trainer(cfg, ds.image_shape, ds.n_classes)
    changes: dict[str, list[float]] = defaultdict(list)

    def penalty(W, b, kw):
        val = kw["rho"] * float((W * W).sum())
        if kw.get("gamma", 0.0) > 0:
            val += kw["gamma"] * float(((W - kw["W0"]) ** 2).sum() + ((b - kw["b0"]) ** 2).sum())
        return val

    def objective(name, kw, W_, b_):
        pre = W_ @ kw["X_in"] + b_[:, None]
        if name == "w_hidden":
            return kw["lam"] * float(kw["act"].B_sum(kw["X_next"], pre)) + penalty(W_, b_, kw)
        return float(kw["loss"].value(kw["Y"], pre)) + penalty(W_, b_, kw)

    face = bcd.face

    def watched(name, **kw):
        r = face(name, **kw)
        if kw.get("method") == "running":
            before, after = objective(name, kw, kw["W_init"], kw["b_init"]), objective(name, kw, r.W, r.b)
            changes[name].append((after - before) / max(abs(before), 1e-300))
        return r

    bcd._face = watched
    Xs, Y, _ = bcd._prepare(arrays["X"], arrays["y"], "X", "y")
    st = bcd.init_state()
    gen, bs = torch.Generator().manual_seed(cfg.train.seed), cfg.train.batch_size
    per_epoch = Xs.shape[0] // bs
    for k in range(batches):
        if k % per_epoch == 0:
            perm = torch.randperm(Xs.shape[0], generator=gen)
        idx = perm[(k % per_epoch) * bs:][:bs]
        bcd.step(st, Xs[idx].T.contiguous(), Y[:, idx])
    f = cfg.fenchel
    lines = [(f"Running-curvature W-steps over {batches} batches of {bs} (refresh every {f.curvature_every}, rank "
              f"{f.curvature_rank}, relax {f.curvature_relax:g}, gamma {_gammas(f)}): "
              "relative change of each block objective\n"),
             "| block | steps | increased | largest change | median change |", "|---|---|---|---|---|"]
    for name, ch in changes.items():
        t = torch.tensor(ch)
        lines.append(f"| {name} | {len(ch)} | {int((t > 0).sum())} | {float(t.max()):+.3g} | "
                     f"{float(t.median()):+.3g} |")
    return "\n".join(lines)


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, e.g. 1,3,5, got {text!r}")
    return values


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--iters", default="1,3,5", type=_positive_ints, help="inexact_iters values, comma-separated")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run directories (default: a temporary folder)")
    p.add_argument("--breakdown", type=int, default=0, help="batches for the per-block time table (0: none)")
    p.add_argument("--x-iters", default="", help="also cap the FISTA X-updates (inexact_x_iters) at these values, "
                   "comma-separated, one run each with the first of --iters (default: X-updates solved to tol)")
    p.add_argument("--running", action="store_true", help="add a curvature='running' run; --breakdown times it")
    p.add_argument("--descent", type=int, default=0, help="batches of the running mode whose W-steps are checked "
                   "for an increase of their block objective (0: none)")
    p.add_argument("--data-dir", default=None, help="MNIST IDX folder (default: the shipped 10k/2k subset)")
    p.add_argument("--relax", type=float, default=1.0, help="curvature_relax of the running mode (default 1)")
    p.add_argument("--gamma", type=float, nargs="+", default=[1.0, 100.0],
                   help="proximal weights gamma_l of every run (default: Appendix C's 1 100)")
    p.add_argument("--running-x-iters", type=int, default=10, help="inexact_x_iters of the running mode (default 10)")
    p.add_argument("--x-float32", action="store_true", help="the running mode's X-steps in float32 "
                   "(inexact_x_float32)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = RunConfig().with_values({
        "dataset": "mnist" if args.data_dir else "mnist-small", "data_dir": args.data_dir, "loss": "ce",
        "batch_size": 500, "epochs": args.epochs, "lam": 0.1, "rho": 0.0, "gamma": args.gamma, "K": 1,
        "inexact": True, "seed": args.seed})
    running = base.with_values({"curvature": "running", "inexact_x_iters": args.running_x_iters,
                                "curvature_relax": args.relax, "inexact_x_float32": args.x_float32})
    data = load_data(base)
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_inexact_"))
    runs = {f"fenchel mm x{k}": base.with_values({"inexact_iters": k}) for k in args.iters}
    for x in filter(None, args.x_iters.split(",")):
        runs[f"fenchel mm x{args.iters[0]}, X capped at {x}"] = base.with_values(
            {"inexact_iters": args.iters[0], "inexact_x_iters": int(x)})
    if args.running:
        runs["fenchel running, X capped at 10"] = running
    runs["adam"] = base.with_values({"method": "adam", "inexact": None})
    if args.breakdown:
        first = base.with_values({"inexact_iters": int(args.iters.split(",")[0])})
        print(_breakdown(running if args.running else first, data, args.breakdown))
    if args.descent:
        print(_descent(running, data, args.descent))
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
                 f"threads, torch {torch.__version__}, float64, {base.data.dataset}.")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
