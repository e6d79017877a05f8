"""The explorer's charts as plain SVG strings (no widgets, no JavaScript): the importance histogram and the ratio
curves.

They are drawn in Python and shown in HTML widgets: an SVG with a ``viewBox`` takes the width of its box (from a
narrow column to a wide screen), costs a few kilobytes, appears with the app, and needs no chart library in the
browser. Every bar and point has a ``<title>`` (the browser's tooltip) with its exact values.

Example::

    >>> svg = histogram_svg(kept=[0.9, 1.1, 1.2], removed=[0.1, 0.2], threshold=0.5)
    >>> svg.startswith("<svg") and "channel importance" in svg and "threshold" in svg
    True
    >>> "uniform sweep" in ratio_curve_svg("Parameters removed", [0, 0.5], [0, 0.7], sweep=([0, 0.5], [0, 0.75]))
    True
"""

from __future__ import annotations

import html
import math
from typing import List, Optional, Sequence, Tuple

from .colors import KEEP_COLOR, REMOVE_COLOR

__all__ = ["histogram_svg", "ratio_curve_svg", "nice_ticks"]

_FONT = "font-family:var(--jp-ui-font-family, sans-serif)"
_AXIS = "#495057"
_GRID = "#e9ecef"
_MUTED = "#868e96"


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def nice_ticks(lo: float, hi: float, n: int = 5) -> List[float]:
    """About ``n`` round tick values covering ``[lo, hi]``.

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(3, 17, 4)
    [5.0, 10.0, 15.0]
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(n, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    out = []
    k = 0
    while first + k * step <= hi + step * 1e-9:
        out.append(round(first + k * step, 12))
        k += 1
    return out


def _fmt_tick(v: float, step: float) -> str:
    if step >= 1:
        return f"{v:.0f}"
    digits = max(0, -int(math.floor(math.log10(step))))
    return f"{v:.{digits}f}"


def _svg_open(width: int, height: int, cls: str, label: str) -> str:
    return (f'<svg class="{cls}" viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet" '
            f'role="img" aria-label="{_esc(label)}" style="display:block;max-width:{int(width * 1.35)}px;'
            f'height:auto;{_FONT}" xmlns="http://www.w3.org/2000/svg">')


def histogram_svg(kept: Sequence[float], removed: Sequence[float], threshold: Optional[float] = None,
                  bins: int = 30, width: int = 560, height: int = 230) -> str:
    """Stacked histogram of channel importances: kept channels (blue) and those proposed for removal (orange).

    ``kept`` and ``removed`` are importance values (finite floats); ``threshold`` draws the dashed line between
    them. Bars carry ``<title>`` tooltips; the SVG scales to its box.
    """
    kept = [float(v) for v in kept if v is not None and math.isfinite(v)]
    removed = [float(v) for v in removed if v is not None and math.isfinite(v)]
    values = kept + removed
    ml, mr, mt, mb = 46, 16, 30, 40
    pw, ph = width - ml - mr, height - mt - mb
    parts = [_svg_open(width, height, "pe-hist-svg", "importance histogram")]
    legend_y = 14
    parts.append(f'<rect x="{ml}" y="{legend_y - 9}" width="10" height="10" fill="{REMOVE_COLOR}"/>'
                 f'<text x="{ml + 14}" y="{legend_y}" font-size="11" fill="{_AXIS}">proposed for removal ({len(removed)})</text>'
                 f'<rect x="{ml + 190}" y="{legend_y - 9}" width="10" height="10" fill="{KEEP_COLOR}"/>'
                 f'<text x="{ml + 204}" y="{legend_y}" font-size="11" fill="{_AXIS}">kept ({len(kept)})</text>')
    if not values:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12" fill="{_MUTED}">'
                     "no importance scores for this group</text></svg>")
        return "".join(parts)
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5 * (abs(lo) or 1.0), hi + 0.5 * (abs(hi) or 1.0)
    pad = (hi - lo) * 0.02
    lo, hi = lo - pad, hi + pad
    bw = (hi - lo) / bins
    counts_k = [0] * bins
    counts_r = [0] * bins
    for v in kept:
        counts_k[min(int((v - lo) / bw), bins - 1)] += 1
    for v in removed:
        counts_r[min(int((v - lo) / bw), bins - 1)] += 1
    top = max(k + r for k, r in zip(counts_k, counts_r)) or 1
    yt = [t for t in nice_ticks(0, top, 4) if t == int(t)] or [0.0, float(top)]
    ymax = max(top, yt[-1])

    def X(v):
        return ml + (v - lo) / (hi - lo) * pw

    def Y(c):
        return mt + ph - c / ymax * ph

    for t in yt:  # grid and y ticks
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="{_GRID}"/>'
                     f'<text x="{ml - 6}" y="{Y(t) + 4:.1f}" text-anchor="end" font-size="11" fill="{_AXIS}">{t:.0f}</text>')
    for b in range(bins):
        k, r = counts_k[b], counts_r[b]
        if not (k or r):
            continue
        x0, x1 = X(lo + b * bw), X(lo + (b + 1) * bw)
        tip = _esc(f"importance {lo + b * bw:.4g} to {lo + (b + 1) * bw:.4g}: {r} proposed for removal, {k} kept")
        w = max(x1 - x0 - 1, 1)
        if r:
            parts.append(f'<rect class="pe-bar pe-bar-removed" x="{x0:.1f}" y="{Y(r):.1f}" width="{w:.1f}" '
                         f'height="{Y(0) - Y(r):.1f}" fill="{REMOVE_COLOR}"><title>{tip}</title></rect>')
        if k:
            parts.append(f'<rect class="pe-bar pe-bar-kept" x="{x0:.1f}" y="{Y(r + k):.1f}" width="{w:.1f}" '
                         f'height="{Y(r) - Y(r + k):.1f}" fill="{KEEP_COLOR}" fill-opacity="0.9"><title>{tip}</title></rect>')
    xt = [t for t in nice_ticks(lo, hi, 5) if lo <= t <= hi]
    step = (xt[1] - xt[0]) if len(xt) > 1 else (hi - lo)
    for t in xt:
        parts.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" stroke="{_AXIS}"/>'
                     f'<text x="{X(t):.1f}" y="{mt + ph + 16}" text-anchor="middle" font-size="11" '
                     f'fill="{_AXIS}">{_fmt_tick(t, step)}</text>')
    parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" stroke="{_AXIS}"/>')
    if threshold is not None and lo <= threshold <= hi:
        tx = X(threshold)
        parts.append(f'<line class="pe-threshold" x1="{tx:.1f}" x2="{tx:.1f}" y1="{mt - 4}" y2="{mt + ph}" '
                     f'stroke="#212529" stroke-dasharray="5,3" stroke-width="1.5"><title>threshold '
                     f'{threshold:.4g}</title></line>')
        anchor = "start" if tx < ml + pw * 0.8 else "end"
        dx = 4 if anchor == "start" else -4
        parts.append(f'<text x="{tx + dx:.1f}" y="{mt + 8}" text-anchor="{anchor}" font-size="10" '
                     f'fill="#212529">threshold</text>')
    parts.append(f'<text x="{ml + pw / 2}" y="{height - 4}" text-anchor="middle" font-size="12" '
                 f'fill="{_AXIS}">channel importance</text>'
                 f'<text transform="translate(12 {mt + ph / 2}) rotate(-90)" text-anchor="middle" font-size="12" '
                 f'fill="{_AXIS}">channels</text></svg>')
    return "".join(parts)


def ratio_curve_svg(title: str, xs: Sequence[float], ys: Sequence[float], roots: Sequence[str] = (),
                    sweep: Optional[Tuple[Sequence[float], Sequence[float]]] = None, color: str = "#1c7ed6",
                    sweep_ratios: Sequence[float] = (), width: int = 340, height: int = 270) -> str:
    """One ratio-curve panel: fraction removed (y) against fraction of channels removed (x), both 0..100%.

    Draws the references ``1-(1-p)^2`` (dashed) and ``p`` (dotted), the uniform sweep (``sweep = (x, y)``,
    diamonds) and the accepted groups (``xs``, ``ys``, one point per group named by ``roots``).
    """
    ml, mr, mt, mb = 42, 14, 26, 62
    pw, ph = width - ml - mr, height - mt - mb
    parts = [_svg_open(width, height, "pe-curve-svg", title),
             f'<text x="{ml + pw / 2}" y="16" text-anchor="middle" font-size="13" fill="#212529">{_esc(title)}</text>']

    def X(v):
        return ml + min(max(v, 0.0), 1.0) * pw

    def Y(v):
        return mt + ph - min(max(v, 0.0), 1.0) * ph

    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" stroke="{_GRID}"/>'
                     f'<text x="{ml - 5}" y="{Y(t) + 4:.1f}" text-anchor="end" font-size="10" fill="{_AXIS}">'
                     f'{t:.0%}</text>'
                     f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{mt}" y2="{mt + ph}" stroke="{_GRID}"/>'
                     f'<text x="{X(t):.1f}" y="{mt + ph + 14}" text-anchor="middle" font-size="10" fill="{_AXIS}">'
                     f'{t:.0%}</text>')
    ref = [i / 50 for i in range(51)]

    def path(px, py):
        return " ".join(f"{'M' if i == 0 else 'L'}{X(a):.1f},{Y(b):.1f}" for i, (a, b) in enumerate(zip(px, py)))

    parts.append(f'<path class="pe-ref-quadratic" d="{path(ref, [1 - (1 - p) ** 2 for p in ref])}" fill="none" '
                 f'stroke="#adb5bd" stroke-dasharray="6,4" stroke-width="1.5"/>'
                 f'<path class="pe-ref-linear" d="{path(ref, ref)}" fill="none" stroke="#ced4da" '
                 'stroke-dasharray="2,3" stroke-width="1.5"/>')
    if sweep is not None and len(sweep[0]):
        sx, sy = sweep
        parts.append(f'<path class="pe-sweep-line" d="{path(sx, sy)}" fill="none" stroke="{color}" stroke-width="1.5"/>')
        for k, (a, b) in enumerate(zip(sx, sy)):
            if b is None or not math.isfinite(b):
                continue
            p = f"p = {sweep_ratios[k]:.1f}: " if k < len(sweep_ratios) else ""
            parts.append(f'<path class="pe-point pe-sweep-point" d="M{X(a):.1f},{Y(b) - 4:.1f} l4,4 l-4,4 l-4,-4 z" '
                         f'fill="white" stroke="{color}" stroke-width="1.3"><title>{_esc(p)}{a:.1%} of channels, '
                         f'{b:.1%} removed</title></path>')
    if len(xs) > 1:
        parts.append(f'<path class="pe-accepted-line" d="{path(xs, ys)}" fill="none" stroke="#e8590c" stroke-width="1"/>')
    for k, (a, b) in enumerate(zip(xs, ys)):
        name = roots[k] if k < len(roots) else ""
        parts.append(f'<circle class="pe-point pe-accepted-point" cx="{X(a):.1f}" cy="{Y(b):.1f}" r="3.5" '
                     f'fill="#e8590c"><title>{_esc(name)}: {a:.1%} of channels, {b:.1%} removed</title></circle>')
    parts.append(f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="{_AXIS}" stroke-width="0.8"/>'
                 f'<text x="{ml + pw / 2}" y="{mt + ph + 30}" text-anchor="middle" font-size="11" fill="{_AXIS}">'
                 "fraction of channels removed</text>")
    ly = height - 10
    items = [("dash", "#adb5bd", "1-(1-p)²"), ("dot", "#ced4da", "p"), ("line", color, "uniform sweep"),
             ("point", "#e8590c", "accepted groups")]
    x = ml - 30
    for kind, c, label in items:
        if kind == "point":
            parts.append(f'<circle cx="{x + 8}" cy="{ly - 4}" r="3.5" fill="{c}"/>')
        else:
            dash = {"dash": ' stroke-dasharray="6,4"', "dot": ' stroke-dasharray="2,3"', "line": ""}[kind]
            parts.append(f'<line x1="{x}" x2="{x + 16}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{x + 20}" y="{ly}" font-size="10" fill="{_AXIS}">{_esc(label)}</text>')
        x += 26 + 5.6 * len(label)
    parts.append("</svg>")
    return "".join(parts)
