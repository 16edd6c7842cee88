"""Figures from training histories: accuracy (or any history column) against epochs, as in the paper's Figs. 1-2.

The functions take plain history rows (the dicts of :data:`fenchel_cvx.bcd.HISTORY_KEYS`, or the same rows read
back from a run directory's ``metrics.csv``, where numbers may still be strings) and never import the math.
They build a :class:`matplotlib.figure.Figure` directly, without ``pyplot``, so no global backend is switched
and nothing opens a window; saving uses the Agg renderer.
"""

from __future__ import annotations

import math
import os
import re
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.ticker import FixedLocator, MaxNLocator

from ._checks import file_in_the_way
from .errors import ChoiceError, DomainError, FenchelError, ShapeError, ValueRangeError

__all__ = ["curve", "plot_accuracy", "plot_lambda_sweep"]

#: Colours of the paper's Figs. 1-2 (this work red, Adam blue, SGD green; the earlier lifted models of Fig. 1 in
#: colours of their own); other labels cycle through the default.
_COLOURS = {"fenchel": "tab:red", "adam": "tab:blue", "sgd": "tab:green", "askari": "tab:purple",
            "taylor": "tab:orange", "lau": "tab:brown"}
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
    ChoiceError
        No row has the column ``metric`` or ``x`` (the message names the argument and lists the columns).
    """
    rows = list(rows)
    for arg, col in (("metric", metric), ("x", x)):
        if rows and not any(col in r for r in rows):
            raise ChoiceError(f"{arg}: the history has no column {col!r}; expected one of {sorted(rows[0])}")
    pts = sorted((_num(r.get(x)), _num(r.get(metric))) for r in rows)
    pts = [(a, b) for a, b in pts if math.isfinite(a) and math.isfinite(b)]
    return [a for a, _ in pts], [b for _, b in pts]


_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")  # the fifth run of a colour changes marker, so no two lines look alike

#: A legend stays inside the axes only for at most this many curves whose labels are all at most
#: ``_INSIDE_CHARS`` characters long (and only where it covers no curve); otherwise it goes below the axes.
_INSIDE_RUNS = 4
_INSIDE_CHARS = 30
#: Legend labels longer than this many characters are wrapped onto several lines (fewer in a narrow figure).
_WRAP = 44
#: Gap (inches) between the axes' tick labels and a legend below them, and below the legend.
_PAD_IN = 0.08

# a label piece ends at a comma followed by blank space, another comma or the end ("gamma 1,10" stays one piece)
_PIECE_END = re.compile(r",(?=[\s,]|$)")
# a piece that is only a setting's name with no value: "lam " (blank after the name), "lam=" or "lam:"
_EMPTY_VALUE = re.compile(r"^\s*\S+?(?:\s+|\s*[=:]\s*)$")


def _clean_label(label: Any) -> str:
    """A legend label without empty pieces: ``"fenchel, lam , gamma 1,10, "`` -> ``"fenchel, gamma 1,10"``.

    The label is split into pieces at commas followed by blank space, a comma or the end; empty pieces and
    ``key value`` pieces whose value is empty (``"lam "``, ``"lam="``) are dropped, and runs of blank space
    are collapsed to one space. The first piece (the method) is kept unless it is blank.
    """
    pieces = _PIECE_END.split(str(label))
    kept = [" ".join(pieces[0].split())]
    kept += [" ".join(p.split()) for p in pieces[1:] if not _EMPTY_VALUE.match(p)]
    return ", ".join(p for p in kept if p)


def _legend_text(label: str, last: str, i: int, width: float) -> str:
    """Cleaned ``label`` and the final value, wrapped to lines that fit a ``width``-inch figure (<= ``_WRAP``)."""
    text = f"{_clean_label(label) or f'run {i + 1}'} ({last})"
    # about 12 characters of the legend's small font per inch, after the line sample's half inch
    return textwrap.fill(text, width=max(16, min(_WRAP, int((width - 0.6) * 12))), break_on_hyphens=False)


def _covers_a_curve(legend: Legend, ax: Axes) -> bool:
    """Whether the legend's box crosses any line drawn on ``ax`` (display coordinates, segments included)."""
    box = legend.get_window_extent(ax.figure.canvas.get_renderer())
    return any(line.get_transform().transform_path(line.get_path()).intersects_bbox(box, filled=False)
               for line in ax.get_lines())


def _legend_below(fig: Figure, handles: list, labels: list[str], height: float) -> Legend:
    """Put a figure legend below the axes, in as many columns as the figure's width holds, and grow the figure.

    The axes keep the height they had at ``height`` inches: the figure grows by the legend's height, and
    ``tight_layout`` keeps the axes (tick labels and axis label included) above the legend.
    """
    renderer = fig.canvas.get_renderer()
    room = fig.bbox.width * 0.98
    ncols = len(labels)
    legend = None
    while True:
        if legend is not None:
            legend.remove()
        legend = fig.legend(handles, labels, loc="lower center", bbox_to_anchor=(0.5, 0.0), ncols=ncols,
                            fontsize="small", frameon=False, borderaxespad=_PAD_IN * 72 / 8)  # ~8 pt font
        width = legend.get_window_extent(renderer).width
        if width <= room or ncols == 1:
            break
        ncols = max(1, min(ncols - 1, int(ncols * room / width)))
    extra = legend.get_window_extent(renderer).height / fig.dpi + 2 * _PAD_IN
    fig.set_size_inches(fig.get_figwidth(), height + extra)
    fig.tight_layout(rect=(0.0, extra / (height + extra), 1.0, 1.0))
    return legend


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
        get solid, dashed, dotted and dash-dotted lines in turn (the plain method name first). In the legend a
        label is cleaned (pieces such as ``"lam "`` whose value is empty, empty pieces and runs of blank space
        are dropped), followed by the run's final value, and wrapped onto several lines when long.
    path : path-like, optional
        Where to write the figure (the format follows the suffix, e.g. ``.png``); parent folders are created.
    metric : str, default "test_acc"
        History column on the vertical axis (``test_acc``, ``train_acc``, ``test_loss``, ``J``, ...).
    x : str, default "epoch"
        History column on the horizontal axis (``epoch``, ``step`` or ``time``). For ``epoch`` and ``step``,
        when every plotted value is a whole number the axis has whole-number ticks only; histories with
        sub-epoch rows (``eval_every``) keep fractional ticks.
    title : str, optional
    ylim : (float, float), optional
        Range of the vertical axis (e.g. ``(0.93, 0.98)`` to tell close accuracy curves apart); curves leaving it
        are clipped.
    figsize : (float, float), default (6.0, 4.0)
        Width and height of the figure in inches. With more than four curves, or legend entries longer than
        30 characters, or where a legend in the corner would cover a curve, the legend goes below the axes in as
        many columns as the width holds, and the figure grows taller by the legend's height (the axes keep
        their size).
    dpi : int, default 120
        Resolution in dots per inch.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, with one axes (``fig.axes[0]``); its legend is ``fig.axes[0].get_legend()`` when inside the
        axes, or ``fig.legends[0]`` when below them.

    Raises
    ------
    ShapeError
        ``runs`` is empty.
    ChoiceError
        A history has no column ``metric`` or ``x``, or ``path`` has a suffix matplotlib cannot write.
    FenchelError
        ``path`` is a folder or lies below a file (:func:`figure_path`).
    DomainError
        No run has a finite value of ``metric``.
    ValueRangeError
        ``ylim`` is not two finite numbers low < high, ``figsize`` not two positive numbers, or ``dpi`` not
        positive.
    """
    if not isinstance(runs, Mapping):
        raise ShapeError(f"runs: expected a dict of label -> history rows, got {type(runs).__name__}")
    if not runs:
        raise ShapeError("runs: expected at least one labelled history, got none")
    for label, rows in runs.items():
        if not isinstance(label, str) or not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)) \
                or not all(isinstance(r, Mapping) for r in rows):
            raise ShapeError(f"runs: expected text labels and lists of history rows (dicts), got the entry "
                             f"{label!r}")
    if ylim is not None:
        try:
            lo, hi = (float(v) for v in ylim)
        except (TypeError, ValueError):
            lo = hi = math.nan
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueRangeError(f"ylim: expected two finite numbers low < high, got {ylim!r}")
    try:
        width, height = (float(v) for v in figsize)
        ok = all(math.isfinite(v) and v > 0 for v in (width, height, float(dpi)))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueRangeError(f"figsize, dpi: expected two positive inch sizes and positive dots per inch, "
                              f"got figsize={figsize!r}, dpi={dpi!r}; try the defaults (6.0, 4.0) and 120")
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    keys = {label: next((k for k in _COLOURS if k in label.lower()), None) for label in runs}
    # runs of one colour take the line styles in turn, the plain method ("fenchel" beside its variants) first
    styles: dict[str, tuple[str, str]] = {}
    for key in set(keys.values()):
        group = sorted((lb for lb in runs if keys[lb] == key), key=lambda lb: lb.lower() != key)
        for i, lb in enumerate(group):
            styles[lb] = ((_STYLES[i % len(_STYLES)], _MARKERS[(i // len(_STYLES)) % len(_MARKERS)])
                          if key is not None else ("-", "o"))
    handles, texts, all_x = [], [], []
    for i, (label, rows) in enumerate(runs.items()):
        xs, ys = curve(rows, metric, x)
        if not xs:  # said, not dropped silently: the caller may list the run as drawn
            warnings.warn(f"runs: {label!r} has no row with finite numbers in both {x!r} and {metric!r}; it is left "
                          "out of the figure", UserWarning, stacklevel=2)
            continue
        key, (style, marker) = keys[label], styles[label]
        last = f"{ys[-1]:.3f}" if "acc" in metric else f"{ys[-1]:.4g}"
        texts.append(_legend_text(label, last, i, width))
        (line,) = ax.plot(xs, ys, linestyle=style, marker=marker if len(xs) <= 30 else None, markersize=3,
                          color=_COLOURS.get(key), label=texts[-1])
        handles.append(line)
        all_x += xs
    if not handles:
        raise DomainError(f"runs: no run has rows with finite numbers in both {x!r} (x) and {metric!r} (metric) to "
                          "plot (was a test set given? is the x column numeric?)")
    if ylim is not None:
        ax.set_ylim(lo, hi)
    if x in ("epoch", "step") and all(v == int(v) for v in all_x):  # whole epochs: no 1.25, 1.5 ticks
        # (one whole epoch alone: the locator finds under two integers in the view and falls back to fractions)
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(all_x))) if len(set(all_x)) == 1
                                   else MaxNLocator(integer=True))
    ax.set_xlabel(_NAMES.get(x, x))
    ax.set_ylabel(_NAMES.get(metric, metric))
    ax.grid(True, alpha=0.3)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    inside = len(texts) <= _INSIDE_RUNS and all(len(t) <= _INSIDE_CHARS and "\n" not in t for t in texts)
    if inside:
        legend = ax.legend(handles, texts, loc="lower right" if "acc" in metric else "upper right",
                           fontsize="small")
        if _covers_a_curve(legend, ax):
            legend.remove()
            inside = False
    if not inside:
        _legend_below(fig, handles, texts, height)
    if path is not None:
        fig.savefig(figure_path(path), bbox_inches="tight")
    return fig


def figure_path(path: str | os.PathLike, name: str = "path") -> Path:
    """``path`` checked as a figure file to write, its missing parent folders created; errors call it ``name``.

    Raises
    ------
    ChoiceError
        A suffix matplotlib cannot write (or none: the file would not be where the caller looks).
    FenchelError
        ``path`` is a folder, or one of its parents is a file.
    """
    path = Path(path)
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        suffixes = ", ".join("." + f for f in sorted(formats))
        raise ChoiceError(f"{name}: expected a figure file ending in one of {suffixes}, got {str(path)!r}")
    if path.is_dir():
        raise FenchelError(f"{name}: expected a figure file, got the folder {str(path)!r}")
    blocking = file_in_the_way(path)
    if blocking is not None:
        raise FenchelError(f"{name}: cannot write {str(path)!r}: {str(blocking)!r} is a file, not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


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
        fig.savefig(figure_path(path), dpi=120)
    return fig
