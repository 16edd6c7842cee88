"""Solver choice, default settings and status handling for the CVXPY reference models.

The models are QPs when every activation involved is piecewise linear (ReLU, leaky ReLU) and the loss, if any,
is MSE; anything with a sigmoid, tanh or cross-entropy needs the exponential cone. QPs go to OSQP (polished),
exponential-cone models to Clarabel; ``solver=`` overrides per call and ``solver_opts=``
overrides the defaults below key by key.

A status other than ``optimal`` or ``optimal_inaccurate`` raises :class:`~fenchel_cvx.errors.SolverError`.
``optimal_inaccurate`` is decided after Newton polishing (:mod:`fenchel_cvx.cvx._polish`): when the returned
point's relative optimality residual is at most :data:`CERTIFIED` the status becomes ``optimal`` (the solver's
own status is kept in ``info["solver_status"]``); otherwise :func:`warn_inaccurate` warns
:class:`~fenchel_cvx.errors.InaccurateSolutionWarning`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import osqp

from .._checks import check_choice
from ..activations import Activation
from ..errors import ChoiceError, InaccurateSolutionWarning, SolverError, ValueRangeError
from ..losses import Loss, MSELoss
from ..subproblems import outside_stacklevel

__all__ = [
    "CERTIFIED",
    "QP_ACTIVATIONS",
    "SolveInfo",
    "advice",
    "default_solver",
    "installed_solvers",
    "run_solver",
    "solver_settings",
    "warn_inaccurate",
    "worst_status",
]

QP_ACTIVATIONS = frozenset({"relu", "leaky_relu"})

#: A point whose relative first-order residual is at most this is reported ``optimal`` whatever the solver said.
CERTIFIED = 1e-9

_OSQP_POLISH = "polish" if int(osqp.__version__.split(".")[0]) < 1 else "polishing"

# Defaults: these models are the referee of the torch face, so the returned points must be exact; the
# solvers get close and polishing finishes. OSQP: ADMM to 1e-7, then OSQP's own active-set polishing (exact
# when it succeeds) and our Newton polish when it does not. Asking ADMM for 1e-9 gains nothing and costs a lot:
# large MSE x_last models run out of iterations, and the hidden W-update takes several times longer.
# Clarabel stalls below a gap of ~1e-9 on many exponential-cone instances (then says AlmostSolved); asking for
# 1e-9 and polishing with Newton afterwards is faster and more accurate than asking for 1e-10 or more.
_DEFAULT_OPTS: dict[str, dict[str, Any]] = {
    "OSQP": {"eps_abs": 1e-7, "eps_rel": 1e-7, "max_iter": 200_000, _OSQP_POLISH: True},
    "CLARABEL": {"tol_gap_abs": 1e-9, "tol_gap_rel": 1e-9, "tol_feas": 1e-9, "tol_ktratio": 1e-7,
                 "max_iter": 500},
    "SCS": {"eps_abs": 1e-9, "eps_rel": 1e-9, "max_iters": 200_000},
}
# On exponential-cone models Clarabel is more accurate when CVXPY writes the squares as second-order cones
# rather than a quadratic objective (measured: residuals 1e-9..2e-7 instead of up to 1e-5 at the same
# tolerances, ReLU/tanh and leaky-ReLU/sigmoid X-updates).
_CONIC_OPTS: dict[str, dict[str, Any]] = {"CLARABEL": {"use_quad_obj": False}}

# The COO canonicalization backend compiles parametrized matrix products (W @ Z with W a Parameter) several
# times faster than the default C++ one; fall back silently on CVXPY versions without it.
_CANON_BACKEND = getattr(cp.settings, "COO_CANON_BACKEND", None)

# Solvers whose models we compile as DPP (once per model, then only the parameter values change). CVXPY's
# conic path reshapes the parameter tensor into (#variables x #parameters) columns when it formats cones, so
# DPP compilation of the conic models grows with their product, to about a hundred times the cost of compiling
# without DPP at moderate sizes. OSQP's QP path compiles DPP as fast as not and then re-solves without
# recompiling and with OSQP's factorization cache. Pass solver_opts={"ignore_dpp": ...} to override.
_DPP_SOLVERS = frozenset({"OSQP"})

_STATUS_RANK = {cp.OPTIMAL: 0, cp.OPTIMAL_INACCURATE: 1}


def installed_solvers() -> list[str]:
    """The CVXPY solvers available here (upper-case names)."""
    return list(cp.installed_solvers())


def default_solver(acts: Iterable[Activation], loss: Loss | None = None) -> str:
    """Pick the solver by cone: OSQP for QPs, Clarabel for exponential-cone models.

    Parameters
    ----------
    acts : iterable of Activation
        The activations whose F or F* appear in the model.
    loss : Loss, optional
        The output loss, for the last-layer subproblems.
    """
    qp = all(a.name in QP_ACTIVATIONS for a in acts) and (loss is None or isinstance(loss, MSELoss))
    if qp and "OSQP" in cp.installed_solvers():
        return "OSQP"
    return "CLARABEL"


def check_solver(solver: Any) -> str | None:
    """``solver`` as an upper-case CVXPY solver name, or ``None`` for the default (installed names are checked when
    the model is solved)."""
    if solver is None:
        return None
    if not isinstance(solver, str) or not solver.strip():
        raise ChoiceError(f"solver: expected a CVXPY solver name such as 'OSQP' or 'CLARABEL' (or None for the "
                          f"default), got {solver!r}")
    return solver.upper()


#: ``problem.solve`` keywords the faces set themselves; in ``solver_opts`` they would replace them silently.
_RESERVED_OPTS = ("solver", "ignore_dpp", "canon_backend")


def solver_settings(solver: str, solver_opts: dict[str, Any] | None, qp: bool = True) -> dict[str, Any]:
    """The default settings of ``solver`` (for a QP or an exponential-cone model) updated with ``solver_opts``."""
    if solver_opts is not None and not isinstance(solver_opts, dict):
        raise ValueRangeError(f"solver_opts: expected a dict of {solver} settings, e.g. {{'max_iter': 1000}}, got "
                              f"{type(solver_opts).__name__}")
    reserved = sorted(set(solver_opts or {}) & set(_RESERVED_OPTS))
    if reserved:
        raise ValueRangeError(f"solver_opts: {reserved} are set by the face, not solver settings; pass the solver as "
                              "solver=")
    opts = dict(_DEFAULT_OPTS.get(solver, {}))
    if not qp:
        opts.update(_CONIC_OPTS.get(solver, {}))
    if solver_opts:
        if solver == "OSQP":
            # Accept either spelling of the polishing switch whatever OSQP version is installed.
            solver_opts = dict(solver_opts)
            for key in ("polish", "polishing"):
                if key in solver_opts:
                    opts[_OSQP_POLISH] = solver_opts.pop(key)
        opts.update(solver_opts)
    return opts


@dataclass
class SolveInfo:
    """What one ``problem.solve`` reported."""

    status: str
    solver: str
    wall_time: float
    solver_time: float
    iterations: int
    value: float
    polished: bool | None = None


def worst_status(statuses: Iterable[str]) -> str:
    """The least accurate of several chunk statuses (``optimal_inaccurate`` beats ``optimal``)."""
    return max(statuses, key=lambda s: _STATUS_RANK.get(s, 99), default=cp.OPTIMAL)


def advice(solver: str, qp: bool) -> str:
    """'try another solver (...)' naming one that handles the model's cone."""
    able = ("OSQP", "CLARABEL", "SCS") if qp else ("CLARABEL", "SCS")
    others = [s for s in able if s != solver and s in cp.installed_solvers()]
    return f"try another solver (solver={others[0]!r})" if others else "try other solver_opts"


def warn_inaccurate(subproblem: str, solver: str, residual: float, qp: bool) -> None:
    """Warn that a point is below the requested accuracy, quoting its optimality residual."""
    warnings.warn(f"{subproblem}: solver {solver} returned 'optimal_inaccurate' and the returned point has a "
                  f"relative optimality residual of {residual:.2e} (> {CERTIFIED:g}): it is usable but "
                  f"below the requested accuracy; {advice(solver, qp)} or tighten solver_opts",
                  InaccurateSolutionWarning, stacklevel=outside_stacklevel())


def run_solver(problem: cp.Problem, *, subproblem: str, solver: str, solver_opts: dict[str, Any] | None = None,
               hint: str = "", qp: bool = True) -> SolveInfo:
    """Solve ``problem`` and translate its status into our contract.

    Parameters
    ----------
    problem : cvxpy.Problem
        A model whose parameters already hold the data.
    subproblem : str
        Registry name, quoted in errors.
    solver : str
        CVXPY solver name (``"OSQP"``, ``"CLARABEL"``, ``"SCS"``, ...).
    solver_opts : dict, optional
        Settings passed to the solver, on top of :data:`_DEFAULT_OPTS`.
    hint : str
        Extra advice appended to an error message (e.g. why the model may have no minimizer).
    qp : bool
        Whether the model is a QP (decides the settings and which other solver to suggest).

    Raises
    ------
    ChoiceError
        ``solver`` names no installed CVXPY solver.
    SolverError
        The solver failed or returned a status other than ``optimal`` / ``optimal_inaccurate``
        (an ``optimal_inaccurate`` status is left to the caller, who polishes and then decides).
    """
    solver = check_choice(solver.upper() if isinstance(solver, str) else solver, "solver", cp.installed_solvers(),
                          f"{subproblem}: not installed here; pass one of these as solver= (or install it)")
    opts = solver_settings(solver, solver_opts, qp)
    kwargs: dict[str, Any] = {"solver": solver, "ignore_dpp": solver not in _DPP_SOLVERS, **opts}
    if _CANON_BACKEND is not None:
        kwargs.setdefault("canon_backend", _CANON_BACKEND)
    tip = advice(solver, qp)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # CVXPY's own "Solution may be inaccurate" warning; we decide after polishing and warn ourselves.
            warnings.filterwarnings("ignore", message="Solution may be inaccurate", category=UserWarning)
            problem.solve(**kwargs)
    except cp.error.SolverError as exc:
        raise SolverError(f"{subproblem}: solver {solver} failed ({exc}); {tip}, or solve with "
                          f"solver_opts={{'verbose': True}} to see its log{hint}",
                          status="solver_error", subproblem=subproblem, solver=solver) from None
    except Exception as exc:  # a solver's own exception, mostly a setting it refuses (a key, a type, a range)
        raise SolverError(f"{subproblem}: solver {solver} refused to run ({type(exc).__name__}: {exc}); check "
                          f"solver_opts={solver_opts!r} against {solver}'s settings", status="solver_error",
                          subproblem=subproblem, solver=solver) from None
    wall = time.perf_counter() - t0
    status = problem.status
    if status not in (cp.OPTIMAL, cp.OPTIMAL_INACCURATE):
        raise SolverError(f"{subproblem}: solver {solver} returned status {status!r}, expected 'optimal'; "
                          f"{tip}, or raise its iteration limit in solver_opts{hint}",
                          status=status, subproblem=subproblem, solver=solver)
    stats = problem.solver_stats
    polished = None
    if solver == "OSQP" and stats.extra_stats is not None:
        polished = getattr(stats.extra_stats.info, "status_polish", 0) == 1
    return SolveInfo(status=status, solver=solver, wall_time=wall,
                     solver_time=float(stats.solve_time or 0.0), iterations=int(stats.num_iters or 0),
                     value=float(problem.value), polished=polished)
