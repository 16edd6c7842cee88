"""fenchel_cvx: Fenchel lifted networks (Gu, Askari, El Ghaoui, AISTATS 2020) as convex subproblems.

Three faces that agree with each other: CVXPY reference models of every block-coordinate-descent subproblem
(:mod:`fenchel_cvx.cvx`), fast batched PyTorch solvers of the same subproblems (:mod:`fenchel_cvx.torch`), and a
dual-bound module (:mod:`fenchel_cvx.dual`). Training (:class:`BCD`, :class:`Backprop`) runs on one loop
(:mod:`fenchel_cvx.trainer`) configured by the settings of :mod:`fenchel_cvx.settings`.

Layout convention: inside the math a data matrix is ``(features, samples)`` as in the paper; user-facing entry
points take samples-first arrays ``(m, n)`` and transpose once at the boundary.

The names below are imported on first use, so ``import fenchel_cvx`` (and ``fenchel-cvx --help``) does not pay
for torch and CVXPY until they are needed.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import (
    BoundViolationError,
    CheckpointError,
    ChoiceError,
    DataFileError,
    DomainError,
    FenchelError,
    InaccurateSolutionWarning,
    LabelError,
    NoMinimizerWarning,
    NotConvergedWarning,
    ResourceLimitError,
    ShapeError,
    SolverError,
    TensorMismatchError,
    ValueRangeError,
)

__version__ = "0.1.0"

# public name -> the module that defines it (imported lazily, PEP 562)
_LAZY = {
    **dict.fromkeys(["ACTIVATIONS", "Activation", "LeakyReLU", "ReLU", "Sigmoid", "Tanh", "get_activation"],
                    "activations"),
    **dict.fromkeys(["LOSSES", "Loss", "MSELoss", "CrossEntropyLoss", "get_loss"], "losses"),
    "LiftedNetwork": "network",
    "SUBPROBLEMS": "subproblems",
    "SubproblemResult": "subproblems",
    **dict.fromkeys(["BCDSettings", "BackpropSettings", "PeerSettings", "RunConfig"], "settings"),
    **dict.fromkeys(["BCD", "BCDState"], "bcd"),
    **dict.fromkeys(["Backprop", "BackpropState"], "baselines"),
    **dict.fromkeys(["verify", "Verification"], "verification"),
    **dict.fromkeys(["AskariBCD", "LauBCD", "TaylorADMM"], "peers"),
}

__all__ = [
    *_LAZY,
    "FenchelError", "ShapeError", "DomainError", "ValueRangeError", "ChoiceError", "ResourceLimitError", "LabelError",
    "DataFileError", "SolverError", "CheckpointError", "BoundViolationError", "TensorMismatchError",
    "NotConvergedWarning", "InaccurateSolutionWarning", "NoMinimizerWarning",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fenchel_cvx' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
