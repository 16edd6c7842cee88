r"""The registry of the four block-coordinate-descent subproblems and the result type both faces return.

Both faces -- :mod:`fenchel_cvx.cvx` (CVXPY reference) and :mod:`fenchel_cvx.torch` (batched solvers) --
implement every entry of :data:`SUBPROBLEMS` under the same name and with the same arguments; a test fails if a
face misses one. Matrices are in the paper's layout ``(features, samples)``; ``W Z + b`` means ``W Z + b 1^T``.

=========  ============================================================================  ========  =========
name       minimizes                                                                      over      paper
=========  ============================================================================  ========  =========
x_hidden   lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev)                   Z         (14)
x_last     loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev)                             Z         (15),(16)
w_hidden   lam B_act(X_next, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)   W, b      (17),(19)
w_last     loss(Y, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)             W, b      (18),(20)
=========  ============================================================================  ========  =========
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Subproblem", "SUBPROBLEMS", "SubproblemResult"]


@dataclass(frozen=True)
class Subproblem:
    """One BCD subproblem: its name, the paper's equations, the objective and how it separates."""

    name: str
    equations: str
    objective: str
    over: tuple[str, ...]
    separates_over: str  # "columns" (data points), "rows" (output units) or "none"


SUBPROBLEMS: dict[str, Subproblem] = {
    "x_hidden": Subproblem(
        "x_hidden", "(14)",
        "lam * B_act(X_next, W Z + b) + lam_prev * B_act_prev(Z, U_prev), Z in dom(act_prev)",
        ("Z",), "columns"),
    "x_last": Subproblem(
        "x_last", "(15), (16)",
        "loss(Y, W Z + b) + lam_prev * B_act_prev(Z, U_prev), Z in dom(act_prev)",
        ("Z",), "columns"),
    "w_hidden": Subproblem(
        "w_hidden", "(17), (19)",
        "lam * B_act(X_next, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2)",
        ("W", "b"), "rows"),
    "w_last": Subproblem(
        "w_last", "(18), (20)",
        "loss(Y, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2)",
        ("W", "b"), "none"),
}


@dataclass
class SubproblemResult:
    """What every subproblem solver returns, on both faces.

    Attributes
    ----------
    subproblem : str
        Registry name.
    value : float
        The full objective at the returned point, constants included (a penalty term is exactly
        ``lam * sum B(...) >= 0``).
    status : str
        ``"optimal"``, ``"optimal_inaccurate"`` (CVXPY), ``"max_iter"`` or ``"stalled"`` (torch, not converged), or
        ``"unchecked"`` (torch, a capped update run without a certificate: ``value`` and ``residual`` NaN).
    solver : str
        ``"OSQP"``, ``"CLARABEL"``, ... for CVXPY; the algorithm's name for torch (``"fista"``, ``"ssn"``, ...).
    solve_time : float
        Wall-clock seconds.
    Z : array, shape (p_l, m), optional
        The X-update's argmin.
    W : array, shape (p_out, p_in), optional
        The W-update's argmin.
    b : array, shape (p_out,), optional
        The W-update's bias (``None`` when ``bias=False``).
    residual : array, optional
        Torch face: optimality certificate per column (X-updates) or per row (hidden W-update); a single entry
        for ``w_last``.
    max_residual : float
        ``max(residual)``; NaN on the CVXPY face.
    iterations : int
        Iterations taken (torch face), 0 for a closed form.
    converged : bool
        ``max_residual <= tol`` (torch face); ``status == "optimal"`` (CVXPY face).
    info : dict
        Extras (duals, per-chunk statuses, residual history).
    """

    subproblem: str
    value: float
    status: str
    solver: str
    solve_time: float
    Z: Any = None
    W: Any = None
    b: Any = None
    residual: Any = None
    max_residual: float = math.nan
    iterations: int = 0
    converged: bool = True
    info: dict = field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The optimal variables by name (``{"Z": ...}`` or ``{"W": ..., "b": ...}``)."""
        names = SUBPROBLEMS[self.subproblem].over
        return {n: getattr(self, n) for n in names}
