"""Growing regularization (Wang et al., "Neural Pruning via Growing Regularization", ICLR 2021).

Each channel ``c`` of each group carries its own L2 coefficient ``reg_c``, starting at ``reg``. During sparse training
:meth:`GrowingRegPruner.update_reg` raises the coefficients of the least important channels fastest
(``reg_c += delta_reg * (max s - s_c) / (max s - min s)``, ``s`` the group's importance scores), and
:meth:`GrowingRegPruner.regularize` adds the penalty's gradient ``reg_c * w`` to every weight channel ``c`` owns in
every member of the group (conv/linear rows and columns, norm scales, ...). The growing penalty drives the weights the
pruner will remove towards zero before they are removed, so pruning them costs little accuracy::

    pruner = pe.pruner.GrowingRegPruner(model, x, pe.importance.GroupMagnitudeImportance(), reg=1e-5,
                                        delta_reg=1e-5, pruning_ratio=0.5, ignored_layers=[model.fc])
    for it, (x, y) in enumerate(loader):
        loss_fn(model(x), y).backward()
        pruner.regularize(model)          # after backward, before optimizer.step()
        optimizer.step(); optimizer.zero_grad()
        if it % 10 == 0:
            pruner.update_reg()           # grow the coefficients of the unimportant channels
    pruner.step()

After the model is pruned the groups are listed again and every coefficient restarts at ``reg``
(:meth:`GrowingRegPruner.update_regularizer`, called automatically when the graph changed), as in Torch-Pruning.
"""

from __future__ import annotations

from typing import Dict, List, Optional

import torch
import torch.nn as nn

from ..graph import Group
from . import regularizers
from .base_pruner import BasePruner

__all__ = ["GrowingRegPruner"]


class GrowingRegPruner(BasePruner):
    """:class:`BasePruner` with growing L2 regularization (see the module docstring).

    Args (besides :class:`BasePruner`'s):
        reg: the starting coefficient of every channel.
        delta_reg: the most a coefficient grows per :meth:`update_reg` (the least important channel of a group grows
            by ``delta_reg``, the most important by 0).

    Attributes:
        group_reg: ``{group: coefficients}``, one float tensor per group listed for regularization, in
            ``group.root_idxs`` order.
    """

    def __init__(self, model: nn.Module, example_inputs, importance, reg: float = 1e-5, delta_reg: float = 1e-5,
                 **kwargs):
        for name, value in (("reg", reg), ("delta_reg", delta_reg)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                from .config import PrunerConfigError

                raise PrunerConfigError(f"{name}={value!r} must be a number >= 0 (an L2 coefficient). "
                                        f"Fix: pass e.g. {name}=1e-5")
        super().__init__(model, example_inputs, importance, **kwargs)
        self.base_reg = float(reg)
        self.delta_reg = float(delta_reg)
        self.group_reg: Dict[Group, torch.Tensor] = {}
        self._groups: List[Group] = []
        self.update_regularizer()

    @property
    def reg(self) -> float:
        """The starting coefficient (Torch-Pruning calls it ``base_reg``)."""
        return self.base_reg

    def update_regularizer(self) -> None:
        """List the groups again (as the model is now) and restart every coefficient at ``reg``."""
        super().update_regularizer()
        self._groups = list(self._reg_groups)
        self.group_reg = {g: torch.full((len(g.root_idxs),), self.base_reg) for g in self._groups}

    def _groups_now(self) -> List[Group]:
        self._regularizer_groups()  # re-lists (and resets) when the model was pruned since
        return self._groups

    def update_reg(self) -> None:
        """Grow each group's coefficients: ``reg_c += delta_reg * (max s - s_c) / (max s - min s + 1e-8)`` with ``s``
        the group's importance scores (groups the importance cannot score, or scores with NaN, are left as they are)."""
        for group in self._groups_now():
            imp = self.estimate_importance(group)
            if imp is None or torch.isnan(imp).any():
                continue
            standardized = (imp.max() - imp) / (imp.max() - imp.min() + 1e-8)
            self.group_reg[group] = self.group_reg[group] + self.delta_reg * standardized

    def regularize(self, model: Optional[nn.Module] = None, bias: bool = False) -> None:
        """Add ``reg_c * w`` to the gradient of every weight channel ``c`` owns, in every group (call after
        ``loss.backward()``, before ``optimizer.step()``). ``bias=True`` regularizes biases (and norm shifts) too.
        ``model`` is accepted for Torch-Pruning's signature; the pruner's own model is regularized."""
        for group in self._groups_now():
            coefficients = self.group_reg.get(group)
            if coefficients is not None and coefficients.numel():
                regularizers.weighted_channel_l2(group, coefficients, bias=bias)
