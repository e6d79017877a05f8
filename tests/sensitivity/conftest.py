"""Fixtures of the sensitivity tests: one tiny traced model and one scan of it, shared by the module."""

import pytest
import torch

import prune_explorer as pe
from sens_helpers import RATIOS, NegMSE, make_tiny


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny: one torch thread is fastest (and immune to a busy machine's thread contention)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    """(model, example input, eval batch, reference outputs) of TinyNet, in eval mode."""
    model = make_tiny()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    batch = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(batch)
    return model, x, batch, ref


@pytest.fixture(scope="module")
def tiny_table(tiny):
    """A serial scan of TinyNet (classifier ignored, round_to=4, max_pruning_ratio=0.75)."""
    model, x, batch, ref = tiny
    return pe.sensitivity.scan(model, x, NegMSE(batch, ref), ratios=RATIOS, executor="serial",
                               ignored_layers=[model.fc], round_to=4, max_pruning_ratio=0.75, progress=False)
