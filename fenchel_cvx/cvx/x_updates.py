r"""CVXPY reference models of the X-updates: eq. (14) (hidden layer) and eqs. (15)-(16) (last layer).

Side by side with :mod:`fenchel_cvx.torch.x_updates`: same names, same arguments, same first line of math.
Matrices are in the paper's layout ``(features, samples)``; ``W Z + b`` means ``W Z + b 1^T``.

Both problems separate over columns (data points); ``chunk`` solves column blocks as separate models (one
compiled model per block shape, re-solved with each block's data) and concatenates the answers.

Model (DPP, parameters only in constraints; see :mod:`fenchel_cvx.cvx._model`)::

    minimize    lam F*_act(T) + lam_prev F_prev(Z) + t + offset           (x_hidden)
                h(T)           + lam_prev F_prev(Z) + t + offset           (x_last; loss = h - c<Y,.> + kappa)
    subject to  T == W Z + b 1^T,   t == -<C, Z>,   Z in dom(act_prev)

with ``C = lam W^T X_next + lam_prev U_prev`` (hidden) or ``C = c W^T Y + lam_prev U_prev`` (last) and
``offset`` the constants, so that the optimal value is the full objective.

A convolution is a matrix: with ``layer=`` (a conv or pooled :class:`~fenchel_cvx.layers.Layer`) the same model
takes ``W`` as the explicit ``(n_out, n_in)`` matrix ``layer.matrix(W)`` of ``Z -> A(Z; W)`` and ``b`` as
``layer.bias_rows(b)`` (the channel bias repeated over positions): for small images (teaching, and refereeing
the torch face's operator solvers).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import cvxpy as cp
import numpy as np

from .._checks import as_array, check_finite, check_flag
from ..activations import Activation, get_activation
from ..errors import ShapeError, SolverError
from ..losses import Loss, get_loss
from ..optimality import x_hidden_objective, x_hidden_residual, x_last_objective, x_last_residual
from ..subproblems import SubproblemResult, check_layer, check_layer_shape
from ._model import CvxModel, as_matrix, as_vector, auto_budget, blocks, cached_model, finish, hyper, to_numpy
from ._polish import can_polish_loss, loss_hessian, polish_x
from ._solve import QP_ACTIVATIONS, SolveInfo, check_solver, default_solver

if TYPE_CHECKING:
    from ..layers import Layer

__all__ = ["XHiddenModel", "XLastModel", "build_x_hidden", "build_x_last", "x_hidden", "x_last"]

_LAYOUT = "(features, samples)"
# Entries of the batched (columns, p_l, p_l) Hessians one polishing block may hold (32 MB).
_POLISH_ENTRIES = 4_000_000


def _pre(W: np.ndarray, Z: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    U = W @ Z
    return U if b is None else U + b[:, None]


def _check_b(b: Any, p: int) -> np.ndarray | None:
    return None if b is None else as_vector(b, "b", p, "one bias per row of W")


def _layer_matrix(layer: Layer | None, W: Any, b: Any, **data: tuple[Any, str]) -> tuple[Any, Any]:
    """``(W, b)`` for the dense model: a layer's kernel and channel bias as its explicit matrix and row bias.

    ``data`` maps argument names to ``(array, "in" | "out")``: checked against the layer's flattened sizes
    first, so a wrong size is reported in the layer's terms, and their sample counts must agree (the first one's
    fixes it). ``None`` (no layer) returns ``(W, b)`` unchanged.
    """
    if layer is None:
        return W, b
    Wn = np.asarray(as_array(to_numpy(W), "W"), dtype=float)
    check_layer_shape(Wn, "W", layer, "weight")
    check_finite(Wn, "W")
    bn = None if b is None else np.asarray(as_array(to_numpy(b), "b"), dtype=float)
    if bn is not None:
        check_layer_shape(bn, "b", layer, "bias")
        check_finite(bn, "b")
    m, m_from = None, None  # the first data argument fixes the samples, in the layer's terms like the torch face
    for name, (x, side) in data.items():
        arr = np.asarray(as_array(to_numpy(x), name))
        check_layer_shape(arr, name, layer, side, m=m, m_from=m_from or name)
        if m is None and arr.ndim == 2:
            m, m_from = arr.shape[1], name
    if layer.is_plain_dense:
        return Wn, bn
    return layer.matrix(Wn), layer.bias_rows(bn)


class _XModel(CvxModel):
    """What both X-models share: variables Z, T, t; parameters W, b, C, offset; the domain of act_prev."""

    def _build(self, W_shape: tuple[int, int], m: int, act_prev: Activation, lam_prev: float, bias: bool,
               smooth: Any) -> None:
        p_out, p_in = (int(s) for s in W_shape)
        if p_out < 1 or p_in < 1 or m < 1:
            raise ShapeError(f"{self.subproblem}: expected positive sizes, got W_shape={tuple(W_shape)}, m={m}")
        self.W_shape, self.m, self.bias = (p_out, p_in), int(m), bool(bias)
        W = cp.Parameter((p_out, p_in), name="W")
        C = cp.Parameter(p_in * m, name="C")
        offset = cp.Parameter(name="offset")
        Z = cp.Variable((p_in, m), name="Z")
        T = cp.Variable((p_out, m), name="T")
        t = cp.Variable(name="t")
        params = {"W": W}
        pre = W @ Z
        if bias:
            params["b"] = cp.Parameter(p_out, name="b")
            pre = pre + params["b"][:, None]
        params.update(C=C, offset=offset)
        constraints = [T == pre, t == -(C @ cp.vec(Z, order="F"))] + act_prev.cvx_domain(Z)  # noqa: SIM300
        objective = smooth(T) + lam_prev * act_prev.cvx_F(Z) + t + offset
        self.problem = cp.Problem(cp.Minimize(objective), constraints)
        self.params = params
        self.vars = {"Z": Z, "T": T, "t": t}
        self._domain_constraints = constraints[2:]

    def _set(self, W: np.ndarray, b: np.ndarray | None, C: np.ndarray, offset: float) -> None:
        self.params["W"].value = W
        if self.bias:
            self.params["b"].value = np.zeros(W.shape[0]) if b is None else b
        elif b is not None:
            raise ShapeError(f"b: this {self.subproblem} model was built with bias=False, got a bias of shape "
                             f"{b.shape}; build it with bias=True or pass b=None")
        self.params["C"].value = C.reshape(-1, order="F")
        self.params["offset"].value = offset

    def _check_shape(self, W: np.ndarray, m: int) -> None:
        if W.shape != self.W_shape or m != self.m:
            raise ShapeError(f"{self.subproblem}: this model was built for W of shape {self.W_shape} and "
                             f"m = {self.m} columns, got W {W.shape} and m = {m}; build another model "
                             f"(build_{self.subproblem}) or call {self.subproblem}() which does it for you")

    def _collect(self, act_prev: Activation) -> tuple[np.ndarray, float, dict[str, np.ndarray]]:
        """Z clipped onto dom(act_prev) (solvers stop ~1e-9 outside), the clip size, and the domain duals."""
        Z = np.asarray(self.vars["Z"].value, dtype=float)
        lo, hi = act_prev.domain
        Zc = np.clip(Z, lo, hi)
        duals = {}
        names = [n for n, bound in (("lower", lo), ("upper", hi)) if np.isfinite(bound)]
        for name, con in zip(names, self._domain_constraints, strict=True):
            if con.dual_value is not None:
                duals[name] = np.asarray(con.dual_value, dtype=float)
        return Zc, float(np.max(np.abs(Zc - Z), initial=0.0)), duals


def _solve_columns(model_for: Any, load: Any, m: int, nnz_per_col: int, chunk: Any, solver: str | None,
                   solver_opts: dict | None, act_prev: Activation, default: str = "CLARABEL"
                   ) -> tuple[np.ndarray, list[SolveInfo], float, dict[str, np.ndarray]]:
    """Solve column blocks one model at a time; return Z, the solver reports, the clip and the duals.

    With the default solver (``solver=None``), a block it fails on is solved again one column at a time before
    the failure is reported: Clarabel fails on some blocks whose columns it solves one by one (cross-entropy
    with a leaky-ReLU ``act_prev``). A solver the caller names fails as it fails.
    """
    budget = auto_budget(solver or default)
    parts, infos, clip, duals = [], [], 0.0, {}

    def solve(cols: slice) -> None:
        nonlocal clip
        model = model_for(cols.stop - cols.start)
        load(model, cols)
        infos.append(model._run(solver, solver_opts))
        Z, c, d = model._collect(act_prev)
        parts.append(Z)
        clip = max(clip, c)
        for k, v in d.items():
            duals.setdefault(k, []).append(v)

    for cols in blocks(m, chunk, nnz_per_col, budget=budget):
        try:
            solve(cols)
        except SolverError:
            if solver is not None or cols.stop - cols.start == 1:
                raise
            for j in range(cols.start, cols.stop):
                solve(slice(j, j + 1))
    # a dual is reported only when every block has it (SCS, say, may leave some out)
    return (np.concatenate(parts, axis=1), infos, clip,
            {k: np.concatenate(v, axis=1) for k, v in duals.items() if len(v) == len(parts)})


def _polish_columns(Z: np.ndarray, W: np.ndarray, b: np.ndarray | None, U_prev: np.ndarray,
                    act_prev: Activation, lam_prev: float, closures: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Newton-polish Z block by block; ``closures(cols)`` gives (grad_hess_T, col_objective, residual)."""
    p_out, p_in = W.shape
    out, reports = Z.copy(), []
    for cols in blocks(Z.shape[1], max(1, _POLISH_ENTRIES // (p_in * (p_in + p_out))), 1):
        gh, obj, res = closures(cols)
        out[:, cols], rep = polish_x(Z[:, cols], W, b, U_prev[:, cols], act_prev=act_prev, lam_prev=lam_prev,
                                     grad_hess_T=gh, col_objective=obj, residual=res)
        reports.append(rep)
    return out, {"accepted": any(r["accepted"] for r in reports), "steps": max(r["steps"] for r in reports),
                 "blocks": len(reports)}


# --------------------------------------------------------------------------------------------------- x_hidden
def _check_x_hidden(W: Any, b: Any, X_next: Any, U_prev: Any, act: Activation
                    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    W = as_matrix(W, "W", (None, None), "(p_{l+1}, p_l)")
    p_out, p_in = W.shape
    b = _check_b(b, p_out)
    X_next = as_matrix(X_next, "X_next", (p_out, None), f"{_LAYOUT}, rows = W.shape[0]")
    U_prev = as_matrix(U_prev, "U_prev", (p_in, X_next.shape[1]),
                       f"{_LAYOUT}, rows = W.shape[1], columns = X_next.shape[1]")
    act.check_domain(X_next, "X_next")
    return W, b, X_next, U_prev


class XHiddenModel(_XModel):
    """The compiled CVXPY model of eq. (14) for fixed sizes and hyperparameters; re-solve it with new data.

    Parameters ``W`` (p_{l+1}, p_l), ``b`` (p_{l+1},) when ``bias``, ``C`` (p_l m,) = vec(lam W^T X_next +
    lam_prev U_prev), ``offset`` (); variables ``Z`` (p_l, m), ``T`` = W Z + b 1^T, ``t`` = -<C, Z>.
    Build it with :func:`build_x_hidden`.
    """

    subproblem = "x_hidden"

    def __init__(self, W_shape: tuple[int, int], m: int, *, act: str | Activation, act_prev: str | Activation,
                 lam: float, lam_prev: float, bias: bool = True):
        self.act, self.act_prev = get_activation(act), get_activation(act_prev)
        self.lam = hyper(lam, "lam", positive=True)
        self.lam_prev = hyper(lam_prev, "lam_prev", positive=True)
        self._build(W_shape, m, self.act_prev, self.lam_prev, bias,
                    lambda T: self.lam * self.act.cvx_F_conj(T))
        self.default_solver = default_solver([self.act, self.act_prev])
        self.qp = {self.act.name, self.act_prev.name} <= QP_ACTIVATIONS

    def load(self, W: Any, b: Any, X_next: Any, U_prev: Any) -> None:
        """Check the data (shapes, finiteness, ``X_next`` in dom(act)) and put them into the parameters.

        ``b=None`` on a model built with ``bias=True`` loads a zero bias.
        """
        W, b, X_next, U_prev = _check_x_hidden(W, b, X_next, U_prev, self.act)
        self._check_shape(W, X_next.shape[1])
        self._load(W, b, X_next, U_prev)

    def _load(self, W: np.ndarray, b: np.ndarray | None, X_next: np.ndarray, U_prev: np.ndarray) -> None:
        lam, lam_prev = self.lam, self.lam_prev
        C = lam * (W.T @ X_next) + lam_prev * U_prev
        offset = lam * float(np.sum(self.act.F(X_next))) + lam_prev * float(np.sum(self.act_prev.F_conj(U_prev)))
        if b is not None:
            offset -= lam * float(b @ X_next.sum(axis=1))
        self._set(W, b, C, offset)

    def solve(self, W: Any, b: Any, X_next: Any, U_prev: Any, *, solver: str | None = None,
              solver_opts: dict | None = None, polish: bool = True) -> SubproblemResult:
        """Load the data, solve, and return the same result as :func:`x_hidden` (without chunking)."""
        t0 = time.perf_counter()
        solver, polish = check_solver(solver), check_flag(polish, "polish")
        W, b, X_next, U_prev = _check_x_hidden(W, b, X_next, U_prev, self.act)
        self._check_shape(W, X_next.shape[1])
        Z, infos, clip, duals = _solve_columns(
            lambda n: self, lambda model, cols: model._load(W, b, X_next, U_prev), X_next.shape[1], None,
            None, solver, solver_opts, self.act_prev)
        return _x_hidden_result(Z, infos, clip, duals, t0, W, b, X_next, U_prev, self.act, self.act_prev,
                                self.lam, self.lam_prev, polish, self.qp)


def build_x_hidden(W_shape: tuple[int, int], m: int, *, act: str | Activation, act_prev: str | Activation,
                   lam: float, lam_prev: float, bias: bool = True) -> XHiddenModel:
    """Build the DPP model of eq. (14) for ``W`` of shape ``W_shape`` and ``m`` data points.

    Parameters
    ----------
    W_shape : (int, int)
        ``(p_{l+1}, p_l)``.
    m : int
        Number of data points (columns).
    act, act_prev : str or Activation
        Activations of layers ``l+1`` (applied to ``W Z + b``) and ``l`` (its domain constrains ``Z``).
    lam, lam_prev : float
        Lagrange multipliers ``lam_l > 0`` and ``lam_{l-1} > 0``.
    bias : bool
        Whether the model has a ``b`` parameter.

    Returns
    -------
    XHiddenModel
        ``.problem``, ``.params``, ``.vars``; ``.solve(W, b, X_next, U_prev)`` re-solves with new data.
    """
    return XHiddenModel(W_shape, m, act=act, act_prev=act_prev, lam=lam, lam_prev=lam_prev, bias=bias)


def x_hidden(W: Any, b: Any, X_next: Any, U_prev: Any, *, act: str | Activation, act_prev: str | Activation,
             lam: float, lam_prev: float, solver: str | None = None, solver_opts: dict | None = None,
             chunk: int | str | None = "auto", polish: bool = True, layer: Layer | None = None) -> SubproblemResult:
    r"""Eq. (14): minimize over Z  lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev),  Z in dom(act_prev).

    The hidden-layer X-update with per-layer multipliers as in eq. (7): ``W = W_l``, ``b = b_l``,
    ``X_next = X_{l+1}``, ``U_prev = W_{l-1} X_{l-1} + b_{l-1}``, ``act = acts[l]``, ``act_prev = acts[l-1]``.
    Layout: paper's ``(features, samples)``.

    Parameters
    ----------
    W : array, shape (p_{l+1}, p_l)
    b : array, shape (p_{l+1},), or None (no bias)
    X_next : array, shape (p_{l+1}, m)
        Must lie in dom(act) (e.g. ``>= 0`` for ReLU, ``[0, 1]`` for sigmoid).
    U_prev : array, shape (p_l, m)
    act, act_prev : str or Activation
    lam, lam_prev : float
        ``> 0``.
    solver : str, optional
        CVXPY solver; default OSQP when both activations are ReLU/leaky ReLU, else Clarabel.
    solver_opts : dict, optional
        Solver settings on top of the tight defaults (see :mod:`fenchel_cvx.cvx._solve`).
    chunk : int, "auto" or None
        Columns per separately solved block; ``"auto"`` keeps each model near 2e5 nonzeros for OSQP (whose
        ADMM converges faster on small blocks) and 1e6 for the others; ``None`` solves one model.
    polish : bool
        Refine the solver's point with safeguarded Newton steps, kept only if they lower the optimality
        residual (see :mod:`fenchel_cvx.cvx._polish`); a no-op on OSQP's polished QP answers.
    layer : Layer, optional
        ``W Z + b`` as ``A(Z; W) + b`` (:mod:`fenchel_cvx.layers`): ``W`` shape ``layer.weight_shape`` (a conv
        kernel ``(C_out, C_in, k, k)``), ``b`` ``layer.bias_shape``, ``X_next`` ``(layer.n_out, m)``, ``U_prev``
        ``(layer.n_in, m)``; the model holds ``layer.matrix(W)``, so keep images small. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``Z`` (p_l, m) clipped onto dom(act_prev); ``value`` recomputed numerically
        (:func:`fenchel_cvx.optimality.x_hidden_objective`); ``status`` ``"optimal"`` (also when the solver said
        ``optimal_inaccurate`` but the residual is certified below 1e-9; ``info["solver_status"]`` keeps its
        word) and ``converged`` (status ``"optimal"``); ``residual`` (m,), the optimality residual per column
        relative to the problem's scale (:mod:`fenchel_cvx.optimality`, the same measure as the torch face),
        and ``max_residual``; ``iterations`` (the most any chunk took); ``backend="cvx"``; ``info`` holds
        ``solver_status``, ``solver_value``, ``value_gap``, ``kkt_residual`` (the Frobenius relative residual),
        ``polish``, ``duals`` of the domain constraints (before polishing), ``domain_clip``, chunk statuses,
        iterations and times.

    Raises
    ------
    ShapeError, DomainError, ValueRangeError
        Bad shapes (a kernel or data that do not fit ``layer``), non-finite data, ``X_next`` outside dom(act),
        ``lam <= 0``.
    ChoiceError
        A ``layer`` that is not a :class:`~fenchel_cvx.layers.Layer`.
    SolverError
        A status other than optimal.
    """
    t0 = time.perf_counter()
    solver, polish = check_solver(solver), check_flag(polish, "polish")
    act, act_prev = get_activation(act), get_activation(act_prev)
    lam, lam_prev = hyper(lam, "lam", positive=True), hyper(lam_prev, "lam_prev", positive=True)
    W, b = _layer_matrix(check_layer(layer), W, b, X_next=(X_next, "out"), U_prev=(U_prev, "in"))
    W, b, X_next, U_prev = _check_x_hidden(W, b, X_next, U_prev, act)
    p_out, p_in = W.shape

    def model_for(n: int) -> XHiddenModel:
        return cached_model(XHiddenModel, (p_out, p_in), n, act=act, act_prev=act_prev, lam=lam,
                            lam_prev=lam_prev, bias=b is not None)

    def load(model: XHiddenModel, cols: slice) -> None:
        model._load(W, b, X_next[:, cols], U_prev[:, cols])

    Z, infos, clip, duals = _solve_columns(model_for, load, X_next.shape[1], p_out * (p_in + 1), chunk,
                                           solver, solver_opts, act_prev, default_solver([act, act_prev]))
    qp = {act.name, act_prev.name} <= QP_ACTIVATIONS
    return _x_hidden_result(Z, infos, clip, duals, t0, W, b, X_next, U_prev, act, act_prev, lam, lam_prev,
                            polish, qp)


def _x_hidden_result(Z, infos, clip, duals, t0, W, b, X_next, U_prev, act, act_prev, lam, lam_prev, polish, qp):
    def kkt(Zc, cols=slice(None)):
        return x_hidden_residual(Zc, W, b, X_next[:, cols], U_prev[:, cols], act=act, act_prev=act_prev, lam=lam,
                                 lam_prev=lam_prev)

    def residual(Zc, cols=slice(None)):
        return kkt(Zc, cols).relative

    def closures(cols):
        Xn, U = X_next[:, cols], U_prev[:, cols]

        def grad_hess_T(T):
            return lam * (act.forward(T) - Xn), ("diag", lam * act.derivative(T))

        def col_objective(Zc):
            return lam * act.B(Xn, _pre(W, Zc, b)).sum(0) + lam_prev * act_prev.B(Zc, U).sum(0)

        return grad_hess_T, col_objective, lambda Zc: residual(Zc, cols)

    info = {"domain_clip": clip, "duals": duals}
    if polish:
        Z, info["polish"] = _polish_columns(Z, W, b, U_prev, act_prev, lam_prev, closures)
    value = x_hidden_objective(Z, W, b, X_next, U_prev, act=act, act_prev=act_prev, lam=lam, lam_prev=lam_prev)
    return finish("x_hidden", infos, t0, value, kkt(Z), qp, Z=Z, info=info)


# ----------------------------------------------------------------------------------------------------- x_last
def _check_x_last(W: Any, b: Any, Y: Any, U_prev: Any, loss: Loss
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    W = as_matrix(W, "W", (None, None), "(p, p_L)")
    p, p_in = W.shape
    b = _check_b(b, p)
    U_prev = as_matrix(U_prev, "U_prev", (p_in, None), f"{_LAYOUT}, rows = W.shape[1]")
    Y = np.asarray(loss.targets(np.asarray(to_numpy(Y)), p), dtype=float)
    if Y.shape[1] != U_prev.shape[1]:
        raise ShapeError(f"Y: expected {U_prev.shape[1]} samples (columns of U_prev), got Y of shape "
                         f"{Y.shape} as (p, m) targets")
    return W, b, Y, U_prev


class XLastModel(_XModel):
    """The compiled CVXPY model of eqs. (15)-(16) for fixed sizes and hyperparameters.

    Parameters ``W`` (p, p_L), ``b`` (p,) when ``bias``, ``C`` (p_L m,) = vec(c W^T Y + lam_prev U_prev),
    ``offset`` (); variables ``Z`` (p_L, m), ``T`` = W Z + b 1^T, ``t`` = -<C, Z>.
    Build it with :func:`build_x_last`.
    """

    subproblem = "x_last"

    def __init__(self, W_shape: tuple[int, int], m: int, *, loss: str | Loss, act_prev: str | Activation,
                 lam_prev: float, bias: bool = True):
        self.loss, self.act_prev = get_loss(loss), get_activation(act_prev)
        self.lam_prev = hyper(lam_prev, "lam_prev", positive=True)
        self._build(W_shape, m, self.act_prev, self.lam_prev, bias, self.loss.cvx_h)
        self.default_solver = default_solver([self.act_prev], self.loss)
        self.qp = self.act_prev.name in QP_ACTIVATIONS and self.loss.name == "mse"

    def load(self, W: Any, b: Any, Y: Any, U_prev: Any) -> None:
        """Check the data (shapes, finiteness, labels) and put them into the parameters."""
        W, b, Y, U_prev = _check_x_last(W, b, Y, U_prev, self.loss)
        self._check_shape(W, Y.shape[1])
        self._load(W, b, Y, U_prev)

    def _load(self, W: np.ndarray, b: np.ndarray | None, Y: np.ndarray, U_prev: np.ndarray) -> None:
        c = self.loss.linear_weight
        C = c * (W.T @ Y) + self.lam_prev * U_prev
        offset = float(self.loss.kappa(Y)) + self.lam_prev * float(np.sum(self.act_prev.F_conj(U_prev)))
        if b is not None:
            offset -= c * float(b @ Y.sum(axis=1))
        self._set(W, b, C, offset)

    def solve(self, W: Any, b: Any, Y: Any, U_prev: Any, *, solver: str | None = None,
              solver_opts: dict | None = None, polish: bool = True) -> SubproblemResult:
        """Load the data, solve, and return the same result as :func:`x_last` (without chunking)."""
        t0 = time.perf_counter()
        solver, polish = check_solver(solver), check_flag(polish, "polish")
        W, b, Y, U_prev = _check_x_last(W, b, Y, U_prev, self.loss)
        self._check_shape(W, Y.shape[1])
        Z, infos, clip, duals = _solve_columns(
            lambda n: self, lambda model, cols: model._load(W, b, Y, U_prev), Y.shape[1], None, None,
            solver, solver_opts, self.act_prev)
        return _x_last_result(Z, infos, clip, duals, t0, W, b, Y, U_prev, self.loss, self.act_prev,
                              self.lam_prev, polish, self.qp)


def build_x_last(W_shape: tuple[int, int], m: int, *, loss: str | Loss, act_prev: str | Activation,
                 lam_prev: float, bias: bool = True) -> XLastModel:
    """Build the DPP model of eqs. (15)-(16) for ``W`` of shape ``W_shape`` and ``m`` data points.

    Parameters
    ----------
    W_shape : (int, int)
        ``(p, p_L)``: outputs x last hidden width.
    m : int
        Number of data points.
    loss : str or Loss
        ``"mse"`` or ``"ce"``.
    act_prev : str or Activation
        Activation of layer ``L`` (its domain constrains ``Z``).
    lam_prev : float
        ``lam_{L-1} > 0``.
    bias : bool
        Whether the model has a ``b`` parameter.

    Returns
    -------
    XLastModel
    """
    return XLastModel(W_shape, m, loss=loss, act_prev=act_prev, lam_prev=lam_prev, bias=bias)


def x_last(W: Any, b: Any, Y: Any, U_prev: Any, *, loss: str | Loss, act_prev: str | Activation, lam_prev: float,
           solver: str | None = None, solver_opts: dict | None = None,
           chunk: int | str | None = "auto", polish: bool = True, layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (15)-(16): minimize over Z  loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev),  Z in dom(act_prev).

    The last-layer X-update: ``W = W_L``, ``b = b_L``, ``U_prev = W_{L-1} X_{L-1} + b_{L-1}``. With MSE and a
    ReLU this is the non-negative least-squares problem after eq. (15); with cross-entropy it is eq. (16).
    Layout: paper's ``(features, samples)``.

    Parameters
    ----------
    W : array, shape (p, p_L)
    b : array, shape (p,), or None
    Y : array, shape (p, m), or int labels (m,)
        Targets; cross-entropy needs probability (e.g. one-hot) columns.
    U_prev : array, shape (p_L, m)
    loss : str or Loss
    act_prev : str or Activation
    lam_prev : float
        ``> 0``.
    solver, solver_opts, chunk, polish
        As in :func:`x_hidden` (default solver OSQP for MSE with ReLU/leaky ReLU, else Clarabel).
    layer : Layer, optional
        The output layer, dense after average pooling (e.g. ``a2f10``): ``W`` shape ``layer.weight_shape``,
        ``U_prev`` ``(layer.n_in, m)``; the model holds ``layer.matrix(W)``. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``Z`` (p_L, m); ``value = loss + lam_prev B`` recomputed numerically; ``residual`` (m,) and the rest
        as in :func:`x_hidden`.

    Raises
    ------
    ShapeError, DomainError, ValueRangeError, LabelError
        Bad shapes, non-finite data, ``lam_prev <= 0``, labels out of range or non-probability columns.
    ChoiceError
        A ``layer`` that is not a :class:`~fenchel_cvx.layers.Layer`, or a convolution (the output layer is dense).
    SolverError
        A status other than optimal.
    """
    t0 = time.perf_counter()
    solver, polish = check_solver(solver), check_flag(polish, "polish")
    loss, act_prev = get_loss(loss), get_activation(act_prev)
    lam_prev = hyper(lam_prev, "lam_prev", positive=True)
    W, b = _layer_matrix(check_layer(layer, "x_last"), W, b, U_prev=(U_prev, "in"))
    W, b, Y, U_prev = _check_x_last(W, b, Y, U_prev, loss)
    p, p_in = W.shape

    def model_for(n: int) -> XLastModel:
        return cached_model(XLastModel, (p, p_in), n, loss=loss, act_prev=act_prev, lam_prev=lam_prev,
                            bias=b is not None)

    def load(model: XLastModel, cols: slice) -> None:
        model._load(W, b, Y[:, cols], U_prev[:, cols])

    Z, infos, clip, duals = _solve_columns(model_for, load, Y.shape[1], p * (p_in + 1), chunk, solver,
                                           solver_opts, act_prev, default_solver([act_prev], loss))
    qp = act_prev.name in QP_ACTIVATIONS and loss.name == "mse"
    return _x_last_result(Z, infos, clip, duals, t0, W, b, Y, U_prev, loss, act_prev, lam_prev, polish, qp)


def _x_last_result(Z, infos, clip, duals, t0, W, b, Y, U_prev, loss, act_prev, lam_prev, polish, qp):
    def kkt(Zc, cols=slice(None)):
        return x_last_residual(Zc, W, b, Y[:, cols], U_prev[:, cols], loss=loss, act_prev=act_prev,
                               lam_prev=lam_prev)

    def residual(Zc, cols=slice(None)):
        return kkt(Zc, cols).relative

    def closures(cols):
        Yc, U = Y[:, cols], U_prev[:, cols]

        def grad_hess_T(T):
            return loss.grad(Yc, T), loss_hessian(loss, T)

        def col_objective(Zc):
            return loss.per_sample(Yc, _pre(W, Zc, b)) + lam_prev * act_prev.B(Zc, U).sum(0)

        return grad_hess_T, col_objective, lambda Zc: residual(Zc, cols)

    info = {"domain_clip": clip, "duals": duals}
    if polish and can_polish_loss(loss):
        Z, info["polish"] = _polish_columns(Z, W, b, U_prev, act_prev, lam_prev, closures)
    value = x_last_objective(Z, W, b, Y, U_prev, loss=loss, act_prev=act_prev, lam_prev=lam_prev)
    return finish("x_last", infos, t0, value, kkt(Z), qp, Z=Z, info=info)
