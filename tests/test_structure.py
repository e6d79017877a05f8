"""The package's structure rules, checked on its source (AST and README; nothing is imported or run):

* no module reads or writes a private attribute (``x._name``, ``getattr(x, "_name")``, ``from pkg import _name``) of
  an object of another of the package's sub-packages; library internals are limited to a short, justified list;
* the dependency graph's state is written only by ``graph/``: nobody else writes ``<graph>.__dict__``,
  ``<graph>.state.<field>`` or a state field through the facade, and ``undo_depth`` is set only by the driver;
* the post-prune check and its repair have one caller (the driver);
* ``graph/`` is three rooms plus the facade, with no small single-importer file;
* the README's layout section has one line per folder or file and names every file of the package.

A "sub-package" is a top-level folder of ``prune_explorer`` (``graph``, ``pruner``, ...) or a top-level module.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Set, Tuple

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "prune_explorer"

#: private attributes of library objects (torch, transformers, ipywidgets) the package needs, each for a reason the
#: library's public API does not cover. A new one needs a reason here.
LIBRARY_INTERNALS = {
    # a module's own parameters / buffers / children, without nn.Module.__getattr__ and including None slots (the
    # graph, snapshots and rollbacks replace them exactly)
    "_parameters": "torch", "_buffers": "torch", "_modules": "torch",
    # hooks a user registered: a meta-device trace would feed them meta tensors, so the trace then runs for real
    "_forward_hooks": "torch", "_forward_pre_hooks": "torch", "_global_forward_hooks": "torch",
    "_global_forward_pre_hooks": "torch",
    # torch's base classes of every conv / batch norm / instance norm / pooling layer (isinstance checks)
    "_ConvNd": "torch", "_BatchNorm": "torch", "_InstanceNorm": "torch", "_MaxPoolNd": "torch", "_AvgPoolNd": "torch",
    "_LPPoolNd": "torch", "_MaxUnpoolNd": "torch", "_AdaptiveAvgPoolNd": "torch", "_AdaptiveMaxPoolNd": "torch",
    # torch's C functions: op names for the tracer and the MAC counter
    "_C": "torch", "_VariableFunctions": "torch", "_nn": "torch",
    # stand-in parameters for one forward pass (what torch.func.functional_call does, without its copies)
    "_reparametrize_module": "torch",
    # recurrent layers cache their weights in a flat list that must follow pruning
    "_flat_weights": "torch", "_init_flat_weights": "torch",
    # a tensor's in-place version counter: a cheap "was it written?" before comparing values
    "_version": "torch",
    # building a transformers model from a config without downloading anything
    "_from_config": "transformers",
    # IPython's rich display protocol (the widget tree displays itself)
    "_repr_mimebundle_": "IPython",
    # a namedtuple's field names (documented API, underscored so as not to clash with fields)
    "_fields": "collections",
    # nn.MultiheadAttention keeps q / k / v in one in_proj_weight only when this is True
    "_qkv_same_embed_dim": "torch",
    # recurrent layers: the names of the flat weights (see _flat_weights)
    "_flat_weights_names": "torch",
    # torch's op name for cdist's forward (MAC counting of torch.cdist)
    "_cdist_forward": "torch",
    # the layer pruners store a new parameter / buffer straight in the module's dict only while no registration hook
    # is installed (layers/edits.py: assign; otherwise setattr, which calls them)
    "_global_parameter_registration_hooks": "torch", "_global_buffer_registration_hooks": "torch",
}
#: names of library modules: a private attribute reached through them is the library's
LIBRARY_ROOTS = {"torch", "nn", "F", "transformers", "timm", "np", "numpy"}


def _files() -> List[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _subpackage(path: Path) -> str:
    parts = path.relative_to(PKG).parts
    return parts[0] if len(parts) > 1 else parts[0][:-3]


def _rel(path: Path) -> str:
    return str(path.relative_to(PKG))


@lru_cache(maxsize=None)
def _trees() -> Dict[Path, ast.Module]:
    return {p: ast.parse(p.read_text(), str(p)) for p in _files()}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _owners() -> Dict[str, Set[str]]:
    """Private name -> the sub-packages that define it (``self._x = ...``, a class's ``_x`` attribute or method, a
    module's ``_x`` function, class or global)."""
    owners: Dict[str, Set[str]] = defaultdict(set)
    for path, tree in _trees().items():
        sub = _subpackage(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_private(node.attr) \
                    and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                owners[node.attr].add(sub)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _is_private(node.name):
                owners[node.name].add(sub)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                for t in node.targets if isinstance(node, ast.Assign) else [node.target]:
                    if isinstance(t, ast.Name) and _is_private(t.id):
                        owners[t.id].add(sub)
    return owners


def _root_name(node) -> str:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else ""


def _private_uses(tree: ast.Module):
    """``(line, expression, name)`` for every use of a private attribute of an object other than self / cls."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            yield node.lineno, ast.unparse(node), node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("getattr", "setattr", "hasattr", "delattr") and len(node.args) >= 2 \
                and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str) \
                and _is_private(node.args[1].value):
            if isinstance(node.args[0], ast.Name) and node.args[0].id in ("self", "cls"):
                continue
            yield node.lineno, ast.unparse(node), node.args[1].value


def _imported_privates(path: Path, tree: ast.Module):
    """``(line, module, name)`` for ``from <module> import _name`` where the module is another sub-package."""
    here = path.relative_to(PKG).parts[:-1]
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = list(here[:len(here) - node.level + 1]) if node.level > 1 else list(here)
            target = base + (node.module.split(".") if node.module else [])
        elif node.module and node.module.split(".")[0] == "prune_explorer":
            target = node.module.split(".")[1:]
        else:
            continue
        if not target:
            continue
        for alias in node.names:
            if _is_private(alias.name) and target[0] != _subpackage(path):
                yield node.lineno, ".".join(target), alias.name


def test_no_module_uses_another_subpackages_private_attributes():
    owners = _owners()
    problems = []
    for path, tree in _trees().items():
        sub = _subpackage(path)
        for line, expr, name in _private_uses(tree):
            defined_in = None if _root_name(ast.parse(expr, mode="eval").body) in LIBRARY_ROOTS else owners.get(name)
            if defined_in:
                if sub not in defined_in:
                    problems.append(f"{_rel(path)}:{line}: {expr} is private to {', '.join(sorted(defined_in))}/")
            elif name not in LIBRARY_INTERNALS:
                problems.append(f"{_rel(path)}:{line}: {expr}: a library's private attribute (use its public API, "
                                "or add it to LIBRARY_INTERNALS with the reason)")
        for line, module, name in _imported_privates(path, tree):
            problems.append(f"{_rel(path)}:{line}: imports {name} from {module} (private to another sub-package)")
    assert not problems, "\n".join(problems)


def test_the_rule_catches_a_private_read_across_subpackages():
    """The checker itself: a pruner module reading the graph's private field is reported, a self access is not."""
    tree = ast.parse("def f(self, graph):\n    self._x = graph._tied\n    return getattr(graph, '_alive')\n")
    names = [name for _, _, name in _private_uses(tree)]
    assert names == ["_tied", "_alive"]
    tree = ast.parse("from ..graph.edit.records import _restore\nfrom .driver import _ok\n")
    found = list(_imported_privates(PKG / "pruner" / "x.py", tree))
    assert [(m, n) for _, m, n in found] == [("graph.edit.records", "_restore")]


# ---- the graph's state -----------------------------------------------------------------------------------------
_GRAPHISH = re.compile(r"(^|\.)(graph|DG|dg|_graph|dependency_graph)$")


def _state_fields() -> Set[str]:
    tree = ast.parse((PKG / "graph" / "model" / "state.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    return {n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)}


def _writes(tree: ast.Module):
    """``(line, target)`` of every attribute / subscript assignment, ``setattr`` and ``__dict__`` mutation."""
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        for t in targets:
            for sub in ast.walk(t):
                if isinstance(sub, (ast.Attribute, ast.Subscript)) and isinstance(sub.ctx, (ast.Store, ast.Del)):
                    yield node.lineno, sub
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("setattr", "delattr") \
                and node.args:
            yield node.lineno, node
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "__dict__" \
                and node.func.attr in ("update", "pop", "setdefault", "clear", "__setitem__", "popitem"):
            yield node.lineno, node


def _written_object(node) -> Tuple[str, str]:
    """(the expression written into, the attribute or key name) of one write from :func:`_writes`."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # setattr(obj, "name", v)
        name = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "?"
        return ast.unparse(node.args[0]), str(name)
    if isinstance(node, ast.Call):  # obj.__dict__.update(...)
        return ast.unparse(node.func.value), "__dict__"
    if isinstance(node, ast.Subscript):
        return ast.unparse(node.value), "[]"
    return ast.unparse(node.value), node.attr


def test_only_graph_writes_the_graph_state():
    fields = _state_fields()
    assert {"alive", "version", "history", "tied", "built", "undo_depth"} <= fields
    problems = []
    for path, tree in _trees().items():
        if _subpackage(path) == "graph":
            continue
        for line, node in _writes(tree):
            obj, name = _written_object(node)
            where = f"{_rel(path)}:{line}: {ast.unparse(node)}"
            if obj.endswith("__dict__") and _GRAPHISH.search(obj[:-len(".__dict__")]):
                problems.append(f"{where} writes a graph's __dict__")
            elif re.search(r"(^|\.)state$", obj) and _GRAPHISH.search(obj[:-len(".state")]):
                problems.append(f"{where} writes the graph state")
            elif _GRAPHISH.search(obj) and name in fields:
                if name == "undo_depth" and _rel(path) == "pruner/driver.py":
                    continue  # the driver owns the undo scope of every pruning walk
                problems.append(f"{where} writes the graph state field {name}")
    assert not problems, "\n".join(problems)


def test_the_state_rule_catches_writes():
    """The checker itself: each form of write into a graph is seen, with what it writes."""
    tree = ast.parse("def f(self, pruner, graph):\n    pruner.DG.undo_depth = 3\n    graph.__dict__['_tied'] = []\n"
                     "    graph.state.version += 1\n    setattr(self.graph, 'history', [])\n"
                     "    graph.__dict__.update(a=1)\n")
    writes = {_written_object(n) for _, n in _writes(tree)}
    assert writes == {("pruner.DG", "undo_depth"), ("graph.__dict__", "[]"), ("graph.state", "version"),
                      ("self.graph", "history"), ("graph.__dict__", "__dict__")}


def test_undo_depth_is_set_only_by_the_driver_and_graph():
    setters = set()
    for path, tree in _trees().items():
        for line, node in _writes(tree):
            _, name = _written_object(node)
            if name == "undo_depth":
                setters.add(_rel(path) if _subpackage(path) != "graph" else "graph/")
    assert setters <= {"pruner/driver.py", "graph/"}, setters


def test_one_caller_of_the_post_prune_check_and_repair():
    callers = defaultdict(set)
    for path, tree in _trees().items():
        if _rel(path) == "pruner/post_check.py":
            continue
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr == "repair":
                callers["repair"].add(_rel(path))
            if isinstance(f, ast.Attribute) and f.attr == "error" and not node.args and not node.keywords:
                callers["error"].add(_rel(path))
            if isinstance(f, (ast.Name, ast.Attribute)) and (getattr(f, "id", None) or getattr(f, "attr", None)) \
                    in ("run_error", "warn_rolled_back"):
                callers[getattr(f, "id", None) or f.attr].add(_rel(path))
    assert callers["repair"] == {"pruner/driver.py"}, callers
    assert callers["error"] == {"pruner/driver.py"}, callers
    assert callers["warn_rolled_back"] == {"pruner/driver.py"}, callers
    assert not callers["run_error"], callers  # the check's own runner is called by the check alone


# ---- graph/ layout ----------------------------------------------------------------------------------------------
GRAPH_ROOMS = {"trace", "model", "edit"}
#: the facade: DependencyGraph and the Torch-Pruning half of its methods (a mixin), plus the package's __init__
GRAPH_FACADE = {"__init__.py", "dependency_graph.py", "tp_api.py"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _importers() -> Dict[str, Set[str]]:
    """Module -> the package modules importing it (``from x import y`` counts for ``x`` and for ``x.y``)."""
    out: Dict[str, Set[str]] = defaultdict(set)
    for path, tree in _trees().items():
        me = _module_name(path)
        pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = pkg.split(".")
                    base = base[:len(base) - node.level + 1]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                out[mod].add(me)
                for a in node.names:
                    out[f"{mod}.{a.name}"].add(me)
            elif isinstance(node, ast.Import):
                for a in node.names:
                    out[a.name].add(me)
    return out


def test_graph_is_three_rooms_plus_the_facade():
    graph = PKG / "graph"
    rooms = {p.name for p in graph.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert rooms == GRAPH_ROOMS, rooms
    assert {p.name for p in graph.glob("*.py")} == GRAPH_FACADE
    importers = _importers()
    small = []
    for path in _files():
        if _subpackage(path) != "graph" or path.name == "__init__.py":
            continue
        lines = len(path.read_text().splitlines())
        users = importers.get(_module_name(path), set()) - {_module_name(path)}
        if lines < 60 and len(users) <= 1:
            small.append(f"{_rel(path)}: {lines} lines, imported by {sorted(users)} only: merge it into its importer")
    assert not small, "\n".join(small)


# ---- README layout ----------------------------------------------------------------------------------------------
def _layout_entries() -> Dict[str, str]:
    text = (ROOT / "README.md").read_text()
    assert "## Project layout" in text
    block = text.split("## Project layout", 1)[1].split("```", 2)[1]
    entries: Dict[str, str] = {}
    key = None
    for line in block.splitlines()[1:]:
        if not line.strip():
            continue
        m = re.match(r"^( {2})?(\S+)(?:\s+(.*))?$", line)
        if m and not line.startswith("   "):  # a new entry: a name at column 0 (outside the package) or 2
            key = m.group(2) if m.group(1) else "../" + m.group(2)
            assert key not in entries, f"the layout names {key} twice"
            entries[key] = m.group(3) or ""
        else:
            assert key is not None, line
            entries[key] += " " + line.strip()
    return entries


def test_readme_layout_maps_each_line_to_one_folder_or_file_and_names_every_file():
    entries = _layout_entries()
    for key in entries:
        target = ROOT / key[3:] if key.startswith("../") else PKG / key
        assert target.exists(), f"README layout line {key!r} names no folder or file"
        assert key.endswith("/") == target.is_dir(), f"README layout line {key!r}: a folder ends with '/'"
    missing = []
    for path in sorted(PKG.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        rel = path.relative_to(PKG)
        if len(rel.parts) == 1:
            if rel.name not in entries:
                missing.append(f"{rel}: no line")
            continue
        folder = "/".join(rel.parts[:-1]) + "/"
        if folder not in entries:
            missing.append(f"{rel}: no line for {folder}")
        elif rel.name != "__init__.py" and not re.search(rf"(?<![\w./]){re.escape(rel.name)}(?!\w)", entries[folder]):
            missing.append(f"{rel}: not named on the {folder} line")
    assert not missing, "README layout section:\n" + "\n".join(missing)
