"""Scoring groups of a meta-device model with weights streamed from a checkpoint.

The plan is walked on a ``meta`` copy of the model (shapes only), exactly as :func:`~prune_explorer.apply_plan`
walks it on a loaded model: same pruner, same group order, same proposals. Only the importance differs in where
the weights come from: :class:`StreamImportance` wraps the user's criterion and, for each group it is asked to
score, swaps the real tensors of the group's members into the meta model (read from the checkpoint and cut as the
earlier groups cut them, :class:`~.keep.KeepTable`), scores, and swaps the meta tensors back.

* a group inside one decoder block (attention heads, MLP width) is scored at once: that block's members are
  loaded, the criterion runs unchanged;
* a group that spans every block (the residual stream: embeddings, every block's projections and norms, the
  final norm and ``lm_head``) is scored block by block, member by member: the criterion's per-member vectors
  (:meth:`~prune_explorer.importance.GroupImportance.member_vectors`) are gathered with one layer loaded at a time
  and combined once (:meth:`~prune_explorer.importance.GroupImportance.combine`): the same reduction and
  normalisation, in the same member order, as when the whole model is in memory;
* a criterion that reads no weights (``RandomImportance``) is called as it is, in the same order, so a seeded run
  draws the same scores.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, Iterable, List, Optional

import torch
import torch.nn as nn

from ..importance.base import GroupImportance, Importance
from ..plan.meta import needs_weights
from .arch import unit_of, unit_order
from .errors import StreamError

__all__ = ["WeightSwapper", "StreamImportance"]


class WeightSwapper:
    """Puts real tensors into a meta-device model for a while (:meth:`loaded`), keeping every Parameter object
    (the graph refers to them) and restoring the meta tensors after.

    Args:
        model: the meta-device model.
        read: ``read(tensor name) -> tensor`` of the checkpoint, already cut to the current shapes.
        release: called after each :meth:`loaded` block (e.g. to unmap the checkpoint's files, so that their pages
            stop counting in the process's resident memory).
        device: where the loaded tensors go (``"cpu"``, ``"cuda"``).
    """

    def __init__(self, model: nn.Module, read: Callable[[str], torch.Tensor], device="cpu",
                 release: Optional[Callable[[], None]] = None):
        self.model = model
        self.read = read
        self.release = release
        self.device = torch.device(device)
        self._name_of: Dict[int, str] = {}
        self.bytes_loaded = 0

    def _index(self) -> None:
        # pruning replaces Parameter objects: names are looked up again when an object is not known
        self._name_of = {}
        for n, m in self.model.named_modules():
            self._name_of.setdefault(id(m), n)
        for n, p in self.model.named_parameters():
            self._name_of.setdefault(id(p), n)

    def name_of(self, layer) -> str:
        """The qualified name of a member's layer (a module or a loose parameter)."""
        name = self._name_of.get(id(layer))
        if name is None or (isinstance(layer, nn.Parameter) and self._param(name) is not layer):
            self._index()
            name = self._name_of.get(id(layer))
        if name is None:
            raise StreamError(f"a group member ({type(layer).__name__}) is not a module or parameter of the model")
        return name

    def tensor_names(self, layer) -> List[str]:
        """The qualified names of the parameters a member's layer holds."""
        name = self.name_of(layer)
        if isinstance(layer, nn.Parameter):
            return [name]
        return [f"{name}.{n}" if name else n for n, _ in layer.named_parameters(recurse=False)]

    def _param(self, name: str) -> nn.Parameter:
        mod, _, leaf = name.rpartition(".")
        return getattr(self.model.get_submodule(mod) if mod else self.model, leaf)

    @contextlib.contextmanager
    def loaded(self, tensor_names: Iterable[str]):
        """The named parameters hold real values inside the ``with`` block (meta ones again after it)."""
        swapped = []
        seen = set()
        try:
            for name in tensor_names:
                p = self._param(name)
                if id(p) in seen:
                    continue
                seen.add(id(p))
                t = self.read(name)
                if tuple(t.shape) != tuple(p.shape):
                    raise StreamError(f"{name}: the checkpoint's tensor cut as planned so far has shape "
                                      f"{tuple(t.shape)} but the model expects {tuple(p.shape)}; the streaming "
                                      "adapters do not follow this pruning")
                real = nn.Parameter(t.to(self.device, p.dtype), requires_grad=p.requires_grad)
                torch.utils.swap_tensors(p, real)
                swapped.append((p, real))
                self.bytes_loaded += t.numel() * t.element_size()
            yield
        finally:
            for p, other in reversed(swapped):
                torch.utils.swap_tensors(p, other)  # p is meta again; ``other`` holds the real values, now dropped
            swapped.clear()
            if self.release is not None:
                self.release()


class StreamImportance(Importance):
    """``inner`` (any criterion) scored on a meta model whose weights are streamed in per group (module doc).

    ``progress(unit, done, total)`` is called while a group spanning several blocks is scored.
    """

    needs_weights = False  # it brings the weights of each group itself

    def __init__(self, inner, swapper: WeightSwapper, progress: Optional[Callable[[str, int, int], None]] = None):
        self.inner = inner
        self.swapper = swapper
        self.progress = progress
        self.shared_groups = 0
        self.local_groups = 0
        self.graph = None  # the pruner's dependency graph, set once built (calibrated criteria anchor to it)

    def __repr__(self) -> str:
        return f"StreamImportance({self.inner!r})"

    def __call__(self, group):
        if not needs_weights(self.inner):
            return self.inner(group)
        sw = self.swapper
        units: Dict[str, List[int]] = {}
        names: Dict[int, List[str]] = {}
        for k, item in enumerate(group.items):
            layer = item.dep.layer
            if not isinstance(layer, (nn.Module, nn.Parameter)):
                continue  # a tensor the model computes (rotary tables): no weights to read
            units.setdefault(unit_of(sw.name_of(layer)), []).append(k)
            names[k] = sw.tensor_names(layer)
        if len(units) <= 1:
            self.local_groups += 1
            with sw.loaded([n for ns in names.values() for n in ns]):
                return self.inner(group)
        from ..calibration.hooked import HookedCalibration

        if not (isinstance(self.inner, GroupImportance)
                and type(self.inner).__call__ in (GroupImportance.__call__, HookedCalibration.__call__)):
            raise StreamError(f"{type(self.inner).__name__} cannot score a group that spans every block (rooted at "
                              f"{group.root_name}) one block at a time. Fix: use a magnitude criterion "
                              "(MagnitudeImportance, LAMPImportance, FPGMImportance), an input-statistics one "
                              "(WandaImportance, FluctuationImportance) or RandomImportance")
        stats = getattr(self.inner, "stats", None)
        if isinstance(self.inner, HookedCalibration):
            if not len(stats):
                raise StreamError(f"{type(self.inner).__name__} has no statistics: pass calibration data")
            stats.anchor(self.graph)  # as HookedCalibration.__call__ does before scoring
        self.shared_groups += 1
        order = sorted(units, key=unit_order)
        vectors, n = [], 0
        for i, u in enumerate(order):
            for k in units[u]:  # one member (layer) at a time: memory of the largest layer, not of a block
                with sw.loaded(names[k]):
                    n, vecs = self.inner.member_vectors(group, lambda j, _item: j == k)
                vectors.extend(vecs)
            if self.progress is not None:
                self.progress(u, i + 1, len(order))
        return self.inner.combine(vectors, n)
