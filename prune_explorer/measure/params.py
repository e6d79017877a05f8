"""Parameter counting helpers.

A *parameter count* is the number of scalar values held by the distinct parameter tensors of a module:

* a parameter object that is registered under several names (tied weights: ``dec.weight = enc.weight``)
  or in several modules (a shared block) is counted once;
* two different ``nn.Parameter`` objects that view the very same memory (same device, address, shape,
  strides and dtype) are counted once too;
* buffers (BatchNorm running statistics, masks, position indices) are not parameters and are not counted;
* uninitialised lazy parameters (``nn.LazyLinear`` before its first forward) count 0 — count after a forward
  pass (``count_ops_and_params`` does) to see their real size.

For the ordinary case this equals ``sum(p.numel() for p in model.parameters())``, the figure Torch-Pruning's
``count_ops_and_params`` reports.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Tuple, Union

import torch
import torch.nn as nn

__all__ = ["unique_parameters", "count_params", "params_per_module", "ParamCounter"]


def _is_uninitialized(p: torch.Tensor) -> bool:
    return isinstance(p, nn.parameter.UninitializedParameter)


def _storage_key(p: torch.Tensor):
    """A key naming the exact memory a tensor covers, or ``None`` where it has none (meta / fake tensors)."""
    try:
        ptr = p.data_ptr()
    except Exception:  # tensors without storage (some subclasses)
        return None
    if ptr == 0:
        return None
    return (p.device, ptr, tuple(p.shape), tuple(p.stride()), p.dtype)


def unique_parameters(
    source: Union[nn.Module, Iterable[torch.Tensor]], trainable_only: bool = False
) -> List[torch.Tensor]:
    """The distinct parameter tensors of ``source`` (a module, or any iterable of tensors), in first-seen order.

    Duplicates are dropped by identity and by the memory they cover (see the module docstring).
    ``trainable_only=True`` keeps only tensors with ``requires_grad``.
    """
    tensors = source.parameters() if isinstance(source, nn.Module) else source
    seen_ids = set()
    seen_storage = set()
    out: List[torch.Tensor] = []
    for p in tensors:
        if p is None or id(p) in seen_ids:
            continue
        seen_ids.add(id(p))
        if trainable_only and not p.requires_grad:
            continue
        if not _is_uninitialized(p):
            key = _storage_key(p)
            if key is not None:
                if key in seen_storage:
                    continue
                seen_storage.add(key)
        out.append(p)
    return out


def count_params(source: Union[nn.Module, Iterable[torch.Tensor]], trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``source``, each distinct tensor counted once.

    >>> count_params(nn.Linear(3, 2))
    8
    """
    return int(sum(0 if _is_uninitialized(p) else p.numel() for p in unique_parameters(source, trainable_only)))


def params_per_module(model: nn.Module, trainable_only: bool = False) -> Dict[str, int]:
    """``{qualified_name: parameter count}`` for every module of ``model`` (the root is ``""``).

    Each figure is inclusive: a module's count covers its submodules, and a parameter shared inside one
    module is counted once there (so the root's figure equals :func:`count_params` of the model).
    """
    return {name: count_params(module, trainable_only) for name, module in model.named_modules()}


class ParamCounter:
    """:func:`count_params` of one model, again and again while it is pruned, without walking the module tree.

    Pruning replaces parameter tensors (or their data) but never the module tree: the parameter slots (module, name)
    are found once, and each :meth:`count` reads the tensors in them now. A tensor seen at the last count with the
    same size keeps what was read of it then (its size and the memory it covers); only the others are read again,
    and the distinct tensors are counted as :func:`count_params` counts them (shared objects and views of the same
    memory once). A model whose module tree changes afterwards needs a new counter.

    >>> m = nn.Linear(3, 2); c = ParamCounter(m); c.count()
    8
    >>> m.weight = nn.Parameter(m.weight[:1].detach()); m.bias = nn.Parameter(m.bias[:1].detach()); c.count()
    4
    """

    def __init__(self, model: nn.Module, trainable_only: bool = False):
        self.trainable_only = trainable_only
        self._slots: List[Tuple[nn.Module, str]] = [(m, name) for m in model.modules() for name in m._parameters]
        self._seen: Dict[int, tuple] = {}  # id(tensor) -> (tensor, numel, storage key) as read at the last count

    def _read(self, p: torch.Tensor) -> tuple:
        if _is_uninitialized(p):
            return p, 0, None
        n = p.numel()
        old = self._seen.get(id(p))
        if old is not None and old[0] is p and old[1] == n:
            return old
        return p, n, _storage_key(p)

    def count(self) -> int:
        """Parameters of the model now, in scalars."""
        seen: Dict[int, tuple] = {}
        for m, name in self._slots:
            p = m._parameters.get(name)
            if p is None or id(p) in seen or (self.trainable_only and not p.requires_grad):
                continue
            seen[id(p)] = self._read(p)
        self._seen = seen
        storages, total = set(), 0
        for _, n, key in seen.values():
            if key is not None:
                if key in storages:
                    continue
                storages.add(key)
            total += n
        return total
