"""Dependency graph on hand-built edge-case models: exact channel counts after pruning, valid forward passes."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import prune_explorer as pe


def build(model, x):
    return pe.DependencyGraph().build_dependency(model, x)


def prune_half_of_every_group(dg):
    n = 0
    for g in dg.get_all_groups():
        units = g.units
        k = len(units) // 2
        if k:
            g.select([i for u in units[:k] for i in u]).prune()
            n += 1
    return n


def check_still_runs(model, x, y0):
    with torch.no_grad():
        y = model(*x) if isinstance(x, tuple) else model(x)
    ys = y if isinstance(y, (tuple, list)) else [y]
    y0s = y0 if isinstance(y0, (tuple, list)) else [y0]
    assert [t.shape for t in ys] == [t.shape for t in y0s]
    out = sum(t.float().sum() for t in ys)
    return out


def run_model(model, x):
    with torch.no_grad():
        return model(*x) if isinstance(x, tuple) else model(x)


class NestedConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.c = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(18)
        self.head = nn.Conv2d(18, 5, 1)

    def forward(self, x):
        inner = torch.cat([self.a(x), self.b(x)], dim=1)
        outer = torch.cat([inner, self.c(x)], dim=1)
        return self.head(F.relu(self.bn(outer)))


def test_nested_concat_maps_offsets_exactly():
    torch.manual_seed(0)
    m, x = NestedConcat().eval(), torch.randn(1, 3, 8, 8)
    y0 = run_model(m, x)
    dg = build(m, x)
    g = dg.get_pruning_group(m.b, pe.prune_conv_out_channels, [0, 5])
    members = {dep.target.name: idxs for dep, idxs in g}
    assert members["b"] == [0, 5]
    assert members["bn"] == [8, 13]  # offset 8 inside the concat
    assert members["head"] == [8, 13]
    g.prune()
    assert m.b.out_channels == 4 and m.bn.num_features == 16 and m.head.in_channels == 16
    g2 = dg.get_pruning_group(m.c, pe.prune_conv_out_channels, [3])
    assert {dep.target.name: idxs for dep, idxs in g2}["bn"] == [15]  # offsets follow earlier pruning
    g2.prune()
    assert m.head.in_channels == 15
    check_still_runs(m, x, y0)


def test_nested_concat_all_groups():
    m, x = NestedConcat().eval(), torch.randn(1, 3, 8, 8)
    y0 = run_model(m, x)
    dg = build(m, x)
    roots = [g.root_name for g in dg.get_all_groups()]
    assert roots == ["a", "b", "c"]  # head's outputs reach the model output: fixed
    prune_half_of_every_group(dg)
    assert (m.a.out_channels, m.b.out_channels, m.c.out_channels, m.head.in_channels) == (4, 3, 2, 9)
    check_still_runs(m, x, y0)


class ConcatThenSplit(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(3, 8, 1)
        self.left = nn.Conv2d(8, 4, 1)
        self.right = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.cat([self.a(x), self.b(x)], 1)
        l, r = torch.chunk(y, 2, dim=1)  # chunk follows the channel count: parts must lose the same positions
        return self.left(l) + self.right(r)


def test_concat_then_equal_split_ties_the_halves():
    m, x = ConcatThenSplit().eval(), torch.randn(2, 3, 5, 5)
    y0 = run_model(m, x)
    dg = build(m, x)
    g = dg.get_pruning_group(m.a, pe.prune_conv_out_channels, [1])
    names = {dep.target.name: idxs for dep, idxs in g}
    assert names["a"] == [1] and names["b"] == [1]  # tied through the equal split
    assert names["left"] == [1] and names["right"] == [1]
    g.prune()
    assert m.a.out_channels == 7 and m.b.out_channels == 7 and m.left.in_channels == 7 and m.right.in_channels == 7
    check_still_runs(m, x, y0)


class UnequalSplit(nn.Module):
    def __init__(self, derived: bool):
        super().__init__()
        self.derived = derived
        self.conv = nn.Conv2d(3, 12, 1)
        self.p1 = nn.Conv2d(4, 2, 1)
        self.p2 = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        sizes = [4, y.shape[1] - 4] if self.derived else [4, 8]
        a, b = torch.split(y, sizes, dim=1)
        return torch.cat([self.p1(a), self.p2(b)], 1)


def test_unequal_literal_split_is_kept_fixed_and_model_still_prunes_elsewhere():
    m, x = UnequalSplit(derived=False).eval(), torch.randn(1, 3, 4, 4)
    y0 = run_model(m, x)
    dg = build(m, x)
    assert [g.root_name for g in dg.get_all_groups()] == []  # literal sizes [4, 8]: nothing can follow pruning
    assert "literal" in dg.fixed_reason(m.conv)
    with pytest.raises(pe.PruningError, match="never be pruned"):
        dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [0])
    check_still_runs(m, x, y0)


def test_unequal_split_with_derived_size_prunes_only_the_derived_part():
    m, x = UnequalSplit(derived=True).eval(), torch.randn(1, 3, 4, 4)
    y0 = run_model(m, x)
    dg = build(m, x)
    (g,) = list(dg.get_all_groups())
    assert g.root_idxs == list(range(4, 12))  # the first 4 channels go to a literal-size part
    g.select([4, 6, 8, 10]).prune()
    assert m.conv.out_channels == 8 and m.p1.in_channels == 4 and m.p2.in_channels == 4
    check_still_runs(m, x, y0)


class ConvToLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.bn = nn.BatchNorm2d(6)
        self.fc1 = nn.Linear(6 * 4 * 4, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        y = y.view(y.size(0), -1)  # flatten with a size read from the tensor
        return self.fc2(F.relu(self.fc1(y)))


def test_reshape_from_conv_to_linear_expands_each_channel_to_its_features():
    m, x = ConvToLinear().eval(), torch.randn(2, 3, 6, 6)
    y0 = run_model(m, x)
    dg = build(m, x)
    g = dg.get_pruning_group(m.conv, pe.prune_conv_out_channels, [2])
    fc1_idxs = {dep.target.name: idxs for dep, idxs in g}["fc1"]
    assert fc1_idxs == list(range(32, 48))  # channel 2 owns features 2*16 .. 3*16-1
    kept = m.fc1.weight[:, 48:].clone()
    g.prune()
    assert m.fc1.in_features == 80 and torch.equal(m.fc1.weight[:, 32:], kept)
    n = prune_half_of_every_group(dg)
    assert n == 2 and m.conv.out_channels == 3 and m.fc1.in_features == 48 and m.fc1.out_features == 5
    check_still_runs(m, x, y0)


class LiteralView(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3)
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).view(-1, 96))  # 96 written in the code: cannot follow pruning


def test_literal_view_size_fixes_the_channels():
    m, x = LiteralView().eval(), torch.randn(1, 3, 6, 6)
    dg = build(m, x)
    assert list(dg.get_all_groups()) == []
    assert "literal" in dg.fixed_reason(m.conv)


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(5, 8, 3, padding=1)
        self.mid = nn.Conv2d(8, 8, 1)
        self.out1 = nn.Conv2d(8, 2, 1)
        self.out2 = nn.Linear(8, 4)

    def forward(self, x, z):
        s = F.relu(self.a(x)) + self.b(z)  # residual-style coupling of two inputs' branches
        h = self.mid(s)
        return self.out1(h), self.out2(h.mean((2, 3)))


def test_multiple_inputs_and_outputs():
    m = TwoInTwoOut().eval()
    x = (torch.randn(1, 3, 6, 6), torch.randn(1, 5, 6, 6))
    y0 = run_model(m, x)
    dg = build(m, x)
    groups = list(dg.get_all_groups())
    assert [g.root_name for g in groups] == ["a", "mid"]
    assert {dep.target.name for dep, _ in groups[0]} == {"a", "b", "mid"}
    prune_half_of_every_group(dg)
    assert (m.a.out_channels, m.b.out_channels, m.mid.in_channels, m.mid.out_channels) == (4, 4, 4, 4)
    assert m.out1.in_channels == 4 and m.out2.in_features == 4 and m.out2.out_features == 4
    check_still_runs(m, x, y0)


def test_dict_inputs_and_dict_outputs():
    class DictModel(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 1)
            self.head = nn.Conv2d(8, 2, 1)

        def forward(self, image, scale=1.0):
            return {"logits": self.head(self.conv(image) * scale)}

    m = DictModel().eval()
    dg = build(m, {"image": torch.randn(1, 3, 4, 4), "scale": 2.0})
    (g,) = list(dg.get_all_groups())
    g.select([0, 1, 2]).prune()
    assert m.conv.out_channels == 5 and m.head.in_channels == 5
    assert m(torch.randn(1, 3, 4, 4))["logits"].shape == (1, 2, 4, 4)


class TinyViT(nn.Module):
    """Loose class token and position embedding, added to / concatenated with patch embeddings."""

    def __init__(self, dim=16):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, 4, 4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, 5, dim))
        self.norm = nn.LayerNorm(dim)
        self.mlp1 = nn.Linear(dim, 32)
        self.mlp2 = nn.Linear(32, dim)
        self.head = nn.Linear(dim, 3)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)  # (B, 4, dim)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos
        x = x + self.mlp2(F.gelu(self.mlp1(self.norm(x))))
        return self.head(x[:, 0])


def test_loose_parameters_are_pruned_with_the_embedding_dim():
    m, x = TinyViT().eval(), torch.randn(2, 3, 8, 8)
    y0 = run_model(m, x)
    dg = build(m, x)
    g = dg.get_pruning_group(m.patch, pe.prune_conv_out_channels, [0, 3, 7])
    names = {dep.target.name for dep, _ in g}
    assert {"patch", "cls_token", "pos", "norm", "mlp1", "mlp2", "head"} <= names
    kept_pos = m.pos[..., [i for i in range(16) if i not in (0, 3, 7)]].detach().clone()
    g.prune()
    assert m.cls_token.shape == (1, 1, 13) and m.pos.shape == (1, 5, 13)
    assert torch.equal(m.pos.detach(), kept_pos)
    assert isinstance(m.pos, nn.Parameter) and m.pos.requires_grad
    assert m.norm.normalized_shape == (13,) and m.head.in_features == 13
    check_still_runs(m, x, y0)
    # position dim 1 (tokens) is not a channel: it must never be offered for pruning
    assert all(g.root_name != "pos" for g in dg.get_all_groups())


def test_depthwise_and_grouped_convs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pw = nn.Conv2d(3, 16, 1)
            self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
            self.bn = nn.BatchNorm2d(16)
            self.grouped = nn.Conv2d(16, 8, 3, padding=1, groups=4)
            self.out = nn.Conv2d(8, 2, 1)

        def forward(self, x):
            return self.out(self.grouped(self.bn(self.dw(self.pw(x)))))

    m, x = Net().eval(), torch.randn(1, 3, 6, 6)
    y0 = run_model(m, x)
    dg = build(m, x)
    g = dg.get_pruning_group(m.pw, pe.prune_conv_out_channels, [1])
    # grouped conv (4 groups of 4 inputs): removing offset 1 must remove it from every group
    assert g.root_idxs == [1, 5, 9, 13]
    assert g.units == [[1, 5, 9, 13]]
    members = {dep.target.name: (dep.handler, idxs) for dep, idxs in g}
    assert members["dw"][0] == pe.prune_depthwise_conv_out_channels and members["dw"][1] == [1, 5, 9, 13]
    g.prune()
    assert m.pw.out_channels == 12 and m.dw.groups == 12 and m.dw.in_channels == 12
    assert m.grouped.in_channels == 12 and m.grouped.groups == 4
    g2 = dg.get_pruning_group(m.grouped, pe.prune_conv_out_channels, [0])
    assert g2.root_idxs == [0, 2, 4, 6]  # 4 groups of 2 outputs
    g2.prune()
    assert m.grouped.out_channels == 4 and m.out.in_channels == 4
    check_still_runs(m, x, y0)


class AttentionBlock(nn.Module):
    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.embed = nn.Linear(8, dim)
        self.ln = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.fc = nn.Linear(dim, 24)
        self.proj = nn.Linear(24, dim)
        self.head = nn.Linear(dim, 2)

    def forward(self, x):
        h = self.embed(x)
        a = self.ln(h)
        h = h + self.attn(a, a, a, need_weights=False)[0]
        h = h + self.proj(F.relu(self.fc(h)))
        return self.head(h.mean(1))


def test_attention_block_prunes_embed_dim_by_head_dims_or_heads():
    m, x = AttentionBlock().eval(), torch.randn(2, 5, 8)
    y0 = run_model(m, x)
    dg = build(m, x)
    roots = [g.root_name for g in dg.get_all_groups()]
    assert roots == ["embed", "fc"]
    # embed_dim is 4 heads x 4: a channel of the residual stream is one offset of every head (head_pruning="dims")
    g = dg.get_pruning_group(m.embed, pe.prune_linear_out_channels, [0])
    assert g.root_idxs == [0, 4, 8, 12]
    assert {"embed", "ln", "attn", "fc", "proj", "head"} <= {dep.target.name for dep, _ in g}
    g.prune()
    assert m.attn.embed_dim == 12 and m.attn.head_dim == 3 and m.attn.num_heads == 4 and m.ln.normalized_shape == (12,)
    check_still_runs(m, x, y0)
    dg = pe.DependencyGraph().build_dependency(m, x, head_pruning="heads")  # or whole heads
    dg.get_pruning_group(m.embed, pe.prune_linear_out_channels, [4]).prune()
    assert m.attn.embed_dim == 9 and m.attn.head_dim == 3 and m.attn.num_heads == 3
    check_still_runs(m, x, y0)


def test_lstm_hidden_and_input():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(20, 10)
            self.lstm = nn.LSTM(10, 12, num_layers=2, bidirectional=True, batch_first=True)
            self.fc = nn.Linear(24, 3)

        def forward(self, tokens):
            out, (h, c) = self.lstm(self.emb(tokens))
            return self.fc(out[:, -1])

    m, x = Net().eval(), torch.randint(0, 20, (2, 7))
    y0 = run_model(m, x)
    dg = build(m, x)
    groups = {g.root_name: g for g in dg.get_all_groups()}
    assert set(groups) == {"lstm"}  # the embedding is not a root type; its dim is coupled to lstm's input
    g = groups["lstm"]
    fc_idxs = {dep.target.name: idxs for dep, idxs in g}["fc"]
    assert len(fc_idxs) == 24  # both directions
    g.select([0, 1, 2, 3]).prune()
    assert m.lstm.hidden_size == 8 and m.fc.in_features == 16
    g_emb = dg.get_pruning_group(m.emb, pe.prune_embedding_out_channels, [0, 1])
    g_emb.prune()
    assert m.emb.embedding_dim == 8 and m.lstm.input_size == 8
    check_still_runs(m, x, y0)


def test_channel_shuffle_maps_permuted_indices():
    class Shuffle(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.b = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            y = self.a(x)
            n, c, h, w = y.shape
            y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, -1, h, w)
            return self.b(y)

    m, x = Shuffle().eval(), torch.randn(1, 3, 4, 4)
    y0 = run_model(m, x)
    dg = build(m, x)
    (g,) = list(dg.get_all_groups())
    assert g.units[0] == [0, 4]  # (2, c//2) view: 2 is a literal, c//2 follows pruning → same offset in both halves
    sub = g.select([0])
    assert {dep.target.name: idxs for dep, idxs in sub}["b"] == [0, 1]  # shuffled positions of channels 0 and 4
    w_kept = m.b.weight[:, 2:].clone()
    sub.prune()
    assert m.a.out_channels == 6 and m.b.in_channels == 6 and torch.equal(m.b.weight, w_kept)
    check_still_runs(m, x, y0)


def test_root_item_maps_its_own_channels_to_themselves_inside_tied_units():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 8, 1)
            self.g = nn.Conv2d(8, 8, 3, padding=1, groups=2)

        def forward(self, x):
            return self.g(self.a(x)).mean((2, 3))

    m = Net().eval()
    dg = build(m, torch.randn(1, 3, 4, 4))
    g = dg.get_pruning_group(m.a, pe.prune_conv_out_channels, [0])
    assert g.units == [[0, 4]]
    assert g[0].idxs == [0, 4] and g[0].root_idxs == [0, 4]
