"""The explorer's charts as plotly figures (pure functions of plain numbers; shown with :class:`.plotly_chart.PlotlyChart`).

* :func:`histogram_figure` -- the group card's channel-importance histogram: channels proposed for removal and kept,
  stacked, with the threshold between them.
* :func:`ratio_curve_figure` -- fraction of parameters (or MACs) removed against fraction of channels removed: the
  accepted groups, the uniform sweep, and the references ``1-(1-p)^2`` (the quadratic rule: a layer losing a
  fraction p of its input and output channels loses 1-(1-p)^2 of its weights) and ``p``.
* :func:`macs_bars_figure` -- the finish view's MACs per layer, original and pruned, for the layers that cost most.

The ones a click redraws also come as plain JSON, ``{"data": [...], "layout": {...}}`` of lists and numbers
(:func:`histogram_spec`; :func:`ratio_curves_spec`, parameters and MACs in one chart), which
:meth:`.plotly_chart.PlotlyChart.show_spec` sends as they are; ``*_figure`` is the same spec as a ``go.Figure``.

Every figure sets its own height and styles itself (white background, light grid; the ``none`` template, so the
JSON stays small); the width is the box's (the chart widget sets it). Hover texts carry the exact values. Figures
are built from plain dicts without plotly's property validation (3x faster: the card redraws its histogram on every
click); the tests validate every builder's output.

Example::

    >>> fig = histogram_figure(kept=[0.9, 1.1, 1.2], removed=[0.1, 0.2], threshold=0.5)
    >>> [t.name for t in fig.data], int(sum(fig.data[0].y)), int(sum(fig.data[1].y))
    (['proposed for removal (2)', 'kept (3)'], 2, 3)
    >>> fig.layout.shapes[0].x0
    0.5
    >>> curve = ratio_curve_figure("Parameters removed", [0.0, 0.5], [0.0, 0.7])
    >>> [t.name for t in curve.data]
    ['1-(1-p)²', 'p', 'accepted groups']
    >>> round(float(curve.data[0].y[25]), 4)   # the quadratic rule at p = 0.5
    0.75
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np
import plotly.graph_objects as go

from .colors import KEEP_COLOR, MACS_COLOR, REMOVE_COLOR

__all__ = ["histogram_figure", "histogram_spec", "ratio_curve_figure", "ratio_curve_spec", "ratio_curves_spec",
           "RatioSeries", "macs_bars_figure",
           "quadratic_rule", "json_number", "ACCEPTED_COLOR"]

ACCEPTED_COLOR = "#e8590c"
_AXIS = "#495057"
_GRID = "#e9ecef"
_FONT = dict(family="var(--jp-ui-font-family, sans-serif)", size=11, color=_AXIS)


def quadratic_rule(p):
    """``1-(1-p)^2``: the fraction of a layer's weights removed when a fraction ``p`` of both its input and its output
    channels go (elementwise on arrays).

    >>> quadratic_rule(0.5), quadratic_rule(0.0), quadratic_rule(1.0)
    (0.75, 0.0, 1.0)
    """
    return 1.0 - (1.0 - p) ** 2


def _axis(**kw) -> dict:
    return {**dict(gridcolor=_GRID, linecolor="#adb5bd", zeroline=False, ticks="outside", tickcolor="#adb5bd",
                   automargin=True), **kw}


def _layout(height: int, **kw) -> dict:
    return dict(template="none", height=height, font=_FONT, paper_bgcolor="white", plot_bgcolor="white",
                hoverlabel=dict(font_size=11), **kw)


def json_number(v) -> Optional[float]:
    """``v`` as a JSON number: a float, or None (plotly.js leaves a gap) for None, NaN and infinities.

    >>> json_number(np.float32(0.5)), json_number(float("nan")), json_number(None)
    (0.5, None, None)
    """
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _finite(values) -> np.ndarray:
    a = np.array(values, dtype=float).reshape(-1)  # (None becomes NaN)
    return a[np.isfinite(a)]


def histogram_figure(kept: Sequence[float], removed: Sequence[float], threshold: Optional[float] = None,
                     bins: int = 30, height: int = 250) -> go.Figure:
    """Stacked histogram of channel importances: channels proposed for removal (orange) and kept (blue).

    ``kept`` / ``removed`` are importance scores (non-finite ones are left out); the bins are shared, so each bar
    counts channels (trace 0: removed, trace 1: kept; ``y`` are counts, ``x`` bin centres). ``threshold`` draws
    the dashed line between the two sets. (:func:`histogram_spec` as a figure.)
    """
    return go.Figure(histogram_spec(kept, removed, threshold, bins, height), _validate=False)


def histogram_spec(kept: Sequence[float], removed: Sequence[float], threshold: Optional[float] = None,
                   bins: int = 30, height: int = 250) -> dict:
    """:func:`histogram_figure` as plain JSON (``{"data", "layout"}``; the counts are binned here, in Python)."""
    k, r = _finite(kept), _finite(removed)
    values = np.concatenate([k, r])
    layout = _layout(height, barmode="stack", bargap=0.05, margin=dict(l=48, r=12, t=30, b=40),
                     legend=dict(orientation="h", x=0, y=1.02, xanchor="left", yanchor="bottom"),
                     xaxis=_axis(title=dict(text="channel importance", standoff=6)),
                     yaxis=_axis(title=dict(text="channels", standoff=4), rangemode="tozero"))
    if not values.size:
        layout["annotations"] = [dict(text="no importance scores for this group", showarrow=False, xref="paper",
                                      yref="paper", x=0.5, y=0.5, font=dict(color="#868e96", size=12))]
        layout["xaxis"]["visible"] = layout["yaxis"]["visible"] = False
        return dict(data=[], layout=layout)
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < 1e-12:  # one value: a range around it
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    edges = np.linspace(lo, hi, bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    width = float(edges[1] - edges[0])
    tips = [f"importance {a:.4g} to {b:.4g}" for a, b in zip(edges[:-1].tolist(), edges[1:].tolist())]
    data = []
    for vals, name, color in ((r, "proposed for removal", REMOVE_COLOR), (k, "kept", KEEP_COLOR)):
        counts, _ = np.histogram(vals, bins=edges)
        data.append(dict(type="bar", x=centres, y=counts.tolist(), width=width, name=f"{name} ({vals.size})",
                         marker=dict(color=color), text=tips, textposition="none",
                         hovertemplate="%{text}: %{y} " + name + "<extra></extra>"))
    if threshold is not None and math.isfinite(threshold):
        threshold = float(threshold)
        layout["shapes"] = [dict(type="line", x0=threshold, x1=threshold, y0=0, y1=1, yref="paper",
                                 line=dict(color="#212529", dash="dash", width=1.5))]
        layout["annotations"] = [dict(x=threshold, y=1, yref="paper", text="threshold", showarrow=False,
                                      xanchor="left", yanchor="top", font=dict(size=10, color="#212529"))]
    return dict(data=data, layout=layout)


def ratio_curve_figure(title: str, xs: Sequence[float], ys: Sequence[float], roots: Sequence[str] = (),
                       sweep: Optional[Tuple[Sequence[float], Sequence[float]]] = None, color: str = MACS_COLOR,
                       sweep_ratios: Sequence[float] = (), height: int = 300) -> go.Figure:
    """One ratio-curve panel: fraction removed (y) against fraction of channels removed (x), both 0..1.

    Traces, in order: the quadratic rule ``1-(1-p)^2`` (dashed) and ``p`` (dotted) at p = 0, 0.02 .. 1, the uniform
    sweep (``sweep = (x, y)``, diamonds; only when given; non-finite points left out) and the accepted groups
    (``xs``, ``ys``, one point per group, hover names from ``roots``). (:func:`ratio_curve_spec` as a figure.)
    """
    return go.Figure(ratio_curve_spec(title, xs, ys, roots, sweep, color, sweep_ratios, height), _validate=False)


_REF = np.linspace(0.0, 1.0, 51)
_REF_X, _REF_QUAD = _REF.tolist(), quadratic_rule(_REF).tolist()


def ratio_curve_spec(title: str, xs: Sequence[float], ys: Sequence[float], roots: Sequence[str] = (),
                     sweep: Optional[Tuple[Sequence[float], Sequence[float]]] = None, color: str = MACS_COLOR,
                     sweep_ratios: Sequence[float] = (), height: int = 300) -> dict:
    """:func:`ratio_curve_figure` as plain JSON (``{"data", "layout"}``): one unnamed series of
    :func:`ratio_curves_spec`, its accepted groups in :data:`ACCEPTED_COLOR`."""
    series = [RatioSeries("", ys, color, None if sweep is None else sweep[1])]
    return ratio_curves_spec(title, xs, series, roots, None if sweep is None else sweep[0], sweep_ratios, height,
                             accepted_color=ACCEPTED_COLOR)


class RatioSeries(NamedTuple):
    """One quantity of a ratio-curve chart: its ``label`` (``""``: the chart's only one), the fraction removed
    after each accepted group (``ys``), its ``color`` and the uniform sweep's fractions (``sweep_ys``, or None)."""

    label: str
    ys: Sequence[float]
    color: str
    sweep_ys: Optional[Sequence[float]] = None


def ratio_curves_spec(title: str, xs: Sequence[float], series: Sequence[RatioSeries], roots: Sequence[str] = (),
                      sweep_xs: Optional[Sequence[float]] = None, sweep_ratios: Sequence[float] = (),
                      height: int = 300, accepted_color: Optional[str] = None) -> dict:
    """A ratio-curve chart as plain JSON: fractions removed (y) against fraction of channels removed (x), both 0..1,
    for one or more quantities (parameters, MACs) on the same axes.

    Traces, in order: the quadratic rule ``1-(1-p)^2`` (dashed) and ``p`` (dotted) at p = 0, 0.02 .. 1; then per
    series, its uniform sweep (at ``sweep_xs``, diamonds; only when given; non-finite points left out) and its
    accepted groups (``xs``, one point per group, hover names from ``roots``). A labelled series names its traces
    ``"<label>, uniform sweep"`` and ``"<label>, accepted groups"``; an unlabelled one ``"uniform sweep"`` and
    ``"accepted groups"``. ``accepted_color`` colours every accepted-groups line (default: the series' colour).
    """
    layout = _layout(
        height, title=dict(text=title, x=0.5, xanchor="center", y=0.97, font=dict(size=13, color="#212529")),
        margin=dict(l=46, r=12, t=34, b=40), hovermode="closest",
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.22, yanchor="top", font=dict(size=10)),
        xaxis=_axis(title=dict(text="fraction of channels removed", standoff=4), range=[0, 1], tickformat=".0%"),
        yaxis=_axis(range=[0, 1.02], tickformat=".0%"))
    data = [dict(type="scatter", x=_REF_X, y=_REF_QUAD, mode="lines", name="1-(1-p)²", hoverinfo="skip",
                 line=dict(color="#adb5bd", dash="dash", width=1.5)),
            dict(type="scatter", x=_REF_X, y=_REF_X, mode="lines", name="p", hoverinfo="skip",
                 line=dict(color="#ced4da", dash="dot", width=1.5))]
    xs_json = [json_number(v) for v in xs]
    names = [roots[i] if i < len(roots) else "" for i in range(len(xs))]
    for s in series:
        prefix = f"{s.label}, " if s.label else ""
        what = f"{s.label} removed" if s.label else "removed"
        if sweep_xs is not None and s.sweep_ys is not None and len(sweep_xs):
            sx = np.asarray([np.nan if v is None else v for v in sweep_xs], dtype=float)
            sy = np.asarray([np.nan if v is None else v for v in s.sweep_ys], dtype=float)
            ok = np.isfinite(sx) & np.isfinite(sy)
            labels = [f"p = {sweep_ratios[i]:.1f}" if i < len(sweep_ratios) else "" for i in range(len(sx))]
            data.append(dict(type="scatter", x=sx[ok].tolist(), y=sy[ok].tolist(), mode="lines+markers",
                             name=prefix + "uniform sweep", text=[labels[i] for i in np.flatnonzero(ok)],
                             line=dict(color=s.color, width=1.5),
                             marker=dict(symbol="diamond-open", size=8, color=s.color),
                             hovertemplate="uniform %{text}: %{x:.1%} of channels, %{y:.1%} " + what
                                           + "<extra></extra>"))
        color = accepted_color or s.color
        data.append(dict(type="scatter", x=xs_json, y=[json_number(v) for v in s.ys], mode="lines+markers",
                         name=prefix + "accepted groups", text=names, line=dict(color=color, width=1),
                         marker=dict(size=7, color=color),
                         hovertemplate="%{text}: %{x:.1%} of channels, %{y:.1%} " + what + "<extra></extra>"))
    return dict(data=data, layout=layout)


def macs_bars_figure(names: Sequence[str], original: Sequence[float], pruned: Sequence[float], top: int = 12,
                     height: Optional[int] = None) -> go.Figure:
    """MACs per layer, original (grey) and pruned (colour), as horizontal bars: the ``top`` layers that cost most
    originally, costliest first (traces 0 / 1: original / pruned, ``y`` the layer names, ``x`` MACs)."""
    order = sorted(range(len(names)), key=lambda i: -float(original[i]))[:top]
    ys = [str(names[i]) for i in order]
    o = [float(original[i]) for i in order]
    p = [float(pruned[i]) for i in order]
    removed = [f"{1 - b / a:.1%} removed" if a else "" for a, b in zip(o, p)]
    h = height or 70 + 22 * max(len(ys), 1)
    layout = _layout(
        h, barmode="group", bargap=0.25, bargroupgap=0.05, margin=dict(l=8, r=12, t=30, b=36),
        title=dict(text=f"MACs of the {len(ys)} costliest layers", x=0, xanchor="left", y=0.98,
                   font=dict(size=12, color="#212529")),
        legend=dict(orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom"),
        xaxis=_axis(title=dict(text="MACs", standoff=4), tickformat="~s", rangemode="tozero"),
        yaxis=_axis(autorange="reversed", ticks="", tickfont=dict(size=10)))
    data = [dict(type="bar", y=ys, x=o, orientation="h", name="original", marker=dict(color="#ced4da"),
                 hovertemplate="%{y}: %{x:,.0f} MACs originally<extra></extra>"),
            dict(type="bar", y=ys, x=p, orientation="h", name="pruned", marker=dict(color=MACS_COLOR), text=removed,
                 textposition="none", hovertemplate="%{y}: %{x:,.0f} MACs now (%{text})<extra></extra>")]
    return go.Figure(dict(data=data, layout=layout), _validate=False)
