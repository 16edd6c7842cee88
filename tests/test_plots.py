"""Figures of training histories (:mod:`fenchel_cvx.plots`): legends that never cover the curves, clean labels,
whole-number epoch ticks, typed errors, and no ``pyplot``.

Geometry is read after an Agg draw, in display pixels, from the returned :class:`~matplotlib.figure.Figure`.
"""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from fenchel_cvx.errors import ChoiceError, DomainError, FenchelError, ShapeError, ValueRangeError
from fenchel_cvx.plots import _WRAP, _clean_label, curve, plot_accuracy


def _rows(k: int, n: int = 5, step: float = 1.0, strings: bool = True) -> list[dict]:
    """History rows at x = step, 2 step, ..., n step (values as strings, as read back from metrics.csv)."""
    rows = [{"epoch": i * step, "step": i + 1, "time": 0.37 * i, "test_acc": 0.5 + 0.04 * i + 0.01 * k}
            for i in range(1, n + 1)]
    return [{c: str(v) for c, v in r.items()} for r in rows] if strings else rows


def _drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def _legend(fig):
    legend = fig.axes[0].get_legend() or (fig.legends[0] if fig.legends else None)
    assert legend is not None
    return legend


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def _covers_a_line(fig, legend, renderer) -> bool:
    box = legend.get_window_extent(renderer)
    return any(line.get_transform().transform_path(line.get_path()).intersects_bbox(box, filled=False)
               for line in fig.axes[0].get_lines())


LONG = {f"fenchel (inexact), gamma 1,10, inexact_iters {k}, rho 0.{k}, lam {k}e-3, seed {k}": _rows(k)
        for k in range(8)}


def test_many_long_labels_go_below_the_axes_and_the_figure_grows_to_hold_them(tmp_path):
    png = tmp_path / "sub" / "acc.png"
    fig = plot_accuracy(LONG, png, figsize=(6.0, 4.0), dpi=100)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    assert ax.get_legend() is None and len(fig.legends) == 1
    legend = fig.legends[0].get_window_extent(renderer)
    axes_all = ax.get_tightbbox(renderer)  # the data area plus tick labels and axis labels
    assert legend.y1 <= axes_all.y0 and not _overlaps(legend, ax.bbox)
    # inside the figure, which grew taller while its width and the axes' height stayed about as asked
    assert fig.bbox.x0 <= legend.x0 and legend.x1 <= fig.bbox.x1 and fig.bbox.y0 <= legend.y0
    width, height = fig.get_size_inches()
    assert width == pytest.approx(6.0) and height > 4.0 + legend.height / fig.dpi * 0.99
    assert ax.bbox.height > 0.6 * 4.0 * fig.dpi
    # long labels are wrapped, not set on one ever wider line
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(texts) == 8 and all("\n" in t for t in texts)
    assert all(len(line) <= _WRAP for t in texts for line in t.splitlines())
    # the saved file keeps the whole legend (PNG header: width, height in pixels)
    w_px, h_px = struct.unpack(">II", png.read_bytes()[16:24])
    assert h_px >= 0.95 * fig.bbox.height and w_px <= fig.bbox.width + 1


def test_a_legend_below_takes_as_many_columns_as_fit():
    runs = {f"adam (lr 0.{k}), seed {k}": _rows(k) for k in range(8)}
    fig = plot_accuracy(runs)
    renderer = _drawn(fig)
    legend = fig.legends[0]
    box = legend.get_window_extent(renderer)
    assert legend._ncols >= 2 and box.width <= fig.bbox.width
    assert box.y1 <= fig.axes[0].get_tightbbox(renderer).y0
    wide = plot_accuracy({f"sgd {k}": _rows(k) for k in range(12)}, figsize=(10.0, 4.0))
    assert wide.legends[0]._ncols > legend._ncols


def test_a_few_short_labels_stay_inside_and_cover_no_curve():
    fig = plot_accuracy({"adam": _rows(0), "sgd": _rows(1)})
    renderer = _drawn(fig)
    legend = fig.axes[0].get_legend()
    assert legend is not None and not fig.legends
    assert fig.get_size_inches() == pytest.approx((6.0, 4.0))
    assert not _covers_a_line(fig, legend, renderer)
    assert [t.get_text() for t in legend.get_texts()] == ["adam (0.700)", "sgd (0.710)"]


def test_a_legend_that_would_cover_a_curve_moves_out():
    # an accuracy curve that stays low runs through the lower right corner, where the legend would sit
    flat = [{"epoch": i, "test_acc": 0.06} for i in range(9)]
    rising = [{"epoch": i, "test_acc": 0.1 * i} for i in range(9)]
    fig = plot_accuracy({"adam": flat, "sgd": rising}, ylim=(0.0, 1.0))
    renderer = _drawn(fig)
    assert fig.axes[0].get_legend() is None and len(fig.legends) == 1
    legend = fig.legends[0]
    assert not _covers_a_line(fig, legend, renderer)
    assert not _overlaps(legend.get_window_extent(renderer), fig.axes[0].bbox)


@pytest.mark.parametrize(("raw", "clean"), [
    ("fenchel, lam , gamma 1,10", "fenchel, gamma 1,10"),
    ("fenchel, gamma 1,10, ", "fenchel, gamma 1,10"),
    ("fenchel,   lam  0.1,,  rho=, gamma 1,10,inexact_iters 3", "fenchel, lam 0.1, gamma 1,10,inexact_iters 3"),
    ("fenchel (inexact), gamma 1,10, inexact", "fenchel (inexact), gamma 1,10, inexact"),
    ("Fenchel (this work)", "Fenchel (this work)"),
    ("  adam   (lr 0.1) ", "adam (lr 0.1)"),
])
def test_labels_lose_empty_pieces_and_extra_blanks(raw, clean):
    assert _clean_label(raw) == clean


def test_the_legend_prints_the_cleaned_label():
    fig = plot_accuracy({"fenchel, lam , gamma 1,10": _rows(0), "adam, ": _rows(1)})
    texts = [t.get_text() for t in _legend(fig).get_texts()]
    assert texts == ["fenchel, gamma 1,10 (0.700)", "adam (0.710)"]
    assert not any(", ," in t or " ," in t or "  " in t for t in texts)


@pytest.mark.parametrize("x", ["epoch", "step"])
def test_whole_epochs_and_steps_get_whole_number_ticks(x):
    fig = plot_accuracy({"fenchel": _rows(0, n=4), "adam": _rows(1, n=4)}, x=x)
    _drawn(fig)
    ticks = fig.axes[0].get_xticks()
    assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks


def test_a_one_epoch_run_gets_one_whole_tick():
    fig = plot_accuracy({"fenchel": _rows(0, n=1), "adam": _rows(1, n=1)})
    _drawn(fig)
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks == [1.0], ticks


def test_sub_epoch_rows_keep_fractional_ticks():
    # eval_every: rows at 0.25, 0.5, ..., 2 epochs
    fig = plot_accuracy({"fenchel": _rows(0, n=8, step=0.25, strings=False)}, x="epoch")
    _drawn(fig)
    ticks = fig.axes[0].get_xticks()
    assert any(not float(t).is_integer() for t in ticks), ticks


def test_curve_drops_missing_values_and_sorts():
    rows = [{"epoch": "2", "test_acc": "0.8"}, {"epoch": "1", "test_acc": ""}, {"epoch": "0", "test_acc": 0.1}]
    assert curve(rows) == ([0.0, 2.0], [0.1, 0.8])


def test_a_run_with_nothing_to_draw_is_named_in_a_warning():
    """One run all NaN beside a good one: it is left out with a warning naming it (it vanished silently while the
    command line listed it as drawn)."""
    with pytest.warns(UserWarning, match=r"runs: 'adam' has no row with finite numbers in both 'epoch' and "
                                         r"'test_acc'"):
        fig = plot_accuracy({"fenchel": _rows(0), "adam": [{"epoch": 1, "test_acc": "nan"}]})
    assert len(fig.axes[0].get_lines()) == 1


def test_a_metrics_file_that_is_not_text_is_a_typed_error(tmp_path):
    from fenchel_cvx.runs import read_metrics
    (tmp_path / "metrics.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FenchelError, match=r"run_dir: .*metrics.csv is not a readable metrics table"):
        read_metrics(tmp_path)


def test_errors_are_typed_and_name_the_argument():
    with pytest.raises(ShapeError, match="runs"):
        plot_accuracy({})
    with pytest.raises(ChoiceError, match=r"^x: .*'wallclock'"):
        plot_accuracy({"adam": _rows(0)}, x="wallclock")
    with pytest.raises(ChoiceError, match=r"^metric: .*'acc'"):
        curve(_rows(0), metric="acc")
    with pytest.raises(DomainError, match="runs"), pytest.warns(UserWarning, match="left out"):
        plot_accuracy({"adam": [{"epoch": 1, "test_acc": "nan"}]})
    with pytest.raises(ValueRangeError, match="ylim"):
        plot_accuracy({"adam": _rows(0)}, ylim=(0.9, 0.1))
    with pytest.raises(ValueRangeError, match="figsize"):
        plot_accuracy({"adam": _rows(0)}, figsize=(0.0, 4.0))
    assert all(issubclass(e, FenchelError) for e in (ShapeError, ChoiceError, DomainError, ValueRangeError))


def test_no_pyplot_and_no_backend_switch(tmp_path):
    code = ("import sys, matplotlib; before = matplotlib.rcParams._get_backend_or_none()\n"
            "from fenchel_cvx.plots import plot_accuracy\n"
            f"plot_accuracy({{'adam': [{{'epoch': 1, 'test_acc': 0.5}}, {{'epoch': 2, 'test_acc': 0.6}}]}}, "
            f"{str(tmp_path / 'a.png')!r})\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n"
            "assert matplotlib.rcParams._get_backend_or_none() == before, before\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert (tmp_path / "a.png").is_file()
