"""fenchel_cvx: Fenchel lifted networks (Gu, Askari, El Ghaoui, AISTATS 2020) as convex subproblems.

Three faces that agree with each other: CVXPY reference models of every block-coordinate-descent subproblem
(:mod:`fenchel_cvx.cvx`), fast batched PyTorch solvers of the same subproblems (:mod:`fenchel_cvx.torch`), and a
dual-bound module (:mod:`fenchel_cvx.dual`).

Layout convention: inside the math a data matrix is ``(features, samples)`` as in the paper; user-facing entry
points take samples-first arrays ``(m, n)`` and transpose once at the boundary.
"""

from .activations import ACTIVATIONS, Activation, LeakyReLU, ReLU, Sigmoid, Tanh, get_activation
from .errors import (BoundViolationError, CheckpointError, DataFileError, DomainError, FenchelError,
                     InaccurateSolutionWarning, LabelError, NotConvergedWarning, ShapeError, SolverError,
                     ValueRangeError)
from .losses import LOSSES, CrossEntropyLoss, Loss, MSELoss, get_loss
from .network import LiftedNetwork
from .subproblems import SUBPROBLEMS, SubproblemResult

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS", "Activation", "LeakyReLU", "ReLU", "Sigmoid", "Tanh", "get_activation",
    "LOSSES", "Loss", "MSELoss", "CrossEntropyLoss", "get_loss",
    "LiftedNetwork", "SUBPROBLEMS", "SubproblemResult",
    "FenchelError", "ShapeError", "DomainError", "ValueRangeError", "LabelError", "DataFileError",
    "SolverError", "CheckpointError", "BoundViolationError", "NotConvergedWarning", "InaccurateSolutionWarning",
]
