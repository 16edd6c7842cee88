r"""Verification as a feature: is a given point the argmin of a BCD subproblem?

:func:`verify` takes a registry name, a candidate point and the same keyword data the faces take; it solves the
subproblem with the CVXPY face (the referee), evaluates the candidate's objective with the numeric formula the
faces report as ``value`` (:data:`fenchel_cvx.optimality.OBJECTIVES`) and its first-order optimality residual
(:data:`fenchel_cvx.optimality.RESIDUALS`, the measure both faces report as ``residual``), checks that it lies
in the subproblem's domain, and says in plain words what it found. For teaching ("is my hand-derived update
right?") and checking (a new solver against the reference).

Example
-------
>>> import numpy as np
>>> from fenchel_cvx import cvx
>>> from fenchel_cvx.verification import verify
>>> rng = np.random.default_rng(0)
>>> problem = dict(W=rng.standard_normal((3, 4)), b=None, X_next=rng.random((3, 5)),
...                U_prev=rng.standard_normal((4, 5)), act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
>>> verify("x_hidden", cvx.x_hidden(**problem).Z, **problem).ok
True
>>> verify("x_hidden", np.maximum(problem["U_prev"], 0), **problem).verdict.startswith("not optimal")
True
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._checks import check_choice, check_scalar, is_torch
from .activations import get_activation
from .errors import DomainError, FenchelError, ShapeError
from .optimality import objective, residual
from .subproblems import SUBPROBLEMS, SubproblemResult

__all__ = ["Verification", "verify"]

# The CVXPY face's own options: not problem data (``solver`` is verify's own argument).
_SOLVER_OPTIONS = ("solver", "solver_opts", "chunk", "polish")


@dataclass
class Verification:
    """What :func:`verify` found about a candidate point.

    Attributes
    ----------
    subproblem : str
        Registry name.
    value : float
        The candidate's objective (``+inf`` outside the domain), by the faces' numeric formula.
    optimum : float
        The CVXPY face's optimal value.
    gap : float
        ``value - optimum`` (``>= 0`` up to the reference's accuracy).
    relative_gap : float
        ``gap / max(1, |optimum|)``.
    residual : numpy.ndarray, shape (m,) for X-updates, (p_out,) for W-updates
        The optimality residual of :mod:`fenchel_cvx.optimality` at the candidate, per column or row, relative
        to the problem's scale (the measure both faces report as ``SubproblemResult.residual``).
    max_residual : float
        ``max(residual)``.
    feasible : bool
        The candidate lies in the subproblem's domain (``Z`` in ``dom(act_prev)``; W-updates are unconstrained)
        and is finite.
    verdict : str
        One plain sentence: ``"optimal: ..."``, ``"not optimal: ..."`` or ``"infeasible: ..."``.
    ok : bool
        Feasible and ``relative_gap <= tol``.
    tol : float
        The tolerance of ``ok``.
    reference : SubproblemResult
        The CVXPY face's answer.
    """

    subproblem: str
    value: float
    optimum: float
    gap: float
    relative_gap: float
    residual: np.ndarray
    max_residual: float
    feasible: bool
    verdict: str
    ok: bool
    tol: float
    reference: SubproblemResult

    def __str__(self) -> str:
        item = "column" if SUBPROBLEMS[self.subproblem].over == ("Z",) else "row"
        worst = int(np.argmax(self.residual)) if self.residual.size else 0
        lines = [
            f"{self.subproblem} {SUBPROBLEMS[self.subproblem].equations}: {self.verdict}",
            f"  objective at the candidate : {self.value:.10g}",
            f"  CVXPY optimum              : {self.optimum:.10g} ({self.reference.solver}, "
            f"{self.reference.status})",
            f"  gap (relative)             : {self.gap:.3g} ({self.relative_gap:.3g})",
            f"  optimality residual        : {self.max_residual:.3g} (largest, at {item} {worst})",
            f"  feasible                   : {self.feasible}",
        ]
        return "\n".join(lines)


def _numpy(x: Any) -> Any:
    """A torch tensor as numpy (float64, or int64 labels); anything else unchanged."""
    if is_torch(x):
        x = x.detach().cpu()
        return x.numpy() if not x.is_floating_point() else x.double().numpy()
    return x


def _as_point(x: Any, name: str) -> np.ndarray:
    if (is_torch(x) and (x.is_complex() or x.is_meta)) or (not is_torch(x) and np.iscomplexobj(x)):
        what = f"a tensor of dtype {x.dtype} on {x.device}" if is_torch(x) else "complex values"
        raise DomainError(f"candidate: expected a real array holding data for {name}, got {what}")
    try:
        arr = np.asarray(_numpy(x), dtype=float)
    except (TypeError, ValueError) as exc:
        raise ShapeError(f"candidate: expected a numeric array for {name}, got {type(x).__name__} ({exc})") from None
    return arr


def _candidate(subproblem: str, candidate: Any) -> tuple[np.ndarray, ...]:
    """``(Z,)`` or ``(W, b)`` as float64 numpy arrays (``b`` may be ``None``)."""
    if SUBPROBLEMS[subproblem].over == ("Z",):
        if isinstance(candidate, (tuple, dict)):
            raise ShapeError(f"candidate: {subproblem} is an update of Z; expected one array Z of shape (p_l, m), "
                             f"got a {type(candidate).__name__}")
        return (_as_point(candidate, "Z"),)
    if isinstance(candidate, dict):
        extra = set(candidate) - {"W", "b"}
        if "W" not in candidate or extra:
            raise ShapeError(f"candidate: expected a dict with keys 'W' and 'b' for {subproblem}, got keys "
                             f"{sorted(candidate)}")
        W, b = candidate["W"], candidate.get("b")
    elif isinstance(candidate, (tuple, list)) and len(candidate) == 2:
        W, b = candidate
    else:
        raise ShapeError(f"candidate: {subproblem} is an update of (W, b); expected a pair (W, b) or a dict "
                         f"{{'W': W, 'b': b}}, got {type(candidate).__name__}")
    return _as_point(W, "W"), None if b is None else _as_point(b, "b")


def _check_shapes(subproblem: str, point: tuple, ref: SubproblemResult) -> None:
    names = SUBPROBLEMS[subproblem].over
    for name, got in zip(names, point, strict=True):
        want = getattr(ref, name)
        if name == "b" and want is None:
            if got is not None:
                raise ShapeError(f"candidate: b must be None for this problem (bias=False), got an array of shape "
                                 f"{got.shape}")
            continue
        if got is None:
            raise ShapeError(f"candidate: {name} expected shape {want.shape}, got None; pass the bias as well "
                             "(or bias=False)")
        if got.shape != want.shape:
            raise ShapeError(f"candidate: {name} expected shape {want.shape} (the subproblem's), got {got.shape}")


def _problem(subproblem: str, problem: dict, face: Any) -> dict:
    """Check the keyword data against the CVXPY face's signature; torch tensors become numpy."""
    params = inspect.signature(face).parameters
    allowed = [k for k in params if k not in _SOLVER_OPTIONS]
    for key in problem:
        check_choice(key, f"{subproblem} problem argument", allowed,
                     "solver options are not problem data (verify takes solver= itself)"
                     if key in _SOLVER_OPTIONS else "pass the same keyword data as the faces")
    missing = [k for k in allowed if params[k].default is inspect.Parameter.empty and k not in problem]
    if missing:
        raise FenchelError(f"{subproblem}: verify needs the problem's data as keywords; missing "
                           f"{', '.join(missing)} (expected {', '.join(allowed)})")
    return {k: _numpy(v) for k, v in problem.items()}


def _first_outside(subproblem: str, point: tuple, problem: dict) -> str | None:
    """A sentence on the first entry outside the domain (or not finite), or ``None``."""
    names = SUBPROBLEMS[subproblem].over
    for name, arr in zip(names, point, strict=True):
        if arr is None:
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            return f"{name}{list(idx)} = {arr[idx]} is not finite"
    if names == ("Z",):
        act_prev = get_activation(problem["act_prev"])
        inside = np.asarray(act_prev.in_domain(point[0]))
        if not inside.all():
            idx = tuple(int(i) for i in np.argwhere(~inside)[0])
            return (f"Z[{', '.join(map(str, idx))}] = {point[0][idx]:.3g} is outside dom({act_prev.name}) = "
                    f"{act_prev.domain_str()}")
    return None


def verify(name: str, candidate: Any, *, tol: float = 1e-6, solver: str | None = None,
           **problem: Any) -> Verification:
    """Check a candidate point of a BCD subproblem against the CVXPY reference.

    Parameters
    ----------
    name : str
        A key of :data:`~fenchel_cvx.subproblems.SUBPROBLEMS` (``"x_hidden"``, ``"x_last"``, ``"w_hidden"``,
        ``"w_last"``).
    candidate : array, shape (p_l, m); or (W, b); or {"W": W, "b": b}
        The point to check: ``Z`` for the X-updates, the weights and bias for the W-updates (``b`` ``None``
        when ``bias=False``); numpy arrays or torch tensors (any dtype or device: checked in float64 on the CPU).
    tol : float
        ``ok`` when the candidate is feasible and ``relative_gap <= tol`` (default ``1e-6``).
    solver : str, optional
        The CVXPY solver of the reference (default: the face's choice, OSQP or Clarabel).
    **problem
        The keyword data the faces take, e.g. ``W=, b=, X_next=, U_prev=, act=, act_prev=, lam=, lam_prev=``
        for ``x_hidden`` or ``X_in=, X_next=, act=, lam=, rho=, gamma=, W0=, b0=, bias=`` for ``w_hidden``, and
        ``layer=`` (a :class:`~fenchel_cvx.layers.Layer`) for a conv or pooled layer: the candidate ``W`` is then
        in the layer's shape (the kernel ``(C_out, C_in, k, k)``), ``Z`` ``(layer.n_in, m)``.

    Returns
    -------
    Verification
        ``value``, ``optimum``, ``gap``, ``relative_gap``, ``residual`` / ``max_residual`` at the candidate,
        ``feasible``, a plain-text ``verdict``, ``ok`` and the CVXPY ``reference``; ``print`` it for a report.

    Raises
    ------
    ChoiceError
        An unknown ``name``, or a keyword that is not data of this subproblem.
    ShapeError
        A candidate of the wrong kind or shape (the message gives both shapes).
    DomainError
        A complex candidate (or a tensor that holds no data).
    FenchelError
        Problem data missing; any error of the CVXPY face on bad data (shapes, domains, ...).
    """
    name = check_choice(name, "name", SUBPROBLEMS, "a subproblem of fenchel_cvx.subproblems.SUBPROBLEMS")
    tol = check_scalar(tol, "tol", positive=True)
    from .cvx import FUNCTIONS  # CVXPY is imported only when verifying

    face = FUNCTIONS[name]
    data = _problem(name, problem, face)
    point = _candidate(name, candidate)
    ref = face(**data, **({"solver": solver} if solver is not None else {}))
    _check_shapes(name, point, ref)

    outside = _first_outside(name, point, data)
    feasible = outside is None
    finite = all(x is None or bool(np.isfinite(x).all()) for x in point)
    arg = point[0] if len(point) == 1 else point
    value = objective(name, arg, **data) if feasible else math.inf
    # the natural residual is defined (and finite) outside the domain too; only non-finite entries leave it NaN
    per_item = (np.asarray(residual(name, arg, **data).per_item_relative, dtype=float) if finite
                else np.full(ref.residual.shape, math.nan))
    max_res = float(per_item.max()) if per_item.size else 0.0
    optimum = float(ref.value)
    gap = value - optimum
    relative_gap = gap / max(1.0, abs(optimum))
    ok = feasible and relative_gap <= tol
    item = "column" if SUBPROBLEMS[name].over == ("Z",) else "row"
    if not feasible:
        verdict = f"infeasible: {outside}"
    elif ok and relative_gap < -tol:
        verdict = (f"optimal: objective {value:.6g} is {-gap:.3g} below the CVXPY optimum {optimum:.6g} (the "
                   f"reference is less accurate than tol={tol:g} here; optimality residual {max_res:.1g})")
    elif ok:
        verdict = (f"optimal: within {tol:g} of the CVXPY optimum (relative gap {relative_gap:.1g}, optimality "
                   f"residual {max_res:.1g})")
    else:
        pct = f" ({100 * gap / abs(optimum):.3g}%)" if optimum != 0 else ""
        worst = int(np.argmax(per_item)) if per_item.size else 0
        verdict = (f"not optimal: objective {value:.6g} is {gap:.3g}{pct} above the optimum {optimum:.6g}; "
                   f"optimality residual {max_res:.3g} at {item} {worst}")
    return Verification(subproblem=name, value=value, optimum=optimum, gap=gap, relative_gap=relative_gap,
                        residual=per_item, max_residual=max_res, feasible=feasible, verdict=verdict, ok=ok, tol=tol,
                        reference=ref)

