"""Time the CVXPY reference models of the four BCD subproblems with OSQP and Clarabel.

For each subproblem and size it solves one random instance with each solver and prints wall time (CVXPY
compilation + solve, all chunks), the solvers' own time, the status, the relative optimality residual of the
returned point and the relative difference of the objective values between the solvers.

Sizes: ``p`` hidden units, ``m`` data points, 10 outputs; the hidden layers are ``p x p``. QP cases (ReLU,
MSE) run on both solvers; ``--exp`` adds the exponential-cone cases (sigmoid, cross-entropy), Clarabel only
(OSQP cannot take them). The separable subproblems are solved in ``chunk="auto"`` blocks; ``--fraction f``
solves only the first fraction ``f`` of the columns (X-updates) or rows (hidden W-update) and scales the times
by ``1/f`` (marked ``*`` in the table) -- exact for the solves, which are independent per block, and
conservative for compilation, which happens once per block shape.

Examples::

    python benchmarks/bench_cvx.py --quick
    python benchmarks/bench_cvx.py --sizes 100x500 300x2000 --fraction 1 0.1
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

from fenchel_cvx import cvx
from fenchel_cvx.activations import get_activation
from fenchel_cvx.errors import FenchelError

K = 10  # outputs


def make_data(p: int, m: int, seed: int) -> dict:
    """A random instance in the paper's layout: a p -> p -> p -> K ReLU network's lifted variables."""
    rng = np.random.default_rng(seed)
    X0 = rng.standard_normal((p, m))
    W0, W1, W2 = (rng.standard_normal(s) / np.sqrt(s[1]) for s in ((p, p), (p, p), (K, p)))
    b0, b1, b2 = (0.1 * rng.standard_normal(s) for s in (p, p, K))
    U0 = W0 @ X0 + b0[:, None]
    X1 = np.maximum(U0 + 0.1 * rng.standard_normal((p, m)), 0)
    X2 = np.maximum(W1 @ X1 + b1[:, None] + 0.1 * rng.standard_normal((p, m)), 0)
    sig = get_activation("sigmoid")
    labels = rng.integers(0, K, m)
    Y = rng.standard_normal((K, m))
    S1 = sig.forward(U0 + 0.1 * rng.standard_normal((p, m)))
    S2 = sig.forward(W1 @ S1 + b1[:, None] + 0.1 * rng.standard_normal((p, m)))
    return {"X0": X0, "U0": U0, "W1": W1, "b1": b1, "W2": W2, "b2": b2, "X1": X1, "X2": X2, "S1": S1, "S2": S2,
            "labels": labels, "Y": Y}


def cases(d: dict, exp: bool) -> list[tuple[str, str, object, list[str]]]:
    """(subproblem, variant, call(solver, cols_or_rows_fraction), solvers)."""
    m = d["X0"].shape[1]
    p = d["X1"].shape[0]

    def cols(f: float) -> slice:
        return slice(0, max(1, round(f * m)))

    def rows(f: float) -> slice:
        return slice(0, max(1, round(f * p)))

    qp = ["OSQP", "CLARABEL"]
    out = [
        ("x_hidden", "relu/relu", lambda s, f, po: cvx.x_hidden(
            d["W1"], d["b1"], d["X2"][:, cols(f)], d["U0"][:, cols(f)], act="relu", act_prev="relu", lam=1.0,
            lam_prev=1.0, solver=s, polish=po), qp),
        ("x_last", "mse/relu", lambda s, f, po: cvx.x_last(
            d["W2"], d["b2"], d["Y"][:, cols(f)], d["U0"][:, cols(f)], loss="mse", act_prev="relu", lam_prev=1.0,
            solver=s, polish=po), qp),
        ("w_hidden", "relu", lambda s, f, po: cvx.w_hidden(
            d["X1"], d["X2"][rows(f)], act="relu", lam=1.0, rho=0.1, solver=s, polish=po), qp),
        ("w_last", "mse", lambda s, f, po: cvx.w_last(
            d["X2"], d["Y"], loss="mse", rho=0.1, solver=s, polish=po), qp),
    ]
    if exp:
        out += [
            ("x_hidden", "sigmoid/sigmoid", lambda s, f, po: cvx.x_hidden(
                d["W1"], d["b1"], d["S2"][:, cols(f)], d["U0"][:, cols(f)], act="sigmoid", act_prev="sigmoid",
                lam=1.0, lam_prev=1.0, solver=s, polish=po), ["CLARABEL"]),
            ("x_last", "ce/relu", lambda s, f, po: cvx.x_last(
                d["W2"], d["b2"], d["labels"][cols(f)], d["U0"][:, cols(f)], loss="ce", act_prev="relu",
                lam_prev=1.0, solver=s, polish=po), ["CLARABEL"]),
            ("w_hidden", "sigmoid", lambda s, f, po: cvx.w_hidden(
                d["S1"], d["S2"][rows(f)], act="sigmoid", lam=1.0, rho=0.1, solver=s, polish=po), ["CLARABEL"]),
            ("w_last", "ce", lambda s, f, po: cvx.w_last(
                d["X2"], d["labels"], loss="ce", rho=0.1, p=K, solver=s, polish=po), ["CLARABEL"]),
        ]
    return out


def run(sizes: list[tuple[int, int]], fractions: list[float], exp: bool, polish: bool, seed: int) -> list[dict]:
    rows = []
    header = (f"{'subproblem':10} {'variant':16} {'p':>4} {'m':>5} {'solver':9} {'wall s':>9} {'solver s':>9} "
              f"{'chunks':>6} {'status':19} {'kkt resid':>9} {'value':>14} {'rel diff':>9}")
    print(header)
    print("-" * len(header))
    for (p, m), frac in zip(sizes, fractions, strict=True):
        d = make_data(p, m, seed)
        for name, variant, call, solvers in cases(d, exp):
            f = 1.0 if name == "w_last" else frac  # w_last does not separate
            ref = None
            for solver in solvers:
                cvx.clear_model_cache()  # each timing includes the compilation it needs
                t0 = time.perf_counter()
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        r = call(solver, f, polish)
                except FenchelError as exc:
                    print(f"{name:10} {variant:16} {p:4d} {m:5d} {solver:9} failed: {exc}")
                    rows.append({"subproblem": name, "variant": variant, "p": p, "m": m, "solver": solver,
                                 "failed": str(exc)})
                    continue
                wall = (time.perf_counter() - t0) / f
                solver_time = r.info["solver_time"] / f
                value = r.value / f
                if ref is None:
                    ref = value
                diff = abs(value - ref) / max(1.0, abs(ref))
                mark = "*" if f < 1 else " "
                status = r.status if r.status == r.info["solver_status"] else f"{r.info['solver_status']}>ok"
                print(f"{name:10} {variant:16} {p:4d} {m:5d} {solver:9} {wall:8.2f}{mark} {solver_time:8.2f}{mark} "
                      f"{r.info['chunks']:6d} {status:19} {r.info['kkt_residual']:9.1e} {value:14.6e} {diff:9.1e}",
                      flush=True)
                rows.append({"subproblem": name, "variant": variant, "p": p, "m": m, "solver": solver, "wall": wall,
                             "solver_time": solver_time, "fraction": f, "status": r.status,
                             "kkt": r.info["kkt_residual"], "max_residual": r.max_residual, "value": value,
                             "rel_diff": diff})
    print("* scaled from a fraction of the columns/rows (see --fraction); values of such rows are scaled too")
    return rows


def _size(text: str) -> tuple[int, int]:
    try:
        p, m = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PxM, e.g. 100x500, got {text!r}") from None
    if p < 1 or m < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes PxM, e.g. 100x500, got {text!r}")
    return p, m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (20x100, 50x200) for a smoke run")
    ap.add_argument("--sizes", type=_size, nargs="+", default=[(100, 500), (300, 2000)], metavar="PxM")
    ap.add_argument("--fraction", type=float, nargs="+", default=None,
                    help="fraction of columns/rows to solve per size (default 1 for every size)")
    ap.add_argument("--exp", action="store_true", help="add the exponential-cone cases (Clarabel only)")
    ap.add_argument("--polish", action="store_true", help="Newton-polish the answers (default: raw solver output)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sizes = [(20, 100), (50, 200)] if args.quick else args.sizes
    fractions = args.fraction or [1.0] * len(sizes)
    if len(fractions) != len(sizes) or not all(0 < f <= 1 for f in fractions):
        ap.error(f"--fraction: expected {len(sizes)} values in (0, 1], got {fractions}")
    print(f"fenchel_cvx CVXPY reference, solvers {cvx.installed_solvers()}; polish={args.polish}")
    rows = run(sizes, fractions, args.exp, args.polish, args.seed)
    failed = sum("failed" in r for r in rows)
    if failed:  # the table is printed either way; the status tells a script that some rows hold no time
        print(f"bench_cvx.py: {failed} of {len(rows)} solves failed (rows marked 'failed')", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from _cli import run_main  # beside this script

    sys.exit(run_main(main))
