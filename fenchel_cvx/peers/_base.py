r"""What every peer lifted model shares: full-batch state with auxiliary variables, checks, the history terms.

A peer model (Taylor et al. 2016, Lau et al. 2018) is a :class:`~fenchel_cvx.trainer.Trainer` like Fenchel BCD and
the backprop baselines, so it has their data pipeline, history rows, checkpoints and plots. It trains full batch
(one history row per iteration over the whole training set, as in the paper's Fig. 1) and carries its auxiliary
variables -- one ``(p_l, m)`` matrix per layer and kind, e.g. Taylor's ``a_l`` and ``z_l`` -- in
:attr:`PeerState.aux`, which checkpoints hold, so that a resumed run continues bitwise.

A subclass sets ``model`` (its ``--method``), ``state_class`` and implements

* ``_init_aux(state, X0, T) -> dict``: the auxiliary variables at the first iteration (usually the feed-forward
  pass of the initial weights);
* ``_iterate(state, X0, T) -> dict``: one iteration of its paper's algorithm, updating ``state.W``, ``state.b`` and
  ``state.aux`` in place; returns the entries of ``state.last``;
* ``objective_terms(state, X0, T) -> dict``: its own objective ``J`` (the augmented Lagrangian or penalized
  objective its paper minimizes) and the ``penalty`` part of it, on the whole training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ..activations import ReLU
from ..errors import CheckpointError, ChoiceError, ShardingError, SolverError
from ..losses import MSELoss
from ..settings import PeerSettings, layer_values
from ..shards import is_sharded
from ..trainer import Trainer, TrainState, feed_forward

__all__ = ["PeerState", "PeerTrainer"]


@dataclass
class PeerState(TrainState):
    """A peer model's state: :class:`~fenchel_cvx.trainer.TrainState` plus its auxiliary variables.

    Attributes
    ----------
    aux : dict of str to list of Tensor
        The model's auxiliary variables by name, each a list over layers of ``(p_l, m)`` matrices of the whole
        training set (paper layout); empty before the first iteration.
    """

    KIND: ClassVar[str] = "fenchel_peer_state"
    LABEL: ClassVar[str] = "peer lifted model"
    _EXTRA_KEYS: ClassVar[tuple[str, ...]] = ("aux",)

    aux: dict = field(default_factory=dict)

    def _extra_state(self) -> dict:
        return {"aux": {k: [t.detach().to("cpu").clone() for t in ts] for k, ts in self.aux.items()}}

    def _load_extra(self, d: dict, move: Any, device: Any) -> None:
        aux = d["aux"]
        if not isinstance(aux, dict) or any(not isinstance(v, list) for v in aux.values()):
            raise CheckpointError(f"state.aux: expected a dict of tensor lists, got {type(aux).__name__}")
        for k, ts in aux.items():
            for l, t in enumerate(ts):
                if not (torch.is_tensor(t) and t.is_floating_point()):
                    raise CheckpointError(f"state.aux[{k!r}][{l}]: expected a floating-point tensor, got "
                                          f"{t.dtype if torch.is_tensor(t) else type(t).__name__}")
        self.aux = {k: [move(t) for t in ts] for k, ts in aux.items()}


class PeerTrainer(Trainer):
    """Base of the peer lifted models: full batch, MSE, ReLU, dense layers, one process.

    Parameters
    ----------
    network : LiftedNetwork
        Architecture (dense layers), ReLU activations, MSE loss and initial weights (not modified).
    settings : PeerSettings, optional
        ``settings.model`` must be this class's ``model``.
    """

    settings_class = PeerSettings
    state_class = PeerState
    model: ClassVar[str] = ""

    def __init__(self, network: Any, settings: PeerSettings | None = None):
        super().__init__(network, PeerSettings(model=self.model, batch_size=None) if settings is None else settings)
        s = self.settings
        if s.model != self.model:
            raise ChoiceError(f"settings.model: {type(self).__name__} trains the {self.model!r} model, got "
                              f"{s.model!r}")
        if not isinstance(self.loss, MSELoss):
            raise ChoiceError(f"loss: the {self.model} model is stated for the squared loss (Fig. 1 of the paper); "
                              f"expected 'mse', got {self.loss.name!r}")
        bad = [a.name for a in self.acts if type(a) is not ReLU]
        if bad:
            raise ChoiceError(f"activation: the {self.model} model's closed-form updates are written for ReLU; "
                              f"expected 'relu', got {bad[0]!r}")
        conv = [la for la in self.layers if not la.is_plain_dense]
        if conv:
            raise ChoiceError(f"arch: the {self.model} model is implemented for fully connected networks; got the "
                              f"layer {conv[0]!r}")
        # no ridge term unless asked: the peers' own code has none
        self.rho = [0.0] * (self.L + 1) if s.rho is None else layer_values(s.rho, self.L + 1, "rho", batched=False)
        self._set_cache: tuple | None = None  # (X0, its version, key, value): see _of_training_set

    @property
    def method(self) -> str:
        """The model's ``--method`` (the ``method`` column of the history rows)."""
        return self.model

    def _aux_rows(self) -> dict[str, list[int]]:
        """The model's auxiliary variables: name -> the row count of each matrix (each has ``m`` columns)."""
        raise NotImplementedError

    def _check_state(self, state: PeerState, m: int) -> None:
        if not state.aux:
            return
        want = self._aux_rows()
        if set(state.aux) != set(want):
            raise CheckpointError(f"state.aux: expected the {self.model} model's variables {sorted(want)}, got "
                                  f"{sorted(state.aux)}; was the state saved by another model?")
        for name, ts in state.aux.items():
            if len(ts) != len(want[name]):
                raise CheckpointError(f"state.aux[{name!r}]: expected {len(want[name])} matrices (architecture "
                                      f"{self.arch}), got {len(ts)}")
            for l, (t, rows) in enumerate(zip(ts, want[name], strict=True)):
                if t.shape[-1] != m:
                    raise CheckpointError(f"state.aux[{name!r}][{l}]: the saved variables cover {t.shape[-1]} "
                                          f"samples, the training set has {m}; resume with the same data")
                if tuple(t.shape) != (rows, m):
                    raise CheckpointError(f"state.aux[{name!r}][{l}]: expected shape ({rows}, {m}) (architecture "
                                          f"{self.arch}), got {tuple(t.shape)}")

    def _adopt_extra(self, state: PeerState) -> None:
        state.aux = {k: [t.to(device=self.device, dtype=self.dtype) for t in ts] for k, ts in state.aux.items()}

    def _update(self, state: PeerState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        if is_sharded():
            raise ShardingError(f"the {self.model} model runs in one process (its updates are not written as local "
                                "sums); start it without torchrun")
        try:
            if not state.aux:
                state.aux = self._init_aux(state, X0, T)
            self._last_batch = (X0, T)
            return self._iterate(state, X0, T)
        except torch.linalg.LinAlgError as exc:  # a factorization of data too large or ill-scaled for the dtype
            raise SolverError(f"the {self.model} model's closed-form update failed ({exc}); the data or the "
                              "multipliers are too large for the working precision (scale the inputs, or use "
                              "float64)", status="linalg", subproblem=f"{self.model}_step") from None

    def _of_training_set(self, X0: torch.Tensor, make: Any, key: Any = None) -> Any:
        """``make()``, computed once per training set: a full-batch run hands the same ``X0`` tensor to every
        iteration, so what depends on it alone (a Gram matrix, its factorization) is kept until ``X0``, its
        contents or ``key`` change (``X0`` is held, so its memory cannot be reused by another tensor meanwhile)."""
        c = self._set_cache
        if c is None or c[0] is not X0 or c[1] != X0._version or c[2] != key:
            c = self._set_cache = (X0, X0._version, key, make())
        return c[3]

    def _init_aux(self, state: PeerState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        raise NotImplementedError

    def _iterate(self, state: PeerState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        raise NotImplementedError

    def objective_terms(self, state: PeerState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """The model's own objective ``J`` and its ``penalty`` part on ``(X0, T)`` (paper layout)."""
        raise NotImplementedError

    @torch.no_grad()
    def batch_terms(self, state: PeerState) -> dict:
        """``J`` and ``penalty`` of the model's own objective, and ``primal`` (eq. 3), on the training set."""
        if self._last_batch is None or not state.aux:
            return {"J": math.nan, "penalty": math.nan, "primal": math.nan}
        X0, T = self._last_batch
        terms = self.objective_terms(state, X0, T)
        out = feed_forward(state.W, state.b, self.acts, X0, self.layers)[-1]
        reg = sum(r * float((w * w).sum()) for r, w in zip(self.rho, state.W, strict=True))
        primal = float(self.loss.value(T, out)) + reg
        return {"J": float(terms["J"]), "penalty": float(terms["penalty"]), "primal": primal}
