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
from .model_source import model_source
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
        if h.get("kind") == "depth":  # a whole block removed (pe.depth): replayed by name
            rows.append(f"    {json.dumps(h)}")
            continue
        members = ",\n".join(f"        {json.dumps(m)}" for m in h["members"])
        # the size attributes the pruning rewrote (head_dim...): apply_history sets them, the forward reads them
        attrs = "".join(f",\n        {a!r}" for a in h.get("attributes", ()))
        attrs = f', "attributes": [{attrs[1:]},\n    ]' if attrs else ""
        fn = f', "root_fn": {h["root_fn"]!r}' if "root_fn" in h else ""
        rows.append(f'    {{"root": {h["root"]!r}{fn}, "members": [\n{members},\n    ]{attrs}}}')
    return "[\n" + ",\n".join(rows) + ",\n]"


def _pretty_steps(steps) -> str:
    if not steps:
        return "[]"
    body = ",\n".join(f"    ({n!r}, {fn!r}, {idxs!r})" for n, fn, idxs in steps)
    return "[\n" + body + ",\n]"


_NO_SOURCE = ('raise SystemExit("edit this script: build the model here, with its weights, exactly as before the explorer "\n'
              '                 "pruned it (or create the explorer with model_fn=... and download the script again)")')

#: what "Verify script" sets: a folder with the original weights and the inputs; the script writes its result there
_VERIFY_IN = [
    "VERIFY = os.environ.get(\"PE_VERIFY\")  # set by the explorer's Verify script (original weights and inputs)",
    "if VERIFY:",
    "    model.load_state_dict(torch.load(os.path.join(VERIFY, \"original.pt\")))",
]
_VERIFY_OUT = [
    "if VERIFY:  # the explorer compares these with its own pruned model",
    "    from prune_explorer.inputs import call_model, tensors_in",
    "",
    "    model.eval()",
    "    with torch.no_grad():",
    "        out = call_model(model, torch.load(os.path.join(VERIFY, \"inputs.pt\")))",
    "    torch.save({\"params\": sum(p.numel() for p in model.parameters()), \"outputs\": tensors_in(out)},",
    "               os.path.join(VERIFY, \"result.pt\"))",
]


def replay_script(accepted, example_inputs, pruning_history: List[dict], model_expr: Optional[str] = None,
                  source=None) -> str:
    """A standalone script applying the accepted decisions (:class:`~.walk.Decision`) to a fresh model: by root
    layer and root channels through a new dependency graph, or, when ``pruning_history`` is given (attention-head
    groups, which are not graph groups, or a pruner removing whole heads), member by member from it, with the size
    attributes (``head_dim``...) each entry rewrote: ``pe.history.apply_history`` rebuilds the model exactly.

    The model is built by ``model_expr`` (an expression), else by ``source`` (``(import lines, statements)`` from
    :func:`.model_source.model_source`); without either the script stops, saying what to fill in."""
    imports, build = ["import torch"], [_NO_SOURCE]
    if model_expr:
        imports = ["import torch"] + [f"import {lib}" for lib in ("torchvision", "timm", "transformers")
                                      if f"{lib}." in model_expr]
        build = [f"model = {model_expr}"]
    elif source is not None:
        imports, build = list(source[0]), list(source[1])
    imports = ["import os"] + [i for i in dict.fromkeys(imports)] + ["import prune_explorer as pe"]
    head = [
        '"""Reproduce the pruning chosen in the prune_explorer Explorer (no widgets needed)."""',
        *imports,
        "",
        *build,
        "# (a trained model: load its weights here, as before the explorer pruned it)",
        *_VERIFY_IN,
    ]
    if pruning_history:
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
    tail = ["", 'print(f"{sum(p.numel() for p in model.parameters()):,} parameters")', "", *_VERIFY_OUT]
    return "\n".join(head + body + tail) + "\n"


class Export:
    """Results (see the module docstring; a part of :class:`~.controller.ExplorerController`, ``controller.exporter``).

    Args:
        session: the :class:`~.session.Session`; walk: the :class:`~.walk.Walk` (its decision log).
    """

    def __init__(self, session, walk, model_fn=None, rebuild=None):
        self.s = session
        self.w = walk
        self._rebuild = rebuild  # puts the pruning back after the model was unpruned (the controller's replay)
        self.model_fn = model_fn  # builds a fresh unpruned model (the script's first lines; .model_source)
        # read now, while the model is as built (a pruned transformers model's config has the pruned sizes)
        self.source = model_source(session.model, model_fn)

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
        without it the model is built as ``model_fn`` does, or from the model's own description (timm,
        transformers; :mod:`.model_source`); failing all that, the script stops with a line saying what to fill in.
        """
        accepted = [d for d in self.w.decisions if d.action == "accept"]
        history = self.pruning_history if self._replays_history(accepted) else []
        source = None if model_expr else self.source
        return replay_script(accepted, self.s.example_inputs, history, model_expr, source)

    def _replays_history(self, accepted) -> bool:
        """Whether the script replays the pruning history rather than re-finding groups on a fresh graph: for
        attention-head groups (not graph groups), and for a pruner that removes whole heads (its graph groups whole
        heads, which a default graph in the script would not)."""
        return (any(d.explicit or d.key.endswith(":depth") for d in accepted)
                or bool(getattr(self.s.pruner, "prune_num_heads", False)))

    def runs_as_downloaded(self) -> bool:
        """Whether :meth:`code` builds the model by itself (a builder or a library name is known)."""
        return self.source is not None

    def verify_script(self, timeout_s: float = 600.0) -> dict:
        """Run :meth:`code` in a subprocess, as downloaded, and compare its pruned model with this one: the
        parameter count, and the outputs on the example inputs (the script gets the original weights and the
        inputs through the ``PE_VERIFY`` folder). Returns ``{"ok", "params_script", "params_explorer",
        "max_abs_diff", "seconds"}``; a script that fails raises :class:`ExplorerError` with its last error line."""
        import os
        import subprocess
        import sys
        import tempfile
        import time

        from ..inputs import call_model, kept_state, tensors_in

        if not self.runs_as_downloaded():
            raise ExplorerError("the script cannot build the model by itself: create the explorer with "
                                "model_fn=<a function that builds the unpruned model> (e.g. "
                                "pe.Explorer(model, x, model_fn=lambda: torchvision.models.resnet18())), then "
                                "verify again")
        script = self.code()
        with tempfile.TemporaryDirectory(prefix="pe_verify_") as tmp:
            path = os.path.join(tmp, "reproduce_pruning.py")
            with open(path, "w") as f:
                f.write(script)
            if self.s.DG.history:  # the original weights: unprune, copy, put the pruning back
                self.s.unprune()
                try:
                    torch.save({k: v.detach().clone() for k, v in self.s.model.state_dict().items()},
                               os.path.join(tmp, "original.pt"))
                finally:
                    self._rebuild()
            else:
                torch.save(self.s.model.state_dict(), os.path.join(tmp, "original.pt"))
            torch.save(self.s.example_inputs, os.path.join(tmp, "inputs.pt"))
            root = str(Path(__file__).resolve().parents[2])
            env = dict(os.environ, PE_VERIFY=tmp,
                       PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
            t0 = time.perf_counter()
            try:
                proc = subprocess.run([sys.executable, path], cwd=tmp, env=env, capture_output=True, text=True,
                                      timeout=timeout_s)
            except subprocess.TimeoutExpired:
                raise ExplorerError(f"the script did not finish in {timeout_s:.0f} s; run it yourself "
                                    "(Download script) to see where it spends its time") from None
            seconds = time.perf_counter() - t0
            if proc.returncode != 0:
                lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
                raise ExplorerError(f"the downloaded script failed: {lines[-1] if lines else proc.returncode}. "
                                    "Download it and run it to see the whole error; check that model_fn builds "
                                    "the same model as the one given to the explorer")
            result = torch.load(os.path.join(tmp, "result.pt"))
        with torch.no_grad(), kept_state(self.s.model, eval_mode=True):
            ours = tensors_in(call_model(self.s.model, self.s.example_inputs))
        theirs = list(result["outputs"])
        same_shapes = [tuple(t.shape) for t in ours] == [tuple(t.shape) for t in theirs]
        diff = max((float((a.float() - b.float()).abs().max()) for a, b in zip(ours, theirs)), default=0.0) \
            if same_shapes else float("inf")
        scale = max((float(a.float().abs().max()) for a in ours), default=1.0) or 1.0
        params_explorer = self.s.params_now()
        ok = int(result["params"]) == params_explorer and same_shapes and diff <= 1e-4 * max(1.0, scale)
        return {"ok": bool(ok), "params_script": int(result["params"]), "params_explorer": int(params_explorer),
                "max_abs_diff": diff, "seconds": seconds}

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
