"""Saving and loading pruned models safely: a JSON-able history plus a state dict, never pickled code.

A pruned model has a different architecture from the one its code builds, so Torch-Pruning users save the whole
model with ``torch.save(model)`` and must load it with ``weights_only=False``, which runs arbitrary code from the
file. Here the file holds only plain data:

* ``history``: what was pruned, in order (qualified module names, pruning function names, channel indices), the
  record every :class:`~prune_explorer.DependencyGraph` keeps on the model it prunes;
* ``state_dict``: the pruned weights.

:func:`load_pruned` replays the history on a freshly constructed model (same class and constructor arguments), then
loads the weights with ``torch.load(weights_only=True)``. A file that does not match the model (unknown module,
index out of range, wrong pruning function) is refused with a clear error and the model is left untouched.

Example::

    >>> import os, tempfile, torch, torchvision, prune_explorer as pe
    >>> model = torchvision.models.resnet18()
    >>> pruner = pe.pruner.MagnitudePruner(model, torch.randn(1, 3, 224, 224), pe.importance.MagnitudeImportance())
    >>> pruner.step()
    >>> folder = tempfile.TemporaryDirectory()
    >>> pe.save_pruned(model, os.path.join(folder.name, "resnet18_pruned.pt"))
    >>> restored = pe.load_pruned(torchvision.models.resnet18(), os.path.join(folder.name, "resnet18_pruned.pt"))
    >>> restored.layer1[0].conv1.out_channels == model.layer1[0].conv1.out_channels < 64
    True
    >>> folder.cleanup()
"""

from __future__ import annotations

import copy
import os
from typing import List, Union

import torch
import torch.nn as nn

from . import layers
from .errors import PruningError
from .graph.trace.attributes import resolve_attribute
from .graph.edit.records import HISTORY_ATTR, model_history
from .graph.edit.snapshot import restore_modules, snapshot_modules
from .validation import check_indices

FORMAT = "prune_explorer.pruned/1"

__all__ = ["save_pruned", "load_pruned", "pruned_state", "load_pruned_state", "module_attributes", "apply_history",
           "pruning_history", "FORMAT"]


def pruning_history(model: nn.Module) -> List[dict]:
    """A deep copy of the JSON-able pruning history recorded on ``model`` (empty if never pruned)."""
    return copy.deepcopy(model_history(model))


def pruned_state(model: nn.Module) -> dict:
    """Everything needed to rebuild ``model`` as it is now, as plain data (what :func:`save_pruned` writes)::

        {"format": FORMAT, "model_class": "module.Class", "history": [...], "state_dict": {name: tensor},
         "attributes": {module name: {attribute: plain value}}}

    ``attributes`` holds every public, plain-data attribute of every module (ints, floats, strings, bools, None
    and lists / tuples / dicts of them), so values changed after pruning (``model.hidden_dim = ...``) or added by
    the user come back too. Tensors are detached CPU copies. ``torch.save`` of it loads with ``weights_only=True``.
    """
    return {
        "format": FORMAT,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "history": pruning_history(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "attributes": module_attributes(model),
    }


def save_pruned(model: nn.Module, path: Union[str, os.PathLike]) -> None:
    """Write ``model``'s pruning history and weights to ``path`` (plain data: loadable with ``weights_only=True``)."""
    torch.save(pruned_state(model), path)


def load_pruned(model: nn.Module, path: Union[str, os.PathLike], strict: bool = True) -> nn.Module:
    """Rebuild the pruned architecture on ``model`` (freshly constructed, unpruned) and load the saved weights.

    Returns ``model``. Raises :class:`~prune_explorer.PruningError` (model unchanged) when the file does not match.
    """
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PruningError(
            f"could not read {os.fspath(path)!r} as a prune_explorer file ({type(exc).__name__}: {exc}). "
            "Only files written by pe.save_pruned can be loaded; they are read with torch.load(weights_only=True)."
        ) from None
    return load_pruned_state(model, data, strict=strict, source=repr(os.fspath(path)))


def load_pruned_state(model: nn.Module, data: dict, strict: bool = True, source: str = "the state dict") -> nn.Module:
    """Rebuild ``model`` (freshly constructed, unpruned) from :func:`pruned_state`'s dict: replay the history, set the
    saved attributes, load the weights. All or nothing: on any mismatch the model is left unchanged and a
    :class:`~prune_explorer.PruningError` says what does not fit. Returns ``model``."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise PruningError(f"{source} is not a prune_explorer file (expected format {FORMAT!r}); save it with "
                           "pe.save_pruned (or pe.state_dict)")
    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    if data.get("model_class") != cls:
        raise PruningError(
            f"the file was saved from a {data.get('model_class')} but the model given is a {cls}; construct the same "
            "model class (with the same arguments) before loading"
        )
    if model_history(model):
        raise PruningError("loading a pruned model needs a freshly constructed, unpruned model; this one was already "
                           "pruned")
    snapshot = snapshot_modules([model])
    try:
        apply_history(model, data["history"])
        _set_attributes(model, data.get("attributes") or {})
        _check_weights_fit(model, data["state_dict"], strict)
        model.load_state_dict(data["state_dict"], strict=strict)
    except Exception as exc:
        restore_modules(snapshot)
        model.__dict__.pop(HISTORY_ATTR, None)
        if isinstance(exc, PruningError):
            raise
        raise PruningError(f"the saved weights do not fit the rebuilt model ({type(exc).__name__}: {exc}); model unchanged") from None
    return model


_PLAIN = (type(None), bool, int, float, str)


def _plain(value, depth: int = 0):
    """``value`` as plain data (tuple subclasses such as ``torch.Size`` become tuples), or raise ``TypeError``."""
    if isinstance(value, _PLAIN):
        return value
    if depth < 6 and isinstance(value, (list, tuple)):
        items = [_plain(v, depth + 1) for v in value]
        return items if isinstance(value, list) else tuple(items)
    if depth < 6 and isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return {k: _plain(v, depth + 1) for k, v in value.items()}
    raise TypeError(type(value).__name__)


def module_attributes(model: nn.Module) -> dict:
    """``{module name: {attribute: value}}``: the public plain-data attributes of every module (see
    :func:`pruned_state`). Private names (``_...``) and ``training`` (the caller's mode) are left out."""
    out = {}
    for name, module in model.named_modules():
        attrs = {}
        for k, v in vars(module).items():
            if k.startswith("_") or k == "training":
                continue
            try:
                attrs[k] = _plain(v)
            except TypeError:
                continue
        out[name] = attrs
    return out


def _set_attributes(model: nn.Module, attributes: dict) -> None:
    """Set every saved attribute that differs from the rebuilt model's (modules the model lacks are an error)."""
    modules = dict(model.named_modules())
    for name, attrs in attributes.items():
        module = modules.get(name)
        if module is None:
            raise PruningError(f"the saved attributes name module {name!r}, which this {type(model).__name__} does "
                               "not have (the file was saved from a different model)")
        for k, v in attrs.items():
            if not _same_plain(vars(module).get(k, _MISSING), v):
                setattr(module, k, v)


_MISSING = object()


def _same_plain(current, saved) -> bool:
    try:
        cur = _plain(current)
    except TypeError:
        return False
    return type(cur) is type(saved) and cur == saved


def _check_weights_fit(model: nn.Module, saved: dict, strict: bool) -> None:
    """Compare names and shapes first: ``load_state_dict`` copies in place before it reports a mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in saved]
    unexpected = [k for k in saved if k not in own]
    if strict and (missing or unexpected):
        raise PruningError(
            f"the saved weights do not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
            "(the file was saved from a different architecture); model unchanged"
        )
    wrong = [k for k in own if k in saved and tuple(own[k].shape) != tuple(saved[k].shape)]
    if wrong:
        k = wrong[0]
        raise PruningError(
            f"the saved weight {k} has shape {tuple(saved[k].shape)} but the rebuilt model has {tuple(own[k].shape)}; "
            "model unchanged"
        )


def _pruning_function(name: str):
    fn = getattr(layers, name, None) if isinstance(name, str) and name.startswith("prune_") else None
    if fn is None or not callable(fn):
        raise PruningError(f"unknown pruning function {name!r} in the history (expected a pe.prune_* name)")
    return fn


def _is_depth(entry) -> bool:
    return isinstance(entry, dict) and entry.get("kind") == "depth"


def _resolve(model: nn.Module, name: str, names: dict = None):
    """The module or parameter called ``name`` in ``model`` (qualified name). ``names``: the modules by the names
    they had before any depth entry was replayed (history names are the traced model's)."""
    names = names if names is not None else dict(model.named_modules())
    if name in names:
        return names[name], None
    owner_name, _, attr = name.rpartition(".")
    owner = names.get(owner_name) if owner_name else model
    p = getattr(owner, attr, None) if owner is not None else None
    if isinstance(p, nn.Parameter) or (isinstance(p, torch.Tensor) and attr in owner._buffers):
        return owner, attr
    raise PruningError(f"the history names {name!r}, which is not a module or parameter of this {type(model).__name__}")


def _validate(model: nn.Module, history) -> None:
    """Check every entry against the model's channel counts before changing anything."""
    if not isinstance(history, list):
        raise PruningError("the pruning history must be a list of entries")
    sizes = {}
    names = dict(model.named_modules())
    for k, entry in enumerate(history):
        if _is_depth(entry):
            if not isinstance(names.get(entry.get("root")), nn.Module):
                raise PruningError(f"history entry {k} removes the block {entry.get('root')!r}, which this "
                                   f"{type(model).__name__} does not have")
            continue
        members = entry.get("members") if isinstance(entry, dict) else None
        if not isinstance(members, list):
            raise PruningError(f"history entry {k} has no 'members' list")
        updates = {}
        for mem in members:
            obj, attr = _resolve(model, mem.get("name", ""), names)
            fn = _pruning_function(mem.get("fn"))
            idxs = mem.get("idxs")
            if not isinstance(idxs, list):
                raise PruningError(f"history entry {k}, {mem.get('name')}: 'idxs' must be a list of ints")
            if attr is not None:
                dim = int(mem.get("dim", -1))
                key = (mem["name"], "dim", dim)
                n = sizes.get(key, getattr(obj, attr).shape[dim])
            else:
                pruner = layers.pruner_of(fn)
                side = layers.pruning_fn_side(fn)
                actual = layers.DEFAULT_REGISTRY.get(obj)
                if pruner is None or actual is None or type(actual) is not type(pruner) and not isinstance(obj, pruner.TARGET_MODULES):
                    raise PruningError(f"history entry {k}: {mem['name']} is a {type(obj).__name__}, which {mem.get('fn')} cannot prune")
                coupled = actual.in_out_coupled(obj) if hasattr(actual, "in_out_coupled") else False
                key = (mem["name"], "both" if coupled else side)
                n = sizes.get(key, actual.get_out_channels(obj) if side == "out" else actual.get_in_channels(obj))
            if n is None:
                raise PruningError(f"history entry {k}: {mem['name']} has no {mem.get('side')} channels to prune")
            try:
                check_indices(idxs, n, what=f"history entry {k}, {mem['name']}: 'idxs'", min_keep=1)
            except PruningError as e:
                raise PruningError(
                    f"history entry {k}: the channel indices of {mem['name']} do not fit its {n} channels "
                    f"({e.problem}); the file was saved from a different model or configuration"
                ) from None
            updates[key] = n - len(idxs)
        sizes.update(updates)
        attributes = entry.get("attributes", [])
        if not isinstance(attributes, list):
            raise PruningError(f"history entry {k}: 'attributes' must be a list")
        for a in attributes:
            if not isinstance(a, dict) or not isinstance(a.get("value"), int) or a["value"] <= 0:
                raise PruningError(f"history entry {k}: attribute record {a!r} needs a positive int 'value'")
            resolve_attribute(model, a)


def apply_history(model: nn.Module, history: List[dict]) -> nn.Module:
    """Replay a pruning history on ``model`` (validated first; on any error the model is left unchanged)."""
    _validate(model, history)
    snapshot = snapshot_modules([model])
    attr_snapshot = []  # config objects are not modules: their attributes are put back by hand
    names = dict(model.named_modules())  # history names are those of the model before any block was removed
    depth_records = []
    try:
        for entry in history:
            if _is_depth(entry):  # a whole block removed (prune_explorer.depth)
                from .depth.replay import replay_depth_entry

                depth_records.append(replay_depth_entry(model, names, entry))
                continue
            for mem in entry["members"]:
                obj, attr = _resolve(model, mem["name"], names)
                fn = _pruning_function(mem["fn"])
                if attr is not None:
                    param = getattr(obj, attr)
                    setattr(obj, attr, layers.ParameterPruner(dim=int(mem.get("dim", -1))).prune_out_channels(param, mem["idxs"]))
                else:
                    fn(obj, mem["idxs"])
            for a in entry.get("attributes", []):  # sizes kept in attributes the forward reads (self.hidden_dim)
                target, name, index = resolve_attribute(model, a)
                old = target.__dict__[name]
                attr_snapshot.append((target, name, old))
                if index is None:
                    target.__dict__[name] = int(a["value"])
                else:
                    seq = list(old)
                    seq[index] = int(a["value"])
                    target.__dict__[name] = type(old)(seq)
    except Exception as exc:
        for target, name, old in reversed(attr_snapshot):
            target.__dict__[name] = old
        for rec in reversed(depth_records):
            rec.undo()
        restore_modules(snapshot)
        raise PruningError(f"replaying the pruning history failed ({type(exc).__name__}: {exc}); model unchanged") from None
    model_history(model).extend(copy.deepcopy(history))
    from . import hf

    if hf.is_hf_model(model):
        hf.sync_config(model)
    return model
