"""The dual bound on a tiny ReLU network: G_hat(lambda) against the primal, and certified lower bounds.

A 2-3-1 ReLU network, MSE loss, 20 samples from a random 2-3-1 teacher plus noise (seeded). For each lambda of
the grid it prints G_hat (the best Lagrangian J found by BCD, an upper estimate of G), the primal P at the same
weights, and -- with ``--certify`` -- the certified interval ``lower <= G(lambda) <= upper`` from
:func:`fenchel_cvx.dual.certify_lower_bound`. The figure (``--out``, default ``docs/lambda_sweep.png``) is the one
in ``docs/benchmarks.md``.

    python benchmarks/bench_dual.py --certify 0.3 1 3 --time-limit 30
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from fenchel_cvx.data import teacher
from fenchel_cvx.dual import certify_lower_bound, check_weak_duality, lambda_sweep
from fenchel_cvx.network import LiftedNetwork
from fenchel_cvx.plots import plot_lambda_sweep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lams", nargs="+", type=float, default=[0.03, 0.1, 0.3, 1.0, 3.0, 10.0])
    ap.add_argument("--rho", type=float, default=0.1)
    ap.add_argument("--certify", nargs="*", type=float, default=[], help="lambdas to certify")
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="docs/lambda_sweep.png")
    a = ap.parse_args(argv)

    t = teacher(2, 1, 20, act="relu", hidden=3, seed=a.seed, noise=0.3)
    X, Y = t.X, t.Y
    net = LiftedNetwork([2, 3, 1], "relu", "mse", seed=a.seed)
    t0 = time.perf_counter()
    sweep = lambda_sweep(net, X, Y, a.lams, rho=a.rho, starts=4, iterations=60, seed=a.seed)
    print(f"2-3-1 ReLU, MSE, 20 samples, rho = {a.rho:g} (lambda sweep {time.perf_counter() - t0:.1f} s)")
    print(sweep)
    lower = {}
    for lam in a.certify:
        cert = certify_lower_bound(X, Y, hidden=3, lam=lam, rho=a.rho, time_limit=a.time_limit, seed=a.seed)
        print(cert)
        i = int(np.argmin(np.abs(sweep.lam - lam)))
        if abs(sweep.lam[i] - lam) < 1e-12:
            check_weak_duality(cert.lower, sweep.G_hat[i], lower_name="certified lower", upper_name="G_hat")
        check_weak_duality(cert.lower, sweep.P_min, lower_name="certified lower", upper_name="best primal")
        lower[lam] = cert.lower
    plot_lambda_sweep(sweep.lam, sweep.G_hat, sweep.P, P_min=sweep.P_min, lower=lower, path=a.out,
                      title="2-3-1 ReLU net, 20 samples: G_hat(lambda) vs primal")
    print(f"figure: {a.out}")
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
