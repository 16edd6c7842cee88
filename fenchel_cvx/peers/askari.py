r"""Askari et al. (2018), *Lifted neural networks*, trained on this toolkit's own subproblem faces.

Askari et al. write the ReLU as the argmin of a quadratic, ``relu(u) = argmin_{v >= 0} ||v - u||^2``, and lift a
network with that penalty. In this toolkit's conventions (the halves of eq. 5; equation and section numbers here
are the Fenchel paper's)

.. math::  B_A(v, u) = \tfrac12 \|v - u\|^2 \ \ (v \ge 0), \qquad
           J_A(W, X) = L(Y, W_L X_L + b_L) + \sum_l \rho_l \|W_l\|_F^2 + \sum_l \lambda_l B_A(X_{l+1}, W_l X_l + b_l),

minimized by block coordinate descent over convex subproblems (their training scheme). The Fenchel penalty of
the ReLU (eq. 5) is ``B(v, u) = 1/2 ||v - u||^2 - 1/2 ||min(u, 0)||^2`` on ``v >= 0``, so

.. math::  B_A(v, u) = B(v, u) + \tfrac12 \|\min(u, 0)\|^2 ,

a function of ``u`` alone apart from ``B``. Hence every block of ``J_A`` is a block this toolkit already solves,
on both faces (CVXPY and torch), with the same certificates:

* **X-updates.** In ``X_l`` the ``B_A(X_l, U_{l-1})`` term is Fenchel's ``B(X_l, U_{l-1})`` plus a constant;
  the coupling to the next layer, ``lam_l B_A(X_{l+1}, W_l X_l + b_l)``, is ``lam_l / 2`` times a squared loss
  with targets ``X_{l+1}``. So ``x_hidden`` of ``J_A`` is ``x_last`` with the MSE loss, targets ``X_{l+1}`` and
  ``lam_prev = 2 lam_{l-1} / lam_l`` (the objective divided by ``lam_l / 2``); ``x_last`` is Fenchel's own.
* **W-updates.** ``lam_l B_A(X_{l+1}, W_l X_l + b_l) + rho_l ||W_l||^2 + gamma_l ||[W_l, b_l] - [W_l^0, b_l^0]||^2``
  is ``lam_l / 2`` times ridge least squares: ``w_last`` with the MSE loss, targets ``X_{l+1}``, ``rho =
  2 rho_l / lam_l`` and ``gamma = 2 gamma_l / lam_l``; ``w_last`` of the output layer is Fenchel's own.

:func:`askari_subproblem` is that translation, used by :class:`AskariBCD` (Fenchel BCD with the translation in
front of its face) and tested against a direct CVXPY statement of each block. Values are translated back: the
``value`` of a result is the block's ``J_A`` terms, constants included.

**Prediction** is the feed-forward rule: ``argmin_{v >= 0} B_A(v, u) = relu(u)`` (the paper's section 4.3).

**No lower bound.** Eq. (8) of the paper makes ``G(lam) = min J`` a lower bound on the training loss because
``B(phi(u), u) = 0``. Here ``B_A(relu(u), u) = 1/2 ||min(u, 0)||^2 > 0`` wherever a unit is off, so ``J_A`` at
the feed-forward point exceeds the loss (3), and ``min J_A`` bounds nothing: :mod:`fenchel_cvx.dual` does not
apply to this model (``J_A >= J`` pointwise, so ``min J_A`` is at least Fenchel's ``G(lam)``, which is the bound).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from ..activations import ReLU
from ..bcd import BCD
from ..errors import ChoiceError, ValueRangeError
from ..losses import get_loss

#: ``askari_subproblem`` translates the blocks :class:`AskariBCD` has checked; it checks nothing and is not public.
__all__ = ["AskariBCD", "AskariPenalty"]


class AskariPenalty:
    """``B_A(v, u) = 1/2 (v - u)^2`` for ``v >= 0`` (``+inf`` for ``v < 0``), elementwise; the feed-forward rule
    ``argmin_v B_A(v, u) = relu(u)``.

    It has the two methods the Lagrangian and the feed-forward pass ask of a penalty (:meth:`B`, :meth:`forward`);
    its subproblems are Fenchel's (see the module docstring), so it is not an activation of the registry.
    """

    name = "askari"

    def forward(self, u: Any) -> Any:
        """``relu(u)``, the minimizer of ``B_A(., u)``."""
        return torch.relu(u) if torch.is_tensor(u) else np.maximum(u, 0.0)

    def B(self, v: Any, u: Any) -> Any:
        """``1/2 (v - u)^2`` where ``v >= 0``, ``+inf`` elsewhere (numpy arrays or tensors, elementwise)."""
        if torch.is_tensor(v):
            return torch.where(v >= 0, 0.5 * (v - u) ** 2, torch.full_like(v, float("inf")))
        v, u = np.asarray(v, dtype=float), np.asarray(u, dtype=float)
        return np.where(v >= 0, 0.5 * (v - u) ** 2, np.inf)

    def __repr__(self) -> str:
        return "AskariPenalty()"


def _off_part(U: Any) -> float:
    """``1/2 ||min(U, 0)||^2``: ``B_A(v, U) - B(v, U)`` for the ReLU's Fenchel penalty ``B``."""
    if torch.is_tensor(U):
        return 0.5 * float((torch.clamp(U, max=0.0) ** 2).sum())
    return 0.5 * float(np.sum(np.minimum(np.asarray(U, dtype=float), 0.0) ** 2))


def askari_subproblem(name: str, kw: dict) -> tuple[str, dict, float, float]:
    """Translate a block of ``J_A`` into the Fenchel subproblem that solves it.

    Parameters
    ----------
    name : {"x_hidden", "x_last", "w_hidden", "w_last"}
        The block, with the keyword arguments BCD passes for it (the registry's names: ``W``, ``b``, ``X_next``,
        ``U_prev``, ``lam``, ``lam_prev``, ``X_in``, ``rho``, ``gamma``, ...).
    kw : dict
        Those arguments.

    Returns
    -------
    name : str
        The subproblem to call (``x_last`` or ``w_last`` for the hidden blocks).
    kw : dict
        Its arguments.
    scale, offset : float
        The block's ``J_A`` terms are ``scale * value + offset``, ``value`` the called subproblem's objective.
    """
    kw = dict(kw)
    mse = get_loss("mse")
    if name == "x_hidden":
        lam, lam_prev = float(kw.pop("lam")), float(kw.pop("lam_prev"))
        kw.pop("act")
        kw["loss"], kw["Y"], kw["lam_prev"] = mse, kw.pop("X_next"), 2.0 * lam_prev / lam
        return "x_last", kw, lam / 2.0, lam_prev * _off_part(kw["U_prev"])
    if name == "x_last":
        return name, kw, 1.0, float(kw["lam_prev"]) * _off_part(kw["U_prev"])
    if name == "w_hidden":
        lam = float(kw.pop("lam"))
        kw.pop("act")
        kw.pop("U", None)
        kw["loss"], kw["Y"] = mse, kw.pop("X_next")
        kw["rho"] = 2.0 * float(kw["rho"]) / lam
        if "gamma" in kw:
            kw["gamma"] = 2.0 * float(kw["gamma"]) / lam
        return "w_last", kw, lam / 2.0, 0.0
    if name == "w_last":
        return name, kw, 1.0, 0.0
    raise ChoiceError(f"name: expected a subproblem of the lifted model (x_hidden, x_last, w_hidden, w_last), got "
                      f"{name!r}")


class _AskariFace:
    """A BCD face that answers the blocks of ``J_A`` (:func:`askari_subproblem` in front of Fenchel's face)."""

    def __init__(self, face: Any):
        self.inner = face

    def __call__(self, name: str, **kw: Any) -> Any:
        called, kw, scale, offset = askari_subproblem(name, kw)
        res = self.inner(called, **kw)
        return dataclasses.replace(res, subproblem=name, value=scale * float(res.value) + offset)


class AskariBCD(BCD):
    """Askari et al. (2018)'s lifted network, trained by :class:`~fenchel_cvx.bcd.BCD` with the penalty ``B_A``.

    Everything but the penalty is Fenchel BCD's -- Algorithms 1 and 2, the settings (``lam``, ``rho``, ``gamma``,
    exact or inexact W-updates, either face), checkpoints and resume -- and every block is solved by one of
    Fenchel's subproblems (module docstring). Only ReLU networks (the penalty is the ReLU's); the running
    curvature and the argmin prediction rule are Fenchel's own and are refused.

    Parameters
    ----------
    network : LiftedNetwork
        ReLU activations; any loss and architecture BCD takes.
    settings : BCDSettings, optional
    """

    method = "askari"
    fast_default = False  # the running curvature is built for Fenchel's penalty: its MM mode is the default

    def __init__(self, network: Any, settings: Any = None):
        super().__init__(network, settings)
        bad = [a.name for a in self.acts if type(a) is not ReLU]
        if bad:
            raise ChoiceError(f"activation: Askari et al.'s penalty ||v - u||^2 on v >= 0 represents the ReLU; "
                              f"expected 'relu', got {bad[0]!r}")
        if self.settings.is_inexact and self.mode["curvature"] != "batch":
            raise ValueRangeError(f"curvature: the {self.mode['curvature']!r} W-steps are built for Fenchel's "
                                  "penalty; use curvature='batch' with method askari")
        if self.settings.prediction != "feedforward":
            raise ValueRangeError(f"prediction: Askari et al.'s model predicts by feed-forward (the argmin of B_A "
                                  f"is the ReLU); expected 'feedforward', got {self.settings.prediction!r}")
        self.penalties = [AskariPenalty() for _ in self.acts]

    @property
    def face(self) -> _AskariFace:
        """Fenchel's face (``settings.backend``) behind the translation of :func:`askari_subproblem`."""
        if self._face is None:
            self._face = _AskariFace(BCD.face.fget(self))
        return self._face

    def _rules(self) -> tuple[str, ...]:
        return ("feedforward",)
