"""What the dependency-graph view draws and where it looks: plain Python, no widgets.

:class:`GraphState` is the graph view's controller. It decides

* **which boxes are drawn**: blocks collapse by module path (``layer3.1`` is one box until it is expanded);
  a model opens at its top-level stages (descending through wrappers such as DenseNet's ``features``), level
  by level while the drawing stays under ``max_items`` boxes; collapsed blocks show how many layers and
  parameters they hold;
* **how they are connected**: channel-preserving element-wise operations (activations, dropout, pooling) are
  drawn as the edge they are, unless ``show_elementwise``; a concatenation whose inputs include every input
  of an earlier one (DenseNet's growing feature list) takes a single dashed edge from that earlier one
  instead of the whole fan-in, and no box receives more than :data:`FAN_IN_LIMIT` edges (the others are
  counted in its label);
* **where the viewport goes** (:attr:`GraphState.target`): the current group by default, the block just
  expanded, the layer just searched for (also highlighted), or nowhere (the front end keeps the view where it
  was, anchored on the box under its centre);
* **what is selected** (a clicked or searched layer, whose groups and ignore toggle the view shows).

The front end only renders the SVG and reports clicks; every decision is taken here, so tests drive this class
directly. Element ids in the SVG: ``pe-n-<layer>`` (a layer or an operation), ``pe-b-<path>`` (a collapsed
block), ``pe-c-<path>`` (an expanded block, drawn as a cluster).

Example::

    >>> import torch, torch.nn as nn
    >>> from prune_explorer.explorer import ExplorerController
    >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Sequential(nn.Conv2d(8, 8, 3), nn.ReLU()), nn.Conv2d(8, 4, 3))
    >>> gs = GraphState(ExplorerController(net, torch.randn(1, 3, 16, 16), ignored_layers=[]))
    >>> sorted(gs.blocks)
    ['1']
    >>> gs.search("1.0").found
    '1.0'
    >>> gs.target.kind, gs.target.element
    ('search', 'pe-n-1.0')
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Set, Tuple

from .graph_blocks import (ELEMENTWISE_OPS, assign_blocks, block_prefixes, container_blocks,
                           parent_block)
from .graph_dot import FAN_IN_LIMIT, GraphDrawing, render_svg

__all__ = ["GraphState", "ViewTarget", "SearchResult", "GraphStateError", "DEFAULT_MAX_ITEMS",
           # drawn by .graph_dot, placed in blocks by .graph_blocks (importable from here too)
           "render_svg", "FAN_IN_LIMIT", "assign_blocks", "container_blocks", "ELEMENTWISE_OPS"]

#: Boxes the opening drawing may hold (blocks expand level by level while the drawing stays under it).
DEFAULT_MAX_ITEMS = 60
_WRAPPER_SHARE = 0.6  # a block holding this share of the nodes is opened even when its level does not fit


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s) or "_"


@dataclass(frozen=True)
class ViewTarget:
    """Where the front end should look: the SVG element ``element`` (``""``: keep the view as it is).

    ``kind`` says why: ``"current"`` (the current group), ``"expanded"`` (a block just opened), ``"collapsed"``,
    ``"search"`` (a found layer), ``"overview"`` (fit the whole drawing) or ``"keep"``. ``seq`` grows with every
    new target, so asking for the same element twice moves the view twice.
    """

    element: str = ""
    kind: str = "keep"
    seq: int = 0

    def as_dict(self) -> dict:
        return {"element": self.element, "kind": self.kind, "seq": self.seq}


@dataclass
class SearchResult:
    """What a search found: ``found`` is a layer name or a block path (None when nothing matched)."""

    query: str
    found: Optional[str]
    matches: List[str] = field(default_factory=list)
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.found is not None


class GraphStateError(ValueError):
    """A request the graph view refuses (an unknown block or element)."""


class GraphState(GraphDrawing):
    """The graph view's state and decisions (see the module docstring).

    Args:
        controller: the :class:`~prune_explorer.explorer.controller.ExplorerController` whose model is drawn.
        max_items: the opening drawing expands blocks while it holds at most this many boxes.
        show_elementwise: draw activations, dropout and pooling as boxes of their own.
    """

    def __init__(self, controller, max_items: int = DEFAULT_MAX_ITEMS, show_elementwise: bool = False):
        self.c = controller
        self.max_items = int(max_items)
        self.show_elementwise = bool(show_elementwise)
        self.follow = True  # open the current group's blocks and look at it after every decision
        self.selected: Optional[str] = None  # a layer name or block path
        self.highlight: Optional[str] = None  # what the last search found
        self.target = ViewTarget()
        self._auto: Set[str] = set()  # blocks opened by "follow" (closed again when the walk moves on)
        self._search: Tuple[str, List[str], int] = ("", [], -1)
        self._elements: Dict[str, Tuple[str, str]] = {}
        self._bind()
        self.expanded: Set[str] = self.default_expansion()
        self._current_root: Optional[str] = None
        self._follow_current(force=True)

    # ---- the model ------------------------------------------------------------------------------------------------
    def _bind(self) -> None:
        """(Re)read the controller's dependency graph (it is rebuilt when the ratio or the ignored layers change)."""
        DG = self.c.DG
        self._dg = DG
        self.nodes = list(DG.nodes.values())
        self.by_name = {n.name: n for n in self.nodes}
        self.block_of = assign_blocks(self.nodes, container_blocks(self.c.model))
        self.blocks: Dict[str, int] = {}  # block path -> number of nodes under it
        self.block_layers: Dict[str, int] = {}
        for n in self.nodes:
            for p in block_prefixes(self.block_of[n.name]):
                self.blocks[p] = self.blocks.get(p, 0) + 1
                if n.kind == "layer":
                    self.block_layers[p] = self.block_layers.get(p, 0) + 1
        self.modules = dict(self.c.model.named_modules())
        self._visible_cache: Dict[str, List] = {}
        self._slugs: Dict[str, str] = {}
        self._slug_owner: Dict[str, str] = {}

    def rebind(self) -> bool:
        """Follow a rebuilt dependency graph, keeping the expanded blocks and the selection. True if rebuilt."""
        if self.c.DG is self._dg:
            return False
        old_expanded, old_auto = set(self.expanded), set(self._auto)
        self._bind()
        self.expanded = {b for b in old_expanded if b in self.blocks}
        self._auto = {b for b in old_auto if b in self.blocks}
        if self.selected and not self._exists(self.selected):
            self.selected = None
        if self.highlight and not self._exists(self.highlight):
            self.highlight = None
        return True

    def _exists(self, item: str) -> bool:
        return item in self.by_name or item in self.blocks

    # ---- collapsing -----------------------------------------------------------------------------------------------
    def item_of(self, name: str, expanded: Optional[Set[str]] = None) -> str:
        """The drawn box holding node ``name``: the node itself or its outermost collapsed block ("blk:" + path)."""
        expanded = self.expanded if expanded is None else expanded
        for p in block_prefixes(self.block_of[name]):
            if p not in expanded:
                return "blk:" + p
        return name

    def _drawn_nodes(self) -> List:
        return [n for n in self.nodes if self._is_drawn(n)]

    def _is_drawn(self, n) -> bool:
        return (self.show_elementwise or n.kind != "op" or len(n.inputs) != 1
                or n.op not in ELEMENTWISE_OPS)

    def count_items(self, expanded: Optional[Set[str]] = None) -> int:
        """How many boxes the drawing has with these blocks expanded."""
        expanded = self.expanded if expanded is None else expanded
        return len({self.item_of(n.name, expanded) for n in self.nodes if self._is_drawn(n)})

    def _children(self, block: str) -> List[str]:
        return sorted(b for b in self.blocks if parent_block(b) == block and b != block)

    def default_expansion(self) -> Set[str]:
        """The blocks open when the view starts: top-level stages, then deeper levels while everything fits."""
        expanded: Set[str] = set()
        frontier = self._children("")
        total = max(len(self.nodes), 1)
        while frontier:
            trial = expanded | set(frontier)
            if self.count_items(trial) <= self.max_items:
                expanded = trial
                frontier = [c for b in frontier for c in self._children(b)]
                continue
            # a wrapper that holds most of the model (DenseNet's `features`, ViT's `encoder.layers`) still opens
            wrappers = [b for b in frontier if self.blocks[b] >= _WRAPPER_SHARE * total]
            if len(wrappers) == 1 and self.count_items(expanded | set(wrappers)) <= self.max_items:
                expanded |= set(wrappers)
                frontier = self._children(wrappers[0])
                continue
            break
        return expanded

    def reset(self) -> None:
        """Back to the opening drawing (the current group's blocks open if following), looking at everything."""
        self.expanded = self.default_expansion()
        self._auto = set()
        self._current_root = None
        if self.follow:
            self._follow_current(force=True)
        self._set_target("", "overview")

    def expand(self, block: str) -> None:
        """Open ``block`` (and the blocks holding it) and look at it."""
        if block not in self.blocks:
            raise GraphStateError(self._unknown_block(block))
        for p in block_prefixes(block):
            self.expanded.add(p)
            self._auto.discard(p)  # the user opened it: it stays open when the walk moves on
        self._set_target(self._cluster_id(block), "expanded")

    def collapse(self, block: str) -> None:
        """Close ``block`` and every block inside it, and look at the box it becomes."""
        if block not in self.blocks:
            raise GraphStateError(self._unknown_block(block))
        self.expanded = {b for b in self.expanded if not (b == block or b.startswith(block + "."))}
        self._auto = {b for b in self._auto if b in self.expanded}
        self._set_target(self._block_id(block), "collapsed")

    def _unknown_block(self, block: str) -> str:
        close = difflib.get_close_matches(str(block), list(self.blocks), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"there is no block {block!r} in the graph{hint}"

    # ---- following the walk ---------------------------------------------------------------------------------------
    def current_root(self) -> Optional[str]:
        g = self.c.current
        return None if g is None else g.root.name

    def next_layout_source(self) -> Optional[str]:
        """The :meth:`layout_source` the drawing will need when the walk moves on to the next group (following it:
        that group's blocks opened, those opened for the current one closed), or None when not following, at the
        last group, or when it is the layout drawn now. For laying it out ahead of time; nothing here changes."""
        root = self.current_root()
        if not self.follow or root is None:
            return None
        key = id(self._dg)
        if getattr(self, "_order_key", None) != key:  # the walk's roots in order (per dependency graph)
            self._order = [g.root.name for g in self.c.walk.groups()]
            self._order_key = key
        k = self._order.index(root) + 1 if root in self._order else len(self._order)
        if k >= len(self._order):
            return None
        nxt = self._order[k]
        keep = set(block_prefixes(self.block_of.get(nxt, "")))
        expanded = self.expanded - {b for b in self._auto if b not in keep}
        expanded |= set(block_prefixes(self.block_of.get(nxt, nxt if nxt in self.blocks else "")))
        if expanded == self.expanded:
            return None
        saved = (self.expanded, self._elements, getattr(self, "_overflow", None), getattr(self, "_overflow_key", None))
        try:
            self.expanded = expanded
            return self.layout_source()
        finally:
            self.expanded, self._elements, self._overflow, self._overflow_key = saved

    def set_follow(self, flag: bool) -> None:
        """Turn "follow the current group" on (opens its blocks and looks at it now) or off."""
        self.follow = bool(flag)
        if self.follow:
            self._follow_current(force=True)

    def focus_current(self) -> bool:
        """Open the current group's blocks and look at it (whatever ``follow`` says). False when the walk is over."""
        root = self.current_root()
        if root is None:
            return False
        self._reveal(root, auto=False)
        self._set_target(self.element_of(root), "current")
        return True

    def walk_changed(self, event: str = "") -> None:
        """Call after every controller change: follow a rebuilt graph, and the new current group when following."""
        self.rebind()
        if event in ("adjust", "sweep", "speed", "status"):
            return  # the group on show did not change
        self._follow_current(force=False)

    def _follow_current(self, force: bool) -> None:
        root = self.current_root()
        moved = root != self._current_root
        self._current_root = root
        if not self.follow or root is None or not (moved or force):
            if moved or force:
                self._set_target("", "keep")
            return
        # close what following opened for the previous group, unless it still holds the new one
        keep = set(block_prefixes(self.block_of.get(root, "")))
        self.expanded -= {b for b in self._auto if b not in keep}
        self._auto &= keep
        self._reveal(root, auto=True)
        self._set_target(self.element_of(root), "current")

    def _reveal(self, name: str, auto: bool) -> None:
        block = self.block_of.get(name, name if name in self.blocks else "")
        for p in block_prefixes(block):
            if p not in self.expanded:
                self.expanded.add(p)
                if auto:
                    self._auto.add(p)

    def _set_target(self, element: str, kind: str) -> None:
        self.target = ViewTarget(element, kind, self.target.seq + 1)

    # ---- selection and search -------------------------------------------------------------------------------------
    def click(self, element: str) -> str:
        """A click on SVG element ``element``: a collapsed block opens, an open block's label closes it, a layer or
        operation is selected. Returns what happened: ``"expanded"``, ``"collapsed"``, ``"selected"``."""
        kind_item = self._elements.get(element)
        if kind_item is None:
            raise GraphStateError(f"no element {element!r} in the current drawing")
        kind, item = kind_item
        if kind == "block":
            self.expand(item)
            return "expanded"
        if kind == "cluster":
            self.collapse(item)
            return "collapsed"
        self.selected = item
        return "selected"

    def select(self, name: Optional[str]) -> None:
        """Select a layer (or block) by name without moving the view; None clears the selection."""
        if name is not None and not self._exists(name):
            raise GraphStateError(f"there is no layer or block named {name!r}")
        self.selected = name

    def searchable(self) -> List[str]:
        """Names the search box suggests: every layer and loose parameter, then every block."""
        names = [n.name for n in self.nodes if n.kind in ("layer", "param")]
        return names + sorted(b for b in self.blocks if b not in self.by_name)

    def search(self, query: str) -> SearchResult:
        """Find a layer, operation or block by (part of) its name, reveal it, highlight it and look at it.

        An exact name wins; otherwise every name containing ``query`` (case-insensitive) matches, those ending
        with it as whole path segments first, and searching the same text again shows the next match. Nothing found: the message says so, with close names.
        """
        q = (query or "").strip()
        if not q:
            self.highlight = None
            return SearchResult(q, None, [], "")
        if q in self.by_name or q in self.blocks:
            matches = [q]
        else:
            ql = q.lower()
            pool = self.searchable() + [n.name for n in self.nodes if n.kind == "op"]
            hits = [n for n in pool if ql in n.lower()]
            # names ending with the query as whole path segments first ("denseblock1" -> the block itself)
            matches = ([n for n in hits if n.lower().endswith("." + ql)]
                       + [n for n in hits if not n.lower().endswith("." + ql)])
        if not matches:
            close = difflib.get_close_matches(q, self.searchable(), n=3, cutoff=0.5)
            hint = (f"; did you mean {', '.join(close)}?" if close else
                    "; type part of a layer's qualified name (e.g. conv or layer1.0), or pick it in the graph")
            self.highlight = None
            return SearchResult(q, None, [], f"no layer or block matches {q!r}{hint}")
        last_q, last_matches, k = self._search
        k = (k + 1) % len(matches) if (q == last_q and matches == last_matches) else 0
        self._search = (q, matches, k)
        found = matches[k]
        if found in self.blocks and found not in self.by_name:
            for p in block_prefixes(found):
                self.expanded.add(p)
                self._auto.discard(p)
            element = self._cluster_id(found)
        else:
            self._reveal(found, auto=False)
            element = self._node_id(found)
        self.highlight = found
        self.selected = found
        self._set_target(element, "search")
        msg = f"found {found}" + (f" (match {k + 1} of {len(matches)} for {q!r}; search again for the next)"
                                  if len(matches) > 1 else "")
        return SearchResult(q, found, matches, msg)

    def selected_element(self) -> str:
        return self.element_of(self.selected) if self.selected else ""

    def highlight_element(self) -> str:
        return self.element_of(self.highlight) if self.highlight else ""

    # ---- element ids --------------------------------------------------------------------------------------------
    def _slug_for(self, key: str) -> str:
        """A stable, unique, id-safe spelling of a node name or of ``"blk:" + block path``."""
        s = self._slugs.get(key)
        if s is None:
            kind = "b" if key.startswith("blk:") else "n"
            s = base = _slug(key[4:] if kind == "b" else key)
            k = 1
            while (kind, s) in self._slug_owner and self._slug_owner[(kind, s)] != key:
                k += 1
                s = f"{base}~{k}"
            self._slugs[key] = s
            self._slug_owner[(kind, s)] = key
        return s

    def _node_id(self, name: str) -> str:
        return "pe-n-" + self._slug_for(name)

    def _block_id(self, block: str) -> str:
        return "pe-b-" + self._slug_for("blk:" + block)

    def _cluster_id(self, block: str) -> str:
        return "pe-c-" + self._slug_for("blk:" + block)

    def element_of(self, name: str) -> str:
        """The SVG element showing layer / operation / block ``name`` as things are drawn now."""
        if name in self.by_name:
            item = self.item_of(name)
            return self._block_id(item[4:]) if item.startswith("blk:") else self._node_id(name)
        if name in self.blocks:
            hidden = next((p for p in block_prefixes(name) if p not in self.expanded), None)
            if hidden is None:
                return self._cluster_id(name)
            return self._block_id(hidden)
        return ""

    def element_kind(self, element: str) -> Optional[Tuple[str, str]]:
        """``("node" | "block" | "cluster", name)`` of an element of the last drawing (None if unknown)."""
        return self._elements.get(element)

    # ---- highlights ---------------------------------------------------------------------------------------------
    def roles(self) -> Tuple[str, Set[str]]:
        """(root node name or "", names of the nodes coupled to it) for the current group."""
        g = self.c.current
        if g is None:
            return "", set()
        root = g.root.name
        if getattr(g, "kind", None) == "depth":  # a whole block: every layer in it is highlighted
            return "", {n for n in self.by_name if n.startswith(root + ".")}
        return root, {it.dep.target.name for it in g.items} - {root}
