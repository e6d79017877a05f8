"""The output change after each decision (one forward pass at most, none for an undo), Restart walk, Re-walk, and
an importance that needs gradients telling the user what to do instead of stopping the app."""

import torch
import torchvision

import prune_explorer as pe
from explorer_helpers import same_as, snapshot
from prune_explorer.explorer import ExplorerController
from prune_explorer.explorer.output_change import OutputChange


def _count_forwards(model):
    """Forward passes with real tensors (the post-prune check runs the model on shape-only meta tensors)."""
    calls = []
    model.register_forward_hook(lambda m, i, out: calls.append(1) if out.device.type != "meta" else None)
    return calls


def test_output_change_after_accept_and_undo_costs_at_most_one_pass(small):
    model, x = small
    xs = torch.randn(4, *x.shape[1:])
    with torch.no_grad():
        y0 = model(xs)
    c = ExplorerController(model, xs)
    calls = _count_forwards(model)
    assert c.output_change()["rel_error"] == 0.0 and c.output_change()["top1"] == 1.0  # nothing moved yet
    c.accept()
    first = c.output_change()
    assert len(calls) == 1 and first["rel_error"] > 0 and 0.0 <= first["top1"] <= 1.0
    with torch.no_grad():
        y1 = model(xs)
    del calls[:]
    assert abs(first["rel_error"] - float((y1 - y0).norm() / y0.norm())) < 1e-5
    assert first["top1"] == float((y1.argmax(1) == y0.argmax(1)).float().mean())
    c.skip() if c.current is not None else None
    assert len(calls) == 0  # a skip does not change the model
    c.accept()
    assert len(calls) == 1 and c.output_curve()["step"][0] == 0 and len(c.output_curve()["value"]) == 3
    c.undo()
    assert len(calls) == 1 and c.output_change() == first  # the state after the first accept was measured before


def test_output_change_can_be_skipped_and_uses_eval_fn_when_given(small):
    model, x = small
    c = ExplorerController(model, x, track_output=False)
    calls = _count_forwards(model)
    c.accept()
    assert calls == [] and c.output_change() is None and "not tracked" in c.output_change_reason
    model2, _ = small
    scores = []

    def eval_fn(m):
        with torch.no_grad():
            scores.append(float(m(x).abs().sum()))
        return scores[-1]

    c2 = ExplorerController(model2, x, eval_fn=eval_fn)
    c2.accept()
    r = c2.output_change()
    assert r["kind"] == "eval_fn" and r["baseline"] == scores[0] and r["value"] == scores[-1]
    assert abs(r["change"] - (scores[-1] - scores[0])) < 1e-12


def test_language_model_output_change_is_the_kl_of_next_token_distributions():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (1, 8))
    oc = OutputChange(model, {"input_ids": ids})
    assert oc.kind == "language model"
    assert oc.measure(model)["kl"] == 0.0
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    r = oc.measure(model)
    assert r["kl"] > 0 and r["rel_error"] > 0 and r["top1"] is None


def test_restart_walk_undoes_everything_and_rewalk_preselects_earlier_choices(small):
    model, x = small
    snap = snapshot(model)
    c = ExplorerController(model, x)
    first = c.current.root_name
    c.adjust(n=c.allowed_counts()[1])
    chosen = list(c.current_idxs)
    c.accept()
    c.skip()
    old = c.restart_walk()
    assert [d.action for d in old] == ["accept", "skip"] and c.decisions == [] and same_as(model, snap)
    assert c.current.root_name == first and "started over" in c.status.text
    c.accept(chosen)
    c.skip()
    c.rewalk()
    assert same_as(model, snap) and c.current.root_name == first and c.current_idxs == chosen  # pre-selected again
    assert "earlier choice" in c.status.text


def test_an_importance_without_gradients_says_how_to_give_them_and_restart_starts_the_walk():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    x = torch.randn(2, 3, 32, 32)
    c = ExplorerController(model, x, importance=pe.importance.TaylorImportance())
    assert c.current is None and c.blocked and "loss.backward()" in c.status.text and "Restart walk" in c.status.text
    model(x).sum().backward()
    c.restart_walk()
    assert c.current is not None and not c.blocked
    c.accept()
    assert c.decisions[-1].action == "accept"
