"""Count multiply-accumulates (MACs) and parameters of a model in one forward pass.

How it counts
-------------
:func:`count_ops_and_params` runs the model once, under ``torch.no_grad()`` and in eval mode, inside
:class:`MacCounter`, a ``torch.overrides.TorchFunctionMode``.  The mode sees every call made through the torch
API — ``F.conv2d``, ``F.linear``, ``torch.matmul``, ``a @ b``, ``Tensor.bmm``, ``torch.einsum``, ... — whether
it comes from an ``nn.Module.forward`` or from plain functional code (torchvision's Swin, for instance, calls
``F.linear`` with a module's weight and never calls that module).  Each call is run, then charged from the
shapes of its arguments and result.  Nothing is copied: the model is used as it is.

While the mode's handler runs the mode is switched off, so the calls a *composite* function makes internally
are not seen again.  Every composite that contains multiplications is therefore charged as a whole:
``F.multi_head_attention_forward`` (used by ``nn.MultiheadAttention`` and ``nn.Transformer*``) is charged for
its in-projection, ``Q K^T``, ``A V`` and out-projection, ``F.batch_norm`` once (not again for the
``torch.batch_norm`` it calls), ``torch.einsum`` once, and so on.  Nothing is counted twice.

The MAC each op is charged (units and conventions) is written out in :mod:`.mac_rules`.

Parameters are counted by :func:`prune_explorer.measure.params.count_params`: distinct tensors, shared ones
once, after the forward pass (so lazy modules are counted with their real size).

Cost: one forward pass plus about 1.5 microseconds per torch call and a few milliseconds of bookkeeping
(``benchmarks/count_ops.py``).  Shapes are all it needs, so a model and inputs on the ``meta`` device are
counted without any arithmetic.

Scope: ops run by TorchScript (``torch.jit.script``) or inside a compiled graph are not seen by a torch
function mode; count the eager model.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.overrides import TorchFunctionMode

from ..errors import TracingError
from ..inputs import CALL_CONVENTION, call_model, kept_state
from . import mac_rules as rules
from .params import count_params, params_per_module

__all__ = ["MacCounter", "count_ops_and_params", "count_macs"]

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------------------
# handler table, keyed by the exact function objects the torch function mode receives
# --------------------------------------------------------------------------------------------------------
# value: (handler, weight argument position or None) — the weight position lets layer-wise counting charge
# a functional call to the module owning that weight.
_Entry = Tuple[Callable[[Sequence[Any], Dict[str, Any], Any], int], Optional[int]]
_HANDLERS: Dict[Any, _Entry] = {}

_VARIABLE_FUNCS = torch._C._VariableFunctions
_NN = torch._C._nn


def _register(objs, handler, weight_pos: Optional[int] = None) -> None:
    for obj in objs:
        if obj is not None:
            _HANDLERS[obj] = (handler, weight_pos)


def _builtins(*names: str) -> List[Any]:
    """The builtin function objects for ``names`` in torch's C namespaces and on Tensor."""
    found = []
    for name in names:
        for ns in (_VARIABLE_FUNCS, _NN, torch.Tensor, torch._C.TensorBase):
            obj = getattr(ns, name, None)
            if obj is not None and not isinstance(obj, type(_register)):  # skip Python-level wrappers
                found.append(obj)
        obj = getattr(torch, name, None)
        if obj is not None and not isinstance(obj, type(_register)):
            found.append(obj)
    return found


_register(_builtins("conv1d", "conv2d", "conv3d"), rules.conv, 1)
_register(_builtins("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), rules.conv_transpose, 1)
_register(_builtins("convolution", "_convolution"), rules.convolution, 1)
_register(_builtins("conv_tbc"), rules.conv_tbc, 1)
_register(_builtins("linear", "mkldnn_linear"), rules.linear, 1)
_register(_builtins("bilinear"), rules.bilinear, 2)
_register(_builtins("matmul", "__matmul__") + [getattr(torch.linalg, "matmul", None)], rules.matmul)
_register(_builtins("__rmatmul__") + [torch.Tensor.__rmatmul__], rules.rmatmul)
_register(_builtins("mm", "bmm"), rules.mm)
_register(_builtins("addmm", "addmm_"), rules.addmm_like("mat1", "mat2"))
_register(_builtins("baddbmm", "baddbmm_", "addbmm", "addbmm_"), rules.addmm_like("batch1", "batch2"))
_register(_builtins("mv"), rules.mv)
_register(_builtins("addmv", "addmv_"), rules.addmv)
_register(_builtins("dot", "vdot"), rules.dot)
_register(_builtins("inner"), rules.inner)
_register([getattr(torch.linalg, "vecdot", None)], rules.vecdot)
_register(_builtins("outer", "ger"), rules.outer)
_register(_builtins("addr", "addr_"), rules.addr)
_register([torch.einsum], rules.einsum)
_register([getattr(_VARIABLE_FUNCS, "einsum", None)], rules.einsum_builtin)
_register([torch.tensordot], rules.tensordot)
_register([getattr(_VARIABLE_FUNCS, "tensordot", None)], rules.tensordot_builtin)
_register([torch.chain_matmul, getattr(_VARIABLE_FUNCS, "chain_matmul", None),
           getattr(torch.linalg, "multi_dot", None)], rules.multi_dot)
_register([torch.cdist, getattr(_VARIABLE_FUNCS, "_cdist_forward", None)], rules.cdist)
_register([F.scaled_dot_product_attention], rules.sdpa)
_register([F.multi_head_attention_forward], rules.mha_forward)
_register(_builtins("_native_multi_head_attention"), rules.native_mha)
_register([F.batch_norm] + _builtins("batch_norm"), rules.batch_norm)
_register([F.instance_norm] + _builtins("instance_norm"), rules.instance_norm)
_register([F.layer_norm, F.group_norm, getattr(F, "rms_norm", None)]
          + _builtins("layer_norm", "group_norm", "rms_norm", "native_layer_norm"), rules.stats_norm)
_register(_builtins("lstm"), rules.rnn(4, 3))
_register(_builtins("gru"), rules.rnn(3, 3))
_register(_builtins("rnn_tanh", "rnn_relu"), rules.rnn(1, 0))
_register(_builtins("lstm_cell"), rules.rnn_cell(4, 3))
_register(_builtins("gru_cell"), rules.rnn_cell(3, 3))
_register(_builtins("rnn_tanh_cell", "rnn_relu_cell"), rules.rnn_cell(1, 0))


# --------------------------------------------------------------------------------------------------------
# the mode
# --------------------------------------------------------------------------------------------------------
class MacCounter(TorchFunctionMode):
    """A torch function mode that adds up the MACs of every torch call made while it is active.

    >>> with MacCounter() as counter:
    ...     y = torch.nn.functional.linear(torch.randn(4, 10), torch.randn(3, 10))
    >>> counter.total
    120

    ``counter.by_function`` maps a function's name to its MACs.  With ``module_names`` (``{id(module): name}``)
    and ``param_owner`` (``{id(parameter): module name}``), ``counter.by_module`` maps the qualified name of the
    module that ran each op (or owned the weight a functional conv/linear used) to its own, exclusive MACs;
    the module stack is driven by :meth:`push_module` / :meth:`pop_module`.
    """

    def __init__(self, param_owner: Optional[Dict[int, str]] = None) -> None:
        super().__init__()
        self.total = 0
        self.by_function: Dict[str, int] = {}
        self.by_module: Dict[str, int] = {}
        self._param_owner = param_owner or {}
        self._stack: List[str] = []

    def reset(self) -> None:
        """Forget every count (e.g. those of a forward pass that failed halfway)."""
        self.total = 0
        self.by_function.clear()
        self.by_module.clear()
        self._stack.clear()

    # module stack (layer-wise attribution) -------------------------------------------------------------
    def push_module(self, name: str) -> None:
        self._stack.append(name)

    def pop_module(self) -> None:
        if self._stack:
            self._stack.pop()

    # the hook -------------------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if kwargs is None:
            kwargs = {}
        out = func(*args, **kwargs)  # the mode is off while this runs: nested calls are not seen
        try:
            entry = _HANDLERS.get(func)
        except TypeError:  # unhashable callable
            entry = None
        if entry is not None:
            handler, weight_pos = entry
            macs = handler(args, kwargs, out)
            if isinstance(macs, list):
                for part, weight in macs:
                    self._add(func, int(part), weight)
            elif macs:
                weight = rules.arg(args, kwargs, weight_pos, "weight") if weight_pos is not None else None
                self._add(func, int(macs), weight)
        return out

    def _add(self, func, macs: int, weight: Optional[Tensor]) -> None:
        if not macs:
            return
        self.total += macs
        fname = getattr(func, "__name__", None) or repr(func)
        self.by_function[fname] = self.by_function.get(fname, 0) + macs
        owner = self._param_owner.get(id(weight)) if weight is not None and self._param_owner else None
        if owner is None:
            owner = self._stack[-1] if self._stack else ""
        self.by_module[owner] = self.by_module.get(owner, 0) + macs


# --------------------------------------------------------------------------------------------------------
# public entry points
# --------------------------------------------------------------------------------------------------------
def _inclusive(exclusive: Dict[str, int]) -> Dict[str, int]:
    """Add each module's own MACs to itself and to every ancestor named by its qualified-name prefixes."""
    totals: Dict[str, int] = {}
    for name, macs in exclusive.items():
        node = name
        while True:
            totals[node] = totals.get(node, 0) + macs
            if not node:
                break
            node = node.rpartition(".")[0]
    return totals


def _count(model: nn.Module, example_inputs: Any, forward_fn: Optional[Callable], layer_wise: bool):
    if not isinstance(model, nn.Module):
        raise TypeError(f"count_ops_and_params expects an nn.Module, got {type(model).__name__}")
    handles = []
    module_names: Dict[int, str] = {}
    param_owner: Dict[int, str] = {}
    if layer_wise:
        for name, module in model.named_modules():
            module_names[id(module)] = name
            for p in module.parameters(recurse=False):
                param_owner.setdefault(id(p), name)
    counter = MacCounter(param_owner)
    if layer_wise:
        def pre_hook(module, inputs):
            name = module_names.get(id(module))
            if name is not None:
                counter.push_module(name)

        def post_hook(module, inputs, output):
            if id(module) in module_names:
                counter.pop_module()

        handles.append(register_module_forward_pre_hook(pre_hook))
        handles.append(register_module_forward_hook(post_hook, always_call=True))
    try:
        with torch.no_grad(), kept_state(model, eval_mode=True):
            try:
                with counter:
                    call_model(model, example_inputs, forward_fn, before_retry=counter.reset)
            except TracingError:
                raise
            except Exception as exc:
                raise TracingError(
                    f"count_ops_and_params: the forward pass of {type(model).__name__} failed with "
                    f"{type(exc).__name__}: {exc}. Check example_inputs ({CALL_CONVENTION}) or pass "
                    "forward_fn(model, example_inputs)."
                ) from exc
    finally:
        for h in handles:
            h.remove()
    return counter, module_names


def count_macs(model: nn.Module, example_inputs: Any, forward_fn: Optional[Callable] = None) -> int:
    """MACs of one forward pass of ``model`` on ``example_inputs`` (see the module docstring for conventions)."""
    counter, _ = _count(model, example_inputs, forward_fn, layer_wise=False)
    return counter.total


def count_ops_and_params(
    model: nn.Module,
    example_inputs: Any,
    layer_wise: bool = False,
    forward_fn: Optional[Callable[[nn.Module, Any], Any]] = None,
    layer_keys: str = "module",
):
    """Multiply-accumulates and parameters of ``model``, in one forward pass.

    Args:
        model: any ``nn.Module`` (on any device).  It is run once in eval mode under ``torch.no_grad()`` and
            left exactly as it was: training flags, parameters and buffers are unchanged afterwards.
        example_inputs: a tensor (``model(x)``), a tuple or list (``model(*x)``) or a dict (``model(**x)``);
            a ``PackedSequence``, though a tuple, is passed whole (``model(x)``).
        layer_wise: also return per-module figures.
        forward_fn: ``forward_fn(model, example_inputs)`` runs the model instead of the rules above.
        layer_keys: how the layer-wise dicts are keyed: ``"module"`` (the module objects, as Torch-Pruning) or
            ``"name"`` (qualified names, root ``""``).

    Returns:
        ``(macs, params)`` as ints — MACs for the whole batch in ``example_inputs``, and the number of distinct
        scalar parameters.  With ``layer_wise=True``: ``(macs, params, layer_macs, layer_params)``, the last two
        ``{module: int}`` for every module of ``model`` (``model`` itself included; ``{qualified name: int}``
        with ``layer_keys="name"``), each figure covering the module and its submodules.  An op is charged to
        the module whose forward ran it, or, for a functional convolution or linear layer, to the module owning
        the weight it used; ops run outside any module of ``model`` (e.g. by ``forward_fn``) count for the root
        only.

    Differences from ``torch_pruning.utils.count_ops_and_params`` 1.6: TP returns a float, its MACs divided by
    the length of the first positional input (per sample; identical at batch size 1); TP also charges biases,
    activations, pooling and upsampling and 2 per element for affine BatchNorm, so its totals run slightly
    higher (ResNet-50: 4.122 G for TP, 4.100 G here).  TP deep-copies the model; this function does not.

    Raises:
        TracingError: the forward pass failed.
    """
    if layer_keys not in ("module", "name"):
        raise ValueError(f"layer_keys must be 'module' or 'name', got {layer_keys!r}")
    counter, module_names = _count(model, example_inputs, forward_fn, layer_wise)
    params = count_params(model)
    if not layer_wise:
        return counter.total, params
    names = list(module_names.values())
    totals = _inclusive(counter.by_module)
    layer_macs = {name: totals.get(name, 0) for name in names}
    layer_params = params_per_module(model)
    if layer_keys == "module":
        modules = dict(model.named_modules())
        layer_macs = {modules[n]: v for n, v in layer_macs.items()}
        layer_params = {modules[n]: v for n, v in layer_params.items() if n in modules}
    return counter.total, params, layer_macs, layer_params
