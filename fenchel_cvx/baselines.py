r"""Backprop baselines: the same network, loss and data pipeline as :mod:`fenchel_cvx.bcd`, trained by SGD or Adam.

What is shared with the Fenchel BCD trainer, so that curves overlay exactly:

* the architecture and initial weights (a :class:`~fenchel_cvx.network.LiftedNetwork`) and its feed-forward rule
  (:func:`fenchel_cvx.bcd.feed_forward`);
* the loss, in the paper's *sum* convention: the objective of one batch is the batched model (13) without its
  lifted terms, ``f(W) = L(Y, W_L X_L + b_L) + sum_l rho_l ||W_l||_F^2`` (eq. 3 restricted to the batch);
* the data pipeline: a CPU :class:`torch.Generator` seeded with ``settings.seed`` draws one permutation per epoch
  (``torch.randperm``), batch ``k`` is ``perm[k * m_b:(k + 1) * m_b]``; so Fenchel and backprop runs with the
  same seed see the same batches in the same order;
* the history rows (:data:`~fenchel_cvx.bcd.HISTORY_KEYS`); ``J``, ``penalty`` and ``max_residual`` are NaN here.

**Learning-rate semantics** (``reduction``). The optimizer is handed ``f(W) / m_b`` (``reduction="mean"``, the
default) or ``f(W)`` itself (``"sum"``). Both have the same minimizers; they differ only in what a learning rate
means. ``"mean"`` is TensorFlow's ``reduce_mean`` convention, which the paper's Appendix C learning rates (Adam
``1e-3``, SGD ``1e-2``) were tuned under. Measured on full MNIST, 784-300-10 ReLU, cross-entropy, batch 500,
10 epochs, seed 0 (CPU float32): Adam reaches 0.9765 with ``"mean"`` and 0.9767 with ``"sum"`` (Adam is nearly
invariant to the scale of the loss; paper: 0.976); SGD at ``1e-2`` reaches 0.898 with ``"mean"`` and *diverges*
with ``"sum"`` (a step 500x larger). SGD needs ``lr=1e-1`` under ``"mean"`` to reach the paper's 0.943 (we get
0.946), which suggests the paper's SGD took more (smaller) steps; we keep Appendix C's ``1e-2`` as the default
and say so wherever the number is reported.

Layout: :meth:`Backprop.step` takes paper-layout tensors ``X0`` ``(n, m)`` and ``Y`` ``(p, m)`` (or labels
``(m,)``); :meth:`Backprop.run`, :meth:`Backprop.evaluate` and :meth:`Backprop.predict` take samples-first
data ``(m, n)`` and transpose once at the boundary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch

from ._checks import check_finite, check_ndim, per_layer
from .bcd import HISTORY_KEYS, feed_forward
from .errors import CheckpointError, FenchelError, ShapeError, ValueRangeError

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "Backprop", "BackpropSettings", "BackpropState"]

Array = Any

#: Appendix C: "for models trained using Adam, the learning rate was set to 1e-3 and for SGD to 1e-2".
DEFAULT_LR = {"adam": 1e-3, "sgd": 1e-2}
OPTIMIZERS = tuple(DEFAULT_LR)
_REDUCTIONS = ("mean", "sum")
_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_EVAL_CHUNK = 8192  # columns per feed-forward chunk when evaluating a whole data set
_STATE_KIND = "fenchel_backprop_state"


@dataclass
class BackpropSettings:
    """Hyperparameters of a backprop baseline.

    Attributes
    ----------
    optimizer : {"adam", "sgd"}
        :class:`torch.optim.Adam` (default betas and eps) or :class:`torch.optim.SGD`.
    lr : float or None
        Learning rate; ``None`` takes Appendix C's value (:data:`DEFAULT_LR`: Adam ``1e-3``, SGD ``1e-2``).
    rho : float or sequence of L+1 floats
        Weight penalty ``rho_l ||W_l||_F^2`` in the paper's sum convention (biases not penalized). Default 0:
        Appendix C's batched models use no ``pi_l``.
    batch_size : int or None
        Samples per step; ``None`` is full-batch gradient descent.
    epochs : int
        Passes over the training data.
    reduction : {"mean", "sum"}
        The optimizer minimizes ``f / m_b`` (``"mean"``, TensorFlow's convention, under which Appendix C's
        learning rates were chosen) or ``f`` (``"sum"``); see the module docstring.
    momentum : float
        SGD momentum in ``[0, 1)`` (Appendix C: plain SGD, 0); ignored by Adam.
    device, dtype : str
        Where and in which precision to train (``"float64"`` or ``"float32"``).
    shuffle : bool
        Draw a fresh permutation of the training set every epoch.
    seed : int
        Seed of the permutation generator (the same stream as :class:`~fenchel_cvx.bcd.BCD`).
    eval_every : int or None
        Append a history row every this many batches as well as at each epoch's end (``None``: epochs only).
    """

    optimizer: str = "adam"
    lr: float | None = None
    rho: float | Sequence[float] = 0.0
    batch_size: int | None = 500
    epochs: int = 1
    reduction: str = "mean"
    momentum: float = 0.0
    device: str = "cpu"
    dtype: str = "float64"
    shuffle: bool = True
    seed: int = 0
    eval_every: int | None = None

    @property
    def learning_rate(self) -> float:
        """``lr``, or Appendix C's default for the optimizer."""
        return float(DEFAULT_LR.get(self.optimizer, math.nan) if self.lr is None else self.lr)

    def to_dict(self) -> dict:
        """JSON-able copy (``rho`` sequences become lists)."""
        d = asdict(self)
        d["rho"] = [float(x) for x in self.rho] if np.ndim(self.rho) else float(self.rho)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BackpropSettings:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`FenchelError`."""
        names = {f.name for f in fields(cls)}
        extra = set(d) - names
        if extra:
            raise FenchelError(f"BackpropSettings: unknown keys {sorted(extra)}; expected a subset of "
                               f"{sorted(names)}")
        return cls(**d)


@dataclass
class BackpropState:
    """Everything a backprop run needs to continue bitwise-identically after a restart.

    Attributes
    ----------
    W, b : list of Tensor
        Weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``, ``l = 0..L``: leaf tensors with ``requires_grad``.
    opt_state : dict or None
        The optimizer's ``state_dict()`` as last saved (moments, step counts); the live optimizer, when one
        exists, is ``optimizer`` and takes precedence.
    epoch, batch, step : int
        Completed epochs, index of the next batch in the current epoch, total optimizer steps.
    perm : Tensor or None
        The current epoch's permutation (``None`` between epochs).
    rng : torch.Generator
        CPU generator that draws the permutations.
    history : list of dict
        History rows (keys :data:`~fenchel_cvx.bcd.HISTORY_KEYS`).
    last : dict
        The last step's ``objective`` (the batch objective ``f`` before the step, sum convention), ``time`` and
        ``batch_size``.
    elapsed : float
        Training seconds so far (evaluation excluded).
    optimizer : torch.optim.Optimizer or None
        The live optimizer over ``W + b`` (not serialized as an object; see :meth:`state_dict`).
    """

    W: list
    b: list
    opt_state: dict | None = None
    epoch: int = 0
    batch: int = 0
    step: int = 0
    perm: torch.Tensor | None = None
    rng: torch.Generator = field(default_factory=torch.Generator)
    history: list = field(default_factory=list)
    last: dict = field(default_factory=dict)
    elapsed: float = 0.0
    optimizer: Any = field(default=None, repr=False, compare=False)

    def state_dict(self) -> dict:
        """Plain tensors (CPU copies), numbers, strings, lists and dicts: safe for ``torch.load(weights_only=True)``."""
        def cpu(t):
            return None if t is None else t.detach().to("cpu").clone()
        opt = self.optimizer.state_dict() if self.optimizer is not None else self.opt_state
        return {
            "kind": _STATE_KIND,
            "W": [cpu(w) for w in self.W],
            "b": [cpu(v) for v in self.b],
            "optimizer": _cpu_tree(opt),
            "epoch": int(self.epoch),
            "batch": int(self.batch),
            "step": int(self.step),
            "perm": cpu(self.perm),
            "rng_state": self.rng.get_state().clone(),
            "history": [dict(r) for r in self.history],
            "last": {k: float(v) for k, v in self.last.items() if isinstance(v, (int, float))},
            "elapsed": float(self.elapsed),
        }

    @classmethod
    def from_state_dict(cls, d: dict, *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> BackpropState:
        """Rebuild a state from :meth:`state_dict` (optionally moving tensors to ``device``/``dtype``).

        The optimizer is rebuilt lazily by :class:`Backprop` from ``opt_state``.

        Raises
        ------
        CheckpointError
            ``d`` is not a backprop state dict or misses keys.
        """
        need = ("W", "b", "optimizer", "epoch", "batch", "step", "perm", "rng_state", "history")
        if not isinstance(d, dict) or d.get("kind") != _STATE_KIND or any(k not in d for k in need):
            got = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise CheckpointError(f"state: expected a backprop state dict with keys {list(need)}, got {got}; "
                                  "was this checkpoint written by the Fenchel BCD trainer?")
        dt = _DTYPES[dtype] if isinstance(dtype, str) else dtype

        def param(t):
            t = t.to(device=device if device is not None else t.device, dtype=dt if dt is not None else t.dtype)
            return t.detach().clone().requires_grad_(True)
        rng = torch.Generator()
        rng.set_state(d["rng_state"].clone())
        perm = d["perm"]
        return cls(W=[param(w) for w in d["W"]], b=[param(v) for v in d["b"]], opt_state=d["optimizer"],
                   epoch=int(d["epoch"]), batch=int(d["batch"]), step=int(d["step"]),
                   perm=None if perm is None else perm.clone(), rng=rng,
                   history=[dict(r) for r in d["history"]], last=dict(d.get("last") or {}),
                   elapsed=float(d.get("elapsed", 0.0)))


def _cpu_tree(x: Any) -> Any:
    """Deep copy of an optimizer state dict with every tensor moved to the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").clone()
    if isinstance(x, dict):
        return {k: _cpu_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu_tree(v) for v in x)
    return x


class Backprop:
    """Train a :class:`~fenchel_cvx.network.LiftedNetwork`'s architecture by backpropagation with SGD or Adam.

    Same interface as :class:`~fenchel_cvx.bcd.BCD` (``init_state`` / ``step`` / ``run`` /
    ``network_from_state``), same data pipeline and history rows.

    Parameters
    ----------
    network : LiftedNetwork
        Architecture, activations, loss and initial weights (it is not modified).
    settings : BackpropSettings, optional

    Examples
    --------
    >>> adam = Backprop(net, BackpropSettings(optimizer="adam", batch_size=500, epochs=10))
    >>> state = adam.run(X_train, y_train, X_test=X_test, y_test=y_test)   # samples-first (m, n)
    >>> trained = adam.network_from_state(state)
    """

    def __init__(self, network: Any, settings: BackpropSettings | None = None):
        s = settings if settings is not None else BackpropSettings()
        if not isinstance(s, BackpropSettings):
            raise FenchelError(f"settings: expected a BackpropSettings, got {type(s).__name__}")
        if s.optimizer not in OPTIMIZERS:
            raise FenchelError(f"optimizer: expected one of {OPTIMIZERS}, got {s.optimizer!r}")
        if s.lr is not None and not (isinstance(s.lr, (int, float)) and math.isfinite(s.lr) and s.lr > 0):
            raise ValueRangeError(f"lr: expected None (Appendix C default {DEFAULT_LR[s.optimizer]}) or a finite "
                                  f"number > 0, got {s.lr!r}")
        if s.reduction not in _REDUCTIONS:
            raise FenchelError(f"reduction: expected one of {_REDUCTIONS}, got {s.reduction!r}")
        if not (isinstance(s.momentum, (int, float)) and 0 <= s.momentum < 1):
            raise ValueRangeError(f"momentum: expected a number in [0, 1), got {s.momentum!r}")
        if s.batch_size is not None and (not _is_int(s.batch_size) or s.batch_size < 1):
            raise ValueRangeError(f"batch_size: expected None (full batch) or an integer >= 1, got {s.batch_size!r}")
        if not _is_int(s.epochs) or s.epochs < 0:
            raise ValueRangeError(f"epochs: expected an integer >= 0, got {s.epochs!r}")
        if s.eval_every is not None and (not _is_int(s.eval_every) or s.eval_every < 1):
            raise ValueRangeError(f"eval_every: expected None or an integer >= 1, got {s.eval_every!r}")
        if s.dtype not in _DTYPES:
            raise FenchelError(f"dtype: expected one of {tuple(_DTYPES)}, got {s.dtype!r}")
        try:
            self.device = torch.device(s.device)
        except (RuntimeError, TypeError) as exc:
            raise FenchelError(f"device: expected a torch device string such as 'cpu' or 'cuda', got "
                               f"{s.device!r} ({exc})") from None
        self.network = network
        self.settings = s
        self.L = int(network.L)
        self.acts = list(network.acts)
        self.loss = network.loss
        self.sizes = list(network.sizes)
        self.rho = per_layer(s.rho, self.L + 1, "rho", nonneg=True)
        self.lr = s.learning_rate
        self.dtype = _DTYPES[s.dtype]
        self._last_batch: tuple | None = None

    @property
    def method(self) -> str:
        """``"adam"`` or ``"sgd"`` (the ``method`` column of the history rows)."""
        return self.settings.optimizer

    # -- state ---------------------------------------------------------------------------------------------
    def init_state(self) -> BackpropState:
        """A fresh state: the network's weights on ``settings.device``/``dtype`` and a seeded generator."""
        W = [torch.as_tensor(np.asarray(w), dtype=self.dtype).to(self.device).clone().requires_grad_(True)
             for w in self.network.W]
        b = [torch.as_tensor(np.asarray(v), dtype=self.dtype).to(self.device).clone().requires_grad_(True)
             for v in self.network.b]
        rng = torch.Generator()
        rng.manual_seed(int(self.settings.seed))
        return BackpropState(W=W, b=b, rng=rng)

    def network_from_state(self, state: BackpropState) -> Any:
        """A copy of the network holding the state's weights (numpy float64)."""
        net = self.network.copy()
        net.set_weights([w.detach().cpu().double().numpy() for w in state.W],
                        [v.detach().cpu().double().numpy() for v in state.b])
        return net

    def _optimizer(self, state: BackpropState) -> torch.optim.Optimizer:
        """The live optimizer over ``state.W + state.b`` (built, and loaded from ``opt_state``, on first use)."""
        params = list(state.W) + list(state.b)
        opt = state.optimizer
        if opt is not None and [p for g in opt.param_groups for p in g["params"]] == params:
            return opt
        for i, p in enumerate(params):
            if not p.is_leaf or not p.requires_grad:
                raise FenchelError(f"state: parameter {i} is not a leaf tensor with requires_grad; build states "
                                   "with Backprop.init_state() or BackpropState.from_state_dict()")
        if self.settings.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=self.lr)
        else:
            opt = torch.optim.SGD(params, lr=self.lr, momentum=float(self.settings.momentum))
        if state.opt_state is not None:
            want = set(opt.state_dict()["param_groups"][0])
            got = set(state.opt_state.get("param_groups", [{}])[0]) if isinstance(state.opt_state, dict) else set()
            if want != got:
                raise CheckpointError(f"state.opt_state: expected the state of a {self.settings.optimizer} optimizer "
                                      f"(param-group keys {sorted(want)}), got keys {sorted(got)}; was the "
                                      "checkpoint written with another optimizer?")
            try:
                opt.load_state_dict(state.opt_state)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise CheckpointError(f"state.opt_state: cannot restore the {self.settings.optimizer} optimizer "
                                      f"({exc}); was the checkpoint written with another optimizer or "
                                      "architecture?") from None
        state.optimizer = opt
        return opt

    # -- one batch -----------------------------------------------------------------------------------------
    def objective(self, W: Sequence[torch.Tensor], b: Sequence[torch.Tensor], X0: torch.Tensor,
                  T: torch.Tensor) -> torch.Tensor:
        """Batch objective ``f = L(Y, Yhat) + sum_l rho_l ||W_l||_F^2`` (sum convention, eq. 3 on the batch).

        Parameters
        ----------
        W, b : sequences of Tensor
            ``L+1`` weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``.
        X0 : Tensor, shape (n, m)
        T : Tensor, shape (p, m)
            Target columns.

        Returns
        -------
        Tensor
            0-d, differentiable.
        """
        f = self.loss.value(T, feed_forward(list(W), list(b), self.acts, X0)[-1])
        for l, r in enumerate(self.rho):
            if r > 0:
                f = f + r * (W[l] * W[l]).sum()
        return f

    def step(self, state: BackpropState, X0: torch.Tensor, Y: Array) -> BackpropState:
        """One optimizer step on one batch (paper layout).

        Parameters
        ----------
        state : BackpropState
            Updated in place and returned.
        X0 : Tensor, shape (n, m)
            The batch's inputs (features x samples).
        Y : Tensor, shape (p, m), or labels (m,)
            Targets.
        """
        X0 = self._as_tensor(X0, "X0")
        check_ndim(X0, "X0", 2, "(n, m): features x samples")
        if X0.shape[0] != self.sizes[0]:
            raise ShapeError(f"X0: expected {self.sizes[0]} rows (input features), got shape {tuple(X0.shape)}")
        T = self.loss.targets(Y if torch.is_tensor(Y) else np.asarray(Y), self.sizes[-1], like=X0)
        if T.shape[1] != X0.shape[1]:
            raise ShapeError(f"Y: expected {X0.shape[1]} columns to match X0, got {T.shape[1]}")
        opt = self._optimizer(state)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        f = self.objective(state.W, state.b, X0, T)
        scaled = f / X0.shape[1] if self.settings.reduction == "mean" else f
        scaled.backward()
        opt.step()
        if self.device.type == "cuda":  # so that `time` measures the work, not the queueing
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        state.step += 1
        state.elapsed += dt
        state.last = {"objective": float(f.detach()), "time": dt, "batch_size": int(X0.shape[1])}
        self._last_batch = (X0, T)
        return state

    def batch_terms(self, state: BackpropState) -> dict:
        """``primal`` (eq. 3 on the last step's batch, after the step); ``J`` and ``penalty`` are NaN here."""
        if self._last_batch is None:
            return {"J": math.nan, "penalty": math.nan, "primal": math.nan}
        with torch.no_grad():
            primal = float(self.objective(state.W, state.b, *self._last_batch))
        return {"J": math.nan, "penalty": math.nan, "primal": primal}

    # -- the loop ------------------------------------------------------------------------------------------
    def run(self, X: Array, y: Array, *, X_test: Array | None = None, y_test: Array | None = None,
            state: BackpropState | None = None, callback: Callable[[BackpropState, dict], None] | None = None,
            progress: bool = True) -> BackpropState:
        """Train for ``settings.epochs`` epochs (resuming ``state`` where it stopped, mid-epoch included).

        Parameters
        ----------
        X : array, shape (m, n)
            Training inputs, samples first.
        y : array, shape (m,) integer labels, or (m, p) targets
        X_test, y_test : optional held-out set, same layout.
        state : BackpropState, optional
            A state to continue (from :meth:`init_state` or a checkpoint); fresh when ``None``.
        callback : callable(state, row), optional
            Called after each history row, with the state already advanced past the batch (safe to checkpoint).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        BackpropState
        """
        s = self.settings
        state = self.init_state() if state is None else state
        X0, Yfull, labels = self._prepare(X, y, "X", "y")
        test = self._prepare(X_test, y_test, "X_test", "y_test") if X_test is not None else None
        m = X0.shape[1]
        full = s.batch_size is None
        bs = m if full else min(int(s.batch_size), m)
        nb = 1 if full else -(-m // bs)
        if state.perm is not None and state.perm.numel() != m:
            raise CheckpointError(f"state.perm: the saved permutation covers {state.perm.numel()} samples, the "
                                  f"training set has {m}; resume with the same data")
        bar = _progress(progress, total=s.epochs * nb, initial=min(state.epoch * nb + state.batch, s.epochs * nb),
                        desc=f"{s.optimizer} backprop")
        try:
            while state.epoch < s.epochs:
                if full:
                    idx = None
                else:
                    # Same stream and slicing as BCD.run, so both trainers see the same batches.
                    if state.perm is None:
                        state.perm = (torch.randperm(m, generator=state.rng) if s.shuffle else torch.arange(m))
                    idx = state.perm[state.batch * bs:(state.batch + 1) * bs].to(self.device)
                Xb = X0 if idx is None else X0[:, idx]
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
                    bar.set_postfix(loss=f"{row['train_loss']:.4g}",
                                    acc=f"{row['test_acc'] if test else row['train_acc']:.3f}")
                    if callback is not None:
                        callback(state, row)
        finally:
            bar.close()
        return state

    def _row(self, state: BackpropState, nb: int, X0, Yfull, labels, test) -> dict:
        terms = self.batch_terms(state)
        tr_loss, tr_acc = self._evaluate_t(state, X0, Yfull, labels)
        te_loss, te_acc = self._evaluate_t(state, *test) if test is not None else (math.nan, math.nan)
        row = {"method": self.method, "epoch": state.epoch + state.batch / nb, "step": state.step,
               "J": terms["J"], "primal": terms["primal"], "penalty": terms["penalty"],
               "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc,
               "time": state.elapsed, "max_residual": math.nan}
        return {k: row[k] for k in HISTORY_KEYS}

    # -- data, evaluation, prediction ------------------------------------------------------------------------
    def _as_tensor(self, A: Array, name: str) -> torch.Tensor:
        if torch.is_tensor(A):
            return A.detach().to(device=self.device, dtype=self.dtype)
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
            Y = self.loss.targets(lab, p).to(device=self.device, dtype=self.dtype)
            labels = lab.long()
        else:
            Y = self.loss.targets(self._as_tensor(yt, yname).T.contiguous(), p)
            onehot = bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(0) == 1).all())
            labels = Y.argmax(0) if onehot else None
        return Xt.T.contiguous(), Y, labels

    @torch.no_grad()
    def _evaluate_t(self, state: BackpropState, X0: torch.Tensor, Y: torch.Tensor,
                    labels: torch.Tensor | None) -> tuple[float, float]:
        """Mean per-sample loss and feed-forward accuracy, in chunks."""
        total, correct, m = 0.0, 0, X0.shape[1]
        W = [w.detach() for w in state.W]
        b = [v.detach() for v in state.b]
        for j in range(0, m, _EVAL_CHUNK):
            Yhat = feed_forward(W, b, self.acts, X0[:, j:j + _EVAL_CHUNK])[-1]
            total += float(self.loss.value(Y[:, j:j + _EVAL_CHUNK], Yhat))
            if labels is not None:
                correct += int((Yhat.argmax(0) == labels[j:j + _EVAL_CHUNK]).sum())
        return total / max(m, 1), (correct / max(m, 1) if labels is not None else math.nan)

    def evaluate(self, state: BackpropState, X: Array, y: Array) -> tuple[float, float]:
        """``(mean per-sample loss, accuracy)`` of the state's network on samples-first ``X`` ``(m, n)``."""
        return self._evaluate_t(state, *self._prepare(X, y, "X", "y"))

    @torch.no_grad()
    def predict(self, state: BackpropState, X: Array) -> np.ndarray:
        """Class labels ``(m,)`` (feed-forward argmax) for samples-first ``X`` ``(m, n)``."""
        Xt = self._as_tensor(X, "X")
        check_ndim(Xt, "X", 2, "(m, n): samples x features")
        if Xt.shape[1] != self.sizes[0]:
            raise ShapeError(f"X: expected shape (m, {self.sizes[0]}), got {tuple(Xt.shape)}")
        W = [w.detach() for w in state.W]
        b = [v.detach() for v in state.b]
        X0 = Xt.T.contiguous()
        out = [feed_forward(W, b, self.acts, X0[:, j:j + _EVAL_CHUNK])[-1].argmax(0)
               for j in range(0, X0.shape[1], _EVAL_CHUNK)]
        return torch.cat(out).cpu().numpy()


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, initial: int, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="batch", desc=desc, leave=False)
