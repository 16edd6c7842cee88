"""Figures from training histories: accuracy (or any history column) against epochs, as in the paper's Figs. 1-2.

The functions take plain history rows (the dicts of :data:`fenchel_cvx.bcd.HISTORY_KEYS`, or the same rows read
back from a run directory's ``metrics.csv``, where numbers may still be strings) and never import the math.
They build a :class:`matplotlib.figure.Figure` directly, without ``pyplot``, so no global backend is switched
and nothing opens a window; saving uses the Agg renderer.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .errors import FenchelError

__all__ = ["curve", "plot_accuracy", "plot_lambda_sweep"]

#: Colours of the paper's Fig. 2 (this work red, Adam blue, SGD green); other labels cycle through the default.
_COLOURS = {"fenchel": "tab:red", "adam": "tab:blue", "sgd": "tab:green"}
_NAMES = {"test_acc": "test accuracy", "train_acc": "train accuracy", "test_loss": "test loss (mean per sample)",
          "train_loss": "train loss (mean per sample)", "J": "Lagrangian J on the batch",
          "primal": "primal objective (3) on the batch", "penalty": "penalty sum lam B on the batch",
          "epoch": "epoch", "step": "step (batches)", "time": "training time (s)"}


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def curve(rows: Sequence[Mapping[str, Any]], metric: str = "test_acc", x: str = "epoch") -> tuple[list, list]:
    """The finite ``(x, metric)`` points of a history, sorted by ``x``.

    Parameters
    ----------
    rows : sequence of dict
        History rows (values may be numbers or numeric strings).
    metric, x : str
        Column names.

    Returns
    -------
    xs, ys : list of float
        Rows where either value is missing or NaN are dropped.

    Raises
    ------
    FenchelError
        No row has the column ``metric`` or ``x``.
    """
    rows = list(rows)
    for col in (metric, x):
        if rows and not any(col in r for r in rows):
            raise FenchelError(f"metric: the history has no column {col!r}; available: {sorted(rows[0])}")
    pts = sorted((_num(r.get(x)), _num(r.get(metric))) for r in rows)
    pts = [(a, b) for a, b in pts if math.isfinite(a) and math.isfinite(b)]
    return [a for a, _ in pts], [b for _, b in pts]


_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")  # the fifth run of a colour changes marker, so no two lines look alike


def plot_accuracy(runs: Mapping[str, Sequence[Mapping[str, Any]]], path: str | os.PathLike | None = None,
                  metric: str = "test_acc", *, x: str = "epoch", title: str | None = None,
                  ylim: tuple[float, float] | None = None, figsize: tuple[float, float] = (6.0, 4.0),
                  dpi: int = 120) -> Figure:
    """Overlay one curve per run: ``metric`` (default test accuracy) against ``x`` (default epoch).

    Parameters
    ----------
    runs : dict of label -> list of history rows
        E.g. ``{"Fenchel (this work)": bcd_state.history, "Adam": adam_state.history}``. A label containing
        ``fenchel``, ``adam`` or ``sgd`` gets the paper's colour (red, blue, green); runs that share a colour
        get solid, dashed, dotted and dash-dotted lines in turn (the plain method name first).
    path : path-like, optional
        Where to write the figure (the format follows the suffix, e.g. ``.png``); parent folders are created.
    metric : str, default "test_acc"
        History column on the vertical axis (``test_acc``, ``train_acc``, ``test_loss``, ``J``, ...).
    x : str, default "epoch"
        History column on the horizontal axis (``epoch``, ``step`` or ``time``).
    title : str, optional
    ylim : (float, float), optional
        Range of the vertical axis (e.g. ``(0.93, 0.98)`` to tell close accuracy curves apart); curves leaving it
        are clipped.
    figsize, dpi : figure size in inches and resolution.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    FenchelError
        ``runs`` is empty or no run has a finite value of ``metric``.
    """
    if not runs:
        raise FenchelError("runs: expected at least one labelled history, got none")
    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    keys = {label: next((k for k in _COLOURS if k in label.lower()), None) for label in runs}
    # runs of one colour take the line styles in turn, the plain method ("fenchel" beside its variants) first
    styles: dict[str, tuple[str, str]] = {}
    for key in set(keys.values()):
        group = sorted((lb for lb in runs if keys[lb] == key), key=lambda lb: lb.lower() != key)
        for i, lb in enumerate(group):
            styles[lb] = ((_STYLES[i % len(_STYLES)], _MARKERS[(i // len(_STYLES)) % len(_MARKERS)])
                          if key is not None else ("-", "o"))
    for label, rows in runs.items():
        xs, ys = curve(rows, metric, x)
        if not xs:
            continue
        key, (style, marker) = keys[label], styles[label]
        last = f"{ys[-1]:.3f}" if "acc" in metric else f"{ys[-1]:.4g}"
        ax.plot(xs, ys, linestyle=style, marker=marker if len(xs) <= 30 else None, markersize=3,
                color=_COLOURS.get(key), label=f"{label} ({last})")
        drawn += 1
    if not drawn:
        raise FenchelError(f"runs: no run has a finite {metric!r} value to plot (was a test set given?)")
    if ylim is not None:
        lo, hi = (float(v) for v in ylim)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise FenchelError(f"ylim: expected two finite numbers low < high, got {tuple(ylim)}")
        ax.set_ylim(lo, hi)
    ax.set_xlabel(_NAMES.get(x, x))
    ax.set_ylabel(_NAMES.get(metric, metric))
    ax.grid(True, alpha=0.3)
    if max(len(str(k)) for k in runs) > 40:  # labels that name settings: below the axes, not over the curves
        ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.2), fontsize="small", frameon=False)
    else:
        ax.legend(loc="lower right" if "acc" in metric else "upper right", fontsize="small")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, bbox_inches="tight")
    return fig


def plot_lambda_sweep(lam: Sequence[float], G_hat: Sequence[float], P: Sequence[float], *,
                      P_min: float | None = None, lower: Mapping[float, float] | None = None,
                      path: str | os.PathLike | None = None, title: str | None = None) -> Figure:
    """The relaxation against the primal as the multiplier grows (takes the numbers of a ``LambdaSweep``).

    Parameters
    ----------
    lam : sequence of float, shape (k,)
        Multipliers, ascending (log-scaled axis).
    G_hat : sequence of float, shape (k,)
        Upper estimates of ``G(lam)`` (best J found).
    P : sequence of float, shape (k,)
        Primal objective (eq. 3) at the weights of each ``lam``'s best point.
    P_min : float, optional
        Best primal value seen: a horizontal line (an upper bound on ``p*``).
    lower : mapping lam -> float, optional
        Certified lower bounds on ``G(lam)``, drawn as markers.
    path : path, optional
        Save the figure there (PNG by extension).
    """
    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(lam, P, "o-", color="tab:blue", label="P(W_lam): primal (3) at the relaxation's weights")
    ax.plot(lam, G_hat, "s-", color="tab:red", label="G_hat(lam): best J found (upper estimate of G)")
    if P_min is not None:
        ax.axhline(P_min, color="tab:gray", ls="--", lw=1, label="best primal seen (>= p*)")
    if lower:
        ks = sorted(lower)
        ax.plot(ks, [lower[k] for k in ks], "^", color="black", ms=8, label="certified lower bound on G(lam)")
    ax.set_xscale("log")
    ax.set_xlabel("lambda")
    ax.set_ylabel("objective (sum over samples)")
    ax.set_title(title or "Lagrange relaxation tightening as lambda grows")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=120)
    return fig
