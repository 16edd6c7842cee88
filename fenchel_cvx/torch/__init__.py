"""The fast face: batched PyTorch solvers of the four BCD subproblems, one per registry entry.

Same names and arguments as :mod:`fenchel_cvx.cvx` (the CVXPY reference), plus ``tol``, ``max_iter`` and warm
starts (``Z0`` for the X-updates, ``W_init`` / ``b_init`` for the W-updates). Tensors in, tensors out: device and
dtype (float32 or float64) follow the inputs. Every result carries an optimality ``residual`` (per column for
the X-updates, per row for ``w_hidden``), its maximum, the iteration count and ``converged``; stopping at
``max_iter`` above ``tol`` warns :class:`~fenchel_cvx.errors.NotConvergedWarning`. (Two deliberate exceptions
for inexact BCD: the X-updates' ``certify=False``, and the one-step W-updates of
:mod:`~fenchel_cvx.torch.preconditioned`, return ``status="unchecked"`` with NaN residuals.)

Layout convention: paper layout inside, ``(features, samples)``: one column per data point.
"""

from .w_updates import w_hidden, w_last
from .x_updates import x_hidden, x_last

__all__ = ["w_hidden", "w_last", "x_hidden", "x_last"]
