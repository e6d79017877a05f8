"""Small inspection helpers with Torch-Pruning's ``tp.utils`` names: ``print_tool`` and ``flatten_as_list``.

``print_tool`` prints a model's ``repr`` with every line the pruning changed shown as ``before => after``::

    >>> import torch.nn as nn, prune_explorer as pe
    >>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> pe.utils.print_tool.before_pruning(model)
    >>> _ = pe.prune_linear_out_channels(model[0], [0]); _ = pe.prune_linear_in_channels(model[2], [0])
    >>> diff = pe.utils.print_tool.after_pruning(model, do_print=False)
    >>> print(diff.splitlines()[1])
      (0): Linear(in_features=8, out_features=4, bias=True) => (0): Linear(in_features=8, out_features=3, bias=True)
"""

from __future__ import annotations

import difflib
from typing import Any, List, Optional

import torch
import torch.nn as nn

from .inputs import tensors_in

__all__ = ["print_tool", "model_diff", "flatten_as_list"]


def model_diff(before: str, after: str) -> str:
    """``after`` line by line, each line that differs from ``before`` written as ``old => new`` (new stripped of
    its indentation); lines only in one of them are marked ``-`` (removed) or ``+`` (added)."""
    a, b = before.split("\n"), after.split("\n")
    out: List[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            out.extend(a[i1:i2])
        elif tag == "replace" and i2 - i1 == j2 - j1:
            out.extend(f"{old} => {new.lstrip()}" for old, new in zip(a[i1:i2], b[j1:j2]))
        else:
            out.extend(f"- {old}" for old in a[i1:i2])
            out.extend(f"+ {new}" for new in b[j1:j2])
    return "\n".join(out) + "\n"


class print_tool:  # noqa: N801  (Torch-Pruning's name)
    """Record a model's structure with :meth:`before_pruning`, then print what changed with :meth:`after_pruning`.

    One recording at a time (class-level, as in Torch-Pruning); :meth:`after_pruning` clears it.
    """

    _before: Optional[str] = None

    @staticmethod
    def before_pruning(model: nn.Module) -> None:
        """Remember ``str(model)``."""
        print_tool._before = str(model)

    @staticmethod
    def after_pruning(model: nn.Module, do_print: bool = True) -> str:
        """The model's structure with changed lines as ``before => after``; printed unless ``do_print=False``.

        Raises ``ValueError`` if :meth:`before_pruning` was not called first."""
        if print_tool._before is None:
            raise ValueError("call pe.utils.print_tool.before_pruning(model) before pruning, then after_pruning(model)")
        text = model_diff(print_tool._before, str(model))
        print_tool._before = None
        if do_print:
            print(text)
        return text


def flatten_as_list(obj: Any) -> Any:
    """The tensors inside nested lists / tuples / dicts, as one flat list, in order (Torch-Pruning's helper).

    A tensor gives ``[tensor]``; any other object that is not a container is returned as it is (as Torch-Pruning
    does). The walk is :func:`prune_explorer.inputs.tensors_in`.

    >>> [t.shape[0] for t in flatten_as_list({"a": torch.zeros(1), "b": [torch.zeros(2), (torch.zeros(3),)]})]
    [1, 2, 3]
    """
    if isinstance(obj, (torch.Tensor, list, tuple, dict)):
        return tensors_in(obj)
    return obj
