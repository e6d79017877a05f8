"""Plain-text formatting of counts and fractions, shared by the views and the headless demo (no widgets).

>>> fmt_count(11689512), fmt_count(1816557056), fmt_count(None)
('11.69M', '1.82G', 'n/a')
>>> fmt_pct(0.1784), fmt_pct(0.0102, 2), fmt_pct(float("nan"))
('17.8%', '1.02%', 'n/a')
"""

from __future__ import annotations

from typing import Optional

__all__ = ["fmt_count", "fmt_pct"]


def fmt_count(n: Optional[float], digits: int = 2) -> str:
    """A count (parameters, MACs) with a K / M / G suffix; ``None -> 'n/a'``."""
    if n is None:
        return "n/a"
    n = float(n)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.{digits}f}{suffix}"
    return f"{int(round(n))}"


def fmt_pct(x: Optional[float], digits: int = 1) -> str:
    """A fraction as a percentage; ``None`` or NaN -> ``'n/a'``."""
    if x is None or x != x:
        return "n/a"
    return f"{100.0 * x:.{digits}f}%"
