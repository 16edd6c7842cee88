r"""CVXPY reference face: every block-coordinate-descent subproblem of the paper (eqs. 14-20) as a DCP, DPP model.

These models are the referee of the fast torch face (:mod:`fenchel_cvx.torch`): the same four names with the
same arguments, returning the same :class:`~fenchel_cvx.subproblems.SubproblemResult`. Matrices are in the
paper's layout ``(features, samples)``; ``W Z + b`` means ``W Z + b 1^T``; ``b`` may be ``None``.

=========  ============================================================================  ====================
function   minimizes                                                                      builder / model
=========  ============================================================================  ====================
x_hidden   lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev), Z in dom(act_prev) build_x_hidden
x_last     loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev), Z in dom(act_prev)           build_x_last
w_hidden   lam B_act(X_next, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)    build_w_hidden
w_last     loss(Y, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)              build_w_last
=========  ============================================================================  ====================

Each function validates its inputs (typed errors), builds -- or takes from a small cache -- the compiled model
for its sizes and hyperparameters, loads the data into the model's parameters, solves (OSQP for QPs,
Clarabel for exponential-cone models, ``solver=`` to override), and recomputes ``value`` numerically from the
returned variables. ``chunk=`` splits the separable problems into column (X) or row (hidden W) blocks.
``layer=`` (a conv or pooled :class:`~fenchel_cvx.layers.Layer`, small images) states the X-updates with the
layer's explicit matrix and the W-updates on its patches.

Example
-------
>>> import numpy as np
>>> from fenchel_cvx import cvx
>>> rng = np.random.default_rng(0)
>>> W, U = rng.standard_normal((3, 4)), rng.standard_normal((4, 5))
>>> X_next = np.maximum(W @ np.maximum(U, 0), 0)
>>> res = cvx.x_hidden(W, None, X_next, U, act="relu", act_prev="relu", lam=1.0, lam_prev=1.0)
>>> bool(res.value < 1e-6) and res.Z.shape == (4, 5)
True
"""

from __future__ import annotations

from collections.abc import Callable

from ..subproblems import SUBPROBLEMS
from ._model import clear_model_cache
from ._solve import default_solver, installed_solvers
from .w_updates import WHiddenModel, WLastModel, build_w_hidden, build_w_last, w_hidden, w_last
from .x_updates import XHiddenModel, XLastModel, build_x_hidden, build_x_last, x_hidden, x_last

__all__ = [
    "BUILDERS",
    "FUNCTIONS",
    "WHiddenModel",
    "WLastModel",
    "XHiddenModel",
    "XLastModel",
    "build_w_hidden",
    "build_w_last",
    "build_x_hidden",
    "build_x_last",
    "clear_model_cache",
    "default_solver",
    "installed_solvers",
    "w_hidden",
    "w_last",
    "x_hidden",
    "x_last",
]

#: The solve function of every entry of :data:`fenchel_cvx.subproblems.SUBPROBLEMS`.
FUNCTIONS: dict[str, Callable] = {"x_hidden": x_hidden, "x_last": x_last, "w_hidden": w_hidden, "w_last": w_last}

#: The model builder of every entry of :data:`fenchel_cvx.subproblems.SUBPROBLEMS`.
BUILDERS: dict[str, Callable] = {"x_hidden": build_x_hidden, "x_last": build_x_last,
                                 "w_hidden": build_w_hidden, "w_last": build_w_last}

if set(FUNCTIONS) != set(SUBPROBLEMS) or set(BUILDERS) != set(SUBPROBLEMS):  # pragma: no cover
    raise ImportError(f"fenchel_cvx.cvx does not cover the subproblem registry: has {sorted(FUNCTIONS)}, "
                      f"registry {sorted(SUBPROBLEMS)}")
