"""Time the torch X-updates (FISTA with exact prox, dual Newton) and, for x_hidden, SciPy's L-BFGS-B.

Cases (float64 unless ``--float32``, synthetic data, Xavier weights, seeded):

* ``hidden``: ``x_hidden`` 300x300, m = 2000, ReLU/ReLU at ``lam = 1`` and ``lam_prev`` in {1, 0.03} (kappa about
  4 and 135), tol 1e-6 and 1e-10, cold start from the feed-forward point; ``--lbfgs`` adds L-BFGS-B (the
  reference implementation's method, all columns jointly, bounds Z >= 0) on the same objective. Then the other
  activation pairs at tol 1e-6.
* ``last``: ``x_last`` with K = 10 outputs, p = 300, ReLU before, MSE (dual Newton) and cross-entropy (FISTA) at
  ``lam_prev`` in {1, 0.01}; ``--m 60000`` is the full-MNIST size.

Every run first prints two baselines measured in the same process (one 300x300x2000 GEMM, one elementwise pass
over 300x2000 doubles): on a shared CPU the absolute times move by 5x from minute to minute, the ratios much less.
Results and their machines are in ``docs/benchmarks.md`` (``--threads 1`` on a CPU shared with other jobs).

Examples::

    python benchmarks/bench_torch_x.py hidden --threads 1 --lbfgs
    python benchmarks/bench_torch_x.py last --m 2000 60000 --threads 1
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
from fenchel_cvx.activations import get_activation

F64 = torch.float64


def xavier(rows: int, cols: int, g: torch.Generator) -> torch.Tensor:
    lim = math.sqrt(6.0 / (rows + cols))
    return (torch.rand(rows, cols, generator=g, dtype=F64) * 2 - 1) * lim


def baselines() -> str:
    A, B = torch.randn(300, 300, dtype=F64), torch.randn(300, 2000, dtype=F64)
    t = time.perf_counter()
    for _ in range(10):
        A @ B
    gemm = (time.perf_counter() - t) / 10
    t = time.perf_counter()
    for _ in range(10):
        B * 2.0
    ew = (time.perf_counter() - t) / 10
    return f"[baselines: GEMM 300x300x2000 {gemm * 1e3:.1f} ms; one elementwise pass over 300x2000 {ew * 1e3:.2f} ms]"


def lbfgs_relu(W, b, V, U, lam_prev: float) -> tuple[float, int, float]:
    """L-BFGS-B on lam B_relu(V, W Z + b) + lam_prev B_relu(Z, U) (lam = 1) over Z >= 0: (seconds, its, value)."""
    Wn, bn, Vn, Un = (x.numpy() for x in (W, b, V, U))
    shape = Un.shape

    def fg(zf):
        Z = zf.reshape(shape)
        T = Wn @ Z + bn[:, None]
        R = np.maximum(T, 0)
        f = 0.5 * (R * R).sum() - (Vn * T).sum() + lam_prev * (0.5 * (Z * Z).sum() - (Un * Z).sum())
        return f, (Wn.T @ (R - Vn) + lam_prev * (Z - Un)).ravel()

    t = time.perf_counter()
    res = so.minimize(fg, np.maximum(Un, 0).ravel(), jac=True, method="L-BFGS-B", bounds=[(0, None)] * Un.size,
                      options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-9})
    const = 0.5 * (Vn * Vn).sum() + lam_prev * 0.5 * (np.maximum(Un, 0) ** 2).sum()
    return time.perf_counter() - t, int(res.nit), float(res.fun + const)


def bench_hidden(dtype: torch.dtype, lbfgs: bool) -> None:
    g = torch.Generator().manual_seed(0)
    W, b = xavier(300, 300, g), 0.1 * torch.randn(300, generator=g, dtype=F64)
    U = torch.randn(300, 2000, generator=g, dtype=F64)
    noise = 0.5 * torch.randn(300, 2000, generator=g, dtype=F64)
    V = torch.relu(W @ torch.relu(U) + b[:, None] + noise)
    print(baselines())
    for lam_prev in (1.0, 0.03):
        for tol in (1e-6, 1e-10):
            r = ft.x_hidden(*(x.to(dtype) for x in (W, b, V, U)), act="relu", act_prev="relu", lam=1.0,
                            lam_prev=lam_prev, tol=tol)
            kappa = r.info["lipschitz"] / r.info["mu"]
            print(f"x_hidden relu/relu 300x300 m=2000 lam_prev={lam_prev} (kappa {kappa:.0f}) tol={tol:g}: "
                  f"{r.solve_time:.2f} s, {r.iterations} it, max certificate "
                  f"{float(r.info['certificate'].max()):.1e}, max residual {r.max_residual:.1e}")
        if lbfgs:
            ref = ft.x_hidden(W, b, V, U, act="relu", act_prev="relu", lam=1.0, lam_prev=lam_prev, tol=1e-12)
            dt, nit, val = lbfgs_relu(W, b, V, U, lam_prev)
            print(f"  L-BFGS-B: {dt:.2f} s, {nit} it, relative objective gap {(val - ref.value) / ref.value:.1e}")
    for act, act_prev in (("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "sigmoid"), ("leaky_relu", "leaky_relu")):
        a, ap = get_activation(act), get_activation(act_prev)
        Vx = a.forward(W @ ap.forward(U) + b[:, None] + noise)
        r = ft.x_hidden(*(x.to(dtype) for x in (W, b, Vx, U)), act=act, act_prev=act_prev, lam=1.0, lam_prev=1.0)
        print(f"x_hidden {act}/{act_prev} 300x300 m=2000 tol=1e-6: {r.solve_time:.2f} s, {r.iterations} it")


def bench_last(ms: list[int], dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    W, b = xavier(10, 300, g).to(dtype), torch.zeros(10, dtype=dtype)
    print(baselines())
    for m in ms:
        U = torch.randn(300, m, generator=g, dtype=F64).to(dtype)
        labels = torch.randint(0, 10, (m,), generator=g)
        for loss in ("mse", "ce"):
            for lam_prev in (1.0, 0.01):
                for tol in ((1e-6, 1e-10) if m <= 2000 else (1e-6,)):
                    r = ft.x_last(W, b, labels, U, loss=loss, act_prev="relu", lam_prev=lam_prev, tol=tol)
                    print(f"x_last {loss} relu K=10 p=300 m={m} lam_prev={lam_prev} tol={tol:g}: "
                          f"{r.solve_time:.2f} s, {r.iterations} it ({r.solver}, {r.info['blocks']} column blocks)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("case", choices=["hidden", "last"])
    ap.add_argument("--m", type=int, nargs="+", default=None, help="sizes of the last case (default 2000); the "
                    "hidden case runs its own fixed sizes")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--float32", action="store_true")
    ap.add_argument("--lbfgs", action="store_true")
    args = ap.parse_args()
    if args.threads is not None and args.threads < 1:
        ap.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.m is not None and (args.case == "hidden" or min(args.m) < 1):
        ap.error(f"--m: expected positive sizes for the last case (the hidden case has fixed sizes), got {args.m}")
    dtype = torch.float32 if args.float32 else F64
    if args.case == "hidden":
        bench_hidden(dtype, args.lbfgs)
    else:
        bench_last(args.m or [2000], dtype)


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
