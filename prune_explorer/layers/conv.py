"""Pruning of convolutions: Conv1d/2d/3d and ConvTranspose1d/2d/3d, dense, grouped and depthwise.

Weight layouts (``G = groups``, ``k...`` the kernel dims)::

    ConvNd           weight (out_channels, in_channels / G, k...)
    ConvTransposeNd  weight (in_channels, out_channels / G, k...)
    bias             (out_channels,)

Three kinds of convolution, told apart by ``groups``:

dense (``groups == 1``)
    Output channel ``o`` is weight row ``o`` (column ``o`` of dim 1 when transposed); input channel ``i`` is
    column ``i`` of dim 1 (row ``i`` when transposed). Either side can be pruned freely.

depthwise (``groups == in_channels > 1``, optionally with a channel multiplier ``k = out_channels / groups``)
    Input channel ``c`` is its own group and owns the ``k`` consecutive output channels ``c*k .. c*k+k-1``.
    Input and output are therefore one space (:meth:`ConvPruner.in_out_coupled` is True):

    * ``prune_in_channels(conv, [c, ...])`` removes input channel ``c`` *and* its ``k`` output channels, and
      decreases ``groups`` by the number of input channels removed;
    * ``prune_out_channels(conv, idxs)`` accepts only whole blocks of ``k`` output channels (for ``k == 1``:
      any channels) and removes the matching input channels the same way.

    With ``k == 1`` (the usual depthwise conv) both functions do exactly the same thing: call one of them.
    ``prune_out_channels`` also accepts the same number ``m < k`` of outputs from *every* block (when the count
    removed is a multiple of ``k``, as every removal of output channels must be): that reduces the multiplier to
    ``k - m`` and keeps the inputs and ``groups``.

grouped (``1 < groups < in_channels``)
    ``groups`` stays unchanged, so every group must keep the same number of channels:

    * input side: with ``a = in_channels / groups`` channels per group, the removed indices must be the same
      within-group offsets ``O`` in every group, i.e. ``idxs == {q*a + o for q in range(groups) for o in O}``
      (the weight has only ``a`` columns, shared by all groups);
    * output side: the same *number* of channels must be removed from every group of ``out_channels / groups``
      consecutive channels; the offsets may differ between groups.

Example (depthwise with multiplier 2: input channel 1 owns output channels 2 and 3)::

    >>> import torch, torch.nn as nn
    >>> dw = nn.Conv2d(4, 8, 3, groups=4)
    >>> prune_depthwise_conv_in_channels(dw, [1])
    Conv2d(3, 6, kernel_size=(3, 3), stride=(1, 1), groups=3)
    >>> dw(torch.randn(1, 3, 5, 5)).shape
    torch.Size([1, 6, 3, 3])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .base import BasePruningFunc, normalize_side
from .edits import CutSpec, LayerEdit, index_array, index_tensor, keep_array
from .family import LayerFamily, register_family
from .slicing import Part, Rows, grouped, param_of

__all__ = [
    "CONV_PRUNER",
    "DEPTHWISE_CONV_PRUNER",
    "CONV_FAMILY",
    "ConvPruner",
    "DepthwiseConvPruner",
    "conv_kind",
    "prune_conv_out_channels",
    "prune_conv_in_channels",
    "prune_convtranspose_out_channels",
    "prune_convtranspose_in_channels",
    "prune_depthwise_conv_out_channels",
    "prune_depthwise_conv_in_channels",
]

_ConvNd = nn.modules.conv._ConvNd


def conv_kind(layer: nn.Module) -> str:
    """``"dense"`` (groups == 1), ``"depthwise"`` (groups == in_channels > 1) or ``"grouped"`` (otherwise).

    >>> conv_kind(nn.Conv2d(4, 4, 3, groups=4)), conv_kind(nn.Conv2d(4, 8, 3, groups=2))
    ('depthwise', 'grouped')
    """
    g = layer.groups
    if g == 1:
        return "dense"
    if g == layer.in_channels:
        return "depthwise"
    return "grouped"


def _group_counts(idxs: Sequence[int], per_group: int, groups: int) -> list[int]:
    """How many of the (checked, in range) channels ``idxs`` fall in each block of ``per_group`` channels."""
    return np.bincount(index_array(idxs) // per_group, minlength=groups).tolist()


def _reduces_multiplier(idxs: Sequence[int], layer: nn.Module) -> bool:
    """True if output channels ``idxs`` of a depthwise conv with channel multiplier ``k > 1`` take the same number
    ``0 < m < k`` of outputs from every input channel's block: the conv keeps its inputs and groups, and its
    multiplier becomes ``k - m`` (what a graph traced while the conv was grouped asks once its inputs are cut to one
    per group)."""
    k = layer.out_channels // layer.groups
    if k <= 1:
        return False
    counts = _group_counts(idxs, k, layer.groups)
    return len(set(counts)) == 1 and 0 < counts[0] < k


def _same_offsets(idxs: np.ndarray, per_group: int, groups: int) -> bool:
    """Whether the (checked, sorted) channels ``idxs`` are the same offsets in each of the ``groups`` blocks of
    ``per_group`` channels."""
    counts = np.bincount(idxs // per_group, minlength=groups)
    if (counts != counts[0]).any():
        return False
    offsets = (idxs % per_group).reshape(groups, -1) if counts[0] else None
    return offsets is None or bool((offsets == offsets[0]).all())


class ConvPruner(BasePruningFunc):
    """Prunes ``nn.Conv{1,2,3}d`` and ``nn.ConvTranspose{1,2,3}d`` (dense, grouped and depthwise).

    Output side: ``out_channels`` channels (weight dim 0, or dim 1 for transposed convs; bias).
    Input side: ``in_channels`` channels (weight dim 1, or dim 0 for transposed convs).
    See the module docstring for the rules of grouped and depthwise convolutions.

    >>> conv = nn.ConvTranspose2d(6, 4, 2)
    >>> ConvPruner().prune_in_channels(conv, [0, 1])
    ConvTranspose2d(4, 4, kernel_size=(2, 2), stride=(1, 1))
    >>> tuple(conv.weight.shape)  # (in_channels, out_channels / groups, kH, kW)
    (4, 4, 2, 2)
    """

    TARGET_MODULES = (_ConvNd,)

    CHANNEL_ATTRS = ("out_channels", "in_channels")
    COMPOSABLE_CUTS = True

    def specialize(self, layer: nn.Module) -> BasePruningFunc:
        """The depthwise pruner for a depthwise conv, else ``self``. A subclass (a customised pruner) is
        always returned as is: it handles every conv it is registered for."""
        if type(self) is ConvPruner and conv_kind(layer) == "depthwise":
            return DEPTHWISE_CONV_PRUNER
        return self

    def variants(self) -> tuple:
        return (self, DEPTHWISE_CONV_PRUNER) if type(self) is ConvPruner else (self,)

    def in_out_coupled(self, layer: nn.Module) -> bool:
        return conv_kind(layer) == "depthwise"

    def channel_multiple(self, layer: nn.Module, side: str) -> int:
        kind = conv_kind(layer)
        if kind == "dense":
            return 1
        if kind == "depthwise":
            return layer.out_channels // layer.groups if normalize_side(side) == "out" else 1
        return layer.groups

    def get_out_channel_groups(self, layer: nn.Module) -> int:
        return layer.groups

    def get_in_channel_groups(self, layer: nn.Module) -> int:
        return layer.groups

    def channel_multiplier(self, layer: nn.Module) -> int:
        """Output channels per group (``out_channels // groups``); the depthwise channel multiplier."""
        return layer.out_channels // layer.groups

    def coupled_indices(self, layer: nn.Module, idxs: Sequence[int], from_side: str) -> list[int]:
        """For a depthwise conv, map channel indices from one side to the other.

        ``from_side="in"``: input channel ``c`` -> output channels ``c*k .. c*k+k-1``;
        ``from_side="out"``: whole blocks of output channels -> their input channels (checked).

        >>> DEPTHWISE_CONV_PRUNER.coupled_indices(nn.Conv1d(3, 6, 1, groups=3), [2], "in")
        [4, 5]
        """
        if conv_kind(layer) != "depthwise":
            raise self.error(layer, None, None, "only depthwise convolutions couple input and output channels",
                             "prune the two sides of this layer separately")
        k = self.channel_multiplier(layer)
        if normalize_side(from_side) == "in":
            idxs = self.check(layer, idxs, "in")
            return [c * k + m for c in idxs for m in range(k)]
        idxs = self.check(layer, idxs, "out")
        return sorted({o // k for o in idxs})

    def check_structure(self, layer: nn.Module, idxs: list[int], side: str) -> None:
        kind = conv_kind(layer)
        g = layer.groups
        if kind == "depthwise" and side == "out":
            k = self.channel_multiplier(layer)
            if k > 1:
                blocks = sorted({o // k for o in idxs})
                wanted = [c * k + m for c in blocks for m in range(k)]
                if wanted != idxs and not _reduces_multiplier(idxs, layer):
                    partial = [c for c in blocks if any(c * k + m not in set(idxs) for m in range(k))]
                    raise self.error(
                        layer, side, idxs,
                        f"this depthwise conv has channel multiplier {k}: input channel c owns output channels "
                        f"c*{k}..c*{k}+{k - 1}, and output channels can only be removed in whole blocks of {k} "
                        f"(which also removes input channel c); the blocks of input channels {partial} are "
                        "only partly listed",
                        "list all the outputs of each input channel removed, or prune the input channels "
                        "(prune_depthwise_conv_in_channels) instead",
                    )
        elif kind == "grouped" and side == "in":
            a = layer.in_channels // g
            if not _same_offsets(index_array(idxs), a, g):
                offsets = [sorted(i - q * a for i in idxs if i // a == q) for q in range(g)]
                shown = {q: o for q, o in enumerate(offsets)}
                raise self.error(
                    layer, side, idxs,
                    f"grouped conv (groups={g}, {a} input channels per group) shares its {a} weight columns "
                    "between all groups, so the same within-group offsets must be removed from every group "
                    f"(idxs = {{q*{a} + o : q in range({g}), o in O}}); got offsets per group {shown}",
                    f"remove the same offsets from each group, e.g. "
                    f"{[q * a + o for q in range(g) for o in offsets[0]][:12]}",
                )
        elif kind == "grouped" and side == "out":
            b = layer.out_channels // g
            counts = _group_counts(idxs, b, g)
            if len(set(counts)) != 1:
                raise self.error(
                    layer, side, idxs,
                    f"grouped conv (groups={g}, {b} output channels per group) keeps groups={g}, so every group "
                    f"must lose the same number of output channels; got {counts} removed per group",
                    f"remove the same number of channels from each block of {b} consecutive output channels",
                )

    # ---- pruning ----------------------------------------------------------------------------------------

    def cut_spec(self, layer: nn.Module, idxs: list[int], side: str) -> CutSpec | None:
        """The removal of channels ``idxs`` of ``side`` as selections (see the module docstring for the three kinds
        of convolution); None for the output channels of a grouped transposed conv (each group keeps its own
        offsets of the weight's dim 1: not one selection per dim, see :meth:`remove`)."""
        kind = conv_kind(layer)
        if kind == "depthwise" and side == "out" and _reduces_multiplier(idxs, layer):
            return self._out_spec(layer, idxs, "grouped")  # the same count from every block: groups stay
        if kind == "depthwise":  # one space: input channel c owns outputs c*k .. c*k+k-1
            k = self.channel_multiplier(layer)
            return self._depthwise_spec(layer, np.unique(index_array(idxs) // k) if side == "out" and k > 1 else idxs)
        if side == "out":
            return self._out_spec(layer, idxs, kind)
        return self._in_spec(layer, idxs, kind)

    def remove(self, layer: nn.Module, idxs: list[int], side: str) -> None:
        """Remove channels ``idxs`` of ``side``: :meth:`cut_spec`, or for the output channels of a grouped transposed
        conv, a weight rebuilt group by group.

        >>> ConvPruner().prune_out_channels(nn.Conv1d(2, 5, 3), [4]).out_channels
        4
        >>> conv = nn.Conv2d(4, 4, 1, groups=2)   # 2 input channels per group: remove offset 1 of each
        >>> ConvPruner().prune_in_channels(conv, [1, 3])
        Conv2d(2, 4, kernel_size=(1, 1), stride=(1, 1), groups=2)
        """
        spec = self.cut_spec(layer, idxs, side)
        if spec is not None:
            spec.apply()
            return
        keep = keep_array(layer.out_channels, idxs)  # grouped transposed: (in, out/G, k...)
        g, a, b = layer.groups, layer.in_channels // layer.groups, layer.out_channels // layer.groups
        offs = [[o - q * b for o in keep if o // b == q] for q in range(g)]

        def per_group(w: torch.Tensor) -> torch.Tensor:
            parts = [torch.index_select(w[q * a:(q + 1) * a], 1, index_tensor(offs[q], w.device)) for q in range(g)]
            return torch.cat(parts, 0)

        edit = LayerEdit().derive(layer, "weight", per_group)
        edit.select(layer, "bias", (0, keep)).set(layer, "out_channels", len(keep))
        self.select_per_out_channel(layer, edit, keep)
        edit.apply()

    def _out_spec(self, layer: nn.Module, idxs: list[int], kind: str) -> CutSpec | None:
        if layer.transposed and kind != "dense":
            return None
        keep = keep_array(layer.out_channels, idxs)
        spec = CutSpec().select(layer, "weight", (1 if layer.transposed else 0, keep))
        spec.select(layer, "bias", (0, keep)).set(layer, "out_channels", len(keep))
        self.select_per_out_channel(layer, spec, keep)
        return spec

    def _in_spec(self, layer: nn.Module, idxs: list[int], kind: str) -> CutSpec:
        keep = keep_array(layer.in_channels, idxs)
        if layer.transposed or kind == "dense":
            weight_keep = (0 if layer.transposed else 1, keep)
        else:  # grouped: the weight stores one group's inputs; the same offsets leave every group
            a = layer.in_channels // layer.groups
            arr = index_array(idxs)
            weight_keep = (1, keep_array(a, arr[arr < a]))
        return CutSpec().select(layer, "weight", weight_keep).set(layer, "in_channels", len(keep))

    def _depthwise_spec(self, layer: nn.Module, chans) -> CutSpec:
        """Remove input channels ``chans`` (sorted, unique) and their outputs."""
        k = self.channel_multiplier(layer)
        keep_in = keep_array(layer.in_channels, chans)
        if k == 1:
            keep_out = keep_in
        else:
            drop = index_array(chans)
            keep_out = keep_array(layer.out_channels, (drop[:, None] * k + np.arange(k)).reshape(-1))
        spec = CutSpec().select(layer, "weight", (0, keep_in if layer.transposed else keep_out))
        spec.select(layer, "bias", (0, keep_out)).set(layer, "in_channels", len(keep_in))
        spec.set(layer, "out_channels", len(keep_out)).set(layer, "groups", len(keep_in))
        self.select_per_out_channel(layer, spec, keep_out)
        return spec

    def select_per_out_channel(self, layer: nn.Module, edit, keep_out) -> None:
        """Add to ``edit`` (a :class:`~.edits.CutSpec` or :class:`~.edits.LayerEdit`: its ``select``) the layer's
        other per-output-channel tensors (kept entries ``keep_out``); none here (a conv subclass with a per-channel
        gain, :mod:`.timm_std_conv`, overrides it)."""


class DepthwiseConvPruner(ConvPruner):
    """Prunes depthwise convolutions (``groups == in_channels > 1``); input and output are one space.

    ``prune_in_channels(conv, [c])`` removes input channel ``c``, its ``k = out_channels / groups`` output
    channels ``c*k .. c*k+k-1`` and one group. ``prune_out_channels`` takes output-channel indices, in whole
    blocks of ``k``. Raises :class:`~prune_explorer.errors.PruningError` for a non-depthwise conv.

    >>> dw = nn.Conv2d(3, 3, 3, groups=3)
    >>> prune_depthwise_conv_out_channels(dw, [0])
    Conv2d(2, 2, kernel_size=(3, 3), stride=(1, 1), groups=2)
    """

    COMPOSABLE_CUTS = True

    def specialize(self, layer: nn.Module) -> BasePruningFunc:
        return self

    def check_layer(self, layer: nn.Module, side: str) -> None:
        super().check_layer(layer, side)
        if not isinstance(layer, _ConvNd) or conv_kind(layer) != "depthwise":
            raise self.error(
                layer, side, None, "it is not a depthwise convolution (groups must equal in_channels > 1)",
                "use prune_conv_out_channels / prune_conv_in_channels",
            )


CONV_PRUNER = ConvPruner()
DEPTHWISE_CONV_PRUNER = DepthwiseConvPruner()


def conv_channel_map(ctx, module: nn.Module, name: str, call, x) -> None:
    """Channels on dim 1 (dim 0 unbatched). Depthwise: one space, each output channel is its input channel; with a
    channel multiplier ``k`` the ``k`` outputs of input channel ``c`` are one unit with it. Grouped: every group
    keeps the same within-group offsets (weight dim 1 is shared by all groups)."""
    out = call.outputs[0]
    cdim = 1 if x.ndim == module.weight.ndim else 0
    batch = {0} if cdim == 1 else set()
    k = module.out_channels // module.in_channels if module.out_channels % module.in_channels == 0 else 0
    if conv_kind(module) == "depthwise" and (k == 1 or (k > 1 and not module.transposed)):
        # one space (pruned through its output side, in whole blocks): input channel c owns outputs c*k .. c*k+k-1
        ids = ctx.channels(module, name, "out", passthrough=True)
        if k > 1:
            rows = ids.reshape(module.in_channels, k)
            ctx.tie_groups(rows.t().reshape(-1), k)  # the k outputs of an input channel go together
            ctx.consume(x, cdim, rows[:, 0].contiguous(), name)  # ... with that input channel
        else:
            ctx.consume(x, cdim, ids, name)
        ctx.label(out, cdim, ids, ctx.carried(x, out, cdim, batch))
        return
    i_ids, o_ids = ctx.channels(module, name, "in"), ctx.channels(module, name, "out")
    ctx.consume(x, cdim, i_ids, name)
    if module.groups > 1:
        ctx.tie_groups(i_ids, module.groups)
        ctx.tie_groups(o_ids, module.groups)
    ctx.fix_other_dims(x, cdim, batch, f"{name} mixes a dim that holds channels")
    ctx.label(out, cdim, o_ids, ctx.carried(x, out, cdim, batch))


def conv_parts(layer: nn.Module, space, idx) -> list[Part]:
    """Out: weight rows (dim 1 when transposed) and bias; in: weight dim 1 (dim 0 when transposed); a grouped
    conv's side stored once per group is read through :func:`~.slicing.grouped`; depthwise: weight[c], bias[c]."""
    w = param_of(layer, "weight")
    transposed = bool(getattr(layer, "transposed", False))
    g = layer.groups
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    if space.passthrough:  # depthwise: weight dim 0 holds the channel either way (in = out = groups)
        return [Part(w, Rows(0, idx), False)] + _conv_bias(layer, idx)
    if space.side == "out":
        sel = Rows(out_dim, idx) if g == 1 or not transposed else grouped(g, out_dim, in_dim, idx)
        return [Part(w, sel, False)] + _conv_bias(layer, idx)
    sel = Rows(in_dim, idx) if g == 1 or transposed else grouped(g, in_dim, out_dim, idx)
    return [Part(w, sel, False)]  # (the bias belongs to the output channels: not read for the inputs)


def _conv_bias(layer: nn.Module, idx) -> list[Part]:
    """``[bias[c]]`` of output channels ``idx`` (none without a bias)."""
    b = param_of(layer, "bias")
    return [Part(b, Rows(0, idx), True)] if b is not None else []


CONV_FAMILY = register_family(LayerFamily(
    "conv", CONV_PRUNER, channel_map=conv_channel_map, parts=conv_parts, root=True,
    functional_ops=("conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"),
    standard_types=(nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d),
))

prune_conv_out_channels, prune_conv_in_channels = CONV_PRUNER.pruning_fns()
# Transposed convolutions are handled by the same pruner (it reads ``layer.transposed``).
prune_convtranspose_out_channels, prune_convtranspose_in_channels = CONV_PRUNER.pruning_fns()
prune_depthwise_conv_out_channels, prune_depthwise_conv_in_channels = DEPTHWISE_CONV_PRUNER.pruning_fns()
