"""Formatting and styling shared by the views (plain functions, no widgets)."""

from __future__ import annotations

import html

from ..text import fmt_count, fmt_pct  # noqa: F401 (plain formatting, shared with the headless demo)

from ..colors import (  # noqa: F401 - re-exported for the views
    IGNORED_COLOR,
    KEEP_COLOR,
    MACS_COLOR,
    MEMBER_COLOR,
    PARAMS_COLOR,
    PRUNED_COLOR,
    REMOVE_COLOR,
    ROOT_COLOR,
)

CSS = """
<style>
.pe-app { font-family: var(--jp-ui-font-family, sans-serif); box-sizing: border-box; max-width: 100%; outline: none; }
.pe-app * { box-sizing: border-box; }
.pe-app-title { display: flex; flex-wrap: wrap; align-items: baseline; gap: 4px 16px; }
.pe-keys { color: #868e96; font-size: 11px; cursor: help; border-bottom: 1px dotted #adb5bd; }
.pe-header table, .pe-card-table table { border-collapse: collapse; }
.pe-header-cells { display: flex; flex-wrap: wrap; gap: 6px 22px; }
.pe-header-cells > div { min-width: 0; }
.pe-big { font-size: 1.35em; font-weight: 600; }
.pe-muted { color: #868e96; }
.pe-removed { color: #c92a2a; font-weight: 600; }
.pe-card-table { overflow-x: auto; max-width: 100%; }
.pe-card-table table { font-size: 12px; width: 100%; }
.pe-card-table th { text-align: left; border-bottom: 1px solid #adb5bd; padding: 2px 8px 2px 0; white-space: nowrap; word-break: keep-all; }
.pe-output-line { font-size: 13px; margin-top: 2px; }
.pe-output-curve { vertical-align: middle; margin-left: 8px; }
.pe-card-table td { padding: 1px 8px 1px 0; border-bottom: 1px solid #f1f3f5; white-space: nowrap; }
.pe-card-table td:first-child { white-space: normal; }
.pe-card-table tr.pe-root td { background: #fff4e6; font-weight: 600; }
.pe-status-error { color: #c92a2a; font-weight: 600; }
.pe-status-ok { color: #2b8a3e; }
.pe-status div { overflow-wrap: anywhere; }
.pe-legend span { display: inline-block; padding: 0 6px; margin: 0 6px 2px 0; border: 1px solid #adb5bd; border-radius: 3px; font-size: 11px; }
.pe-scroll { max-height: 260px; overflow-y: auto; }
.pe-layer-info { overflow-wrap: anywhere; }
.pe-app .widget-html-content { overflow-wrap: anywhere; min-width: 0; max-width: 100%; }
/* the finish table wraps between its columns' parts (each "a → b" stays whole) to fit a narrow column */
.pe-finish-table td { white-space: normal; }
.pe-finish-table .pe-pair { white-space: nowrap; }
.pe-app .widget-select-multiple select { font-size: 12px; }
/* charts (PlotlyChart, see ..plotly_chart) draw themselves at their box's width */
.pe-app .pe-chart { max-width: 100%; overflow: hidden; }
.pe-chart-error { color: #c92a2a; font-size: 12px; }
.pe-app .widget-button:disabled, .pe-app .jupyter-button:disabled { opacity: 0.45; filter: grayscale(1); cursor: not-allowed; }
</style>
"""


def esc(x) -> str:
    return html.escape(str(x))


def fmt_share(x, digits: int = 1) -> str:
    """A fraction as a percentage with ``digits`` decimals; a tiny non-zero one reads ``<0.1%``, never ``0.0%``.

    >>> fmt_share(0.178), fmt_share(0.0003), fmt_share(0.0), fmt_share(None)
    ('17.8%', '<0.1%', '0.0%', 'n/a')
    """
    if x is None or x != x:
        return "n/a"
    floor = 0.5 * 10 ** (-digits) / 100
    if 0 < abs(x) < floor:
        return f"<{10 ** (-digits):.{digits}f}%"
    return f"{100.0 * x:.{digits}f}%"


def esc_name(name) -> str:
    """A qualified layer name for HTML, allowed to wrap after its dots (``features.<wbr>denseblock1...``)."""
    return esc(name).replace(".", ".<wbr>")
