"""Wall time of `fenchel-cvx train` on a quiet machine and with busy-loop processes keeping cores busy.

Each configuration runs the same command (by default the shipped-subset Fenchel job, ``--compare none``) in a
fresh process, ``--repeats`` times per load; the table gives the wall times and the ratio of each loaded time to
the quiet time of the default configuration -- the measure of issue 15 ("within 2.5x of the quiet time with one
busy core on a 2-core machine"). Configurations: torch's default threads, ``--threads 1``, and OpenMP's passive
wait policy (``OMP_WAIT_POLICY=PASSIVE``, threads sleep instead of spinning while they wait for work).

Usage::

    python benchmarks/bench_contention.py                       # quiet, then 1 busy core
    python benchmarks/bench_contention.py --busy 0,1 --repeats 3 -- --epochs 2 --curvature running
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

CONFIGS = {  # name -> (environment, extra arguments)
    "default threads": ({}, []),
    "--threads 1": ({}, ["--threads", "1"]),
    "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
}


def wall_time(env: dict, args: list[str]) -> float:
    """Seconds of one ``fenchel-cvx train`` process (start-up and data loading included)."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "fenchel_cvx", "train", "--no-progress", "--out", f"{out}/run", *args],
                       env={**os.environ, **env}, check=True, capture_output=True)
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--busy", default="0,1", help="comma-separated numbers of busy-loop processes (default: 0,1)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("train_args", nargs="*", help="after --: arguments of fenchel-cvx train (default: --compare none)")
    args = p.parse_args(argv)
    train_args = args.train_args or ["--compare", "none"]
    loads = [int(b) for b in args.busy.split(",")]
    times: dict[tuple[int, str], list[float]] = {}
    for busy in loads:
        loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        try:
            time.sleep(1.0 if busy else 0.0)
            for name, (env, extra) in CONFIGS.items():
                times[busy, name] = [wall_time(env, train_args + extra) for _ in range(args.repeats)]
                print(f"busy {busy}, {name}: " + ", ".join(f"{t:.1f} s" for t in times[busy, name]), flush=True)
        finally:
            for loop in loops:
                loop.kill()
    quiet = statistics.median(times[loads[0], "default threads"])
    print(f"\nMachine: {platform.machine()}, {os.cpu_count()} cores; command: fenchel-cvx train "
          f"{' '.join(train_args)}; {time.strftime('%Y-%m-%d')}.\n")
    print("| configuration | " + " | ".join(f"{b} busy: s (x quiet default)" for b in loads) + " |")
    print("|---|" + "---|" * len(loads))
    for name in CONFIGS:
        cells = [f"{', '.join(f'{t:.1f}' for t in times[b, name])} "
                 f"({statistics.median(times[b, name]) / quiet:.2f}x)" for b in loads]
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
