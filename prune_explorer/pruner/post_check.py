"""The post-prune check: a pruning step never hands back a model that does not run.

The dependency graph keeps fixed every channel whose size the model's code cannot follow, so a pruned model runs by
construction. What a trace cannot see is caught after the fact: a size held in a Python ``int`` and used or checked
by the model at run time (``assert x.shape[1] == self.channels``), a library's own shape assertion, an operation the
graph mapped wrongly. After a pruning step (and after the explorer accepts groups), the pruned model runs once on
shape-only stand-ins (:func:`run_error`: every parameter, buffer and input replaced by a ``meta`` tensor of the same
shape, so nothing is computed). If that run fails, :meth:`PostPruneCheck.repair` finds the offending groups by
bisection over the groups just pruned, rolls each of them back exactly (the graph's undo; the other groups are
re-applied with the very same channels) and returns them with the error as the reason; the pruner records them in
``pruner.skipped`` (kind :data:`~.guards.CHECK`) and warns once.

What it costs: one shape-only forward pass per step when the model runs (the common case; figures in
``benchmarks/post_prune_check.py``; torch's own conv / linear / norm / activation layers give their output shape
without running their forward: :func:`_shortcut`), and the replaced tensors of the step's groups are kept until the
check passes (that is what the exact rollback needs). Models that cannot run on meta tensors (data-dependent code)
were traced for real. They are first checked shape-only with their integer data kept real (:class:`IndexDataMode`:
token ids, positions and the masks made from them are computed on the CPU, every float tensor is a meta stand-in),
which runs a Hugging Face decoder's mask and position code as it is; where even that cannot run (a branch on a float
value), a real forward pass under ``torch.no_grad()`` decides, and the model is checked for real from then on.

>>> import torch, torch.nn as nn
>>> run_error(nn.Linear(4, 2), torch.randn(1, 4)) is None
True
>>> run_error(nn.Linear(4, 2), torch.randn(1, 3))[:12]
'RuntimeError'
"""

from __future__ import annotations

import itertools
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .._atomic import finish
from ..graph.trace.meta_shapes import META_DEVICE, ShapeOnlyMode, fast_meta, meta_like, module_rule, single_meta_input
from ..graph.trace.op_names import op_name
from ..graph.edit.snapshot import lend_modules, return_modules
from ..inputs import call_model, kept_state, map_tensors, to_meta
from .check_memo import BlockMemo

__all__ = ["run_error", "PostPruneCheck", "Repair", "IndexDataMode"]

_MAX_ERROR_CHARS = 400


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[: _MAX_ERROR_CHARS - 3] + "..."
    return f"{type(exc).__name__}: {text}"


_PLAIN = (torch.Tensor, nn.Parameter)


def _still(entry: tuple, t: torch.Tensor) -> bool:
    """Whether the stand-in ``entry`` (:attr:`StandIns._made`) still stands for ``t``: the very tensor, with the same
    shape, dtype, ``requires_grad`` and strides."""
    meta = entry[1]
    return (entry[0]() is t and meta.shape == t.shape and meta.dtype == t.dtype and entry[3] == t.requires_grad
            and entry[2] == t.stride())


class StandIns:
    """Meta stand-ins kept from one check to the next: a tensor's stand-in (a ``meta`` tensor of the same shape,
    dtype and strides; a ``Parameter`` for a parameter) is made once and reused while the very tensor (weakly
    referenced) keeps its shape, strides, dtype, ``requires_grad`` and device kind. A pruning step replaces only the
    tensors it cuts, so the next check makes stand-ins for those alone."""

    def __init__(self):
        #: ``id(tensor) -> (weak reference, stand-in, strides, requires_grad)``: the tensor's strides and requires_grad
        #: when the stand-in (of its shape and dtype) was made
        self._made: Dict[int, tuple] = {}
        #: set by :meth:`of` when it is given a tensor that already is a meta tensor (a model built on meta)
        self.saw_meta = False

    def of(self, t: torch.Tensor, param: bool) -> torch.Tensor:
        if t.is_meta:
            self.saw_meta = True
        entry = self._made.get(id(t))
        if entry is not None and _still(entry, t):
            return entry[1]
        return self._make(t, param)

    def _make(self, t: torch.Tensor, param: bool) -> torch.Tensor:
        """``t``'s new stand-in, remembered: :func:`~..graph.trace.meta_shapes.meta_like` (a meta tensor of ``t``'s
        shape, dtype and strides, contiguous where ``t`` is), for a plain contiguous tensor by ``empty_like`` (no size
        argument to parse: half the time); a ``Parameter`` with ``t``'s ``requires_grad`` for a parameter."""
        if type(t) in _PLAIN and t.layout is torch.strided and t.is_contiguous():
            meta = torch.empty_like(t, device=META_DEVICE, memory_format=torch.contiguous_format)
        else:
            meta = meta_like(t)
        grad = t.requires_grad
        if param:
            meta = nn.Parameter(meta, requires_grad=grad)
        try:
            self._made[id(t)] = (weakref.ref(t), meta, t.stride(), grad)
        except TypeError:  # a tensor type without weak references: no reuse
            pass
        return meta

    def swap_in(self, state) -> bool:
        """Replace every parameter and buffer of the lent modules (``state``, from ``lend_modules([model])``) by its
        stand-in (:meth:`of`, in one loop), in the modules' working dicts (``return_modules(state)`` puts their own
        dicts back). A tensor shared by several modules or names gets one stand-in (ties stay ties). Returns True if
        some tensor already was a meta tensor (a model built on meta)."""
        made, make = self._made, self._make
        saw_meta = False
        slots = 0  # parameter and buffer slots: at least the number of live tensors
        for m, _attrs, params, buffers in state:
            for tensors, key, param in ((params, "_parameters", True), (buffers, "_buffers", False)):
                if not tensors:
                    continue
                slots += len(tensors)
                metas = {}
                for k, t in tensors.items():
                    if t is None:
                        metas[k] = None
                        continue
                    if t.is_meta:
                        saw_meta = True
                    entry = made.get(id(t))
                    metas[k] = entry[1] if entry is not None and _still(entry, t) else make(t, param)
                m.__dict__[key] = metas
        if len(made) > 2 * slots + 64:  # (then more than twice the live tensors: forget_others trims the table)
            self.forget_others({id(t) for _m, _a, params, buffers in state
                                for tensors in (params, buffers) for t in tensors.values() if t is not None})
        self.saw_meta = saw_meta
        return saw_meta

    def forget_others(self, keep: set) -> None:
        """Drop the entries of tensors not in ``keep`` (ids) once they outnumber the live ones."""
        if len(self._made) > 2 * len(keep) + 64:
            self._made = {k: v for k, v in self._made.items() if k in keep}


def _shortcut(module: nn.Module, rule: Callable) -> Callable:
    """``module``'s forward for a shape-only run: ``rule(module, x)`` (:func:`~..graph.trace.meta_shapes.module_rule`,
    computed with torch functions disabled: no mode dispatch) for one meta input; its own ``forward`` where the rule
    does not answer (another call, or a mismatch: PyTorch then raises its own error)."""
    forward = type(module).forward

    def shortcut(*args, **kwargs):
        with torch._C.DisableTorchFunction():
            x = single_meta_input(args, kwargs)
            out = None if x is None else rule(module, x)
        if out is not None:
            return out
        return forward(module, *args, **kwargs)

    return shortcut


def _install_shortcuts(state, memo: Optional[BlockMemo] = None) -> None:
    """Give each lent module (``state``, from ``lend_modules([model])``) that has a shape rule its :func:`_shortcut`
    as an instance ``forward``, and every other one ``memo``'s remembering ``forward`` where a memo is given
    (``return_modules(state)`` removes them with the rest)."""
    ruled = set()
    for m, _attrs, _params, _buffers in state:
        rule = module_rule(m)
        if rule is not None:
            m.__dict__["forward"] = _shortcut(m, rule)
            ruled.add(id(m))
    if memo is not None:
        memo.install(state, skip=lambda m: id(m) in ruled)


def _exact(dtype) -> bool:
    """Integer and boolean dtypes: the data :class:`IndexDataMode` keeps real."""
    return not (dtype.is_floating_point or dtype.is_complex)


def _is_meta_device(d) -> bool:
    return (isinstance(d, torch.device) and d.type == "meta") or d == "meta"


_FACTORIES = {"arange", "range", "zeros", "ones", "full", "empty", "tensor", "as_tensor"}
#: tensor attribute reads (no data, no device mixing): passed straight through
_READS = {"shape", "dtype", "device", "size", "dim", "is_floating_point", "ndim", "requires_grad", "is_contiguous",
          "numel", "stride", "data_ptr", "__len__"}


def _to_meta_arg(a):
    if isinstance(a, torch.Tensor):
        return meta_like(a) if a.device.type != "meta" and a.dim() > 0 else a
    if type(a) in (list, tuple) and any(isinstance(t, torch.Tensor) for t in a):
        return type(a)(_to_meta_arg(t) for t in a)
    return a


def _devices(values, seen: List[bool]) -> None:
    """``seen[0]``: a meta tensor among ``values`` (top level and inside lists / tuples); ``seen[1]``: a real tensor
    of at least one dimension."""
    for a in values:
        if isinstance(a, torch.Tensor):
            if a.device.type == "meta":
                seen[0] = True
            elif a.dim() > 0:
                seen[1] = True
        elif type(a) in (list, tuple):
            _devices(a, seen)


class IndexDataMode(ShapeOnlyMode):
    """A shape-only run that keeps integer and boolean data real: the check of models traced for real.

    Float tensors (parameters, buffers, float inputs and everything computed from them) are meta stand-ins; integer
    and boolean inputs stay real CPU tensors, and so do integer / boolean tensors the model creates on the meta
    device (``torch.arange(n, device=x.device)``, ``torch.ones(..., dtype=torch.bool, device=x.device)``) and moves
    there (``mask.to(x.device)``). So position ids, causal / padding masks and the ``.item()`` / ``if`` on them run
    as they do for real (on a few hundred integers), while the layers compute nothing. An op mixing both gets its
    real tensors as meta stand-ins (its output is meta). An in-place write of meta data into a real tensor raises:
    its values would be lost, so the run cannot stand for a real one (the check then runs the model for real).
    Costs: the mode's Python dispatch per op (no arithmetic on float data).

    >>> ids = torch.tensor([[3, 1, 2]])
    >>> with IndexDataMode():
    ...     pos = torch.arange(ids.shape[1], device="meta")     # integer data stays real
    ...     h = torch.empty(1, 3, 8, device="meta") * pos[None, :, None]
    >>> pos.device.type, int(pos[-1]), h.device.type, tuple(h.shape)
    ('cpu', 2, 'meta', (1, 3, 8))
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = op_name(func)
        if name in _READS:
            return func(*args, **(kwargs or {}))
        kwargs = kwargs or {}
        if name in _FACTORIES and _is_meta_device(kwargs.get("device")):
            dtype = kwargs.get("dtype")
            ints = dtype is None and (name in ("arange", "range") and all(isinstance(a, int) for a in args)
                                      or name == "full" and len(args) > 1 and isinstance(args[1], (int, bool)))
            if ints or (dtype is not None and _exact(dtype)):
                return func(*args, **dict(kwargs, device="cpu"))
        first = args[0] if args else None
        if name == "to" and isinstance(first, torch.Tensor) and first.device.type != "meta" and _exact(first.dtype):
            rest = list(args[1:]) + list(kwargs.values())
            if any(_is_meta_device(a) for a in rest if isinstance(a, (str, torch.device))) and \
                    not any(isinstance(a, torch.Tensor) for a in rest):
                dtype = next((a for a in rest if isinstance(a, torch.dtype)), None)
                if dtype is None:  # integer data moved next to meta data stays real
                    return first
                if _exact(dtype):
                    return first.to(dtype)
        seen = [False, False]
        _devices(args, seen)
        if kwargs:
            _devices(kwargs.values(), seen)
        if seen[0] and seen[1]:
            short = getattr(func, "__name__", "")
            if isinstance(first, torch.Tensor) and first.device.type != "meta" and (
                    "out" in kwargs or short == "__setitem__" or short.startswith("__i")
                    or (short.endswith("_") and not short.startswith("__"))):
                raise RuntimeError(f"shape-only check: {short or name} writes meta data into a real tensor")
            args = tuple(_to_meta_arg(a) for a in args)
            kwargs = {k: _to_meta_arg(v) for k, v in kwargs.items()}
        out = fast_meta(func, name, args, kwargs)
        return func(*args, **kwargs) if out is None else out


def _index_data_inputs(example_inputs: Any) -> Any:
    """The inputs for :class:`IndexDataMode`: integer / boolean tensors as they are, float ones as meta."""
    return map_tensors(lambda t: t if _exact(t.dtype) and t.device.type == "cpu" else meta_like(t), example_inputs)


#: how :func:`run_error` runs the model
META, INDEX_DATA, REAL = "meta", "index data", "real"


def run_error(model: nn.Module, example_inputs: Any, forward_fn: Optional[Callable] = None,
              on_meta: bool = True, mode: Optional[str] = None, stand_ins: Optional[StandIns] = None,
              memo: Optional[BlockMemo] = None) -> Optional[str]:
    """Run ``model`` once on ``example_inputs`` and return why it failed (``"ErrorType: message"``), or None.

    ``on_meta=True`` (``mode="meta"``): on shape-only stand-ins (``meta`` tensors for every parameter, buffer and
    input; nothing is computed, the model's tensors are not touched). ``mode="index data"``: the same with integer
    and boolean data kept real (:class:`IndexDataMode`). ``on_meta=False`` (``mode="real"``): a real forward pass
    under ``torch.no_grad()`` (buffers such as BatchNorm statistics are put back). Either way the model is left
    exactly as it was, including attributes its forward may cache. Only ``Exception`` is caught:
    ``KeyboardInterrupt`` propagates. A model whose parameters or buffers are already ``meta`` tensors (built on the
    meta device) runs as it is, on meta, either way. ``stand_ins``: the :class:`StandIns` to reuse (a check keeps
    one across steps); ``memo``: the :class:`~.check_memo.BlockMemo` that answers for the modules unchanged since
    its previous run (shape-only runs; a check keeps one across steps).
    """
    mode = mode or (META if on_meta else REAL)
    state = lend_modules([model])  # the model runs on working copies of its modules' dicts
    try:
        with torch.no_grad():
            built_on_meta = False
            if mode == REAL:
                built_on_meta = any(t.is_meta for _m, _a, params, buffers in state
                                    for t in itertools.chain(params.values(), buffers.values()) if t is not None)
                if not built_on_meta:
                    with kept_state(model):
                        call_model(model, example_inputs, forward_fn)
            elif (stand_ins or StandIns()).swap_in(state):  # the finally puts the real tensors back
                return_modules(state)
                lend_modules([model])  # (new working copies, of the same own dicts)
                built_on_meta = True
            elif mode == INDEX_DATA:
                _install_shortcuts(state, memo)
                with IndexDataMode():
                    call_model(model, _index_data_inputs(example_inputs), forward_fn)
            else:
                _install_shortcuts(state, memo)
                with ShapeOnlyMode():
                    call_model(model, to_meta(example_inputs), forward_fn)
            if built_on_meta:
                _install_shortcuts(state, memo)
                with ShapeOnlyMode():  # a model built on meta: run it as it is (common ops' shapes computed directly)
                    call_model(model, to_meta(example_inputs), forward_fn)
    except Exception as exc:  # noqa: BLE001 - any failure of the model's forward is the answer
        return _describe(exc)
    finally:
        finish(return_modules, state)  # never leave the model half restored, even if interrupted here
    return None


@dataclass
class Repair:
    """What :meth:`PostPruneCheck.repair` did.

    ``rolled_back``: ``(record, error)`` for each group rolled back (the record is the one that was undone);
    ``replaced``: ``{id(old record): new record}`` for the groups that were undone and re-applied with the same
    channels during the search (their old records are gone from the graph's history); ``inconclusive``: the model
    does not run on the stand-ins even with none of the groups pruned (then every group is kept as it was and this
    holds the error)."""

    rolled_back: List[Tuple[Any, str]] = field(default_factory=list)
    replaced: Dict[int, Any] = field(default_factory=dict)
    inconclusive: Optional[str] = None
    #: ``{id(batched record): [one record per group]}``: batched cuts split before the search (see the driver)
    split: Dict[int, List[Any]] = field(default_factory=dict)

    def current(self, record):
        """The record standing for ``record`` now (itself, its re-applied copy, or None when rolled back)."""
        if any(record is r for r, _ in self.rolled_back):
            return None
        return self.replaced.get(id(record), record)


class PostPruneCheck:
    """The check for one dependency graph (see the module docstring).

    Args:
        graph: the :class:`~prune_explorer.graph.DependencyGraph` the groups were pruned with.
        example_inputs, forward_fn: how the model is run (as for tracing).
    """

    def __init__(self, graph, example_inputs, forward_fn: Optional[Callable] = None):
        self.graph = graph
        self.example_inputs = example_inputs
        self.forward_fn = forward_fn
        #: for a model traced for real: False once a shape-only run failed where the real one ran (then every check
        #: runs for real); None until then
        self.index_data_ok: Optional[bool] = None
        self.stand_ins = StandIns()  # kept across checks: only the tensors a step replaced get new ones
        #: kept across checks: from the second check on, only the modules changed since the previous one run again
        self.memo: Optional[BlockMemo] = BlockMemo()
        #: how many runs of each mode (``"meta"``, ``"index data"``, ``"real"``) the check made so far
        self.runs: Dict[str, int] = {META: 0, INDEX_DATA: 0, REAL: 0}

    @property
    def on_meta(self) -> bool:
        """Whether the check runs on meta stand-ins (the graph was traced on them, so the model runs there)."""
        return bool(getattr(self.graph, "traced_on_meta", True))

    def _run(self, mode: str) -> Optional[str]:
        self.runs[mode] += 1
        memo = self.memo if sum(self.runs.values()) > 1 else None  # no use for a model checked once
        return run_error(self.graph.model, self.example_inputs, self.forward_fn, mode=mode, stand_ins=self.stand_ins,
                         memo=memo)

    def error(self) -> Optional[str]:
        """Why the model does not run now, or None.

        Traced on meta: one shape-only run. Traced for real: a shape-only run with the integer data real
        (:class:`IndexDataMode`); if it fails, a real forward pass decides (its error is the answer), and if that one
        runs, the model is checked for real from then on (:attr:`index_data_ok` is False)."""
        if self.on_meta:
            return self._run(META)
        if self.index_data_ok is not False:
            first = self._run(INDEX_DATA)
            if first is None:
                return None
            real = self._run(REAL)
            if real is None:
                self.index_data_ok = False
            return real
        return self._run(REAL)

    def repair(self, records: Sequence, error: Optional[str] = None) -> Repair:
        """Make the model run again by rolling back the fewest of ``records`` (the groups just pruned, oldest first;
        they must be the newest entries of the graph's history and undoable).

        ``error``: the failure already observed (skips the first run). The groups are undone, then re-applied in
        halves, keeping every half that runs and splitting every half that does not, down to the single groups that
        fail; those stay rolled back, each with the error it causes. The graph's history ends with the kept groups
        (re-applied ones as new records: :attr:`Repair.replaced`)."""
        result = Repair()
        records = list(records)
        if error is None:
            error = self.error()
        if error is None or not records:
            return result
        graph = self.graph
        for rec in reversed(records):
            graph.undo(rec)
        before = self.error()
        if before is not None:  # the model does not run without these groups either: the check cannot tell
            for rec in records:
                result.replaced[id(rec)] = graph.redo(rec)
            result.inconclusive = before
            return result
        self._search(records, error, result)
        return result

    def _search(self, candidates: List, known_error: Optional[str], result: Repair) -> None:
        """Re-apply ``candidates`` (in order) on top of what is applied; keep them if the model runs, else split."""
        graph = self.graph
        error = known_error
        if error is None:
            applied = []
            for rec in candidates:
                new = graph.redo(rec)
                result.replaced[id(rec)] = new
                applied.append(new)
            error = self.error()
            if error is None:
                return
            for new in reversed(applied):
                graph.undo(new)
        if len(candidates) == 1:
            result.rolled_back.append((candidates[0], error))
            return
        half = len(candidates) // 2
        self._search(candidates[:half], None, result)
        self._search(candidates[half:], None, result)


def warn_rolled_back(repair: Repair, what: str = "pruning step") -> None:
    """One warning for everything a repair rolled back (or could not check)."""
    if repair.rolled_back:
        names = ", ".join(rec.root for rec, _ in repair.rolled_back[:5])
        more = f" and {len(repair.rolled_back) - 5} more" if len(repair.rolled_back) > 5 else ""
        warnings.warn(
            f"prune_explorer: after this {what} the pruned model did not run ({repair.rolled_back[0][1]}); the "
            f"group(s) rooted at {names}{more} were rolled back (their channels are kept) and recorded as skipped "
            "with the error as the reason. The model runs. Please report the model: its code uses a size the "
            "dependency graph could not see", stacklevel=3)
    elif repair.inconclusive:
        warnings.warn(
            f"prune_explorer: the post-prune check could not run the model on shape-only stand-ins even before this "
            f"{what} ({repair.inconclusive}); the pruned model was not checked", stacklevel=3)
