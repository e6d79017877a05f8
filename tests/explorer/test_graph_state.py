"""The graph view's plain-Python controller (GraphState): what is drawn, where the viewport goes, search, clicks.

Real torchvision architectures in small configurations (ResNet-18, a two-block DenseNet, a two-layer ViT), real
controllers; the SVG layout itself is checked in the browser tests.
"""

import re
import shutil

import pytest
import torch

from prune_explorer.explorer import ExplorerController
from prune_explorer.explorer.graph_state import (
    FAN_IN_LIMIT,
    GraphState,
    GraphStateError,
    assign_blocks,
    container_blocks,
    render_svg,
)

torchvision = pytest.importorskip("torchvision")


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    return ExplorerController(model, torch.randn(1, 3, 64, 64))


@pytest.fixture(scope="module")
def densenet():
    torch.manual_seed(0)
    model = torchvision.models.DenseNet(growth_rate=8, block_config=(4, 3), num_init_features=16, bn_size=2,
                                        num_classes=10).eval()
    return ExplorerController(model, torch.randn(1, 3, 32, 32))


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                                 hidden_dim=16, mlp_dim=32, num_classes=10).eval()
    return ExplorerController(model, torch.randn(1, 3, 32, 32))


def edges(src: str):
    """(from, to, attributes) of the DOT source's edges, with boxes named by their element ids."""
    ids = dict(re.findall(r'^\s*(n\d+) \[id="([^"]+)"', src, flags=re.M))
    return [(ids[a], ids[b], rest) for a, b, rest in re.findall(r"^\s*(n\d+) -> (n\d+)(.*);$", src, flags=re.M)]


def test_operations_are_placed_in_the_block_that_ran_them(resnet, densenet, vit):
    b = assign_blocks(list(resnet.DG.nodes.values()), container_blocks(resnet.model))
    adds = [n for n in resnet.DG.nodes.values() if n.op == "add"]
    assert [b[n.name] for n in adds] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1", "layer3.0", "layer3.1",
                                          "layer4.0", "layer4.1"]
    b = assign_blocks(list(vit.DG.nodes.values()), container_blocks(vit.model))
    adds = [b[n.name] for n in vit.DG.nodes.values() if n.op == "add"]
    assert adds[0] == "encoder"  # the position embedding
    assert adds[1:] == [f"encoder.layers.encoder_layer_{k}" for k in range(3) for _ in range(2)]
    b = assign_blocks(list(densenet.DG.nodes.values()), container_blocks(densenet.model))
    cats = [b[n.name] for n in densenet.DG.nodes.values() if n.op == "cat" and len(n.inputs) > 1]
    assert cats and set(cats) == {"features.denseblock1", "features.denseblock2"}


def test_large_models_open_at_their_stages_with_counts(densenet, vit):
    gs = GraphState(densenet, max_items=14)
    assert gs.expanded == {"features"}  # the wrapper opens, the dense blocks stay closed
    src = gs.dot_source()
    assert 'id="pe-b-features.denseblock1"' in src and "_DenseBlock · 16 layers" in src and "params" in src
    assert gs.count_items() <= 14
    assert GraphState(densenet, max_items=60).expanded > {"features", "features.denseblock1"}  # room: deeper
    gs = GraphState(vit, max_items=30)
    assert {"encoder", "encoder.layers"} <= gs.expanded
    assert "encoder.layers.encoder_layer_2" not in gs.expanded


def test_follow_opens_the_current_group_and_closes_what_it_opened(resnet):
    c = resnet
    gs = GraphState(c, max_items=10)
    assert "layer1" not in gs.expanded and gs.target.kind == "current"
    assert gs.target.element == "pe-n-conv1"
    c.skip()
    try:
        gs.walk_changed("skip")
        assert c.current.root_name == "layer1.0.conv1"
        assert {"layer1", "layer1.0"} <= gs.expanded
        assert gs.target == gs.target.__class__("pe-n-layer1.0.conv1", "current", gs.target.seq)
        seq = gs.target.seq
        gs.walk_changed("adjust")  # the group on show did not change: the view stays
        assert gs.target.seq == seq
        # the user opens another block: following does not close it
        gs.expand("layer2.0")
        while c.current is not None and c.current.root_name.startswith("layer1"):
            c.skip()
            gs.walk_changed("skip")
        assert "layer1.0" not in gs.expanded and "layer1.1" not in gs.expanded  # follow's blocks closed again
        assert "layer2.0" in gs.expanded
    finally:
        c.restart_walk()


def test_follow_off_never_moves_the_view_and_expanding_looks_at_the_block(resnet):
    gs = GraphState(resnet, max_items=10)
    gs.set_follow(False)
    seq = gs.target.seq
    resnet.skip()
    try:
        gs.walk_changed("skip")
        assert gs.target.kind == "keep" and "layer1" not in gs.expanded
        gs.expand("layer4.0")  # the bug: clicking a block jumped back to the current group
        assert gs.target.kind == "expanded" and gs.target.element == "pe-c-layer4.0" and gs.target.seq > seq
        assert 'id="pe-c-layer4.0"' in gs.dot_source()
        gs.collapse("layer4")
        assert gs.target.kind == "collapsed" and gs.target.element == "pe-b-layer4"
        assert "layer4.0" not in gs.expanded
        with pytest.raises(GraphStateError, match="did you mean"):
            gs.expand("layer9")
    finally:
        resnet.restart_walk()


def test_search_reveals_highlights_cycles_and_says_not_found(densenet):
    gs = GraphState(densenet, max_items=14)
    res = gs.search("features.denseblock2.denselayer2.conv1")
    assert res.ok and res.found == "features.denseblock2.denselayer2.conv1" and res.matches == [res.found]
    assert {"features.denseblock2", "features.denseblock2.denselayer2"} <= gs.expanded
    assert gs.highlight_element() == "pe-n-features.denseblock2.denselayer2.conv1" == gs.target.element
    assert gs.target.kind == "search" and gs.selected == res.found
    assert 'id="pe-n-features.denseblock2.denselayer2.conv1"' in gs.dot_source()
    first = gs.search("conv2")
    second = gs.search("conv2")
    assert len(first.matches) == 4 + 3 and first.found != second.found and "match 2 of 7" in second.message
    block = gs.search("denseblock1")
    assert block.found == "features.denseblock1" and gs.target.element == "pe-c-features.denseblock1"
    miss = gs.search("denseblok9")
    assert not miss.ok and "no layer or block matches 'denseblok9'" in miss.message and "did you mean" in miss.message
    assert gs.highlight is None
    assert gs.search("  ").found is None


def test_clicks_open_close_and_select(resnet):
    gs = GraphState(resnet, max_items=10)
    gs.dot_source()
    assert gs.element_kind("pe-b-layer3") == ("block", "layer3")
    assert gs.click("pe-b-layer3") == "expanded" and "layer3" in gs.expanded
    gs.dot_source()
    assert gs.click("pe-c-layer3") == "collapsed" and "layer3" not in gs.expanded
    gs.dot_source()
    assert gs.click("pe-n-conv1") == "selected" and gs.selected == "conv1" and gs.selected_element() == "pe-n-conv1"
    with pytest.raises(GraphStateError, match="no element"):
        gs.click("pe-n-nope")
    # a layer inside a closed block is drawn by that block
    assert gs.element_of("layer3.1.conv2") == "pe-b-layer3"


def test_dense_blocks_bundle_their_concatenation_inputs(densenet):
    gs = GraphState(densenet, max_items=14)
    gs.expand("features.denseblock1")
    for name in list(gs.blocks):
        if name.startswith("features.denseblock1.denselayer"):
            gs.expand(name)
    es = edges(gs.dot_source())
    fan_in = {}
    for _, b, _ in es:
        fan_in[b] = fan_in.get(b, 0) + 1
    assert max(fan_in.values()) <= FAN_IN_LIMIT
    bundles = [e for e in es if "dashed" in e[2]]
    assert len(bundles) == 3  # cat_k -> cat_(k+1) inside a block of 4 layers
    # without bundling the 4 concatenations would take 2 + 3 + 4 + 5 inputs; now each takes at most 3
    cat_ids = {b for a, b, _ in bundles}
    assert all(fan_in[c] <= 3 for c in cat_ids)


def test_elementwise_operations_are_edges_unless_asked(resnet):
    gs = GraphState(resnet, max_items=200)
    src = gs.dot_source()
    assert 'label="relu"' not in src and 'label="add"' in src
    assert ("pe-n-bn1", "pe-n-layer1.0.conv1", "") in edges(src)  # through relu and max_pool2d
    gs.show_elementwise = True
    assert 'label="relu"' in gs.dot_source()


def test_state_survives_a_rebuilt_graph(small):
    model, x = small
    c = ExplorerController(model, x)
    gs = GraphState(c, max_items=100)
    gs.select("block.conv_a")
    gs.collapse("block")
    old_dg = c.DG
    c.ignore("block.conv_a")
    assert c.DG is not old_dg
    gs.walk_changed("ignore")
    assert gs._dg is c.DG and gs.selected == "block.conv_a" and "block" not in gs.expanded
    assert "(ignored)" in gs.dot_source()


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")
def test_svg_keeps_the_element_ids(densenet):
    gs = GraphState(densenet, max_items=14)
    gs.expand("features.denseblock2")
    svg = render_svg(gs.dot_source())
    assert svg.startswith("<svg")
    for eid, (kind, _) in gs._elements.items():
        assert f'id="{eid.replace("-", "&#45;")}"' in svg
    assert 'class="node pe&#45;block' in svg and 'class="cluster pe&#45;cluster"' in svg


def test_docstring_examples_run():
    import doctest

    from prune_explorer.explorer import graph_state

    result = doctest.testmod(graph_state, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


class _OpNorm(torch.nn.Module):
    """An RMSNorm written with tensor operations (no layer family): its block holds operations, not layers."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight


def test_a_leaf_block_of_operations_counts_operations_not_zero_layers():
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), _OpNorm(16), torch.nn.Linear(16, 4)).eval()
    gs = GraphState(ExplorerController(model, torch.randn(2, 8)), max_items=3)
    gs.expanded.discard("1")
    src = gs.dot_source()
    assert " 0 layers" not in src
    assert re.search(r"_OpNorm · [1-9]\d* operations? · 16 params", src), src


def test_the_next_groups_layout_is_known_ahead_and_a_decision_keeps_the_layout_otherwise():
    torch.manual_seed(0)
    c = ExplorerController(torchvision.models.resnet18().eval(), torch.randn(1, 3, 64, 64))
    gs = GraphState(c, max_items=12)
    changed = 0
    for _ in range(6):
        before, nxt = gs.layout_source(), gs.next_layout_source()
        assert nxt != before  # None when the layout stays, never the same string
        c.accept()
        gs.walk_changed("accept")
        now = gs.layout_source()
        assert now == (before if nxt is None else nxt)  # what following the walk opens was foreseen
        changed += nxt is not None
        # the styles follow the decision: the new current group is the root
        assert gs.styles()[gs.element_of(c.current.root_name)]["cls"].split()[-1] == "pe-root"
    assert 0 < changed < 6
