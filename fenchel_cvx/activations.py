r"""Biconvex activations: Theorem 1 of the paper made concrete.

A continuous, strictly increasing activation :math:`\phi` is the gradient of the convex function
:math:`F^*(u) = \int_{\phi^{-1}(z)}^u \phi` and its inverse is the gradient of
:math:`F(v) = \int_z^v \phi^{-1}`, with :math:`z = 0` or :math:`\phi^{-1}(z) = 0` (eq. 4). The penalty

.. math::  B(v, u) = F(v) + F^*(u) - u v \;\ge\; 0

is the Fenchel–Young gap: zero exactly when :math:`v = \phi(u)`, convex in ``v`` for fixed ``u`` and convex in
``u`` for fixed ``v``. Matrices are summed entrywise, :math:`B(V, U) = \sum_{ij} B(V_{ij}, U_{ij})`.

=============  ===============  ==========================================  ====================================
activation     dom F (v)        F(v)                                        F*(u)
=============  ===============  ==========================================  ====================================
ReLU           [0, inf)         v^2/2                                       max(u, 0)^2 / 2          (eq. 5)
LeakyReLU(a)   R                v^2/2 (v>=0), v^2/(2a) (v<0)                u^2/2 (u>=0), a u^2/2 (u<0)
Sigmoid        [0, 1]           v log v + (1-v) log(1-v) + log 2            log(1 + e^u) - log 2
Tanh           [-1, 1]          ((1+v) log(1+v) + (1-v) log(1-v)) / 2       log cosh u
=============  ===============  ==========================================  ====================================

Two identities keep the numerics exact near the zero set: for the sigmoid, ``B(v, u)`` is the Bernoulli
Kullback–Leibler divergence ``KL(v || sigmoid(u))``, and ``B_tanh(v, u) = B_sigmoid((1 + v)/2, 2u)``.

Every numeric method accepts numpy arrays and torch tensors (torch keeps device and dtype). ``cvx_F``,
``cvx_F_conj`` and ``cvx_B`` build CVXPY expressions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.special as sps
import torch

from ._checks import as_array, check_finite, check_scalar, is_torch, values_trusted
from .errors import ChoiceError, DomainError, FenchelError, ShapeError

__all__ = ["Activation", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "ACTIVATIONS", "get_activation"]

Array = Any  # numpy.ndarray or torch.Tensor
_LOG2 = math.log(2.0)


# -- numpy/torch twins of the few elementwise operations we need ---------------------------------------------
def _relu(x: Array) -> Array:
    return torch.clamp(x, min=0) if is_torch(x) else np.maximum(x, 0.0)


def _where(c: Array, a: Array, b: Array) -> Array:
    return torch.where(c, a, b) if is_torch(c) else np.where(c, a, b)


def _xlogx(x: Array) -> Array:
    return torch.xlogy(x, x) if is_torch(x) else sps.xlogy(x, x)


def _softplus(x: Array) -> Array:
    """log(1 + e^x) without overflow."""
    # torch's default threshold (20) returns x for x > 20, an absolute error e^{-20} ~ 2e-9 that float64 can see;
    # past 40 the error e^{-40} ~ 4e-18 is below round-off for every dtype.
    return torch.nn.functional.softplus(x, beta=1.0, threshold=40.0) if is_torch(x) else np.logaddexp(0.0, x)


def _sigmoid(x: Array) -> Array:
    return torch.sigmoid(x) if is_torch(x) else sps.expit(x)


def _keep_nan(d: Array, u: Array) -> Array:
    """``d`` (a fresh array) with NaN wherever ``u`` is NaN: a comparison alone would turn NaN into a slope."""
    if is_torch(u):
        return d.masked_fill_(torch.isnan(u), math.nan)
    return np.where(np.isnan(u), np.nan, d)


def _full_like(x: Array, value: float) -> Array:
    return torch.full_like(x, value) if is_torch(x) else np.full(np.shape(x), value, dtype=float)


def _float(x: Array, name: str) -> Array:
    """Numpy input as float64 (integers and lists welcome; ``None``, text and complex values refused, naming
    ``name``); torch input unchanged, or in float when it holds integers."""
    if is_torch(x):
        return x if x.is_floating_point() else x.to(torch.get_default_dtype())
    return as_array(x, name)


def _numeric(x: Any) -> bool:
    return not isinstance(x, cp.Expression)


class Activation:
    """A strictly increasing activation written as a biconvex penalty (Theorem 1).

    Subclasses define ``forward`` (phi), ``inverse``, ``F``, ``F_conj`` and the CVXPY forms; ``B`` and the
    domain handling live here.

    Attributes
    ----------
    name : str
        Registry key (``"relu"``, ``"leaky_relu"``, ``"sigmoid"``, ``"tanh"``).
    domain : tuple of float
        Closed interval ``(lo, hi)`` that ``v`` (an activation's output, i.e. an X-variable) must lie in:
        ``(0, inf)`` for ReLU, ``(-inf, inf)`` for leaky ReLU, ``(0, 1)`` sigmoid, ``(-1, 1)`` tanh.
    """

    name: str = ""
    domain: tuple[float, float] = (-math.inf, math.inf)

    # -- the math each subclass supplies ------------------------------------------------------------------
    def forward(self, u: Array) -> Array:
        """phi(u), elementwise; same type, device and dtype as ``u``."""
        raise NotImplementedError

    def inverse(self, v: Array) -> Array:
        """phi^{-1}(v) = F'(v), elementwise on the domain (the boundary maps to -inf/+inf where unbounded);
        :class:`~fenchel_cvx.errors.DomainError` outside it."""
        raise NotImplementedError

    def derivative(self, u: Array) -> Array:
        """phi'(u) = (F*)''(u), elementwise (the right derivative at kinks; NaN where ``u`` is NaN)."""
        raise NotImplementedError

    def F(self, v: Array) -> Array:
        """F(v) = integral of phi^{-1} from z to v, elementwise; +inf outside the domain."""
        raise NotImplementedError

    def F_conj(self, u: Array) -> Array:
        """F*(u) = integral of phi from phi^{-1}(z) to u: the Fenchel conjugate of F, elementwise."""
        raise NotImplementedError

    def _B_inside(self, v: Array, u: Array) -> Array:
        """B on the domain of v; subclasses override with a form that is exact at v = phi(u)."""
        return self.F(v) + self.F_conj(u) - u * v

    def cvx_F(self, v: cp.Expression) -> cp.Expression:
        """sum F(v) as a convex CVXPY expression of an affine ``v`` (domain constraints: ``cvx_domain``)."""
        raise NotImplementedError

    def cvx_F_conj(self, u: cp.Expression) -> cp.Expression:
        """sum F*(u) as a convex CVXPY expression of an affine ``u``."""
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------------------------
    def in_domain(self, v: Array) -> Array:
        """Boolean mask: ``lo <= v <= hi`` elementwise."""
        lo, hi = self.domain
        return (v >= lo) & (v <= hi)

    def check_domain(self, v: Array, name: str = "v") -> None:
        """Raise :class:`DomainError` unless every entry of ``v`` lies in the activation's domain."""
        if values_trusted():
            return
        v = _float(v, "v")
        inside = self.in_domain(v)
        if not bool(inside.all()):
            bad = ~inside
            n_bad = int(bad.sum())
            if is_torch(bad):
                idx = tuple(int(i) for i in torch.nonzero(bad)[0])
                first = v[idx].item()
            else:
                idx = tuple(int(i) for i in np.argwhere(bad)[0])
                first = float(v[idx])
            raise DomainError(f"{name}: expected values in the domain {self.domain_str()} of {self.name}'s F, "
                              f"got {n_bad} entries outside (first at index {idx}: {first}); an X-variable "
                              f"after a {self.name} must lie in that set")

    def domain_str(self) -> str:
        lo, hi = self.domain
        left = "(-inf" if lo == -math.inf else f"[{lo:g}"
        right = "inf)" if hi == math.inf else f"{hi:g}]"
        return f"{left}, {right}"

    def B(self, v: Array, u: Array) -> Array:
        """Elementwise penalty ``F(v) + F*(u) - u*v`` (+inf where ``v`` is outside the domain).

        Parameters
        ----------
        v : ndarray or Tensor, shape (...)
            The output side (an X-variable).
        u : ndarray or Tensor, broadcastable with ``v``
            The pre-activation (``W X + b``), finite.

        Returns
        -------
        ndarray or Tensor, broadcast shape
            ``B(v, u) >= 0``, zero exactly where ``v = phi(u)``; NaN where ``v`` is NaN.

        Raises
        ------
        DomainError
            ``u`` holds NaN/inf (``F*(u) - u v`` has no value there).
        ShapeError
            ``v`` and ``u`` do not broadcast.
        """
        v, u = _float(v, "v"), _float(u, "u")
        if is_torch(v) != is_torch(u):
            raise FenchelError("B: v and u must both be numpy arrays or both be torch tensors, "
                               f"got {type(v).__name__} and {type(u).__name__}")
        try:
            np.broadcast_shapes(tuple(v.shape), tuple(u.shape))
        except ValueError:
            raise ShapeError(f"B: expected v and u of broadcastable shapes, got v {tuple(v.shape)} and u "
                             f"{tuple(u.shape)}") from None
        check_finite(u, "u")  # F*(inf) - inf v has no value; a pre-activation that overflowed is an error
        # NaN is not "outside the domain": let it propagate instead of turning into a plausible +inf.
        inside = self.in_domain(v) | (torch.isnan(v) if is_torch(v) else np.isnan(v))
        lo, hi = self.domain
        v_safe = v.clamp(lo, hi) if is_torch(v) else np.clip(v, lo, hi)
        with np.errstate(invalid="ignore", over="ignore"):  # inf * 0 at an infinite v: replaced just below
            val = _relu(self._B_inside(v_safe, u))  # B >= 0 exactly; clip round-off below zero
        # an infinite v in the domain (ReLU's, the leaky ReLU's) has B = +inf for finite u; the formulas' inf * 0
        # would say NaN there
        finite = torch.isfinite(v) | torch.isnan(v) if is_torch(v) else np.isfinite(v) | np.isnan(v)
        return _where(inside & finite, val, _full_like(val, math.inf))

    def B_sum(self, v: Array, u: Array) -> float:
        """sum_ij B(v_ij, u_ij) as a Python float."""
        val = self.B(v, u)
        return float(val.sum()) if is_torch(val) else float(np.sum(val))

    def cvx_domain(self, v: cp.Expression) -> list[cp.Constraint]:
        """The constraints ``lo <= v <= hi`` that the domain of F imposes on a CVXPY ``v``."""
        lo, hi = self.domain
        cons = []
        if lo > -math.inf:
            cons.append(v >= lo)
        if hi < math.inf:
            cons.append(v <= hi)
        return cons

    def cvx_B(self, v: Any, u: Any) -> tuple[cp.Expression, list[cp.Constraint]]:
        """sum B(v, u) as a CVXPY expression, plus the domain constraints it needs.

        Exactly one of ``v``, ``u`` must be an affine CVXPY expression and the other numeric; the expression
        is then convex (DCP), as every BCD subproblem uses it.

        Returns
        -------
        expr : cvxpy.Expression
            The summed penalty, constants included.
        constraints : list of cvxpy.Constraint
            ``lo <= v <= hi`` when ``v`` is the variable side, else empty (numeric ``v`` is checked here and
            raises :class:`DomainError` when outside the domain).
        """
        v_num, u_num = _numeric(v), _numeric(u)
        if v_num == u_num:
            raise FenchelError("cvx_B: expected exactly one of v, u to be a CVXPY expression and the other "
                               f"numeric, got v={type(v).__name__}, u={type(u).__name__}; B is only jointly "
                               "convex in each argument separately")
        if tuple(np.shape(v)) != tuple(np.shape(u)):
            # cp.multiply would broadcast while F(v) and F*(u) are summed over their own shapes: a wrong number.
            raise ShapeError(f"cvx_B: expected v and u of the same shape, got v {tuple(np.shape(v))} and "
                             f"u {tuple(np.shape(u))}")
        if v_num:
            v = np.asarray(v, dtype=float)
            check_finite(v, "v")
            self.check_domain(v, "v")
            if not u.is_affine():
                raise FenchelError("cvx_B: u must be affine in the variables for B to be DCP")
            expr = float(np.sum(self.F(v))) + self.cvx_F_conj(u) - cp.sum(cp.multiply(v, u))
            return expr, []
        u = np.asarray(u, dtype=float)
        check_finite(u, "u")
        if not v.is_affine():
            raise FenchelError("cvx_B: v must be affine in the variables for B to be DCP")
        expr = self.cvx_F(v) + float(np.sum(self.F_conj(u))) - cp.sum(cp.multiply(u, v))
        return expr, self.cvx_domain(v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.__dict__.items()))))


class ReLU(Activation):
    r"""phi(u) = max(u, 0); eq. (5): ``B(v, u) = v^2/2 + max(u,0)^2/2 - u v`` on ``v >= 0``."""

    name = "relu"
    domain = (0.0, math.inf)

    def forward(self, u):
        return _relu(_float(u, "u"))

    def inverse(self, v):
        v = _float(v, "v")
        self.check_domain(v, "v")
        return v * 1.0

    def derivative(self, u):
        u = _float(u, "u")
        return _keep_nan((u >= 0).to(u.dtype) if is_torch(u) else (u >= 0).astype(float), u)

    def F(self, v):
        v = _float(v, "v")
        return _where(~(v < 0), 0.5 * v * v, _full_like(v, math.inf))  # not "v >= 0": NaN stays NaN

    def F_conj(self, u):
        r = _relu(_float(u, "u"))
        return 0.5 * r * r

    def _B_inside(self, v, u):
        # B = (v - u_+)^2/2 + v u_-: two terms >= 0 on v >= 0 (no cancellation), exactly zero at v = u >= 0 and
        # at v = 0 > u. No select: a where() costs several times the arithmetic, and certificates call this often.
        a = _relu(u)
        d = v - a
        if is_torch(u):
            return torch.addcmul(v * a.sub_(u), d, d, value=0.5)
        return 0.5 * d * d + v * (a - u)

    def cvx_F(self, v):
        return 0.5 * cp.sum_squares(v)

    def cvx_F_conj(self, u):
        return 0.5 * cp.sum_squares(cp.pos(u))


class LeakyReLU(Activation):
    r"""phi(u) = u for u >= 0 and alpha u for u < 0 (alpha > 0, alpha != 1 is not required).

    ``F(v) = v^2 / (2 s(v))``, ``F*(u) = s(u) u^2 / 2`` with slope ``s(x) = 1`` for ``x >= 0`` and ``alpha``
    otherwise; the domain of ``v`` is all of R.
    """

    name = "leaky_relu"
    domain = (-math.inf, math.inf)

    def __init__(self, alpha: float = 0.01):
        self.alpha = check_scalar(alpha, "alpha", positive=True)

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha!r})"

    def _slope(self, x):
        return _where(x >= 0, _full_like(x, 1.0), _full_like(x, self.alpha))

    def forward(self, u):
        u = _float(u, "u")
        return _where(u >= 0, u, self.alpha * u)

    def inverse(self, v):
        v = _float(v, "v")
        return _where(v >= 0, v, v / self.alpha)

    def derivative(self, u):
        u = _float(u, "u")
        return _keep_nan(self._slope(u), u)

    def F(self, v):
        v = _float(v, "v")
        return 0.5 * v * v / self._slope(v)

    def F_conj(self, u):
        u = _float(u, "u")
        return 0.5 * self._slope(u) * u * u

    def _B_inside(self, v, u):
        # Same sign: B = (v - s u)^2 / (2 s), exactly zero at v = phi(u) = s u.
        s = self._slope(u)
        same = (u >= 0) == (v >= 0)
        d = v - s * u
        return _where(same, 0.5 * d * d / s, self.F(v) + self.F_conj(u) - u * v)

    def cvx_F(self, v):
        return 0.5 * cp.sum_squares(cp.pos(v)) + 0.5 / self.alpha * cp.sum_squares(cp.neg(v))

    def cvx_F_conj(self, u):
        return 0.5 * cp.sum_squares(cp.pos(u)) + 0.5 * self.alpha * cp.sum_squares(cp.neg(u))


class Sigmoid(Activation):
    r"""phi(u) = 1 / (1 + e^{-u}); ``B(v, u) = KL(Bernoulli(v) || Bernoulli(phi(u)))`` on ``0 <= v <= 1``.

    ``F(v) = v log v + (1-v) log(1-v) + log 2`` (negative binary entropy, ``F(1/2) = 0``),
    ``F*(u) = log(1 + e^u) - log 2`` (``F*(0) = 0``).
    """

    name = "sigmoid"
    domain = (0.0, 1.0)

    def forward(self, u):
        return _sigmoid(_float(u, "u"))

    def inverse(self, v):
        v = _float(v, "v")
        self.check_domain(v, "v")
        return (torch.logit(v) if is_torch(v) else sps.logit(v))

    def derivative(self, u):
        s = _sigmoid(_float(u, "u"))
        return s * (1.0 - s)

    def F(self, v):
        v = _float(v, "v")
        inside = ~((v < 0) | (v > 1))  # NaN is not outside: it propagates
        vc = v.clamp(0, 1) if is_torch(v) else np.clip(v, 0, 1)
        val = _xlogx(vc) + _xlogx(1.0 - vc) + _LOG2
        return _where(inside, val, _full_like(val, math.inf))

    def F_conj(self, u):
        return _softplus(_float(u, "u")) - _LOG2

    def _B_inside(self, v, u):
        # KL form: v log(v/s) + (1-v) log((1-v)/(1-s)) with log s = -softplus(-u), log(1-s) = -softplus(u).
        return _xlogx(v) + v * _softplus(-u) + _xlogx(1.0 - v) + (1.0 - v) * _softplus(u)

    def cvx_F(self, v):
        return -cp.sum(cp.entr(v)) - cp.sum(cp.entr(1 - v)) + _LOG2 * v.size

    def cvx_F_conj(self, u):
        return cp.sum(cp.logistic(u)) - _LOG2 * u.size


class Tanh(Activation):
    r"""phi(u) = tanh(u); ``B(v, u) = B_sigmoid((1+v)/2, 2u)`` on ``-1 <= v <= 1``.

    ``F(v) = ((1+v) log(1+v) + (1-v) log(1-v)) / 2`` (``F(0) = 0``), ``F*(u) = log cosh u``.
    """

    name = "tanh"
    domain = (-1.0, 1.0)
    _sig = Sigmoid()

    def forward(self, u):
        u = _float(u, "u")
        return torch.tanh(u) if is_torch(u) else np.tanh(u)

    def inverse(self, v):
        v = _float(v, "v")
        self.check_domain(v, "v")
        return torch.atanh(v) if is_torch(v) else np.arctanh(v)

    def derivative(self, u):
        t = self.forward(u)
        return 1.0 - t * t

    def F(self, v):
        return self._sig.F((1.0 + _float(v, "v")) / 2.0)

    def F_conj(self, u):
        u = _float(u, "u")
        return _softplus(2.0 * u) - u - _LOG2  # log cosh u, stable for large |u|

    def _B_inside(self, v, u):
        return self._sig._B_inside((1.0 + v) / 2.0, 2.0 * u)

    def cvx_F(self, v):
        return 0.5 * (-cp.sum(cp.entr(1 + v)) - cp.sum(cp.entr(1 - v)))

    def cvx_F_conj(self, u):
        return cp.sum(cp.logistic(2 * u)) - cp.sum(u) - _LOG2 * u.size


ACTIVATIONS: dict[str, Callable[..., Activation]] = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def get_activation(act: str | Activation, **kwargs: Any) -> Activation:
    """Return an :class:`Activation` from a registry name (``"relu"``, ...) or pass an instance through."""
    if isinstance(act, Activation):
        if kwargs:
            raise ChoiceError(f"act: an Activation instance carries its own parameters; got it with {kwargs}")
        return act
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise ChoiceError(f"act: expected one of {sorted(ACTIVATIONS)} or an Activation instance, got {act!r}")
    try:
        return ACTIVATIONS[act](**kwargs)
    except TypeError:
        raise ChoiceError(f"act: {act!r} does not take the parameters {sorted(kwargs)}") from None
