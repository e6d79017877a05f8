"""Every member's power sums of a group read through the held cuts at once: one gather per group.

:meth:`~.held.HeldCuts.power_sums` gives one member's ``sum |w|^p`` per channel from the per-step cache of every
channel's sums of each parameter; a DenseNet group has one member per later layer of its block, so a step asked it
thousands of times. :class:`SpaceSums` keeps, per channel space whose channels own plain rows of their parameters
(a *simple* space, see below), the total over those parameters for *every* channel of the space, written into flat
``float32`` arrays indexed by the graph's channel keys (``space.offset + channel``, as ``Group.member_keys``): one
array per ``(p, bias, gathers)``, ``gathers`` being which of ``Rows.power_sum``'s two ways a read of ``n`` channels
takes (``4 * n < size once cut``). A group's sums are then one gather over its ``member_keys``.

A space is *simple* when every part its channels own (biases only with ``bias``) is the plain rows ``Rows(dim,
idx)`` of a parameter whose held positions along ``dim`` are the space's own (or none), along dims of the space's
size, and no held cut of the parameter is opaque: its reads then raise :class:`~.held.HeldConflict` exactly when a
held cut removes one of the channels read (one gather over the held keys), and its size once cut is the space's.
Other spaces are read member by member (:meth:`~.held.HeldCuts.power_sums`).

A space's totals depend on the held cuts of its parameters along the *other* dims: the held cuts tell
:meth:`SpaceSums.changed` which parameter dim changed, and the totals of the spaces reading that parameter along
another dim (or the same dim without it being their own) are dropped, recomputed on their next read. A parameter
changed in place (its ``_version``) is read again too. The values are bit for bit those of ``power_sums``: the same
cached every-channel vectors, added in the parts' order in float32.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import numpy as np

from ..graph.model.group_members import layout_of

__all__ = ["SpaceSums", "NOT_PLAIN", "OWNS_NOTHING"]

#: a member read one by one (:meth:`~.held.HeldCuts.power_sums` or its parts)
NOT_PLAIN = None
#: a member whose channels own no part (biases only, ``bias=False``): not scored
OWNS_NOTHING = ()


class _Space:
    """A simple space's read: ``layout`` ``[(param, dim)]`` (the parts counted, in order), ``size`` its channels
    (uncut), ``offset`` its first key, ``versions`` of the parameters (``params``) when ``have`` (``{(p,
    gathers)}``) was written; ``single``: the parameter when there is one (its version is ``versions``, an int)."""

    __slots__ = ("layout", "params", "size", "offset", "versions", "have", "single")

    def __init__(self, layout, size: int, offset: int):
        self.layout, self.size, self.offset = layout, size, offset
        self.params = [param for param, _ in layout]
        self.single = self.params[0] if len(self.params) == 1 else None
        self.versions = self._versions()
        self.have = set()

    def _versions(self):
        return self.single._version if self.single is not None else [param._version for param in self.params]

    def check(self) -> None:
        """Forget what was written when a parameter changed in place since."""
        versions = self._versions()
        if versions != self.versions:
            self.versions, self.have = versions, set()


_NOT_SIMPLE = object()


class SpaceSums:
    """The per-step cache of each simple space's power sums over the graph's channel keys (module docstring).
    Owned by a :class:`~.held.HeldCuts` (``held``), cleared with it."""

    def __init__(self, held):
        self._held = held
        self._spaces: Dict[bool, Dict[int, object]] = {False: {}, True: {}}  # bias -> space index -> _Space/_NOT_SIMPLE
        self._readers: Dict[int, List[Tuple[bool, int, int]]] = {}  # id(param) -> [(bias, space index, dim)]
        self._flat: Dict[tuple, np.ndarray] = {}  # (p, bias, gathers) -> float32 [graph channel keys]

    def clear(self) -> None:
        self._spaces[False].clear()
        self._spaces[True].clear()
        self._readers.clear()
        self._flat.clear()

    # ---- invalidation --------------------------------------------------------------------------------------------
    def changed(self, pid: int, dim: int, space: Optional[int] = None) -> None:
        """The held cuts of parameter ``pid`` along ``dim`` changed: drop the totals that may depend on it. ``space``:
        the index of the space whose own positions those are (its reads along ``dim`` stay valid), None for any other
        change (a dim's own positions, an opaque cut): every space reading the parameter is dropped."""
        readers = self._readers.get(pid)
        if not readers:
            return
        keep = []
        for entry in readers:
            bias, si, d = entry
            if space is not None and d == dim and si == space:
                keep.append(entry)
            else:
                self._spaces[bias].pop(si, None)
        self._readers[pid] = keep

    # ---- reading -------------------------------------------------------------------------------------------------
    def _space(self, dep, idx: np.ndarray, bias: bool):
        held = self._held
        s = dep.space
        spaces = self._spaces[bias]
        layout = held._reads.get(s.index, False)
        if layout is False:
            layout = held._reads[s.index] = held._read_layout(dep, idx)
        if layout is None:
            spaces[s.index] = _NOT_SIMPLE
            return _NOT_SIMPLE
        own = held._spaces.get(s.index)
        size = s.current_size
        used = []
        simple = True
        for param, d, is_bias in layout:
            if is_bias and not bias:
                continue
            pid = id(param)
            entry = held._params.get(pid)
            r = entry[1].get(d) if entry is not None else None
            if pid in held._opaque or param.shape[d] != size or (r is not None and r is not own) or (
                    r is None and own is not None and own.count):
                simple = False
            used.append((param, d))
        if not simple:  # stays so until the held cuts are cleared (cuts only add positions and opaque tensors)
            spaces[s.index] = _NOT_SIMPLE
            return _NOT_SIMPLE
        entry = spaces[s.index] = _Space(used, size, s.offset)
        for param, d in used:
            self._readers.setdefault(id(param), []).append((bias, s.index, d))
        return entry

    def _fill(self, sp: _Space, p: float, bias: bool, gathers: bool, n_keys: int) -> None:
        """Write ``sp``'s totals for ``(p, gathers)`` into the flat array (the cached every-channel vectors)."""
        held = self._held
        total = None
        for param, d in sp.layout:
            s = held._every_sums(param, d, p, gathers)
            total = s if total is None else total + s
        flat = self._flat.get((p, bias, gathers))
        if flat is None or flat.size != n_keys:
            flat = self._flat[(p, bias, gathers)] = np.zeros(n_keys, dtype=np.float32)
        flat[sp.offset: sp.offset + sp.size] = total
        sp.have.add((p, gathers))

    def read(self, group, items, wanted, sizes: np.ndarray, p: float, bias: bool):
        """``(sums, how)`` for ``group``'s members ``items`` (``group.items``, ``sizes[k]`` channels each):
        ``how[k]`` is :data:`NOT_PLAIN` (read member ``k`` one by one; also for members not ``wanted[k]``),
        :data:`OWNS_NOTHING`, or True: its sums are ``sums`` at its slice of ``group.member_keys`` (float32, the
        concatenation of every member's). Raises :class:`~.held.HeldConflict` when a held cut removes a channel a
        plain member reads."""
        held = self._held
        graph = getattr(group, "graph", None)
        if graph is None or not hasattr(group, "member_keys"):  # not a graph group: member by member
            return None, [NOT_PLAIN] * len(items)
        bias = bool(bias)
        spaces, own_pos = self._spaces[bias], held._spaces
        n_keys = graph.alive_mask.size
        lay = layout_of(group, items)
        space_of = lay.space.tolist()
        how = [NOT_PLAIN] * len(items)
        every_plain = True  # every member with channels is plain (the conflict check reads all of the keys)
        ways = set()  # the ways (gathered or not) the plain members take
        whole, gathered = (p, False), (p, True)
        for k, (si, want, n) in enumerate(zip(space_of, wanted, sizes.tolist())):
            if not want or n < 2:
                every_plain = every_plain and not n
                continue
            sp = spaces.get(si)
            if sp is None:
                it = items[k]
                sp = self._space(it.dep, it.idx_array, bias)
            if sp is _NOT_SIMPLE:
                every_plain = False
                continue
            if not sp.layout:
                how[k] = OWNS_NOTHING
                every_plain = False
                continue
            pos = own_pos.get(si)
            g = 4 * n < _cut_size(sp, pos)
            single = sp.single
            if single is None or single._version != sp.versions:  # changed in place: read again
                sp.check()
            if (gathered if g else whole) not in sp.have:
                self._fill(sp, p, bias, g, n_keys)
            how[k] = True
            ways.add(g)
        if not ways:
            return None, how
        keys = lay.keys
        held_keys = held._keys
        if held_keys is not None and held_keys.size == n_keys:
            hit = held_keys[keys]
            if not every_plain:
                hit &= np.repeat(np.fromiter([h is True for h in how], dtype=bool, count=len(how)), sizes)
            if np.logical_or.reduce(hit):  # (hit.any() without its Python wrapper)
                from .held import HeldConflict  # (held imports this module)

                raise HeldConflict("a held cut removes channels this decision reads")
        if len(ways) == 1:
            return self._flat[(p, bias, ways.pop())][keys], how
        mode = np.fromiter([h is True and 4 * n < _cut_size(spaces[si], own_pos.get(si))
                            for h, si, n in zip(how, space_of, sizes.tolist())], dtype=bool, count=len(how))
        return np.where(np.repeat(mode, sizes), self._flat[(p, bias, True)][keys],
                        self._flat[(p, bias, False)][keys]), how


def _cut_size(sp: _Space, pos) -> int:
    """``sp``'s channel count once its held cuts (``pos``, or None) are applied."""
    return sp.size - pos.count if pos is not None else sp.size
