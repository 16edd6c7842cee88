"""Benchmark: Fenchel lifted network (BCD) vs Adam vs SGD on MNIST, 784-300-10 (paper Figs. 1-2, issue 5).

Parts (``--parts abc``):

(a) batched cross-entropy (Algorithm 2, Appendix C: batch 500, K = 1, lam 0.1, gamma (1, 100), no ridge), test
    accuracy per epoch for Fenchel (exact W-updates), Fenchel (inexact W-updates), Adam (lr 1e-3), SGD (lr 1e-2,
    Appendix C) and SGD (lr 1e-1, which is what reproduces the paper's 0.943 under the mean-loss convention).
    ``fenchel-tuned``: gamma = (1, 10) and three MM steps per W-update, chosen on a validation split of the
    training set by ``benchmarks/tune_batched.py`` (the test set is not used to choose); ``fenchel-tuned-k2``
    the same with K = 2 alternations per batch (also chosen there, at about twice the time). ``fenchel-fast``:
    Appendix C's settings with ``curvature="running"`` (one preconditioned W-step per block with a running
    curvature estimate, X-updates capped at 10 uncertified FISTA steps): about twice an Adam epoch;
    ``fenchel-fast-k2`` the same with K = 2; ``fenchel-fast-tuned`` with the W-steps over-relaxed 1.5x
    (``curvature_relax``): the largest multiplier tried under which no W-step raised its block objective in 240
    training batches (``bench_inexact.py --descent 240 --relax 1.5``; at 2, 48 of 240 hidden steps did);
    ``fenchel-fast-ls`` with a line search on every W-step instead (monotone J, one more GEMM per batch).
    ``fenchel-fast-r2``: over-relaxed 2x with the hidden proximal weight cut to 0.1 (``gamma = (0.1, 100)``),
    chosen on the validation split (``tune_batched.py``); some hidden W-steps raise their block objective
    (``bench_inexact.py --descent 240 --relax 2 --gamma 0.1 100``: 29 of 240); ``fenchel-fast-r175`` the same at
    1.75x (1 of 240); ``fenchel-fast-r175-x32`` that with its X-steps in float32 (``inexact_x_float32``), and
    ``fenchel-fast-r175-x15`` with 15 of them; ``fenchel-fast-r2-x15`` relax 2 with 15 float32 X-steps.
    ``fenchel-default``: no mode flag, what ``fenchel-cvx train`` runs -- the fast default
    (``fenchel_cvx.settings.FAST_MODE``: the values of ``fenchel-fast-r2-x15``); ``fenchel-inexact`` is the MM mode
    of Appendix C. Paper, 10 epochs: Fenchel 0.976, Adam 0.976, SGD 0.943.
(b) full-batch MSE (Algorithm 1, Appendix C non-batched: lam 0.1, rho (1e-2, 10)), the Fig. 1 setting.
    Paper: 0.961 (neural network by SGD: 0.957).
(c) wall time per epoch (training only, evaluation excluded) of Fenchel BCD over Adam on the same device and
    dtype, and time to 97 % test accuracy; exact vs inexact W-updates.

Every run is a run directory under ``--out`` (``a/fenchel``, ``a/adam``, ...), so
``fenchel-cvx plot OUT/a -o fig2.png`` draws the Fig. 2-like figure. Prints one table and writes it to
``OUT/results.md`` (and the numbers to ``OUT/results.json``).

Usage (``DIR`` holds the four MNIST IDX files, ``train-images-idx3-ubyte.gz`` etc.)::

    python benchmarks/bench_training.py --data-dir DIR                     # full scale (10 epochs, 60k)
    python benchmarks/bench_training.py --quick                            # shipped 10k subset, 2 epochs
    python benchmarks/bench_training.py --data-dir D --n-train 20000 --epochs 3 --parts ac
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from fenchel_cvx._checks import file_in_the_way
from fenchel_cvx.runs import collect_runs, load_data, read_metrics, train_run
from fenchel_cvx.settings import RunConfig


def _parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", help="folder with the four MNIST IDX files (or DIR/mnist/); without it the "
                   "shipped 10k/2k subset (mnist-small) is used")
    p.add_argument("--out", default="bench_runs", help="output folder (default: bench_runs; wiped per part)")
    p.add_argument("--epochs", type=int, default=10, help="epochs of part (a) (default 10, as in Fig. 2)")
    p.add_argument("--full-epochs", type=int, default=None, help="BCD sweeps / GD epochs of part (b) (default: "
                   "--epochs)")
    p.add_argument("--n-train", type=int, default=None, help="random training subsample (default: all)")
    p.add_argument("--n-test", type=int, default=None, help="random test subsample (default: all)")
    p.add_argument("--full-n-train", type=int, default=None, help="training samples of part (b) (default: "
                   "--n-train)")
    p.add_argument("--parts", default="abc", help="which parts to run: any of a, b, c (c needs a's runs)")
    p.add_argument("--runs", default="fenchel,fenchel-default,fenchel-inexact,fenchel-tuned,adam,sgd,sgd-lr0.1",
                   help="part (a) runs, comma-separated")
    p.add_argument("--b-runs", default="fenchel,fenchel-inexact,sgd-lr0.1",
                   help="part (b) runs, comma-separated (exact Algorithm 1 on 60k samples needs a GPU)")
    p.add_argument("--inexact-iters", type=int, default=None, help="MM steps per inexact W-update in part (a) "
                   "(default: the settings default, 1)")
    p.add_argument("--b-inexact-iters", type=int, default=None, help="MM steps per inexact W-update in part (b) "
                   "(default: the settings default, 1)")
    p.add_argument("--quick", action="store_true", help="smoke scale: 2 epochs, (b) on 2000 samples")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=None, help="extra evaluations every N batches (sharper "
                   "time-to-97%%)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on a shared machine)")
    p.add_argument("--interleave", action="store_true", help="part (a): train the runs epoch by epoch in turn (each "
                   "resumed from its checkpoint, bitwise as one run), so drifts of the machine's speed hit every run "
                   "alike; the s/epoch ratios are then comparable")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    for flag in ("full_epochs", "full_n_train"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: expected a positive integer, got {getattr(args, flag)}")
    blocking = file_in_the_way(Path(args.out))
    if blocking is not None or Path(args.out).is_file():
        p.error(f"--out: cannot make the folder {args.out!r}: {str(blocking or args.out)!r} is a file")
    if not args.parts or set(args.parts) - set("abc"):
        p.error(f"--parts: expected letters of a, b, c (e.g. ac), got {args.parts!r}")
    for flag in ("epochs", "inexact_iters"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: expected a positive integer, got {getattr(args, flag)}")
    if args.quick:
        args.epochs = min(args.epochs, 2)
        args.full_n_train = 2000 if args.full_n_train is None else args.full_n_train
    args.full_epochs = args.epochs if args.full_epochs is None else args.full_epochs
    args.full_n_train = args.n_train if args.full_n_train is None else args.full_n_train
    return args


_PART_A = {  # name -> overrides of the batched CE config
    "fenchel": {"method": "fenchel", "inexact": False},
    "fenchel-default": {"method": "fenchel"},  # `fenchel-cvx train` with no mode flag: the fast default
    "fenchel-inexact": {"method": "fenchel", "inexact": True, "curvature": "batch"},
    "fenchel-tuned": {"method": "fenchel", "inexact": True, "gamma": [1.0, 10.0], "inexact_iters": 3},
    "fenchel-tuned-k2": {"method": "fenchel", "inexact": True, "gamma": [1.0, 10.0], "inexact_iters": 3, "K": 2},
    "fenchel-fast": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10},
    "fenchel-fast-k2": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10, "K": 2},
    "fenchel-fast-tuned": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10,
                           "curvature_relax": 1.5},
    "fenchel-fast-ls": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10,
                        "curvature_line_search": True},
    "fenchel-fast-r2": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10,
                        "curvature_relax": 2.0, "gamma": [0.1, 100.0]},
    "fenchel-fast-r175": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10,
                          "curvature_relax": 1.75, "gamma": [0.1, 100.0]},
    "fenchel-fast-r175-x32": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 10,
                              "curvature_relax": 1.75, "gamma": [0.1, 100.0], "inexact_x_float32": True},
    "fenchel-fast-r175-x15": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 15,
                              "curvature_relax": 1.75, "gamma": [0.1, 100.0], "inexact_x_float32": True},
    "fenchel-fast-r2-x15": {"method": "fenchel", "inexact": True, "curvature": "running", "inexact_x_iters": 15,
                            "curvature_relax": 2.0, "gamma": [0.1, 100.0], "inexact_x_float32": True},
    "adam": {"method": "adam"},
    "sgd": {"method": "sgd"},
    "sgd-lr0.1": {"method": "sgd", "lr": 0.1},
}


def _with_iters(over: dict, iters: int | None) -> dict:
    """A run's overrides with ``inexact_iters = iters`` for an inexact Fenchel run that does not fix its own."""
    if over.get("inexact") and iters and "inexact_iters" not in over:
        return {**over, "inexact_iters": iters}
    return dict(over)


def _run(cfg: RunConfig, out: Path, progress: bool, data) -> dict:
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    s = train_run(cfg, out, progress=progress, data=data)
    s["wall"] = time.perf_counter() - t0
    return _finish(s, out)


def _run_interleaved(cfgs: dict, outs: dict, progress: bool, data) -> dict:
    """The runs ``cfgs`` (name -> config) trained one epoch at a time in turn, each resumed from its checkpoint."""
    epochs = {name: cfg.train.epochs for name, cfg in cfgs.items()}
    summaries, walls = {}, dict.fromkeys(cfgs, 0.0)
    for name in cfgs:
        if outs[name].exists():
            shutil.rmtree(outs[name])
    for e in range(1, max(epochs.values()) + 1):
        for name, cfg in cfgs.items():
            if e > epochs[name]:
                continue
            t0 = time.perf_counter()
            summaries[name] = (train_run(cfg.with_values({"epochs": 1}), outs[name], progress=progress, data=data)
                               if e == 1 else
                               train_run(None, outs[name], resume=True, overrides={"train.epochs": e},
                                         progress=progress, data=data))
            walls[name] += time.perf_counter() - t0
    return {name: _finish(dict(s, wall=walls[name]), outs[name]) for name, s in summaries.items()}


def _finish(s: dict, out: Path) -> dict:
    s["curve"] = [r["test_acc"] for r in read_metrics(out) if float(r["epoch"]).is_integer()]
    print(f"  {out.name:<16} test acc {s['final'].get('test_acc', math.nan):.4f}  train {s['time']:.1f} s "
          f"({s['time_per_epoch']:.2f} s/epoch), wall {s['wall']:.1f} s", flush=True)
    return s


def main(argv=None) -> int:
    args = _parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dataset = "mnist" if args.data_dir else "mnist-small"
    base = RunConfig().with_values({"dataset": dataset, "data_dir": args.data_dir, "loss": "ce", "batch_size": 500,
                                    "epochs": args.epochs, "device": args.device, "dtype": args.dtype,
                                    "seed": args.seed, "eval_every": args.eval_every, "n_train": args.n_train,
                                    "n_test": args.n_test})
    progress = not args.no_progress
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
                                f"threads, torch {torch.__version__}, device {args.device}, {args.dtype}",
                     "command": " ".join([Path(sys.argv[0]).name] + (argv or sys.argv[1:])), "a": {}, "b": {}}
    lines: list[str] = []
    if "a" in args.parts or "c" in args.parts:
        data = load_data(base)
        m, mt = len(data[1]["y"]), len(data[1]["y_test"])
        print(f"(a) batched CE 784-300-10 on {dataset} ({m} train / {mt} test), batch 500, {args.epochs} epochs",
              flush=True)
        cfgs = {}
        for name in [r for r in args.runs.split(",") if r]:
            if name not in _PART_A:
                raise SystemExit(f"--runs: unknown run {name!r}; choose from {sorted(_PART_A)}")
            cfgs[name] = base.with_values(_with_iters(_PART_A[name], args.inexact_iters))
        if args.interleave:
            results["a"] = _run_interleaved(cfgs, {name: out / "a" / name for name in cfgs}, progress, data)
        else:
            for name, cfg in cfgs.items():
                results["a"][name] = _run(cfg, out / "a" / name, progress, data)
        a = results["a"]
        lines.append(f"### (a) batched cross-entropy, 784-300-10, {dataset} ({m} train / {mt} test), batch 500, "
                     "K = 1, lam 0.1, gamma (1, 100), 1 MM step per inexact W-update (fenchel-tuned: gamma (1, 10), "
                     "3 MM steps)")
        lines.append("")
        lines.append("| epoch | " + " | ".join(a) + " |")
        lines.append("|---|" + "---|" * len(a))
        for e in range(max(len(s["curve"]) for s in a.values())):
            cells = [f"{s['curve'][e]:.4f}" if e < len(s["curve"]) else "" for s in a.values()]
            lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
        lines.append("| paper (10 ep.) | " + " | ".join({"fenchel": "0.976", "fenchel-inexact": "(0.976)",
                                                         "fenchel-tuned": "(0.976)", "fenchel-tuned-k2": "(0.976)",
                                                         "fenchel-fast": "(0.976)", "fenchel-fast-k2": "(0.976)",
                                                         "fenchel-fast-tuned": "(0.976)", "fenchel-fast-ls": "(0.976)",
                                                         "fenchel-fast-r2": "(0.976)", "fenchel-fast-r175": "(0.976)",
                                                         "fenchel-fast-r175-x32": "(0.976)",
                                                         "fenchel-fast-r175-x15": "(0.976)",
                                                         "fenchel-fast-r2-x15": "(0.976)", "fenchel-default": "(0.976)",
                                                         "adam": "0.976", "sgd": "0.943",
                                                         "sgd-lr0.1": "(0.943)"}.get(k, "") for k in a) + " |")
        lines.append("")
    if "c" in args.parts and results["a"]:
        a = results["a"]
        ref = a.get("adam")
        lines.append(f"### (c) training time ({results['machine']})")
        lines.append("")
        lines.append("| run | final test acc | s / epoch | ratio to Adam | time to 97 % test acc |")
        lines.append("|---|---|---|---|---|")
        for k, s in a.items():
            ratio = s["time_per_epoch"] / ref["time_per_epoch"] if ref else math.nan
            t97 = f"{s['time_to_97']:.1f} s" if s.get("time_to_97") is not None else "not reached"
            lines.append(f"| {k} | {s['final']['test_acc']:.4f} | {s['time_per_epoch']:.2f} | {ratio:.2f} | {t97} |")
        lines.append("")
    if "b" in args.parts:
        fb = base.with_values({"loss": "mse", "batch_size": None, "epochs": args.full_epochs,
                               "n_train": args.full_n_train, "eval_every": None})
        data = load_data(fb)
        m = len(data[1]["y"])
        print(f"(b) full-batch MSE 784-300-10 on {dataset} ({m} train), {args.full_epochs} sweeps", flush=True)
        part_b = {"fenchel": {"method": "fenchel", "inexact": False},
                  "fenchel-default": {"method": "fenchel"},  # `fenchel-cvx train` with no mode flag: the fast default
    "fenchel-inexact": {"method": "fenchel", "inexact": True, "curvature": "batch"},
                  "adam": {"method": "adam"}, "sgd": {"method": "sgd"}, "sgd-lr0.1": {"method": "sgd", "lr": 0.1}}
        for name in [r for r in args.b_runs.split(",") if r]:
            if name not in part_b:
                raise SystemExit(f"--b-runs: unknown run {name!r}; choose from {sorted(part_b)}")
            over = _with_iters(part_b[name], args.b_inexact_iters)
            results["b"][name] = _run(fb.with_values(over), out / "b" / name, progress, data)
        lines.append(f"### (b) full-batch MSE (Algorithm 1), 784-300-10, {m} train samples, {args.full_epochs} "
                     "sweeps, lam 0.1, rho (1e-2, 10)")
        lines.append("")
        lines.append("| run | final test acc | s / sweep | paper |")
        lines.append("|---|---|---|---|")
        for k, s in results["b"].items():
            paper = {"fenchel": "0.961", "fenchel-inexact": "(0.961)", "sgd-lr0.1": "0.957 (NN, SGD)"}.get(k, "")
            lines.append(f"| {k} | {s['final']['test_acc']:.4f} | {s['time_per_epoch']:.2f} | {paper} |")
        lines.append("")
    lines.append(f"Command: `{results['command']}`. Machine: {results['machine']}.")
    text = "\n".join(lines)
    print("\n" + text)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    if results["a"]:
        print(f"\nfigure: fenchel-cvx plot {out / 'a'} -o fig2.png   ({', '.join(collect_runs([out / 'a']))})")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
