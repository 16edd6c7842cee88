"""Dual bounds of the Fenchel lifted model: G(lambda), the primal, the gap, and certified lower bounds.

* :func:`estimate_G` -- ``G_hat(lam)``, the best Lagrangian (eq. 7) BCD reaches from several starts: an upper
  estimate of ``G(lam)``, reported next to the primal ``P(W)`` (eq. 3) in a :class:`BoundReport`.
* :func:`lambda_sweep` -- ``G_hat`` and ``P`` over a grid of ``lam`` (non-decreasing, checked).
* :func:`rescale` -- Appendix A: per-layer multipliers into one, with rescaled ``rho``.
* :func:`one_layer_bound` -- Appendix B: with no hidden layer ``G`` is a convex program, solved exactly.
* :func:`certify_lower_bound` -- a rigorous lower bound on ``G(lam)`` (hence on ``p*``) for one-hidden-layer
  ReLU nets, by branch and bound.
* :func:`check_weak_duality` -- raises :class:`~fenchel_cvx.errors.BoundViolationError` when a lower bound
  exceeds an upper one.

Layout: user-facing entry points take samples-first arrays ``(m, n)``; inside, the paper's ``(features,
samples)`` layout is used.
"""

from ..scaling import Rescaled, rescale
from .bound import BoundReport, check_weak_duality, estimate_G
from .certify import Certificate, certify_lower_bound
from .one_layer import OneLayerBound, one_layer_bound
from .sweep import LambdaSweep, lambda_sweep

__all__ = ["BoundReport", "estimate_G", "check_weak_duality", "LambdaSweep", "lambda_sweep", "Rescaled",
           "rescale", "OneLayerBound", "one_layer_bound", "Certificate", "certify_lower_bound"]
