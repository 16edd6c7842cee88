"""The fast face: batched PyTorch solvers of the four BCD subproblems, one per registry entry.

Same names and arguments as :mod:`fenchel_cvx.cvx` (the CVXPY reference), plus ``tol``, ``max_iter``, warm
starts (``Z0`` for the X-updates, ``W_init`` / ``b_init`` for the W-updates) and the W-updates' ``method``.
Tensors in, tensors out: device and dtype (float32 or float64) follow the inputs. Every result carries the
optimality ``residual`` of :mod:`fenchel_cvx.optimality` (per column for the X-updates, per row for the
W-updates: the same measure as the CVXPY face), its maximum, the iteration count, ``converged`` (the solver's own
certificate, ``info["certificate"]``, met ``tol``) and ``backend="torch"``; stopping at ``max_iter`` above ``tol``
warns :class:`~fenchel_cvx.errors.NotConvergedWarning`. Two deliberate exceptions for inexact BCD return
``status="unchecked"`` with NaN residuals: the X-updates' ``certify=False`` and the W-updates'
``method="running"`` (one preconditioned step with a running curvature estimate, or one Adam step with moments
carried between calls, :mod:`~fenchel_cvx.torch.curvature`).

Layout convention: paper layout inside, ``(features, samples)``: one column per data point.

Every function takes ``layer=`` last (a :class:`~fenchel_cvx.layers.Layer`; ``None``: dense): with a convolution
or a pooled layer the X-updates run on the layer's operator and its adjoint, the W-updates on the patch form
(:mod:`~fenchel_cvx.torch.x_updates`, :mod:`~fenchel_cvx.torch.w_updates`).

Data-parallel: inside :func:`fenchel_cvx.shards.sharded` each process passes *its* columns and the W-updates sum
their data terms (Gram matrices, gradients, objective values) over the processes; the X-updates need nothing, as
they separate over columns. Newton's methods (the W-updates' default ``method``) refuse there with
:class:`~fenchel_cvx.errors.ShardingError`: ``method="mm"`` solves the same problem to ``tol``.
"""

from __future__ import annotations

from collections.abc import Callable

from ..subproblems import SUBPROBLEMS
from .w_updates import w_hidden, w_last
from .x_updates import x_hidden, x_last

__all__ = ["FUNCTIONS", "w_hidden", "w_last", "x_hidden", "x_last"]

#: The solve function of every entry of :data:`fenchel_cvx.subproblems.SUBPROBLEMS`.
FUNCTIONS: dict[str, Callable] = {"x_hidden": x_hidden, "x_last": x_last, "w_hidden": w_hidden, "w_last": w_last}

if set(FUNCTIONS) != set(SUBPROBLEMS):  # pragma: no cover
    raise ImportError(f"fenchel_cvx.torch does not cover the subproblem registry: has {sorted(FUNCTIONS)}, "
                      f"registry {sorted(SUBPROBLEMS)}")
