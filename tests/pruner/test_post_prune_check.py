"""The post-prune check: a model whose code uses a size the dependency graph cannot see is still handed back running.

``SizeCheck`` compares the channel count with a Python int stored at construction (as library code often does with
``assert x.shape[1] == self.channels``): a comparison of ints, no torch operation, so the trace cannot know that
those channels must stay. The check runs the pruned model on shape-only stand-ins, finds the group that breaks it
by bisection, rolls exactly that group back and records why.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

import prune_explorer as pe
from prune_explorer.explorer import ExplorerController
from prune_explorer.graph import model_history
from prune_explorer.history import apply_history
from prune_explorer.pruner import guards as G
from prune_explorer.pruner.post_check import run_error


class SizeCheck(nn.Module):
    """Refuses an input whose channel count is not the one given at construction."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"SizeCheck expected {self.channels} channels, got {x.shape[1]}")
        return x


class Net(nn.Module):
    """Three groups: ``a`` (checked by ``SizeCheck``), ``b`` with ``c`` (the two branches of an add) and ``d``."""

    def __init__(self, data_dependent: bool = False):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.check = SizeCheck(16)
        self.b = nn.Conv2d(16, 16, 3, padding=1)
        self.c = nn.Conv2d(16, 16, 1)
        self.d = nn.Conv2d(16, 12, 1)
        self.head = nn.Conv2d(12, 4, 1)
        self.data_dependent = data_dependent

    def forward(self, x):
        x = self.check(torch.relu(self.a(x)))
        y = torch.relu(self.b(x)) + self.c(x)
        if self.data_dependent and bool(y.mean() > 1e9):  # cannot run on meta tensors: traced for real
            y = y * 2
        return self.head(torch.relu(self.d(y)))


X = torch.randn(1, 3, 8, 8)


def _pruner(model, **kwargs):
    return pe.pruner.MagnitudePruner(model, X, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                     ignored_layers=[model.head], **kwargs)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict, b: dict) -> bool:
    return list(a) == list(b) and all(a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("data_dependent", [False, True], ids=["meta", "real-forward"])
def test_the_check_rolls_back_exactly_the_offending_group(data_dependent):
    torch.manual_seed(0)
    model = Net(data_dependent)
    twin = copy.deepcopy(model)
    pruner = _pruner(model)
    assert pruner.DG.traced_on_meta is not data_dependent
    with pytest.warns(UserWarning, match=r"did not run .*SizeCheck expected 16 channels.* rooted at a\b"):
        pruner.step()
    assert model.a.out_channels == 16  # rolled back ...
    assert model.b.out_channels < 16 and model.d.out_channels < 12  # ... and nothing else
    assert model(X).shape == (1, 4, 8, 8)
    skipped = [s for s in pruner.skipped if s.kind == G.CHECK]
    assert [s.root for s in skipped] == ["a"]
    assert "SizeCheck expected 16 channels" in skipped[0].reason and skipped[0].step == 1
    # exactly: the step without the check, minus a's group (a's group touches none of the others' layers, so their
    # recorded channel indices stay valid without it)
    unchecked = copy.deepcopy(twin)
    _pruner(unchecked, post_prune_check=False).step()
    others = [e for e in model_history(unchecked) if e["root"] != "a"]
    assert len(others) == len(model_history(unchecked)) - 1
    reference = apply_history(copy.deepcopy(twin), copy.deepcopy(others))
    assert _equal(_state(model), _state(reference))
    # the history is what was done (the rolled-back group is not in it) and carries the step of each pruning
    assert model_history(model) == others
    assert [e["root"] for e in pruner.history] == [e["root"] for e in others]
    assert all(e["step"] == 1 for e in pruner.history)


def test_later_steps_leave_the_offending_group_alone_without_checking_again():
    model = Net()
    pruner = _pruner(model, iterative_steps=2)
    with pytest.warns(UserWarning, match="did not run"):
        pruner.step()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second rollback, no warning
        pruner.step()
    assert model.a.out_channels == 16
    kinds = [(s.root, s.step, s.kind) for s in pruner.skipped if s.root == "a"]
    assert kinds == [("a", 1, G.CHECK), ("a", 2, G.CHECK)]
    assert model(X).shape == (1, 4, 8, 8)


def test_without_the_check_the_model_would_not_run():
    """What the check protects against is real: the same step without it hands back a broken model."""
    model = Net()
    _pruner(model, post_prune_check=False).step()
    with pytest.raises(ValueError, match="SizeCheck expected 16"):
        model(X)
    assert "SizeCheck expected 16" in run_error(model, X)


def test_interactive_step_is_checked_when_the_loop_ends():
    model = Net()
    pruner = _pruner(model)
    with pytest.warns(UserWarning, match="rooted at a"):
        for group in pruner.step(interactive=True):
            group.prune()
    assert model.a.out_channels == 16 and model.b.out_channels < 16
    assert model(X).shape == (1, 4, 8, 8)


def test_explorer_accept_rolls_back_and_records_a_skip():
    model = Net()
    c = ExplorerController(model, X, pruning_ratio=0.5, ignored_layers=["head"])
    assert c.current.root_name == "a"
    with pytest.warns(UserWarning, match="rooted at a"):
        d = c.accept()
    assert d.action == "skip" and "SizeCheck expected 16" in d.reason and d.record is None
    assert model.a.out_channels == 16 and c.current.root_name != "a"
    c.accept_all_remaining()
    assert model(X).shape == (1, 4, 8, 8)
    assert [r.root for r in c.DG.history] == [d.root for d in c.decisions if d.action == "accept"]


def test_explorer_accept_all_rolls_back_only_the_offending_group():
    model = Net()
    c = ExplorerController(model, X, pruning_ratio=0.5, ignored_layers=["head"])
    with pytest.warns(UserWarning, match="rooted at a"):
        done = c.accept_all_remaining()
    assert [(d.root, d.action) for d in done][0] == ("a", "skip")
    assert all(d.action == "accept" for d in done[1:])
    assert model.a.out_channels == 16 and model.b.out_channels < 16
    assert model(X).shape == (1, 4, 8, 8)
    # the decisions hold the graph's records as they are now: undo walks back through all of them
    assert [d.record for d in done if d.action == "accept"] == c.DG.history
    while any(d.action == "accept" for d in c.decisions):
        c.undo()
    assert model.b.out_channels == 16 and not c.DG.history


class CheckedSiLU(nn.Module):
    """SiLU that refuses an input whose last size is not the one given at construction (a Python int)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def forward(self, x):
        if x.shape[-1] != self.size:
            raise ValueError(f"CheckedSiLU expected {self.size} features, got {x.shape[-1]}")
        return torch.nn.functional.silu(x)


def _small_llama(checked: bool, layers: int = 2):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                                   use_cache=False)
    model = transformers.LlamaForCausalLM(cfg).eval()
    if checked:
        model.model.layers[1].mlp.act_fn = CheckedSiLU(64)
    return model, {"input_ids": torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(1))}


@pytest.mark.parametrize("checked", [False, True], ids=["runs", "breaks"])
def test_a_llama_traced_for_real_is_checked_shape_only_and_still_caught(checked):
    """The Hugging Face Llama's mask code is data-dependent (traced for real); its check runs shape-only with the
    token ids and masks real (no forward pass on the weights) and still rolls back exactly the group that breaks it."""
    model, x = _small_llama(checked)
    twin = copy.deepcopy(model)
    pruner = pe.pruner.MagnitudePruner(model, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                       ignored_layers=[model.lm_head])
    assert pruner.DG.traced_on_meta is False
    if not checked:
        pruner.step()
        assert pruner.check.runs == {"meta": 0, "index data": 1, "real": 0}  # the pruned model ran shape-only
        assert model.model.layers[1].mlp.gate_proj.out_features == 32
    else:
        with pytest.warns(UserWarning, match=r"did not run .*CheckedSiLU expected 64 features.* rooted at "
                                             r"model\.layers\.1\.mlp"):
            pruner.step()
        assert pruner.check.runs["index data"] >= 2 and pruner.check.index_data_ok is not False
        assert model.model.layers[1].mlp.gate_proj.out_features == 64  # rolled back ...
        assert model.model.layers[0].mlp.gate_proj.out_features == 32  # ... and nothing else
        assert [s.root for s in pruner.skipped if s.kind == G.CHECK] == ["model.layers.1.mlp.gate_proj"]
        unchecked = copy.deepcopy(twin)
        pe.pruner.MagnitudePruner(unchecked, x, pe.importance.MagnitudeImportance(p=2), pruning_ratio=0.5,
                                  ignored_layers=[unchecked.lm_head], post_prune_check=False).step()
        with pytest.raises(ValueError, match="CheckedSiLU expected 64"):  # what the check caught is real
            unchecked(**x)
    assert model(**x).logits.shape == (1, 12, 64)


def test_stand_ins_are_reused_only_while_the_tensor_keeps_its_shape():
    """The check keeps its meta stand-ins across steps; a parameter resized in place (``.data =``, the same object)
    gets a new one, so the next check sees the new shape and catches the mismatch it causes."""
    from prune_explorer.pruner.post_check import StandIns

    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(1, 4)
    stand_ins = StandIns()
    w = model[0].weight
    assert run_error(model, x, stand_ins=stand_ins) is None
    first = stand_ins.of(w, True)
    assert stand_ins.of(w, True) is first and first.shape == w.shape and first.device.type == "meta"
    with torch.no_grad():
        w.data = torch.randn(5, 4)  # the same Parameter object, one output less: the next layer expects 6 inputs
    assert stand_ins.of(w, True) is not first and stand_ins.of(w, True).shape == (5, 4)
    assert run_error(model, x, stand_ins=stand_ins) is not None
    assert model[0].weight is w and w.device.type == "cpu"  # the model is left as it was


def test_explorer_accept_on_a_llama_checks_shape_only_and_undo_is_exact():
    model, x = _small_llama(checked=True)
    state = _state(model)
    c = ExplorerController(model, x, pruning_ratio=0.5, track_output=False)
    while c.current is not None and c.current.root_name != "model.layers.0.mlp.gate_proj":
        c.skip()
    c.accept()  # layer 0's MLP: the model still runs
    assert c.pruner.check.runs == {"meta": 0, "index data": 1, "real": 0}
    assert model.model.layers[0].mlp.gate_proj.out_features < 64
    with pytest.warns(UserWarning, match="CheckedSiLU expected 64"):
        d = c.accept()  # layer 1's MLP breaks it: rolled back, a skip
    assert d.action == "skip" and model.model.layers[1].mlp.gate_proj.out_features == 64
    c.undo()
    assert _equal(_state(model), state)
