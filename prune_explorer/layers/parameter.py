"""Pruning of loose parameters: an ``nn.Parameter`` that is not part of a known layer.

Torch-Pruning calls these *unwrapped parameters* and prunes them along one dimension (``pruning_dim``),
e.g. a ViT's class token ``(1, 1, E)`` or position embedding ``(1, N, E)`` along dim 2. A parameter cannot be
resized in place, so :class:`ParameterPruner` returns a **new** ``nn.Parameter`` (same dtype, device and
``requires_grad``; ``.grad`` sliced the same way). Install it with :func:`replace_parameter`, or pass the
owning module instead of the parameter to have it replaced there. Input and output channels are the same
space (the entries along ``dim``).

Example::

    >>> import torch, torch.nn as nn
    >>> pos = nn.Parameter(torch.zeros(1, 5, 8))
    >>> new = prune_parameter_out_channels(pos, [0, 1], dim=2)
    >>> tuple(new.shape), tuple(pos.shape)
    ((1, 5, 6), (1, 5, 8))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..errors import PruningError
from .base import BasePruningFunc, describe_layer
from .edits import LayerEdit, derive_tensor, keep_indices, selector
from .family import LayerFamily, register_family
from .recurrent import refresh_flat_weights
from .slicing import Part, Rows

__all__ = [
    "PARAMETER_PRUNER",
    "PARAMETER_FAMILY",
    "ParameterPruner",
    "prune_parameter_out_channels",
    "prune_parameter_in_channels",
    "replace_parameter",
]


class ParameterPruner(BasePruningFunc):
    """Prunes a parameter (or tensor) along ``dim``, returning a new ``nn.Parameter``.

    ``ParameterPruner(dim)`` fixes the pruning dim (default ``-1``, as Torch-Pruning's
    ``ParameterPruner(pruning_dim=-1)``); every method also takes ``dim=`` to override it for one call.

    ``prune_out_channels(x, idxs)`` with

    * ``x`` an ``nn.Parameter``: returns a new ``nn.Parameter`` without entries ``idxs`` along ``dim``;
      ``x`` itself is unchanged (parameters cannot be resized in place);
    * ``x`` a plain tensor (a buffer): returns a new plain tensor;
    * ``x`` a module with exactly one parameter of its own (``recurse=False``): replaces that parameter on
      the module and returns the module.

    >>> p = nn.Parameter(torch.arange(6.).reshape(2, 3))
    >>> ParameterPruner(dim=1).prune_out_channels(p, [1])
    Parameter containing:
    tensor([[0., 2.],
            [3., 5.]], requires_grad=True)
    """

    TARGET_MODULES = (nn.Parameter,)

    def __init__(self, dim: int = -1, *, pruning_dim: int | None = None) -> None:
        super().__init__(pruning_dim=dim if pruning_dim is None else pruning_dim)

    @property
    def dim(self) -> int:
        return self.pruning_dim

    def __repr__(self) -> str:
        return f"ParameterPruner(dim={self.pruning_dim})"

    def _other(self, dim: int | None) -> ParameterPruner | None:
        return None if dim is None or dim == self.pruning_dim else ParameterPruner(dim)

    def _resolve(self, x: Any) -> tuple[torch.Tensor, nn.Module | None, str | None]:
        if isinstance(x, torch.Tensor):
            t, owner, name = x, None, None
        elif isinstance(x, nn.Module):
            own = list(x.named_parameters(recurse=False))
            if len(own) != 1:
                raise PruningError(
                    f"{describe_layer(x)}: cannot prune a loose parameter: the module has {len(own)} parameters of "
                    "its own, not exactly one. Fix: pass the nn.Parameter itself and install the result with "
                    "replace_parameter(model, name, new_param)."
                )
            name, t = own[0]
            owner = x
        else:
            raise PruningError(
                f"cannot prune {type(x).__name__}: expected an nn.Parameter, a tensor or a module with one parameter."
            )
        if isinstance(t, nn.parameter.UninitializedParameter):
            raise PruningError("cannot prune an uninitialised (lazy) parameter. Fix: run a forward pass first.")
        if t.dim() == 0:
            raise PruningError("cannot prune a 0-dimensional (scalar) parameter: it has no channels.")
        if not -t.dim() <= self.pruning_dim < t.dim():
            raise PruningError(
                f"{describe_layer(t)}: pruning dim {self.pruning_dim} is out of range for {t.dim()} dims. "
                f"Fix: use a dim in {-t.dim()}..{t.dim() - 1}."
            )
        return t, owner, name

    def describe(self, layer: Any) -> str:
        t = layer
        if isinstance(layer, nn.Module):
            own = list(layer.named_parameters(recurse=False))
            t = own[0][1] if len(own) == 1 else None
            if t is None:
                return describe_layer(layer)
            return f"{describe_layer(layer)}.{own[0][0]} of shape {tuple(t.shape)} along dim {self.pruning_dim}"
        return f"{describe_layer(t)} along dim {self.pruning_dim}"

    def in_out_coupled(self, layer: Any) -> bool:
        return True

    def get_out_channels(self, layer: Any, dim: int | None = None) -> int:
        """Size of ``layer`` (a parameter, tensor, or one-parameter module) along the pruning dim."""
        other = self._other(dim)
        if other is not None:
            return other.get_out_channels(layer)
        t, _, _ = self._resolve(layer)
        return t.shape[self.pruning_dim]

    def get_in_channels(self, layer: Any, dim: int | None = None) -> int:
        """The same as :meth:`get_out_channels`."""
        return self.get_out_channels(layer, dim)

    def check(self, layer: Any, idxs: Any, side: Any, dim: int | None = None) -> list[int]:
        other = self._other(dim)
        if other is not None:
            return other.check(layer, idxs, side)
        self._resolve(layer)
        return super().check(layer, idxs, side)

    def _prune(self, x: Any, idxs: Any, side: str) -> Any:
        t, owner, name = self._resolve(x)
        idxs = self.check(x, idxs, side)
        if not idxs:
            return x
        new = derive_tensor(t, selector((self.pruning_dim, keep_indices(t.shape[self.pruning_dim], idxs))))
        if owner is None:
            return new
        LayerEdit().set(owner, name, new).apply()
        return owner

    def prune_out_channels(self, layer: Any, idxs: Sequence[int], dim: int | None = None) -> Any:
        """Remove entries ``idxs`` along ``dim``: a new parameter (or the owning module, updated)."""
        other = self._other(dim)
        return other._prune(layer, idxs, "out") if other is not None else self._prune(layer, idxs, "out")

    def prune_in_channels(self, layer: Any, idxs: Sequence[int], dim: int | None = None) -> Any:
        """The same as :meth:`prune_out_channels`."""
        other = self._other(dim)
        return other._prune(layer, idxs, "in") if other is not None else self._prune(layer, idxs, "in")


def replace_parameter(model: nn.Module, qualified_name: str, new_param: torch.Tensor) -> nn.Parameter:
    """Install ``new_param`` as ``model``'s parameter ``qualified_name`` (e.g. ``"encoder.pos_embed"``).

    Every other registration of the *same* old parameter object in ``model`` (tied weights) is replaced too,
    so tied layers stay tied. A plain tensor is wrapped in an ``nn.Parameter`` keeping the old
    ``requires_grad``. Recurrent layers get their flat-weight list refreshed. Returns the old parameter
    (pass it back to undo).

    >>> m = nn.Module(); m.cls = nn.Parameter(torch.zeros(1, 4))
    >>> old = replace_parameter(m, "cls", prune_parameter_out_channels(m.cls, [3], dim=1))
    >>> tuple(m.cls.shape), tuple(old.shape)
    ((1, 3), (1, 4))
    """
    owner_name, _, attr = qualified_name.rpartition(".")
    try:
        owner = model.get_submodule(owner_name) if owner_name else model
    except AttributeError:
        owner = None
    if owner is None or attr not in owner._parameters or owner._parameters[attr] is None:
        raise PruningError(
            f"{type(model).__name__} has no parameter {qualified_name!r}. "
            "Fix: use a name from model.named_parameters()."
        )
    old = owner._parameters[attr]
    if not isinstance(new_param, nn.Parameter):
        if not isinstance(new_param, torch.Tensor):
            raise PruningError(f"new_param must be a tensor or nn.Parameter, got {type(new_param).__name__}.")
        new_param = nn.Parameter(new_param.detach(), requires_grad=old.requires_grad)
    targets = [
        (m, n)
        for _, m in model.named_modules(remove_duplicate=False)
        for n, p in list(m._parameters.items())
        if p is old
    ]
    seen: set[tuple[int, str]] = set()
    edit = LayerEdit()
    for m, n in targets:
        if (id(m), n) not in seen:
            seen.add((id(m), n))
            edit.set(m, n, new_param)
    rnns = [m for m, _ in targets if isinstance(m, nn.RNNBase)]

    def refresh() -> None:
        for m in rnns:
            refresh_flat_weights(m)

    edit.apply(finalize=refresh if rnns else None)
    return old


PARAMETER_PRUNER = ParameterPruner()
prune_parameter_out_channels, prune_parameter_in_channels = PARAMETER_PRUNER.pruning_fns()


def parameter_parts(param: torch.Tensor, space, idx) -> list:
    """A loose parameter: its entries along the pruned dim (``space.dim``)."""
    return [Part(param, Rows(space.dim % param.dim(), idx), False)]


# loose parameters are found and followed by the tracer itself (no channel map): see graph/trace/tracing.py
PARAMETER_FAMILY = register_family(LayerFamily("parameter", PARAMETER_PRUNER, parts=parameter_parts))
