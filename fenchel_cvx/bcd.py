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
scalars; ``None`` takes Appendix C's values for the mode (how Appendix C's list is read:
:mod:`fenchel_cvx.settings`). With ``gamma > 0`` in Algorithm 1 the proximal centre is the weights at the start
of the sweep (proximal BCD); that still never increases ``J``.

Backends: ``"torch"`` (default) calls :mod:`fenchel_cvx.torch` with warm starts (``Z0`` = the current
``X_l``; ``W_init``, ``b_init`` = the current ``W_l``, ``b_l``) on ``settings.device`` in ``settings.dtype``;
``"cvx"`` calls the CVXPY reference :mod:`fenchel_cvx.cvx` in numpy float64 (small nets, verification).
*Inexact* mode (torch only) gives every W-update ``inexact_iters`` warm-started solver iterations instead of
solving to ``tol`` -- what the paper did for CIFAR-10 -- and silences their ``NotConvergedWarning``. Those
iterations are majorization-minimization steps (``method="mm"`` of :func:`fenchel_cvx.torch.w_hidden` /
``w_last``): each minimizes a quadratic upper bound of the block's objective, so it never increases it, and
Algorithm 1's "J never increases" still holds block to block in inexact mode. An MM step costs a few GEMMs
and one shared factorization, where a semismooth Newton step forms and factors one Hessian per row.

``curvature="running"`` (inexact mode) trades those guarantees for speed: each W-block takes one step
(``method="running"`` of the torch W-updates) preconditioned by a running estimate of its MM curvature bound
(:class:`fenchel_cvx.torch.curvature.RunningCurvature`: refreshed from the batch every ``curvature_every``
batches, rank ``curvature_rank``), reusing the feed-forward's ``W_0 X_0 + b_0``, and the capped X-updates
(``inexact_x_iters``) run without certificates. A batch then costs about one feed-forward plus one GEMM pair per
block instead of a Gram matrix and a factorization per block. J is no longer guaranteed to fall block by
block (the estimate bounds a batch's curvature only on average) unless ``curvature_line_search`` is set (one more
GEMM per hidden layer), and the history's ``max_residual`` is NaN. ``inexact_x_float32`` runs those uncertified
X-steps in float32 on a float64 run (``step_dtype`` of the torch X-updates); each column still keeps the better,
in float64, of its start and its last iterate.

``curvature="adam"`` takes the running mode's path with Adam's diagonal scaling in place of the curvature estimate
(:class:`~fenchel_cvx.torch.curvature.AdamCurvature`): each W-block takes one Adam step (rate ``adam_lr`` times
``curvature_relax``) on its own objective (19) or (20) per batch, the moments carried from batch to batch. This is
the paper's CIFAR-10 W-update (section 5.3: one gradient step instead of solving (19) and (20); the authors' code
takes it with Adam); with ``K > 1`` each sweep takes one, so a batch takes ``K``. The step is scale-free, so a
convolution whose X-variables move little -- its block gradient is tiny, and MM or running steps hardly move it --
still trains at the rate ``adam_lr``; no step is promised to lower its block objective.

Which of the two is the default (:meth:`fenchel_cvx.settings.BCDSettings.mode`): a batched, inexact run of a fully
connected network with cross-entropy that sets no mode flag takes the running mode at
:data:`~fenchel_cvx.settings.FAST_MODE` (relax 2, 15 float32 X-steps, ``gamma = (0.1, 100)``); every other run,
and any run that sets a mode flag, the MM mode. ``BCD.mode`` holds the values in use and :meth:`BCD.resolved`
reports them. With relax ``omega <= 2`` a W-step cannot raise its block's objective wherever the running estimate
bounds the batch's own curvature (the quadratic bound falls by ``omega (1 - omega/2) g^T M^{-1} g >= 0``, zero at
2); where it does not, the step can: 21 of 240 hidden W-steps of the default on MNIST did, no output step
(``docs/benchmarks.md``).

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

Data parallelism (:mod:`fenchel_cvx.shards`, section 4.4): under :mod:`torch.distributed` with two or more
processes each process keeps the X-variables of its part of every batch (Algorithm 1: of its part of the training
set) and updates them with no communication; every W-update, ``J`` and the evaluation sum over samples locally and
``all_reduce`` the sums, so all processes take the same W-steps. The exact W-updates then run MM steps to ``tol``
(``method="mm"``, at most ``max_iter`` or 5000 steps) instead of Newton's method, whose Hessians would cross
processes every step; the inexact and running modes are unchanged. The CVXPY face does not shard.

Layout: :meth:`BCD.step` takes paper-layout tensors ``X0`` ``(n, m)`` and ``Y`` ``(p, m)`` (or labels
``(m,)``); :meth:`BCD.run`, :meth:`BCD.predict` and :meth:`BCD.evaluate` take samples-first data ``(m, n)``
and transpose once at the boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ._checks import first_not_finite, per_layer, trusted_values
from .errors import CheckpointError, ChoiceError, ShapeError, ShardingError, SolverError, ValueRangeError
from .settings import FAST_GAMMA, BCDSettings, layer_values
from .shards import all_sum_float, column_range, gather_columns, is_sharded, process_group, sharded, traffic_tag, world
from .trainer import HISTORY_KEYS, Trainer, TrainState, feed_forward, pre_activation

__all__ = ["BCD", "HISTORY_KEYS", "BCDSettings", "BCDState", "feed_forward", "lagrangian_terms"]

Array = Any

#: Iteration cap of the exact W-updates of a data-parallel run, which run MM steps to ``tol`` (``max_iter`` unset).
_SHARDED_MM_ITERS = 5000


@dataclass
class BCDState(TrainState):
    """A BCD run's state: :class:`~fenchel_cvx.trainer.TrainState` plus what Algorithm 1 and the running
    curvature carry between batches.

    Attributes
    ----------
    X : list of Tensor or None
        Algorithm 1 only: the persistent X-variables ``X_1..X_L`` ``(p_l, m)`` of the whole training set.
    curvature : list of RunningCurvature or AdamCurvature, or None
        ``curvature="running"`` (``"adam"``) only: one running curvature estimate (Adam's moments) per W-update,
        ``l = 0..L``.

    ``last`` holds the last batch's per-block information: ``blocks`` (name, layer, value, status, residual,
    iterations, converged, time and, with ``record_blocks``, ``J`` after the block), ``J0`` (``J`` before the
    first block) and ``max_residual``.
    """

    KIND: ClassVar[str] = "fenchel_bcd_state"
    LABEL: ClassVar[str] = "BCD"
    _EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()

    X: list | None = None
    curvature: list | None = None

    def _extra_state(self) -> dict:
        return {"X": None if self.X is None else [x.detach().to("cpu").clone() for x in self.X],
                "curvature": None if self.curvature is None else [c.state_dict() for c in self.curvature]}

    def _load_extra(self, d: dict, move: Any, device: Any) -> None:
        from .torch.curvature import curvature_from_state_dict

        self.X = None if d.get("X") is None else [move(x) for x in d["X"]]
        self.curvature = None
        if d.get("curvature") is not None:
            self.curvature = []
            for l, c in enumerate(d["curvature"]):
                try:
                    self.curvature.append(curvature_from_state_dict(c, device=device or "cpu"))
                except CheckpointError as exc:  # say whose it is: the message alone reads like a bad --curvature
                    raise CheckpointError(f"state.curvature: the saved W-step scaling of layer {l} is damaged "
                                          f"({exc})") from None


def lagrangian_terms(W: list, b: list, X: list, Y: torch.Tensor, *, acts: list, loss: Any,
                     lam: float | Sequence[float], rho: float | Sequence[float],
                     layers: Sequence[Any] | None = None) -> dict:
    r"""Eq. (7) on torch tensors: ``J = L(Y, W_L X_L + b_L) + sum rho_l ||W_l||^2 + sum lam_l B_l(X_{l+1}, U_l)``.

    ``U_l = W_l X_l + b_l`` (paper layout).

    Here ``U_l = W_l X_l + b_l``.

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
    layers : sequence of Layer, optional
        The linear maps ``U_l = A_l(X_l; W_l) + b_l`` (:mod:`fenchel_cvx.layers`); ``None``: dense.

    Returns
    -------
    dict
        ``loss``, ``penalty`` (``sum lam_l B_l >= 0``), ``regularization`` and ``total`` as Python floats
        (``inf`` when an X-variable leaves its activation's domain).
    """
    L = len(acts)
    lam = per_layer(lam, L, "lam", nonneg=True)
    rho = per_layer(rho, L + 1, "rho", nonneg=True)
    maps = [None] * (L + 1) if layers is None else list(layers)
    # sums over samples: in a data-parallel run (fenchel_cvx.shards) this process's columns, then summed over all
    out_loss = all_sum_float(loss.value(Y, pre_activation(maps[L], W[L], b[L], X[L])), Y)
    pen = sum(lam[l] * all_sum_float(acts[l].B(X[l + 1], pre_activation(maps[l], W[l], b[l], X[l])).sum(), Y)
              for l in range(L))
    reg = sum(rho[l] * float((W[l] * W[l]).sum()) for l in range(L + 1))
    return {"loss": out_loss, "penalty": float(pen), "regularization": float(reg),
            "total": out_loss + float(pen) + float(reg)}


# -- the two faces behind one door ---------------------------------------------------------------------------
class _Face:
    """Calls a subproblem on the chosen face and hands back torch tensors on the run's device and dtype."""

    def __init__(self, backend: str, device: torch.device, dtype: torch.dtype, options: dict):
        self.backend = backend
        self.device, self.dtype = device, dtype
        self.options = dict(options)
        if backend == "torch":
            from .torch import FUNCTIONS
        else:
            from .cvx import FUNCTIONS
        self.functions = FUNCTIONS
        # every option goes to every subproblem: each must be a keyword all of them take
        common = frozenset.intersection(*(_keywords(fn) for fn in FUNCTIONS.values()))
        unknown = sorted(set(self.options) - common)
        if unknown:
            raise ChoiceError(f"solver_options: {unknown} are not keyword arguments of every {backend} subproblem "
                              f"(the options go to all of them); those common to all: {sorted(common)}")

    def __call__(self, name: str, **kw: Any):
        fn = self.functions[name]
        if self.backend == "torch":
            kw = {k: v for k, v in kw.items() if not (k == "max_iter" and v is None)}
        else:
            # the reference face solves to completion: iteration control and warm starts are the torch face's
            params = _keywords(fn)
            kw = {k: (v.detach().cpu().double().numpy() if isinstance(v, torch.Tensor) else v)
                  for k, v in kw.items() if k in params}
        clash = sorted(set(kw) & set(self.options))
        if clash:
            raise ChoiceError(f"solver_options: {clash} are set by the trainer for {name} (from its own settings, "
                              "e.g. tol, inexact_iters, gamma); change those settings instead")
        W = kw.get("W_init")
        with traffic_tag(name if W is None else f"{name} {'x'.join(map(str, W.shape))}"):
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


def _check_weights_finite(state: BCDState) -> None:
    """Raise :class:`SolverError` when a sweep left NaN/inf in a weight: it diverged on finite data."""
    name = first_not_finite([(f"{kind}_{l}", t) for l, (w, v) in enumerate(zip(state.W, state.b, strict=True))
                             for kind, t in (("W", w), ("b", v)) if t is not None])
    if name is not None:
        raise SolverError(f"{name}: expected finite weights after the batch's block updates, got NaN/inf "
                          "entries from finite data: the steps diverged (in the running-curvature mode a "
                          "smaller curvature_relax or larger gamma shortens them)", status="non-finite",
                          subproblem="bcd_step")


def _keywords(fn: Any) -> frozenset[str]:
    """The parameter names of a subproblem function (of either face)."""
    import inspect

    return frozenset(inspect.signature(fn).parameters)


# -- the trainer ---------------------------------------------------------------------------------------------
class BCD(Trainer):
    """Train a :class:`~fenchel_cvx.network.LiftedNetwork` by block coordinate descent (Algorithms 1 and 2).

    The loop (batches, evaluation, history, timing, resume) is :class:`~fenchel_cvx.trainer.Trainer`'s; this
    class supplies one batch's sweeps over the subproblems.

    Parameters
    ----------
    network : LiftedNetwork
        Gives the architecture, activations, loss and the initial weights (it is not modified).
    settings : BCDSettings, optional
        Defaults: the command line's (batches of 500, inexact BCD in the fast default mode for a fully connected
        cross-entropy network, Appendix C's MM mode and values otherwise; :mod:`fenchel_cvx.settings`).

    Examples
    --------
    >>> from fenchel_cvx import BCD, BCDSettings, LiftedNetwork
    >>> from fenchel_cvx.data import load_mnist_subset
    >>> data = load_mnist_subset()                       # shipped: 10,000 train / 2,000 test images
    >>> net = LiftedNetwork([784, 300, 10], "relu", "ce", seed=0)
    >>> bcd = BCD(net, BCDSettings(epochs=1))             # the same defaults as `fenchel-cvx train`
    >>> state = bcd.run(data, progress=False)             # train split; test split evaluated every epoch
    >>> round(state.history[-1]["test_acc"], 2) > 0.85
    True
    """

    settings_class = BCDSettings
    state_class = BCDState
    method = "fenchel"
    #: whether :data:`~fenchel_cvx.settings.FAST_MODE` is this trainer's default (Fenchel's penalty only)
    fast_default: ClassVar[bool] = True

    def __init__(self, network: Any, settings: BCDSettings | None = None):
        super().__init__(network, settings)
        s, b = self.settings, self.batched
        self.lam = layer_values(s.lam, self.L, "lam", batched=b, positive=True, family=self.family)
        fast = self.fast_default and s.takes_fast_default(dense=all(lay.is_plain_dense for lay in self.layers),
                                                          loss=self.loss.name)
        #: the mode flags' values this run uses (``BCDSettings.mode``): the fast default or the MM mode
        self.mode = s.mode(fast)
        gamma = [FAST_GAMMA[0]] * self.L + [FAST_GAMMA[1]] if fast and s.gamma is None else s.gamma
        self.gamma = layer_values(gamma, self.L + 1, "gamma", batched=b, family=self.family)
        #: the running W-steps' multiplier omega of each layer (``curvature_relax``, one value broadcast)
        self.relax = layer_values(self.mode["curvature_relax"], self.L + 1, "curvature_relax", batched=b,
                                  positive=True)
        #: the Adam W-steps' rate (``curvature="adam"``): ``adam_lr``, or :data:`~fenchel_cvx.settings.ADAM_LR`
        self.adam_lr = s.adam_rate
        #: the penalty of each hidden layer in J (what ``B`` is asked of): the activations' Fenchel penalties here
        self.penalties = list(self.acts)
        self._face: _Face | None = None

    def resolved(self) -> dict:
        """The per-layer ``lam``, ``rho``, ``gamma`` and the inexact mode this trainer uses (``curvature_relax``
        per layer too)."""
        adam = self.mode["curvature"] == "adam"
        return {"lam": list(self.lam), "rho": list(self.rho), "gamma": list(self.gamma),
                "inexact": self.settings.is_inexact, **self.mode, "curvature_relax": list(self.relax),
                **({"adam_lr": self.adam_lr} if adam else {})}

    @property
    def face(self) -> _Face:
        """The subproblem face (``settings.backend``) that answers every block update."""
        if self._face is None:
            self._face = _Face(self.settings.backend, self.device, self.dtype, self.settings.solver_options)
        return self._face

    def _adopt_extra(self, state: BCDState) -> None:
        if state.X is not None:
            state.X = [x.to(device=self.device, dtype=self.dtype).contiguous() for x in state.X]
        if state.curvature is not None:
            self._check_scalings(state.curvature)
            state.curvature = [c.to(self.device) for c in state.curvature]

    def _check_scalings(self, curv: list) -> None:
        """A state's W-step scalings must be the ones these settings make: else they would silently set the steps."""
        from .torch.curvature import AdamCurvature, RunningCurvature

        s, kind = self.settings, self.mode["curvature"] if self.settings.is_inexact else "batch"
        want = {"adam": AdamCurvature, "running": RunningCurvature}.get(kind)
        # the count too: an empty or short list would pass a per-layer check and fail at the first W-step
        if want is None or len(curv) != self.L + 1 or not all(isinstance(c, want) for c in curv):
            held = ", ".join(sorted({type(c).__name__ for c in curv})) or "none"
            raise ValueRangeError(f"state.curvature: holds {len(curv)} W-step scalings ({held}), these settings take "
                                  f"curvature={kind!r} ({self.L + 1} layers); resume with the settings that made "
                                  "the state")
        for l, c in enumerate(curv):
            if isinstance(c, AdamCurvature) and c.lr != self.adam_lr:
                raise ValueRangeError(f"state.curvature: layer {l}'s Adam moments were made with adam_lr={c.lr:g}, "
                                      f"these settings say {self.adam_lr:g}; resume with the settings that made the "
                                      "state")
            if isinstance(c, RunningCurvature) and (c.every, c.rank) != (s.curvature_every, s.curvature_rank):
                raise ValueRangeError(f"state.curvature: layer {l}'s running curvature refreshes every {c.every} "
                                      f"batches with rank {c.rank}, these settings say {s.curvature_every} and "
                                      f"{s.curvature_rank}; resume with the settings that made the state")

    def _check_state(self, state: BCDState, m: int) -> None:
        if state.X is None:
            return
        rank, size = world(process_group())
        cols = column_range(m, rank, size)
        if size > 1 and state.X[0].shape[1] == m:  # a checkpoint holds every column: keep this process's
            state.X = [x[:, cols.start:cols.stop].contiguous() for x in state.X]
        if state.X[0].shape[1] != len(cols):
            part = f" ({len(cols)} on process {rank} of {size})" if size > 1 else ""
            raise CheckpointError(f"state.X: Algorithm 1 X-variables cover {state.X[0].shape[1]} samples, the "
                                  f"training set has {m}{part}; resume with the same data")

    def checkpoint(self, state: BCDState) -> dict:
        """``state.state_dict()``; in a data-parallel Algorithm 1 run the X-variables of every process's columns
        are gathered first (a collective call: every process makes it, rank 0 writes the file)."""
        local = state.X
        state.X = self.gathered_X(state)
        try:
            return state.state_dict()
        finally:
            state.X = local

    def gathered_X(self, state: BCDState) -> list | None:
        """Algorithm 1's ``X_1..X_L`` over the whole training set (``None`` for Algorithm 2): ``state.X`` itself in
        one process, the processes' columns gathered in a data-parallel run (a collective call)."""
        if state.X is None or world(process_group())[1] == 1:
            return state.X
        with sharded():
            m = int(all_sum_float(state.X[0].shape[1]))
        return [gather_columns(x, m) for x in state.X]

    def _test_rule(self) -> str:
        return self.settings.prediction

    def _rules(self) -> tuple[str, ...]:
        return ("feedforward", "argmin")

    # -- one batch -----------------------------------------------------------------------------------------
    def _update(self, state: BCDState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """One batch: Algorithm 2 lines 3-15, or one Algorithm 1 iteration when full batch.

        Algorithm 2 re-initializes ``X_1..X_L`` by feed-forward and sets ``W^0`` to the weights before the
        batch, then runs ``K`` sweeps. Algorithm 1 (``batch_size=None``) keeps ``state.X`` (initialized by
        feed-forward on first use) and runs one sweep.
        """
        full = not self.batched
        if self.settings.backend == "cvx" and is_sharded():
            raise ShardingError("backend: the CVXPY reference face solves on one process; use backend='torch' in a "
                                "data-parallel run")
        if full and state.X is not None:
            X = [X0] + list(state.X)
            if any(x.shape[1] != X0.shape[1] for x in state.X):
                raise ShapeError(f"state.X: Algorithm 1 keeps X-variables for {state.X[0].shape[1]} samples, "
                                 f"got a batch of {X0.shape[1]}; start from a fresh state")
        else:
            X, U_ff = [X0], []  # feed-forward (line 5), keeping every U_l = A_l(X_l) + b_l for the first sweep
            for l, act in enumerate(self.acts):
                U_ff.append(self._pre(l, state.W, state.b, X[-1]))
                X.append(act.forward(U_ff[-1]))
        W0 = [w.clone() for w in state.W] if any(g > 0 for g in self.gamma) else None
        b0 = [v.clone() for v in state.b] if W0 is not None else None
        blocks: list[dict] = []
        J0 = self._J(state, X, T) if self.settings.record_blocks else math.nan
        # The faces would check again, block after block, values made here from the checked batch; the weights
        # are checked once at the end instead (a NaN anywhere in the sweep reaches them through a W-update).
        with trusted_values():
            for k in range(1 if full else self.settings.K):
                self._sweep(state, X, T, W0, b0, blocks, first=k == 0, U_ff=U_ff if k == 0 and not full else None)
        _check_weights_finite(state)
        if full:
            state.X = X[1:]
        res = [blk["max_residual"] for blk in blocks if not math.isnan(blk["max_residual"])]
        self._last_batch = (X, T)
        return {"J0": J0, "blocks": blocks, "max_residual": max(res) if res else math.nan}

    def _sweep(self, state: BCDState, X: list, T: torch.Tensor, W0: list | None, b0: list | None,
               blocks: list, first: bool = True, U_ff: list | None = None) -> None:
        """X_L, X_{L-1}..X_1, W_L, W_{L-1}..W_0; ``X`` (``[X_0..X_L]``) and ``state.W/b`` updated in place.

        ``U_ff``: the feed-forward's pre-activations ``U_l = A_l(X_l; W_l) + b_l``, when this is the first sweep
        after it. The X-updates run from the top down, so each one's ``U_{l-1}`` is still the feed-forward's (no
        ``W`` has moved and ``X_{l-1}`` is updated after ``X_l``): reused, not recomputed.
        """
        s, mode, L, W, b = self.settings, self.mode, self.L, state.W, state.b
        running = s.is_inexact and mode["curvature"] != "batch"  # "running" or "adam": one step per W-block
        tol = {"tol": s.tol, "max_iter": s.max_iter}
        # a capped X-update never ends a column above its start (FISTA's choice, heavy ball's test): J stays monotone
        xtol = (dict(tol, max_iter=mode["inexact_x_iters"], warn=False)
                if s.is_inexact and mode["inexact_x_iters"] is not None else tol)
        if s.uncertified_x_steps(mode):
            xtol["certify"] = False  # a certificate costs about as much as the capped steps themselves
            if mode["inexact_x_float32"]:
                xtol["step_dtype"] = torch.float32
        # W_0 X_0 + b_0 is needed by the X-update of X_1 and by the running W_0 step; X_0 and W_0 do not change
        # in between, so it is formed once (or taken from the feed-forward)
        U0 = None if U_ff is None else U_ff[0]
        if L >= 1:
            U = U_ff[L - 1] if U_ff is not None else self._pre(L - 1, W, b, X[L - 1])
            U0 = U if L == 1 else U0
            r = self.face("x_last", W=W[L], b=b[L], Y=T, U_prev=U, loss=self.loss, act_prev=self.acts[L - 1],
                          lam_prev=self.lam[L - 1], Z0=X[L], **self._layer(L),
                          **(tol if self.loss.name == "mse" else xtol))
            X[L] = r.Z
            self._record(blocks, "x_last", L, r, state, X, T)
        for l in range(L - 1, 0, -1):
            U = U_ff[l - 1] if U_ff is not None else self._pre(l - 1, W, b, X[l - 1])
            U0 = U if l == 1 else U0
            r = self.face("x_hidden", W=W[l], b=b[l], X_next=X[l + 1], U_prev=U, act=self.acts[l],
                          act_prev=self.acts[l - 1], lam=self.lam[l], lam_prev=self.lam[l - 1], Z0=X[l],
                          **self._layer(l), **xtol)
            X[l] = r.Z
            self._record(blocks, "x_hidden", l, r, state, X, T)
        if running:
            self._running_w_steps(state, X, T, W0, b0, blocks, first, U0)
            return
        # inexact: a few warm-started MM steps, deliberately unconverged, so no NotConvergedWarning; MM steps never
        # increase the block objective, so J stays monotone (a Newton step with a line search would be too, but
        # forms and factors one p_a x p_a Hessian per row where MM shares one bound)
        if s.is_inexact:
            wtol = dict(tol, max_iter=mode["inexact_iters"], warn=False, method="mm")
        elif is_sharded():  # Newton's Hessians do not split over processes; MM to tol is the same exact update
            wtol = dict(tol, max_iter=s.max_iter or _SHARDED_MM_ITERS, method="mm")
        else:
            wtol = tol
        prox = self._prox(L, W0, b0)
        r = self.face("w_last", X_in=X[L], Y=T, loss=self.loss, rho=self.rho[L], W_init=W[L], b_init=b[L],
                      **self._layer(L), **prox, **wtol)
        W[L], b[L] = r.W, r.b
        self._record(blocks, "w_last", L, r, state, X, T)
        for l in range(L - 1, -1, -1):
            prox = self._prox(l, W0, b0)
            r = self.face("w_hidden", X_in=X[l], X_next=X[l + 1], act=self.acts[l], lam=self.lam[l],
                          rho=self.rho[l], W_init=W[l], b_init=b[l], **self._layer(l), **prox, **wtol)
            W[l], b[l] = r.W, r.b
            self._record(blocks, "w_hidden", l, r, state, X, T)

    def _running_w_steps(self, state: BCDState, X: list, T: torch.Tensor, W0: list | None, b0: list | None,
                         blocks: list, first: bool, U0: torch.Tensor | None) -> None:
        """W_L, W_{L-1}..W_0 by one preconditioned step each: with the running curvature (``curvature="running"``)
        or Adam's moments (``curvature="adam"``)."""
        s, L, W, b = self.settings, self.L, state.W, state.b
        if state.curvature is None:
            from .torch.curvature import adam_curvature, hidden_curvature, last_curvature

            # a layer's curvature lives on what its weights act on: the input's patches (the input, when dense)
            lay = self.layers
            if self.mode["curvature"] == "adam":
                state.curvature = [adam_curvature(W[l].shape[0], lay[l].patch_size, lr=self.adam_lr,
                                                  device=self.device) for l in range(L + 1)]
            else:
                kw = {"every": s.curvature_every, "rank": s.curvature_rank, "device": self.device}
                state.curvature = [hidden_curvature(lay[l].patch_size, act=self.acts[l], lam=self.lam[l],
                                                    rho=self.rho[l], gamma=self.gamma[l], **kw) for l in range(L)]
                state.curvature.append(last_curvature(lay[L].patch_size, loss=self.loss, rho=self.rho[L],
                                                      gamma=self.gamma[L], **kw))
        curv = state.curvature
        if first:  # once per batch: the refresh cadence counts batches, not sweeps
            with traffic_tag("curvature refresh"):
                for l in range(L + 1):
                    curv[l].observe(lambda l=l: self.layers[l].patches(X[l]))  # patches formed only when due
        step = {"method": "running", "line_search": self.mode["curvature_line_search"], "max_iter": 1, "warn": False}
        # lr_decay (Adam W-steps only): the step's multiplier, as torch.optim.Adam's lr would be scaled
        relax = [omega * s.step_factor(state.epoch) for omega in self.relax]
        r = self.face("w_last", X_in=X[L], Y=T, loss=self.loss, rho=self.rho[L], W_init=W[L], b_init=b[L],
                      curvature=curv[L], relax=relax[L], **self._layer(L), **step, **self._prox(L, W0, b0))
        W[L], b[L] = r.W, r.b
        self._record(blocks, "w_last", L, r, state, X, T)
        for l in range(L - 1, -1, -1):
            U = U0 if l == 0 and U0 is not None else self._pre(l, W, b, X[l])
            r = self.face("w_hidden", X_in=X[l], X_next=X[l + 1], act=self.acts[l], lam=self.lam[l],
                          rho=self.rho[l], W_init=W[l], b_init=b[l], U=U, curvature=curv[l], relax=relax[l],
                          **self._layer(l), **step, **self._prox(l, W0, b0))
            W[l], b[l] = r.W, r.b
            self._record(blocks, "w_hidden", l, r, state, X, T)

    def _pre(self, l: int, W: list, b: list, X: torch.Tensor) -> torch.Tensor:
        """``U_l = A_l(X; W_l) + b_l``."""
        return self.layers[l].apply(W[l], b[l], X)

    def _layer(self, l: int) -> dict:
        """The ``layer`` argument of a face call: nothing for a plain dense layer (the faces' default map)."""
        layer = self.layers[l]
        return {} if layer.is_plain_dense else {"layer": layer}

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
        return lagrangian_terms(state.W, state.b, X, T, acts=self.penalties, loss=self.loss, lam=self.lam,
                                rho=self.rho, layers=self.layers)["total"]

    @property
    def last_batch_X(self) -> list | None:
        """``[X_0, ..., X_L]`` of the last step's batch after its update (features x samples); ``None`` before."""
        return None if self._last_batch is None else list(self._last_batch[0])

    @torch.no_grad()
    def batch_terms(self, state: BCDState, X: list | None = None, T: torch.Tensor | None = None) -> dict:
        """``J``, its ``penalty`` part and the ``primal`` objective (eq. 3) on the last step's batch."""
        if X is None:
            X, T = self._last_batch if self._last_batch is not None else (None, None)
        if X is None:
            return {"J": math.nan, "penalty": math.nan, "primal": math.nan}
        t = lagrangian_terms(state.W, state.b, X, T, acts=self.penalties, loss=self.loss, lam=self.lam, rho=self.rho,
                             layers=self.layers)
        Yhat = feed_forward(state.W, state.b, self.acts, X[0], self.layers)[-1]
        reg = t["regularization"]
        return {"J": t["total"], "penalty": t["penalty"], "primal": all_sum_float(self.loss.value(T, Yhat), T) + reg}

    def _labels(self, state: BCDState, W: list, b: list, X0: torch.Tensor, rule: str) -> torch.Tensor:
        if rule == "feedforward":
            return super()._labels(state, W, b, X0, rule)
        return self._argmin_labels(W, b, X0)

    def _argmin_labels(self, W: list, b: list, X0: torch.Tensor, sweeps: int = 20) -> torch.Tensor:
        """Eq. (12): per column, the class ``k`` minimizing ``min_x CE(e_k, W_L x_L + b_L) + sum lam_l B_l``.

        MSE (or no hidden layer) reduces to feed-forward exactly; see the module docstring.
        """
        L, p = self.L, self.sizes[-1]
        ff = feed_forward(W, b, self.acts, X0, self.layers)
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
                U = self._pre(L - 1, W, b, X[L - 1])
                X[L] = self.face("x_last", W=W[L], b=b[L], Y=T, U_prev=U, loss=self.loss,
                                 act_prev=self.acts[L - 1], lam_prev=self.lam[L - 1], Z0=X[L], **self._layer(L),
                                 **tol).Z
                for l in range(L - 1, 0, -1):
                    U = self._pre(l - 1, W, b, X[l - 1])
                    X[l] = self.face("x_hidden", W=W[l], b=b[l], X_next=X[l + 1], U_prev=U, act=self.acts[l],
                                     act_prev=self.acts[l - 1], lam=self.lam[l], lam_prev=self.lam[l - 1],
                                     Z0=X[l], **self._layer(l), **tol).Z
                val = self.loss.per_sample(T, self._pre(L, W, b, X[L]))
                for l in range(L):
                    val = val + self.lam[l] * self.penalties[l].B(X[l + 1], self._pre(l, W, b, X[l])).sum(0)
                cur = float(val.sum())
                if prev - cur <= self.settings.tol * max(abs(cur), 1.0):
                    break
                prev = cur
            better = val < best
            best = torch.where(better, val, best)
            arg = torch.where(better, torch.full_like(arg, k), arg)
        return arg
