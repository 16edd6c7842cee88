r"""Torch X-updates: eqs. (14)-(16) solved for all data points at once, with a certificate per column.

Side by side with :mod:`fenchel_cvx.cvx.x_updates`: same names, same arguments, same first line of math, plus
``tol``, ``max_iter``, the warm start ``Z0`` and ``warn``. Layout: the paper's ``(features, samples)``; ``Z`` has
one column per data point; ``W Z + b`` means ``W Z + b 1^T``. Tensors in, tensors out: dtype (float32 or
float64) and device follow ``W``.

Both subproblems separate over the columns ``z`` of ``Z`` and share one shape,

.. math::  P(z) = \ell(W z + b) + c\, B_{prev}(z, u), \qquad z \in \operatorname{dom} F_{prev},

with a smooth convex ``ell`` -- ``lam B_act(v, .)`` for :func:`x_hidden`, the loss for :func:`x_last` -- and
``c = lam_prev``. ``P`` is strongly convex with modulus ``mu = c / sup phi_prev'`` (``F_prev'' >= 1/sup
phi_prev'``), so the argmin is unique.

Certificate: what ``tol`` is tested against (``info["certificate"]``)
---------------------------------------------------------------------
Fenchel duality with the dual point ``s = grad ell(t)`` at any ``t`` gives, for every ``z`` in the domain,

.. math::  \text{gap}(z) = D_\ell(Wz + b,\ t) + c\, B_{prev}\big(z,\ u - W^\top s / c\big)
           \;\ge\; P(z) - \min P,

a sum of Bregman / Fenchel-Young terms, each ``>= 0`` and evaluated without cancellation (``D_ell`` is
``lam B_act(phi(t), Wz+b)``, ``||Wz+b - t||^2`` or a KL divergence). With ``t = Wz + b`` the first term vanishes
and the gap is ``c B_prev(z, u - grad g(z)/c)``, zero exactly at the argmin, where ``z = phi_prev(u - grad
g(z)/c)``; it is at least ``(mu/2) ||R||^2`` for the natural residual ``R`` of :mod:`fenchel_cvx.optimality`.
The certificate of column ``j`` is the *relative* gap

.. math::  \text{certificate}_j = \text{gap}_j / \text{scale}_j,

``scale_j`` being the sum of the absolute values of the terms whose sum is ``P_j`` (elementwise ``lam|F(v)|``,
``lam|F*(Wz+b)|``, ``lam|v (Wz+b)|``, ``c|F_prev(z)|``, ``c|F*_prev(u)|``, ``c|u z|``, or the loss's split form
``|y|^2, |yhat|^2, 2|y yhat|`` / ``|lse(yhat)|, |y yhat|``): the magnitude below which ``P_j`` cannot be resolved
in floating point. ``certificate_j <= tol`` certifies that column ``j``'s value is within ``tol * scale_j`` of its
minimum and that ``||z_j - z_j*|| <= sqrt(2 tol scale_j / mu)``: the default ``tol = 1e-6`` pins values to
about 1e-6 and argmins to about 1e-3 relative; argmins to 1e-4..1e-5 need ``tol`` near 1e-9..1e-10 (a few more
iterations: convergence is linear). ``info["gap"]`` holds the absolute gaps. The certificate is evaluated in
float64 for float32 inputs (float32 round-off in the entropic ``B`` terms alone would floor it near 1e-8).

The reported ``residual`` is not the certificate but the optimality residual of :mod:`fenchel_cvx.optimality`
(the natural residual ``R`` per column over ``max(1, ||Z||_F)``: the same measure as the CVXPY face), formed
once at the returned point from the ``W Z + b`` the solver kept: one GEMM per call. It is linear in the
distance to the argmin where the gap is quadratic, so a certificate of ``tol`` puts it near ``sqrt(tol)``.

Methods
-------
* FISTA on ``g(z) = ell(Wz+b)`` with the *exact* proximal map of ``c B_prev(., u)`` (forward-backward: nothing
  about ``F_prev`` is differentiated, so the entropic sigmoid/tanh ``F`` with its infinite slope at the
  boundary is no obstacle). The prox solves ``x + a phi_prev(x) = u + a r`` (``a = L/c``) and returns
  ``phi_prev(x)``: closed form for ReLU and leaky ReLU, a safeguarded scalar Newton for sigmoid and tanh that
  keeps every iterate inside ``[0, 1]`` / ``[-1, 1]``. Step ``1/L``, ``L = sup ell'' ||W||_2^2`` (power
  iteration); the strongly convex momentum ``(1 - sqrt(q)) / (1 + sqrt(q))``, ``q = mu / (L + mu)``, with
  per-column gradient restart (O'Donoghue & Candes). Cost per iteration: two GEMMs, ``4 q p m`` flops
  (``W^T S`` and ``W Z``; ``W Z`` is kept so extrapolated products ``W y`` cost no GEMM), plus elementwise work;
  the gap costs no GEMM and is checked at iterations predicted from the observed linear rate; finished columns
  leave the batch. Iterations grow like ``sqrt(kappa) log(1/tol)``, ``kappa = L / mu = lam ||W||_2^2 sup phi'
  sup phi_prev' / lam_prev``. A per-column Newton method would need ``p x p`` Hessians, ``m q p^2`` flops per
  step against ``4 q p m`` for a FISTA step (a factor ``p / 4``) -- not competitive at the moderate kappa met
  in training.
* :func:`x_last` with the MSE loss, every ``act_prev``: the dual is smooth and strongly concave in ``alpha`` in
  ``R^K`` per column, ``D(alpha) = alpha^T (y - b) - ||alpha||^2/4 + c F*_prev(u) - c F*_prev(u + W^T alpha /
  c)``, with primal ``z(alpha) = phi_prev(u + W^T alpha / c)`` (in the domain by construction) and gap exactly
  ``||y - b - alpha/2 - W z(alpha)||^2``. (Semi)smooth Newton with the ``K x K`` Hessians ``I/2 + W diag(
  phi_prev') W^T / c`` (batched Cholesky in float64) and a per-column Armijo search: 3-5 steps at any
  conditioning, where FISTA needs ``sqrt(kappa)`` times more. Cross-entropy uses FISTA (``L = ||W||_2^2 / 2``).
* Certified solves with ``act_prev`` ReLU (``x_hidden``, and ``x_last`` with cross-entropy): there
  ``c B_prev(z, u) = c (||z||^2 / 2 - u^T z) + const`` on ``z >= 0`` is smooth, so ``P`` is a smooth function
  with curvature in ``[mu, L + mu]`` on the nonnegative orthant, piecewise quadratic for ReLU, leaky ReLU and
  MSE data terms. Projected heavy ball (Polyak's step and momentum for that curvature range) contracts the
  distance to the argmin of a quadratic by ``(sqrt(kappa') - 1) / (sqrt(kappa') + 1)`` per step, ``kappa' = (L +
  mu) / mu``, where FISTA's constant momentum gives about ``1 - 1 / sqrt(kappa')``: on the benchmark's
  ``x_hidden`` 7 iterations to a certificate of 1e-8 against FISTA's 10-11. Heavy ball need not converge on
  non-quadratic functions, so each column's step is taken only if it lowers ``P`` by a fixed fraction of what a
  projected gradient step is sure to (otherwise that column takes the projected gradient step next): every
  step taken then decreases ``P`` enough for a global linear rate, and a capped solve never ends above its
  start (``_heavy_ball``). Its gradient is taken at the iterate, so a certificate costs no GEMM. Uncertified
  capped runs (inexact BCD) keep FISTA's steps.
* ``step_dtype=torch.float32`` on float64 inputs: the steps (FISTA's or heavy ball's), and the certificates that
  stop them, in float32; then one certificate from float64 products at the returned point, which is the one reported --
  columns it does not confirm go on in float64 (see ``_fista_confirmed_in``). The answer is as certified as a
  float64 run's, for about half the GEMM time of the steps.
* On CPU the columns are solved in blocks of about ``_CPU_BLOCK`` entries per ``(rows, block)`` array, which
  keeps an iteration's arrays in cache; on a GPU, one batch. FISTA stops early, with status ``"stalled"`` and a
  warning, when the certificate has not halved in ``_STALL`` iterations (the dtype's round-off floor lies above
  ``tol``).

Layers (``layer=``, a convolution or a layer after average pooling, :mod:`fenchel_cvx.layers`)
--------------------------------------------------------------------------------------------------
Nothing above needs ``W`` as a matrix: FISTA, the certificate and the residual use ``W Z`` and ``W^T S`` only,
so with a layer they use its operator, ``A(Z; W)`` (``conv2d`` after pooling) and its adjoint ``A^T`` (the
transposed convolution, then the adjoint of pooling), and ``L`` comes from ``layer.norm_sq(W)`` (Lanczos, once
per call). The MSE :func:`x_last`'s dual Newton needs the ``K x n_in`` matrix of the output layer (dense after
pooling): it is formed once per call as ``A^T`` applied to the ``K`` unit vectors. ``None`` or a plain dense
layer runs the matrix code above, unchanged.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import torch

from .._checks import check_choice, check_flag, check_ndim, check_scalar
from ..activations import Activation, LeakyReLU, ReLU, Sigmoid, get_activation
from ..errors import DomainError, ShapeError, TensorMismatchError
from ..losses import CrossEntropyLoss, Loss, MSELoss, get_loss
from ..optimality import Residual, natural_residual
from ..subproblems import SubproblemResult, check_layer, check_layer_shape
from ._common import (
    check_bias,
    check_max_iter,
    check_step_dtype,
    check_tensor,
    check_tol,
    finish,
    solver_errors,
    spectral_norm_sq,
    sup_dphi,
    tiny,
)

if TYPE_CHECKING:
    from ..layers import Layer

__all__ = ["x_hidden", "x_last"]

_CHECK_EVERY = 4  # certificate period of FISTA (iterations); the gap costs about half an iteration
_NEWTON_MAX = 60  # safeguarded scalar Newton steps of the sigmoid / tanh prox (each step at least bisects)
# FISTA checks a certificate with the dual point of the extrapolated iterate, which is usually better than the
# returned point's own (the one a confirmation has): its steps in float32 aim this much below tol, one step or so
_MARGIN = 0.25
# ... heavy ball's certificate is the returned point's own: only float32's round-off in it needs room
_MARGIN_HB = 0.5
_CPU_BLOCK = 1 << 20  # entries of a (rows, block) array in one CPU column block (8 MB in float64)
_MIN_BLOCK = 256
# FISTA gives up when the worst residual has not halved in this many iterations: the iterates have hit the
# round-off floor of the working dtype (a relative gap near 1e-10 in float32). Linear convergence that slow
# would mean kappa > 1e5, far beyond the X-updates met in training.
_STALL = 500
# ... and steps in a lower precision (certified float32 steps) hand over to the inputs' dtype after this many
_LOW_STALL = 25
# Below this tol a float32 certificate cannot tell an optimal start from a near one (its floor is near 1e-13
# relative): the start is certified in the inputs' dtype first
_GUIDE_TOL = 1e-10


# -- elementwise sums, each one or two passes over the data -------------------------------------------------------
def _B(act: Activation, v: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Elementwise B(v, u) for ``v`` already in the domain (prox outputs, ``phi(t)``, checked inputs).

    Skips :meth:`Activation.B`'s domain masking, which costs several passes over the data on every
    certificate; the cancellation-free formula and the clip of round-off below zero are the same (ReLU's
    formula is a sum of terms that are >= 0 on the domain, so it needs no clip).
    """
    val = act._B_inside(v, u)
    return val if isinstance(act, ReLU) else val.clamp_min_(0.0)


def _sum_F(act: Activation, Z: torch.Tensor) -> torch.Tensor:
    """Column sums of ``F(Z) >= 0`` (every F here is >= 0) for ``Z`` in the domain."""
    if isinstance(act, ReLU):  # (Z Z).sum(0): a column norm over dim 0 of a row-major array is several times slower
        return (Z * Z).sum(0).mul_(0.5)
    return act.F(Z).sum(0)


def _sum_abs_F_conj(act: Activation, T: torch.Tensor) -> torch.Tensor:
    """Column sums of ``|F*(T)|`` (only the sigmoid's ``F* = softplus - log 2`` takes negative values)."""
    if isinstance(act, ReLU):
        return 0.5 * torch.linalg.vector_norm(torch.relu(T), dim=0) ** 2
    val = act.F_conj(T)
    return (val.abs_() if isinstance(act, Sigmoid) else val).sum(0)


def _sum_F_conj(act: Activation, X: torch.Tensor) -> torch.Tensor:
    """Column sums of ``F*(X)`` (signed)."""
    if isinstance(act, ReLU):
        return 0.5 * torch.linalg.vector_norm(torch.relu(X), dim=0) ** 2
    return act.F_conj(X).sum(0)


def _sum_abs_prod(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return (A * B).abs_().sum(0)


# -- the smooth part ell(t), t = W z + b, column by column ---------------------------------------------------------
# grad ell(t) = gscale * grad_part(t): the scalar is folded into later axpy's instead of costing its own pass.
class _ActTerm:
    """``ell(t) = lam B_act(v, t)``: the x_hidden data term."""

    def __init__(self, act: Activation, lam: float, V: torch.Tensor, FV_abs: torch.Tensor | None = None):
        self.act, self.gscale, self.V = act, lam, V
        self.exact_low = isinstance(act, (ReLU, LeakyReLU))
        self.curv = lam * sup_dphi(act)
        self.FV_abs = _sum_F(act, V) if FV_abs is None else FV_abs

    def take(self, keep: Any) -> _ActTerm:
        return _ActTerm(self.act, self.gscale, self.V[:, keep], self.FV_abs[keep])

    def to(self, dtype: torch.dtype) -> _ActTerm:
        return _ActTerm(self.act, self.gscale, self.V.to(dtype), self.FV_abs.to(dtype))

    def grad_part(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is not None and isinstance(self.act, ReLU):
            return torch.clamp_min(T, 0.0, out=out).sub_(self.V)
        return self.act.forward(T).sub_(self.V)

    def bregman(self, Tz: torch.Tensor, Ty: torch.Tensor) -> torch.Tensor:
        # D_ell(Tz, Ty) = lam (F*(Tz) - F*(Ty) - phi(Ty)(Tz - Ty)) = lam B(phi(Ty), Tz), exact near 0.
        return self.gscale * _B(self.act, self.act.forward(Ty), Tz).sum(0)

    def value(self, T: torch.Tensor) -> torch.Tensor:
        return self.gscale * _B(self.act, self.V, T).sum(0)

    def partial_value(self, T: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """``value(T)`` less ``lam F(v)`` (the same for every ``T``): ``lam sum(F*(t) - v t)``, enough to compare
        two points; ``out``: scratch of ``T``'s shape."""
        if isinstance(self.act, ReLU):  # F*(t) - v t = t (t_+ / 2 - v): one pass per operation, no temporaries
            return torch.clamp_min(T, 0.0, out=out).mul_(0.5).sub_(self.V).mul_(T).sum(0).mul_(self.gscale)
        return self.gscale * (self.act.F_conj(T) - torch.mul(self.V, T, out=out)).sum(0)

    def scale(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is not None and isinstance(self.act, ReLU):  # the same sums, through the scratch ``out``
            conj = torch.clamp_min(T, 0.0, out=out).square_().sum(0).mul_(0.5)
            return self.gscale * (self.FV_abs + conj + torch.mul(self.V, T, out=out).abs_().sum(0))
        return self.gscale * (self.FV_abs + _sum_abs_F_conj(self.act, T) + _sum_abs_prod(self.V, T))


class _MSETerm:
    """``ell(t) = ||y - t||^2``."""

    curv, gscale, exact_low = 2.0, 2.0, True

    def __init__(self, Y: torch.Tensor):
        self.Y = Y

    def take(self, keep: Any) -> _MSETerm:
        return _MSETerm(self.Y[:, keep])

    def to(self, dtype: torch.dtype) -> _MSETerm:
        return _MSETerm(self.Y.to(dtype))

    def grad_part(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sub(T, self.Y, out=out)

    def bregman(self, Tz: torch.Tensor, Ty: torch.Tensor) -> torch.Tensor:
        return ((Tz - Ty) ** 2).sum(0)

    def value(self, T: torch.Tensor) -> torch.Tensor:
        return ((self.Y - T) ** 2).sum(0)

    def partial_value(self, T: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return torch.sub(self.Y, T, out=out).square_().sum(0)

    def scale(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return ((self.Y.abs() + T.abs()) ** 2).sum(0)  # |y|^2 + |t|^2 + 2|y t|, the split form's pieces


class _CETerm:
    """``ell(t) = logsumexp(t) - y^T t`` (columns of ``Y`` are probability vectors)."""

    curv, gscale, exact_low = 0.5, 1.0, False  # ||diag(pi) - pi pi^T||_2 <= 1/2

    def __init__(self, Y: torch.Tensor):
        self.Y = Y

    def take(self, keep: Any) -> _CETerm:
        return _CETerm(self.Y[:, keep])

    def to(self, dtype: torch.dtype) -> _CETerm:
        return _CETerm(self.Y.to(dtype))

    def grad_part(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.softmax(T, dim=0).sub_(self.Y)  # K rows: ``out`` would save little

    def bregman(self, Tz: torch.Tensor, Ty: torch.Tensor) -> torch.Tensor:
        ly = torch.log_softmax(Ty, dim=0)
        return (ly.exp() * (ly - torch.log_softmax(Tz, dim=0))).sum(0).clamp_min(0.0)  # KL(softmax Ty || Tz)

    def value(self, T: torch.Tensor) -> torch.Tensor:
        return -(self.Y * torch.log_softmax(T, dim=0)).sum(0)

    def partial_value(self, T: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.value(T)

    def scale(self, T: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.logsumexp(T, dim=0).abs_() + _sum_abs_prod(self.Y, T)


# -- the separable part c B_prev(z, u) ----------------------------------------------------------------------------
class _PrevTerm:
    """``h(z) = c B_prev(z, u)`` with its exact proximal map."""

    def __init__(self, act: Activation, c: float, U: torch.Tensor, FU_abs: torch.Tensor | None = None):
        self.act, self.c, self.U = act, c, U
        self.mu = c / sup_dphi(act)
        self.exact_low = isinstance(act, (ReLU, LeakyReLU))
        self._FU_abs = FU_abs

    @property
    def FU_abs(self) -> torch.Tensor:
        # only certificates need it: computed on first use
        if self._FU_abs is None:
            self._FU_abs = _sum_abs_F_conj(self.act, self.U)
        return self._FU_abs

    def take(self, keep: Any) -> _PrevTerm:
        return _PrevTerm(self.act, self.c, self.U[:, keep], None if self._FU_abs is None else self._FU_abs[keep])

    def to(self, dtype: torch.dtype) -> _PrevTerm:
        return _PrevTerm(self.act, self.c, self.U.to(dtype), None if self._FU_abs is None else self._FU_abs.to(dtype))

    # The prox argmin_z c B(z, u) + (L/2)||z - R||^2 at R = Yv - step G (a = L/c) in two parts, so that the
    # gradient part of its right-hand side can be accumulated by a GEMM without forming G = A^T S.
    def prox_rhs(self, Yv: torch.Tensor, a: float, out: torch.Tensor | None = None) -> torch.Tensor:
        """``u + a Yv``: the prox's right-hand side ``r = u + a R`` before its part ``-a step G``; ``out``: scratch."""
        return torch.add(self.U, Yv, alpha=a, out=out)

    def solve(self, r: torch.Tensor, a: float, Zg: torch.Tensor) -> torch.Tensor:
        """The prox from its right-hand side ``r`` (overwritten where it can hold the answer); guess ``Zg``."""
        # Optimality c(phi^{-1}(z) - u) + L(z - R) = 0 with x = phi^{-1}(z): x + a phi(x) = u + a R =: r.
        act = self.act
        if isinstance(act, ReLU):
            return r.clamp_min_(0.0).mul_(1.0 / (1.0 + a))
        if isinstance(act, LeakyReLU):
            return torch.where(r >= 0, r / (1.0 + a), (act.alpha / (1.0 + a * act.alpha)) * r)
        return _bounded_prox(act, r, a, Zg)

    def value(self, Z: torch.Tensor) -> torch.Tensor:
        return self.c * _B(self.act, Z, self.U).sum(0)

    def partial_value(self, Z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """``value(Z)`` less ``c F*(u)`` (the same for every ``Z``): enough to compare two points, one pass cheaper;
        ``out``: scratch of ``Z``'s shape."""
        if isinstance(self.act, ReLU):  # F(z) - u z = (z/2 - u) z: one temporary
            return torch.mul(Z, 0.5, out=out).sub_(self.U).mul_(Z).sum(0).mul_(self.c)
        return self.c * (_sum_F(self.act, Z) - (self.U * Z).sum(0))

    def cert(self, Z: torch.Tensor, G: torch.Tensor, gscale: float,
             work: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """``c B(z, u - gscale G / c)``, ``gscale G = W^T grad ell``: the second term of the gap. ``work``: two
        scratch arrays of ``Z``'s shape, for ReLU's ``B = (z - w_+)^2 / 2 + z w_-`` (``ReLU._B_inside``'s terms)."""
        if work is None or not isinstance(self.act, ReLU):
            return self.c * _B(self.act, Z, torch.add(self.U, G, alpha=-gscale / self.c)).sum(0)
        w = torch.add(self.U, G, alpha=-gscale / self.c, out=work[0])
        a = torch.clamp_min(w, 0.0, out=work[1])
        w = torch.sub(a, w, out=w).mul_(Z)  # z w_-
        return torch.sub(Z, a, out=a).square_().mul_(0.5).add_(w).sum(0).mul_(self.c)

    def scale(self, Z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if out is not None and isinstance(self.act, ReLU):  # the same sums, through the scratch ``out``
            half_sq = torch.mul(Z, Z, out=out).sum(0).mul_(0.5)
            return self.c * (self.FU_abs + half_sq + torch.mul(self.U, Z, out=out).abs_().sum(0))
        return self.c * (self.FU_abs + _sum_F(self.act, Z) + _sum_abs_prod(self.U, Z))


def _bounded_prox(act: Activation, r: torch.Tensor, a: float, Zg: torch.Tensor) -> torch.Tensor:
    """Solve ``x + a phi(x) = r`` elementwise for a bounded ``phi`` (sigmoid, tanh) and return ``phi(x)``.

    The left side ``h`` is increasing with slope ``1 + a phi'`` in ``[1, 1 + a s]``, ``s = sup phi'``. Newton's
    error contracts by at least ``a s`` per step, so for ``a s < 1/2`` plain Newton converges from anywhere
    (then quadratically). Otherwise ``h`` is steep in the middle and flat in the tails, where Newton overshoots:
    it is safeguarded as in ``rtsafe`` -- the bracket ``[r - a hi, r - a lo]`` (``phi`` maps into ``(lo, hi)``)
    shrinks at every step, and a step that leaves it or does not halve the step before last bisects -- and
    started from the better (smaller ``|h|``) of two guesses: ``r - a z_prev``, exact once the outer iterates
    settle, and the root for the piecewise-linear "hard" ``phi`` (slope ``s`` through ``phi(0)``, clipped to
    ``[lo, hi]``), within O(1) of the root from anywhere.
    """
    lo, hi = act.domain
    s = sup_dphi(act)
    sigmoid = isinstance(act, Sigmoid)
    # h(x) is computed with an error of about eps (|x| + a + |r|); a Newton step (slope >= 1) below a few times
    # that is round-off, and asking for less makes Newton cycle in the last bits.
    noise = (8 * torch.finfo(r.dtype).eps) * (r.abs() + (a * max(abs(lo), abs(hi)) + 1.0))
    x = torch.add(r, Zg, alpha=-a)
    guarded = a * s >= 0.5
    if guarded:
        blo, bhi = r - a * hi, r - a * lo
        mid = 0.5 * (lo + hi)  # phi(0) for both
        hard = (r - a * mid) / (1.0 + a * s)  # middle piece; the clipped pieces where phi_hard leaves (lo, hi)
        y = mid + s * hard
        hard = torch.where(y > hi, r - a * hi, torch.where(y < lo, r - a * lo, hard))
        h_warm = torch.add(x, act.forward(x), alpha=a).sub_(r).abs_()
        h_hard = torch.add(hard, act.forward(hard), alpha=a).sub_(r).abs_()
        x = torch.minimum(torch.maximum(torch.where(h_hard < h_warm, hard, x), blo), bhi)
        dx_old = bhi - blo
    for _ in range(_NEWTON_MAX):
        ph = act.forward(x)
        h = torch.add(x, ph, alpha=a).sub_(r)
        slope = (ph * (1.0 - ph) if sigmoid else 1.0 - ph * ph).mul_(a).add_(1.0)  # 1 + a phi'(x)
        dx = h.div_(slope)
        converged = dx.abs() <= noise
        if bool(converged.all()):
            break
        xn = x - dx
        if guarded:
            blo = torch.where(dx < 0, x, blo)  # h < 0: the root is to the right of x
            bhi = torch.where(dx > 0, x, bhi)
            # Strict bounds: at convergence a round-off h puts xn on the bracket end just set (and round-off
            # steps do not halve): neither is a reason to bisect, which would throw x across a stale bracket.
            bisect = ((xn < blo) | (xn > bhi) | (2 * dx.abs() > dx_old.abs())) & ~converged
            xn = torch.where(bisect, 0.5 * (blo + bhi), xn)
            dx_old = torch.where(bisect, 0.5 * (bhi - blo), dx)
        x = xn
    return act.forward(x)


# -- the linear map Z -> W Z (a matrix) or A(Z; W) (a layer's operator) -------------------------------------------
class _Matrix:
    """``Z -> W Z + b`` with the matrix ``W`` (``b`` a ``(q, 1)`` column): two GEMMs per FISTA iteration."""

    def __init__(self, W: torch.Tensor):
        self.W, self.Wt = W, W.T
        self.rows = max(W.shape)

    def affine(self, b: torch.Tensor | None, Z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.addmm(b, self.W, Z, out=out) if b is not None else torch.mm(self.W, Z, out=out)

    def adjoint(self, G: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return torch.mm(self.Wt, G, out=out)

    def adjoint_add(self, R: torch.Tensor, S: torch.Tensor, alpha: float, AS: torch.Tensor | None = None
                    ) -> torch.Tensor:
        """``R += alpha W^T S`` in place: one GEMM that accumulates, no ``W^T S`` of its own (``AS``, the product
        when a certificate has formed it, is not used: the same arithmetic at every step)."""
        return R.addmm_(self.Wt, S, alpha=alpha)

    def norm_sq(self) -> float:
        return spectral_norm_sq(self.W)

    def to(self, dtype: torch.dtype) -> _Matrix:
        return _Matrix(self.W.to(dtype))


class _LayerMap:
    """``Z -> A(Z; W) + b`` of a :class:`~fenchel_cvx.layers.Layer` (``b`` one entry per output channel)."""

    def __init__(self, layer: Layer, W: torch.Tensor):
        self.layer, self.W = layer, W
        self.rows = max(layer.n_in, layer.n_out)

    def affine(self, b: torch.Tensor | None, Z: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.layer.apply(self.W, b, Z)  # a convolution allocates its answer: ``out`` unused

    def adjoint(self, G: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return self.layer.adjoint(self.W, G)  # a convolution's adjoint allocates its answer: ``out`` unused

    def adjoint_add(self, R: torch.Tensor, S: torch.Tensor, alpha: float, AS: torch.Tensor | None = None
                    ) -> torch.Tensor:
        # the adjoint is a transposed convolution: reuse ``AS`` when a certificate has formed it (same arithmetic)
        return R.add_(self.layer.adjoint(self.W, S) if AS is None else AS, alpha=alpha)

    def norm_sq(self) -> float:
        return self.layer.norm_sq(self.W)

    def to(self, dtype: torch.dtype) -> _LayerMap:
        return _LayerMap(self.layer, self.W.to(dtype))


class _Scratch:
    """Named scratch arrays reused from step to step while the running columns stay the same: a fresh ``p x m``
    array per operation costs about as much as the arithmetic on it (allocation, first touch of its pages).
    ``scratch(name, like)`` is the array ``name`` with ``like``'s shape and dtype (new when those change)."""

    def __init__(self) -> None:
        self.pool: dict[str, torch.Tensor] = {}

    def __call__(self, name: str, like: torch.Tensor) -> torch.Tensor:
        t = self.pool.get(name)
        if t is None or t.shape != like.shape or t.dtype != like.dtype:
            t = self.pool[name] = torch.empty_like(like)
        return t


class _Columns:
    """The outputs of a certified column iteration, filled as columns finish, and its check schedule.

    Shared by :func:`_fista` and :func:`_heavy_ball`: when to check next (:func:`_next_check`), the stall test
    (``stall`` iterations without a halving of the worst certificate: the working dtype's round-off floor lies
    above ``tol``), and the retiring of finished columns into the outputs at their original positions.
    """

    def __init__(self, Z0: torch.Tensor, T0: torch.Tensor, tol: float, max_iter: int, stall: int):
        m = Z0.shape[1]
        self.Z, self.T = Z0.clone(), T0.clone()  # T: W z + b of every returned column (the residual needs it)
        self.residual, self.gap = Z0.new_full((m,), math.inf), Z0.new_full((m,), math.inf)
        self.idx = torch.arange(m, device=Z0.device)  # original positions of the columns still running
        self.tol, self.max_iter, self.stall = tol, max_iter, stall
        self.history: list[tuple[int, float]] = []
        self.next_check, self.best, self.stalled = 0, (0, math.inf), False

    def due(self, k: int) -> bool:
        return k in (self.next_check, self.max_iter)

    def check(self, k: int, Z: torch.Tensor, T: torch.Tensor, gap: torch.Tensor, res: torch.Tensor,
              flag: torch.Tensor | None = None) -> torch.Tensor | None:
        """Record the certificates ``res`` (gaps ``gap``) of the running columns at iteration ``k`` and retire
        those done (all of them at ``max_iter`` or when stalled). Returns the positions, among the running
        columns, of those that go on -- ``None`` if none left -- or an empty tensor once all are done. ``flag``: a
        boolean the caller needs on the host, read with the rest (``self.flag``)."""
        done = res <= self.tol
        # the check's one read of the device (on a GPU, one wait): the worst certificate and how many are done
        read = [res.max(), done.sum().to(res.dtype)] + ([] if flag is None else [flag.to(res.dtype)])
        worst, n_done, *rest = torch.stack(read).tolist()
        self.flag = bool(rest[0]) if rest else None
        n_done = int(n_done)
        self.next_check = k + _next_check(self.history, k, worst, self.tol)
        self.history.append((k, worst))
        if worst < 0.5 * self.best[1]:
            self.best = (k, worst)
        self.stalled = k - self.best[0] >= self.stall
        n = done.numel()
        if k == self.max_iter or self.stalled:
            done, n_done = torch.ones_like(done), n
        if not n_done:
            return None
        res, gap = res.to(Z.dtype), gap.to(Z.dtype)
        if n_done == n == self.Z.shape[1]:  # the whole batch at once: plain copies, no indexing
            self.Z.copy_(Z), self.T.copy_(T), self.residual.copy_(res), self.gap.copy_(gap)
            return self.idx[:0]
        # the columns that go on, then those done, each in order: integer indices, where boolean masks would
        # each read the device again
        order = torch.argsort(done.to(torch.uint8), stable=True)
        going, leaving = order[:n - n_done], order[n - n_done:]
        cols = self.idx[leaving]
        self.Z[:, cols], self.T[:, cols] = Z[:, leaving], T[:, leaving]
        self.residual[cols], self.gap[cols] = res[leaving], gap[leaving]
        self.idx = self.idx[going]
        return going

    def result(self, k: int, L: float, mu: float, method: str) -> dict:
        return {"Z": self.Z, "T": self.T, "residual": self.residual, "gap": self.gap, "iterations": k,
                "lipschitz": L, "mu": mu, "history": self.history, "stalled": self.stalled, "method": method}


# -- accelerated forward-backward over all columns -----------------------------------------------------------------
def _fista(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z0: torch.Tensor,
           tol: float, max_iter: int, L: float, certify: bool = True, choose: bool = True,
           guide: bool = False, stall: int = _STALL) -> dict:
    """Accelerated prox-gradient, all columns at once; a column leaves the batch once its gap is below tol.

    Momentum is the strongly convex constant ``(1 - sqrt(q)) / (1 + sqrt(q))``, ``q = mu / (L + mu)``, with
    ``mu`` the modulus of the prox term; a column whose step makes an obtuse angle with its gradient mapping
    restarts (O'Donoghue & Candes), which covers a larger local modulus; at large kappa it takes fewer
    iterations than FISTA's ``t_k`` schedule with the same restart.

    Accelerated iterates need not decrease the objective, so a column stopped by ``max_iter`` (not by ``tol``)
    keeps its start ``Z0`` -- with the certificate computed there -- if that is the lower of the two: a capped
    solve (inexact BCD) never increases its block objective.

    ``certify=False`` takes exactly ``max_iter`` steps with no certificate (``residual`` and ``gap`` are NaN) and
    keeps, per column, the lower objective of ``Z0`` and the last iterate (compared without the ``F*_prev(u)``
    term they share, so without a pass of ``B``): the same steps, still never worse than the start;
    ``choose=False`` leaves that choice to the caller and returns the last iterate (``Z`` and ``iterations``).
    ``guide=True``: the certificates only guide the steps (another one is reported), so those of piecewise-quadratic
    terms are evaluated in the working dtype (see :func:`_fista_confirmed_in`). ``stall``: iterations without a
    halving of the worst certificate before the run gives up (status ``"stalled"``).
    """
    m = Z0.shape[1]
    a, step = L / prev.c, smooth.gscale / L
    q = prev.mu / (L + prev.mu)
    momentum = (1.0 - q ** 0.5) / (1.0 + q ** 0.5)

    def affine(Z):
        return A.affine(b, Z)

    Z, T = Z0, affine(Z0)
    T0 = T
    out = _Columns(Z0, T, tol, max_iter, stall) if certify else None
    dZ, dT = Z, T  # placeholders: the first step has no momentum
    beta = Z0.new_zeros(m)
    scratch = _Scratch()  # "z0"/"z1" alternate as the new iterate's home: the old one is read while it is written
    k = 0
    for k in range(max_iter + 1):
        if not certify and k == max_iter:
            return _unchecked_end(smooth, prev, Z0, T0, Z, T, k, L) if choose else {"Z": Z, "iterations": k}
        if k == 0:
            Yv, Ty = Z, T
        else:
            Yv, Ty = torch.addcmul(Z, beta, dZ, out=scratch("Yv", Z)), torch.addcmul(T, beta, dT)
        S = smooth.grad_part(Ty)
        G = None
        if certify and out.due(k):  # G = A^T S itself only where a certificate reads it; the step accumulates
            G = A.adjoint(S, out=scratch("G", Z))
            gap, res = _certificate(smooth, prev, Z, T, Ty, G, guide)
            if k == 0:
                start = (Z0, T, gap, res)
            elif k == max_iter:
                Z, T, gap, res = _no_worse_than_start(smooth, prev, Z, T, gap, res, start, out.idx, tol)
            going = out.check(k, Z, T, gap, res)
            if going is not None:
                if going.numel() == 0:
                    break
                smooth, prev = smooth.take(going), prev.take(going)
                Z, T, dZ, dT, Yv, S, G = (Z[:, going], T[:, going], dZ[:, going], dT[:, going], Yv[:, going],
                                          S[:, going], G[:, going])
        # the same arithmetic at every step, certified or not: a capped run takes exactly the certified steps
        Znew = prev.solve(A.adjoint_add(prev.prox_rhs(Yv, a, out=scratch(f"z{k % 2}", Z)), S, -a * step, G), a, Z)
        Tnew = affine(Znew)
        dZ = torch.sub(Znew, Z, out=scratch("dZ", Z))
        if k == 0:  # Yv = Z: the angle <Yv - Znew, dZ> = -||dZ||^2 calls for no restart
            restart = torch.zeros(Znew.shape[1], dtype=torch.bool, device=Znew.device)
        else:  # Yv is dead after the prox: the test overwrites it
            restart = Yv.sub_(Znew).mul_(dZ).sum(0) > 0
        beta = torch.where(restart, 0.0, momentum)
        dT = Tnew - T
        Z, T = Znew, Tnew
    return out.result(k, L, prev.mu, "fista")


# -- heavy ball for a ReLU prev term --------------------------------------------------------------------------------
#: A heavy-ball step must lower the objective by this fraction of what a projected gradient step is sure to
_SUFFICIENT = 0.1
#: ... and the sum of the magnitudes of its terms must stay below this fraction of the dtype's largest number
_HB_RANGE = 1e-4


def _heavy_ball(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z0: torch.Tensor,
                tol: float, max_iter: int, L: float, guide: bool = False, stall: int = _STALL) -> dict:
    """Projected heavy ball (Polyak) with a sufficient-decrease safeguard, all columns at once: the certified
    iteration where ``B_prev`` is ReLU's. Same contract as :func:`_fista` with ``certify=True``.

    With ReLU's ``B_prev``, ``P(z) = ell(W z + b) + c (||z||^2 / 2 - u^T z) + const`` on ``z >= 0``: a smooth
    objective with curvature between ``mu = c`` and ``Lt = L + mu`` on the nonnegative orthant, so no proximal
    map is needed. The step ``4 / (sqrt(Lt) + sqrt(mu))^2`` and the momentum ``((sqrt(kappa) - 1) / (sqrt(kappa)
    + 1))^2``, ``kappa = Lt / mu``, are Polyak's for quadratics, where the distance to the argmin contracts by
    ``(sqrt(kappa) - 1) / (sqrt(kappa) + 1)`` per step -- about FISTA's ``1 - 1 / sqrt(kappa)`` squared for
    large ``kappa`` -- and ``P`` is quadratic once the kinks of ``ell`` and the bound ``z >= 0`` settle. Outside
    quadratics heavy ball need not converge, so each column's step is checked: it is taken only if it lowers
    ``P`` by at least ``_SUFFICIENT`` of ``(Lt / 2) ||z - z_pg||^2``, the decrease that the projected gradient step
    ``z_pg = max(z - grad P(z) / Lt, 0)`` is sure to give (descent lemma); otherwise the column stays where it is
    and its next step is that projected gradient step, with no momentum, which passes. So every step taken lowers
    ``P`` by a fixed fraction of the squared gradient mapping -- a global linear rate whatever heavy ball does --
    and a column never ends worse than it started (a capped solve needs no comparison with ``Z0``). The test
    allows ``8 eps`` times the scale of the terms (from the last certificate), so round-off is not read as an
    increase. The gradient is taken at the iterate itself, so a certificate is :func:`_certificate`'s with ``t =
    W z + b``: elementwise passes, no extra product (FISTA's checks need one). A problem whose terms, summed
    by magnitude at the start, come within ``_HB_RANGE`` of the dtype's largest number (huge data, mostly in
    float32) goes to :func:`_fista` instead, which compares no values.
    """
    m = Z0.shape[1]
    mu, c, gscale = prev.mu, prev.c, smooth.gscale
    Lt = L + mu
    step_hb = 4.0 / (Lt ** 0.5 + mu ** 0.5) ** 2
    momentum = ((Lt ** 0.5 - mu ** 0.5) / (Lt ** 0.5 + mu ** 0.5)) ** 2
    noise = 8.0 * torch.finfo(Z0.dtype).eps
    # each column's next step in units of 1 / Lt: heavy ball's after a step taken, 1 after one refused (its dZ,
    # hence its momentum, is then zero)
    ratio_choice = Z0.new_tensor([1.0, step_hb * Lt])
    scratch = _Scratch()

    def value(Z: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
        """``P`` less terms that do not depend on ``z`` (``c F*(u)``, and ``lam F(v)`` in ``x_hidden``): enough
        to compare two points; the round-off of the difference is within the slack, as the scale holds them."""
        return smooth.partial_value(T, scratch("value_t", T)).add_(prev.partial_value(Z, scratch("value", Z)))

    Z, T = Z0, A.affine(b, Z0)
    out = _Columns(Z0, T, tol, max_iter, stall)
    smooth0, prev0 = smooth, prev
    f = value(Z, T)
    dZ = torch.zeros_like(Z)
    ratio = ratio_choice[1].expand(m)
    cU = prev.U * (c / gscale)
    k = 0
    for k in range(max_iter + 1):
        G = A.adjoint(smooth.grad_part(T, out=scratch("S", T)), out=scratch("G", Z))
        if out.due(k):
            gap, scale = _gap_and_scale(smooth, prev, Z, T, None, G, guide, scratch)
            slack = (noise * scale).to(Z.dtype)
            # the comparisons need the objective's terms well inside the working dtype's range
            fits = (scale.max() <= _HB_RANGE * torch.finfo(Z.dtype).max) if k == 0 else None
            going = out.check(k, Z, T, gap, gap / scale.clamp_min(tiny(gap.dtype)), fits)
            if k == 0 and not out.flag:  # terms beyond it (huge data): FISTA, which compares no values
                return _fista(smooth0, prev0, A, b, Z0, tol, max_iter, L, guide=guide, stall=stall)
            if going is not None:
                if going.numel() == 0:
                    break
                smooth, prev = smooth.take(going), prev.take(going)
                Z, T, G, dZ, cU = Z[:, going], T[:, going], G[:, going], dZ[:, going], cU[:, going]
                f, slack, ratio = f[going], slack[going], ratio[going]
        H = G.add_(Z, alpha=c / gscale).sub_(cU).mul_(gscale / Lt)  # grad P(z) / Lt, in G's place
        # z - z_pg = min(z, grad / Lt) on z >= 0
        sure = torch.minimum(Z, H, out=scratch("sure", Z)).square_().sum(0).mul_(0.5 * Lt)
        Zn = torch.sub(Z, H.mul_(ratio), out=scratch(f"z{k % 2}", Z)).add_(dZ, alpha=momentum).clamp_min_(0.0)
        Tn = A.affine(b, Zn, out=scratch(f"t{k % 2}", T))
        fn = value(Zn, Tn)
        ok = fn <= f - _SUFFICIENT * sure + slack
        Zn = torch.where(ok, Zn, Z, out=Zn)  # the refused columns stay
        dZ = torch.sub(Zn, Z, out=scratch("dZ", Z))
        Z, T, f = Zn, torch.where(ok, Tn, T, out=Tn), torch.where(ok, fn, f)
        ratio = ratio_choice[ok.long()]
    return out.result(k, L, prev.mu, "heavy_ball")


def _heavy_ball_applies(prev: _PrevTerm, certify: bool) -> bool:
    return certify and isinstance(prev.act, ReLU)


def _iterate(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z0: torch.Tensor,
             tol: float, max_iter: int, L: float, certify: bool = True, guide: bool = False,
             stall: int = _STALL) -> dict:
    """The column iteration: :func:`_heavy_ball` for certified solves with ReLU's ``B_prev``, else :func:`_fista`
    (uncertified capped runs keep FISTA's steps: the fast training default is tuned on them)."""
    if _heavy_ball_applies(prev, certify):
        return _heavy_ball(smooth, prev, A, b, Z0, tol, max_iter, L, guide=guide, stall=stall)
    return _fista(smooth, prev, A, b, Z0, tol, max_iter, L, certify=certify, guide=guide, stall=stall)


def _unchecked_end(smooth: Any, prev: _PrevTerm, Z0: torch.Tensor, T0: torch.Tensor, Z: torch.Tensor,
                   T: torch.Tensor, k: int, L: float) -> dict:
    """End of an uncertified capped run: per column, the lower objective of the start ``Z0`` and ``Z``."""
    # "not no worse" rather than "worse": a column whose steps overflowed to NaN goes back too. No test of
    # back.any() first: on a GPU reading it would wait for every step queued, the select costs one pass
    back = ~(smooth.value(T) + prev.partial_value(Z) <= smooth.value(T0) + prev.partial_value(Z0))
    Z = torch.where(back, Z0, Z)
    nan = Z.new_full((Z.shape[1],), math.nan)
    return {"Z": Z, "T": None, "residual": nan, "gap": nan.clone(), "iterations": k, "lipschitz": L,
            "mu": prev.mu, "history": [], "stalled": False}


def _no_worse_than_start(smooth: Any, prev: _PrevTerm, Z: torch.Tensor, T: torch.Tensor, gap: torch.Tensor,
                         res: torch.Tensor, start: tuple, idx: torch.Tensor, tol: float) -> tuple:
    """At ``max_iter``: columns not yet at ``tol`` whose start had the lower objective go back to the start."""
    Z0, T0, gap0, res0 = start
    Z0, T0, gap0, res0 = Z0[:, idx], T0[:, idx], gap0[idx], res0[idx]
    back = ~(res <= tol) & ~(smooth.value(T) + prev.value(Z) <= smooth.value(T0) + prev.value(Z0))
    if not bool(back.any()):
        return Z, T, gap, res
    return (torch.where(back, Z0, Z), torch.where(back, T0, T), torch.where(back, gap0, gap),
            torch.where(back, res0, res))


def _certificate(smooth: Any, prev: _PrevTerm, Z: torch.Tensor, T: torch.Tensor, Ty: torch.Tensor,
                 G: torch.Tensor, guide: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Gap and relative gap of the columns of ``Z`` with the dual point ``grad ell(Ty)``; no GEMM needed.
    (:func:`_gap_and_scale`: the gap and the scale it is relative to.)"""
    gap, scale = _gap_and_scale(smooth, prev, Z, T, Ty, G, guide)
    return gap, gap / scale.clamp_min(tiny(Z.dtype))


def _gap_and_scale(smooth: Any, prev: _PrevTerm, Z: torch.Tensor, T: torch.Tensor, Ty: torch.Tensor | None,
                   G: torch.Tensor, guide: bool = False, scratch: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The gap of the columns of ``Z`` with the dual point ``grad ell(Ty)``, and its scale: the sum of the
    magnitudes of the terms whose sum is ``P`` (see the module docstring). ``Ty=None``: the dual point of ``T``
    itself, where ``D_ell`` vanishes (heavy ball's checks). ``scratch(name, like)``: a pool of arrays for the
    passes of ReLU's terms (used in the working dtype only).

    Evaluated in float64 whatever the working dtype: in float32 the entropic ``B`` terms cancel to a noise
    floor near 1e-8 of the scale, well above what float32 iterates reach (their products ``W Z``, ``W^T s``
    enter the gap only at second order near the argmin, so float32 round-off in them does not matter).
    ``guide=True`` with piecewise-quadratic terms (``exact_low``): in the working dtype, for a certificate that
    only decides when to stop.
    """
    if Z.dtype != torch.float64 and not (guide and smooth.exact_low and prev.exact_low):
        smooth, prev = smooth.to(torch.float64), prev.to(torch.float64)
        Z, T, G = Z.double(), T.double(), G.double()
        Ty, scratch = None if Ty is None else Ty.double(), None
    work = None if scratch is None else (scratch("cert_w", Z), scratch("cert_a", Z))
    gap = prev.cert(Z, G, smooth.gscale, work)
    if Ty is not None:
        gap = smooth.bregman(T, Ty) + gap
    scale = (smooth.scale(T, out=None if scratch is None else scratch("cert_t", T))
             + prev.scale(Z, out=None if work is None else work[1]))
    return gap, scale


def _next_check(history: list, k: int, worst: float, tol: float) -> int:
    """Iterations until the next certificate: the predicted finish from the observed linear rate, in [1, 8]."""
    if not history or worst <= tol:
        return _CHECK_EVERY
    k0, w0 = history[-1]
    if not (0.0 < worst < w0):
        return _CHECK_EVERY
    rate = math.log(worst / w0) / (k - k0)  # log of the contraction per iteration, < 0
    need = math.log(tol / worst) / rate
    return int(min(max(math.ceil(need), 1), 2 * _CHECK_EVERY))


# -- dual semismooth Newton for x_last with the MSE loss -----------------------------------------------------------
def _dual_newton_mse(Y: torch.Tensor, prev: _PrevTerm, A: _Matrix, b: torch.Tensor | None, Z0: torch.Tensor,
                     tol: float, max_iter: int, L: float = 0.0) -> dict:
    """Maximize the per-column dual ``D(alpha)`` by damped Newton; primal ``z = phi_prev(u + W^T alpha / c)``."""
    W = A.W
    K, p = W.shape
    m = Z0.shape[1]
    c, act = prev.c, prev.act
    Wt = W.T
    WW = (W[:, None, :] * W[None, :, :]).reshape(K * K, p)  # row (k, l) holds W[k, :] * W[l, :]
    eye_half = 0.5 * torch.eye(K, dtype=torch.float64, device=W.device)
    Yb = Y - b if b is not None else Y
    A = 2.0 * (Yb - W @ Z0)  # the dual point of the loss at Z0: -grad ell(W Z0 + b)
    Z_out, res_out, gap_out = Z0.clone(), Z0.new_full((m,), float("inf")), Z0.new_full((m,), float("inf"))
    T_out = Y.new_empty(K, m)
    idx = torch.arange(m, device=Z0.device)
    Yc, U = Y, prev.U
    eps, floor = torch.finfo(Z0.dtype).eps, tiny(Z0.dtype)
    history, k = [], 0
    for k in range(max_iter + 1):
        X = torch.addmm(U, Wt, A, alpha=1.0 / c)
        Z = act.forward(X)
        WZ = W @ Z
        Gd = Yb - WZ - 0.5 * A  # grad D(alpha); the gap P(z(alpha)) - D(alpha) is exactly ||Gd||^2
        gap = (Gd * Gd).sum(0)
        T = WZ + b if b is not None else WZ
        scale = ((Yc.abs() + T.abs()) ** 2).sum(0) + prev.scale(Z)
        res = gap / scale.clamp_min(floor)
        history.append((k, float(res.max())))
        done = res <= tol
        if k == max_iter:
            done = torch.ones_like(done)
        if bool(done.any()):
            cols = idx[done]
            Z_out[:, cols], res_out[cols], gap_out[cols] = Z[:, done], res[done], gap[done]
            T_out[:, cols] = T[:, done]
            keep = ~done
            if not bool(keep.any()):
                break
            idx, prev = idx[keep], prev.take(keep)
            A, X, Gd, Yb, Yc, U, scale = A[:, keep], X[:, keep], Gd[:, keep], Yb[:, keep], Yc[:, keep], prev.U, \
                scale[keep]
        # Newton direction: (I/2 + W diag(phi'(X)) W^T / c) d = Gd, K x K per column, Cholesky in float64.
        n = A.shape[1]
        H = (WW @ act.derivative(X)).T.reshape(n, K, K).to(torch.float64) / c + eye_half
        Lc, _ = torch.linalg.cholesky_ex(H)
        Dir = torch.cholesky_solve(Gd.T.to(torch.float64).unsqueeze(-1), Lc).squeeze(-1).T.to(A.dtype)
        E = (Wt @ Dir) / c
        slope = (Gd * Dir).sum(0)
        # Armijo on the concave D. Below ~eps * scale the change in D is round-off: take the full step there.
        flat = slope <= 1e3 * eps * scale
        base = c * _sum_F_conj(act, X)
        AD, DD, DY = (A * Dir).sum(0), (Dir * Dir).sum(0), (Dir * Yb).sum(0)
        tau = torch.ones_like(slope)
        for _ in range(40):
            dD = tau * DY - 0.5 * tau * AD - 0.25 * tau * tau * DD - (c * _sum_F_conj(act, torch.addcmul(X, tau, E))
                                                                       - base)
            ok = flat | (dD >= 1e-4 * tau * slope)
            if bool(ok.all()):
                break
            tau = torch.where(ok, tau, 0.5 * tau)
        A = A + tau * Dir
    return {"Z": Z_out, "T": T_out, "residual": res_out, "gap": gap_out, "iterations": k, "history": history,
            "stalled": False}


def _value(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z: torch.Tensor,
           T: torch.Tensor | None = None) -> float:
    """The objective at ``Z``, evaluated in float64 (exact for the returned float32 point, not 1e-7 off).

    ``T``: ``W Z + b`` as the solver formed it for the returned columns; used when ``Z`` is float64 already (it
    saves a product -- a convolution, for a conv layer).
    """
    if Z.dtype != torch.float64:
        smooth, prev = smooth.to(torch.float64), prev.to(torch.float64)
        A, b, Z, T = A.to(torch.float64), None if b is None else b.double(), Z.double(), None
    if T is None:
        T = A.affine(b, Z)
    return float((smooth.value(T) + prev.value(Z)).sum())


def _fista_in(dtype: torch.dtype) -> Any:
    """``_fista(..., certify=False)`` stepping in ``dtype``; the start-or-last choice per column in the inputs' own.

    The uncertified steps carry no certificate whose accuracy the working dtype could spoil, so on float64 inputs
    they may run in float32 (half the memory traffic of their elementwise passes). The choice against the start
    ``Z0`` is made again in the inputs' dtype, so a column still never comes back worse than it started.
    """
    def engine(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z0: torch.Tensor,
               tol: float, max_iter: int, L: float, certify: bool = False) -> dict:
        if not _fits(L, prev, dtype):
            return _fista(smooth, prev, A, b, Z0, tol, max_iter, L, certify=False)
        out = _fista(smooth.to(dtype), prev.to(dtype), A.to(dtype), None if b is None else b.to(dtype),
                     Z0.to(dtype), tol, max_iter, L, certify=False, choose=False)
        Z = out["Z"].to(Z0.dtype)
        return _unchecked_end(smooth, prev, Z0, A.affine(b, Z0), Z, A.affine(b, Z), out["iterations"], L)
    return engine


def _fits(L: float, prev: _PrevTerm, dtype: torch.dtype) -> bool:
    """Whether the steps' scalars (the prox weight ``a = L / c``) are far inside ``dtype``'s range. Data beyond
    it need no check here: they overflow to inf/NaN in the steps, and those columns are taken back."""
    return L / prev.c <= 1e-8 * torch.finfo(dtype).max


def _fista_confirmed_in(dtype: torch.dtype) -> Any:
    """Certified ``_fista`` stepping in ``dtype``, its answer confirmed by a certificate in the inputs' dtype.

    The steps, and the certificates that decide when a column is done, run in ``dtype`` (on float64 inputs,
    float32: half the time of each GEMM). Those certificates are accurate enough to stop on -- the products'
    round-off enters the gap only through the distance to the argmin (see :func:`_certificate`), and where both
    terms are piecewise quadratic (ReLU, leaky ReLU, MSE: sums of terms >= 0, no cancellation) they are even
    evaluated in ``dtype`` (``guide=True``; the entropic and cross-entropy terms still go to float64) -- but the
    returned one is not taken from them: the last point is handed, in the inputs' dtype, to ``_fista`` again,
    whose first certificate comes from products in that dtype. A column the ``dtype`` steps left as it started
    (their first certificate stopped it) is handed over as its exact start ``Z0``, not its round trip through
    ``dtype``. Columns the confirmation certifies leave at once (one GEMM pair for all of them); the others go on
    stepping in the inputs' dtype for what is left of ``max_iter``: those ``dtype``'s round-off floor holds above
    ``tol`` (the ``dtype`` steps give up after ``_LOW_STALL`` iterations without progress), those whose steps
    overflowed in ``dtype`` (they restart from ``Z0``), and those the cap stopped. A column still above ``tol``
    at the end keeps the lower objective of its start and its last point, compared in the inputs' dtype, as a
    capped ``_fista`` does.

    Below ``_GUIDE_TOL`` the ``dtype`` certificates cannot judge a start, so the start's own certificate comes
    first, in the inputs' dtype (one more GEMM pair): the columns ``Z0`` solves come back at no step. Scalars too
    large for ``dtype`` (:func:`_fits`) run the whole solve in the inputs' dtype. ``history`` lists the
    (start's and) ``dtype`` steps' certificates, then the confirming ones.
    """
    def engine(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None, Z0: torch.Tensor,
               tol: float, max_iter: int, L: float, certify: bool = True) -> dict:
        if not _fits(L, prev, dtype):
            return _iterate(smooth, prev, A, b, Z0, tol, max_iter, L)
        start, cols = None, None
        if tol < _GUIDE_TOL:
            start = _iterate(smooth, prev, A, b, Z0, tol, 0, L)
            cols = (~(start["residual"] <= tol)).nonzero().squeeze(1)
            if cols.numel() == 0:
                return start
            if cols.numel() == Z0.shape[1]:  # every column open: no copies in or out
                cols = None
        sm, pv, Zs = (smooth, prev, Z0) if cols is None else (smooth.take(cols), prev.take(cols), Z0[:, cols])
        Zl = Zs.to(dtype)
        low = _iterate(sm.to(dtype), pv.to(dtype), A.to(dtype), None if b is None else b.to(dtype), Zl,
                     (_MARGIN_HB if _heavy_ball_applies(prev, True) else _MARGIN) * tol, max_iter, L, guide=True,
                     stall=_LOW_STALL)
        Z1 = low["Z"].to(Z0.dtype)
        # untouched columns get their exact start back; overflowed ones restart from it
        back = (low["Z"] == Zl).all(0) | ~torch.isfinite(Z1).all(0)
        if bool(back.any()):
            Z1[:, back] = Zs[:, back]
        steps = low["iterations"]
        out = _no_worse_than(sm, pv, A, b, Zs, _iterate(sm, pv, A, b, Z1, tol, max(max_iter - steps, 0), L), tol)
        history = low["history"] + [(k + steps, worst) for k, worst in out["history"]]
        if start is None:
            return dict(out, iterations=out["iterations"] + steps, history=history)
        if cols is None:
            start = dict(start, **{key: out[key] for key in ("Z", "T", "residual", "gap")})
        else:
            for key in ("Z", "T"):
                start[key][:, cols] = out[key]
            for key in ("residual", "gap"):
                start[key][cols] = out[key]
        return dict(start, iterations=out["iterations"] + steps, history=start["history"] + history,
                    stalled=out["stalled"])
    return engine


def _no_worse_than(smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None,
                   Z0: torch.Tensor, out: dict, tol: float) -> dict:
    """Columns of ``out`` above ``tol`` whose start ``Z0`` has the lower objective go back to it, with its own
    certificate: :func:`_no_worse_than_start` once the start's certificate is known (one GEMM pair on the columns
    above ``tol``, when there are any)."""
    cols = (~(out["residual"] <= tol)).nonzero().squeeze(1)
    if cols.numel() == 0:
        return out
    sm, pv, Zs = smooth.take(cols), prev.take(cols), Z0[:, cols]
    Ts = A.affine(b, Zs)
    gap0, res0 = _certificate(sm, pv, Zs, Ts, Ts, A.adjoint(sm.grad_part(Ts)))
    Zc, Tc, gap, res = _no_worse_than_start(sm, pv, out["Z"][:, cols], out["T"][:, cols], out["gap"][cols],
                                            out["residual"][cols], (Zs, Ts, gap0, res0),
                                            torch.arange(cols.numel(), device=cols.device), tol)
    Z, T, residual, gap_all = out["Z"].clone(), out["T"].clone(), out["residual"].clone(), out["gap"].clone()
    Z[:, cols], T[:, cols], residual[cols], gap_all[cols] = Zc, Tc, res.to(Z.dtype), gap.to(Z.dtype)
    return dict(out, Z=Z, T=T, residual=residual, gap=gap_all)


def _check_step_dtype(step_dtype: Any, certify: bool, W: torch.Tensor) -> Any:
    """The FISTA engine for ``step_dtype`` (``_fista`` itself for ``None`` or the inputs' dtype)."""
    step_dtype = check_step_dtype(step_dtype, W.dtype)
    if step_dtype is None:
        return _iterate
    return _fista_confirmed_in(step_dtype) if certify else _fista_in(step_dtype)


# -- column blocks -------------------------------------------------------------------------------------------------
def _in_blocks(engine: Any, smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap, b: torch.Tensor | None,
               Z0: torch.Tensor, tol: float, max_iter: int, certify: bool = True) -> dict:
    """Run ``engine`` on blocks of columns and glue the answers (the problem separates over columns).

    On CPU a block keeps each ``(p, block)`` array near ``_CPU_BLOCK`` entries so the dozen arrays of an
    iteration stay in cache; on a GPU one batch is best.
    """
    L = smooth.curv * A.norm_sq()
    if L <= 0.0:  # W = 0: the data term is constant, one prox step from anywhere is exact
        L = prev.mu
    if not math.isfinite(L) or L / prev.c > torch.finfo(Z0.dtype).max:
        # the prox weight a = L / c of every step would overflow the working precision
        raise DomainError(f"W: the Lipschitz constant of the data term, {L:.3g}, is out of range for {Z0.dtype}; "
                          "scale W (or lam) down, or use float64")
    m = Z0.shape[1]
    rows = A.rows
    size = m if Z0.device.type != "cpu" else max(_MIN_BLOCK, _CPU_BLOCK // rows)
    outs, value = [], 0.0
    for start in range(0, m, size):
        cols = slice(start, min(m, start + size))
        sm, pv = smooth.take(cols), prev.take(cols)
        if certify:
            o = engine(sm, pv, A, b, Z0[:, cols], tol, max_iter, L)
            value += _value(sm, pv, A, b, o["Z"], o.get("T"))  # while the block is in cache
        else:
            o = engine(sm, pv, A, b, Z0[:, cols], tol, max_iter, L, certify=False)
            value = math.nan
        outs.append(o)
    if len(outs) == 1:
        out = outs[0]
    else:
        slowest = max(outs, key=lambda o: o["iterations"])
        out = dict(slowest, Z=torch.cat([o["Z"] for o in outs], 1),
                   T=None if outs[0]["T"] is None else torch.cat([o["T"] for o in outs], 1),
                   residual=torch.cat([o["residual"] for o in outs]), gap=torch.cat([o["gap"] for o in outs]),
                   stalled=any(o["stalled"] for o in outs))
    out.update(lipschitz=L, mu=prev.mu, blocks=len(outs), value=value)
    return out


def _optimality(out: dict, smooth: Any, prev: _PrevTerm, A: _Matrix | _LayerMap) -> Residual | None:
    """The optimality residual of :mod:`fenchel_cvx.optimality` at the returned ``Z``, from its ``T = W Z + b``.

    ``grad f = W^T grad ell(T)`` (``grad ell = gscale * grad_part``): one GEMM (one adjoint), as the solver kept
    ``T``. ``None`` for an uncertified run (its residual is reported as NaN).
    """
    if out["T"] is None:
        return None
    grad_f = A.adjoint(smooth.grad_part(out["T"])).mul_(smooth.gscale)
    return natural_residual(out["Z"], grad_f, prev.U, act_prev=prev.act, lam_prev=prev.c)


# -- public API ----------------------------------------------------------------------------------------------------
def _check_W(W: Any, layer: Layer | None = None) -> tuple[int, int]:
    """``W`` checked (the layer's ``weight_shape`` when given); the sizes ``(q, p)`` of ``W Z``'s output and input."""
    check_tensor(W, "W")
    if layer is not None:
        check_layer_shape(W, "W", layer, "weight")
        return layer.n_out, layer.n_in
    check_ndim(W, "W", 2, "(outputs, inputs)")
    if min(W.shape) < 1:
        raise ShapeError(f"W: expected positive sizes (outputs, inputs), got {tuple(W.shape)}")
    return tuple(W.shape)


def _check_rows(x: Any, name: str, W: torch.Tensor, layer: Layer | None, side: str, m: int | None = None,
                m_from: str = "X_next") -> None:
    """With a layer: ``x`` is a tensor like ``W`` with the layer's flattened input (output) size as rows (and
    ``m`` columns, those of ``m_from``, when given)."""
    if layer is not None:
        check_tensor(x, name, ref=W, finite=False)
        check_layer_shape(x, name, layer, side, m=m, m_from=m_from)


def _check_common(W: torch.Tensor, b: Any, U_prev: Any, act_prev: Any, lam_prev: Any, tol: Any, max_iter: Any,
                  Z0: Any, warn: Any, m: int, sizes: tuple[int, int], layer: Layer | None,
                  m_from: str = "X_next") -> tuple:
    """Checks shared by both X-updates, after ``W`` and the data that fixes ``m`` (the argument ``m_from``).

    The bias comes back as a ``(q, 1)`` column (matrix) or as it is, one entry per output channel (a layer that
    is not plain dense).
    """
    if m < 1:
        raise ShapeError(f"X-update: expected at least one data point (column), got m = {m}")
    q, p = sizes
    if layer is None or layer.is_plain_dense:
        bcol, rows_in = check_bias(b, q, W), "W.shape[1]"
    else:
        bcol, rows_in = b, "layer.n_in"
        if b is not None:
            check_tensor(b, "b", ref=W)
            check_layer_shape(b, "b", layer, "bias")
    act_prev = get_activation(act_prev)
    sup_dphi(act_prev)
    c = check_scalar(lam_prev, "lam_prev", positive=True)
    tol = check_tol(tol)
    max_iter = check_max_iter(max_iter)
    check_flag(warn, "warn")
    _check_rows(U_prev, "U_prev", W, layer, "in", m, m_from)
    check_tensor(U_prev, "U_prev", ref=W, shape=(p, m), layout=f"({rows_in}, samples), samples = {m_from}'s")
    if Z0 is None:
        Z0 = act_prev.forward(U_prev)  # feed-forward point: minimizes the B_prev term alone
    else:
        _check_rows(Z0, "Z0", W, layer, "in", m, m_from)
        check_tensor(Z0, "Z0", ref=W, shape=(p, m), layout=f"({rows_in}, samples) like U_prev")
        act_prev.check_domain(Z0, "Z0")
    return bcol, act_prev, c, tol, max_iter, Z0


@torch.no_grad()
def x_hidden(W: torch.Tensor, b: torch.Tensor | None, X_next: torch.Tensor, U_prev: torch.Tensor, *,
             act: str | Activation, act_prev: str | Activation, lam: float, lam_prev: float, tol: float = 1e-6,
             max_iter: int = 5000, Z0: torch.Tensor | None = None, warn: bool = True,
             certify: bool = True, step_dtype: torch.dtype | None = None,
             layer: Layer | None = None) -> SubproblemResult:
    r"""Eq. (14): minimize over Z  lam B_act(X_next, W Z + b) + lam_prev B_act_prev(Z, U_prev),  Z in dom(act_prev).

    Updates a hidden X-variable ``X_l``: ``W = W_l``, ``b = b_l``, ``X_next = X_{l+1}``, ``U_prev = W_{l-1}
    X_{l-1} + b_{l-1}``, ``act = acts[l]``, ``act_prev = acts[l-1]``. Layout: the paper's ``(features,
    samples)``, one column per data point; the problem separates over columns and all are solved at once.

    Algorithm: FISTA with the exact proximal map of ``lam_prev B_act_prev(., U_prev)`` (closed form for ReLU and
    leaky ReLU, safeguarded scalar Newton inside ``[0, 1]`` / ``[-1, 1]`` for sigmoid and tanh), step ``1/L``,
    ``L = lam sup(phi_act') ||W||_2^2``, strongly convex momentum with per-column gradient restart; with
    ``act_prev="relu"`` and ``certify=True``, projected heavy ball with a sufficient-decrease safeguard instead
    (about a third fewer iterations; see the module docstring). Cost per
    iteration: two GEMMs (``4 q p m`` flops) plus elementwise work. Stops per column once the relative Fenchel
    gap (``info["certificate"]``, see the module docstring) is ``<= tol``; finished columns leave the batch; the
    optimality ``residual`` is then formed once (one GEMM). Strongly convex with modulus
    ``lam_prev / sup(phi_prev')``: the argmin is unique.

    Parameters
    ----------
    W : Tensor, shape (q, p)
        ``W_l``; float32 or float64. Every other tensor must share its dtype and device.
    b : Tensor, shape (q,), or None
        ``b_l`` (``None``: no bias).
    X_next : Tensor, shape (q, m)
        ``X_{l+1}``, in the domain of ``act`` (e.g. ``>= 0`` for ReLU, ``[0, 1]`` for sigmoid).
    U_prev : Tensor, shape (p, m)
        ``W_{l-1} X_{l-1} + b_{l-1}``.
    act, act_prev : str or Activation
        ``phi_l`` and ``phi_{l-1}`` (``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"`` or an instance).
    lam, lam_prev : float
        ``lambda_l > 0`` and ``lambda_{l-1} > 0``.
    tol : float
        Relative Fenchel-gap tolerance per column (1e-6: values to ~1e-6, argmins to ~1e-3 relative; use
        ~1e-10 for argmins to ~1e-5).
    max_iter : int
        Iteration cap. A column stopped by the cap returns the lower-objective of its start ``Z0`` and its last
        (accelerated) iterate, so a capped solve never increases its objective.
    Z0 : Tensor, shape (p, m), optional
        Warm start in ``dom(act_prev)``, e.g. the current ``X_l`` (default ``phi_prev(U_prev)``, the
        feed-forward value). Columns it already solves to ``tol`` cost no iteration.
    warn : bool
        Warn :class:`NotConvergedWarning` (naming the subproblem and the certificate) when stopping above ``tol``.
    certify : bool
        ``False``: take exactly ``max_iter`` FISTA steps and compute no certificate (inexact BCD, where the
        certificate would cost as much as the steps): ``residual`` and the certificate NaN, ``value`` NaN,
        ``status`` ``"unchecked"``, ``converged=False``, no warning; each column still returns the lower-objective
        of ``Z0`` and its last iterate.
    step_dtype : torch.dtype, optional
        The dtype the steps run in, e.g. ``torch.float32`` on float64 inputs (about half the time of each
        GEMM and elementwise pass); the answer stays in the inputs' dtype. With ``certify=False`` the choice
        between ``Z0`` and the last iterate is made in the inputs' dtype. With ``certify=True`` the steps stop
        on their own certificates (aiming at ``tol / 4``), and the certificate returned is recomputed from
        products in the inputs' dtype at the returned point: columns it does not confirm within ``tol`` (the
        step dtype's round-off floor lies above it, or their steps overflowed) take their remaining steps in the
        inputs' dtype; columns the start already solves come back unchanged. ``None``: the inputs' dtype.
    layer : Layer, optional
        ``W Z + b`` as ``A(Z; W) + b`` (:mod:`fenchel_cvx.layers`): ``W`` shape ``layer.weight_shape`` (a conv
        kernel ``(C_out, C_in, k, k)``), ``b`` ``layer.bias_shape``, ``X_next`` ``(layer.n_out, m)``, ``U_prev``,
        ``Z0`` and ``Z`` ``(layer.n_in, m)``; the GEMMs become the layer's map and its adjoint, ``||W||_2^2``
        ``layer.norm_sq(W)``. ``None``: dense.

    Returns
    -------
    SubproblemResult
        ``Z`` (Tensor (p, m), dtype and device of ``W``), ``value`` (the full objective with constants, float,
        evaluated in float64), ``residual`` (Tensor (m,), the optimality residual per column relative to the
        problem's scale, see :mod:`fenchel_cvx.optimality`), ``max_residual``, ``iterations`` (the most any
        column took), ``converged`` (every certificate ``<= tol``), ``status`` (``"optimal"``, ``"max_iter"`` or
        ``"stalled"``), ``backend="torch"``, ``solver`` (``"heavy_ball"`` or ``"fista"``); ``info``:
        ``certificate`` (Tensor (m,), relative gap per column), ``gap`` (absolute gaps, (m,)), ``lipschitz`` (L),
        ``mu``, ``history`` (``(iteration, max certificate)`` at each check of the slowest block), ``blocks``
        (column blocks solved one after another).

    Raises
    ------
    TensorMismatchError
        A non-tensor, a dtype other than float32/float64, or tensors on different devices or dtypes.
    ShapeError
        Shapes that do not chain as above (or do not fit ``layer``: a kernel or data of the wrong size).
    DomainError
        NaN/inf entries, ``X_next`` outside ``dom(act)`` or ``Z0`` outside ``dom(act_prev)``.
    ValueRangeError
        ``lam <= 0``, ``lam_prev <= 0``, ``tol <= 0``, ``max_iter < 1``, a non-bool ``warn``, or a ``step_dtype``
        other than float32, float64 and ``None``.
    ChoiceError
        An activation the torch face does not solve (only ReLU, LeakyReLU, Sigmoid and Tanh), or a ``layer`` that
        is not a :class:`~fenchel_cvx.layers.Layer`.
    SolverError
        A non-finite objective at the returned point (inputs too large for the dtype) or a failed factorization.
    """
    t0 = time.perf_counter()
    layer = check_layer(layer)
    sizes = _check_W(W, layer)
    _check_rows(X_next, "X_next", W, layer, "out")
    check_tensor(X_next, "X_next", ref=W, shape=(sizes[0], None), layout="(W.shape[0], samples)")
    bcol, act_prev, c, tol, max_iter, Z0 = _check_common(W, b, U_prev, act_prev, lam_prev, tol, max_iter, Z0, warn,
                                                         X_next.shape[1], sizes, layer)
    act = get_activation(act)
    sup_dphi(act)
    lam = check_scalar(lam, "lam", positive=True)
    act.check_domain(X_next, "X_next")
    certify = check_flag(certify, "certify")
    engine = _check_step_dtype(step_dtype, certify, W)
    smooth, prev = _ActTerm(act, lam, X_next), _PrevTerm(act_prev, c, U_prev)
    A = _Matrix(W) if layer is None or layer.is_plain_dense else _LayerMap(layer, W)
    with solver_errors("x_hidden"):
        out = _in_blocks(engine, smooth, prev, A, bcol, Z0, tol, max_iter, certify)
    info = {k: out[k] for k in ("gap", "lipschitz", "mu", "history", "blocks")}
    return finish("x_hidden", value=out["value"], solver=out.get("method", "fista"), t0=t0, t1=time.perf_counter(),
                  Z=out["Z"],
                  certificate=out["residual"], residual=_optimality(out, smooth, prev, A),
                  iterations=out["iterations"], tol=tol, max_iter=max_iter, info=info, stalled=out["stalled"],
                  warn=warn, certified=certify)


@torch.no_grad()
def x_last(W: torch.Tensor, b: torch.Tensor | None, Y: torch.Tensor, U_prev: torch.Tensor, *, loss: str | Loss,
           act_prev: str | Activation, lam_prev: float, tol: float = 1e-6, max_iter: int | None = None,
           Z0: torch.Tensor | None = None, warn: bool = True, certify: bool = True,
           step_dtype: torch.dtype | None = None, layer: Layer | None = None) -> SubproblemResult:
    r"""Eqs. (15)-(16): minimize over Z  loss(Y, W Z + b) + lam_prev B_act_prev(Z, U_prev),  Z in dom(act_prev).

    Updates the last hidden X-variable ``X_L``: ``W = W_L``, ``b = b_L``, ``U_prev = W_{L-1} X_{L-1} +
    b_{L-1}``, ``act_prev = acts[L-1]``. Layout: the paper's ``(features, samples)``; separable over columns,
    all solved at once.

    Algorithm: MSE -- dual (semi)smooth Newton in ``R^K`` per column (``K x K`` batched Cholesky, Armijo on the
    dual), ``4 K p m + 2 K^2 p m`` flops per step, 3-5 steps at any conditioning; the primal point
    ``phi_prev(U_prev + W^T alpha / lam_prev)`` is in the domain by construction. Cross-entropy -- FISTA with the
    exact prox of the ``B_prev`` term, ``L = ||W||_2^2 / 2``, two GEMMs per iteration (heavy ball, as in
    :func:`x_hidden`, for a certified solve with ``act_prev="relu"``). Both stop per column on
    the relative Fenchel gap (``info["certificate"]``, see the module docstring).

    Parameters
    ----------
    W : Tensor, shape (K, p)
        ``W_L``; float32 or float64. Every other tensor must share its dtype and device.
    b : Tensor, shape (K,), or None
        ``b_L``.
    Y : Tensor, shape (K, m), or integer labels of shape (m,)
        Targets (probability columns for cross-entropy); labels are one-hot encoded (same device as ``W``).
    U_prev : Tensor, shape (p, m)
        ``W_{L-1} X_{L-1} + b_{L-1}``.
    loss : str or Loss
        ``"mse"`` or ``"ce"``.
    act_prev : str or Activation
        ``phi_{L-1}``.
    lam_prev : float
        ``lambda_{L-1} > 0``.
    tol : float
        Relative Fenchel-gap tolerance per column.
    max_iter : int, optional
        Iteration cap (default 100 Newton steps for MSE, 5000 FISTA steps for cross-entropy). With
        cross-entropy a column stopped by the cap returns the lower-objective of ``Z0`` and its last iterate.
    Z0 : Tensor, shape (p, m), optional
        Warm start in ``dom(act_prev)`` (default ``phi_prev(U_prev)``); for MSE it seeds the dual point
        ``alpha = 2 (Y - W Z0 - b)``.
    warn : bool
        Warn :class:`NotConvergedWarning` when stopping above ``tol``.
    certify : bool
        ``False`` (cross-entropy only; MSE's dual Newton gets its certificate for free and ignores it): as in
        :func:`x_hidden`, exactly ``max_iter`` FISTA steps with no certificate.
    step_dtype : torch.dtype, optional
        Cross-entropy: as :func:`x_hidden`, certified or not (MSE's dual Newton ignores it).
    layer : Layer, optional
        The output layer, dense after average pooling (e.g. ``a2f10``): ``W`` shape ``layer.weight_shape``,
        ``U_prev``, ``Z0`` and ``Z`` ``(layer.n_in, m)``. Cross-entropy runs FISTA on the layer's map; MSE forms
        its ``K x n_in`` matrix once. ``None``: dense.

    Returns
    -------
    SubproblemResult
        As :func:`x_hidden`, with ``solver="dual_newton"`` (MSE; ``info`` without ``lipschitz`` and ``mu``),
        ``"heavy_ball"`` or ``"fista"`` (cross-entropy).

    Raises
    ------
    TensorMismatchError, ShapeError, DomainError, ValueRangeError, SolverError
        As :func:`x_hidden`; :class:`LabelError` for labels out of range or non-probability columns (CE).
    ChoiceError
        A loss other than MSE and cross-entropy, an ``act_prev`` the torch face does not solve, or a ``layer``
        that is not a dense :class:`~fenchel_cvx.layers.Layer` (the output layer is dense, pooled or not).
    """
    t0 = time.perf_counter()
    loss = get_loss(loss)
    known = "mse" if isinstance(loss, MSELoss) else "ce" if isinstance(loss, CrossEntropyLoss) else loss
    check_choice(known, "loss", ("mse", "ce"), "use fenchel_cvx.cvx for other losses")
    layer = check_layer(layer, "x_last")
    sizes = _check_W(W, layer)
    K = sizes[0]
    if not isinstance(Y, torch.Tensor):
        check_tensor(Y, "Y")  # raises the torch-face message
    if Y.ndim == 1:
        if Y.device != W.device:
            raise TensorMismatchError(f"Y: expected labels on device {W.device} like W, got {Y.device}; move them "
                                      "with Y.to(W.device)")
    elif Y.ndim == 2:
        check_tensor(Y, "Y", ref=W, shape=(K, None), layout="(W.shape[0], samples)")
    else:
        raise ShapeError(f"Y: expected targets of shape ({K}, m) or integer labels (m,), got {tuple(Y.shape)}")
    T_Y = loss.targets(Y, K, like=W)
    if max_iter is None:
        max_iter = 100 if isinstance(loss, MSELoss) else 5000
    bcol, act_prev, c, tol, max_iter, Z0 = _check_common(W, b, U_prev, act_prev, lam_prev, tol, max_iter, Z0, warn,
                                                         T_Y.shape[1], sizes, layer, m_from="Y")
    certify = check_flag(certify, "certify") or isinstance(loss, MSELoss)
    engine = _check_step_dtype(step_dtype, certify and not isinstance(loss, MSELoss), W)  # MSE: checked, unused
    prev = _PrevTerm(act_prev, c, U_prev)
    with solver_errors("x_last"):
        if isinstance(loss, MSELoss):
            smooth, solver = _MSETerm(T_Y), "dual_newton"
            if layer is None or layer.is_plain_dense:
                A = _Matrix(W)
            else:  # the dual Newton's K x K Hessians need the matrix: A^T on the K unit vectors, once
                A = _Matrix(layer.adjoint(W, torch.eye(K, dtype=W.dtype, device=W.device)).T.contiguous())
                bcol = None if bcol is None else layer.bias_rows(bcol).reshape(K, 1)
            out = _in_blocks(lambda sm, *args: _dual_newton_mse(sm.Y, *args), smooth, prev, A, bcol, Z0, tol,
                             max_iter)
        else:
            smooth, solver = _CETerm(T_Y), "fista"
            A = _Matrix(W) if layer is None or layer.is_plain_dense else _LayerMap(layer, W)
            out = _in_blocks(engine, smooth, prev, A, bcol, Z0, tol, max_iter, certify)
            solver = out.get("method", solver)
    info = {k: out[k] for k in ("gap", "history", "blocks") + (("lipschitz", "mu") if solver != "dual_newton" else ())}
    return finish("x_last", value=out["value"], solver=solver, t0=t0, t1=time.perf_counter(), Z=out["Z"],
                  certificate=out["residual"], residual=_optimality(out, smooth, prev, A),
                  iterations=out["iterations"], tol=tol, max_iter=max_iter, info=info, stalled=out["stalled"],
                  warn=warn, certified=certify)
