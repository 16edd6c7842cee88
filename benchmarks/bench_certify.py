"""Benchmark of the certified lower bound on a 2-3-1 ReLU network with 20 points (issue 6, "Strength").

Data: 20 points ``x ~ N(0, I_2)``, targets from a random 2-3-1 ReLU teacher plus noise 0.1 (the generator
of ``tests/test_certify.py::tiny_instance``), ``lambda = 1``, ``rho = 0.1``. Reports the certified relative
gap after 1, 5, 10, 30, 60 s ... of one run (read off the run's history), the time to reach 5% and 1%, the
activation-pattern relaxation's bound, the node count (relaxations solved) and rate, and the machine's load
average (the CPU is shared: timings are pessimistic when the load exceeds the 2 cores).

Usage::

    python benchmarks/bench_certify.py                       # 60 s, seed 0
    python benchmarks/bench_certify.py --time 600 --seeds 0  # the 10-minute run
    python benchmarks/bench_certify.py --time 60 --seeds 0 1 2 3
    OMP_NUM_THREADS=1 python benchmarks/bench_certify.py --time 30 --seeds 0 1 2 3 4 5 6 7   # issue 16: 8 seeds
    OMP_NUM_THREADS=1 python benchmarks/bench_certify.py --time 30 --seeds 0 1 2 3 4 5 6 7 --no-patterns  # before
    python benchmarks/bench_certify.py --time 60 --seeds 0 1 --hidden 2 --m 50 --n 2   # other sizes
    python benchmarks/bench_certify.py --time 10 --seeds 0 1 --scale 10                # weaker effective rho

Measured numbers (issue 16, 8 seeds, before and after): ``docs/certified_bound.md``, section 8.1.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
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


def time_to(history, rel: float) -> float:
    """Seconds until the certified gap first reached ``rel`` (``inf`` if never)."""
    for sec, lower, upper in history:
        if upper <= 0 or (upper - lower) / upper <= rel:
            return sec
    return float("inf")


def _pct(g: float) -> str:
    return "-" if math.isnan(g) else f"{100 * g:.2f}%"


def _secs(t: float) -> str:
    return f"{t:.1f} s" if t < float("inf") else "-"


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
    ap.add_argument("--scale", type=float, default=1.0,
                    help="multiply inputs and targets by this (lam, rho fixed: a larger scale weakens rho's pull)")
    ap.add_argument("--no-patterns", action="store_true",
                    help="the tree alone, without the activation-pattern relaxation (the method before issue 16)")
    args = ap.parse_args()
    marks = [t for t in (1, 5, 10, 30, 60, 120, 300, 600) if t <= args.time]
    print(f"# certify_lower_bound, {args.n}-{args.hidden}-1 ReLU, m={args.m}, lambda={args.lam}, rho={args.rho}, "
          f"time limit {args.time:g} s, {'tree only' if args.no_patterns else 'pattern relaxation + tree'}, "
          f"{f'data scaled by {args.scale:g}, ' if args.scale != 1 else ''}"
          f"load average at start {os.getloadavg()[0]:.1f} (2 cores)")
    print("| seed | upper | lower | pattern bound | " + " | ".join(f"gap@{t}s" for t in marks)
          + " | to 5% | to 1% | nodes | nodes/s | status |")
    print("|---" * (9 + len(marks)) + "|")
    finals = []
    for seed in args.seeds:
        X, Y = teacher_instance(seed, m=args.m, n=args.n)
        X, Y = args.scale * X, args.scale * Y
        t0 = time.perf_counter()
        cert = certify_lower_bound(X, Y, hidden=args.hidden, lam=args.lam, rho=args.rho, time_limit=args.time,
                                   rel_gap=args.rel_gap, seed=seed, patterns=not args.no_patterns)
        wall = time.perf_counter() - t0
        gaps = " | ".join(_pct(gap_at(cert.history, t)) for t in marks)
        finals.append(cert.rel_gap)
        pattern = "-" if math.isnan(cert.pattern_lower) else f"{cert.pattern_lower:.5f}"
        print(f"| {seed} | {cert.upper:.5f} | {cert.lower:.5f} | {pattern} | {gaps} | "
              f"{_secs(time_to(cert.history, 0.05))} | {_secs(time_to(cert.history, 0.01))} | {cert.nodes} | "
              f"{cert.nodes / wall:.1f} | {cert.status} |", flush=True)
    within = sum(g <= 0.05 for g in finals)
    print(f"# final gap: median {100 * statistics.median(finals):.2f}%, worst {100 * max(finals):.2f}%, "
          f"{within} of {len(finals)} within 5%; load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
