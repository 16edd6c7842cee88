"""Write the teaching notebooks in ``notebooks/`` from the prose and code kept here.

The notebooks are generated so that their text can be reviewed as plain Python and regenerated without
hand-editing JSON. Every notebook is written *without outputs* (the form committed to git); execute it in
Jupyter, or run ``python -m pytest -q tests/test_notebooks.py``, which executes all of them with nbclient.

Usage::

    python scripts/make_notebooks.py            # write all notebooks
    python scripts/make_notebooks.py 01 03      # only those whose file name starts with 01 or 03
    python scripts/make_notebooks.py --check    # exit 1 if a committed notebook differs from this script

Every notebook reads the environment variable ``FENCHEL_FAST=1`` (set by ``tests/test_notebooks.py``) to shrink
its sizes, is seeded, needs no download, and ends with assertions on what it showed.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

Cell = tuple[str, str]  # ("md" | "code", source)


def md(src: str) -> Cell:
    return ("md", textwrap.dedent(src).strip("\n"))


def code(src: str) -> Cell:
    return ("code", textwrap.dedent(src).strip("\n"))


# A first code cell shared by every notebook: the one place the sizes and the device are chosen.
SETUP = code('''
    import os
    import time

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    %matplotlib inline

    FAST = os.environ.get("FENCHEL_FAST", "0") == "1"   # CI sets this: smaller sizes, same checks
    SEED = 0
    DEVICE = "cpu"    # the only place a device is chosen; "cuda" works where one is present
    rng = np.random.default_rng(SEED)
    torch.manual_seed(SEED)
    # These problems are small: one thread avoids torch's inter-thread synchronisation, which on a busy
    # 2-core machine made the solvers 50x slower. Raise it for big networks on a dedicated machine.
    torch.set_num_threads(1)
    np.set_printoptions(precision=4, suppress=True, linewidth=110)
    T_START = time.perf_counter()
    print(f"FAST={FAST}, device={DEVICE}, torch {torch.__version__}")
''')


# ---------------------------------------------------------------------------------------------------------
# 01: biconvex activations
# ---------------------------------------------------------------------------------------------------------
def nb01() -> list[Cell]:
    return [
        md(r'''
        # 01 · Activations as biconvex penalties (Theorem 1)

        A Fenchel lifted network never evaluates an activation $\phi$ inside its training problem. It replaces each
        constraint $v = \phi(u)$ by a penalty $B(v, u) \ge 0$ that is zero exactly on the graph of $\phi$ and convex in
        each argument when the other is fixed. This notebook builds that penalty for the four activations of
        `fenchel_cvx.activations` and checks every claim numerically:

        1. $F$ and $F^*$ (eq. 4) are a Fenchel conjugate pair;
        2. $B(v,u) = F(v) + F^*(u) - uv \ge 0$ (Fenchel–Young) with equality exactly on $v = \phi(u)$;
        3. $B$ is convex in $v$ and convex in $u$, but not jointly convex;
        4. the ReLU penalty (eq. 5) needs the constraint $v \ge 0$, and what goes wrong without it.
        '''),
        SETUP,
        code('''
        from fenchel_cvx import LeakyReLU, get_activation
        from fenchel_cvx.errors import DomainError

        ACTS = {"ReLU": get_activation("relu"), "leaky ReLU (0.1)": LeakyReLU(0.1),
                "sigmoid": get_activation("sigmoid"), "tanh": get_activation("tanh")}
        for name, act in ACTS.items():
            print(f"{name:18s} domain of v: {act.domain_str()}")
        '''),
        md(r'''
        ## The construction (eq. 4)

        For a continuous, strictly increasing $\phi$ pick $z$ with $z = 0$ or $\phi^{-1}(z) = 0$ and set

        $$F(v) = \int_z^v \phi^{-1}(\xi)\,d\xi, \qquad F^*(u) = \int_{\phi^{-1}(z)}^u \phi(\eta)\,d\eta,
        \qquad B(v,u) = F(v) + F^*(u) - uv .$$

        So $F' = \phi^{-1}$ and $(F^*)' = \phi$: both are integrals of increasing functions, hence convex. The proof of
        Theorem 1 shows $F^*$ is the Fenchel conjugate $F^*(u) = \sup_v\, uv - F(v)$. We check that last claim by brute
        force: maximise $uv - F(v)$ over a fine grid of $v$ in the domain and compare with the closed form.
        '''),
        code('''
        def grid_in_domain(act, n=20001, lo=-4.0, hi=4.0):
            a, b = act.domain
            return np.linspace(max(a, lo), min(b, hi), n)

        u_test = np.linspace(-3, 3, 61)
        conj_err = {}
        for name, act in ACTS.items():
            # A bounded v-grid only sees sup over |v| <= 4; for |u| <= 3 the maximiser phi(u) lies inside it.
            v = grid_in_domain(act, n=20001, lo=-40.0, hi=40.0)
            Fv = act.F(v)
            brute = np.max(u_test[:, None] * v[None, :] - Fv[None, :], axis=1)
            conj_err[name] = np.max(np.abs(brute - act.F_conj(u_test)))
            print(f"{name:18s} max |sup_v (uv - F(v)) - F*(u)| = {conj_err[name]:.2e}")
        '''),
        md(r'''
        The table behind the code (see the module docstring of `fenchel_cvx.activations`):

        | activation | domain of $v$ | $F(v)$ | $F^*(u)$ |
        |---|---|---|---|
        | ReLU | $v \ge 0$ | $v^2/2$ | $u_+^2/2$ |
        | leaky ReLU ($\alpha$) | $\mathbb R$ | $v^2/2$ ($v\ge0$), $v^2/(2\alpha)$ ($v<0$) | $u^2/2$ ($u\ge0$), $\alpha u^2/2$ ($u<0$) |
        | sigmoid | $[0,1]$ | $v\log v + (1-v)\log(1-v) + \log 2$ | $\log(1+e^u) - \log 2$ |
        | tanh | $[-1,1]$ | $\tfrac12[(1+v)\log(1+v) + (1-v)\log(1-v)]$ | $\log\cosh u$ |

        Below, top row $F$, bottom row $F^*$. For the sigmoid and tanh $F$ has infinite slope at the ends of the range,
        because $F' = \phi^{-1}$ blows up where $\phi$ saturates; $F^*$ grows like $\int\phi$.
        '''),
        code('''
        fig, axes = plt.subplots(2, 4, figsize=(14, 5.5))
        u = np.linspace(-3, 3, 401)
        for j, (name, act) in enumerate(ACTS.items()):
            v = grid_in_domain(act, n=401, lo=-3.0, hi=3.0)
            axes[0, j].plot(v, act.F(v), color="C0")
            axes[0, j].set_title(f"{name}: F(v)")
            axes[0, j].set_xlabel("v")
            axes[1, j].plot(u, act.F_conj(u), color="C1")
            axes[1, j].set_title(f"{name}: F*(u)")
            axes[1, j].set_xlabel("u")
        fig.tight_layout()
        plt.show()
        '''),
        md(r'''
        ## The zero set of $B$ is the graph of $\phi$

        Contours of $B(v,u)$ over the $(u, v)$ plane, with the graph $v = \phi(u)$ drawn in red. Grey marks the region
        where $v$ is outside the domain of $F$ and $B = +\infty$ (for ReLU that is the whole half-plane $v < 0$). The
        valley floor, where $B = 0$, is exactly the red curve.
        '''),
        code('''
        levels = [0, 0.01, 0.05, 0.15, 0.4, 1.0, 2.0, 4.0]
        fig, axes = plt.subplots(1, 4, figsize=(16, 4))
        u = np.linspace(-3, 3, 301)
        for ax, (name, act) in zip(axes, ACTS.items()):
            v = np.linspace(-1.5, 3, 301) if act.domain[1] > 1 else np.linspace(-1.2, 1.2, 301)
            UU, VV = np.meshgrid(u, v)
            with np.errstate(all="ignore"):
                Bgrid = act.B(VV, UU)
            filled = ax.contourf(UU, VV, np.where(np.isinf(Bgrid), np.nan, Bgrid), levels=levels,
                                 cmap="viridis_r", extend="max")
            ax.contourf(UU, VV, np.isinf(Bgrid).astype(float), levels=[0.5, 1.5], colors=["0.8"])
            ax.plot(u, act.forward(u), color="red", lw=2, label="v = phi(u)")
            ax.set_title(f"B(v, u), {name}")
            ax.set_xlabel("u (pre-activation)")
            ax.set_ylabel("v")
            ax.legend(loc="upper left", fontsize=8)
        fig.colorbar(filled, ax=axes, shrink=0.8, label="B(v, u)")
        plt.show()
        '''),
        md(r'''
        ## Fenchel–Young on a grid

        By the Fenchel–Young inequality $F(v) + F^*(u) \ge uv$, i.e. $B \ge 0$, with equality iff $v = (F^*)'(u) =
        \phi(u)$. On a $400 \times 400$ grid we check three things for each activation:

        * $B \ge 0$ everywhere (exactly: the implementation clips round-off at zero, so we also check the raw formula
          $F(v)+F^*(u)-uv$ never dips below $-10^{-12}$);
        * $B(\phi(u), u) = 0$ to round-off;
        * off the graph $B$ is strictly positive: for $|v - \phi(u)| \ge \delta$ it exceeds a positive margin.
        '''),
        code('''
        fy = {}
        u = np.linspace(-4, 4, 400)
        for name, act in ACTS.items():
            v = grid_in_domain(act, n=400, lo=-4.0, hi=4.0)
            UU, VV = np.meshgrid(u, v)
            raw = act.F(VV) + act.F_conj(UU) - UU * VV          # Fenchel-Young gap, no clipping
            on_graph = act.B(act.forward(u), u)
            far = np.abs(VV - act.forward(UU)) >= 0.05
            fy[name] = dict(min_raw=raw.min(), max_on_graph=np.abs(on_graph).max(),
                            min_off_graph=act.B(VV, UU)[far].min())
            print(f"{name:18s} min raw F+F*-uv = {fy[name]['min_raw']:+.1e}   "
                  f"max B on graph = {fy[name]['max_on_graph']:.1e}   "
                  f"min B where |v-phi(u)|>=0.05: {fy[name]['min_off_graph']:.2e}")
        '''),
        md(r'''
        ## Biconvex, not convex

        $B$ is convex in $v$ for fixed $u$ (it is $F(v)$ plus a linear term) and convex in $u$ for fixed $v$
        ($F^*(u)$ plus a linear term). That is all BCD needs: each subproblem (eqs. 14–20) fixes one side.

        $B$ cannot be *jointly* convex: the sublevel set $\{B \le 0\}$ of a convex function is convex, but the graph of a
        nonlinear $\phi$ is not. Concretely, two points on the ReLU graph, $(u,v) = (-1, 0)$ and $(1, 1)$, have $B = 0$,
        but their midpoint $(0, \tfrac12)$ has $B = \tfrac18$. We also confirm the two partial convexities with second
        differences, and check the gradients the torch solvers rely on: $\partial_u B = \phi(u) - v$ and
        $\partial_v B = \phi^{-1}(v) - u$ (so $B$ is $C^1$ in each argument even for the ReLU, as noted after eq. 5).
        '''),
        code('''
        relu = ACTS["ReLU"]
        b_ends = relu.B(np.array([0.0, 1.0]), np.array([-1.0, 1.0]))
        b_mid = float(relu.B(0.5, 0.0))
        print("B at the two ends:", b_ends, "  B at the midpoint:", b_mid)

        second_diff, grad_err = {}, {}
        for name, act in ACTS.items():
            lo, hi = act.domain
            # stay 0.01 inside the domain, where phi^{-1} is smooth enough for finite differences
            v = rng.uniform(max(lo, -2) + 0.01, min(hi, 2) - 0.01, 2000)
            u = rng.uniform(-3, 3, 2000)
            h = 1e-3   # second differences: convexity in v (u fixed) and in u (v fixed)
            d2v = act.B(v + h, u) - 2 * act.B(v, u) + act.B(v - h, u)
            d2u = act.B(v, u + h) - 2 * act.B(v, u) + act.B(v, u - h)
            second_diff[name] = min(d2v.min(), d2u.min()) / h**2
            h = 1e-6   # central differences for the gradients
            gu = (act.B(v, u + h) - act.B(v, u - h)) / (2 * h)
            gv = (act.B(v + h, u) - act.B(v - h, u)) / (2 * h)
            grad_err[name] = max(np.abs(gu - (act.forward(u) - v)).max(),
                                 np.abs(gv - (act.inverse(v) - u)).max())
            print(f"{name:18s} min second difference / h^2 = {second_diff[name]:+.2e}   "
                  f"max gradient error = {grad_err[name]:.1e}")
        '''),
        md(r'''
        ## Why the ReLU needs $v \ge 0$

        The ReLU is not strictly monotone, so Theorem 1 does not apply as stated. The paper restricts the inverse to
        $v \ge 0$ (setting $\phi^{-1} = +\infty$ for $v < 0$), which gives eq. 5: $B(v,u) = \tfrac12 v^2 + \tfrac12 u_+^2 - uv$
        **only on $v \ge 0$**, and $+\infty$ otherwise.

        Drop the constraint and the quadratic $\tilde B(v,u) = \tfrac12 v^2 + \tfrac12 u_+^2 - uv$ is no longer a
        Fenchel–Young gap: $\tfrac12 v^2$ on all of $\mathbb R$ is the $F$ of the *identity*, whose conjugate is
        $\tfrac12 u^2$, not $\tfrac12 u_+^2$. For $u < 0$:

        * $\tilde B$ is minimised at $v = u < 0$ with value $-\tfrac12 u^2 < 0$, so it is not a nonnegative penalty and
          the lower-bound argument of eq. 7 no longer reads "penalty $\ge 0$, zero when feasible";
        * the constraint $\tilde B(v,u) \le 0$ holds on the whole interval $v \in [2u, 0]$ instead of only at
          $v = \max(u,0) = 0$, so it does not encode the ReLU.

        This is why every X-variable after a ReLU carries `Z >= 0` in the CVXPY face (`act.cvx_domain`), why the torch
        solvers project onto $Z \ge 0$, and why `B` returns `inf` (and `check_domain` raises) for negative $v$.
        '''),
        code('''
        import cvxpy as cp

        u0 = -1.0
        v = np.linspace(-3, 1.5, 451)
        naive = 0.5 * v**2 + 0.5 * max(u0, 0) ** 2 - u0 * v
        with np.errstate(all="ignore"):
            true_B = relu.B(v, np.full_like(v, u0))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(v, naive, label="quadratic of eq. 5 without v >= 0")
        ax.plot(v, np.where(np.isinf(true_B), np.nan, true_B), lw=3, label="B of eq. 5 (inf for v < 0)")
        ax.axhline(0, color="k", lw=0.5)
        ax.axvspan(2 * u0, 0, color="C3", alpha=0.15, label="{v: quadratic <= 0} = [2u, 0]")
        ax.set_xlabel("v"); ax.set_title(f"u = {u0}: only v = relu(u) = 0 should have zero penalty")
        ax.legend(fontsize=8)
        plt.show()

        # The same in CVXPY: minimise the penalty over v with and without the domain constraint.
        v_free, vv = cp.Variable(), cp.Variable()
        free = cp.Problem(cp.Minimize(0.5 * cp.square(v_free) - u0 * v_free))
        free.solve(solver=cp.CLARABEL)
        B_expr, domain = relu.cvx_B(vv, np.array(u0))
        constrained = cp.Problem(cp.Minimize(B_expr), domain)
        constrained.solve(solver=cp.CLARABEL)
        print(f"without v >= 0: argmin v = {v_free.value:+.4f}, min = {free.value:+.4f}")
        print(f"with    v >= 0: argmin v = {vv.value:+.4f}, min = {constrained.value:+.4f}  (constraints: {[str(c) for c in domain]})")

        try:
            relu.check_domain(np.array([0.5, -0.1]), name="X_1")
        except DomainError as err:
            print("DomainError:", err)
        '''),
        md(r'''
        The leaky ReLU needs no constraint: it is strictly increasing, so Theorem 1 applies directly, and its
        $F(v) = v^2/(2\alpha)$ for $v<0$ is a steep but finite wall. As $\alpha \to 0$ the wall becomes the hard
        constraint $v \ge 0$ of the ReLU: $\min_v B_\alpha(v, u)$ over $v<0$ grows like $1/\alpha$ away from the graph.
        '''),
        code('''
        alphas = [0.5, 0.1, 0.01, 0.001]
        penalty_at_minus_half = [float(LeakyReLU(a).B(-0.5, 0.0)) for a in alphas]
        for a, p in zip(alphas, penalty_at_minus_half):
            print(f"alpha = {a:6.3f}: B(v=-0.5, u=0) = {p:9.2f}")
        '''),
        md('''
        ## What this notebook demonstrated (checked)
        '''),
        code('''
        for name in ACTS:
            # 1. F* is the conjugate of F (grid error is O(grid step^2)).
            assert conj_err[name] < 1e-4, (name, conj_err[name])
            # 2. Fenchel-Young: nonnegative, zero on the graph, positive off it.
            assert fy[name]["min_raw"] >= -1e-12, (name, fy[name])
            assert fy[name]["max_on_graph"] <= 1e-12, (name, fy[name])
            assert fy[name]["min_off_graph"] > 1e-5, (name, fy[name])
            # 3. convex in each argument, with the advertised gradients.
            assert second_diff[name] >= -1e-6, (name, second_diff[name])
            assert grad_err[name] < 1e-5, (name, grad_err[name])
        # not jointly convex: the midpoint of two zeros is positive
        assert np.all(b_ends == 0) and abs(b_mid - 0.125) < 1e-15
        # 4. without v >= 0 the ReLU quadratic goes negative and picks v = u < 0; with it, v = relu(u) = 0
        assert free.value < -0.49 and abs(v_free.value - u0) < 1e-6
        assert abs(constrained.value) < 1e-8 and abs(vv.value) < 1e-6
        assert np.isinf(relu.B(-0.1, 1.0))
        # the leaky-ReLU wall grows as alpha -> 0
        assert all(a < b for a, b in zip(penalty_at_minus_half, penalty_at_minus_half[1:]))
        print(f"all checks passed in {time.perf_counter() - T_START:.1f} s")
        '''),
    ]

# ---------------------------------------------------------------------------------------------------------
# 02: the four subproblems, CVXPY next to torch
# ---------------------------------------------------------------------------------------------------------
def nb02() -> list[Cell]:
    return [
        md(r"""
        # 02 · The BCD subproblems as CVXPY problems, and the torch solvers that match them

        With every activation written as a biconvex penalty, the Lagrangian (eq. 7)

        $$J(W, X) = \mathcal L(Y, W_L X_L + b_L) + \sum_{l=0}^{L} \rho_l \|W_l\|_F^2
                  + \sum_{l=0}^{L-1} \lambda_l B_l(X_{l+1}, W_l X_l + b_l)$$

        is convex in each block $X_l$ or $W_l$ when the others are fixed. Block coordinate descent (Algorithms 1-2)
        cycles through four kinds of convex subproblem:

        | name | paper | minimises | over |
        |---|---|---|---|
        | `x_hidden` | (14) | $\lambda_l B_l(X_{l+1}, W_l Z + b_l) + \lambda_{l-1} B_{l-1}(Z, U_{l-1})$ | $Z = X_l$ |
        | `x_last` | (15), (16) | $\mathcal L(Y, W_L Z + b_L) + \lambda_{L-1} B_{L-1}(Z, U_{L-1})$ | $Z = X_L$ |
        | `w_hidden` | (17), (19) | $\lambda_l B_l(X_{l+1}, W X_l + b) + \rho_l\|W\|_F^2 + \gamma_l(\|W - W^0_l\|_F^2 + \|b-b^0_l\|^2)$ | $W_l, b_l$ |
        | `w_last` | (18), (20) | $\mathcal L(Y, W X_L + b) + \rho_L\|W\|_F^2 + \gamma_L(\|W - W^0_L\|_F^2 + \|b-b^0_L\|^2)$ | $W_L, b_L$ |

        with $U_{l-1} = W_{l-1}X_{l-1} + b_{l-1}$ fixed. The toolkit has two faces with the same names and arguments:
        `fenchel_cvx.cvx` writes each subproblem as a CVXPY model (the readable reference), `fenchel_cvx.torch`
        solves it with batched first/second-order methods that report an optimality certificate (the fast path
        used for training). Here we build every subproblem in CVXPY, check it is DCP and DPP, solve it, and
        confirm the torch solver reaches the same value and the same minimiser.
        """),
        SETUP,
        code("""
        import fenchel_cvx.torch as ft
        from fenchel_cvx import SUBPROBLEMS, cvx
        from fenchel_cvx.data import teacher
        from fenchel_cvx.network import LiftedNetwork

        for name, sp in SUBPROBLEMS.items():
            print(f"{name:9s} eq. {sp.equations:11s} separates over {sp.separates_over:8s} min {sp.objective}")
        """),
        md(r"""
        ## A small lifted network

        A 10-8-6-3 ReLU network with the MSE loss, on regression data from a random teacher. Its X-variables start
        at the feed-forward values (Algorithm 1, line 3) and are then perturbed, so that each block has work to do.
        Everything inside the math is in the paper's layout, **(features, samples)**.
        """),
        code("""
        m = 40 if FAST else 120
        sizes = [10, 8, 6, 3]
        data = teacher(sizes[0], sizes[-1], m, hidden=sizes[1:-1], seed=SEED, noise=0.1)
        net = LiftedNetwork(sizes, "relu", "mse", seed=SEED)
        X0, Y = data.X.T, data.Y.T                       # (n, m) and (p, m)
        X1, X2 = net.init_X(X0)
        X1 = np.maximum(X1 + 0.2 * rng.standard_normal(X1.shape), 0)
        X2 = np.maximum(X2 + 0.2 * rng.standard_normal(X2.shape), 0)
        W, b = net.W, net.b
        lam, rho, gamma = [1.0, 0.5], [0.1, 0.1, 0.1], 0.5
        U0 = W[0] @ X0 + b[0][:, None]                   # pre-activations that the X-updates hold fixed
        U1 = W[1] @ X1 + b[1][:, None]
        print("J at the start:", net.lagrangian(X0, Y, [X1, X2], lam, rho))

        TOL = 1e-10   # torch certificate tolerance: tight enough for argmins to agree to ~1e-5
        def tt(a):
            return None if a is None else torch.as_tensor(a, dtype=torch.float64, device=DEVICE)

        def rel(a, b):
            a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
            return float(np.max(np.abs(a - b)) / max(1.0, np.max(np.abs(b))))

        def npy(t):
            return None if t is None else t.detach().cpu().numpy()

        # Re-solves start cold: OSQP warm-started from a previous solution can stall at these tight tolerances.
        COLD = {"warm_start": False}
        results = {}   # name -> values, argmin difference, DCP/DPP flags and times of both faces

        def compare(name, solve_cvx, solve_torch, argmins, model=None, verbose=True):
            # Solve with both faces; time CVXPY's first call (it compiles the model) and a re-solve.
            t = time.perf_counter(); r_cvx = solve_cvx(); t_first = time.perf_counter() - t
            r_cvx = solve_cvx(solver_opts=COLD)            # the cached, compiled DPP model: no canonicalisation
            r_torch = solve_torch()
            v_c, v_t = r_cvx.value, r_torch.value
            r = results[name] = dict(cvx=r_cvx, torch=r_torch, t_cvx_first=t_first,
                                     value_rel=abs(v_t - v_c) / abs(v_c),
                                     argmin_rel=max(rel(a, c) for a, c in argmins(r_torch, r_cvx)),
                                     dcp=None if model is None else model.is_dcp(),
                                     dpp=None if model is None else model.is_dpp())
            if verbose:
                print(f"value  CVXPY ({r_cvx.solver}, {r_cvx.status}) = {v_c:.10f}")
                print(f"value  torch ({r_torch.solver}, {r_torch.iterations} it, residual "
                      f"{r_torch.max_residual:.1e}) = {v_t:.10f}")
                print(f"relative value difference {r['value_rel']:.1e}, argmin difference {r['argmin_rel']:.1e}")

        Z_pair = lambda rt, rc: [(npy(rt.Z), rc.Z)]
        Wb_pair = lambda rt, rc: [(npy(rt.W), rc.W), (npy(rt.b), rc.b)]
        """),
        md(r"""
        ## `x_hidden`: updating a hidden X-variable (eq. 14)

        With $W_1$, $X_2$ and $U_0 = W_0X_0 + b_0$ fixed, $X_1$ solves
        $\min_{Z \ge 0} \lambda_1 B(X_2, W_1 Z + b_1) + \lambda_0 B(Z, U_0)$. For ReLU,
        $B(X_2, T) = \tfrac12\|X_2\|^2 + \tfrac12\|T_+\|^2 - \langle X_2, T\rangle$ is convex in $T$ (a
        `sum_squares(pos(.))` is DCP), and $B(Z, U_0)$ brings $\tfrac12\|Z\|^2$, so the problem is strongly convex and
        separates over data points. The constraint $Z \ge 0$ is the ReLU domain of notebook 01.

        The model is built once with CVXPY **parameters** for the data (`W`, `b`, the linear term `C`, a constant
        `offset`), which is what DPP (disciplined parametrized programming) allows: re-solving with new data skips
        CVXPY's compilation. Printing the model shows the exact problem CVXPY solves.
        """),
        code("""
        kw = dict(act="relu", act_prev="relu", lam=lam[1], lam_prev=lam[0])
        model = cvx.build_x_hidden(W[1].shape, m, **kw)
        print(model)
        print("DCP:", model.is_dcp(), " DPP:", model.is_dpp())

        compare("x_hidden", lambda **o: cvx.x_hidden(W[1], b[1], X2, U0, **kw, **o),
                lambda: ft.x_hidden(tt(W[1]), tt(b[1]), tt(X2), tt(U0), **kw, tol=TOL), Z_pair, model)
        """),
        md(r"""
        ## `x_last`: the last X-variable (eqs. 15-16)

        Next to the output the data term is the loss itself. With MSE and a ReLU before the output, eq. (15) is the
        non-negative least squares problem the paper mentions: $\min_{Z\ge0} \|Y - W_2Z - b_2\|_F^2 +
        \lambda_1 B(Z, U_1)$. The torch face solves it through its $K$-dimensional dual per column with a
        semismooth Newton method.
        """),
        code("""
        kw = dict(loss="mse", act_prev="relu", lam_prev=lam[1])
        model = cvx.build_x_last(W[2].shape, m, **kw)
        print(model)
        print("DCP:", model.is_dcp(), " DPP:", model.is_dpp())

        compare("x_last", lambda **o: cvx.x_last(W[2], b[2], Y, U1, **kw, **o),
                lambda: ft.x_last(tt(W[2]), tt(b[2]), tt(Y), tt(U1), **kw, tol=TOL), Z_pair, model)
        """),
        md(r"""
        With the cross-entropy loss, eq. (16) has a log-sum-exp term: an exponential-cone program, which CVXPY hands
        to Clarabel (OSQP only does QPs). The torch face uses FISTA with the exact proximal step of the ReLU term.
        Labels stand in for one-hot targets.
        """),
        code("""
        labels = rng.integers(0, sizes[-1], m)
        kw = dict(loss="ce", act_prev="relu", lam_prev=lam[1])
        model = cvx.build_x_last(W[2].shape, m, **kw)
        print(model.problem.objective)
        print("DCP:", model.is_dcp(), " DPP:", model.is_dpp(), " default solver:", model.default_solver)

        compare("x_last (CE)", lambda **o: cvx.x_last(W[2], b[2], labels, U1, **kw, **o),
                lambda: ft.x_last(tt(W[2]), tt(b[2]), torch.as_tensor(labels, device=DEVICE), tt(U1), **kw,
                                  tol=TOL), Z_pair, model)
        """),
        md(r"""
        ## `w_hidden`: a hidden weight matrix (eqs. 17, 19)

        With the X-variables fixed, $W_1, b_1$ solve $\min \lambda_1 B(X_2, W X_1 + b) + \rho_1\|W\|_F^2 +
        \gamma(\|W - W_1^0\|_F^2 + \|b - b_1^0\|^2)$: eq. (19) of the batched model, where $W^0$ is the previous
        batch's weights ($\gamma = 0$ gives eq. 17). It separates over the rows of $W$ (one output unit each). The
        torch face runs a batched semismooth Newton method, one Cholesky factorisation per row still active.
        """),
        code("""
        kw = dict(act="relu", lam=lam[1], rho=rho[1], gamma=gamma)
        model = cvx.build_w_hidden(W[1].shape, m, **kw)
        print(model)
        print("DCP:", model.is_dcp(), " DPP:", model.is_dpp())

        compare("w_hidden", lambda **o: cvx.w_hidden(X1, X2, **kw, W0=W[1], b0=b[1], **o),
                lambda: ft.w_hidden(tt(X1), tt(X2), **kw, W0=tt(W[1]), b0=tt(b[1]), tol=TOL), Wb_pair, model)
        """),
        md(r"""
        ## `w_last`: the output layer (eqs. 18, 20)

        A ridge regression for MSE (closed form via a Cholesky factorisation in torch), a multinomial logistic
        regression for cross-entropy.
        """),
        code("""
        kw = dict(loss="mse", rho=rho[2], gamma=gamma)
        model = cvx.build_w_last(W[2].shape, m, **kw)
        print(model)
        print("DCP:", model.is_dcp(), " DPP:", model.is_dpp())

        compare("w_last", lambda **o: cvx.w_last(X2, Y, **kw, W0=W[2], b0=b[2], **o),
                lambda: ft.w_last(tt(X2), tt(Y), **kw, W0=tt(W[2]), b0=tt(b[2]), tol=TOL), Wb_pair, model)
        """),
        md(r"""
        ## One BCD sweep never increases $J$

        Each subproblem minimises $J$ exactly over its block, so plugging the solutions in one after another, in the
        paper's order ($X_L, \dots, X_1$, then $W_L, \dots, W_0$), can only lower $J$. We run that sweep with the torch
        face (with $\gamma = 0$, the full-batch Algorithm 1) and evaluate $J$ after every block with the network's
        own `lagrangian` (numpy, independent of either solver).
        """),
        code("""
        sweep = net.copy()
        Xs = [X1.copy(), X2.copy()]
        def J_now():
            return sweep.lagrangian(X0, Y, Xs, lam, rho)
        J_trace = [("start", J_now())]
        Wt = lambda l: tt(sweep.W[l]); bt = lambda l: tt(sweep.b[l])
        U = lambda l: sweep.W[l] @ ([X0] + Xs)[l] + sweep.b[l][:, None]
        Xs[1] = npy(ft.x_last(Wt(2), bt(2), tt(Y), tt(U(1)), loss="mse", act_prev="relu", lam_prev=lam[1], tol=TOL).Z)
        J_trace.append(("X_2", J_now()))
        Xs[0] = npy(ft.x_hidden(Wt(1), bt(1), tt(Xs[1]), tt(U(0)), act="relu", act_prev="relu",
                                lam=lam[1], lam_prev=lam[0], tol=TOL).Z)
        J_trace.append(("X_1", J_now()))
        r = ft.w_last(tt(Xs[1]), tt(Y), loss="mse", rho=rho[2], tol=TOL)
        sweep.set_weights([sweep.W[0], sweep.W[1], npy(r.W)], [sweep.b[0], sweep.b[1], npy(r.b)])
        J_trace.append(("W_2", J_now()))
        for l, X_in in ((1, Xs[0]), (0, X0)):
            r = ft.w_hidden(tt(X_in), tt(Xs[l]), act="relu", lam=lam[l], rho=rho[l], tol=TOL)
            Wn, bn = list(sweep.W), list(sweep.b)
            Wn[l], bn[l] = npy(r.W), npy(r.b)
            sweep.set_weights(Wn, bn)
            J_trace.append((f"W_{l}", J_now()))
        for blk, J in J_trace:
            print(f"after {blk:5s}: J = {J:.8f}")
        """),
        md(r"""
        ## Timing: CVXPY against torch

        CVXPY is the reference: general, readable, and slow. The first call compiles the model (canonicalisation),
        later calls with the same sizes reuse the compiled DPP model and only pay for the solver; the torch
        solvers exploit the structure (separable columns or rows, batched linear algebra). Times below are on this
        machine's CPU for the small instances above, plus a larger `x_hidden` and `w_hidden`.
        """),
        code("""
        big_m, big_p = (100, 25) if FAST else (300, 40)
        Wb = rng.standard_normal((big_p, big_p)) / np.sqrt(big_p)
        Ub = rng.standard_normal((big_p, big_m))
        Xb_next = np.maximum(Wb @ np.maximum(Ub, 0) + 0.1 * rng.standard_normal((big_p, big_m)), 0)
        Xb_in = np.maximum(Ub, 0)
        kw_x = dict(act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
        kw_w = dict(act="relu", lam=1.0, rho=0.1)
        small = list(results)
        compare("x_hidden (big)", lambda **o: cvx.x_hidden(Wb, None, Xb_next, Ub, **kw_x, **o),
                lambda: ft.x_hidden(tt(Wb), None, tt(Xb_next), tt(Ub), **kw_x, tol=TOL), Z_pair, verbose=False)
        compare("w_hidden (big)", lambda **o: cvx.w_hidden(Xb_in, Xb_next, **kw_w, **o),
                lambda: ft.w_hidden(tt(Xb_in), tt(Xb_next), **kw_w, tol=TOL), Wb_pair, verbose=False)
        big = [n for n in results if n not in small]

        print(f"{'subproblem':16s} {'variable':>10s} {'CVXPY first':>12s} {'CVXPY re-solve':>15s} {'torch':>9s} "
              f"{'speed-up':>9s} {'rel. value diff':>16s}")
        timing = {}
        for name, r in results.items():
            t_c, t_t = r["cvx"].solve_time, r["torch"].solve_time
            var = r["torch"].Z if r["torch"].Z is not None else r["torch"].W
            timing[name] = (r["t_cvx_first"], t_c, t_t)
            print(f"{name:16s} {tuple(var.shape)!s:>10s} {r['t_cvx_first']:11.3f}s {t_c:14.3f}s {t_t:8.4f}s "
                  f"{t_c / t_t:8.1f}x {r['value_rel']:16.1e}")
        """),
        md(r"""
        ## How the torch solvers converge

        Each torch result carries an optimality certificate: a computable upper bound on (objective − minimum),
        relative to the objective's magnitude (a Fenchel duality gap for the X-updates, $\|\nabla f\|^2/2\mu$ for the
        strongly convex W-updates). `info["history"]` records its maximum over columns/rows as the solver runs.
        FISTA (`x_hidden`) converges linearly at a rate set by the condition number; the Newton methods
        (`x_last` MSE, `w_hidden`) finish in a handful of steps.
        """),
        code("""
        def history(res):
            h = res.info.get("history", [])
            if h and isinstance(h[0], (tuple, list)):
                its, vals = zip(*h)
            else:
                its, vals = range(1, len(h) + 1), h
            return np.asarray(its, dtype=float), np.asarray(vals, dtype=float)

        fig, ax = plt.subplots(figsize=(7, 4))
        curves = {}
        for name in ["x_hidden (big)", "w_hidden (big)", "x_last", "x_last (CE)"]:
            curves[name] = its, vals = history(results[name]["torch"])
            ax.semilogy(its, np.maximum(vals, 1e-17), marker="o", ms=3,
                        label=f"{name}: {results[name]['torch'].solver}")
        ax.axhline(TOL, color="k", ls="--", lw=0.8, label=f"tol = {TOL:g}")
        ax.set_xlabel("iteration"); ax.set_ylabel("max relative certificate")
        ax.set_title("torch solvers: optimality certificate per iteration")
        ax.legend(fontsize=8)
        plt.show()
        """),
        md("""
        ## What this notebook demonstrated (checked)
        """),
        code("""
        for name, r in results.items():
            assert name in big or (r["dcp"] and r["dpp"]), (name, "model not DCP/DPP")
            assert r["cvx"].status == "optimal" and r["torch"].converged, (name, r["cvx"].status, r["torch"].status)
            # same value (the issue's criterion) and the same minimiser (every instance here is strongly convex)
            assert abs(r["torch"].value - r["cvx"].value) <= 1e-6 * abs(r["cvx"].value), (name, r["value_rel"])
            assert r["argmin_rel"] <= 1e-4, (name, r["argmin_rel"])
        # the sweep never increased J, and decreased it overall
        Js = [J for _, J in J_trace]
        assert all(b <= a + 1e-9 * abs(a) for a, b in zip(Js, Js[1:])), J_trace
        assert Js[-1] < Js[0]
        # torch beats CVXPY on the larger instances; certificates end below tol
        assert all(timing[n][2] < timing[n][1] for n in big), timing
        assert all(vals[-1] <= TOL for _, vals in curves.values()), {k: v[1][-1] for k, v in curves.items()}
        print(f"all checks passed in {time.perf_counter() - T_START:.1f} s")
        """),
    ]

# ---------------------------------------------------------------------------------------------------------
# 03: training on MNIST next to Adam and SGD
# ---------------------------------------------------------------------------------------------------------
def nb03() -> list[Cell]:
    return [
        md(r"""
        # 03 · Training a Fenchel lifted network by block coordinate descent

        The lifted model keeps one matrix of activations $X_l$ per hidden layer as a variable and trains by
        minimising the Lagrangian (7) block by block. Two algorithms from section 4.5:

        * **Algorithm 1** (full batch): initialise $X_1..X_L$ by a feed-forward pass, then repeat sweeps
          $X_L, \dots, X_1$ (eqs. 15, 14) followed by $W_L, \dots, W_0$ (eqs. 18, 17). Every block is an exact convex
          minimisation, so $J$ never increases.
        * **Algorithm 2** (batched, eq. 13): for each batch of data, re-initialise the X-variables of that batch by
          feed-forward and run $K$ sweeps whose W-updates carry the proximal term
          $\gamma_l\|W_l - W_l^0\|_F^2$ to the previous batch's weights (eqs. 19, 20). This is what the paper's
          MNIST experiments use (batch 500, $K=1$, Appendix C).

        We train on the MNIST subset that ships with the package, next to the same network trained by Adam and
        SGD with the same initial weights and the same batches, and look at the test accuracy (as in Fig. 2), the
        penalty part of $J$, and what $\lambda$ does.
        """),
        SETUP,
        code("""
        from IPython.display import display

        from fenchel_cvx.baselines import Backprop, BackpropSettings
        from fenchel_cvx.bcd import BCD, BCDSettings
        from fenchel_cvx.data import load_mnist_subset
        from fenchel_cvx.network import LiftedNetwork
        from fenchel_cvx.plots import plot_accuracy

        N_TRAIN, N_TEST, EPOCHS = (2000, 1000, 1) if FAST else (10000, 2000, 1)
        data = load_mnist_subset().subsample(N_TRAIN, N_TEST, seed=SEED)

        def pool(images):
            # 2x2 average pooling, 28x28 -> 14x14 = 196 features (see the note below)
            return images.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(images), -1)

        X_train, y_train = data.arrays("train")          # samples first: (m, 784) floats in [0, 1]
        X_test, y_test = data.arrays("test")
        X_train, X_test = pool(X_train), pool(X_test)
        print(data.name, X_train.shape, X_test.shape, "classes per train sample:", np.bincount(y_train))
        """),
        md(r"""
        **Why 14x14 inputs.** The first W-update (eq. 19 for $W_0$) separates over the hidden units, and the torch
        solver takes Newton steps with one $p_0 \times p_0$ Hessian per unit: $O(p_0^3)$ work per unit and step. With
        $p_0 = 784$ one such update of a 64-unit layer took about ten seconds on one core of our (busy) CPU; with
        $p_0 = 196$ a 100-unit layer takes about one second, which keeps this notebook under two minutes. The paper's 784-300-10 setting is
        what `fenchel-cvx train` runs.

        The network is 196-100-10 with a ReLU and the cross-entropy loss. Hyperparameters follow Appendix C for the
        batched 784-300-10 model: $\lambda = 0.1$, no weight penalty ($\rho = 0$), proximal weights
        $\gamma = (1, 100)$, batch 500, $K = 1$. Adam and SGD use Appendix C's learning rates ($10^{-3}$, $10^{-2}$).
        """),
        code("""
        net = LiftedNetwork([196, 100, 10], "relu", "ce", seed=SEED)
        BATCH = 500
        bcd = BCD(net, BCDSettings(lam=0.1, rho=0.0, gamma=[1.0, 100.0], batch_size=BATCH, K=1, epochs=EPOCHS,
                                   eval_every=1, device=DEVICE, seed=SEED))
        t = time.perf_counter()
        fenchel = bcd.run(X_train, y_train, X_test=X_test, y_test=y_test, progress=False)
        print(f"Fenchel BCD: {time.perf_counter() - t:.1f} s, test accuracy {fenchel.history[-1]['test_acc']:.3f}")

        baselines = {}
        for opt in ("adam", "sgd"):
            trainer = Backprop(net, BackpropSettings(optimizer=opt, batch_size=BATCH, epochs=EPOCHS, eval_every=1,
                                                     device=DEVICE, seed=SEED))
            t = time.perf_counter()
            baselines[opt] = trainer.run(X_train, y_train, X_test=X_test, y_test=y_test, progress=False)
            print(f"{opt:5s}: {time.perf_counter() - t:.1f} s, test accuracy "
                  f"{baselines[opt].history[-1]['test_acc']:.3f}")
        """),
        md(r"""
        ## Test accuracy per batch (compare Fig. 2)

        The same batches in the same order for all three (one seeded permutation per epoch). As in the paper, the
        lifted network learns much faster at the start: each BCD step solves its convex subproblems to optimality
        instead of taking one gradient step. (With this few steps Adam and SGD are far from done; the paper's
        Fig. 2 shows Adam catching up after a few epochs on all 60,000 images.)

        Test predictions use the ordinary feed-forward rule. Section 4.3 discusses the alternative "argmin" rule
        (12), which minimises the lifted objective over the activations of the test point; with the MSE loss the two
        coincide, and `BCDSettings(prediction="argmin")` evaluates (12) for cross-entropy.
        """),
        code("""
        runs = {"Fenchel (BCD)": fenchel.history, "Adam": baselines["adam"].history, "SGD": baselines["sgd"].history}
        fig = plot_accuracy(runs, metric="test_acc", x="step",
                            title=f"196-100-10 ReLU, cross-entropy, {N_TRAIN} training images, batch {BATCH}")
        display(fig)
        acc = {k: [r["test_acc"] for r in rows] for k, rows in runs.items()}
        for k, a in acc.items():
            print(f"{k:14s} after batch 1: {a[0]:.3f}   final: {a[-1]:.3f}")
        """),
        md(r"""
        ## The penalty part of $J$

        Every history row splits $J$ on the batch into the loss, $\rho$-term and the penalty $\sum_l \lambda_l
        B_l(X_{l+1}, W_l X_l + b_l)$. The penalty measures how far the lifted activations are from what the network
        would compute. A batch starts at the feed-forward point (penalty 0); the X-update trades penalty for loss,
        and the W-update then pulls the network towards the new activations. As training proceeds the network's
        own outputs fit better and the X-updates need to move less: the penalty at the end of each batch shrinks.
        The primal objective (3) on the batch, evaluated at the feed-forward point of the new weights, is plotted too.
        """),
        code("""
        hist = fenchel.history
        steps = [r["step"] for r in hist]
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        axes[0].plot(steps, [r["J"] for r in hist], "o-", label="J (eq. 7) after the sweep")
        axes[0].plot(steps, [r["primal"] for r in hist], "s-", label="primal (eq. 3) at the new weights")
        axes[0].set_xlabel("batch"); axes[0].set_title("objectives on the batch"); axes[0].legend()
        axes[1].plot(steps, [r["penalty"] for r in hist], "o-", color="C3")
        axes[1].set_xlabel("batch"); axes[1].set_title("penalty  sum_l lam_l B_l  on the batch")
        plt.show()
        penalty = [r["penalty"] for r in hist]
        print("penalty per batch:", np.round(penalty, 2))
        """),
        md(r"""
        Algorithm 1 makes the descent property visible. On a small full batch (with Appendix C's non-batched
        $\rho = (10^{-2}, 10)$), we record $J$ after every block of every sweep: it never goes up, and its penalty
        part shrinks sweep after sweep while the gap to the primal objective closes.
        """),
        code("""
        m_full, sweeps = (300, 6) if FAST else (1000, 8)
        full = BCD(net, BCDSettings(lam=0.1, rho=[1e-2, 10.0], batch_size=None, epochs=sweeps, record_blocks=True,
                                    device=DEVICE, seed=SEED))
        block_J, block_names = [], []
        def keep_blocks(state, row):
            block_J.append(state.last["J0"]) if not block_J else None
            for blk in state.last["blocks"]:
                block_J.append(blk["J"]); block_names.append(f"{blk['block']}[{blk['layer']}]")
        alg1 = full.run(X_train[:m_full], y_train[:m_full], progress=False, callback=keep_blocks)

        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
        axes[0].semilogy(block_J, ".-")
        axes[0].set_xlabel("block update (X_L, W_L, W_0 per sweep)"); axes[0].set_title("Algorithm 1: J after every block")
        sweep_rows = alg1.history
        axes[1].plot([r["epoch"] for r in sweep_rows], [r["penalty"] for r in sweep_rows], "o-", color="C3",
                     label="penalty")
        axes[1].plot([r["epoch"] for r in sweep_rows], [r["primal"] - r["J"] for r in sweep_rows], "s-", color="C2",
                     label="primal - J")
        axes[1].set_xlabel("sweep"); axes[1].legend(); axes[1].set_title("penalty and relaxation gap")
        plt.show()
        print("blocks in a sweep:", block_names[:len(block_names) // sweeps])
        """),
        md(r"""
        ## What $\lambda$ does

        $\lambda$ prices the violation of $X_{l+1} = \phi(W_l X_l + b_l)$. With a small $\lambda$ the X-variables are
        almost free: the X-update fits the labels through $X_L$, the penalty allows large violations, and the weights
        learned from such activations reproduce them poorly under feed-forward. With a large $\lambda$ the
        activations stay close to what the network computes, $J$ is close to the primal objective (the relaxation is
        tight, see notebook 04), and each step moves less. We train twice more on the same batches, with
        $\lambda = 0.01$ and $\lambda = 1$, and compare the violation $\sum B$ (penalty divided by $\lambda$), the gap
        primal − $J$, and the test accuracy.
        """),
        code("""
        m_lam = 1000 if FAST else 2000
        lam_runs = {}
        for lam in (0.01, 1.0):
            trainer = BCD(net, BCDSettings(lam=lam, rho=0.0, gamma=[1.0, 100.0], batch_size=BATCH, epochs=1,
                                           eval_every=1, device=DEVICE, seed=SEED))
            lam_runs[lam] = trainer.run(X_train[:m_lam], y_train[:m_lam], X_test=X_test, y_test=y_test,
                                        progress=False).history

        print(f"{'lambda':>7s} {'sum B (violation)':>18s} {'primal - J':>11s} {'test acc':>9s}")
        lam_summary = {}
        for lam, rows in lam_runs.items():
            last = rows[-1]
            lam_summary[lam] = dict(violation=last["penalty"] / lam, gap=last["primal"] - last["J"],
                                    acc=last["test_acc"])
            print(f"{lam:7g} {lam_summary[lam]['violation']:18.2f} {lam_summary[lam]['gap']:11.2f} "
                  f"{lam_summary[lam]['acc']:9.3f}")
        fig = plot_accuracy({f"lambda = {lam:g}": rows for lam, rows in lam_runs.items()}, metric="test_acc",
                            x="step", title=f"Fenchel BCD on {m_lam} images, two multipliers")
        display(fig)
        """),
        md("""
        ## What this notebook demonstrated (checked)
        """),
        code("""
        a_f, a_adam, a_sgd = acc["Fenchel (BCD)"], acc["Adam"], acc["SGD"]
        # BCD learns faster than both baselines: ahead after one batch and at the end of the run
        assert a_f[0] > a_adam[0] and a_f[0] > a_sgd[0], (a_f[0], a_adam[0], a_sgd[0])
        assert a_f[-1] > a_adam[-1] and a_f[-1] > a_sgd[-1], (a_f[-1], a_adam[-1], a_sgd[-1])
        assert a_f[-1] >= 0.8, a_f[-1]
        # every solver certificate was met and the penalty shrank over training
        assert all(r["max_residual"] <= 1e-5 for r in hist), [r["max_residual"] for r in hist]
        assert penalty[-1] < 0.75 * penalty[0], penalty
        # Algorithm 1: J never increases, block after block; penalty and relaxation gap shrink
        assert all(b <= a * (1 + 1e-6) for a, b in zip(block_J, block_J[1:])), block_J
        first, last = sweep_rows[0], sweep_rows[-1]
        assert last["penalty"] < first["penalty"], (first, last)
        assert last["primal"] - last["J"] < first["primal"] - first["J"], (first, last)
        # lambda: a larger multiplier gives a smaller violation and a tighter relaxation
        assert lam_summary[1.0]["violation"] < lam_summary[0.01]["violation"], lam_summary
        assert lam_summary[1.0]["gap"] < lam_summary[0.01]["gap"], lam_summary
        print(f"all checks passed in {time.perf_counter() - T_START:.1f} s")
        """),
    ]

# ---------------------------------------------------------------------------------------------------------
# 04: the dual bound
# ---------------------------------------------------------------------------------------------------------
def nb04() -> list[Cell]:
    return [
        md(r"""
        # 04 · The Lagrange relaxation as a lower bound

        Dualising the constraints $B_l(X_{l+1}, W_lX_l + b_l) \le 0$ of eq. (6) with multipliers $\lambda_l \ge 0$ gives
        the Lagrangian $J$ of eq. (7) and the dual function $G(\lambda) = \min_{W, X} J$. For every $\lambda \ge 0$ and
        every weights $W$,

        $$G(\lambda) \;\le\; d^* = \max_{\lambda\ge0} G(\lambda) \;\le\; p^* \;\le\; P(W), \qquad (8)$$

        where $p^*$ is the optimum of the ordinary training problem (3) and $P(W)$ its objective at $W$ (which equals
        $J$ at the feed-forward X-variables, where every $B_l = 0$). Since $B \ge 0$, $J$ and hence $G$ grow with
        $\lambda$. This notebook shows:

        1. $\hat G(\lambda)$ against the primal objective as $\lambda$ grows: the relaxation tightening;
        2. Appendix A: for ReLU networks the per-layer multipliers collapse into one by rescaling (eqs. 21-22);
        3. Appendix B: with no hidden layer the relaxation (24) is convex and recovers the teacher $W^*$ exactly, where
           the non-convex regression (23) gets stuck;
        4. a **certified** lower bound on $G(\lambda)$, hence on $p^*$, for a tiny network, and the optimality gap it
           proves for a trained one.
        """),
        SETUP,
        code("""
        from fenchel_cvx.activations import ReLU
        from fenchel_cvx.baselines import Backprop, BackpropSettings
        from fenchel_cvx.bcd import BCD, BCDSettings
        from fenchel_cvx.data import teacher
        from fenchel_cvx.dual import certify_lower_bound, check_weak_duality, lambda_sweep, one_layer_bound, rescale
        from fenchel_cvx.network import LiftedNetwork


        def train_primal(net, X, Y, rho, epochs):
            # Full-batch Adam on the primal objective (3): loss (sum) + rho ||W||^2. Samples-first data.
            trainer = Backprop(net, BackpropSettings(optimizer="adam", lr=1e-2, rho=rho, batch_size=None,
                                                     epochs=epochs, reduction="sum", device=DEVICE, seed=SEED))
            return trainer.network_from_state(trainer.run(X, Y, progress=False))
        """),
        md(r"""
        ## 1 · $\hat G(\lambda)$ against the primal as $\lambda$ grows

        A 4-6-1 ReLU regression network (MSE, $\rho = 0.1$) on 60 points from a random teacher. First we train it
        the ordinary way (Adam on eq. 3) to get a good primal value $P(W_{\rm trained})$. Then `lambda_sweep`
        estimates $G(\lambda)$ on a grid: full-batch BCD (Algorithm 1) from several starts, largest $\lambda$ first,
        each run warm-started at the previous one, so the estimates are non-decreasing by construction.

        An honest caveat: $G(\lambda)$ is a non-convex minimum, and BCD finds a local one. So $\hat G$ is an
        **upper** estimate of $G(\lambda)$ (the certified bound comes in section 4). What it shows reliably is the
        relaxation at work: at small $\lambda$ the penalty is cheap and $J$ can drop far below any primal value; as
        $\lambda$ grows the gap $P(W_\lambda) - \hat G(\lambda)$ between the network and its relaxation closes.
        """),
        code("""
        reg = teacher(4, 1, 60, hidden=3, seed=1, noise=0.1)        # samples first: X (60, 4), Y (60, 1)
        RHO = 0.1
        net = LiftedNetwork([4, 6, 1], "relu", "mse", seed=SEED)
        trained = train_primal(net, reg.X, reg.Y, RHO, epochs=500 if FAST else 1500)
        X0, Y0 = reg.X.T, reg.Y.T                                    # paper layout for the math methods
        P_trained = trained.primal_objective(X0, Y0, RHO)
        print(f"P at the initial weights {net.primal_objective(X0, Y0, RHO):.4f}, after training {P_trained:.4f}")

        lams = [0.01, 0.1, 1, 10, 100] if FAST else [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100]
        sweep = lambda_sweep(trained, reg.X, reg.Y, lams, rho=RHO, starts=2, iterations=20 if FAST else 30,
                             seed=SEED)
        print(sweep)

        fig, ax = plt.subplots(figsize=(7, 4))
        ax.semilogx(sweep.lam, sweep.G_hat, "o-", label="G_hat(lambda): best J found (upper estimate of G)")
        ax.semilogx(sweep.lam, sweep.P, "s--", label="P(W_lambda): primal at the same weights")
        ax.axhline(P_trained, color="k", lw=0.8, label="P(W_trained), Adam on eq. 3")
        ax.set_xlabel("lambda"); ax.set_ylabel("objective"); ax.legend(fontsize=8)
        ax.set_title("the relaxation tightens as lambda grows")
        plt.show()
        """),
        md(r"""
        ## 2 · Appendix A: one $\lambda$ is enough for ReLU networks

        The ReLU penalty (5) is positively homogeneous of degree 2: $c\,B(V, U) = B(\sqrt c\,V, \sqrt c\,U)$. So scaling
        $\bar X_l = \sqrt{r_{l-1}}X_l$, $\bar W_l = \sqrt{r_l/r_{l-1}}\,W_l$, $\bar b_l = \sqrt{r_l}\,b_l$ with
        $r_l = \lambda_l/\lambda'_l$ (and $r_{-1} = r_L = 1$) turns the multipliers $\lambda_l$ into any $\lambda'_l$,
        at the price of $\bar\rho_l = \rho_l r_{l-1}/r_l$ (eq. 22). The loss is untouched because $\bar W_L\bar X_L = W_L X_L$.
        (`fenchel_cvx.scaling` explains why we keep the output unscaled, $r_L = 1$, rather than the paper's
        $\sqrt{\lambda_L}$ factor in eq. 21.)

        We check three things on a 4-6-5-1 network with $\lambda = (0.3, 3)$ rescaled to $\lambda' = (1, 1)$: the
        homogeneity identity; $J$ is unchanged; and — the point of Appendix A — BCD on the rescaled problem follows
        BCD on the original one step for step, ending at the same network function. This is why the learning
        problem (9) carries a single multiplier $\lambda$.
        """),
        code("""
        relu = ReLU()
        c = 7.3
        V, U = np.abs(rng.standard_normal((5, 40))), rng.standard_normal((5, 40))
        homog_err = abs(c * relu.B_sum(V, U) - relu.B_sum(np.sqrt(c) * V, np.sqrt(c) * U)) / (c * relu.B_sum(V, U))
        print(f"homogeneity: relative error {homog_err:.1e}")

        net2 = LiftedNetwork([4, 6, 5, 1], "relu", "mse", seed=SEED)
        lam2, rho2 = [0.3, 3.0], [0.1, 0.2, 0.1]
        Xvars = net2.init_X(X0)
        Xvars = [np.maximum(x + 0.1 * rng.standard_normal(x.shape), 0) for x in Xvars]   # any point, not just ff
        res = rescale(net2, Xvars, lam2, rho2, lam_to=1.0)
        J_orig = net2.lagrangian(X0, Y0, Xvars, lam2, rho2)
        J_bar = res.net.lagrangian(X0, Y0, res.Xvars, res.lam, res.rho)
        print(f"lambda {lam2} -> {res.lam}, rho {rho2} -> {np.round(res.rho, 4).tolist()}")
        print(f"J original {J_orig:.12f}   J rescaled {J_bar:.12f}")

        J_hist, nets = {}, {}
        for name, (n_, l_, r_) in {"original": (net2, lam2, rho2), "rescaled": (res.net, res.lam, res.rho)}.items():
            trainer = BCD(n_, BCDSettings(lam=l_, rho=r_, batch_size=None, epochs=4, tol=1e-10, device=DEVICE))
            state = trainer.run(reg.X, reg.Y, progress=False)
            J_hist[name] = np.array([r["J"] for r in state.history])
            nets[name] = trainer.network_from_state(state)
        print("J per sweep, original:", np.round(J_hist["original"], 8))
        print("J per sweep, rescaled:", np.round(J_hist["rescaled"], 8))
        same_function = np.abs(nets["original"].forward(reg.X) - nets["rescaled"].forward(reg.X)).max()
        print(f"max difference of the two trained networks' outputs: {same_function:.1e}")
        """),
        md(r"""
        ## 3 · Appendix B: a one-layer network, solved globally

        Data from a one-layer teacher, $Y = \phi(W^*X + b^*)$. The regression (23), $\min_W \|Y - \phi(WX + b)\|_F^2$,
        is non-convex; its relaxation (24), $\min_W B_\phi(Y, WX + b)$, is convex in $W$ (it is the W-update (17) with
        $\lambda = 1$), is $\ge 0$, and is $0$ at $W^*$. So a convex solver finds $W^*$. `one_layer_bound` solves (24)
        with the CVXPY model: a QP for ReLU, an exponential-cone program for the sigmoid.

        For contrast, L-BFGS on (23) from random starts (weights $N(0,1)$, biases $N(-1,1)$): a ReLU unit whose
        pre-activations are negative on every sample has zero gradient and never recovers, so most starts stall.
        """),
        code("""
        recovery = {}
        for act in ("relu", "sigmoid"):
            tch = teacher(5, 3, 200, act=act, seed=SEED)
            sol = one_layer_bound(tch.X, tch.Y, act=act, rho=0.0)
            recovery[act] = dict(G=sol.G, W_err=np.abs(sol.W - tch.W_star).max(), b_err=np.abs(sol.b - tch.b_star).max())
            print(f"{act:8s} eq. 24 by {sol.solver}: min B = {sol.G:.1e}, |W - W*| = {recovery[act]['W_err']:.1e}, "
                  f"|b - b*| = {recovery[act]['b_err']:.1e}")

        tch = teacher(5, 3, 200, act="relu", seed=SEED)
        Xt, Yt = torch.as_tensor(tch.X, device=DEVICE), torch.as_tensor(tch.Y, device=DEVICE)
        gen = torch.Generator().manual_seed(SEED)
        local = []
        for k in range(6 if FAST else 10):
            Wk = torch.randn(3, 5, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
            bk = (torch.randn(3, generator=gen, dtype=torch.float64) - 1.0).to(DEVICE).requires_grad_()
            opt = torch.optim.LBFGS([Wk, bk], max_iter=300, tolerance_grad=1e-12, tolerance_change=1e-15,
                                    line_search_fn="strong_wolfe")
            def closure(opt=opt, Wk=Wk, bk=bk):
                opt.zero_grad()
                loss = ((Yt - torch.relu(Xt @ Wk.T + bk)) ** 2).sum()
                loss.backward()
                return loss
            opt.step(closure)
            with torch.no_grad():
                local.append(float(((Yt - torch.relu(Xt @ Wk.T + bk)) ** 2).sum()))
        print("eq. 23 by L-BFGS, final loss per start:", np.round(local, 4))
        print(f"{sum(v > 1e-6 for v in local)} of {len(local)} starts stopped at a spurious stationary point")
        """),
        md(r"""
        ## 4 · A certified lower bound, and the optimality gap of a trained network

        For a one-hidden-layer ReLU network small enough to branch on its weights, `certify_lower_bound` brackets
        $G(\lambda)$ by a spatial branch-and-bound: every node solves a convex relaxation (McCormick envelopes, a
        secant for the concave part of $B$, cuts from the objective), and its bound comes from the conic *dual*
        vector, so solver tolerances cannot make it invalid. `lower` is rigorous, and by (8) it is also a lower bound
        on $p^*$, the best training objective any weights can reach.

        A 2-2-1 network on 16 points. The certificate also returns the weights of its best point; the primal
        objective there is an upper bound on $p^*$. We then train the network with Adam on eq. (3) from three starts:
        since $\text{lower} \le G(\lambda) \le p^* \le P(W_{\rm trained})$, the difference
        $P(W_{\rm trained}) - \text{lower}$ is a *proven* bound on how far each trained network is from the global
        optimum, and $P(W_{\rm trained}) - P(W_{\rm cert})$ a proven lower bound on its suboptimality.
        """),
        code("""
        g = np.random.default_rng(3)
        Xc = g.standard_normal((16, 2))
        Yc = np.maximum(Xc @ g.standard_normal((2, 2)).T + 0.3, 0) @ g.standard_normal(2) + 0.1 * g.standard_normal(16)
        LAM_C, RHO_C = 1.0, 0.1
        cert = certify_lower_bound(Xc, Yc, hidden=2, lam=LAM_C, rho=RHO_C, time_limit=5.0 if FAST else 30.0,
                                   rel_gap=1e-2, seed=SEED)
        print(cert)

        # p* <= P at the certificate's own weights (a feasible network): an upper bracket on p*
        cert_net = LiftedNetwork([2, 2, 1], "relu", "mse")
        cert_net.set_weights([cert.W0, cert.W1], [cert.b0, cert.b1])
        P_cert = cert_net.primal_objective(Xc.T, Yc[None, :], RHO_C)
        print(f"\\n{cert.lower:.4f} <= G(lambda) <= p* <= {P_cert:.4f} (primal at the certificate's weights)")

        print(f"\\n{'Adam start':>10s} {'P(W_trained)':>13s} {'proven gap <=':>14s} {'gap >=':>8s}")
        trained_gaps = []
        for seed in range(3):
            tiny = train_primal(LiftedNetwork([2, 2, 1], "relu", "mse", seed=seed), Xc, Yc[:, None], RHO_C,
                                epochs=400 if FAST else 1500)
            P_tiny = tiny.primal_objective(Xc.T, Yc[None, :], RHO_C)
            # weak duality: lower <= p* <= P(W_trained), so P(W_trained) - lower bounds the optimality gap
            slack = check_weak_duality(cert.lower, P_tiny, lower_name="certified lower bound",
                                       upper_name="P(W_trained)")
            trained_gaps.append((P_tiny, slack, P_tiny - P_cert))
            print(f"{seed:>10d} {P_tiny:13.4f} {slack:14.4f} {max(P_tiny - P_cert, 0):8.4f}")
        P_best = min(P for P, _, _ in trained_gaps)
        print(f"best trained network: within {P_best - cert.lower:.4f} "
              f"({(P_best - cert.lower) / P_best:.0%}) of the global optimum p*, proven")
        fig, ax = plt.subplots(figsize=(6, 3.5))
        hist = np.array(cert.history)
        ax.step(hist[:, 0], hist[:, 1], where="post", label="certified lower bound")
        ax.step(hist[:, 0], hist[:, 2], where="post", label="best J found (upper bound on G)")
        ax.axhline(P_best, color="k", lw=0.8, ls="--", label="P(W_trained), best Adam start")
        ax.set_xlabel("seconds"); ax.legend(fontsize=8); ax.set_title("branch and bound on G(lambda)")
        plt.show()
        """),
        md("""
        ## What this notebook demonstrated (checked)
        """),
        code("""
        # 1. G_hat is non-decreasing in lambda, never above the primal at its own weights nor above P(W_trained),
        #    and the relaxation gap closes as lambda grows
        assert np.all(np.diff(sweep.G_hat) >= -1e-9 * np.abs(sweep.G_hat[1:])), sweep.G_hat
        assert np.all(sweep.G_hat <= sweep.P * (1 + 1e-9)) and np.all(sweep.G_hat <= P_trained * (1 + 1e-9))
        gaps = sweep.P - sweep.G_hat
        assert gaps[-1] < 0.05 * gaps[0], gaps
        # 2. Appendix A: the rescaling is exact, and BCD runs on both problems coincide
        assert homog_err < 1e-12
        assert abs(J_orig - J_bar) <= 1e-10 * abs(J_orig), (J_orig, J_bar)
        assert np.allclose(J_hist["original"], J_hist["rescaled"], rtol=1e-8, atol=0), J_hist
        assert same_function < 1e-6, same_function
        # 3. Appendix B: the convex relaxation recovers the teacher; no local solution of (23) beats it
        for act, r in recovery.items():
            assert r["G"] < 1e-8 and r["W_err"] < 1e-4 and r["b_err"] < 1e-4, (act, r)
        assert min(local) >= -1e-12 and any(v > 1e-3 for v in local), local
        # 4. the certificate brackets G and bounds the trained network's optimality gap
        assert 0 <= cert.lower <= cert.upper and cert.nodes >= 1, cert
        assert cert.lower > 0.5 * cert.upper, (cert.lower, cert.upper)      # a useful bound, not a trivial 0
        assert cert.lower <= P_cert * (1 + 1e-9) and all(slack >= 0 for _, slack, _ in trained_gaps)
        print(f"all checks passed in {time.perf_counter() - T_START:.1f} s")
        """),
    ]


NOTEBOOKS: dict[str, Callable[[], list[Cell]]] = {
    "01_biconvex_activations.ipynb": nb01,
    "02_subproblems_in_cvxpy.ipynb": nb02,
    "03_training.ipynb": nb03,
    "04_dual_bound.ipynb": nb04,
}


def build(name: str) -> nbformat.NotebookNode:
    """The notebook ``name`` as an nbformat node, outputs empty, with deterministic cell ids."""
    stem = name.split("_")[0]
    nb = new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for i, (kind, src) in enumerate(NOTEBOOKS[name]()):
        cell = new_markdown_cell(src) if kind == "md" else new_code_cell(src)
        cell["id"] = f"nb{stem}-{i:02d}"   # stable ids keep regenerated files byte-identical
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(name)) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    wanted = [a for a in argv if not a.startswith("--")]
    names = [n for n in NOTEBOOKS if not wanted or any(n.startswith(w) for w in wanted)]
    NOTEBOOK_DIR.mkdir(exist_ok=True)
    stale = []
    for name in names:
        path = NOTEBOOK_DIR / name
        text = render(name)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run scripts/make_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
