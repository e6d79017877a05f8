"""The layer-call shortcuts of the tracer give what the general paths give: a label field made from separate view
sizes is the reshape by a list; the layer context's field rules (fix the dims a layer mixes, carry the ones it
keeps) checked on the layer's own dim before building a field's set of varying dims; a space added by position; the
outcomes of consume."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from prune_explorer.graph.model.channel_space import SpaceTable
from prune_explorer.graph.trace.labels import Couplings, Value, field_view, new_field, varying_dims
from prune_explorer.graph.trace.layer_calls import LayerCallContext, _varies_along
from prune_explorer.graph.trace.tracing import Tracer


@pytest.mark.parametrize("shape", [(5,), (2, 5), (1, 5, 3, 3), (2, 3, 5, 4, 4)])
def test_new_field_is_the_list_reshape(shape):
    ids = torch.arange(10, 15)
    for dim in range(len(shape)):
        if shape[dim] != 5:
            continue
        view = [1] * len(shape)
        view[dim] = 5
        f = new_field(shape, dim, ids)
        assert field_view(len(shape), dim, 5) == tuple(view)
        assert f.shape == torch.Size(view) and torch.equal(f, ids.reshape(view))
        assert f.data_ptr() == ids.data_ptr()  # a view of the ids, as before


def test_new_field_of_non_contiguous_ids():
    ids = torch.arange(12).reshape(3, 4).t().reshape(-1)[::2]  # strided: reshape copies as before
    assert torch.equal(new_field((1, 6, 2), 1, ids), ids.reshape([1, 6, 1]))


@pytest.mark.parametrize("shape", [(1, 5, 1, 1), (3, 1, 1), (1,), (2, 5), (1, 1, 4, 1), (4, 4)])
@pytest.mark.parametrize("dim", [-1, 0, 1, 2, 3, 7])
def test_varies_along_is_membership_of_varying_dims(shape, dim):
    f = torch.zeros(shape, dtype=torch.long)
    assert _varies_along(f, dim) == (dim in varying_dims(f))


def test_fix_other_dims_and_carried_are_the_set_rules():
    """One input field on the layer's dim, one on a kept dim, one on a mixed dim, one of another rank."""
    tracer = SimpleNamespace(couplings=Couplings())
    ctx = LayerCallContext(tracer)
    x = Value(0, (2, 6, 4, 3))
    on_dim, kept, mixed = (torch.arange(1, 7).reshape(1, 6, 1, 1), torch.arange(7, 9).reshape(2, 1, 1, 1),
                           torch.arange(9, 13).reshape(1, 1, 4, 1))
    low_rank = torch.arange(13, 16).reshape(1, 3)
    x.fields = [on_dim, kept, mixed, low_rank]
    out = Value(1, (2, 8, 4, 3))
    for dim, keep in [(1, {0}), (1, [0, 2]), (2, set()), (-1, {0, 1}), (0, range(4))]:
        want_fixed = [f for f in x.fields if dim not in varying_dims(f) and not varying_dims(f) <= set(keep)]
        want_carried = [f for f in x.fields
                        if dim not in varying_dims(f) and varying_dims(f) <= set(keep) and f.ndim == out.ndim]
        tracer.couplings = ctx.couplings = Couplings()
        ctx.fix_other_dims(x, dim, keep, "mixed")
        fixed = [f for f, _ in ctx.couplings.fixed]
        assert [g.tolist() for g in fixed] == [g.reshape(-1).tolist() for g in want_fixed]
        assert [id(g) for g in ctx.carried(x, out, dim, keep)] == [id(g) for g in want_carried]


def test_space_table_add_by_position_fills_every_field():
    table = SpaceTable()
    owner, handler = object(), print
    a = table.add(("a", "out"), owner=owner, name="a", side="out", size=3, pruner="P", handler=handler)
    b = table.add(("b", "out"), owner, "b", "out", 5000, "Q", handler, True)
    c = table.add(("p", 1), owner=owner, name="p", side="out", size=2, pruner="R", handler=handler, dim=1)
    assert [(s.index, s.offset, s.size, s.name, s.side, s.pruner, s.passthrough, s.dim) for s in (a, b, c)] == [
        (0, 1, 3, "a", "out", "P", False, None), (1, 4, 5000, "b", "out", "Q", True, None),
        (2, 5004, 2, "p", "out", "R", False, 1)]
    assert a.owner is owner and a.handler is handler and table.get(("b", "out")) is b and table.next_gid == 5006
    for s in (a, b, c):
        assert s.alive.shape == (s.size,) and s.alive.dtype == bool and s.alive.all()
    a.alive[0] = False  # each space's mask is its own (slices of distinct spaces never overlap)
    assert b.alive.all() and c.alive.all()


def test_consume_outcomes():
    """A size that does not match, a 0-d input, an unlabeled input: fixed; consecutive ids: one range pair;
    other ids: unified position by position; a negative dim counts from the end."""
    tracer = Tracer(nn.Identity())
    ctx = tracer.context
    ids = tracer.space_ids(SimpleNamespace(index=0, offset=10, size=4))
    x = Value(0, (2, 4, 3))
    ctx.consume(Value(1, (2, 5)), 1, ids, "a")
    ctx.consume(Value(2, ()), 0, ids, "b")
    ctx.consume(x, 1, ids, "c")
    assert [r for _, r in tracer.couplings.fixed] == [
        "a reads an input whose size does not match its channel count",
        "b reads an input whose size does not match its channel count",
        "c reads channels that come from no prunable layer (e.g. the model input)"]
    src = tracer.space_ids(SimpleNamespace(index=1, offset=20, size=4))
    x.fields = [src.reshape(1, 4, 1)]
    tracer.mark_consecutive(x.fields[0], src)
    ctx.consume(x, -2, ids, "d")
    c = tracer.couplings
    assert c.ranges == [(10, 20, 4)]
    y = Value(3, (3, 4))
    y.fields = [torch.tensor([[5, 7, 6, 8]])]
    ctx.consume(y, -1, ids, "e")
    pairs = {frozenset(p) for p in zip(np.concatenate(c.pair_a).tolist(), np.concatenate(c.pair_b).tolist())}
    assert pairs == {frozenset(p) for p in [(10, 5), (11, 7), (12, 6), (13, 8)]}
