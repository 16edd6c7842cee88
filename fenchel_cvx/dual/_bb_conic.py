r"""Rigorous bounds from a conic relaxation written in CVXPY (docs/certified_bound.md, section 5).

A subclass declares its variables (``self.vars``), their box Parameters (``self.lo``, ``self.hi``), envelope
Parameters (``self.coef``), the constraint groups (``self.constraints``) and the objective, all DPP, then calls
:meth:`ConicRelaxation._finish`. The problem is canonicalized once; per node only the Parameters change.

CVXPY's conic form is ``min c^T x + d`` s.t. ``A x + b in K`` where ``x`` is exactly the stacked declared
variables (no auxiliary variables: checked at build time) and every variable is boxed, ``lo <= x <= hi``.
For *any* ``y`` in the dual cone ``K*`` and any feasible ``x`` in the box,

.. math::  c^T x + d \;\ge\; c^T x + d - y^T(Ax + b) \;=\; d - b^T y + (c - A^T y)^T x
           \;\ge\; d - b^T y + \sum_i \min(r_i\,lo_i,\ r_i\,hi_i),\qquad r = c - A^T y .

We take Clarabel's dual vector, project it onto ``K*`` (``max(., 0)`` on the orthant; raise the head of each
second-order cone above the rounded-up norm of its tail), evaluate the right-hand side and subtract a bound on
its floating-point rounding. The result never relies on the solver's accuracy: a poor ``y`` gives a weaker,
still valid, bound. A primal infeasibility certificate is verified the same way (Farkas with boxed ``x``).

Compilation stops before CVXPY's solver-specific formatting step, whose cost grows like ``m^2`` with all these
Parameters (it was 68 s and 6.9 GB at ``m = 300`` and 32 GiB at ``m = 2000``); that step only permutes and
negates rows, which :meth:`ConicRelaxation.conic_data` does per node (``tests/test_hardening_certify.py`` checks
the result against CVXPY's own ``get_problem_data``, bit for bit).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import clarabel
import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from cvxpy.constraints import SOC, NonNeg, Zero
from cvxpy.reductions.dcp2cone.cone_matrix_stuffing import ParamConeProg

if TYPE_CHECKING:
    from ._bb_boxes import NodeData

__all__ = ["ConicRelaxation", "NodeResult"]

_EPS = np.finfo(float).eps


@dataclass
class NodeResult:
    """Outcome of one node solve."""

    bound: float          # rigorous lower bound on the node (+inf: node proven empty)
    solver_value: float   # Clarabel's primal objective (diagnostic only, never used as a bound)
    status: str
    values: dict | None   # primal values of all relaxation variables (branching and heuristics only)
    seconds: float
    iterations: int = 0


class ConicRelaxation:
    """Base class: compile once, then :meth:`solve` a node and return a rigorous bound."""

    tol: float = 1e-7
    max_iter: int = 200
    seconds_per_iteration: float = 0.0   # largest measured cost of one interior-point iteration

    def _finish(self, objective) -> None:
        self.problem = cp.Problem(cp.Minimize(objective), [c for cs in self.constraints.values() for c in cs])
        if not self.problem.is_dpp():  # pragma: no cover - a construction bug, not a user error
            raise AssertionError("certify relaxation is not DPP")
        t0 = time.perf_counter()
        self._compile()
        self.compile_seconds = time.perf_counter() - t0

    # -- conic data --------------------------------------------------------------------------------------------
    def _compile(self) -> None:
        """Canonicalize once: CVXPY's reductions up to (not including) the solver interface, then our own
        row map to the solver's cone layout.

        CVXPY's last step (``ConicSolver.format_constraints``) reshapes the parameter tensor to
        ``rows x (columns + 1) (parameters + 1)`` and multiplies it by a sparse matrix; scipy's sparse product
        allocates work arrays of that width, which grows like ``m^2`` (32 GiB at ``m = 2000``). That step only
        permutes rows (second-order cones interleave their head and tail) and negates the zero-cone rows, so it
        is applied here to each node's ``(A, b)`` instead, as a row map (:meth:`conic_data`). The tensor is
        built with CVXPY's COO backend, whose cost is linear in the number of parameter entries.
        """
        for k, v in self.lo.items():  # placeholder values so CVXPY can canonicalize
            v.value = np.zeros(v.shape)
            self.hi[k].value = np.ones(v.shape)
        for v in self.coef.values():
            v.value = np.zeros(v.shape) if v.shape else 0.0
        backend = getattr(cp, "COO_CANON_BACKEND", cp.SCIPY_CANON_BACKEND)
        chain = self.problem._construct_chain(solver=cp.CLARABEL, canon_backend=backend)
        prog = self.problem
        for reduction in chain.reductions[:-1]:  # the last one is the Clarabel interface (format_constraints)
            prog, _ = reduction.apply(prog)
        if not isinstance(prog, ParamConeProg):  # pragma: no cover - a CVXPY change we do not know
            raise AssertionError(f"unexpected CVXPY reduction output {type(prog).__name__}")
        self.param_prog = prog
        dims = prog.cone_dims
        self.dims = dims
        nx = prog.x.size
        total = sum(v.size for v in self.vars.values())
        if nx != total:  # pragma: no cover - the bound needs a box on every column
            raise AssertionError(f"relaxation introduced {nx - total} auxiliary variables; the rigorous bound "
                                 "needs every conic variable boxed")
        self.cols = {k: prog.var_id_to_col[v.id] for k, v in self.vars.items()}
        self.nx = nx
        self._row_map(prog.constraints)
        self.cones = []
        if dims.zero:
            self.cones.append(clarabel.ZeroConeT(dims.zero))
        if dims.nonneg:
            self.cones.append(clarabel.NonnegativeConeT(dims.nonneg))
        for d in dims.soc:
            self.cones.append(clarabel.SecondOrderConeT(d))
        if dims.psd or dims.exp or getattr(dims, "p3d", None) or getattr(dims, "pnd", None):  # pragma: no cover
            raise AssertionError("unexpected cone types in the relaxation")
        self.soc_starts = dims.zero + dims.nonneg + np.r_[0, np.cumsum(dims.soc)[:-1]].astype(int)
        self.soc_dims = np.asarray(dims.soc, dtype=int)
        self.n_rows = dims.zero + dims.nonneg + int(np.sum(dims.soc))
        if self.n_rows != len(self._dest):  # pragma: no cover
            raise AssertionError("cone dimensions do not match the constraint rows")

    def _row_map(self, constraints) -> None:
        """``dest, sign``: row ``i`` of CVXPY's stacked constraint arguments is row ``dest[i]`` of the solver's
        ``A x + b in K``, times ``sign[i]`` (what ``ConicSolver.format_constraints`` does, as a map).

        Zero cone: negated (CVXPY's convention; the zero cone is symmetric). Orthant: unchanged. A second-order
        constraint ``SOC(t (K,), X (d, K))`` is stored as ``t`` then ``vec(X)`` (column-major) and becomes the
        ``K`` cones ``(t_i, X[:, i])``: ``t_i -> i (d + 1)``, ``X[r, i] -> i (d + 1) + 1 + r``.
        """
        dest, sign = [], []
        offset = 0
        for con in constraints:
            size = sum(arg.size for arg in con.args)
            if isinstance(con, Zero):
                dest.append(offset + np.arange(size))
                sign.append(-np.ones(size))
            elif isinstance(con, NonNeg):
                dest.append(offset + np.arange(size))
                sign.append(np.ones(size))
            elif isinstance(con, SOC):
                if con.axis != 0:  # pragma: no cover - ConeMatrixStuffing lowers axis=1
                    raise AssertionError("second-order cone not lowered to axis 0")
                K = con.args[0].size
                d = con.args[1].shape[0] if con.args[1].shape else 1
                heads = np.arange(K) * (d + 1)
                tails = (np.arange(K)[:, None] * (d + 1) + 1 + np.arange(d)[None, :]).ravel()
                dest.append(offset + np.r_[heads, tails])
                sign.append(np.ones(size))
            else:  # pragma: no cover
                raise AssertionError(f"unexpected constraint type {type(con).__name__} in the relaxation")
            offset += size
        self._dest = np.concatenate(dest).astype(np.int64)
        self._sign = np.concatenate(sign)
        if not np.array_equal(np.sort(self._dest), np.arange(offset)):  # pragma: no cover
            raise AssertionError("the constraint row map is not a permutation")

    def vector(self, values: dict) -> np.ndarray:
        """Stack a dict ``name -> array`` into the conic column vector ``x`` (column-major per variable)."""
        x = np.empty(self.nx)
        for k, v in self.vars.items():
            x[self.cols[k]:self.cols[k] + v.size] = np.asarray(values[k], dtype=float).ravel(order="F")
        return x

    def unvector(self, x: np.ndarray) -> dict:
        return {k: x[self.cols[k]:self.cols[k] + v.size].reshape(v.shape, order="F") for k, v in self.vars.items()}

    def set_node(self, node: NodeData, *, cvxpy_values: bool = False) -> None:
        """Load a node's boxes and envelope coefficients (``cvxpy_values``: also into the CVXPY Parameters,
        which the per-constraint checks of the tests need; the solve path skips their slow validation)."""
        vals = {}
        for k, var in self.vars.items():
            lo, hi = node.boxes[k]
            vals[self.lo[k].id] = np.asarray(lo, dtype=float).reshape(var.shape)
            vals[self.hi[k].id] = np.asarray(hi, dtype=float).reshape(var.shape)
        for k, par in self.coef.items():
            val = node.coef[k]
            vals[par.id] = np.asarray(val, dtype=float).reshape(par.shape)
        self._param_values = vals
        if cvxpy_values:
            for par in list(self.lo.values()) + list(self.hi.values()) + list(self.coef.values()):
                par.value = vals[par.id] if par.shape else float(vals[par.id])
        self._box_lo = self.vector({k: vals[self.lo[k].id] for k in self.vars})
        self._box_hi = self.vector({k: vals[self.hi[k].id] for k in self.vars})

    def conic_data(self) -> tuple[np.ndarray, float, sp.csc_matrix, np.ndarray]:
        """``(c, d, A, b)`` of the current node: minimize ``c^T x + d`` s.t. ``A x + b in K``."""
        c, d, A, b = self.param_prog.apply_parameters(id_to_param_value=self._param_values, keep_zeros=True)
        A = sp.csc_matrix(A)
        # the row map (see _row_map): permute and negate rows, keeping explicit zeros (a fixed sparsity pattern
        # lets Clarabel reuse its symbolic set-up from node to node)
        A = sp.csc_matrix((A.data * self._sign[A.indices], self._dest[A.indices], A.indptr), shape=A.shape)
        A.sort_indices()
        bf = np.empty(self.n_rows)
        bf[self._dest] = self._sign * np.asarray(b, dtype=float)
        return np.asarray(c, dtype=float), float(d), A, bf

    # -- the rigorous bound --------------------------------------------------------------------------------
    def project_dual(self, y: np.ndarray) -> np.ndarray:
        """Project onto ``K*`` exactly enough: the result is in the dual cone in real arithmetic."""
        y = np.array(y, dtype=float)
        z0, nn = self.dims.zero, self.dims.nonneg
        y[z0:z0 + nn] = np.maximum(y[z0:z0 + nn], 0.0)
        for st, d in zip(self.soc_starts, self.soc_dims, strict=True):
            tail = y[st + 1:st + d]
            # the computed norm may be rounded down by ~d eps; inflate before comparing.
            nrm = float(np.sqrt(np.dot(tail, tail))) * (1.0 + 4 * (d + 2) * _EPS)
            if y[st] < nrm:
                y[st] = nrm
        return y

    def dual_bound(self, y: np.ndarray, c: np.ndarray, d: float, A: sp.csc_matrix, b: np.ndarray) -> float:
        """Weak-duality bound from any ``y`` (projected onto ``K*`` first), with rounding accounted for."""
        y = self.project_dual(y)
        lo, hi = self._box_lo, self._box_hi
        r = c - A.T @ y
        # rounding of r: |fl(r) - r| <= gamma (|c| + |A|^T |y|), gamma = (nnz per column + 2) eps.
        nnz_col = np.diff(A.indptr)
        absAy = abs(A).T @ np.abs(y)
        err_r = (nnz_col + 2) * _EPS * 1.01 * (np.abs(c) + absAy)
        lin = np.minimum(r * lo, r * hi)
        mag = np.maximum(np.abs(lo), np.abs(hi))
        if not np.all(np.isfinite(lin)):
            return -np.inf
        by = float(b @ y)
        total = d - by + float(lin.sum())
        # rounding of the sums and products above, bounded generously.
        err = float((err_r * mag).sum()) + (len(b) + len(lin) + 4) * _EPS * 1.01 * (
            abs(d) + float(np.abs(b) @ np.abs(y)) + float(np.abs(lin).sum()))
        return total - 2.0 * err

    def infeasible_by(self, y: np.ndarray, A: sp.csc_matrix, b: np.ndarray) -> bool:
        """True when ``y`` (projected) proves that no boxed ``x`` satisfies ``A x + b in K`` (Farkas)."""
        y = self.project_dual(y)
        g = A.T @ y      # feasible x would need g^T x >= -b^T y
        top = float(np.maximum(g * self._box_lo, g * self._box_hi).sum())
        rhs = -float(b @ y)
        scale = float(np.abs(g).dot(np.maximum(np.abs(self._box_lo), np.abs(self._box_hi)))) + abs(rhs)
        return top < rhs - 1e-9 * scale - 1e-12 and rhs > 0

    def solve(self, node: NodeData, time_limit: float | None = None) -> NodeResult:
        """Solve the node relaxation with Clarabel and return a rigorous bound (never the primal value).

        ``time_limit`` (seconds from the call) stops the interior-point method at the first iteration that ends
        after it; the bound is then the weak-duality value of the last dual iterate -- valid, usually weaker
        (or ``-inf``). The overrun is at most one iteration (measured: about 0.03 s at ``m = 300``, 1 s at
        ``m = 2000`` with ``n = h = 2``); :attr:`seconds_per_iteration` keeps the largest seen.
        """
        t0 = time.perf_counter()
        self.set_node(node)
        c, d, A, b = self.conic_data()
        settings = clarabel.DefaultSettings()
        settings.verbose = False
        settings.tol_gap_abs = self.tol
        settings.tol_gap_rel = self.tol
        settings.tol_feas = self.tol
        settings.max_iter = self.max_iter
        settings.presolve_enable = False
        # qdldl: on these KKT systems (many small cones, a few dense columns) the multithreaded "auto" choice
        # (faer) was 10x slower on 2 shared cores at m = 300 and no faster on small nodes.
        settings.direct_solve_method = "qdldl"
        if time_limit is not None:
            settings.time_limit = max(float(time_limit), 1e-6)  # shortened below by the set-up time
        Acl = sp.csc_matrix(-A)
        Acl.sort_indices()
        pattern = (Acl.indptr.tobytes(), Acl.indices.tobytes())
        solver = getattr(self, "_solver", None)
        if solver is not None and pattern == self._pattern:
            # same sparsity pattern (keep_zeros): reuse the solver's symbolic setup. (Even a wrong update could
            # only weaken the bound: it is computed below from our own A, b, c.)
            try:
                solver.update(q=c, A=Acl, b=b, settings=settings)
            except Exception:
                solver = None
        else:
            solver = None
        if solver is None:
            P = sp.csc_matrix((self.nx, self.nx))
            solver = clarabel.DefaultSolver(P, c, Acl, b, self.cones, settings)
            self._solver, self._pattern = solver, pattern
        if time_limit is not None:
            # what is left after building the data and (re)starting the solver, whose set-up the solver's own
            # clock does not count
            settings.time_limit = max(float(time_limit) - (time.perf_counter() - t0), 1e-6)
            with contextlib.suppress(Exception):  # a Clarabel without settings updates keeps the longer limit
                solver.update(settings=settings)
        t_solve = time.perf_counter()
        sol = solver.solve()
        per_iter = (time.perf_counter() - t_solve) / max(int(sol.iterations), 1)
        self.seconds_per_iteration = max(self.seconds_per_iteration, per_iter)
        status = str(sol.status)
        y = np.asarray(sol.z, dtype=float)
        x = np.asarray(sol.x, dtype=float)
        if "PrimalInfeasible" in status:
            if self.infeasible_by(y, A, b):
                return NodeResult(np.inf, np.inf, status, None, time.perf_counter() - t0, int(sol.iterations))
            return NodeResult(-np.inf, np.nan, status, None, time.perf_counter() - t0, int(sol.iterations))
        bound = self.dual_bound(y, c, d, A, b) if np.all(np.isfinite(y)) else -np.inf
        values = self.unvector(x) if np.all(np.isfinite(x)) else None
        return NodeResult(bound, float(c @ x + d) if values is not None else np.nan, status, values,
                          time.perf_counter() - t0, int(sol.iterations))

    # -- checks used by the tests ---------------------------------------------------------------------------
    def violations(self, values: dict) -> dict:
        """Largest violation of each constraint group at ``values`` (after :meth:`set_node`)."""
        for k, v in self.vars.items():
            v.value = np.asarray(values[k], dtype=float).reshape(v.shape)
        out = {}
        with np.errstate(divide="ignore", invalid="ignore"):  # CVXPY's cone residual divides by zero heads
            for name, cs in self.constraints.items():
                out[name] = max([float(np.max(c.violation())) for c in cs], default=0.0)
        return out

    def objective_at(self, values: dict) -> float:
        for k, v in self.vars.items():
            v.value = np.asarray(values[k], dtype=float).reshape(v.shape)
        return float(self.problem.objective.value)
