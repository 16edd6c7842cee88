r"""Lau, Zeng, Wu and Yao (2018): proximal block coordinate descent on the 3-splitting of a ReLU network.

The peer "Lau et al." of the paper's Fig. 1 (784-300-10, MSE, full batch; final test accuracy 0.914 there), run
as the public code runs it (the Fenchel paper's section 5.1 kept the code's hyperparameters):
``deeplearning-math/bcd_dnn``, ``Matlab/bcd_dnn_mlp_mnist_jinshan.m`` ("Jinshan's algorithm") with
``Matlab/Algorithms/updateV_js.m``, ``updateWb_js.m`` and ``Matlab/Tools/relu_prox.m``. The formulas below are
written from that code and checked against it update by update (commit ``01b5c7e``); they cite no equation
numbers of Lau et al. (2018).

Model
-----
Layers are indexed as in the rest of the toolkit, ``l = 0..L`` (the code's ``i = l + 1``, ``N = L + 1``), with
``V_{-1} = X_0`` the inputs. Every layer has a pre-activation ``U_l`` and an activation ``V_l`` ``(p_{l+1}, m)``,
both auxiliary variables of the whole training set; ``V_L`` is the lifted output. The objective is

.. math::

    J = \tfrac12 \|V_L - Y\|_F^2
        + \tfrac\gamma2 \sum_{l<L} \|V_l - \mathrm{relu}(U_l)\|_F^2 + \tfrac\gamma2 \|V_L - U_L\|_F^2
        + \tfrac\rho2 \sum_{l=0}^{L} \|U_l - W_l V_{l-1} - b_l 1^T\|_F^2 + \sum_{l=0}^{L} r_l \|W_l\|_F^2

with ``gamma = settings.lau_gamma``, ``rho = settings.lau_rho`` and ``r_l`` the ridge weights ``settings.rho``
(the Fenchel paper's eq. 3 convention; zero unless asked, as in the code, which has none). ``penalty`` is the middle
line (the coupling terms), so ``J = loss + penalty + regularization`` as for Fenchel BCD.

**Loss scale.** ``J`` carries the code's ``1/2 ||V_L - Y||^2``; the history's ``train_loss``/``test_loss`` and
``primal`` columns are the toolkit's MSE, ``||Y - Yhat||_F^2`` of the feed-forward outputs *without* the 1/2
(per sample for the losses, summed for ``primal``), the same columns as every other method.

Algorithm (one iteration = one epoch, full batch)
-------------------------------------------------
Backward over the layers, each block minimized with the newest values of the others, ``alpha`` =
``settings.lau_alpha`` weighting a proximal term ``alpha/2 ||. - previous||^2`` where the code has one,
``A_l = W_l V_{l-1} + b_l 1^T`` at the block's current values:

1. ``V_L = (Y + gamma U_L + alpha V_L) / (1 + gamma + alpha)`` (the code's ``alpha1``, equal to ``alpha``).
2. ``U_L = (gamma V_L + rho A_L) / (gamma + rho)``: no proximal term.
3. ``(W_L, b_L)``, a Jacobi pair (both from the previous ``W_L, b_L``):
   ``W_L <- W_L + (rho (U_L - A_L) V_{L-1}^T - 2 r_L W_L) (rho V_{L-1} V_{L-1}^T + (alpha + 2 r_L) I)^{-1}``,
   ``b_L <- b_L + rho (U_L - A_L) 1 / (rho m + alpha)``; the code's ``(alpha W + rho (U - b) V^T) /
   (alpha I + rho V V^T)`` and ``(alpha b + rho sum(U - W V, 2)) / (rho m + alpha)``, rewritten as increments.
4. For ``l = L-1, ..., 0``:

   * ``V_l = (rho W_{l+1}^T W_{l+1} + gamma I)^{-1} (rho W_{l+1}^T (U_{l+1} - b_{l+1} 1^T) + gamma relu(U_l))``:
     no proximal term;
   * ``U_l = relu_prox(V_l, (rho A_l + alpha U_l) / (rho + alpha); gamma, rho + alpha)`` (:func:`relu_prox`): the
     exact minimizer of ``gamma/2 ||V_l - relu(U)||^2 + rho/2 ||U - A_l||^2 + alpha/2 ||U - U_l||^2``;
   * ``(W_l, b_l)`` as in step 3 with ``U_l`` and ``V_{l-1}`` (``X_0`` for ``l = 0``).

The initial auxiliary variables are the feed-forward pass of the initial weights (``U_l = A_l``,
``V_l = relu(U_l)``, ``V_L = U_L``), as in the code. Linear systems are solved by Cholesky in float64
(``torch.linalg``), batched over the samples; ``X_0 X_0^T`` is computed once per training set.

**Descent.** Every block but the ``(W, b)`` pair is an exact (proximal) minimization of ``J`` in that block, so
``J`` does not rise. The pair is one Jacobi step on the convex quadratic ``J(W_l, b_l)`` preconditioned by the
block diagonal of its Hessian plus ``alpha I``; since ``H <= 2 blockdiag(H)`` for any two-block PSD ``H``, that
step does not raise ``J`` either (it is not, however, the exact minimizer of the pair).

Where the code departs from a plain proximal BCD
------------------------------------------------
(Points to compare with Lau et al.'s own statement of the algorithm.)

* ``W_l`` and ``b_l`` are updated together from the previous pair (Jacobi), not ``b_l`` after ``W_l``
  (Gauss-Seidel); kept here, since it is what produced the published numbers.
* Only ``V_L``, the hidden ``U_l`` and ``(W_l, b_l)`` get a proximal term; ``U_L`` and the hidden ``V_l`` (strongly
  convex blocks) get none.
* The code prints ``gamma/2 ||V_N - Y||^2`` as its squared loss while its ``V_N``-update minimizes
  ``1/2 ||V_N - Y||^2``; ``J`` here follows the update (they agree at the default ``gamma = 1``).
* The code's MNIST script trains 784-2048-2048-2048-10; Fig. 1 (and the network handed in) is 784-300-10.

**Initialization.** By default (``settings.lau_init = "code"``) the trainer starts from the code's initial weights,
``W_l = 0.01 randn``, ``b_l = 0.1`` (:func:`code_initialization`, seeded with ``settings.seed``), not from the
network's own (Glorot-uniform weights, zero biases); ``lau_init="network"`` keeps the network's. On full MNIST
(784-300-10, default settings, float64, 50 iterations) the code's initialization reaches 0.909 test accuracy, the
network's 0.863 (0.187 after the first iteration against 0.878; docs/benchmarks.md, "Fig. 1"). The default
follows the code, whose numbers Fig. 1 reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..trainer import affine
from ._base import PeerState, PeerTrainer

#: The math below (``relu_prox``, ``lau_objective``, ``code_initialization``) is :class:`LauBCD`'s, called on data
#: it has checked; those functions check nothing themselves and are not part of the public API.
__all__ = ["LauBCD", "LauState"]

#: Initial weights :class:`LauBCD` can start from.
#: Block names, in the order of one iteration within a layer (``state.last["blocks"]``, ``block_hook``).
BLOCKS = ("V", "U", "Wb")


# -- the math --------------------------------------------------------------------------------------------------
def relu_prox(V: torch.Tensor, C: torch.Tensor, gamma: float, kappa: float) -> torch.Tensor:
    r"""Elementwise ``argmin_U gamma/2 (V - relu(U))^2 + kappa/2 (U - C)^2``: the hidden ``U_l``-update.

    The objective is a convex quadratic on each half-line; the minimizer is the better of the two half-line
    minimizers,

    * ``u >= 0``: ``u+ = max((gamma V + kappa C) / (gamma + kappa), 0)``;
    * ``u <= 0``: ``u- = min(C, 0)`` (there ``relu(u) = 0``, so only ``kappa/2 (u - C)^2`` depends on ``u``),

    taking ``u-`` on a tie (where the code's ``relu_prox.m`` does). With ``kappa = rho + alpha`` and
    ``C = (rho A + alpha U_prev) / (rho + alpha)`` it is the code's ``relu_prox(V, C, (rho + alpha) / gamma)``.

    Parameters
    ----------
    V, C : Tensor, shape (p, m)
        Target activations and the quadratic's centre (same shape, dtype and device).
    gamma, kappa : float
        Positive weights.

    Returns
    -------
    Tensor, shape (p, m)
    """
    u_pos = ((gamma * V + kappa * C) / (gamma + kappa)).clamp_min(0.0)
    u_neg = C.clamp_max(0.0)
    f_pos = gamma * (V - u_pos).square() + kappa * (u_pos - C).square()
    f_neg = gamma * V.square() + kappa * (u_neg - C).square()
    return torch.where(f_pos < f_neg, u_pos, u_neg)


def lau_objective(W: list, b: list, U: list, V: list, X0: torch.Tensor, Y: torch.Tensor, *, gamma: float,
                  rho: float, ridge: list | None = None) -> dict:
    r"""The 3-splitting objective ``J`` of Lau et al. (see the module docstring) and its parts, as 0-dim tensors.

    Parameters
    ----------
    W, b : list of Tensor
        ``L+1`` weights ``(p_{l+1}, p_l)`` and biases ``(p_{l+1},)``.
    U, V : list of Tensor
        ``L+1`` pre-activations and activations ``(p_{l+1}, m)``; ``V[L]`` is the lifted output.
    X0 : Tensor, shape (n, m)
        Inputs (``V_{-1}``).
    Y : Tensor, shape (p, m)
        Targets.
    gamma, rho : float
        Weights of the activation and the affine coupling terms.
    ridge : list of float, optional
        ``r_l`` of ``sum r_l ||W_l||_F^2``; ``None``: no ridge term.

    Returns
    -------
    dict
        ``loss`` (``1/2 ||V_L - Y||^2``), ``penalty`` (the gamma and rho terms), ``regularization`` and ``total``
        (``J``), each a 0-dim tensor (differentiable in its inputs).
    """
    L = len(W) - 1
    loss = 0.5 * (V[L] - Y).square().sum()
    act = sum((V[l] - U[l].clamp_min(0.0)).square().sum() for l in range(L)) + (V[L] - U[L]).square().sum()
    aff = sum((U[l] - affine(W[l], b[l], V[l - 1] if l > 0 else X0)).square().sum() for l in range(L + 1))
    penalty = 0.5 * gamma * act + 0.5 * rho * aff
    reg = sum(float(r) * (w * w).sum() for r, w in zip(ridge, W, strict=True)) if ridge else torch.zeros_like(loss)
    reg = torch.as_tensor(reg, dtype=loss.dtype, device=loss.device)
    return {"loss": loss, "penalty": penalty, "regularization": reg, "total": loss + penalty + reg}


def _spd_solve(G: torch.Tensor, R: torch.Tensor) -> torch.Tensor:
    """``G^{-1} R`` for a symmetric positive semidefinite ``G`` ``(p, p)`` and ``R`` ``(p, k)``, in float64.

    Cholesky when ``G`` is positive definite; otherwise (``alpha = 0`` with a rank-deficient Gram matrix) the
    least-norm solution through the eigendecomposition, which is still an exact minimizer of the block.
    """
    dt = R.dtype
    G64, R64 = G.to(torch.float64), R.to(torch.float64)
    chol, info = torch.linalg.cholesky_ex(G64)
    if int(info) == 0:
        return torch.cholesky_solve(R64, chol).to(dt)
    lam, Q = torch.linalg.eigh(G64)
    keep = lam > lam.abs().max() * G.shape[0] * torch.finfo(torch.float64).eps
    inv = torch.where(keep, 1.0 / torch.where(keep, lam, torch.ones_like(lam)), torch.zeros_like(lam))
    return (Q @ (inv[:, None] * (Q.T @ R64))).to(dt)


def code_initialization(network: Any, seed: int = 0) -> Any:
    """A copy of ``network`` with the code's initial weights: ``W_l = 0.01 randn``, ``b_l = 0.1`` (all layers).

    ``bcd_dnn_mlp_mnist_jinshan.m`` draws them with Matlab's ``randn``; here numpy's ``default_rng(seed)``, so
    the distribution is the code's, not its numbers.

    Parameters
    ----------
    network : LiftedNetwork
        Dense network (not modified).
    seed : int
        Seed of the draw.

    Returns
    -------
    LiftedNetwork
    """
    rng = np.random.default_rng(seed)
    net = network.copy()
    net.set_weights([0.01 * rng.standard_normal(w.shape) for w in network.W],
                    [np.full(v.shape, 0.1) for v in network.b])
    return net


# -- state and trainer -----------------------------------------------------------------------------------------
@dataclass
class LauState(PeerState):
    """A Lau et al. run's state: :class:`~fenchel_cvx.peers._base.PeerState` with ``aux = {"U": [...], "V": [...]}``.

    Attributes
    ----------
    aux : dict
        ``"U"`` and ``"V"``: ``L+1`` pre-activations and activations ``(p_{l+1}, m)`` of the whole training set;
        ``aux["V"][L]`` is the lifted output.

    ``last`` holds ``dW`` (``||W_l^k - W_l^{k-1}||_F`` per layer, the code's "speed of learning") and, when the
    trainer records blocks, ``J0`` (``J`` before the iteration) and ``blocks`` (``block``, ``layer`` and ``J``
    after each block update, in update order).
    """

    KIND: ClassVar[str] = "fenchel_lau_bcd_state"
    LABEL: ClassVar[str] = "Lau et al. proximal BCD"


class LauBCD(PeerTrainer):
    """Lau et al. (2018) proximal BCD on the 3-splitting (``--method lau-bcd``), as the public code runs it.

    Parameters
    ----------
    network : LiftedNetwork
        Dense layers, ReLU hidden activations, MSE loss; not modified (its weights are the initial ``W, b`` only
        with ``settings.lau_init = "network"``).
    settings : PeerSettings, optional
        ``model="lau-bcd"``, ``batch_size=None``; ``lau_gamma``, ``lau_rho``, ``lau_alpha`` (defaults 1, 1, 1e-2:
        the code's), ``lau_init`` (default the code's initial weights; see the module docstring for why) and the
        ridge ``rho`` (default none).
    record_blocks : bool, default False
        Record ``J`` after every block update in ``state.last["blocks"]`` (one evaluation of ``J`` per block).

    Attributes
    ----------
    block_hook : callable(state, block, layer) or None
        Called after every block update with the state, the block's name (``"V"``, ``"U"`` or ``"Wb"``) and
        its layer ``l``; for inspection and tests. ``None`` by default.

    Examples
    --------
    >>> from fenchel_cvx import LiftedNetwork
    >>> from fenchel_cvx.data import load_mnist_subset
    >>> from fenchel_cvx.settings import PeerSettings
    >>> lau = LauBCD(LiftedNetwork([784, 300, 10], "relu", "mse", seed=0),
    ...              PeerSettings(model="lau-bcd", batch_size=None, epochs=3))
    >>> state = lau.run(load_mnist_subset(), progress=False)
    >>> state.history[-1]["train_acc"] > 0.5
    True
    """

    model: ClassVar[str] = "lau-bcd"
    state_class = LauState

    def __init__(self, network: Any, settings: Any = None, *, record_blocks: bool = False):
        super().__init__(network, settings)
        s = self.settings
        if s.lau_init == "code":  # a copy holding the code's weights: what init_state and network_from_state use
            self.network = code_initialization(network, seed=int(s.seed))
        self.gamma, self.rho_pen, self.alpha = float(s.lau_gamma), float(s.lau_rho), float(s.lau_alpha)
        self.record_blocks = bool(record_blocks)
        self.block_hook: Callable[[LauState, str, int], None] | None = None

    # -- the objective -----------------------------------------------------------------------------------------
    def _terms(self, state: LauState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        return lau_objective(state.W, state.b, state.aux["U"], state.aux["V"], X0, T, gamma=self.gamma,
                             rho=self.rho_pen, ridge=self.rho)

    @torch.no_grad()
    def objective_terms(self, state: LauState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """``J`` (module docstring), its ``penalty`` (coupling terms), ``loss`` (``1/2 ||V_L - Y||^2``) and
        ``regularization``, as floats, on ``(X0, T)`` (paper layout, the whole training set)."""
        t = self._terms(state, X0, T)
        return {"J": float(t["total"]), "penalty": float(t["penalty"]), "loss": float(t["loss"]),
                "regularization": float(t["regularization"])}

    # -- the iteration -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def _aux_rows(self) -> dict[str, list[int]]:
        return {"U": self.sizes[1:], "V": self.sizes[1:]}

    def _init_aux(self, state: LauState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        U, V, x = [], [], X0
        for l in range(self.L + 1):
            U.append(affine(state.W[l], state.b[l], x))
            x = U[-1].clamp_min(0.0) if l < self.L else U[-1].clone()
            V.append(x)
        return {"U": U, "V": V}

    @torch.no_grad()
    def _iterate(self, state: LauState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        g, r, a, L = self.gamma, self.rho_pen, self.alpha, self.L
        U, V = state.aux["U"], state.aux["V"]
        blocks: list[dict] = []
        dW = [math.nan] * (L + 1)
        J0 = float(self._terms(state, X0, T)["total"]) if self.record_blocks else math.nan

        def done(name: str, l: int) -> None:
            if self.record_blocks:
                blocks.append({"block": name, "layer": l, "J": float(self._terms(state, X0, T)["total"])})
            if self.block_hook is not None:
                self.block_hook(state, name, l)

        # output layer: V_L, U_L, (W_L, b_L)
        V[L] = (T + g * U[L] + a * V[L]) / (1.0 + g + a)
        done("V", L)
        for l in range(L, -1, -1):
            x = V[l - 1] if l > 0 else X0
            A = affine(state.W[l], state.b[l], x)
            if l == L:
                U[L] = (g * V[L] + r * A) / (g + r)
            else:
                W1 = state.W[l + 1]
                M = r * (W1.T @ W1) + g * torch.eye(W1.shape[1], dtype=W1.dtype, device=W1.device)
                rhs = r * (W1.T @ U[l + 1] - (W1.T @ state.b[l + 1])[:, None]) + g * U[l].clamp_min(0.0)
                V[l] = _spd_solve(M, rhs)
                done("V", l)
                U[l] = relu_prox(V[l], (r * A + a * U[l]) / (r + a), g, r + a)
            done("U", l)
            dW[l] = self._update_Wb(state, l, x, A, X0)
            done("Wb", l)
        last: dict = {"dW": dW}
        if self.record_blocks:
            last.update(J0=J0, blocks=blocks)
        return last

    def _update_Wb(self, state: LauState, l: int, x: torch.Tensor, A: torch.Tensor, X0: torch.Tensor) -> float:
        """The code's Jacobi ``(W_l, b_l)`` update from ``U_l``, the input ``x = V_{l-1}`` and ``A = W_l x + b_l``
        (both at the previous ``W_l, b_l``); returns ``||W_l^new - W_l||_F``."""
        r, a, ridge = self.rho_pen, self.alpha, float(self.rho[l])
        W, b, m = state.W[l], state.b[l], x.shape[1]
        R = state.aux["U"][l] - A  # U_l - W_l x - b_l 1^T
        gram = self._of_training_set(X0, lambda: X0 @ X0.T) if x is X0 else x @ x.T
        G = r * gram + (a + 2.0 * ridge) * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
        rhs = r * (x @ R.T)
        if ridge:
            rhs = rhs - 2.0 * ridge * W.T
        dW = _spd_solve(G, rhs).T
        state.W[l] = W + dW
        state.b[l] = b + r * R.sum(1) / (r * m + a)
        return float(torch.linalg.vector_norm(dW))
