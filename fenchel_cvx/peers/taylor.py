r"""Taylor et al. (2016), *Training neural networks without gradients: a scalable ADMM approach*, as a peer model.

**The model** (Taylor et al.'s relaxed problem with the multiplier term on the output constraint, in this
toolkit's layout and with its biases). The network has
``L`` hidden ReLU layers and a linear output layer; the hidden layers' pre-activations ``z_l`` and activations
``a_l`` (``l = 1..L``) and the output ``z_{L+1}`` become variables, ``a_0 = X_0`` is the data, and only the output
layer's constraint ``z_{L+1} = W_{L+1} a_L + b_{L+1}`` carries a Lagrange multiplier ``lam``:

.. math::

    J = \ell(z_{L+1}, Y) + \langle \lambda, z_{L+1} \rangle + \beta \|z_{L+1} - W_{L+1} a_L - b_{L+1}\|_F^2
        + \sum_{l=1}^{L} \big[\gamma \|a_l - \mathrm{relu}(z_l)\|_F^2 + \beta \|z_l - W_l a_{l-1} - b_l\|_F^2\big]
        \ (+ \textstyle\sum_l \rho_l \|W_l\|_F^2 \text{ when a ridge is asked for}),

with ``W_l`` of shape ``(p_l, p_{l-1})`` (``W[l-1]`` in code, which counts layers from 0), ``b_l`` ``(p_l,)``
and every ``a_l``, ``z_l``, ``lam`` of shape ``(p_l, m)``. ``penalty`` is the sum of the ``beta`` and ``gamma``
terms. The loss ``ell`` is this toolkit's MSE, ``||z - Y||_F^2`` summed, without a 1/2 (Taylor et al. use a
binary hinge loss; the public code and the Fenchel paper's Fig. 1 use the squared error).

**The multiplier term is** ``<lam, z_{L+1}>`` **(Bregman iteration), not** ``<lam, z_{L+1} - W_{L+1} a_L -
b_{L+1}>``. The two differ by ``<lam, W_{L+1} a_L + b_{L+1}>``, which does not involve ``z_{L+1}``; in the form
used here every update below is the exact minimizer of ``J`` in its block, which Algorithm 1's ``W_{L+1}`` and
``a_L`` updates (no ``lam`` in them) would not be under the other form.

**One iteration** (Taylor et al., Algorithm 1; each line is a closed-form block minimization of ``J``):

1. for ``l = 1..L``:

   * *weight update* ``[W_l, b_l] <- argmin beta ||z_l - W_l a_{l-1} - b_l||^2 (+ rho_l ||W_l||^2)``: least
     squares on ``[a_{l-1}; 1]`` (:func:`weight_update`; the paper's ``W_l = z_l a_{l-1}^+``);
   * *activation update* ``a_l <- (beta W_{l+1}^T W_{l+1} + gamma I)^{-1} (beta W_{l+1}^T (z_{l+1} - b_{l+1}) +
     gamma relu(z_l))`` with the current ``W_{l+1}``, ``z_{l+1}``, ``z_l`` (:func:`activation_update`);
   * *output update* ``z_l <- argmin_z gamma (a_l - relu(z))^2 + beta (z - W_l a_{l-1} - b_l)^2`` entrywise, the
     better of the minimizers over ``z >= 0`` and ``z <= 0`` (:func:`preactivation_update`);

2. the weight update of ``W_{L+1}, b_{L+1}`` on ``a_L``;
3. ``z_{L+1} <- argmin_z ||z - Y||^2 + <lam, z> + beta ||z - W_{L+1} a_L - b_{L+1}||^2
   = (Y - lam / 2 + beta (W_{L+1} a_L + b_{L+1})) / (1 + beta)`` (:func:`output_update`);
4. ``lam <- lam + beta (z_{L+1} - W_{L+1} a_L - b_{L+1})`` -- except during the first ``admm_warm`` iterations
   (the warm start), which leave ``lam`` at zero and so minimize the plain penalty objective.

The first iteration starts from the feed-forward pass of the network's initial weights (``z_l``, ``a_l``,
``z_{L+1}``) and ``lam = 0``. Nothing here is monotone: ``J`` moves with the multiplier, and the ADMM primal
residual ``||z_{L+1} - W_{L+1} a_L - b_{L+1}||_F`` (``state.last["admm_residual"]``) is what should fall once
the warm start is over. Cost of an iteration: ``O(m sum_l p_l p_{l-1})`` for the products and Gram matrices plus
``O(sum_l p_l^3)`` for the factorizations; the input layer's Gram matrix is computed once per training set.

**Differences from the public code** (``PotatoThanh/ADMM-NeuralNetworks``, ``python/ADMM_NN.py`` and
``python/main.py``, whose hyperparameters ``beta = gamma = 5`` and 10 warm-start iterations are the defaults of
:class:`~fenchel_cvx.settings.PeerOptions`, as the Fenchel paper's section 5.1 kept them). The update order is
the same as here and as Algorithm 1. The code differs in:

* the multiplier: it *replaces* its ``lam`` by ``beta (z_{L+1} - W_{L+1} a_L)`` after each iteration (``2 beta
  r`` in our units, below) instead of adding the step to it (Algorithm 1's ascent step, used here);
* the warm start: its multiplier starts at all ones, not zero, and keeps that value through the warm-start
  iterations (``warming``; 10 in ``python/main.py``, 5 in ``matlab/main.m``), which shifts every output target
  by ``-1 / (1 + beta)`` there; here it is zero;
* the loss scaling: its output update ``(Y - lam + beta m) / (1 + beta)`` is the one above with ``lam`` in units
  of half of ours (``lam_code = lam / 2``); with ``lam = 0`` the two coincide exactly, so our MSE without a 1/2
  changes nothing but the multiplier's unit;
* initialization: zero weights and uniform random ``z_l``, ``a_l`` instead of a feed-forward pass;
* the hidden output update: ``ADMM_NN._argminz`` picks between the same two candidates (``max(0, (gamma a + beta
  m) / (gamma + beta))`` and ``min(0, m)``) by comparing ``(gamma (a - relu(z)))^2 + beta (z - m)^2``, i.e. with
  weight ``gamma^2`` on the activation term, so with ``gamma != 1`` it need not return the block's minimizer; its
  ``matlab/argminz.m`` compares with ``gamma``, as :func:`preactivation_update` does (the exact minimizer);
* no biases; weights by ``numpy.linalg.pinv`` (minimum-norm least squares), float32, two hidden layers of 256.

Here the least squares go through a Cholesky factorization of the Gram matrix of ``[a_{l-1}; 1]`` in
``settings.dtype`` (float64 by default); when that matrix is singular -- MNIST has pixels that are zero in every
image -- through its pseudo-inverse (``torch.linalg.pinv(..., hermitian=True)``), which gives the code's
minimum-norm solution.

**Sources.** The list above was checked against the public code (``python/ADMM_NN.py``, ``python/main.py``,
``matlab/main.m``, ``matlab/argminz.m``). "Algorithm 1" names the paper's algorithm; the update order (weights,
activations, outputs per layer, then the output layer and the multiplier) is the public code's, and the paper's
equation numbers are not cited.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from ..trainer import affine
from ._base import PeerState, PeerTrainer

#: The update functions (``weight_update``, ...) are :class:`TaylorADMM`'s steps on data it has checked; they check
#: nothing themselves and are not part of the public API.
__all__ = ["TaylorADMM", "TaylorState"]


# -- the four closed-form block updates ---------------------------------------------------------------------------
class _Gram:
    """Solver of the normal equations of a least squares on ``[A; 1^T]``: ``(G + ridge D) X = R`` with ``G = [A; 1^T]
    [A; 1^T]^T`` and ``D = diag(1, ..., 1, 0)`` (the bias is not penalized).

    Cholesky when ``G + ridge D`` is positive definite, else its pseudo-inverse (minimum-norm solutions).
    """

    def __init__(self, A: torch.Tensor, ridge: float = 0.0):
        p, m = A.shape
        G = A.new_empty(p + 1, p + 1)
        G[:p, :p] = A @ A.T
        s = A.sum(1)
        G[:p, p] = s
        G[p, :p] = s
        G[p, p] = m
        if ridge > 0:
            G.diagonal()[:p] += ridge
        factor, info = torch.linalg.cholesky_ex(G)
        self.cholesky = int(info) == 0
        self.F = factor if self.cholesky else torch.linalg.pinv(G, hermitian=True)

    def solve(self, R: torch.Tensor) -> torch.Tensor:
        return torch.cholesky_solve(R, self.F) if self.cholesky else self.F @ R


def weight_update(A: torch.Tensor, Z: torch.Tensor, *, ridge: float = 0.0,
                  gram: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight update (Algorithm 1): ``argmin_{W, b} ||Z - W A - b 1^T||_F^2 + ridge ||W||_F^2``.

    The paper's ``W_l = z_l a_{l-1}^+`` with a bias: least squares of ``Z`` on ``[A; 1^T]``. With ``beta`` in front
    of the squares and ``rho_l ||W_l||^2`` beside them, ``ridge = rho_l / beta``.

    Parameters
    ----------
    A : Tensor, shape (p, m)
        The layer's input ``a_{l-1}`` (``X_0`` for the first layer).
    Z : Tensor, shape (q, m)
        The layer's pre-activation (or output) variable ``z_l``.
    ridge : float, default 0
        Weight of ``||W||_F^2`` (the bias is not penalized).
    gram : optional
        A factorization of ``A``'s Gram matrix made earlier for the same ``A`` and ``ridge`` (reused for the input
        layer, whose ``A = X_0`` never changes).

    Returns
    -------
    W : Tensor, shape (q, p)
    b : Tensor, shape (q,)
        Minimum-norm minimizers when ``[A; 1^T]`` has dependent rows and ``ridge = 0``.
    """
    g = _Gram(A, ridge) if gram is None else gram
    p = A.shape[0]
    R = torch.cat([A @ Z.T, Z.sum(1)[None, :]], dim=0)  # [A; 1^T] Z^T, shape (p + 1, q)
    theta = g.solve(R)  # [W b]^T
    return theta[:p].T.contiguous(), theta[p].contiguous()


def activation_update(W_next: torch.Tensor, b_next: torch.Tensor, z_next: torch.Tensor, z: torch.Tensor,
                      beta: float, gamma: float) -> torch.Tensor:
    """Activation update (Algorithm 1): ``argmin_a beta ||z_next - W_next a - b_next||^2 + gamma ||a - relu(z)||^2``.

    ``a = (beta W_next^T W_next + gamma I)^{-1} (beta W_next^T (z_next - b_next) + gamma relu(z))``, the inverse by
    a Cholesky factorization (``gamma > 0`` makes the matrix positive definite).

    Parameters
    ----------
    W_next : Tensor, shape (q, p)
        The next layer's weights ``W_{l+1}``.
    b_next : Tensor, shape (q,)
    z_next : Tensor, shape (q, m)
        The next layer's pre-activation (or output) variable ``z_{l+1}``.
    z : Tensor, shape (p, m)
        This layer's pre-activation variable ``z_l``.
    beta, gamma : float
        Penalty weights, ``> 0``.

    Returns
    -------
    Tensor, shape (p, m)
    """
    M = beta * (W_next.T @ W_next)
    M.diagonal().add_(gamma)
    R = torch.addmm(torch.clamp(z, min=0), W_next.T, z_next - b_next[:, None], beta=gamma, alpha=beta)
    # the inverse of the small (p, p) matrix, then one matrix product: on m columns a GEMM is several times
    # faster than two triangular solves, and M is well conditioned (its eigenvalues are >= gamma)
    return torch.cholesky_inverse(torch.linalg.cholesky(M)) @ R


def preactivation_update(a: torch.Tensor, m: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """Output update of a hidden layer (Algorithm 1): ``argmin_z gamma (a - relu(z))^2 + beta (z - m)^2`` entrywise.

    On ``z >= 0`` the objective is the quadratic ``gamma (a - z)^2 + beta (z - m)^2``, minimized at
    ``max(0, (gamma a + beta m) / (gamma + beta))``; on ``z <= 0`` it is ``gamma a^2 + beta (z - m)^2``, minimized at
    ``min(0, m)``. The better of the two is the global minimizer (the ``z >= 0`` one on ties).

    Parameters
    ----------
    a : Tensor, shape (p, m)
        The layer's activation variable ``a_l``.
    m : Tensor, shape (p, m)
        ``W_l a_{l-1} + b_l`` with the layer's updated weights.
    beta, gamma : float

    Returns
    -------
    Tensor, shape (p, m)
    """
    zp = torch.add(a, m, alpha=beta / gamma).mul_(gamma / (gamma + beta)).clamp_(min=0)
    # fp = gamma (a - zp)^2 + beta (zp - m)^2 and, as zn - m = -relu(m), fn = gamma a^2 + beta relu(m)^2; in place,
    # since on a whole training set every temporary is as large as the layer's activations
    tmp = torch.sub(zp, m).square_()
    fp = torch.sub(a, zp).square_().mul_(gamma).add_(tmp, alpha=beta)
    fn = torch.square(a).mul_(gamma).add_(torch.clamp(m, min=0, out=tmp).square_(), alpha=beta)
    return torch.where(fp <= fn, zp, torch.clamp(m, max=0, out=tmp))


def output_update(Y: torch.Tensor, lam: torch.Tensor, m: torch.Tensor, beta: float) -> torch.Tensor:
    """Output-layer update (Algorithm 1): ``argmin_z ||z - Y||_F^2 + <lam, z> + beta ||z - m||_F^2``.

    ``z = (Y - lam / 2 + beta m) / (1 + beta)``, for this toolkit's MSE ``||z - Y||^2`` (no 1/2).

    Parameters
    ----------
    Y : Tensor, shape (q, m)
        Targets (one-hot for classification).
    lam : Tensor, shape (q, m)
        The output layer's multiplier.
    m : Tensor, shape (q, m)
        ``W_{L+1} a_L + b_{L+1}``.
    beta : float

    Returns
    -------
    Tensor, shape (q, m)
    """
    return (Y - 0.5 * lam + beta * m) / (1.0 + beta)


# -- the trainer --------------------------------------------------------------------------------------------------
class TaylorState(PeerState):
    """A Taylor et al. run's state: :class:`~fenchel_cvx.peers._base.PeerState` with ``aux`` holding

    * ``"a"``: ``L`` activations ``a_l``, shapes ``(p_l, m)``;
    * ``"z"``: ``L + 1`` pre-activations ``z_l``, the last one the output ``z_{L+1}``, shapes ``(p_l, m)``;
    * ``"lam"``: one matrix, the output layer's multiplier, shape ``(p_{L+1}, m)``.
    """

    KIND: ClassVar[str] = "fenchel_taylor_admm_state"
    LABEL: ClassVar[str] = "Taylor et al. ADMM"


class TaylorADMM(PeerTrainer):
    """Taylor et al. (2016): ADMM on the lifted MSE network, full batch (see the module docstring).

    Parameters
    ----------
    network : LiftedNetwork
        Dense layers, ReLU activations, MSE loss; initial weights (not modified).
    settings : PeerSettings, optional
        ``model="taylor-admm"``, ``batch_size=None``; ``admm_beta``, ``admm_gamma``, ``admm_warm``, and ``rho`` (a
        ridge on the weights, none by default as in the public code).

    Examples
    --------
    >>> from fenchel_cvx import LiftedNetwork
    >>> from fenchel_cvx.data import make_synthetic_classification
    >>> from fenchel_cvx.settings import PeerSettings
    >>> X, y = make_synthetic_classification(200, 6, 3, seed=0, hidden=None)
    >>> trainer = TaylorADMM(LiftedNetwork([6, 8, 3], "relu", "mse", seed=0),
    ...                      PeerSettings(model="taylor-admm", batch_size=None, epochs=5))
    >>> state = trainer.run(X, y, progress=False)
    >>> len(state.history), sorted(state.aux)
    (5, ['a', 'lam', 'z'])
    """

    model: ClassVar[str] = "taylor-admm"
    state_class = TaylorState

    def _ridge(self, l: int) -> float:
        return float(self.rho[l]) / float(self.settings.admm_beta)

    def _gram_of_input(self, X0: torch.Tensor) -> _Gram:
        """The input layer's Gram factorization, made once per training set."""
        ridge = self._ridge(0)
        return self._of_training_set(X0, lambda: _Gram(X0, ridge), ridge)

    def _aux_rows(self) -> dict[str, list[int]]:
        out = self.sizes[1:]  # z_1..z_{L+1}; a_1..a_L; lam on the output
        return {"a": out[:-1], "z": out, "lam": out[-1:]}

    def _init_aux(self, state: TaylorState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """Feed-forward of the current weights: ``z_l = W_l a_{l-1} + b_l``, ``a_l = relu(z_l)``; ``lam = 0``."""
        a, z, prev = [], [], X0
        for l in range(self.L):
            z.append(affine(state.W[l], state.b[l], prev))
            a.append(torch.clamp(z[-1], min=0))
            prev = a[-1]
        z.append(affine(state.W[self.L], state.b[self.L], prev))
        return {"a": a, "z": z, "lam": [torch.zeros_like(z[-1])]}

    def _iterate(self, state: TaylorState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """One iteration of Algorithm 1 on the whole training set (the module docstring lists its lines)."""
        s = self.settings
        beta, gamma, L = float(s.admm_beta), float(s.admm_gamma), self.L
        W, b, a, z = state.W, state.b, state.aux["a"], state.aux["z"]
        prev = X0
        for l in range(L):
            gram = self._gram_of_input(X0) if l == 0 else None
            W[l], b[l] = weight_update(prev, z[l], ridge=self._ridge(l), gram=gram)
            a[l] = activation_update(W[l + 1], b[l + 1], z[l + 1], z[l], beta, gamma)
            z[l] = preactivation_update(a[l], affine(W[l], b[l], prev), beta, gamma)
            prev = a[l]
        gram = self._gram_of_input(X0) if L == 0 else None
        W[L], b[L] = weight_update(prev, z[L], ridge=self._ridge(L), gram=gram)
        m = affine(W[L], b[L], prev)
        z[L] = output_update(T, state.aux["lam"][0], m, beta)
        r = z[L] - m
        warm = state.step < int(s.admm_warm)
        if not warm:
            state.aux["lam"][0] = state.aux["lam"][0] + beta * r
        return {"admm_residual": float(torch.linalg.vector_norm(r)), "multiplier_updated": not warm}

    def objective_terms(self, state: TaylorState, X0: torch.Tensor, T: torch.Tensor) -> dict:
        """``J`` of the module docstring and its parts on ``(X0, T)`` (paper layout).

        Parameters
        ----------
        state : TaylorState
            With its auxiliary variables (after the first iteration).
        X0 : Tensor, shape (n, m)
        T : Tensor, shape (p, m)
            Targets (one-hot for labels).

        Returns
        -------
        dict
            ``J`` (the augmented Lagrangian), ``penalty`` (its ``beta`` and ``gamma`` terms), ``loss``
            (``||z_{L+1} - T||^2``), ``multiplier`` (``<lam, z_{L+1}>``) and ``residual``
            (``||z_{L+1} - W_{L+1} a_L - b_{L+1}||_F``), as 0-d tensors (differentiable in the state's tensors;
            the history's :meth:`batch_terms` calls it without gradients).
        """
        s = self.settings
        beta, gamma, L = float(s.admm_beta), float(s.admm_gamma), self.L
        W, b, a, z = state.W, state.b, state.aux["a"], state.aux["z"]
        lam = state.aux["lam"][0]
        penalty, prev = z[L].new_zeros(()), X0
        for l in range(L):
            penalty = penalty + beta * ((z[l] - affine(W[l], b[l], prev)) ** 2).sum()
            penalty = penalty + gamma * ((a[l] - torch.clamp(z[l], min=0)) ** 2).sum()
            prev = a[l]
        r = z[L] - affine(W[L], b[L], prev)
        res2 = (r * r).sum()
        penalty = penalty + beta * res2
        loss = self.loss.value(T, z[L])
        mult = (lam * z[L]).sum()
        ridge = sum((rho * (w * w).sum() for rho, w in zip(self.rho, W, strict=True) if rho > 0), z[L].new_zeros(()))
        return {"J": loss + mult + penalty + ridge, "penalty": penalty, "loss": loss, "multiplier": mult,
                "residual": torch.sqrt(res2)}
