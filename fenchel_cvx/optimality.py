r"""First-order optimality residuals and objectives of the four BCD subproblems, for numpy arrays and torch tensors.

Both faces use them: every :class:`~fenchel_cvx.subproblems.SubproblemResult` reports ``residual =
Residual.per_item / Residual.scale`` of the returned point (the same measure on the CVXPY and the torch face),
the CVXPY face evaluates its ``value`` with :data:`OBJECTIVES`, and :func:`fenchel_cvx.verify` holds a user's
point to both. Matrices are in the paper's layout ``(features, samples)``; ``b`` may be ``None`` (no bias).

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
A solver that already holds the gradient builds the same residuals with :func:`natural_residual` (X) and
:func:`gradient_residual` (W).

**Checked and unchecked.** :func:`objective` and :func:`residual`, the entry points by subproblem name, check their
data as the faces do (argument names, multipliers, finiteness, shapes; a :mod:`~fenchel_cvx.errors` exception
naming the argument). The per-subproblem functions (``x_hidden_objective``, ...) and the helpers
(:func:`penalty`, :func:`natural_residual`, :func:`gradient_residual`) are the kernels the faces call on data they
have already checked: they check nothing, so call them only on checked data.

**Layers** (keyword ``layer``, a :class:`~fenchel_cvx.layers.Layer`; ``None`` = dense). For a convolution or a
pooled layer, ``W Z + b`` reads ``A(Z; W) + b`` and ``W^T`` the adjoint ``A^T``: the X residuals use
``layer.apply`` / ``layer.adjoint``. The W residuals are those of the dense problem on the patch form
``(layer.patches(X_in), layer.arrange(X_next))`` with ``W`` as ``layer.weight_matrix(W)``: one row per output
channel of a convolution. ``W`` (and ``W0``) come in the layer's own shape (the kernel).
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import torch

from ._checks import as_array, check_choice, check_finite, check_scalar, is_torch
from .activations import Activation, get_activation
from .errors import ChoiceError, DomainError, FenchelError, ShapeError
from .losses import Loss, get_loss
from .subproblems import SUBPROBLEMS, check_layer, check_layer_shape

if TYPE_CHECKING:
    from .layers import Layer

__all__ = [
    "OBJECTIVES",
    "RESIDUALS",
    "Residual",
    "gradient_residual",
    "natural_residual",
    "objective",
    "penalty",
    "residual",
    "w_hidden_objective",
    "w_hidden_residual",
    "w_last_objective",
    "w_last_residual",
    "x_hidden_objective",
    "x_last_objective",
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

    @property
    def per_item_relative(self) -> Array:
        """``per_item / scale``: what :class:`~fenchel_cvx.subproblems.SubproblemResult` reports as ``residual``."""
        return self.per_item / self.scale


def _fro(x: Array) -> float:
    return float(torch.linalg.norm(x)) if is_torch(x) else float(np.linalg.norm(x))


def _norms(x: Array, axis: int) -> Array:
    return torch.linalg.norm(x, dim=axis) if is_torch(x) else np.linalg.norm(x, axis=axis)


def _pre(W: Array, X: Array, b: Array | None) -> Array:
    U = W @ X
    return U if b is None else U + b[:, None]


def _dense(layer: Any, subproblem: str = "") -> bool:
    """Whether ``layer`` is ``None`` or a plain dense layer (then ``W Z + b`` is the matrix product)."""
    return check_layer(layer, subproblem) is None or layer.is_plain_dense


def _patch_form(layer: Layer, W: Array, X_in: Array, X_out: Array, W0: Array | None) -> tuple:
    """The W-update of a layer as the dense one: ``(W_mat, patches(X_in), arrange(X_out), W0_mat)``."""
    return (layer.weight_matrix(W), layer.patches(X_in), layer.arrange(X_out),
            None if W0 is None else layer.weight_matrix(W0))


def _make(per_item_sq: Array, scale: float) -> Residual:
    per = per_item_sq ** 0.5
    norm = math.sqrt(float(per_item_sq.sum()))
    scale = max(1.0, scale)
    return Residual(per, norm, scale, norm / scale)


def natural_residual(Z: Array, grad_f: Array, U_prev: Array, *, act_prev: str | Activation,
                     lam_prev: float) -> Residual:
    """The X-updates' residual ``R = Z - phi_prev(U_prev - grad_f / lam_prev)`` from a gradient already at hand.

    Parameters
    ----------
    Z : array, shape (p_l, m)
    grad_f : array, shape (p_l, m)
        Gradient of the smooth part at ``Z`` (``lam W^T (phi(W Z + b) - X_next)`` or ``W^T dL/dYhat``).
    U_prev : array, shape (p_l, m)
    act_prev : str or Activation
    lam_prev : float

    Returns
    -------
    Residual
        As :func:`x_hidden_residual` / :func:`x_last_residual` would compute it; ``per_item`` has shape ``(m,)``.
    """
    R = Z - get_activation(act_prev).forward(U_prev - grad_f / lam_prev)
    return _make((R * R).sum(0), _fro(Z))


def x_hidden_residual(Z: Array, W: Array, b: Array | None, X_next: Array, U_prev: Array, *,
                      act: str | Activation, act_prev: str | Activation, lam: float, lam_prev: float,
                      layer: Layer | None = None) -> Residual:
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
    layer : Layer, optional
        The map ``A(Z; W) + b`` (``W`` shape ``layer.weight_shape``, ``Z`` ``(layer.n_in, m)``); ``None``: dense.

    Returns
    -------
    Residual
        ``per_item`` has shape ``(m,)``.
    """
    act, act_prev = get_activation(act), get_activation(act_prev)
    if _dense(layer):
        grad_f = lam * (W.T @ (act.forward(_pre(W, Z, b)) - X_next))
    else:
        grad_f = lam * layer.adjoint(W, act.forward(layer.apply(W, b, Z)) - X_next)
    return natural_residual(Z, grad_f, U_prev, act_prev=act_prev, lam_prev=lam_prev)


def x_last_residual(Z: Array, W: Array, b: Array | None, Y: Array, U_prev: Array, *, loss: str | Loss,
                    act_prev: str | Activation, lam_prev: float, layer: Layer | None = None) -> Residual:
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
    layer : Layer, optional
        The output layer's map (dense, possibly after pooling); ``None``: dense.

    Returns
    -------
    Residual
        ``per_item`` has shape ``(m,)``.
    """
    loss, act_prev = get_loss(loss), get_activation(act_prev)
    if _dense(layer, "x_last"):
        grad_f = W.T @ loss.grad(Y, _pre(W, Z, b))
    else:
        grad_f = layer.adjoint(W, loss.grad(Y, layer.apply(W, b, Z)))
    return natural_residual(Z, grad_f, U_prev, act_prev=act_prev, lam_prev=lam_prev)


def gradient_residual(grad_sq: Array, data_norms: tuple[float, ...], W: Array, b: Array | None, *, rho: float,
                      gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None) -> Residual:
    """The W-updates' residual from a gradient a solver already holds (no GEMM).

    Parameters
    ----------
    grad_sq : array, shape (p_out,)
        Squared Euclidean norm of each row of the gradient ``[G_W, G_b]`` at ``(W, b)``.
    data_norms : tuple of float
        Frobenius norms of the data terms ``[T X_in^T, T 1]`` the gradient's data part is the difference of
        (``T = lam phi(W X_in + b)`` and ``lam X_next`` for the hidden update; ``dL/dYhat + c Y`` and ``c Y`` for
        the last one).
    W : array, shape (p_out, p_in)
    b : array, shape (p_out,), or None
    rho, gamma : float
    W0, b0 : arrays, optional (needed when gamma > 0)

    Returns
    -------
    Residual
        As :func:`w_hidden_residual` / :func:`w_last_residual` would compute it.
    """
    scale = 2.0 * rho * _fro(W) + sum(data_norms)
    if gamma > 0:
        diff_sq = _fro(W - W0) ** 2 + (_fro(b - b0) ** 2 if b is not None else 0.0)
        scale += 2.0 * gamma * math.sqrt(diff_sq)
    return _make(grad_sq, scale)


def _w_residual(D: Array, pieces: tuple[Array, ...], W: Array, b: Array | None, X_in: Array, rho: float,
                gamma: float, W0: Array | None, b0: Array | None) -> Residual:
    GW = D @ X_in.T + 2.0 * rho * W
    norms = tuple(math.sqrt(_fro(T @ X_in.T) ** 2 + (_fro(T.sum(1)) ** 2 if b is not None else 0.0))
                  for T in pieces)  # the terms D is the difference of, each mapped like D
    if gamma > 0:
        GW = GW + 2.0 * gamma * (W - W0)
    sq = (GW * GW).sum(1)
    if b is not None:
        Gb = D.sum(1)
        if gamma > 0:
            Gb = Gb + 2.0 * gamma * (b - b0)
        sq = sq + Gb * Gb
    return gradient_residual(sq, norms, W, b, rho=rho, gamma=gamma, W0=W0, b0=b0)


def w_hidden_residual(W: Array, b: Array | None, X_in: Array, X_next: Array, *, act: str | Activation, lam: float,
                      rho: float, gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None,
                      layer: Layer | None = None) -> Residual:
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
    layer : Layer, optional
        ``W``, ``W0`` of shape ``layer.weight_shape``, ``X_in`` ``(layer.n_in, m)``, ``X_next`` ``(layer.n_out, m)``;
        the residual is the dense one on the patch form. ``None``: dense.

    Returns
    -------
    Residual
        ``per_item`` has shape ``(p_out,)`` (output channels for a convolution).
    """
    act = get_activation(act)
    if not _dense(layer):
        W, X_in, X_next, W0 = _patch_form(layer, W, X_in, X_next, W0)
    P = lam * act.forward(_pre(W, X_in, b))
    V = lam * X_next
    return _w_residual(P - V, (P, V), W, b, X_in, rho, gamma, W0, b0)


def w_last_residual(W: Array, b: Array | None, X_in: Array, Y: Array, *, loss: str | Loss, rho: float,
                    gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None,
                    layer: Layer | None = None) -> Residual:
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
    layer : Layer, optional
        The output layer (dense, possibly after pooling: ``X_in`` is then pooled first); ``None``: dense.

    Returns
    -------
    Residual
        ``per_item`` has shape ``(p,)``.
    """
    loss = get_loss(loss)
    if not _dense(layer, "w_last"):
        W, X_in, _, W0 = _patch_form(layer, W, X_in, None, W0)
    Yhat = _pre(W, X_in, b)
    T = loss.targets(Y, Yhat.shape[0], like=Yhat)
    D = loss.grad(T, Yhat)
    cY = loss.linear_weight * T
    return _w_residual(D, (D + cY, cY), W, b, X_in, rho, gamma, W0, b0)


#: The residual function of every entry of :data:`fenchel_cvx.subproblems.SUBPROBLEMS`.
RESIDUALS = {
    "x_hidden": x_hidden_residual,
    "x_last": x_last_residual,
    "w_hidden": w_hidden_residual,
    "w_last": w_last_residual,
}


# -- objectives -------------------------------------------------------------------------------------------------
def penalty(W: Array, b: Array | None, *, rho: float, gamma: float = 0.0, W0: Array | None = None,
            b0: Array | None = None) -> float:
    """``rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2)`` (the bias is not penalized by ``rho``)."""
    val = rho * _fro(W) ** 2
    if gamma > 0:
        val += gamma * _fro(W - W0) ** 2
        if b is not None:
            val += gamma * _fro(b - b0) ** 2
    return val


def x_hidden_objective(Z: Array, W: Array, b: Array | None, X_next: Array, U_prev: Array, *,
                       act: str | Activation, act_prev: str | Activation, lam: float, lam_prev: float,
                       layer: Layer | None = None) -> float:
    """Eq. (14) at ``Z``: ``lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev)`` (+inf outside the domain).

    Arguments as :func:`x_hidden_residual`.
    """
    act, act_prev = get_activation(act), get_activation(act_prev)
    U = _pre(W, Z, b) if _dense(layer) else layer.apply(W, b, Z)
    return lam * act.B_sum(X_next, U) + lam_prev * act_prev.B_sum(Z, U_prev)


def x_last_objective(Z: Array, W: Array, b: Array | None, Y: Array, U_prev: Array, *, loss: str | Loss,
                     act_prev: str | Activation, lam_prev: float, layer: Layer | None = None) -> float:
    """Eqs. (15)-(16) at ``Z``: ``loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev)``.

    Arguments as :func:`x_last_residual`.
    """
    loss, act_prev = get_loss(loss), get_activation(act_prev)
    Yhat = _pre(W, Z, b) if _dense(layer, "x_last") else layer.apply(W, b, Z)
    return float(loss.value(Y, Yhat)) + lam_prev * act_prev.B_sum(Z, U_prev)


def w_hidden_objective(W: Array, b: Array | None, X_in: Array, X_next: Array, *, act: str | Activation,
                       lam: float, rho: float, gamma: float = 0.0, W0: Array | None = None,
                       b0: Array | None = None, layer: Layer | None = None) -> float:
    """Eqs. (17)/(19) at ``(W, b)``: ``lam B_act(X_next, W X_in + b) + penalty``.

    Arguments as :func:`w_hidden_residual`.
    """
    act = get_activation(act)
    U = _pre(W, X_in, b) if _dense(layer) else layer.apply(W, b, X_in)
    return lam * act.B_sum(X_next, U) + penalty(W, b, rho=rho, gamma=gamma, W0=W0, b0=b0)


def w_last_objective(W: Array, b: Array | None, X_in: Array, Y: Array, *, loss: str | Loss, rho: float,
                     gamma: float = 0.0, W0: Array | None = None, b0: Array | None = None,
                     layer: Layer | None = None) -> float:
    """Eqs. (18)/(20) at ``(W, b)``: ``loss(Y, W X_in + b) + penalty``.

    Arguments as :func:`w_last_residual`.
    """
    loss = get_loss(loss)
    Yhat = _pre(W, X_in, b) if _dense(layer, "w_last") else layer.apply(W, b, X_in)
    return float(loss.value(Y, Yhat)) + penalty(W, b, rho=rho, gamma=gamma, W0=W0, b0=b0)


#: The numeric objective of every entry of :data:`fenchel_cvx.subproblems.SUBPROBLEMS`.
OBJECTIVES = {
    "x_hidden": x_hidden_objective,
    "x_last": x_last_objective,
    "w_hidden": w_hidden_objective,
    "w_last": w_last_objective,
}

if set(RESIDUALS) != set(SUBPROBLEMS) or set(OBJECTIVES) != set(SUBPROBLEMS):  # pragma: no cover
    raise ImportError(f"fenchel_cvx.optimality does not cover the subproblem registry {sorted(SUBPROBLEMS)}")


_ARRAYS = ("Z", "W", "b", "X_next", "U_prev", "Y", "X_in", "W0", "b0")


def _dispatch(table: dict, name: str, point: Any, problem: dict) -> Any:
    name = check_choice(name, "name", SUBPROBLEMS, "a subproblem of fenchel_cvx.subproblems.SUBPROBLEMS")
    kw = {k: v for k, v in problem.items() if k not in ("bias", "p")}  # fixed by the point itself
    if SUBPROBLEMS[name].over == ("Z",):
        kw["Z"] = point
    else:
        if isinstance(point, dict):
            W, b = point.get("W"), point.get("b")
        elif isinstance(point, (tuple, list)) and len(point) == 2:
            W, b = point
        else:
            raise ShapeError(f"point: expected (W, b) or {{'W': W, 'b': b}} for {name}, got "
                             f"{type(point).__name__}")
        kw.update(W=W, b=b)
    return table[name](**_checked(name, table[name], kw))


def _checked(name: str, fn: Any, kw: dict) -> dict:
    """The keyword data of ``fn`` (a kernel of subproblem ``name``), checked as the faces check theirs: names,
    multipliers, finiteness and the shapes a layer (or ``W``) implies; numpy float64 unless all are torch tensors of
    one dtype and device (the kernels take either, not a mix)."""
    params = inspect.signature(fn).parameters
    unknown = sorted(set(kw) - set(params))
    if unknown:
        raise ChoiceError(f"{name}: unknown argument(s) {unknown}; expected {sorted(params)}")
    missing = [k for k, p in params.items() if p.default is inspect.Parameter.empty and k not in kw]
    if missing:
        raise FenchelError(f"{name}: missing argument(s) {missing} (expected {sorted(params)})")
    out = dict(kw)
    arrays = {k: v for k, v in kw.items() if k in _ARRAYS and v is not None}
    tensors = [v for v in arrays.values() if is_torch(v)]
    same = len(tensors) == len(arrays) and len({(t.dtype, t.device) for t in tensors}) <= 1
    for k, v in arrays.items():
        if is_torch(v) and (v.is_complex() or v.is_meta):
            raise DomainError(f"{k}: expected a real array holding data, got dtype {v.dtype} on {v.device}")
        if not is_torch(v) and np.iscomplexobj(v):
            raise DomainError(f"{k}: expected a real array, got complex values")
        a = v if same else np.asarray(v.detach().cpu().double().numpy() if is_torch(v) else as_array(v, k), float)
        check_finite(a, k)
        out[k] = a
    for k in ("lam", "lam_prev"):
        if k in out:
            out[k] = check_scalar(out[k], k, positive=True)
    for k in ("rho", "gamma"):
        if k in out:
            out[k] = check_scalar(out[k], k, nonneg=True)
    if out.get("gamma", 0.0) > 0 and (out.get("W0") is None or (out.get("b") is not None and out.get("b0") is None)):
        raise FenchelError("W0: gamma > 0 needs the previous weights W0 (and b0 when there is a bias), got None")
    for k in ("Z", "W", "X_next", "U_prev", "Y", "X_in"):
        if k in out and out[k] is None:
            raise ShapeError(f"{k}: expected an array, got None")
    _check_shapes(out, check_layer(out.get("layer"), name))
    return out


def _check_shapes(kw: dict, layer: Layer | None) -> None:
    """The shapes of the data against ``W`` or ``layer`` (the faces' shapes, paper layout)."""
    W = kw["W"]
    if layer is not None:
        check_layer_shape(W, "W", layer, "weight")
        n_in, n_out = layer.n_in, layer.n_out
        bias_shape: tuple = layer.bias_shape
    else:
        if W.ndim != 2:
            raise ShapeError(f"W: expected a matrix (p_out, p_in), got shape {tuple(W.shape)}")
        n_out, n_in = W.shape
        bias_shape = (n_out,)
    for k, want in (("b", bias_shape), ("b0", bias_shape), ("W0", tuple(W.shape))):
        if kw.get(k) is not None and tuple(kw[k].shape) != want:
            raise ShapeError(f"{k}: expected shape {want}, got {tuple(kw[k].shape)}")
    data = kw["U_prev"] if "U_prev" in kw else kw["X_in"]
    if data.ndim != 2 or data.shape[0] != n_in:
        raise ShapeError(f"{'U_prev' if 'U_prev' in kw else 'X_in'}: expected shape ({n_in}, m), got "
                         f"{tuple(data.shape)}")
    m = data.shape[1]
    if "Z" in kw and tuple(kw["Z"].shape) != (n_in, m):
        raise ShapeError(f"Z: expected shape ({n_in}, {m}) like U_prev, got {tuple(kw['Z'].shape)}")
    out_name = "X_next" if "X_next" in kw else "Y"
    target = kw[out_name]
    labels = out_name == "Y" and target.ndim == 1
    if (labels and target.shape != (m,)) or (not labels and tuple(target.shape) != (n_out, m)):
        raise ShapeError(f"{out_name}: expected shape ({n_out}, {m}){' or labels (m,)' if out_name == 'Y' else ''}, "
                         f"got {tuple(target.shape)}")


def objective(name: str, point: Any, **problem: Any) -> float:
    """The objective of subproblem ``name`` at ``point``, by the numeric formula both faces report as ``value``.

    Parameters
    ----------
    name : str
        A key of :data:`~fenchel_cvx.subproblems.SUBPROBLEMS`.
    point : array, shape (p_l, m), or (W, b), or {"W": W, "b": b}
        ``Z`` for the X-updates; the weights and bias (``b`` may be ``None``) for the W-updates.
    **problem
        The keyword data the faces take (``W=, b=, X_next=, U_prev=, act=, ..., layer=``); ``bias`` and ``p`` are
        accepted and ignored (the point fixes them).

    Returns
    -------
    float
        The full objective, constants included; ``+inf`` when ``Z`` leaves the domain of ``act_prev``.

    Raises
    ------
    ChoiceError, FenchelError
        An unknown subproblem or argument; a missing argument (or ``W0`` with ``gamma > 0``).
    ShapeError, DomainError, ValueRangeError
        Shapes that do not fit ``W`` (or ``layer``), non-finite or complex data, ``lam <= 0``, ``rho < 0``.
    """
    return _dispatch(OBJECTIVES, name, point, problem)


def residual(name: str, point: Any, **problem: Any) -> Residual:
    """The optimality residual (:data:`RESIDUALS`) of ``name`` at ``point``; arguments as :func:`objective`."""
    return _dispatch(RESIDUALS, name, point, problem)
