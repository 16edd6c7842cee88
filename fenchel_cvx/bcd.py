r"""Block coordinate descent for Fenchel lifted networks: Algorithms 1 and 2 of the paper.

One *sweep* updates every block once, each by an exact convex minimization (one of the four
:data:`~fenchel_cvx.subproblems.SUBPROBLEMS`), in the paper's order:

    X_L (x_last), X_{L-1}, ..., X_1 (x_hidden), W_L (w_last), W_{L-1}, ..., W_0 (w_hidden).

* **Algorithm 1** (``batch_size=None``, full batch): the X-variables are initialized once by feed-forward
  (line 3) and persist; every epoch is one sweep over the whole training set. Each block minimizes the
  Lagrangian (7) exactly, so ``J`` never increases from one block to the next (up to solver tolerance).
* **Algorithm 2** (``batch_size=m_b``): for each batch, ``W^0 := W`` (line 3), the X-variables are
  re-initialized by feed-forward (line 5), then ``K`` sweeps run on that batch, the W-updates carrying the
  proximal term ``gamma_l (||W_l - W_l^0||_F^2 + ||b_l - b_l^0||^2)`` of eqs. (19)-(20).

``lam`` (per hidden layer ``l = 0..L-1``), ``rho`` and ``gamma`` (per layer ``l = 0..L``) broadcast from
scalars. With ``gamma > 0`` in Algorithm 1 the proximal centre is the weights at the start of the sweep
(proximal BCD); that still never increases ``J``.

Appendix C, batched 784-300-10: "for batched models we do not use pi" yet it lists ``rho_1 = 1,
lambda_1 = 0.1, rho_2 = 100``. The official code (``beeperman/Fenchel_Lifted_Networks``, ``mnist_batch.py``)
runs that model with the ridge weight ``rho = 0`` and the *offset* weights (``rhod``, our ``gamma``) at 10 and
100, so we read the listed rho's as the proximal weights: ``lam=0.1, rho=0, gamma=(1, 100)``.

Backends: ``"torch"`` (default) calls :mod:`fenchel_cvx.torch` with warm starts (``Z0`` = the current
``X_l``; ``W_init``, ``b_init`` = the current ``W_l``, ``b_l``) on ``settings.device`` in ``settings.dtype``;
``"cvx"`` calls the CVXPY reference :mod:`fenchel_cvx.cvx` in numpy float64 (small nets, verification).
*Inexact* mode (torch only) gives every W-update ``inexact_iters`` warm-started solver iterations instead of
solving to ``tol`` -- what the paper did for CIFAR-10 -- and silences their ``NotConvergedWarning``. Those
iterations are majorization-minimization steps (``method="mm"`` of :func:`fenchel_cvx.torch.w_hidden` /
``w_last``): each minimizes a quadratic upper bound of the block's objective, so it never increases it, and
Algorithm 1's "J never increases" still holds block to block in inexact mode. An MM step costs a few GEMMs
(~100x cheaper than a semismooth Newton step on MNIST 784-300-10, batch 500).

``curvature="running"`` (inexact mode) trades those guarantees for speed: each W-block takes one step
preconditioned by a running estimate of its MM curvature bound (:mod:`fenchel_cvx.torch.preconditioned`: refreshed
from the batch every ``curvature_every`` batches, rank ``curvature_rank``), reusing the feed-forward's
``W_0 X_0 + b_0``, and the capped X-updates (``inexact_x_iters``) run without certificates. A batch then costs
about one feed-forward plus one GEMM pair per block -- on MNIST 784-300-10 about twice an Adam step, against nine
times with per-batch MM steps -- at the same accuracy per epoch there. J is no longer guaranteed to fall block by
block (the estimate bounds a batch's curvature only on average) unless ``curvature_line_search`` is set (one more
GEMM per hidden layer), and the history's ``max_residual`` is NaN.

Prediction (section 4.3) is feed-forward. ``prediction="argmin"`` solves eq. (12),
``min_{y, x} L(y, W_L x_L + b_L) + sum_l lam_l B_l(x_{l+1}, W_l x_l + b_l)``:

* MSE: the minimum over ``y`` is ``0`` at ``y = W_L x_L + b_L``, and ``sum lam B >= 0`` is zero exactly at
  the feed-forward ``x`` (``B(v, u) = 0`` iff ``v = phi(u)``), so the feed-forward output *is* the argmin, for
  every activation and depth -- as the paper notes.
* Cross-entropy with ``y`` in the probability simplex: ``L(y, z) = -<y, log softmax z>`` is linear in ``y``,
  so its minimum over the simplex sits at a vertex ``e_k``. Hence (12) equals
  ``min_k min_x [CE(e_k, W_L x_L + b_L) + sum_l lam_l B_l]`` and the predicted class is the minimizing ``k``.
  With one hidden layer the inner problem is exactly ``x_last`` with target ``e_k`` (convex), so the rule is
  solved exactly with ``p`` calls of ``x_last``. With more hidden layers the inner problem is only
  block-convex; we run X-only sweeps from the feed-forward point (each never increases the objective), which
  gives a local answer.

Layout: :meth:`BCD.step` takes paper-layout tensors ``X0`` ``(n, m)`` and ``Y`` ``(p, m)`` (or labels
``(m,)``); :meth:`BCD.run`, :meth:`BCD.predict` and :meth:`BCD.evaluate` take samples-first data ``(m, n)``
and transpose once at the boundary.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ._checks import check_finite, check_ndim, per_layer
from .errors import CheckpointError, FenchelError, ShapeError, ValueRangeError
from .torch.preconditioned import RunningCurvature, hidden_curvature, last_curvature, w_hidden_step, w_last_step

__all__ = ["BCD", "HISTORY_KEYS", "BCDSettings", "BCDState", "feed_forward", "lagrangian_terms"]

Array = Any

#: Keys of every history row (shared with :mod:`fenchel_cvx.baselines`, so curves overlay). ``epoch`` is a float
#: (epochs done + fraction of the current one); ``J``, ``primal`` (eq. 3) and ``penalty`` (``sum lam_l B_l``)
#: are sums over the last batch, as in the paper; ``train_loss``/``test_loss`` are the loss *per sample* (mean
#: over the whole set, feed-forward outputs, no rho term) and ``*_acc`` fractions in [0, 1] (NaN without labels
#: or test set); ``time`` is training seconds since the start, evaluation excluded; ``max_residual`` the largest
#: solver residual of the last step (NaN on the cvx face).
HISTORY_KEYS = ("method", "epoch", "step", "J", "primal", "penalty", "train_loss", "train_acc", "test_loss",
                "test_acc", "time", "max_residual")

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_BACKENDS = ("torch", "cvx")
_PREDICTIONS = ("feedforward", "argmin")
_CURVATURES = ("batch", "running")
_EVAL_CHUNK = 8192  # columns per feed-forward chunk when evaluating a whole data set


@dataclass
class BCDSettings:
    """Hyperparameters of Algorithms 1 and 2.

    Attributes
    ----------
    lam : float or sequence of L floats
        Lagrange multipliers ``lam_l > 0`` of the penalties ``B_l``, ``l = 0..L-1`` (scalar broadcasts).
    rho : float or sequence of L+1 floats
        Weight penalties ``rho_l ||W_l||_F^2 >= 0``, ``l = 0..L`` (biases are not penalized).
    gamma : float or sequence of L+1 floats
        Proximal weights ``gamma_l >= 0`` to the previous batch's weights (Algorithm 2, eqs. 19-20).
    batch_size : int or None
        ``None``: Algorithm 1 (full batch, one sweep per epoch). An int: Algorithm 2.
    K : int
        Sweeps (alternations) per batch in Algorithm 2; ignored by Algorithm 1.
    epochs : int
        Passes over the training data.
    backend : {"torch", "cvx"}
        Subproblem face.
    tol : float
        Optimality tolerance handed to the torch solvers.
    max_iter : int or None
        Iteration cap for the torch solvers (``None``: the solver's default).
    inexact : bool
        W-updates take ``inexact_iters`` warm-started majorization-minimization steps (monotone in J) instead
        of solving to ``tol``.
    inexact_iters : int
        Iterations per inexact W-update.
    inexact_x_iters : int or None
        In inexact mode, also cap the accelerated (FISTA) X-updates -- ``x_hidden`` and the cross-entropy
        ``x_last`` -- at this many warm-started iterations; a capped column keeps the lower-objective of its start
        and its last iterate, so J still never increases. ``None``: X-updates are solved to ``tol``. (The MSE
        ``x_last`` is a dual Newton solve of 3-5 steps and is always solved to ``tol``.)
    curvature : {"batch", "running"}
        Curvature of the inexact W-steps. ``"batch"``: the MM bound of the batch at hand (a Gram matrix and a
        factorization per W-update; monotone in J, certified residuals). ``"running"``: one preconditioned step
        per W-update with a running estimate of that bound, refreshed every ``curvature_every`` batches and
        kept at rank ``curvature_rank`` (:mod:`fenchel_cvx.torch.preconditioned`): about one GEMM pair per block,
        no certificate, not guaranteed monotone; the capped X-updates run uncertified too. Needs ``inexact``.
    curvature_every : int
        Batches between refreshes of the running curvature.
    curvature_rank : int or None
        Eigenpairs kept of each running curvature (``None``: the exact inverse).
    curvature_line_search : bool
        Running W-steps choose their length by a line search on the block objective (``line_search`` of
        :func:`~fenchel_cvx.torch.preconditioned.w_hidden_step`): every block then decreases, so J never rises
        block to block again, for one more GEMM per hidden layer.
    curvature_relax : float
        Step multiplier ``omega > 0`` of the running W-steps (``relax`` of
        :func:`~fenchel_cvx.torch.preconditioned.w_hidden_step`): 1 is the preconditioned step; up to about 1.5
        the steps still lowered every block objective on MNIST, from 2 on some raise it (see there).
    prediction : {"feedforward", "argmin"}
        Rule for test predictions (section 4.3, eq. 12). Training accuracy always uses feed-forward.
    device, dtype : str
        Where and in which precision the torch backend works (``"float64"`` or ``"float32"``).
    shuffle : bool
        Draw a fresh permutation of the training set every epoch (Algorithm 2).
    seed : int
        Seed of the permutation generator.
    eval_every : int or None
        Append a history row every this many batches as well as at each epoch's end (``None``: epochs only).
    record_blocks : bool
        Record ``J`` after every block update in ``state.last["blocks"]`` (one extra evaluation per block).
    solver_options : dict
        Extra keyword arguments for every face call (e.g. ``{"solver": "CLARABEL"}`` for the cvx face).
    """

    lam: float | Sequence[float] = 0.1
    rho: float | Sequence[float] = 1.0
    gamma: float | Sequence[float] = 0.0
    batch_size: int | None = None
    K: int = 1
    epochs: int = 1
    backend: str = "torch"
    tol: float = 1e-6
    max_iter: int | None = None
    inexact: bool = False
    inexact_iters: int = 3
    inexact_x_iters: int | None = None
    curvature: str = "batch"
    curvature_every: int = 100
    curvature_rank: int | None = 64
    curvature_relax: float = 1.0
    curvature_line_search: bool = False
    prediction: str = "feedforward"
    device: str = "cpu"
    dtype: str = "float64"
    shuffle: bool = True
    seed: int = 0
    eval_every: int | None = None
    record_blocks: bool = False
    solver_options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-able copy (sequences become lists)."""
        d = asdict(self)
        for k in ("lam", "rho", "gamma"):
            v = d[k]
            d[k] = [float(x) for x in v] if np.ndim(v) else float(v)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BCDSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FenchelError`."""
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise FenchelError(f"BCDSettings: unknown keys {sorted(extra)}; expected a subset of {sorted(names)}")
        return cls(**d)


@dataclass
class BCDState:
    """Everything a run needs to continue bitwise-identically after a restart.

    Attributes
    ----------
    W, b : list of Tensor
        Weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``, ``l = 0..L``, on the run's device and dtype.
    epoch : int
        Completed epochs.
    batch : int
        Index of the next batch within the current epoch.
    step : int
        Total :meth:`BCD.step` calls so far.
    perm : Tensor or None
        The current epoch's permutation of the training set (``None`` between epochs).
    rng : torch.Generator
        CPU generator that draws the permutations.
    history : list of dict
        History rows (keys :data:`HISTORY_KEYS`).
    last : dict
        The last step's per-block info (``blocks``: name, layer, value, residual, iterations, time and, with
        ``record_blocks``, ``J`` after the block; ``J0``: ``J`` before the first block).
    elapsed : float
        Training seconds so far (evaluation excluded).
    X : list of Tensor or None
        Algorithm 1 only: the persistent X-variables ``X_1..X_L`` ``(p_l, m)`` of the whole training set.
    curvature : list of RunningCurvature or None
        ``curvature="running"`` only: one running curvature estimate per W-update, ``l = 0..L``.
    """

    W: list
    b: list
    epoch: int = 0
    batch: int = 0
    step: int = 0
    perm: torch.Tensor | None = None
    rng: torch.Generator = field(default_factory=torch.Generator)
    history: list = field(default_factory=list)
    last: dict = field(default_factory=dict)
    elapsed: float = 0.0
    X: list | None = None
    curvature: list | None = None

    def state_dict(self) -> dict:
        """Plain tensors (CPU copies), numbers, strings, lists and dicts: safe for ``torch.load(weights_only=True)``."""
        def cpu(t):
            return None if t is None else t.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        return {
            "kind": "fenchel_bcd_state",
            "W": [cpu(w) for w in self.W],
            "b": [cpu(v) for v in self.b],
            "epoch": int(self.epoch),
            "batch": int(self.batch),
            "step": int(self.step),
            "perm": cpu(self.perm),
            "rng_state": self.rng.get_state().clone(),
            "history": [dict(r) for r in self.history],
            "last": _jsonable(self.last),
            "elapsed": float(self.elapsed),
            "X": None if self.X is None else [cpu(x) for x in self.X],
            "curvature": None if self.curvature is None else [c.state_dict() for c in self.curvature],
        }

    @classmethod
    def from_state_dict(cls, d: dict, *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> BCDState:
        """Rebuild a state from :meth:`state_dict` (optionally moving tensors to ``device``/``dtype``).

        Raises
        ------
        CheckpointError
            ``d`` is not a BCD state dict or misses keys.
        """
        need = ("W", "b", "epoch", "batch", "step", "perm", "rng_state", "history")
        if not isinstance(d, dict) or d.get("kind") != "fenchel_bcd_state" or any(k not in d for k in need):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(f"state: expected a BCD state dict with keys {list(need)}, got {got}; "
                                  "was this checkpoint written by another trainer (adam/sgd)?")
        dt = _DTYPES[dtype] if isinstance(dtype, str) else dtype

        def move(t):
            if t is None:
                return None
            return t.to(device=device if device is not None else t.device,
                        dtype=dt if (dt is not None and t.is_floating_point()) else t.dtype)
        rng = torch.Generator()
        rng.set_state(d["rng_state"].clone())
        perm = d["perm"]
        return cls(W=[move(w) for w in d["W"]], b=[move(v) for v in d["b"]], epoch=int(d["epoch"]),
                   batch=int(d["batch"]), step=int(d["step"]),
                   perm=None if perm is None else perm.clone(),  # permutations live on the CPU
                   rng=rng, history=[dict(r) for r in d["history"]], last=dict(d.get("last") or {}),
                   elapsed=float(d.get("elapsed", 0.0)),
                   X=None if d.get("X") is None else [move(x) for x in d["X"]],
                   curvature=None if d.get("curvature") is None else
                   [RunningCurvature.from_state_dict(c, device=device or "cpu") for c in d["curvature"]])


# -- the math on torch tensors -------------------------------------------------------------------------------
def feed_forward(W: list, b: list, acts: list, X0: torch.Tensor) -> list:
    """``[X_0, X_1, ..., X_L, Yhat]`` by the network's feed-forward rule, paper layout ``(features, m)``.

    Parameters
    ----------
    W, b : list of Tensor
        ``W_l`` ``(p_{l+1}, p_l)`` and ``b_l`` ``(p_{l+1},)``, ``l = 0..L``.
    acts : list of Activation
        ``L`` hidden activations.
    X0 : Tensor, shape (n, m)
    """
    out = [X0]
    for l, act in enumerate(acts):
        out.append(act.forward(_affine(W[l], b[l], out[-1])))
    out.append(_affine(W[-1], b[-1], out[-1]))
    return out


def lagrangian_terms(W: list, b: list, X: list, Y: torch.Tensor, *, acts: list, loss: Any,
                     lam: float | Sequence[float], rho: float | Sequence[float]) -> dict:
    r"""Eq. (7) on torch tensors: ``J = L(Y, W_L X_L + b_L) + sum rho_l ||W_l||^2 + sum lam_l B_l(X_{l+1}, W_l X_l + b_l)``.

    Parameters
    ----------
    W, b : list of Tensor
        ``L+1`` weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``.
    X : list of Tensor
        ``[X_0, X_1, ..., X_L]``, each ``(p_l, m)`` (paper layout).
    Y : Tensor, shape (p, m)
        Target columns.
    acts, loss : the network's activations and loss.
    lam : float or sequence of L floats
    rho : float or sequence of L+1 floats

    Returns
    -------
    dict
        ``loss``, ``penalty`` (``sum lam_l B_l >= 0``), ``regularization`` and ``total`` as Python floats
        (``inf`` when an X-variable leaves its activation's domain).
    """
    L = len(acts)
    lam = per_layer(lam, L, "lam", nonneg=True)
    rho = per_layer(rho, L + 1, "rho", nonneg=True)
    out_loss = float(loss.value(Y, _affine(W[L], b[L], X[L])))
    pen = sum(lam[l] * float(acts[l].B(X[l + 1], _affine(W[l], b[l], X[l])).sum()) for l in range(L))
    reg = sum(rho[l] * float((W[l] * W[l]).sum()) for l in range(L + 1))
    return {"loss": out_loss, "penalty": float(pen), "regularization": float(reg),
            "total": out_loss + float(pen) + float(reg)}


def _affine(W: torch.Tensor, b: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    return W @ X if b is None else torch.addmm(b[:, None], W, X)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (bool, int, str)) or x is None:
        return x
    if isinstance(x, (float, np.floating)):
        return float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x)
    return repr(x)


# -- the two faces behind one door ---------------------------------------------------------------------------
class _Face:
    """Calls a subproblem on the chosen face and hands back torch tensors on the run's device and dtype."""

    _TORCH_ONLY = ("tol", "max_iter", "Z0", "W_init", "b_init", "warn", "method", "certify")

    def __init__(self, backend: str, device: torch.device, dtype: torch.dtype, options: dict):
        self.backend = backend
        self.device, self.dtype = device, dtype
        self.options = dict(options)
        try:
            self.mod = importlib.import_module(f"fenchel_cvx.{backend}")
        except ImportError as exc:  # pragma: no cover - only while the faces are being written
            raise FenchelError(f"backend: could not import fenchel_cvx.{backend} ({exc}); "
                               f"try backend={'cvx' if backend == 'torch' else 'torch'!r}") from exc

    def __call__(self, name: str, **kw: Any):
        fn = getattr(self.mod, name)
        if self.backend == "torch":
            kw = {k: v for k, v in kw.items() if not (k == "max_iter" and v is None)}
            res = fn(**kw, **self.options)
        else:
            kw = {k: (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v)
                  for k, v in kw.items() if k not in self._TORCH_ONLY}
            res = fn(**kw, **self.options)
        for attr in ("Z", "W", "b"):
            v = getattr(res, attr)
            if v is not None:
                # Contiguous on purpose: the torch face may return views into [W, b]; a GEMM rounds differently
                # on another memory layout, and a checkpoint stores dense copies, so bitwise resume needs one
                # canonical layout.
                setattr(res, attr, torch.as_tensor(np.asarray(v) if not torch.is_tensor(v) else v,
                                                   dtype=self.dtype, device=self.device).contiguous())
        return res


# -- the trainer ---------------------------------------------------------------------------------------------
class BCD:
    """Train a :class:`~fenchel_cvx.network.LiftedNetwork` by block coordinate descent (Algorithms 1 and 2).

    Parameters
    ----------
    network : LiftedNetwork
        Gives the architecture, activations, loss and the initial weights (it is not modified).
    settings : BCDSettings, optional

    Examples
    --------
    >>> bcd = BCD(net, BCDSettings(batch_size=500, lam=0.1, rho=0.0, gamma=(1.0, 100.0), epochs=2))
    >>> state = bcd.run(X_train, y_train, X_test=X_test, y_test=y_test)   # samples-first (m, n)
    >>> trained = bcd.network_from_state(state)
    """

    method = "fenchel"

    def __init__(self, network: Any, settings: BCDSettings | None = None):
        s = settings if settings is not None else BCDSettings()
        if not isinstance(s, BCDSettings):
            raise FenchelError(f"settings: expected a BCDSettings, got {type(s).__name__}")
        self.network = network
        self.settings = s
        self.L = int(network.L)
        self.acts = list(network.acts)
        self.loss = network.loss
        self.sizes = list(network.sizes)
        self.lam = per_layer(s.lam, self.L, "lam", positive=True)
        self.rho = per_layer(s.rho, self.L + 1, "rho", nonneg=True)
        self.gamma = per_layer(s.gamma, self.L + 1, "gamma", nonneg=True)
        if s.batch_size is not None and (not _is_int(s.batch_size) or s.batch_size < 1):
            raise ValueRangeError(f"batch_size: expected None (full batch) or an integer >= 1, got {s.batch_size!r}")
        for name, lo in (("K", 1), ("epochs", 0), ("inexact_iters", 1)):
            v = getattr(s, name)
            if not _is_int(v) or v < lo:
                raise ValueRangeError(f"{name}: expected an integer >= {lo}, got {v!r}")
        if s.inexact_x_iters is not None and (not _is_int(s.inexact_x_iters) or s.inexact_x_iters < 1):
            raise ValueRangeError(f"inexact_x_iters: expected None or an integer >= 1, got {s.inexact_x_iters!r}")
        if s.max_iter is not None and (not _is_int(s.max_iter) or s.max_iter < 1):
            raise ValueRangeError(f"max_iter: expected None or an integer >= 1, got {s.max_iter!r}")
        if s.eval_every is not None and (not _is_int(s.eval_every) or s.eval_every < 1):
            raise ValueRangeError(f"eval_every: expected None or an integer >= 1, got {s.eval_every!r}")
        if not (isinstance(s.tol, (int, float)) and s.tol > 0 and math.isfinite(s.tol)):
            raise ValueRangeError(f"tol: expected a finite number > 0, got {s.tol!r}")
        if s.backend not in _BACKENDS:
            raise FenchelError(f"backend: expected one of {_BACKENDS}, got {s.backend!r}")
        if s.prediction not in _PREDICTIONS:
            raise FenchelError(f"prediction: expected one of {_PREDICTIONS}, got {s.prediction!r}")
        if s.dtype not in _DTYPES:
            raise FenchelError(f"dtype: expected one of {tuple(_DTYPES)}, got {s.dtype!r}")
        if s.curvature not in _CURVATURES:
            raise FenchelError(f"curvature: expected one of {_CURVATURES}, got {s.curvature!r}")
        if s.curvature == "running" and not s.inexact:
            raise FenchelError("curvature: 'running' shapes the steps of inexact W-updates; set inexact=True, or "
                               "curvature='batch'")
        if not _is_int(s.curvature_every) or s.curvature_every < 1:
            raise ValueRangeError(f"curvature_every: expected an integer >= 1, got {s.curvature_every!r}")
        if s.curvature_rank is not None and (not _is_int(s.curvature_rank) or s.curvature_rank < 1):
            raise ValueRangeError(f"curvature_rank: expected None or an integer >= 1, got {s.curvature_rank!r}")
        if not (isinstance(s.curvature_relax, (int, float)) and not isinstance(s.curvature_relax, bool)
                and math.isfinite(s.curvature_relax) and s.curvature_relax > 0):
            raise ValueRangeError(f"curvature_relax: expected a finite step multiplier > 0, got {s.curvature_relax!r}")
        if not isinstance(s.curvature_line_search, bool):
            raise ValueRangeError(f"curvature_line_search: expected True or False, got {s.curvature_line_search!r}")
        if s.curvature_line_search and s.curvature_relax != 1.0:
            raise ValueRangeError(f"curvature_relax: the line search sets the step length; got curvature_relax="
                                  f"{s.curvature_relax} with curvature_line_search=True (pass one or the other)")
        if s.inexact and s.backend == "cvx":
            raise FenchelError("inexact: the cvx backend always solves to completion; use backend='torch' for "
                               "inexact W-updates, or inexact=False")
        try:
            self.device = torch.device(s.device)
        except (RuntimeError, TypeError) as exc:
            raise FenchelError(f"device: expected a torch device string such as 'cpu' or 'cuda', got "
                               f"{s.device!r} ({exc})") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise FenchelError(f"device: {s.device!r} requested but torch sees no CUDA device; use device='cpu'")
        self.dtype = _DTYPES[s.dtype]
        self._face: _Face | None = None

    # -- state ---------------------------------------------------------------------------------------------
    def init_state(self) -> BCDState:
        """A fresh state: the network's weights on ``settings.device``/``dtype`` and a seeded generator."""
        W = [torch.as_tensor(np.asarray(w), dtype=self.dtype).to(self.device).clone() for w in self.network.W]
        b = [torch.as_tensor(np.asarray(v), dtype=self.dtype).to(self.device).clone() for v in self.network.b]
        rng = torch.Generator()
        rng.manual_seed(int(self.settings.seed))
        return BCDState(W=W, b=b, rng=rng)

    def network_from_state(self, state: BCDState) -> Any:
        """A copy of the network holding the state's weights (numpy float64)."""
        net = self.network.copy()
        net.set_weights([w.detach().cpu().double().numpy() for w in state.W],
                        [v.detach().cpu().double().numpy() for v in state.b])
        return net

    @property
    def face(self) -> _Face:
        if self._face is None:
            self._face = _Face(self.settings.backend, self.device, self.dtype, self.settings.solver_options)
        return self._face

    # -- one batch -----------------------------------------------------------------------------------------
    def step(self, state: BCDState, X0: torch.Tensor, Y: Array) -> BCDState:
        """One batch (paper layout): Algorithm 2 lines 3-15, or one Algorithm 1 iteration when full batch.

        Parameters
        ----------
        state : BCDState
            Updated in place and returned.
        X0 : Tensor, shape (n, m)
            The batch's inputs (features x samples).
        Y : Tensor, shape (p, m), or labels (m,)
            Targets.

        Notes
        -----
        Algorithm 2 re-initializes ``X_1..X_L`` by feed-forward and sets ``W^0`` to the weights before the
        batch, then runs ``K`` sweeps. Algorithm 1 (``batch_size=None``) keeps ``state.X`` (initialized by
        feed-forward on first use) and runs one sweep.
        """
        X0 = self._as_tensor(X0, "X0")
        check_ndim(X0, "X0", 2, "(n, m): features x samples")
        if X0.shape[0] != self.sizes[0]:
            raise ShapeError(f"X0: expected {self.sizes[0]} rows (input features), got shape {tuple(X0.shape)}")
        T = self.loss.targets(Y if torch.is_tensor(Y) else np.asarray(Y), self.sizes[-1], like=X0)
        if T.shape[1] != X0.shape[1]:
            raise ShapeError(f"Y: expected {X0.shape[1]} columns to match X0, got {T.shape[1]}")
        t0 = time.perf_counter()
        full = self.settings.batch_size is None
        if full and state.X is not None:
            X = [X0] + list(state.X)
            if any(x.shape[1] != X0.shape[1] for x in state.X):
                raise ShapeError(f"state.X: Algorithm 1 keeps X-variables for {state.X[0].shape[1]} samples, "
                                 f"got a batch of {X0.shape[1]}; start from a fresh state")
        else:
            X, U_in = [X0], None  # feed-forward (line 5), keeping W_0 X_0 + b_0 for the first sweep
            for l, act in enumerate(self.acts):
                U = _affine(state.W[l], state.b[l], X[-1])
                U_in = U if l == 0 else U_in
                X.append(act.forward(U))
        W0 = [w.clone() for w in state.W] if any(g > 0 for g in self.gamma) else None
        b0 = [v.clone() for v in state.b] if W0 is not None else None
        blocks: list[dict] = []
        J0 = self._J(state, X, T) if self.settings.record_blocks else math.nan
        for k in range(1 if full else self.settings.K):
            self._sweep(state, X, T, W0, b0, blocks, first=k == 0, U0=U_in if k == 0 and not full else None)
        if full:
            state.X = X[1:]
        state.step += 1
        dt = time.perf_counter() - t0
        state.elapsed += dt
        res = [blk["max_residual"] for blk in blocks if not math.isnan(blk["max_residual"])]
        state.last = {"J0": J0, "blocks": blocks, "max_residual": max(res) if res else math.nan,
                      "time": dt, "batch_size": int(X0.shape[1])}
        self._last_batch = (X, T)
        return state

    def _sweep(self, state: BCDState, X: list, T: torch.Tensor, W0: list | None, b0: list | None,
               blocks: list, first: bool = True, U0: torch.Tensor | None = None) -> None:
        """X_L, X_{L-1}..X_1, W_L, W_{L-1}..W_0; ``X`` (``[X_0..X_L]``) and ``state.W/b`` updated in place.

        ``U0``: ``W_0 X_0 + b_0`` at the current weights, when the caller has it (the feed-forward's).
        """
        s, L, W, b = self.settings, self.L, state.W, state.b
        running = s.inexact and s.curvature == "running"
        tol = {"tol": s.tol, "max_iter": s.max_iter}
        # capped FISTA X-updates keep the better of start and last iterate per column, so J stays monotone
        xtol = (dict(tol, max_iter=s.inexact_x_iters, warn=False) if s.inexact and s.inexact_x_iters is not None
                else tol)
        if running and s.inexact_x_iters is not None:
            xtol["certify"] = False  # a certificate costs about as much as the capped steps themselves
        # W_0 X_0 + b_0 is needed by the X-update of X_1 and by the running W_0 step; X_0 and W_0 do not change
        # in between, so it is formed once (or taken from the feed-forward)
        if L >= 1:
            U = U0 if L == 1 and U0 is not None else _affine(W[L - 1], b[L - 1], X[L - 1])
            U0 = U if L == 1 else U0
            r = self.face("x_last", W=W[L], b=b[L], Y=T, U_prev=U, loss=self.loss, act_prev=self.acts[L - 1],
                          lam_prev=self.lam[L - 1], Z0=X[L], **(tol if self.loss.name == "mse" else xtol))
            X[L] = r.Z
            self._record(blocks, "x_last", L, r, state, X, T)
        for l in range(L - 1, 0, -1):
            U = U0 if l == 1 and U0 is not None else _affine(W[l - 1], b[l - 1], X[l - 1])
            U0 = U if l == 1 else U0
            r = self.face("x_hidden", W=W[l], b=b[l], X_next=X[l + 1], U_prev=U, act=self.acts[l],
                          act_prev=self.acts[l - 1], lam=self.lam[l], lam_prev=self.lam[l - 1], Z0=X[l], **xtol)
            X[l] = r.Z
            self._record(blocks, "x_hidden", l, r, state, X, T)
        if running:
            self._running_w_steps(state, X, T, W0, b0, blocks, first, U0)
            return
        # inexact: a few warm-started MM steps, deliberately unconverged, so no NotConvergedWarning; MM steps never
        # increase the block objective, so J stays monotone (a Newton step with a line search would be too, but
        # costs ~100x more per step on wide layers: one p_a x p_a Hessian per row instead of one shared bound)
        wtol = dict(tol, max_iter=s.inexact_iters, warn=False, method="mm") if s.inexact else tol
        prox = self._prox(L, W0, b0)
        r = self.face("w_last", X_in=X[L], Y=T, loss=self.loss, rho=self.rho[L], W_init=W[L], b_init=b[L],
                      **prox, **wtol)
        W[L], b[L] = r.W, r.b
        self._record(blocks, "w_last", L, r, state, X, T)
        for l in range(L - 1, -1, -1):
            prox = self._prox(l, W0, b0)
            r = self.face("w_hidden", X_in=X[l], X_next=X[l + 1], act=self.acts[l], lam=self.lam[l],
                          rho=self.rho[l], W_init=W[l], b_init=b[l], **prox, **wtol)
            W[l], b[l] = r.W, r.b
            self._record(blocks, "w_hidden", l, r, state, X, T)

    def _running_w_steps(self, state: BCDState, X: list, T: torch.Tensor, W0: list | None, b0: list | None,
                         blocks: list, first: bool, U0: torch.Tensor | None) -> None:
        """W_L, W_{L-1}..W_0 by one preconditioned step each with the running curvature (``curvature="running"``)."""
        s, L, W, b = self.settings, self.L, state.W, state.b
        if state.curvature is None:
            kw = {"every": s.curvature_every, "rank": s.curvature_rank, "device": self.device}
            state.curvature = [hidden_curvature(self.sizes[l], act=self.acts[l], lam=self.lam[l], rho=self.rho[l],
                                                gamma=self.gamma[l], **kw) for l in range(L)]
            state.curvature.append(last_curvature(self.sizes[L], loss=self.loss, rho=self.rho[L],
                                                  gamma=self.gamma[L], **kw))
        curv = state.curvature
        if first:  # once per batch: the refresh cadence counts batches, not sweeps
            for l in range(L + 1):
                curv[l].observe(X[l])
        prox = self._prox(L, W0, b0)
        step = {"relax": s.curvature_relax, "line_search": s.curvature_line_search}
        r = w_last_step(X[L], T, W[L], b[L], loss=self.loss, rho=self.rho[L], curvature=curv[L], **step, **prox)
        W[L], b[L] = r.W, r.b
        self._record(blocks, "w_last", L, r, state, X, T)
        for l in range(L - 1, -1, -1):
            U = U0 if l == 0 and U0 is not None else _affine(W[l], b[l], X[l])
            r = w_hidden_step(X[l], X[l + 1], U, W[l], b[l], act=self.acts[l], lam=self.lam[l], rho=self.rho[l],
                              curvature=curv[l], **step, **self._prox(l, W0, b0))
            W[l], b[l] = r.W, r.b
            self._record(blocks, "w_hidden", l, r, state, X, T)

    def _prox(self, l: int, W0: list | None, b0: list | None) -> dict:
        g = self.gamma[l]
        if g > 0:
            return {"gamma": g, "W0": W0[l], "b0": b0[l]}
        return {"gamma": 0.0}

    def _record(self, blocks: list, name: str, layer: int, r: Any, state: BCDState, X: list,
                T: torch.Tensor) -> None:
        blk = {"block": name, "layer": layer, "value": float(r.value), "status": str(r.status),
               "max_residual": float(r.max_residual), "iterations": int(r.iterations),
               "converged": bool(r.converged), "time": float(r.solve_time)}
        if self.settings.record_blocks:
            blk["J"] = self._J(state, X, T)
        blocks.append(blk)

    def _J(self, state: BCDState, X: list, T: torch.Tensor) -> float:
        return lagrangian_terms(state.W, state.b, X, T, acts=self.acts, loss=self.loss, lam=self.lam,
                                rho=self.rho)["total"]

    def batch_terms(self, state: BCDState, X: list | None = None, T: torch.Tensor | None = None) -> dict:
        """``J``, its ``penalty`` part and the ``primal`` objective (eq. 3) on the last step's batch."""
        if X is None:
            X, T = getattr(self, "_last_batch", (None, None))
        if X is None:
            return {"J": math.nan, "penalty": math.nan, "primal": math.nan}
        t = lagrangian_terms(state.W, state.b, X, T, acts=self.acts, loss=self.loss, lam=self.lam, rho=self.rho)
        Yhat = feed_forward(state.W, state.b, self.acts, X[0])[-1]
        reg = t["regularization"]
        return {"J": t["total"], "penalty": t["penalty"], "primal": float(self.loss.value(T, Yhat)) + reg}

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, X: Array, y: Array, *, X_test: Array | None = None, y_test: Array | None = None,
            state: BCDState | None = None, callback: Callable[[BCDState, dict], None] | None = None,
            progress: bool = True) -> BCDState:
        """Train for ``settings.epochs`` epochs (resuming ``state`` where it stopped, mid-epoch included).

        Parameters
        ----------
        X : array, shape (m, n)
            Training inputs, samples first.
        y : array, shape (m,) integer labels, or (m, p) targets
        X_test, y_test : optional held-out set, same layout.
        state : BCDState, optional
            A state to continue (from :meth:`init_state` or a checkpoint); fresh when ``None``.
        callback : callable(state, row), optional
            Called after each history row, with the state already advanced past the batch (safe to checkpoint).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        BCDState
        """
        s = self.settings
        state = self.init_state() if state is None else self._adopt(state)
        X0, Yfull, labels = self._prepare(X, y, "X", "y")
        test = self._prepare(X_test, y_test, "X_test", "y_test") if X_test is not None else None
        m = X0.shape[1]
        full = s.batch_size is None
        bs = m if full else min(int(s.batch_size), m)
        nb = 1 if full else -(-m // bs)
        if state.perm is not None and state.perm.numel() != m:
            raise CheckpointError(f"state.perm: the saved permutation covers {state.perm.numel()} samples, the "
                                  f"training set has {m}; resume with the same data")
        if state.X is not None and state.X[0].shape[1] != m:
            raise CheckpointError(f"state.X: Algorithm 1 X-variables cover {state.X[0].shape[1]} samples, the "
                                  f"training set has {m}; resume with the same data")
        bar = _progress(progress, total=s.epochs * nb, initial=min(state.epoch * nb + state.batch, s.epochs * nb))
        try:
            while state.epoch < s.epochs:
                if full:
                    idx = None
                else:
                    if state.perm is None:
                        state.perm = (torch.randperm(m, generator=state.rng) if s.shuffle
                                      else torch.arange(m))
                    idx = state.perm[state.batch * bs:(state.batch + 1) * bs].to(self.device)
                Xb = X0 if idx is None else X0.T[idx].T.contiguous()
                Yb = Yfull if idx is None else Yfull[:, idx]
                self.step(state, Xb, Yb)
                state.batch += 1
                if state.batch >= nb:
                    state.epoch, state.batch, state.perm = state.epoch + 1, 0, None
                    due = True
                else:
                    due = s.eval_every is not None and state.batch % s.eval_every == 0
                bar.update(1)
                if due:
                    row = self._row(state, nb, X0, Yfull, labels, test)
                    state.history.append(row)
                    acc = row["test_acc"] if test is not None else row["train_acc"]
                    bar.set_postfix(J=f"{row['J']:.4g}", acc=f"{acc:.3f}")
                    if callback is not None:
                        callback(state, row)
        finally:
            bar.close()
        return state

    def _adopt(self, state: BCDState) -> BCDState:
        """Move a (resumed) state's tensors to the run's device and dtype; a no-op when they already match."""
        def mv(t):
            return t.to(device=self.device, dtype=self.dtype).contiguous()
        state.W, state.b = [mv(w) for w in state.W], [mv(v) for v in state.b]
        if state.X is not None:
            state.X = [mv(x) for x in state.X]
        if state.curvature is not None:
            state.curvature = [c.to(self.device) for c in state.curvature]
        if len(state.W) != self.L + 1 or any(tuple(w.shape) != (q, r) for w, r, q in
                                             zip(state.W, self.sizes[:-1], self.sizes[1:])):
            raise CheckpointError(f"state.W: expected weights of the architecture {self.sizes}, got shapes "
                                  f"{[tuple(w.shape) for w in state.W]}; resume with the same network sizes")
        return state

    def _row(self, state: BCDState, nb: int, X0, Yfull, labels, test) -> dict:
        terms = self.batch_terms(state)
        tr_loss, tr_acc = self._evaluate_t(state, X0, Yfull, labels, rule="feedforward")
        te_loss, te_acc = (self._evaluate_t(state, *test, rule=self.settings.prediction) if test is not None
                           else (math.nan, math.nan))
        return {"method": self.method, "epoch": state.epoch + state.batch / nb, "step": state.step,
                "J": terms["J"], "primal": terms["primal"], "penalty": terms["penalty"],
                "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc,
                "time": state.elapsed, "max_residual": state.last.get("max_residual", math.nan)}

    # -- data, evaluation, prediction ------------------------------------------------------------------------
    def _as_tensor(self, A: Array, name: str) -> torch.Tensor:
        if torch.is_tensor(A):
            return A.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(A, dtype=float), dtype=self.dtype, device=self.device)

    def _prepare(self, X: Array, y: Array, xname: str, yname: str):
        """Samples-first ``(m, n)``/``(m,)``/``(m, p)`` -> paper-layout ``X0 (n, m)``, ``Y (p, m)``, labels or None."""
        if y is None:
            raise ShapeError(f"{yname}: expected labels (m,) or targets (m, p) to go with {xname}, got None")
        Xt = self._as_tensor(X, xname)
        check_ndim(Xt, xname, 2, "(m, n): samples x features")
        check_finite(Xt, xname)
        if Xt.shape[1] != self.sizes[0]:
            raise ShapeError(f"{xname}: expected shape (m, {self.sizes[0]}) (samples x features), "
                             f"got {tuple(Xt.shape)}")
        p = self.sizes[-1]
        yt = y if torch.is_tensor(y) else torch.as_tensor(np.asarray(y))
        if yt.ndim not in (1, 2) or yt.shape[0] != Xt.shape[0]:
            raise ShapeError(f"{yname}: expected ({Xt.shape[0]},) labels or ({Xt.shape[0]}, {p}) targets to match "
                             f"{xname}, got shape {tuple(yt.shape)}")
        if yt.ndim == 1:
            lab = yt.to(self.device)
            Y = self.loss.targets(lab, p)
            Y = Y.to(device=self.device, dtype=self.dtype)
            labels = lab.long()
        else:
            Y = self.loss.targets(self._as_tensor(yt, yname).T.contiguous(), p)
            onehot = bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(0) == 1).all())
            labels = Y.argmax(0) if onehot else None
        return Xt.T, Y, labels  # a view: batches gather whole samples (rows of Xt), 10x faster than columns

    def _evaluate_t(self, state: BCDState, X0: torch.Tensor, Y: torch.Tensor, labels: torch.Tensor | None,
                    rule: str) -> tuple[float, float]:
        """Mean per-sample loss (feed-forward outputs) and accuracy under ``rule``, in chunks."""
        total, correct, m = 0.0, 0, X0.shape[1]
        for j in range(0, m, _EVAL_CHUNK):
            Xc, Yc = X0[:, j:j + _EVAL_CHUNK], Y[:, j:j + _EVAL_CHUNK]
            Yhat = feed_forward(state.W, state.b, self.acts, Xc)[-1]
            total += float(self.loss.value(Yc, Yhat))
            if labels is not None:
                pred = Yhat.argmax(0) if rule == "feedforward" else self._argmin_labels(state, Xc)
                correct += int((pred == labels[j:j + _EVAL_CHUNK]).sum())
        return total / max(m, 1), (correct / max(m, 1) if labels is not None else math.nan)

    def evaluate(self, state: BCDState, X: Array, y: Array) -> tuple[float, float]:
        """``(mean loss, accuracy)`` of the state's network on samples-first data, using ``settings.prediction``."""
        X0, Y, labels = self._prepare(X, y, "X", "y")
        return self._evaluate_t(state, X0, Y, labels, self.settings.prediction)

    def predict(self, state: BCDState, X: Array, *, rule: str | None = None) -> np.ndarray:
        """Class labels ``(m,)`` for samples-first ``X`` ``(m, n)`` by feed-forward or the argmin rule (12)."""
        rule = self.settings.prediction if rule is None else rule
        if rule not in _PREDICTIONS:
            raise FenchelError(f"rule: expected one of {_PREDICTIONS}, got {rule!r}")
        Xt = self._as_tensor(X, "X")
        check_ndim(Xt, "X", 2, "(m, n): samples x features")
        if Xt.shape[1] != self.sizes[0]:
            raise ShapeError(f"X: expected shape (m, {self.sizes[0]}), got {tuple(Xt.shape)}")
        X0 = Xt.T.contiguous()
        out = []
        for j in range(0, X0.shape[1], _EVAL_CHUNK):
            Xc = X0[:, j:j + _EVAL_CHUNK]
            out.append(feed_forward(state.W, state.b, self.acts, Xc)[-1].argmax(0) if rule == "feedforward"
                       else self._argmin_labels(state, Xc))
        return torch.cat(out).cpu().numpy()

    def _argmin_labels(self, state: BCDState, X0: torch.Tensor, sweeps: int = 20) -> torch.Tensor:
        """Eq. (12): per column, the class ``k`` minimizing ``min_x CE(e_k, W_L x_L + b_L) + sum lam_l B_l``.

        MSE (or no hidden layer) reduces to feed-forward exactly; see the module docstring.
        """
        W, b, L, p = state.W, state.b, self.L, self.sizes[-1]
        ff = feed_forward(W, b, self.acts, X0)
        if self.loss.name == "mse" or L == 0:
            return ff[-1].argmax(0)
        m = X0.shape[1]
        best = torch.full((m,), math.inf, dtype=X0.dtype, device=X0.device)
        arg = torch.zeros(m, dtype=torch.long, device=X0.device)
        tol = {"tol": self.settings.tol, "max_iter": self.settings.max_iter}
        for k in range(p):
            T = torch.zeros(p, m, dtype=X0.dtype, device=X0.device)
            T[k] = 1.0
            X = list(ff[:-1])
            prev = math.inf
            for _ in range(1 if L == 1 else sweeps):
                U = _affine(W[L - 1], b[L - 1], X[L - 1])
                X[L] = self.face("x_last", W=W[L], b=b[L], Y=T, U_prev=U, loss=self.loss,
                                 act_prev=self.acts[L - 1], lam_prev=self.lam[L - 1], Z0=X[L], **tol).Z
                for l in range(L - 1, 0, -1):
                    U = _affine(W[l - 1], b[l - 1], X[l - 1])
                    X[l] = self.face("x_hidden", W=W[l], b=b[l], X_next=X[l + 1], U_prev=U, act=self.acts[l],
                                     act_prev=self.acts[l - 1], lam=self.lam[l], lam_prev=self.lam[l - 1],
                                     Z0=X[l], **tol).Z
                val = self.loss.per_sample(T, _affine(W[L], b[L], X[L]))
                for l in range(L):
                    val = val + self.lam[l] * self.acts[l].B(X[l + 1], _affine(W[l], b[l], X[l])).sum(0)
                cur = float(val.sum())
                if prev - cur <= self.settings.tol * max(abs(cur), 1.0):
                    break
                prev = cur
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, torch.full_like(arg, k), arg)
        return arg


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, initial: int):
    if not enabled:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="batch", desc="fenchel BCD", leave=False)
