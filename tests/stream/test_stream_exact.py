"""Streaming a plan through a sharded checkpoint gives exactly what ``pe.apply_plan`` gives on the model loaded
whole: the same tensors, the same logits, the predicted parameter count; the output loads with from_pretrained."""

import hashlib
import os

import pytest
import torch

import prune_explorer as pe
from prune_explorer.stream import StreamError, StreamInterrupted, stream_checkpoint

from stream_helpers import in_memory, make_config, meta_plan, write_checkpoint


def _load(folder):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder)


def _assert_same(ref, got):
    a, b = ref.state_dict(), got.state_dict()
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k
    ids = torch.randint(0, ref.config.vocab_size, (2, 11))
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, got(ids).logits)


def _digest(folder):
    h = hashlib.sha256()
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            h.update(name.encode() + f.read())
    return h.hexdigest()


def test_llama_magnitude_identical_to_apply_plan(llama_ckpt, tmp_path):
    folder, config = llama_ckpt
    before = _digest(folder)
    plan = meta_plan(config)
    imp = pe.importance.MagnitudeImportance(p=2)
    report = stream_checkpoint(folder, plan, str(tmp_path / "out"), importance=imp, progress=False)
    got = _load(str(tmp_path / "out"))
    _assert_same(in_memory(folder, plan, pe.importance.MagnitudeImportance(p=2)), got)
    assert report.params_after == report.predicted_params == plan.predicted["params"] == pe.measure.count_params(got)
    assert report.shared_groups == 1 and report.local_groups == 2 * config.num_hidden_layers
    assert (got.config.hidden_size, got.config.intermediate_size, got.config.num_attention_heads,
            got.config.num_key_value_heads) == (32, 64, 2, 1)
    assert os.path.isfile(tmp_path / "out" / "tokenizer.json")
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".stream")]
    assert _digest(folder) == before  # the input is never modified


@pytest.mark.parametrize("family,importance", [("qwen2", "l1"), ("mistral", "random")])
def test_other_families_and_criteria(family, importance, tmp_path):
    config = make_config(family, num_hidden_layers=2)
    folder = write_checkpoint(str(tmp_path / "ckpt"), config)
    plan = meta_plan(config, ratio=0.25)

    def imp():
        if importance == "l1":
            return pe.importance.MagnitudeImportance(p=1)
        torch.manual_seed(7)
        return pe.importance.RandomImportance()

    stream_checkpoint(folder, plan, str(tmp_path / "out"), importance=imp(), progress=False)
    got = _load(str(tmp_path / "out"))
    _assert_same(in_memory(folder, plan, imp()), got)
    assert pe.measure.count_params(got) == plan.predicted["params"]


@pytest.mark.parametrize("name", ["WandaImportance", "FluctuationImportance"])
def test_calibrated_criteria_run_block_by_block(name, llama_ckpt, tmp_path):
    from prune_explorer.calibration import Calibration

    folder, config = llama_ckpt
    plan = meta_plan(config)
    ids = torch.randint(0, config.vocab_size, (3, 10))
    data = [{"input_ids": ids[i:i + 1]} for i in range(3)]
    imp = getattr(pe.importance, name)
    report = stream_checkpoint(folder, plan, str(tmp_path / "out"), importance=imp(),
                               calibration=Calibration(data, progress=False), progress=False)
    assert report.shared_groups == 1
    ref = _load(folder)
    reference = imp()
    reference.calibrate(ref, Calibration(data, progress=False))  # one pass over the whole unpruned model
    pe.apply_plan(ref, plan, example_inputs=pe.plan.causal_lm_inputs(ref), importance=reference)
    _assert_same(ref, _load(str(tmp_path / "out")))
    with pytest.raises(StreamError, match="pass calibration="):
        stream_checkpoint(folder, plan, str(tmp_path / "out2"), importance=imp(), progress=False)


def test_interrupted_run_resumes_without_redoing_blocks(llama_ckpt, tmp_path):
    folder, config = llama_ckpt
    plan = meta_plan(config)
    out = tmp_path / "out"
    with pytest.raises(StreamInterrupted, match="stopped after 2 shard"):
        stream_checkpoint(folder, plan, str(out), progress=False, stop_after=2)
    first = sorted(n for n in os.listdir(out) if n.endswith(".safetensors"))
    assert len(first) == 2 and not os.path.exists(out / "config.json")
    stamps = {n: os.stat(out / n).st_mtime_ns for n in first}
    report = stream_checkpoint(folder, plan, str(out), progress=False)
    assert (report.decided, report.units_resumed, report.units_written) == (False, 2, report.units - 2)
    assert {n: os.stat(out / n).st_mtime_ns for n in first} == stamps  # finished shards not rewritten
    _assert_same(in_memory(folder, plan, pe.importance.MagnitudeImportance(p=2)), _load(str(out)))


def test_write_pass_on_worker_processes(llama_ckpt, tmp_path):
    folder, config = llama_ckpt
    plan = meta_plan(config)
    report = stream_checkpoint(folder, plan, str(tmp_path / "out"), progress=False, workers=2)
    assert report.units_written == report.units
    _assert_same(in_memory(folder, plan, pe.importance.MagnitudeImportance(p=2)), _load(str(tmp_path / "out")))


def test_plan_for_another_config_is_refused(llama_ckpt, tmp_path):
    folder, _ = llama_ckpt
    other = meta_plan(make_config("llama", hidden_size=96, num_hidden_layers=3))
    with pytest.raises(StreamError, match="was made for a model of .* parameters but this checkpoint's model has"):
        stream_checkpoint(folder, other, str(tmp_path / "out"), progress=False)


def test_head_size_plans_and_occupied_output_are_refused(llama_ckpt, tmp_path):
    folder, config = llama_ckpt
    with pytest.raises(StreamError, match="prune_head_dims=False"):
        stream_checkpoint(folder, meta_plan(config, prune_head_dims=True), str(tmp_path / "a"), progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.txt").write_text("mine")
    with pytest.raises(StreamError, match="not empty"):
        stream_checkpoint(folder, meta_plan(config), str(tmp_path / "b"), progress=False)
    with pytest.raises(StreamError, match="outside the checkpoint"):
        stream_checkpoint(folder, meta_plan(config), os.path.join(folder, "out"), progress=False)


def test_unsupported_architecture_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=64, n_positions=16)).save_pretrained(
        tmp_path / "gpt2")
    plan = pe.PruningPlan([pe.plan.GroupDecision("transformer.h.0.mlp.c_fc", remove=8)])
    with pytest.raises(StreamError, match="model_type='gpt2'"):
        stream_checkpoint(str(tmp_path / "gpt2"), plan, str(tmp_path / "out"), progress=False)


def test_command_line(llama_ckpt, tmp_path, capsys):
    from prune_explorer.stream.__main__ import main

    folder, config = llama_ckpt
    plan = meta_plan(config)
    plan.save(str(tmp_path / "plan.json"))
    torch.save(torch.randint(0, config.vocab_size, (2, 8)), tmp_path / "ids.pt")
    args = ["--checkpoint", folder, "--plan", str(tmp_path / "plan.json"), "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "out"), "--importance", "wanda", "--calibration",
                        str(tmp_path / "ids.pt")]) == 0
    assert f"-> {plan.predicted['params']:,} parameters" in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "out2"), "--importance", "wanda"]) == 2
    assert "pass calibration=" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["--checkpoint", folder, "--plan", str(tmp_path / "bad.json"), "--out", str(tmp_path / "o3")]) == 2
    assert "not a pruning plan" in capsys.readouterr().err


def test_full_disk_is_refused_before_writing(tmp_path):
    from prune_explorer.stream.checkpoint import check_free_space

    with pytest.raises(StreamError, match="needs .* GB but the disk of .* has .* GB free"):
        check_free_space(str(tmp_path), 10 ** 18)
