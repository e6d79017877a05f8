"""The tracer's bookkeeping of sizes kept in attributes, of heads, and of what a traced output leaves out.

:class:`AttributeTracer` is a part of :class:`~prune_explorer.graph.trace.tracing.Tracer`: an integer attribute the forward
reads (``self.hidden_dim``, ``self.num_heads``, ``config.hidden_size``, see :mod:`.attributes`) becomes a hidden
channel space of its own (one id per position the size counts), so an op rule can couple it with the channels it
counts and the attribute is rewritten after pruning. An attribute used where the pruning cannot follow it is *held*:
its positions are fixed with a reason when the trace ends. Channel dims split into heads are recorded for
:mod:`.heads`. Key-value caches returned by a model (Hugging Face's ``DynamicCache``) are no part of its interface.

>>> from prune_explorer.graph.trace.tracer_attributes import without_caches
>>> class DynamicCache:
...     def update(self): ...
...     def get_seq_length(self): ...
>>> without_caches({"logits": 1, "past_key_values": DynamicCache()})
{'logits': 1, 'past_key_values': None}
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Dict, List, Optional, Tuple

import torch

from .attributes import ATTRIBUTE_PRUNER, AttributeRef, AttributeSize
from ..model.channel_space import SIDE_OUT
from .labels import Value
from .size_args import attribute_ratio, call_traced_ints, kind_attrs

__all__ = ["AttributeTracer", "without_caches"]


class AttributeTracer:
    """Attribute sizes and head splits seen during a trace (mixed into the tracer, which owns ``spaces``,
    ``couplings``, ``_node`` and ``value_of``)."""

    def init_attribute_state(self, head_pruning: str) -> None:
        #: where a channel dim splits into heads whose count and size can both follow the pruning: ``"dims"`` keeps
        #: the head count (same offsets leave every head), ``"heads"`` keeps the head size (whole heads leave)
        self.head_pruning = head_pruning
        self.attribute_spaces: Dict[Tuple[int, Fraction], Any] = {}
        #: ids of the operands contracted by attention-like products (q and k of ``q @ k^T``), see op_rules
        self.contracted_ids: List[torch.Tensor] = []
        #: channel dims split into heads: (grid of channel ids, head-count axis, head-size axis, free axis)
        self.head_splits: List[tuple] = []
        self.held_attributes: Dict[int, tuple] = {}
        self.attr_partner: Dict[int, int] = {}  # attribute position id -> a channel id it counts
        self.read_attributes: set = set()  # (id(owner), name) of the attributes the forward used in torch calls
        #: (a, b, reason): attributes whose ratio a / b must not change (checked once channels are coupled)
        self.constant_ratios: List[tuple] = []
        self._handled: set = set()

    def add_loose_buffers(self, named_modules) -> None:
        """Float buffers of modules that are not layers (a rotary embedding's ``inv_freq``) are followed like loose
        parameters: their entries can be channels (one frequency per pair of head dims). ``named_modules``: the
        model's ``(qualified name, module)`` pairs (each buffer is named as ``model.named_buffers()`` names it)."""
        seen = set()
        for mname, m in named_modules:
            for attr, b in m._buffers.items():
                if b is None or id(b) in seen:
                    continue
                seen.add(id(b))
                if id(b) in self.param_owner or id(b) in self.loose_params or not b.is_floating_point() or b.dim() == 0:
                    continue
                self.loose_params[id(b)] = (f"{mname}.{attr}" if mname else attr, m, attr, b)

    def attribute_space(self, ref: AttributeRef, scale: Fraction):
        """The hidden channel space of attribute ``ref`` used as the size ``scale * ref`` (made on first use); its
        ids are the positions that size counts."""
        key = (id(ref), Fraction(scale))
        s = self.attribute_spaces.get(key)
        if s is not None:
            return s
        owner = AttributeSize(ref, scale)
        s = self.spaces.add(key, owner=owner, name=owner.label, side=SIDE_OUT, size=owner.size,
                            pruner=ATTRIBUTE_PRUNER, handler=ATTRIBUTE_PRUNER.prune_out_channels, passthrough=True)
        self._node(owner.label, "attribute", None, op="attribute").spaces.append(s)
        self.attribute_spaces[key] = s
        return s

    def attribute_ids(self, ref: AttributeRef, scale: Fraction) -> Optional[torch.Tensor]:
        """Channel ids of attribute ``ref`` used as the size ``scale * ref`` (None if that is not a whole size)."""
        size = Fraction(ref.value) * Fraction(scale)
        if size.denominator != 1 or size <= 0:
            return None
        return torch.as_tensor(self.attribute_space(ref, scale).gids(), dtype=torch.long)

    def attribute_partners(self, ids: torch.Tensor, line: torch.Tensor) -> None:
        """Attribute position ``ids[i]`` counts channel ``line[i]`` (the first such channel is remembered)."""
        for a, b in zip(ids.tolist(), line.tolist()):
            if b > 0:
                self.attr_partner.setdefault(a, b)

    def hold_attribute(self, ref: AttributeRef, reason: str) -> None:
        """``ref`` sizes something that cannot change: it keeps its value (its channels, if any use couples it with
        channels, stay fixed). Applied when the trace ends, to the attribute's spaces that exist then."""
        self.held_attributes.setdefault(id(ref), (ref, reason))

    def handled_attributes(self, kinds) -> None:
        """The op rule took care of the attributes behind these size kinds (see :meth:`check_attribute_uses`)."""
        for k in kinds:
            self._handled.update(id(r) for r in kind_attrs(k))

    def start_rule(self) -> None:
        """An op rule is about to run: no attribute is handled yet."""
        self._handled = set()

    def check_attribute_uses(self, name: str, args, kwargs) -> None:
        """After op ``name``'s rule: the attributes among its int arguments that the rule did not follow keep their
        value (a ratio of two, ``num_heads // num_key_value_heads``, must stay constant instead)."""
        for t in call_traced_ints(args, kwargs):
            self.read_attributes.update((id(r.obj), r.name) for r in t.attrs)
            if all(id(r) in self._handled for r in t.attrs):
                continue
            ratio = attribute_ratio(t)
            if ratio is not None:  # repeat_interleave(num_heads // num_key_value_heads): the ratio must stay
                self.constant_ratios.append(ratio + (f"'{name}' uses {ratio[0].label} / {ratio[1].label}",))
                continue
            for ref in t.attrs:
                if id(ref) not in self._handled:
                    self.hold_attribute(ref, f"'{name}' uses it in a way that cannot follow the pruning")

    def foreign_linear_bias(self, owner, call, args, kwargs) -> None:
        """``F.linear(x, layer.weight, bias=torch.cat((q_bias, k_bias, v_bias)))`` (timm's EVA): a bias that is not
        the layer's own is added to its outputs, so its channels are coupled with them."""
        from . import op_rules

        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if call.name != "linear" or not isinstance(bias, torch.Tensor) or self.param_owner.get(id(bias)) is owner \
                or not call.outputs:
            return
        out = call.outputs[0]
        op_rules.elementwise(self, op_rules.Call(call.index, "linear", None, (), {},
                                                 [Value(-1, out.shape, fields=list(out.fields)),
                                                  self.value_of(bias)], [Value(-1, out.shape)]))

    def record_head_split(self, field: torch.Tensor, split_dims, free: int, shape=None) -> None:
        """A channel dim split into several dims (heads x head size, or groups x channels): ``field`` labels them
        (before the split's ties), ``split_dims`` are the dims of size > 1 it was split into (the last two are the
        head count and the head size), ``free`` the one that follows the pruning. Whether it is attention is known
        once the trace is over (its channels meet a contraction, see ``contracted_ids``)."""
        split_dims = list(split_dims)
        f = field
        for k in range(f.ndim):
            if k not in split_dims and f.shape[k] > 1:
                f = f.narrow(k, 0, 1)
        grid = f.expand(*[shape[k] if (shape is not None and k in split_dims) else f.shape[k] for k in range(f.ndim)])
        grid = grid.permute(split_dims + [k for k in range(f.ndim) if k not in split_dims])
        grid = grid.reshape([grid.shape[i] for i in range(len(split_dims))]).numpy().copy()
        self.head_splits.append((grid, len(split_dims) - 2, len(split_dims) - 1, split_dims.index(free)))

    def apply_held_attributes(self) -> None:
        """Fix the positions of every held attribute (called when the trace ends)."""
        for ref, reason in self.held_attributes.values():
            for (rid, _), s in self.attribute_spaces.items():
                if rid == id(ref):
                    self.couplings.fix(torch.as_tensor(s.gids(), dtype=torch.long),
                                       f"the attribute {ref.label} must keep its value: {reason}")


def _is_kv_cache(obj) -> bool:
    """A key-value cache (Hugging Face's ``DynamicCache``...), duck-typed: its tensors follow the pruned attention
    (the next call reads them with the same pruned model), so they are not part of the model's interface."""
    return type(obj).__name__.endswith("Cache") and callable(getattr(obj, "update", None)) and \
        callable(getattr(obj, "get_seq_length", None))


def without_caches(obj, depth: int = 0):
    """``obj`` (the model's outputs) with key-value caches left out (replaced by None, up to 4 levels deep)."""
    if depth > 3:
        return obj
    if _is_kv_cache(obj):
        return None
    if isinstance(obj, dict):
        return {k: without_caches(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        items = [without_caches(v, depth + 1) for v in obj]
        return items if isinstance(obj, list) else tuple(items)
    return obj
