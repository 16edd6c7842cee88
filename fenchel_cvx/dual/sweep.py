r"""G_hat(lambda) and P against lambda: the relaxation tightening as the multiplier grows.

Because ``B >= 0``, ``J(W, X; lam)`` is non-decreasing in every ``lam_l`` at each fixed point, hence so is
``G(lam) = min J``. The estimates keep that property by construction: the grid is swept from the largest
``lam`` down, each run warm-started at the previous (larger-``lam``) best point ``z``, whose own value is a
candidate, so

.. math::  \hat G(\lambda_k) \le J(z; \lambda_k) \le J(z; \lambda_{k+1}) = \hat G(\lambda_{k+1}).

:func:`lambda_sweep` checks that chain numerically (a failure means a wrong ``J`` evaluation, i.e. a bug) and
checks weak duality ``G_hat(lam) <= P`` at every weight set it visits.

Layout: samples-first ``X (m, n)``, ``Y (m,)`` or ``(m, p)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_int, check_scalar, per_layer
from ..errors import ShapeError
from ..network import LiftedNetwork
from ._inputs import check_network, float_array
from .bound import BoundReport, check_weak_duality, estimate_G, paper_layout

__all__ = ["LambdaSweep", "lambda_sweep"]


@dataclass
class LambdaSweep:
    """G_hat and P over a grid of multipliers (ascending ``lam``).

    Attributes
    ----------
    lam : ndarray, shape (k,)
        The common multiplier (``lam_l = lam * scale_l``).
    G_hat : ndarray, shape (k,)
        Upper estimates of ``G(lam)``, non-decreasing.
    P : ndarray, shape (k,)
        Primal objective at the best point's weights for each ``lam``.
    penalty : ndarray, shape (k,)
        ``sum lam_l B_l`` at the best point.
    P_ref : float
        Primal objective at the reference weights.
    reports : list of BoundReport
    """

    lam: np.ndarray
    G_hat: np.ndarray
    P: np.ndarray
    penalty: np.ndarray
    P_ref: float
    reports: list = field(default_factory=list)

    @property
    def P_min(self) -> float:
        """Best primal value seen (reference weights included): an upper bound on ``p*``."""
        return float(min(self.P_ref, np.min(self.P)))

    def __str__(self) -> str:
        lines = [f"{'lam':>10} {'G_hat':>12} {'P(W_lam)':>12} {'penalty':>12}"]
        for row in zip(self.lam, self.G_hat, self.P, self.penalty, strict=True):
            lines.append("".join(f"{v:>{w}.5g}" for v, w in zip(row, (10, 13, 13, 13), strict=True)))
        lines.append(f"best primal seen (upper bound on p*): {self.P_min:.6g}")
        return "\n".join(lines)


def lambda_sweep(net: LiftedNetwork, X: Any, Y: Any, lams: Sequence[float], *, rho: Any,
                 scale: Any = 1.0, starts: int = 2, iterations: int = 30, seed: int = 0,
                 backend: str = "torch", tol: float = 1e-9) -> LambdaSweep:
    """Estimate ``G(lam)`` on a grid, largest ``lam`` first with warm starts, and check monotonicity.

    Parameters
    ----------
    net : LiftedNetwork
        Architecture and reference weights.
    X : array, shape (m, n)
    Y : array, shape (m,) or (m, p)
    lams : sequence of float
        Grid of the common multiplier (after Appendix A's rescaling one ``lam`` suffices for ReLU nets).
    rho : float or sequence of L + 1 floats
    scale : float or sequence of L floats
        Per-layer factors: ``lam_l = lam * scale_l``.
    starts, iterations, seed, backend, tol
        As in :func:`estimate_G` (only the largest ``lam`` uses random starts; the others warm-start).

    Returns
    -------
    LambdaSweep

    Raises
    ------
    BoundViolationError
        When ``G_hat`` decreases along the grid or exceeds a primal value beyond tolerance.
    ShapeError, ValueRangeError, DomainError, ChoiceError
        Bad ``lams`` (empty, not 1-D, not all > 0), and the errors of :func:`estimate_G` for the other
        arguments.
    """
    check_network(net, "net")
    arr = float_array(lams, "lams")
    if arr.ndim > 1:
        raise ShapeError(f"lams: expected a 1-D sequence of multipliers, got shape {arr.shape}")
    grid = sorted((check_scalar(v, f"lams[{i}]", positive=True) for i, v in enumerate(np.atleast_1d(arr))),
                  reverse=True)
    if not grid:
        raise ShapeError("lams: expected at least one multiplier, got an empty grid")
    check_int(starts, "starts", 1)
    check_int(iterations, "iterations", 0, hint="BCD sweeps per start")
    check_int(seed, "seed", 0)
    scale_l = per_layer(scale, net.L, "scale", positive=True)
    X0, T = paper_layout(net, X, Y)
    reports: list[BoundReport] = []
    prev: BoundReport | None = None
    for lam in grid:
        lam_l = [lam * s for s in scale_l]
        rep = estimate_G(net, X, Y, lam=lam_l, rho=rho, starts=starts if prev is None else 1,
                         iterations=iterations, seed=seed, backend=backend, tol=tol,
                         init=None if prev is None else prev.network)
        if prev is not None:
            # The warm start's own value at this lam is a candidate: keeps G_hat monotone by construction.
            J_warm = prev.network.lagrangian(X0, T, prev.Xvars, lam_l, rep.rho)
            if J_warm < rep.G_hat:
                t = prev.network.lagrangian_terms(X0, T, prev.Xvars, lam_l, rep.rho)
                rep.G_hat, rep.loss, rep.penalty = float(t["total"]), float(t["loss"]), float(t["penalty"])
                rep.regularization = float(t["regularization"])
                rep.gap = rep.P - rep.G_hat
                rep.network, rep.Xvars = prev.network, prev.Xvars
                rep.P_best_weights = prev.P_best_weights
            check_weak_duality(rep.G_hat, prev.G_hat, lower_name=f"G_hat(lam={lam:g})",
                               upper_name=f"G_hat(lam={grid[len(reports) - 1]:g})")
        check_weak_duality(rep.G_hat, rep.P, lower_name="G_hat", upper_name="P(reference weights)")
        check_weak_duality(rep.G_hat, rep.P_best_weights, lower_name="G_hat", upper_name="P(best weights)")
        reports.append(rep)
        prev = rep
    reports.reverse()
    return LambdaSweep(lam=np.array(grid[::-1]), G_hat=np.array([r.G_hat for r in reports]),
                       P=np.array([r.P_best_weights for r in reports]),
                       penalty=np.array([r.penalty for r in reports]), P_ref=reports[0].P, reports=reports)
