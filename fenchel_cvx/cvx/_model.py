"""Machinery shared by the four CVXPY models: input conversion, the model base class, chunks and the cache.

How the models stay DPP *and* cheap to compile: a product of two parameters is not DPP, so every data
combination (``lam W^T X_next + lam_prev U_prev``, ``lam X_next X_in^T + 2 gamma W0``, the constants) is
computed numerically when data are loaded. Parameters then appear only in the constraints -- the pre-activation
``T == W @ Z + b`` (or ``W @ X_in + b``) and one scalar ``t == -<C, vec(Z)>`` carrying the linear term -- while
the objective is a parameter-free convex function plus one scalar ``offset`` parameter. CVXPY's QP path
densifies a parametrized objective to (#variables x #parameters) when it extracts quadratic coefficients, so a
linear term ``-<C, Z>`` written in the objective makes compilation one to two orders of magnitude slower;
written as a constraint it costs one sparse row.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, ClassVar

import cvxpy as cp
import numpy as np

from .._checks import as_array, check_choice, check_finite, check_scalar
from ..errors import ShapeError, ValueRangeError
from ..optimality import Residual
from ..subproblems import SubproblemResult
from ._solve import CERTIFIED, SolveInfo, run_solver, warn_inaccurate, worst_status

__all__ = [
    "AUTO_NNZ",
    "AUTO_NNZ_OSQP",
    "CvxModel",
    "as_matrix",
    "as_vector",
    "auto_budget",
    "blocks",
    "cached_model",
    "clear_model_cache",
    "finish",
    "hyper",
    "to_numpy",
]

# Nonzeros of the constraint block ``W @ Z`` (``W @ X_in``) one CVXPY model holds under chunk="auto".
# Clarabel: ~1e6 compiles quickly and keeps memory modest; bigger blocks gain nothing. OSQP's ADMM needs more
# iterations on bigger blocks (the slowest column sets the pace), so small blocks win.
AUTO_NNZ = 1_000_000
AUTO_NNZ_OSQP = 200_000


def auto_budget(solver: str) -> int:
    """The nonzero budget of one block under chunk="auto" for ``solver``."""
    return AUTO_NNZ_OSQP if solver.upper() == "OSQP" else AUTO_NNZ


def to_numpy(x: Any) -> Any:
    """A torch tensor as a float64 numpy array; anything else unchanged."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor: the CVXPY face works in float64 numpy
        return x.detach().cpu().double().numpy()
    return x


def as_matrix(x: Any, name: str, shape: tuple[int | None, int | None], layout: str) -> np.ndarray:
    """``x`` as a finite float64 ``(rows, cols)`` array; ``None`` in ``shape`` matches any size.

    Raises
    ------
    ShapeError
        ``x`` is not 2-D or a size differs (the message gives both shapes and the layout).
    DomainError
        Non-numeric or non-finite entries.
    """
    arr = np.asarray(as_array(to_numpy(x), name), dtype=float)
    if arr.ndim != 2:
        raise ShapeError(f"{name}: expected a 2-D array {layout}, got shape {arr.shape}")
    if any(s is not None and s != g for s, g in zip(shape, arr.shape, strict=True)):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ShapeError(f"{name}: expected shape {want} {layout}, got {arr.shape}")
    check_finite(arr, name)
    return arr


def as_vector(x: Any, name: str, size: int, what: str) -> np.ndarray:
    """``x`` as a finite float64 ``(size,)`` array (``what`` says what its entries are)."""
    arr = np.asarray(as_array(to_numpy(x), name), dtype=float)
    if arr.shape != (size,):
        raise ShapeError(f"{name}: expected shape ({size},) ({what}), got {arr.shape}")
    check_finite(arr, name)
    return arr


def hyper(value: Any, name: str, *, positive: bool = False, nonneg: bool = False) -> float:
    """A scalar hyperparameter, checked (``lam > 0``, ``rho >= 0``, ...)."""
    return check_scalar(value, name, positive=positive, nonneg=nonneg)


def blocks(total: int, chunk: int | str | None, nnz_per_item: int, name: str = "chunk",
           budget: int = AUTO_NNZ) -> list[slice]:
    """Split ``range(total)`` into consecutive blocks.

    Parameters
    ----------
    total : int
        Number of columns (X-updates) or rows (hidden W-update).
    chunk : int, "auto" or None
        Block size; ``None`` = one block; ``"auto"`` = as many items as keep the biggest constraint block
        under ``budget`` nonzeros (see :func:`auto_budget`).
    nnz_per_item : int
        Nonzeros one column (row) adds to that block.
    """
    if chunk is None:
        size = total
    elif isinstance(chunk, str):
        check_choice(chunk, name, ("auto",), "or a positive int (items per block), or None (one block)")
        size = max(1, budget // max(1, nnz_per_item))
    else:
        if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
            raise ValueRangeError(f"{name}: expected a positive int, 'auto' or None, got {chunk!r}")
        size = int(chunk)
    size = max(1, min(size, total))
    return [slice(s, min(s + size, total)) for s in range(0, total, size)]


class CvxModel:
    """A compiled-once CVXPY model of one subproblem: ``problem``, ``params`` and ``vars``.

    Subclasses build the problem in ``__init__`` and implement ``load`` (data -> parameter values) and
    ``solve`` (load, solve, return a :class:`~fenchel_cvx.subproblems.SubproblemResult`).

    Attributes
    ----------
    problem : cvxpy.Problem
        DCP and DPP; print it to read the model.
    params : dict of str -> cvxpy.Parameter
        The data slots, filled by ``load``.
    vars : dict of str -> cvxpy.Variable
        The optimization variables (plus the pre-activation ``T`` and the scalar ``t`` of the linear term).
    default_solver : str
        ``"OSQP"`` for QPs, ``"CLARABEL"`` for exponential-cone models.
    qp : bool
        Whether the model is a QP (ReLU / leaky ReLU activations, MSE loss).
    """

    subproblem: ClassVar[str] = ""
    problem: cp.Problem
    params: dict[str, cp.Parameter]
    vars: dict[str, cp.Variable]
    default_solver: str
    qp: bool

    def _run(self, solver: str | None, solver_opts: dict | None, hint: str = "") -> SolveInfo:
        return run_solver(self.problem, subproblem=self.subproblem, solver=solver or self.default_solver,
                          solver_opts=solver_opts, hint=hint, qp=self.qp)

    def is_dcp(self) -> bool:
        return self.problem.is_dcp()

    def is_dpp(self) -> bool:
        return self.problem.is_dpp()

    def __str__(self) -> str:
        params = ", ".join(f"{k}{tuple(p.shape)}" for k, p in self.params.items())
        variables = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.vars.items())
        return (f"{type(self).__name__} ({self.subproblem}); parameters: {params}; variables: {variables}; "
                f"default solver {self.default_solver}\n{self.problem}")


_CACHE: OrderedDict[tuple, CvxModel] = OrderedDict()
_CACHE_SIZE = 16


def cached_model(factory: Callable[..., CvxModel], *args: Any, **kwargs: Any) -> CvxModel:
    """Build ``factory(*args, **kwargs)`` once and reuse it (LRU, 16 models).

    Re-solving a compiled DPP model with new parameter values skips CVXPY's canonicalization, which dominates
    the cost of small solves; the chunks of one call and repeated BCD sweeps share models this way. The key is
    made of the arguments, all hashable (shapes, floats, Activation and Loss instances).
    """
    key = (factory.__qualname__, args, tuple(sorted(kwargs.items())))
    model = _CACHE.get(key)
    if model is None:
        model = factory(*args, **kwargs)
        _CACHE[key] = model
        if len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    else:
        _CACHE.move_to_end(key)
    return model


def clear_model_cache() -> None:
    """Forget every cached model (frees the memory their compiled data hold)."""
    _CACHE.clear()


def finish(subproblem: str, infos: list[SolveInfo], t0: float, value: float, residual: Residual, qp: bool,
           **fields: Any) -> SubproblemResult:
    """Assemble the result of one call from the per-chunk solver reports.

    ``value`` is the objective recomputed numerically from the returned variables; the solvers' own
    objectives (summed over chunks) go to ``info["solver_value"]`` and their relative difference to
    ``info["value_gap"]`` -- a check that the model and the numeric formula agree (after polishing it also
    holds the polishing's improvement). ``residual`` is the returned point's optimality residual
    (:mod:`fenchel_cvx.optimality`): reported per item as ``per_item / scale``, and its Frobenius ``relative``
    decides the status -- ``optimal_inaccurate`` becomes ``optimal`` when it is at most :data:`CERTIFIED`, else
    warns. ``iterations`` is the most any chunk took (the chunks are independent problems).
    """
    extra = fields.pop("info", {})
    per_item = np.asarray(residual.per_item_relative, dtype=float)
    relative = float(residual.relative)
    solver_value = float(sum(i.value for i in infos))
    solver_status = worst_status(i.status for i in infos)
    status = solver_status
    if status == cp.OPTIMAL_INACCURATE:
        if relative <= CERTIFIED:
            status = cp.OPTIMAL
        else:
            warn_inaccurate(subproblem, infos[0].solver, relative, qp)
    info = {
        "solver_status": solver_status,
        "kkt_residual": relative,
        "solver_value": solver_value,
        "value_gap": abs(solver_value - value) / max(1.0, abs(value)),
        "chunks": len(infos),
        "chunk_statuses": [i.status for i in infos],
        "chunk_iterations": [i.iterations for i in infos],
        "solver_time": float(sum(i.solver_time for i in infos)),
        "solver_wall_time": float(sum(i.wall_time for i in infos)),
    }
    polished = [i.polished for i in infos if i.polished is not None]
    if polished:
        info["polished"] = all(polished)
    info.update(extra)
    return SubproblemResult(subproblem=subproblem, value=float(value), status=status, converged=status == cp.OPTIMAL,
                            backend="cvx", solver=infos[0].solver, solve_time=time.perf_counter() - t0,
                            residual=per_item, max_residual=float(per_item.max()) if per_item.size else 0.0,
                            iterations=max(int(i.iterations) for i in infos), info=info, **fields)
