"""Typed exceptions and warnings of fenchel_cvx.

Every error message names the argument, says what was expected and what came, and (where there is one)
what to try next. Catch :class:`FenchelError` to catch everything the toolkit raises on purpose.
"""

from __future__ import annotations

__all__ = [
    "FenchelError",
    "ShapeError",
    "DomainError",
    "ValueRangeError",
    "ChoiceError",
    "ResourceLimitError",
    "LabelError",
    "DataFileError",
    "SolverError",
    "CheckpointError",
    "ShardingError",
    "BoundViolationError",
    "NotConvergedWarning",
    "InaccurateSolutionWarning",
    "NoMinimizerWarning",
    "TensorMismatchError",
]


class FenchelError(Exception):
    """Base class of every error raised on purpose by fenchel_cvx."""


class ShapeError(FenchelError, ValueError):
    """An array has the wrong number of dimensions or a size that does not match its partners."""


class TensorMismatchError(FenchelError, TypeError):
    """Tensors that must be used together are not all torch tensors, or differ in dtype or device.

    Raised by the torch face (:mod:`fenchel_cvx.torch`), which never moves or casts an input silently: device
    and dtype follow the inputs, so they must agree.
    """


class DomainError(FenchelError, ValueError):
    """A value lies outside the set where the math is defined.

    Examples: ``v < 0`` handed to the ReLU penalty, ``v`` outside ``[0, 1]`` for the sigmoid, a non-finite
    entry, a negative ``rho`` or a non-positive ``lam``.
    """


class ValueRangeError(DomainError):
    """A hyperparameter (``lam``, ``rho``, ``gamma``, ``alpha``, ...) is outside its allowed range."""


class ChoiceError(FenchelError, ValueError):
    """An option names none of its allowed choices (an unknown activation, loss, method, solver, data set, ...).

    The message lists the choices. Raised the same way by every entry point, through
    ``fenchel_cvx._checks.check_choice``.
    """


class ResourceLimitError(ValueRangeError):
    """A problem too large for its memory (or time) budget, refused before the work starts.

    The message says the largest size that fits and which argument raises the budget.
    """


class LabelError(FenchelError, ValueError):
    """Labels are out of range, of the wrong dtype, or not probability columns where the loss needs them."""


class DataFileError(FenchelError, OSError):
    """A data file is missing, truncated, malformed or unsafe to read."""


class CheckpointError(FenchelError, OSError):
    """A checkpoint is missing, corrupt or does not belong to the run being resumed."""


class ShardingError(FenchelError, ValueError):
    """A computation asked to run data-parallel that does not split into per-process work plus sums (a solver
    method, a mode), or processes that disagree about the data they share."""


class SolverError(FenchelError, RuntimeError):
    """A convex solver returned a status other than optimal.

    Attributes
    ----------
    status : str
        The status string reported by the solver (CVXPY's ``problem.status`` or our own solver's).
    subproblem : str
        The registry name of the subproblem (``"x_hidden"``, ``"w_last"``, ...).
    solver : str
        The solver that failed.
    """

    def __init__(self, message: str, *, status: str = "", subproblem: str = "", solver: str = ""):
        super().__init__(message)
        self.status = status
        self.subproblem = subproblem
        self.solver = solver


class BoundViolationError(FenchelError, ArithmeticError):
    """A quantity that must be a lower bound exceeds one that must be an upper bound.

    This means a solver returned a wrong answer (or a bug): weak duality cannot fail in exact arithmetic.

    Attributes
    ----------
    lower, upper : float
        The two values, ``lower > upper + tol``.
    tol : float
        The tolerance that was allowed.
    """

    def __init__(self, message: str, *, lower: float = float("nan"), upper: float = float("nan"),
                 tol: float = 0.0):
        super().__init__(message)
        self.lower = lower
        self.upper = upper
        self.tol = tol


class NotConvergedWarning(UserWarning):
    """An iterative solver stopped at ``max_iter`` with its optimality residual still above ``tol``."""


class InaccurateSolutionWarning(UserWarning):
    """A conic solver reported ``optimal_inaccurate``: the answer is usable but below the requested accuracy."""


class NoMinimizerWarning(UserWarning):
    """The problem handed to a solver has no minimizer: its infimum is not attained (some variable can decrease the
    objective forever by running off to infinity).

    The solver still returns a point of near-infimal value -- far out, and not a minimizer, so another solver or
    face returns another point. The message names the arguments that make it so and what gives a minimizer.
    """
