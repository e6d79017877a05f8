"""The post-prune check answers for unchanged modules from its previous run (``pruner/check_memo.py``) and still
catches every change that breaks the model: sizes in int attributes, in a shared config (and one it holds), in a
list changed in place, a parameter resized in place, integer data that changed upstream."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from prune_explorer.explorer import ExplorerController
from prune_explorer.pruner.check_memo import BlockMemo
from prune_explorer.pruner.post_check import INDEX_DATA, META, StandIns, run_error


class Block(nn.Module):
    """Checks its input width against its own int, a list it holds and the config it shares with its siblings."""

    def __init__(self, width: int, cfg):
        super().__init__()
        self.lin = nn.Linear(width, width)
        self.width = width
        self.dims = [width]
        self.cfg = cfg

    def forward(self, x):
        w = x.shape[-1]
        if w != self.width or w != self.dims[0] or w != self.cfg.width or w != self.cfg.inner.width:
            raise ValueError(f"Block expected {self.width} features, got {w}")
        return torch.relu(self.lin(x))


class Stack(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.cfg = types.SimpleNamespace(width=width, inner=types.SimpleNamespace(width=width))
        self.blocks = nn.ModuleList(Block(width, self.cfg) for _ in range(3))
        self.head = nn.Linear(width, 2)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


X = torch.randn(2, 8)


def _checker():
    memo, stand_ins = BlockMemo(), StandIns()
    return memo, (lambda model, x=X, mode=META: run_error(model, x, mode=mode, stand_ins=stand_ins, memo=memo))


def test_an_unchanged_model_is_answered_and_left_as_it_was():
    model = Stack()
    memo, check = _checker()
    assert check(model) is None and memo.hits == 0
    runs = memo.runs
    assert check(model) is None and memo.hits == 1 and memo.runs == runs  # the model itself answered
    assert not any("forward" in m.__dict__ for m in model.modules())  # the remembering forwards are gone
    assert model.blocks[0].lin.weight.device.type == "cpu"


@pytest.mark.parametrize("change", ["int", "list in place", "config", "config it holds", "parameter in place"])
def test_a_change_the_memo_cannot_see_from_the_inputs_is_still_caught(change):
    """Each change leaves the block's inputs as they were (same shapes): only its own state says it changed."""
    model = Stack()
    memo, check = _checker()
    assert check(model) is None and check(model) is None and memo.hits == 1
    b = model.blocks[1]
    if change == "int":
        b.width = 7
    elif change == "list in place":
        b.dims[0] = 7
    elif change == "config":
        model.cfg.width = 7
    elif change == "config it holds":
        model.cfg.inner.width = 7
    else:
        with torch.no_grad():
            model.blocks[2].lin.weight.data = torch.randn(8, 7)  # the same Parameter, the wrong input size
    error = check(model)
    assert error is not None and error == run_error(model, X)  # the same error as a run without a memo
    assert ("Block expected" in error) == (change != "parameter in place")


def test_a_replaced_submodule_and_a_block_called_twice():
    model = Stack()
    model.blocks.append(model.blocks[0])  # the same block twice (weight sharing): two calls remembered
    memo, check = _checker()
    assert check(model) is None and check(model) is None
    model.blocks[1].lin = nn.Linear(8, 6)  # a new submodule: the block runs again, the head then fails
    assert check(model) is not None and check(model) == run_error(model, X)
    model.blocks[1].lin = nn.Linear(8, 8)
    assert check(model) is None


class Counted(nn.Module):
    """Takes as many features as the integer data it is given holds: its output width follows data, not shapes."""

    def forward(self, x, positions):
        return x[..., : positions.numel()]


class Positions(nn.Module):
    def __init__(self):
        super().__init__()
        self.n = 8
        self.take = Counted()
        self.head = nn.Linear(8, 2)

    def forward(self, ids):
        x = torch.zeros(ids.shape[0], 8, device=self.head.weight.device) + self.head.weight.sum()
        return self.head(self.take(x, torch.arange(self.n, device=x.device)))


def test_integer_data_is_compared_by_value():
    """In an index-data run the integer tensors are real: a remembered call answers only for the same values."""
    model, ids = Positions(), torch.zeros(1, 3, dtype=torch.long)
    memo, check = _checker()
    assert check(model, ids, INDEX_DATA) is None and check(model, ids, INDEX_DATA) is None and memo.hits == 1
    model.n = 6  # the model's own int: the model runs again, and ``take`` gets other values (6 positions)
    assert check(model, ids, INDEX_DATA) is not None
    model.n = 8
    assert check(model, ids, INDEX_DATA) is None


def test_a_call_that_raised_is_not_remembered():
    model = Stack()
    memo, check = _checker()
    model.blocks[1].width = 5
    first = check(model)
    assert first is not None and check(model) == first


def test_explorer_walk_on_a_llama_answers_unchanged_layers_and_agrees_with_a_full_run():
    """Accepting groups one by one: after each, the check runs only what changed (the other layers answer), and a
    check without the memo agrees; a break made by hand in an untouched layer is still caught."""
    from tests.pruner.test_post_prune_check import _small_llama

    model, x = _small_llama(checked=False, layers=3)
    c = ExplorerController(model, x, pruning_ratio=0.5, track_output=False)
    check = c.pruner.check
    c.accept()  # the first check runs everything, without the memo (a model checked once has no use for it)
    assert check.memo.runs == 0
    c.accept()  # the second one runs everything too, remembering
    assert check.memo.runs > 0 and check.memo.hits == 0
    for _ in range(3):
        if c.current is None:
            break
        before = check.memo.hits
        c.accept()
        assert check.memo.hits > before  # some modules answered from the previous check
        assert check.error() is None and run_error(model, x, mode=INDEX_DATA) is None
    last = model.model.layers[-1].mlp
    last.act_fn.forward = lambda t: t[..., :-1]  # an untouched layer now drops a feature
    assert check.error() is not None and run_error(model, x, mode=INDEX_DATA) is not None
    del last.act_fn.forward
    assert check.error() is None


def test_repair_with_the_memo_rolls_back_the_same_groups():
    """The check's bisection (undo, re-apply halves) runs on the memo too and finds the same offending group."""
    from tests.pruner.test_post_prune_check import Net, _pruner  # the model whose code checks a size

    for memo in (True, False):
        model = Net()
        pruner = _pruner(model)
        if not memo:
            pruner.check.memo = None
        with pytest.warns(UserWarning, match="did not run"):
            pruner.step()
        assert [s.root for s in pruner.skipped if s.kind == "check"] == ["a"]
        assert model.a.out_channels == 16 and model.b.out_channels == 8
        model(torch.randn(1, 3, 8, 8))
