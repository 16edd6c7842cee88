r"""CVXPY reference models of the W-updates: eqs. (17)/(19) (hidden layer) and (18)/(20) (last layer).

Side by side with :mod:`fenchel_cvx.torch.w_updates`: same names, same arguments, same first line of math.
Matrices are in the paper's layout ``(features, samples)``; ``W X_in + b`` means ``W X_in + b 1^T``; the bias
is not penalized by ``rho``; with ``bias=False`` the bias is fixed at 0 and ``result.b`` is ``None``.

The hidden W-update separates over rows of ``W`` (output units); ``chunk`` solves row blocks as separate
models. The last-layer update couples the rows through the cross-entropy and is solved as one model.

Model (DPP, parameters only in constraints; see :mod:`fenchel_cvx.cvx._model`)::

    minimize    lam F*_act(T) + (rho + gamma) ||W||^2 + gamma ||b||^2 + t + offset      (w_hidden)
                h(T)          + (rho + gamma) ||W||^2 + gamma ||b||^2 + t + offset      (w_last)
    subject to  T == W X_in + b 1^T,   t == -<G, W> - <g, b>

with ``G = lam X_next X_in^T + 2 gamma W0``, ``g = lam X_next 1 + 2 gamma b0`` (hidden) or
``G = c Y X_in^T + 2 gamma W0``, ``g = c Y 1 + 2 gamma b0`` (last; loss = h - c<Y, .> + kappa), and ``offset``
the constants, so that the optimal value is the full objective.

With ``layer=`` (a conv or pooled :class:`~fenchel_cvx.layers.Layer`) a W-update is this dense model on the
patch form: ``X_in`` becomes ``layer.patches(X_in)`` (one column per sample and output position), ``X_next``
``layer.arrange(X_next)``, ``W0`` ``layer.weight_matrix(W0)``, and the answer goes back to the kernel's shape
with ``layer.weight_from_matrix`` -- one row per output channel, the bias shared across positions.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import cvxpy as cp
import numpy as np

from .._checks import as_array, check_finite, check_flag, check_int
from ..activations import Activation, get_activation
from ..errors import ShapeError
from ..losses import Loss, get_loss
from ..optimality import w_hidden_objective, w_hidden_residual, w_last_objective, w_last_residual
from ..subproblems import SubproblemResult, check_layer, check_layer_anchor, check_layer_shape, warn_absent_classes
from ._model import CvxModel, as_matrix, as_vector, blocks, cached_model, finish, hyper, to_numpy
from ._polish import can_polish_loss, polish_w_full, polish_w_rows
from ._solve import QP_ACTIVATIONS, SolveInfo, check_solver, default_solver

if TYPE_CHECKING:
    from ..layers import Layer

__all__ = ["WHiddenModel", "WLastModel", "build_w_hidden", "build_w_last", "w_hidden", "w_last"]

_LAYOUT = "(features, samples)"
_NO_MIN_HINT = ("; without gamma > 0 the minimum need not be attained ({why}), so the solver may chase it to "
                "infinity: try rho > 0 with gamma > 0 or bias=False (rho does not penalize the bias)")


def _pre(W: np.ndarray, X: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    U = W @ X
    return U if b is None else U + b[:, None]


def _check_anchor(W0: Any, b0: Any, gamma: float, bias: bool, p_out: int, p_in: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The previous-batch weights of eqs. (19)-(20): required when gamma > 0 (b0 too when there is a bias)."""
    if gamma > 0 and W0 is None:
        raise ShapeError(f"W0: required when gamma > 0 (got gamma={gamma}), expected the previous batch's W of "
                         f"shape ({p_out}, {p_in}); pass W0= or set gamma=0")
    if gamma > 0 and bias and b0 is None:
        raise ShapeError(f"b0: required when gamma > 0 and bias=True, expected the previous batch's b of shape "
                         f"({p_out},); pass b0= or bias=False")
    W0 = None if W0 is None else as_matrix(W0, "W0", (p_out, p_in), "(p_out, p_in), the shape of W")
    b0 = None if (b0 is None or not bias) else as_vector(b0, "b0", p_out, "one entry per row of W")
    return W0, b0


def _patch_form(layer: Layer, X_in: Any, X_out: Any, W0: Any, b0: Any) -> tuple[Any, Any, Any]:
    """``(X_in, X_out, W0)`` checked against ``layer`` and put in the patch form of its W-update.

    ``X_out`` (``X_next``; ``None`` for ``w_last``) goes through ``layer.arrange``, ``W0`` (the kernel) through
    ``layer.weight_matrix``. A plain dense layer only has its shapes checked.
    """
    def numeric(x: Any, name: str, what: str, m: int | None = None) -> np.ndarray:
        arr = np.asarray(as_array(to_numpy(x), name), dtype=float)
        check_layer_shape(arr, name, layer, what, m=m)
        check_finite(arr, name)
        return arr

    X_in = numeric(X_in, "X_in", "in")
    X_out = None if X_out is None else numeric(X_out, "X_next", "out", m=X_in.shape[1])
    W0 = None if W0 is None else numeric(W0, "W0", "weight")
    if b0 is not None:
        check_layer_shape(np.asarray(to_numpy(b0)), "b0", layer, "bias")
    if layer.is_plain_dense:
        return X_in, X_out, W0
    return layer.patches(X_in), None if X_out is None else layer.arrange(X_out), None if W0 is None else \
        layer.weight_matrix(W0)


def _layer_outputs(layer: Layer, p: Any) -> int:
    """``p`` of ``w_last`` given its ``layer``: the layer's outputs (a different ``p`` is a :class:`ShapeError`)."""
    if p is not None and p != layer.n_out:
        raise ShapeError(f"p: expected None or {layer.n_out}, the outputs of layer {layer.describe()}, got {p!r}")
    return layer.n_out


def _as_kernel(res: SubproblemResult, layer: Layer, t0: float) -> SubproblemResult:
    """The patch form's answer with ``W`` back in the layer's shape (the kernel of a convolution)."""
    res.W = layer.weight_from_matrix(res.W)
    res.solve_time = time.perf_counter() - t0
    return res


class _WModel(CvxModel):
    """What both W-models share: variables W, b, T, t; parameters X_in, G, g, offset."""

    def _build(self, W_shape: tuple[int, int], m: int, rho: float, gamma: float, bias: bool, smooth: Any) -> None:
        p_out, p_in = (int(s) for s in W_shape)
        if p_out < 1 or p_in < 1 or m < 1:
            raise ShapeError(f"{self.subproblem}: expected positive sizes, got W_shape={tuple(W_shape)}, m={m}")
        self.W_shape, self.m, self.bias = (p_out, p_in), int(m), bool(bias)
        self.rho, self.gamma = rho, gamma
        X_in = cp.Parameter((p_in, m), name="X_in")
        G = cp.Parameter(p_out * p_in, name="G")
        offset = cp.Parameter(name="offset")
        W = cp.Variable((p_out, p_in), name="W")
        T = cp.Variable((p_out, m), name="T")
        t = cp.Variable(name="t")
        params = {"X_in": X_in, "G": G}
        variables = {"W": W}
        pre = W @ X_in
        lin = G @ cp.vec(W, order="F")
        objective = smooth(T) + t + offset
        if rho + gamma > 0:
            objective = objective + (rho + gamma) * cp.sum_squares(W)
        if bias:
            b = cp.Variable(p_out, name="b")
            g = cp.Parameter(p_out, name="g")
            params["g"] = g
            variables["b"] = b
            pre = pre + b[:, None]
            lin = lin + g @ b
            if gamma > 0:
                objective = objective + gamma * cp.sum_squares(b)
        params["offset"] = offset
        variables.update(T=T, t=t)
        self.problem = cp.Problem(cp.Minimize(objective), [T == pre, t == -lin])  # noqa: SIM300 (T: a variable)
        self.params, self.vars = params, variables

    def _check_shape(self, X_in: np.ndarray, p_out: int) -> None:
        if X_in.shape != (self.W_shape[1], self.m) or p_out != self.W_shape[0]:
            raise ShapeError(f"{self.subproblem}: this model was built for X_in of shape "
                             f"({self.W_shape[1]}, {self.m}) and {self.W_shape[0]} output rows, got X_in "
                             f"{X_in.shape} and {p_out} rows; build another model (build_{self.subproblem}) or "
                             f"call {self.subproblem}() which does it for you")

    def _set(self, X_in: np.ndarray, S: np.ndarray, W0: np.ndarray | None, b0: np.ndarray | None,
             offset: float) -> None:
        """Load data; ``S`` (p_out, m) is the matrix the linear term pairs with ``W X_in + b 1^T``."""
        gamma = self.gamma
        G = S @ X_in.T
        if gamma > 0:
            G = G + 2.0 * gamma * W0
            offset += gamma * float(np.sum(W0 * W0))
        self.params["X_in"].value = X_in
        self.params["G"].value = G.reshape(-1, order="F")
        if self.bias:
            g = S.sum(axis=1)
            if gamma > 0:
                g = g + 2.0 * gamma * b0
                offset += gamma * float(np.sum(b0 * b0))
            self.params["g"].value = g
        self.params["offset"].value = offset

    def _collect(self) -> tuple[np.ndarray, np.ndarray | None]:
        W = np.asarray(self.vars["W"].value, dtype=float)
        b = np.asarray(self.vars["b"].value, dtype=float) if self.bias else None
        return W, b


def _solve_rows(model_for: Any, load: Any, p_out: int, nnz_per_row: int, chunk: Any, solver: str | None,
                solver_opts: dict | None, hint: str) -> tuple[np.ndarray, np.ndarray | None, list[SolveInfo]]:
    Ws, bs, infos = [], [], []
    for rows in blocks(p_out, chunk, nnz_per_row):
        model = model_for(rows.stop - rows.start)
        load(model, rows)
        infos.append(model._run(solver, solver_opts, hint))
        W, b = model._collect()
        Ws.append(W)
        bs.append(b)
    b = None if bs[0] is None else np.concatenate(bs)
    return np.concatenate(Ws, axis=0), b, infos


# --------------------------------------------------------------------------------------------------- w_hidden
def _check_w_hidden(X_in: Any, X_next: Any, act: Activation) -> tuple[np.ndarray, np.ndarray]:
    X_in = as_matrix(X_in, "X_in", (None, None), f"{_LAYOUT}")
    X_next = as_matrix(X_next, "X_next", (None, X_in.shape[1]), f"{_LAYOUT}, columns = X_in.shape[1]")
    act.check_domain(X_next, "X_next")
    _check_samples(X_in, X_next.shape[0], "X_next")
    return X_in, X_next


def _check_samples(X_in: np.ndarray, p_out: int, out_name: str) -> None:
    """A W-update needs data: at least one sample (column of ``X_in``) and one output row."""
    if X_in.shape[1] < 1:
        raise ShapeError(f"X_in: expected at least one data point (column), got shape {X_in.shape}")
    if p_out < 1:
        raise ShapeError(f"{out_name}: expected at least one row (output unit), got none")


def _hidden_hint(act: Activation, rho: float, gamma: float, bias: bool = True) -> str:
    if gamma > 0 or (rho > 0 and not bias):
        return ""
    why = "X_in without full row rank"
    if act.name in ("sigmoid", "tanh"):
        why = f"X_next on the boundary {act.domain} of dom {act.name}, or " + why
    return _NO_MIN_HINT.format(why=why)


class WHiddenModel(_WModel):
    """The compiled CVXPY model of eqs. (17)/(19) for fixed sizes and hyperparameters.

    Parameters ``X_in`` (p_in, m), ``G`` (p_out p_in,) = vec(lam X_next X_in^T + 2 gamma W0), ``g`` (p_out,)
    = lam X_next 1 + 2 gamma b0 when ``bias``, ``offset`` (); variables ``W`` (p_out, p_in), ``b`` (p_out,),
    ``T`` = W X_in + b 1^T, ``t`` = -<G, W> - <g, b>. Build it with :func:`build_w_hidden`.
    """

    subproblem = "w_hidden"

    def __init__(self, W_shape: tuple[int, int], m: int, *, act: str | Activation, lam: float, rho: float,
                 gamma: float = 0.0, bias: bool = True):
        self.act = get_activation(act)
        self.lam = hyper(lam, "lam", positive=True)
        rho, gamma = hyper(rho, "rho", nonneg=True), hyper(gamma, "gamma", nonneg=True)
        self._build(W_shape, m, rho, gamma, bias, lambda T: self.lam * self.act.cvx_F_conj(T))
        self.default_solver = default_solver([self.act])
        self.qp = self.act.name in QP_ACTIVATIONS

    def load(self, X_in: Any, X_next: Any, *, W0: Any = None, b0: Any = None) -> None:
        """Check the data (shapes, finiteness, ``X_next`` in dom(act), anchors) and fill the parameters."""
        X_in, X_next = _check_w_hidden(X_in, X_next, self.act)
        self._check_shape(X_in, X_next.shape[0])
        W0, b0 = _check_anchor(W0, b0, self.gamma, self.bias, *self.W_shape)
        self._load(X_in, X_next, W0, b0)

    def _load(self, X_in: np.ndarray, X_next: np.ndarray, W0: np.ndarray | None, b0: np.ndarray | None) -> None:
        lam = self.lam
        self._set(X_in, lam * X_next, W0, b0, lam * float(np.sum(self.act.F(X_next))))

    def solve(self, X_in: Any, X_next: Any, *, W0: Any = None, b0: Any = None, solver: str | None = None,
              solver_opts: dict | None = None, polish: bool = True) -> SubproblemResult:
        """Load the data, solve, and return the same result as :func:`w_hidden` (without chunking)."""
        t0 = time.perf_counter()
        solver, polish = check_solver(solver), check_flag(polish, "polish")
        X_in, X_next = _check_w_hidden(X_in, X_next, self.act)
        self._check_shape(X_in, X_next.shape[0])
        W0, b0 = _check_anchor(W0, b0, self.gamma, self.bias, *self.W_shape)
        W, b, infos = _solve_rows(lambda n: self, lambda model, rows: model._load(X_in, X_next, W0, b0),
                                  self.W_shape[0], 0, None, solver, solver_opts,
                                  _hidden_hint(self.act, self.rho, self.gamma, self.bias))
        return _w_hidden_result(W, b, infos, t0, X_in, X_next, self.act, self.lam, self.rho, self.gamma, W0, b0,
                                polish, self.qp)


def build_w_hidden(W_shape: tuple[int, int], m: int, *, act: str | Activation, lam: float, rho: float,
                   gamma: float = 0.0, bias: bool = True) -> WHiddenModel:
    """Build the DPP model of eqs. (17)/(19) for ``W`` of shape ``W_shape`` and ``m`` data points.

    Parameters
    ----------
    W_shape : (int, int)
        ``(p_out, p_in) = (p_{l+1}, p_l)``.
    m : int
        Number of data points.
    act : str or Activation
        Activation of layer ``l+1``.
    lam : float
        ``lam_l > 0``.
    rho, gamma : float
        ``>= 0``; fixed in the model (they multiply variables).
    bias : bool
        Whether ``b`` is a variable (else fixed at 0).

    Returns
    -------
    WHiddenModel
        ``.solve(X_in, X_next, W0=, b0=)`` re-solves with new data.
    """
    return WHiddenModel(W_shape, m, act=act, lam=lam, rho=rho, gamma=gamma, bias=bias)


def w_hidden(X_in: Any, X_next: Any, *, act: str | Activation, lam: float, rho: float, gamma: float = 0.0,
             W0: Any = None, b0: Any = None, bias: bool = True, solver: str | None = None,
             solver_opts: dict | None = None, chunk: int | str | None = "auto",
             polish: bool = True, layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (17), (19): minimize over W, b  lam B_act(X_next, W X_in + b) + rho ||W||^2 + gamma ||[W, b] - [W0, b0]||^2

    The hidden-layer W-update: ``X_in = X_l``, ``X_next = X_{l+1}``, ``act = acts[l]``, ``lam = lam_l``,
    ``W0, b0`` the previous batch's weights (Algorithm 2). Layout: paper's ``(features, samples)``.

    Parameters
    ----------
    X_in : array, shape (p_in, m)
    X_next : array, shape (p_out, m)
        Must lie in dom(act).
    act : str or Activation
    lam : float
        ``> 0``.
    rho, gamma : float
        ``>= 0``.
    W0 : array, shape (p_out, p_in), optional
        Required when ``gamma > 0``.
    b0 : array, shape (p_out,), optional
        Required when ``gamma > 0`` and ``bias``.
    bias : bool
        ``False`` fixes ``b = 0`` (``result.b`` is ``None``).
    solver, solver_opts
        As in :func:`~fenchel_cvx.cvx.x_hidden` (default OSQP for ReLU/leaky ReLU, else Clarabel).
    chunk : int, "auto" or None
        Rows of ``W`` per separately solved block (``"auto"``: one row per model for OSQP, about 1e6 nonzeros
        per model for the others; ``None``: one model).
    polish : bool
        Refine the solver's point with safeguarded Newton steps per row, kept only if they lower the
        gradient residual (see :mod:`fenchel_cvx.cvx._polish`).
    layer : Layer, optional
        ``W X_in + b`` as ``A(X_in; W) + b`` (:mod:`fenchel_cvx.layers`): ``X_in`` ``(layer.n_in, m)``,
        ``X_next`` ``(layer.n_out, m)``, ``W0`` and the answer ``W`` of shape ``layer.weight_shape`` (a conv
        kernel), ``b`` one per output channel; solved as the dense model on the patch form. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``W`` (p_out, p_in), ``b`` (p_out,) or None; ``value`` recomputed numerically; ``residual`` (p_out,),
        the gradient residual per row relative to the problem's scale (:mod:`fenchel_cvx.optimality`, the
        same measure as the torch face), and ``max_residual``; ``converged`` (status ``"optimal"``);
        ``iterations`` (the most any chunk took); ``backend="cvx"``; ``info`` holds ``solver_status``,
        ``solver_value``, ``value_gap``, ``kkt_residual`` (relative gradient norm), chunk statuses and times.

    Raises
    ------
    ShapeError, DomainError, ValueRangeError
        Bad shapes (data or ``W0`` that do not fit ``layer``), non-finite data, ``X_next`` outside dom(act),
        ``lam <= 0``, ``rho < 0``, ``gamma < 0``, missing ``W0``/``b0`` with ``gamma > 0``.
    ChoiceError
        A ``layer`` that is not a :class:`~fenchel_cvx.layers.Layer`.
    SolverError
        A status other than optimal.

    Notes
    -----
    Without ``gamma > 0`` the bias is not penalized, and without ``rho > 0`` neither is ``W``: a minimizer
    need not exist then. Sigmoid/tanh with ``X_next`` exactly on the boundary of the domain (0 or 1) makes
    ``B`` decrease forever as the pre-activation goes to -inf (+inf); the solver then returns an
    epsilon-optimal point far out (huge ``|b|``) with value within its tolerance of the infimum, or fails with
    a message saying so. Keep ``X_next`` in the open interval, or use ``gamma > 0`` / ``bias=False`` with
    ``rho > 0``.

    Appendix B: with ``X_next = phi(W* X_in + b*)``, ``rho = gamma = 0`` and data that determine ``W*`` the
    minimum value is 0 and the minimizer is ``(W*, b*)``.
    """
    t0 = time.perf_counter()
    layer, bias = check_layer(layer), check_flag(bias, "bias")
    solver, polish = check_solver(solver), check_flag(polish, "polish")
    if layer is not None:
        check_layer_anchor(layer, W0, b0, gamma, bias)
        X_in, X_next, W0 = _patch_form(layer, X_in, X_next, W0, b0 if bias else None)
        if not layer.is_plain_dense:
            res = w_hidden(X_in, X_next, act=act, lam=lam, rho=rho, gamma=gamma, W0=W0, b0=b0, bias=bias,
                           solver=solver, solver_opts=solver_opts, chunk=chunk, polish=polish)
            return _as_kernel(res, layer, t0)
    act = get_activation(act)
    lam = hyper(lam, "lam", positive=True)
    rho, gamma = hyper(rho, "rho", nonneg=True), hyper(gamma, "gamma", nonneg=True)
    X_in, X_next = _check_w_hidden(X_in, X_next, act)
    (p_in, m), p_out = X_in.shape, X_next.shape[0]
    W0, b0 = _check_anchor(W0, b0, gamma, bias, p_out, p_in)

    def model_for(n: int) -> WHiddenModel:
        return cached_model(WHiddenModel, (n, p_in), m, act=act, lam=lam, rho=rho, gamma=gamma, bias=bool(bias))

    def load(model: WHiddenModel, rows: slice) -> None:
        model._load(X_in, X_next[rows], None if W0 is None else W0[rows], None if b0 is None else b0[rows])

    if chunk == "auto" and (solver or default_solver([act])).upper() == "OSQP":
        # OSQP's ADMM runs until the slowest row of a block converges: one row per model is several times
        # faster than blocks of rows.
        chunk = 1
    W, b, infos = _solve_rows(model_for, load, p_out, (p_in + 1) * m, chunk, solver, solver_opts,
                              _hidden_hint(act, rho, gamma, bias))
    return _w_hidden_result(W, b, infos, t0, X_in, X_next, act, lam, rho, gamma, W0, b0, polish,
                            act.name in QP_ACTIVATIONS)


# Entries of the batched (rows, p_in + 1, p_in + 1) Hessians one polishing block may hold (32 MB).
_POLISH_ENTRIES = 4_000_000


def _w_hidden_result(W, b, infos, t0, X_in, X_next, act, lam, rho, gamma, W0, b0, polish, qp):
    def kkt(Wr, br, rows=slice(None)):
        return w_hidden_residual(Wr, br, X_in, X_next[rows], act=act, lam=lam, rho=rho, gamma=gamma,
                                 W0=None if W0 is None else W0[rows], b0=None if b0 is None else b0[rows])

    def residual(Wr, br, rows=slice(None)):
        return kkt(Wr, br, rows).relative

    info = {}
    if polish:
        W, b = W.copy(), None if b is None else b.copy()
        reports = []
        q = X_in.shape[0] + 1
        for rows in blocks(W.shape[0], max(1, _POLISH_ENTRIES // (q * q)), 1):
            Xn = X_next[rows]
            W0r = None if W0 is None else W0[rows]
            b0r = None if b0 is None else b0[rows]

            def grad_hess_T(T, Xn=Xn):
                return lam * (act.forward(T) - Xn), lam * act.derivative(T)

            def row_objective(Wr, br, Xn=Xn, W0r=W0r, b0r=b0r):
                val = lam * act.B(Xn, _pre(Wr, X_in, br)).sum(1) + rho * (Wr * Wr).sum(1)
                if gamma > 0:
                    val = val + gamma * ((Wr - W0r) ** 2).sum(1)
                    if br is not None:
                        val = val + gamma * (br - b0r) ** 2
                return val

            Wr, br, rep = polish_w_rows(W[rows], None if b is None else b[rows], X_in, grad_hess_T=grad_hess_T,
                                        row_objective=row_objective, rho=rho, gamma=gamma, W0=W0r, b0=b0r,
                                        residual=lambda Wr, br, rows=rows: residual(Wr, br, rows))
            W[rows] = Wr
            if b is not None:
                b[rows] = br
            reports.append(rep)
        info["polish"] = {"accepted": any(r["accepted"] for r in reports),
                          "steps": max(r["steps"] for r in reports), "blocks": len(reports)}
    value = w_hidden_objective(W, b, X_in, X_next, act=act, lam=lam, rho=rho, gamma=gamma, W0=W0, b0=b0)
    return finish("w_hidden", infos, t0, value, kkt(W, b), qp, W=W, b=b, info=info)


# ----------------------------------------------------------------------------------------------------- w_last
def _check_w_last(X_in: Any, Y: Any, loss: Loss, p: int | None, W0: Any) -> tuple[np.ndarray, np.ndarray]:
    X_in = as_matrix(X_in, "X_in", (None, None), f"{_LAYOUT}")
    p = check_int(p, "p", 1, optional=True, hint="the number of outputs")
    Y = np.asarray(to_numpy(Y))
    if Y.ndim == 2:
        if p is not None and Y.shape[0] != p:
            raise ShapeError(f"Y: expected {p} rows (p={p}), got shape {Y.shape}")
        p = Y.shape[0]
    elif p is None:
        # Integer labels carry no output count: take it from W0, else from the largest label.
        if W0 is not None:
            p = int(np.shape(to_numpy(W0))[0])
        else:
            p = int(np.max(Y)) + 1 if Y.size and np.issubdtype(Y.dtype, np.number) else 1
    T = np.asarray(loss.targets(Y, p), dtype=float)
    if T.shape[1] != X_in.shape[1]:
        raise ShapeError(f"Y: expected {X_in.shape[1]} samples (columns of X_in), got {T.shape[1]} "
                         f"(Y of shape {Y.shape})")
    _check_samples(X_in, T.shape[0], "Y")
    return X_in, T


class WLastModel(_WModel):
    """The compiled CVXPY model of eqs. (18)/(20) for fixed sizes and hyperparameters.

    Parameters ``X_in`` (p_L, m), ``G`` (p p_L,) = vec(c Y X_in^T + 2 gamma W0), ``g`` (p,) = c Y 1 +
    2 gamma b0 when ``bias``, ``offset`` (); variables ``W`` (p, p_L), ``b`` (p,), ``T`` = W X_in + b 1^T,
    ``t``. Build it with :func:`build_w_last`.
    """

    subproblem = "w_last"

    def __init__(self, W_shape: tuple[int, int], m: int, *, loss: str | Loss, rho: float, gamma: float = 0.0,
                 bias: bool = True):
        self.loss = get_loss(loss)
        rho, gamma = hyper(rho, "rho", nonneg=True), hyper(gamma, "gamma", nonneg=True)
        self._build(W_shape, m, rho, gamma, bias, self.loss.cvx_h)
        self.default_solver = default_solver([], self.loss)
        self.qp = self.loss.name == "mse"

    def load(self, X_in: Any, Y: Any, *, W0: Any = None, b0: Any = None) -> None:
        """Check the data (shapes, finiteness, labels, anchors) and fill the parameters."""
        X_in, Y = _check_w_last(X_in, Y, self.loss, self.W_shape[0], W0)
        self._check_shape(X_in, Y.shape[0])
        W0, b0 = _check_anchor(W0, b0, self.gamma, self.bias, *self.W_shape)
        self._load(X_in, Y, W0, b0)

    def _load(self, X_in: np.ndarray, Y: np.ndarray, W0: np.ndarray | None, b0: np.ndarray | None) -> None:
        self._set(X_in, self.loss.linear_weight * Y, W0, b0, float(self.loss.kappa(Y)))

    def solve(self, X_in: Any, Y: Any, *, W0: Any = None, b0: Any = None, solver: str | None = None,
              solver_opts: dict | None = None, polish: bool = True) -> SubproblemResult:
        """Load the data, solve, and return the same result as :func:`w_last`."""
        t0 = time.perf_counter()
        solver, polish = check_solver(solver), check_flag(polish, "polish")
        X_in, Y = _check_w_last(X_in, Y, self.loss, self.W_shape[0], W0)
        self._check_shape(X_in, Y.shape[0])
        W0, b0 = _check_anchor(W0, b0, self.gamma, self.bias, *self.W_shape)
        return _w_last_solve(self, t0, X_in, Y, W0, b0, solver, solver_opts, polish)


def build_w_last(W_shape: tuple[int, int], m: int, *, loss: str | Loss, rho: float, gamma: float = 0.0,
                 bias: bool = True) -> WLastModel:
    """Build the DPP model of eqs. (18)/(20) for ``W`` of shape ``W_shape`` and ``m`` data points.

    Parameters
    ----------
    W_shape : (int, int)
        ``(p, p_L)``.
    m : int
        Number of data points.
    loss : str or Loss
    rho, gamma : float
        ``>= 0``; fixed in the model.
    bias : bool

    Returns
    -------
    WLastModel
    """
    return WLastModel(W_shape, m, loss=loss, rho=rho, gamma=gamma, bias=bias)


def w_last(X_in: Any, Y: Any, *, loss: str | Loss, rho: float, gamma: float = 0.0, W0: Any = None, b0: Any = None,
           bias: bool = True, p: int | None = None, solver: str | None = None,
           solver_opts: dict | None = None, polish: bool = True, layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (18), (20): minimize over W, b  loss(Y, W X_in + b) + rho ||W||^2 + gamma ||[W, b] - [W0, b0]||^2

    The last-layer W-update: ``X_in = X_L``. The rows are coupled by cross-entropy, so there is no ``chunk``.
    Layout: paper's ``(features, samples)``.

    Parameters
    ----------
    X_in : array, shape (p_L, m)
    Y : array, shape (p, m), or int labels (m,)
    loss : str or Loss
    rho, gamma : float
        ``>= 0``.
    W0 : array, shape (p, p_L), optional
        Required when ``gamma > 0``.
    b0 : array, shape (p,), optional
        Required when ``gamma > 0`` and ``bias``.
    bias : bool
    p : int, optional
        Number of outputs; only needed with integer labels when ``W0`` is not given (default: largest
        label + 1, which is too small when the batch misses the last classes).
    solver, solver_opts
        As in :func:`~fenchel_cvx.cvx.x_hidden` (default OSQP for MSE, Clarabel for cross-entropy).
    polish : bool
        Refine the solver's point with safeguarded Newton steps on the full ``(p (p_L + 1))``-square Hessian,
        kept only if they lower the gradient residual.
    layer : Layer, optional
        The output layer, dense after average pooling (e.g. ``a2f10``): ``X_in`` ``(layer.n_in, m)`` is pooled
        first, ``W`` and ``W0`` have shape ``layer.weight_shape``. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``W`` (p, p_L), ``b`` (p,) or None; ``value`` recomputed numerically; ``residual`` (p,) per row and the
        rest as in :func:`w_hidden`.

    Raises
    ------
    ShapeError, DomainError, ValueRangeError, LabelError
    ChoiceError
        A ``layer`` that is not a :class:`~fenchel_cvx.layers.Layer`, or a convolution (the output layer is dense).
    SolverError
        A status other than optimal. Cross-entropy on separable data has no minimizer with ``rho = gamma = 0``,
        nor, with a bias and ``gamma = 0`` (the bias is then not penalized), when a class has no sample in
        ``Y`` (its bias decreases without bound); the solver then returns an epsilon-optimal point far out (status
        optimal, value within its tolerance of the infimum) or fails with a message saying so.

    Warns
    -----
    NoMinimizerWarning
        Cross-entropy with a bias, ``gamma = 0`` and a class with no sample in ``Y``: no minimizer (above), as
        on the torch face.
    """
    t0 = time.perf_counter()
    layer, bias = check_layer(layer, "w_last"), check_flag(bias, "bias")
    solver, polish = check_solver(solver), check_flag(polish, "polish")
    if layer is not None:
        check_layer_anchor(layer, W0, b0, gamma, bias)
        X_in, _, W0 = _patch_form(layer, X_in, None, W0, b0 if bias else None)
        p = _layer_outputs(layer, p)
        if not layer.is_plain_dense:
            res = w_last(X_in, Y, loss=loss, rho=rho, gamma=gamma, W0=W0, b0=b0, bias=bias, p=p, solver=solver,
                         solver_opts=solver_opts, polish=polish)
            return _as_kernel(res, layer, t0)
    loss = get_loss(loss)
    rho, gamma = hyper(rho, "rho", nonneg=True), hyper(gamma, "gamma", nonneg=True)
    X_in, Y = _check_w_last(X_in, Y, loss, p, W0)
    W0, b0 = _check_anchor(W0, b0, gamma, bias, Y.shape[0], X_in.shape[0])
    model = cached_model(WLastModel, (Y.shape[0], X_in.shape[0]), X_in.shape[1], loss=loss, rho=rho, gamma=gamma,
                         bias=bool(bias))
    return _w_last_solve(model, t0, X_in, Y, W0, b0, solver, solver_opts, polish)


def _w_last_solve(model: WLastModel, t0: float, X_in: np.ndarray, Y: np.ndarray, W0: np.ndarray | None,
                  b0: np.ndarray | None, solver: str | None, solver_opts: dict | None,
                  polish: bool) -> SubproblemResult:
    loss, rho, gamma = model.loss, model.rho, model.gamma
    model._load(X_in, Y, W0, b0)
    warn_absent_classes(loss, model.bias, gamma, lambda: Y.sum(1))
    hint = "" if gamma > 0 or (rho > 0 and not model.bias) else _NO_MIN_HINT.format(
        why="cross-entropy on separable data or with a class absent from Y, or X_in without full row rank")
    report = model._run(solver, solver_opts, hint)
    W, b = model._collect()

    def objective(Wr, br):
        return w_last_objective(Wr, br, X_in, Y, loss=loss, rho=rho, gamma=gamma, W0=W0, b0=b0)

    def kkt(Wr, br):
        return w_last_residual(Wr, br, X_in, Y, loss=loss, rho=rho, gamma=gamma, W0=W0, b0=b0)

    def residual(Wr, br):
        return kkt(Wr, br).relative

    info = {}
    if polish and can_polish_loss(loss):
        W, b, info["polish"] = polish_w_full(W, b, X_in, Y, loss=loss, rho=rho, gamma=gamma, W0=W0, b0=b0,
                                             objective=objective, residual=residual)
    return finish("w_last", [report], t0, objective(W, b), kkt(W, b), model.qp, W=W, b=b, info=info)
