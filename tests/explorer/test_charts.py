"""The charts (plotly figures built by pure functions) and the widget that shows them."""

import doctest
import json

import numpy as np
import plotly.graph_objects as go
import pytest

from prune_explorer.explorer import charts, plotly_chart
from prune_explorer.explorer.charts import (RatioSeries, histogram_figure, histogram_spec, macs_bars_figure,
                                            quadratic_rule, ratio_curve_figure, ratio_curves_spec)
from prune_explorer.explorer.plotly_chart import PlotlyChart, plotly_js_source


def test_histogram_counts_every_channel_once_in_shared_bins():
    kept = [1.0, 1.1, 1.1, 1.2, 1.3]
    removed = [0.1, 0.2, 0.25, float("nan")]
    fig = histogram_figure(kept, removed, threshold=0.6, bins=10)
    rem, kep = fig.data
    assert rem.name == "proposed for removal (3)" and kep.name == "kept (5)"
    assert int(np.sum(rem.y)) == 3 and int(np.sum(kep.y)) == 5
    assert list(rem.x) == list(kep.x) and len(rem.x) == 10  # one shared set of bins
    # each channel sits in the bin whose range holds its value
    width = float(rem.width)
    for v in kept:
        b = int(np.argmin([abs(v - x) for x in kep.x]))
        assert abs(v - kep.x[b]) <= width / 2 + 1e-9 and kep.y[b] >= 1
    assert fig.layout.barmode == "stack"
    assert fig.layout.shapes[0].x0 == 0.6 and fig.layout.shapes[0].line.dash == "dash"


def test_histogram_degenerate_inputs():
    empty = histogram_figure([], [float("nan")])
    assert not empty.data and "no importance scores" in empty.layout.annotations[0].text
    one = histogram_figure([2.0, 2.0], [])  # a single value: still a drawable range
    assert int(np.sum(one.data[1].y)) == 2 and np.all(np.isfinite(one.data[1].x))
    assert not one.layout.shapes  # no threshold given


def test_ratio_curve_references_sweep_and_named_points():
    fig = ratio_curve_figure("MACs removed", [0.0, 0.3], [0.0, 0.5], ["(start)", "layer1.0.conv1"],
                             sweep=([0.0, 0.5, 0.9], [0.0, float("nan"), 0.99]), sweep_ratios=[0.0, 0.5, 0.9])
    quad, lin, sweep, acc = fig.data
    p = np.asarray(quad.x)
    assert np.allclose(quad.y, 1 - (1 - p) ** 2) and np.allclose(lin.y, lin.x)
    assert list(sweep.x) == [0.0, 0.9] and list(sweep.text) == ["p = 0.0", "p = 0.9"]  # NaN left out, not drawn at 0
    assert list(acc.text) == ["(start)", "layer1.0.conv1"] and list(acc.y) == [0.0, 0.5]
    assert fig.layout.title.text == "MACs removed" and fig.layout.xaxis.range == (0, 1)
    assert [t.name for t in ratio_curve_figure("x", [0], [0]).data] == ["1-(1-p)²", "p", "accepted groups"]


def test_ratio_curves_put_parameters_and_macs_on_one_pair_of_axes():
    series = [RatioSeries("parameters", [0.0, 0.4], "#111111", [0.0, 0.7]),
              RatioSeries("MACs", [0.0, float("nan")], "#222222", [0.0, None])]
    spec = ratio_curves_spec("both", [0.0, 0.3], series, ["(start)", "conv1"], sweep_xs=[0.0, 0.5],
                             sweep_ratios=[0.0, 0.5])
    json.dumps(spec, allow_nan=False)  # plain JSON: lists and numbers, NaN as null (a gap)
    names = [t["name"] for t in spec["data"]]
    assert names == ["1-(1-p)²", "p", "parameters, uniform sweep", "parameters, accepted groups",
                     "MACs, uniform sweep", "MACs, accepted groups"]
    by = {t["name"]: t for t in spec["data"]}
    assert by["parameters, accepted groups"]["y"] == [0.0, 0.4] and by["MACs, accepted groups"]["y"] == [0.0, None]
    assert by["MACs, uniform sweep"]["x"] == [0.0] and by["parameters, uniform sweep"]["text"] == ["p = 0.0", "p = 0.5"]
    assert by["MACs, accepted groups"]["line"]["color"] == "#222222"
    assert "MACs removed" in by["MACs, accepted groups"]["hovertemplate"]
    # the figure builders are these specs as go.Figure (what tests and notebooks read)
    assert list(histogram_figure([1.0, 2.0], [0.5], 0.7).data[0].y) == \
        histogram_spec([1.0, 2.0], [0.5], 0.7)["data"][0]["y"]


def test_quadratic_rule_is_elementwise():
    assert np.allclose(quadratic_rule(np.array([0.0, 0.5, 1.0])), [0.0, 0.75, 1.0])


def test_macs_bars_show_the_costliest_layers_first():
    names = ["a", "b", "c", "d"]
    fig = macs_bars_figure(names, [10, 400, 30, 200], [10, 100, 30, 50], top=3)
    orig, pruned = fig.data
    assert list(orig.y) == ["b", "d", "c"] and list(orig.x) == [400, 200, 30]
    assert list(pruned.x) == [100, 50, 30] and pruned.text[0] == "75.0% removed"
    assert "3 costliest" in fig.layout.title.text


@pytest.mark.parametrize("fig", [
    histogram_figure([1.0, 2.0, 2.5], [0.5], threshold=0.7), histogram_figure([], []),
    ratio_curve_figure("P", [0.0, 0.2], [0.0, 0.3], ["a", "b"], sweep=([0.0, 0.5], [0.0, 0.7]), sweep_ratios=[0, 0.5]),
    macs_bars_figure(["a", "b"], [10, 20], [5, 20]),
    go.Figure(ratio_curves_spec("both", [0.0, 0.2], [RatioSeries("parameters", [0.0, 0.3], "#111111", [0.0, 0.6]),
                                                     RatioSeries("MACs", [0.0, 0.4], "#222222", [0.0, 0.8])],
                                ["a", "b"], sweep_xs=[0.0, 0.5], sweep_ratios=[0, 0.5]), _validate=False),
], ids=["histogram", "empty histogram", "ratio curve", "MACs bars", "ratio curves"])
def test_every_figure_passes_plotly_validation(fig):
    # the builders skip plotly's validation for speed: a misspelt property would only show up here
    checked = go.Figure(fig.to_dict())
    assert len(checked.data) == len(fig.data) and checked.layout.height == fig.layout.height
    with pytest.raises(ValueError):  # (what validation catches)
        go.Figure({**fig.to_dict(), "layout": {**fig.to_dict()["layout"], "heigth": 1}})


def test_plotly_chart_syncs_the_figure_json_and_sizes_to_its_box():
    fig = histogram_figure([1.0, 2.0], [0.5], threshold=0.7)
    chart = PlotlyChart(fig)
    assert chart.fig is fig
    spec = chart.figure
    json.dumps(spec)  # plain JSON, numpy arrays encoded for plotly.js
    assert [t["type"] for t in spec["data"]] == ["bar", "bar"] and spec["layout"]["height"] == 250
    assert "width" not in spec["layout"] and chart.layout.width == "100%" and chart.layout.min_width == "0"
    chart.show(ratio_curve_figure("Parameters removed", [0.0], [0.0]))
    assert chart.figure["layout"]["title"]["text"] == "Parameters removed"
    chart.show(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]), layout=dict(width=900, height=420)))  # e.g. a sensitivity map
    assert "width" not in chart.figure["layout"] and chart.figure["layout"]["height"] == 420  # the box sets the width
    assert chart.fig.layout.width == 900  # the figure itself is left as it was given
    before = chart.figure
    with pytest.raises(TypeError, match="plotly.graph_objects.Figure"):
        chart.show({"data": []})
    assert chart.figure == before


def test_plotly_chart_sends_plotly_js_when_the_front_end_asks():
    chart = PlotlyChart()
    sent = []
    chart.send = lambda content, buffers=None: sent.append(content)  # the comm is not open outside a kernel
    chart._on_front_end_msg(chart, {"event": "something else"}, [])
    assert sent == []
    chart._on_front_end_msg(chart, {"event": "need-plotly-js"}, [])
    assert sent[0]["event"] == "plotly-js" and sent[0]["source"] is plotly_js_source()
    assert "plotly.js v" in sent[0]["source"][:200]


def test_docstring_examples_run():
    for mod in (charts, plotly_chart):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0


def test_histogram_data_splits_the_finite_scores_by_the_selection():
    from prune_explorer.explorer.views.group_card import histogram_data

    card = {"candidates": [0, 1, 2, 3, 4], "importance": [0.5, None, float("nan"), 2.0, 0.1], "selected": [0, 2, 4],
            "threshold": 1.25}
    kept, removed, thr = histogram_data(card)
    assert list(kept) == [2.0] and list(removed) == [0.5, 0.1] and thr == 1.25
    spec = histogram_spec(kept, removed, thr)
    assert [t["name"] for t in spec["data"]] == ["proposed for removal (2)", "kept (1)"]
