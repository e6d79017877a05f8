"""The dependency-graph view: layers and the operations between them, laid out top to bottom by graphviz.

Large models stay readable because blocks collapse by module path: ``layer3.1`` is one box until it is
expanded. :class:`GraphModel` (no widgets) decides what is drawn and writes the DOT source; :class:`GraphView`
renders it to SVG with Graphviz's ``dot`` and shows it in a widget, with a searchable layer selector that shows
a layer's groups and toggles it as ignored. Clicking a box expands it; clicking a layer selects it.

Colours: the current group's root (dark orange), the layers coupled to it (light orange), pruned layers
(blue, with their new widths ``now/original``), ignored layers (grey, dashed).
"""

from __future__ import annotations

import re
from typing import Dict, Iterable, List, Optional, Set, Tuple

import ipywidgets as widgets
import traitlets

from .common import IGNORED_COLOR, MEMBER_COLOR, PRUNED_COLOR, ROOT_COLOR, esc

_MAX_ITEMS = 48  # expand blocks breadth-first while the drawing stays under this many boxes


def _parent(path: str) -> str:
    return path.rpartition(".")[0]


def _prefixes(block: str) -> List[str]:
    """``"layer3.1" -> ["layer3", "layer3.1"]``."""
    if not block:
        return []
    parts = block.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


class GraphModel:
    """What the graph view draws for a controller: nodes, collapsed blocks, highlights (plain Python)."""

    def __init__(self, controller, max_items: int = _MAX_ITEMS):
        self.c = controller
        DG = controller.DG
        self.nodes = [n for n in DG.nodes.values()]
        self.block_of: Dict[str, str] = {}
        for n in self.nodes:  # trace order: an op inherits the block of its first input
            if n.kind in ("layer", "param"):
                self.block_of[n.name] = _parent(n.name)
            elif n.kind in ("input", "output"):
                self.block_of[n.name] = ""
            else:
                src = next((i for i in n.inputs if i.name in self.block_of), None)
                self.block_of[n.name] = self.block_of[src.name] if src is not None else ""
        self.blocks: Dict[str, int] = {}  # block path -> number of nodes under it
        for n in self.nodes:
            for p in _prefixes(self.block_of[n.name]):
                self.blocks[p] = self.blocks.get(p, 0) + 1
        self.modules = dict(controller.model.named_modules())
        self.expanded: Set[str] = self.default_expansion(max_items)
        self.follow = True  # also expand the blocks holding the current group's root

    # ---- collapsing -----------------------------------------------------------------------------------------------
    def item_of(self, name: str, expanded: Set[str]) -> str:
        """The drawn box holding node ``name``: the node itself or its outermost collapsed block ("blk:" + path)."""
        for p in _prefixes(self.block_of[name]):
            if p not in expanded:
                return "blk:" + p
        return name

    def count_items(self, expanded: Set[str]) -> int:
        return len({self.item_of(n.name, expanded) for n in self.nodes})

    def default_expansion(self, max_items: int) -> Set[str]:
        expanded: Set[str] = set()
        frontier = sorted({p for p in self.blocks if "." not in p})
        while frontier:
            nxt = []
            for b in frontier:
                trial = expanded | {b}
                if self.count_items(trial) <= max_items:
                    expanded = trial
                    nxt.extend(c for c in self.blocks if _parent(c) == b)
            frontier = sorted(set(nxt))
        return expanded

    def effective_expansion(self) -> Set[str]:
        exp = set(self.expanded)
        if self.follow and self.c.current is not None:
            exp.update(_prefixes(self.block_of.get(self.c.current.root.name, "")))
        return exp

    def expand(self, block: str) -> None:
        if block not in self.blocks:
            raise KeyError(block)
        self.expanded.update(_prefixes(block))

    def collapse(self, block: str) -> None:
        self.expanded = {b for b in self.expanded if not (b == block or b.startswith(block + "."))}

    def reveal(self, name: str) -> None:
        """Expand the blocks that hide node ``name``."""
        self.expanded.update(_prefixes(self.block_of.get(name, "")))

    # ---- highlights ---------------------------------------------------------------------------------------------
    def roles(self) -> Tuple[str, Set[str]]:
        """(root node name or "", names of the nodes coupled to it) for the current group."""
        g = self.c.current
        if g is None:
            return "", set()
        root = g.root.name
        return root, {it.dep.target.name for it in g.items} - {root}

    # ---- DOT ----------------------------------------------------------------------------------------------------
    def dot_source(self, selected: Optional[str] = None) -> str:
        expanded = self.effective_expansion()
        root, members = self.roles()
        ignored = set(self.c.ignored_names)
        items: Dict[str, dict] = {}
        order: List[str] = []
        for n in self.nodes:
            it = self.item_of(n.name, expanded)
            if it not in items:
                items[it] = {"nodes": [], "root": False, "member": False, "ignored": False, "pruned": False}
                order.append(it)
            d = items[it]
            d["nodes"].append(n)
            d["root"] |= n.name == root
            d["member"] |= n.name in members
            d["ignored"] |= n.name in ignored
            d["pruned"] |= any(s.current_size != s.size for s in n.spaces)
        edges: List[Tuple[str, str]] = []
        seen = set()
        for n in self.nodes:
            a = self.item_of(n.name, expanded)
            for o in n.outputs:
                b = self.item_of(o.name, expanded)
                if a != b and (a, b) not in seen:
                    seen.add((a, b))
                    edges.append((a, b))
        self.ids = {}
        lines = [
            "digraph G {",
            '  graph [rankdir=TB, nodesep=0.18, ranksep=0.22, fontname="Helvetica", bgcolor="transparent"];',
            '  node [fontname="Helvetica", fontsize=10, shape=box, style="rounded,filled", fillcolor="white", '
            'color="#495057", height=0.3, margin="0.08,0.03"];',
            '  edge [color="#868e96", arrowsize=0.5];',
        ]
        for k, it in enumerate(order):
            nid = f"n{k}"
            self.ids[nid] = it
            lines.append(f"  {nid} [{self._attrs(it, items[it], selected)}];")
        rev = {v: k for k, v in self.ids.items()}
        for a, b in edges:
            lines.append(f"  {rev[a]} -> {rev[b]};")
        lines.append("}")
        return "\n".join(lines)

    def _attrs(self, item: str, d: dict, selected: Optional[str]) -> str:
        a: Dict[str, str] = {"id": f"pe-{_slug(item)}"}
        if item.startswith("blk:"):
            path = item[4:]
            mod = self.modules.get(path)
            kind = type(mod).__name__ if mod is not None else "block"
            n_layers = sum(1 for n in d["nodes"] if n.kind == "layer")
            label = f"{path}  ▸\n{kind} · {n_layers} layers"
            a.update(shape="box3d", style="filled", fillcolor="#f8f9fa", tooltip=f"{path}: click to expand")
        else:
            n = d["nodes"][0]
            if n.kind == "op":
                label = n.op
                a.update(shape="ellipse", style="filled", fillcolor="#f1f3f5", fontsize="9", height="0.2",
                         color="#adb5bd", fontcolor="#495057")
            elif n.kind in ("input", "output"):
                label = n.name
                a.update(shape="oval", style="filled", fillcolor="#e9ecef")
            else:
                label = f"{n.name}\n{n.op} · {_widths(n)}"
                a["tooltip"] = f"{n.name} ({n.op}): {n.channels()}"
        fill = None
        if d["ignored"]:
            fill = IGNORED_COLOR
            a["style"] = "filled,dashed"
            if not item.startswith("blk:"):
                label += "\n(ignored)"
        if d["pruned"]:
            fill = PRUNED_COLOR
        if d["member"]:
            fill = MEMBER_COLOR
        if d["root"]:
            fill = ROOT_COLOR
            a["fontcolor"] = "white"
            a["penwidth"] = "2"
            a["color"] = "#7f2704"
        if fill:
            a["fillcolor"] = fill
        if selected and (item == selected or (item.startswith("blk:") and selected.startswith(item[4:] + "."))):
            a["penwidth"] = "3"
            a["color"] = "#5f3dc4"
        a["label"] = label
        return ", ".join(f'{k}="{_dot_escape(v)}"' for k, v in a.items())

    def focus_id(self) -> str:
        """SVG element id of the box holding the current group's root (what the view scrolls to)."""
        root, _ = self.roles()
        if not root:
            return ""
        return f"pe-{_slug(self.item_of(root, self.effective_expansion()))}"

    def item_for_id(self, nid: str) -> Optional[str]:
        return getattr(self, "ids", {}).get(nid)


def _widths(n) -> str:
    parts = []
    for s in n.spaces:
        txt = f"{s.current_size}" if s.current_size == s.size else f"{s.current_size}/{s.size}"
        parts.append(txt if s.passthrough else f"{s.side} {txt}")
    return ", ".join(parts) if parts else ""


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.:-]", "_", s)


def _dot_escape(v: str) -> str:
    return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_svg(dot_source: str) -> str:
    """Lay out ``dot_source`` with Graphviz's ``dot`` and return the ``<svg>`` element."""
    import graphviz

    from ..._system import require_dot

    require_dot()
    svg = graphviz.Source(dot_source).pipe(format="svg", encoding="utf-8")
    return svg[svg.index("<svg"):]


# ----------------------------------------------------------------------------------------------------------------
# widgets
# ----------------------------------------------------------------------------------------------------------------
_ESM = """
function render({ model, el }) {
  const box = document.createElement("div");
  box.className = "pe-graph-svg";
  box.style.overflow = "auto";
  box.style.maxHeight = model.get("max_height");
  el.appendChild(box);
  const focus = () => {
    const id = model.get("focus");
    const n = id ? box.querySelector(`[id="${id}"]`) : null;
    if (!n) return;
    const br = box.getBoundingClientRect(), nr = n.getBoundingClientRect();
    if (nr.top < br.top || nr.bottom > br.bottom)
      box.scrollTop += nr.top - br.top - box.clientHeight / 3;
  };
  const draw = () => {
    box.innerHTML = model.get("svg");
    for (const g of box.querySelectorAll("g.node")) {
      g.style.cursor = "pointer";
      g.addEventListener("click", () => {
        const t = g.querySelector("title");
        model.set("clicked", (t ? t.textContent : "") + "|" + Date.now());
        model.save_changes();
      });
    }
  };
  model.on("change:svg", () => { draw(); requestAnimationFrame(focus); });
  model.on("change:focus", () => requestAnimationFrame(focus));
  draw();
  requestAnimationFrame(focus);
}
export default { render };
"""


def _svg_widget():
    """A widget showing an SVG string; clickable nodes where anywidget is available, else a plain HTML widget."""
    try:
        import anywidget
    except ImportError:  # pragma: no cover - anywidget is a dependency
        anywidget = None
    if anywidget is not None:
        class SvgGraph(anywidget.AnyWidget):
            _esm = _ESM
            svg = traitlets.Unicode("").tag(sync=True)
            clicked = traitlets.Unicode("").tag(sync=True)
            focus = traitlets.Unicode("").tag(sync=True)  # id of the SVG element to keep in view
            max_height = traitlets.Unicode("600px").tag(sync=True)

        return SvgGraph()
    w = widgets.HTML()
    w.add_traits(svg=traitlets.Unicode(""), clicked=traitlets.Unicode(""), focus=traitlets.Unicode(""))
    traitlets.link((w, "svg"), (w, "value"))
    return w


class GraphView(widgets.VBox):
    """Graph (SVG) + block expand/collapse + searchable layer selector with its groups and an ignore toggle."""

    def __init__(self, app, max_items: int = _MAX_ITEMS):
        self.app = app
        self.model = GraphModel(app.controller, max_items)
        self.svg = _svg_widget()
        self.svg.add_class("pe-graph")
        self.svg.observe(self._on_click, names="clicked")
        layer_names = [n.name for n in self.model.nodes if n.kind in ("layer", "param")]
        self.search = widgets.Combobox(placeholder="find a layer (type to search)", options=layer_names,
                                       ensure_option=True, layout=widgets.Layout(width="250px"))
        self.search.add_class("pe-layer-search")
        self.search.observe(self._on_search, names="value")
        self.blocks = widgets.Dropdown(options=[("(pick a block)", "")] + [(b, b) for b in sorted(self.model.blocks)],
                                       layout=widgets.Layout(width="170px"))
        self.expand_btn = widgets.Button(description="Expand", layout=widgets.Layout(width="auto"))
        self.collapse_btn = widgets.Button(description="Collapse", layout=widgets.Layout(width="auto"))
        self.follow = widgets.Checkbox(value=True, description="follow the current group", indent=False,
                                       layout=widgets.Layout(width="auto"))
        self.expand_btn.on_click(lambda _: self._expand(self.blocks.value))
        self.collapse_btn.on_click(lambda _: self._collapse(self.blocks.value))
        self.follow.observe(self._on_follow, names="value")
        self.selected: Optional[str] = None
        self.info = widgets.HTML()
        self.info.add_class("pe-layer-info")
        self.ignore_toggle = widgets.ToggleButton(value=False, description="Ignored", icon="ban",
                                                  layout=widgets.Layout(width="110px", display="none"),
                                                  tooltip="Never prune this layer's output channels")
        self.ignore_toggle.add_class("pe-ignore-toggle")
        self.ignore_toggle.observe(self._on_ignore, names="value")
        legend = widgets.HTML(
            "<div class='pe-legend'>"
            f"<span style='background:{ROOT_COLOR};color:white'>root</span>"
            f"<span style='background:{MEMBER_COLOR}'>coupled</span>"
            f"<span style='background:{PRUNED_COLOR}'>pruned (now/orig)</span>"
            f"<span style='background:{IGNORED_COLOR};border-style:dashed'>ignored</span>"
            "<span style='background:#f8f9fa'>block ▸ (click to expand)</span></div>"
        )
        super().__init__([
            widgets.HBox([self.search, self.follow]),
            widgets.HBox([self.blocks, self.expand_btn, self.collapse_btn]),
            legend,
            widgets.HBox([self.info, self.ignore_toggle]),
            self.svg,
        ])
        self.add_class("pe-graph-view")
        self._last_source = None
        self._syncing = False
        self.refresh()

    # ---- events ---------------------------------------------------------------------------------------------------
    def _on_click(self, change) -> None:
        nid_title = (change["new"] or "").split("|")[0]
        item = self.model.item_for_id(nid_title)
        if item is None:
            return
        if item.startswith("blk:"):
            self._expand(item[4:])
        else:
            self.select(item)

    def _on_search(self, change) -> None:
        if change["new"]:
            self.select(change["new"])

    def _on_follow(self, change) -> None:
        self.model.follow = bool(change["new"])
        self.refresh()

    def _expand(self, block: str) -> None:
        if block:
            self.model.expand(block)
            self.refresh()

    def _collapse(self, block: str) -> None:
        if block:
            self.model.collapse(block)
            if self.follow.value and self.app.controller.current is not None and \
                    self.model.block_of.get(self.app.controller.current.root.name, "").startswith(block):
                self.follow.value = False  # otherwise the current group's block would open again
            self.refresh()

    def _on_ignore(self, change) -> None:
        if self._syncing or not self.selected:
            return
        name, flag = self.selected, bool(change["new"])
        ok = self.app.run(lambda c: c.ignore(name, flag),
                          busy=f"{'ignoring' if flag else 'un-ignoring'} {name}: rebuilding the pruner")
        if not ok:
            self._sync_toggle()

    # ---- selection ------------------------------------------------------------------------------------------------
    def select(self, name: str) -> None:
        """Select layer ``name``: reveal it, show its groups and its ignore toggle."""
        self.selected = name
        self.model.reveal(name)
        if self.search.value != name:
            self.search.value = name
        self._show_info()
        self.refresh()

    def _show_info(self) -> None:
        c = self.app.controller
        name = self.selected
        if not name:
            self.info.value = ""
            self.ignore_toggle.layout.display = "none"
            return
        try:
            groups = c.groups_of(name)
        except Exception as exc:  # a loose parameter or a layer the walk does not know
            groups = []
        fixed = None
        mod = self.model.modules.get(name)
        if mod is not None:
            fixed = c.DG.fixed_reason(mod)
        rows = "".join(
            f"<li>{'<b>' if g['is_current'] else ''}{esc(g['root'])}{'</b> (current)' if g['is_current'] else ''}"
            f" — {g['members']} members, {g['channels']} channels, this layer: {'/'.join(g['sides'])}"
            f"{' — ' + g['decision'] if g['decision'] else ''}</li>"
            for g in groups
        )
        txt = f"<b>{esc(name)}</b>: " + (f"in {len(groups)} group(s)<ul style='margin:2px 0'>{rows}</ul>" if groups
                                         else "in no group of the walk")
        if fixed:
            txt += f"<div class='pe-muted'>some channels are fixed: {esc(fixed)}</div>"
        self.info.value = txt
        prunable = {d["name"] for d in c.prunable_layers()}
        self.ignore_toggle.layout.display = "" if name in prunable else "none"
        self._sync_toggle()

    def _sync_toggle(self) -> None:
        self._syncing = True
        try:
            self.ignore_toggle.value = self.selected in self.app.controller.ignored_names
        finally:
            self._syncing = False

    # ---- drawing --------------------------------------------------------------------------------------------------
    def refresh(self, event: str = "") -> None:
        if event in ("ignore", "ratio"):
            self.model = _rebind(self.model, self.app.controller)
        src = self.model.dot_source(self.selected)
        self.svg.focus = self.model.focus_id()
        if src != self._last_source:
            self.svg.svg = render_svg(src)
            self._last_source = src
        if self.selected and event:
            self._show_info()


def _rebind(model: GraphModel, controller) -> GraphModel:
    """The same view state (expanded blocks, follow flag) on a controller whose graph may have been rebuilt."""
    if model.c is controller and model.nodes and model.nodes[0] is next(iter(controller.DG.nodes.values())):
        return model
    new = GraphModel(controller)
    new.expanded = {b for b in model.expanded if b in new.blocks}
    new.follow = model.follow
    return new
