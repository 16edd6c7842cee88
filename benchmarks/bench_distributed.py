"""Data-parallel BCD on this machine's processes: time per epoch and accuracy, 1 against P processes, and what
crosses processes per batch.

Three parts (``--parts``):

* ``scaling``: ``fenchel-cvx train`` with the given arguments, once in one process (``--threads`` 1 and, for the
  comparison at equal cores, P) and once under ``torchrun --nproc-per-node P`` (gloo, one thread per process);
  strong scaling keeps the global batch (each process trains on 1/P of it), ``--weak`` multiplies the batch by P
  (each process keeps the one-process batch). Table: seconds of training per epoch (evaluation excluded) and test
  accuracy after each epoch.
* ``traffic``: two processes train ``--probe-batches`` batches of the same run; every ``all_reduce`` the BCD makes
  is counted by subproblem (``fenchel_cvx.shards.TRAFFIC``) and set beside the per-process compute time of the
  same blocks.
* ``links``: the time of one gloo ``all_reduce`` between two processes here, by message size.

Usage::

    python benchmarks/bench_distributed.py --data-dir DIR -- --dataset mnist --epochs 10
    python benchmarks/bench_distributed.py --parts traffic -- --dataset mnist --data-dir DIR --arch lenet5

The arguments after ``--`` go to ``fenchel-cvx train`` (``--out``, ``--threads``, ``--compare`` and
``--no-progress`` are set here).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


def _train(args: list[str], out: Path, procs: int, threads: int) -> dict:
    """One ``fenchel-cvx train`` run (under torchrun when ``procs > 1``); its summary and metrics."""
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs)]
                if procs > 1 else [sys.executable])
    cmd = [*launcher, "-m", "fenchel_cvx", *args, "--out", str(out), "--threads", str(threads), "--compare", "none",
           "--no-progress"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    from fenchel_cvx.runs import read_metrics, read_summary

    return {"summary": read_summary(out), "metrics": read_metrics(out), "wall": time.perf_counter() - t0}


def _with_batch(args: list[str], factor: int) -> list[str]:
    """``args`` with ``--batch-size`` multiplied by ``factor`` (the default 500 when not given)."""
    out, seen = list(args), False
    for i, a in enumerate(out[:-1]):
        if a == "--batch-size":
            out[i + 1], seen = str(int(out[i + 1]) * factor), True
    return out if seen else [*out, "--batch-size", str(500 * factor)]


def scaling(train_args: list[str], procs: int, weak: bool) -> None:
    runs = [("1 process, 1 thread", 1, 1, train_args), (f"1 process, {procs} threads", 1, procs, train_args),
            (f"{procs} processes (gloo), 1 thread each", procs, 1,
             _with_batch(train_args, procs) if weak else train_args)]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, p, t, args) in enumerate(runs):
            results[name] = _train(["train", *args], Path(tmp) / f"run{i}", p, t)
            s = results[name]["summary"]
            print(f"{name}: {s['time_per_epoch']:.2f} s/epoch, final test acc {s['final']['test_acc']:.4f}",
                  flush=True)
    base = results[runs[0][0]]["summary"]["time_per_epoch"]
    print(f"\n{'weak' if weak else 'strong'} scaling, `fenchel-cvx train {' '.join(train_args)}`")
    print("| run | s / epoch | speed-up | test accuracy after each epoch |")
    print("|---|---|---|---|")
    for name, r in results.items():
        tpe = r["summary"]["time_per_epoch"]
        accs = ", ".join(f"{row['test_acc']:.4f}" for row in r["metrics"] if float(row["epoch"]).is_integer())
        print(f"| {name} | {tpe:.2f} | {base / tpe:.2f}x | {accs} |")


def _probe(train_args: list[str], batches: int, out: str) -> None:
    """(Under torchrun.) Train ``batches`` batches; write rank 0's all_reduce counts and block times to ``out``."""
    import torch

    from fenchel_cvx import shards
    from fenchel_cvx.cli import build_parser, settings_given
    from fenchel_cvx.runs import load_data, make_trainer
    from fenchel_cvx.settings import RunConfig

    args = build_parser().parse_args(["train", *train_args])
    cfg = RunConfig().with_values(settings_given(args))
    torch.set_num_threads(1)
    shards.init_from_environment(cfg.train.dist_backend, cfg.train.device)
    ds, arrays = load_data(cfg)
    trainer = make_trainer(cfg, ds.image_shape, ds.n_classes)
    m_b = cfg.train.batch_size
    X, y = arrays["X"][: m_b * (batches + 1)], arrays["y"][: m_b * (batches + 1)]
    state = trainer.init_state()
    trainer.settings = trainer.settings.replace(epochs=1, shuffle=False)
    Xs, Y, _ = trainer._prepare(X, y, "X", "y")
    rank, size = shards.world()
    blocks: dict[str, float] = {}
    for k in range(batches + 1):
        idx = shards.local_part(torch.arange(k * m_b, (k + 1) * m_b), rank, size)
        if k == 1:  # batch 0 warms up (first factorizations, allocations)
            shards.reset_traffic()
            blocks.clear()
        trainer.step(state, Xs[idx].T.contiguous(), Y[:, idx])
        for b in state.last["blocks"]:
            key = b["block"] + " " + str(b["layer"])
            blocks[key] = blocks.get(key, 0.0) + b["time"] / batches
    traffic = shards.reset_traffic()
    sizes = [(w.shape, w.numel()) for w in state.W]
    if rank == 0:
        Path(out).write_text(json.dumps({"traffic": traffic, "blocks": blocks, "batches": batches, "size": size,
                                         "weights": [[list(s), n] for s, n in sizes]}))
    shards.leave()


def _probe_run(train_args: list[str], batches: int, procs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "traffic.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
               str(HERE), "--probe", str(out), "--probe-batches", str(batches), "--", *train_args]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        return json.loads(out.read_text())


def traffic(train_args: list[str], batches: int, procs: int) -> None:
    one, many = _probe_run(train_args, batches, 1), _probe_run(train_args, batches, procs)
    n = many["batches"]
    print(f"\nper batch (mean of {n}), `fenchel-cvx train {' '.join(train_args)}`: what {procs} processes send, and "
          f"the seconds of each block in one process and per process of {procs} (all_reduces included)")
    print(f"| block | all_reduce calls | numbers summed (float64) | MB | s, 1 process | s, {procs} processes |")
    print("|---|---|---|---|---|---|")
    tot_calls = tot_nums = 0.0
    tags = sorted(many["traffic"])
    for tag in tags:
        calls, nums = many["traffic"][tag]
        tot_calls, tot_nums = tot_calls + calls / n, tot_nums + nums / n
        print(f"| {tag or 'other'} | {calls / n:.1f} | {nums / n:,.0f} | {8 * nums / n / 1e6:.3f} | | |")
    for key, sec in many["blocks"].items():
        print(f"| {key} | | | | {one['blocks'].get(key, float('nan')):.4f} | {sec:.4f} |")
    print(f"| total | {tot_calls:.1f} | {tot_nums:,.0f} | {8 * tot_nums / 1e6:.3f} | "
          f"{sum(one['blocks'].values()):.4f} | {sum(many['blocks'].values()):.4f} |")
    print("weights per layer: " + ", ".join(f"{'x'.join(map(str, s))} ({n:,})" for s, n in many["weights"]))


def _links_worker(out: str) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rows = []
    for n in (1, 1_000, 100_000, 1_000_000):
        t = torch.ones(n, dtype=torch.float64)
        for _ in range(3):
            dist.all_reduce(t)
        reps = 50 if n < 100_000 else 10
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(reps):
            dist.all_reduce(t)
        rows.append((n, (time.perf_counter() - t0) / reps))
    if dist.get_rank() == 0:
        Path(out).write_text(json.dumps(rows))
    dist.destroy_process_group()


def links() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "links.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(HERE),
               "--links-worker", str(out)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        rows = json.loads(out.read_text())
    print("\none gloo all_reduce between two processes on this machine (float64):")
    print("| numbers | bytes | ms | GB/s |")
    print("|---|---|---|---|")
    for n, sec in rows:
        print(f"| {n:,} | {8 * n:,} | {1e3 * sec:.3f} | {8 * n / sec / 1e9:.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="scaling,traffic,links", help="comma-separated: scaling, traffic, links")
    p.add_argument("--procs", type=int, default=2, help="processes of the data-parallel run (default 2)")
    p.add_argument("--weak", action="store_true", help="weak scaling: the global batch grows with the processes")
    p.add_argument("--probe-batches", type=int, default=5, help="batches the traffic part counts (default 5)")
    p.add_argument("--probe", help=argparse.SUPPRESS)
    p.add_argument("--links-worker", help=argparse.SUPPRESS)
    p.add_argument("train_args", nargs="*", help="after --: arguments of fenchel-cvx train")
    args = p.parse_args(argv)
    if args.probe:
        _probe(args.train_args, args.probe_batches, args.probe)
        return 0
    if args.links_worker:
        _links_worker(args.links_worker)
        return 0
    import torch

    print(f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d')}")
    parts = args.parts.split(",")
    if "scaling" in parts:
        scaling(args.train_args, args.procs, args.weak)
    if "traffic" in parts:
        traffic(args.train_args, args.probe_batches, args.procs)
    if "links" in parts:
        links()
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
