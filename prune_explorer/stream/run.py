"""Streaming a plan through a checkpoint: :func:`stream_checkpoint` (the Python entry point of
``python -m prune_explorer.stream``).

Two phases, both resumable:

1. **decide**: the plan is walked on a ``meta`` copy of the model, as :func:`~prune_explorer.apply_plan` walks it on
   a loaded one; each group is scored on weights streamed from the checkpoint (:mod:`.scoring`): a group inside
   one block loads that block's members, the residual stream (shared by every block) is scored from statistics
   gathered one block at a time. The outcome is, for every tensor, the original indices it keeps along each cut
   dim (:mod:`.keep`), and the pruned config.
2. **write**: every block (and every tensor outside the blocks) is read, cut, and written to its own shard, one
   at a time; finished shards are recorded (:mod:`.state`) and not rewritten when an interrupted run is resumed.
   Then the index, the updated ``config.json`` and the tokenizer and other files are written.

Memory: the meta model (none), the tensors of one block (or the embeddings, for the groups that include them), and
the kept-index table.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import torch

from ..errors import PruningError, TracingError
from ..plan.decisions import PlanError, PruningPlan
from .arch import OUTSIDE, build_meta_model, check_supported, unit_of, unit_order
from .checkpoint import CheckpointReader, check_free_space, copy_other_files, write_index
from .errors import StreamError, StreamInterrupted
from .keep import KeepTable
from .scoring import StreamImportance, WeightSwapper
from .state import RunState, fingerprint
from .write import write_units

__all__ = ["stream_checkpoint", "StreamReport"]


@dataclass
class StreamReport:
    """What a streaming run did. Sizes in bytes, times in seconds, parameters as scalar counts."""

    out: str
    params_before: int = 0
    params_after: int = 0
    predicted_params: Optional[int] = None
    units: int = 0
    units_written: int = 0
    units_resumed: int = 0
    decided: bool = False  # decisions taken in this call (False: read back from an interrupted run)
    shared_groups: int = 0
    local_groups: int = 0
    bytes_checkpoint: int = 0
    bytes_read_decide: int = 0
    bytes_written: int = 0
    seconds_decide: float = 0.0
    seconds_write: float = 0.0
    copied: List[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.seconds_decide + self.seconds_write


def _bar(enabled: bool, **kw):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(**kw)


def _checkpoint_dtype(reader: CheckpointReader) -> torch.dtype:
    for name in reader.keys():
        _, dt = reader.shape_dtype(name)
        if dt.is_floating_point:
            return dt
    return torch.float32


def _check_paths(checkpoint: str, out: str) -> None:
    a, b = os.path.realpath(checkpoint), os.path.realpath(out)
    if a == b or b.startswith(a + os.sep) or a.startswith(b + os.sep):
        raise StreamError(f"--out {out!r} must be a folder outside the checkpoint {checkpoint!r} (the input is never "
                          "modified)")


def _check_plan(plan: PruningPlan, params: int, config: dict) -> None:
    dims = [d.key for d in plan if d.kind == "attention-dims"]
    if dims:
        raise StreamError(f"plan {plan.name!r} narrows the attention heads ({dims[0]}): head-size pruning rescales "
                          "the query projections and rotary tables, which streaming does not replay. Fix: make the "
                          "plan with prune_head_dims=False (whole heads, MLP width and the hidden size stream)")
    base = plan.base.get("params")
    if base is not None and base != params:
        shape = ", ".join(f"{k}={config.get(k)}" for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                             "num_attention_heads", "num_key_value_heads",
                                                             "vocab_size"))
        raise StreamError(f"plan {plan.name!r} was made for a model of {base:,} parameters but this checkpoint's "
                          f"model has {params:,} ({shape}). Fix: make the plan on this config (e.g. on the meta "
                          "device from its config.json)")


def _units(reader: CheckpointReader) -> Dict[str, List[str]]:
    """``{unit: tensor names}``: one unit per decoder block, one per tensor outside the blocks (in file order)."""
    units: Dict[str, List[str]] = {}
    for name in reader.keys():
        u = unit_of(name)
        units.setdefault(name if u == OUTSIDE else u, []).append(name)
    blocks = sorted((u for u in units if u.startswith("block ")), key=unit_order)
    outside = sorted(u for u in units if not u.startswith("block "))
    return {u: sorted(units[u]) for u in outside[:1] + blocks + outside[1:]}


def stream_checkpoint(checkpoint: str, plan: Union[PruningPlan, str], out: str, importance=None,
                      device: Union[str, torch.device] = "cpu", progress: bool = True,
                      stop_after: Optional[int] = None, workers: int = 1, calibration=None) -> StreamReport:
    """Prune the ``save_pretrained`` folder ``checkpoint`` as ``plan`` says, one block at a time, into ``out``.

    The result loads with ``from_pretrained(out)`` and equals ``pe.apply_plan(model, plan, importance=...)`` on
    the model loaded whole (in the checkpoint's dtype): the same channels are chosen, the tensors are identical.

    Args:
        checkpoint: folder with ``config.json`` and safetensors weights (one file or shards with an index), of a
            decoder-only Llama / Mistral / Qwen2 model (:data:`~.arch.SUPPORTED`). Never modified.
        plan: a :class:`~prune_explorer.PruningPlan` or the path of one saved as JSON (e.g. made on the meta
            device from the same config, or exported by the explorer). Plans that narrow attention heads
            (``attention-dims`` groups) are refused.
        out: the output folder (created; must be empty, or hold an unfinished run of the same arguments, which is
            resumed).
        importance: the criterion ranking channels (default ``MagnitudeImportance(p=2)``). Magnitude criteria
            (``MagnitudeImportance``, ``LAMPImportance``, ``FPGMImportance``) and ``RandomImportance`` stream.
        device: where groups are scored (``"cuda"``: each block's tensors are moved onto the GPU while its groups
            are scored, then freed). Exactness against in-memory pruning holds on the same device.
        progress: tqdm progress bars (the decisions, the residual-stream statistics per block, the writes).
        stop_after: write at most this many shards, then raise :class:`StreamInterrupted` (resume by calling
            again); for tests and to split a long run.
        calibration: calibration data for a calibrated criterion (``WandaImportance``, ``FluctuationImportance``):
            a :class:`~prune_explorer.calibration.Calibration` or an iterable of batches (e.g.
            ``[{"input_ids": ids}]``); run block by block (:mod:`.calibrated`), as ``imp.calibrate(model, ...)``
            runs it on the whole unpruned model.
        workers: local processes for the write pass (forked; each holds one block at a time). The decisions are
            taken in this process, in the plan's order.

    Returns:
        a :class:`StreamReport`.

    Raises:
        StreamError: unsupported architecture, a plan made for another config, an output folder in the way, a full
            disk (checked before writing, and on every write).
    """
    from ..importance import MagnitudeImportance
    from ..measure import count_params
    from ..plan.apply import apply_plan, build_pruner
    from ..plan.meta import causal_lm_inputs
    from ..plan.options import options_from_names

    t0 = time.perf_counter()
    reader = CheckpointReader(checkpoint)
    check_supported(reader.config)
    out = os.path.abspath(out)
    _check_paths(checkpoint, out)
    if isinstance(plan, (str, os.PathLike)):
        plan = PruningPlan.load(plan)
    if not isinstance(plan, PruningPlan):
        raise StreamError(f"plan must be a PruningPlan or the path of one, got {type(plan).__name__}")
    importance = MagnitudeImportance(p=2) if importance is None else importance
    device = torch.device(device)
    collects = hasattr(importance, "attach") and hasattr(importance, "detach")
    if getattr(importance, "needs_backward", False):
        raise StreamError(f"{type(importance).__name__} needs gradients (a backward pass through the whole model), "
                          "which streaming cannot run. Fix: a weight or input-statistics criterion")
    if collects and calibration is None:
        raise StreamError(f"{type(importance).__name__} ranks channels from calibration statistics: pass "
                          "calibration= (token ids: --calibration ids.pt)")
    state = RunState.open(out, fingerprint(reader, plan, importance, device, calibration))
    os.makedirs(out, exist_ok=True)
    report = StreamReport(out=out, bytes_checkpoint=reader.nbytes())

    model = build_meta_model(reader.folder, _checkpoint_dtype(reader))
    shapes = {n: reader.shape_dtype(n)[0] for n in reader.keys()}
    params = dict(model.named_parameters(remove_duplicate=False))
    by_id: Dict[int, str] = {}
    for n, p in params.items():
        if n in shapes:
            by_id.setdefault(id(p), n)
    aliases = {}
    for n, p in params.items():
        if n in shapes:
            if tuple(p.shape) != tuple(shapes[n]):
                raise StreamError(f"{n}: the checkpoint holds shape {tuple(shapes[n])} but config.json builds "
                                  f"{tuple(p.shape)}; the weights do not match their config")
        elif id(p) in by_id:
            aliases[n] = by_id[id(p)]  # tied: stored once
        else:
            raise StreamError(f"the checkpoint has no tensor {n!r}, which its config.json's model needs")
    keep = KeepTable(shapes, aliases)
    report.params_before = count_params(model)

    if not state.resumed:
        _check_plan(plan, report.params_before, reader.config)
        pruner_box = {}
        applied: List[int] = []  # ids of the graph's records the keep table holds, in order

        def sync() -> None:
            pr = pruner_box.get("pruner")
            ids = [id(r) for r in pr.DG.history] if pr is not None else []
            if ids != applied:
                if ids[:len(applied)] != applied:  # records were undone: replay from the start
                    keep.reset()
                keep.apply(pr.history)
                applied[:] = ids

        def read(name: str) -> torch.Tensor:
            sync()
            return keep.cut(name, reader.get(keep.canonical(name)))

        swapper = WeightSwapper(model, read, device, release=reader.close)
        inner_bar = {}

        def stats_progress(unit: str, done: int, total: int):
            if not progress:
                return
            b = inner_bar.get("bar")
            if b is None or done == 1:
                if b is not None:
                    b.close()
                b = inner_bar["bar"] = _bar(True, total=total, desc="  residual-stream statistics (blocks)",
                                            unit="block", leave=False)
            b.update(1)

        imp = StreamImportance(importance, swapper, stats_progress)
        if collects:
            from .calibrated import stream_calibrate

            cbar = _bar(progress, total=len(model.model.layers), desc="calibrate (blocks)", unit="block")
            try:
                if hasattr(importance, "clear"):
                    importance.clear()
                stream_calibrate(model, calibration, [importance], swapper, device,
                                 progress=(lambda i, n: cbar.update(1)) if cbar is not None else None)
            finally:
                if cbar is not None:
                    cbar.close()
        bar = _bar(progress, total=len(plan), desc="decide (groups)", unit="group")
        try:
            x = causal_lm_inputs(model)
            pruner = build_pruner(model, x, _Ticking(imp, bar), options_from_names(model, plan.options))
            pruner_box["pruner"] = pruner
            imp.graph = pruner.DG
            apply_plan(model, plan, pruner=pruner)
        except (PlanError, TracingError) as exc:
            if isinstance(exc, StreamError):
                raise
            raise StreamError(f"the plan does not apply to this checkpoint's model: {exc}") from exc
        finally:
            if bar is not None:
                bar.close()
            if inner_bar.get("bar") is not None:
                inner_bar["bar"].close()
        sync()
        from ..hf import check_config_round_trip

        try:
            check_config_round_trip(model)
        except PruningError as exc:
            raise StreamError(f"the pruned model cannot be saved for from_pretrained: {exc}") from exc
        config = model.config
        config.use_cache = reader.config.get("use_cache", True)
        report.params_after = count_params(model)
        report.shared_groups, report.local_groups = imp.shared_groups, imp.local_groups
        report.bytes_read_decide = swapper.bytes_loaded
        report.decided = True
        torch.save(keep.state(), state.keep_path)
        state.data.update(decided=True, config=config.to_json_string(), params_after=report.params_after)
        state.save()
    else:
        keep.load_state(torch.load(state.keep_path))
        report.params_after = state.data["params_after"]
    report.predicted_params = plan.predicted.get("params") if plan.base.get("params") == report.params_before \
        else None
    report.seconds_decide = time.perf_counter() - t0

    # ---- write -------------------------------------------------------------------------------------------------
    t1 = time.perf_counter()
    units = _units(reader)
    report.units = len(units)
    need = sum(_numel(keep.shape(n)) * reader.shape_dtype(n)[1].itemsize for n in reader.keys())
    written = sum(d["bytes"] for d in state.data["done"].values())
    check_free_space(out, need - written)
    bar = _bar(progress, total=len(units), desc="write (blocks)", unit="shard")
    tasks = []
    for j, (unit, names) in enumerate(units.items()):
        done = state.done(unit)
        if done is not None and os.path.isfile(os.path.join(out, done["file"])):
            report.units_resumed += 1
            if bar is not None:
                bar.update(1)
        else:
            tasks.append((unit, names, os.path.join(out, f"model-{j + 1:05d}-of-{len(units):05d}.safetensors")))
    stopped = stop_after is not None and len(tasks) > stop_after
    try:
        for unit, names, path, (nbytes, params) in write_units(reader, keep, tasks[:stop_after] if stopped else tasks,
                                                               workers):
            state.mark_done(unit, os.path.basename(path), names, nbytes, params)
            report.units_written += 1
            report.bytes_written += nbytes
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        reader.close()
    if stopped:
        raise StreamInterrupted(f"stopped after {report.units_written} shard(s) as asked (stop_after); "
                                f"{len(tasks) - report.units_written} left. Run the same call again to resume")

    done = state.data["done"]
    weight_map = {n: d["file"] for d in done.values() for n in d["names"]}
    total = sum(d["bytes"] for d in done.values())
    got = sum(d["params"] for d in done.values())
    if got != report.params_after:
        raise StreamError(f"the shards hold {got:,} parameters but the pruned model has {report.params_after:,}; "
                          "the output is incomplete. Fix: delete the output folder and run again")
    write_index(out, weight_map, total)
    with open(os.path.join(out, "config.json"), "w", encoding="utf-8") as f:
        f.write(state.data["config"])
    report.copied = copy_other_files(reader.folder, out, skip=[".stream_state.json", ".stream_keep.pt"])
    state.finish()
    report.seconds_write = time.perf_counter() - t1
    return report


def _numel(shape) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


class _Ticking:
    """An importance that advances a progress bar once per group scored."""

    def __init__(self, inner, bar):
        self.inner, self.bar = inner, bar
        self.needs_weights = False

    def __call__(self, group):
        out = self.inner(group)
        if self.bar is not None:
            self.bar.update(1)
        return out

    def __repr__(self):
        return repr(self.inner)
