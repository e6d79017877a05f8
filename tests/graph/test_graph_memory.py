"""Building a graph keeps no tensor of the trace: the activations of a real forward pass are freed as it goes."""

import gc
import weakref

import torch
import torchvision

import prune_explorer as pe


def test_a_real_forward_trace_keeps_no_activation():
    torch.manual_seed(0)
    m = torchvision.models.resnet18().eval()
    x = torch.randn(2, 3, 64, 64)
    seen = []
    # a user hook forces the real forward pass (it would be fed meta tensors); it keeps only weak references
    handles = [mod.register_forward_hook(lambda mod, inp, out: seen.append(weakref.ref(out)))
               for mod in (m.conv1, m.layer1, m.layer4, m.fc)]
    gc.collect()
    gc.disable()  # freed by reference counting alone: nothing may wait for a garbage collection
    try:
        dg = pe.DependencyGraph().build_dependency(m, x)
        assert not dg.traced_on_meta
        assert len(seen) == 4 and all(r() is None for r in seen)
        assert not any("tracer" in k for k in [*vars(dg), *vars(dg.state)])
    finally:
        gc.enable()
        for h in handles:
            h.remove()
    g = dg.get_pruning_group(m.conv1, pe.prune_conv_out_channels, [0, 1])  # the graph still works
    g.prune()
    assert m.conv1.out_channels == 62 and m(x).shape == (2, 1000)
