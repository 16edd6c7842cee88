r"""Certified lower bound on G(lambda) for a one-hidden-layer ReLU network (issue 6, item 4).

For data ``X (m, n)`` and targets ``Y (m,)`` or ``(m, p)`` (samples first; transposed once to the paper's
``(features, samples)`` layout inside) and a hidden layer of ``h`` ReLU units, :func:`certify_lower_bound`
brackets

.. math::  G(\lambda) = \min_{W_0, b_0, W_1, b_1, X_1 \ge 0}
           \|Y - W_1 X_1 - b_1 1^T\|_F^2 + \rho(\|W_0\|_F^2 + \|W_1\|_F^2) + \lambda B(X_1, W_0 X + b_0 1^T)

(eq. 7 with eq. 5's ReLU penalty, MSE as a sum of squares, unpenalized biases) between ``lower`` (a
rigorous bound: ``lower <= G(lambda) <= p*``, the optimum of the ordinary training problem (3)) and ``upper``
(the exact ``J`` of a returned point). With one output it first solves the *activation-pattern relaxation*
(one convex problem with a group of variables per activation pattern of the data, valid for any width, refined
round by round by splitting ratio boxes of its groups); then, or for several outputs, a spatial
branch-and-bound over ``theta = (W0, b0, W1)``; for fixed ``theta`` the problem is convex in ``(X1, b1)``.
``lower`` is the larger of the two bounds.

What makes each node's number a valid bound (full proofs: ``docs/certified_bound.md``):

* **Restrictions without loss of generality** (section 2). Any point can be moved, without raising ``J``,
  to one where every unit is *balanced* (``rho ||v_k||^2 = rho ||w_k||^2 + lam sum_j B_kj``; the rescaling
  ``(w, c, X, v) -> (t w, t c, t X, v / t)`` leaves the output unchanged and ``B`` is 2-homogeneous), units
  are sorted by their first output weight, a dead unit's bias is raised until ``max_j a_kj = 0``, an
  always-on unit's bias and activations are shifted into ``b1`` until ``min_j a_kj <= sqrt(2 max_j B_kj)``,
  and ``b1`` is the mean residual. It suffices to bound ``J`` over such points with ``J <= U``, where
  ``J = loss + 2 rho sum_k ||v_k||^2``, ``||w_k|| <= ||v_k||``, ``lam B_kj <= rho ||v_k||^2`` and
  ``|X - relu(a)| <= sqrt(2 B)``: these bound every variable.
* **The activation-pattern relaxation** (sections 4.3-4.4). By AM-GM on the balance, each unit costs at least
  ``2 sqrt(rho) N_k`` with ``N_k = sqrt(rho ||w_hat||^2 + lam sum_j B)`` in the rescaled variables; on a fixed
  activation pattern ``N_k`` is at least a norm of a linear map (``B >= Z^2/2`` where the unit is off), which is
  subadditive, so one group per pattern and output sign can hold the sum of all units that have them. Boxes on
  the ratios ``-a_hat_j / N`` of a group's switched-off samples put back part of the dropped ``|a| Z`` term;
  splitting a box keeps both halves as groups, so every round is again one valid convex problem.
* **The relaxations** of the tree (section 4.1-4.2), convex, built once as DPP CVXPY problems and re-solved per
  node with Clarabel. One output (default): the *perspective* formulation in ``(|v| w, |v| c, |v| X, v^2)`` per unit,
  where the output is linear, ``||w||^2`` is a quad-over-linear and ``B`` is a quad-over-linear plus the
  concave ``-relu(-a_hat)^2 / (2 s)``, replaced by affine minorants over the node box; plus deviation,
  convexity and activation (McCormick) cuts; branching on activation signs and then on the box. Several
  outputs: the *direct* formulation over ``(W0, b0, W1)`` with McCormick envelopes of ``W1 X1``, the secant
  of the concave part of ``B``, lifted squares and output-variation cuts.
* **The solver's tolerance does not enter** (section 5): the node bound is the weak-duality value of
  Clarabel's dual vector after projection onto the dual cone, with the dual residual charged against the box
  of every conic variable, minus a bound on floating-point rounding; all derived data are rounded outward.
  The primal value is never used.
* **Pruning** (section 6): a node is closed when its bound is at least ``upper (1 - rel_gap)``; ``lower`` is
  the minimum of the bounds of open *and* closed nodes, so it stays valid whatever ``rel_gap``.

Size limits: ``hidden <= 4`` and at most 16 branched scalars ``hidden * (n + 1 + p)`` (a 2-3-1 net has 12);
beyond that the tree grows too fast to say anything useful in minutes (``ValueRangeError``). ``2 <= m <= 2000``
samples, and a predicted memory need within ``memory_limit`` (default 4 GiB; every size within the other limits
needs at most 2.5 GB by the prediction of :mod:`._bb_budget`, 1 GB or less measured). The run honours
``time_limit``: every phase checks the clock and the result is the best certificate so far.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .._checks import check_choice, check_finite, check_flag, check_int, check_scalar
from ..errors import ResourceLimitError, ShapeError, ValueRangeError
from ._bb_boxes import NodeData
from ._bb_budget import DEFAULT_MEMORY_GIB, GIB, build_seconds, max_samples_within, relaxation_bytes
from ._bb_direct import DirectFormulation
from ._bb_patterns import (
    MAX_PATTERN_ENTRIES,
    PatternGroups,
    PatternRelaxation,
    activation_patterns,
    pattern_count_bound,
    predicted_seconds,
)
from ._bb_persp import PerspectiveFormulation
from ._bb_problem import Point, Problem
from ._bb_threads import single_thread_blas
from ._inputs import check_number, check_seconds, check_tolerance, float_array

__all__ = ["Certificate", "certify_lower_bound", "MAX_HIDDEN", "MAX_BRANCHED"]

MAX_HIDDEN = 4
MAX_BRANCHED = 16
MAX_SAMPLES = 2000
_SEARCH_SHARE = 0.25  # the initial multi-start search gets at most this share of time_limit
_PATTERN_SHARE = 0.75  # the pattern relaxation's rounds get at most this share of the time then left
_PATTERN_STALL = 1e-3  # ... and stop when three rounds raised the bound by less than this fraction of upper
_PATTERN_SEARCH_EVERY = 5  # a local search from the relaxation's network on rounds 1, 6, 11, ...
_PATTERN_BYTES = 6000  # peak bytes per variable of the pattern relaxation (measured 1.3 GB at 265k: 4.9 KB)


@dataclass
class Certificate:
    r"""Result of :func:`certify_lower_bound`: ``lower <= G(lambda) <= upper``.

    Attributes
    ----------
    lower : float
        Rigorous lower bound on ``G(lambda)`` (hence on the training optimum ``p*`` of eq. 3).
    upper : float
        Exact ``J`` at the returned weights: an upper bound on ``G(lambda)``.
    gap, rel_gap : float
        ``upper - lower`` and ``gap / upper`` (``0`` when ``upper == 0``).
    nodes : int
        Relaxations solved.
    seconds : float
        Wall-clock time, including the local searches.
    status : str
        ``"certified"`` when ``rel_gap <= `` the requested ``rel_gap``; else why the run stopped:
        ``"time_limit"`` (every root node had been solved: ``lower`` is at least their minimum bound; a root
        solve cut short by the clock still gives a valid, weaker bound), ``"time_limit_no_root"`` (the time ran
        out before every root node was solved, or before the relaxation could be built: ``lower = 0``, the
        trivial bound ``J >= 0``), ``"node_limit"`` or ``"memory_limit"`` (open nodes would exceed
        ``memory_limit``). ``lower`` is valid in every case.
    W0 (h, n), b0 (h,), W1 (p, h), b1 (p,), X1 (h, m) : ndarray
        The point attaining ``upper`` (paper layout: ``X1`` has one column per sample).
    lam, rho : float
    hidden : int
    root_lower : float
        The bound after the root node (the larger of the tree's root bound and ``pattern_lower``).
    pattern_lower : float
        The rigorous bound of the activation-pattern relaxation (one convex problem over every activation
        pattern of the data, ``docs/certified_bound.md`` §4.3); ``nan`` when it was not used (several outputs,
        ``patterns=False``, too many patterns, or no time). ``lower`` is at least this.
    open_nodes : int
        Nodes still open at the end.
    history : list of (seconds, lower, upper)
        Progress, one entry per improvement.
    """

    lower: float
    upper: float
    gap: float
    rel_gap: float
    nodes: int
    seconds: float
    status: str
    W0: np.ndarray
    b0: np.ndarray
    W1: np.ndarray
    b1: np.ndarray
    X1: np.ndarray
    lam: float
    rho: float
    hidden: int
    root_lower: float = float("nan")
    pattern_lower: float = float("nan")
    open_nodes: int = 0
    history: list = field(default_factory=list)

    def __str__(self) -> str:
        n, p = self.W0.shape[1], self.W1.shape[0]
        lines = [
            f"Certificate for G(lambda) of a {n}-{self.hidden}-{p} ReLU network "
            f"(lambda={self.lam:g}, rho={self.rho:g}, {self.X1.shape[1]} samples)",
            f"  {self.lower:.6g} <= G(lambda) <= {self.upper:.6g}   "
            f"gap {self.gap:.3g} ({100 * self.rel_gap:.3g}%), status: {self.status}",
            "  lower: rigorous (weak duality of each node relaxation, solver tolerance accounted for); "
            "also a lower bound on the training optimum p* of eq. (3)",
            "  upper: exact J at the returned weights (W0, b0, W1, b1, X1)",
            *(["  the time ran out before every root relaxation was solved: lower = 0 is the trivial bound "
               "J >= 0; raise time_limit"] if self.status == "time_limit_no_root" else []),
            f"  {self.nodes} nodes ({self.open_nodes} open), {self.seconds:.1f} s, root bound {self.root_lower:.6g}",
            *([] if math.isnan(self.pattern_lower) else [f"  activation-pattern relaxation: {self.pattern_lower:.6g}"]),
        ]
        return "\n".join(lines)


@dataclass(order=True)
class _Node:
    bound: float
    order: int
    data: NodeData = field(compare=False)
    values: dict | None = field(compare=False, default=None)


def _validate(X, Y, hidden, lam, rho, time_limit, rel_gap) -> tuple[np.ndarray, np.ndarray, int, float, float,
                                                                      float, float]:
    X = float_array(X, "X")
    Y = float_array(Y, "Y")
    if X.ndim != 2:
        raise ShapeError(f"X: expected a 2-D array (m samples, n features), got shape {X.shape}")
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ShapeError(f"Y: expected shape ({X.shape[0]},) or ({X.shape[0]}, p) to match X's {X.shape[0]} "
                         f"samples (samples first), got {Y.shape}")
    m, n = X.shape
    p = Y.shape[1]
    if m < 2 or m > MAX_SAMPLES:
        raise ValueRangeError(f"X: expected between 2 and {MAX_SAMPLES} samples (rows), got {m}")
    if n < 1:
        raise ShapeError(f"X: expected at least one feature (column), got shape {X.shape}")
    if p < 1:
        raise ShapeError(f"Y: expected at least one target column, got shape {Y.shape}")
    check_finite(X, "X")
    check_finite(Y, "Y")
    # one hidden layer, one multiplier: a sequence (the per-layer form of estimate_G) is a ShapeError
    lam = check_scalar(check_number(lam, "lam"), "lam", positive=True)
    rho = check_scalar(check_number(rho, "rho"), "rho")
    if not rho > 0:
        raise ValueRangeError(f"rho: expected > 0, got {rho}; the certificate bounds the weights through the "
                              "penalty rho ||W||^2, which needs rho > 0")
    time_limit = check_seconds(time_limit, "time_limit")
    rg = check_tolerance(rel_gap, "rel_gap", below_one=True)
    hidden = check_int(hidden, "hidden", 1, hint=f"certify_lower_bound handles 1 to {MAX_HIDDEN} hidden units")
    d = hidden * (n + 1 + p)
    if hidden > MAX_HIDDEN or d > MAX_BRANCHED:
        raise ValueRangeError(f"hidden: a width of {hidden} with {n} inputs and {p} outputs means {d} branched "
                              f"weights; certify_lower_bound handles hidden <= {MAX_HIDDEN} and "
                              f"hidden*(n+1+p) <= {MAX_BRANCHED}. Use a narrower network, fewer inputs, or "
                              "the uncertified G_hat estimate")
    return X.T.copy(), Y.T.copy(), int(hidden), lam, rho, time_limit, rg


def _check_memory(m: int, h: int, n: int, p: int, perspective: bool, max_pairs: int | None,
                  memory_limit: float) -> float:
    """Predicted bytes of the relaxation; refuse (at once) a size that does not fit in ``memory_limit`` GiB."""
    need = relaxation_bytes(m, h, n, p, perspective=perspective, max_pairs_per_point=max_pairs)
    budget = memory_limit * GIB
    if need > budget:
        fit = max_samples_within(budget, h, n, p, perspective=perspective, max_pairs_per_point=max_pairs,
                                 upper=MAX_SAMPLES)
        pairs = "" if max_pairs is None else f", max_pairs_per_point={max_pairs}"
        where = (f"at most m = {fit} fit" if fit >= 2 else "no number of samples fits")
        knob = ", a smaller max_pairs_per_point (default 10)" if m > 40 else ""
        raise ResourceLimitError(
            f"X: m = {m} samples need about {need / GIB:.3g} GiB for the relaxation; {where} in the "
            f"{memory_limit:g} GiB budget with hidden={h}, n={n}, p={p}{pairs}; pass fewer samples{knob} "
            "or raise memory_limit")
    return need


def certify_lower_bound(X, Y, *, hidden: int, lam: float, rho: float, time_limit: float = 60.0,
                        rel_gap: float = 1e-3, seed: int = 0, n_starts: int = 12, max_nodes: int | None = None,
                        heuristic_every: int = 25, formulation: str = "auto",
                        max_pairs_per_point: int | None = None, memory_limit: float = DEFAULT_MEMORY_GIB,
                        patterns: bool = True, verbose: bool = False) -> Certificate:
    r"""Bracket ``G(lambda)`` of a one-hidden-layer ReLU network by branch-and-bound.

    Parameters
    ----------
    X : array_like or torch.Tensor, shape (m, n)
        Inputs, samples first (transposed once to the paper's ``(n, m)`` inside); ``2 <= m <= 2000``.
    Y : array_like or torch.Tensor, shape (m,) or (m, p)
        Regression targets, samples first.
    hidden : int
        Width ``h`` of the hidden ReLU layer (``h <= 4`` and ``h (n + 1 + p) <= 16``).
    lam : float
        Lagrange multiplier ``lambda > 0`` of the penalty ``B`` (eq. 7).
    rho : float
        Weight penalty ``rho > 0`` on both weight matrices (biases are not penalized).
    time_limit : float
        Seconds for the whole run, finite and ``> 0``: the initial local searches (at most a quarter of it),
        building the relaxation, the root nodes and the tree. Every phase checks the clock; see Notes for how
        far a run can overshoot.
    rel_gap : float
        Stop when ``(upper - lower) / upper <= rel_gap`` (``0 <= rel_gap < 1``).
    seed : int
        Seed (``>= 0``) of the local-search starts.
    n_starts : int
        Random starts (``>= 1``) of the initial multi-start L-BFGS-B search for ``upper``.
    max_nodes : int, optional
        Stop after this many node relaxations (``>= 0``).
    heuristic_every : int
        Run a local search from the relaxation's ``theta`` every this many nodes (``>= 1``; improves
        ``upper``).
    formulation : {"auto", "perspective", "direct"}
        ``"auto"`` (default): the perspective formulation for one output, the direct one otherwise
        (``docs/certified_bound.md``, section 4). ``"perspective"`` needs one output.
    max_pairs_per_point : int, optional
        Pairwise cuts (output variation, convexity) use all sample pairs when ``None`` and ``m <= 40``;
        otherwise each sample with this many (``>= 1``, default 10) nearest neighbours (fewer cuts, faster
        nodes, weaker bound; any subset of valid cuts is valid).
    memory_limit : float
        GiB the relaxation, its solver and the open nodes may use (default 4; the Python process itself,
        about 0.3 GB with numpy, CVXPY and torch loaded, is not counted). A size whose predicted need exceeds
        it is refused before anything is built; the tree stops (status ``"memory_limit"``) before its open
        nodes would exceed it.
    patterns : bool
        With one output, first solve the *activation-pattern relaxation* (default ``True``): one convex
        problem with a group of variables per activation pattern of the data and output sign, whose bound holds
        for any width and was within 0.03-9% of ``G`` after one solve (about a second at ``m = 20``) on the
        benchmark's eight instances, then refine it in rounds (``docs/certified_bound.md``, §4.3-4.4) for up to
        3/4 of the time left, before the tree. Used when its size, ``2 P (m + n + 2)`` variables for the
        ``P <= 2 sum_{i<=n} C(m-1, i)`` patterns, is at most 150,000 (e.g. ``m = 20`` with ``n <= 3``,
        ``m = 40`` with ``n = 2``, ``m = 190`` with ``n = 1``) and, at about 6 KB per variable, fits
        ``memory_limit``; its solutions also seed ``upper``. ``lower`` is the larger of its bound and the
        tree's.
    verbose : bool
        Print progress lines.

    Returns
    -------
    Certificate
        ``lower <= G(lambda) <= upper``; see :class:`Certificate` for ``status``.

    Raises
    ------
    ValueRangeError
        ``rho <= 0``, ``lam <= 0``, ``time_limit`` not a finite positive number, a width or input/output size
        too large to branch on, ``rel_gap`` outside ``[0, 1)``, fewer than 2 or more than 2000 samples, a size
        whose relaxation does not fit in ``memory_limit`` (the message gives the largest ``m`` that fits),
        or a bad integer option (``seed``, ``n_starts``, ``max_nodes``, ``heuristic_every``,
        ``max_pairs_per_point``).
    ShapeError
        ``X`` not 2-D or without columns, ``Y`` not matching its number of samples, or ``lam`` or ``rho`` not a
        scalar (a list, or an array of more than one element).
    DomainError
        Non-finite or non-numeric data.
    ChoiceError
        An unknown ``formulation``.

    Notes
    -----
    *Limits it meets on a machine with 8 GiB*: every size allowed above (``m <= 2000``,
    ``h (n + 1 + p) <= 16``, default ``max_pairs_per_point``) is predicted to need at most 2.5 GB; measured
    peaks were 0.95 GB or less (``fenchel_cvx/dual/_bb_budget.py``).

    *Time*: the local searches, the tree loop and every node solve check the clock; a node solve is an
    interior-point method that checks it between iterations, so a run can overshoot ``time_limit`` by one
    iteration, plus at most one local-search iteration. Building the relaxation cannot be interrupted; it is
    skipped when its predicted duration does not fit in the time left. One iteration costs about 0.03 s at
    ``m = 300``, 0.25 s at ``m = 1000`` and 1 s at ``m = 2000`` (``n = 2, h = 2``, idle core); it grows fast
    with ``h``, ``n`` and ``max_pairs_per_point`` (about 90 s at ``m = 2000, n = 5, h = 2``, 0.2 s there with
    ``max_pairs_per_point=1``), because the nearest-neighbour cuts fill in the factorization. After the
    first solve the measured cost per iteration is charged in advance, so later solves do not overshoot.

    If the time runs out before every root node has been solved, ``lower`` is 0 (``J >= 0``) and the status
    is ``"time_limit_no_root"``. Root nodes share the time left equally, so that each gets a bound. A round of
    the pattern relaxation is started only when a fit from above of its whole duration (1.1 s at ``m = 20``,
    ``n = 2``; 16 s at 116,000 variables) fits in its share, since the solver's set-up cannot be interrupted.
    """
    X0, Yp, h, lam, rho, time_limit, rel_gap = _validate(X, Y, hidden, lam, rho, time_limit, rel_gap)
    patterns, verbose = check_flag(patterns, "patterns"), check_flag(verbose, "verbose")
    seed = check_int(seed, "seed", 0)
    n_starts = check_int(n_starts, "n_starts", 1)
    max_nodes = check_int(max_nodes, "max_nodes", 0, optional=True)
    heuristic_every = check_int(heuristic_every, "heuristic_every", 1)
    max_pairs_per_point = check_int(max_pairs_per_point, "max_pairs_per_point", 1, optional=True)
    memory_limit = check_number(memory_limit, "memory_limit")
    if not (math.isfinite(memory_limit) and memory_limit > 0):
        raise ValueRangeError(f"memory_limit: expected a finite number of GiB > 0, got {memory_limit}")
    check_choice(formulation, "formulation", ("auto", "perspective", "direct"))
    (n, m), p = X0.shape, Yp.shape[0]
    if formulation == "perspective" and p != 1:
        raise ValueRangeError(f"formulation: 'perspective' needs a single output, got p={p}; use "
                              "'direct' or 'auto'")
    if formulation == "auto":
        formulation = "perspective" if p == 1 else "direct"
    perspective = formulation == "perspective"
    rel_bytes = _check_memory(m, h, n, p, perspective, max_pairs_per_point, memory_limit)

    t_start = time.perf_counter()
    deadline = t_start + time_limit
    prob = Problem(X0, Yp, h, lam, rho)
    rng = np.random.default_rng(seed)
    history: list = []
    heap: list[_Node] = []
    counter = itertools.count()
    nodes, pruned_min, root_lower, unsolved_roots, node_bytes = 0, math.inf, 0.0, 0, 0

    def log(msg: str) -> None:
        if verbose:
            print(f"[certify {time.perf_counter() - t_start:7.2f}s] {msg}", flush=True)

    with single_thread_blas():
        best = prob.multistart(n_starts, rng, deadline=min(deadline, t_start + _SEARCH_SHARE * time_limit))
        U = best.J
        log(f"multistart: upper {U:.6g}")
        pattern_lower = math.nan
        if patterns and p == 1:
            pattern_lower, best, rounds = _pattern_bound(
                prob, best, deadline, rel_gap, memory_limit * GIB, log,
                lambda lo, up: history.append((time.perf_counter() - t_start, lo, up)))
            nodes += rounds
            U = best.J
        floor = 0.0 if math.isnan(pattern_lower) else pattern_lower
        build = build_seconds(m, h, n, p, perspective=perspective, max_pairs_per_point=max_pairs_per_point)
        if _rel(U, floor) <= rel_gap:
            log("the pattern relaxation certifies: no tree")
            roots = []
        elif time.perf_counter() + build > deadline:
            log(f"no time to build the relaxation (about {build:.2g} s): lower = 0 (J >= 0)")
            roots = []
            unsolved_roots = 1
        else:
            cls = PerspectiveFormulation if perspective else DirectFormulation
            form = cls(prob, max_pairs_per_point=max_pairs_per_point)
            roots = [nd for nd in (form.derive(lo, hi, tag, U) for lo, hi, tag in form.roots(U)) if nd is not None]
        # no root is impossible in exact arithmetic (the incumbent lies in some root); stay safe
        roots_failed = not roots and _rel(U, floor) > rel_gap
        width0 = np.max([nd.hi - nd.lo for nd in roots], axis=0) if roots else None
        if width0 is not None:
            width0 = np.where(np.isfinite(width0) & (width0 > 0), width0, 1.0)
        for i, nd in enumerate(roots):
            # the root bounds enter lower through their minimum: share the time left equally among them
            limit = _solve_limit(deadline, form.rel, len(roots) - i)
            if limit is None:
                unsolved_roots = len(roots) - i
                for left in roots[i:]:  # unsolved: only J >= 0 is known there
                    heapq.heappush(heap, _Node(0.0, next(counter), left, None))
                break
            res = form.rel.solve(nd, time_limit=limit)
            nodes += 1
            bound = max(_safe(res.bound), 0.0)
            if res.values is not None:
                cand = prob.local_search(form.point_from(res.values, nd.tag), maxiter=300, deadline=deadline)
                if cand.J < U:
                    best, U = cand, cand.J
            if bound >= U * (1.0 - rel_gap):
                pruned_min = min(pruned_min, bound)
            else:
                heapq.heappush(heap, _Node(bound, next(counter), nd, res.values))
                node_bytes = node_bytes or _node_bytes(nd, res.values)
        tree = bool(roots) and not roots_failed  # the tree's bounds count only once its roots were built

        def current_lower() -> float:
            # the tree's bound (open nodes, pruned ones, the incumbent) or the pattern bound, whichever is larger
            return max(_lower(heap, pruned_min, U) if tree else 0.0, min(floor, U))

        root_lower = current_lower()
        history.append((time.perf_counter() - t_start, root_lower, U))
        if roots:
            log(f"root ({form.name}, {len(roots)} nodes, {unsolved_roots} not solved): lower {root_lower:.6g}, "
                f"upper {U:.6g}")
        status = "time_limit"
        while heap and not unsolved_roots:
            lower = current_lower()
            if _rel(U, lower) <= rel_gap:
                break
            if time.perf_counter() >= deadline:
                break
            if max_nodes is not None and nodes >= max_nodes:
                status = "node_limit"
                break
            if rel_bytes + (len(heap) + 2) * node_bytes > memory_limit * GIB:
                status = "memory_limit"
                log(f"{len(heap)} open nodes would exceed memory_limit = {memory_limit:g} GiB")
                break
            node = heapq.heappop(heap)
            if node.bound >= U * (1.0 - rel_gap):
                pruned_min = min(pruned_min, node.bound)
                continue
            for lo, hi, tag in form.children(node.data, node.values, width0):
                child = form.derive(lo, hi, tag, U)
                if child is None:
                    continue  # provably no normalized point with J <= U in this box
                limit = _solve_limit(deadline, form.rel, 1)
                if limit is None:  # out of time: the child stays open with its parent's (valid) bound
                    heapq.heappush(heap, _Node(node.bound, next(counter), child, None))
                    continue
                res = form.rel.solve(child, time_limit=limit)
                nodes += 1
                bound = max(_safe(res.bound), node.bound)
                child.stall = 0 if _safe(res.bound) > node.bound + 1e-9 * abs(node.bound) else node.data.stall + 1
                if res.values is not None and nodes % heuristic_every == 0:
                    cand = prob.local_search(form.point_from(res.values, child.tag), maxiter=300, deadline=deadline)
                    if cand.J < U:
                        best, U = cand, cand.J
                        log(f"heuristic: upper {U:.6g}")
                if bound >= U * (1.0 - rel_gap):
                    pruned_min = min(pruned_min, bound)
                else:
                    heapq.heappush(heap, _Node(bound, next(counter), child, res.values))
                    node_bytes = node_bytes or _node_bytes(child, res.values)
            new_lower = current_lower()
            if new_lower > history[-1][1] or history[-1][2] > U:
                history.append((time.perf_counter() - t_start, new_lower, U))
            if verbose and nodes % 100 < 2:
                log(f"{nodes} nodes, {len(heap)} open: lower {new_lower:.6g}, upper {U:.6g}, "
                    f"gap {100 * _rel(U, new_lower):.3g}%")
        lower = current_lower()
        if _rel(U, lower) <= rel_gap:
            status = "certified"
        elif unsolved_roots and floor == 0.0:
            status = "time_limit_no_root"
    seconds = time.perf_counter() - t_start
    return Certificate(lower=lower, upper=U, gap=U - lower, rel_gap=_rel(U, lower), nodes=nodes, seconds=seconds,
                       status=status, W0=best.W0, b0=best.b0, W1=best.W1, b1=best.b1, X1=best.X1, lam=lam,
                       rho=rho, hidden=h, root_lower=root_lower, pattern_lower=pattern_lower, open_nodes=len(heap),
                       history=history)


def _pattern_bound(prob: Problem, best: Point, deadline: float, rel_gap: float, memory: float, log, progress
                   ) -> tuple[float, Point, int]:
    """The activation-pattern relaxation, refined round by round (``docs/certified_bound.md`` §4.3-4.4).

    Returns the best rigorous bound of all rounds (``nan`` when not used), the best point found (the networks
    read off each round's solution, polished by a local search) and the number of relaxations solved;
    ``progress(lower, upper)`` is called after every round. The rounds stop when the gap is closed, when the
    next round is not predicted to finish within ``_PATTERN_SHARE`` of the time left, or when three rounds in a
    row raised the bound by less than ``_PATTERN_STALL`` of ``upper`` (the tree then gets the rest).
    """
    width = prob.m + prob.n + 2

    def too_big(groups: int, cap: int) -> bool:
        return groups * width > min(cap, memory / _PATTERN_BYTES)

    groups_bound = 2 * pattern_count_bound(prob.m, prob.n)
    if too_big(groups_bound, MAX_PATTERN_ENTRIES):
        log(f"pattern relaxation skipped: up to {groups_bound} groups of {width} variables")
        return math.nan, best, 0
    pats = activation_patterns(prob.X0)
    if pats is None:
        log("pattern relaxation skipped: more than 10 samples on one hyperplane (degenerate data)")
        return math.nan, best, 0
    if too_big(2 * len(pats), 2 * MAX_PATTERN_ENTRIES):
        # (degenerate data can give more sign combinations than a generic arrangement has cells)
        log(f"pattern relaxation skipped: {2 * len(pats)} groups of {width} variables")
        return math.nan, best, 0
    groups = PatternGroups.initial(pats)
    stop_at = time.perf_counter() + _PATTERN_SHARE * (deadline - time.perf_counter())
    bound, rounds, trail = math.nan, 0, []
    while True:
        # its set-up is not interruptible: start a round only when a whole solve is predicted to fit
        need = predicted_seconds(len(groups) * width)
        if time.perf_counter() + need > stop_at:
            log(f"no time for a pattern relaxation round (about {need:.2g} s)")
            break
        rel = PatternRelaxation(prob, groups)
        res = rel.solve(rel.node(best.J), time_limit=max(stop_at - time.perf_counter(), 1e-3))
        rounds += 1
        if _safe(res.bound) > -math.inf:
            bound = max(_safe(res.bound), 0.0) if math.isnan(bound) else max(bound, _safe(res.bound))
        log(f"pattern relaxation round {rounds} ({len(groups)} groups, {res.status}, {res.seconds:.2f} s): "
            f"lower {bound:.6g}")
        if res.values is None:
            break
        if rounds % _PATTERN_SEARCH_EVERY == 1 and time.perf_counter() < deadline:
            cand = prob.local_search(rel.point_from(res.values), maxiter=500, deadline=deadline)
            if cand.J < best.J:
                best = cand
                log(f"pattern relaxation's network: upper {best.J:.6g}")
        trail.append(bound)
        if not math.isnan(bound):
            progress(min(bound, best.J), best.J)
            if _rel(best.J, bound) <= rel_gap:
                break
        if len(trail) > 3 and trail[-1] - trail[-4] < _PATTERN_STALL * best.J:
            break
        nxt = rel.refine(res.values)
        if nxt is None or too_big(len(nxt), 2 * MAX_PATTERN_ENTRIES):
            break
        groups = nxt
    return bound, best, rounds


def _solve_limit(deadline: float, rel, share_of: int) -> float | None:
    """Seconds one node solve may take: its share of the time left, less the largest measured cost of one
    interior-point iteration (the solver stops at the first iteration that ends after its limit). ``None``
    when not even that fits."""
    remaining = deadline - time.perf_counter()
    limit = remaining / max(share_of, 1) - rel.seconds_per_iteration
    return limit if remaining > 0 and limit > 0 else None


def _node_bytes(nd: NodeData, values: dict | None) -> int:
    """Bytes an open node keeps (its boxes, envelope coefficients and relaxation point)."""
    arrays = [nd.lo, nd.hi, *(a for pair in nd.boxes.values() for a in pair), *nd.coef.values()]
    if nd.tag is not None:
        arrays += [a for a in nd.tag if isinstance(a, np.ndarray)]
    if values is not None:
        arrays += list(values.values())
    return int(sum(np.asarray(a).nbytes for a in arrays)) + 1024


def _safe(bound: float) -> float:
    """A NaN bound (never expected) counts as no information."""
    return bound if bound == bound else -math.inf


def _lower(heap: list, pruned_min: float, U: float) -> float:
    """min over open and closed nodes, never above ``U`` (G <= U) nor below 0 (J >= 0)."""
    open_min = heap[0].bound if heap else math.inf
    return max(0.0, min(open_min, pruned_min, U))


def _rel(U: float, lower: float) -> float:
    if U <= 0:
        return 0.0
    gap = (U - lower) / U
    # an overflowed upper bound (inf) gives NaN here, and max(0.0, nan) is 0.0: nothing is certified then
    return max(0.0, gap) if math.isfinite(gap) else 1.0
