"""One eager forward pass that records every torch operation and layer call, and follows channels through them.

The tracer is a :class:`torch.overrides.TorchFunctionMode`: it sees each torch function call made by the model's
Python code (``F.conv2d``, ``x.view(...)``, ``a + b``, ``torch.cat``…) with its real arguments, so Python control
flow just works and no symbolic tracing is involved. Registered layers (Conv, Linear, norms, attention, RNNs…) are
seen as one call each through forward hooks; their internals are not recorded. A layer's parameters used outside
its ``forward`` (torchvision's Swin calls ``F.linear(x, self.qkv.weight)``) are recognised by the parameter.

Tracing leaves the model exactly as it was: weights, buffers (BatchNorm running statistics are restored), gradients,
train/eval mode and hooks. It runs under ``torch.no_grad()``: no autograd graph is needed.

:class:`TracingMode` (the torch function mode, at the end of this module) hands each call to the :class:`Tracer`;
``x.size()`` / ``x.shape`` answers go through :meth:`Tracer.traced_size` so that computed sizes keep their provenance.
"""

from __future__ import annotations

import contextlib
import warnings
import weakref
from collections import Counter
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

from ...errors import TracingError
from ...inputs import CALL_CONVENTION, call_model, kept_state, tensors_in, to_meta
from ...layers.family import FAMILIES
from ...layers.parameter import ParameterPruner
from ...layers.registry import DEFAULT_REGISTRY
from . import op_rules
from .layer_calls import LayerCallContext, custom_channel_map
from .attributes import AttributeTracking
from ..model.channel_space import SIDE_OUT, SpaceTable
from ..model.classes import OUTPUT_REASON
from .labels import Couplings, Value, new_field
from .meta_shapes import META_DEVICE, check_meta_dtypes, fast_meta, layer_on_meta
from ..model.node import Node
from .op_names import op_name
from .traced_int import TracedInt
from .tracer_attributes import AttributeTracer, without_caches


_PLAIN_TENSORS = (torch.Tensor, nn.Parameter)
#: argument types that hold no tensor and that :func:`~prune_explorer.inputs.tensors_in` does not search
_ATOMS = frozenset((int, float, bool, complex, str, type(None), TracedInt, slice, type(Ellipsis), torch.dtype,
                    torch.device, torch.memory_format, torch.layout))
_SEQUENCES = (tuple, list, torch.Size)


def call_tensors(args: tuple, kwargs: dict) -> List[torch.Tensor]:
    """``tensors_in((args, kwargs))``: the tensors of a call, in order. Arguments that are plain tensors, scalars,
    or flat tuples / lists of scalars (``x.view(B, N, C)``, ``x.permute((0, 2, 1))``) are read in one loop; anything
    else (a list of tensors, a tensor subclass, an object) takes the nested walk."""
    out = []
    for group in (args, kwargs.values()) if kwargs else (args,):
        for a in group:
            t = type(a)
            if t in _PLAIN_TENSORS:
                out.append(a)
            elif t in _ATOMS:
                continue
            elif t in _SEQUENCES and all(type(e) in _ATOMS for e in a):
                continue
            else:
                return tensors_in((args, kwargs))
    return out


def named_modules_of(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``list(model.named_modules())``: every module once, with its qualified name, in the same order, made by one
    loop instead of torch's chain of generators (one per level of nesting). A model holding a module that
    overrides ``named_modules``, ``__eq__`` or ``__hash__`` (which torch's walk relies on) is walked by torch.

    >>> net = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    >>> [name for name, _ in named_modules_of(net)] == [name for name, _ in net.named_modules()]
    True
    """
    out, seen, stack = [], set(), [("", model)]
    while stack:
        prefix, m = stack.pop()
        if id(m) in seen:
            continue
        t = type(m)
        if t.named_modules is not _NAMED_MODULES or t.__eq__ is not _OBJECT_EQ or t.__hash__ is not _OBJECT_HASH:
            return list(model.named_modules())
        seen.add(id(m))
        out.append((prefix, m))
        subs = m._modules
        if subs:
            items = [(f"{prefix}.{n}" if prefix else n, c) for n, c in subs.items() if c is not None]
            items.reverse()
            stack.extend(items)
    return out


_NAMED_MODULES, _OBJECT_EQ, _OBJECT_HASH = nn.Module.named_modules, object.__eq__, object.__hash__


def _meta_stand_in(t: torch.Tensor, param: bool) -> torch.Tensor:
    """``t``'s meta stand-in for a trace: ``empty_like`` on the meta device (its shape, dtype and strides), a
    ``Parameter`` with ``t``'s ``requires_grad`` for a parameter."""
    meta = torch.empty_like(t, device=META_DEVICE)
    return nn.Parameter(meta, requires_grad=t.requires_grad) if param else meta


class Tracer(AttributeTracer):
    """Builds channel spaces and couplings from one forward pass. Used by :class:`DependencyGraph`."""

    def __init__(self, model: nn.Module, customized_pruners=None, unwrapped_parameters=None,
                 head_pruning: str = "dims", named_modules: Optional[List[Tuple[str, nn.Module]]] = None):
        self.model = model
        self.init_attribute_state(head_pruning)
        #: layer type -> pruner: the built-in families', overridden by the user's ``customized_pruners``
        self.registry = DEFAULT_REGISTRY.with_overrides(customized_pruners)
        self.custom_types = tuple(customized_pruners or ())
        self.functional_layer_ops = FAMILIES.functional_ops()
        #: layers whose ``bias`` holds one entry per output channel (a bias read outside the layer follows them)
        self.layers_with_out_bias = (nn.Linear, nn.modules.conv._ConvNd)
        self.couplings = Couplings()
        self.context = LayerCallContext(self)
        self.spaces = SpaceTable()
        self._space_ids: Dict[int, torch.Tensor] = {}  # space index -> its global ids (see space_ids)
        self._id_block = torch.arange(0)  # ids 0 .. n - 1, sliced by space_ids
        #: id(tensor) -> (tensor, first id): id tensors holding consecutive ids along one dim (a space's ids, and the
        #: fields a layer labels its output with), see :meth:`consecutive_from`
        self._consecutive: Dict[int, Tuple[torch.Tensor, int]] = {}
        self.values: Dict[int, Value] = {}
        self._by_id: Dict[int, Tuple[Any, Value]] = {}
        self._next_uid = 0
        self.in_tracer_code = False  # True while the tracer's own code runs: its torch calls are not the model's
        self.layer_depth = 0  # how many hooked layers' forwards are running (calls inside them are not recorded)
        self.n_calls = 0  # calls recorded so far (each call's arguments are dropped once its rule ran)
        self.nodes: Dict[str, Node] = {}
        self.unknown_ops: Counter = Counter()
        self.internal_errors: List[str] = []
        self.deferred: List[tuple] = []  # (source fields, fields, reason, fallback pairs or None)
        #: ids along the output dim of loose weights used in a product (``F.linear(x, w)``, ``grouped_mm``): such a
        #: parameter acts as a linear layer, its output channels root groups (see ``DependencyGraph.param_roots``)
        self.weight_out_ids: List[torch.Tensor] = []
        self.outputs: List[Tuple[str, Tuple[int, ...], list]] = []  # (name, shape, label fields) per model output
        self.meta = False  # True when the trace ran on meta-device stand-ins
        self._op_counter: Counter = Counter()
        # module bookkeeping
        #: ``(qualified name, module)`` of every module, each once (the one walk of the module tree; ``named_modules``:
        #: the caller's :func:`named_modules_of` when it made it already)
        self.named_modules = named = list(named_modules) if named_modules is not None else named_modules_of(model)
        self.module_names = {m: n for n, m in named}
        self.param_owner: Dict[int, nn.Module] = {}  # params/buffers of registered layers -> layer
        #: params/buffers of registered layers -> every such layer holding it (tied weights: an embedding and a head)
        self.param_users: Dict[int, List[nn.Module]] = {}
        #: parameters (and float buffers) of no known layer: id -> (qualified name, owning module, attribute, tensor)
        self.loose_params: Dict[int, Tuple[str, nn.Module, str, torch.Tensor]] = {}
        self.layers = []
        for mname, m in named:
            family = self._family_layer(m)
            hooked = isinstance(m, self.custom_types) or (family is not None and family.runs_standard_forward(m))
            if hooked:
                self.layers.append(m)
            if hooked or family is not None:
                # a known layer type with its own forward (e.g. LayerNorm2d) is recognised by its parameters
                for t in list(m._parameters.values()) + list(m._buffers.values()):
                    if t is not None:
                        self.param_owner[id(t)] = m
                        users = self.param_users.setdefault(id(t), [])
                        if not users or users[-1] is not m:  # a tensor held twice by one layer counts it once
                            users.append(m)
        seen = set()  # model.named_parameters(), from the walk above: each tensor once, under its first name
        for mname, m in named:
            for attr, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                if id(p) not in self.param_owner:
                    self.loose_params[id(p)] = (f"{mname}.{attr}" if mname else attr, m, attr, p)
        self.add_loose_buffers(named)
        self.unwrapped = {}
        for item in (unwrapped_parameters.items() if isinstance(unwrapped_parameters, dict) else (unwrapped_parameters or [])):
            p, dim = item
            self.unwrapped[id(p)] = dim

    # ---- layers ----------------------------------------------------------------------------------------------
    def pruner_for(self, module):
        return self.registry.get(module)

    def _family_layer(self, m: nn.Module):
        """The family of ``m`` if the tracer can follow it as one layer (a channel map and a pruner), else None."""
        family = FAMILIES.family_of(m)
        if family is None or family.channel_map is None or self.registry.get(m) is None:
            return None
        return family

    def _is_layer(self, m: nn.Module) -> bool:
        """Layers seen as one call (hooked); a subclass that overrides forward (e.g. torchvision's LayerNorm2d) is
        traced through instead, op by op."""
        if isinstance(m, self.custom_types):
            return True
        family = self._family_layer(m)
        return family is not None and family.runs_standard_forward(m)

    # ---- values ----------------------------------------------------------------------------------------------
    def _new_value(self, t: torch.Tensor, producer=None) -> Value:
        v = Value(self._next_uid, tuple(t.shape), producer)
        self._next_uid += 1
        self.values[v.uid] = v
        self._by_id[id(t)] = (weakref.ref(t), v)
        return v

    def value_of(self, t: torch.Tensor) -> Value:
        hit = self._by_id.get(id(t))
        if hit is not None and hit[0]() is t:
            return hit[1]
        if id(t) in self.loose_params:
            return self._param_value(t)
        v = self._new_value(t)
        owner = self.param_owner.get(id(t))
        if owner is not None and owner in self.module_names:
            self._label_layer_tensor(owner, t, v)
        return v

    def _label_layer_tensor(self, owner, t, v: Value) -> None:
        """A layer's own parameter read by the model's ops, outside a call of the layer, carries the layer's channels
        along the dims its pruner slices (``SLICED_TENSORS``): a bias read outside the call (torchvision's Swin V2
        zeroes a copy of ``qkv.bias`` before ``F.linear``), or the weights of a layer whose own ``forward`` the trace
        follows op by op (``x @ self.weight.T + self.bias``, Whisper's ``self.weight[positions]``)."""
        hooked = self._is_layer(owner)
        if hooked and not (t.ndim == 1 and getattr(owner, "bias", None) is t
                           and isinstance(owner, self.layers_with_out_bias)):
            return  # a called layer's weights are read by its own call
        attr = next((k for k, p in list(owner._parameters.items()) + list(owner._buffers.items()) if p is t), None)
        pruner = self.pruner_for(owner)
        sliced = getattr(pruner, "SLICED_TENSORS", None)
        if attr is None or not sliced:
            return
        try:
            coupled = bool(pruner.in_out_coupled(owner))
        except Exception:  # noqa: BLE001 - a pruner that cannot say: leave the tensor unlabeled
            return
        name = self.module_names[owner]
        fields = []
        for side in (("out",) if coupled else ("out", "in")):
            d = sliced.get(side, {}).get(attr)
            if d is None or d >= t.ndim:
                continue
            s = self.space(owner, name, side, passthrough=coupled)
            if s.size == t.shape[d] and t.shape[d] > 1:
                fields.append(new_field(t.shape, d, torch.as_tensor(s.gids(), dtype=torch.long)))
        v.fields = fields

    def _param_value(self, p: nn.Parameter) -> Value:
        pname, owner, attr, original = self.loose_params[id(p)]
        v = self._new_value(p)
        node = self._node(pname, "param", None, op="Parameter")
        v.producer = node
        dims = [self.unwrapped[id(original)]] if id(original) in self.unwrapped else range(p.ndim)
        fields = []
        for d in dims:
            d = d % p.ndim
            if p.shape[d] <= 1:
                continue
            s = self.param_space(original, pname, d)
            fields.append(new_field(p.shape, d, torch.as_tensor(s.gids(), dtype=torch.long)))
        v.fields = fields
        return v

    def traced_size(self, t, out, dim):
        if self.in_tracer_code or self.layer_depth or not isinstance(t, torch.Tensor):
            return out
        self.in_tracer_code = True
        try:
            v = self.value_of(t)
            if isinstance(out, int):
                d = dim[0] if isinstance(dim, tuple) else dim
                d = int(d) % max(t.ndim, 1)
                return TracedInt(out, {(v.uid, d)}, exact=True)
            return torch.Size([TracedInt(s, {(v.uid, d)}, exact=True) for d, s in enumerate(out)])
        finally:
            self.in_tracer_code = False

    # ---- spaces ----------------------------------------------------------------------------------------------
    def space(self, module, name, side, passthrough=False, size=None):
        """The channel space of ``module``'s ``side`` (made on first use). ``size``: the channel count when the
        caller already knows it (else the pruner's ``get_out_channels`` / ``get_in_channels``)."""
        key = (id(module), SIDE_OUT if passthrough else side)
        s = self.spaces.by_key.get(key)
        if s is not None:
            return s
        pruner = self.pruner_for(module)
        if passthrough or side == SIDE_OUT:
            size = pruner.get_out_channels(module) if size is None else size
            handler = pruner.prune_out_channels
        else:
            size = pruner.get_in_channels(module) if size is None else size
            handler = pruner.prune_in_channels
        s = self.spaces.add(key, owner=module, name=name, side=SIDE_OUT if passthrough else side, size=int(size),
                            pruner=pruner, handler=handler, passthrough=passthrough)
        self._node(name, "layer", module).spaces.append(s)
        return s

    def space_ids(self, s) -> torch.Tensor:
        """The global ids of space ``s`` as an int64 tensor, made once per space (a layer called many times, e.g. a
        shared block, reads the same tensor; label code never writes into an id tensor)."""
        ids = self._space_ids.get(s.index)
        if ids is None:  # ``s.gids()`` as a tensor: a slice of one block of consecutive ids
            end = s.offset + s.size
            if end > self._id_block.shape[0]:
                self._id_block = torch.arange(max(2 * end, 4096))  # int64; the slices made so far keep the old one
            ids = self._space_ids[s.index] = self._id_block[s.offset:end]
            self._consecutive[id(ids)] = (ids, s.offset)
        return ids

    def consecutive_from(self, t: torch.Tensor) -> Optional[int]:
        """The first id of ``t`` when it holds consecutive ids along its one varying dim (a space's ids from
        :meth:`space_ids`, or a field made of them by :meth:`mark_consecutive`), else None."""
        hit = self._consecutive.get(id(t))
        return hit[1] if hit is not None and hit[0] is t else None

    def unify(self, a: torch.Tensor, b: torch.Tensor, reason: str) -> None:
        """``couplings.unify(a, b, reason)``; two fields of one shape that hold consecutive ids (see
        :meth:`consecutive_from`) are coupled as one range (the same pairs: every position labeled on both sides)."""
        if a.shape == b.shape:
            a0 = self.consecutive_from(a)
            b0 = self.consecutive_from(b) if a0 is not None else None
            if b0 is not None and a.numel():
                if a0 != b0:
                    self.couplings.pair_range(a0, b0, a.numel())
                return
        self.couplings.unify(a, b, reason)

    def mark_consecutive(self, field: torch.Tensor, ids: torch.Tensor) -> None:
        """``field`` is ``ids`` reshaped (same ids in the same order): it is consecutive when ``ids`` is."""
        hit = self._consecutive.get(id(ids))
        if hit is not None and hit[0] is ids:
            self._consecutive[id(field)] = (field, hit[1])

    def param_space(self, p, pname, dim):
        key = (id(p), f"dim{dim}")
        s = self.spaces.get(key)
        if s is not None:
            return s
        pruner = ParameterPruner(dim=dim)
        s = self.spaces.add(key, owner=p, name=pname, side=SIDE_OUT, size=int(p.shape[dim]), pruner=pruner,
                            handler=pruner.prune_out_channels, passthrough=True, dim=dim)
        self._node(pname, "param", None, op="Parameter").spaces.append(s)
        return s

    def deferred_same_channels(self, src_fields, fields, reason, fallback=None):
        """Once channels are coupled, ``src_fields`` must hold the same channel classes as ``fields``; if they do
        not, the ``fallback`` pairs ``(a, b)`` are coupled (when given), else both are fixed with ``reason``."""
        self.deferred.append((src_fields, fields, reason, fallback))

    # ---- nodes -----------------------------------------------------------------------------------------------
    def _node(self, name, kind, module, op=None) -> Node:
        node = self.nodes.get(name)
        if node is None:
            node = Node(name=name, kind=kind, module=module, op=op or (type(module).__name__ if module is not None else kind))
            self.nodes[name] = node
        return node

    def _op_node(self, name) -> Node:
        self._op_counter[name] += 1
        k = self._op_counter[name]
        return self._node(f"{name}_{k}" if k > 1 else name, "op", None, op=name)

    def _link(self, call, node: Node) -> None:
        call.node = node
        for v in call.inputs:
            src = v.producer
            src_node = src.node if isinstance(src, op_rules.Call) else src
            if isinstance(src_node, Node) and src_node is not node:
                src_node.add_output(node)
                node.add_input(src_node)

    # ---- hooks -----------------------------------------------------------------------------------------------
    def _pre_hook(self, module, args, kwargs):
        if self.layer_depth == 0 and not self.in_tracer_code:
            self._pending = getattr(self, "_pending", [])
            self.in_tracer_code = True
            try:
                tensors = call_tensors(args, kwargs)
                self._pending.append((module, [self.value_of(t) for t in tensors]))
                self._plain_attributes(module, True)
            finally:
                self.in_tracer_code = False
        self.layer_depth += 1

    def _wrap_forward(self, module) -> "_ForwardWrap":
        """Run ``module``'s forward between :meth:`_pre_hook` and :meth:`_post_hook` through an instance attribute
        ``forward`` (a module without hooks takes ``nn.Module.__call__``'s fast path: the two hooks cost a tenth of
        the hook machinery). On meta stand-ins, torch's own conv / linear / norm layers skip their forward: their
        output comes from :func:`~.meta_shapes.layer_on_meta`, the shape their functional call would give. Returns
        the handle that puts the module's own ``forward`` back."""
        inner = module.forward
        before = module.__dict__.get("forward", _NO_FORWARD)

        def forward(*args, **kwargs):
            with torch._C.DisableTorchFunction():  # the tracer's code: tensor properties read without the mode
                self._pre_hook(module, args, kwargs)
                out = layer_on_meta(module, args, kwargs) if not self.in_tracer_code else None
            if out is None:
                out = inner(*args, **kwargs)
            self._post_hook(module, args, kwargs, out)
            return out

        module.__dict__["forward"] = forward
        return _ForwardWrap(module, forward, before)

    def _plain_attributes(self, module, plain: bool) -> None:
        """While a layer followed as one call runs (and its channel map reads it), its own int attributes are the
        plain originals: nothing inside the call is recorded, so their provenance is not needed there, and plain
        ints keep the layer's shape arithmetic cheap. ``plain=False`` puts the traced ones back."""
        swaps = self._layer_attributes.get(id(module))
        if swaps:
            d = module.__dict__
            for name, orig, traced in swaps:
                if plain and d.get(name) is traced:
                    d[name] = orig
                elif not plain and d.get(name) is orig:
                    d[name] = traced

    def _post_hook(self, module, args, kwargs, output):
        self.layer_depth -= 1
        if self.layer_depth != 0 or self.in_tracer_code:
            return None
        module_, in_values = self._pending.pop()
        self.in_tracer_code = True
        try:
            with torch._C.DisableTorchFunction():  # the label arithmetic below is not the model's: skip the mode
                self._record_layer(module, args, kwargs, output, in_values)
        except Exception as exc:
            self.on_internal_error(type(module).__name__, exc, None, None, None)
        finally:
            self._plain_attributes(module, False)
            self.in_tracer_code = False
        return None

    def _record_layer(self, module, args, kwargs, output, in_values) -> None:
        out_tensors = tensors_in(output)
        name = self.module_names.get(module, type(module).__name__)
        call = self._new_call(type(module).__name__, None, args, kwargs, in_values, out_tensors, module)
        try:
            self._link(call, self._node(name, "layer", module))
            self._apply_layer(module, name, call)
        finally:
            call.forget_arguments()

    def _apply_layer(self, module, name, call) -> None:
        x = call.inputs[0] if call.inputs else None
        family = None if isinstance(module, self.custom_types) else FAMILIES.family_of(module)
        channel_map = family.channel_map if family is not None and family.channel_map else custom_channel_map
        if x is None:
            self.context.unlabel(*call.outputs)
            return
        channel_map(self.context, module, name, call, x)

    # ---- calls -----------------------------------------------------------------------------------------------
    def on_call(self, func, name, args, kwargs, out) -> None:
        in_tensors = call_tensors(args, kwargs)
        out_tensors = tensors_in(out)
        if not out_tensors and name != "__setitem__":
            return
        owner = None
        if name in self.functional_layer_ops:
            for t in in_tensors[1:]:
                owner = self._functional_owner(name, t)
                if owner is not None:
                    break
        if owner is not None:
            in_values = [self.value_of(in_tensors[0])]
        else:
            in_values = [self.value_of(t) for t in in_tensors]
        call = self._new_call(name, func, args, kwargs, in_values, out_tensors)
        try:
            if owner is not None:
                mname = self.module_names.get(owner, type(owner).__name__)
                self._link(call, self._node(mname, "layer", owner))
                self._apply_layer(owner, mname, call)
                self.foreign_linear_bias(owner, call, args, kwargs)
            else:
                self._link(call, self._op_node(name))
                self.start_rule()
                op_rules.OP_RULES.get(name, op_rules.unknown)(self, call)
                self.check_attribute_uses(name, args, kwargs)
                if name == "__setitem__" and in_tensors:
                    # the written tensor now has a new value (same labels)
                    v = self._new_value(in_tensors[0], call)
                    v.fields = list(call.inputs[0].fields)
        finally:
            call.forget_arguments()

    def _functional_owner(self, name: str, t) -> Optional[nn.Module]:
        """The layer that ``F.<name>(x, t, ...)`` runs: of the layers holding ``t``, one whose family runs with that
        function (a weight tied between an embedding and a linear head: ``F.embedding`` is the embedding's call)."""
        users = self.param_users.get(id(t))
        if not users:
            return None
        for m in users:
            family = FAMILIES.family_of(m)
            if isinstance(m, self.custom_types) or (family is not None and name in family.functional_ops):
                return m
        return self.param_owner.get(id(t))

    def _new_call(self, name, func, args, kwargs, in_values, out_tensors, module=None) -> op_rules.Call:
        call = op_rules.Call(self.n_calls, name, func, args, kwargs, in_values, [], module)
        call.outputs = [self._new_value(t, call) for t in out_tensors]
        self.n_calls += 1
        return call

    def report_unknown(self, name: str) -> None:
        self.unknown_ops[name] += 1

    def on_internal_error(self, name, exc, args, kwargs, out) -> None:
        self.internal_errors.append(f"{name}: {type(exc).__name__}: {exc}")
        # be safe: every channel touching this op is frozen
        tensors = tensors_in((args, kwargs)) if args is not None else []
        for t in tensors:
            hit = self._by_id.get(id(t))
            if hit is not None and hit[0]() is t:
                for f in hit[1].fields:
                    self.couplings.fix(f, f"'{name}' could not be followed ({type(exc).__name__})")
        for t in tensors_in(out) if out is not None else []:
            hit = self._by_id.get(id(t))
            if hit is not None and hit[0]() is t:
                hit[1].fields = []

    # ---- the trace -------------------------------------------------------------------------------------------
    def use_meta_copies(self) -> list:
        """Meta-device stand-ins for every parameter and buffer (one per tensor, so tied weights stay tied),
        registered under the originals' identities. Returns ``(module, (its parameter dict, its buffer dict),
        (the same with stand-ins))`` per module that holds tensors: :meth:`swap` puts either pair in place."""
        made: Dict[int, torch.Tensor] = {}
        tables = [t for t in (self.param_owner, self.param_users, self.loose_params) if t]
        out = []
        for _, m in self.named_modules:
            params, buffers = m._parameters, m._buffers
            if not params and not buffers:
                continue
            metas = []
            for tensors, param in ((params, True), (buffers, False)):
                copies = {}
                for name, t in tensors.items():
                    if t is None:
                        copies[name] = None
                        continue
                    key = id(t)
                    meta = made.get(key)
                    if meta is None:
                        meta = made[key] = _meta_stand_in(t, param)
                        for table in tables:
                            if key in table:
                                table[id(meta)] = table[key]
                    copies[name] = meta
                metas.append(copies)
            out.append((m, (params, buffers), tuple(metas)))
        return out

    @staticmethod
    def swap(copies: list, meta: bool) -> None:
        """Put the stand-ins of :meth:`use_meta_copies` into the modules' own dicts (``meta=True``), or the
        modules' own dicts back (``meta=False``)."""
        for m, own, metas in copies:
            params, buffers = metas if meta else own
            m.__dict__["_parameters"] = params
            m.__dict__["_buffers"] = buffers

    def close(self) -> None:
        """Drop the record of the traced values (their calls and labels), which the graph does not need once built; the
        channel spaces, nodes, couplings and outputs stay. The tracer cannot record any more. (No tensor of the model's
        is kept by then: each call forgets its arguments as soon as its rule has run.) Each value forgets the call that
        made it: a call and its outputs refer to each other, so without that the record would wait for the cyclic
        garbage collector, whose next pass (right after the build) would then walk all of it."""
        for v in self.values.values():
            v.producer = None
        self.values, self._by_id, self._pending, self._consecutive = {}, {}, [], {}
        self.context = None

    def run(self, example_inputs, forward_fn: Optional[Callable] = None, output_transform: Optional[Callable] = None,
            meta: bool = False, keep_state: bool = True):
        """Trace one forward pass. With ``meta=True`` nothing is computed: parameters, buffers and inputs are
        replaced by meta-device stand-ins for the duration of the call, so only shapes flow (raises on
        data-dependent code; the caller then traces for real). ``keep_state=False``: no :func:`kept_state` around the
        pass, for a caller that puts every module back itself (``build.trace_model`` snapshots them all around a meta
        trace)."""
        model = self.model
        self.meta = meta
        user_forward = forward_fn
        if meta:
            copies = self.use_meta_copies()
            example_inputs = to_meta(example_inputs)

            def forward_fn(m, inputs):
                self.swap(copies, True)
                try:
                    return call_model(m, inputs, user_forward, retry=False)
                finally:
                    self.swap(copies, False)

        handles = []
        if meta:  # no hook of the user's (see build.trace_model): each layer's forward is wrapped instead
            handles = [self._wrap_forward(m) for m in self.layers]
        else:
            for m in self.layers:
                handles.append(m.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
                handles.append(m.register_forward_hook(self._post_hook, with_kwargs=True))
        self._pending = []
        self._layer_attributes = {}  # id(layer) -> its tracked int attributes (see _plain_attributes)
        inputs = tensors_in(example_inputs)
        try:
            kept = kept_state(model, values=not meta, modules=[m for _, m in self.named_modules]) if keep_state \
                else contextlib.nullcontext()
            with torch.no_grad(), kept:
                for k, t in enumerate(inputs):
                    v = self._new_value(t)
                    v.producer = self._node(f"input_{k}" if len(inputs) > 1 else "input", "input", None, op="input")
                with AttributeTracking(model, self.named_modules) as tracking, TracingMode(self):
                    self._layer_attributes = tracking.installed_on(self.layers)
                    out = call_model(model, example_inputs, forward_fn, retry=False)
                if output_transform is not None:
                    out = output_transform(out)
        except Exception as exc:
            raise TracingError(
                f"the model failed to run on the example inputs ({type(exc).__name__}: {exc}). "
                f"Check that example_inputs has the shape, dtype and device the model expects ({CALL_CONVENTION}), "
                "or pass forward_fn=lambda model, inputs: ..."
            ) from exc
        finally:
            for h in handles:
                h.remove()
            self.in_tracer_code = False
            self.layer_depth = 0
        self.apply_held_attributes()
        paths: list = []
        outs = tensors_in(without_caches(out), paths=paths)
        if not outs:
            raise TracingError("the model returned no tensor; pass output_transform= to pick the outputs")
        out_node = self._node("output", "output", None, op="output")
        # (name, shape, label fields) of every output tensor: what an explicit pruning of output channels changes
        self.outputs = []
        for k, t in enumerate(outs):
            v = self.value_of(t)
            src = v.producer.node if isinstance(v.producer, op_rules.Call) else v.producer
            if isinstance(src, Node):
                src.add_output(out_node)
                out_node.add_input(src)
            self.outputs.append((f"output{paths[k]}", tuple(t.shape), list(v.fields)))
            for f in v.fields:
                self.couplings.fix(f, OUTPUT_REASON)
        if self.unknown_ops:
            names = ", ".join(f"{n} (x{c})" for n, c in sorted(self.unknown_ops.items()))
            warnings.warn(
                f"prune_explorer: operations not understood by the dependency graph: {names}. Channels that pass "
                "through them are kept fixed (never pruned), so the model stays valid. Please report the op name.",
                stacklevel=3,
            )
        return out


_NO_FORWARD = object()


class _ForwardWrap:
    """Handle of :meth:`Tracer._wrap_forward`: ``remove()`` puts the module's own ``forward`` back."""

    __slots__ = ("module", "wrapper", "before")

    def __init__(self, module, wrapper, before):
        self.module, self.wrapper, self.before = module, wrapper, before

    def remove(self) -> None:
        d = self.module.__dict__
        if d.get("forward") is self.wrapper:
            if self.before is _NO_FORWARD:
                del d["forward"]
            else:
                d["forward"] = self.before


class TracingMode(TorchFunctionMode):
    """Hands every torch call the model makes to the tracer (calls inside a hooked layer, and the tracer's own,
    just run; on meta stand-ins the common ones get their output shape from :mod:`.meta_shapes`)."""

    def __init__(self, tracer: Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tr = self.tracer
        if tr.in_tracer_code or tr.layer_depth:
            if tr.meta and not tr.in_tracer_code:
                out = fast_meta(func, op_name(func), args, kwargs)
                if out is not None:
                    return out
            elif not tr.in_tracer_code:
                check_meta_dtypes(op_name(func), args, kwargs)  # a model built on meta, traced as it is
            return func(*args, **kwargs)
        name = op_name(func)
        if name in ("size", "shape"):
            out = func(*args, **kwargs)
            return tr.traced_size(args[0], out, args[1:] if len(args) > 1 else kwargs.get("dim"))
        if name in ("numel", "nelement") and len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].ndim:
            # the product of the traced sizes (Swin V2: ``length = qkv_bias.numel() // 3`` slices a bias by thirds)
            sizes = tr.traced_size(args[0], args[0].shape, None)
            out = sizes[0]
            for s in sizes[1:]:
                out = out * s
            return out
        if tr.meta:
            out = fast_meta(func, name, args, kwargs)  # (which checks the dtypes first)
        else:
            check_meta_dtypes(name, args, kwargs)
            out = None
        if out is None:
            out = func(*args, **kwargs)
        tr.in_tracer_code = True
        try:
            tr.on_call(func, name, args, kwargs, out)
        except Exception as exc:  # never break the user's forward pass because of a tracer bug
            tr.on_internal_error(name, exc, args, kwargs, out)
        finally:
            tr.in_tracer_code = False
        return out
