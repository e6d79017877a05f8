"""Formatting and styling shared by the views (plain functions, no widgets)."""

from __future__ import annotations

import html

from ..text import fmt_count, fmt_pct  # noqa: F401 (plain formatting, shared with the headless demo)

# colours used consistently across the graph, the card and the curves
ROOT_COLOR = "#e8590c"  # the current group's root
MEMBER_COLOR = "#ffc078"  # layers coupled to it
PRUNED_COLOR = "#d0ebff"  # layers already pruned
IGNORED_COLOR = "#dee2e6"  # ignored layers
KEEP_COLOR = "#4c6ef5"  # kept channels in the histogram
REMOVE_COLOR = "#e8590c"  # channels proposed for removal
PARAMS_COLOR = "#1c7ed6"
MACS_COLOR = "#2f9e44"

CSS = """
<style>
.pe-app { font-family: var(--jp-ui-font-family, sans-serif); }
.pe-header table, .pe-card-table table { border-collapse: collapse; }
.pe-header td { padding: 2px 14px 2px 0; vertical-align: top; }
.pe-big { font-size: 1.35em; font-weight: 600; }
.pe-muted { color: #868e96; }
.pe-removed { color: #c92a2a; font-weight: 600; }
.pe-card-table table { font-size: 12px; width: 100%; }
.pe-card-table th { text-align: left; border-bottom: 1px solid #adb5bd; padding: 2px 8px 2px 0; }
.pe-card-table td { padding: 1px 8px 1px 0; border-bottom: 1px solid #f1f3f5; white-space: nowrap; }
.pe-card-table tr.pe-root td { background: #fff4e6; font-weight: 600; }
.pe-status-error { color: #c92a2a; font-weight: 600; }
.pe-status-ok { color: #2b8a3e; }
.pe-legend span { display: inline-block; padding: 0 6px; margin-right: 6px; border: 1px solid #adb5bd; border-radius: 3px; font-size: 11px; }
.pe-scroll { max-height: 260px; overflow-y: auto; }
</style>
"""


def esc(x) -> str:
    return html.escape(str(x))
