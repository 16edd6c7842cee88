"""Time the torch W-updates (semismooth Newton, ridge, Newton / Newton-CG) against SciPy's L-BFGS-B.

Cases (float64, synthetic data, seeded):

* ``hidden``: ``w_hidden`` with ReLU, ``r`` rows x ``p`` inputs (+ bias), ``m`` samples, ``rho=0.1, gamma=0``,
  cold start; then L-BFGS-B (the reference implementation's method, all rows jointly) on the same objective
  from zero, reporting when its relative objective error reaches 1e-2, 1e-4, ... and where it stands at the cap.
* ``mnist``: the same at full-MNIST size (784 inputs + bias, m = 60,000, pixel-like sparse inputs), torch only;
  ``--rows`` solves fewer rows (the cost is linear in the rows apart from one shared Gram matrix).
* ``last``: ``w_last`` cross-entropy with K = 10 classes, ``p`` inputs, ``m`` samples, both Newton variants,
  and the MSE closed form.

Run it with ``--threads 1`` on a CPU shared with other jobs: oversubscribed OpenMP threads slow small operations
down by far more than a second thread gains. Results and their machines are in ``docs/benchmarks.md``.

Examples::

    python benchmarks/bench_torch_w.py hidden --threads 1 --lbfgs-cap 600
    python benchmarks/bench_torch_w.py mnist --rows 30 --threads 1
    python benchmarks/bench_torch_w.py last --m 2000 60000 --methods newton_cg --threads 1
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import scipy.optimize as so
import torch

from fenchel_cvx import torch as ft


def bench_hidden(r: int, p: int, m: int, cap: float) -> None:
    g = torch.Generator().manual_seed(0)
    rho, lam = 0.1, 1.0
    X = torch.relu(torch.randn(p, m, generator=g, dtype=torch.float64))
    Wt = torch.randn(r, p, generator=g, dtype=torch.float64) / math.sqrt(p)
    V = torch.relu(Wt @ X + 0.1 * torch.randn(r, 1, generator=g, dtype=torch.float64)
                   + 0.5 * torch.randn(r, m, generator=g, dtype=torch.float64))
    for tol in (1e-10, 1e-6):
        t = time.perf_counter()
        res = ft.w_hidden(X, V, act="relu", lam=lam, rho=rho, tol=tol)
        print(f"SSN tol={tol:g}: {time.perf_counter() - t:.2f} s, {res.iterations} steps "
              f"({int(res.info['row_iterations'].sum())} row-steps), value {res.value:.12g}, "
              f"max certificate {float(res.info['certificate'].max()):.1e}, max residual {res.max_residual:.1e}",
              flush=True)
        if tol == 1e-10:
            fstar = res.value
    if cap <= 0:
        return
    Xa = torch.cat([X, torch.ones(1, m, dtype=X.dtype)]).numpy()
    Vn, pa = V.numpy(), p + 1
    mu = np.full(pa, 2 * rho)
    mu[-1] = 0.0
    const = lam * 0.5 * float((Vn ** 2).sum())

    def fg(z):
        Z = z.reshape(r, pa)
        U = Z @ Xa
        P = np.maximum(U, 0)
        f = lam * (0.5 * (P * P).sum() - (Vn * U).sum()) + 0.5 * (mu * Z * Z).sum()
        return f, (lam * (P - Vn) @ Xa.T + mu * Z).ravel()

    marks, t = [1e-2, 1e-4, 1e-6, 1e-8, 1e-10], time.perf_counter()

    def callback(intermediate_result):
        err = (intermediate_result.fun + const - fstar) / fstar
        while marks and err <= marks[0]:
            print(f"  L-BFGS-B: relative error <= {marks.pop(0):.0e} after {time.perf_counter() - t:.1f} s",
                  flush=True)
        if time.perf_counter() - t > cap or not marks:
            raise StopIteration

    out = so.minimize(fg, np.zeros(r * pa), jac=True, method="L-BFGS-B", callback=callback,
                      options={"maxiter": 10 ** 6, "maxfun": 10 ** 7, "ftol": 0.0, "gtol": 0.0})
    print(f"L-BFGS-B stopped after {time.perf_counter() - t:.1f} s, {out.nit} iterations, relative error "
          f"{(out.fun + const - fstar) / fstar:.2e}")


def bench_mnist(rows: int) -> None:
    g = torch.Generator().manual_seed(0)
    p, m = 784, 60000
    X = torch.rand(p, m, generator=g, dtype=torch.float64) * (torch.rand(p, m, generator=g, dtype=torch.float64)
                                                              < 0.19)
    Wt = torch.randn(rows, p, generator=g, dtype=torch.float64) / math.sqrt(p * 0.19 / 3)
    V = torch.relu(Wt @ X + 0.1 * torch.randn(rows, 1, generator=g, dtype=torch.float64)
                   + 0.5 * torch.randn(rows, m, generator=g, dtype=torch.float64))
    t = time.perf_counter()
    res = ft.w_hidden(X, V, act="relu", lam=1.0, rho=0.1)
    print(f"w_hidden {rows} rows x 785 x 60000: {time.perf_counter() - t:.1f} s, {res.iterations} steps "
          f"({int(res.info['row_iterations'].sum())} row-steps), max certificate "
          f"{float(res.info['certificate'].max()):.1e}, max residual {res.max_residual:.1e}, "
          f"Hessian sample columns {res.info['hessian_samples']}")


def bench_last(p: int, ms: list[int], methods: list[str]) -> None:
    K = 10
    for m in ms:
        g = torch.Generator().manual_seed(0)
        X = torch.relu(torch.randn(p, m, generator=g, dtype=torch.float64))
        Wt = torch.randn(K, p, generator=g, dtype=torch.float64) / math.sqrt(p)
        labels = torch.argmax(Wt @ X + 0.5 * torch.randn(K, m, generator=g, dtype=torch.float64), dim=0)
        for method in methods:
            t = time.perf_counter()
            res = ft.w_last(X, labels, loss="ce", rho=0.1, method=method, tol=1e-8)
            print(f"w_last CE K={K} p={p} m={m} {method}: {time.perf_counter() - t:.1f} s, {res.iterations} "
                  f"Newton steps, {res.info['cg_iterations']} CG steps, certificate "
                  f"{float(res.info['certificate'].max()):.1e}, max residual {res.max_residual:.1e}, "
                  f"value {res.value:.12g}", flush=True)
        t = time.perf_counter()
        res = ft.w_last(X, labels, loss="mse", rho=0.1)
        print(f"w_last MSE K={K} p={p} m={m} closed form: {time.perf_counter() - t:.2f} s, certificate "
              f"{float(res.info['certificate'].max()):.1e}, max residual {res.max_residual:.1e}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("case", choices=["hidden", "mnist", "last"])
    ap.add_argument("--rows", type=int, default=None, help="rows solved (default: 100 hidden, 300 mnist)")
    ap.add_argument("--p", type=int, default=300)
    ap.add_argument("--m", type=int, nargs="+", default=[2000])
    ap.add_argument("--lbfgs-cap", type=float, default=600.0, help="seconds for L-BFGS-B (0: skip it)")
    ap.add_argument("--methods", default="newton,newton_cg")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads < 0:
        ap.error(f"--threads: expected 0 (torch's default) or a positive integer, got {args.threads}")
    if args.threads:
        torch.set_num_threads(args.threads)
    for flag, values in (("--rows", [args.rows or 1]), ("--p", [args.p]), ("--m", args.m)):
        if min(values) < 1:
            ap.error(f"{flag}: expected positive integers, got {values}")
    if args.case != "last" and len(args.m) > 1:
        ap.error(f"--m: the {args.case} case takes one size, got {args.m}")
    if args.case == "hidden":
        bench_hidden(args.rows or 100, args.p, args.m[0], args.lbfgs_cap)
    elif args.case == "mnist":
        bench_mnist(args.rows or 300)
    else:
        bench_last(args.p, args.m, args.methods.split(","))


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
