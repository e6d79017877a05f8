"""What the exploration did, layer by layer, and the ways to take the pruned model away (plain Python, no widgets).

:func:`finish_report` compares every traced layer as built (channels per side, parameters, MACs) with the model
as it is now, counted afresh with :func:`~prune_explorer.measure.count_ops_and_params` on a shape-only copy (so the totals are
exactly what ``pe.utils.count_ops_and_params(ex.model, x)`` says, at no arithmetic cost), and lists the groups that were left alone with the
reason. :func:`export_onnx` writes the pruned model to ONNX and checks the file: it loads, and its inputs and
outputs have the shapes the model takes and gives.

Units: channels are counts per side of a layer (``in`` / ``out``; ``in=out`` for norms), parameters are scalar
counts, MACs are multiply-accumulates for the whole example batch.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch

from ..inputs import call_model, tensors_in, to_meta
from ..measure import count_ops_and_params
from ..measure.structure import meta_clone
from .session import ExplorerError

__all__ = ["LayerChange", "FinishReport", "finish_report", "export_onnx", "OnnxExport"]


@dataclass
class LayerChange:
    """One traced layer, as built and now. ``channels`` maps a side (``"in"``, ``"out"``, ``"in=out"``) to
    ``(original, now)`` channel counts; ``macs`` is None when the model's MACs could not be counted."""

    name: str
    type: str
    channels: Dict[str, Tuple[int, int]]
    params: Tuple[int, int]
    macs: Optional[Tuple[int, int]]

    @property
    def changed(self) -> bool:
        return any(a != b for a, b in self.channels.values()) or self.params[0] != self.params[1]


@dataclass
class FinishReport:
    """Per-layer changes, totals before -> after, the decisions and the groups left alone with why."""

    layers: List[LayerChange]
    params: Tuple[int, int]
    macs: Optional[Tuple[int, int]]
    accepted: int
    left_alone: List[dict] = field(default_factory=list)  # {"root", "reason"}: skipped by the user or a guard
    groups_left: int = 0  # groups not decided yet (the walk is not over)

    @property
    def changed_layers(self) -> List[LayerChange]:
        return [r for r in self.layers if r.changed]

    def removed_fraction(self, which: str = "params") -> Optional[float]:
        pair = self.params if which == "params" else self.macs
        if pair is None or not pair[0]:
            return None
        return 1.0 - pair[1] / pair[0]


def _count_now(c):
    """``count_ops_and_params(model, inputs, layer_wise=True, layer_keys="name")`` of the model as it is now: on a
    ``meta``-device copy (shapes only, no arithmetic; the same figures), or on the model itself when its forward
    cannot run on meta tensors."""
    fwd = c.pruner_kwargs.get("forward_fn")
    try:
        model, inputs = meta_clone(c.model), to_meta(c.example_inputs)
        return count_ops_and_params(model, inputs, layer_wise=True, forward_fn=fwd, layer_keys="name")
    except Exception:  # noqa: BLE001 - count the real model instead
        return count_ops_and_params(c.model, c.example_inputs, layer_wise=True, forward_fn=fwd, layer_keys="name")


def finish_report(c, walk) -> FinishReport:
    """The report of session ``c`` (:class:`~.session.Session`) after ``walk`` (:class:`~.walk.Walk`): the model
    counted as it is now, one shape-only forward pass."""
    try:
        macs_now, params_now, layer_macs, layer_params = _count_now(c)
    except Exception as exc:  # noqa: BLE001 - the walk worked without MACs; so does the report
        from ..measure import count_params, params_per_module

        macs_now, layer_macs = None, {}
        params_now, layer_params = count_params(c.model), params_per_module(c.model)
        if c.macs0 is not None:
            raise ExplorerError(f"the pruned model could not be run to count it ({type(exc).__name__}: {exc})") from exc
    macs0 = c.layer_macs or {}
    rows: List[LayerChange] = []
    for node in c.DG.nodes.values():
        if node.kind != "layer" or node.module is None:
            continue
        name = c.name_of(node.module, node.name)
        channels: Dict[str, Tuple[int, int]] = {}
        for s in node.spaces:
            side = "in=out" if s.passthrough else s.side
            channels[side] = (int(s.size), int(s.current_size))
        p0 = int(c.layer_params0.get(name, 0))
        p1 = int(layer_params.get(name, 0))
        m = None
        if name in macs0 and macs_now is not None:
            m = (int(macs0[name]), int(layer_macs.get(name, 0)))
        rows.append(LayerChange(name, node.op, channels, (p0, p1), m))
    left = [{"root": d.root, "reason": d.reason if d.action == "guard" else "skipped by you"}
            for d in walk.decisions if d.action in ("skip", "guard")]
    return FinishReport(
        layers=rows, params=(int(c.params0), int(params_now)),
        macs=None if (c.macs0 is None or macs_now is None) else (int(c.macs0), int(macs_now)),
        accepted=sum(d.action == "accept" for d in walk.decisions), left_alone=left, groups_left=walk.n_groups_left)


# ----------------------------------------------------------------------------------------------------------------------
# ONNX
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class OnnxExport:
    """An exported ONNX file and what was checked: ``inputs`` / ``outputs`` are ``(name, shape)`` pairs read from
    the file, equal to the example inputs' and the model's output shapes."""

    path: Path
    inputs: List[Tuple[str, Tuple[int, ...]]]
    outputs: List[Tuple[str, Tuple[int, ...]]]
    opset: int
    size_bytes: int


def _onnx_shapes(values) -> List[Tuple[str, Tuple[int, ...]]]:
    out = []
    for v in values:
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim)
        out.append((v.name, dims))
    return out


def export_onnx(model, example_inputs, path, opset: Optional[int] = None) -> OnnxExport:
    """Write ``model`` to ``path`` with ``torch.onnx.export`` (one file) and check it.

    The check loads the file with ``onnx``, runs ``onnx.checker``, and compares the graph's inputs and outputs
    with the shapes of ``example_inputs`` and of the model's outputs on them. Raises :class:`ExplorerError` with
    the reason (nothing is left at ``path`` then). Needs the ``onnx`` extra: ``pip install "prune_explorer[onnx]"``.
    """
    try:
        import onnx
    except ImportError as exc:
        raise ExplorerError("ONNX export needs the onnx packages: pip install \"prune_explorer[onnx]\" "
                            f"(onnx, onnxruntime, onnxscript); {exc}") from exc
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExplorerError(f"the ONNX file name should end with .onnx, got {path.name!r}: choose a name such as "
                            f"{path.stem or 'model'}.onnx")
    if not path.parent.exists():
        raise ExplorerError(f"the folder {str(path.parent)!r} does not exist; create it or choose another path")
    if isinstance(example_inputs, dict):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, (tuple, list)):
        args, kwargs = tuple(example_inputs), None
    else:
        args, kwargs = (example_inputs,), None
    in_tensors = tensors_in(example_inputs)
    was_training = model.training
    model.eval()
    log = io.StringIO()
    try:
        with torch.no_grad():
            out_tensors = tensors_in(call_model(model, example_inputs))
        input_names = [f"input_{k}" for k in range(len(in_tensors))]
        output_names = [f"output_{k}" for k in range(len(out_tensors))]
        big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.8e9  # protobuf's 2 GB limit
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            torch.onnx.export(model, args, str(path), kwargs=kwargs, input_names=input_names,
                              output_names=output_names, opset_version=opset, external_data=big)
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path) if big else proto)
    except ExplorerError:
        raise
    except Exception as exc:  # noqa: BLE001 - every exporter failure becomes one clear message
        _remove(path)
        raise ExplorerError(f"ONNX export failed: {_exporter_reason(exc, log.getvalue())}; the model may use an "
                            "operation the exporter does not support") from exc
    finally:
        model.train(was_training)
    inputs, outputs = _onnx_shapes(proto.graph.input), _onnx_shapes(proto.graph.output)
    want_in = [tuple(t.shape) for t in in_tensors]
    want_out = [tuple(t.shape) for t in out_tensors]
    if [s for _, s in inputs] != want_in or [s for _, s in outputs] != want_out:
        _remove(path)
        raise ExplorerError(f"the exported ONNX file does not match the model: inputs {[s for _, s in inputs]} "
                            f"(expected {want_in}), outputs {[s for _, s in outputs]} (expected {want_out})")
    opset_v = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxExport(path, inputs, outputs, int(opset_v), os.path.getsize(path))


_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\[[0-9;]{1,12}m")


def _exporter_reason(exc: BaseException, log: str) -> str:
    """One readable line for a ``torch.onnx.export`` failure: the exception's first sentence without the exporter's
    advice for PyTorch developers ("Next steps: ... submit a PR to PyTorch"), and the root cause from its "Exception
    summary" (e.g. "No ONNX function found for aten.linalg_eig"), without terminal codes or internal class paths;
    the last lines the exporter printed when the exception says nothing."""
    text = _ESCAPES.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines()]
    first = next((ln for ln in lines if ln), "")
    first = first.split(" Next steps:")[0].split(" This is step ")[0].strip()
    cause = ""
    if "## Exception summary" in lines:
        after = [ln for ln in lines[lines.index("## Exception summary") + 1:] if ln]
        if after:
            cause = re.sub(r"^<class '[^']*'>:\s*", "", after[0])
            cause = re.sub(r"<OpOverload\(op='([^']+)'[^>]*>", r"\1", cause)
    reason = f"{type(exc).__name__}: {first.rstrip('.')}" if first else type(exc).__name__
    if cause:
        return f"{reason} ({cause.rstrip('.')})"
    tail = [ln for ln in _ESCAPES.sub("", log).strip().splitlines() if ln.strip()][-3:]
    return reason + (f" (exporter said: {' / '.join(tail)})" if tail else "")


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".data")):
        with contextlib.suppress(OSError):
            p.unlink()
