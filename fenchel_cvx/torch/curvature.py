r"""A running estimate of a W-update's curvature bound, for the uncertified ``method="running"`` W-steps.

The majorization-minimization (MM) step of :func:`~fenchel_cvx.torch.w_hidden` / :func:`~fenchel_cvx.torch.w_last`
(``method="mm"``) minimizes a quadratic upper bound of the W-update with the curvature bound

.. math::  M = s\, X_a X_a^\top + \operatorname{diag}(\mu),

``X_a = [X_in; 1^T]`` and ``s`` a bound on the curvature of the data term (``lam sup phi'`` for eq. 19, ``1/2``
for cross-entropy (Boehning), ``2`` for MSE). Forming and factoring ``M`` every batch costs a ``p_a x p_a`` Gram
matrix and a factorization. Consecutive batches of one layer have nearly the same second moment
``X_a X_a^T / m``: :class:`RunningCurvature` keeps a running mean ``S`` of it, refreshed from the batch at hand
every ``every`` batches, and hands ``method="running"`` the preconditioner of

.. math::  \hat M = s\, m\, S + \operatorname{diag}(\mu),

replaced by its rank-``k`` approximation *from above*: the top ``k`` eigenpairs of ``\hat M`` and its
``(k+1)``-th eigenvalue ``sigma`` for the rest (``\tilde M \succeq \hat M``), so applying ``\tilde M^{-1}`` costs
``4 r p_a k`` flops. :func:`hidden_curvature` and :func:`last_curvature` build the estimate of a layer;
the caller calls :meth:`RunningCurvature.observe` once per batch and passes the estimate as ``curvature=``.

Layers: the weights of a convolution (or of a layer after average pooling) act on the input's patches, and its
W-update is the dense one on them (``fenchel_cvx.torch.w_hidden(..., layer=)``). Its estimate lives there too:
build it for ``layer.patch_size`` inputs (``C_in k^2``) and observe ``layer.patches(X_in)`` -- one column per
sample and output position, so ``m`` counts those columns and ``\hat M`` bounds the patch form's curvature.
For a plain dense layer ``layer.patch_size == p_in`` and ``layer.patches(X_in)`` is ``X_in`` itself.

:class:`AdamCurvature` is the other scaling ``method="running"`` takes: Adam's diagonal one. Each step folds the
block's gradient ``G`` into running moments and returns ``lr m_hat / (sqrt(v_hat) + eps)`` (Kingma and Ba's update;
the betas and eps of TensorFlow's and torch's Adam), so each W-block takes one Adam step on its own objective
(19) or (20) per batch. That is how the paper trained LeNet-5 on CIFAR-10 (section 5.3: "one gradient step instead of
solving (19) and (20)"; the authors' code takes it with Adam, rate ``1e-3``). Unlike the MM bound the step is
scale-free: a block whose gradient is tiny (a convolution's, whose X-variables move little) still moves at the
rate ``lr`` -- and no step is promised to lower its block objective.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

from .._checks import check_device, check_finite, check_flag, check_int, check_scalar
from ..activations import Activation, get_activation
from ..errors import CheckpointError, ShapeError, ValueRangeError
from ..losses import CrossEntropyLoss, Loss, get_loss
from ..shards import all_sum, all_sum_float
from ._common import sup_dphi

__all__ = ["AdamCurvature", "RunningCurvature", "adam_curvature", "curvature_from_state_dict", "hidden_curvature",
           "last_curvature"]

_F64 = torch.float64
_RIDGE_REL = 1e-12  # floor of the eigenvalues, relative to the mean diagonal (an all-zero input pixel with mu = 0)


class RunningCurvature:
    r"""Running estimate of a W-update's curvature bound ``M = s X_a X_a^T + diag(mu)`` (``p_a x p_a``).

    Parameters
    ----------
    s : float
        Curvature bound of the data term per unit of ``X_a X_a^T``: ``lam sup phi'`` (hidden layer),
        ``0.5`` (cross-entropy, Boehning), ``2`` (MSE).
    mu : Tensor, shape (p_a,)
        The diagonal of the regularizer's Hessian, ``2(rho + gamma)`` on weights and ``2 gamma`` on the bias.
    bias : bool
        Whether the last coordinate is the bias's (``X_a = [X_in; 1^T]``, ``p_a = p_in + 1``).
    every : int
        Batches between refreshes: :meth:`observe` folds the batch's second moment into ``S`` on its 1st,
        ``every+1``-th, ... call (a Gram matrix and an eigen-decomposition, ``p_a^2 m + O(p_a^3)`` flops).
    rank : int or None
        Eigenpairs kept; ``None`` (or ``>= p_a - 1``) keeps the exact inverse of ``\hat M``.
    decay : float
        ``S`` is the plain mean of the refreshes so far until there are ``1 / (1 - decay)`` of them, then an
        exponential moving average with this decay (a layer's inputs drift as the weights before it train).

    Attributes
    ----------
    S : Tensor, shape (p_a, p_a) or None
        The running mean of ``x_a x_a^T`` (float64); ``None`` before the first :meth:`observe`.
    refreshes : int
        Refreshes folded into ``S``.
    calls : int
        :meth:`observe` calls so far.
    """

    def __init__(self, s: float, mu: torch.Tensor, *, bias: bool = True, every: int = 100, rank: int | None = 64,
                 decay: float = 0.9):
        self.s = check_scalar(s, "s", positive=True)
        if not isinstance(mu, torch.Tensor) or mu.ndim != 1 or not bool(torch.isfinite(mu).all()) or \
                bool((mu < 0).any()):
            raise ValueRangeError(f"mu: expected a 1-D tensor of finite values >= 0, got {mu!r}")
        every = check_int(every, "every", 1, hint="batches between refreshes")
        rank = check_int(rank, "rank", 1, optional=True, hint="eigenpairs kept")
        if isinstance(decay, bool) or not (isinstance(decay, numbers.Real) and 0.0 <= decay < 1.0):
            raise ValueRangeError(f"decay: expected a float in [0, 1), got {decay!r}")
        if not isinstance(bias, bool) or (bias and mu.shape[0] < 1):
            raise ValueRangeError(f"bias: expected True or False (True needs len(mu) >= 1), got {bias!r}")
        self.mu = mu.detach().to(_F64)
        self.bias = bias
        self.every, self.rank, self.decay = every, rank, float(decay)
        self.S: torch.Tensor | None = None
        self.m = 0  # batch size of the last refresh: M_hat is formed for it
        self.refreshes = 0
        self.calls = 0
        self._factor: tuple | None = None

    @property
    def p_a(self) -> int:
        return int(self.mu.shape[0])

    def observe(self, X_in: torch.Tensor | Callable[[], torch.Tensor]) -> bool:
        """Count a batch with inputs ``X_in`` ``(p_in, m)``; refresh ``S`` and the factor when due.

        For a conv or pooled layer pass ``layer.patches(X_in)``, ``(layer.patch_size, m * positions)``: what the
        weights act on (the module docstring). ``X_in`` may also be a function that returns it, called only when a
        refresh is due (a conv layer's patches cost a pass over the batch). Returns whether this call refreshed.
        """
        if callable(X_in):
            if self.calls % self.every != 0:
                self.calls += 1
                return False
            X_in = X_in()
        p_in = self.p_a - int(self.bias)
        if not isinstance(X_in, torch.Tensor) or X_in.ndim != 2 or X_in.shape[0] != p_in or X_in.shape[1] < 1:
            got = tuple(X_in.shape) if isinstance(X_in, torch.Tensor) else type(X_in).__name__
            raise ShapeError(f"X_in: expected the layer's inputs of shape ({p_in}, m), m >= 1, got {got}; for a conv "
                             "or pooled layer observe layer.patches(X_in)")
        due = self.calls % self.every == 0
        self.calls += 1
        if not due:
            return False
        X = X_in.detach().to(_F64)
        check_finite(X, "X_in")
        m = X.shape[1]
        G = X.new_empty(self.p_a, self.p_a)
        torch.mm(X, X.T, out=G[:p_in, :p_in])
        if self.bias:
            G[:p_in, p_in] = G[p_in, :p_in] = X.sum(1)
            G[p_in, p_in] = m
        all_sum(G)  # data-parallel: the second moment of the whole batch
        m = int(all_sum_float(m))
        G /= m
        self.refreshes += 1
        w = max(1.0 / self.refreshes, 1.0 - self.decay)
        self.S = G if self.S is None else torch.lerp(self.S.to(G.device), G, w)
        self.m = m
        self._factor = None
        return True

    def _factored(self) -> tuple:
        """The factor of ``\tilde M`` for the current ``S``, formed on first use after a refresh."""
        if self.S is None:
            raise ValueRangeError("curvature: no batch observed yet; call observe(X_in) before stepping")
        if self._factor is None:
            self._factor = self._factorize()
        return self._factor

    def _factorize(self) -> tuple:
        M = (self.s * self.m) * self.S
        M.diagonal().add_(self.mu.to(M.device))
        M = 0.5 * (M + M.T)
        ev, V = torch.linalg.eigh(M)
        ev, V = ev.flip(0), V.flip(1)  # descending
        floor = _RIDGE_REL * max(float(M.diagonal().mean()), 0.0) or _RIDGE_REL
        ev = ev.clamp_min(floor)
        p = ev.shape[0]
        if self.rank is None or self.rank >= p - 1:
            return ("full", (V / ev) @ V.T)
        k = self.rank
        sigma = float(ev[k])  # the (k+1)-th eigenvalue bounds the rest from above
        return ("lowrank", V[:, :k].contiguous(), 1.0 / ev[:k] - 1.0 / sigma, sigma)

    def precondition(self, G: torch.Tensor, *, scale: float = 1.0, inplace: bool = False) -> torch.Tensor:
        r"""``scale G \tilde M^{-1}`` for rows ``G`` ``(r, p_a)`` (float64).

        ``inplace``: overwrite ``G`` with the answer (the rank-``k`` form then allocates only an ``r x k`` array;
        the exact inverse still needs a new one).
        """
        if G.ndim != 2 or G.shape[1] != self.p_a:
            raise ShapeError(f"G: expected rows of length {self.p_a}, got shape {tuple(G.shape)}")
        f = self._factored()
        if f[0] == "full":
            D = G @ f[1].to(G.device)
            D = D.mul_(scale) if scale != 1.0 else D
            return G.copy_(D) if inplace else D
        # G M~^{-1} = G / sigma + (G V_k) diag(1/ev_k - 1/sigma) V_k^T: one accumulating GEMM, scale folded in
        _, Vk, corr, sigma = f
        Vk, corr = Vk.to(G.device), corr.to(G.device)
        H = (G @ Vk).mul_(corr * scale)
        if inplace:
            return G.addmm_(H, Vk.T, beta=scale / sigma)
        return torch.addmm(G, H, Vk.T, beta=scale / sigma)

    def matrix(self) -> torch.Tensor:
        r"""The matrix ``\tilde M`` the steps use (``p_a x p_a``, float64): for tests and inspection."""
        f = self._factored()
        if f[0] == "full":
            return torch.linalg.inv(f[1])
        _, Vk, corr, sigma = f
        lam_k = 1.0 / (corr + 1.0 / sigma)
        return sigma * torch.eye(self.p_a, dtype=_F64, device=Vk.device) + (Vk * (lam_k - sigma)) @ Vk.T

    def to(self, device: str | torch.device) -> RunningCurvature:
        """A copy of this estimate with its tensors on ``device``."""
        return RunningCurvature.from_state_dict(self.state_dict(), device=device)

    def summary(self) -> dict:
        """What a step's result reports about the estimate: ``refreshes`` and ``rank``."""
        return {"refreshes": self.refreshes, "rank": self.rank}

    # -- checkpoints: plain tensors and numbers ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain CPU tensors, numbers and strings (safe for ``torch.load(weights_only=True)``)."""
        def cpu(t):
            return t.detach().to("cpu").clone() if torch.is_tensor(t) else t
        f = self._factor
        return {"s": self.s, "mu": cpu(self.mu), "bias": self.bias, "every": self.every, "rank": self.rank,
                "decay": self.decay, "S": cpu(self.S), "m": self.m, "refreshes": self.refreshes, "calls": self.calls,
                "factor": None if f is None else [cpu(x) for x in f]}

    @classmethod
    def from_state_dict(cls, d: dict, device: str | torch.device = "cpu") -> RunningCurvature:
        """Rebuild an estimate from :meth:`state_dict` on ``device``.

        Raises
        ------
        CheckpointError
            A dict that is not such a state, or whose entries do not fit together (shapes, counts, a non-finite or
            mis-shaped ``S`` or factor): a damaged estimate would scale every step silently.
        ChoiceError
            An unknown or unavailable ``device``.
        """
        device = check_device(device)
        try:
            rc = cls(d["s"], d["mu"].to(device), bias=d["bias"], every=d["every"], rank=d["rank"], decay=d["decay"])
            S, f = d["S"], d["factor"]
            counts = {k: d[k] for k in ("m", "refreshes", "calls")}
        except (KeyError, TypeError, AttributeError, ValueRangeError) as exc:
            raise CheckpointError(f"curvature: expected a RunningCurvature state dict, got an unreadable one ({exc})"
                                  ) from None
        bad = [k for k, v in counts.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise CheckpointError(f"curvature: expected counts m, refreshes, calls that are integers >= 0, got "
                                  f"{ {k: counts[k] for k in bad} }")
        p = rc.p_a
        if S is not None:
            if not (torch.is_tensor(S) and tuple(S.shape) == (p, p) and S.is_floating_point()
                    and bool(torch.isfinite(S).all())) or counts["m"] < 1 or counts["refreshes"] < 1:
                raise CheckpointError(f"curvature: expected S a finite ({p}, {p}) matrix observed on m >= 1 samples, "
                                      f"got {type(S).__name__} {tuple(getattr(S, 'shape', ()))}, m = {counts['m']}, "
                                      f"refreshes = {counts['refreshes']}")
            rc.S = S.to(device=device, dtype=_F64)
        elif f is not None:
            raise CheckpointError("curvature: a factor without S (no batch observed) is not a state")
        if f is not None:
            rc._factor = _checked_factor(f, p, rc.rank, device)
        rc.m, rc.refreshes, rc.calls = counts["m"], counts["refreshes"], counts["calls"]
        return rc


def _checked_factor(f: Any, p: int, rank: int | None, device: Any) -> tuple:
    """A saved factor (``("full", inverse)`` or ``("lowrank", V_k, corr, sigma)``), checked and moved."""
    def fine(t: Any, shape: tuple) -> bool:
        return torch.is_tensor(t) and tuple(t.shape) == shape and bool(torch.isfinite(t).all())

    kind = f[0] if isinstance(f, (list, tuple)) and f else None
    if kind == "full" and len(f) == 2 and fine(f[1], (p, p)):
        return ("full", f[1].to(device))
    k = rank if rank is not None else -1
    if (kind == "lowrank" and len(f) == 4 and fine(f[1], (p, k)) and fine(f[2], (k,))
            and isinstance(f[3], float) and math.isfinite(f[3]) and f[3] > 0):
        return ("lowrank", f[1].to(device), f[2].to(device), f[3])
    raise CheckpointError(f"curvature: expected a factor ('full', ({p}, {p}) inverse) or ('lowrank', ({p}, {k}) "
                          "vectors, their corrections, sigma > 0), finite, got a damaged one")


# -- estimates for the two W-updates -------------------------------------------------------------------------
def _regularizer(rho: float, gamma: float, bias: bool, p_in: int, device: str | torch.device) -> torch.Tensor:
    """``mu``: ``2(rho + gamma)`` on the weights, ``2 gamma`` on the bias (which ``rho`` does not penalize)."""
    p_in = check_int(p_in, "p_in", 1, hint="the layer's input count")
    bias, device = check_flag(bias, "bias"), check_device(device)
    mu = torch.full((p_in + int(bias),), 2.0 * (rho + gamma), dtype=_F64, device=device)
    if bias:
        mu[p_in] = 2.0 * gamma
    return mu


def hidden_curvature(p_in: int, *, act: str | Activation, lam: float, rho: float, gamma: float, bias: bool = True,
                     device: str | torch.device = "cpu", **kw: Any) -> RunningCurvature:
    """A :class:`RunningCurvature` for eq. (19): ``s = lam sup phi'``, ``mu`` from ``rho`` and ``gamma``.

    Parameters
    ----------
    p_in : int
        Inputs of the layer (``X_in`` has shape ``(p_in, m)``); ``layer.patch_size`` for a conv or pooled layer.
    act, lam, rho, gamma, bias
        As :func:`~fenchel_cvx.torch.w_hidden`.
    device : str or torch.device
        Where the estimate lives.
    **kw
        ``every``, ``rank``, ``decay`` of :class:`RunningCurvature`.

    Raises
    ------
    ValueRangeError
        ``lam <= 0``, ``rho < 0``, ``gamma < 0`` or a bad ``every`` / ``rank`` / ``decay``.
    """
    act = get_activation(act)
    mu = _regularizer(check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True), bias, p_in,
                      device)
    return RunningCurvature(check_scalar(lam, "lam", positive=True) * sup_dphi(act), mu, bias=bias, **kw)


def last_curvature(p_in: int, *, loss: str | Loss, rho: float, gamma: float, bias: bool = True,
                   device: str | torch.device = "cpu", **kw: Any) -> RunningCurvature:
    """A :class:`RunningCurvature` for eq. (20): ``s = 1/2`` (cross-entropy, Boehning's bound) or ``2`` (MSE).

    Parameters
    ----------
    p_in : int
        Inputs of the last layer (``X_L`` has shape ``(p_in, m)``); ``layer.patch_size`` when it pools first.
    loss, rho, gamma, bias
        As :func:`~fenchel_cvx.torch.w_last`.
    device : str or torch.device
        Where the estimate lives.
    **kw
        ``every``, ``rank``, ``decay`` of :class:`RunningCurvature`.

    Raises
    ------
    ValueRangeError
        ``rho < 0``, ``gamma < 0`` or a bad ``every`` / ``rank`` / ``decay``.
    """
    loss = get_loss(loss)
    s = 0.5 if isinstance(loss, CrossEntropyLoss) else 2.0
    mu = _regularizer(check_scalar(rho, "rho", nonneg=True), check_scalar(gamma, "gamma", nonneg=True), bias, p_in,
                      device)
    return RunningCurvature(s, mu, bias=bias, **kw)


# -- Adam's diagonal scaling -------------------------------------------------------------------------------------
class AdamCurvature:
    r"""Adam's running moments of a W-block's gradient: the scaling of ``method="running"`` W-steps that
    ``curvature="adam"`` selects (the module docstring).

    Each :meth:`precondition` call is one Adam step on the rows ``G = [G_W, g_b]`` of the block's gradient:

    .. math::  m \leftarrow \beta_1 m + (1 - \beta_1) G, \quad v \leftarrow \beta_2 v + (1 - \beta_2) G \odot G,
               \quad D = \mathrm{lr}\, \frac{m / (1 - \beta_1^t)}{\sqrt{v / (1 - \beta_2^t)} + \epsilon},

    the same update as ``torch.optim.Adam`` (no weight decay: ``rho`` and ``gamma`` are in ``G``).

    Parameters
    ----------
    p_out : int
        Rows of the block (the layer's outputs; a convolution's output channels).
    p_a : int
        Columns ``p_in + bias`` (``layer.patch_size + bias`` for a conv or pooled layer).
    bias : bool
        Whether the last column is the bias's.
    lr : float
        Step size ``> 0``, no default here: BCD's is ``fenchel_cvx.settings.ADAM_LR`` (the authors' code's
        ``1e-3``), the one home of that value (a face does not import the settings).
    betas : tuple of two floats in [0, 1)
    eps : float
        ``> 0``.

    Attributes
    ----------
    m, v : Tensor, shape (p_out, p_a) or None
        The moments (float64); ``None`` before the first step.
    steps : int
        Steps taken (``t``).
    """

    def __init__(self, p_out: int, p_a: int, *, bias: bool = True, lr: float,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.p_out = check_int(p_out, "p_out", 1, hint="the block's rows")
        p_a = check_int(p_a, "p_a", 1, hint="the block's columns, p_in + bias")
        self._p_a, self.bias = p_a, check_flag(bias, "bias")
        self.lr = check_scalar(lr, "lr", positive=True)
        if (not isinstance(betas, (tuple, list)) or len(betas) != 2
                or not all(isinstance(x, numbers.Real) and not isinstance(x, bool) and 0.0 <= x < 1.0 for x in betas)):
            raise ValueRangeError(f"betas: expected two numbers in [0, 1), got {betas!r}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = check_scalar(eps, "eps", positive=True)
        self.m: torch.Tensor | None = None
        self.v: torch.Tensor | None = None
        self.steps = 0

    @property
    def p_a(self) -> int:
        return self._p_a

    def observe(self, X_in: Any) -> bool:
        """Nothing to observe (the moments follow the gradients); kept so a trainer treats both scalings alike.
        A function ``X_in`` is not called. Returns ``False``."""
        return False

    def precondition(self, G: torch.Tensor, *, scale: float = 1.0, inplace: bool = False) -> torch.Tensor:
        """One Adam step: fold ``G`` ``(p_out, p_a)`` into the moments and return ``scale * D`` (float64).

        ``inplace``: overwrite ``G`` with the answer.
        """
        if G.ndim != 2 or tuple(G.shape) != (self.p_out, self.p_a):
            raise ShapeError(f"G: expected the block's gradient of shape ({self.p_out}, {self.p_a}), got shape "
                             f"{tuple(G.shape)}")
        b1, b2 = self.betas
        if self.m is None:
            self.m = torch.zeros(self.p_out, self.p_a, dtype=_F64, device=G.device)
            self.v = torch.zeros_like(self.m)
        G64 = G.to(_F64)
        self.m.mul_(b1).add_(G64, alpha=1.0 - b1)
        self.v.mul_(b2).addcmul_(G64, G64, value=1.0 - b2)
        self.steps += 1
        # torch.optim.Adam's arithmetic, in its order: m / (1 - b1^t) scaled by lr, over sqrt(v)/sqrt(1 - b2^t) + eps
        denom = (self.v.sqrt() / math.sqrt(1.0 - b2 ** self.steps)).add_(self.eps)
        D = torch.div(self.m, denom).mul_(self.lr / (1.0 - b1 ** self.steps) * scale)
        return G.copy_(D) if inplace else D

    def summary(self) -> dict:
        """What a step's result reports about the scaling: ``adam_steps``."""
        return {"adam_steps": self.steps}

    def to(self, device: str | torch.device) -> AdamCurvature:
        """A copy with its tensors on ``device``."""
        return AdamCurvature.from_state_dict(self.state_dict(), device=device)

    def state_dict(self) -> dict:
        """Plain CPU tensors, numbers and strings (safe for ``torch.load(weights_only=True)``)."""
        def cpu(t):
            return None if t is None else t.detach().to("cpu").clone()
        return {"kind": "adam", "p_out": self.p_out, "p_a": self.p_a, "bias": self.bias, "lr": self.lr,
                "betas": list(self.betas), "eps": self.eps, "m": cpu(self.m), "v": cpu(self.v), "steps": self.steps}

    @classmethod
    def from_state_dict(cls, d: dict, device: str | torch.device = "cpu") -> AdamCurvature:
        """Rebuild from :meth:`state_dict` on ``device``.

        Raises
        ------
        CheckpointError
            A dict that is not such a state, or whose moments do not fit it (shape, non-finite, ``v < 0``, a step
            count that disagrees with their presence).
        """
        device = check_device(device)
        try:
            ad = cls(d["p_out"], d["p_a"], bias=d["bias"], lr=d["lr"], betas=tuple(d["betas"]), eps=d["eps"])
            m, v, steps = d["m"], d["v"], d["steps"]
        except (KeyError, TypeError, ValueRangeError, ShapeError) as exc:
            raise CheckpointError(f"curvature: expected an AdamCurvature state dict, got an unreadable one ({exc})"
                                  ) from None
        shape = (ad.p_out, ad.p_a)

        def fine(t: Any) -> bool:
            return (torch.is_tensor(t) and tuple(t.shape) == shape and t.is_floating_point()
                    and bool(torch.isfinite(t).all()))

        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0 or (steps == 0) != (m is None) \
                or (m is None) != (v is None) or (m is not None and not (fine(m) and fine(v) and bool((v >= 0).all()))):
            raise CheckpointError(f"curvature: expected Adam moments m, v of shape {shape} (finite, v >= 0) after "
                                  f"steps >= 1, or none at step 0; got steps = {steps!r} and a damaged or missing "
                                  "moment")
        if m is not None:
            ad.m, ad.v = m.to(device=device, dtype=_F64), v.to(device=device, dtype=_F64)
        ad.steps = steps
        return ad


def adam_curvature(p_out: int, p_in: int, *, bias: bool = True, lr: float,
                   device: str | torch.device = "cpu") -> AdamCurvature:
    """An :class:`AdamCurvature` for a W-block of ``p_out`` rows on ``p_in`` inputs.

    Parameters
    ----------
    p_out : int
        The block's rows: the layer's outputs (a convolution's output channels, ``W.shape[0]``).
    p_in : int
        Inputs of the layer (``X_in`` has shape ``(p_in, m)``); ``layer.patch_size`` for a conv or pooled layer.
    bias : bool
        Whether the block has a bias column (the moments are ``(p_out, p_in + bias)``).
    lr : float
        Step size ``> 0``.
    device : str or torch.device
        Checked only: the moments are made at the first step, on the gradient's device.

    Raises
    ------
    ValueRangeError
        A bad size, ``bias`` or ``lr``.
    ChoiceError
        An unknown or unavailable ``device``.
    """
    check_device(device)
    p_in = check_int(p_in, "p_in", 1, hint="the layer's input count")
    return AdamCurvature(p_out, p_in + int(check_flag(bias, "bias")), bias=bias, lr=lr)


def curvature_from_state_dict(d: dict, device: str | torch.device = "cpu") -> RunningCurvature | AdamCurvature:
    """:class:`RunningCurvature` or :class:`AdamCurvature` from its ``state_dict()``, by the dict's ``kind``."""
    kind = d.get("kind", "running") if isinstance(d, dict) else None
    if kind == "adam":
        return AdamCurvature.from_state_dict(d, device=device)
    if kind != "running":
        raise CheckpointError(f"curvature: expected a state dict of kind 'adam' or a RunningCurvature's, got kind "
                              f"{kind!r}" if isinstance(d, dict) else f"curvature: expected a state dict, got "
                              f"{type(d).__name__}")
    return RunningCurvature.from_state_dict(d, device=device)
