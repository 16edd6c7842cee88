r"""Output losses, summed over data points as in the paper (Appendix C's hyperparameters assume sums).

Both losses split the same way, which is what the DPP CVXPY models use:

.. math::  \mathcal L(Y, \hat Y) = h(\hat Y) - c\,\langle Y, \hat Y\rangle + \kappa(Y)

============  ==============================  =====  ===============
loss          h(Yhat)                         c      kappa(Y)
============  ==============================  =====  ===============
MSE           ||Yhat||_F^2                    2      ||Y||_F^2
cross-entropy sum_j logsumexp(Yhat[:, j])     1      0
============  ==============================  =====  ===============

so ``MSELoss = ||Y - Yhat||_F^2`` and ``CrossEntropyLoss = -Tr(Y^T log softmax(Yhat))`` (softmax over the
rows of each column) when the columns of ``Y`` are probability vectors.

Layout: inside the math, ``Y`` and ``Yhat`` are ``(p, m)``: one column per data point. Labels may also be
integers of shape ``(m,)``; :meth:`Loss.targets` turns them into one-hot ``(p, m)`` columns.
"""

from __future__ import annotations

from typing import Any

import cvxpy as cp
import numpy as np
import scipy.special as sps
import torch

from ._checks import as_array, check_finite, check_int, is_torch, values_trusted
from .errors import ChoiceError, DomainError, LabelError, ShapeError

__all__ = ["Loss", "MSELoss", "CrossEntropyLoss", "LOSSES", "get_loss", "one_hot"]

Array = Any


def one_hot(labels: Array, p: int, name: str = "Y") -> Array:
    """Integer labels ``(m,)`` in ``0..p-1`` -> one-hot columns ``(p, m)`` (numpy float64 or torch, same device);
    errors call the labels ``name``.

    Raises
    ------
    LabelError
        Non-integer, non-finite, complex or boolean labels, or labels outside ``0..p-1``.
    ShapeError
        Labels that are not one-dimensional.
    ValueRangeError
        ``p`` not a positive integer.
    """
    p = check_int(p, "p", 1, hint="the number of outputs")
    if is_torch(labels):
        if labels.is_complex() or labels.is_meta or labels.dtype == torch.bool:
            raise LabelError(f"{name}: integer labels expected, got a tensor of dtype {labels.dtype} on "
                             f"{labels.device}")
        vals = labels
    else:
        vals = np.asarray(labels)
        if vals.dtype.kind not in "iuf":
            raise LabelError(f"{name}: integer labels expected, got dtype {vals.dtype}")
    if vals.ndim != 1:
        raise ShapeError(f"{name}: expected labels of shape (m,), got shape {tuple(vals.shape)}")
    lib = torch if is_torch(vals) else np
    floating = vals.is_floating_point() if is_torch(vals) else vals.dtype.kind == "f"
    if floating and not bool(lib.isfinite(vals).all()):
        raise LabelError(f"{name}: integer labels expected, got NaN/inf")
    if floating and not bool((vals == lib.round(vals)).all()):
        raise LabelError(f"{name}: integer labels expected, got non-integer floats")
    if len(vals):  # the range of the values as given (a huge float does not fit int64)
        lo, hi = vals.min().item(), vals.max().item()
        if lo < 0 or hi >= p:
            raise LabelError(f"{name}: labels must lie in 0..{p - 1} (the network has {p} outputs), "
                             f"got labels in {lo:g}..{hi:g}")
    lab = vals.long() if is_torch(vals) else vals.astype(np.int64)
    if is_torch(lab):
        out = torch.zeros(p, lab.shape[0], dtype=torch.get_default_dtype(), device=lab.device)
        out[lab, torch.arange(lab.shape[0], device=lab.device)] = 1.0
        return out
    out = np.zeros((p, lab.shape[0]))
    out[lab, np.arange(lab.shape[0])] = 1.0
    return out


class Loss:
    """A loss ``L(Y, Yhat) = h(Yhat) - c <Y, Yhat> + kappa(Y)`` with numpy, torch and CVXPY forms."""

    name: str = ""
    linear_weight: float = 1.0  # the c above

    def targets(self, Y: Array, p: int, like: Array | None = None, name: str = "Y") -> Array:
        """Validate ``Y`` and return it as ``(p, m)`` target columns (errors call it ``name``).

        Parameters
        ----------
        Y : array, shape (p, m) or (m,)
            Targets as columns, or integer class labels.
        p : int
            Number of outputs.
        like : array, optional
            Cast the result to this array's type, dtype and device.
        name : str
            What error messages call ``Y`` (the caller's argument name).
        """
        if not is_torch(Y):
            Y = np.asarray(Y)
        if Y.ndim == 1:
            T = one_hot(Y, p, name)
        elif Y.ndim == 2:
            if Y.shape[0] != p:
                raise ShapeError(f"{name}: expected shape ({p}, m) (outputs x samples) or integer labels (m,), "
                                 f"got {tuple(Y.shape)}")
            T = Y if is_torch(Y) else np.asarray(Y, dtype=float)
            check_finite(T, name)
        else:
            raise ShapeError(f"{name}: expected a (p, m) target matrix or (m,) labels, got shape {tuple(Y.shape)}")
        if not values_trusted():
            self._check_targets(T, name)
        if like is not None and is_torch(like):
            T = torch.as_tensor(T, dtype=like.dtype, device=like.device)
        elif like is not None and is_torch(T):
            T = T.detach().to("cpu", torch.float64).numpy()
        return T

    def _check_targets(self, T: Array, name: str) -> None:
        pass

    def _scores_and_targets(self, Y: Array, Yhat: Array) -> tuple[Array, Array]:
        """Validate ``Yhat`` as a finite real ``(p, m)`` matrix (integer tensors computed in float) and return it
        with the matching ``(p, m)`` targets."""
        if is_torch(Yhat):
            if Yhat.is_complex() or Yhat.is_meta:
                raise DomainError(f"Yhat: expected real scores holding data, got a tensor of dtype {Yhat.dtype} on "
                                  f"{Yhat.device}")
            if not Yhat.is_floating_point():
                Yhat = Yhat.to(torch.get_default_dtype())
        else:
            Yhat = as_array(Yhat, "Yhat")
        if Yhat.ndim != 2:
            raise ShapeError(f"Yhat: expected a (p, m) matrix (outputs x samples), got shape {tuple(Yhat.shape)}")
        T = self.targets(Y, Yhat.shape[0], like=Yhat)
        if T.shape != Yhat.shape:
            raise ShapeError(f"Yhat: expected shape {tuple(T.shape)} to match Y, got {tuple(Yhat.shape)}")
        check_finite(Yhat, "Yhat")
        return T, Yhat

    # -- numeric ----------------------------------------------------------------------------------------------
    def h(self, Yhat: Array) -> float | Array:
        raise NotImplementedError

    def kappa(self, Y: Array) -> float | Array:
        raise NotImplementedError

    def value(self, Y: Array, Yhat: Array) -> float | Array:
        """L(Y, Yhat) summed over data points (a Python float for numpy, a 0-d tensor for torch).

        Parameters
        ----------
        Y : array, shape (p, m) or (m,)
            Targets or integer labels.
        Yhat : array, shape (p, m)
            Network outputs (pre-softmax scores for cross-entropy).
        """
        T, Yhat = self._scores_and_targets(Y, Yhat)
        inner = (T * Yhat).sum()
        out = self.h(Yhat) - self.linear_weight * inner + self.kappa(T)
        return out if is_torch(Yhat) else float(out)

    def per_sample(self, Y: Array, Yhat: Array) -> Array:
        """Loss of each data point, shape ``(m,)``."""
        raise NotImplementedError

    def grad(self, Y: Array, Yhat: Array) -> Array:
        """dL/dYhat, shape ``(p, m)``."""
        raise NotImplementedError

    # -- CVXPY --------------------------------------------------------------------------------------------------
    def cvx_h(self, Yhat: cp.Expression) -> cp.Expression:
        """h(Yhat) as a convex CVXPY expression of an affine ``Yhat``."""
        raise NotImplementedError

    def cvx(self, Y: Array, Yhat: cp.Expression) -> cp.Expression:
        """L(Y, Yhat) as a convex CVXPY expression, ``Y`` numeric ``(p, m)`` or labels ``(m,)``."""
        if len(Yhat.shape) != 2:
            raise ShapeError(f"Yhat: expected a (p, m) CVXPY expression, got shape {tuple(Yhat.shape)}")
        T = self.targets(np.asarray(Y), Yhat.shape[0])
        if T.shape != Yhat.shape:
            raise ShapeError(f"Yhat: expected shape {tuple(T.shape)} to match Y, got {tuple(Yhat.shape)}")
        return self.cvx_h(Yhat) - self.linear_weight * cp.sum(cp.multiply(T, Yhat)) + float(self.kappa(T))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self).__name__)


class MSELoss(Loss):
    """Squared error ``||Y - Yhat||_F^2`` summed over data points (no 1/2, no mean)."""

    name = "mse"
    linear_weight = 2.0

    def h(self, Yhat):
        return (Yhat * Yhat).sum()

    def kappa(self, Y):
        return (Y * Y).sum()

    def value(self, Y, Yhat):
        # The split form ||Yhat||^2 - 2<Y, Yhat> + ||Y||^2 cancels catastrophically near a fit (it can even go
        # negative); the direct residual is exact to round-off. The CVXPY form keeps the split (DPP needs it).
        T, Yhat = self._scores_and_targets(Y, Yhat)
        out = ((T - Yhat) ** 2).sum()
        return out if is_torch(Yhat) else float(out)

    def per_sample(self, Y, Yhat):
        T, Yhat = self._scores_and_targets(Y, Yhat)
        return ((T - Yhat) ** 2).sum(0)

    def grad(self, Y, Yhat):
        T, Yhat = self._scores_and_targets(Y, Yhat)
        return 2.0 * (Yhat - T)

    def cvx_h(self, Yhat):
        return cp.sum_squares(Yhat)


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy ``-Tr(Y^T log softmax(Yhat))`` summed over data points.

    The columns of ``Y`` must be probability vectors (one-hot labels are the usual case).
    """

    name = "ce"
    linear_weight = 1.0

    def _check_targets(self, T, name):
        neg = bool((T < 0).any())
        sums = T.sum(0)
        if is_torch(T):
            off = float((sums - 1.0).abs().max()) if T.numel() else 0.0
        else:
            off = float(np.max(np.abs(sums - 1.0), initial=0.0))
        # float32 probability columns (a softmax) sum to 1 only within ~1e-7.
        eps = torch.finfo(T.dtype).eps if is_torch(T) and T.is_floating_point() else np.finfo(float).eps
        if neg or off > max(1e-9, 10 * eps * T.shape[0]):
            raise LabelError(f"{name}: cross-entropy needs one-hot or probability columns (entries >= 0, each column "
                             f"summing to 1), got a column sum off by {off:.3g}" + (" and negative entries" if neg
                                                                                   else ""))

    def h(self, Yhat):
        if is_torch(Yhat):
            return torch.logsumexp(Yhat, dim=0).sum()
        return float(np.sum(sps.logsumexp(Yhat, axis=0)))

    def kappa(self, Y):
        return 0.0

    def per_sample(self, Y, Yhat):
        T, Yhat = self._scores_and_targets(Y, Yhat)
        lse = torch.logsumexp(Yhat, dim=0) if is_torch(Yhat) else sps.logsumexp(Yhat, axis=0)
        return lse - (T * Yhat).sum(0)

    def grad(self, Y, Yhat):
        T, Yhat = self._scores_and_targets(Y, Yhat)
        S = torch.softmax(Yhat, dim=0) if is_torch(Yhat) else sps.softmax(Yhat, axis=0)
        return S - T

    def cvx_h(self, Yhat):
        return cp.sum(cp.log_sum_exp(Yhat, axis=0))


LOSSES = {"mse": MSELoss, "ce": CrossEntropyLoss}


def get_loss(loss: str | Loss) -> Loss:
    """Return a :class:`Loss` from ``"mse"`` / ``"ce"`` or pass an instance through."""
    if isinstance(loss, Loss):
        return loss
    aliases = {"cross_entropy": "ce", "crossentropy": "ce"}
    key = aliases.get(loss, loss) if isinstance(loss, str) else None
    if key not in LOSSES:
        raise ChoiceError(f"loss: expected one of {sorted(LOSSES)} or a Loss instance, got {loss!r}")
    return LOSSES[key]()
