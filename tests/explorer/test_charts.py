"""The SVG charts (pure functions): ticks, bins, tooltips, degenerate inputs."""

import doctest
import re

from prune_explorer.explorer import charts
from prune_explorer.explorer.charts import histogram_svg, nice_ticks, ratio_curve_svg


def test_nice_ticks_cover_the_range_with_round_steps():
    assert nice_ticks(0, 10, 5) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    t = nice_ticks(0.937, 1.046, 5)
    assert all(0.937 <= v <= 1.046 for v in t) and len(t) >= 3
    assert nice_ticks(1, 1) == [1]


def test_histogram_counts_every_channel_once():
    kept = [1.0, 1.1, 1.1, 1.2, 1.3]
    removed = [0.1, 0.2, 0.25]
    svg = histogram_svg(kept, removed, threshold=0.6, bins=10)
    tips = re.findall(r"<title>importance [^<]*?: (\d+) proposed for removal, (\d+) kept</title>", svg)
    # each non-empty bin has one tooltip per bar drawn; count each bin once
    bins = {}
    for m in re.finditer(r"<title>(importance [^<]*?): (\d+) proposed for removal, (\d+) kept</title>", svg):
        bins[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    assert sum(r for r, _ in bins.values()) == 3 and sum(k for _, k in bins.values()) == 5 and tips
    assert svg.count("pe-bar-removed") == len([b for b in bins.values() if b[0]])
    assert "threshold 0.6" in svg


def test_histogram_degenerate_inputs():
    assert "no importance scores" in histogram_svg([], [float("nan")])
    one = histogram_svg([2.0, 2.0], [])  # a single value: still a drawable range
    assert one.count("pe-bar-kept") == 1 and "nan" not in one


def test_ratio_curve_clamps_and_names_points():
    svg = ratio_curve_svg("MACs removed", [0.0, 0.3], [0.0, 0.5], ["(start)", "layer1.0.conv1"],
                          sweep=([0.0, 0.5], [0.0, float("nan")]), sweep_ratios=[0.0, 0.5])
    assert "layer1.0.conv1: 30.0% of channels, 50.0% removed" in svg
    assert svg.count("pe-sweep-point") == 1  # the NaN point is left out, not drawn at 0
    assert svg.count("pe-accepted-point") == 2


def test_docstring_examples_run():
    result = doctest.testmod(charts)
    assert result.attempted > 0 and result.failed == 0
