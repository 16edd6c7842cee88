r"""The 1-hidden-layer ReLU Lagrangian that :func:`certify_lower_bound` bounds, and the upper-bound side.

Paper layout throughout: ``X0`` is ``(n, m)``, ``Y`` is ``(p, m)``, ``X1`` is ``(h, m)``. The objective is

.. math::  J = \|Y - W_1 X_1 - b_1 1^T\|_F^2 + \rho(\|W_0\|_F^2 + \|W_1\|_F^2)
              + \lambda \sum_{kj} B(X_{1,kj}, a_{kj}),\qquad a = W_0 X_0 + b_0 1^T,\ X_1 \ge 0,

with the ReLU penalty of eq. (5), ``B(v, a) = v^2/2 + max(a,0)^2/2 - a v = (v-a)^2/2 - min(a,0)^2/2``.

This module holds what is *not* part of the proof: evaluating ``J`` exactly (via
:class:`fenchel_cvx.activations.ReLU`), its gradient, a multi-start L-BFGS-B local search that produces the
incumbent (an upper bound, always re-evaluated exactly), and the map ``normalize`` that takes any point to one
satisfying every "without loss of generality" restriction of the relaxation with no larger ``J``
(``docs/certified_bound.md``, section 3). ``normalize`` is used by the tests and by the local search.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.optimize as so

from ..activations import ReLU

__all__ = ["Problem", "Point"]

_RELU = ReLU()


@dataclass
class Point:
    """A point ``(W0, b0, W1, b1, X1)`` of the lifted problem (paper layout) and its exact ``J``."""

    W0: np.ndarray  # (h, n)
    b0: np.ndarray  # (h,)
    W1: np.ndarray  # (p, h)
    b1: np.ndarray  # (p,)
    X1: np.ndarray  # (h, m)
    J: float = float("nan")

    def copy(self) -> Point:
        return Point(self.W0.copy(), self.b0.copy(), self.W1.copy(), self.b1.copy(), self.X1.copy(), self.J)


@dataclass
class Problem:
    """Data and hyperparameters of one certification problem (paper layout)."""

    X0: np.ndarray  # (n, m)
    Y: np.ndarray   # (p, m)
    hidden: int
    lam: float
    rho: float
    n: int = field(init=False)
    m: int = field(init=False)
    p: int = field(init=False)

    def __post_init__(self) -> None:
        self.X0 = np.ascontiguousarray(self.X0, dtype=float)
        self.Y = np.ascontiguousarray(self.Y, dtype=float)
        self.n, self.m = self.X0.shape
        self.p = self.Y.shape[0]

    # -- the objective ---------------------------------------------------------------------------------------
    def terms(self, pt: Point) -> dict:
        """The three parts of ``J`` and the total, evaluated exactly (``X1`` must be >= 0)."""
        A = pt.W0 @ self.X0 + pt.b0[:, None]
        R = self.Y - pt.W1 @ pt.X1 - pt.b1[:, None]
        loss = float(np.sum(R * R))
        reg = self.rho * float(np.sum(pt.W0 ** 2) + np.sum(pt.W1 ** 2))
        pen = self.lam * _RELU.B_sum(pt.X1, A)
        return dict(loss=loss, regularization=reg, penalty=pen, total=loss + reg + pen)

    def J(self, pt: Point) -> float:
        """Exact ``J`` at ``pt`` (+inf when ``X1`` has a negative entry)."""
        return self.terms(pt)["total"]

    def primal(self, W0: np.ndarray, b0: np.ndarray, W1: np.ndarray, b1: np.ndarray) -> float:
        """Eq. (3): the ordinary training objective with ``X1 = relu(W0 X0 + b0)``."""
        X1 = np.maximum(W0 @ self.X0 + b0[:, None], 0.0)
        R = self.Y - W1 @ X1 - b1[:, None]
        return float(np.sum(R * R)) + self.rho * float(np.sum(W0 ** 2) + np.sum(W1 ** 2))

    # -- flat parameterisation for L-BFGS-B ---------------------------------------------------------------
    def _sizes(self) -> tuple[int, ...]:
        h, n, p, m = self.hidden, self.n, self.p, self.m
        return (h * n, h, p * h, p, h * m)

    def pack(self, pt: Point) -> np.ndarray:
        return np.concatenate([pt.W0.ravel(), pt.b0, pt.W1.ravel(), pt.b1, pt.X1.ravel()])

    def unpack(self, z: np.ndarray) -> Point:
        h, n, p, m = self.hidden, self.n, self.p, self.m
        cuts = np.cumsum(self._sizes())[:-1]
        W0, b0, W1, b1, X1 = np.split(z, cuts)
        return Point(W0.reshape(h, n).copy(), b0.copy(), W1.reshape(p, h).copy(), b1.copy(), X1.reshape(h, m).copy())

    def _fun_grad(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        pt = self.unpack(z)
        lam, rho = self.lam, self.rho
        A = pt.W0 @ self.X0 + pt.b0[:, None]
        R = pt.W1 @ pt.X1 + pt.b1[:, None] - self.Y
        neg = np.minimum(A, 0.0)
        D = pt.X1 - A
        f = float(np.sum(R * R) + rho * (np.sum(pt.W0 ** 2) + np.sum(pt.W1 ** 2))
                  + lam * (0.5 * np.sum(D * D) - 0.5 * np.sum(neg * neg)))
        gA = lam * (np.maximum(A, 0.0) - pt.X1)  # d/da of B = relu(a) - v
        gX = 2.0 * pt.W1.T @ R + lam * D
        gW0 = gA @ self.X0.T + 2.0 * rho * pt.W0
        gb0 = gA.sum(axis=1)
        gW1 = 2.0 * R @ pt.X1.T + 2.0 * rho * pt.W1
        gb1 = 2.0 * R.sum(axis=1)
        return f, np.concatenate([gW0.ravel(), gb0, gW1.ravel(), gb1, gX.ravel()])

    def local_search(self, start: Point, maxiter: int = 500, deadline: float | None = None) -> Point:
        """L-BFGS-B on ``J`` over all variables from ``start`` (``X1 >= 0`` as bounds), then :meth:`normalize`.

        ``J`` is continuously differentiable (``min(a,0)^2`` is C^1), so L-BFGS-B applies. The returned
        point's ``J`` is recomputed exactly. ``deadline`` (a ``time.perf_counter()`` value): stop at the first
        iteration that ends after it and return the iterate reached (still an exact ``J``, just a worse one).
        """
        z0 = self.pack(start)
        nx = self.hidden * self.m
        bounds = [(None, None)] * (z0.size - nx) + [(0.0, None)] * nx
        z0[z0.size - nx:] = np.maximum(z0[z0.size - nx:], 0.0)
        last = [z0]

        def stop_at_deadline(xk: np.ndarray) -> None:
            last[0] = np.array(xk, copy=True)
            if time.perf_counter() >= deadline:
                raise StopIteration

        try:
            res = so.minimize(self._fun_grad, z0, jac=True, method="L-BFGS-B", bounds=bounds,
                              callback=None if deadline is None else stop_at_deadline,
                              options=dict(maxiter=maxiter, ftol=1e-15, gtol=1e-10, maxcor=30))
            x = res.x
        except StopIteration:  # scipy < 1.11 lets the callback's StopIteration through
            x = last[0]
        pt = self.unpack(x)
        pt.X1 = np.maximum(pt.X1, 0.0)
        return self.normalize(pt)

    def constant_point(self) -> Point:
        """Every weight and ``X1`` zero, ``b1`` the mean target: the network that predicts a constant."""
        h, n, p, m = self.hidden, self.n, self.p, self.m
        return Point(np.zeros((h, n)), np.zeros(h), np.zeros((p, h)), self.Y.mean(axis=1), np.zeros((h, m)))

    def random_start(self, rng: np.random.Generator, scale: float = 1.0) -> Point:
        """A Glorot-uniform start with ``X1 = relu(W0 X0 + b0)`` and the least-squares ``b1``."""
        h, n, p = self.hidden, self.n, self.p
        W0 = rng.uniform(-1, 1, (h, n)) * scale * np.sqrt(6.0 / (n + h))
        b0 = rng.uniform(-0.5, 0.5, h) * scale
        W1 = rng.uniform(-1, 1, (p, h)) * scale * np.sqrt(6.0 / (h + p))
        X1 = np.maximum(W0 @ self.X0 + b0[:, None], 0.0)
        b1 = (self.Y - W1 @ X1).mean(axis=1)
        return Point(W0, b0, W1, b1, X1)

    def from_theta(self, W0: np.ndarray, b0: np.ndarray, W1: np.ndarray) -> Point:
        """Feed-forward completion of first-layer and output weights."""
        X1 = np.maximum(W0 @ self.X0 + b0[:, None], 0.0)
        b1 = (self.Y - W1 @ X1).mean(axis=1)
        return Point(W0.copy(), b0.copy(), W1.copy(), b1, X1)

    # -- the WLOG map (docs/certified_bound.md, section 3) ----------------------------------------------------
    def normalize(self, pt: Point) -> Point:
        """Map ``pt`` to a point with ``J`` no larger that satisfies every WLOG restriction.

        Steps, per unit ``k`` (row ``w_k`` of ``W0``, bias ``c_k``, column ``v_k`` of ``W1``):

        1. *Dead side*: if every ``a_kj < 0``, raise ``c_k`` until ``max_j a_kj = 0`` (B can only drop).
        2. *Always-on side*: if every ``a_kj >= 0``, shift ``c_k``, ``X_k`` down by
           ``delta = min_j min(X_kj, a_kj)`` and ``b1`` up by ``v_k delta`` (J unchanged).
        3. *Balance*: rescale ``(w_k, c_k, X_k, v_k) -> (t w_k, t c_k, t X_k, v_k / t)`` with the minimizing
           ``t``, so ``rho ||v_k||^2 = rho ||w_k||^2 + lam sum_j B_kj``; a unit with ``v_k = 0`` (or with
           ``w_k = 0`` and ``B_k = 0``, i.e. constant output moved into ``b1``) becomes the zero unit.
        4. *Sort* the units by the first output weight ``W1[0, k]`` (ascending).
        5. ``b1`` = the mean residual (its exact minimizer).

        Returns a new :class:`Point` with ``J`` filled in (exact).
        """
        pt = pt.copy()
        pt.X1 = np.maximum(pt.X1, 0.0)
        lam, rho = self.lam, self.rho
        for k in range(self.hidden):
            a = pt.W0[k] @ self.X0 + pt.b0[k]
            if np.all(a < 0):
                pt.b0[k] -= np.max(a)
                a = pt.W0[k] @ self.X0 + pt.b0[k]
            if np.all(a >= 0):
                delta = float(np.min(np.minimum(pt.X1[k], a)))
                if delta > 0:
                    pt.b0[k] -= delta
                    pt.X1[k] = np.maximum(pt.X1[k] - delta, 0.0)
                    pt.b1 += pt.W1[:, k] * delta
                    a = pt.W0[k] @ self.X0 + pt.b0[k]
            Bk = _RELU.B_sum(pt.X1[k], a)
            A_side = rho * float(pt.W0[k] @ pt.W0[k]) + lam * Bk
            C_side = rho * float(pt.W1[:, k] @ pt.W1[:, k])
            if C_side == 0.0 or A_side == 0.0:
                if C_side != 0.0:  # constant unit output relu(c_k) (B = 0 means X_k = relu(c_k)): into b1
                    pt.b1 += pt.W1[:, k] * pt.X1[k].mean()
                pt.W0[k] = 0.0
                pt.b0[k] = 0.0
                pt.X1[k] = 0.0
                pt.W1[:, k] = 0.0
                continue
            t = (C_side / A_side) ** 0.25
            pt.W0[k] *= t
            pt.b0[k] *= t
            pt.X1[k] *= t
            pt.W1[:, k] /= t
        order = np.argsort(pt.W1[0], kind="stable")
        pt.W0, pt.b0, pt.W1, pt.X1 = pt.W0[order], pt.b0[order], pt.W1[:, order], pt.X1[order]
        pt.b1 = (self.Y - pt.W1 @ pt.X1).mean(axis=1)
        pt.J = self.J(pt)
        return pt

    def multistart(self, n_starts: int, rng: np.random.Generator, maxiter: int = 500,
                   deadline: float | None = None) -> Point:
        """Best :meth:`local_search` result over ``n_starts`` random starts (exact ``J``).

        ``deadline`` (a ``time.perf_counter()`` value) stops the search early; the best constant predictor and
        the first start are always evaluated (normalized, exact ``J``), so there is an incumbent however short the
        time.
        """
        # the best constant predictor (every weight zero, b1 the mean target): an exact J = ||Y - mean||^2, and
        # the optimum itself for constant targets, which no local search reaches exactly
        best = self.normalize(self.constant_point())
        for i in range(max(1, n_starts)):
            if i > 0 and deadline is not None and time.perf_counter() >= deadline:
                break
            start = self.random_start(rng, (0.5, 1.0, 2.0)[i % 3])
            if i == 0:
                first = self.normalize(start)  # an incumbent before any search
                best = first if first.J < best.J else best
                if deadline is not None and time.perf_counter() >= deadline:
                    break
            pt = self.local_search(start, maxiter=maxiter, deadline=deadline)
            if pt.J < best.J:
                best = pt
        return best
