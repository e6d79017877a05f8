"""How the graph view draws: Graphviz DOT source from the state of :class:`~.graph_state.GraphState`, and the SVG.

:class:`GraphDrawing` is the part of ``GraphState`` that writes the DOT source (:meth:`GraphDrawing.dot_source`):
the boxes (layers, operations, collapsed blocks with their layer and parameter counts), expanded blocks as
clusters, channel widths (``out 8/16`` once pruned), the current group's colours, and the edges -- through the
operations that are not drawn, a DenseNet-style concatenation fed by a single dashed edge from the earlier one it
extends, and at most :data:`FAN_IN_LIMIT` edges into one box. :func:`render_svg` lays the source out with ``dot``.

What a decision changes is drawn without a new layout: :meth:`GraphDrawing.layout_source` is the DOT source of
the boxes and edges alone (labels at their widest -- ``out 16/16``, ``000.00M params`` -- and no colours of the
walk), so it changes only when what is drawn changes (a block opened or closed, a layer ignored), and
:meth:`GraphDrawing.styles` gives, per drawn box, what the walk changes: its classes, colours, label lines and
tooltip. The front end lays the SVG of the layout source out once and patches the boxes whose style changed.
:meth:`GraphDrawing.dot_source` is both in one (the drawing as a static picture).

Element ids in the SVG: ``pe-n-<layer>`` (a layer or an operation), ``pe-b-<path>`` (a collapsed block),
``pe-c-<path>`` (an expanded block, drawn as a cluster).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .colors import IGNORED_COLOR, MEMBER_COLOR, PRUNED_COLOR, ROOT_COLOR
from .graph_blocks import parent_block

__all__ = ["GraphDrawing", "render_svg", "is_laid_out", "FAN_IN_LIMIT"]

#: The most edges drawn into one box; further inputs are counted in its label and listed in its tooltip.
FAN_IN_LIMIT = 6


def _dot_escape(v) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _plural(n: int, noun: str) -> str:
    """``'1 layer'``, ``'3 layers'``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _fmt_params(n: int) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return f"{n / div:.2f}{suffix}"
    return str(n)


class GraphDrawing:
    """Mixin of :class:`~.graph_state.GraphState`: the DOT source of what is drawn now (see the module docstring).

    Uses the state's ``nodes``, ``block_of``, ``block_layers``, ``modules``, ``expanded``, ``_elements`` and its
    element ids (``_node_id``, ``_block_id``, ``_cluster_id``).
    """

    # ---- DOT ----------------------------------------------------------------------------------------------------
    def _visible_successors(self, n) -> List:
        """The drawn nodes reading ``n``'s output, looking through operations that are not drawn."""
        out, seen, stack = [], set(), list(n.outputs)
        while stack:
            o = stack.pop(0)
            if id(o) in seen:
                continue
            seen.add(id(o))
            if self._is_drawn(o):
                out.append(o)
            else:
                stack.extend(o.outputs)
        return out

    def _items(self) -> Tuple[List[str], Dict[str, dict]]:
        """The drawn boxes in trace order (items: layer names and ``"blk:<path>"``), each with its nodes and what the
        walk makes of it (``root``, ``member``, ``ignored``, ``pruned``)."""
        expanded = self.expanded
        self._n_params = {}  # block path -> parameters, counted once per pass (see _block_params)
        root, members = self.roles()
        ignored = set(self.c.ignored_names)
        depth = getattr(self.c.pruner, "depth", None)
        gone = tuple(f"{b}." for b in depth.removed_names()) if depth is not None else ()  # blocks removed now
        items: Dict[str, dict] = {}
        order: List[str] = []
        for n in self.nodes:
            it = self.item_of(n.name, expanded)
            if not (self._is_drawn(n) or it.startswith("blk:")):
                continue
            if it not in items:
                items[it] = {"nodes": [], "root": False, "member": False, "ignored": False, "pruned": False}
                order.append(it)
            d = items[it]
            d["nodes"].append(n)
            d["root"] |= n.name == root
            d["member"] |= n.name in members
            d["ignored"] |= n.name in ignored
            d["removed"] = d.get("removed", False) or (bool(gone) and n.name.startswith(gone))
            d["pruned"] |= any(s.current_size != s.size for s in n.spaces)
        return order, items

    def dot_source(self) -> str:
        """The Graphviz DOT source of the drawing as things stand (clusters for open blocks, the walk's colours and
        the current widths in the labels)."""
        return self._dot(layout_only=False)

    def layout_source(self) -> str:
        """The DOT source of the layout alone: the same boxes, edges and clusters as :meth:`dot_source`, with every
        label at its widest and no colours of the walk (see the module docstring). It is the same string before and
        after a decision unless a block opened or closed, so its SVG is laid out once and then patched with
        :meth:`styles`."""
        return self._dot(layout_only=True)

    def layout_and_styles(self) -> Tuple[str, Dict[str, dict]]:
        """(:meth:`layout_source`, :meth:`styles`) from one pass over the drawn boxes (what the view sends after
        every change)."""
        order, items = self._items()
        return self._dot(True, order, items), self._styles(order, items)

    def styles(self) -> Dict[str, dict]:
        """What the walk changes in each drawn box, by element id: ``{"cls": classes, "fill", "stroke", "pw"
        (pen width), "font" (text colour), "lines": label lines, "tip": tooltip, "dash": dashed outline}`` (colours
        as ``#rrggbb`` or names). The label has as many lines as in :meth:`layout_source`, each no wider than its
        layout line."""
        return self._styles(*self._items())

    def _styles(self, order: List[str], items: Dict[str, dict]) -> Dict[str, dict]:
        extra = self._fan_in_overflow(order, items)
        out: Dict[str, dict] = {}
        for it in order:
            eid = self._block_id(it[4:]) if it.startswith("blk:") else self._node_id(it)
            look = self._look(it, items[it], extra.get(it))
            out[eid] = {"cls": look["class"], "fill": look["fillcolor"], "stroke": look["color"],
                        "pw": look["penwidth"], "font": look["fontcolor"], "lines": look["label"].split("\n"),
                        "tip": look.get("tooltip", ""), "dash": "dashed" in look.get("style", "")}
        return out

    def _edges(self, order: List[str], items: Dict[str, dict]):
        """(edges ``(from, to, kind)`` with kind ``""`` or ``"bundle"``, extra inputs per box beyond the fan-in
        limit)."""
        expanded = self.expanded
        sources: Dict[str, List[str]] = {it: [] for it in order}
        for n in self._drawn_nodes():
            a = self.item_of(n.name, expanded)
            for o in self._visible_successors(n):
                b = self.item_of(o.name, expanded)
                if a != b and a not in sources[b]:
                    sources[b].append(a)
        position = {it: k for k, it in enumerate(order)}
        edges: List[Tuple[str, str, str]] = []  # (from, to, kind: "" | "bundle")
        extra_inputs: Dict[str, List[str]] = {}
        merges: List[str] = []  # drawn concatenation-like boxes seen so far
        for b in order:
            srcs = sorted(sources[b], key=lambda s: position[s])
            bundle = None
            is_merge = not b.startswith("blk:") and len(srcs) >= 2 and items[b]["nodes"][0].kind == "op"
            if is_merge and len(srcs) > 2:
                op = items[b]["nodes"][0].op
                cand = [p for p in merges if items[p]["nodes"][0].op == op and set(sources[p]) <= set(srcs)]
                if cand:
                    bundle = max(cand, key=lambda p: (len(sources[p]), position[p]))
                    srcs = [s for s in srcs if s not in set(sources[bundle]) and s != bundle]
                    edges.append((bundle, b, "bundle"))
            if is_merge:
                merges.append(b)
            room = FAN_IN_LIMIT - (1 if bundle else 0)
            if len(srcs) > room:
                extra_inputs[b] = srcs[: len(srcs) - room]
                srcs = srcs[len(srcs) - room:]
            edges.extend((s, b, "") for s in srcs)
        return edges, extra_inputs

    def _fan_in_overflow(self, order: List[str], items: Dict[str, dict]) -> Dict[str, List[str]]:
        """The inputs of each box beyond the fan-in limit (they change only when the layout does; cached by it)."""
        key = (frozenset(self.expanded), self.show_elementwise, id(self._dg))
        if getattr(self, "_overflow_key", None) != key:
            self._overflow = self._edges(order, items)[1]
            self._overflow_key = key
        return self._overflow

    def _dot(self, layout_only: bool, order: Optional[List[str]] = None,
             items: Optional[Dict[str, dict]] = None) -> str:
        if order is None or items is None:
            order, items = self._items()
        edges, extra_inputs = self._edges(order, items)
        self._overflow, self._overflow_key = extra_inputs, (frozenset(self.expanded), self.show_elementwise,
                                                            id(self._dg))
        # clusters: every expanded block that holds a drawn box
        cluster_items: Dict[str, List[str]] = {}
        for it in order:
            home = parent_block(it[4:]) if it.startswith("blk:") else self.block_of[it]
            cluster_items.setdefault(home, []).append(it)
        self._elements = {}
        lines = [
            "digraph G {",
            '  graph [rankdir=TB, nodesep=0.2, ranksep=0.25, fontname="Helvetica", fontsize=10, '
            'bgcolor="transparent", newrank=true];',
            '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled", fillcolor="white", '
            'color="#495057", height=0.3, margin="0.08,0.03"];',
            '  edge [color="#868e96", arrowsize=0.5];',
        ]
        dot_ids = {it: f"n{k}" for k, it in enumerate(order)}

        def emit(block: str, indent: str) -> None:
            if block:
                cid = self._cluster_id(block)
                self._elements[cid] = ("cluster", block)
                mod = self.modules.get(block)
                kind = type(mod).__name__ if mod is not None else "block"
                lines.append(f'{indent}subgraph "cluster_{_dot_escape(self._slug_for("blk:" + block))}" {{')
                lines.append(f'{indent}  id="{cid}"; class="pe-cluster"; label="{_dot_escape(block)} ▾ {kind}"; '
                             'labeljust="l"; style="rounded,dashed"; color="#adb5bd"; fontcolor="#868e96"; '
                             f'tooltip="{_dot_escape(block)}: click the label to collapse";')
            for it in cluster_items.get(block, []):
                eid = self._block_id(it[4:]) if it.startswith("blk:") else self._node_id(it)
                self._elements[eid] = ("block", it[4:]) if it.startswith("blk:") else ("node", it)
                a = {"id": eid, **self._look(it, items[it], extra_inputs.get(it), layout_only)}
                attrs = ", ".join(f'{k}="{_dot_escape(v)}"' for k, v in a.items() if k not in _DEFAULTS_OMITTED
                                  or v != _DEFAULTS_OMITTED[k])
                lines.append(f"{indent}  {dot_ids[it]} [{attrs}];")
            for child in sorted(c for c in cluster_items if c and parent_block(c) == block and c != block):
                emit(child, indent + "  ")
            # blocks open but holding nothing drawn directly (only open sub-blocks) still nest their children
            for child in sorted(c for c in self._open_descendants_without_items(block, cluster_items)):
                emit(child, indent + "  ")
            if block:
                lines.append(f"{indent}}}")

        emit("", "")
        for a, b, kind in edges:
            style = ' [style=dashed, color="#adb5bd", tooltip="also takes every input of the box above"]' \
                if kind == "bundle" else ""
            lines.append(f"  {dot_ids[a]} -> {dot_ids[b]}{style};")
        lines.append("}")
        return "\n".join(lines)

    def _block_params(self, path: str, mod) -> int:
        """Parameters of block ``path`` (module ``mod``; 0 for None), counted once per pass over the boxes."""
        memo = getattr(self, "_n_params", None)
        if memo is None:
            memo = self._n_params = {}
        if path not in memo:
            memo[path] = sum(p.numel() for p in mod.parameters()) if mod is not None else 0
        return memo[path]

    def _open_descendants_without_items(self, block: str, cluster_items: Dict[str, List[str]]) -> List[str]:
        """Open child blocks of ``block`` that hold no box directly but have boxes deeper down."""
        out = []
        for c in self._children(block):
            if c in self.expanded and c not in cluster_items and any(
                    k.startswith(c + ".") for k in cluster_items if k):
                out.append(c)
        return out

    def _look(self, item: str, d: dict, extra: Optional[List[str]], layout_only: bool = False) -> Dict[str, str]:
        """The DOT attributes of a box (without its id). ``layout_only``: the label at its widest, the tooltip
        without channel counts and none of the walk's colours (what :meth:`layout_source` draws)."""
        a: Dict[str, str] = {"fillcolor": "white", "color": "#495057", "penwidth": "1", "fontcolor": "#000000"}
        classes = []
        if item.startswith("blk:"):
            path = item[4:]
            mod = self.modules.get(path)
            kind = type(mod).__name__ if mod is not None else "block"
            n_layers = self.block_layers.get(path, 0)
            n_params = self._block_params(path, mod)
            # a leaf module traced op by op (an RMSNorm written with pow/mean/rsqrt) holds operations, not layers
            count = _plural(n_layers, "layer") if n_layers else _plural(self.blocks.get(path, 0), "operation")
            params = _widest_params(n_params) if layout_only else _fmt_params(n_params)
            label = f"{path}  ▸\n{kind} · {count} · {params} params"
            a.update(shape="box3d", style="filled", fillcolor="#f8f9fa", tooltip=f"{path}: click to expand")
            classes.append("pe-block")
        else:
            n = d["nodes"][0]
            if n.kind == "op":
                label = n.op
                a.update(shape="ellipse", style="filled", fillcolor="#f1f3f5", fontsize="9", height="0.2",
                         color="#adb5bd", fontcolor="#495057", tooltip=n.name)
                classes.append("pe-op")
            elif n.kind in ("input", "output"):
                label = n.name
                a.update(shape="oval", style="filled", fillcolor="#e9ecef")
                classes.append("pe-io")
            else:
                label = f"{n.name}\n{n.op} · {_widths(n, widest=layout_only)}"
                a["tooltip"] = (f"{n.name} ({n.op}) — click to select" if layout_only else
                                f"{n.name} ({n.op}): {n.channels()} — click to select")
                classes.append("pe-layer")
        if extra:
            label += f"\n+{len(extra)} more inputs"
            a["tooltip"] = a.get("tooltip", "") + " — also reads: " + ", ".join(
                s[4:] if s.startswith("blk:") else s for s in extra)
        if d["ignored"]:  # part of the layout: one more label line, a dashed outline
            a["style"] = a.get("style", "rounded,filled") + ",dashed"
            classes.append("pe-ignored")
            if not item.startswith("blk:"):
                label += "\n(ignored)"
        fill = IGNORED_COLOR if d["ignored"] else None
        if not layout_only:
            if d["pruned"]:
                fill = PRUNED_COLOR
                classes.append("pe-pruned")
            if d["member"]:
                fill = MEMBER_COLOR
                classes.append("pe-member")
            if d["root"]:
                fill = ROOT_COLOR
                a.update(fontcolor="white", penwidth="2", color="#7f2704")
                classes.append("pe-root")
        if not layout_only and d.get("removed"):  # in a block a depth group removed: drawn faded and dashed
            a["style"] = a.get("style", "rounded,filled") + ",dashed"
            a.update(fontcolor="#adb5bd", color="#adb5bd")
            a["tooltip"] = "removed with its block (depth group) — " + a.get("tooltip", "")
            classes.append("pe-removed-block")
        if fill:
            a["fillcolor"] = fill
        a["class"] = " ".join(classes)
        a["label"] = label
        return a


#: attributes left out of the DOT source when they hold Graphviz's (or the node defaults') value
_DEFAULTS_OMITTED = {"penwidth": "1", "fontcolor": "#000000"}


def _widths(n, widest: bool = False) -> str:
    """``"in 3, out 8/16"``: each channel space's current/original size (``widest``: ``size/size``, the longest the
    text can get)."""
    parts = []
    for s in n.spaces:
        if widest:
            txt = f"{s.size}/{s.size}"
        else:
            txt = f"{s.current_size}" if s.current_size == s.size else f"{s.current_size}/{s.size}"
        parts.append(txt if s.passthrough else f"{s.side} {txt}")
    return ", ".join(parts) if parts else ""


def _widest_params(n: int) -> str:
    """A stand-in as wide as any count up to ``n`` written by :func:`_fmt_params` (digits all ``0``): ``"000.00M"``
    for 1.5M (a count that falls to 999.99K takes as much room)."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            return "000.00" + suffix
    return "0" * len(str(n))


_SVG_CACHE: Dict[str, str] = {}


def is_laid_out(dot_source: str) -> bool:
    """Whether :func:`render_svg` has ``dot_source``'s SVG at hand (no ``dot`` run)."""
    return dot_source in _SVG_CACHE


def render_svg(dot_source: str) -> str:
    """Lay out ``dot_source`` with Graphviz's ``dot`` and return the ``<svg>`` element (the last 16 are cached)."""
    svg = _SVG_CACHE.get(dot_source)
    if svg is not None:
        return svg
    import graphviz

    from .._system import require_dot

    require_dot()
    out = graphviz.Source(dot_source).pipe(format="svg", encoding="utf-8")
    svg = out[out.index("<svg"):]
    if len(_SVG_CACHE) >= 16:
        _SVG_CACHE.pop(next(iter(_SVG_CACHE)))
    _SVG_CACHE[dot_source] = svg
    return svg
