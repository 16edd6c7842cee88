r"""Layers as linear maps: dense, convolution and average pooling, the linear part of every lifted layer.

A lifted layer is ``X_{l+1} = phi_l(U_l)`` with a pre-activation ``U_l = A_l(X_l; W_l) + b_l`` that is linear
in ``X_l`` for fixed ``W_l`` and linear in ``W_l`` for fixed ``X_l`` (section 4, eq. 11). Three kinds cover the
paper's networks:

* **dense**: ``U = W X + b``, ``W`` of shape ``(p_out, p_in)``;
* **conv**: ``U = W * X + b``, a 2-D convolution with a kernel ``W`` of shape ``(C_out, C_in, k, k)``, stride
  ``s`` and zero padding ``q``; the bias has one entry per output channel, shared by every position;
* either one preceded by **average pooling** (``pool = r``: ``r x r`` windows, stride ``r``), eq. (11)'s
  ``W * Pool(X)``; a dense layer after images flattens them (``C, H, W`` in C order).

Layout, as everywhere inside the math: a data matrix is ``(features, samples)``, one flattened sample per
column (``C * H * W`` features for an image, in C order). Every method accepts numpy arrays (computed in float64)
or torch tensors (in their own dtype and device) and returns the same kind.

What the two faces need from a layer, and what they get:

* the X-updates (fixed ``W``): :meth:`Layer.apply` and its adjoint :meth:`Layer.adjoint` (``conv2d`` and its
  transpose, pooling and its transpose), a bound on the operator norm (:meth:`Layer.norm_sq`, power iteration),
  and for the CVXPY face the explicit matrix of the map (:meth:`Layer.matrix`, tiny images: "a convolution is a
  matrix");
* the W-updates (fixed ``X``): a convolution is linear in its kernel, ``W * Pool(X) = W_mat P`` with the kernel as
  a ``(C_out, C_in k^2)`` matrix and ``P`` the patches of ``Pool(X)`` (one column per sample and output position,
  :meth:`Layer.patches`), so the conv W-update *is* the dense one on ``(P, V)`` with ``V`` the targets arranged
  the same way (:meth:`Layer.arrange`) -- the same model, solver and certificate, the bias shared across
  positions.

Architectures are written as specs (:func:`parse_arch`), e.g. ``"784-300-10"`` (dense) or LeNet-5 on MNIST,
``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"``: an input shape, then one token per layer -- ``cC kK [sS] [pQ]`` a
convolution with ``C`` output channels, kernel ``K``, stride ``S`` (default 1) and padding ``Q`` (default 0);
``fN`` or ``N`` a dense layer with ``N`` outputs; an ``aR`` prefix average-pools the layer's input in ``R x R``
windows first. :func:`lenet5` builds the paper's LeNet-5 for an input shape.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._arch import LAYER_TOKEN
from .errors import DomainError, ShapeError, TensorMismatchError, ValueRangeError
from .subproblems import check_layer_shape

__all__ = ["Layer", "build_layers", "lenet5", "parse_arch"]

Array = Any

#: Bytes of torch's per-call im2col buffer a float64 CPU convolution of a chunk of samples may use (see
#: :meth:`Layer._sample_chunks`): small enough to stay in cache and in the allocator's reused memory.
CONV_WORKSPACE = 4 << 20


@dataclass(frozen=True)
class Layer:
    """The linear part ``U = A(X; W) + b`` of one lifted layer.

    Attributes
    ----------
    kind : {"dense", "conv"}
    in_shape : tuple of int
        ``(n,)`` for a vector input, ``(C, H, W)`` for an image.
    out_shape : tuple of int
        ``(p,)`` (dense) or ``(C_out, H_out, W_out)`` (conv).
    pool : int
        Average-pooling window (and stride) applied to the input first; 1 = none.
    kernel, stride, padding : int
        Convolution geometry (dense: 0, 1, 0).

    Raises
    ------
    ValueRangeError
        An unknown ``kind``; ``pool``, ``kernel`` or ``stride`` below 1, ``padding`` below 0; convolution geometry
        given to a dense layer.
    ShapeError
        Shapes that are not tuples of positive ints, a convolution or pooling of a vector, or an ``out_shape``
        that the geometry does not produce. The maps (:meth:`apply`, :meth:`adjoint`, :meth:`patches`,
        :meth:`arrange`) raise it for weights or data matrices of another shape than the layer's.
    """

    kind: str
    in_shape: tuple
    out_shape: tuple
    pool: int = 1
    kernel: int = 0
    stride: int = 1
    padding: int = 0
    _pooled: tuple = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        # Layers are usually built from a spec (:func:`build_layers`), but the class is public: a hand-built one
        # is checked here, so a typo cannot run as another layer or a map of the wrong size.
        def positive_ints(value: Any, name: str, ndims: tuple[int, ...]) -> tuple:
            ok = isinstance(value, tuple) and len(value) in ndims and all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
            if not ok:
                want = " or ".join({1: "(n,)", 3: "(C, H, W)"}[d] for d in ndims)
                raise ShapeError(f"Layer.{name}: expected a tuple {want} of positive ints, got {value!r}")
            return value

        def integer(value: Any, name: str, low: int) -> None:
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueRangeError(f"Layer.{name}: expected an int >= {low}, got {value!r}")

        if self.kind not in ("dense", "conv"):
            raise ValueRangeError(f"Layer.kind: expected 'dense' or 'conv', got {self.kind!r}")
        positive_ints(self.in_shape, "in_shape", (1, 3))
        integer(self.pool, "pool", 1)
        pooled = self.in_shape
        if self.pool > 1:
            if len(self.in_shape) != 3:
                raise ShapeError(f"Layer.pool: pooling needs an image input (C, H, W), got in_shape {self.in_shape}")
            c, h, w = self.in_shape
            pooled = (c, h // self.pool, w // self.pool)
            if min(pooled) < 1:
                raise ShapeError(f"Layer.pool: {self.pool}x{self.pool} windows leave no pixel of {self.in_shape}")
            if self._pooled not in ((), pooled):
                raise ShapeError(f"Layer._pooled: expected {pooled} (in_shape pooled by {self.pool}), got "
                                 f"{self._pooled}")
            object.__setattr__(self, "_pooled", pooled)
        elif self._pooled != ():
            raise ShapeError(f"Layer._pooled: expected () without pooling, got {self._pooled}")
        if self.kind == "dense":
            positive_ints(self.out_shape, "out_shape", (1,))
            if (self.kernel, self.stride, self.padding) != (0, 1, 0):
                raise ValueRangeError(f"Layer: a dense layer has kernel=0, stride=1, padding=0, got kernel="
                                      f"{self.kernel!r}, stride={self.stride!r}, padding={self.padding!r}")
            return
        if len(self.in_shape) != 3:
            raise ShapeError(f"Layer.in_shape: a convolution needs an image input (C, H, W), got {self.in_shape}")
        positive_ints(self.out_shape, "out_shape", (3,))
        integer(self.kernel, "kernel", 1)
        integer(self.stride, "stride", 1)
        integer(self.padding, "padding", 0)
        h = (pooled[1] + 2 * self.padding - self.kernel) // self.stride + 1
        w = (pooled[2] + 2 * self.padding - self.kernel) // self.stride + 1
        if (h, w) != tuple(self.out_shape[1:]):
            raise ShapeError(f"Layer.out_shape: a {self.kernel}x{self.kernel} kernel with stride {self.stride} and "
                             f"padding {self.padding} maps {pooled[1]}x{pooled[2]} to {h}x{w}, got out_shape "
                             f"{self.out_shape}")

    # -- sizes --------------------------------------------------------------------------------------------------
    @property
    def n_in(self) -> int:
        """Features of ``X_l`` (flattened)."""
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        """Features of ``U_l`` (flattened)."""
        return math.prod(self.out_shape)

    @property
    def pooled_shape(self) -> tuple:
        """The input's shape after pooling (the input itself when ``pool == 1``)."""
        return self._pooled or self.in_shape

    @property
    def weight_shape(self) -> tuple:
        """``(p_out, p_in)`` (dense, ``p_in`` after pooling and flattening) or ``(C_out, C_in, k, k)``."""
        if self.kind == "dense":
            return (self.n_out, math.prod(self.pooled_shape))
        return (self.out_shape[0], self.pooled_shape[0], self.kernel, self.kernel)

    @property
    def bias_shape(self) -> tuple:
        """One bias per output unit (dense) or per output channel (conv)."""
        return (self.out_shape[0],)

    @property
    def fans(self) -> tuple[int, int]:
        """``(fan_in, fan_out)`` of the Glorot (Xavier) initialization, as TensorFlow counts them."""
        if self.kind == "dense":
            return self.weight_shape[1], self.weight_shape[0]
        c_out, c_in, k, _ = self.weight_shape
        return c_in * k * k, c_out * k * k

    @property
    def positions(self) -> int:
        """Output positions per sample (``H_out W_out`` for conv, 1 for dense)."""
        return 1 if self.kind == "dense" else self.out_shape[1] * self.out_shape[2]

    @property
    def patch_size(self) -> int:
        """Rows of :meth:`patches`: what one output unit sees (``C_in k^2`` for conv)."""
        return self.weight_shape[1] if self.kind == "dense" else math.prod(self.weight_shape[1:])

    @property
    def is_plain_dense(self) -> bool:
        """A dense layer without pooling: ``A(X; W)`` is the matrix product ``W X``."""
        return self.kind == "dense" and self.pool == 1

    def describe(self) -> str:
        """The layer's spec token (``"a2c16k5"``, ``"f120"``)."""
        pre = f"a{self.pool}" if self.pool > 1 else ""
        if self.kind == "dense":
            return f"{pre}f{self.n_out}"
        extra = (f"s{self.stride}" if self.stride != 1 else "") + (f"p{self.padding}" if self.padding else "")
        return f"{pre}c{self.out_shape[0]}k{self.kernel}{extra}"

    # -- the map for fixed W (X-updates) ------------------------------------------------------------------------
    def apply(self, W: Array, b: Array | None, X: Array) -> Array:
        """``A(X; W) + b``: ``X`` of shape ``(n_in, m)`` to ``(n_out, m)`` (``b=None``: no bias)."""
        check_layer_shape(X, "X", self, "in")
        self._check_weights(W, b, X=X)
        if self.is_plain_dense:
            if _is_torch(X):
                return W @ X if b is None else torch.addmm(b[:, None], W, X)
            return W @ X if b is None else W @ X + b[:, None]
        back, (Wt, bt, Xt) = _to_torch(W, b, X)
        m = Xt.shape[1]
        if self.kind == "dense":
            U = self._pooled_images(Xt, 0, m).flatten(1) @ Wt.T
            if bt is not None:
                U = U + bt
            return back(U.T)

        def conv(s: int, e: int) -> torch.Tensor:
            return F.conv2d(self._pooled_images(Xt, s, e), Wt, bt, stride=self.stride, padding=self.padding).flatten(1)

        return back(self._by_chunks(Xt, self.n_out, conv, Wt, bt))

    def adjoint(self, W: Array, G: Array) -> Array:
        """``A^T(G; W)``: ``G`` of shape ``(n_out, m)`` to ``(n_in, m)`` (the bias plays no part)."""
        check_layer_shape(G, "G", self, "out")
        self._check_weights(W, None, G=G)
        if self.is_plain_dense:
            return W.T @ G
        back, (Wt, Gt) = _to_torch(W, G)
        m = Gt.shape[1]
        if self.kind == "dense":
            return back(self._unpool((Gt.T @ Wt).reshape(m, *self.pooled_shape)).flatten(1).T)

        def conv_t(s: int, e: int) -> torch.Tensor:
            Z = torch.nn.grad.conv2d_input((e - s, *self.pooled_shape), Wt, self._images(Gt, s, e, self.out_shape),
                                           stride=self.stride, padding=self.padding)
            return self._unpool(Z).flatten(1)

        return back(self._by_chunks(Gt, self.n_in, conv_t, Wt))

    def norm_sq(self, W: Array) -> float:
        """An upper estimate of ``||A||_2^2`` (the map on one sample): the top eigenvalue of ``A^T A`` by Lanczos
        (ARPACK, on the CPU in float64) times ``1.01``.

        The map acts on each sample alike, so one sample's operator is all there is. Lanczos, not the power
        iteration: a convolution's top singular values cluster, where the power iteration stalls 1% low. The
        solvers that use this as a Lipschitz constant stop on certificates, so a rare underestimate would cost
        iterations, never accuracy.
        """
        from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

        Wd = (W.detach().to("cpu", torch.float64) if _is_torch(W) else
              torch.as_tensor(np.asarray(W, dtype=float)))
        if not bool(torch.isfinite(Wd).all()):  # ARPACK would fail inside LAPACK with no word of W
            raise DomainError(f"W: expected finite kernel values for the norm of layer {self.describe()}, got "
                              f"{int((~torch.isfinite(Wd)).sum())} NaN/inf entries")
        if not bool(Wd.any()):
            return 0.0
        if self.n_in <= 2:  # ARPACK needs k < n: the matrix itself is tiny
            return float(np.linalg.norm(self.matrix(Wd), 2) ** 2) * 1.01

        def gram(v: np.ndarray) -> np.ndarray:
            x = torch.as_tensor(np.asarray(v, dtype=float).reshape(-1, 1))
            return self.adjoint(Wd, self.apply(Wd, None, x)).numpy().ravel()

        op = LinearOperator((self.n_in, self.n_in), matvec=gram, dtype=float)
        v0 = np.random.default_rng(12345).standard_normal(self.n_in)
        try:
            top = float(eigsh(op, k=1, which="LA", tol=1e-8, v0=v0, return_eigenvectors=False)[0])
        except ArpackNoConvergence as exc:  # keep the best estimate found; the certificate still decides
            top = float(np.max(exc.eigenvalues)) if len(exc.eigenvalues) else float(gram(v0) @ v0 / (v0 @ v0))
        return top * 1.01

    def matrix(self, W: Array) -> np.ndarray:
        """The explicit ``(n_out, n_in)`` matrix of ``X -> A(X; W)`` (float64 numpy; meant for tiny images)."""
        Wn = W.detach().to("cpu", torch.float64).numpy() if _is_torch(W) else np.asarray(W, dtype=float)
        if self.is_plain_dense:
            return Wn.copy()
        return np.ascontiguousarray(self.apply(Wn, None, np.eye(self.n_in)))

    def bias_rows(self, b: Array | None) -> Array | None:
        """The bias as one entry per output feature ``(n_out,)`` (a conv bias repeated over positions)."""
        if b is None or self.kind == "dense":
            return b
        if _is_torch(b):
            return b.repeat_interleave(self.positions)
        return np.repeat(np.asarray(b, dtype=float), self.positions)

    # -- the map for fixed X (W-updates) ------------------------------------------------------------------------
    def patches(self, X: Array) -> Array:
        """The columns the weights act on: ``A(X; W) = W_mat @ patches(X)`` arranged by :meth:`arrange`.

        Dense: the (pooled, flattened) input, ``(p_in, m)``. Conv: the ``C_in k^2`` patches of ``Pool(X)``, one
        column per sample and output position, ``(C_in k^2, m * H_out W_out)`` (sample-major).
        """
        check_layer_shape(X, "X", self, "in")
        if self.is_plain_dense:
            return X
        back, (Xt,) = _to_torch(X)
        m = Xt.shape[1]
        if self.kind == "dense":
            return back(self._pooled_images(Xt, 0, m).flatten(1).T.contiguous())
        P = Xt.new_empty(self.patch_size, m, self.positions)
        for s, e in self._sample_chunks(Xt, copy_only=True):
            cols = F.unfold(self._pooled_images(Xt, s, e), self.kernel, padding=self.padding, stride=self.stride)
            P[:, s:e] = cols.permute(1, 0, 2)
        return back(P.view(self.patch_size, m * self.positions))

    def weight_gradient(self, X: Array, R: Array) -> Array:
        """The gradient of ``<R, A(X; W)>`` in ``weight_matrix(W)``: ``arrange(R) @ patches(X).T``.

        A convolution's is computed as its weight gradient (``conv2d_weight``), chunk by chunk
        (:meth:`_sample_chunks`), without the patch matrix -- ``C_in k^2`` times the batch, which a running W-step
        would otherwise build every batch for this one product. The sums run in another order than the product's:
        equal to it up to round-off.

        Parameters
        ----------
        X : array or Tensor, shape (n_in, m)
            The layer's inputs, one sample per column.
        R : array or Tensor, shape (n_out, m)
            A weight per output feature and sample (in a W-step, ``lam (phi(U) - X_next)``).

        Returns
        -------
        array or Tensor, shape (C_out, C_in k^2) (dense: (p_out, p_in)), float64
            Of the inputs' kind, on their device.

        Raises
        ------
        ShapeError
            ``X`` or ``R`` not of the layer's shapes.
        """
        check_layer_shape(X, "X", self, "in")
        check_layer_shape(R, "R", self, "out")
        back, (Xt, Rt) = _to_torch(X, R)
        if self.kind == "dense":
            return back((Rt @ self.patches(Xt).T).to(torch.float64))
        G = torch.zeros(self.weight_shape, dtype=torch.float64, device=Xt.device)
        for s, e in self._sample_chunks(Xt):
            G += torch.nn.grad.conv2d_weight(self._pooled_images(Xt, s, e), self.weight_shape,
                                             self._images(Rt, s, e, self.out_shape), stride=self.stride,
                                             padding=self.padding)
        return back(G.reshape(self.weight_shape[0], -1))

    def arrange(self, V: Array | None) -> Array | None:
        """Output-side matrix ``(n_out, m)`` in the columns of :meth:`patches`: ``(C_out, m * positions)``
        (``None`` stays ``None``)."""
        if V is None:  # no targets (the last W-update's callers pass their X_next through)
            return None
        check_layer_shape(V, "V", self, "out")
        if self.kind == "dense":
            return V
        back, (Vt,) = _to_torch(V)
        m = Vt.shape[1]
        c = self.out_shape[0]
        return back(Vt.T.reshape(m, c, self.positions).permute(1, 0, 2).reshape(c, m * self.positions).contiguous())

    def weight_matrix(self, W: Array) -> Array:
        """The kernel as the ``(C_out, C_in k^2)`` matrix acting on :meth:`patches` (dense: ``W`` itself)."""
        return W if self.kind == "dense" else W.reshape(W.shape[0], -1)

    def weight_from_matrix(self, Wm: Array) -> Array:
        """Inverse of :meth:`weight_matrix`."""
        return Wm if self.kind == "dense" else Wm.reshape(self.weight_shape)

    # -- argument checks (cheap: shapes only; values are the solvers' business) ---------------------------------
    def _check_weights(self, W: Array, b: Array | None, **data: Array) -> None:
        """Shapes of ``W`` and ``b``; and ``W``, ``b`` and ``data`` all numpy or all torch of one dtype."""
        check_layer_shape(W, "W", self, "weight")
        if b is not None:
            check_layer_shape(b, "b", self, "bias")
        given = {k: v for k, v in {"W": W, "b": b, **data}.items() if v is not None}
        torchy = {_is_torch(v) for v in given.values()}
        if len(torchy) > 1 or (torchy == {True} and len({v.dtype for v in given.values()}) > 1):
            kinds = ", ".join(f"{k} " + (f"tensor {str(v.dtype).removeprefix('torch.')}" if _is_torch(v) else
                                         "numpy array") for k, v in given.items())
            raise TensorMismatchError(f"{', '.join(given)}: expected all numpy arrays or all torch tensors of one "
                                      f"dtype, got {kinds}")

    def _by_chunks(self, X: torch.Tensor, rows: int, piece: Any, *weights: torch.Tensor | None) -> torch.Tensor:
        """The ``(rows, m)`` matrix whose columns ``[s, e)`` are ``piece(s, e).T`` over :meth:`_sample_chunks`.

        Without autograd the pieces are written into one array (contiguous: the solvers' passes over it run
        faster). Where autograd records (the backprop baselines' forward pass), they are concatenated -- whose
        backward hands each piece a view of its gradient, where writes into one array would copy the whole
        gradient once per piece -- and the answer is the transposed view, as torch's own layout gives it.
        """
        chunks = self._sample_chunks(X)
        if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (X, *weights)):
            return torch.cat([piece(s, e) for s, e in chunks]).T
        out = X.new_empty(rows, X.shape[1])
        for s, e in chunks:
            out[:, s:e] = piece(s, e).T
        return out

    def _sample_chunks(self, X: torch.Tensor, copy_only: bool = False) -> list[tuple[int, int]]:
        """Column ranges ``[s, e)`` of a ``(features, m)`` matrix to convolve one after the other.

        In float64 on the CPU (no oneDNN kernel) torch convolves a batch through one im2col buffer of ``C_in k^2 x
        H_out W_out`` entries per sample; for a whole batch it is tens of MB, which the allocator maps fresh (page
        faults on every touch) at each call and which no cache holds -- that made ``conv2d`` on a batch of 500
        four to six times slower than the same samples in chunks whose buffer stays within
        :data:`CONV_WORKSPACE`. Each sample's result is the same to the bit either way (its own im2col and GEMM;
        ``tests/test_layers.py`` checks it). Other dtypes and devices take the batch at once: their kernels
        (oneDNN, cuDNN) need no buffer of that size, and their results may depend on the batch's size --
        except with ``copy_only``, for work that only moves entries (:meth:`patches`' im2col), chunked on the CPU
        in every dtype.
        """
        m = X.shape[1]
        if X.device.type != "cpu" or (X.dtype != torch.float64 and not copy_only) or m == 0:
            return [(0, m)]
        per_sample = self.patch_size * self.positions * X.element_size()
        step = max(1, CONV_WORKSPACE // per_sample)
        return [(s, min(m, s + step)) for s in range(0, m, step)]

    @staticmethod
    def _images(X: torch.Tensor, s: int, e: int, shape: tuple) -> torch.Tensor:
        """Columns ``[s, e)`` of a ``(features, m)`` matrix as ``(e - s, *shape)`` images (C order)."""
        return X[:, s:e].T.reshape(e - s, *shape)

    def _pooled_images(self, X: torch.Tensor, s: int, e: int) -> torch.Tensor:
        """Columns ``[s, e)`` of the input matrix ``X`` ``(n_in, m)`` as pooled images ``(e - s, *pooled_shape)``."""
        return self._pool(self._images(X, s, e, self.in_shape))

    # -- pooling and its adjoint --------------------------------------------------------------------------------
    def _pool(self, Z: torch.Tensor) -> torch.Tensor:
        """Average pooling of ``Z`` ``(n, C, H, W)`` in ``r x r`` windows (rows and columns past the last whole
        window dropped): the window's entries summed in row order, then divided by ``r^2`` -- ``avg_pool2d``'s
        arithmetic to the bit, as ``r^2`` strided sums, which run two to three times faster on the CPU."""
        r = self.pool
        if r == 1:
            return Z
        h, w = self.pooled_shape[1:]
        # a copy always (a view could alias Z), laid out as avg_pool2d lays out its answer: the GEMM after reads it
        out = Z[:, :, 0:h * r:r, 0:w * r:r].clone(memory_format=torch.contiguous_format)
        for i in range(r):
            for j in range(r):
                if i or j:
                    out.add_(Z[:, :, i:h * r:r, j:w * r:r])
        return out.div_(r * r)

    def _unpool(self, Z: torch.Tensor) -> torch.Tensor:
        """Adjoint of average pooling: spread each value evenly over its window (rows a window misses get 0)."""
        r = self.pool
        if r == 1:
            return Z
        (h, w), (H, W_) = self.pooled_shape[1:], self.in_shape[1:]
        share = Z / (r * r)
        out = (Z.new_empty if (h * r, w * r) == (H, W_) else Z.new_zeros)(Z.shape[0], Z.shape[1], H, W_)
        for i in range(r):
            for j in range(r):
                out[:, :, i:h * r:r, j:w * r:r] = share
        return out


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


def _to_torch(*arrays: Array) -> tuple[Any, tuple]:
    """Torch views of the arrays (numpy in float64) and a function that converts a result back."""
    if any(_is_torch(a) for a in arrays if a is not None):
        return (lambda t: t), arrays
    return ((lambda t: t.numpy()),
            tuple(None if a is None else torch.as_tensor(np.asarray(a, dtype=float)) for a in arrays))


# -- building layers from a spec ------------------------------------------------------------------------------


def parse_arch(spec: str | Sequence[int] | Sequence[Layer], in_shape: Sequence[int] | None = None) -> list[Layer]:
    """Layers from an architecture spec.

    Parameters
    ----------
    spec : str, sequence of int, or sequence of Layer
        ``"784-300-10"`` or ``[784, 300, 10]`` (dense; the first entry is the input size), a conv spec such as
        ``"1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10"`` (see the module docstring), ``"lenet5"`` (needs
        ``in_shape``; 10 classes unless the spec reads ``"lenet5:N"``), or layers already built (checked).
    in_shape : sequence of int, optional
        The input's shape, ``(n,)`` or ``(C, H, W)``, when the spec does not start with it.

    Returns
    -------
    list of Layer
        ``L + 1`` layers; the last one is dense (the output layer).

    Raises
    ------
    ShapeError
        A token that is not a layer, sizes that do not chain (a kernel larger than its padded input, pooling
        that leaves no pixel), a convolution after a dense layer, or an output layer that is not dense.
    """
    if isinstance(spec, (list, tuple)) and spec and all(isinstance(x, Layer) for x in spec):
        layers = list(spec)
        for l, (a, b) in enumerate(zip(layers[:-1], layers[1:], strict=True)):
            if a.out_shape != b.in_shape:
                raise ShapeError(f"layers[{l + 1}]: expected input shape {a.out_shape} (the output of layers[{l}]), "
                                 f"got {b.in_shape}")
        _check_output(layers)
        return layers
    if isinstance(spec, str):
        text = spec.strip().lower()
        if text.startswith("lenet5"):
            lenet = re.fullmatch(r"lenet5(?::(\d+))?", text)
            if lenet is None:
                raise ShapeError(f"arch: expected 'lenet5' or 'lenet5:N' (N classes), got {spec!r}")
            classes = int(lenet[1] or 10)
            if in_shape is None:
                raise ShapeError("arch: 'lenet5' needs the input shape (C, H, W); pass in_shape or write the full "
                                 "spec, e.g. 1x28x28-c6k5p2-a2c16k5-a2f120-f84-f10")
            return lenet5(in_shape, classes)
        tokens = [t for t in re.split(r"[-\s]+", text) if t]
    else:
        try:
            if any(isinstance(t, bool) or int(t) != t for t in spec):  # 784.9 is not a size: no silent rounding
                raise TypeError
            tokens = [str(int(t)) for t in spec]
        except (TypeError, ValueError):
            raise ShapeError(f"arch: expected layer sizes [n, p_1, ..., p] or a spec string, got {spec!r}") from None
    if tokens and re.fullmatch(r"\d+(x\d+){0,2}", tokens[0]):  # a spec that starts with its input shape
        given = tuple(int(s) for s in tokens[0].split("x"))
        images = in_shape is not None and len(given) == 3 and len(in_shape) == 3
        if in_shape is not None and (math.prod(given) != math.prod(in_shape) or
                                     (images and given != tuple(in_shape))):
            # images must agree axis by axis: 4x14x14 has MNIST's 784 pixels but would read them as 4 channels
            raise ShapeError(f"arch: the spec starts with the input shape {'x'.join(map(str, given))}, but the data "
                             f"have shape {'x'.join(map(str, in_shape))}")
        in_shape = tuple(in_shape) if in_shape is not None and len(in_shape) == 3 and len(given) == 1 else given
        tokens = tokens[1:]
    if in_shape is None:
        raise ShapeError(f"arch: expected an input shape first (e.g. 784 or 1x28x28), got {spec!r}")
    if not tokens:
        raise ShapeError(f"arch: expected at least one layer after the input shape, got {spec!r}")
    try:
        ok = all(not isinstance(s, bool) and int(s) == s for s in in_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ShapeError(f"in_shape: expected (n,) or (C, H, W) of ints, got {tuple(in_shape)!r}")
    return build_layers(tuple(int(s) for s in in_shape), tokens)


def build_layers(in_shape: tuple, tokens: Sequence[str]) -> list[Layer]:
    """Layers from an input shape and spec tokens (``"c6k5p2"``, ``"a2f120"``, ``"10"``); see :func:`parse_arch`."""
    if len(in_shape) not in (1, 3) or any(s < 1 for s in in_shape):
        raise ShapeError(f"arch: expected an input shape (n,) or (C, H, W) of positive sizes, got {in_shape}")
    layers: list[Layer] = []
    shape = tuple(in_shape)
    for i, tok in enumerate(tokens):
        mt = LAYER_TOKEN.match(tok)
        if mt is None:
            raise ShapeError(f"arch: layer token {i + 1} {tok!r} is not a layer; expected cCkK[sS][pP] (conv), fN or "
                             "N (dense), optionally prefixed by aR (average pooling), e.g. a2c16k5")
        pool = int(mt["pool"] or 1)
        if pool < 1:
            raise ShapeError(f"arch: layer token {i + 1} {tok!r}: the pooling window must be >= 1")
        pooled = shape
        if pool > 1:
            if len(shape) != 3:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r} pools a vector input of shape {shape}; pooling "
                                 "needs an image (C, H, W)")
            pooled = (shape[0], shape[1] // pool, shape[2] // pool)
            if pooled[1] < 1 or pooled[2] < 1:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r}: pooling {shape} in {pool}x{pool} windows leaves "
                                 "no pixel")
        if mt["conv"]:
            if len(shape) != 3:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r} is a convolution after a vector of shape "
                                 f"{shape}; convolutions need an image (C, H, W)")
            ch, k, s, p = int(mt["ch"]), int(mt["k"]), int(mt["s"] or 1), int(mt["p"] or 0)
            if ch < 1 or k < 1 or s < 1:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r}: channels, kernel and stride must be >= 1")
            h = (pooled[1] + 2 * p - k) // s + 1
            w = (pooled[2] + 2 * p - k) // s + 1
            if h < 1 or w < 1:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r}: a {k}x{k} kernel does not fit the input "
                                 f"{pooled[1]}x{pooled[2]} with padding {p}")
            layer = Layer("conv", shape, (ch, h, w), pool, k, s, p, _pooled=pooled if pool > 1 else ())
        else:
            n = int(mt["dense"])
            if n < 1:
                raise ShapeError(f"arch: layer token {i + 1} {tok!r}: a dense layer needs >= 1 output")
            layer = Layer("dense", shape, (n,), pool, _pooled=pooled if pool > 1 else ())
        layers.append(layer)
        shape = layer.out_shape
    _check_output(layers)
    return layers


def _check_output(layers: list[Layer]) -> None:
    if not layers or layers[-1].kind != "dense":
        got = layers[-1].describe() if layers else "none"
        raise ShapeError(f"arch: the output layer must be dense (fN: one score per class), got {got}")


def lenet5(in_shape: Sequence[int], classes: int = 10) -> list[Layer]:
    """LeNet-5 as the paper trains it: conv 6@5x5, ReLU, average pool 2, conv 16@5x5, ReLU, average pool 2,
    fc 120, fc 84, fc ``classes``.

    The official code zero-pads 28x28 MNIST to 32x32; padding the first convolution by 2 is the same map (the
    network sees the same numbers), so MNIST keeps its 28x28 images.

    Parameters
    ----------
    in_shape : (C, H, W)
        E.g. ``(1, 28, 28)`` (MNIST) or ``(3, 32, 32)`` (CIFAR-10); images smaller than 32x32 get padding.
    classes : int

    Raises
    ------
    ShapeError
        Not an image shape.
    ValueRangeError
        ``classes < 1``.
    """
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 3:
        raise ShapeError(f"in_shape: LeNet-5 takes images (C, H, W), got {shape}")
    if classes < 1:
        raise ValueRangeError(f"classes: expected >= 1, got {classes}")
    pad = max(0, (32 - min(shape[1:])) // 2)
    first = f"c6k5p{pad}" if pad else "c6k5"
    return build_layers(shape, [first, "a2c16k5", "a2f120", "f84", f"f{classes}"])
