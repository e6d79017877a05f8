"""The post-prune check sized to what changed: the outputs of unchanged blocks remembered from one shape-only run to
the next.

A shape-only run (:func:`~.post_check.run_error`) computes nothing but shapes, and a module's output shape is decided
by its inputs and its own state: its parameters and buffers, its attributes (sizes kept as ints, configs), the same
for its submodules. The explorer checks the model after every accepted group, and a group changes one block or two:
the other blocks get the same inputs with the same state as in the previous check, so their outputs are known.
:class:`BlockMemo` gives each module of the model (every one without a shape rule of its own) a ``forward`` that
answers from the previous run when

* the call's inputs match a remembered call: tensors of the same type, device kind, shape, strides and dtype (and,
  for the real integer data an :class:`~.post_check.IndexDataMode` run keeps, the same values); ``None``, numbers,
  strings and other immutable values equal; lists, tuples and dicts of those;
* every module of its subtree has the very same parameters and buffers (the run's meta stand-ins: a tensor cut or
  reshaped gets a new one), the same submodules and the same attributes (compared by identity; lists, dicts and
  sets by value);
* every other object those attributes hold with attributes of its own (a config, and the objects in its attributes)
  has the same attributes as then (same comparison);

and otherwise runs the module's own ``forward`` and remembers the call if its output is made of plain tensors, lists,
tuples, dicts and immutable values, and the call left its tensor inputs as they were. A remembered output is given
back as new tensors of the same shapes (meta) or values (the real integer data). A call that raised is never
remembered, so a block that fails keeps failing. Nothing is remembered for a run on real data.

What it saves: the check after accepting one group of a 6-layer Llama runs the changed layer and the model's own code
around the layers; the other five layers answer from the memo. What it costs: comparing every module's dicts with
the previous run's (identity, in C) and each remembered call's inputs; the post-prune check uses it from its second
run on (:class:`~.post_check.PostPruneCheck`), so a model checked once (one pruning step) pays nothing. It answers
for what a module's code reads from its inputs, its subtree and the objects those hold; a forward pass that reads a
size from elsewhere (a global, a parent module) could be answered wrongly: none known.

>>> import torch, torch.nn as nn
>>> from prune_explorer.pruner.post_check import run_error, StandIns
>>> model = nn.Sequential(nn.Sequential(nn.Linear(4, 8), nn.ReLU()), nn.Sequential(nn.Linear(8, 2)))
>>> memo, stand_ins, x = BlockMemo(), StandIns(), torch.randn(1, 4)
>>> run_error(model, x, memo=memo, stand_ins=stand_ins), memo.hits
(None, 0)
>>> run_error(model, x, memo=memo, stand_ins=stand_ins), memo.hits   # nothing changed: the model answers
(None, 1)
>>> model[1][0] = nn.Linear(7, 2)        # the second block changed: the first one answers, the second one fails
>>> run_error(model, x, memo=memo, stand_ins=stand_ins)[:12], memo.hits
('RuntimeError', 2)
"""

from __future__ import annotations

import types
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn

from ..graph.edit.snapshot import lists_copied
from ..inputs import flatten, unflatten

__all__ = ["BlockMemo"]

#: calls remembered per module (a block applied several times in one forward pass, with different inputs)
_CALLS_PER_MODULE = 4
#: real (integer) tensors larger than this are not remembered
_MAX_REAL_ELEMENTS = 1 << 16
_IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, torch.dtype, torch.device, torch.Size,
              torch.memory_format, torch.layout, type(Ellipsis), slice, range)
_CONTAINERS = (nn.ModuleList, nn.ModuleDict, nn.ParameterList, nn.ParameterDict)
_NOT_OBJECTS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, type, types.ModuleType)
_NO = object()  # a value a call cannot be remembered with


# ---- inputs and outputs ------------------------------------------------------------------------------------------
def _leaf_token(value: Any):
    """What a call argument that is not a container says for a shape-only run: a tensor's type, device kind, shape,
    strides, dtype and ``requires_grad``, any other immutable value itself; :data:`_NO` for a value that cannot be
    remembered (another object, a float tensor off the meta device, a big integer tensor)."""
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, nn.Parameter) or value.layout is not torch.strided:
            return _NO
        if value.device.type != "meta" and (value.dtype.is_floating_point or value.dtype.is_complex
                                            or value.numel() > _MAX_REAL_ELEMENTS):
            return _NO
        return (type(value), value.device.type, value.shape, value.stride(), value.dtype, value.requires_grad)
    if isinstance(value, _IMMUTABLE):
        return (type(value), value)
    return _NO


class _Signature:
    """What a call's arguments are, as far as a shape-only run can tell: ``tokens``, their structure (plain tuples,
    lists and dicts, :func:`~prune_explorer.inputs.flatten`) and each leaf's :func:`_leaf_token`, and ``reals``, the
    real (integer) tensors, whose values count. ``ok`` is False for arguments that cannot be remembered."""

    __slots__ = ("tokens", "reals", "versions", "ok")

    def __init__(self, args, kwargs):
        leaves, spec = flatten((args, kwargs), plain_only=True)
        self.tokens = [spec] + [_leaf_token(v) for v in leaves]
        self.ok = not any(t is _NO for t in self.tokens)
        self.reals = [v for v in leaves if isinstance(v, torch.Tensor) and v.device.type != "meta"] if self.ok else []
        self.versions = [t._version for t in self.reals]  # to tell a call that wrote into its inputs

    def untouched(self) -> bool:
        """Whether no real input was written in place since (its ``_version``)."""
        return all(t._version == v for t, v in zip(self.reals, self.versions))

    def kept(self) -> "_Signature":
        """This signature with copies of the real tensors (to be compared with later calls)."""
        self.reals = [t.clone() for t in self.reals]
        self.versions = []
        return self

    def same(self, other: "_Signature") -> bool:
        return (self.tokens == other.tokens and len(self.reals) == len(other.reals)
                and all(map(torch.equal, self.reals, other.reals)))


def _template(out: Any) -> Any:
    """How to give ``out`` back (:func:`_replay`): its structure (plain tuples, lists and dicts) and each leaf (a meta
    tensor's shape, strides and dtype, a real integer tensor's copy, an immutable value), or :data:`_NO`."""
    leaves, spec = flatten(out, plain_only=True)
    kept = []
    for v in leaves:
        if isinstance(v, torch.Tensor):
            if type(v) is not torch.Tensor or v.layout is not torch.strided:
                return _NO
            if v.device.type == "meta":
                kept.append(("meta", tuple(v.shape), v.stride(), v.dtype))
            elif v.dtype.is_floating_point or v.dtype.is_complex or v.numel() > _MAX_REAL_ELEMENTS:
                return _NO
            else:
                kept.append(("real", v.clone()))
        elif isinstance(v, _IMMUTABLE):
            kept.append(("value", v))
        else:
            return _NO
    return spec, kept


def _replay(tpl: Any) -> Any:
    spec, kept = tpl
    return unflatten([torch.empty_strided(k[1], k[2], dtype=k[3], device="meta") if k[0] == "meta" else
                      k[1].clone() if k[0] == "real" else k[1] for k in kept], spec)


# ---- what a module's output shape depends on ---------------------------------------------------------------------
def _own_attrs(attrs: dict) -> dict:
    """A module's snapshotted attribute dict without its parameter and buffer dicts (their stand-ins are compared)."""
    a = attrs.copy()
    a.pop("_parameters", None)
    a.pop("_buffers", None)
    return a


def _equal(a: dict, b: dict) -> bool:
    """``a == b`` (values compared by identity first, in C); values that do not compare (tensors) differ."""
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - a value whose == gives no truth value (a tensor): not the same
        return False


#: type -> whether its instances may be objects held for their attributes (not modules, tensors, dicts, functions,
#: classes or immutable values)
_OBJECT_TYPES: Dict[type, bool] = {}


def _held_objects(values, found: Dict[int, Any], depth: int) -> None:
    """The objects with attributes of their own (a config, ...) among ``values``, and those among theirs, ``depth``
    levels down."""
    kinds = _OBJECT_TYPES
    for v in values:
        t = type(v)
        kind = kinds.get(t)
        if kind is None:
            kind = kinds[t] = not issubclass(t, (nn.Module, torch.Tensor, dict) + _NOT_OBJECTS + _IMMUTABLE)
        if not kind:
            continue
        d = getattr(v, "__dict__", None)
        if type(d) is dict and id(v) not in found:
            found[id(v)] = v
            if depth > 1:
                _held_objects(list(d.values()), found, depth - 1)


def _copy_attrs(d: dict) -> dict:
    """``d`` with its lists, dicts and sets copied (so that == later sees changes made in place)."""
    return {k: (type(v)(v) if type(v) in (list, dict, set) else v) for k, v in d.items()}


class _Call:
    """One remembered call of a module: its inputs, its subtree's token then, its output."""

    __slots__ = ("args", "token", "output")

    def __init__(self, args, token: int, output):
        self.args, self.token, self.output = args, token, output


class BlockMemo:
    """Outputs of unchanged modules remembered across shape-only runs of one model (see the module docstring).

    Each run, :meth:`install` compares every module's own state (attributes, parameter and buffer stand-ins, the
    objects it holds) with the previous run's and gives a module that changed, or is new, a new *version*; a module's
    subtree gets a new *token* when its version, or a submodule's token, or its submodules, changed. A remembered
    call holds the token and answers while it is the same. ``hits`` / ``runs``: module calls answered from the memo /
    run."""

    def __init__(self):
        self._calls: Dict[int, List[_Call]] = {}  # id(module) -> calls remembered
        self._structure: Optional[Tuple[int, ...]] = None  # ids of the model's modules in order, last run
        #: id(module) -> (module, attributes, parameter stand-ins, buffer stand-ins, held objects, version)
        self._states: Dict[int, tuple] = {}
        self._objects: Dict[int, tuple] = {}  # id(object) -> (object, attribute copy, version)
        self._subtrees: Dict[int, tuple] = {}  # id(module) -> (its version, its submodules' tokens, token)
        self._versions: Dict[int, int] = {}  # per run: id(module) -> its version
        self._tokens: Dict[int, int] = {}  # per run: id(module) -> its subtree's token
        self._counter = 0
        self.hits = 0
        self.runs = 0

    def _new_version(self) -> int:
        self._counter += 1
        return self._counter

    def install(self, state, skip: Callable[[nn.Module], bool]) -> None:
        """Version every module of ``state`` (``lend_modules([model])`` of the run: the modules' own dicts, as they
        were before the stand-ins were swapped into the working copies the modules now hold) and give each one that
        is not a container and not ``skip(m)`` (it has a shape rule) a remembering ``forward`` in its working
        ``__dict__`` (gone when the run returns the modules' own dicts)."""
        structure = tuple(map(id, [e[0] for e in state]))
        if structure != self._structure:
            self._structure = structure
            live = set(structure)
            self._calls = {k: v for k, v in self._calls.items() if k in live}
            self._states = {k: v for k, v in self._states.items() if k in live}
            self._subtrees = {k: v for k, v in self._subtrees.items() if k in live}
        changed_objects = self._version_objects()
        modules, versions = self._states, {}
        for m, attrs, _params, _buffers in state:
            own, params, buffers = _own_attrs(attrs), m._parameters, m._buffers
            prev = modules.get(id(m))
            if (prev is not None and prev[0] is m and _equal(prev[2], params) and _equal(prev[3], buffers)
                    and _equal(prev[1], own) and not (changed_objects and any(id(o) in changed_objects
                                                                              for o in prev[4]))):
                versions[id(m)] = prev[5]
                continue
            found: Dict[int, Any] = {}
            _held_objects(list(own.values()), found, 2)
            for o in found.values():
                if id(o) not in self._objects:
                    self._objects[id(o)] = (o, _copy_attrs(o.__dict__), self._new_version())
            v = versions[id(m)] = self._new_version()
            # (lists copied: ``own`` holds the module's own lists, which the model may change in place)
            modules[id(m)] = (m, lists_copied(own), params, buffers, list(found.values()), v)
        self._versions = versions
        self._tokens = {}
        for m, _attrs, _params, _buffers in state:
            if not isinstance(m, _CONTAINERS) and not skip(m):
                m.__dict__["forward"] = self._remembering(m, m.__dict__.get("forward") or
                                                          types.MethodType(type(m).forward, m))

    def _version_objects(self) -> set:
        """New versions for the held objects (configs) whose attributes changed since the last run; their ids."""
        changed = set()
        for k, (o, attrs, _v) in list(self._objects.items()):
            if not _equal(attrs, o.__dict__):
                self._objects[k] = (o, _copy_attrs(o.__dict__), self._new_version())
                changed.add(k)
        return changed

    def _token(self, m: nn.Module) -> int:
        """``m``'s subtree token this run (the previous run's while ``m``'s version and its submodules' tokens are
        the same)."""
        key = id(m)
        token = self._tokens.get(key)
        if token is None:
            kids = tuple(self._token(c) for c in m._modules.values() if c is not None)
            version = self._versions[key]
            prev = self._subtrees.get(key)
            if prev is not None and prev[0] == version and prev[1] == kids:
                token = prev[2]
            else:
                token = self._new_version()
                self._subtrees[key] = (version, kids, token)
            self._tokens[key] = token
        return token

    def _remembering(self, module: nn.Module, forward: Callable) -> Callable:
        key = id(module)

        def remembering_forward(*args, **kwargs):
            with torch._C.DisableTorchFunction():
                sig = _Signature(args, kwargs)
                if sig.ok:
                    token = self._token(module)
                    for call in self._calls.get(key, ()):
                        if call.token == token and call.args.same(sig):
                            self.hits += 1
                            return _replay(call.output)
            self.runs += 1
            out = forward(*args, **kwargs)
            if sig.ok:
                with torch._C.DisableTorchFunction():
                    tpl = _template(out)
                    if tpl is not _NO and sig.untouched() and sig.tokens == _Signature(args, kwargs).tokens:
                        calls = self._calls.setdefault(key, [])
                        calls.insert(0, _Call(sig.kept(), token, tpl))
                        del calls[_CALLS_PER_MODULE:]
            return out

        return remembering_forward
