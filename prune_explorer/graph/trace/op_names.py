"""Short names of torch functions, as the op rules and the shape fast paths know them.

A torch function mode receives function objects (``torch.Tensor.add_``, ``torch._C.TensorBase.__radd__``,
``torch.nn.functional.conv2d``...). :func:`op_name` reduces each to the one name its rule is registered under:
in-place and reflected variants share the name of the plain op.

>>> import torch
>>> op_name(torch.Tensor.add_), op_name(torch.Tensor.__radd__), op_name(torch.Tensor.__rsub__)
('add', 'add', 'rsub')
>>> op_name(torch.nn.functional.conv2d), op_name(torch.Tensor.__getitem__)
('conv2d', '__getitem__')
"""

from __future__ import annotations

from typing import Any, Dict

from torch.overrides import resolve_name

__all__ = ["op_name", "full_op_name"]

_NAME_CACHE: Dict[Any, str] = {}
_FULL_NAME_CACHE: Dict[Any, str] = {}
_DUNDER_ARITH = {
    "add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "floordiv": "floor_divide", "mod": "remainder",
    "pow": "pow", "matmul": "matmul", "and": "and", "or": "or", "xor": "xor", "lshift": "lshift", "rshift": "rshift",
    "div": "div",
}
_DUNDER_UNARY = {"neg": "neg", "abs": "abs", "invert": "invert", "pos": "positive", "lt": "lt", "le": "le",
                 "gt": "gt", "ge": "ge", "eq": "eq", "ne": "ne"}


def op_name(func) -> str:
    """Short name of a torch function: ``torch.Tensor.add_`` → ``add``, ``Tensor.__radd__`` → ``add``."""
    try:
        return _NAME_CACHE[func]
    except (KeyError, TypeError):
        pass
    full = resolve_name(func) or getattr(func, "__name__", None) or repr(func)
    parts = full.split(".")
    base = parts[-1]
    if base == "__get__" and len(parts) >= 2:
        base = parts[-2]
    elif base.startswith("__") and base.endswith("__") and base not in ("__getitem__", "__setitem__"):
        inner = base[2:-2]
        if inner in _DUNDER_ARITH:
            base = _DUNDER_ARITH[inner]
        elif inner[:1] in ("i", "r") and inner[1:] in _DUNDER_ARITH:
            base = _DUNDER_ARITH[inner[1:]]
            if inner == "rsub":
                base = "rsub"
        elif inner in _DUNDER_UNARY:
            base = _DUNDER_UNARY[inner]
    elif base.endswith("_") and not base.startswith("_") and base[:-1]:
        base = base[:-1]  # in-place variant
    try:
        _NAME_CACHE[func] = base
    except TypeError:
        pass
    return base


def full_op_name(func) -> str:
    """The qualified name torch gives a function (``torch.Tensor.add_``; ``""`` if none), cached."""
    try:
        return _FULL_NAME_CACHE[func]
    except (KeyError, TypeError):
        pass
    full = resolve_name(func) or ""
    try:
        _FULL_NAME_CACHE[func] = full
    except TypeError:
        pass
    return full
