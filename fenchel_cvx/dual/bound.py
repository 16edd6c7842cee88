r"""Evaluate the Lagrange relaxation: the primal P(W), the Lagrangian J(W, X), and an estimate of G(lambda).

The chain the paper proves (eqs. 3, 7, 8) is, for every ``lam >= 0`` and every weights ``W``,

.. math::  G(\lambda) = \min_{W, X} J(W, X) \;\le\; d^* \;\le\; p^* \;\le\; P(W) = J(W, X_{ff}(W)),

the last equality because ``B = 0`` at the feed-forward X-variables. ``G`` itself is a non-convex minimum:
block coordinate descent only reaches a local value, so what :func:`estimate_G` returns, ``G_hat``, is the best
``J`` found from several starts -- an **upper** estimate of ``G(lambda)``, never a certified lower bound on
``p*``. A certified lower bound needs :func:`fenchel_cvx.dual.certify_lower_bound` (small ReLU nets) or the
convex one-layer case :func:`fenchel_cvx.dual.one_layer_bound` (Appendix B).

Every candidate point is kept honest: its ``J`` is recomputed in numpy float64 by
:meth:`LiftedNetwork.lagrangian_terms`, independent of the solver that produced it, and the feed-forward point
of every weight set visited is a candidate too, so ``G_hat <= P(W)`` for every ``W`` evaluated.

Layout: the functions here are user-facing and take samples-first data ``X (m, n)``, ``Y (m,)`` labels or
``(m, p)`` targets; internally (paper layout) they work on ``(features, samples)``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_finite, check_int, check_ndim, per_layer
from ..errors import BoundViolationError, NotConvergedWarning, ShapeError
from ..network import LiftedNetwork
from ._inputs import check_network, check_number, check_tolerance, float_array, host_array

__all__ = ["BoundReport", "estimate_G", "check_weak_duality", "paper_layout"]


def paper_layout(net: LiftedNetwork, X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Samples-first ``X (m, n)``, ``Y (m,)``/``(m, p)`` -> paper-layout float64 ``X0 (n, m)``, ``T (p, m)``.

    ``Y (m,)`` holds class labels when the network has several outputs and the targets of its one output when
    it has one (integer or not). Numpy arrays, sequences and torch tensors (any device, with or without
    ``requires_grad``) are accepted.
    """
    X = float_array(X, "X")
    check_ndim(X, "X", 2, "(m, n): samples x features")
    check_finite(X, "X")
    if X.shape[1] != net.n:
        raise ShapeError(f"X: expected {net.n} columns (input features), got shape {X.shape}")
    if X.shape[0] < 1:
        raise ShapeError(f"X: expected at least one sample (row), got shape {X.shape}")
    Y = host_array(Y, "Y")
    if Y.ndim == 2:
        if Y.shape[0] != X.shape[0]:
            raise ShapeError(f"Y: expected {X.shape[0]} rows (one per sample of X), got shape {Y.shape}")
        T = net.loss.targets(np.asarray(Y, dtype=float).T, net.p)
    elif Y.ndim == 1:
        if Y.shape[0] != X.shape[0]:
            raise ShapeError(f"Y: expected {X.shape[0]} labels (one per sample of X), got shape {Y.shape}")
        # labels only for several outputs: a one-output network's integer Y are targets (labels 0..0 mean nothing)
        T = net.loss.targets(Y, net.p) if net.p > 1 else np.asarray(Y, dtype=float)[None, :]
    else:
        raise ShapeError(f"Y: expected labels (m,) or targets (m, p), got shape {Y.shape}")
    return X.T.copy(), np.asarray(T, dtype=float)


@dataclass
class BoundReport:
    """What :func:`estimate_G` found.

    Attributes
    ----------
    P : float
        Primal objective (eq. 3) at the reference weights (the network passed in).
    G_hat : float
        Best Lagrangian value found: an upper estimate of ``G(lam)`` (not a certified bound).
    gap : float
        ``P - G_hat >= 0``: how far below the network's loss the relaxation reaches.
    loss, penalty, regularization : float
        The three parts of ``J`` at the best point (``penalty = sum_l lam_l B_l >= 0``).
    P_best_weights : float
        ``P`` at the best point's weights (``>= G_hat``).
    lam, rho : list of float
        Per-layer multipliers and weight penalties.
    starts : list of float
        ``J`` reached from each start (start 0 is the reference weights).
    max_residual : float
        Largest solver residual of the last BCD sweep over all starts.
    network : LiftedNetwork
        The weights of the best point.
    Xvars : list of ndarray, shape (p_l, m)
        The X-variables of the best point (paper layout).
    """

    P: float
    G_hat: float
    gap: float
    loss: float
    penalty: float
    regularization: float
    P_best_weights: float
    lam: list
    rho: list
    starts: list = field(default_factory=list)
    max_residual: float = math.nan
    network: Any = None
    Xvars: list | None = None

    def __str__(self) -> str:
        lam = ", ".join(f"{v:g}" for v in self.lam)
        rho = ", ".join(f"{v:g}" for v in self.rho)
        rel = self.gap / abs(self.P) if self.P else math.nan
        return "\n".join([
            f"Lagrange relaxation at lam = [{lam}], rho = [{rho}]",
            f"  P(W)      primal objective (eq. 3) at the given weights : {self.P:.6g}",
            f"  G_hat     best J found over {len(self.starts)} starts (upper estimate of G) : {self.G_hat:.6g}",
            f"            = loss {self.loss:.6g} + penalty {self.penalty:.6g} + rho-term {self.regularization:.6g}",
            f"  gap       P - G_hat = {self.gap:.6g} ({rel:.2%} of P)",
            f"  P at the best point's weights : {self.P_best_weights:.6g}",
            "  J per start : " + ", ".join(f"{v:.6g}" for v in self.starts),
            f"  max solver residual : {self.max_residual:.2e}",
            "  G_hat is not certified: G(lam) <= G_hat. For a certified lower bound on p*, see certify_lower_bound.",
        ])


def _terms(net: LiftedNetwork, X0: np.ndarray, T: np.ndarray, Xvars: list, lam: list, rho: list) -> dict:
    return net.lagrangian_terms(X0, T, [np.asarray(x, dtype=float) for x in Xvars], lam, rho)


def estimate_G(net: LiftedNetwork, X: Any, Y: Any, *, lam: Any, rho: Any, starts: int = 3,
               iterations: int = 30, seed: int = 0, backend: str = "torch", tol: float = 1e-9,
               init: LiftedNetwork | None = None) -> BoundReport:
    """Estimate ``G(lam)`` from above by full-batch BCD (Algorithm 1) from several starts.

    Under :mod:`torch.distributed` with two or more processes (every process passing the same ``X``, ``Y``) the
    BCD sweeps are data-parallel (:mod:`fenchel_cvx.shards`) and every process returns the same report.

    Parameters
    ----------
    net : LiftedNetwork
        Architecture, loss and the reference weights at which ``P`` is reported.
    X : array, shape (m, n)
        Inputs, samples first.
    Y : array, shape (m,) or (m, p)
        Labels or targets, samples first.
    lam : float or sequence of L floats
        Multipliers ``lam_l > 0``.
    rho : float or sequence of L + 1 floats
        Weight penalties ``rho_l >= 0``.
    starts : int
        Number of starts (``>= 1``): start 0 is ``init`` (default: the reference weights), starts ``1..`` are
        Xavier initializations seeded ``seed + k``. Each start runs from its feed-forward X-variables. The
        reference weights' feed-forward point is a candidate in any case, so ``gap >= 0``.
    iterations : int
        BCD sweeps per start (``>= 0``).
    seed : int
        Seed (``>= 0``) of the random starts.
    backend : {"torch", "cvx"}
        Subproblem face used by BCD.
    tol : float
        Subproblem tolerance.
    init : LiftedNetwork, optional
        Weights of start 0 (a warm start, e.g. the solution at a neighbouring ``lam``); same layer sizes as
        ``net``.

    Returns
    -------
    BoundReport

    Raises
    ------
    ValueRangeError
        ``lam`` not > 0, ``rho`` negative, non-finite hyperparameters, ``starts < 1``, ``iterations < 0``,
        ``seed < 0``, ``tol`` not > 0.
    ShapeError
        ``X``/``Y`` shapes that do not match ``net`` or each other, no samples, ``init`` with other sizes.
    DomainError
        Non-numeric or non-finite data; ``net`` not a :class:`LiftedNetwork`.
    ChoiceError
        An unknown ``backend``.
    """
    from ..bcd import BCD, BCDSettings  # bcd sits above network; imported here to keep import order one-way

    check_network(net, "net")
    if init is not None:
        check_network(init, "init", like=net)
    lam_l = per_layer(lam, net.L, "lam", positive=True)
    rho_l = per_layer(rho, net.L + 1, "rho", nonneg=True)
    starts = check_int(starts, "starts", 1)
    iterations = check_int(iterations, "iterations", 0, hint="BCD sweeps per start")
    seed = check_int(seed, "seed", 0)
    X0, T = paper_layout(net, X, Y)
    P_ref = net.primal_objective(X0, T, rho_l)

    best: dict | None = None
    per_start, residuals = [], []
    for k in range(int(starts)):
        net_k = (init or net).copy() if k == 0 else LiftedNetwork(net.layers, net.acts, net.loss, seed=seed + k)
        bcd = BCD(net_k, BCDSettings(lam=lam_l, rho=rho_l, batch_size=None, epochs=iterations,
                                     backend=backend, tol=tol, shuffle=False, seed=seed + k))
        with warnings.catch_warnings():
            # A sweep that stops short is still a valid point: J is recomputed below.
            warnings.simplefilter("ignore", NotConvergedWarning)
            state = bcd.run(X0.T, T.T, progress=False)
        residuals.append(float(state.last.get("max_residual", math.nan)))
        net_out = bcd.network_from_state(state)
        X_all = bcd.gathered_X(state)  # data-parallel: every process's columns
        Xvars = [x.detach().cpu().double().numpy() for x in X_all] if X_all is not None else net_out.init_X(X0)
        candidates = [(net_out, Xvars), (net_out, net_out.init_X(X0)), (net_k, net_k.init_X(X0))]
        if k == 0 and init is not None:  # the reference weights themselves, where P is reported: G_hat <= P
            candidates.append((net.copy(), net.init_X(X0)))
        start_best = None
        for cand_net, cand_X in candidates:
            t = _terms(cand_net, X0, T, cand_X, lam_l, rho_l)
            if start_best is None or t["total"] < start_best[0]["total"]:
                start_best = (t, cand_net, cand_X)
        per_start.append(start_best[0]["total"])
        if best is None or start_best[0]["total"] < best["t"]["total"]:
            best = {"t": start_best[0], "net": start_best[1], "X": start_best[2]}

    t = best["t"]
    G_hat = float(t["total"])
    P_best = best["net"].primal_objective(X0, T, rho_l)
    return BoundReport(P=float(P_ref), G_hat=G_hat, gap=float(P_ref) - G_hat, loss=float(t["loss"]),
                       penalty=float(t["penalty"]), regularization=float(t["regularization"]),
                       P_best_weights=float(P_best), lam=lam_l, rho=rho_l, starts=per_start,
                       max_residual=float(np.nanmax(residuals)) if np.isfinite(residuals).any() else math.nan,
                       network=best["net"], Xvars=best["X"])


def check_weak_duality(lower: float, upper: float, *, rtol: float = 1e-7, atol: float = 1e-9,
                       lower_name: str = "lower bound", upper_name: str = "upper bound") -> float:
    """Raise :class:`BoundViolationError` when ``lower > upper`` beyond solver tolerance.

    A violation cannot happen in exact arithmetic (``G(lam) <= p* <= P(W)``): it means a solver returned a
    wrong answer or a bug. The tolerance is ``atol + rtol * max(|lower|, |upper|)``.

    Parameters
    ----------
    lower, upper : float
        Real scalars (a numpy scalar, 0-d array or one-element tensor is accepted); ``-inf``/``+inf`` allowed.
    rtol, atol : float
        Finite tolerances ``>= 0``.
    lower_name, upper_name : str
        How the message names the two values.

    Returns
    -------
    float
        The slack ``upper - lower`` (may be slightly negative inside the tolerance).

    Raises
    ------
    BoundViolationError
        ``lower > upper`` beyond the tolerance, or a NaN value.
    ValueRangeError, ShapeError
        A value that is not a real scalar; ``rtol`` or ``atol`` negative or not finite.
    """
    lower, upper = check_number(lower, "lower"), check_number(upper, "upper")
    rtol, atol = check_tolerance(rtol, "rtol"), check_tolerance(atol, "atol")
    if math.isnan(lower) or math.isnan(upper):
        raise BoundViolationError(f"weak duality check: got NaN ({lower_name} = {lower}, {upper_name} = {upper})",
                                  lower=lower, upper=upper)
    if lower == upper:  # also +-inf on both sides, where upper - lower would be NaN
        return 0.0
    tol = atol + rtol * max([abs(v) for v in (lower, upper) if math.isfinite(v)], default=0.0)
    if lower > upper + tol:
        raise BoundViolationError(
            f"weak duality violated: {lower_name} = {lower:.12g} exceeds {upper_name} = {upper:.12g} by "
            f"{lower - upper:.3g} (tolerance {tol:.3g}); a solver returned a wrong answer -- rerun with a "
            "tighter tol or the other backend to find which", lower=lower, upper=upper, tol=tol)
    return upper - lower
