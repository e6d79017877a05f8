"""Recovery: a short distillation reduces the distillation loss, leaves the teacher alone, and stops cleanly."""

import copy

import pytest
import torch
import torch.nn as nn

import prune_explorer as pe
from prune_explorer.recovery import distillation_loss


def _pruned_pair():
    torch.manual_seed(0)
    teacher = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5))
    student = copy.deepcopy(teacher)
    pe.pruner.MagnitudePruner(student, torch.randn(2, 8), pe.importance.MagnitudeImportance(),
                              pruning_ratio=0.75).step()
    g = torch.Generator().manual_seed(1)
    data = [torch.randn(16, 8, generator=g) for _ in range(4)]
    return teacher.eval(), student.eval(), data


def _loss(student, teacher, data):
    with torch.no_grad():
        return sum(distillation_loss(student(x), teacher(x)).item() for x in data) / len(data)


def test_recover_reduces_the_distillation_loss():
    teacher, student, data = _pruned_pair()
    t_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    before = _loss(student, teacher, data)
    result = pe.recover(student, teacher, data, steps=60, lr=3e-3, progress=False)
    after = _loss(student, teacher, data)
    assert result.steps == 60 and not result.interrupted and len(result.losses) == 60
    assert after < 0.5 * before
    assert result.last_loss < result.first_loss
    assert all(torch.equal(t_state[k], v) for k, v in teacher.state_dict().items())
    assert not student.training and not teacher.training  # modes restored (both were in eval mode)


def test_recover_interrupted_leaves_a_valid_model():
    teacher, student, data = _pruned_pair()

    calls = {"n": 0}

    def output_fn(out):
        calls["n"] += 1
        if calls["n"] == 7:  # the student's forward of step 4
            raise KeyboardInterrupt
        return out

    result = pe.recover(student, teacher, data, steps=50, progress=False, output_fn=output_fn)
    assert result.interrupted and result.steps == 3
    assert student(data[0]).shape == (16, 5)


def test_recover_refuses_bad_arguments():
    teacher, student, data = _pruned_pair()
    with pytest.raises(pe.PruneExplorerError, match="copy"):
        pe.recover(student, student, data, steps=2, progress=False)
    with pytest.raises(pe.PruneExplorerError, match="steps"):
        pe.recover(student, teacher, data, steps=0, progress=False)


def test_recover_with_hidden_state_matching():
    transformers = pytest.importorskip("transformers")
    from prune_explorer.recovery import kept_channels

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, attn_implementation="eager")
    teacher = transformers.LlamaForCausalLM(cfg).eval()
    student = copy.deepcopy(teacher)
    ids = [torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(k)) for k in range(3)]
    pruner = pe.pruner.MagnitudePruner(student, ids[0], pe.importance.MagnitudeImportance(), pruning_ratio=0.5)
    pruner.step()
    kept = kept_channels(pruner.DG, student.model.norm)
    assert kept.numel() == student.config.hidden_size < 32

    def hidden_err():
        with torch.no_grad():
            s = student(input_ids=ids[0], output_hidden_states=True).hidden_states[-1]
            t = teacher(input_ids=ids[0], output_hidden_states=True).hidden_states[-1][..., kept]
        return (s - t).pow(2).mean().item()

    before = hidden_err()
    result = pe.recover(student, teacher, ids, steps=30, lr=3e-3, progress=False, hidden_weight=1.0,
                        hidden_channels=kept)
    assert result.last_loss < result.first_loss and hidden_err() < before
