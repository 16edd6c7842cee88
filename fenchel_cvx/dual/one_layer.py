r"""Appendix B: with no hidden layer the relaxation is convex, so G is computed exactly.

For a one-layer model ``Y = phi(W* X + b*)`` (Appendix B), the non-convex regression (23)
``min_W ||Y - phi(W X + b)||^2`` is replaced by the convex problem (24)

.. math::  G = \min_{W, b} \; B_\phi(Y, W X + b 1^T) + \rho \|W\|_F^2,

which is exactly the hidden W-subproblem (17) with ``lam = 1``, ``X_in = X``, ``X_next = Y``. With ``rho = 0``
and teacher data, ``B >= 0`` is zero at ``W*``, so ``W*`` is a global minimizer and ``G = 0``; it is the unique
one when the data determine it (for ReLU: the rows of ``X`` restricted to each unit's active samples span the
input space).

Layout: samples-first ``X (m, n)``, ``Y (m, p)``; returned ``W`` is ``(p, n)``, ``b`` is ``(p,)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_choice, check_finite, check_flag, check_ndim, check_scalar
from ..activations import Activation, get_activation
from ..errors import DomainError, ShapeError
from ._inputs import float_array

__all__ = ["OneLayerBound", "one_layer_bound"]


@dataclass
class OneLayerBound:
    """Exact ``G`` of the one-layer relaxation (24) and its minimizer."""

    G: float
    W: np.ndarray
    b: np.ndarray | None
    status: str
    solver: str


def one_layer_bound(X: Any, Y: Any, *, act: str | Activation = "relu", rho: float = 0.0, bias: bool = True,
                    solver: str | None = None) -> OneLayerBound:
    """Solve eq. (24) ``min_{W,b} B_act(Y, W X + b) + rho ||W||^2`` exactly with the CVXPY reference model.

    Parameters
    ----------
    X : array, shape (m, n)
        Inputs, samples first.
    Y : array, shape (m, p)
        Outputs of the teacher, samples first; must lie in the activation's domain.
    act : str or Activation
    rho : float
        Weight penalty ``>= 0``.
    bias : bool
        Fit a bias ``b``.
    solver : str, optional
        CVXPY solver override.

    Returns
    -------
    OneLayerBound
        ``G`` (exact up to solver accuracy), ``W (p, n)``, ``b (p,)``.

    Raises
    ------
    ShapeError
        ``X`` not 2-D, ``Y`` not 1-D/2-D or with another number of samples, no samples, features or outputs.
    DomainError
        Non-numeric or non-finite data, or ``Y`` outside the activation's domain (the message gives the
        sample and output).
    ValueRangeError, ChoiceError
        ``rho`` negative or not finite, ``bias`` not a bool; an unknown ``act`` or ``solver``.
    SolverError
        The solver failed.
    """
    import cvxpy as cp

    from .. import cvx

    X = float_array(X, "X")
    Y = float_array(Y, "Y")
    check_ndim(X, "X", 2, "(m, n): samples x features")
    if Y.ndim == 1:
        Y = Y[:, None]
    check_ndim(Y, "Y", 2, "(m, p): samples x outputs")
    if Y.shape[0] != X.shape[0]:
        raise ShapeError(f"Y: expected {X.shape[0]} rows (one per sample of X), got shape {Y.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ShapeError(f"X: expected at least one sample (row) and one feature (column), got shape {X.shape}")
    if Y.shape[1] < 1:
        raise ShapeError(f"Y: expected at least one output (column), got shape {Y.shape}")
    check_finite(X, "X")
    check_finite(Y, "Y")
    a = get_activation(act)
    inside = a.in_domain(Y)
    if not inside.all():
        j, i = (int(v) for v in np.argwhere(~inside)[0])
        raise DomainError(f"Y: expected values in the domain {a.domain_str()} of {a.name} (outputs of a one-layer "
                          f"{a.name} model), got {int((~inside).sum())} entries outside (first at sample {j}, "
                          f"output {i}: Y[{j}, {i}] = {Y[j, i]:g})")
    rho = check_scalar(rho, "rho", nonneg=True)
    check_flag(bias, "bias")
    if solver is not None:
        check_choice(solver.upper() if isinstance(solver, str) else solver, "solver", cp.installed_solvers(),
                     "not installed here; pass one of these as solver= (or install it)")
    res = cvx.w_hidden(X.T, Y.T, act=a, lam=1.0, rho=rho, bias=bool(bias), solver=solver)
    return OneLayerBound(G=float(res.value), W=np.asarray(res.W), b=None if res.b is None else np.asarray(res.b),
                         status=res.status, solver=res.solver)
