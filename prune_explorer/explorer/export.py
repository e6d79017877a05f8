"""Taking the result away: the decision log, the pruning history, a script that replays the pruning, a safe file.

Two records, not to be confused: :attr:`Export.history` is the *decision log* of the walk (accepted, skipped and
guard-skipped groups, JSON-able); :attr:`Export.pruning_history` is what the dependency graph actually pruned,
member by member (``pe.graph.model_history(model)``, what ``pe.save_pruned`` stores and
``pe.history.apply_history`` replays). ``pruner.history`` (the pruner's view of the same prunings, with step, scope
and ratio) and ``pruner.DG.history`` (the graph's undoable records) are the other two.
"""

from __future__ import annotations

import json
from typing import List, Optional

import torch

from pathlib import Path

from ..graph import model_history
from ..history import save_pruned
from .finish import FinishReport, OnnxExport, export_onnx, finish_report
from .session import ExplorerError

__all__ = ["Export", "replay_script"]


def _tensor_expr(t: torch.Tensor) -> str:
    shape = tuple(t.shape)
    if t.is_floating_point():
        return f"torch.randn{shape}" if len(shape) != 1 else f"torch.randn({shape[0]})"
    return f"torch.zeros({shape}, dtype=torch.{str(t.dtype).split('.')[-1]})"


def _inputs_expr(example_inputs) -> str:
    ex = example_inputs
    if isinstance(ex, torch.Tensor):
        return _tensor_expr(ex)
    if isinstance(ex, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in ex):
        return "(" + ", ".join(_tensor_expr(t) for t in ex) + ("," if len(ex) == 1 else "") + ")"
    if isinstance(ex, dict) and all(isinstance(t, torch.Tensor) for t in ex.values()):
        return "{" + ", ".join(f"{k!r}: {_tensor_expr(t)}" for k, t in ex.items()) + "}"
    return "...  # the example inputs you gave the explorer"


def _pretty_history(history) -> str:
    if not history:
        return "[]"
    rows = []
    for h in history:
        members = ",\n".join(f"        {json.dumps(m)}" for m in h["members"])
        rows.append(f'    {{"root": {h["root"]!r}, "members": [\n{members},\n    ]}}')
    return "[\n" + ",\n".join(rows) + ",\n]"


def _pretty_steps(steps) -> str:
    if not steps:
        return "[]"
    body = ",\n".join(f"    ({n!r}, {fn!r}, {idxs!r})" for n, fn, idxs in steps)
    return "[\n" + body + ",\n]"


def replay_script(accepted, example_inputs, pruning_history: List[dict], model_expr: Optional[str] = None) -> str:
    """A standalone script applying the accepted decisions (:class:`~.walk.Decision`) to a fresh model: by root
    layer and root channels through a new dependency graph, or, when attention-head groups were accepted (they are
    not graph groups), member by member from ``pruning_history``."""
    needs_tv = model_expr is not None and "torchvision" in model_expr
    head = [
        '"""Reproduce the pruning chosen in the prune_explorer Explorer (no widgets needed)."""',
        "import torch",
        *(["import torchvision"] if needs_tv else []),
        "import prune_explorer as pe",
        "",
        f"model = {model_expr}" if model_expr else
        "model = ...  # build the model and load its weights exactly as before the explorer pruned it",
    ]
    if any(d.explicit for d in accepted):
        body = [
            "",
            "# every pruned member (layer, pruning function, channel indices at that time), group by group",
            "HISTORY = " + _pretty_history(pruning_history),
            "",
            "pe.history.apply_history(model, HISTORY)",
        ]
    else:
        steps = [(d.root, d.root_fn, list(d.idxs)) for d in accepted]
        body = [
            f"example_inputs = {_inputs_expr(example_inputs)}",
            "",
            "# (root layer, pruning function, root channel indices) of every accepted group, in order",
            "STEPS = " + _pretty_steps(steps),
            "",
            "DG = pe.DependencyGraph().build_dependency(model, example_inputs)",
            "layers = dict(model.named_modules())",
            "for name, fn, idxs in STEPS:",
            "    DG.get_pruning_group(layers[name], getattr(pe, fn), idxs).prune()",
        ]
    tail = ["", 'print(f"{sum(p.numel() for p in model.parameters()):,} parameters")']
    return "\n".join(head + body + tail) + "\n"


class Export:
    """Results (see the module docstring; a part of :class:`~.controller.ExplorerController`, ``controller.exporter``).

    Args:
        session: the :class:`~.session.Session`; walk: the :class:`~.walk.Walk` (its decision log).
    """

    def __init__(self, session, walk):
        self.s = session
        self.w = walk

    @property
    def history(self) -> List[dict]:
        """The decision log so far, JSON-able: ``[{"action", "root", "idxs", ...}, ...]`` in walk order."""
        return [d.as_dict() for d in self.w.decisions]

    @property
    def pruning_history(self) -> List[dict]:
        """The graph's record of what was pruned (what ``pe.save_pruned`` stores)."""
        return [dict(h) for h in model_history(self.s.model)]

    def code(self, model_expr: Optional[str] = None) -> str:
        """A short standalone script that applies the same pruning to a fresh copy of the model (no widgets).

        ``model_expr`` is the Python expression that builds the model (e.g. ``"torchvision.models.resnet18()"``);
        without it the script has a placeholder line to fill in.
        """
        accepted = [d for d in self.w.decisions if d.action == "accept"]
        history = self.pruning_history if any(d.explicit for d in accepted) else []
        return replay_script(accepted, self.s.example_inputs, history, model_expr)

    def save(self, path) -> Path:
        """Write the pruned model safely: the JSON pruning history plus the weights (``pe.save_pruned``; reload it
        with ``pe.load_pruned(fresh_model, path)``). Returns the path written."""
        path = Path(path)
        if not str(path).strip() or path.is_dir():
            raise ExplorerError(f"give a file name to save to, not {str(path)!r} (e.g. 'pruned.pth')")
        if not path.parent.exists():
            raise ExplorerError(f"the folder {str(path.parent)!r} does not exist; create it or choose another path")
        try:
            save_pruned(self.s.model, path)
        except OSError as exc:
            raise ExplorerError(f"could not write {str(path)!r}: {exc.strerror or exc}") from exc
        return path

    def export_onnx(self, path, opset: Optional[int] = None) -> OnnxExport:
        """Export the pruned model to ONNX at ``path`` and check the file's input and output shapes
        (:func:`.finish.export_onnx`; needs ``pip install "prune_explorer[onnx]"``)."""
        return export_onnx(self.s.model, self.s.example_inputs, path, opset)

    def report(self) -> FinishReport:
        """Layer by layer, the model as built and now, the totals, and the groups left alone (:mod:`.finish`)."""
        return finish_report(self.s, self.w)
