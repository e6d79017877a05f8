"""How the downloaded script builds the model, so that it runs as downloaded (plain Python, no widgets).

:func:`model_source` returns the import lines and the statements that build a fresh, unpruned copy of the model:

1. from ``model_fn`` (given to the explorer): a builder importable from a module (``from mod import build``), or one
   defined in a notebook / script (its source, and the source of the classes and functions it uses from there), or
   a lambda (its expression);
2. else from what the model says about itself: a timm model (``timm.create_model(architecture, num_classes=...)``),
   a Hugging Face transformers model (its class and config, written out as a dict);
3. else None: the script then stops with a message saying how to give the builder.

The weights: the script builds the model as the builder does; if the explorer's model had other weights (a
checkpoint), load them in the script where it says so. The explorer's "Verify script" passes the original weights
through the ``PE_VERIFY`` folder, so the check compares like with like.
"""

from __future__ import annotations

import ast
import inspect
import json
import sys
import textwrap
from typing import Callable, List, Optional, Tuple

import torch.nn as nn

__all__ = ["model_source"]

_COMMON_IMPORTS = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F"]
_LIBS = ("torchvision", "timm", "transformers")


def _lambda_expr(fn: Callable) -> Optional[str]:
    """The body of a zero-argument lambda, read from its source line(s) (the longest piece that parses)."""
    try:
        src = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    start = src.find("lambda")
    while start >= 0:
        tail = src[start:]
        for end in range(len(tail), 0, -1):
            try:
                node = ast.parse(tail[:end].strip(), mode="eval").body
            except SyntaxError:
                continue
            if isinstance(node, ast.Tuple) and node.elts:
                node = node.elts[0]
            if isinstance(node, ast.Lambda) and not (node.args.args or node.args.vararg or node.args.kwarg):
                return ast.unparse(node.body)
            break
        start = src.find("lambda", start + 1)
    return None


def _is_library(obj) -> bool:
    """Whether ``obj`` comes from an installed package (imported by the script) rather than from the user's own code
    (a notebook, a script, a test module: its source goes into the script)."""
    mod = inspect.getmodule(obj)
    name = getattr(obj, "__module__", "") or ""
    if name == "__main__" or mod is None:
        return False
    top = name.split(".")[0]
    if top in ("torch", "torchvision", "timm", "transformers", "prune_explorer", "numpy") or \
            top in getattr(sys, "stdlib_module_names", ()):
        return True
    path = getattr(mod, "__file__", "") or ""
    return "site-packages" in path or "dist-packages" in path


def _user_code(fn, seen: set, imports: List[str], out: List[str], include_self: bool = True) -> None:
    """Sources of ``fn`` and of the user-defined classes / functions it uses (dependencies first) into ``out``;
    import lines for the library classes and functions it names into ``imports``."""
    names = set()
    targets = [fn]
    if inspect.isclass(fn):
        targets = [m for m in vars(fn).values() if inspect.isfunction(m)]
        for base in fn.__bases__:
            if base is not object:
                names.add(base.__name__)
    glb: dict = {}
    for t in targets:
        code = getattr(t, "__code__", None)
        if code is not None:
            names |= set(code.co_names)
            glb = t.__globals__
    if not glb:
        glb = vars(inspect.getmodule(fn)) if inspect.getmodule(fn) else {}
    for name in sorted(names):
        obj = glb.get(name)
        if obj is None or id(obj) in seen:
            continue
        if inspect.ismodule(obj):
            if obj.__name__ not in ("torch", "torch.nn", "torch.nn.functional"):
                imports.append(f"import {obj.__name__}" if obj.__name__ == name else f"import {obj.__name__} as {name}")
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue
        seen.add(id(obj))
        if _is_library(obj):
            imports.append(f"from {obj.__module__} import {obj.__name__}"
                           + (f" as {name}" if name != obj.__name__ else ""))
        else:
            _user_code(obj, seen, imports, out)
    if not include_self:
        return
    try:
        out.append(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError):
        pass


def _imports_for(text: str) -> List[str]:
    lines = list(_COMMON_IMPORTS)
    for lib in _LIBS:
        if f"{lib}." in text:
            lines.append(f"import {lib}")
    return lines


def _from_builder(model_fn: Callable) -> Optional[Tuple[List[str], List[str]]]:
    name = getattr(model_fn, "__name__", "")
    imports: List[str] = []
    local: List[str] = []
    if name == "<lambda>":
        expr = _lambda_expr(model_fn)
        if expr is None:
            return None
        seen = {id(model_fn)}
        _user_code(model_fn, seen, imports, local, include_self=False)  # the lambda itself: its expression
        body = local + [f"model = {expr}"]
    elif _is_library(model_fn):
        return [f"from {model_fn.__module__} import {name}", "import torch"], [f"model = {name}()"]
    else:
        _user_code(model_fn, {id(model_fn)}, imports, local)
        if not local:
            return None
        body = local + [f"model = {name}()"]
    return list(dict.fromkeys(_imports_for("\n".join(body)) + imports)), body


def _from_model(model: nn.Module) -> Optional[Tuple[List[str], List[str]]]:
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and cfg.get("architecture") and type(model).__module__.startswith("timm."):
        nc = getattr(model, "num_classes", None)
        extra = f", num_classes={nc}" if isinstance(nc, int) else ""
        return ["import torch", "import timm"], [f"model = timm.create_model({cfg['architecture']!r}{extra})"]
    config = getattr(model, "config", None)
    if config is not None and type(model).__module__.startswith("transformers.") and hasattr(config, "to_dict"):
        cls = type(model).__name__
        ccls = type(config).__name__
        d = config.to_dict()
        d = {k: v for k, v in d.items() if k not in ("transformers_version", "_name_or_path", "architectures")}
        text = json.dumps(d, indent=4, sort_keys=True, default=str)
        text = text.replace(": true", ": True").replace(": false", ": False").replace(": null", ": None")
        return (["import torch", "import transformers"],
                [f"config = transformers.{ccls}.from_dict({text})",
                 f"model = transformers.{cls}(config)  # or transformers.{cls}.from_pretrained(...) for a checkpoint"])
    return None


def model_source(model: nn.Module, model_fn: Optional[Callable] = None) -> Optional[Tuple[List[str], List[str]]]:
    """``(import lines, statements)`` that build a fresh unpruned copy of ``model`` (module docstring), or None."""
    if model_fn is not None:
        got = _from_builder(model_fn)
        if got is not None:
            return got
    return _from_model(model)
