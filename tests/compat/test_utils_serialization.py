"""pe.state_dict / load_state_dict / save / load, pe.ops, and pe.utils' print_tool, flatten_as_list, count_params,
benchmark and draw_* on real models."""

import json
import pickle

import pytest
import torch
import torch.nn as nn
import torchvision

import prune_explorer as pe


def pruned_resnet():
    torch.manual_seed(0)
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 64, 64)
    pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(), pruning_ratio=0.4,
                              ignored_layers=[model.fc]).step()
    return model, x


# ------------------------------------------------------------------------------------------------ serialization
def test_state_dict_roundtrip_is_exact_and_safe(tmp_path):
    model, x = pruned_resnet()
    model.customized_value = 8             # user attributes come back too (Torch-Pruning's test relies on it)
    model.layer4[1].conv2.note = {"why": ["tuned", 3]}
    path = tmp_path / "r18.pth"
    pe.save(pe.state_dict(model), path)
    raw = torch.load(path, weights_only=True)  # plain data: the safe loader accepts it
    json.dumps(raw["history"])
    json.dumps(raw["attributes"])
    torch.manual_seed(1)
    fresh = torchvision.models.resnet18().eval()
    assert pe.load_state_dict(fresh, state_dict=pe.load(path)) is fresh
    assert repr(fresh) == repr(model) and fresh.customized_value == 8
    assert fresh.layer4[1].conv2.note == {"why": ["tuned", 3]}
    assert torch.equal(fresh(x), model(x))
    # the rebuilt model keeps training: gradients flow into every parameter
    fresh(x).sum().backward()
    assert all(p.grad is not None for p in fresh.parameters())


def test_load_state_dict_refuses_what_does_not_fit(tmp_path):
    model, _ = pruned_resnet()
    state = pe.state_dict(model)
    other = torchvision.models.resnet34().eval()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(pe.PruningError, match="fit"):
        pe.load_state_dict(other, state)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert not hasattr(other, "customized_value") and other.conv1.out_channels == 64
    with pytest.raises(pe.PruningError, match="not a prune_explorer"):
        pe.load_state_dict(torchvision.models.resnet18(), model.state_dict())
    with pytest.raises(pe.PruningError, match="Torch-Pruning state dict"):
        pe.load_state_dict(torchvision.models.resnet18(), {"full_state_dict": {}, "attributions": {}})


def test_save_refuses_pickled_modules_and_load_is_safe(tmp_path):
    with pytest.raises(TypeError, match="pe.state_dict"):
        pe.save(nn.Linear(2, 2), tmp_path / "m.pth")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"x": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError):
        pe.load(path)


def test_save_pruned_keeps_attributes_too(tmp_path):
    model, x = pruned_resnet()
    model.hidden_dim = 123
    pe.save_pruned(model, tmp_path / "m.pt")
    fresh = pe.load_pruned(torchvision.models.resnet18().eval(), tmp_path / "m.pt")
    assert fresh.hidden_dim == 123 and torch.equal(fresh(x), model(x))


# ------------------------------------------------------------------------------------------------ ops
def test_ops_types():
    assert pe.ops.module2type(nn.Conv2d(4, 8, 3)) == pe.ops.OPTYPE.CONV
    assert pe.ops.module2type(nn.Conv2d(4, 4, 3, groups=4)) == pe.ops.OPTYPE.DEPTHWISE_CONV
    assert pe.ops.module2type(nn.BatchNorm1d(3)) == pe.ops.OPTYPE.BN
    assert pe.ops.module2type(nn.ReLU()) == pe.ops.OPTYPE.CUSTOMIZED
    assert pe.ops.type2class(pe.ops.OPTYPE.LINEAR) is nn.Linear is pe.ops.TORCH_LINEAR
    model = torchvision.models.resnet18()
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 32, 32))
    kinds = {n.name: pe.ops.node_type(n) for n in DG.nodes.values()}
    assert kinds["conv1"] == pe.ops.OPTYPE.CONV and kinds["output"] == pe.ops.OPTYPE.OUTPUT
    assert pe.ops.OPTYPE.ELEMENTWISE in kinds.values() and pe.ops.OPTYPE.RESHAPE in kinds.values()  # add, flatten
    # root_module_types accepts the aliases
    assert all(isinstance(g.root_module, pe.ops.TORCH_CONV)
               for g in DG.get_all_groups(root_module_types=[pe.ops.TORCH_CONV]))


# ------------------------------------------------------------------------------------------------ utils
def test_print_tool_marks_changed_lines(capsys):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    pe.utils.print_tool.before_pruning(model)
    DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 8, 8))
    DG.get_pruning_group(model[0], pe.prune_conv_out_channels, [0, 1]).prune()
    text = pe.utils.print_tool.after_pruning(model)
    assert capsys.readouterr().out.strip() == text.strip()
    changed = [line for line in text.splitlines() if "=>" in line]
    assert len(changed) == 3  # conv out, bn, conv in; the ReLU line is unchanged
    assert "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1)) => (0): Conv2d(3, 6," in changed[0]
    with pytest.raises(ValueError, match="before_pruning"):
        pe.utils.print_tool.after_pruning(model)


def test_flatten_as_list_and_count_params():
    a, b, c = torch.zeros(1), torch.zeros(2), torch.zeros(3)
    assert [t.numel() for t in pe.utils.flatten_as_list({"x": a, "y": [b, (c, "tag")]})] == [1, 2, 3]
    assert pe.utils.flatten_as_list(a)[0] is a and pe.utils.flatten_as_list(5) == 5
    model = torchvision.models.resnet18()
    assert pe.utils.count_params(model) == sum(p.numel() for p in model.parameters()) == 11689512


def test_benchmark_latency_fps_throughput_on_cpu():
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)).train()
    x = torch.randn(16, 256)
    bench = pe.utils.benchmark
    stats = bench.measure_latency(model, x, repeat=7, warmup=2)
    median, std = stats
    assert stats.device == "cpu" and stats.repeat == 7 and len(stats.samples_ms) == 7
    assert stats.min_ms <= median <= stats.max_ms and std >= 0 and median > 0
    assert model.training  # the caller's mode is restored
    fps = bench.measure_fps(model, x, repeat=5, warmup=1)
    thr = bench.measure_throughput(model, x, repeat=5, warmup=1)
    assert fps > 0 and thr > 0
    # a time budget stops the timing early (but at least 3 passes are timed)
    assert bench.measure_latency(model, x, repeat=10_000, warmup=0, max_time_s=0.0).repeat == 3
    # run_fn and dict inputs
    calls = []
    bench.measure_latency(model, {"x": x}, repeat=2, warmup=1, run_fn=lambda m, inp: calls.append(m(inp["x"])))
    assert len(calls) == 3
    with pytest.raises(ValueError, match="repeat"):
        bench.measure_latency(model, x, repeat=0)


def test_benchmark_memory_counts_the_tensors_alive_at_the_peak():
    bench = pe.utils.benchmark
    fc = nn.Linear(1000, 2000, bias=False)
    x = torch.randn(50, 1000)
    # weight 8 MB + input 200 kB + output 400 kB, all alive at the end of the pass
    assert bench.measure_memory(fc, x) == 4 * (2000 * 1000 + 50 * 1000 + 50 * 2000)
    wide, narrow = nn.Sequential(nn.Linear(64, 4096), nn.ReLU(), nn.Linear(4096, 8)), nn.Linear(64, 8)
    y = torch.randn(32, 64)
    assert bench.measure_memory(wide, y) > bench.measure_memory(narrow, y) + 4 * 32 * 4096


@pytest.fixture(scope="module")
def resnet_graph():
    model = torchvision.models.resnet18()
    return pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("draw", ["draw_computational_graph", "draw_dependency_graph", "draw_groups"])
def test_draw_writes_valid_images(draw, resnet_graph, tmp_path):
    fn = getattr(pe.utils, draw)
    png = fn(resnet_graph, tmp_path / "g.png", dpi=40)
    data = open(png, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    svg = open(fn(resnet_graph, tmp_path / "g.svg"), encoding="utf-8").read()
    assert svg.count("<svg") == 1 and "layer4.1.conv2" in svg
    if draw == "draw_groups":
        assert "layer4.1.conv1: 512 channels" in svg and "fixed (never pruned)" in svg
    assert fn(resnet_graph, tmp_path / "g").endswith("g.png")
    with pytest.raises(ValueError, match="ending in"):
        fn(resnet_graph, tmp_path / "g.bmp")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_benchmark_on_cuda_uses_the_device():
    bench = pe.utils.benchmark
    model = nn.Sequential(nn.Linear(512, 2048), nn.ReLU(), nn.Linear(2048, 512)).cuda()
    x = torch.randn(64, 512, device="cuda")
    stats = bench.measure_latency(model, x, repeat=5, warmup=2)
    assert stats.device.startswith("cuda") and stats.repeat == 5 and stats.median_ms > 0
    params = 4 * sum(p.numel() for p in model.parameters())
    assert bench.measure_memory(model, x) >= params + 4 * 64 * 2048


def test_sensitivity_default_latency_is_the_benchmark_median_in_seconds():
    from prune_explorer.sensitivity.budget import default_latency_fn

    model = nn.Sequential(nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 8))
    x = torch.randn(4, 128)
    calls = []
    fn = default_latency_fn(x, forward_fn=lambda m, inp: calls.append(m(inp)), repeat=5, warmup=1)
    seconds = fn(model)
    assert isinstance(seconds, float) and 0 < seconds < 1 and len(calls) == 6  # 1 warm-up + 5 timed passes
