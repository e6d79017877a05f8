"""The model zoo of issues 13/14: real timm, Hugging Face transformers and ultralytics YOLO models built from
configs with random weights (nothing is downloaded), and the one pruning recipe every model goes through.

Shared by ``tests/zoo`` (which asserts) and ``benchmarks/zoo_report.py`` (which prints the evidence table), so
both prune exactly the same models in exactly the same way:

    >>> case = CASES["hf/bert"]
    >>> case.library, case.name
    ('transformers', 'hf/bert')

A :class:`ZooCase` builds ``(model, example_inputs)``; :func:`prune_case` prunes it with Torch-Pruning 1.6's
recipe (``MagnitudePruner``, ``MagnitudeImportance(p=2)``, ``pruning_ratio=0.5``, the classifier / head ignored,
one ``step()``) and returns a :class:`PruneOutcome` that records everything the tests check (parameter counts,
output shapes, forward / backward errors, tied parameters, Hugging Face config consistency).

Importing this module imports none of timm / transformers / ultralytics: each builder imports its library when
called (tests skip with ``pytest.importorskip`` first). Importing it *does* set the environment variables that
keep the three libraries offline (see :func:`set_offline_env`).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

# ----------------------------------------------------------------------------------------------------------------------
# offline set-up: must happen before transformers / huggingface_hub / ultralytics are imported
# ----------------------------------------------------------------------------------------------------------------------
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",  # huggingface_hub: never contact the Hub
    "TRANSFORMERS_OFFLINE": "1",  # transformers: same, older spelling
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "YOLO_OFFLINE": "1",  # ultralytics.utils.is_online() returns False without a DNS lookup (ONLINE = False)
}


def set_offline_env() -> None:
    """Set :data:`OFFLINE_ENV`, without overriding values the user set."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)


set_offline_env()


def has_library(name: str) -> bool:
    """Whether ``name`` is installed, without importing it (collection stays fast and side-effect free)."""
    return importlib.util.find_spec(name) is not None


def ultralytics_offline():
    """Import ultralytics with its network features off: ``YOLO_OFFLINE=1`` (set above) makes ``ONLINE`` False,
    which disables update checks, font downloads (``check_font`` only downloads when online) and the events
    reporter; ``settings.sync=False`` turns off the analytics / crash reporting that ``sync`` governs. Unless
    ``YOLO_CONFIG_DIR`` is set, ultralytics' settings file goes to a temporary folder removed at exit (never the
    home folder)."""
    if "ultralytics" not in sys.modules and "YOLO_CONFIG_DIR" not in os.environ:
        cfg_dir = tempfile.mkdtemp(prefix="pe_zoo_yolo_")
        atexit.register(shutil.rmtree, cfg_dir, True)
        os.environ["YOLO_CONFIG_DIR"] = cfg_dir
    import ultralytics
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync", True):
        SETTINGS.update(sync=False)
    return ultralytics


# ----------------------------------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ZooCase:
    """One model of the zoo.

    ``build()`` returns ``(model, example_inputs)`` (a tuple of positional inputs or a dict of keyword inputs,
    as the pruner takes them); ``ignored(model)`` the modules to ignore (classifier / head); ``library`` the
    pip package the model comes from (the test skips when it is missing); ``big`` cases (ViT-B sized) only run in
    ``benchmarks/zoo_report.py``; ``hf_config`` the check of ``model.config`` against module sizes and
    ``hf_dims(config)`` the widths the config declares, ``{"hidden", "intermediate", "heads", "head_dim"}`` in
    channels / heads (Hugging Face models only).
    """

    name: str
    library: str
    build: Callable[[], Tuple[nn.Module, Any]]
    ignored: Callable[[nn.Module], List[nn.Module]]
    big: bool = False
    hf_config: Optional[Callable[[nn.Module], List[str]]] = None
    hf_dims: Optional[Callable[[Any], Dict[str, int]]] = None
    note: str = ""


CASES: Dict[str, ZooCase] = {}


def _add(case: ZooCase) -> None:
    assert case.name not in CASES, case.name
    CASES[case.name] = case


# ---- timm -------------------------------------------------------------------------------------------------------------
def _timm_classifier(model) -> List[nn.Module]:
    head = model.get_classifier()
    heads = list(head) if isinstance(head, (tuple, list)) else [head]
    return [h for h in heads if isinstance(h, nn.Module) and any(True for _ in h.parameters())]


def _timm(name: str, size: int, big: bool = False, note: str = "", **kwargs) -> None:
    def build():
        import timm

        model = timm.create_model(name, pretrained=False, **kwargs).eval()
        return model, (torch.randn(1, 3, size, size),)

    _add(ZooCase(f"timm/{name}", "timm", build, _timm_classifier, big=big, note=note))


# (family, model, input side, create_model kwargs): the smallest variant of each family at a small input
TIMM_MODELS = [
    ("ResNet", "resnet18", 64, {}),
    ("ResNet-D", "resnet26d", 64, {}),
    ("ResNeSt", "resnest14d", 64, {}),
    ("SK-ResNet", "skresnet18", 64, {}),
    ("Res2Net", "res2net50_26w_4s", 64, {}),
    ("EfficientNet", "efficientnet_b0", 64, {}),
    ("EfficientNetV2", "tf_efficientnetv2_b0", 64, {}),
    ("MobileNetV3", "mobilenetv3_small_100", 64, {}),
    ("MobileNetV4", "mobilenetv4_conv_small", 64, {}),
    ("GhostNet", "ghostnet_100", 64, {}),
    ("RexNet", "rexnet_100", 64, {}),
    ("RegNet", "regnety_002", 64, {}),
    ("ConvNeXt", "convnext_atto", 64, {}),
    ("ConvNeXtV2", "convnextv2_atto", 64, {}),
    ("RepVGG", "repvgg_a0", 64, {}),
    ("DLA", "dla34", 64, {}),
    ("CSPDarkNet", "cspdarknet53", 64, {}),
    ("HRNet", "hrnet_w18_small", 64, {}),
    ("DenseNet", "densenet121", 64, {}),
    ("Inception", "inception_v3", 96, {}),
    ("Xception", "xception41", 64, {}),
    ("NFNet", "nfnet_l0", 64, {}),
    ("ViT", "vit_tiny_patch16_224", 64, {"img_size": 64}),
    ("DeiT", "deit_tiny_patch16_224", 64, {"img_size": 64}),
    ("EVA-02", "eva02_tiny_patch14_224", 56, {"img_size": 56, "num_classes": 1000}),  # default: no head
    ("Swin", "swin_tiny_patch4_window7_224", 112, {"img_size": 112, "window_size": 7, "depths": (2, 2, 2, 2)}),
    ("LeViT", "levit_128s", 64, {"img_size": 64}),
    ("PoolFormer", "poolformer_s12", 64, {}),
    ("MLP-Mixer", "mixer_s32_224", 64, {"img_size": 64}),
    ("MobileViT", "mobilevit_xxs", 64, {}),
    ("EfficientFormer", "efficientformer_l1", 224, {}),
    ("FastViT", "fastvit_t8", 64, {}),
    ("CoAtNet", "coatnet_nano_rw_224", 64, {"img_size": 64}),
]
for _family, _name, _size, _kw in TIMM_MODELS:
    _timm(_name, _size, note=_family, **_kw)

# report-only (big: ViT-B sized, or issue 14's named models at their native resolution and default head).
# eva02_tiny_patch14_224's default config has num_classes=0: its output *is* the 192-wide embedding, which can then
# never shrink; the "+head" row gives it timm's usual 1000-class head.
for _name, _size, _kw in [("vit_base_patch16_224", 224, {}), ("deit_small_patch16_224", 224, {}),
                          ("swin_tiny_patch4_window7_224", 224, {}), ("eva02_tiny_patch14_224", 224, {}),
                          ("eva02_tiny_patch14_224", 224, {"num_classes": 1000}),
                          ("levit_128s", 224, {}), ("poolformer_s12", 224, {}), ("res2net50_26w_4s", 224, {}),
                          ("rexnet_100", 224, {}), ("cspdarknet53", 224, {})]:
    def _build_big(_name=_name, _size=_size, _kw=_kw):
        import timm

        return timm.create_model(_name, pretrained=False, **_kw).eval(), (torch.randn(1, 3, _size, _size),)

    _suffix = "+head" if _kw else ""
    _add(ZooCase(f"timm/{_name}@{_size}{_suffix}", "timm", _build_big, _timm_classifier, big=True, note="issue 14"))


# ---- torchvision (report only) ----------------------------------------------------------------------------------------
def _tv(name: str) -> None:
    def build():
        import torchvision

        return torchvision.models.get_model(name, weights=None).eval(), (torch.randn(1, 3, 224, 224),)

    def ignored(model):
        return [[m for m in model.modules() if isinstance(m, nn.Linear)][-1]]

    _add(ZooCase(f"torchvision/{name}", "torchvision", build, ignored, big=True, note="issue 14"))


_tv("vit_b_16")
_tv("swin_t")


# ---- transformers -----------------------------------------------------------------------------------------------------
TOKENS = 16  # sequence length of the text inputs
VOCAB = 128


def _ids(seed: int = 1, n: int = TOKENS) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, VOCAB, (1, n), generator=g)


def _hf(name: str, build_model: Callable[[], nn.Module], inputs: Callable[[], dict], head: Optional[str],
        config_check: Callable[[nn.Module], List[str]], dims: Callable[[Any], Dict[str, int]], note: str = "") -> None:
    def build():
        model = build_model().eval()
        return model, inputs()

    def ignored(model):
        return [model.get_submodule(head)] if head else []

    _add(ZooCase(f"hf/{name}", "transformers", build, ignored, hf_config=config_check, hf_dims=dims, note=note))


def _dims_bert(c) -> Dict[str, int]:
    return {"hidden": c.hidden_size, "intermediate": c.intermediate_size, "heads": c.num_attention_heads,
            "head_dim": c.hidden_size // c.num_attention_heads}


def _dims_gpt2(c) -> Dict[str, int]:
    return {"hidden": c.n_embd, "intermediate": c.n_inner or 4 * c.n_embd, "heads": c.n_head,
            "head_dim": c.n_embd // c.n_head}


def _dims_llama(c) -> Dict[str, int]:
    return {"hidden": c.hidden_size, "intermediate": c.intermediate_size, "heads": c.num_attention_heads,
            "kv_heads": c.num_key_value_heads,
            "head_dim": getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads}


def _dims_t5(c) -> Dict[str, int]:
    return {"hidden": c.d_model, "intermediate": c.d_ff, "heads": c.num_heads, "head_dim": c.d_kv}


def _mismatch(what: str, config_value, module_values) -> List[str]:
    """One message per module size that differs from the config value ``config_value``."""
    bad = sorted({int(v) for v in module_values if int(v) != int(config_value)})
    return [f"config.{what}={config_value} but modules have {bad}"] if bad else []


def _check_bert(model) -> List[str]:
    """BERT (transformers): hidden_size, intermediate_size, num_attention_heads against the layers."""
    c = model.config
    base = model.bert if hasattr(model, "bert") else model
    layers = base.encoder.layer
    att = [lay.attention.self for lay in layers]
    head_dim = c.hidden_size // c.num_attention_heads
    out = []
    out += _mismatch("hidden_size", c.hidden_size,
                     [base.embeddings.word_embeddings.embedding_dim]
                     + [lay.attention.output.dense.out_features for lay in layers]
                     + [lay.output.dense.out_features for lay in layers] + [a.query.in_features for a in att])
    out += _mismatch("intermediate_size", c.intermediate_size, [lay.intermediate.dense.out_features for lay in layers])
    out += _mismatch("num_attention_heads", c.num_attention_heads, [a.num_attention_heads for a in att])
    out += _mismatch("hidden_size // num_attention_heads (attention_head_size)", head_dim,
                     [a.attention_head_size for a in att])
    out += _mismatch("num_attention_heads * head_dim", c.num_attention_heads * head_dim,
                     [m.out_features for a in att for m in (a.query, a.key, a.value)] + [a.all_head_size for a in att])
    return out


def _check_vit(model) -> List[str]:
    """ViT (transformers 5): hidden_size, intermediate_size, num_attention_heads against the layers."""
    c = model.config
    base = model.vit if hasattr(model, "vit") else model
    layers = base.layers
    att = [lay.attention for lay in layers]
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads  # ViTAttention reads head_dim
    out = []
    out += _mismatch("hidden_size", c.hidden_size,
                     [base.embeddings.patch_embeddings.projection.out_channels]
                     + [a.o_proj.out_features for a in att] + [lay.mlp.fc2.out_features for lay in layers])
    out += _mismatch("intermediate_size", c.intermediate_size, [lay.mlp.fc1.out_features for lay in layers])
    out += _mismatch("num_attention_heads", c.num_attention_heads, [a.num_attention_heads for a in att])
    out += _mismatch("head_dim (or hidden_size // num_attention_heads)", head_dim, [a.head_dim for a in att])
    out += _mismatch("num_attention_heads * head_dim", c.num_attention_heads * head_dim,
                     [m.out_features for a in att for m in (a.q_proj, a.k_proj, a.v_proj)])
    return out


def _check_gpt2(model) -> List[str]:
    c = model.config
    blocks = model.transformer.h
    out = []
    out += _mismatch("n_embd", c.n_embd, [model.transformer.wte.weight.shape[1]] + [b.ln_1.weight.numel() for b in blocks])
    out += _mismatch("3 * n_embd (c_attn)", 3 * c.n_embd, [b.attn.c_attn.weight.shape[1] for b in blocks])
    out += _mismatch("n_inner (4 * n_embd)", c.n_inner or 4 * c.n_embd, [b.mlp.c_fc.weight.shape[1] for b in blocks])
    out += _mismatch("n_head", c.n_head, [b.attn.num_heads for b in blocks])
    out += _mismatch("n_embd (attn.embed_dim, attn.split_size)", c.n_embd,
                     [v for b in blocks for v in (b.attn.embed_dim, b.attn.split_size)])
    out += _mismatch("n_embd // n_head (attn.head_dim)", c.n_embd // c.n_head, [b.attn.head_dim for b in blocks])
    return out


def _check_llama_like(model) -> List[str]:
    """Llama / Qwen2: hidden, intermediate, heads, key-value heads and head_dim against the layers."""
    c = model.config
    layers = model.model.layers
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    out = []
    out += _mismatch("hidden_size", c.hidden_size,
                     [model.model.embed_tokens.embedding_dim] + [lay.self_attn.o_proj.out_features for lay in layers]
                     + [lay.mlp.down_proj.out_features for lay in layers])
    out += _mismatch("intermediate_size", c.intermediate_size, [lay.mlp.gate_proj.out_features for lay in layers])
    out += _mismatch("num_attention_heads * head_dim", c.num_attention_heads * head_dim,
                     [lay.self_attn.q_proj.out_features for lay in layers])
    out += _mismatch("num_key_value_heads * head_dim", c.num_key_value_heads * head_dim,
                     [m.out_features for lay in layers for m in (lay.self_attn.k_proj, lay.self_attn.v_proj)])
    out += _mismatch("head_dim", head_dim, [lay.self_attn.head_dim for lay in layers])
    out += _mismatch("num_attention_heads // num_key_value_heads", c.num_attention_heads // c.num_key_value_heads,
                     [lay.self_attn.num_key_value_groups for lay in layers])
    return out


def _check_t5(model) -> List[str]:
    c = model.config
    blocks = list(model.encoder.block) + list(model.decoder.block)
    attns = [lay.SelfAttention for b in blocks for lay in b.layer if hasattr(lay, "SelfAttention")]
    attns += [lay.EncDecAttention for b in blocks for lay in b.layer if hasattr(lay, "EncDecAttention")]
    ffs = [lay.DenseReluDense for b in blocks for lay in b.layer if hasattr(lay, "DenseReluDense")]
    out = []
    out += _mismatch("d_model", c.d_model, [model.shared.embedding_dim] + [a.o.out_features for a in attns])
    out += _mismatch("d_ff", c.d_ff, [f.wi.out_features for f in ffs])
    out += _mismatch("num_heads", c.num_heads, [a.n_heads for a in attns])
    out += _mismatch("d_kv", c.d_kv, [a.key_value_proj_dim for a in attns])
    out += _mismatch("num_heads * d_kv", c.num_heads * c.d_kv,
                     [m.out_features for a in attns for m in (a.q, a.k, a.v)] + [a.inner_dim for a in attns])
    rel = [a.relative_attention_bias.embedding_dim for a in attns if a.has_relative_attention_bias]
    out += _mismatch("num_heads (relative_attention_bias)", c.num_heads, rel)
    return out


def _text_inputs():
    return {"input_ids": _ids(1), "attention_mask": torch.ones(1, TOKENS, dtype=torch.long)}


def _bert_config():
    from transformers import BertConfig

    return BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                      intermediate_size=128, max_position_embeddings=64, type_vocab_size=2)


def _build_bert():
    from transformers import BertModel

    return BertModel(_bert_config())


def _build_bert_cls():
    from transformers import BertForSequenceClassification

    cfg = _bert_config()
    cfg.num_labels = 3
    return BertForSequenceClassification(cfg)


def _build_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0,
                                      use_cache=False, tie_word_embeddings=True))


def _build_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        tie_word_embeddings=True, use_cache=False))


def _build_qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM(Qwen2Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                        use_cache=False))


def _vit_config():
    from transformers import ViTConfig

    return ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     image_size=32, patch_size=8, num_labels=10)


def _build_vit():
    from transformers import ViTModel

    return ViTModel(_vit_config(), add_pooling_layer=False)


def _build_vit_cls():
    from transformers import ViTForImageClassification

    return ViTForImageClassification(_vit_config())


def _build_t5():
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(vocab_size=VOCAB, d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                               num_heads=4, decoder_start_token_id=0, use_cache=False,
                                               tie_word_embeddings=True))


def _image_inputs():
    return {"pixel_values": torch.randn(1, 3, 32, 32)}


_hf("bert", _build_bert, _text_inputs, None, _check_bert, _dims_bert, "BertModel, no head")
_hf("bert_cls", _build_bert_cls, _text_inputs, "classifier", _check_bert, _dims_bert, "BertForSequenceClassification")
_hf("gpt2", _build_gpt2, lambda: {"input_ids": _ids(2)}, "lm_head", _check_gpt2, _dims_gpt2, "GPT2LMHeadModel, tied head")
_hf("llama_gqa", _build_llama, _text_inputs, "lm_head", _check_llama_like, _dims_llama, "LlamaForCausalLM, 4 q / 2 kv heads, tied")
_hf("qwen2", _build_qwen2, _text_inputs, "lm_head", _check_llama_like, _dims_llama, "Qwen2ForCausalLM, 4 q / 2 kv heads")
_hf("vit", _build_vit, _image_inputs, None, _check_vit, _dims_bert, "ViTModel")
_hf("vit_cls", _build_vit_cls, _image_inputs, "classifier", _check_vit, _dims_bert, "ViTForImageClassification")
_hf("t5", _build_t5, lambda: {"input_ids": _ids(3), "decoder_input_ids": _ids(4, 8)}, "lm_head", _check_t5, _dims_t5,
    "T5ForConditionalGeneration, tied shared embedding")


# ---- ultralytics ------------------------------------------------------------------------------------------------------
def _yolo(cfg: str) -> None:
    def build():
        ultralytics_offline()
        from ultralytics.nn.tasks import DetectionModel

        model = DetectionModel(cfg, verbose=False).eval()
        return model, (torch.randn(1, 3, 128, 128),)

    def ignored(model):
        return [model.model[-1]]  # the Detect head

    _add(ZooCase(f"yolo/{cfg.split('.')[0]}", "ultralytics", build, ignored, note="DetectionModel from yaml"))


_yolo("yolov8n.yaml")
_yolo("yolo11n.yaml")


# ----------------------------------------------------------------------------------------------------------------------
# pruning one case
# ----------------------------------------------------------------------------------------------------------------------
def call(model: nn.Module, inputs):
    """Run ``model`` on example inputs given as the pruner takes them (tuple of positional or dict of keyword)."""
    if isinstance(inputs, dict):
        return model(**inputs)
    return model(*inputs)


def tensors_of(out) -> List[torch.Tensor]:
    """Every tensor in a model output (tensors, tuples / lists, dicts and Hugging Face ModelOutputs), in order."""
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):  # ModelOutput is an OrderedDict of its non-None fields
        return [t for v in out.values() for t in tensors_of(v)]
    if isinstance(out, (tuple, list)):
        return [t for v in out for t in tensors_of(v)]
    return []


def n_params(model: nn.Module) -> int:
    """Number of parameters (each shared tensor counted once)."""
    return sum(p.numel() for p in model.parameters())


def tied_sets(model: nn.Module) -> List[Tuple[str, ...]]:
    """Names of parameters that are one tensor used under several names (tied embeddings, shared blocks)."""
    by_id: Dict[int, List[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return [tuple(v) for v in by_id.values() if len(v) > 1]


def first_line(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {msg[0] if msg else ''}"


@dataclass
class PruneOutcome:
    """What happened when one case was pruned (see :func:`prune_case`).

    ``params_before`` / ``params_after`` count parameters (shared tensors once); ``shapes_before`` /
    ``shapes_after`` are the shapes of every output tensor; ``build_error`` (building the pruner / graph),
    ``step_error``, ``forward_error`` and ``backward_error`` hold the first line of an exception, or None;
    ``skipped_errors`` the groups the step rolled back with an error (a layer refused, or the post-prune check found
    that the pruned model did not run: the graph missed something); ``untied`` the tied parameter names
    that are no longer one tensor; ``config_mismatch`` (Hugging Face) ``model.config`` fields that disagree with
    module sizes; ``fixed_reasons`` ``{reason: layer count}`` over the layers whose output channels stay fixed.
    """

    name: str
    params_before: int = 0
    params_after: int = 0
    shapes_before: List[Tuple[int, ...]] = field(default_factory=list)
    shapes_after: Optional[List[Tuple[int, ...]]] = None
    build_error: Optional[str] = None
    step_error: Optional[str] = None
    forward_error: Optional[str] = None
    backward_error: Optional[str] = None
    skipped_errors: List[str] = field(default_factory=list)
    tied_before: List[Tuple[str, ...]] = field(default_factory=list)
    untied: List[Tuple[str, ...]] = field(default_factory=list)
    config_mismatch: Optional[List[str]] = None
    fixed_reasons: Dict[str, int] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    seconds: float = 0.0
    traceback: Optional[str] = None
    model: Any = field(default=None, repr=False)
    inputs: Any = field(default=None, repr=False)
    pruner: Any = field(default=None, repr=False)

    @property
    def kept(self) -> float:
        """Fraction of parameters kept (after / before)."""
        return self.params_after / self.params_before if self.params_before else float("nan")

    @property
    def error(self) -> Optional[str]:
        """The first failure, in the order the recipe meets them."""
        return self.build_error or self.step_error or self.forward_error or self.backward_error


def fixed_reasons(dg, model: nn.Module, ignored: Sequence[nn.Module]) -> Dict[str, int]:
    """``{reason: number of layers}`` for every conv / linear / embedding / norm layer (not ignored) whose output
    channels the graph keeps fixed, with ``DG.fixed_reason(layer)``."""
    skip = {id(m) for i in ignored for m in i.modules()}
    reasons: Dict[str, int] = {}
    for _, m in model.named_modules():
        if id(m) in skip or not isinstance(m, (nn.modules.conv._ConvNd, nn.Linear, nn.Embedding,
                                                   nn.modules.batchnorm._BatchNorm, nn.LayerNorm)):
            continue
        try:
            r = dg.fixed_reason(m)
        except Exception as exc:  # a layer the graph never saw
            r = f"fixed_reason failed: {first_line(exc)}"
        if r:
            reasons[r] = reasons.get(r, 0) + 1
    return reasons


@contextlib.contextmanager
def one_thread():
    """Run with one torch thread (restored afterwards): on a shared 2-core machine the zoo is several times faster
    single-threaded, and results do not depend on the thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def prune_case(case: ZooCase, lib=None, want_fixed_reasons: bool = False, pruning_ratio: float = 0.5,
               model_and_inputs=None, **pruner_kwargs) -> PruneOutcome:
    """Build ``case`` (seeded; or take ``model_and_inputs``), prune it with ``lib`` (``prune_explorer`` by
    default; ``torch_pruning`` works too) with Torch-Pruning's recipe (``pruner_kwargs`` are added to the
    ``MagnitudePruner`` call), and check the result, with one torch thread. Never raises for a failure of the
    pruning library: every failure is recorded in the returned :class:`PruneOutcome`, which also holds the pruned
    ``model``, its ``inputs`` and the ``pruner``."""
    with one_thread():
        return _prune_case(case, lib, want_fixed_reasons, pruning_ratio, model_and_inputs, **pruner_kwargs)


def _prune_case(case, lib, want_fixed_reasons, pruning_ratio, model_and_inputs, **pruner_kwargs) -> PruneOutcome:
    if lib is None:
        import prune_explorer as lib
    out = PruneOutcome(case.name)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model, inputs = model_and_inputs if model_and_inputs is not None else case.build()
    out.model = model
    out.inputs = inputs
    out.params_before = out.params_after = n_params(model)
    out.tied_before = tied_sets(model)
    with torch.no_grad():
        out.shapes_before = [tuple(t.shape) for t in tensors_of(call(model, inputs))]
    ignored = case.ignored(model)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner = lib.pruner.MagnitudePruner(model, inputs, lib.importance.MagnitudeImportance(p=2),
                                                pruning_ratio=pruning_ratio, ignored_layers=ignored, **pruner_kwargs)
        out.warnings = [str(w.message) for w in caught]
    except Exception as exc:
        out.build_error = first_line(exc)
        out.traceback = traceback.format_exc()
        out.seconds = time.perf_counter() - t0
        return out
    out.pruner = pruner
    if want_fixed_reasons and hasattr(pruner.DG, "fixed_reason"):
        out.fixed_reasons = fixed_reasons(pruner.DG, model, ignored)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pruner.step()
        out.warnings += [str(w.message) for w in caught]
    except Exception as exc:
        out.step_error = first_line(exc)
        out.traceback = traceback.format_exc()
    out.skipped_errors = [str(s) for s in getattr(pruner, "skipped", []) if getattr(s, "kind", None) in ("error", "check")]
    out.params_after = n_params(model)
    now = tied_sets(model)
    out.untied = [names for names in out.tied_before if not any(set(names) <= set(n) for n in now)]
    if case.hf_config is not None:
        try:
            out.config_mismatch = case.hf_config(model)
        except Exception as exc:
            out.config_mismatch = [f"check failed: {first_line(exc)}"]
    y = None
    try:
        y = call(model, inputs)
        out.shapes_after = [tuple(t.shape) for t in tensors_of(y)]
    except Exception as exc:
        out.forward_error = first_line(exc)
        out.traceback = traceback.format_exc()
    if y is not None:
        try:
            floats = [t for t in tensors_of(y) if t.is_floating_point() and t.requires_grad]
            if not floats:
                raise RuntimeError("no output tensor requires grad")
            sum(t.float().sum() for t in floats).backward()
        except Exception as exc:
            out.backward_error = first_line(exc)
            out.traceback = traceback.format_exc()
    out.seconds = time.perf_counter() - t0
    return out


def acceptance_problems(out: PruneOutcome) -> List[str]:
    """The acceptance checks of issue 13 that ``out`` fails (empty when all pass): the pruner builds and steps,
    no group is rolled back with an error, parameters strictly fewer, forward and backward run, every output
    tensor keeps its shape."""
    problems = []
    for what, err in (("building the pruner", out.build_error), ("step()", out.step_error),
                      ("forward after pruning", out.forward_error), ("backward after pruning", out.backward_error)):
        if err:
            problems.append(f"{what} failed: {err}")
    problems += [f"group rolled back with an error: {s[:300]}" for s in out.skipped_errors]
    if out.build_error is None and out.params_after >= out.params_before:
        problems.append(f"nothing pruned: {out.params_before} parameters before, {out.params_after} after")
    if out.shapes_after is not None and out.shapes_after != out.shapes_before:
        problems.append(f"output shapes changed: {out.shapes_before} -> {out.shapes_after}")
    return problems
