"""Helpers of the streaming tests: small random-weight decoder checkpoints written with ``save_pretrained``
(sharded), plans made for them on the meta device, and the in-memory reference (``pe.apply_plan``)."""

import os

import torch

import prune_explorer as pe

LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=128, max_position_embeddings=64)


def make_config(family: str, **kw):
    from transformers import LlamaConfig, MistralConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}[family]
    return cls(**{**LLAMA, **kw}, use_cache=False)


def write_checkpoint(folder: str, config, seed: int = 0, shard: str = "60KB") -> str:
    """A random-weight model of ``config`` saved (float32, sharded) to ``folder``, with a fake tokenizer file."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(folder, max_shard_size=shard)
    with open(os.path.join(folder, "tokenizer.json"), "w") as f:
        f.write('{"version": "1.0"}')
    return folder


def meta_plan(config, ratio: float = 0.5, **options):
    """A uniform plan made on the meta-device model of ``config`` (whole heads, MLP width, hidden size)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(config)
    opts = dict(prune_num_heads=True, prune_head_dims=False)
    opts.update(options)
    return pe.sensitivity.uniform_plan(m, pe.plan.causal_lm_inputs(m), ratio=ratio, ignored_layers=["lm_head"],
                                       pruner_options=opts)


def in_memory(folder: str, plan, importance):
    """The checkpoint loaded whole and pruned with ``pe.apply_plan`` (the reference)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    pe.apply_plan(model, plan, example_inputs=pe.plan.causal_lm_inputs(model), importance=importance)
    return model


