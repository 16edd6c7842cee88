r"""Preconditioned W-steps with a running curvature estimate: inexact BCD at about a backprop step's cost.

The majorization-minimization (MM) step of :func:`~fenchel_cvx.torch.w_hidden` / :func:`~fenchel_cvx.torch.w_last`
(``method="mm"``) minimizes a quadratic upper bound of the W-update,

.. math::  Z \leftarrow Z - G M^{-1}, \qquad M = s\, X_a X_a^\top + \operatorname{diag}(\mu),

with ``G`` the gradient at ``Z = [W, b]``, ``X_a = [X_in; 1^T]`` and ``s`` a bound on the curvature of the
data term (``lam sup phi'`` for eq. 19, ``1/2`` for cross-entropy (Boehning), ``2`` for MSE). On a batch of
``m`` samples that costs a ``p_a x p_a`` Gram matrix and its factorization every batch -- about five times the
arithmetic of a backprop step on MNIST 784-300-10. But consecutive batches of one layer have nearly the same
second moment ``X_a X_a^T / m``. :class:`RunningCurvature` keeps a running mean ``S`` of it, refreshed from the
batch at hand every ``every`` batches, and the steps here use

.. math::  \hat M = s\, m\, S + \operatorname{diag}(\mu)

in place of ``M``, replaced by its rank-``k`` approximation *from above*: the top ``k`` eigenpairs of ``\hat M``
and its ``(k+1)``-th eigenvalue ``sigma`` for the rest (``\tilde M \succeq \hat M``), so applying
``\tilde M^{-1}`` costs ``4 r p_a k`` flops. A step is then one gradient -- one GEMM with ``X_a^T``, given
``U = W X_in + b`` from the feed-forward -- and one cheap preconditioning: the "one GEMM pair per block" of a
first-order method, with the MM step's conditioning.

What is given up: ``\hat M`` bounds the batch's curvature only on average, so a step is not guaranteed to
decrease its block objective, and no certificate is computed (``residual`` and ``value`` are NaN, status
``"unchecked"``). Measured on MNIST 784-300-10 (batch 500, refresh every 100 batches, rank 64): no step in 240
batches increased its block objective (``benchmarks/bench_inexact.py --descent 240``), and test accuracy per epoch
matched the per-batch MM step's (``benchmarks/bench_training.py``, README). ``line_search=True`` buys the
guarantee back for one more GEMM: each row takes the exact minimizer of its objective along the step. With a
curvature refreshed from the same batch and full rank the step *is* the MM step (tested), and iterated on one
batch it converges to the W-update's argmin (tested against CVXPY).

In a data-parallel run every part is a sum over samples (``X_a X_a^T`` and the gradient), so each process adds
its shard's contribution before the (replicated) factorization and preconditioning.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from .._checks import check_finite, check_scalar
from ..activations import Activation, get_activation
from ..errors import CheckpointError, ShapeError, ValueRangeError
from ..losses import CrossEntropyLoss, Loss, MSELoss, get_loss
from ..subproblems import SubproblemResult
from ._common import check_bias, check_tensor, sup_dphi
from ._wsolvers import _line_search
from .w_updates import _penalty, _quadratic

__all__ = ["RunningCurvature", "hidden_curvature", "last_curvature", "w_hidden_step", "w_last_step"]

_F64 = torch.float64
_HALVINGS = 30  # backtracking trials of w_last_step's line search (the step shrinks to 1e-9 of its length)
_RIDGE_REL = 1e-12  # floor of the eigenvalues, relative to the mean diagonal (an all-zero input pixel with mu = 0)


class RunningCurvature:
    r"""Running estimate of a W-update's curvature bound ``M = s X_a X_a^T + diag(mu)`` (``p_a x p_a``).

    Parameters
    ----------
    s : float
        Curvature bound of the data term per unit of ``X_a X_a^T``: ``lam sup phi'`` (hidden layer),
        ``0.5`` (cross-entropy, Boehning), ``2`` (MSE).
    mu : Tensor, shape (p_a,)
        The diagonal of the regularizer's Hessian, ``2(rho + gamma)`` on weights and ``2 gamma`` on the bias.
    bias : bool
        Whether the last coordinate is the bias's (``X_a = [X_in; 1^T]``, ``p_a = p_in + 1``).
    every : int
        Batches between refreshes: :meth:`observe` folds the batch's second moment into ``S`` on its 1st,
        ``every+1``-th, ... call (a Gram matrix and an eigen-decomposition, ``p_a^2 m + O(p_a^3)`` flops).
    rank : int or None
        Eigenpairs kept; ``None`` (or ``>= p_a - 1``) keeps the exact inverse of ``\hat M``.
    decay : float
        ``S`` is the plain mean of the refreshes so far until there are ``1 / (1 - decay)`` of them, then an
        exponential moving average with this decay (a layer's inputs drift as the weights before it train).

    Attributes
    ----------
    S : Tensor, shape (p_a, p_a) or None
        The running mean of ``x_a x_a^T`` (float64); ``None`` before the first :meth:`observe`.
    refreshes : int
        Refreshes folded into ``S``.
    calls : int
        :meth:`observe` calls so far.
    """

    def __init__(self, s: float, mu: torch.Tensor, *, bias: bool = True, every: int = 100, rank: int | None = 64,
                 decay: float = 0.9):
        self.s = check_scalar(s, "s", positive=True)
        if not isinstance(mu, torch.Tensor) or mu.ndim != 1 or not bool(torch.isfinite(mu).all()) or \
                bool((mu < 0).any()):
            raise ValueRangeError(f"mu: expected a 1-D tensor of finite values >= 0, got {mu!r}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueRangeError(f"every: expected an integer >= 1 (batches between refreshes), got {every!r}")
        if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 1):
            raise ValueRangeError(f"rank: expected None or an integer >= 1, got {rank!r}")
        if not (isinstance(decay, (int, float)) and 0.0 <= decay < 1.0):
            raise ValueRangeError(f"decay: expected a float in [0, 1), got {decay!r}")
        if not isinstance(bias, bool) or (bias and mu.shape[0] < 1):
            raise ValueRangeError(f"bias: expected True or False (True needs len(mu) >= 1), got {bias!r}")
        self.mu = mu.detach().to(_F64)
        self.bias = bias
        self.every, self.rank, self.decay = every, rank, float(decay)
        self.S: torch.Tensor | None = None
        self.m = 0  # batch size of the last refresh: M_hat is formed for it
        self.refreshes = 0
        self.calls = 0
        self._factor: tuple | None = None

    @property
    def p_a(self) -> int:
        return int(self.mu.shape[0])

    def observe(self, X_in: torch.Tensor) -> bool:
        """Count a batch with inputs ``X_in`` ``(p_in, m)``; refresh ``S`` and the factor when due.

        Returns whether this call refreshed.
        """
        p_in = self.p_a - int(self.bias)
        if not isinstance(X_in, torch.Tensor) or X_in.ndim != 2 or X_in.shape[0] != p_in or X_in.shape[1] < 1:
            got = tuple(X_in.shape) if isinstance(X_in, torch.Tensor) else type(X_in).__name__
            raise ShapeError(f"X_in: expected the layer's inputs of shape ({p_in}, m), m >= 1, got {got}")
        due = self.calls % self.every == 0
        self.calls += 1
        if not due:
            return False
        X = X_in.detach().to(_F64)
        check_finite(X, "X_in")
        m = X.shape[1]
        G = X.new_empty(self.p_a, self.p_a)
        torch.mm(X, X.T, out=G[:p_in, :p_in])
        if self.bias:
            G[:p_in, p_in] = G[p_in, :p_in] = X.sum(1)
            G[p_in, p_in] = m
        G /= m
        self.refreshes += 1
        w = max(1.0 / self.refreshes, 1.0 - self.decay)
        self.S = G if self.S is None else torch.lerp(self.S.to(G.device), G, w)
        self.m = m
        self._factor = None
        return True

    def _factored(self) -> tuple:
        """The factor of ``\tilde M`` for the current ``S``, formed on first use after a refresh."""
        if self.S is None:
            raise ValueRangeError("curvature: no batch observed yet; call observe(X_in) before stepping")
        if self._factor is None:
            self._factor = self._factorize()
        return self._factor

    def _factorize(self) -> tuple:
        M = (self.s * self.m) * self.S
        M.diagonal().add_(self.mu.to(M.device))
        M = 0.5 * (M + M.T)
        ev, V = torch.linalg.eigh(M)
        ev, V = ev.flip(0), V.flip(1)  # descending
        floor = _RIDGE_REL * max(float(M.diagonal().mean()), 0.0) or _RIDGE_REL
        ev = ev.clamp_min(floor)
        p = ev.shape[0]
        if self.rank is None or self.rank >= p - 1:
            return ("full", (V / ev) @ V.T)
        k = self.rank
        sigma = float(ev[k])  # the (k+1)-th eigenvalue bounds the rest from above
        return ("lowrank", V[:, :k].contiguous(), 1.0 / ev[:k] - 1.0 / sigma, sigma)

    def precondition(self, G: torch.Tensor) -> torch.Tensor:
        r"""``G \tilde M^{-1}`` for rows ``G`` ``(r, p_a)`` (float64)."""
        if G.ndim != 2 or G.shape[1] != self.p_a:
            raise ShapeError(f"G: expected rows of length {self.p_a}, got shape {tuple(G.shape)}")
        f = self._factored()
        if f[0] == "full":
            return G @ f[1].to(G.device)
        _, Vk, corr, sigma = f
        Vk, corr = Vk.to(G.device), corr.to(G.device)
        return torch.addmm(G, (G @ Vk) * corr * sigma, Vk.T).div_(sigma)

    def matrix(self) -> torch.Tensor:
        r"""The matrix ``\tilde M`` the steps use (``p_a x p_a``, float64): for tests and inspection."""
        f = self._factored()
        if f[0] == "full":
            return torch.linalg.inv(f[1])
        _, Vk, corr, sigma = f
        lam_k = 1.0 / (corr + 1.0 / sigma)
        return sigma * torch.eye(self.p_a, dtype=_F64, device=Vk.device) + (Vk * (lam_k - sigma)) @ Vk.T

    def to(self, device: str | torch.device) -> RunningCurvature:
        """A copy of this estimate with its tensors on ``device``."""
        return RunningCurvature.from_state_dict(self.state_dict(), device=device)

    # -- checkpoints: plain tensors and numbers ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain CPU tensors, numbers and strings (safe for ``torch.load(weights_only=True)``)."""
        def cpu(t):
            return t.detach().to("cpu").clone() if torch.is_tensor(t) else t
        f = self._factor
        return {"s": self.s, "mu": cpu(self.mu), "bias": self.bias, "every": self.every, "rank": self.rank,
                "decay": self.decay, "S": cpu(self.S), "m": self.m, "refreshes": self.refreshes, "calls": self.calls,
                "factor": None if f is None else [cpu(x) for x in f]}

    @classmethod
    def from_state_dict(cls, d: dict, device: str | torch.device = "cpu") -> RunningCurvature:
        try:
            rc = cls(float(d["s"]), d["mu"].to(device), bias=bool(d["bias"]), every=int(d["every"]), rank=d["rank"],
                     decay=float(d["decay"]))
            rc.S = None if d["S"] is None else d["S"].to(device=device, dtype=_F64)
            rc.m, rc.refreshes, rc.calls = int(d["m"]), int(d["refreshes"]), int(d["calls"])
            f = d["factor"]
            rc._factor = None if f is None else tuple([f[0]] + [x.to(device) if torch.is_tensor(x) else x
                                                                 for x in f[1:]])
        except (KeyError, TypeError, AttributeError, ValueRangeError) as exc:
            raise CheckpointError(f"curvature: expected a RunningCurvature state dict, got an unreadable one ({exc})"
                                  ) from None
        return rc


# -- the two steps --------------------------------------------------------------------------------------------
def _regularizer(rho: float, gamma: float, bias: bool, p_in: int, device: str | torch.device) -> torch.Tensor:
    """``mu``: ``2(rho + gamma)`` on the weights, ``2 gamma`` on the bias (which ``rho`` does not penalize)."""
    mu = torch.full((p_in + int(bias),), 2.0 * (rho + gamma), dtype=_F64, device=device)
    if bias:
        mu[p_in] = 2.0 * gamma
    return mu


def hidden_curvature(p_in: int, *, act: str | Activation, lam: float, rho: float, gamma: float, bias: bool = True,
                     device: str | torch.device = "cpu", **kw: Any) -> RunningCurvature:
    """A :class:`RunningCurvature` for eq. (19): ``s = lam sup phi'``, ``mu`` from ``rho`` and ``gamma``.

    Parameters
    ----------
    p_in : int
        Inputs of the layer (``X_in`` has shape ``(p_in, m)``).
    act, lam, rho, gamma, bias
        As :func:`w_hidden_step`.
    device : str or torch.device
        Where the estimate lives.
    **kw
        ``every``, ``rank``, ``decay`` of :class:`RunningCurvature`.

    Raises
    ------
    ValueRangeError
        ``lam <= 0``, ``rho < 0``, ``gamma < 0`` or a bad ``every`` / ``rank`` / ``decay``.
    """
    act = get_activation(act)
    mu = _regularizer(check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True), bias, p_in,
                      device)
    return RunningCurvature(check_scalar(lam, "lam", positive=True) * sup_dphi(act), mu, bias=bias, **kw)


def last_curvature(p_in: int, *, loss: str | Loss, rho: float, gamma: float, bias: bool = True,
                   device: str | torch.device = "cpu", **kw: Any) -> RunningCurvature:
    """A :class:`RunningCurvature` for eq. (20): ``s = 1/2`` (cross-entropy, Boehning's bound) or ``2`` (MSE).

    Parameters
    ----------
    p_in : int
        Inputs of the last layer (``X_L`` has shape ``(p_in, m)``).
    loss, rho, gamma, bias
        As :func:`w_last_step`.
    device : str or torch.device
        Where the estimate lives.
    **kw
        ``every``, ``rank``, ``decay`` of :class:`RunningCurvature`.

    Raises
    ------
    ValueRangeError
        ``rho < 0``, ``gamma < 0`` or a bad ``every`` / ``rank`` / ``decay``.
    """
    loss = get_loss(loss)
    s = 0.5 if isinstance(loss, CrossEntropyLoss) else 2.0
    mu = _regularizer(check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True), bias, p_in,
                      device)
    return RunningCurvature(s, mu, bias=bias, **kw)


def _check_step(X_in: torch.Tensor, W: torch.Tensor, b: Any, gamma: float, W0: Any, b0: Any,
                curvature: Any) -> torch.Tensor | None:
    check_tensor(X_in, "X_in", shape=(None, None), layout="(features, samples)")
    p_in = X_in.shape[0]
    check_tensor(W, "W", ref=X_in, shape=(None, p_in), layout=f"(outputs, {p_in} inputs)")
    bcol = check_bias(b, W.shape[0], W)
    if gamma > 0:
        if W0 is None or (b is not None and b0 is None):
            raise ShapeError(f"W0, b0: required when gamma > 0 (got gamma={gamma}): the previous batch's weights")
        check_tensor(W0, "W0", ref=X_in, shape=tuple(W.shape), layout="like W")
        if b is not None:
            check_bias(b0, W.shape[0], W)
    if not isinstance(curvature, RunningCurvature):
        raise ValueRangeError(f"curvature: expected a RunningCurvature, got {type(curvature).__name__}")
    if curvature.p_a != p_in + int(b is not None) or curvature.bias != (b is not None):
        raise ShapeError(f"curvature: built for {curvature.p_a} augmented inputs, the layer has "
                         f"{p_in + int(b is not None)} (p_in + bias)")
    return bcol


def _direction(grad_rows: torch.Tensor, grad_bias: torch.Tensor | None, W: torch.Tensor, b: torch.Tensor | None,
               rho: float, gamma: float, W0: Any, b0: Any, curvature: RunningCurvature) -> tuple:
    """The gradient ``G`` (regularizer's part added) and the step ``D = G M~^{-1}``, rows ``[w_r; b_r]``, float64."""
    W64 = W.to(_F64)
    G = grad_rows.to(_F64).add_(W64, alpha=2.0 * (rho + gamma))
    if gamma > 0:
        G.add_(W0.to(_F64), alpha=-2.0 * gamma)
    if b is not None:
        gb = grad_bias.to(_F64)
        if gamma > 0:
            gb = gb + 2.0 * gamma * (b.to(_F64) - b0.to(_F64))
        G = torch.cat([G, gb[:, None]], 1)
    return G, curvature.precondition(G)


def _apply(W: torch.Tensor, b: torch.Tensor | None, D: torch.Tensor) -> tuple:
    """``[W, b] - D`` in float64, back in the input dtype."""
    W_new = (W.to(_F64) - D[:, :W.shape[1]]).to(W.dtype).contiguous()
    b_new = None if b is None else (b.to(_F64) - D[:, -1]).to(b.dtype).contiguous()
    return W_new, b_new


def _check_search(line_search: Any, relax: float) -> bool:
    if not isinstance(line_search, bool):
        raise ValueRangeError(f"line_search: expected True or False, got {line_search!r}")
    if line_search and relax != 1.0:
        raise ValueRangeError(f"relax: the line search chooses the step length itself; got relax={relax} with "
                              "line_search=True (pass one or the other)")
    return line_search


def _check_relax(relax: Any) -> float:
    v = check_scalar(relax, "relax")
    if not v > 0:
        raise ValueRangeError(f"relax: expected a step multiplier > 0 (1: the preconditioned step itself), got {v}")
    return v


def _result(subproblem: str, W: torch.Tensor, b: torch.Tensor | None, t0: float, curvature: RunningCurvature
            ) -> SubproblemResult:
    nan = W.new_full((W.shape[0],) if subproblem == "w_hidden" else (1,), math.nan)
    return SubproblemResult(subproblem=subproblem, value=math.nan, status="unchecked", solver="running_mm",
                            solve_time=time.perf_counter() - t0, W=W, b=b, residual=nan, max_residual=math.nan,
                            iterations=1, converged=False,
                            info={"refreshes": curvature.refreshes, "rank": curvature.rank})


@torch.no_grad()
def w_hidden_step(X_in: torch.Tensor, X_next: torch.Tensor, U: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
                  *, act: str | Activation, lam: float, rho: float, gamma: float = 0.0, W0: torch.Tensor | None = None,
                  b0: torch.Tensor | None = None, curvature: RunningCurvature, relax: float = 1.0,
                  line_search: bool = False) -> SubproblemResult:
    r"""Eqs. (17), (19): one step on  lam B_act(X_next, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2).

    ``[W, b] <- [W, b] - G \tilde M^{-1}`` with the gradient
    ``G = lam (phi(U) - X_next) X_a^T + mu [W, b] - 2 gamma [W0, b0]`` at ``U = W X_in + b`` (passed in: the
    feed-forward has it) and ``curvature``'s ``\tilde M`` (see the module docstring). Cost: one GEMM
    (``2 r p_in m`` flops) plus ``4 r p_a k``. Call ``curvature.observe(X_in)`` first (every batch, before the step).

    Parameters
    ----------
    X_in : Tensor, shape (p_in, m)
    X_next : Tensor, shape (r, m)
    U : Tensor, shape (r, m)
        ``W X_in + b`` at the current ``W``, ``b``.
    W : Tensor, shape (r, p_in)
    b : Tensor, shape (r,), or None
    act, lam, rho, gamma, W0, b0
        As :func:`~fenchel_cvx.torch.w_hidden`.
    curvature : RunningCurvature
        From :func:`hidden_curvature` with the same ``lam``, ``rho``, ``gamma`` and activation.
    relax : float
        Step multiplier ``omega > 0``: ``[W, b] <- [W, b] - omega G \tilde M^{-1}``. With an exact bound, any
        ``omega < 2`` still decreases the objective (by at least ``omega (1 - omega/2) G M^{-1} G^T``), and the
        bound is loose (``phi' = 0`` on a ReLU's inactive samples, where it counts ``sup phi' = 1``). Measured on
        MNIST 784-300-10 (``benchmarks/bench_inexact.py --descent 240 --relax OMEGA``): at 1.5 no step in 240
        batches raised its block objective, at 2 a fifth of the hidden steps did, at 4 all of them -- that is no
        longer block coordinate *descent*, whatever it does to accuracy.
    line_search : bool
        Take, per row, the exact minimizer of the objective along the step (the safeguarded 1-D Newton search of
        :func:`~fenchel_cvx.torch.w_hidden`): the step then never increases the objective, whatever the curvature
        estimate. Costs one more GEMM (``D X_a``, ``2 r p_in m`` flops) and ``O(r m)`` per search step.

    Returns
    -------
    SubproblemResult
        ``W``, ``b`` after the step (input dtype); ``value`` and ``residual`` NaN, ``status="unchecked"``,
        ``solver="running_mm"``, ``iterations=1``.
    """
    t0 = time.perf_counter()
    act = get_activation(act)
    lam = check_scalar(lam, "lam", positive=True)
    rho, gamma = check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True)
    _check_step(X_in, W, b, gamma, W0, b0, curvature)
    m = X_in.shape[1]
    check_tensor(X_next, "X_next", ref=X_in, shape=(W.shape[0], m), layout="(outputs, samples)")
    check_tensor(U, "U", ref=X_in, shape=(W.shape[0], m), layout="(outputs, samples): W X_in + b")
    act.check_domain(X_next, "X_next")
    R = act.forward(U).sub_(X_next).mul_(lam)  # forward returns a new tensor: U is left alone
    relax = _check_relax(relax)
    search = _check_search(line_search, relax)
    G, D = _direction(R @ X_in.T, R.sum(1) if b is not None else None, W, b, rho, gamma, W0, b0, curvature)
    if search:
        D.mul_(_row_steps(X_in, U, X_next, W, b, G, D, act, lam, rho, gamma, W0, b0)[:, None])
    elif relax != 1.0:
        D.mul_(relax)
    W_new, b_new = _apply(W, b, D)
    return _result("w_hidden", W_new, b_new, t0, curvature)


def _row_steps(X_in: torch.Tensor, U: torch.Tensor, V: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None,
               G: torch.Tensor, D: torch.Tensor, act: Activation, lam: float, rho: float, gamma: float, W0: Any,
               b0: Any) -> torch.Tensor:
    """Per row, the ``t`` minimizing ``f_r(z_r - t d_r)`` (eq. 19's row objective), by :func:`_line_search`."""
    p = W.shape[1]
    X64, U64, V64 = X_in.to(_F64), U.to(_F64), V.to(_F64)
    Delta = -D
    dU = Delta[:, :p] @ X64
    if b is not None:
        dU += Delta[:, p:]
    Z = W.to(_F64) if b is None else torch.cat([W.to(_F64), b.to(_F64)[:, None]], 1)
    mu, lin, _ = _quadratic(p, W.shape[0], rho, gamma, b is not None, W0, b0, Z)
    q0 = ((mu * Z - lin) * Delta).sum(1)  # the regularizer's slope along Delta at t = 0
    q1 = (mu * Delta * Delta).sum(1)
    return _line_search(U64, dU, V64, act, lam, q0, q1, (G * Delta).sum(1))


@torch.no_grad()
def w_last_step(X_in: torch.Tensor, Y: torch.Tensor, W: torch.Tensor, b: torch.Tensor | None, *, loss: str | Loss,
                rho: float, gamma: float = 0.0, W0: torch.Tensor | None = None, b0: torch.Tensor | None = None,
                curvature: RunningCurvature, relax: float = 1.0, line_search: bool = False) -> SubproblemResult:
    r"""Eqs. (18), (20): one step on  loss(Y, W X_in + b) + rho ||W||_F^2 + gamma (||W - W0||_F^2 + ||b - b0||^2).

    ``[W, b] <- [W, b] - G \tilde M^{-1}`` with ``G = h'(W X_in + b) X_a^T + mu [W, b] - 2 gamma [W0, b0]``
    (``h' = softmax(.) - Y`` for cross-entropy, ``2(. - Y)`` for MSE). With an exact curvature (refreshed from
    this batch, full rank) it is :func:`~fenchel_cvx.torch.w_last`'s MM step (cross-entropy) and its exact
    solution (MSE, a quadratic). Cost: three small GEMMs (``W X_in``, the gradient, and ``4 K p_a k``).

    Parameters
    ----------
    X_in : Tensor, shape (p_L, m)
    Y : Tensor, shape (K, m)
        Targets (probability columns for cross-entropy), same dtype and device as ``X_in``.
    W : Tensor, shape (K, p_L)
    b : Tensor, shape (K,), or None
    loss, rho, gamma, W0, b0
        As :func:`~fenchel_cvx.torch.w_last`.
    curvature : RunningCurvature
        From :func:`last_curvature`.
    relax : float
        Step multiplier, as in :func:`w_hidden_step`.
    line_search : bool
        Halve the step until the objective does not increase (at most ``_HALVINGS`` times, then no step): one
        small GEMM (``K p_L m``) per trial.

    Returns
    -------
    SubproblemResult
        As :func:`w_hidden_step` (``residual`` has one entry).
    """
    t0 = time.perf_counter()
    loss = get_loss(loss)
    if not isinstance(loss, (MSELoss, CrossEntropyLoss)):
        raise ValueRangeError(f"loss: expected 'mse' or 'ce', got {loss!r}")
    rho, gamma = check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True)
    bcol = _check_step(X_in, W, b, gamma, W0, b0, curvature)
    check_tensor(Y, "Y", ref=X_in, shape=(W.shape[0], X_in.shape[1]), layout="(outputs, samples)")
    Yhat = torch.addmm(bcol, W, X_in) if bcol is not None else W @ X_in
    relax = _check_relax(relax)
    search = _check_search(line_search, relax)

    def objective(W_: torch.Tensor, b_: torch.Tensor | None, Yhat_: torch.Tensor) -> float:
        return float(loss.value(Y, Yhat_)) + _penalty(W_.to(_F64), None if b_ is None else b_.to(_F64), rho, gamma,
                                                      W0, b0)

    f0 = objective(W, b, Yhat) if search else math.nan
    H = torch.softmax(Yhat, 0).sub_(Y) if isinstance(loss, CrossEntropyLoss) else Yhat.sub_(Y).mul_(2.0)
    _, D = _direction(H @ X_in.T, H.sum(1) if b is not None else None, W, b, rho, gamma, W0, b0, curvature)
    if relax != 1.0:
        D.mul_(relax)
    W_new, b_new = _apply(W, b, D)
    for _ in range(_HALVINGS if search else 0):
        Yhat_new = torch.addmm(b_new[:, None], W_new, X_in) if b_new is not None else W_new @ X_in
        if objective(W_new, b_new, Yhat_new) <= f0:
            break
        D.mul_(0.5)
        W_new, b_new = _apply(W, b, D)
    else:
        if search:  # no trial step decreased the objective: stay put
            W_new, b_new = W.clone(), None if b is None else b.clone()
    return _result("w_last", W_new, b_new, t0, curvature)
