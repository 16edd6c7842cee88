r"""Batched torch solvers of the W-updates: eqs. (17)/(19) (hidden layer) and (18)/(20) (last layer).

Side by side with :mod:`fenchel_cvx.cvx.w_updates`: same names, same arguments, same first line of math, plus
``tol``, ``max_iter``, the warm start ``W_init`` / ``b_init``, ``warn`` and the ``method`` with its settings.
Matrices are in the paper's layout ``(features, samples)``; ``W X_in + b`` means ``W X_in + b 1^T``; the bias
is not penalized by ``rho``; with ``bias=False`` the bias is fixed at 0 and ``result.b`` is ``None``.

Tensors in, tensors out: every tensor must be float32 or float64 with the dtype and device of ``X_in``, and
``W``, ``b`` and ``residual`` come back in that dtype on that device. The arithmetic inside is float64 whatever
the input dtype (the row Hessians reach condition numbers near 1e7, about ``1/eps`` of float32), so a float32
call returns the float64 answer rounded to float32.

==========  =========================================================  ==========================================
method      algorithm                                                  stopping test (``info["certificate"]``)
==========  =========================================================  ==========================================
``newton``  w_hidden: batched semismooth Newton over the rows of W,    per row: ``||grad f_r|| / (sum of the
(default)   exact line search, converged rows frozen. w_last: MSE      norms of the gradient's terms)`` ``<= tol``
            ridge closed form (float64 Cholesky); cross-entropy        (w_last: the same ratio for the whole W,
            Newton with the exact Hessian, or Newton-CG when large     one entry)
``mm``      majorization-minimization, one shared curvature bound      the same as above
            ``M`` (one Cholesky per call), a GEMM per step, monotone
``running`` ``max_iter`` MM steps with a running estimate of ``M``     none: ``status="unchecked"``
            (:mod:`~fenchel_cvx.torch.curvature`), no certificate
==========  =========================================================  ==========================================

Every certified result reports ``residual``, the optimality residual of :mod:`fenchel_cvx.optimality` per row
of ``[W, b]``, built from the gradient the solver holds at the returned point (no extra GEMM).

Inexact updates (the paper's CIFAR-10 experiment takes one gradient step on (19)-(20), Sec. 5.3):
``max_iter=k, warn=False`` takes at most ``k`` warm-started steps from ``W_init`` and returns
``converged=False`` (unless ``tol`` was reached) without a warning. ``method="mm"`` suits this best: an MM step
never increases the objective and costs a few GEMMs and one ``p_a x p_a`` Cholesky, where a semismooth Newton
step factors one ``p_a x p_a`` Hessian per row. The MSE ``w_last`` is a closed form either way.

``method="running"`` (inexact BCD at about a backprop step's cost). The MM step minimizes a quadratic upper
bound of the W-update,

.. math::  Z \leftarrow Z - G M^{-1}, \qquad M = s\, X_a X_a^\top + \operatorname{diag}(\mu),

with ``G`` the gradient at ``Z = [W, b]``, ``X_a = [X_in; 1^T]`` and ``s`` a bound on the curvature of the data
term (``lam sup phi'`` for eq. 19, ``1/2`` for cross-entropy (Boehning), ``2`` for MSE). On a batch of ``m``
samples that costs a ``p_a x p_a`` Gram matrix and its factorization every batch, several times the arithmetic
of a backprop step on a wide input layer. Consecutive batches of one layer have nearly the same second moment
``X_a X_a^T / m``, so :class:`~fenchel_cvx.torch.curvature.RunningCurvature` keeps a running mean ``S`` of it,
refreshed from the batch at hand every ``every`` batches, and the running steps use
``\hat M = s m S + diag(mu)`` in place of ``M``, replaced by its rank-``k`` approximation *from above* (the top
``k`` eigenpairs and the ``(k+1)``-th eigenvalue ``sigma`` for the rest, ``\tilde M \succeq \hat M``), so
applying ``\tilde M^{-1}`` costs ``4 r p_a k`` flops. A step is one gradient -- one GEMM with ``X_a^T``, given
``U = W X_in + b`` from the feed-forward -- and one cheap preconditioning. The caller owns the estimate and
calls ``curvature.observe(X_in)`` once per batch before the step. ``curvature`` may instead be an
:class:`~fenchel_cvx.torch.curvature.AdamCurvature`: the step is then one Adam step on the block's gradient
(``D = lr m_hat / (sqrt(v_hat) + eps)`` from moments the object carries between calls), the paper's CIFAR-10 W-update.

What is given up: ``\hat M`` bounds the batch's curvature only on average, so a step is not guaranteed to
decrease its block objective, and no certificate is computed (``value``, ``residual`` NaN, status
``"unchecked"``; ``benchmarks/bench_inexact.py --descent N`` counts the steps that raised their block objective
in training). ``line_search=True`` buys the guarantee back for one more GEMM: each row of ``w_hidden`` takes the
exact minimizer of its objective along the step, ``w_last`` halves the step until the objective does not
increase. With a curvature refreshed from the same batch at full rank the step *is* the ``"mm"`` step (the exact
solution for the MSE ``w_last``), and iterated on one batch it converges to the W-update's argmin (both tested).
In a data-parallel run every part is a sum over samples (``X_a X_a^T`` and the gradient), so each process adds
its shard's contribution before the (replicated) factorization and preconditioning.

**Layers** (``layer=``, a convolution or a layer after average pooling, :mod:`fenchel_cvx.layers`). A
convolution is linear in its kernel: ``A(X_in; W) = W_mat @ layer.patches(X_in)``, arranged by
``layer.arrange``, with ``W_mat = layer.weight_matrix(W)`` the ``(C_out, C_in k^2)`` kernel matrix. So the conv
W-update *is* the dense one above on ``X_in -> layer.patches(X_in)`` (one column per sample and output
position), ``X_next -> layer.arrange(X_next)`` (and ``U``), ``W0``, ``W_init -> layer.weight_matrix``: the same
methods, certificates and residuals, one row per output channel, the bias shared across positions; ``W`` comes
back in the kernel's shape. A pooled dense layer (``w_last``'s ``a2f10``) is the dense update on the pooled
input. For ``method="running"`` the curvature lives on the patches as well: build it with
``hidden_curvature(layer.patch_size, ...)`` (``last_curvature``) and feed it
``curvature.observe(layer.patches(X_in))`` once per batch (a plain dense layer: ``patch_size == p_in``, and
``patches(X_in)`` is ``X_in``).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import torch

from .._checks import check_choice, check_flag, check_int, check_scalar
from ..activations import Activation, get_activation
from ..errors import NotConvergedWarning, ShapeError, SolverError, TensorMismatchError, ValueRangeError
from ..losses import CrossEntropyLoss, Loss, MSELoss, get_loss
from ..optimality import gradient_residual
from ..shards import all_sum, all_sum_float
from ..subproblems import SubproblemResult, check_layer, check_layer_anchor, check_layer_shape, warn_absent_classes
from ._common import check_max_iter, check_step_dtype, check_tensor, check_tol, solver_errors
from ._wsolvers import (
    SolveOutput,
    ce_mm,
    ce_newton,
    mm_rows,
    newton_rows,
    penalty,
    quadratic,
    ridge,
    running_hidden_step,
    running_last_step,
    running_layer_step,
)
from .curvature import AdamCurvature, RunningCurvature

if TYPE_CHECKING:
    from ..layers import Layer

__all__ = ["w_hidden", "w_last"]

_LAYOUT = "(features, samples)"
_F64 = torch.float64
_HIDDEN_METHODS = ("auto", "newton", "mm", "running")
_LAST_METHODS = ("auto", "newton", "newton_cg", "mm", "running")


# -- argument checks shared by both updates -------------------------------------------------------------------
def _check_anchor(W0: Any, b0: Any, gamma: float, bias: bool, p_out: int, p_in: int, ref: torch.Tensor
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The previous-batch weights of eqs. (19)-(20): required when gamma > 0 (b0 too when there is a bias)."""
    if gamma > 0 and W0 is None:
        raise ShapeError(f"W0: required when gamma > 0 (got gamma={gamma}), expected the previous batch's W of "
                         f"shape ({p_out}, {p_in}); pass W0= or set gamma=0")
    if gamma > 0 and bias and b0 is None:
        raise ShapeError(f"b0: required when gamma > 0 and bias=True, expected the previous batch's b of shape "
                         f"({p_out},); pass b0= or bias=False")
    if W0 is not None:
        check_tensor(W0, "W0", ref=ref, shape=(p_out, p_in), layout="(p_out, p_in), the shape of W")
    if b0 is not None and bias:
        check_tensor(b0, "b0", ref=ref, shape=(p_out,), layout="(one entry per row of W)")
    return W0, (b0 if bias else None)


def _check_init(W_init: Any, b_init: Any, bias: bool, p_out: int, p_in: int, ref: torch.Tensor) -> None:
    if W_init is not None:
        check_tensor(W_init, "W_init", ref=ref, shape=(p_out, p_in), layout="(p_out, p_in), the shape of W")
    if b_init is not None and bias:
        check_tensor(b_init, "b_init", ref=ref, shape=(p_out,), layout="(one entry per row of W)")


def _check_samples(X_in: torch.Tensor, p_out: int, out_name: str) -> None:
    """A W-update needs data: at least one sample (column of ``X_in``) and one output row."""
    if X_in.shape[1] < 1:
        raise ShapeError(f"X_in: expected at least one data point (column), got shape {tuple(X_in.shape)}")
    if p_out < 1:
        raise ShapeError(f"{out_name}: expected at least one row (output unit), got none")


def _augment(X_in: torch.Tensor, bias: bool) -> torch.Tensor:
    """``[X_in; 1^T]`` (or ``X_in``) in float64: the bias is the last coordinate of every row."""
    X = X_in.to(_F64)
    return torch.cat([X, X.new_ones(1, X.shape[1])]) if bias else X.clone(memory_format=torch.contiguous_format)


def _start(W_init: Any, b_init: Any, Z0: torch.Tensor | None, bias: bool, p_out: int, p_in: int,
           ref: torch.Tensor) -> torch.Tensor:
    """The augmented starting rows: ``[W_init, b_init]``, else the anchor ``[W0, b0]`` (gamma > 0), else 0."""
    Z = Z0.clone() if Z0 is not None else torch.zeros(p_out, p_in + int(bias), dtype=_F64, device=ref.device)
    if W_init is not None:
        Z[:, :p_in] = W_init.to(_F64)
    if b_init is not None and bias:
        Z[:, p_in] = b_init.to(_F64)
    return Z


def _result(subproblem: str, out: SolveOutput, p_in: int, bias: bool, dtype: torch.dtype, value_fn: Any,
            solver: str, t0: float, tol: float, max_iter: int, warn: bool, unit: str, reg: dict) -> SubproblemResult:
    """Cast back to the input dtype, evaluate the objective there, warn if not converged, build the result.

    ``residual`` is :func:`fenchel_cvx.optimality.gradient_residual` from the gradient pieces the solver holds
    at the returned point; the solver's own certificate (what ``tol`` is tested against) goes to
    ``info["certificate"]``.
    """
    W64 = out.Z[:, :p_in]
    b64 = out.Z[:, p_in] if bias else None
    W = W64.to(dtype).contiguous()
    b = b64.to(dtype).contiguous() if bias else None
    # the value at the point we return (after rounding to the input dtype), in float64
    value = value_fn(W.to(_F64), None if b is None else b.to(_F64))
    if not math.isfinite(value):
        raise SolverError(f"{subproblem}: the objective at the returned point is {value}; the inputs are probably "
                          "too large for the dtype (try float64 or rescale X_in)", status="numerical_error",
                          subproblem=subproblem, solver=solver)
    data = (math.sqrt(float(out.fit_sq.sum())), math.sqrt(float(out.target_sq.sum())))
    kkt = gradient_residual(out.grad_sq, data, W64, b64, **reg).per_item_relative
    certificate = out.residual.to(dtype)
    max_cert = float(out.residual.max()) if out.residual.numel() else 0.0
    converged = bool(max_cert <= tol)
    if not converged and warn:
        n_bad = int((out.residual > tol).sum())
        warnings.warn(f"{subproblem}: stopped at max_iter={max_iter} with certificate {max_cert:.3g} > tol={tol:g} "
                      f"({n_bad} of {out.residual.numel()} {unit} above tol); raise max_iter, warm-start with "
                      "W_init/b_init, loosen tol, or pass warn=False for a deliberately inexact update",
                      NotConvergedWarning, stacklevel=3)
    info = dict(out.info)
    info.update(certificate=certificate, gap=out.gap, gap_bound=float(out.gap.sum()),
                row_iterations=out.row_iterations, history=out.history)
    return SubproblemResult(subproblem=subproblem, value=float(value), status="optimal" if converged else "max_iter",
                            converged=converged, backend="torch", solver=solver, solve_time=time.perf_counter() - t0,
                            W=W, b=b, residual=kkt.to(dtype),
                            max_residual=float(kkt.max()) if kkt.numel() else 0.0, iterations=out.iterations,
                            info=info)


# -- method="running": the arguments it alone takes ------------------------------------------------------------
def _check_running(method: str, W_init: Any, b_init: Any, bias: bool, p_in: int, curvature: Any, relax: Any,
                   line_search: Any, U: Any = None, p_out: int | None = None) -> tuple[float, bool]:
    """Validate the running method's arguments, or reject them for any other method; ``(relax, line_search)``."""
    if method != "running":
        for name, value, given in (("curvature", curvature, curvature is not None), ("relax", relax, relax != 1.0),
                                   ("line_search", line_search, line_search is not False), ("U", U, U is not None)):
            if given:
                shown = repr(value) if isinstance(value, (bool, int, float, str)) else f"a {type(value).__name__}"
                raise ValueRangeError(f"{name}: only method='running' takes it, got {shown} with method={method!r}; "
                                      f"pass method='running' or leave {name} out")
        return 1.0, False
    if W_init is None or (bias and b_init is None):
        missing = "W_init" if W_init is None else "b_init"
        raise ShapeError(f"{missing}: required with method='running' (the point the step starts from, e.g. the "
                         "current weights); pass W_init= and b_init= (or bias=False)")
    if not isinstance(curvature, (RunningCurvature, AdamCurvature)):
        raise ValueRangeError(f"curvature: expected a RunningCurvature or an AdamCurvature (fenchel_cvx.torch."
                              f"curvature) with method='running', got {type(curvature).__name__}")
    if isinstance(curvature, AdamCurvature) and curvature.p_out != p_out:
        raise ShapeError(f"curvature: Adam moments built for {curvature.p_out} rows, the block has {p_out} (the "
                         "layer's outputs; a convolution's output channels): build them with adam_curvature(p_out, "
                         "p_in, ...) for this layer")
    if curvature.p_a != p_in + int(bias) or curvature.bias != bias:
        raise ShapeError(f"curvature: built for {curvature.p_a} augmented inputs, the layer has "
                         f"{p_in + int(bias)} (p_in + bias; for a conv or pooled layer p_in is layer.patch_size: "
                         "build it with hidden_curvature(layer.patch_size, ...) and observe layer.patches(X_in))")
    v = check_scalar(relax, "relax")
    if not v > 0:
        raise ValueRangeError(f"relax: expected a step multiplier > 0 (1: the preconditioned step itself), got {v}")
    check_flag(line_search, "line_search")
    if line_search and v != 1.0:
        raise ValueRangeError(f"relax: the line search chooses the step length itself; got relax={v} with "
                              "line_search=True (pass one or the other)")
    return v, line_search


def _unchecked(subproblem: str, W: torch.Tensor, b: torch.Tensor | None, t0: float, steps: int,
               curvature: RunningCurvature | AdamCurvature, n_cert: int) -> SubproblemResult:
    """The result of uncertified running steps: ``value``, ``residual`` and the certificate NaN."""
    nan = W.new_full((W.shape[0],), math.nan)
    solver = "adam" if isinstance(curvature, AdamCurvature) else "running_mm"
    return SubproblemResult(subproblem=subproblem, value=math.nan, status="unchecked", converged=False,
                            backend="torch", solver=solver, solve_time=time.perf_counter() - t0, W=W, b=b,
                            residual=nan, max_residual=math.nan, iterations=steps,
                            info={"certificate": W.new_full((n_cert,), math.nan), **curvature.summary()})


# -- layer=: the patch form -------------------------------------------------------------------------------------
def _patch_form(layer: Layer, X_in: Any, X_next: Any, bias: bool, **weights: Any) -> tuple:
    """``(X_in, X_next, weights)`` checked against ``layer`` and put in the patch form of its W-update.

    ``X_next`` (``None`` for ``w_last``) and ``U`` (in ``weights``) go through ``layer.arrange``, the kernels
    ``W0``, ``W_init`` through ``layer.weight_matrix``; biases are checked only. A plain dense layer only has its
    shapes checked. Shapes, sample counts and finiteness are checked here, in the caller's terms; the dense
    update that follows checks the rest.
    """
    _check_layer_form(layer, X_in, X_next, bias, **weights)
    if layer.is_plain_dense:
        return X_in, X_next, weights
    for name in ("W0", "W_init"):
        if weights.get(name) is not None:
            weights[name] = layer.weight_matrix(weights[name])
    if weights.get("U") is not None:
        weights["U"] = layer.arrange(weights["U"])
    return layer.patches(X_in), None if X_next is None else layer.arrange(X_next), weights


def _check_layer_form(layer: Layer, X_in: Any, X_next: Any, bias: bool, **weights: Any) -> None:
    """:func:`_patch_form`'s checks, in the caller's terms: tensors, finiteness, the layer's shapes."""
    # finite here, in the caller's layout: past layer.patches an entry is copied k^2 times and found elsewhere
    check_tensor(X_in, "X_in")
    check_layer_shape(X_in, "X_in", layer, "in")
    m = X_in.shape[1]
    for name, x, what in (("X_next", X_next, "out"), ("U", weights.get("U"), "out"),
                          ("W0", weights.get("W0"), "weight"), ("W_init", weights.get("W_init"), "weight"),
                          ("b0", weights.get("b0") if bias else None, "bias"),
                          ("b_init", weights.get("b_init") if bias else None, "bias")):
        if x is not None:
            check_tensor(x, name, ref=X_in)
            check_layer_shape(x, name, layer, what, m=m if what == "out" else None)


def _as_kernel(res: SubproblemResult, layer: Layer, t0: float) -> SubproblemResult:
    """The patch form's answer with ``W`` back in the layer's shape (the kernel of a convolution)."""
    res.W = layer.weight_from_matrix(res.W)
    res.solve_time = time.perf_counter() - t0
    return res


# --------------------------------------------------------------------------------------------------- w_hidden
def w_hidden(X_in: torch.Tensor, X_next: torch.Tensor, *, act: str | Activation, lam: float, rho: float,
             gamma: float = 0.0, W0: torch.Tensor | None = None, b0: torch.Tensor | None = None, bias: bool = True,
             tol: float = 1e-6, max_iter: int = 100, W_init: torch.Tensor | None = None,
             b_init: torch.Tensor | None = None, warn: bool = True, method: str = "auto",
             curvature: RunningCurvature | AdamCurvature | None = None, relax: float = 1.0, line_search: bool = False,
             U: torch.Tensor | None = None, step_dtype: torch.dtype | None = None,
             layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (17), (19): minimize over W, b  lam B_act(X_next, W X_in + b) + rho ||W||^2 + gamma ||[W, b] - [W0, b0]||^2

    The hidden-layer W-update: ``X_in = X_l``, ``X_next = X_{l+1}``, ``act`` the activation of layer ``l+1``.
    Layout: paper's ``(features, samples)``. It separates over the rows ``z_r = [w_r; b_r]`` of ``[W, b]``:

    .. math::  f_r(z) = \lambda \sum_j \bigl[F^*(x_j^\top z) - v_{rj}\, x_j^\top z\bigr]
               + \rho\|w\|^2 + \gamma\|z - z^0_r\|^2 + \text{const},\qquad x_j = [X_{in}[:, j]; 1].

    **Algorithm**: generalized (semismooth) Newton on all rows at once. The Hessian of row ``r`` is
    ``lam X_a diag(phi'(U_r)) X_a^T + diag(mu)`` (``mu = 2(rho + gamma)`` on weights, ``2 gamma`` on the bias;
    ``phi' = 1[u >= 0]`` for ReLU, slopes ``{alpha, 1}`` for leaky ReLU, ``phi'(u)`` for sigmoid/tanh). For a
    piecewise-linear ``act`` the Hessians are built from the Gram matrix and updated between steps with only the
    samples that changed side; each is factored in float64 (batched Cholesky; in float32 with a float64
    refinement of the step under ``step_dtype=torch.float32``) and the step length is the exact
    minimizer of ``f_r`` along the step (safeguarded Newton on the 1-D derivative, exact on each linear piece).
    Rows whose residual reaches ``tol`` are frozen. With no strongly convex coordinate (an unregularized bias) a
    tiny Levenberg-Marquardt shift (``1e-12`` of the mean diagonal) keeps the *step* defined; the objective and
    the residual are never regularized. Cost per step: ``4 r p m`` flops for the gradient, ``2 p^2 k`` per row
    with ``k`` changed samples (``<= m/2``) for its Hessian, ``p^3/3`` per row for the Cholesky. For a
    piecewise-linear ``act`` and ``max_iter > 20`` up to 10 steps of the MM method below come first, each row's
    until a step moves fewer than 1% of its samples across the kink: they share one factorization and settle most
    samples' sides, so fewer Newton steps follow (:func:`fenchel_cvx.torch._wsolvers.newton_rows`); every step of
    either kind lowers every row's objective.

    ``method="mm"``: majorization-minimization. Every row's Hessian is bounded by the same
    ``M = lam s_max X_a X_a^T + diag(mu)`` with ``s_max = sup phi'`` (1 for ReLU and tanh, ``max(1, alpha)`` for
    leaky ReLU, 1/4 for sigmoid), so ``[W, b] <- [W, b] - G M^{-1}`` minimizes a quadratic upper bound of every
    row's objective at once: the objective never increases, one Cholesky of ``M`` per call and a GEMM per step.
    Where some ``mu_i = 0`` a ridge of ``1e-12`` times the mean diagonal is added to ``M`` only (a larger bound,
    still monotone; objective and residual unchanged). Linear convergence -- slow for rows with many inactive
    ReLU samples, where ``M`` overestimates the curvature -- so it is meant for a few warm-started steps
    (inexact BCD); run to convergence it reaches the Newton answer, with a large ``max_iter``. With fewer samples
    than coordinates (``m < p_in + 1``, e.g. MNIST's 784 inputs in batches of 500) and every ``mu_i > 0`` the same
    steps are taken in sample space (Woodbury, ``m x m``; ``info["form"] == "kernel"``), which needs no
    ``p_a x p_a`` factorization and only ``m``-sized products between the first and the last step.

    ``method="running"``: ``max_iter`` steps ``[W, b] <- [W, b] - relax G \tilde M^{-1}`` from ``(W_init,
    b_init)`` with ``curvature``'s running estimate ``\tilde M`` of ``M`` (see the module docstring), no
    certificate. The first step's gradient ``G = lam (phi(U) - X_next) X_a^T + mu [W, b] - 2 gamma [W0, b0]``
    uses ``U = W_init X_in + b_init`` when given (the feed-forward has it), so it costs one GEMM
    (``2 p_out p_in m`` flops) plus ``4 p_out p_a k`` for the preconditioning; each later step recomputes ``U``.
    Inexact BCD calls it with ``max_iter=1`` after ``curvature.observe(X_in)``.

    **Stopping test** (``info["certificate"]``, per row): with the gradient
    ``g_r = lam X_a (phi(u_r) - v_r) + mu z_r - 2 gamma z0_r`` of ``f_r`` w.r.t. ``[w_r; b_r]``,

    .. math::  \mathrm{certificate}_r = \frac{\|g_r\|}{\max\bigl(\lambda\|X_a\phi(u_r)\|
               + \lambda\|X_a v_r\| + \|\mu z_r\| + 2\gamma\|z^0_r\|,\; s\bigr)},

    the gradient relative to the terms that cancel in it at the optimum (``s`` = the mean over rows of
    ``lam ||X_a v_r||``, a floor for rows whose terms all vanish). The solve stops when every row has
    ``certificate_r <= tol``. ``residual`` reports the same gradient rows relative to the whole problem's scale
    (:func:`fenchel_cvx.optimality.w_hidden_residual`, shared with the CVXPY face), from the gradient the solver
    already holds. ``info["gap"]`` holds the certified suboptimality ``f_r - f_r^* <= sum_i g_{ri}^2 / (2 mu_i)``
    per row (``inf`` when some ``mu_i = 0``, i.e. ``gamma = 0`` with a bias, or ``rho = gamma = 0``).

    Parameters
    ----------
    X_in : Tensor, shape (p_in, m)
        ``X_l``; float32 or float64, on any device.
    X_next : Tensor, shape (p_out, m)
        ``X_{l+1}``, inside the domain of ``act``'s ``F`` (the boundary allowed); same dtype and device.
    act : str or Activation
        Activation of layer ``l+1``.
    lam : float
        ``lam_l > 0``.
    rho : float
        ``>= 0``, on ``W`` only.
    gamma : float
        ``>= 0``; the proximal weight of eq. (19).
    W0 : Tensor, shape (p_out, p_in), optional
        Previous batch's ``W``; required when ``gamma > 0``.
    b0 : Tensor, shape (p_out,), optional
        Previous batch's ``b``; required when ``gamma > 0`` and ``bias`` (ignored without a bias).
    bias : bool
        Whether ``b`` is a variable (else fixed at 0 and ``result.b`` is ``None``).
    tol : float
        Target of ``max(info["certificate"])``; default ``1e-6`` (unused by ``method="running"``).
    max_iter : int
        Steps at most, MM pre-steps included (default 100; Newton: 5-25 are typical from a cold start, fewer
        warm; MM needs hundreds to thousands to reach ``tol=1e-6`` from a cold start); ``method="running"``
        takes exactly ``max_iter`` steps (inexact BCD: 1).
    W_init : Tensor, shape (p_out, p_in), optional
        Warm start (e.g. the current ``W_l``). Default: ``W0`` when ``gamma > 0``, else 0. Required by
        ``method="running"``.
    b_init : Tensor, shape (p_out,), optional
        Warm start of ``b``; default ``b0`` when ``gamma > 0``, else 0. Required by ``method="running"`` with a
        bias.
    warn : bool
        Warn :class:`~fenchel_cvx.errors.NotConvergedWarning` when stopping at ``max_iter`` above ``tol``
        (default). ``False`` for deliberately inexact updates, e.g. ``max_iter=1``: one Newton step.
    method : {"auto", "newton", "mm", "running"}
        ``"newton"`` (= ``"auto"``, the default): semismooth Newton; ``"mm"``: majorization-minimization;
        ``"running"``: uncertified MM steps with a running curvature estimate (or Adam steps, with an
        :class:`~fenchel_cvx.torch.curvature.AdamCurvature`).
    curvature : RunningCurvature or AdamCurvature, optional
        ``method="running"`` only (required there): from
        :func:`~fenchel_cvx.torch.curvature.hidden_curvature` with the same ``act``, ``lam``, ``rho``, ``gamma``,
        or Adam's moments of this block from :func:`~fenchel_cvx.torch.curvature.adam_curvature` (each step
        updates them).
    relax : float
        ``method="running"`` only: step multiplier ``omega > 0``, ``[W, b] <- [W, b] - omega G \tilde M^{-1}``.
        With an exact bound any ``omega < 2`` still decreases the objective (by at least
        ``omega (1 - omega/2) G M^{-1} G^T``), and the bound is loose (``phi' = 0`` on a ReLU's inactive samples,
        where it counts ``sup phi' = 1``); ``benchmarks/bench_inexact.py --descent N --relax OMEGA`` counts the
        steps that raised their block objective in training.
    line_search : bool
        ``method="running"`` only: take, per row, the exact minimizer of the objective along the step (the
        safeguarded 1-D Newton search of the Newton method): the step then never increases the objective,
        whatever the curvature estimate. Costs one more GEMM (``D X_a``) and ``O(p_out m)`` per search step.
    U : Tensor, shape (p_out, m), optional
        ``method="running"`` only: ``W_init X_in + b_init`` when the caller already has it (the feed-forward
        does); computed otherwise.
    step_dtype : torch.dtype, optional
        Newton method only: ``torch.float32`` forms the row Hessians and factors them in float32 (about half the
        time of both, the bulk of a solve at ``p_in`` in the hundreds) and refines each direction once against
        the exact float64 Hessian, applied by two GEMMs without forming it; the gradients, line searches and the
        certificate stay float64, so the answer is certified as a float64 solve's is. A row float32 cannot serve
        (a Hessian too ill-conditioned: the first solve's residual above a quarter of the gradient, a larger
        shift than float64's, or no descent) has its direction redone in float64 (``info["float64_rows"]``
        counts them), and inputs whose Hessian entries would exceed ``1e30`` are solved in float64 throughout
        (``info["hessian_dtype"]``). ``None`` (default) or ``torch.float64``: everything in float64.
    layer : Layer, optional
        ``W X_in + b`` as ``A(X_in; W) + b`` (:mod:`fenchel_cvx.layers`): ``X_in`` ``(layer.n_in, m)``,
        ``X_next`` and ``U`` ``(layer.n_out, m)``, ``W0``, ``W_init`` and the answer ``W`` of shape
        ``layer.weight_shape`` (a conv kernel), ``b`` one per output channel; solved as the dense update on the
        patch form (module docstring), ``curvature`` built on ``layer.patch_size``. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``W`` (p_out, p_in) and ``b`` (p_out,) or ``None`` in the input dtype/device; ``value`` the full
        objective (constants included) at the returned point, computed in float64; ``residual`` (p_out,), the
        optimality residual per row; ``max_residual``; ``iterations`` (steps of the slowest row); ``converged``;
        ``status`` ``"optimal"`` or ``"max_iter"``; ``backend="torch"``; ``solver="ssn"`` or ``"mm"``; ``info``:
        ``certificate`` (p_out,), ``gap`` (p_out,) and ``gap_bound`` (their sum), ``row_iterations``, ``history``
        (max certificate per step); Newton: ``hessian_samples`` (sample columns used to form Hessians),
        ``max_shift``, ``mm_steps`` and ``mm_row_steps`` (the MM pre-steps, included in ``row_iterations``),
        ``hessian_dtype``, ``float64_rows``; MM: ``ridge``, ``curvature_bound`` (``lam s_max``).
        ``method="running"``: ``value``, ``residual`` and ``info["certificate"]`` NaN, ``status="unchecked"``,
        ``converged=False``, ``solver="running_mm"``, ``iterations=max_iter``, ``info``: ``refreshes``, ``rank`` of
        the estimate
        (with an ``AdamCurvature``: ``solver="adam"``, ``info["adam_steps"]``).

    Raises
    ------
    TensorMismatchError
        A non-tensor, a dtype other than float32/float64, or a dtype/device different from ``X_in``'s.
    ShapeError
        Shapes that do not fit, ``W0``/``b0`` missing when ``gamma > 0``, ``W_init``/``b_init`` missing with
        ``method="running"``, or a ``curvature`` built for another layer.
    DomainError
        NaN/inf entries, or ``X_next`` outside the domain of ``act``.
    ValueRangeError
        ``lam <= 0``, ``rho < 0``, ``gamma < 0``, ``tol <= 0``, ``max_iter < 1``, ``relax <= 0``, a
        running-only argument (``curvature``, ``relax``, ``line_search``, ``U``) with another method, or a
        ``step_dtype`` other than float32/float64, or float32 with ``method="mm"``/``"running"``.
    ChoiceError
        An unknown ``method``, an activation the torch face does not solve, or a ``layer`` that is not a
        :class:`~fenchel_cvx.layers.Layer`.
    SolverError
        A factorization failed even after regularization (badly scaled inputs).
    """
    t0 = time.perf_counter()
    layer, bias = check_layer(layer), check_flag(bias, "bias")
    if layer is not None:
        check_layer_anchor(layer, W0, b0, gamma, bias)
        if method == "running" and line_search is False and not layer.is_plain_dense:
            return _running_layer(layer, X_in, X_next, act=act, lam=lam, rho=rho, gamma=gamma, W0=W0, b0=b0,
                                  bias=bias, tol=tol, max_iter=max_iter, warn=warn, W_init=W_init, b_init=b_init,
                                  curvature=curvature, relax=relax, U=U, step_dtype=step_dtype, t0=t0)
        X_in, X_next, kw = _patch_form(layer, X_in, X_next, bias, W0=W0, b0=b0, W_init=W_init, b_init=b_init, U=U)
        if not layer.is_plain_dense:
            res = w_hidden(X_in, X_next, act=act, lam=lam, rho=rho, gamma=gamma, bias=bias, tol=tol,
                           max_iter=max_iter, warn=warn, method=method, curvature=curvature, relax=relax,
                           line_search=line_search, step_dtype=step_dtype, **kw)
            return _as_kernel(res, layer, t0)
    check_choice(method, "method", _HIDDEN_METHODS)
    act, lam, rho, gamma, tol, max_iter, warn = _hidden_settings(act, lam, rho, gamma, tol, max_iter, warn)
    bias = check_flag(bias, "bias")
    check_tensor(X_in, "X_in", shape=(None, None), layout=_LAYOUT)
    check_tensor(X_next, "X_next", ref=X_in, shape=(None, X_in.shape[1]),
                 layout=f"{_LAYOUT}, columns = X_in.shape[1] = {X_in.shape[1]}")
    act.check_domain(X_next, "X_next")
    p_in, p_out = X_in.shape[0], X_next.shape[0]
    _check_samples(X_in, p_out, "X_next")
    W0, b0 = _check_anchor(W0, b0, gamma, bias, p_out, p_in, X_in)
    _check_init(W_init, b_init, bias, p_out, p_in, X_in)
    relax, line_search = _check_running(method, W_init, b_init, bias, p_in, curvature, relax, line_search, U,
                                        p_out)
    step_dtype = _check_newton_dtype(step_dtype, method)
    if method == "running":
        if U is not None:
            check_tensor(U, "U", ref=X_in, shape=(p_out, X_in.shape[1]), layout="(p_out, samples): W X_in + b")
        with torch.no_grad(), solver_errors("w_hidden"):
            W, b = W_init, (b_init if bias else None)
            for k in range(max_iter):
                if k > 0 or U is None:
                    U = torch.addmm(b[:, None], W, X_in) if b is not None else W @ X_in
                W, b = running_hidden_step(X_in, X_next, U, W, b, act, lam, rho, gamma, W0, b0, curvature, relax,
                                           line_search)
        return _unchecked("w_hidden", W, b, t0, max_iter, curvature, p_out)

    with torch.no_grad(), solver_errors("w_hidden"):  # a solver, not a layer: inputs that require grad grow no graph
        Xa = _augment(X_in, bias)
        V = X_next.to(_F64)
        mu, lin, Z0 = quadratic(p_in, p_out, rho, gamma, bias, W0, b0, X_in)
        Z = _start(W_init, b_init, Z0, bias, p_out, p_in, X_in)
        if method == "mm":
            out, solver = mm_rows(Xa, V, act, lam, mu, lin, Z, tol=tol, max_iter=max_iter), "mm"
        else:
            out, solver = newton_rows(Xa, V, act, lam, mu, lin, Z, tol=tol, max_iter=max_iter,
                                      step_dtype=step_dtype), "ssn"
        X64 = X_in.to(_F64)

        def value(W: torch.Tensor, b: torch.Tensor | None) -> float:
            # the solver's own U = [W, b] X_a when the point is returned unrounded (float64): a GEMM saved
            U = out.info.pop("U", None)
            if U is None or X_in.dtype != _F64:
                U = W @ X64 if b is None else W @ X64 + b.unsqueeze(1)
            return lam * all_sum_float(act.B_sum(V, U), U) + penalty(W, b, rho, gamma, W0, b0)

        reg = {"rho": rho, "gamma": gamma, "W0": W0, "b0": b0}
        return _result("w_hidden", out, p_in, bias, X_in.dtype, value, solver, t0, tol, max_iter, warn, "rows", reg)


def _check_newton_dtype(step_dtype: Any, method: str) -> torch.dtype | None:
    """``step_dtype`` checked: the Newton method's alone (``None`` for float64, whatever ``X_in``'s dtype)."""
    step_dtype = check_step_dtype(step_dtype, _F64)
    if step_dtype is not None and method in ("mm", "running"):
        raise ValueRangeError(f"step_dtype: the precision of the Newton method's row Hessians; got "
                              f"step_dtype={step_dtype} with method={method!r}, whose steps factor no row Hessian "
                              "(leave step_dtype out, or pass method='newton')")
    return step_dtype


def _hidden_settings(act: Any, lam: Any, rho: Any, gamma: Any, tol: Any, max_iter: Any, warn: Any) -> tuple:
    """``w_hidden``'s scalar arguments checked: ``(act, lam, rho, gamma, tol, max_iter, warn)``."""
    return (get_activation(act), check_scalar(lam, "lam", positive=True), check_scalar(rho, "rho", nonneg=True),
            check_scalar(gamma, "gamma", nonneg=True), check_tol(tol), check_max_iter(max_iter),
            check_flag(warn, "warn"))


def _running_layer(layer: Layer, X_in: Any, X_next: Any, *, act: Any, lam: Any, rho: Any, gamma: Any, W0: Any,
                   b0: Any, bias: bool, tol: Any, max_iter: Any, warn: Any, W_init: Any, b_init: Any, curvature: Any,
                   relax: Any, U: Any, step_dtype: Any, t0: float) -> SubproblemResult:
    """:func:`w_hidden`'s running steps (no line search) for a conv or pooled ``layer``, in the layer's layout:
    the same checks as the patch form's and the same steps (:func:`~fenchel_cvx.torch._wsolvers.running_layer_step`),
    without building the patch matrix, which only the gradient would read."""
    _check_layer_form(layer, X_in, X_next, bias, W0=W0, b0=b0, W_init=W_init, b_init=b_init, U=U)
    # tol and warn: unused by running steps, checked as on every path
    act, lam, rho, gamma, _, max_iter, _ = _hidden_settings(act, lam, rho, gamma, tol, max_iter, warn)
    act.check_domain(X_next, "X_next")
    p_out, p_in = layer.weight_shape[0], layer.patch_size
    _check_samples(X_in, p_out, "X_next")
    relax, _ = _check_running("running", W_init, b_init, bias, p_in, curvature, relax, False, U, p_out)
    _check_newton_dtype(step_dtype, "running")
    matrix = layer.weight_matrix
    W0, b0 = _check_anchor(None if W0 is None else matrix(W0), b0, gamma, bias, p_out, p_in, X_in)
    with torch.no_grad(), solver_errors("w_hidden"):
        W, b = matrix(W_init), (b_init if bias else None)
        for k in range(max_iter):
            if k > 0 or U is None:
                U = layer.apply(layer.weight_from_matrix(W), b, X_in)
            W, b = running_layer_step(layer, X_in, X_next, U, W, b, act, lam, rho, gamma, W0, b0, curvature, relax)
    return _unchecked("w_hidden", layer.weight_from_matrix(W), b, t0, max_iter, curvature, p_out)


# ----------------------------------------------------------------------------------------------------- w_last
def _targets(Y: Any, loss: Loss, p: int | None, W0: Any, W_init: Any, X_in: torch.Tensor,
             dtype: torch.dtype = _F64) -> torch.Tensor:
    """``Y`` as ``(p, m)`` target columns of ``dtype`` on ``X_in``'s device."""
    if not isinstance(Y, torch.Tensor):
        check_tensor(Y, "Y")  # raises TensorMismatchError with the conversion hint
    if Y.device != X_in.device:
        raise TensorMismatchError(f"Y: expected a tensor on device {X_in.device} like X_in, got device {Y.device}; "
                                  "move it with Y.to(X_in.device)")
    if Y.ndim == 2:
        check_tensor(Y, "Y", ref=X_in, shape=(p, X_in.shape[1]) if p is not None else (None, X_in.shape[1]),
                     layout=f"(outputs, samples), columns = X_in.shape[1] = {X_in.shape[1]}")
        p = Y.shape[0]
    elif Y.ndim == 1:
        if Y.shape[0] != X_in.shape[1]:
            raise ShapeError(f"Y: expected {X_in.shape[1]} labels (one per column of X_in), got shape "
                             f"{tuple(Y.shape)}")
        if p is None:
            # Integer labels carry no output count: take it from W0 / W_init, else from the largest label.
            ref = W0 if W0 is not None else W_init
            p = int(ref.shape[0]) if ref is not None else (int(Y.max()) + 1 if Y.numel() else 1)
    else:
        raise ShapeError(f"Y: expected a (p, m) target matrix or (m,) integer labels, got shape {tuple(Y.shape)}")
    return loss.targets(Y, int(p), like=X_in.new_empty(0, dtype=dtype))


def _check_loss(loss: Loss) -> None:
    """The torch face solves MSE and cross-entropy."""
    known = "mse" if isinstance(loss, MSELoss) else "ce" if isinstance(loss, CrossEntropyLoss) else loss
    check_choice(known, "loss", ("mse", "ce"), "use fenchel_cvx.cvx for other losses")


def w_last(X_in: torch.Tensor, Y: torch.Tensor, *, loss: str | Loss, rho: float, gamma: float = 0.0,
           W0: torch.Tensor | None = None, b0: torch.Tensor | None = None, bias: bool = True, p: int | None = None,
           tol: float = 1e-6, max_iter: int = 50, W_init: torch.Tensor | None = None,
           b_init: torch.Tensor | None = None, warn: bool = True, method: str = "auto",
           curvature: RunningCurvature | AdamCurvature | None = None, relax: float = 1.0,
           line_search: bool = False, layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (18), (20): minimize over W, b  loss(Y, W X_in + b) + rho ||W||^2 + gamma ||[W, b] - [W0, b0]||^2

    The last-layer W-update: ``X_in = X_L``. Layout: paper's ``(features, samples)``. With ``X_a = [X_in; 1^T]``
    and ``Z = [W, b]`` the regularizer is ``sum_i mu_i ||Z[:, i]||^2 / 2 - <2 gamma Z0, Z> + const`` with
    ``mu_i = 2(rho + gamma)`` on weights and ``2 gamma`` on the bias. With a bias and ``gamma = 0`` the bias is not
    penalized, and cross-entropy has no minimizer when a class has no sample in ``Y`` (its bias decreases without
    bound): the solvers then warn :class:`~fenchel_cvx.errors.NoMinimizerWarning` and stop at a point far out whose
    value is within ``tol`` of the infimum, as the CVXPY face does (the two points differ; their values agree).
    ``method="running"``, which claims no optimum, does not warn.

    **Algorithm.** MSE: ridge regression in closed form,
    ``Z (2 X_a X_a^T + diag(mu)) = 2 Y X_a^T + 2 gamma Z0``, by a float64 Cholesky and one refinement step
    (the minimum-norm solution if the system is singular); ``iterations = 0`` and the warm start is unused.
    Cross-entropy: ridge multinomial logistic regression by Newton's method with Armijo backtracking, either
    with the exact ``(p p_a) x (p p_a)`` Hessian (``method="newton"``, about ``(p p_a)^2 m`` flops per step) or
    with conjugate gradients on Hessian-vector products preconditioned by Boehning's bound
    ``I kron (X_a X_a^T / 2 + diag(mu))`` (``method="newton_cg"``, ``4 p p_a m`` flops per CG step);
    ``method="auto"`` takes the exact Hessian when ``p p_a <= 1000`` (beyond that, forming and factoring the
    dense Hessian costs far more than the CG steps). ``method="mm"``: majorization-minimization with Boehning's bound
    ``H <= I kron (X_a X_a^T / 2 + diag(mu))``: ``[W, b] <- [W, b] - G M^{-1}`` with
    ``M = X_a X_a^T / 2 + diag(mu)`` (plus a ridge of ``1e-12`` times its mean diagonal where some ``mu_i = 0``,
    in ``M`` only), one Cholesky per call; it never increases the objective and converges linearly -- meant
    for a few warm-started steps (inexact BCD). Softmax is invariant to adding the same
    constant to every class, so with ``gamma = 0`` the bias (and, with ``rho = gamma = 0``, every column of
    ``W``) is determined only up to such a shift: the returned ``b`` then has mean zero over the classes.
    ``method="running"`` (both losses): ``max_iter`` steps ``[W, b] <- [W, b] - relax G \tilde M^{-1}`` from
    ``(W_init, b_init)`` with ``curvature``'s running estimate of ``M`` (the module docstring), ``h' =
    softmax(.) - Y`` (CE) or ``2(. - Y)`` (MSE); three small GEMMs per step, no certificate. With a curvature
    refreshed from this batch at full rank it is the ``"mm"`` step (CE) and the exact solution (MSE).

    **Stopping test** (``info["certificate"]``, one entry): the gradient
    ``G = (h'(Yhat) - c Y) X_a^T + mu Z - 2 gamma Z0`` of the objective w.r.t. ``Z = [W, b]`` relative to its
    terms, ``||G|| / (||h'(Yhat) X_a^T|| + ||c Y X_a^T|| + ||mu Z|| + 2 gamma ||Z0||)`` with
    ``h'(Yhat) = 2 Yhat``, ``c = 2`` (MSE) or ``h'(Yhat) = softmax(Yhat)``, ``c = 1`` (CE); stop at ``<= tol``.
    ``residual`` reports the rows of the same ``G`` relative to the problem's scale
    (:func:`fenchel_cvx.optimality.w_last_residual`), from the gradient the solver already holds.
    ``info["gap"]`` bounds ``f - f^*`` by ``sum G^2 / (2 mu)`` (``inf`` if some ``mu_i = 0``).

    Parameters
    ----------
    X_in : Tensor, shape (p_L, m)
        ``X_L``; float32 or float64.
    Y : Tensor, shape (p, m), or integer labels (m,)
        Targets (same dtype/device as ``X_in``) or class labels (same device). Cross-entropy needs probability
        columns.
    loss : str or Loss
        ``"mse"`` or ``"ce"``.
    rho, gamma : float
        ``>= 0``.
    W0 : Tensor, shape (p, p_L), optional
        Required when ``gamma > 0``.
    b0 : Tensor, shape (p,), optional
        Required when ``gamma > 0`` and ``bias``.
    bias : bool
    p : int, optional
        Number of outputs; only needed with integer labels when neither ``W0`` nor ``W_init`` is given
        (default: largest label + 1, too small when the batch misses the last classes).
    tol : float
        Target of ``info["certificate"]`` (default ``1e-6``; unused by ``method="running"``).
    max_iter : int
        Newton (or MM) steps at most (cross-entropy; default 50; MM to ``tol=1e-6`` needs hundreds or more);
        ``method="running"`` takes exactly ``max_iter`` steps (inexact BCD: 1).
    W_init, b_init : Tensor, optional
        Warm start for cross-entropy (default ``W0``, ``b0`` when ``gamma > 0``, else 0); required by
        ``method="running"``.
    warn : bool
        Warn when stopping at ``max_iter`` above ``tol``; ``False`` for deliberately inexact updates.
    method : {"auto", "newton", "newton_cg", "mm", "running"}
        Cross-entropy solver (ignored for MSE, always the closed form), or ``"running"`` for either loss.
    curvature : RunningCurvature or AdamCurvature, optional
        ``method="running"`` only (required there): from :func:`~fenchel_cvx.torch.curvature.last_curvature`,
        or :func:`~fenchel_cvx.torch.curvature.adam_curvature` (as in :func:`w_hidden`).
    relax : float
        ``method="running"`` only: step multiplier, as in :func:`w_hidden`.
    line_search : bool
        ``method="running"`` only: halve the step until the objective does not increase (at most 30 times, then
        no step), one small GEMM (``p p_L m``) per trial.
    layer : Layer, optional
        The output layer, dense after average pooling (e.g. ``a2f10``): ``X_in`` ``(layer.n_in, m)`` is pooled
        first (``layer.patches``), ``W``, ``W0`` and ``W_init`` have shape ``layer.weight_shape``, ``p`` is
        ``layer.n_out``, ``curvature`` is built on ``layer.patch_size``. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``W`` (p, p_L), ``b`` (p,) or ``None``; ``value`` (float64, at the returned point); ``residual`` (p,),
        the optimality residual per row; ``backend="torch"``; ``solver`` ``"cholesky"`` (MSE) or ``"newton"`` /
        ``"newton_cg"`` / ``"mm"``; ``iterations`` (0 for the closed form); ``info``: ``certificate`` (1,),
        ``gap``, ``gap_bound``, ``history``, ``cg_iterations``. ``method="running"``: as in :func:`w_hidden`.

    Raises
    ------
    TensorMismatchError, ShapeError, DomainError, ValueRangeError, LabelError
        As :func:`w_hidden`.
    ChoiceError
        An unknown ``method``, a loss the torch face does not solve, or a ``layer`` that is not a dense
        :class:`~fenchel_cvx.layers.Layer` (the output layer is dense, pooled or not).
    SolverError
        A factorization failed even after regularization.

    Warns
    -----
    NoMinimizerWarning
        Cross-entropy with a bias, ``gamma = 0`` and a class with no sample in ``Y``: no minimizer (above).
    NotConvergedWarning
        Stopped at ``max_iter`` above ``tol`` (unless ``warn=False``).
    """
    t0 = time.perf_counter()
    layer, bias = check_layer(layer, "w_last"), check_flag(bias, "bias")
    if layer is not None:
        check_layer_anchor(layer, W0, b0, gamma, bias)
        X_in, _, kw = _patch_form(layer, X_in, None, bias, W0=W0, b0=b0, W_init=W_init, b_init=b_init)
        if p is not None and p != layer.n_out:
            raise ShapeError(f"p: expected None or {layer.n_out}, the outputs of layer {layer.describe()}, got {p!r}")
        p = layer.n_out
        if not layer.is_plain_dense:
            res = w_last(X_in, Y, loss=loss, rho=rho, gamma=gamma, bias=bias, p=p, tol=tol, max_iter=max_iter,
                         warn=warn, method=method, curvature=curvature, relax=relax, line_search=line_search, **kw)
            return _as_kernel(res, layer, t0)
    loss = get_loss(loss)
    _check_loss(loss)
    rho = check_scalar(rho, "rho", nonneg=True)
    gamma = check_scalar(gamma, "gamma", nonneg=True)
    tol, max_iter, warn = check_tol(tol), check_max_iter(max_iter), check_flag(warn, "warn")
    check_choice(method, "method", _LAST_METHODS)
    p = check_int(p, "p", 1, optional=True, hint="the number of outputs")
    bias = check_flag(bias, "bias")
    check_tensor(X_in, "X_in", shape=(None, None), layout=_LAYOUT)
    running = method == "running"
    T = _targets(Y, loss, p, W0, W_init, X_in, X_in.dtype if running else _F64)
    p_in, K = X_in.shape[0], T.shape[0]
    _check_samples(X_in, K, "Y")
    W0, b0 = _check_anchor(W0, b0, gamma, bias, K, p_in, X_in)
    _check_init(W_init, b_init, bias, K, p_in, X_in)
    relax, line_search = _check_running(method, W_init, b_init, bias, p_in, curvature, relax, line_search,
                                        p_out=K)
    if running:
        with torch.no_grad(), solver_errors("w_last"):
            W, b = W_init, (b_init if bias else None)
            for _ in range(max_iter):
                W, b = running_last_step(X_in, T, W, b, loss, rho, gamma, W0, b0, curvature, relax, line_search)
        return _unchecked("w_last", W, b, t0, max_iter, curvature, 1)

    # a class with no sample anywhere (summed over the processes of a data-parallel run) and a free bias
    warn_absent_classes(loss, bias, gamma, lambda: all_sum(T.sum(1)))
    with torch.no_grad(), solver_errors("w_last"):  # a solver, not a layer: inputs that require grad grow no graph
        Xa = _augment(X_in, bias)
        mu, lin, Z0 = quadratic(p_in, K, rho, gamma, bias, W0, b0, X_in)
        if isinstance(loss, MSELoss):
            out, solver = ridge(Xa, T, mu, lin), "cholesky"
        else:  # cross-entropy (_check_loss)
            Z = _start(W_init, b_init, Z0, bias, K, p_in, X_in)
            if method == "mm":
                out = ce_mm(Xa, T, mu, lin, Z, tol=tol, max_iter=max_iter)
            else:
                out = ce_newton(Xa, T, mu, lin, Z, tol=tol, max_iter=max_iter, method=method)
            solver = out.info["method"]
            free = mu == 0
            if bool(free.any()):  # the softmax shift: pick the representative with zero mean over classes
                out.Z[:, free] -= out.Z[:, free].mean(0, keepdim=True)
        X64 = X_in.to(_F64)

        def value(W: torch.Tensor, b: torch.Tensor | None) -> float:
            Yhat = W @ X64 if b is None else W @ X64 + b.unsqueeze(1)
            return all_sum_float(loss.value(T, Yhat), Yhat) + penalty(W, b, rho, gamma, W0, b0)

        reg = {"rho": rho, "gamma": gamma, "W0": W0, "b0": b0}
        return _result("w_last", out, p_in, bias, X_in.dtype, value, solver, t0, tol, max_iter, warn, "entries", reg)
