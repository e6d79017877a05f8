"""The layer-call shortcuts of the tracer give what the general paths give: a label field made from separate view
sizes is the reshape by a list."""

import pytest
import torch

from prune_explorer.graph.trace.labels import field_view, new_field


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
