r"""The registry of the four block-coordinate-descent subproblems and the result type both faces return.

Both faces -- :mod:`fenchel_cvx.cvx` (CVXPY reference) and :mod:`fenchel_cvx.torch` (batched solvers) --
implement every entry of :data:`SUBPROBLEMS` under the same name and with the same arguments; a test fails if a
face misses one. Matrices are in the paper's layout ``(features, samples)``; ``W Z + b`` means ``W Z + b 1^T``.

=========  ============================================================================  ========  =========
name       minimizes                                                                      over      paper
=========  ============================================================================  ========  =========
x_hidden   lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev)                   Z         (14)
x_last     loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev)                             Z         (15),(16)
w_hidden   lam B_act(X_next, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)   W, b      (17),(19)
w_last     loss(Y, W X_in + b) + rho ||W||^2 + gamma(||W-W0||^2 + ||b-b0||^2)             W, b      (18),(20)
=========  ============================================================================  ========  =========

Every subproblem takes a last keyword ``layer`` (a :class:`~fenchel_cvx.layers.Layer`, section 4, eqs. 10-11):
``None`` or a plain dense layer is the table as written; a convolution, or a layer after average pooling, reads
``W Z + b`` as ``A(Z; W) + b`` -- ``W`` the kernel ``layer.weight_shape``, ``b`` one entry per output channel,
data matrices flattened to ``(layer.n_in, m)`` / ``(layer.n_out, m)`` -- and ``||W||`` as the kernel's Frobenius
norm. A conv W-update is the dense one on the patches: ``A(X_in; W) = W_mat @ layer.patches(X_in)`` arranged by
``layer.arrange``, the bias shared across positions. The output layer (``x_last``, ``w_last``) is dense, pooled or
not. :func:`check_layer` and :func:`check_layer_shape` word the errors of both faces, :func:`warn_absent_classes`
their warning for a ``w_last`` without a minimizer.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ChoiceError, NoMinimizerWarning, ShapeError

if TYPE_CHECKING:
    from .layers import Layer

__all__ = ["Subproblem", "SUBPROBLEMS", "SubproblemResult", "check_layer", "check_layer_anchor", "check_layer_shape",
           "outside_stacklevel", "warn_absent_classes"]


@dataclass(frozen=True)
class Subproblem:
    """One BCD subproblem: its name, the paper's equations, the objective and how it separates."""

    name: str
    equations: str
    objective: str
    over: tuple[str, ...]
    separates_over: str  # "columns" (data points), "rows" (output units) or "none"


SUBPROBLEMS: dict[str, Subproblem] = {
    "x_hidden": Subproblem(
        "x_hidden", "(14)",
        "lam * B_act(X_next, W Z + b) + lam_prev * B_act_prev(Z, U_prev), Z in dom(act_prev)",
        ("Z",), "columns"),
    "x_last": Subproblem(
        "x_last", "(15), (16)",
        "loss(Y, W Z + b) + lam_prev * B_act_prev(Z, U_prev), Z in dom(act_prev)",
        ("Z",), "columns"),
    "w_hidden": Subproblem(
        "w_hidden", "(17), (19)",
        "lam * B_act(X_next, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2)",
        ("W", "b"), "rows"),
    "w_last": Subproblem(
        "w_last", "(18), (20)",
        "loss(Y, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2)",
        ("W", "b"), "none"),
}


@dataclass
class SubproblemResult:
    """What every subproblem solver returns, with one meaning per field on both faces.

    Attributes
    ----------
    subproblem : str
        Registry name (a key of :data:`SUBPROBLEMS`).
    value : float
        The full objective at the returned point, constants included (a penalty term is exactly
        ``lam * sum B(...) >= 0``); NaN when ``status == "unchecked"``.
    status : str
        ``"optimal"``; ``"optimal_inaccurate"`` (CVXPY: the solver said so and polishing could not certify the
        point); ``"max_iter"`` or ``"stalled"`` (torch: stopped before its certificate met ``tol``);
        ``"unchecked"`` (torch: a capped update run on purpose without a certificate).
    converged : bool
        The face's own optimality test passed: torch, its certificate (``info["certificate"]``) is ``<= tol``
        everywhere; CVXPY, the status after polishing is ``"optimal"``. ``False`` when ``"unchecked"``.
    backend : str
        The face that answered: ``"cvx"`` or ``"torch"``.
    solver : str
        ``"OSQP"``, ``"CLARABEL"``, ... for CVXPY; the algorithm's name for torch (``"fista"``, ``"heavy_ball"``,
        ``"ssn"``, ``"mm"``, ``"running_mm"``, ...).
    solve_time : float
        Wall-clock seconds of the whole call.
    Z : array, shape (p_l, m), optional
        The X-update's argmin (numpy on the CVXPY face, a tensor on the torch face).
    W : array, shape (p_out, p_in), optional
        The W-update's argmin (with a ``layer``: shape ``layer.weight_shape``, the kernel of a convolution).
    b : array, shape (p_out,), optional
        The W-update's bias (``None`` when ``bias=False``); one entry per output channel for a convolution.
    residual : array, shape (m,) for X-updates, (p_out,) for W-updates (per output channel for a convolution)
        The first-order optimality residual of :mod:`fenchel_cvx.optimality` at the returned point, per column
        (X-updates) or per row of ``[W, b]`` (W-updates, ``w_last`` included), relative to the problem's
        scale: ``RESIDUALS[subproblem](...).per_item / .scale``. The same measure on both faces, in the face's
        array kind and dtype; NaN when ``status == "unchecked"``.
    max_residual : float
        ``max(residual)`` (NaN when ``"unchecked"``).
    iterations : int
        Iterations of the longest-running independent piece: the most any column block (CVXPY chunk) or any
        column / row (torch) took; 0 for a closed form.
    info : dict
        Face-specific extras. Torch: ``certificate`` (per column or row, what ``tol`` is tested against),
        ``gap``, ``history``, ... CVXPY: ``solver_status``, ``kkt_residual`` (Frobenius relative residual),
        ``solver_value``, chunk statuses, duals, ...
    """

    subproblem: str
    value: float
    status: str
    converged: bool
    backend: str
    solver: str
    solve_time: float
    Z: Any = None
    W: Any = None
    b: Any = None
    residual: Any = None
    max_residual: float = math.nan
    iterations: int = 0
    info: dict = field(default_factory=dict)

    @property
    def variables(self) -> dict[str, Any]:
        """The optimal variables by name (``{"Z": ...}`` or ``{"W": ..., "b": ...}``)."""
        names = SUBPROBLEMS[self.subproblem].over
        return {n: getattr(self, n) for n in names}


# -- the layer argument, checked and worded the same way on both faces ------------------------------------------
def check_layer(layer: Any, subproblem: str = "") -> Layer | None:
    """``layer`` if it is ``None`` or a :class:`~fenchel_cvx.layers.Layer`, else :class:`ChoiceError`.

    ``subproblem`` ``"x_last"`` or ``"w_last"`` (the output layer) also refuses a convolution: the output layer
    is dense, pooled or not (the cross-entropy couples one sample's outputs, which the patch form would split).
    """
    if layer is None:
        return None
    from .layers import Layer  # torch comes with it; both faces have imported it already

    if not isinstance(layer, Layer):
        shown = repr(layer) if isinstance(layer, (str, int, float)) else f"a {type(layer).__name__}"
        raise ChoiceError(f"layer: expected a fenchel_cvx.layers.Layer or None (dense: W Z + b), got {shown}; build "
                          "layers with fenchel_cvx.layers.parse_arch, e.g. parse_arch('1x8x8-c4k3-f10')[0]")
    if subproblem in ("x_last", "w_last") and layer.kind != "dense":
        raise ChoiceError(f"layer: {subproblem} updates the output layer, which is dense (fN, or pooled first: "
                          f"aRfN), got the convolution {layer.describe()}; end the network with a dense layer")
    return layer


def check_layer_shape(x: Any, name: str, layer: Layer, what: str, m: int | None = None,
                      m_from: str = "X_in") -> None:
    """Raise :class:`ShapeError` unless ``x`` (array or tensor) has the shape ``layer`` gives its argument.

    ``what``: ``"weight"`` (``layer.weight_shape``: the kernel of a convolution), ``"bias"`` (one entry per
    output channel), ``"in"`` / ``"out"`` (data matrices ``(layer.n_in, m)`` / ``(layer.n_out, m)``; any ``m``
    unless given, then ``m_from`` names the argument it came from).
    """
    got = tuple(getattr(x, "shape", ()))
    token = layer.describe()
    if what in ("weight", "bias"):
        want = layer.weight_shape if what == "weight" else layer.bias_shape
        if got != want:
            kind = ("kernel" if layer.kind == "conv" else "weights") if what == "weight" else "bias"
            per = "" if what == "weight" else " (one per output channel)" if layer.kind == "conv" else " (one per row)"
            raise ShapeError(f"{name}: expected the {kind} of layer {token} with shape {want}{per}, got {got}")
        return
    n, shape = (layer.n_in, layer.in_shape) if what == "in" else (layer.n_out, layer.out_shape)
    if len(got) != 2 or got[0] != n:
        side = "input" if what == "in" else "output"
        flat = f"{'x'.join(map(str, shape))} flattened in (C, H, W) order" if len(shape) == 3 else f"{n} features"
        raise ShapeError(f"{name}: expected shape ({n}, m), the {side} of layer {token} ({flat}, one column per "
                         f"sample), got {got}")
    if m is not None and got[1] != m:
        raise ShapeError(f"{name}: expected {m} columns (one per sample, as {m_from} has), got shape {got}")


def check_layer_anchor(layer: Layer, W0: Any, b0: Any, gamma: Any, bias: Any) -> None:
    """Raise :class:`ShapeError` when a batched W-update with ``gamma > 0`` lacks the previous batch's kernel
    ``W0`` (or, with a bias, ``b0``), naming the shapes the layer gives them -- before the patch form, whose
    matrix shapes would be the ones named otherwise. Other values of ``gamma`` are left to the W-update's checks."""
    try:
        anchored = float(gamma) > 0
    except (TypeError, ValueError):
        return
    if anchored and W0 is None:
        raise ShapeError(f"W0: required when gamma > 0 (got gamma={gamma}), expected the previous batch's kernel of "
                         f"layer {layer.describe()} with shape {layer.weight_shape}; pass W0= or set gamma=0")
    if anchored and b0 is None and bias is True:
        raise ShapeError(f"b0: required when gamma > 0 and bias=True, expected the previous batch's bias of layer "
                         f"{layer.describe()} with shape {layer.bias_shape}; pass b0= or bias=False")


# -- warnings worded the same way on both faces -------------------------------------------------------------------
_PACKAGE = os.path.dirname(os.path.abspath(__file__))


def outside_stacklevel() -> int:
    """The warnings stacklevel of the first frame outside fenchel_cvx (so the warning points at user code)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_absent_classes(loss: Any, bias: bool, gamma: float, class_mass: Callable[[], Any]) -> None:
    """Warn :class:`~fenchel_cvx.errors.NoMinimizerWarning` when a ``w_last`` has no minimizer for want of a class.

    The case: cross-entropy with a bias and ``gamma = 0`` (``rho`` does not penalize the bias), and a class with
    no sample in ``Y`` (an all-zero target row). The gradient of the objective in that class's bias is the sum of
    its softmax scores, positive everywhere, so the bias decreases without bound and the infimum is not attained.
    ``class_mass`` is called only in that case and returns the targets' sums over the samples, one per class
    (``(p,)``, numpy or torch; the torch face sums them over the processes of a data-parallel run first).
    """
    if getattr(loss, "name", None) != "ce" or not bias or gamma > 0:
        return
    mass = class_mass()
    absent = [i for i, v in enumerate(mass.tolist()) if not v > 0]
    if not absent:
        return
    shown = ", ".join(map(str, absent[:10])) + (f", ... ({len(absent)} in all)" if len(absent) > 10 else "")
    one = len(absent) == 1
    warnings.warn(f"w_last: cross-entropy with bias=True and gamma=0 has no minimizer: class{'' if one else 'es'} "
                  f"{shown} of the {len(mass)} in Y {'has' if one else 'have'} no sample (an all-zero target row), "
                  f"so {'its bias decreases' if one else 'their biases decrease'} without bound (rho does not penalize "
                  "the bias) and the infimum is not attained; the solver returns a point of near-infimal value far "
                  "out, not a minimizer (another solver or face returns another). Expected gamma > 0 (with W0, b0) "
                  "or a batch Y in which every class is present", NoMinimizerWarning, stacklevel=outside_stacklevel())
