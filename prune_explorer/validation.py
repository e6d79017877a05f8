"""Checking user-given channel indices, pruning ratios and layer names: the one place that decides what is valid.

Every part of prune_explorer that accepts channel indices (the layer pruners, ``DG.get_pruning_group``,
``group.prune(idxs)``, the explorer, saved histories) or a pruning ratio (the pruners, the explorer) validates them
here, so the rules and the wording of the errors are the same everywhere. Each function raises the error class
the caller passes (:class:`~prune_explorer.errors.PruningError` by default); the error carries ``problem`` and
``fix`` (the two halves of its message) and ``kind`` (``"type"``, ``"range"``, ``"duplicate"``, ``"empty"`` or
``"ratio"``), so a caller can re-word it (the layer pruners prefix the layer's description).

Indices are channel positions (not parameter counts): ints, a 1-D integer tensor or numpy array, a range or any
iterable of ints. Floats, bools and strings are refused, never truncated.

>>> check_indices([5, 1], size=8).tolist()
[5, 1]
>>> check_indices([5, 1], size=8, sort=True).tolist()
[1, 5]
>>> check_indices([1, 9], size=8)
Traceback (most recent call last):
...
prune_explorer.errors.PruningError: index [9] out of range for 8 channels (valid: 0..7). Fix: use indices of existing channels (the layer may already have been pruned)
>>> check_ratio("pruning_ratio", 0.25)
0.25

Layers (``ignored_layers`` and the like) are given as modules, parameters or qualified names; :func:`resolve_layers`
turns them into the model's own objects everywhere (pruners, ``DG.get_all_groups``, plans, scans, the explorer),
and an unknown name gets close-name suggestions (:func:`layer_name_hint`).
"""

from __future__ import annotations

import difflib
import math
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Optional, Type

import numpy as np
import torch

from .errors import PruningError

__all__ = ["check_indices", "check_range", "short_list", "check_ratio", "check_ratios", "is_ratio", "check_cost_target",
           "resolve_layers", "resolve_layer", "layer_name_hint"]

_TYPE_FIX = "pass a list of distinct ints, e.g. [0, 3, 5]"


def short_list(idxs: Iterable[int], limit: int = 12) -> str:
    """``[1, 2, 3]``, or the first ``limit`` entries and the count for a long list (for error messages).

    >>> short_list(range(20), limit=3)
    '[0, 1, 2, ...] (20 in all)'
    """
    idxs = [int(i) for i in idxs]
    if len(idxs) <= limit:
        return str(idxs)
    return f"[{', '.join(str(i) for i in idxs[:limit])}, ...] ({len(idxs)} in all)"


def _error(error: Type[Exception], kind: str, problem: str, fix: str, idxs: Optional[np.ndarray] = None) -> Exception:
    err = error(f"{problem}. Fix: {fix}")
    err.kind = kind  # type: ignore[attr-defined]
    err.problem = problem  # type: ignore[attr-defined]
    err.fix = fix  # type: ignore[attr-defined]
    err.checked_idxs = idxs  # type: ignore[attr-defined]  # the indices as read (range / duplicate errors)
    return err


def _as_array(idxs: Any, what: str, error: Type[Exception]) -> np.ndarray:
    """``idxs`` as a 1-D ``int64`` array in the given order; refuses anything that is not integers."""
    if type(idxs) is list and set(map(type, idxs)) <= {int}:  # the common case, checked at C speed
        return np.fromiter(idxs, dtype=np.int64, count=len(idxs))
    if isinstance(idxs, np.ndarray):
        if idxs.dtype.kind not in "iu":
            raise _error(error, "type", f"{what} must be integers, got an array of dtype {idxs.dtype}", _TYPE_FIX)
        return idxs.reshape(-1).astype(np.int64, copy=False)
    if isinstance(idxs, torch.Tensor):
        if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
            raise _error(error, "type", f"{what} must be integers, got a tensor of dtype {idxs.dtype}", _TYPE_FIX)
        return idxs.detach().reshape(-1).to("cpu", torch.long).numpy()
    if isinstance(idxs, (str, bytes)) or not isinstance(idxs, Iterable):
        raise _error(error, "type", f"{what} must be a sequence of ints, got {type(idxs).__name__} {idxs!r}",
                     _TYPE_FIX)
    out = []
    for x in idxs:
        if isinstance(x, (bool, np.bool_)):
            raise _error(error, "type", f"{what} must be integers (a sequence of ints), got the bool {x!r}", _TYPE_FIX)
        try:
            out.append(operator.index(x))
        except TypeError:
            raise _error(error, "type", f"{what} must be integers (a sequence of ints), got {type(x).__name__} {x!r}",
                         _TYPE_FIX) from None
    return np.asarray(out, dtype=np.int64).reshape(-1)


def check_range(arr: np.ndarray, size: int, *, unit: str = "channels", of: str = "",
                error: Type[Exception] = PruningError, is_sorted: bool = False) -> None:
    """Raise unless every index of ``arr`` lies in ``[0, size)``. ``of`` names the layer side in the message.

    >>> check_range(np.array([0, 4]), 4, of="conv.out")
    Traceback (most recent call last):
    ...
    prune_explorer.errors.PruningError: index [4] out of range for conv.out with 4 channels (valid: 0..3). Fix: use indices of existing channels (the layer may already have been pruned)
    """
    if not arr.size:
        return
    lo, hi = (arr[0], arr[-1]) if is_sorted else (arr.min(), arr.max())
    if lo >= 0 and hi < size:
        return
    bad = arr[(arr < 0) | (arr >= size)]
    where = f"{of} with {size} {unit}" if of else f"{size} {unit}"
    valid = f"valid: 0..{size - 1}" if size > 0 else "it has none"
    raise _error(error, "range", f"{'index' if bad.size == 1 else 'indices'} {short_list(bad)} out of range for "
                 f"{where} ({valid})", "use indices of existing channels (the layer may already have been pruned)",
                 arr)


def check_indices(idxs: Any, size: Optional[int] = None, *, what: str = "channel indices", unit: str = "channels",
                  of: str = "", error: Type[Exception] = PruningError, sort: bool = False,
                  min_keep: int = 0) -> np.ndarray:
    """Validate channel indices; return them as a 1-D ``int64`` numpy array (a new array or a read-only-safe view).

    Checks, in order: every entry is an integer (``what`` names them in the message); each lies in
    ``[0, size)`` (skipped when ``size`` is None; ``unit`` and ``of`` word the message); no index is listed twice;
    at least ``min_keep`` of the ``size`` channels stay. ``sort=True`` returns them sorted (else in the given
    order). ``error`` is the exception class raised (it must accept one message argument).

    >>> check_indices([2, 2], 4)
    Traceback (most recent call last):
    ...
    prune_explorer.errors.PruningError: channel indices contain duplicates [2] (channels listed twice). Fix: list each channel once (e.g. sorted(set(idxs)))
    >>> check_indices(torch.tensor([3, 0]), 4, sort=True).tolist()
    [0, 3]
    """
    arr = _as_array(idxs, what, error)
    if sort and arr.size > 1:
        ordered = bool((arr[1:] > arr[:-1]).all())
        if not ordered:
            arr = np.sort(arr)
    else:
        ordered = arr.size < 2
    if size is not None:
        check_range(arr, size, unit=unit, of=of, error=error, is_sorted=sort)
    if arr.size > 1 and not ordered:
        srt = arr if sort else np.sort(arr)
        same = srt[1:] == srt[:-1]
        if same.any():
            raise _error(error, "duplicate", f"{what} contain duplicates {short_list(np.unique(srt[1:][same]))} "
                         "(channels listed twice)", "list each channel once (e.g. sorted(set(idxs)))", arr)
    if size is not None and min_keep > 0 and size - arr.size < min_keep:
        raise _error(error, "empty", f"removing {arr.size} of {size} {unit} would leave "
                     f"{'none' if arr.size >= size else size - arr.size}",
                     f"keep at least {min_keep} channel(s)", arr)
    return arr


# ----------------------------------------------------------------------------------------------------------------
# ratios
# ----------------------------------------------------------------------------------------------------------------
def is_positive_int(x: Any) -> bool:
    """True for an int >= 1 (a count: batches, steps, tokens); bools are not counts.

    >>> is_positive_int(3), is_positive_int(0), is_positive_int(True), is_positive_int(2.0)
    (True, False, False, False)
    """
    return isinstance(x, int) and not isinstance(x, bool) and x >= 1


def is_ratio(x: Any, *, low_open: bool = False, high_open: bool = True) -> bool:
    """True for a finite real number (not a bool) in ``[0, 1)`` (the default) or the interval the flags give.

    >>> is_ratio(0.0), is_ratio(1.0), is_ratio(1.0, low_open=True, high_open=False), is_ratio(True)
    (True, False, True, False)
    """
    if isinstance(x, (bool, np.bool_)) or not isinstance(x, (int, float, np.integer, np.floating)):
        return False
    x = float(x)
    if not math.isfinite(x):
        return False
    above = x > 0.0 if low_open else x >= 0.0
    below = x < 1.0 if high_open else x <= 1.0
    return above and below


def check_ratio(name: str, x: Any, *, error: Type[Exception] = PruningError, low_open: bool = False,
                high_open: bool = True, meaning: str = "the fraction of each layer's channels to remove",
                example: float = 0.5) -> float:
    """``x`` as a float, or raise ``error`` naming the option ``name`` and a valid example.

    >>> check_ratio("pruning_ratio", 1.0)
    Traceback (most recent call last):
    ...
    prune_explorer.errors.PruningError: pruning_ratio=1.0 must be a number in [0, 1) (the fraction of each layer's channels to remove). Fix: pass e.g. pruning_ratio=0.5
    """
    if is_ratio(x, low_open=low_open, high_open=high_open):
        return float(x)
    interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
    raise _error(error, "ratio", f"{name}={x!r} must be a number in {interval} ({meaning})",
                 f"pass e.g. {name}={example}")


def check_ratios(name: str, ratios: Mapping, *, label: Callable[[Any], str] = str,
                 error: Type[Exception] = PruningError, **kwargs) -> dict:
    """Check every value of a ``{key: ratio}`` dict (``label(key)`` names it: ``name[label]=value``); returns
    ``{key: float}``. ``kwargs`` go to :func:`check_ratio`.

    >>> check_ratios("pruning_ratio_dict", {"fc": 0.2})
    {'fc': 0.2}
    """
    if not isinstance(ratios, Mapping):
        raise _error(error, "type", f"{name} must be a dict of ratios, got {type(ratios).__name__}",
                     f"pass e.g. {name}={{module: 0.5}}")
    return {k: check_ratio(f"{name}[{label(k)}]", v, error=error, **kwargs) for k, v in ratios.items()}


def check_cost_target(target: Any = None, speedup: Any = None, *, error: Type[Exception] = PruningError,
                      cost: str = "the original cost") -> float:
    """The fraction of ``cost`` (parameters, MACs or latency) to keep, from exactly one of ``target`` (that fraction,
    in ``(0, 1)``) or ``speedup`` (a finite number > 1: ``1 / speedup`` is kept); else raise ``error``.

    >>> check_cost_target(speedup=4.0), check_cost_target(target=0.5)
    (0.25, 0.5)
    >>> check_cost_target(speedup=float("inf"))
    Traceback (most recent call last):
    ...
    prune_explorer.errors.PruningError: speedup=inf must be a number > 1 (original cost / pruned cost)
    """
    if (target is None) == (speedup is None):
        raise error(f"give exactly one of target= (fraction of {cost} to keep, e.g. 0.5) or speedup= (e.g. 2.0 for "
                    "half the cost)")
    if speedup is not None:
        if isinstance(speedup, (bool, np.bool_)) or not isinstance(speedup, (int, float, np.integer, np.floating)) \
                or not math.isfinite(speedup) or not speedup > 1:
            raise error(f"speedup={speedup!r} must be a number > 1 (original cost / pruned cost)")
        return 1.0 / float(speedup)
    if not is_ratio(target, low_open=True):
        raise error(f"target={target!r} must be a fraction of {cost} to keep, in (0, 1): e.g. target=0.5 for half the "
                    "MACs (or speedup=2.0)")
    return float(target)


# ----------------------------------------------------------------------------------------------------------------------
# layers given by name
# ----------------------------------------------------------------------------------------------------------------------
def layer_name_hint(name: str, names: Iterable[str]) -> str:
    """A sentence suggesting what an unknown layer ``name`` may have meant, among the qualified ``names`` of a model:
    close names (``difflib``), else layers whose last component is close (``"classifier"`` -> ``"head.classifier"``),
    else the top-level layers. Empty when the model has no named layer.

    >>> layer_name_hint("fc1", ["conv1", "layer1.0.conv1", "fc"])
    " Did you mean 'fc'?"
    >>> layer_name_hint("classifier", ["features", "features.0", "pool", "head", "head.fc"])
    " The model's top-level layers: 'features', 'pool', 'head'."
    >>> layer_name_hint("classifier", ["vit", "vit.encoder.layer.0.attention", "vit.pooler", "model.classifier_head"])
    " Did you mean 'model.classifier_head'?"
    """
    names = [n for n in dict.fromkeys(names) if n]
    if not names:
        return ""
    def did_you_mean(found):
        return f" Did you mean {', '.join(repr(c) for c in found)}?" if found else ""

    close = difflib.get_close_matches(name, names, n=3)
    if close:
        return did_you_mean(close)
    leaf = {}
    for n in names:
        leaf.setdefault(n.rpartition(".")[2], n)
    close = [leaf[k] for k in difflib.get_close_matches(name.rpartition(".")[2], list(leaf), n=3, cutoff=0.5)]
    tops = list(dict.fromkeys(n.partition(".")[0] for n in names))
    shown = ", ".join(repr(t) for t in tops[:12]) + (f" (and {len(tops) - 12} more)" if len(tops) > 12 else "")
    return f"{did_you_mean(close)} The model's top-level layers: {shown}."


def resolve_layer(model: torch.nn.Module, layer: Any, option: str = "ignored_layers",
                  error: Type[Exception] = ValueError, names: Optional[Mapping] = None):
    """The module or parameter of ``model`` that ``layer`` names: a module or parameter of the model (returned as it
    is) or a qualified name from ``model.named_modules()`` / ``named_parameters()``. Raises ``error`` naming
    ``option``, with close-name suggestions for a name the model does not have. ``names``: the model's
    ``{name: module or parameter}`` when the caller already has it."""
    if isinstance(layer, str):
        if names is None:
            names = _named_layers(model)
        found = names.get(layer) if layer else None
        if found is None:
            raise error(f"{option}: there is no layer named {layer!r} in the model."
                        f"{layer_name_hint(layer, [n for n, v in names.items() if isinstance(v, torch.nn.Module)])} Fix: use the qualified names of model.named_modules() "
                        "(e.g. 'layer1.0.conv1'), or pass the module itself")
        return found
    if isinstance(layer, (torch.nn.Module, torch.nn.Parameter)):
        return layer
    raise error(f"{option}: a layer is given as a module, a parameter or its qualified name (str), got "
                f"{type(layer).__name__} {layer!r:.80}")


def resolve_layers(model: torch.nn.Module, layers: Any, option: str = "ignored_layers",
                   error: Type[Exception] = ValueError) -> list:
    """:func:`resolve_layer` for each of ``layers`` (a module, a name, or an iterable of them), in order. Modules
    and parameters are returned as they are (whether they belong to the model is the caller's check).

    >>> m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 4, 3))
    >>> resolve_layers(m, ["1", m[0]]) == [m[1], m[0]]
    True
    >>> resolve_layers(m, ["2"])
    Traceback (most recent call last):
    ...
    ValueError: ignored_layers: there is no layer named '2' in the model. The model's top-level layers: '0', '1'. ...
    """
    if layers is None:
        return []
    if isinstance(layers, (str, torch.nn.Module)):
        layers = [layers]
    layers = list(layers)
    names = _named_layers(model) if any(isinstance(x, str) for x in layers) else None
    return [resolve_layer(model, x, option, error, names) for x in layers]


def _named_layers(model: torch.nn.Module) -> dict:
    out = {n: p for n, p in model.named_parameters()}
    out.update((n, m) for n, m in model.named_modules() if n)
    return out
