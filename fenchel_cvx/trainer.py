r"""The one training loop: data order, batches, timing, evaluation, history, progress and resume checks.

Fenchel BCD (:class:`~fenchel_cvx.bcd.BCD`) and the backprop baselines (:class:`~fenchel_cvx.baselines.Backprop`)
are both a :class:`Trainer`; a method supplies only what is its own -- one batch's update (``_update``), the
batch's objective terms for the history (``batch_terms``), and the state it carries between batches -- and
everything else is written here once:

* **data**: samples-first arrays ``(m, n)`` with labels ``(m,)`` or targets ``(m, p)``, or a
  :class:`~fenchel_cvx.data.Dataset` (its train split, and its test split for evaluation); transposed once to
  the paper's layout ``(features, samples)``;
* **order**: a CPU :class:`torch.Generator` seeded with ``settings.seed`` draws one permutation per epoch and batch
  ``k`` is ``perm[k m_b : (k+1) m_b]`` -- two trainers with the same seed see the same batches in the same order;
  a batch is gathered as whole samples (rows of the samples-first matrix), then transposed;
* **timing**: ``state.elapsed`` counts training seconds only (evaluation excluded), reading the clock after the
  device has finished the batch's work (CUDA is synchronized first);
* **history**: one row (:data:`HISTORY_KEYS`) at the end of every epoch and every ``eval_every`` batches;
* **resume**: a state from a checkpoint continues bitwise-identically, mid-epoch included; its weights must fit the
  architecture and its permutation the data;
* **data parallelism** (:mod:`fenchel_cvx.shards`): when :mod:`torch.distributed` is initialized with two or more
  processes, each process trains on its contiguous part of every batch (every process draws the same permutation)
  and the method's sums over samples -- W-updates, ``J``, the backprop gradients, the evaluation -- are local sums
  plus an ``all_reduce``, so every process holds the same weights and history. Progress bars show on rank 0 only;
  ``callback`` runs on every process (write files from rank 0).

Layout: :meth:`Trainer.step` takes paper-layout tensors ``X0`` ``(n, m)`` and ``Y`` ``(p, m)`` (or labels
``(m,)``); :meth:`Trainer.run`, :meth:`Trainer.evaluate` and :meth:`Trainer.predict` take samples-first data.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ._checks import check_choice, check_device, check_finite, check_ndim, trusted_values
from .errors import CheckpointError, ChoiceError, DomainError, FenchelError, LabelError, ShapeError, ShardingError
from .settings import TrainerSettings, layer_values
from .shards import all_sum, column_range, is_sharded, local_part, process_group, sharded, traffic_tag, world

__all__ = ["HISTORY_KEYS", "TrainState", "Trainer", "affine", "feed_forward", "pre_activation"]

Array = Any

#: Keys of every history row, the same for every method, so curves overlay. ``epoch`` is a float (epochs done +
#: fraction of the current one); ``J``, ``primal`` (eq. 3) and ``penalty`` (``sum lam_l B_l``) are sums over the
#: last batch, as in the paper (``J`` and ``penalty`` NaN for backprop); ``train_loss``/``test_loss`` are the loss
#: *per sample* (mean over the whole set, feed-forward outputs, no rho term) and ``*_acc`` fractions in [0, 1] (NaN
#: without labels or test set); ``time`` is training seconds since the start, evaluation excluded;
#: ``max_residual`` the largest optimality residual of the last batch's subproblems (NaN for backprop and for
#: uncertified steps).
HISTORY_KEYS = ("method", "epoch", "step", "J", "primal", "penalty", "train_loss", "train_acc", "test_loss",
                "test_acc", "time", "max_residual")

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
_EVAL_CHUNK = 8192  # columns per feed-forward chunk when evaluating a whole data set


# -- the math every trainer evaluates -----------------------------------------------------------------------------
def affine(W: torch.Tensor, b: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    """``W X + b 1^T`` (one fused multiply-add)."""
    return W @ X if b is None else torch.addmm(b[:, None], W, X)


def pre_activation(layer: Any, W: torch.Tensor, b: torch.Tensor | None, X: torch.Tensor) -> torch.Tensor:
    """``A(X; W) + b``: the layer's linear map (:class:`~fenchel_cvx.layers.Layer`), or ``W X + b`` for ``None``."""
    return affine(W, b, X) if layer is None else layer.apply(W, b, X)


def feed_forward(W: Sequence[torch.Tensor], b: Sequence[torch.Tensor], acts: Sequence[Any], X0: torch.Tensor,
                 layers: Sequence[Any] | None = None) -> list[torch.Tensor]:
    """``[X_0, X_1, ..., X_L, Yhat]`` by the network's feed-forward rule, paper layout ``(features, m)``.

    Parameters
    ----------
    W, b : sequences of Tensor
        ``W_l`` (``layers[l].weight_shape``; ``(p_{l+1}, p_l)`` for dense layers) and ``b_l``, ``l = 0..L``.
    acts : sequence of Activation
        ``L`` hidden activations.
    X0 : Tensor, shape (n, m)
        Flattened inputs, one column per sample.
    layers : sequence of Layer, optional
        The linear maps (:mod:`fenchel_cvx.layers`); ``None``: every layer dense, ``W_l X_l + b_l``.
    """
    maps = [None] * len(W) if layers is None else list(layers)
    out = [X0]
    for l, act in enumerate(acts):
        out.append(act.forward(pre_activation(maps[l], W[l], b[l], out[-1])))
    out.append(pre_activation(maps[-1], W[-1], b[-1], out[-1]))
    return out


# -- state --------------------------------------------------------------------------------------------------------
def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().to("cpu").clone(memory_format=torch.contiguous_format)


@dataclass
class TrainState:
    """Everything the loop needs to continue bitwise-identically after a restart.

    Attributes
    ----------
    W, b : list of Tensor
        Weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``, ``l = 0..L``, on the run's device and dtype.
    epoch : int
        Completed epochs.
    batch : int
        Index of the next batch within the current epoch.
    step : int
        Total batches trained so far.
    perm : Tensor or None
        The current epoch's permutation of the training set (``None`` between epochs).
    rng : torch.Generator
        CPU generator that draws the permutations.
    history : list of dict
        History rows (keys :data:`HISTORY_KEYS`).
    last : dict
        The last batch's information (``time``, ``batch_size``, and the method's own entries).
    elapsed : float
        Training seconds so far (evaluation excluded).
    """

    KIND: ClassVar[str] = ""  # the "kind" entry of the state dict
    LABEL: ClassVar[str] = ""  # what the trainer is called in messages

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

    def state_dict(self) -> dict:
        """Plain tensors (CPU copies), numbers, strings, lists and dicts: safe for ``torch.load(weights_only=True)``."""
        return {"kind": self.KIND, "W": [_cpu(w) for w in self.W], "b": [_cpu(v) for v in self.b],
                "epoch": int(self.epoch), "batch": int(self.batch), "step": int(self.step), "perm": _cpu(self.perm),
                "rng_state": self.rng.get_state().clone(), "history": [dict(r) for r in self.history],
                "last": _jsonable(self.last), "elapsed": float(self.elapsed), **self._extra_state()}

    def _extra_state(self) -> dict:
        return {}

    @classmethod
    def from_state_dict(cls, d: dict, *, device: str | torch.device | None = None,
                        dtype: str | torch.dtype | None = None) -> TrainState:
        """Rebuild a state from :meth:`state_dict`, optionally moving tensors to ``device``/``dtype``.

        Raises
        ------
        CheckpointError
            ``d`` is not a state dict of this trainer, misses keys, or holds entries of the wrong type or range.
        ChoiceError
            An unknown ``dtype`` or ``device``.
        """
        need = ("W", "b", "epoch", "batch", "step", "perm", "rng_state", "history", *cls._EXTRA_KEYS)
        if not isinstance(d, dict) or d.get("kind") != cls.KIND or any(k not in d for k in need):
            got = (f"kind {d.get('kind')!r} with keys {sorted(d)}" if isinstance(d, dict) else type(d).__name__)
            raise CheckpointError(f"state: expected a {cls.LABEL} state dict with keys {list(need)}, got {got}; was "
                                  "this checkpoint written by another trainer?")
        _check_state_entries(d, cls.LABEL)
        if isinstance(dtype, str) and dtype not in _DTYPES:
            raise ChoiceError(f"dtype: expected one of {sorted(_DTYPES)} or a torch dtype, got {dtype!r}")
        if device is not None:
            device = check_device(device)
        dt = _DTYPES[dtype] if isinstance(dtype, str) else dtype

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            return t.to(device=device if device is not None else t.device,
                        dtype=dt if (dt is not None and t.is_floating_point()) else t.dtype)
        rng = torch.Generator()
        rng.set_state(d["rng_state"].clone())
        perm = d["perm"]
        state = cls(W=[move(w) for w in d["W"]], b=[move(v) for v in d["b"]], epoch=int(d["epoch"]),
                    batch=int(d["batch"]), step=int(d["step"]),
                    perm=None if perm is None else perm.clone(),  # permutations live on the CPU
                    rng=rng, history=[dict(r) for r in d["history"]], last=dict(d.get("last") or {}),
                    elapsed=float(d.get("elapsed", 0.0)))
        state._load_extra(d, move, device)
        return state

    _EXTRA_KEYS: ClassVar[tuple[str, ...]] = ()

    def _load_extra(self, d: dict, move: Callable, device: Any) -> None:
        pass


def _check_state_entries(d: dict, label: str) -> None:
    """The types and ranges of a state dict's common entries (a hand-made or edited dict fails here, named)."""
    def bad(key: str, want: str, got: Any) -> CheckpointError:
        return CheckpointError(f"state[{key!r}]: expected {want}, got {got!r}"[:400] + f" (a {label} state dict)")

    for key in ("W", "b"):
        if not isinstance(d[key], (list, tuple)) or not d[key]:
            raise bad(key, "a non-empty list of tensors, one per layer", type(d[key]).__name__)
        for i, t in enumerate(d[key]):
            if not (torch.is_tensor(t) and t.is_floating_point()) and not (key == "b" and t is None):
                raise bad(f"{key}[{i}]", "a floating-point tensor", t if not torch.is_tensor(t) else t.dtype)
    for key in ("epoch", "batch", "step"):
        if isinstance(d[key], bool) or not isinstance(d[key], int) or d[key] < 0:
            raise bad(key, "an integer >= 0", d[key])
    perm = d["perm"]
    if perm is not None and not (torch.is_tensor(perm) and perm.ndim == 1 and perm.dtype == torch.int64):
        raise bad("perm", "None or a 1-D int64 tensor (a permutation of the training set)",
                  perm if not torch.is_tensor(perm) else f"{perm.dtype} tensor of shape {tuple(perm.shape)}")
    rng = d["rng_state"]
    if not (torch.is_tensor(rng) and rng.dtype == torch.uint8 and rng.ndim == 1):
        raise bad("rng_state", "a 1-D uint8 tensor (torch.Generator.get_state())", type(rng).__name__
                  if not torch.is_tensor(rng) else rng.dtype)
    if not isinstance(d["history"], list) or not all(isinstance(r, dict) for r in d["history"]):
        raise bad("history", "a list of dicts (history rows)", type(d["history"]).__name__)


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


# -- the trainer --------------------------------------------------------------------------------------------------
class Trainer:
    """The training loop shared by every method; subclasses supply one batch's update.

    Parameters
    ----------
    network : LiftedNetwork
        Architecture, activations, loss and initial weights (not modified).
    settings : TrainerSettings subclass, optional
        The method's settings class (``settings_class``); its defaults when omitted.

    Subclasses set ``settings_class``, ``state_class`` and implement ``_update(state, X0, T) -> dict`` (train on
    one paper-layout batch, return the entries of ``state.last``) and ``batch_terms(state)``; they may override
    ``_labels`` (prediction rule) and ``_check_state`` (method-specific resume checks).
    """

    settings_class: ClassVar[type] = TrainerSettings
    state_class: ClassVar[type] = TrainState
    requires_grad: ClassVar[bool] = False

    def __init__(self, network: Any, settings: TrainerSettings | None = None):
        if not all(hasattr(network, a) for a in ("L", "acts", "loss", "sizes", "W", "b")):
            raise FenchelError(f"network: expected a LiftedNetwork, got {type(network).__name__}; build one with "
                               "fenchel_cvx.LiftedNetwork(sizes, activation, loss)")
        s = self.settings_class() if settings is None else settings
        if not isinstance(s, self.settings_class):
            raise FenchelError(f"settings: expected a {self.settings_class.__name__}, got {type(s).__name__}")
        self.network = network
        self.settings = s
        self.L = int(network.L)
        self.acts = list(network.acts)
        self.loss = network.loss
        self.sizes = list(network.sizes)
        self.layers = list(network.layers)
        self.batched = s.batch_size is not None
        self.family = appendix_c_family(network)
        self.rho = layer_values(s.rho, self.L + 1, "rho", batched=self.batched, family=self.family)
        self.device = check_device(s.device)
        self.dtype = _DTYPES[s.dtype]
        self._last_batch: tuple | None = None

    @property
    def method(self) -> str:
        """The ``method`` column of the history rows."""
        raise NotImplementedError

    @property
    def arch(self) -> str:
        """The network's architecture spec (``"784-300-10"``, ``"1x28x28-c6k5p2-..."``)."""
        return self.network.arch

    def resolved(self) -> dict:
        """The per-layer values this trainer uses where the settings say "Appendix C" (``None``)."""
        return {"rho": list(self.rho)}

    # -- state -------------------------------------------------------------------------------------------------
    def init_state(self) -> TrainState:
        """A fresh state: the network's weights on ``settings.device``/``dtype`` and a seeded generator."""
        def param(a: Any) -> torch.Tensor:
            t = torch.as_tensor(np.asarray(a), dtype=self.dtype).to(self.device).clone()
            return torch.nn.Parameter(t) if self.requires_grad else t  # a Parameter: what DDP wraps
        rng = torch.Generator()
        rng.manual_seed(int(self.settings.seed))
        return self.state_class(W=[param(w) for w in self.network.W], b=[param(v) for v in self.network.b], rng=rng)

    def network_from_state(self, state: TrainState) -> Any:
        """A copy of the network holding the state's weights (numpy float64)."""
        net = self.network.copy()
        net.set_weights([w.detach().cpu().double().numpy() for w in state.W],
                        [v.detach().cpu().double().numpy() for v in state.b])
        return net

    def _adopt(self, state: TrainState) -> TrainState:
        """Check a (resumed) state against this trainer and move its tensors to the run's device and dtype."""
        if not isinstance(state, self.state_class):
            raise CheckpointError(f"state: expected a {self.state_class.__name__}, got {type(state).__name__}; was "
                                  "it made by another trainer?")
        shapes = [tuple(w.shape) for w in state.W]
        want = [tuple(layer.weight_shape) for layer in self.layers]
        if shapes != want or [tuple(v.shape) for v in state.b] != [tuple(la.bias_shape) for la in self.layers]:
            raise CheckpointError(f"state.W: expected weights of the architecture {self.arch} (shapes {want}), got "
                                  f"{shapes}; resume with the same network")

        def mv(t: torch.Tensor) -> torch.Tensor:
            if t.device == self.device and t.dtype == self.dtype and t.is_contiguous():
                return t
            t = t.detach().to(device=self.device, dtype=self.dtype).contiguous()
            return torch.nn.Parameter(t) if self.requires_grad else t  # a Parameter: what DDP wraps
        state.W, state.b = [mv(w) for w in state.W], [mv(v) for v in state.b]
        self._adopt_extra(state)
        return state

    def _adopt_extra(self, state: TrainState) -> None:
        pass

    def _check_state(self, state: TrainState, m: int) -> None:
        """Method-specific checks that ``state`` fits a training set of ``m`` samples."""

    def checkpoint(self, state: TrainState) -> dict:
        """The state dict to save (:meth:`TrainState.state_dict`). In a data-parallel run every process calls it
        (it may gather per-process parts) and rank 0 writes it."""
        return state.state_dict()

    # -- one batch ---------------------------------------------------------------------------------------------
    def step(self, state: TrainState, X0: Array, Y: Array) -> TrainState:
        """Train on one batch (paper layout) and advance the step counter and the clock.

        Parameters
        ----------
        state : TrainState
            Updated in place and returned.
        X0 : Tensor, shape (n, m)
            The batch's inputs (features x samples); in a data-parallel run, this process's part of the batch.
        Y : Tensor, shape (p, m), or labels (m,)
            Targets.

        Returns
        -------
        TrainState
            ``state``, one step further.

        Raises
        ------
        ShapeError, DomainError, LabelError
            A batch of the wrong shape, with NaN/inf entries, or targets the loss cannot take (the message names
            ``X0`` or ``Y``); nothing is trained then.
        SolverError
            (Fenchel BCD) a solver failed, or a batch's block updates left NaN/inf in the weights.
        """
        if not isinstance(state, self.state_class):
            raise FenchelError(f"state: expected a {self.state_class.__name__} (from init_state() or a checkpoint), "
                               f"got {type(state).__name__}")
        X0 = self._as_tensor(X0, "X0")
        check_ndim(X0, "X0", 2, "(n, m): features x samples")
        if X0.shape[0] != self.sizes[0]:
            raise ShapeError(f"X0: expected {self.sizes[0]} rows (input features), got shape {tuple(X0.shape)}")
        check_finite(X0, "X0")
        T = self.loss.targets(Y if torch.is_tensor(Y) else np.asarray(Y), self.sizes[-1], like=X0)
        if T.shape[1] != X0.shape[1]:
            raise ShapeError(f"Y: expected {X0.shape[1]} columns to match X0, got {T.shape[1]}")
        return self._checked_step(state, X0, T)

    def _checked_step(self, state: TrainState, X0: torch.Tensor, T: torch.Tensor) -> TrainState:
        """:meth:`step` on a batch already checked: ``X0`` finite ``(n, m)``, ``T`` the ``(p, m)`` targets."""
        self._ready(state)
        t0 = time.perf_counter()
        with sharded():
            last = self._update(state, X0, T)
        if self.device.type == "cuda":  # so that the clock measures the work, not the queueing
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        state.step += 1
        state.elapsed += dt
        state.last = {**last, "time": dt, "batch_size": int(X0.shape[1])}
        return state

    def _ready(self, state: TrainState) -> None:
        """Set-up a method needs before its first batch (not counted as training time)."""

    def _update(self, state: TrainState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        raise NotImplementedError

    def batch_terms(self, state: TrainState) -> dict:
        """``J``, ``penalty`` and ``primal`` (eq. 3) on the last step's batch (NaN where a method has none)."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------------------------------------
    def run(self, X: Array, y: Array | None = None, *, X_test: Array | None = None, y_test: Array | None = None,
            state: TrainState | None = None, callback: Callable[[TrainState, dict], None] | None = None,
            progress: bool = True) -> TrainState:
        """Train for ``settings.epochs`` epochs (resuming ``state`` where it stopped, mid-epoch included).

        Parameters
        ----------
        X : array, shape (m, n), or Dataset
            Training inputs, samples first; or a :class:`~fenchel_cvx.data.Dataset`, whose train split is used
            (and its test split for evaluation, unless ``X_test`` is given).
        y : array, shape (m,) integer labels, or (m, p) targets
            Omitted when ``X`` is a Dataset.
        X_test, y_test : optional held-out set, same layout.
        state : TrainState, optional
            A state to continue (from :meth:`init_state` or a checkpoint); fresh when ``None``.
        callback : callable(state, row), optional
            Called after each history row, with the state already advanced past the batch (safe to checkpoint).
        progress : bool
            Show a tqdm progress bar.

        Returns
        -------
        TrainState
        """
        s = self.settings
        if X_test is None and y_test is not None:
            raise ShapeError("y_test: given without X_test; pass both (a held-out set) or neither")
        X, y, X_test, y_test = _split_dataset(X, y, X_test, y_test)
        state = self.init_state() if state is None else self._adopt(state)
        Xs, Yfull, labels = self._prepare(X, y, "X", "y")
        test = self._prepare(X_test, y_test, "X_test", "y_test") if X_test is not None else None
        m = Xs.shape[0]
        if m == 0:
            raise ShapeError("X: expected at least one training sample, got an empty training set (0 rows)")
        if test is not None and test[0].shape[0] == 0:
            raise ShapeError("X_test: expected at least one test sample, got an empty test set (0 rows); pass "
                             "X_test=None to train without one")
        if s.batch_size is not None and int(s.batch_size) > m:
            warnings.warn(f"batch_size: {s.batch_size} is larger than the {m} training samples; every epoch is one "
                          f"batch of {m} (the whole set)", UserWarning, stacklevel=2)
        bs = m if s.batch_size is None else min(int(s.batch_size), m)
        nb = -(-m // bs)
        rank, size = world(process_group())
        if size > 1 and min(bs, m - (nb - 1) * bs) < size:
            raise ShardingError(f"batch_size: every batch must give each of the {size} processes a sample; batches "
                                f"of {bs} over {m} samples end with one of {m - (nb - 1) * bs}. Choose a batch size "
                                "that leaves a last batch of at least one sample per process")
        if state.perm is not None and state.perm.numel() != m:
            raise CheckpointError(f"state.perm: the saved permutation covers {state.perm.numel()} samples, the "
                                  f"training set has {m}; resume with the same data")
        if state.perm is not None and not torch.equal(torch.sort(state.perm).values, torch.arange(m)):
            raise CheckpointError(f"state.perm: expected a permutation of 0..{m - 1}, got repeated or out-of-range "
                                  "indices")
        if state.batch >= nb:
            raise CheckpointError(f"state.batch: expected the next batch's index below the {nb} batches of an epoch, "
                                  f"got {state.batch}; resume with the same data and batch size")
        self._check_state(state, m)
        X0 = Xs.T  # a view; batches gather whole samples (rows of Xs), much faster than columns of X0
        if s.batch_size is None and size > 1:  # Algorithm 1: this process's columns of the whole set
            cols = column_range(m, rank, size)
            Xfull, Yfull_local = Xs[cols.start:cols.stop].T.contiguous(), Yfull[:, cols.start:cols.stop]
        threads = torch.get_num_threads()
        if s.threads is not None:
            torch.set_num_threads(int(s.threads))
        bar = _progress(progress and rank == 0, total=s.epochs * nb,
                        initial=min(state.epoch * nb + state.batch, s.epochs * nb), desc=self.method)
        try:
            while state.epoch < s.epochs:
                if s.batch_size is None:
                    Xb, Yb = (X0, Yfull) if size == 1 else (Xfull, Yfull_local)
                else:
                    if state.perm is None:
                        state.perm = torch.randperm(m, generator=state.rng) if s.shuffle else torch.arange(m)
                    idx = local_part(state.perm[state.batch * bs:(state.batch + 1) * bs], rank, size)
                    idx = idx.to(self.device)
                    Xb, Yb = Xs[idx].T.contiguous(), Yfull[:, idx]
                self._checked_step(state, Xb, Yb)  # the whole set was checked above
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
                    bar.set_postfix(acc=f"{acc:.3f}")
                    if callback is not None:
                        callback(state, row)
        finally:
            bar.close()
            torch.set_num_threads(threads)
        return state

    def _row(self, state: TrainState, nb: int, X0: torch.Tensor, Yfull: torch.Tensor, labels: torch.Tensor | None,
             test: tuple | None) -> dict:
        with sharded(), traffic_tag("history row"):
            return self._row_sharded(state, nb, X0, Yfull, labels, test)

    def _row_sharded(self, state: TrainState, nb: int, X0: torch.Tensor, Yfull: torch.Tensor,
                     labels: torch.Tensor | None, test: tuple | None) -> dict:
        terms = self.batch_terms(state)
        tr_loss, tr_acc = self._evaluate_t(state, X0, Yfull, labels, rule="feedforward")
        te_loss, te_acc = (self._evaluate_t(state, test[0].T, *test[1:], rule=self._test_rule()) if test is not None
                           else (math.nan, math.nan))
        return {"method": self.method, "epoch": state.epoch + state.batch / nb, "step": state.step,
                "J": terms["J"], "primal": terms["primal"], "penalty": terms["penalty"],
                "train_loss": tr_loss, "train_acc": tr_acc, "test_loss": te_loss, "test_acc": te_acc,
                "time": state.elapsed, "max_residual": float(state.last.get("max_residual", math.nan))}

    # -- data, evaluation, prediction --------------------------------------------------------------------------
    def _as_tensor(self, A: Array, name: str) -> torch.Tensor:
        if torch.is_tensor(A):
            if A.is_meta or A.is_complex():
                raise DomainError(f"{name}: expected a real tensor that holds data (on 'cpu' or 'cuda'), got "
                                   f"dtype {A.dtype} on device {A.device}")
            return A.detach().to(device=self.device, dtype=self.dtype)
        try:
            arr = np.asarray(A)
        except ValueError as exc:  # a ragged nested list
            raise ShapeError(f"{name}: expected a numeric array of one shape, got {type(A).__name__} ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise ShapeError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        return torch.as_tensor(arr.astype(float, copy=False), dtype=self.dtype, device=self.device)

    def _prepare(self, X: Array, y: Array, xname: str, yname: str
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Samples-first ``(m, n)``/``(m,)``/``(m, p)`` -> ``Xs (m, n)``, paper-layout ``Y (p, m)``, labels or None."""
        if y is None:
            raise ShapeError(f"{yname}: expected labels (m,) or targets (m, p) to go with {xname}, got None")
        n = self.sizes[0]
        Xs = self._samples(X, xname)
        check_finite(Xs, xname)
        if Xs.shape[1] != n:
            raise ShapeError(f"{xname}: expected shape (m, {n}) (samples x features), got {tuple(Xs.shape)}")
        p = self.sizes[-1]
        if torch.is_tensor(y) and (y.is_meta or y.is_complex()):
            raise LabelError(f"{yname}: expected real labels or targets holding data, got a tensor of dtype {y.dtype} "
                             f"on {y.device}")
        yt = y if torch.is_tensor(y) else torch.as_tensor(_label_array(y, yname))
        if yt.ndim not in (1, 2) or yt.shape[0] != Xs.shape[0] or (yt.ndim == 2 and yt.shape[1] != p):
            raise ShapeError(f"{yname}: expected ({Xs.shape[0]},) labels or ({Xs.shape[0]}, {p}) targets (samples x "
                             f"outputs) to match {xname}, got shape {tuple(yt.shape)}")
        if yt.ndim == 1:
            lab = yt.to(self.device)
            Y = self.loss.targets(lab, p, name=yname).to(device=self.device, dtype=self.dtype)
            labels = lab.long()
        else:
            Y = self.loss.targets(self._as_tensor(yt, yname).T.contiguous(), p, name=yname)
            onehot = bool(((Y == 0) | (Y == 1)).all()) and bool((Y.sum(0) == 1).all())
            labels = Y.argmax(0) if onehot else None
        return Xs.contiguous(), Y, labels

    def _samples(self, X: Array, name: str) -> torch.Tensor:
        """Samples-first inputs as a tensor ``(m, n)``: features, or images of the network's input shape
        (flattened in (C, H, W) order, as the math lays them out)."""
        n, image = self.sizes[0], tuple(self.layers[0].in_shape)
        try:
            shape = tuple(np.shape(X)) if not torch.is_tensor(X) else tuple(X.shape)
        except ValueError as exc:  # a ragged nested list
            raise ShapeError(f"{name}: expected a numeric array of one shape, got {type(X).__name__} ({exc})") from None
        raw = not torch.is_tensor(X) and np.asarray(X).dtype.kind in "ui"
        if len(shape) > 2 and (shape[1:] != image or raw):
            want = f"(m, {n}) features" + (f" or (m, {', '.join(map(str, image))}) images" if len(image) == 3 else "")
            raise ShapeError(f"{name}: expected {want}, got {'raw integer ' if raw else ''}images of shape {shape}; "
                             "scale (and flatten) them first -- Dataset.arrays('train') does -- or pass the Dataset "
                             "itself to run()")
        Xs = self._as_tensor(X, name)
        if Xs.ndim > 2:
            Xs = Xs.reshape(Xs.shape[0], -1)
        check_ndim(Xs, name, 2, f"(m, {n}): samples x features")
        return Xs

    def _test_rule(self) -> str:
        return "feedforward"

    def _labels(self, state: TrainState, W: list, b: list, X0: torch.Tensor, rule: str) -> torch.Tensor:
        """Predicted classes ``(m,)`` of the columns of ``X0`` under ``rule`` (feed-forward here)."""
        return feed_forward(W, b, self.acts, X0, self.layers)[-1].argmax(0)

    @torch.no_grad()
    def _evaluate_t(self, state: TrainState, X0: torch.Tensor, Y: torch.Tensor, labels: torch.Tensor | None,
                    rule: str) -> tuple[float, float]:
        """Mean per-sample loss (feed-forward outputs) and accuracy under ``rule``, in chunks."""
        W, b = [w.detach() for w in state.W], [v.detach() for v in state.b]
        total, correct, m = 0.0, 0, X0.shape[1]
        cols = column_range(m, *world()) if is_sharded() else range(m)  # data-parallel: totals meet below
        with trusted_values():  # checked data; outputs that overflow show as an infinite loss in the row
            for j in range(cols.start, cols.stop, _EVAL_CHUNK):
                k = min(j + _EVAL_CHUNK, cols.stop)
                Xc, Yc = X0[:, j:k], Y[:, j:k]
                out = feed_forward(W, b, self.acts, Xc, self.layers)[-1]
                total += float(self.loss.value(Yc, out))
                if labels is not None:
                    pred = out.argmax(0) if rule == "feedforward" else self._labels(state, W, b, Xc, rule)
                    correct += int((pred == labels[j:k]).sum())
        if is_sharded():
            total, correct = all_sum(torch.tensor([total, correct], dtype=torch.float64, device=X0.device)).tolist()
        return total / max(m, 1), (correct / max(m, 1) if labels is not None else math.nan)

    def evaluate(self, state: TrainState, X: Array, y: Array) -> tuple[float, float]:
        """``(mean per-sample loss, accuracy)`` of the state's network on samples-first ``X`` ``(m, n)``."""
        Xs, Y, labels = self._prepare(X, y, "X", "y")
        if Xs.shape[0] == 0:
            raise ShapeError("X: expected at least one sample to evaluate on, got 0 rows")
        return self._evaluate_t(state, Xs.T, Y, labels, self._test_rule())

    @torch.no_grad()
    def predict(self, state: TrainState, X: Array, *, rule: str | None = None) -> np.ndarray:
        """Class labels ``(m,)`` for samples-first ``X`` ``(m, n)`` (feed-forward, or the method's ``rule``)."""
        rule = self._test_rule() if rule is None else check_choice(rule, "rule", self._rules())
        Xs = self._samples(X, "X")
        check_finite(Xs, "X")
        if Xs.shape[1] != self.sizes[0]:
            raise ShapeError(f"X: expected shape (m, {self.sizes[0]}), got {tuple(Xs.shape)}")
        W, b = [w.detach() for w in state.W], [v.detach() for v in state.b]
        X0 = Xs.T.contiguous()
        out = [self._labels(state, W, b, X0[:, j:j + _EVAL_CHUNK], rule) for j in range(0, X0.shape[1], _EVAL_CHUNK)]
        return torch.cat(out).cpu().numpy() if out else np.zeros(0, dtype=np.int64)

    def _rules(self) -> tuple[str, ...]:
        return ("feedforward",)


def appendix_c_family(network: Any) -> str:
    """``"lenet5"`` for the paper's LeNet-5 (Appendix C lists its own values), else ``"dense"``."""
    from .layers import lenet5

    shape = tuple(network.layers[0].in_shape)
    if len(shape) == 3 and list(network.layers) == lenet5(shape, network.layers[-1].n_out):
        return "lenet5"
    return "dense"


def _label_array(y: Array, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise LabelError(f"{name}: expected integer class labels (m,) or numeric targets (m, p), got an array of "
                         f"dtype {arr.dtype}; map class names to 0..p-1 first")
    return arr


def _split_dataset(X: Any, y: Any, X_test: Any, y_test: Any) -> tuple:
    """A Dataset in place of ``X``: its train arrays, and its test arrays unless a test set was given."""
    if not hasattr(X, "arrays") or not hasattr(X, "train_x"):
        return X, y, X_test, y_test
    if y is not None:
        raise ShapeError("y: a Dataset carries its own labels; pass run(dataset) without y")
    Xtr, ytr = X.arrays("train")
    if X_test is None and y_test is None and len(X.test_y):
        X_test, y_test = X.arrays("test")
    return Xtr, ytr, X_test, y_test


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, **kw: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(enabled: bool, total: int, initial: int, desc: str) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, unit="batch", desc=desc, leave=False)
