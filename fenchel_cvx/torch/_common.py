"""Plumbing shared by the torch face: tensor checks, curvature constants, ``||W||_2^2``, results and warnings.

The torch face never moves or casts an input: every tensor argument must be a floating ``torch.Tensor`` of
dtype ``float32`` or ``float64`` with the dtype and device of the first matrix argument (integer label vectors
only need the device). Violations raise :class:`~fenchel_cvx.errors.TensorMismatchError`; wrong shapes raise
:class:`~fenchel_cvx.errors.ShapeError`, NaN/inf and out-of-domain values
:class:`~fenchel_cvx.errors.DomainError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from .._checks import check_choice, check_finite, check_int, check_scalar, check_shape
from ..activations import Activation, LeakyReLU, ReLU, Sigmoid, Tanh
from ..errors import NotConvergedWarning, ShapeError, SolverError, TensorMismatchError, ValueRangeError
from ..optimality import Residual
from ..subproblems import SubproblemResult

__all__ = [
    "FLOAT_DTYPES",
    "check_bias",
    "check_max_iter",
    "check_tensor",
    "check_tol",
    "finish",
    "solver_errors",
    "spectral_norm_sq",
    "sup_dphi",
    "tiny",
]

FLOAT_DTYPES = (torch.float32, torch.float64)


def check_tensor(x: Any, name: str, *, ref: torch.Tensor | None = None, shape: tuple | None = None,
                 layout: str = "", finite: bool = True) -> torch.Tensor:
    """Check that ``x`` is a float32/float64 tensor (matching ``ref``'s dtype and device) of the given shape.

    Parameters
    ----------
    x : Tensor
        The argument.
    name : str
        Its name in the public signature (used in every message).
    ref : Tensor, optional
        The tensor whose dtype and device ``x`` must share.
    shape : tuple of (int or None), optional
        Expected shape; ``None`` entries match any size.
    layout : str
        Layout hint appended to shape errors, e.g. ``"(features, samples)"``.
    finite : bool
        Also reject NaN/inf entries.

    Returns
    -------
    Tensor
        ``x`` itself.
    """
    if not isinstance(x, torch.Tensor):
        raise TensorMismatchError(f"{name}: expected a torch.Tensor (this is the torch face), got "
                                  f"{type(x).__name__}; convert with torch.as_tensor(x, dtype=..., device=...) "
                                  "or call the same function in fenchel_cvx.cvx")
    if x.is_meta:
        raise TensorMismatchError(f"{name}: expected a tensor that holds data (on 'cpu' or 'cuda'), got one on the "
                                  "'meta' device (shapes only)")
    if x.dtype not in FLOAT_DTYPES:
        raise TensorMismatchError(f"{name}: expected dtype float32 or float64, got {x.dtype}; cast with "
                                  f"{name}.to(torch.float64)")
    if ref is not None and (x.dtype != ref.dtype or x.device != ref.device):
        raise TensorMismatchError(f"{name}: expected dtype {ref.dtype} on device {ref.device} like W, got dtype "
                                  f"{x.dtype} on device {x.device}; move every input with "
                                  f".to(device=W.device, dtype=W.dtype)")
    if shape is not None:
        check_shape(x, name, shape, layout)
    if finite:
        check_finite(x, name)
    return x


def check_bias(b: Any, q: int, ref: torch.Tensor) -> torch.Tensor | None:
    """``None``, or the bias as a ``(q, 1)`` column ready to broadcast (``(q,)`` and ``(q, 1)`` accepted)."""
    if b is None:
        return None
    check_tensor(b, "b", ref=ref)
    if tuple(b.shape) not in ((q,), (q, 1)):
        raise ShapeError(f"b: expected shape ({q},) (one bias per row of W) or None, got {tuple(b.shape)}")
    return b.reshape(q, 1)


def check_tol(tol: Any) -> float:
    """``tol`` as a float, finite and ``> 0``."""
    return check_scalar(tol, "tol", positive=True)


def check_step_dtype(step_dtype: Any, dtype: torch.dtype) -> torch.dtype | None:
    """A solver's ``step_dtype``: the precision its inner steps take, or ``None`` for its own ``dtype``."""
    if step_dtype is None or step_dtype == dtype:
        return None
    if step_dtype not in (torch.float32, torch.float64):
        raise ValueRangeError(f"step_dtype: expected torch.float32, torch.float64 or None, got {step_dtype!r}")
    return step_dtype


def check_max_iter(max_iter: Any) -> int:
    """``max_iter`` as an int ``>= 1``."""
    return check_int(max_iter, "max_iter", 1)


def sup_dphi(act: Activation) -> float:
    """``sup_u phi'(u)``: the curvature bound of ``F*`` and, inverted, the strong convexity of ``F``.

    ``F'' = 1 / phi'(phi^{-1})``, so ``inf F'' = 1 / sup phi'``: 1 for ReLU and tanh, ``1/max(1, alpha)`` for the
    leaky ReLU and 4 for the sigmoid.
    """
    if isinstance(act, LeakyReLU):
        return max(1.0, act.alpha)
    if isinstance(act, (ReLU, Tanh)):
        return 1.0
    if isinstance(act, Sigmoid):
        return 0.25
    check_choice(act, "act", ("relu", "leaky_relu", "sigmoid", "tanh"), "use fenchel_cvx.cvx for other activations")
    raise AssertionError("unreachable: an Activation is never one of the names")  # pragma: no cover


@contextmanager
def solver_errors(subproblem: str) -> Iterator[None]:
    """Turn a numerical failure inside a core solver into a :class:`SolverError` naming the subproblem."""
    try:
        yield
    except SolverError as exc:
        if exc.subproblem:
            raise
        raise SolverError(f"{subproblem}: {exc}", status=exc.status, subproblem=subproblem,
                          solver=exc.solver) from None
    except (torch.linalg.LinAlgError, FloatingPointError) as exc:
        raise SolverError(f"{subproblem}: a factorization failed ({exc}); the inputs are probably badly scaled "
                          "for the dtype: try float64, rho > 0 or gamma > 0, or another method",
                          status="numerical_error", subproblem=subproblem) from None


_SMALL_SIDE = 32


def spectral_norm_sq(W: torch.Tensor, iters: int = 60, safety: float = 1.01) -> float:
    r"""An upper estimate of ``||W||_2^2`` by power iteration on ``W^T W`` (float64, on ``W``'s device).

    The Rayleigh quotient after ``k`` steps is below ``||W||_2^2`` by a relative error of at most about
    ``1/(2 e k)`` for a generic start (0.3% at ``k = 60``), which ``safety`` covers. The solvers that use this
    as a Lipschitz constant stop on a certificate, so a rare underestimate costs iterations, never accuracy.
    A dense eigen-decomposition of ``W^T W`` would be exact but is far slower on busy CPUs; when ``W`` has at
    most ``_SMALL_SIDE`` rows or columns the eigenvalues of the small Gram matrix are used instead (exact, and
    cheaper than the power iteration: the output layer's ``W_L`` has one row per class).
    """
    Wd = W.detach().to(torch.float64)
    if Wd.numel() == 0:
        return 0.0
    if min(Wd.shape) <= _SMALL_SIDE:
        gram = Wd @ Wd.T if Wd.shape[0] <= Wd.shape[1] else Wd.T @ Wd
        return max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0) * safety
    gen = torch.Generator(device="cpu").manual_seed(12345)
    x = torch.randn(Wd.shape[1], 1, generator=gen, dtype=torch.float64).to(Wd.device)
    lam = _power_iteration(Wd, x / x.norm(), iters)
    if not lam > 0.0:  # x fell in the null space (or W = 0): start again from the rows of W
        x = Wd.abs().sum(0, keepdim=True).T
        lam = _power_iteration(Wd, x / x.norm().clamp_min(tiny(Wd.dtype)), iters)
    return max(lam, 0.0) * safety


def _power_iteration(Wd: torch.Tensor, x: torch.Tensor, iters: int) -> float:
    """The Rayleigh quotient of ``W^T W`` after ``iters`` steps from the unit vector ``x``; 0 when an iterate falls
    in the null space. The steps never read a value on the host: on a GPU the loop runs without waiting."""
    Wt, floor = Wd.T, tiny(Wd.dtype)
    for k in range(iters):
        y = Wt @ (Wd @ x)
        if k == iters - 1:  # only the last quotient is returned: the others would be dispatch overhead
            return float((x * y).sum())
        x = y / y.norm().clamp_min(floor)
    return 0.0


def tiny(dtype: torch.dtype) -> float:
    """Smallest positive normal number of ``dtype``: the floor of every relative-residual denominator."""
    return torch.finfo(dtype).tiny


def finish(subproblem: str, *, value: float, solver: str, t0: float, t1: float, Z: torch.Tensor,
           certificate: torch.Tensor, residual: Residual | None, iterations: int, tol: float, max_iter: int,
           info: dict, stalled: bool = False, warn: bool = True, certified: bool = True) -> SubproblemResult:
    """Build the X-updates' :class:`SubproblemResult`; warn :class:`NotConvergedWarning` when not converged.

    ``certificate`` (per column) is what ``tol`` is tested against and goes to ``info["certificate"]``;
    ``residual`` (:mod:`fenchel_cvx.optimality` at the returned ``Z``) is reported as ``residual = per_item /
    scale``. ``status`` is ``"optimal"`` when ``max(certificate) <= tol``, else ``"stalled"`` when the solver
    stopped early because the certificate stopped decreasing (the dtype's round-off floor lies above ``tol``)
    or ``"max_iter"``; ``"unchecked"`` (no warning, ``value``, ``residual`` and the certificate NaN) when the
    caller asked for no certificate.
    """
    info = dict(info, certificate=certificate)
    if not certified:
        nan = Z.new_full((Z.shape[1],), math.nan)
        return SubproblemResult(subproblem=subproblem, value=math.nan, status="unchecked", converged=False,
                                backend="torch", solver=solver, solve_time=t1 - t0, Z=Z, residual=nan,
                                max_residual=math.nan, iterations=iterations, info=info)
    if not math.isfinite(value):
        raise SolverError(f"{subproblem}: the objective at the returned point is {value}; the inputs are probably "
                          "too large for the dtype (try float64)", status="numerical_error", subproblem=subproblem,
                          solver=solver)
    max_cert = float(certificate.max()) if certificate.numel() else 0.0
    converged = bool(max_cert <= tol)
    status = "optimal" if converged else ("stalled" if stalled else "max_iter")
    if not converged and warn:
        n_bad = int((certificate > tol).sum())
        where = (f"stalled after {iterations} iterations (the certificate stopped decreasing: round-off floor of "
                 f"{Z.dtype}?)" if stalled else f"stopped at max_iter={max_iter}")
        warnings.warn(f"{subproblem}: {where} with certificate {max_cert:.3g} > tol={tol:g} ({n_bad} of "
                      f"{certificate.numel()} columns above tol); raise max_iter, pass the previous solution as Z0, "
                      "loosen tol or use float64", NotConvergedWarning, stacklevel=3)
    kkt = residual.per_item_relative.to(Z.dtype)
    if kkt.numel() and not bool(torch.isfinite(kkt).all()):
        raise SolverError(f"{subproblem}: the optimality residual at the returned point is not finite (it overflows "
                          f"{Z.dtype}); the inputs are probably too large for the dtype (try float64)",
                          status="numerical_error", subproblem=subproblem, solver=solver)
    return SubproblemResult(subproblem=subproblem, value=value, status=status, converged=converged, backend="torch",
                            solver=solver, solve_time=t1 - t0, Z=Z, residual=kkt,
                            max_residual=float(kkt.max()) if kkt.numel() else 0.0, iterations=iterations, info=info)
