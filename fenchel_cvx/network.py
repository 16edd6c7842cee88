r"""The lifted network: weights, feed-forward, the Lagrangian (7) and the primal objective (3).

A network is a sequence of ``L + 1`` layers (:class:`~fenchel_cvx.layers.Layer`), each the linear part
``U_l = A_l(X_l; W_l) + b_l`` of a lifted layer -- dense (``W_l X_l``), a convolution (``W_l * X_l``) or either one
after average pooling (``W_l * Pool(X_l)``, eq. 11) -- and one activation ``phi_l`` per hidden layer. The
feed-forward recursion (eq. 1) is

.. math::  X_{l+1} = \phi_l(A_l(X_l; W_l) + b_l), \quad l = 0..L-1, \qquad \hat Y = A_L(X_L; W_L) + b_L.

For a fully connected network ``A_l(X_l; W_l) = W_l X_l`` with ``W_l`` of shape ``(p_{l+1}, p_l)``; a convolution
has a kernel ``W_l`` of shape ``(C_out, C_in, k, k)`` and one bias per output channel. The Lagrangian (eq. 7) of the
lifted model, with ``pi_l(W_l) = ||W_l||_F^2`` (the kernel's Frobenius norm for a convolution), is

.. math::  J(W, X) = \mathcal L(Y, A_L(X_L; W_L) + b_L) + \sum_{l=0}^{L} \rho_l \|W_l\|_F^2
           + \sum_{l=0}^{L-1} \lambda_l B_l(X_{l+1}, A_l(X_l; W_l) + b_l).

Biases are explicit instead of the paper's ones-row trick (a column appended to ``W_l``, a row of ones to
``X_l``), so ``rho`` penalizes ``W_l`` only, never ``b_l``.

Layout convention: inside the math (every method here except the samples-first user API) a data matrix is
``(features, samples)`` as in the paper, an image flattened in ``(C, H, W)`` order into one column.
:meth:`LiftedNetwork.forward`, :meth:`~LiftedNetwork.predict` and :meth:`~LiftedNetwork.accuracy` take
samples-first arrays -- ``(m, n)`` rows, or ``(m, C, H, W)`` images for a network whose input is an image -- as
PyTorch and scikit-learn do, and transpose once at the boundary.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._checks import as_array, check_device, check_finite, check_ndim, check_shape, is_torch, per_layer
from .activations import ACTIVATIONS, Activation, LeakyReLU, ReLU, Sigmoid, Tanh, get_activation
from .errors import CheckpointError, ChoiceError, DomainError, FenchelError, LabelError, ShapeError, ValueRangeError
from .layers import Layer, build_layers, parse_arch
from .losses import LOSSES, Loss, get_loss
from .subproblems import check_layer_shape

__all__ = ["LiftedNetwork"]

Array = Any  # numpy.ndarray or torch.Tensor

_FORMAT = "fenchel_cvx.LiftedNetwork"
_FORMAT_VERSION = 2  # 2: the architecture spec is stored ("arch"); 1: layer sizes only (dense networks)
_READABLE_VERSIONS = (1, 2)

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
_SUPPORTED_MODULES = ("Linear, Conv2d (square kernel, zero padding, no dilation or groups), AvgPool2d (kernel == "
                      "stride), Flatten, a leading Unflatten, " + ", ".join(t.__name__ for t in _FROM_TORCH))


def _to_numpy(x: Array, name: str = "array") -> np.ndarray:
    """float64 numpy copy of a numpy array, torch tensor or nested list."""
    if is_torch(x):
        _check_holds_data(x, name)
        return x.detach().to("cpu", torch.float64).numpy().copy()
    if np.iscomplexobj(x):  # float() would drop the imaginary part with only a warning
        raise DomainError(f"{name}: expected real numbers, got a complex array")
    try:
        return np.array(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DomainError(f"{name}: expected a numeric array, got {type(x).__name__} ({exc})") from None


def _check_holds_data(x: Array, name: str) -> None:
    """A torch tensor on the ``meta`` device (shapes only) or of a complex dtype is not data we can use."""
    if is_torch(x) and (x.is_meta or x.is_complex()):
        raise DomainError(f"{name}: expected a real tensor that holds data (on 'cpu' or 'cuda'), got dtype {x.dtype} "
                          f"on device {x.device}")


def _weights_of(mod: nn.Module, attr: str, i: int) -> np.ndarray:
    """``seq[i].weight`` / ``.bias`` as float64 numpy, refused where it holds no real data (meta, complex)."""
    return _to_numpy(getattr(mod, attr), f"seq[{i}].{attr}")


def _check_plain(mod: nn.Module, i: int) -> None:
    """A subclass of a supported module that computes something else (its own ``forward``) is refused: only
    the parameters are read, so its computation would be lost without a word."""
    for base in (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.Flatten, nn.Unflatten, *_FROM_TORCH):
        if isinstance(mod, base) and type(mod).forward is not base.forward:
            raise ChoiceError(f"seq[{i}]: {type(mod).__name__} subclasses {base.__name__} with its own forward; "
                              f"only the plain {base.__name__} can be read (its computation would be lost)")


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


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def _is_dense_vector_net(layers: Sequence[Layer]) -> bool:
    """Every layer plain dense on a vector input: the network of layer sizes ``n-p_1-...-p``."""
    return len(layers[0].in_shape) == 1 and all(la.is_plain_dense for la in layers)


def _arch_string(layers: Sequence[Layer]) -> str:
    """The spec that :func:`~fenchel_cvx.layers.parse_arch` turns back into ``layers``.

    ``"784-300-10"`` for a fully connected network on vectors, else the input shape and one token per layer
    (``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"``).
    """
    if _is_dense_vector_net(layers):
        return "-".join(str(s) for s in [layers[0].n_in] + [la.n_out for la in layers])
    return "-".join([_shape_text(layers[0].in_shape)] + [la.describe() for la in layers])


def _check_in_shape(in_shape: Any) -> tuple[int, ...] | None:
    if in_shape is None:
        return None
    try:
        shape = tuple(in_shape)
    except TypeError:
        shape = ()
    if len(shape) not in (1, 3) or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1
                                       for s in shape):
        raise ShapeError(f"in_shape: expected (n,) or (C, H, W) of positive integers, e.g. (1, 28, 28), got "
                         f"{in_shape!r}")
    return tuple(int(s) for s in shape)


class LiftedNetwork:
    r"""A network of dense, convolution and average-pooling layers seen as the lifted model of eqs. (3) and (7).

    Parameters
    ----------
    arch : sequence of int, str, or sequence of Layer
        The architecture: layer sizes ``[n, p_1, ..., p_L, p]`` (a fully connected network; ``L =
        len(arch) - 2 >= 0``), a spec string (``"784-300-10"``, ``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"``,
        ``"lenet5"``; see :func:`~fenchel_cvx.layers.parse_arch`), or layers already built
        (:class:`~fenchel_cvx.layers.Layer`, e.g. from :func:`~fenchel_cvx.layers.lenet5`).
    activations : str, Activation, or sequence of L of them
        One activation for every hidden layer (a single one is used for all): ``"relu"``, ``"leaky_relu"``,
        ``"sigmoid"``, ``"tanh"`` or an :class:`~fenchel_cvx.activations.Activation` instance.
    loss : str or Loss, default "mse"
        ``"mse"`` (``||Y - Yhat||_F^2``) or ``"ce"`` (softmax cross-entropy), summed over samples.
    in_shape : (n,) or (C, H, W), optional
        The input's shape, for specs that do not start with it (``"lenet5"``, ``"c6k5p2-..."``). With layer
        sizes it makes the network take images whose ``C * H * W`` equals ``n`` (flattened; same weights).
    seed : int or None
        Seed of the numpy Generator used for the Xavier (Glorot) uniform initialization, layer by layer:
        ``W_l ~ U(-a, a)`` of shape ``layers[l].weight_shape``, ``a = sqrt(6 / (fan_in + fan_out))`` with the fans
        TensorFlow counts (dense ``p_l`` and ``p_{l+1}``; a ``k x k`` kernel ``C_in k^2`` and ``C_out k^2``, see
        :attr:`Layer.fans <fenchel_cvx.layers.Layer.fans>`); biases start at zero. For layer sizes the draws are
        the same, call for call, as those of the fully connected network of earlier versions.

    Attributes
    ----------
    layers : list of L + 1 Layer
        The linear maps ``U_l = A_l(X_l; W_l) + b_l``; the last one is dense (the output layer).
    W : list of L + 1 ndarray, float64
        ``W[l]`` of shape ``layers[l].weight_shape``: ``(p_{l+1}, p_l)`` (dense; after pooling ``p_l`` counts the
        pooled input) or ``(C_out, C_in, k, k)`` (convolution).
    b : list of L + 1 ndarray, float64
        ``b[l]`` of shape ``layers[l].bias_shape``: one per output unit (dense) or per output channel (conv).
        Explicit biases; they replace the paper's ones-row trick and are not penalized by ``rho``.
    acts : list of L Activation
        ``acts[l]`` produces ``X_{l+1} = phi_l(A_l(X_l; W_l) + b_l)``; ``X_{l+1}`` must lie in its domain.
    loss : Loss
    sizes : list of L + 2 int
        Flattened feature counts ``[n_0, n_1, ..., n_L, p]``: ``sizes[l] = layers[l].n_in`` (``C * H * W`` for an
        image), ``sizes[-1] = layers[-1].n_out``. ``X_l`` is ``(sizes[l], m)`` in the paper layout.
    in_shape : tuple of int
        ``(n,)`` or ``(C, H, W)``: one sample's input shape.
    arch : str
        The architecture as a spec: ``"784-300-10"`` for a fully connected network on vectors, else
        ``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"`` style (input shape, one token per layer).
        ``LiftedNetwork(net.arch, ...)`` rebuilds the same layers.
    L : int
        Number of hidden layers.

    Raises
    ------
    ShapeError
        Sizes that are not positive integers, a spec that is not an architecture or does not chain, ``in_shape``
        that contradicts the spec, the wrong number of activations.

    Notes
    -----
    Layout: the math methods (:meth:`feed_forward`, :meth:`init_X`, :meth:`pre_activation`,
    :meth:`lagrangian`, :meth:`primal_objective`) take ``(features, samples)`` matrices as in the paper (images
    flattened in ``(C, H, W)`` order, one per column); :meth:`forward`, :meth:`predict` and :meth:`accuracy` take
    samples-first ``(m, n)`` arrays, or ``(m, C, H, W)`` images. Numpy inputs compute in float64; torch inputs
    compute in the input's dtype on the input's device (the weights are cast).

    Examples
    --------
    >>> net = LiftedNetwork("lenet5", "relu", "ce", in_shape=(1, 28, 28), seed=0)
    >>> net.arch, net.sizes, net.W[1].shape
    ('1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10', [784, 4704, 1600, 120, 84, 10], (16, 6, 5, 5))
    """

    def __init__(self, arch: Sequence[int] | str | Sequence[Layer],
                 activations: str | Activation | Sequence[str | Activation] = "relu", loss: str | Loss = "mse", *,
                 in_shape: Sequence[int] | None = None, seed: int | None = None):
        shape = _check_in_shape(in_shape)
        if isinstance(arch, str):
            layers = parse_arch(arch, shape)
        elif isinstance(arch, (list, tuple)) and arch and all(isinstance(x, Layer) for x in arch):
            layers = parse_arch(list(arch))
            if shape is not None and shape != layers[0].in_shape:
                raise ShapeError(f"in_shape: expected the first layer's input shape {layers[0].in_shape} (or None), "
                                 f"got {shape}")
        else:
            layers = parse_arch(self._check_sizes(arch), shape)
        self._set_layers(layers)
        self.acts = self._check_activations(activations, self.L)
        self.loss = get_loss(loss)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueRangeError(f"seed: expected None or an integer >= 0, got {seed!r}")
        rng = np.random.default_rng(seed)
        self.W: list[np.ndarray] = []
        self.b: list[np.ndarray] = []
        for layer in self.layers:
            fan_in, fan_out = layer.fans
            a = math.sqrt(6.0 / (fan_in + fan_out))
            self.W.append(rng.uniform(-a, a, size=layer.weight_shape))
            self.b.append(np.zeros(layer.bias_shape))

    # -- construction helpers ---------------------------------------------------------------------------------
    def _set_layers(self, layers: Sequence[Layer]) -> None:
        self.layers: list[Layer] = list(layers)
        self.L = len(self.layers) - 1
        self.sizes = [la.n_in for la in self.layers] + [self.layers[-1].n_out]
        self.in_shape: tuple[int, ...] = tuple(self.layers[0].in_shape)
        self.arch = _arch_string(self.layers)

    @staticmethod
    def _check_sizes(sizes: Any) -> list[int]:
        try:
            seq = list(sizes)
        except TypeError:
            raise ShapeError(f"sizes: expected a sequence [n, p_1, ..., p_L, p], a spec string or a list of "
                             f"Layer, got {sizes!r}") from None
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
            raise ShapeError(f"activations: expected one per hidden layer ({L}, from the architecture), got "
                             f"{len(seq)}; pass a single name to use it everywhere")
        return [get_activation(a) for a in seq]

    # -- sizes -----------------------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Input features ``p_0`` (flattened: ``C * H * W`` for an image)."""
        return self.sizes[0]

    @property
    def p(self) -> int:
        """Outputs ``p_{L+1}``."""
        return self.sizes[-1]

    @property
    def n_params(self) -> int:
        """Number of weights (kernel entries) and biases."""
        return sum(w.size + b.size for w, b in zip(self.W, self.b, strict=True))

    def __repr__(self) -> str:
        acts = ", ".join(repr(a) for a in self.acts)
        what = f"sizes={self.sizes}" if _is_dense_vector_net(self.layers) else f"arch={self.arch!r}"
        return f"LiftedNetwork({what}, activations=[{acts}], loss={self.loss!r})"

    # -- weights ---------------------------------------------------------------------------------------------
    def set_weights(self, W: Sequence[Array], b: Sequence[Array] | None = None) -> None:
        """Replace all weights (and biases) by float64 copies.

        Parameters
        ----------
        W : sequence of L + 1 arrays (numpy or torch)
            ``W[l]`` of shape ``layers[l].weight_shape``: ``(p_{l+1}, p_l)`` or a kernel ``(C_out, C_in, k, k)``.
        b : sequence of L + 1 arrays, or None
            ``b[l]`` of shape ``layers[l].bias_shape`` (``(p_{l+1},)`` or ``(C_out,)``); ``None`` sets every bias
            to zero.

        Raises
        ------
        ShapeError
            Wrong count or shape (the message names the layer, e.g. ``a2c16k5``); :class:`DomainError` for
            NaN/inf entries.
        """
        W = list(W)
        if len(W) != self.L + 1:
            raise ShapeError(f"W: expected {self.L + 1} weight arrays (architecture {self.arch}), got {len(W)}")
        b = [None] * (self.L + 1) if b is None else list(b)
        if len(b) != self.L + 1:
            raise ShapeError(f"b: expected {self.L + 1} bias vectors (architecture {self.arch}), got {len(b)}")
        new_W, new_b = [], []
        for l, (w, bias, layer) in enumerate(zip(W, b, self.layers, strict=True)):
            w = _to_numpy(w, f"W[{l}]")
            check_layer_shape(w, f"W[{l}]", layer, "weight")
            check_finite(w, f"W[{l}]")
            bias = np.zeros(layer.bias_shape) if bias is None else _to_numpy(bias, f"b[{l}]")
            check_layer_shape(bias, f"b[{l}]", layer, "bias")
            check_finite(bias, f"b[{l}]")
            new_W.append(w)
            new_b.append(bias)
        self.W, self.b = new_W, new_b

    def copy(self) -> LiftedNetwork:
        """An independent copy (weights copied; layers, activations and loss shared: they are immutable)."""
        net = LiftedNetwork.__new__(LiftedNetwork)
        net._set_layers(self.layers)
        net.acts, net.loss = list(self.acts), self.loss
        net.W = [w.copy() for w in self.W]
        net.b = [b.copy() for b in self.b]
        return net

    def weights_as_torch(self, device: str | torch.device | None = None,
                         dtype: torch.dtype = torch.float64) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The weights and biases as new torch tensors.

        Returns
        -------
        W : list of L + 1 Tensor
            ``W[l]`` of shape ``layers[l].weight_shape`` (``(p_{l+1}, p_l)`` or ``(C_out, C_in, k, k)``).
        b : list of L + 1 Tensor
            ``b[l]`` of shape ``layers[l].bias_shape``.
        """
        W = [torch.tensor(w, dtype=dtype, device=device) for w in self.W]
        b = [torch.tensor(v, dtype=dtype, device=device) for v in self.b]
        return W, b

    def _weights_like(self, X: Array) -> tuple[list[Array], list[Array]]:
        if is_torch(X):
            return self.weights_as_torch(X.device, X.dtype)
        return self.W, self.b

    def _affine(self, l: int, W: Array, b: Array, X: Array) -> Array:
        """``A_l(X; W) + b``, ``X`` of shape ``(sizes[l], m)``; a plain dense layer is the matrix product."""
        layer = self.layers[l]
        if layer.is_plain_dense:
            return W @ X + b[:, None]
        return layer.apply(W, b, X)

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
        """``U_l = A_l(X_l; W_l) + b_l``: ``W_l X_l + b_l 1^T`` (dense) or ``W_l * Pool(X_l) + b_l`` (conv).

        Parameters
        ----------
        l : int, 0..L
        X_l : ndarray or Tensor, shape (sizes[l], m)
            Paper layout (features x samples; an image flattened in ``(C, H, W)`` order per column).

        Returns
        -------
        ndarray or Tensor, shape (sizes[l + 1], m)
        """
        l = self._check_layer(l)
        _check_holds_data(X_l, f"X_{l}")
        if is_torch(X_l):  # integer (or bool) inputs: computed in float, as feed_forward does
            X_l = X_l if X_l.is_floating_point() else X_l.to(torch.get_default_dtype())
        X_l = as_array(X_l, f"X_{l}")
        check_ndim(X_l, f"X_{l}", 2, "(p_l, m): features x samples")
        check_shape(X_l, f"X_{l}", (self.sizes[l], None), "(p_l, m): features x samples")
        check_finite(X_l, f"X_{l}")
        if is_torch(X_l):
            W = torch.as_tensor(self.W[l], dtype=X_l.dtype, device=X_l.device)
            b = torch.as_tensor(self.b[l], dtype=X_l.dtype, device=X_l.device)
            return self._affine(l, W, b, X_l)
        return self._affine(l, self.W[l], self.b[l], X_l)

    def feed_forward(self, X0: Array) -> list[Array]:
        """The recursion (1): ``[X_0, X_1, ..., X_L, Yhat]``.

        Parameters
        ----------
        X0 : ndarray or Tensor, shape (n, m)
            Paper layout (features x samples; images flattened in ``(C, H, W)`` order, one per column).

        Returns
        -------
        list of L + 2 arrays, shapes (sizes[l], m)
            Same backend as ``X0``; torch keeps the device and dtype.
        """
        X = self._check_X0(X0)
        Ws, bs = self._weights_like(X)
        out = [X]
        for l, act in enumerate(self.acts):
            X = act.forward(self._affine(l, Ws[l], bs[l], X))
            out.append(X)
        out.append(self._affine(self.L, Ws[self.L], bs[self.L], X))
        return out

    def init_X(self, X0: Array) -> list[Array]:
        """X-variables by feed-forward (Algorithm 1, line 3): ``[X_1, ..., X_L]``, each ``(sizes[l], m)``."""
        return self.feed_forward(X0)[1:-1]

    def lagrangian_terms(self, X0: Array, Y: Array, Xvars: Sequence[Array], lam: Any, rho: Any) -> dict:
        r"""The three parts of the Lagrangian (7) at the given X-variables.

        Parameters
        ----------
        X0 : ndarray or Tensor, shape (n, m)
            Inputs, paper layout (features x samples).
        Y : array, shape (p, m), or integer labels (m,)
        Xvars : list of L arrays, shape (sizes[l], m) for l = 1..L
            ``X_l`` must lie in the domain of ``acts[l-1]`` (e.g. ``>= 0`` after a ReLU).
        lam : float or sequence of L floats, >= 0
            Multipliers ``lam_l`` of ``B_l(X_{l+1}, A_l(X_l; W_l) + b_l)``; a scalar is used for every layer.
        rho : float or sequence of L + 1 floats, >= 0
            Weights of ``||W_l||_F^2`` (a kernel's Frobenius norm for a convolution; biases are not penalized).

        Returns
        -------
        dict
            ``loss`` = L(Y, A_L(X_L; W_L) + b_L), ``penalty`` = sum_l lam_l B_l(...), ``penalty_per_layer`` (list
            of L floats), ``regularization`` = sum_l rho_l ||W_l||_F^2, ``total`` (their sum); Python floats.

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
        Yhat = self._affine(self.L, Ws[self.L], bs[self.L], chain[self.L])
        loss = float(self.loss.value(self._targets(Y, m, like=Yhat), Yhat))
        per = [lam[l] * act.B_sum(chain[l + 1], self._affine(l, Ws[l], bs[l], chain[l]))
               for l, act in enumerate(self.acts)]
        reg = self.regularization(rho)
        penalty = float(sum(per))
        return {"loss": loss, "penalty": penalty, "penalty_per_layer": per, "regularization": reg,
                "total": loss + penalty + reg}

    def lagrangian(self, X0: Array, Y: Array, Xvars: Sequence[Array], lam: Any, rho: Any) -> float:
        r"""Eq. (7): ``L(Y, A_L(X_L) + b_L) + sum_l rho_l ||W_l||_F^2 + sum_{l<L} lam_l B_l(X_{l+1}, A_l(X_l) + b_l)``.

        Paper layout (features x samples); see :meth:`lagrangian_terms` for the parameters and errors.

        Returns
        -------
        float
        """
        return self.lagrangian_terms(X0, Y, Xvars, lam, rho)["total"]

    def regularization(self, rho: Any) -> float:
        """``sum_l rho_l ||W_l||_F^2`` (``rho`` scalar or L + 1 values, >= 0; a kernel's Frobenius norm for a
        convolution; biases not penalized)."""
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
    def _samples_first(self, X: Array, name: str = "X") -> Array:
        """Checked samples-first rows ``(m, n)`` from ``(m, n)`` or, for an image network, ``(m, C, H, W)``."""
        X = as_array(X, name)
        _check_holds_data(X, name)
        rows = f"(m, {self.n}): samples x features"
        if len(self.in_shape) == 3:
            images = f"(m, {', '.join(map(str, self.in_shape))}): samples x channels x height x width"
            check_ndim(X, name, (2, 4), f"{rows}, or images {images}")
            if X.ndim == 4:
                check_shape(X, name, (None, *self.in_shape), images)
                check_finite(X, name)  # reported at the user's (sample, channel, row, column) index
                return X.reshape(X.shape[0], self.n)  # n, not -1: zero samples have no size to infer
        else:
            check_ndim(X, name, 2, "(m, n): samples x features; reshape a single sample with X.reshape(1, -1)")
        check_shape(X, name, (None, self.n), rows)
        check_finite(X, name)  # here, so that a bad entry is reported at the user's (sample, feature) index
        return X

    def forward(self, X: Array) -> Array:
        """Network outputs for samples-first inputs.

        Parameters
        ----------
        X : ndarray or Tensor, shape (m, n), or (m, C, H, W) for a network whose input is an image
            One sample per row (samples first, as in PyTorch / scikit-learn); rows of an image network are
            images flattened in ``(C, H, W)`` order.

        Returns
        -------
        ndarray or Tensor, shape (m, p)
            Pre-softmax scores for cross-entropy; same backend (and torch device/dtype) as ``X``.
        """
        return self.feed_forward(self._samples_first(X).T)[-1].T

    def predict(self, X: Array) -> Array:
        """Argmax class labels, shape ``(m,)`` (int64 numpy or long tensor), for samples-first ``X`` ``(m, n)``
        or images ``(m, C, H, W)``."""
        out = self.forward(X)
        return out.argmax(dim=1) if is_torch(out) else np.argmax(out, axis=1)

    def accuracy(self, X: Array, labels: Array) -> float:
        """Fraction of samples whose argmax output equals the label.

        Parameters
        ----------
        X : array, shape (m, n), or (m, C, H, W) for an image network
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
        """An ``nn.Sequential`` computing the same outputs as :meth:`forward`, samples first.

        Layer by layer: ``nn.AvgPool2d(r)`` where the layer pools its input, ``nn.Conv2d`` (stride, zero padding,
        bias) for a convolution, ``nn.Flatten()`` before the first dense layer after images, ``nn.Linear`` for a
        dense layer, and the activation after every hidden layer. A fully connected network on vectors is exactly
        ``Sequential(Linear, act, ..., Linear)``.

        Input: ``(m, n)`` rows for a network on vectors; **``(m, C, H, W)`` images** for a network whose input is an
        image, as torch's convolutions expect (no ``nn.Unflatten`` is added, so the module is the plain CNN a torch
        user writes; for flat rows prepend ``nn.Unflatten(1, net.in_shape)`` yourself -- :meth:`from_torch` reads
        such a leading Unflatten back). A fully connected network over images starts with ``nn.Flatten()``, which
        takes both ``(m, C, H, W)`` and ``(m, n)``. The cross-entropy softmax is not included: the module returns
        the scores, as :meth:`forward` does.

        Parameters
        ----------
        dtype : torch.dtype or {"float32", "float64"}
        device : str or torch.device, optional

        Returns
        -------
        torch.nn.Sequential
        """
        if isinstance(dtype, str) and dtype in ("float32", "float64"):
            dtype = getattr(torch, dtype)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueRangeError(f"dtype: expected a floating torch dtype such as torch.float32, got {dtype!r}")
        device = None if device is None else check_device(device)
        mods: list[nn.Module] = []
        image = len(self.in_shape) == 3
        for l, layer in enumerate(self.layers):
            if layer.pool > 1:
                mods.append(nn.AvgPool2d(layer.pool))
            if layer.kind == "conv":
                c_out, c_in, k, _ = layer.weight_shape
                mod: nn.Module = nn.Conv2d(c_in, c_out, k, stride=layer.stride, padding=layer.padding, bias=True,
                                           dtype=dtype, device=device)
            else:
                if image:
                    mods.append(nn.Flatten())
                    image = False
                mod = nn.Linear(layer.weight_shape[1], layer.weight_shape[0], bias=True, dtype=dtype, device=device)
            with torch.no_grad():
                mod.weight.copy_(torch.as_tensor(self.W[l]))
                mod.bias.copy_(torch.as_tensor(self.b[l]))
            mods.append(mod)
            if layer.kind == "conv":
                image = True
            if l < self.L:
                act = self.acts[l]
                make = _TO_TORCH.get(type(act))
                if make is None:
                    raise FenchelError(f"acts[{l}]: {act!r} has no torch module; supported: "
                                       f"{sorted(t.__name__ for t in _TO_TORCH)}")
                mods.append(make(act))
        return nn.Sequential(*mods)

    @classmethod
    def from_torch(cls, seq: nn.Sequential, loss: str | Loss = "mse", *,
                   in_shape: Sequence[int] | None = None) -> LiftedNetwork:
        """Read an ``nn.Sequential`` of the form :meth:`to_torch` writes.

        Accepted, in order: an optional leading ``nn.Unflatten(1, (C, H, W))`` (it gives the input shape), then
        layers ``[AvgPool2d] [Flatten] Conv2d|Linear``, each hidden one followed by exactly one activation (ReLU,
        LeakyReLU, Sigmoid, Tanh), the last one a ``Linear`` (the output layer). ``Conv2d``: square kernel, one
        stride and one zero padding for both axes (``padding="valid"``, or ``"same"`` at stride 1 with an odd
        kernel), no dilation, one group; ``AvgPool2d``: square window with stride equal to it, no padding. A layer
        without bias gives a zero bias. Weights are copied exactly (as float64).

        Parameters
        ----------
        seq : torch.nn.Sequential
        loss : str or Loss, default "mse"
            Not part of the module; name it here.
        in_shape : (C, H, W) or (n,), optional
            The input's shape. Needed when the module starts with a convolution or pooling (torch does not record
            image sizes) unless it starts with ``nn.Unflatten``; with a leading ``Linear`` it may name the images
            that the network's rows flatten.

        Returns
        -------
        LiftedNetwork

        Raises
        ------
        ChoiceError
            A module that is not supported (``MaxPool2d``: max pooling is not linear; ``BatchNorm``, ``Dropout``,
            ...), a padding mode other than zeros, or modules in an order a lifted network does not have (two
            layers without an activation between them, an output layer that is not ``Linear``), or a subclass of
            a supported module with its own ``forward``.
        DomainError
            Weights that hold no real data (on the ``meta`` device, or complex).
        ShapeError
            Non-square kernels, strides, paddings or pooling windows, pooling whose stride differs from its window,
            sizes that do not chain, a missing or contradicting ``in_shape``.
        ValueRangeError
            ``dilation != 1`` or ``groups != 1`` in a ``Conv2d``, pooling with padding, ``ceil_mode`` or a divisor.
        """
        if not isinstance(seq, nn.Sequential):
            raise FenchelError(f"seq: expected a torch.nn.Sequential, got {type(seq).__name__}")
        mods = list(seq)
        shape = _check_in_shape(in_shape)
        start = 0
        if mods:
            _check_plain(mods[0], 0)
        if mods and isinstance(mods[0], nn.Unflatten):
            given = _unflatten_shape(mods[0])
            if shape is not None and shape != given:
                raise ShapeError(f"in_shape: seq[0] unflattens rows into {given}, got in_shape={shape}")
            shape, start = given, 1
        first_shape = shape
        tokens: list[str] = []
        W: list[np.ndarray] = []
        b: list[np.ndarray] = []
        acts: list[Activation] = []
        pool, flat, pending = 1, False, []  # pooling and flattening seen since the last layer, and where
        for i in range(start, len(mods)):
            mod = mods[i]
            _check_plain(mod, i)
            want_act = len(tokens) > len(acts)
            if type(mod) in _FROM_TORCH:
                if not want_act:
                    raise ChoiceError(f"seq[{i}]: expected a Linear or Conv2d layer (optionally after AvgPool2d or "
                                      f"Flatten), got {type(mod).__name__}; a lifted network alternates layers and "
                                      "activations, one activation after every hidden layer")
                acts.append(_FROM_TORCH[type(mod)](mod))
                continue
            if want_act:
                raise ChoiceError(f"seq[{i}]: expected an activation between two layers (one of "
                                  f"{', '.join(t.__name__ for t in _FROM_TORCH)}), got {type(mod).__name__}; a lifted "
                                  "network alternates layers and activations")
            if isinstance(mod, nn.AvgPool2d):
                if pool > 1 or flat:
                    raise ChoiceError(f"seq[{i}]: expected at most one AvgPool2d before a layer, and before any "
                                      f"Flatten, got {type(mod).__name__} after {', '.join(pending)}")
                if shape is None or len(shape) != 3:
                    raise ShapeError(f"in_shape: seq[{i}] pools images, but the input shape is unknown; pass "
                                     "in_shape=(C, H, W), e.g. (1, 28, 28)" if shape is None else
                                     f"seq[{i}]: AvgPool2d needs images (C, H, W), got an input of shape {shape}")
                pool = _avgpool_window(mod, i)
                pending.append("AvgPool2d")
            elif isinstance(mod, nn.Flatten):
                if (mod.start_dim, mod.end_dim) != (1, -1):
                    raise ShapeError(f"seq[{i}]: expected Flatten(start_dim=1, end_dim=-1) (one row per sample), got "
                                     f"start_dim={mod.start_dim}, end_dim={mod.end_dim}")
                flat = True
                pending.append("Flatten")
            elif isinstance(mod, nn.Conv2d):
                if shape is None:
                    raise ShapeError(f"in_shape: seq[{i}] is a Conv2d, whose input height and width torch does not "
                                     "record; pass in_shape=(C, H, W), e.g. (1, 28, 28), or start the Sequential with "
                                     "nn.Unflatten(1, (C, H, W))")
                if flat or len(shape) != 3:
                    raise ShapeError(f"seq[{i}]: a Conv2d needs images (C, H, W), got "
                                     f"{'flattened rows' if flat else f'an input of shape {shape}'}")
                if mod.in_channels != shape[0]:
                    raise ShapeError(f"seq[{i}]: expected in_channels {shape[0]} (the input is {_shape_text(shape)}), "
                                     f"got {mod.in_channels}")
                k, s, p = _conv_geometry(mod, i)
                token = (f"a{pool}" if pool > 1 else "") + f"c{mod.out_channels}k{k}s{s}p{p}"
                shape = _one_layer(shape, token, i).out_shape
                tokens.append(token)
                W.append(_weights_of(mod, "weight", i))
                b.append(np.zeros(mod.out_channels) if mod.bias is None else _weights_of(mod, "bias", i))
                pool, flat, pending = 1, False, []
            elif isinstance(mod, nn.Linear):
                if shape is None:
                    shape = first_shape = (mod.in_features,)
                if len(shape) == 3 and not flat and (tokens or pool > 1):
                    raise ShapeError(f"seq[{i}]: a Linear after images needs an nn.Flatten() before it, got the "
                                     f"{_shape_text(shape)} images directly")
                token = (f"a{pool}" if pool > 1 else "") + f"f{mod.out_features}"
                layer = _one_layer(shape, token, i)
                if mod.in_features != layer.weight_shape[1]:
                    raise ShapeError(f"seq[{i}]: expected in_features {layer.weight_shape[1]} to match the previous "
                                     f"layer's output {_shape_text(layer.pooled_shape)}, got {mod.in_features}")
                shape = layer.out_shape
                tokens.append(token)
                W.append(_weights_of(mod, "weight", i))
                b.append(np.zeros(mod.out_features) if mod.bias is None else _weights_of(mod, "bias", i))
                pool, flat, pending = 1, False, []
            else:
                hint = "; max pooling is not linear, use AvgPool2d" if isinstance(mod, nn.MaxPool2d) else ""
                raise ChoiceError(f"seq[{i}]: unsupported layer {type(mod).__name__}; supported: "
                                  f"{_SUPPORTED_MODULES}{hint}")
        if not tokens or not isinstance(mods[-1], nn.Linear):
            got = type(mods[-1]).__name__ if len(mods) > start else "an empty Sequential"
            raise ChoiceError(f"seq: expected the last layer to be Linear (the output layer A_L(X_L) + b_L), got {got}")
        net = cls(build_layers(first_shape, tokens), acts, loss)
        net.set_weights(W, b)
        return net

    # -- save / load ----------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the network to ``path`` exactly (an ``.npz``: arrays ``W_l``, ``b_l`` and a JSON ``meta``).

        ``meta`` holds the architecture spec (:attr:`arch`), the flattened ``sizes``, the activations and the
        loss. No pickle is involved; the write is atomic (a temporary file renamed over ``path``).

        Returns
        -------
        pathlib.Path

        Raises
        ------
        CheckpointError
            ``path`` is a directory, or its directory does not exist.
        """
        path = Path(path)
        if LOSSES.get(self.loss.name) is not type(self.loss):
            raise FenchelError(f"loss: only the registered losses {sorted(LOSSES)} can be saved, got {self.loss!r}")
        meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "arch": self.arch, "in_shape": list(self.in_shape),
                "sizes": self.sizes,
                "activations": [_activation_spec(a, f"acts[{l}]") for l, a in enumerate(self.acts)],
                "loss": self.loss.name}
        arrays = {"meta": np.array(json.dumps(meta))}
        for l in range(self.L + 1):
            arrays[f"W_{l}"] = self.W[l]
            arrays[f"b_{l}"] = self.b[l]
        if path.is_dir() or not path.parent.is_dir():
            what = "is a directory" if path.is_dir() else f"is in {str(path.parent)!r}, which is not a directory"
            raise CheckpointError(f"path: expected a file name in an existing directory, got {str(path)!r}, which "
                                  f"{what}")
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
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

        Reads the current format (the architecture spec) and format 1 (layer sizes of a fully connected network,
        written before convolutions existed).

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
                if meta.get("version") not in _READABLE_VERSIONS:
                    raise CheckpointError(f"{str(path)!r}: format version {meta.get('version')!r} is not "
                                          f"supported (expected one of {list(_READABLE_VERSIONS)}); it was written "
                                          "by a newer fenchel_cvx")
                n_layers = len(meta["sizes"]) - 1
                expected = {"meta"} | {f"{k}_{l}" for k in "Wb" for l in range(n_layers)}
                if files != expected:  # an extra layer's weights would otherwise be dropped without a word
                    raise CheckpointError(f"{str(path)!r}: expected the entries {sorted(expected)} of a {n_layers}-"
                                          f"layer network, got {sorted(files)}; the file is corrupt")
                W = [np.asarray(z[f"W_{l}"]) for l in range(n_layers)]
                b = [np.asarray(z[f"b_{l}"]) for l in range(n_layers)]
            acts = [get_activation(spec["name"], **{k: v for k, v in spec.items() if k != "name"})
                    for spec in meta["activations"]]
            arch = meta["sizes"] if meta["version"] == 1 else meta["arch"]
            net = cls(arch, acts, meta["loss"])
            if net.sizes != list(meta["sizes"]):
                raise CheckpointError(f"{str(path)!r}: the architecture {net.arch} has sizes {net.sizes}, but the "
                                      f"file records {meta['sizes']}; the file is corrupt")
            if "in_shape" in meta and list(net.in_shape) != list(meta["in_shape"]):
                raise CheckpointError(f"{str(path)!r}: the architecture {net.arch} takes inputs of shape "
                                      f"{net.in_shape}, but the file records {tuple(meta['in_shape'])}; the file is "
                                      "corrupt")
            net.set_weights(W, b)
        except CheckpointError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, NotImplementedError, zipfile.BadZipFile,
                FenchelError) as exc:  # EOFError, NotImplementedError: an empty file, a damaged zip header
            raise CheckpointError(f"{str(path)!r}: cannot read a LiftedNetwork from this file "
                                  f"({type(exc).__name__}: {exc}); it may be truncated or not written by "
                                  "LiftedNetwork.save") from exc
        return net


# -- reading torch modules -----------------------------------------------------------------------------------------
def _pair(value: Any, what: str, i: int) -> int:
    """One int from an int or an equal pair; :class:`ShapeError` for unequal pairs (non-square geometry)."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ShapeError(f"seq[{i}]: expected a square {what} (one value for both axes), got {tuple(value)}")
        value = value[0]
    return int(value)


def _conv_geometry(mod: nn.Conv2d, i: int) -> tuple[int, int, int]:
    """``(kernel, stride, padding)`` of a Conv2d the layers can express, else a typed error."""
    k = _pair(mod.kernel_size, "kernel", i)
    s = _pair(mod.stride, "stride", i)
    if _pair(mod.dilation, "dilation", i) != 1:
        raise ValueRangeError(f"seq[{i}]: expected dilation 1, got {mod.dilation}; dilated convolutions are not "
                              "supported")
    if mod.groups != 1:
        raise ValueRangeError(f"seq[{i}]: expected groups 1, got {mod.groups}; grouped (depthwise) convolutions are "
                              "not supported")
    if mod.padding_mode != "zeros":
        raise ChoiceError(f"seq[{i}]: expected padding_mode 'zeros', got {mod.padding_mode!r}")
    pad = mod.padding
    if pad == "valid":
        p = 0
    elif pad == "same":
        if s != 1 or k % 2 == 0:
            raise ShapeError(f"seq[{i}]: padding='same' is supported at stride 1 with an odd kernel, got stride {s} "
                             f"and kernel {k}; give the padding as an integer")
        p = (k - 1) // 2
    else:
        p = _pair(pad, "padding", i)
    return k, s, p


def _avgpool_window(mod: nn.AvgPool2d, i: int) -> int:
    """The window ``r`` of an ``AvgPool2d(r)`` (stride ``r``, no padding), else a typed error."""
    r = _pair(mod.kernel_size, "pooling window", i)
    s = r if mod.stride is None or mod.stride == () else _pair(mod.stride, "pooling stride", i)
    if s != r:
        raise ShapeError(f"seq[{i}]: expected AvgPool2d with stride equal to its window {r}, got stride {s}")
    if _pair(mod.padding, "pooling padding", i) != 0 or mod.ceil_mode or mod.divisor_override is not None:
        raise ValueRangeError(f"seq[{i}]: expected AvgPool2d without padding, ceil_mode or divisor_override, got "
                              f"padding={mod.padding}, ceil_mode={mod.ceil_mode}, "
                              f"divisor_override={mod.divisor_override}")
    return r


def _unflatten_shape(mod: nn.Unflatten) -> tuple[int, ...]:
    if mod.dim not in (1, -1) or isinstance(mod.unflattened_size, (str, dict)):
        raise ShapeError(f"seq[0]: expected nn.Unflatten(1, (C, H, W)) that turns rows into images, got dim={mod.dim}, "
                         f"unflattened_size={mod.unflattened_size}")
    shape = tuple(int(s) for s in mod.unflattened_size)
    if len(shape) != 3 or min(shape) < 1:
        raise ShapeError(f"seq[0]: expected nn.Unflatten to give images (C, H, W), got {shape}")
    return shape


def _one_layer(shape: tuple, token: str, i: int) -> Layer:
    """The layer of one spec token on input ``shape`` (errors re-worded for ``seq[i]``)."""
    try:  # a convolution alone is not a network: give it a dense output layer to check it
        layers = build_layers(tuple(shape), [token, "f1"] if "c" in token else [token])
    except ShapeError as exc:
        raise ShapeError(f"seq[{i}]: {re.sub(r'^arch: (layer token [0-9]+ )?', '', str(exc))}") from None
    return layers[0]
