r"""First-order optimality residuals of the four BCD subproblems, for numpy arrays and torch tensors alike.

Both faces use them: the CVXPY face reports ``info["kkt_residual"]`` and the tests hold every returned point to
it; the torch face may use them as an independent check of its own certificates. Matrices are in the paper's
layout ``(features, samples)``; ``b`` may be ``None`` (no bias).

**X-updates** (domain constraints). With ``f`` the smooth part, the optimality condition of
``min_Z f(Z) + lam_prev (F_prev(Z) - <U_prev, Z>)`` over ``dom F_prev`` is
``phi_prev^{-1}(Z) = U_prev - grad f(Z) / lam_prev``, i.e. ``Z = phi_prev(S)`` with that right-hand side ``S``
(``F_prev' = phi_prev^{-1}`` and, for ReLU, ``relu`` is the projection onto ``Z >= 0``, so this is the
projected-gradient fixed point with step ``1 / lam_prev``). The residual is the mirror natural residual

.. math::  R = Z - \phi_{l-1}\bigl(U_{prev} - \nabla f(Z) / \lambda_{prev}\bigr),

zero exactly at the minimizer, finite even when ``Z`` touches the boundary of a sigmoid/tanh domain (where
``phi^{-1}`` is infinite), and in the units of ``Z``. ``relative = ||R||_F / max(1, ||Z||_F)``.

* ``x_hidden``: ``grad f = lam W^T (phi(W Z + b) - X_next)``.
* ``x_last``: ``grad f = W^T dL/dYhat (Y, W Z + b)``.

**W-updates** (unconstrained, smooth). The residual is the gradient
``G_W = D X_in^T + 2 rho W + 2 gamma (W - W0)``, ``G_b = D 1 + 2 gamma (b - b0)`` with
``D = lam (phi(W X_in + b) - X_next)`` (hidden) or ``D = dL/dYhat`` (last), relative to the sum of the norms of
the terms it is made of (so cancellation at the optimum is measured against the size of what cancels).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch

from ._checks import is_torch
from .activations import Activation, get_activation
from .losses import Loss, get_loss

__all__ = [
    "RESIDUALS",
    "Residual",
    "w_hidden_residual",
    "w_last_residual",
    "x_hidden_residual",
    "x_last_residual",
]

Array = Any


class Residual(NamedTuple):
    """An optimality residual.

    Attributes
    ----------
    per_item : array, shape (m,) for X-updates, (p_out,) for W-updates
        Euclidean norm of the residual of each column (data point) or row (output unit); numpy or torch like
        the inputs.
    norm : float
        Frobenius norm of the whole residual.
    scale : float
        The normalizer: ``max(1, ||Z||_F)`` for X-updates, ``max(1, sum of the gradient terms' norms)`` for
        W-updates.
    relative : float
        ``norm / scale``.
    """

    per_item: Array
    norm: float
    scale: float
    relative: float


def _fro(x: Array) -> float:
    return float(torch.linalg.norm(x)) if is_torch(x) else float(np.linalg.norm(x))


def _norms(x: Array, axis: int) -> Array:
    return torch.linalg.norm(x, dim=axis) if is_torch(x) else np.linalg.norm(x, axis=axis)


def _pre(W: Array, X: Array, b: Array | None) -> Array:
    U = W @ X
    return U if b is None else U + b[:, None]


def _make(per_item_sq: Array, scale: float) -> Residual:
    per = per_item_sq ** 0.5
    norm = math.sqrt(float(per_item_sq.sum()))
    scale = max(1.0, scale)
    return Residual(per, norm, scale, norm / scale)


def _x_residual(Z: Array, grad_f: Array, U_prev: Array, act_prev: Activation, lam_prev: float) -> Residual:
    R = Z - act_prev.forward(U_prev - grad_f / lam_prev)
    return _make((R * R).sum(0), _fro(Z))


def x_hidden_residual(Z: Array, W: Array, b: Array | None, X_next: Array, U_prev: Array, *,
                      act: str | Activation, act_prev: str | Activation, lam: float, lam_prev: float) -> Residual:
    """Mirror natural residual of eq. (14) at ``Z``.

    Parameters
    ----------
    Z : array, shape (p_l, m)
        Candidate ``X_l``.
    W : array, shape (p_{l+1}, p_l)
    b : array, shape (p_{l+1},), or None
    X_next : array, shape (p_{l+1}, m)
    U_prev : array, shape (p_l, m)
        ``W_{l-1} X_{l-1} + b_{l-1}``.
    act, act_prev : str or Activation
        Activations of layers ``l+1`` and ``l``.
    lam, lam_prev : float

    Returns
    -------
    Residual
        ``per_item`` has shape ``(m,)``.
    """
    act, act_prev = get_activation(act), get_activation(act_prev)
    grad_f = lam * (W.T @ (act.forward(_pre(W, Z, b)) - X_next))
    return _x_residual(Z, grad_f, U_prev, act_prev, lam_prev)


def x_last_residual(Z: Array, W: Array, b: Array | None, Y: Array, U_prev: Array, *, loss: str | Loss,
                    act_prev: str | Activation, lam_prev: float) -> Residual:
    """Mirror natural residual of eqs. (15)-(16) at ``Z``.

    Parameters
    ----------
    Z : array, shape (p_L, m)
    W : array, shape (p, p_L)
    b : array, shape (p,), or None
    Y : array, shape (p, m), or int labels (m,)
    U_prev : array, shape (p_L, m)
    loss : str or Loss
    act_prev : str or Activation
    lam_prev : float

    Returns
    -------
    Residual
        ``per_item`` has shape ``(m,)``.
    """
    loss, act_prev = get_loss(loss), get_activation(act_prev)
    grad_f = W.T @ loss.grad(Y, _pre(W, Z, b))
    return _x_residual(Z, grad_f, U_prev, act_prev, lam_prev)


def _w_residual(D: Array, pieces: tuple[Array, ...], W: Array, b: Array | None, X_in: Array, rho: float,
                gamma: float, W0: Array | None, b0: Array | None) -> Residual:
    GW = D @ X_in.T + 2.0 * rho * W
    scale = 2.0 * rho * _fro(W)
    for T in pieces:  # the terms D is the difference of, each mapped like D
        scale += math.sqrt(_fro(T @ X_in.T) ** 2 + (_fro(T.sum(1)) ** 2 if b is not None else 0.0))
    if gamma > 0:
        dW = W - W0
        GW = GW + 2.0 * gamma * dW
        diff_sq = _fro(dW) ** 2
    sq = (GW * GW).sum(1)
    if b is not None:
        Gb = D.sum(1)
        if gamma > 0:
            db = b - b0
            Gb = Gb + 2.0 * gamma * db
            diff_sq += _fro(db) ** 2
        sq = sq + Gb * Gb
    if gamma > 0:
        scale += 2.0 * gamma * math.sqrt(diff_sq)
    return _make(sq, scale)


def w_hidden_residual(W: Array, b: Array | None, X_in: Array, X_next: Array, *, act: str | Activation, lam: float,
                      rho: float, gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None) -> Residual:
    """Gradient residual of eqs. (17)/(19) at ``(W, b)``.

    Parameters
    ----------
    W : array, shape (p_out, p_in)
    b : array, shape (p_out,), or None when there is no bias
    X_in : array, shape (p_in, m)
    X_next : array, shape (p_out, m)
    act : str or Activation
    lam, rho, gamma : float
    W0 : array, shape (p_out, p_in), optional (needed when gamma > 0)
    b0 : array, shape (p_out,), optional (needed when gamma > 0 and b is not None)

    Returns
    -------
    Residual
        ``per_item`` has shape ``(p_out,)``.
    """
    act = get_activation(act)
    P = lam * act.forward(_pre(W, X_in, b))
    V = lam * X_next
    return _w_residual(P - V, (P, V), W, b, X_in, rho, gamma, W0, b0)


def w_last_residual(W: Array, b: Array | None, X_in: Array, Y: Array, *, loss: str | Loss, rho: float,
                    gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None) -> Residual:
    """Gradient residual of eqs. (18)/(20) at ``(W, b)``.

    Parameters
    ----------
    W : array, shape (p, p_L)
    b : array, shape (p,), or None
    X_in : array, shape (p_L, m)
    Y : array, shape (p, m), or int labels (m,)
    loss : str or Loss
    rho, gamma : float
    W0, b0 : arrays, optional (needed when gamma > 0)

    Returns
    -------
    Residual
        ``per_item`` has shape ``(p,)``.
    """
    loss = get_loss(loss)
    Yhat = _pre(W, X_in, b)
    T = loss.targets(Y, Yhat.shape[0], like=Yhat)
    D = loss.grad(T, Yhat)
    cY = loss.linear_weight * T
    return _w_residual(D, (D + cY, cY), W, b, X_in, rho, gamma, W0, b0)


RESIDUALS = {
    "x_hidden": x_hidden_residual,
    "x_last": x_last_residual,
    "w_hidden": w_hidden_residual,
    "w_last": w_last_residual,
}
