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
    """What every subproblem solver returns, with one meaning per field on both faces.

    Attributes
    ----------
    subproblem : str
        Registry name (a key of :data:`SUBPROBLEMS`).
    value : float
        The full objective at the returned point, constants included (a penalty term is exactly
        ``lam * sum B(...) >= 0``); NaN when ``status == "unchecked"``.
    status : str
        ``"optimal"``; ``"optimal_inaccurate"`` (CVXPY: the solver said so and polishing could not certify the
        point); ``"max_iter"`` or ``"stalled"`` (torch: stopped before its certificate met ``tol``);
        ``"unchecked"`` (torch: a capped update run on purpose without a certificate).
    converged : bool
        The face's own optimality test passed: torch, its certificate (``info["certificate"]``) is ``<= tol``
        everywhere; CVXPY, the status after polishing is ``"optimal"``. ``False`` when ``"unchecked"``.
    backend : str
        The face that answered: ``"cvx"`` or ``"torch"``.
    solver : str
        ``"OSQP"``, ``"CLARABEL"``, ... for CVXPY; the algorithm's name for torch (``"fista"``, ``"ssn"``,
        ``"mm"``, ``"running_mm"``, ...).
    solve_time : float
        Wall-clock seconds of the whole call.
    Z : array, shape (p_l, m), optional
        The X-update's argmin (numpy on the CVXPY face, a tensor on the torch face).
    W : array, shape (p_out, p_in), optional
        The W-update's argmin.
    b : array, shape (p_out,), optional
        The W-update's bias (``None`` when ``bias=False``).
    residual : array, shape (m,) for X-updates, (p_out,) for W-updates
        The first-order optimality residual of :mod:`fenchel_cvx.optimality` at the returned point, per column
        (X-updates) or per row of ``[W, b]`` (W-updates, ``w_last`` included), relative to the problem's
        scale: ``RESIDUALS[subproblem](...).per_item / .scale``. The same measure on both faces, in the face's
        array kind and dtype; NaN when ``status == "unchecked"``.
    max_residual : float
        ``max(residual)`` (NaN when ``"unchecked"``).
    iterations : int
        Iterations of the longest-running independent piece: the most any column block (CVXPY chunk) or any
        column / row (torch) took; 0 for a closed form.
    info : dict
        Face-specific extras. Torch: ``certificate`` (per column or row, what ``tol`` is tested against),
        ``gap``, ``history``, ... CVXPY: ``solver_status``, ``kkt_residual`` (Frobenius relative residual),
        ``solver_value``, chunk statuses, duals, ...
    """

    subproblem: str
    value: float
    status: str
    converged: bool
    backend: str
    solver: str
    solve_time: float
    Z: Any = None
    W: Any = None
    b: Any = None
    residual: Any = None
    max_residual: float = math.nan
    iterations: int = 0
    info: dict = field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The optimal variables by name (``{"Z": ...}`` or ``{"W": ..., "b": ...}``)."""
        names = SUBPROBLEMS[self.subproblem].over
        return {n: getattr(self, n) for n in names}
