r"""The lifted network: weights, feed-forward, the Lagrangian (7) and the primal objective (3).

A network with ``L`` hidden layers has sizes ``[n, p_1, ..., p_L, p]``, weights ``W_l`` of shape
``(p_{l+1}, p_l)`` and biases ``b_l`` of shape ``(p_{l+1},)`` for ``l = 0..L``, and one activation
``phi_l`` per hidden layer. The feed-forward recursion (eq. 1) is

.. math::  X_{l+1} = \phi_l(W_l X_l + b_l 1^T), \quad l = 0..L-1, \qquad \hat Y = W_L X_L + b_L 1^T.

The Lagrangian (eq. 7) of the lifted model, with ``pi_l(W_l) = ||W_l||_F^2``, is

.. math::  J(W, X) = \mathcal L(Y, W_L X_L + b_L 1^T) + \sum_{l=0}^{L} \rho_l \|W_l\|_F^2
           + \sum_{l=0}^{L-1} \lambda_l B_l(X_{l+1}, W_l X_l + b_l 1^T).

Biases are explicit instead of the paper's ones-row trick (a column appended to ``W_l``, a row of ones to
``X_l``), so ``rho`` penalizes ``W_l`` only, never ``b_l``.

Layout convention: inside the math (every method here except the samples-first user API) a data matrix is
``(features, samples)`` as in the paper. :meth:`LiftedNetwork.forward`, :meth:`~LiftedNetwork.predict` and
:meth:`~LiftedNetwork.accuracy` take samples-first arrays ``(m, n)`` as PyTorch and scikit-learn do, and
transpose once at the boundary.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import as_array, check_finite, check_ndim, check_shape, is_torch, per_layer
from .activations import ACTIVATIONS, Activation, LeakyReLU, ReLU, Sigmoid, Tanh, get_activation
from .errors import CheckpointError, DomainError, FenchelError, LabelError, ShapeError, ValueRangeError
from .losses import LOSSES, Loss, get_loss

__all__ = ["LiftedNetwork"]

Array = Any  # numpy.ndarray or torch.Tensor

_FORMAT = "fenchel_cvx.LiftedNetwork"
_FORMAT_VERSION = 1

# Our activations and the torch modules that compute the same phi.
_TO_TORCH = {
    ReLU: lambda act: nn.ReLU(),
    LeakyReLU: lambda act: nn.LeakyReLU(negative_slope=act.alpha),
    Sigmoid: lambda act: nn.Sigmoid(),
    Tanh: lambda act: nn.Tanh(),
}
_FROM_TORCH = {
    nn.ReLU: lambda mod: ReLU(),
    nn.LeakyReLU: lambda mod: LeakyReLU(mod.negative_slope),
    nn.Sigmoid: lambda mod: Sigmoid(),
    nn.Tanh: lambda mod: Tanh(),
}


def _to_numpy(x: Array, name: str = "array") -> np.ndarray:
    """float64 numpy copy of a numpy array, torch tensor or nested list."""
    if is_torch(x):
        return x.detach().to("cpu", torch.float64).numpy().copy()
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__} ({exc})") from None


def _check_holds_data(x: Array, name: str) -> None:
    """A torch tensor on the ``meta`` device (shapes only) or of a complex dtype is not data we can use."""
    if is_torch(x) and (x.is_meta or x.is_complex()):
        raise DomainError(f"{name}: expected a real tensor that holds data (on 'cpu' or 'cuda'), got dtype {x.dtype} "
                          f"on device {x.device}")


def _like(x: Array, ref: Array, name: str) -> Array:
    """``x`` in the backend, dtype and device of ``ref`` (numpy float64 when ``ref`` is numpy)."""
    if is_torch(ref):
        return torch.as_tensor(x if is_torch(x) else as_array(x, name), dtype=ref.dtype, device=ref.device)
    return _to_numpy(x, name) if is_torch(x) else as_array(x, name)


def _activation_spec(act: Activation, where: str) -> dict:
    if ACTIVATIONS.get(act.name) is not type(act):
        raise FenchelError(f"{where}: only the registered activations {sorted(ACTIVATIONS)} can be saved, got "
                           f"{act!r}; register the class in fenchel_cvx.activations.ACTIVATIONS first")
    return {"name": act.name, **act.__dict__}


class LiftedNetwork:
    r"""A fully connected network seen as the lifted model of eqs. (3) and (7).

    Parameters
    ----------
    sizes : sequence of int, length L + 2
        ``[n, p_1, ..., p_L, p]``: input features, hidden widths, outputs. ``L = len(sizes) - 2 >= 0``.
    activations : str, Activation, or sequence of L of them
        One activation for every hidden layer (a single one is used for all): ``"relu"``, ``"leaky_relu"``,
        ``"sigmoid"``, ``"tanh"`` or an :class:`~fenchel_cvx.activations.Activation` instance.
    loss : str or Loss, default "mse"
        ``"mse"`` (``||Y - Yhat||_F^2``) or ``"ce"`` (softmax cross-entropy), summed over samples.
    seed : int or None
        Seed of the numpy Generator used for the Xavier (Glorot) uniform initialization
        ``W_l ~ U(-a, a)``, ``a = sqrt(6 / (p_l + p_{l+1}))``; biases start at zero.

    Attributes
    ----------
    W : list of L + 1 ndarray, shape (p_{l+1}, p_l), float64
    b : list of L + 1 ndarray, shape (p_{l+1},), float64
        Explicit biases; they replace the paper's ones-row trick and are not penalized by ``rho``.
    acts : list of L Activation
        ``acts[l]`` produces ``X_{l+1} = phi_l(W_l X_l + b_l)``; ``X_{l+1}`` must lie in its domain.
    loss : Loss
    sizes : list of int
    L : int
        Number of hidden layers.

    Notes
    -----
    Layout: the math methods (:meth:`feed_forward`, :meth:`init_X`, :meth:`pre_activation`,
    :meth:`lagrangian`, :meth:`primal_objective`) take ``(features, samples)`` matrices as in the paper;
    :meth:`forward`, :meth:`predict` and :meth:`accuracy` take samples-first ``(m, n)`` arrays. Numpy inputs
    compute in float64; torch inputs compute in the input's dtype on the input's device (the weights are cast).
    """

    def __init__(self, sizes: Sequence[int], activations: str | Activation | Sequence[str | Activation] = "relu",
                 loss: str | Loss = "mse", *, seed: int | None = None):
        self.sizes = self._check_sizes(sizes)
        self.L = len(self.sizes) - 2
        self.acts = self._check_activations(activations, self.L)
        self.loss = get_loss(loss)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueRangeError(f"seed: expected None or an integer >= 0, got {seed!r}")
        rng = np.random.default_rng(seed)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for fan_in, fan_out in zip(self.sizes[:-1], self.sizes[1:], strict=True):
            a = math.sqrt(6.0 / (fan_in + fan_out))
            self.W.append(rng.uniform(-a, a, size=(fan_out, fan_in)))
            self.b.append(np.zeros(fan_out))

    # -- construction helpers ---------------------------------------------------------------------------------
    @staticmethod
    def _check_sizes(sizes: Any) -> list[int]:
        try:
            seq = list(sizes)
        except TypeError:
            raise ShapeError(f"sizes: expected a sequence [n, p_1, ..., p_L, p], got {sizes!r}") from None
        if len(seq) < 2:
            raise ShapeError(f"sizes: expected at least [n, p] (input and output sizes), got {seq}")
        out = []
        for i, s in enumerate(seq):
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ShapeError(f"sizes[{i}]: expected a positive integer layer width, got {s!r}")
            out.append(int(s))
        return out

    @staticmethod
    def _check_activations(activations: Any, L: int) -> list[Activation]:
        if isinstance(activations, (str, Activation)):
            return [get_activation(activations) for _ in range(L)]
        try:
            seq = list(activations)
        except TypeError:
            raise FenchelError(f"activations: expected a name, an Activation or a list of {L}, "
                               f"got {activations!r}") from None
        if len(seq) != L:
            raise ShapeError(f"activations: expected one per hidden layer ({L}, from sizes), got {len(seq)}; "
                             "pass a single name to use it everywhere")
        return [get_activation(a) for a in seq]

    # -- sizes -----------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Input features ``p_0``."""
        return self.sizes[0]

    @property
    def p(self) -> int:
        """Outputs ``p_{L+1}``."""
        return self.sizes[-1]

    @property
    def n_params(self) -> int:
        """Number of weights and biases."""
        return sum(w.size + b.size for w, b in zip(self.W, self.b, strict=True))

    def __repr__(self) -> str:
        acts = ", ".join(repr(a) for a in self.acts)
        return f"LiftedNetwork(sizes={self.sizes}, activations=[{acts}], loss={self.loss!r})"

    # -- weights ---------------------------------------------------------------------------------------------
    def set_weights(self, W: Sequence[Array], b: Sequence[Array] | None = None) -> None:
        """Replace all weights (and biases) by float64 copies.

        Parameters
        ----------
        W : sequence of L + 1 arrays (numpy or torch), shape (p_{l+1}, p_l)
        b : sequence of L + 1 arrays, shape (p_{l+1},), or None
            ``None`` sets every bias to zero.

        Raises
        ------
        ShapeError
            Wrong count or shape; :class:`DomainError` for NaN/inf entries.
        """
        W = list(W)
        if len(W) != self.L + 1:
            raise ShapeError(f"W: expected {self.L + 1} weight matrices (sizes {self.sizes}), got {len(W)}")
        b = [None] * (self.L + 1) if b is None else list(b)
        if len(b) != self.L + 1:
            raise ShapeError(f"b: expected {self.L + 1} bias vectors (sizes {self.sizes}), got {len(b)}")
        new_W, new_b = [], []
        for l, (w, bias) in enumerate(zip(W, b, strict=True)):
            rows, cols = self.sizes[l + 1], self.sizes[l]
            w = _to_numpy(w, f"W[{l}]")
            check_shape(w, f"W[{l}]", (rows, cols), "(p_{l+1}, p_l)")
            check_finite(w, f"W[{l}]")
            bias = np.zeros(rows) if bias is None else _to_numpy(bias, f"b[{l}]")
            check_shape(bias, f"b[{l}]", (rows,), "(p_{l+1},)")
            check_finite(bias, f"b[{l}]")
            new_W.append(w)
            new_b.append(bias)
        self.W, self.b = new_W, new_b

    def copy(self) -> LiftedNetwork:
        """An independent copy (weights copied, activations and loss shared; they are stateless)."""
        net = LiftedNetwork.__new__(LiftedNetwork)
        net.sizes, net.L = list(self.sizes), self.L
        net.acts, net.loss = list(self.acts), self.loss
        net.W = [w.copy() for w in self.W]
        net.b = [b.copy() for b in self.b]
        return net

    def weights_as_torch(self, device: str | torch.device | None = None,
                         dtype: torch.dtype = torch.float64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The weights and biases as new torch tensors.

        Returns
        -------
        W : list of L + 1 Tensor, shape (p_{l+1}, p_l)
        b : list of L + 1 Tensor, shape (p_{l+1},)
        """
        W = [torch.tensor(w, dtype=dtype, device=device) for w in self.W]
        b = [torch.tensor(v, dtype=dtype, device=device) for v in self.b]
        return W, b

    def _weights_like(self, X: Array) -> tuple[list[Array], list[Array]]:
        if is_torch(X):
            return self.weights_as_torch(X.device, X.dtype)
        return self.W, self.b

    # -- input validation -----------------------------------------------------------------------------------
    def _check_X0(self, X0: Array, name: str = "X0") -> Array:
        _check_holds_data(X0, name)
        if is_torch(X0):
            X0 = X0 if X0.is_floating_point() else X0.to(torch.get_default_dtype())
        else:
            X0 = as_array(X0, name)
        check_ndim(X0, name, 2, "(n, m): features x samples")
        check_shape(X0, name, (self.n, None), "(n, m): features x samples")
        check_finite(X0, name)
        return X0

    def _check_Xvars(self, Xvars: Sequence[Array], m: int, like: Array) -> list[Array]:
        if is_torch(Xvars) or isinstance(Xvars, np.ndarray):
            raise ShapeError(f"Xvars: expected a list of {self.L} matrices [X_1, ..., X_L], got a single "
                             f"array of shape {tuple(Xvars.shape)}")
        Xs = list(Xvars)
        if len(Xs) != self.L:
            raise ShapeError(f"Xvars: expected {self.L} matrices [X_1, ..., X_L] (one per hidden layer), "
                             f"got {len(Xs)}")
        out = []
        for i, X in enumerate(Xs):
            name = f"Xvars[{i}] (X_{i + 1})"
            X = _like(X, like, name)
            check_shape(X, name, (self.sizes[i + 1], m), "(p_l, m): features x samples")
            check_finite(X, name)
            # B is +inf outside the domain; a silent inf Lagrangian hides which variable is wrong.
            self.acts[i].check_domain(X, name)
            out.append(X)
        return out

    def _targets(self, Y: Array, m: int, like: Array) -> Array:
        T = self.loss.targets(Y, self.p, like=like)
        if T.shape[1] != m:
            raise ShapeError(f"Y: expected {m} samples (columns, or labels) to match X0, got {T.shape[1]}")
        return T

    def _check_layer(self, l: Any) -> int:
        if isinstance(l, bool) or not isinstance(l, (int, np.integer)) or not 0 <= l <= self.L:
            raise ValueRangeError(f"l: expected a layer index in 0..{self.L}, got {l!r}")
        return int(l)

    # -- the math (paper layout) ----------------------------------------------------------------------------
    def pre_activation(self, l: int, X_l: Array) -> Array:
        """``U_l = W_l X_l + b_l 1^T``.

        Parameters
        ----------
        l : int, 0..L
        X_l : ndarray or Tensor, shape (p_l, m)
            Paper layout (features x samples).

        Returns
        -------
        ndarray or Tensor, shape (p_{l+1}, m)
        """
        l = self._check_layer(l)
        X_l = as_array(X_l, f"X_{l}")
        check_ndim(X_l, f"X_{l}", 2, "(p_l, m): features x samples")
        check_shape(X_l, f"X_{l}", (self.sizes[l], None), "(p_l, m): features x samples")
        if is_torch(X_l):
            W = torch.as_tensor(self.W[l], dtype=X_l.dtype, device=X_l.device)
            b = torch.as_tensor(self.b[l], dtype=X_l.dtype, device=X_l.device)
            return W @ X_l + b[:, None]
        return self.W[l] @ X_l + self.b[l][:, None]

    def feed_forward(self, X0: Array) -> list[Array]:
        """The recursion (1): ``[X_0, X_1, ..., X_L, Yhat]``.

        Parameters
        ----------
        X0 : ndarray or Tensor, shape (n, m)
            Paper layout (features x samples).

        Returns
        -------
        list of L + 2 arrays, shapes (p_l, m)
            Same backend as ``X0``; torch keeps the device and dtype.
        """
        X = self._check_X0(X0)
        Ws, bs = self._weights_like(X)
        out = [X]
        for l, act in enumerate(self.acts):
            X = act.forward(Ws[l] @ X + bs[l][:, None])
            out.append(X)
        out.append(Ws[self.L] @ X + bs[self.L][:, None])
        return out

    def init_X(self, X0: Array) -> list[Array]:
        """X-variables by feed-forward (Algorithm 1, line 3): ``[X_1, ..., X_L]``, each ``(p_l, m)``."""
        return self.feed_forward(X0)[1:-1]

    def lagrangian_terms(self, X0: Array, Y: Array, Xvars: Sequence[Array], lam: Any, rho: Any) -> dict:
        r"""The three parts of the Lagrangian (7) at the given X-variables.

        Parameters
        ----------
        X0 : ndarray or Tensor, shape (n, m)
            Inputs, paper layout (features x samples).
        Y : array, shape (p, m), or integer labels (m,)
        Xvars : list of L arrays, shape (p_l, m) for l = 1..L
            ``X_l`` must lie in the domain of ``acts[l-1]`` (e.g. ``>= 0`` after a ReLU).
        lam : float or sequence of L floats, >= 0
            Multipliers ``lam_l`` of ``B_l(X_{l+1}, W_l X_l + b_l)``; a scalar is used for every layer.
        rho : float or sequence of L + 1 floats, >= 0
            Weights of ``||W_l||_F^2`` (biases are not penalized).

        Returns
        -------
        dict
            ``loss`` = L(Y, W_L X_L + b_L), ``penalty`` = sum_l lam_l B_l(...), ``penalty_per_layer`` (list of
            L floats), ``regularization`` = sum_l rho_l ||W_l||_F^2, ``total`` (their sum); Python floats.

        Raises
        ------
        ShapeError, DomainError, ValueRangeError, LabelError
            Wrong shapes, non-finite inputs, ``X_l`` outside its activation's domain (where ``B = +inf``),
            negative ``lam`` or ``rho``, bad labels.
        """
        X0 = self._check_X0(X0)
        m = X0.shape[1]
        Xs = self._check_Xvars(Xvars, m, like=X0)
        lam = per_layer(lam, self.L, "lam", nonneg=True)
        rho = per_layer(rho, self.L + 1, "rho", nonneg=True)
        Ws, bs = self._weights_like(X0)
        chain = [X0] + Xs
        Yhat = Ws[self.L] @ chain[self.L] + bs[self.L][:, None]
        loss = float(self.loss.value(self._targets(Y, m, like=Yhat), Yhat))
        per = [lam[l] * act.B_sum(chain[l + 1], Ws[l] @ chain[l] + bs[l][:, None])
               for l, act in enumerate(self.acts)]
        reg = self.regularization(rho)
        penalty = float(sum(per))
        return {"loss": loss, "penalty": penalty, "penalty_per_layer": per, "regularization": reg,
                "total": loss + penalty + reg}

    def lagrangian(self, X0: Array, Y: Array, Xvars: Sequence[Array], lam: Any, rho: Any) -> float:
        r"""Eq. (7): ``L(Y, W_L X_L + b_L) + sum_l rho_l ||W_l||_F^2 + sum_{l<L} lam_l B_l(X_{l+1}, W_l X_l + b_l)``.

        Paper layout (features x samples); see :meth:`lagrangian_terms` for the parameters and errors.

        Returns
        -------
        float
        """
        return self.lagrangian_terms(X0, Y, Xvars, lam, rho)["total"]

    def regularization(self, rho: Any) -> float:
        """``sum_l rho_l ||W_l||_F^2`` (``rho`` scalar or L + 1 values, >= 0; biases not penalized)."""
        rho = per_layer(rho, self.L + 1, "rho", nonneg=True)
        return float(sum(r * float(np.sum(w * w)) for r, w in zip(rho, self.W, strict=True)))

    def primal_objective(self, X0: Array, Y: Array, rho: Any) -> float:
        r"""Eq. (3) at the feed-forward X: ``L(Y, Yhat) + sum_l rho_l ||W_l||_F^2``.

        Parameters
        ----------
        X0 : ndarray or Tensor, shape (n, m)
            Paper layout (features x samples).
        Y : array, shape (p, m), or integer labels (m,)
        rho : float or sequence of L + 1 floats, >= 0

        Returns
        -------
        float
        """
        rho = per_layer(rho, self.L + 1, "rho", nonneg=True)
        Yhat = self.feed_forward(X0)[-1]
        loss = float(self.loss.value(self._targets(Y, Yhat.shape[1], like=Yhat), Yhat))
        return loss + self.regularization(rho)

    # -- samples-first user API ------------------------------------------------------------------------------
    def forward(self, X: Array) -> Array:
        """Network outputs for samples-first inputs.

        Parameters
        ----------
        X : ndarray or Tensor, shape (m, n)
            One row per sample (samples first, as in PyTorch / scikit-learn).

        Returns
        -------
        ndarray or Tensor, shape (m, p)
            Pre-softmax scores for cross-entropy; same backend (and torch device/dtype) as ``X``.
        """
        X = as_array(X, "X")
        _check_holds_data(X, "X")
        check_ndim(X, "X", 2, "(m, n): samples x features; reshape a single sample with X.reshape(1, -1)")
        check_shape(X, "X", (None, self.n), "(m, n): samples x features")
        check_finite(X, "X")  # here, so that a bad entry is reported at the user's (sample, feature) index
        return self.feed_forward(X.T)[-1].T

    def predict(self, X: Array) -> Array:
        """Argmax class labels, shape ``(m,)`` (int64 numpy or long tensor), for samples-first ``X (m, n)``."""
        out = self.forward(X)
        return out.argmax(dim=1) if is_torch(out) else np.argmax(out, axis=1)

    def accuracy(self, X: Array, labels: Array) -> float:
        """Fraction of samples whose argmax output equals the label.

        Parameters
        ----------
        X : array, shape (m, n)
            Samples first.
        labels : array of int, shape (m,)
            Classes ``0..p-1``.

        Raises
        ------
        LabelError
            Labels that are not integers in ``0..p-1`` (a label the network cannot output would silently count
            as a miss).
        """
        pred = _to_numpy(self.predict(X)).astype(np.int64)
        lab = _to_numpy(labels, "labels") if is_torch(labels) else np.asarray(labels)
        if lab.dtype.kind not in "biuf":
            raise LabelError(f"labels: expected integer class labels 0..{self.p - 1}, got an array of dtype "
                             f"{lab.dtype}; map class names to 0..{self.p - 1} first")
        check_shape(lab, "labels", (pred.shape[0],), "(m,): one integer label per sample")
        if pred.shape[0] == 0:
            raise ShapeError("X: expected at least one sample to compute an accuracy, got 0")
        bad = (lab != np.round(lab)) | (lab < 0) | (lab > self.p - 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise LabelError(f"labels: expected integer classes 0..{self.p - 1} (the network has {self.p} outputs), "
                             f"got {lab[i].item()!r} at labels[{i}] ({int(bad.sum())} such labels)")
        return float(np.mean(pred == lab))

    # -- torch interop --------------------------------------------------------------------------------------
    def to_torch(self, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None) -> nn.Sequential:
        """``nn.Sequential(Linear, activation, ..., Linear)`` computing the same outputs (samples first).

        The cross-entropy softmax is not included: the module returns the scores, as :meth:`forward` does.

        Parameters
        ----------
        dtype : torch.dtype or {"float32", "float64"}
        device : str or torch.device, optional
        """
        if isinstance(dtype, str) and dtype in ("float32", "float64"):
            dtype = getattr(torch, dtype)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueRangeError(f"dtype: expected a floating torch dtype such as torch.float32, got {dtype!r}")
        layers: list[nn.Module] = []
        for l in range(self.L + 1):
            lin = nn.Linear(self.sizes[l], self.sizes[l + 1], bias=True, dtype=dtype, device=device)
            with torch.no_grad():
                lin.weight.copy_(torch.as_tensor(self.W[l]))
                lin.bias.copy_(torch.as_tensor(self.b[l]))
            layers.append(lin)
            if l < self.L:
                act = self.acts[l]
                make = _TO_TORCH.get(type(act))
                if make is None:
                    raise FenchelError(f"acts[{l}]: {act!r} has no torch module; supported: "
                                       f"{sorted(t.__name__ for t in _TO_TORCH)}")
                layers.append(make(act))
        return nn.Sequential(*layers)

    @classmethod
    def from_torch(cls, seq: nn.Sequential, loss: str | Loss = "mse") -> LiftedNetwork:
        """Read ``nn.Sequential(Linear, act, Linear, ..., Linear)`` (acts: ReLU, LeakyReLU, Sigmoid, Tanh).

        A Linear without bias gives a zero bias. Raises :class:`FenchelError` for any other layer or order,
        :class:`ShapeError` when consecutive Linear sizes do not chain.
        """
        if not isinstance(seq, nn.Sequential):
            raise FenchelError(f"seq: expected a torch.nn.Sequential, got {type(seq).__name__}")
        mods = list(seq)
        supported = "Linear, " + ", ".join(t.__name__ for t in _FROM_TORCH)
        W, b, acts, sizes = [], [], [], []
        for i, mod in enumerate(mods):
            want_linear = i % 2 == 0
            if isinstance(mod, nn.Linear):
                if not want_linear:
                    raise FenchelError(f"seq[{i}]: expected an activation between two Linear layers, got "
                                       f"{mod}; a lifted network alternates Linear and activation")
                if sizes and mod.in_features != sizes[-1]:
                    raise ShapeError(f"seq[{i}]: expected in_features {sizes[-1]} to match the previous "
                                     f"Linear, got {mod.in_features}")
                if not sizes:
                    sizes.append(mod.in_features)
                sizes.append(mod.out_features)
                W.append(_to_numpy(mod.weight))
                b.append(np.zeros(mod.out_features) if mod.bias is None else _to_numpy(mod.bias))
            elif type(mod) in _FROM_TORCH:
                if want_linear:
                    raise FenchelError(f"seq[{i}]: expected a Linear layer, got {type(mod).__name__}; a lifted "
                                       "network starts and ends with Linear and alternates with activations")
                acts.append(_FROM_TORCH[type(mod)](mod))
            else:
                raise FenchelError(f"seq[{i}]: unsupported layer {type(mod).__name__}; supported: {supported}")
        if not mods or not isinstance(mods[-1], nn.Linear):
            raise FenchelError("seq: expected the last layer to be Linear (the output layer W_L X_L + b_L), "
                               f"got {type(mods[-1]).__name__ if mods else 'an empty Sequential'}")
        net = cls(sizes, acts, loss)
        net.set_weights(W, b)
        return net

    # -- save / load ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the network to ``path`` exactly (an ``.npz``: arrays ``W_l``, ``b_l`` and a JSON ``meta``).

        No pickle is involved; the write is atomic (a temporary file renamed over ``path``).

        Returns
        -------
        pathlib.Path
        """
        path = Path(path)
        if LOSSES.get(self.loss.name) is not type(self.loss):
            raise FenchelError(f"loss: only the registered losses {sorted(LOSSES)} can be saved, got {self.loss!r}")
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "sizes": self.sizes,
                "activations": [_activation_spec(a, f"acts[{l}]") for l, a in enumerate(self.acts)],
                "loss": self.loss.name}
        arrays = {"meta": np.array(json.dumps(meta))}
        for l in range(self.L + 1):
            arrays[f"W_{l}"] = self.W[l]
            arrays[f"b_{l}"] = self.b[l]
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> LiftedNetwork:
        """Read a network written by :meth:`save` (``np.load(allow_pickle=False)``: the file cannot run code).

        Raises
        ------
        CheckpointError
            Missing, unreadable or malformed file; the message names the file.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"path: no network file at {str(path)!r}; check the path (save() writes it "
                                  "exactly where you ask)")
        try:
            with np.load(path, allow_pickle=False) as z:
                files = set(z.files)
                if "meta" not in files:
                    raise CheckpointError(f"{str(path)!r}: not a LiftedNetwork file (no 'meta' entry; found "
                                          f"{sorted(files)})")
                meta = json.loads(str(z["meta"]))
                if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                    raise CheckpointError(f"{str(path)!r}: not a LiftedNetwork file (meta format "
                                          f"{meta.get('format') if isinstance(meta, dict) else meta!r})")
                if meta.get("version") != _FORMAT_VERSION:
                    raise CheckpointError(f"{str(path)!r}: format version {meta.get('version')!r} is not "
                                          f"supported (expected {_FORMAT_VERSION})")
                n_layers = len(meta["sizes"]) - 1
                W = [np.asarray(z[f"W_{l}"]) for l in range(n_layers)]
                b = [np.asarray(z[f"b_{l}"]) for l in range(n_layers)]
            acts = [get_activation(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
                    for spec in meta["activations"]]
            net = cls(meta["sizes"], acts, meta["loss"])
            net.set_weights(W, b)
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, FenchelError) as exc:
            raise CheckpointError(f"{str(path)!r}: cannot read a LiftedNetwork from this file "
                                  f"({type(exc).__name__}: {exc}); it may be truncated or not written by "
                                  "LiftedNetwork.save") from exc
        return net
