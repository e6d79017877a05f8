"""More of the build's shortcuts give what the general paths give: tied parameters read from the one module walk,
the pruner's option index without a parameter table, the traced ints of a call's arguments; a closed trace
leaves no reference cycle behind."""

import gc
import weakref

import pytest
import torch
import torch.nn as nn

from prune_explorer.graph.edit.tied import tied_parameters
from prune_explorer.graph.trace.attributes import AttributeTracking
from prune_explorer.graph.trace.size_args import call_traced_ints, traced_ints_in
from prune_explorer.graph.trace.tracing import named_modules_of
from prune_explorer.pruner.config import PrunerConfigError, _ModelIndex, check_options


def _tied_model():
    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    block = nn.Sequential(nn.Linear(4, 4), nn.ReLU())
    inner = nn.Sequential(block, head)
    twice = nn.Linear(4, 4)
    twice.other = nn.Parameter(twice.weight.detach())  # a second name on one module, its own tensor
    twice.register_parameter("again", twice.weight)  # one tensor under two names of one module
    return nn.ModuleDict({"emb": emb, "inner": inner, "block_again": block, "twice": twice, "head_again": head})


def _names(tied):
    return [[(id(m), attr, name) for (m, attr), name in aliases] for aliases in tied]


def _tied_on_every_path(model):
    """The reference: a walk of every path to every module (duplicates included), each (module, attribute) once."""
    by_id, seen = {}, set()
    for mname, m in model.named_modules(remove_duplicate=False):
        for attr, p in m._parameters.items():
            if p is not None and (id(m), attr) not in seen:
                seen.add((id(m), attr))
                by_id.setdefault(id(p), []).append((id(m), attr, f"{mname}.{attr}" if mname else attr))
    return [entries for entries in by_id.values() if len(entries) > 1]


def test_tied_parameters_from_the_module_walk_are_the_walk_of_every_path():
    for model in (_tied_model(), nn.Sequential(nn.Linear(2, 2)), _tied_model()["inner"]):
        expected = _tied_on_every_path(model)
        assert _names(tied_parameters(model)) == expected
        assert _names(tied_parameters(model, named_modules_of(model))) == expected
    assert len(tied_parameters(_tied_model())) == 2


def test_option_index_names_parameters_without_a_table_made_up_front():
    model = nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.Linear(4, 2)))
    index = _ModelIndex(model)
    assert index.modules == {id(m): n for n, m in model.named_modules()}
    assert index.name(model[1][0].weight, "x") == "1.0.weight"
    assert index.params == {id(p): n for n, p in model.named_parameters()}
    opts = check_options(model, importance=abs, ignored_layers=[model[0].bias])
    assert opts.ignored_layers == [model[0].bias]
    with pytest.raises(PrunerConfigError, match="not a parameter of the model"):
        check_options(model, importance=abs, ignored_layers=[nn.Linear(2, 2).weight])


def test_call_traced_ints_are_traced_ints_in_the_argument_pair():
    m = nn.Module()
    m.heads, m.dim, m.plain = 4, 8, 3
    with AttributeTracking(m) as tracking:
        heads, dim = m.heads, m.dim
        x = torch.zeros(2, 32)
        cases = [((x, 2, heads, dim), {}), ((x, (heads, dim * 2)), {"dim": heads}),
                 (([x, x], slice(0, dim)), {"size": [heads, 1], "dtype": None}), ((x,), {}), ((), {"n": dim})]
        for args, kwargs in cases:
            expected = list(traced_ints_in((args, kwargs)))
            got = call_traced_ints(args, kwargs)
            assert [id(t) for t in got] == [id(t) for t in expected]
        assert len(tracking.refs) == 3 and len(call_traced_ints(*cases[1])) == 2


def test_a_closed_trace_frees_its_record_without_the_cyclic_collector():
    from prune_explorer.graph.trace.build import trace_model

    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    was = gc.isenabled()
    gc.disable()
    try:
        tracer = trace_model(model, torch.randn(1, 3, 2, 2))
        values = [weakref.ref(v) for v in tracer.values.values()]
        assert len(values) > 5 and all(v().producer is not None for v in values[1:])
        tracer.close()
        assert [v for v in values if v() is not None] == []
    finally:
        if was:
            gc.enable()
