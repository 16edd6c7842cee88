"""Benchmark of the certified lower bound on a 2-3-1 ReLU network with 20 points (issue 6, "Strength").

Data: 20 points ``x ~ N(0, I_2)``, targets from a random 2-3-1 ReLU teacher plus noise 0.1 (the generator
of ``tests/test_certify.py::tiny_instance``), ``lambda = 1``, ``rho = 0.1``. Reports the certified relative
gap after 5, 10, 30, 60 s ... of one run (read off the run's history), the node count and rate, and the
machine's load average (the CPU is shared: timings are pessimistic when the load exceeds the 2 cores).

Usage::

    python benchmarks/bench_certify.py                       # 60 s, seed 0
    python benchmarks/bench_certify.py --time 600 --seeds 0  # the 10-minute run
    python benchmarks/bench_certify.py --time 60 --seeds 0 1 2 3
    OMP_NUM_THREADS=1 python benchmarks/bench_certify.py --time 30 --seeds 0 1 2 3 4 5 6 7   # issue 16: 8 seeds
    python benchmarks/bench_certify.py --time 60 --seeds 0 1 --hidden 2 --m 50 --n 2   # other sizes

Measured numbers (issue 16, 8 seeds, before and after): ``docs/certified_bound.md``, section 8.1.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from fenchel_cvx.dual import certify_lower_bound


def teacher_instance(seed: int, m: int = 20, n: int = 2, h: int = 3, noise: float = 0.1):
    """Samples-first ``X (m, n)``, ``Y (m,)`` from a random ReLU teacher (same as the tests)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    W0, b0 = rng.standard_normal((h, n)), 0.5 * rng.standard_normal(h)
    W1 = rng.standard_normal((1, h))
    Y = np.maximum(X @ W0.T + b0, 0.0) @ W1.T + noise * rng.standard_normal((m, 1))
    return X, Y[:, 0]


def gap_at(history, t: float) -> float:
    """Relative gap of the last history entry at or before ``t`` seconds."""
    best = None
    for sec, lower, upper in history:
        if sec <= t:
            best = (upper - lower) / upper if upper > 0 else 0.0
    return float("nan") if best is None else best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=60.0, help="time limit per run (s)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--lam", type=float, default=1.0)
    ap.add_argument("--rho", type=float, default=0.1)
    ap.add_argument("--rel-gap", type=float, default=1e-3)
    ap.add_argument("--hidden", type=int, default=3, help="hidden units of the certified net (the teacher has 3)")
    ap.add_argument("--m", type=int, default=20, help="samples")
    ap.add_argument("--n", type=int, default=2, help="inputs")
    args = ap.parse_args()
    marks = [t for t in (5, 10, 30, 60, 120, 300, 600) if t <= args.time]
    print(f"# certify_lower_bound, {args.n}-{args.hidden}-1 ReLU, m={args.m}, lambda={args.lam}, rho={args.rho}, "
          f"time limit {args.time:g} s, load average at start {os.getloadavg()[0]:.1f} (2 cores)")
    print("| seed | upper | lower | " + " | ".join(f"gap@{t}s" for t in marks) + " | nodes | nodes/s | status |")
    print("|---" * (6 + len(marks)) + "|")
    for seed in args.seeds:
        X, Y = teacher_instance(seed, m=args.m, n=args.n)
        t0 = time.perf_counter()
        cert = certify_lower_bound(X, Y, hidden=args.hidden, lam=args.lam, rho=args.rho, time_limit=args.time,
                                   rel_gap=args.rel_gap, seed=seed)
        wall = time.perf_counter() - t0
        gaps = " | ".join(f"{100 * gap_at(cert.history, t):.2f}%" for t in marks)
        print(f"| {seed} | {cert.upper:.5f} | {cert.lower:.5f} | {gaps} | {cert.nodes} | "
              f"{cert.nodes / wall:.1f} | {cert.status} |", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
