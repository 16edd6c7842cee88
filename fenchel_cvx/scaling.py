r"""Appendix A: variable scaling moves per-layer multipliers into the weight penalties.

For activations whose penalty is positively homogeneous of degree 2, ``c B(V, U) = B(sqrt(c) V, sqrt(c) U)``
for ``c > 0`` (ReLU, eq. 5, and leaky ReLU), the Lagrangian (7)

.. math::  J = \mathcal L(Y, W_L X_L + b_L) + \sum_{l=0}^{L} \rho_l \|W_l\|_F^2
           + \sum_{l=0}^{L-1} \lambda_l B_l(X_{l+1}, W_l X_l + b_l)

is unchanged when, with ratios ``r_l = lam_l / lam'_l`` (``l = 0..L-1``) and ``r_{-1} = r_L = 1``,

.. math::  \bar X_l = \sqrt{r_{l-1}} X_l, \quad \bar W_l = \sqrt{r_l / r_{l-1}} W_l, \quad
           \bar b_l = \sqrt{r_l} b_l, \quad \bar\rho_l = \rho_l r_{l-1} / r_l, \quad \bar\lambda_l = \lambda'_l.

Proof, term by term: ``bar W_l bar X_l + bar b_l = sqrt(r_l) (W_l X_l + b_l)`` and
``bar X_{l+1} = sqrt(r_l) X_{l+1}``, so ``lam'_l B(bar X_{l+1}, ...) = lam'_l r_l B(X_{l+1}, ...) = lam_l B``;
``rho_l ||W_l||^2 = rho_l (r_{l-1}/r_l) ||bar W_l||^2``; and ``r_L = 1`` leaves ``W_L X_L + b_L``, hence the loss,
untouched. With ``lam' = 1`` this is eq. (21)-(22): ``bar X_l = sqrt(lam_{l-1}) X_l``,
``bar W_l = sqrt(lam_l / lam_{l-1}) W_l``, ``bar rho_l = rho_l lam_{l-1} / lam_l`` with ``lam_{-1} = 1``.

The paper keeps a free ``lam_L`` at the output and writes the loss at ``sqrt(lam_L) bar W_L bar X_L``; with its
own definitions ``bar W_L bar X_L = sqrt(lam_L) W_L X_L``, so the factor would have to be ``1/sqrt(lam_L)``. We
fix ``lam_L := 1`` (no multiplier on the loss), which keeps the rescaled model an ordinary
:class:`~fenchel_cvx.network.LiftedNetwork` evaluated by the same :meth:`~LiftedNetwork.lagrangian`. Biases are
explicit here (the paper folds them into ``W_l``) and scale like ``W_l X_l``; they are not penalized, so no
``rho`` changes for them.

Layout: X-variables are ``(features, samples)`` as in the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._checks import as_array, check_finite, check_ndim, check_shape, is_torch, per_layer
from .activations import LeakyReLU, ReLU
from .errors import DomainError, FenchelError, ShapeError
from .network import LiftedNetwork

__all__ = ["HOMOGENEOUS_ACTIVATIONS", "Rescaled", "rescale"]

Array = Any

#: Activations whose penalty B is positively homogeneous of degree 2 (the ones Appendix A applies to).
HOMOGENEOUS_ACTIVATIONS = (ReLU, LeakyReLU)


@dataclass
class Rescaled:
    """The rescaled model of Appendix A: ``J(net, Xvars; lam, rho)`` equals the original J.

    Attributes
    ----------
    net : LiftedNetwork
        A copy with ``bar W_l``, ``bar b_l``.
    Xvars : list of L arrays, shape (p_l, m)
        ``bar X_l`` (same backend as the input X-variables).
    lam : list of L float
        The target multipliers ``lam'``.
    rho : list of L + 1 float
        ``bar rho_l = rho_l r_{l-1} / r_l``.
    ratios : list of L float
        ``r_l = lam_l / lam'_l``.
    """

    net: LiftedNetwork
    Xvars: list
    lam: list
    rho: list
    ratios: list


def rescale(net: LiftedNetwork, Xvars: Sequence[Array], lam: Any, rho: Any, *, lam_to: Any = 1.0) -> Rescaled:
    """Move per-layer multipliers ``lam`` to ``lam_to`` by rescaling X, W, b and rho (Appendix A, eq. 21-22).

    Parameters
    ----------
    net : LiftedNetwork
        Every hidden activation must be ReLU or LeakyReLU (B homogeneous of degree 2).
    Xvars : list of L arrays (numpy or torch), shape (p_l, m)
        X-variables ``X_1..X_L``, paper layout (features x samples): checked for the network's widths, one
        sample count and finite values (their fit to data is the Lagrangian's business).
    lam : float or sequence of L floats, > 0
        The current multipliers.
    rho : float or sequence of L + 1 floats, >= 0
        The current weight penalties.
    lam_to : float or sequence of L floats, > 0, default 1
        The multipliers of the rescaled model (a scalar gives one lambda for every layer).

    Returns
    -------
    Rescaled
        ``net.lagrangian(X0, Y, out.Xvars, out.lam, out.rho)`` equals
        ``net_in.lagrangian(X0, Y, Xvars, lam, rho)`` up to round-off.

    Raises
    ------
    FenchelError
        A hidden activation whose penalty is not homogeneous (sigmoid, tanh).
    ValueRangeError, ShapeError
        ``lam`` or ``lam_to`` not > 0, ``rho`` negative, wrong lengths, X-variables of the wrong shape.
    DomainError
        X-variables that are not finite numbers.
    """
    if not isinstance(net, LiftedNetwork):
        raise FenchelError(f"net: expected a LiftedNetwork, got {type(net).__name__}")
    if Xvars is None or isinstance(Xvars, (str, bytes)) or not hasattr(Xvars, "__len__"):
        raise ShapeError(f"Xvars: expected a list of {net.L} X-variables [X_1, ..., X_L] (paper layout), got "
                         f"{type(Xvars).__name__}")
    for l, act in enumerate(net.acts):
        if not isinstance(act, HOMOGENEOUS_ACTIVATIONS):
            raise FenchelError(f"net.acts[{l}]: Appendix A's rescaling needs B homogeneous of degree 2 (ReLU or "
                               f"leaky ReLU), got {act!r}; keep per-layer lambdas for this network")
    L = net.L
    lam = per_layer(lam, L, "lam", positive=True)
    lam_to = per_layer(lam_to, L, "lam_to", positive=True)
    rho = per_layer(rho, L + 1, "rho", nonneg=True)
    Xs = list(Xvars)
    if len(Xs) != L:
        raise ShapeError(f"Xvars: expected {L} matrices [X_1, ..., X_L], got {len(Xs)}")
    for l, X in enumerate(Xs):
        name = f"Xvars[{l}] (X_{l + 1})"
        if is_torch(X):
            if X.is_complex() or X.is_meta or X.dtype == torch.bool:
                raise DomainError(f"{name}: expected real numbers, got a tensor of dtype {X.dtype} on {X.device}")
            if not X.is_floating_point():  # integer entries: scaled by sqrt(r) below, so float64 like numpy's
                X = X.double()
        elif np.asarray(X).dtype.kind not in "iuf":
            raise DomainError(f"{name}: expected real numbers, got an array of dtype {np.asarray(X).dtype}")
        Xs[l] = X = as_array(X, name)
        check_ndim(X, name, 2, "(p_l, m): features x samples")
        check_shape(X, name, (net.sizes[l + 1], Xs[0].shape[1]), "(p_l, m): features x samples, one m for all")
        check_finite(X, name)
    r = [a / t for a, t in zip(lam, lam_to, strict=True)]
    r_ext = [1.0] + r + [1.0]  # r_ext[l + 1] = r_l, with r_{-1} = r_L = 1

    out = net.copy()
    W, b = [], []
    for l in range(L + 1):
        r_prev, r_l = r_ext[l], r_ext[l + 1]
        W.append(math.sqrt(r_l / r_prev) * net.W[l])
        b.append(math.sqrt(r_l) * net.b[l])
    out.set_weights(W, b)
    Xbar = [math.sqrt(r_ext[l]) * X for l, X in enumerate(Xs, start=1)]
    rho_bar = [rho[l] * r_ext[l] / r_ext[l + 1] for l in range(L + 1)]
    return Rescaled(net=out, Xvars=Xbar, lam=list(lam_to), rho=rho_bar, ratios=r)
