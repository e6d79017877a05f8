"""Pictures of a traced model, written to an image file with Graphviz (Torch-Pruning's ``tp.utils.draw_*`` names).

* :func:`draw_computational_graph`: every traced layer and operation, and the tensors between them.
* :func:`draw_dependency_graph`: the layers only, each with its input and output channel sides (one box ``in=out``
  for a layer whose two sides are one space: norms, depthwise convs), an arrow from a producer's output side to each
  consumer's input side, labelled with the operations in between (``add``, ``cat`` ...). Pruning the channels of a
  side removes the same channels from every side an arrow (or a shared box) connects it with.
* :func:`draw_groups`: the same picture with each channel side filled with the colour of the pruning group it
  belongs to (``DG.get_all_groups()``), and a legend. Sides whose channels are kept fixed are hatched grey.

The output format follows ``save_as``'s suffix: ``.png`` (default), ``.svg``, ``.pdf``, ``.jpg``, or ``.dot`` /
``.gv`` for the Graphviz source itself. Each function returns the path written. Graphviz's ``dot`` program must be
installed (``apt-get install graphviz``, ``brew install graphviz`` or ``conda install -c conda-forge graphviz``).

>>> import os, tempfile, torch, torchvision, prune_explorer as pe
>>> model = torchvision.models.resnet18()
>>> DG = pe.DependencyGraph().build_dependency(model, torch.randn(1, 3, 64, 64))
>>> path = pe.utils.draw_groups(DG, os.path.join(tempfile.mkdtemp(), "groups.svg"))
>>> open(path).read().count("<svg") == 1
True
"""

from __future__ import annotations

import html
import os
import subprocess
from collections import deque
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._system import require_dot

__all__ = ["draw_computational_graph", "draw_dependency_graph", "draw_groups", "layer_edges"]

PathLike = Union[str, os.PathLike]

_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpg", ".jpeg": "jpg", ".dot": None, ".gv": None}
# a colour-blind-friendly qualitative palette (Okabe-Ito, then Tol's light), cycled for many groups
_PALETTE = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#77AADD", "#EE8866",
            "#EEDD88", "#FFAABB", "#99DDFF", "#44BB99", "#BBCC33", "#AAAA00"]
_FIXED = "#DDDDDD"


# ------------------------------------------------------------------------------------------------------------------
# graph helpers
# ------------------------------------------------------------------------------------------------------------------
def _check_graph(DG) -> None:
    if not getattr(DG, "built", False):
        raise ValueError("the dependency graph is empty: call DG.build_dependency(model, example_inputs) first")


def _layers(DG) -> List:
    """Layer and loose-parameter nodes, in trace order."""
    return [n for n in DG.nodes.values() if n.kind in ("layer", "param")]


def layer_edges(DG) -> List[Tuple[object, object, Tuple[str, ...]]]:
    """``(producer, consumer, ops)`` for every pair of layer nodes connected through operations only; ``ops`` are
    the names of the operation nodes on the way (the shortest such path), in data-flow order."""
    edges: Dict[Tuple[int, int], Tuple[object, object, Tuple[str, ...]]] = {}
    for src in _layers(DG) + [n for n in DG.nodes.values() if n.kind == "input"]:
        queue = deque((nxt, ()) for nxt in src.outputs)
        seen = set()
        while queue:
            node, path = queue.popleft()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if node.kind in ("layer", "param", "output"):
                edges.setdefault((id(src), id(node)), (src, node, path))
                continue
            for nxt in node.outputs:
                queue.append((nxt, path + (node.op,)))
    return list(edges.values())


def _ids(nodes: Iterable) -> Dict[int, str]:
    return {id(n): f"n{k}" for k, n in enumerate(nodes)}


def _q(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _h(text) -> str:
    return html.escape(str(text), quote=True)


def _header(title: Optional[str], figsize, dpi) -> List[str]:
    lines = ["digraph G {", "  rankdir=TB; nodesep=0.25; ranksep=0.3;",
             '  node [fontname="Helvetica", fontsize=10]; edge [fontname="Helvetica", fontsize=8, color="#555555"];']
    if title:
        lines.append(f"  labelloc=t; fontsize=16; fontname=\"Helvetica\"; label={_q(title)};")
    if figsize:
        w, h = figsize
        lines.append(f'  size="{float(w)},{float(h)}";')
    if dpi:
        lines.append(f"  dpi={int(dpi)};")
    return lines


def _render(source: str, save_as: PathLike) -> str:
    path = Path(save_as)
    suffix = path.suffix.lower()
    if suffix and suffix not in _FORMATS:
        raise ValueError(f"cannot write {path.name!r}: choose a file name ending in one of {sorted(_FORMATS)}")
    if not suffix:
        path = path.with_suffix(".png")
        suffix = ".png"
    if path.parent and not path.parent.exists():
        raise FileNotFoundError(f"the folder {str(path.parent)!r} does not exist; create it first")
    fmt = _FORMATS[suffix]
    if fmt is None:
        path.write_text(source)
        return str(path)
    dot = require_dot()
    proc = subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=source.encode(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Graphviz failed to draw {path.name}: {proc.stderr.decode(errors='replace').strip()}")
    return str(path)


def _side_cells(node) -> List[Tuple[str, object]]:
    """``(port, space)`` per channel side of a layer node: ``in`` then ``out``, or one ``io`` for a shared space."""
    cells = []
    for s in sorted(node.spaces, key=lambda s: 0 if s.side == "in" and not s.passthrough else 1):
        cells.append(("io" if s.passthrough else s.side, s))
    return cells


def _side_text(port: str, space) -> str:
    word = {"io": "in=out", "in": "in", "out": "out"}[port]
    cur, orig = space.current_size, space.size
    return f"{word} {cur}" if cur == orig else f"{word} {cur}/{orig}"


def _layer_label(node, fills: Dict[int, str]) -> str:
    """An HTML-like label: the layer's name and type on top, one cell per channel side below."""
    cells = _side_cells(node)
    head = f"<B>{_h(node.name)}</B><BR/><FONT POINT-SIZE=\"8\">{_h(node.op)}</FONT>"
    span = max(len(cells), 1)
    rows = [f'<TR><TD COLSPAN="{span}" BORDER="0">{head}</TD></TR>']
    if cells:
        tds = []
        for port, s in cells:
            color = fills.get(s.index)
            bg = f' BGCOLOR="{color}"' if color else ""
            style = ' STYLE="dashed"' if color == _FIXED else ""
            tds.append(f'<TD PORT="{port}"{bg}{style}><FONT POINT-SIZE="8">{_h(_side_text(port, s))}</FONT></TD>')
        rows.append("<TR>" + "".join(tds) + "</TR>")
    return '<<TABLE BORDER="1" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">' + "".join(rows) + "</TABLE>>"


def _port(node, side: str) -> str:
    ports = [p for p, _ in _side_cells(node)]
    if "io" in ports:
        return "io"
    return side if side in ports else ""


def _layer_picture(DG, fills: Dict[int, str], title, figsize, dpi, legend: Sequence[Tuple[str, str]] = ()) -> str:
    layers = _layers(DG)
    extra = [n for n in DG.nodes.values() if n.kind in ("input", "output")]
    ids = _ids(layers + extra)
    lines = _header(title, figsize, dpi)
    for n in extra:
        lines.append(f"  {ids[id(n)]} [label={_q(n.name)}, shape=plaintext];")
    for n in layers:
        lines.append(f"  {ids[id(n)]} [shape=plaintext, label={_layer_label(n, fills)}];")
    for src, dst, ops in layer_edges(DG):
        a = ids[id(src)] + (f":{_port(src, 'out')}" if src.kind != "input" and _port(src, "out") else "")
        b = ids[id(dst)] + (f":{_port(dst, 'in')}" if dst.kind != "output" and _port(dst, "in") else "")
        label = f" [label={_q(' > '.join(ops))}]" if ops else ""
        lines.append(f"  {a} -> {b}{label};")
    if legend:
        rows = "".join(f'<TR><TD BGCOLOR="{c}" WIDTH="14"></TD><TD ALIGN="LEFT">{_h(t)}</TD></TR>' for c, t in legend)
        lines.append('  legend [shape=plaintext, label=<<TABLE BORDER="0" CELLSPACING="2">' + rows + "</TABLE>>];")
    lines.append("}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------------------------
# the three pictures
# ------------------------------------------------------------------------------------------------------------------
def draw_computational_graph(DG, save_as: PathLike, title: Optional[str] = "Computational Graph",
                             figsize=None, dpi: Optional[int] = None, cmap=None) -> str:
    """Every traced layer (box: name, type, channels), operation (ellipse) and loose parameter, with the tensors
    between them as arrows. ``figsize`` (inches, ``(w, h)``) caps the drawing size; ``dpi`` sets a PNG's resolution;
    ``cmap`` is accepted for Torch-Pruning's signature and not used. Returns the path written."""
    _check_graph(DG)
    nodes = list(DG.nodes.values())
    ids = _ids(nodes)
    lines = _header(title, figsize, dpi)
    for n in nodes:
        if n.kind in ("layer", "param"):
            parts = [n.name, n.op] + ([n.channels()] if n.spaces else [])
            label = '"' + "\\n".join(_q(p)[1:-1] for p in parts) + '"'  # \n: graphviz's line break
            lines.append(f"  {ids[id(n)]} [shape=box, style=\"rounded,filled\", fillcolor=\"#EEF3FB\", "
                         f"label={label}];")
        elif n.kind == "op":
            lines.append(f"  {ids[id(n)]} [shape=ellipse, fontsize=9, label={_q(n.op)}];")
        else:
            lines.append(f"  {ids[id(n)]} [shape=plaintext, label={_q(n.name)}];")
    for n in nodes:
        for src in n.inputs:
            if id(src) in ids:
                lines.append(f"  {ids[id(src)]} -> {ids[id(n)]};")
    lines.append("}")
    return _render("\n".join(lines), save_as)


def draw_dependency_graph(DG, save_as: PathLike, title: Optional[str] = "Dependency Graph", figsize=None,
                          dpi: Optional[int] = None, cmap=None) -> str:
    """Layers with their channel sides and the couplings between them (see the module docstring); sides whose
    channels are all kept fixed are grey. Returns the path written."""
    _check_graph(DG)
    return _render(_layer_picture(DG, _fixed_fills(DG), title, figsize, dpi), save_as)


def draw_groups(DG, save_as: PathLike, title: Optional[str] = "Groups", figsize=None, dpi: Optional[int] = None,
                cmap=None, ignored_layers: Sequence = (), root_module_types=None) -> str:
    """The dependency picture with every channel side coloured by its pruning group (``DG.get_all_groups(
    ignored_layers, root_module_types)``), fixed sides grey, and a legend naming each group's root and size.
    ``cmap``: a list of colours to use instead of the default palette. Returns the path written."""
    _check_graph(DG)
    palette = list(cmap) if isinstance(cmap, (list, tuple)) and cmap else _PALETTE
    fills = _fixed_fills(DG)
    legend = []
    kwargs = {"ignored_layers": list(ignored_layers)}
    if root_module_types:
        kwargs["root_module_types"] = root_module_types
    for k, group in enumerate(DG.get_all_groups(**kwargs)):
        color = palette[k % len(palette)]
        for item in group.items:
            fills[item.dep.space.index] = color
        legend.append((color, f"{group.root_name}: {len(group.root_idxs)} channels, {len(group)} members"))
    legend.append((_FIXED, "fixed (never pruned)"))
    return _render(_layer_picture(DG, fills, title, figsize, dpi, legend), save_as)


def _fixed_fills(DG) -> Dict[int, str]:
    """Grey for every channel side whose channels are all fixed."""
    fills = {}
    for s in DG.spaces:
        alive = s.alive_idx
        if alive.size and DG.fixed_class_mask[DG.channel_class[s.gids(alive)]].all():
            fills[s.index] = _FIXED
    return fills
