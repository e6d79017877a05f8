"""Plotly figures for sensitivity scans and plan comparisons (plain ``go.Figure`` objects: show them in a notebook,
or wrap them in ``go.FigureWidget`` inside the explorer).

* :func:`sensitivity_heatmap` -- groups x ratios, coloured by the metric drop (or another value of the table);
* :func:`group_curve_figure` -- one group's metric against the fraction of its channels removed, with a proposed
  ratio (a number, a :class:`~prune_explorer.plan.GroupDecision` or a whole plan) marked;
* :func:`plan_comparison_figure` -- bars of parameters, MACs, metric (and latency) per plan;
* :func:`plan_widths_figure` -- grouped bars of the pruned layers' widths per plan;
* :func:`plan_comparison_table` -- the comparison as a plotly table.

Each builder takes the plain objects of :mod:`prune_explorer.sensitivity` and only reads them; none is slower than a
few milliseconds for hundreds of groups.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["sensitivity_heatmap", "group_curve_figure", "plan_comparison_figure", "plan_widths_figure",
           "plan_comparison_table", "PLAN_COLORS"]

PLAN_COLORS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_LABELS = {"metric": "metric", "drop": "metric drop (baseline - metric)", "channels": "root channels removed",
           "fraction": "fraction of channels removed", "params_removed": "parameters removed",
           "macs_removed": "MACs removed"}


def sensitivity_heatmap(table, value: str = "drop", title: Optional[str] = None, height: Optional[int] = None,
                        width: Optional[int] = None) -> go.Figure:
    """Groups (rows, in the pruner's order, top to bottom) x ratios (columns), coloured by ``value`` (see
    :meth:`~prune_explorer.sensitivity.SensitivityTable.pivot`; default the metric drop, on a diverging scale
    centred on 0 so that points where pruning *helped* show blue). Hovering a cell shows the channels removed,
    the metric and the parameters and MACs removed."""
    p = table.pivot(value)
    ch, met, par, mac = (table.pivot(v).values for v in ("channels", "metric", "params_removed", "macs_removed"))
    info = {g.key: g for g in table.groups}
    custom = [[[c, m, pr / table.base_params * 100 if pr is not None else None,
                mc / table.base_macs * 100 if (mc is not None and table.base_macs) else None, info[k].channels]
               for c, m, pr, mc in zip(ch[i], met[i], par[i], mac[i])] for i, k in enumerate(p.groups)]
    xs = [f"{r:g}" for r in p.ratios]
    heat = go.Heatmap(
        z=p.values, x=xs, y=p.groups, customdata=custom, colorscale="RdBu_r" if value == "drop" else "Viridis",
        zmid=0 if value == "drop" else None, colorbar=dict(title=dict(text=value)),
        hovertemplate=("<b>%{y}</b> at ratio %{x}<br>%{customdata[0]} of %{customdata[4]} channels removed<br>"
                       "metric %{customdata[1]:.4g}<br>" + _LABELS[value] + ": %{z:.4g}<br>"
                       "params removed %{customdata[2]:.2f}%<br>MACs removed %{customdata[3]:.2f}%<extra></extra>"))
    fig = go.Figure(heat)
    fig.update_layout(
        title=title or f"Sensitivity: {_LABELS[value]} (baseline {table.baseline:.4g})",
        xaxis_title="ratio of the group's channels removed", yaxis=dict(autorange="reversed", title="group"),
        template="plotly_white", height=height or max(260, 90 + 22 * len(p.groups)), width=width,
        margin=dict(l=10, r=10, t=50, b=45))
    return fig


def _proposed_fraction(table, key: str, proposed) -> Optional[float]:
    if proposed is None:
        return None
    if isinstance(proposed, (int, float)) and not isinstance(proposed, bool):
        return float(proposed)
    decision = proposed.get(key) if hasattr(proposed, "get") and hasattr(proposed, "decisions") else proposed
    if decision is None:
        return 0.0
    channels = decision.channels or table.group(key).channels
    n = decision.count(channels)
    return n / channels if channels else 0.0


def group_curve_figure(table, key: str, proposed=None, height: int = 260, width: Optional[int] = None) -> go.Figure:
    """One group's scanned metric against the fraction of its root channels removed (0 = the baseline), with the
    baseline dashed and ``proposed`` (a fraction, a :class:`~prune_explorer.plan.GroupDecision` or a
    :class:`~prune_explorer.plan.PruningPlan`) marked at its interpolated metric."""
    c = table.curve(key)
    info = table.group(key)
    fig = go.Figure()
    fig.add_scatter(x=c["fraction"], y=c["metric"], mode="lines+markers", name="scan",
                    customdata=list(zip(c["channels"], c["ratio"])),
                    hovertemplate=("%{customdata[0]} of " + str(info.channels) + " channels (ratio %{customdata[1]:g})"
                                   "<br>metric %{y:.4g}<extra></extra>"))
    fig.add_hline(y=table.baseline, line=dict(dash="dash", color="#7f7f7f", width=1),
                  annotation_text="baseline", annotation_position="bottom left")
    frac = _proposed_fraction(table, key, proposed)
    if frac is not None:
        xs, ys = c["fraction"], c["metric"]
        y = ys[-1]
        for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
            if x0 <= frac <= x1:
                y = y0 if x1 == x0 else y0 + (y1 - y0) * (frac - x0) / (x1 - x0)
                break
        fig.add_vline(x=frac, line=dict(color="#d62728", width=1))
        fig.add_scatter(x=[frac], y=[y], mode="markers", name="proposed",
                        marker=dict(color="#d62728", size=11, symbol="diamond"),
                        hovertemplate=f"proposed: {frac:.0%} of the channels<br>metric ~%{{y:.4g}}<extra></extra>")
    fig.update_layout(title=f"{key}: metric vs channels removed", xaxis=dict(title="fraction of channels removed",
                      tickformat=".0%", range=[-0.02, 1.0]), yaxis_title="metric", template="plotly_white",
                      height=height, width=width, showlegend=False, margin=dict(l=45, r=10, t=40, b=40))
    return fig


def _colors(n: int) -> Sequence[str]:
    return [PLAN_COLORS[i % len(PLAN_COLORS)] for i in range(n)]


def plan_comparison_figure(comparison, metric_name: str = "metric", height: int = 320,
                           width: Optional[int] = None) -> go.Figure:
    """Bars per plan: parameters and MACs (% of the original), the metric before fine-tuning and, when measured,
    the latency (ms)."""
    recs = comparison.records()
    names = [r["name"] for r in recs]
    panels = [("parameters (% of original)", [r["params_fraction"] * 100 for r in recs], "%{y:.1f}%"),
              ("MACs (% of original)", [(r["macs_fraction"] or 0) * 100 for r in recs], "%{y:.1f}%")]
    if any(r["metric"] is not None for r in recs):
        panels.append((metric_name, [r["metric"] for r in recs], "%{y:.4g}"))
    if any(r["latency"] is not None for r in recs):
        panels.append(("latency (ms)", [None if r["latency"] is None else r["latency"] * 1e3 for r in recs],
                       "%{y:.3g} ms"))
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p[0] for p in panels])
    colors = _colors(len(names))
    for j, (title, ys, fmt) in enumerate(panels, start=1):
        fig.add_bar(x=names, y=ys, marker_color=colors, showlegend=False, row=1, col=j,
                    hovertemplate="%{x}: " + fmt + "<extra>" + title + "</extra>", texttemplate=fmt,
                    textposition="outside", cliponaxis=False)
    fig.update_layout(template="plotly_white", height=height, width=width, margin=dict(l=40, r=10, t=50, b=40),
                      title="Plans compared (metric before fine-tuning)", uniformtext=dict(minsize=8, mode="hide"))
    return fig


def plan_widths_figure(comparison, height: int = 340, width: Optional[int] = None) -> go.Figure:
    """Grouped bars: each pruned layer's output width (x: layers in the pruner's order) for every plan."""
    widths = comparison.widths()
    fig = go.Figure()
    for (name, ws), color in zip(widths.items(), _colors(len(widths))):
        fig.add_bar(x=comparison.layers, y=ws, name=name, marker_color=color,
                    hovertemplate="%{x}: %{y} channels<extra>" + name + "</extra>")
    fig.update_layout(barmode="group", template="plotly_white", height=height, width=width,
                      title="Layer widths per plan", xaxis_title="layer", yaxis_title="output channels",
                      margin=dict(l=45, r=10, t=50, b=80), legend=dict(orientation="h", y=1.12))
    return fig


def plan_comparison_table(comparison, height: Optional[int] = None, width: Optional[int] = None) -> go.Figure:
    """The comparison's rows (parameters, MACs, their fractions, metric, latency) as a plotly table."""
    recs = comparison.records()
    header = ["plan", "parameters", "% params", "MACs", "% MACs", "metric", "latency (ms)"]
    cols = [[r["name"] for r in recs], [f"{r['params']:,}" for r in recs],
            [f"{r['params_fraction']:.1%}" for r in recs], [f"{r['macs']:,}" for r in recs],
            [f"{r['macs_fraction']:.1%}" if r["macs_fraction"] is not None else "-" for r in recs],
            ["-" if r["metric"] is None else f"{r['metric']:.4g}" for r in recs],
            ["-" if r["latency"] is None else f"{r['latency'] * 1e3:.3g}" for r in recs]]
    fig = go.Figure(go.Table(header=dict(values=header, align="left"), cells=dict(values=cols, align="left")))
    fig.update_layout(height=height or 60 + 28 * (len(recs) + 1), width=width, margin=dict(l=5, r=5, t=5, b=5))
    return fig
