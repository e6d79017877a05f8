"""``example_inputs``: how the model is called with them, and every walk over the tensors nested inside them.

Tracing, MAC counting, the explorer and the pruners all run the model on user-given example inputs. This module is
the one place that knows

* the calling convention (:func:`call_model`): a tensor is passed as ``model(x)``, a tuple or list as
  ``model(*x)`` and, if that fails, whole as ``model(x)`` (Torch-Pruning's rule: torchvision's detection models take
  one list of images, ``example_inputs=[torch.rand(3, 320, 320)]``), a dict as ``model(**x)``, a
  :class:`~torch.nn.utils.rnn.PackedSequence` (a tuple) whole as ``model(x)``; ``forward_fn(model, inputs)``
  replaces all of that. Once a model ran on a list passed whole, later calls with a list of the same length pass it
  whole straight away (:func:`passes_whole`);
* where the tensors are inside nested inputs and outputs (:func:`tensors_in`): tuples, lists, namedtuples, dicts
  (including ``OrderedDict`` subclasses such as Hugging Face's ``ModelOutput``), dataclasses and plain objects;
* how to rebuild the same structure with every tensor replaced (:func:`map_tensors`, built on
  ``torch.utils._pytree``, so containers registered there are rebuilt with their own type), e.g. on the ``meta``
  device (:func:`to_meta`) or another device (:func:`to_device`);
* how to run a forward pass and leave the model exactly as it was (:func:`kept_state`: buffer values such as
  BatchNorm running statistics, buffer identities and train/eval flags are restored).

>>> import torch
>>> x = {"ids": torch.zeros(2, 3, dtype=torch.long), "extra": (torch.ones(4), "mode")}
>>> [tuple(t.shape) for t in tensors_in(x)]
[(2, 3), (4,)]
>>> m = to_meta(x); m["ids"].device.type, m["extra"][1]
('meta', 'mode')
>>> call_model(lambda a, b: a + b, (torch.ones(1), torch.ones(1)))
tensor([2.])
"""

from __future__ import annotations

import contextlib
import dataclasses
import weakref
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils._pytree as pytree
from torch.nn.utils.rnn import PackedSequence

__all__ = ["CALL_CONVENTION", "as_call_args", "call_model", "tensors_in", "map_tensors", "to_meta", "to_device",
           "has_meta_tensors", "kept_state", "passes_whole", "pass_whole", "remember_whole", "forget_whole",
           "flatten", "unflatten"]

#: how :func:`call_model` passes inputs, worded for error messages
CALL_CONVENTION = ("a tensor is passed as model(x), a tuple/list as model(*x) (or, if that fails, whole as model(x)), "
                   "a dict as model(**x)")

#: models that take a list / tuple whole (``model(x)``): model -> the kinds of inputs (:func:`_list_kind`) they took
_WHOLE: "weakref.WeakKeyDictionary[nn.Module, set]" = weakref.WeakKeyDictionary()

_MAX_DEPTH = 8  # nesting depth searched for tensors (outputs can hold cyclic object graphs)


# ---------------------------------------------------------------------------------------------------------------
# calling the model
# ---------------------------------------------------------------------------------------------------------------
def as_call_args(example_inputs: Any) -> Tuple[tuple, Dict[str, Any]]:
    """``(args, kwargs)`` for ``model(*args, **kwargs)`` under the calling convention (see the module docstring).

    >>> as_call_args({"x": 1}), as_call_args([1, 2]), as_call_args(3)
    (((), {'x': 1}), ((1, 2), {}), ((3,), {}))
    """
    if isinstance(example_inputs, PackedSequence):
        return (example_inputs,), {}
    if isinstance(example_inputs, dict):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (list, tuple)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def _list_kind(example_inputs: Any) -> Optional[tuple]:
    """``(type, length)`` of a list / tuple that could be passed whole, None for anything else."""
    if isinstance(example_inputs, (list, tuple)) and not isinstance(example_inputs, PackedSequence):
        return type(example_inputs), len(example_inputs)
    return None


def passes_whole(model: Any, example_inputs: Any) -> bool:
    """Whether ``model`` is known to take this kind of list / tuple whole, as ``model(x)`` (it failed on
    ``model(*x)`` and ran on ``model(x)`` before; see :func:`call_model`)."""
    kind = _list_kind(example_inputs)
    try:
        return kind is not None and kind in _WHOLE.get(model, ())
    except TypeError:  # not weak-referenceable (a function): never remembered
        return False


def remember_whole(model: Any, example_inputs: Any) -> None:
    """Record that ``model`` takes this kind of list / tuple whole (later :func:`call_model` calls pass it whole)."""
    kind = _list_kind(example_inputs)
    if kind is None:
        return
    try:
        _WHOLE.setdefault(model, set()).add(kind)
    except TypeError:
        pass


def forget_whole(model: Any, example_inputs: Any) -> None:
    """Undo :func:`remember_whole` (e.g. the whole-list call failed too)."""
    try:
        _WHOLE.get(model, set()).discard(_list_kind(example_inputs))
    except TypeError:
        pass


def pass_whole(model: Callable, example_inputs: Any) -> Any:
    """A ``forward_fn`` that passes a list / tuple as one argument: ``model(example_inputs)``."""
    return model(example_inputs)


def call_model(model: Callable, example_inputs: Any, forward_fn: Optional[Callable] = None,
               retry: bool = True, before_retry: Optional[Callable[[], None]] = None) -> Any:
    """Run ``model`` on ``example_inputs``: ``forward_fn(model, example_inputs)`` if given, else by the convention.

    A list / tuple is passed as ``model(*x)``; if that raises an ``Exception`` and ``retry`` is true, as ``model(x)``
    (after ``before_retry()``, which discards what the failed call left, e.g. partial counts). If that works too, the
    model is remembered as taking such lists whole; if it fails, the first error (of ``model(*x)``) is raised.
    ``retry=False``: one call only (the tracer, whose record of a failed call cannot be discarded, retries with a
    fresh trace instead)."""
    if forward_fn is not None:
        return forward_fn(model, example_inputs)
    if passes_whole(model, example_inputs):
        return model(example_inputs)
    args, kwargs = as_call_args(example_inputs)
    if not retry or _list_kind(example_inputs) is None:
        return model(*args, **kwargs)
    try:
        return model(*args, **kwargs)
    except Exception as first:  # noqa: BLE001 - Torch-Pruning's rule: then try the list as one argument
        if before_retry is not None:
            before_retry()
        try:
            out = model(example_inputs)
        except Exception:  # noqa: BLE001 - neither form runs: the convention's error is the one to show
            raise first from None
        remember_whole(model, example_inputs)
        return out


# ---------------------------------------------------------------------------------------------------------------
# finding tensors
# ---------------------------------------------------------------------------------------------------------------
def tensors_in(obj: Any, paths: Optional[list] = None) -> List[torch.Tensor]:
    """Every tensor inside ``obj`` (a tensor, or nested tuples / lists / dicts / dataclasses / objects), in order.

    Modules, classes and callables are not searched; nesting deeper than 8 levels is ignored. ``paths``: a list
    that receives where each tensor sits in ``obj`` (``"[0]"``, ``"['logits']"``, ``".pred_boxes"``; ``""`` for
    ``obj`` itself).

    >>> paths = []
    >>> len(tensors_in({"a": torch.zeros(1), "b": (torch.zeros(1), 3)}, paths)), paths
    (2, ["['a']", "['b'][0]"])
    """
    if isinstance(obj, torch.Tensor):
        if paths is not None:
            paths.append("")
        return [obj]
    out: List[torch.Tensor] = []
    _collect(obj, out, 0, paths, "")
    return out


_SCALARS = frozenset((int, float, str, bool))


def _collect(obj: Any, out: list, depth: int, paths: Optional[list] = None, path: str = "") -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(obj, torch.Tensor):
        out.append(obj)
        if paths is not None:
            paths.append(path)
        return
    if isinstance(obj, (list, tuple)):
        key_format, items = "[{}]", enumerate(obj)
    elif isinstance(obj, dict):
        key_format, items = "[{!r}]", obj.items()
    elif obj is None or isinstance(obj, (int, float, str, bool)):
        return
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        key_format, items = ".{}", ((f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj))
    elif hasattr(obj, "__dict__") and not isinstance(obj, (nn.Module, type)) and not callable(obj):
        key_format, items = ".{}", vars(obj).items()
    else:
        return
    if paths is None and depth < _MAX_DEPTH:  # per op in a trace: tensors and scalars without a call each
        for _, child in items:
            if isinstance(child, torch.Tensor):
                out.append(child)
            elif child is not None and type(child) not in _SCALARS:
                _collect(child, out, depth + 1)
        return
    for key, child in items:
        _collect(child, out, depth + 1, paths, path + key_format.format(key))


def has_meta_tensors(obj: Any) -> bool:
    """True if any tensor inside ``obj`` is on the ``meta`` device."""
    return any(t.device.type == "meta" for t in tensors_in(obj))


# ---------------------------------------------------------------------------------------------------------------
# rebuilding with other tensors
# ---------------------------------------------------------------------------------------------------------------
def _opaque(x: Any) -> bool:
    """Leaves for the pytree walk that :func:`_map_leaf` handles itself."""
    return isinstance(x, PackedSequence)


_PLAIN_CONTAINERS = (list, tuple, dict)


def _not_plain(x: Any) -> bool:
    return type(x) not in _PLAIN_CONTAINERS


def flatten(obj: Any, plain_only: bool = False) -> Tuple[list, Any]:
    """``(leaves, spec)``: the values inside ``obj`` in order and its structure (:func:`unflatten` rebuilds it), by
    the walk :func:`map_tensors` makes. ``plain_only``: open only plain tuples, lists and dicts (namedtuples,
    registered types and dataclasses are then leaves too).

    >>> leaves, spec = flatten(([1, "a"], {"k": None}), plain_only=True)
    >>> leaves, unflatten([2, "b", None], spec)
    ([1, 'a', None], ([2, 'b'], {'k': None}))
    """
    return pytree.tree_flatten(obj, is_leaf=_not_plain if plain_only else _opaque)


def unflatten(leaves: Sequence[Any], spec: Any) -> Any:
    """The structure ``spec`` (from :func:`flatten`) rebuilt around ``leaves``."""
    return pytree.tree_unflatten(list(leaves), spec)


def map_tensors(fn: Callable[[torch.Tensor], Any], obj: Any) -> Any:
    """``obj`` rebuilt with ``fn(t)`` in place of every tensor ``t`` (other leaves kept as they are).

    Containers known to ``torch.utils._pytree`` (tuples, lists, namedtuples, dicts, ``OrderedDict``, registered
    types) keep their type; dataclasses are rebuilt with :func:`dataclasses.replace`; in a ``PackedSequence`` the
    data and the sort indices are mapped, while ``batch_sizes`` stays the CPU tensor PyTorch requires.

    >>> map_tensors(lambda t: t * 2, (torch.ones(1), [torch.ones(2)], "keep"))
    (tensor([2.]), [tensor([2., 2.])], 'keep')
    """
    leaves, spec = flatten(obj)
    return unflatten([_map_leaf(fn, leaf) for leaf in leaves], spec)


def _map_leaf(fn: Callable[[torch.Tensor], Any], leaf: Any) -> Any:
    if isinstance(leaf, torch.Tensor):
        return fn(leaf)
    if isinstance(leaf, PackedSequence):
        def opt(t):
            return None if t is None else fn(t)

        return PackedSequence(fn(leaf.data), leaf.batch_sizes, opt(leaf.sorted_indices), opt(leaf.unsorted_indices))
    if dataclasses.is_dataclass(leaf) and not isinstance(leaf, type):
        changes = {f.name: map_tensors(fn, getattr(leaf, f.name)) for f in dataclasses.fields(leaf) if f.init}
        return dataclasses.replace(leaf, **changes)
    return leaf


def to_meta(obj: Any) -> Any:
    """``obj`` with every tensor replaced by an empty one of the same shape, dtype and strides on ``meta``."""
    return map_tensors(lambda t: torch.empty_like(t, device="meta"), obj)


def to_device(obj: Any, device: Any) -> Any:
    """``obj`` with every tensor moved to ``device``."""
    return map_tensors(lambda t: t.to(device), obj)


# ---------------------------------------------------------------------------------------------------------------
# leaving the model as it was
# ---------------------------------------------------------------------------------------------------------------
def _saved_buffers(modules: Sequence[nn.Module], values: bool = True) -> list:
    """Each buffer and a copy of its values (what a forward pass may change; BatchNorm's kernels update their
    running statistics in place without bumping the version counter, so the values are always put back).
    ``values=False``: identities only (a forward pass on meta stand-ins never sees the buffers' values)."""
    saved = []
    for module in modules:
        for name, buf in module._buffers.items():
            if buf is None:
                continue
            # an inference tensor cannot be changed in place outside inference mode: nothing to restore
            keep = values and not buf.is_inference()
            saved.append((module, name, buf, buf.detach().clone() if keep else None))
    return saved


def _restore_buffers(saved: list) -> None:
    with torch.no_grad():
        for module, name, buf, copy in saved:
            if module._buffers.get(name) is not buf:
                module._buffers[name] = buf
            if copy is not None:
                buf.copy_(copy)


@contextlib.contextmanager
def kept_state(model: nn.Module, eval_mode: bool = False, values: bool = True,
               modules: Optional[Sequence[nn.Module]] = None) -> Iterator[None]:
    """Undo, on exit, what a forward pass does to ``model``: buffer values (BatchNorm running statistics, counters)
    and identities, and every submodule's train/eval flag. ``eval_mode=True`` switches to eval inside;
    ``values=False`` keeps no copy of the buffers' values (for a forward pass on meta stand-ins, which never reads
    nor writes them). ``modules``: ``list(model.modules())`` when the caller already has it.

    >>> bn = torch.nn.BatchNorm1d(2)
    >>> with kept_state(bn):
    ...     _ = bn(torch.randn(4, 2) + 5)
    >>> bn.running_mean.tolist(), int(bn.num_batches_tracked)
    ([0.0, 0.0], 0)
    """
    modules = list(model.modules()) if modules is None else modules
    flags = [m.training for m in modules]
    saved = _saved_buffers(modules, values)
    try:
        if eval_mode and any(flags):
            model.eval()
        yield
    finally:
        for m, training in zip(modules, flags):
            if m.training != training:
                m.training = training
        _restore_buffers(saved)
