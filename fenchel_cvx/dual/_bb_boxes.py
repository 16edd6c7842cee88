r"""Shared interval helpers of the branch-and-bound (docs/certified_bound.md, section 5).

Every derived number is *rounded outward*: interval ends are widened by a relative ``WIDEN`` and envelope
constants loosened by ``LOOSEN`` times the magnitude of the terms, so that the exact real lifted point of any
WLOG-normalized point in a node satisfies the relaxation as the floating-point data describe it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["NodeData", "down", "up", "minsq", "maxsq", "interval_dot", "pairwise_distances", "WIDEN", "LOOSEN",
           "TINY"]

WIDEN = 1e-11    # relative outward widening of every derived interval end
LOOSEN = 1e-11   # relative loosening of every envelope constant
TINY = 1e-300


def down(x):
    """Round a lower end outward (down)."""
    x = np.asarray(x, dtype=float)
    return x - WIDEN * np.abs(x) - TINY


def up(x):
    """Round an upper end outward (up)."""
    x = np.asarray(x, dtype=float)
    return x + WIDEN * np.abs(x) + TINY


def minsq(lo, hi):
    """min of x^2 over [lo, hi] (0 when the interval contains 0)."""
    return np.where((lo <= 0) & (hi >= 0), 0.0, np.minimum(lo * lo, hi * hi))


def maxsq(lo, hi):
    """max of x^2 over [lo, hi]."""
    return np.maximum(lo * lo, hi * hi)


@dataclass
class NodeData:
    """A node: the branched box ``[lo, hi]`` (after tightening), a discrete tag (the sign pattern of the
    perspective formulation, ``None`` for the direct one), boxes of every relaxation variable and the
    envelope coefficients (Parameter values)."""

    lo: np.ndarray
    hi: np.ndarray
    tag: tuple | None
    boxes: dict = field(default_factory=dict)
    coef: dict = field(default_factory=dict)
    stall: int = 0   # generations in a row whose own bound did not beat the parent's (branching only)


def interval_dot(wlo: np.ndarray, whi: np.ndarray, X0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact range of ``w^T x_j`` over the box ``w in [wlo, whi]`` (rows of w) for every column ``x_j``."""
    # (h, n, 1) * (1, n, m): per-term min/max, summed over n.
    t1 = wlo[:, :, None] * X0[None, :, :]
    t2 = whi[:, :, None] * X0[None, :, :]
    return np.minimum(t1, t2).sum(axis=1), np.maximum(t1, t2).sum(axis=1)




def pairwise_distances(X0: np.ndarray) -> np.ndarray:
    """``D[j, j'] = ||x_j - x_j'||`` for the columns of ``X0 (n, m)``, as floating point computes it (callers
    round it up). Summed one feature at a time, in the same order as ``((X0[:, :, None] - X0[:, None, :]) ** 2)
    .sum(axis=0)`` but with two ``(m, m)`` arrays instead of an ``(n, m, m)`` one."""
    m = X0.shape[1]
    D2 = np.zeros((m, m))
    for row in X0:
        diff = row[:, None] - row[None, :]
        diff *= diff
        D2 += diff
    return np.sqrt(D2, out=D2)
