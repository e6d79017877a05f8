"""Integer attributes the model's forward reads as sizes: traced while tracing, rewritten after pruning.

Models keep many sizes in attributes: torchvision's ViT reshapes with ``self.hidden_dim``, timm's attention with
``self.num_heads`` / ``self.head_dim``, Hugging Face models with ``self.head_dim`` or ``self.config.hidden_size``.
A size written that way is not a literal: it can follow the pruning, provided the attribute holds the new size
afterwards. So, for the duration of a trace, :class:`AttributeTracking` replaces every plain ``int`` attribute of
every module, and of the config objects modules hold (a Hugging Face ``PretrainedConfig``, a dataclass, a
``SimpleNamespace``), by a :class:`~.traced_int.TracedInt` that remembers its :class:`AttributeRef`; the originals
are put back afterwards (the very same objects), whatever happens. Ints captured in closures or written as literals
stay plain ints.

When the model's code uses such an int in a size (``view`` / ``reshape`` / ``expand`` / ``split`` /
``unflatten`` / ``torch.zeros``...), the tracer gives the attribute a hidden channel space, :class:`AttributeSize`
(``scale * value`` positions, for a size ``scale * attribute``), coupled position by position with the channels
that size counts. The union-find then treats the attribute like any other member of the group: pruning ``k`` of
its positions sets the attribute to ``value - k / scale``. An attribute used where its size can never change (a
dim that carries no channel, or one that the group structure keeps whole) has its space fixed, which keeps every
channel it was coupled with fixed too, with a reason naming the attribute.

Example::

    >>> import torch.nn as nn
    >>> m = nn.Module(); m.hidden_dim = 8
    >>> with AttributeTracking(m) as tracking:
    ...     v = m.hidden_dim
    ...     type(v).__name__, v.attrs == {tracking.refs[0]}, tracking.refs[0].label
    ('TracedInt', True, 'hidden_dim')
    >>> type(m.hidden_dim)
    <class 'int'>
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import types
import weakref
from fractions import Fraction
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from ...errors import PruningError
from .traced_int import TracedInt

__all__ = ["AttributeRef", "AttributeSize", "AttributeTracking", "config_like", "own_configs", "ATTRIBUTE_PRUNER"]

#: the config objects :func:`own_configs` made (by id, weakly): a model's own, never copied again
_OWNED_CONFIGS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


class AttributeRef:
    """The integer attribute ``name`` of ``obj`` (a module, or a config object a module holds), or entry ``index``
    of a tuple / list attribute of ints (timm's ``self.shape = (dim, 1, 1)``).

    ``module_path``: the qualified name of the module that holds it (``""`` for the model), ``via``: the attribute
    of that module holding the config (``"config"``) or None for the module's own attribute. Hashed by identity.
    """

    __slots__ = ("obj", "name", "value", "module_path", "via", "index", "__weakref__")

    def __init__(self, obj: Any, name: str, value: int, module_path: str, via: Optional[str],
                 index: Optional[int] = None):
        self.obj, self.name, self.value, self.module_path, self.via = obj, name, int(value), module_path, via
        self.index = index

    @property
    def label(self) -> str:
        """``encoder.layers.0.self_attn.head_dim``, ``config.hidden_size``, ``stages.0.scale.shape[0]``."""
        parts = [p for p in (self.module_path, self.via, self.name) if p]
        return ".".join(parts) + ("" if self.index is None else f"[{self.index}]")

    def get(self) -> int:
        v = self.obj.__dict__[self.name]
        return int(v if self.index is None else v[self.index])

    def set(self, value: int) -> None:
        # straight into the instance dict: a config's __setattr__ may map or validate names, a module's is not
        # needed for a plain int
        d = self.obj.__dict__
        if self.index is None:
            d[self.name] = int(value)
        else:
            seq = list(d[self.name])
            seq[self.index] = int(value)
            d[self.name] = type(d[self.name])(seq)

    def as_dict(self) -> dict:
        """JSON-able address of the attribute (what a pruning history records)."""
        d = {"module": self.module_path, "via": self.via, "attr": self.name}
        if self.index is not None:
            d["index"] = self.index
        return d

    def __repr__(self) -> str:
        return f"AttributeRef({self.label}={self.value})"


class AttributeSize:
    """Owner of the hidden channel space of an attribute used as the size ``scale * attribute``: its
    ``scale * value`` positions are the channels that size counts (``scale`` a positive
    :class:`~fractions.Fraction`)."""

    __slots__ = ("ref", "scale")

    def __init__(self, ref: AttributeRef, scale: Fraction):
        self.ref, self.scale = ref, Fraction(scale)

    @property
    def size(self) -> int:
        return int(self.ref.value * self.scale)

    @property
    def label(self) -> str:
        s = "" if self.scale == 1 else f" * {self.scale}"
        return f"{self.ref.label}{s}"

    def value_after(self, positions_left: int) -> Optional[int]:
        """The attribute value that sizes ``positions_left`` positions (None when not a whole number)."""
        v = Fraction(positions_left) / self.scale
        return int(v) if v.denominator == 1 else None

    def __repr__(self) -> str:
        return f"AttributeSize({self.label})"


class AttributePruner:
    """The pruning function of an :class:`AttributeSize` space: it has ``size`` channels and loses positions as the
    group that holds them is pruned (the attribute itself is written by the graph, see
    :meth:`~prune_explorer.DependencyGraph.prune_group`)."""

    def get_out_channels(self, owner: AttributeSize) -> int:
        return owner.size

    def get_in_channels(self, owner: AttributeSize) -> int:
        return owner.size

    def in_out_coupled(self, owner) -> bool:
        return True

    def channel_multiple(self, owner: AttributeSize, side) -> int:
        s = owner.scale
        return s.numerator if s.denominator == 1 else 1

    def prune_out_channels(self, owner: AttributeSize, idxs: Sequence[int]) -> AttributeSize:
        return owner

    prune_in_channels = prune_out_channels

    def __repr__(self) -> str:
        return "AttributePruner()"


ATTRIBUTE_PRUNER = AttributePruner()


def prune_attribute(owner: AttributeSize, idxs: Sequence[int]) -> AttributeSize:  # the handler's name in records
    return owner


# ----------------------------------------------------------------------------------------------------------------------
# tracking
# ----------------------------------------------------------------------------------------------------------------------
def config_like(v: Any) -> bool:
    """A configuration object whose int fields a forward may read as sizes: a Hugging Face ``PretrainedConfig``
    (duck-typed: ``to_dict`` and ``model_type``), a dataclass instance or a ``SimpleNamespace``."""
    if v is None or isinstance(v, (nn.Module, type, int, float, str, bytes, tuple, list, dict, set)):
        return False
    if not hasattr(v, "__dict__"):
        return False
    if isinstance(v, types.SimpleNamespace):
        return True
    if dataclasses.is_dataclass(v):
        return True
    return callable(getattr(v, "to_dict", None)) and hasattr(v, "model_type")


def own_configs(model: nn.Module, modules: Optional[Sequence[nn.Module]] = None) -> int:
    """Give ``model`` config objects of its own: every config a module holds (:func:`config_like`) is replaced, in
    every module that holds it, by one deep copy (nested configs such as ``config.text_config`` stay the same objects
    as the modules that hold them see them). Returns the number of configs copied.

    Pruning rewrites the int fields the forward reads (``config.hidden_size``...) and, on a Hugging Face model, the
    config's widths. A config is often shared: ``cfg = LlamaConfig(...); meta = LlamaForCausalLM(cfg)`` keeps ``cfg``
    itself as ``meta.config``, so pruning ``meta`` would rewrite the caller's ``cfg`` and every other model built from
    it (a real model built from ``cfg`` afterwards comes out already narrow, and a plan made on ``meta`` does not
    fit it). Called once per model by :meth:`~prune_explorer.DependencyGraph.build_dependency` before tracing;
    configs made here are never copied again (so every graph on the model refers to the same objects). A config
    that cannot be deep-copied stays shared. ``modules``: ``list(model.modules())`` when the caller has it."""
    held: Dict[int, Any] = {}
    modules = list(model.modules()) if modules is None else modules
    for m in modules:
        values = m.__dict__.values()
        if _NOT_CONFIGS.issuperset(map(type, values)):  # (the usual module: one pass in C)
            continue
        for v in values:
            if type(v) in _NOT_CONFIGS:
                continue
            if config_like(v) and _OWNED_CONFIGS.get(id(v)) is not v:
                held[id(v)] = v
    if not held:
        return 0
    memo: Dict[int, Any] = {}
    for v in held.values():
        try:
            copy.deepcopy(v, memo)
        except Exception:  # noqa: BLE001 - an exotic object in the config: keep sharing it
            memo.pop(id(v), None)
    copies = {i: memo[i] for i in held if i in memo}
    for m in modules:
        for k, v in list(m.__dict__.items()):
            new = copies.get(id(v))
            if new is not None and config_like(v):
                m.__dict__[k] = new
    for new in copies.values():
        try:
            _OWNED_CONFIGS[id(new)] = new
        except TypeError:  # not weak-referenceable: it would be copied again by the next graph (harmless copy)
            pass
    return len(copies)


def _plain_int(v) -> bool:
    return type(v) is int


def _int_sequence(v) -> bool:
    """A short tuple / list of plain ints (``self.shape = (dim, 1, 1)``, ``kernel_size``)."""
    return type(v) in (tuple, list) and 0 < len(v) <= 8 and all(type(e) is int for e in v)


#: the spatial hyper-parameters of torch's convolution and pooling layers: they count no channels (a channel size
#: is never made of them), so they are not tracked; their layers' forwards read them on every call, and plain ints
#: keep the traced shape arithmetic cheap
_SPATIAL_ATTRS = frozenset(("kernel_size", "stride", "padding", "dilation", "output_padding"))
_SPATIAL_LAYERS = (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd,
                   nn.modules.pooling._LPPoolNd, nn.modules.pooling._MaxUnpoolNd)
#: types of a module attribute that is never an int size nor a config (skipped without further checks)
_NEVER_SIZES = frozenset((bool, float, str, type(None), dict, set, collections.OrderedDict, torch.Tensor,
                          nn.Parameter))
#: types of a module attribute that is never a config (:func:`config_like` is False for each)
_NOT_CONFIGS = _NEVER_SIZES | {int, tuple, list}


class AttributeTracking:
    """Context manager: every plain int attribute of ``model``'s modules and of the configs they hold reads as a
    :class:`~.traced_int.TracedInt` inside the block (see the module docstring). ``refs`` lists the attributes
    (one :class:`AttributeRef` each). On exit the original ints are put back, and any ``TracedInt`` the forward
    stored on a module or config (a cached size) becomes a plain int. ``named_modules``: ``model.named_modules()``
    when the caller already has it."""

    def __init__(self, model: nn.Module, named_modules: Optional[Sequence[Tuple[str, nn.Module]]] = None):
        self.model = model
        self.refs: List[AttributeRef] = []
        self._sequences: List[tuple] = []  # (obj, name, original tuple / list, one AttributeRef per entry)
        self._holders: List[Any] = []  # objects whose __dict__ we touched (modules and configs)
        seen_cfg: Dict[int, str] = {}
        for mpath, m in (model.named_modules() if named_modules is None else named_modules):
            self._holders.append(m)
            if _NEVER_SIZES.issuperset(map(type, m.__dict__.values())):  # (containers, activations: no set built)
                continue
            spatial = _SPATIAL_ATTRS if isinstance(m, _SPATIAL_LAYERS) else ()
            for k, v in [kv for kv in m.__dict__.items() if type(kv[1]) not in _NEVER_SIZES]:
                t = type(v)
                if k in spatial:
                    continue
                if t is int:  # (_plain_int)
                    if not k.startswith("__"):
                        self.refs.append(AttributeRef(m, k, v, mpath, None))
                elif t is tuple or t is list:  # never a config
                    if not k.startswith("_") and _int_sequence(v):
                        self._sequences.append((m, k, v, [AttributeRef(m, k, e, mpath, None, i)
                                                          for i, e in enumerate(v)]))
                elif config_like(v) and id(v) not in seen_cfg:
                    seen_cfg[id(v)] = mpath
                    self._holders.append(v)
                    for ck, cv in list(vars(v).items()):
                        if _plain_int(cv) and not ck.startswith("__"):
                            self.refs.append(AttributeRef(v, ck, cv, mpath, k))
        for _, _, _, entries in self._sequences:
            self.refs.extend(entries)
        self._installed: List[Tuple[Any, str, Any, Any]] = []  # (obj, name, original, installed)

    def __enter__(self) -> "AttributeTracking":
        try:
            for ref in self.refs:
                if ref.index is not None:
                    continue
                t = TracedInt.of_attribute(ref.value, ref)
                ref.obj.__dict__[ref.name] = t
                self._installed.append((ref.obj, ref.name, ref.value, t))
            for obj, name, orig, entries in self._sequences:
                t = type(orig)(TracedInt.of_attribute(r.value, r) for r in entries)
                obj.__dict__[name] = t
                self._installed.append((obj, name, orig, t))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, *exc) -> bool:
        self._restore()
        return False

    def installed_on(self, objs) -> Dict[int, List[Tuple[str, Any, Any]]]:
        """``id(obj) -> [(name, original, installed)]`` for the attributes installed on each of ``objs`` (the
        tracer puts the originals back while a layer it follows as one call runs, see ``Tracer._pre_hook``)."""
        wanted = {id(o) for o in objs}
        out: Dict[int, List[Tuple[str, Any, Any]]] = {}
        for obj, name, orig, t in self._installed:
            if id(obj) in wanted:
                out.setdefault(id(obj), []).append((name, orig, t))
        return out

    def _restore(self) -> None:
        for obj, name, orig, t in reversed(self._installed):
            d = obj.__dict__
            if d.get(name) is t:
                d[name] = orig
        self._installed = []
        for holder in self._holders:  # sizes the forward cached on a module or config
            d = holder.__dict__
            if _NOT_TRACED.issuperset(map(type, d.values())):  # (most holders: no set built)
                continue
            types_held = set(map(type, d.values())) - _NOT_TRACED
            if not types_held or not any(issubclass(t, TracedInt) for t in types_held):
                _NOT_TRACED.update(types_held)
                continue
            for k, v in list(d.items()):
                if isinstance(v, TracedInt):
                    d[k] = int(v)


#: value types seen in a holder's dict that are not :class:`~.traced_int.TracedInt` (no value of theirs is one)
_NOT_TRACED: set = set()


def resolve_attribute(model: nn.Module, address: dict) -> Tuple[Any, str]:
    """``(object, attribute name)`` for an address written by :meth:`AttributeRef.as_dict` (history replay)."""
    try:
        module = model.get_submodule(address.get("module") or "")
    except AttributeError:
        raise PruningError(f"the history names module {address.get('module')!r}, which {type(model).__name__} does "
                           "not have") from None
    obj = module
    via = address.get("via")
    if via:
        obj = module.__dict__.get(via, getattr(module, via, None))
        if obj is None:
            raise PruningError(f"the history names {address.get('module')}.{via}, which does not exist")
    name = address.get("attr")
    v = obj.__dict__.get(name) if hasattr(obj, "__dict__") else None
    index = address.get("index")
    if index is not None:
        v = v[index] if isinstance(v, (tuple, list)) and isinstance(index, int) and -len(v) <= index < len(v) else None
    if not isinstance(v, int) or isinstance(v, bool):
        raise PruningError(f"the history names the integer attribute {address}, which this model does not have")
    return obj, name, index
