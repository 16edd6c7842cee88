r"""Backprop baselines: the same network, loss and data pipeline as Fenchel BCD, trained by SGD or Adam.

What is shared with :class:`~fenchel_cvx.bcd.BCD`, so that curves overlay exactly: the training loop itself
(:class:`~fenchel_cvx.trainer.Trainer`: data order, batches, evaluation, history rows, timing, resume), the
architecture and initial weights (a :class:`~fenchel_cvx.network.LiftedNetwork`), its feed-forward rule, and the
loss in the paper's *sum* convention: the objective of one batch is the batched model (13) without its lifted
terms, ``f(W) = L(Y, W_L X_L + b_L) + sum_l rho_l ||W_l||_F^2`` (eq. 3 restricted to the batch). ``J``,
``penalty`` and ``max_residual`` are NaN in the history here.

**Learning-rate semantics** (``reduction``). The optimizer is handed ``f(W) / m_b`` (``reduction="mean"``, the
default) or ``f(W)`` itself (``"sum"``). Both have the same minimizers; they differ only in what a learning rate
means. ``"mean"`` is TensorFlow's ``reduce_mean`` convention, under which the paper's Appendix C learning rates
(Adam ``1e-3``, SGD ``1e-2``) were chosen. Adam is nearly invariant to the scale of the loss; SGD is not: under
``"sum"`` a rate of ``1e-2`` is a step ``m_b`` times larger. How the paper's SGD accuracy relates to these rates
is measured in ``docs/training.md``.

Layout: :meth:`Backprop.step` takes paper-layout tensors ``X0`` ``(n, m)`` and ``Y`` ``(p, m)`` (or labels
``(m,)``); :meth:`Backprop.run`, :meth:`Backprop.evaluate` and :meth:`Backprop.predict` take samples-first
data ``(m, n)`` and transpose once at the boundary.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ._checks import trusted_values
from .errors import CheckpointError, FenchelError, SolverError
from .settings import DEFAULT_LR, BackpropSettings
from .shards import all_sum_float, is_sharded, world
from .trainer import Trainer, TrainState, feed_forward

__all__ = ["DEFAULT_LR", "OPTIMIZERS", "Backprop", "BackpropSettings", "BackpropState"]

OPTIMIZERS = tuple(DEFAULT_LR)


def _cpu_tree(x: Any) -> Any:
    """Deep copy of an optimizer state dict with every tensor moved to the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu").clone()
    if isinstance(x, dict):
        return {k: _cpu_tree(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_cpu_tree(v) for v in x)
    return x


@dataclass
class BackpropState(TrainState):
    """A backprop run's state: :class:`~fenchel_cvx.trainer.TrainState` plus the optimizer's.

    Attributes
    ----------
    opt_state : dict or None
        The optimizer's ``state_dict()`` as last saved (moments, step counts); the live optimizer, when one
        exists, is ``optimizer`` and takes precedence.
    optimizer : torch.optim.Optimizer or None
        The live optimizer over ``W + b`` (not serialized as an object; see :meth:`state_dict`).

    ``W`` and ``b`` are leaf tensors with ``requires_grad``; ``last`` holds the batch objective ``f`` before the
    step (``objective``, sum convention).
    """

    KIND: ClassVar[str] = "fenchel_backprop_state"
    LABEL: ClassVar[str] = "backprop"
    _EXTRA_KEYS: ClassVar[tuple[str, ...]] = ("optimizer",)

    opt_state: dict | None = None
    optimizer: Any = field(default=None, repr=False, compare=False)

    def _extra_state(self) -> dict:
        return {"optimizer": _cpu_tree(self.optimizer.state_dict() if self.optimizer is not None
                                       else self.opt_state)}

    def _load_extra(self, d: dict, move: Any, device: Any) -> None:
        self.W = [torch.nn.Parameter(w.detach().clone()) for w in self.W]
        self.b = [torch.nn.Parameter(v.detach().clone()) for v in self.b]
        self.opt_state = d["optimizer"]  # the optimizer is rebuilt lazily from it by Backprop


class Backprop(Trainer):
    """Train a :class:`~fenchel_cvx.network.LiftedNetwork`'s architecture by backpropagation with SGD or Adam.

    The loop is :class:`~fenchel_cvx.trainer.Trainer`'s, shared with :class:`~fenchel_cvx.bcd.BCD`; this class
    supplies one optimizer step per batch.

    Parameters
    ----------
    network : LiftedNetwork
        Architecture, activations, loss and initial weights (it is not modified).
    settings : BackpropSettings, optional

    Examples
    --------
    >>> from fenchel_cvx import LiftedNetwork
    >>> from fenchel_cvx.baselines import Backprop, BackpropSettings
    >>> from fenchel_cvx.data import load_mnist_subset
    >>> adam = Backprop(LiftedNetwork([784, 300, 10], "relu", "ce", seed=0), BackpropSettings(epochs=1))
    >>> state = adam.run(load_mnist_subset(), progress=False)
    >>> round(state.history[-1]["test_acc"], 2) > 0.7
    True
    """

    settings_class = BackpropSettings
    state_class = BackpropState
    requires_grad = True

    def __init__(self, network: Any, settings: BackpropSettings | None = None):
        super().__init__(network, settings)
        self.lr = self.settings.learning_rate
        self._ddp_cache: tuple[list[int], torch.nn.Module] | None = None  # (parameter ids, DDP module)

    @property
    def method(self) -> str:
        """``"adam"`` or ``"sgd"`` (the ``method`` column of the history rows)."""
        return self.settings.optimizer

    def _adopt_extra(self, state: BackpropState) -> None:
        for i, p in enumerate(list(state.W) + list(state.b)):
            if not p.is_leaf or not p.requires_grad:
                raise FenchelError(f"state: parameter {i} is not a leaf tensor with requires_grad; build states "
                                   "with Backprop.init_state() or BackpropState.from_state_dict()")

    def _optimizer(self, state: BackpropState) -> torch.optim.Optimizer:
        """The live optimizer over ``state.W + state.b`` (built, and loaded from ``opt_state``, on first use)."""
        params = list(state.W) + list(state.b)
        opt = state.optimizer
        if opt is not None and [p for g in opt.param_groups for p in g["params"]] == params:
            return opt
        self._adopt_extra(state)
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
                # a copy: the optimizer adopts the tensors it is given and updates them in place, which would
                # change the caller's (e.g. a loaded checkpoint's) dict and make a second resume from it differ
                opt.load_state_dict(copy.deepcopy(state.opt_state))
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
        loss, reg = self._parts(W, b, X0, T)
        return loss + reg

    def _parts(self, W: Sequence[torch.Tensor], b: Sequence[torch.Tensor], X0: torch.Tensor,
               T: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        """The loss (a sum over the samples of ``X0``) and the weight penalty of :meth:`objective`."""
        loss = self.loss.value(T, feed_forward(list(W), list(b), self.acts, X0, self.layers)[-1])
        reg: torch.Tensor | float = 0.0
        for l, r in enumerate(self.rho):
            if r > 0:
                reg = reg + r * (W[l] * W[l]).sum()
        return loss, reg

    def _ready(self, state: BackpropState) -> None:
        # building the first optimizer imports part of torch (seconds), which is not training time
        self._optimizer(state)

    def _update(self, state: BackpropState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """One optimizer step on the batch objective (divided by the batch size for ``reduction="mean"``)."""
        opt = self._optimizer(state)
        for group in opt.param_groups:  # set every step: a resumed optimizer's saved lr is that of its epoch
            group["lr"] = self.lr * self.settings.step_factor(state.epoch)
        opt.zero_grad(set_to_none=True)
        mean = self.settings.reduction == "mean"
        # the batch was checked; a non-finite objective is the steps' doing, reported below as divergence
        with trusted_values():
            if is_sharded():
                # DistributedDataParallel averages the processes' gradients: each process differentiates
                # size * (its loss) + penalty, so the average is the gradient of the whole batch's objective
                m = all_sum_float(X0.shape[1])
                size = world()[1]
                obj, loss, reg = self._ddp(state)(X0, T, float(size))
                (obj / m if mean else obj).backward()
                f = all_sum_float(loss.detach(), X0) + float(reg)
            else:
                f_t = self.objective(state.W, state.b, X0, T)
                (f_t / X0.shape[1] if mean else f_t).backward()
                f = float(f_t.detach())
        if not math.isfinite(f):
            raise SolverError(f"objective: expected a finite batch objective, got {f} from finite data: the "
                              f"{self.settings.optimizer} steps diverged (a smaller lr shortens them)",
                              status="non-finite", subproblem="backprop_step", solver=self.settings.optimizer)
        opt.step()
        self._last_batch = (X0, T)
        return {"objective": f}

    def _ddp(self, state: BackpropState) -> torch.nn.Module:
        """``DistributedDataParallel`` around the batch objective over ``state``'s parameters (built once per
        parameter set)."""
        params = list(state.W) + list(state.b)
        if self._ddp_cache is not None and self._ddp_cache[0] == [id(p) for p in params]:
            return self._ddp_cache[1]
        dev = self.device
        gpu = (torch.cuda.current_device() if dev.index is None else dev.index) if dev.type == "cuda" else None
        ddp = torch.nn.parallel.DistributedDataParallel(_Objective(self, state.W, state.b),
                                                        device_ids=None if gpu is None else [gpu])
        self._ddp_cache = ([id(p) for p in params], ddp)
        return ddp

    @torch.no_grad()
    def batch_terms(self, state: BackpropState) -> dict:
        """``primal`` (eq. 3 on the last step's batch, after the step); ``J`` and ``penalty`` are NaN here."""
        if self._last_batch is None:
            return {"J": math.nan, "penalty": math.nan, "primal": math.nan}
        # a step that overflowed shows here, at the next history row, at the latest (the next batch's objective
        # shows it first); checked per row, not per step, to keep the baseline's step as lean as torch's own
        if not bool(torch.stack([torch.isfinite(w).all() for w in [*state.W, *state.b]]).all()):
            raise SolverError(f"W: expected finite weights after the {self.settings.optimizer} steps, got NaN/inf "
                              "entries from finite data: the steps diverged (a smaller lr shortens them)",
                              status="non-finite", subproblem="backprop_step", solver=self.settings.optimizer)
        with trusted_values():  # the batch was checked; the weights may have grown, which the row then shows
            loss, reg = self._parts(state.W, state.b, *self._last_batch)
        return {"J": math.nan, "penalty": math.nan, "primal": all_sum_float(loss, loss) + float(reg)}


class _Objective(torch.nn.Module):
    """The batch objective as a module over a state's parameters (the same tensor objects), for
    ``DistributedDataParallel``: ``forward(X0, T, w)`` returns ``(w * loss + penalty, loss, penalty)``."""

    def __init__(self, trainer: Backprop, W: Sequence[torch.Tensor], b: Sequence[torch.Tensor]):
        super().__init__()
        self._parts = trainer._parts
        self.W, self.b = torch.nn.ParameterList(W), torch.nn.ParameterList(b)

    def forward(self, X0: torch.Tensor, T: torch.Tensor, w: float) -> tuple:
        loss, reg = self._parts(list(self.W), list(self.b), X0, T)
        return w * loss + reg, loss, reg
