"""How parameters and MACs scale with channel counts, derived once from the dependency graph.

The explorer (and :mod:`.sweep`) predicts what a group will remove before the user commits, and draws the whole curve of uniform
pruning without re-tracing the model for every point. Both rest on one observation: structural pruning only
ever shortens tensor dimensions that are proportional to a channel space. So for every parameter tensor ``t``
and every channel space ``s`` there is an exponent ``e(t, s)`` -- the number of dimensions of ``t`` that follow
``s`` -- and, with ``k_s`` the fraction of ``s``'s channels kept,

    numel(t) = numel_0(t) * prod_s k_s ** e(t, s)

(a conv weight ``[out, in, kh, kw]`` has exponent 1 for its ``out`` space and 1 for its ``in`` space, a
BatchNorm weight 1 for its single space, ``nn.MultiheadAttention.in_proj_weight [3E, E]`` 2, an LSTM's
``weight_hh [4H, H]`` 2). The exponents are *measured*, not tabulated: each layer's own pruning function is
run once, on a copy of the layer whose tensors live on the ``meta`` device (no memory, no arithmetic), and the
dimensions that shrank are counted. Custom layers with a registered pruner are therefore covered too.

MACs scale with the same law applied to a layer's largest parameter (a conv's MACs are ``H_out * W_out *
numel(weight)``, a linear layer's ``tokens * numel(weight)``, a norm's ``numel(activation)``, proportional to
its channels), which is exact for convolutions, linear layers and norms. An attention block's own MACs (its
``q @ k^T`` and ``attn @ v`` products, with ``@``, ``matmul``, ``einsum`` or ``scaled_dot_product_attention``)
follow its query channels and its value channels (heads x head size; see
:func:`~prune_explorer.attention.heads.attention_products`), so fewer or narrower heads are predicted exactly too.
Other MACs an op spends outside any prunable layer are kept constant.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

__all__ = ["TensorLaw", "ModelStructure", "meta_clone", "exclusive_macs"]


def meta_clone(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters and buffers are empty ``meta`` tensors (same shapes, no data)."""
    memo = {}
    for t in module.parameters():
        memo[id(t)] = nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"), requires_grad=t.requires_grad)
    for t in module.buffers():
        memo[id(t)] = torch.empty(t.shape, dtype=t.dtype, device="meta")
    return copy.deepcopy(module, memo)


def exclusive_macs(inclusive: Dict[str, int]) -> Dict[str, int]:
    """Turn ``{module name: MACs of it and its submodules}`` into each module's own MACs."""
    out = dict(inclusive)
    for name, macs in inclusive.items():
        if not name:
            continue
        parent = name.rpartition(".")[0]
        if parent in out:
            out[parent] -= macs
    return out


@dataclass
class TensorLaw:
    """``numel(t) = numel0 * prod(k[s] ** e for s, e in exps.items())`` for one parameter tensor."""

    name: str  # qualified parameter name (first one seen)
    numel0: int
    exps: Dict[int, int] = field(default_factory=dict)  # space index -> number of dims that follow that space

    def scale(self, k: np.ndarray) -> float:
        return _scale(self.exps, k)


def _dims_changed(before: Sequence[int], after: Sequence[int]) -> int:
    if len(before) != len(after):
        return sum(1 for a, b in zip(before, after) if a != b) + abs(len(before) - len(after))
    return sum(1 for a, b in zip(before, after) if a != b)


class ModelStructure:
    """Parameter and MAC laws of a traced model (see the module docstring).

    Built once, on the model as it is when the explorer starts (normally unpruned): ``tensor_laws`` describes every
    parameter tensor that some channel space touches, ``const_params`` counts the rest, ``mac_laws`` maps each
    module's own MACs to the exponents of its largest parameter.
    """

    def __init__(self, DG, layer_macs: Optional[Dict[str, int]] = None, total_macs: Optional[int] = None):
        self.DG = DG
        self.model = DG.model
        spaces = DG.spaces
        self.n_spaces = len(spaces)
        self.size0 = np.array([max(s.size, 1) for s in spaces], dtype=np.float64)
        # parameter name <-> tensor identity, for de-duplication of shared tensors
        self._param_names: Dict[int, str] = {}
        for name, p in self.model.named_parameters(remove_duplicate=True):
            self._param_names.setdefault(id(p), name)
        self.total_params0 = int(sum(p.numel() for p in self.model.parameters()))
        self.tensor_laws: Dict[str, TensorLaw] = {}
        self.failed: List[str] = []  # owners whose exponents could not be measured (assumed not to shrink)
        owners: Dict[int, list] = {}
        for s in spaces:
            owners.setdefault(id(s.owner), []).append(s)
        for group in owners.values():
            self._measure_owner(group)
        self.const_params = self.total_params0 - sum(t.numel0 for t in self.tensor_laws.values())
        # MACs: each module's own MACs follow the law of its largest parameter (or of its spaces)
        self.total_macs0 = int(total_macs) if total_macs is not None else None
        self.mac_laws: List[Tuple[str, int, Dict[int, int]]] = []
        self.const_macs = 0
        if layer_macs is not None:
            self._build_mac_laws(exclusive_macs(layer_macs))

    # ---- measuring exponents -----------------------------------------------------------------------------------
    def _measure_owner(self, spaces) -> None:
        owner = spaces[0].owner
        if isinstance(owner, nn.Parameter) or spaces[0].dim is not None:
            name = self._param_names.get(id(owner), spaces[0].name)
            law = self.tensor_laws.setdefault(name, TensorLaw(name, int(owner.numel())))
            for s in spaces:
                law.exps[s.index] = law.exps.get(s.index, 0) + 1
            return
        if not isinstance(owner, nn.Module):
            return
        named = [(n, p) for n, p in owner.named_parameters(remove_duplicate=True)]
        if not named:
            return
        for s in spaces:
            n = s.current_size
            mult = 1
            pr = s.pruner
            if hasattr(pr, "channel_multiple"):
                try:
                    mult = max(1, int(pr.channel_multiple(owner, s.side)))
                except Exception:
                    mult = 1
            if n <= mult:
                # too small to measure: assume every dimension of the layer's size follows the space
                continue
            # remove `mult` channels, one per block (grouped convs and attention heads lose the same offsets)
            tries = [[k * (n // mult) for k in range(mult)], list(range(mult))]
            try:  # a layer that is several equal blocks (nn.MultiheadAttention's heads): the same offset of each
                g = int(pr.get_out_channel_groups(owner)) if hasattr(pr, "get_out_channel_groups") else 1
            except Exception:
                g = 1
            if g > 1 and n % g == 0 and n > g:
                tries.append([k * (n // g) for k in range(g)])
            before = after = None
            for idxs in tries:
                try:
                    clone = meta_clone(owner)
                    before = {n_: tuple(p.shape) for n_, p in clone.named_parameters(remove_duplicate=True)}
                    s.handler(clone, idxs)
                    after = {n_: tuple(p.shape) for n_, p in clone.named_parameters(remove_duplicate=True)}
                    break
                except Exception as exc:  # a pruner that refuses these indices, or cannot run on meta tensors
                    after = None
                    err = f"{s.label}: {type(exc).__name__}: {exc}"
            if after is None:
                self.failed.append(err)
                continue
            for (pname, p) in named:
                b, a = before.get(pname), after.get(pname)
                if b is None or a is None:
                    continue
                e = _dims_changed(b, a)
                if e == 0:
                    continue
                qual = self._param_names.get(id(p))
                if qual is None:
                    continue
                law = self.tensor_laws.setdefault(qual, TensorLaw(qual, int(p.numel())))
                law.exps[s.index] = max(law.exps.get(s.index, 0), e)

    def _build_mac_laws(self, own_macs: Dict[str, int]) -> None:
        modules = dict(self.model.named_modules())
        spaces_by_owner: Dict[int, list] = {}
        for s in self.DG.spaces:
            spaces_by_owner.setdefault(id(s.owner), []).append(s)
        products_of = getattr(self.DG, "attention_products", None)
        products = {p.name: p for p in products_of()} if products_of is not None else {}

        def own_params(m):
            return next(m.parameters(recurse=False), None) is not None

        for name, macs in own_macs.items():
            if not macs:
                continue
            m = modules.get(name)
            exps: Dict[int, int] = {}
            if m is not None:
                own = [(n, p) for n, p in m.named_parameters(recurse=False)]
                own.sort(key=lambda np_: -np_[1].numel())
                law = None
                for _, p in own:
                    law = self.tensor_laws.get(self._param_names.get(id(p), ""))
                    if law is not None:
                        break
                if law is not None:
                    exps = dict(law.exps)
                elif id(m) in spaces_by_owner:  # e.g. a norm without affine parameters
                    sp = spaces_by_owner[id(m)]
                    outs = [s for s in sp if s.side == "out" or s.passthrough]
                    exps = {s.index: 1 for s in (outs or sp)}
            product = products.get(name) if m is not None and not own_params(m) else None
            if product is not None:  # an attention block's own MACs: its q @ k^T and attn @ v products
                qk, av = product.shares()
                self.mac_laws.append((name, int(macs) * qk, {product.query_space: 1}))
                self.mac_laws.append((name, int(macs) * av, {product.value_space: 1}))
            elif exps:
                self.mac_laws.append((name, int(macs), exps))
            else:
                self.const_macs += int(macs)

    # ---- current state --------------------------------------------------------------------------------------------
    def kept_now(self) -> np.ndarray:
        """``k_s`` of the model as it is now (current / original channels of every space)."""
        cur = np.array([s.current_size for s in self.DG.spaces], dtype=np.float64)
        return cur / self.size0

    def params_at(self, k: np.ndarray) -> float:
        return self.const_params + sum(t.numel0 * t.scale(k) for t in self.tensor_laws.values())

    def macs_at(self, k: np.ndarray) -> Optional[float]:
        if self.total_macs0 is None:
            return None
        return self.const_macs + sum(m * _scale(exps, k) for _, m, exps in self.mac_laws)

    # ---- predictions for one group --------------------------------------------------------------------------------
    def group_effect(self, removed: Dict[int, int]) -> Tuple[int, float, Dict[int, int]]:
        """What removing ``removed[space index]`` channels (current counts) changes.

        Returns ``(params removed, MACs removed, {space index: params removed from tensors following it})``.
        Parameters are exact (integer arithmetic on the current shapes); MACs follow :meth:`macs_at`.
        """
        spaces = self.DG.spaces
        cur = {i: spaces[i].current_size for i in removed}
        k_after = {i: (cur[i] - r) / cur[i] if cur[i] else 1.0 for i, r in removed.items()}
        params = dict(self.model.named_parameters(remove_duplicate=True))
        total = 0
        per_space: Dict[int, int] = {}
        for law in self.tensor_laws.values():
            hit = [s for s in law.exps if s in removed]
            if not hit:
                continue
            p = params.get(law.name)
            numel = int(p.numel()) if p is not None else int(round(law.numel0 * law.scale(self.kept_now())))
            new = numel
            for s in law.exps:
                if s in removed:
                    e = law.exps[s]
                    for _ in range(e):
                        new = (new * (cur[s] - removed[s])) // cur[s] if cur[s] else new
            lost = numel - new
            total += lost
            # attribute the loss to the member spaces (split evenly over the spaces it follows, remainder first)
            share, rest = divmod(lost, len(hit))
            for j, s in enumerate(hit):
                per_space[s] = per_space.get(s, 0) + share + (rest if j == 0 else 0)
        k_now = self.kept_now()
        k_new = k_now.copy()
        for i, f in k_after.items():
            k_new[i] = k_now[i] * f
        macs_now, macs_new = self.macs_at(k_now), self.macs_at(k_new)
        macs_removed = (macs_now - macs_new) if macs_now is not None else float("nan")
        return total, macs_removed, per_space


def _scale(exps: Dict[int, int], k: np.ndarray) -> float:
    f = 1.0
    for s, e in exps.items():
        f *= float(k[s]) ** e
    return f
