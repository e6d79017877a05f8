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

Units and conventions
---------------------
* One MAC is one ``a * b + c``.  A FLOP figure is about twice the MAC figure.
* The count is for the **whole batch** in ``example_inputs`` (batch 8 gives 8x the MACs of batch 1).
  Torch-Pruning 1.6 divides its total by the length of the first positional input, i.e. reports MACs per
  sample; the two agree at batch size 1, the usual way of calling it.  Divide by the batch size for a
  per-sample figure.
* Biases cost nothing: a bias is the accumulator's starting value (``y = b + sum w x`` is exactly
  ``len(x)`` MACs).  ``nn.Linear(10, 5)`` on one sample is 50 MACs with or without bias.
* Convolution: ``out.numel() * (C_in / groups) * prod(kernel)``.
* Transposed convolution: ``in.numel() * (C_out / groups) * prod(kernel)`` (every input element is scattered
  through its kernel once; zero padding is not counted).
* Linear: ``out.numel() * in_features`` — so a 3-D input ``(B, T, C)`` costs ``B * T * C * out``.
  Bilinear: ``out.numel() * in1 * (in2 + 1)``.
* Matrix products (``matmul``/``@``, ``mm``, ``bmm``, ``addmm``, ``baddbmm``, ``addbmm``, ``mv``, ``dot``,
  ``inner``, ``linalg.vecdot``): ``prod(batch) * n * k * m`` after broadcasting; ``outer``: ``n * m``.
  ``einsum``: contracted pairwise left to right, each pair costing the product of the sizes of all the indices
  it involves (exact for one or two operands).  ``tensordot``: ``out.numel() * prod(contracted dims)``.
  ``linalg.multi_dot`` / ``chain_matmul``: the cheapest multiplication order (the one torch uses).
  ``cdist``: ``out.numel() * features``.
* ``F.scaled_dot_product_attention(q, k, v)``: ``prod(batch) * L * S * (E + E_v)`` (``Q K^T`` and ``A V``;
  scaling, masking and softmax are free).
* ``nn.MultiheadAttention`` (``F.multi_head_attention_forward``), per batch element: in-projection
  ``L*E*E + S*E*kdim + S*E*vdim`` (nothing for a ``static_k``/``static_v``), ``Q K^T`` ``L*S'*E``,
  ``A V`` ``L*S'*E`` (``S'`` counts the ``bias_k`` row and the zero-attention row when enabled), and the
  out-projection ``L*E*E``.
* Recurrent layers (``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells): for every time step, layer and
  direction, the two gate products ``W_ih x`` and ``W_hh h`` (``gates * hidden * (input + hidden)``, with
  ``gates`` = 4, 3, 1), the LSTM projection ``W_hr`` if any, plus the cell's element-wise products:
  3 per hidden unit for LSTM (``f*c``, ``i*g``, ``o*tanh(c)``) and GRU (``r*(W_hn h)``, ``z*h``,
  ``(1-z)*n``), 0 for a plain RNN.  Packed sequences are charged for their real (unpadded) steps.
* Normalisation: applying it is 1 MAC per element (``x * scale + shift``; an affine weight and bias are folded
  into ``scale`` and ``shift`` and add nothing).  Computing statistics at run time adds 1 MAC per element (the
  sum of squares).  So ``batch_norm`` with running statistics (eval) is ``numel``, and ``batch_norm`` on batch
  statistics, ``layer_norm``, ``group_norm``, ``instance_norm`` and ``rms_norm`` are ``2 * numel``.
* Free (0 MACs): embeddings, activations, element-wise arithmetic (``+``, ``*``, ...), softmax, dropout,
  pooling, interpolation / upsampling, padding, reshapes, indexing, reductions, and any op not listed above.

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
from .params import count_params, params_per_module

__all__ = ["MacCounter", "count_ops_and_params", "count_macs"]

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------------------------------------
def _arg(args: Sequence[Any], kwargs: Dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _prod(xs) -> int:
    r = 1
    for x in xs:
        r *= int(x)
    return r


# --------------------------------------------------------------------------------------------------------
# handlers: (args, kwargs, result) -> MACs, or a list of (MACs, weight tensor or None) parts.
# Each sees only its own top-level call.
# --------------------------------------------------------------------------------------------------------
def _conv(args, kwargs, out) -> int:
    w = _arg(args, kwargs, 1, "weight")
    return out.numel() * _prod(w.shape[1:])  # (C_in / groups) * prod(kernel)


def _conv_transpose(args, kwargs, out) -> int:
    x = _arg(args, kwargs, 0, "input")
    w = _arg(args, kwargs, 1, "weight")
    return x.numel() * _prod(w.shape[1:])  # (C_out / groups) * prod(kernel) per input element


def _convolution(args, kwargs, out) -> int:
    # torch.convolution / torch._convolution(input, weight, bias, stride, padding, dilation, transposed, ...)
    if _arg(args, kwargs, 6, "transposed", False):
        return _conv_transpose(args, kwargs, out)
    return _conv(args, kwargs, out)


def _conv_tbc(args, kwargs, out) -> int:
    w = _arg(args, kwargs, 1, "weight")  # (kernel, C_in, C_out)
    return out.numel() * w.shape[0] * w.shape[1]


def _linear(args, kwargs, out) -> int:
    w = _arg(args, kwargs, 1, "weight")
    return out.numel() * w.shape[-1]


def _bilinear(args, kwargs, out) -> int:
    w = _arg(args, kwargs, 2, "weight")  # (out, in1, in2)
    return out.numel() * w.shape[1] * (w.shape[2] + 1)


def _matmul(args, kwargs, out) -> int:
    a = _arg(args, kwargs, 0, "input")
    return out.numel() * a.shape[-1] if a.dim() > 0 else out.numel()


def _rmatmul(args, kwargs, out) -> int:  # Tensor.__rmatmul__(self, other) == other @ self
    a = args[1]
    return out.numel() * a.shape[-1] if a.dim() > 0 else out.numel()


def _mm(args, kwargs, out) -> int:  # mm / bmm: (n,k)@(k,m) or (B,n,k)@(B,k,m)
    a = _arg(args, kwargs, 0, "input")
    b = _arg(args, kwargs, 1, "mat2")
    return a.numel() * b.shape[-1]


def _addmm_like(first: str, second: str):
    def handler(args, kwargs, out) -> int:  # addmm / baddbmm / addbmm (input, mat1, mat2) and in-place forms
        a = _arg(args, kwargs, 1, first)
        b = _arg(args, kwargs, 2, second)
        return a.numel() * b.shape[-1]

    return handler


def _mv(args, kwargs, out) -> int:
    return _arg(args, kwargs, 0, "input").numel()


def _addmv(args, kwargs, out) -> int:
    return _arg(args, kwargs, 1, "mat").numel()


def _dot(args, kwargs, out) -> int:
    return _arg(args, kwargs, 0, "input").numel()


def _inner(args, kwargs, out) -> int:
    a = _arg(args, kwargs, 0, "input")
    b = _arg(args, kwargs, 1, "other")
    if a.dim() == 0 or b.dim() == 0:
        return out.numel()
    return out.numel() * a.shape[-1]


def _vecdot(args, kwargs, out) -> int:
    a = _arg(args, kwargs, 0, "x")
    b = _arg(args, kwargs, 1, "y")
    dim = _arg(args, kwargs, 2, "dim", -1)
    size = max(a.shape[dim] if a.dim() else 1, b.shape[dim] if b.dim() else 1)
    return out.numel() * size


def _outer(args, kwargs, out) -> int:
    return out.numel()


def _addr(args, kwargs, out) -> int:
    return _arg(args, kwargs, 1, "vec1").numel() * _arg(args, kwargs, 2, "vec2").numel()


def _cdist(args, kwargs, out) -> int:
    x1 = _arg(args, kwargs, 0, "x1")
    return out.numel() * x1.shape[-1]


def _tensordot(args, kwargs, out) -> int:
    a = _arg(args, kwargs, 0, "a")
    dims = _arg(args, kwargs, 2, "dims", 2)
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        contracted = a.shape[a.dim() - dims :] if dims > 0 else ()
    else:
        dims_a = dims[0]
        if isinstance(dims_a, int):
            dims_a = [dims_a]
        contracted = [a.shape[d] for d in dims_a]
    return out.numel() * _prod(contracted)


def _tensordot_builtin(args, kwargs, out) -> int:  # torch._C._VariableFunctions.tensordot(a, b, dims_a, dims_b)
    a = _arg(args, kwargs, 0, "input")
    dims_a = _arg(args, kwargs, 2, "dims_self")
    return out.numel() * _prod(a.shape[d] for d in dims_a)


def _chain_cost(shapes: List[Tuple[int, ...]]) -> int:
    """Cheapest cost of multiplying a chain of matrices (classic dynamic programme)."""
    dims = [shapes[0][0]] + [s[1] for s in shapes]
    n = len(shapes)
    cost = [[0] * n for _ in range(n)]
    for length in range(2, n + 1):
        for i in range(n - length + 1):
            j = i + length - 1
            cost[i][j] = min(
                cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1] for k in range(i, j)
            )
    return cost[0][n - 1]


def _multi_dot(args, kwargs, out) -> int:
    tensors = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    if not tensors:
        tensors = kwargs.get("tensors", kwargs.get("matrices", ()))
    tensors = list(tensors)
    if len(tensors) < 2:
        return 0
    shapes = [tuple(t.shape) for t in tensors]
    if len(shapes[0]) == 1:
        shapes[0] = (1,) + shapes[0]
    if len(shapes[-1]) == 1:
        shapes[-1] = shapes[-1] + (1,)
    return _chain_cost(shapes)


# einsum -----------------------------------------------------------------------------------------------
def _einsum_cost(equation: str, operands: Sequence[Tensor]) -> int:
    if len(operands) < 2:
        return 0  # a single operand (transpose, trace, sum) has no multiplication
    equation = equation.replace(" ", "")
    if "->" in equation:
        lhs, rhs = equation.split("->")
        explicit_out = True
    else:
        lhs, rhs, explicit_out = equation, "", False
    terms = lhs.split(",")
    sizes: Dict[str, int] = {}
    ell_letters: List[str] = []
    per_operand: List[List[str]] = []
    for term, op in zip(terms, operands):
        letters = []
        if "..." in term:
            head, tail = term.split("...")
            n_ell = op.dim() - len(head) - len(tail)
            while len(ell_letters) < n_ell:
                ell_letters.append("\0%d" % len(ell_letters))
            # ellipsis dims are right-aligned across operands
            ell = ell_letters[len(ell_letters) - n_ell :] if n_ell else []
            letters = list(head) + ell + list(tail)
        else:
            letters = list(term)
        for letter, size in zip(letters, op.shape):
            sizes[letter] = max(sizes.get(letter, 1), int(size))
        per_operand.append(letters)
    if explicit_out:
        if "..." in rhs:
            head, tail = rhs.split("...")
            out_letters = set(head) | set(ell_letters) | set(tail)
        else:
            out_letters = set(rhs)
    else:
        counts: Dict[str, int] = {}
        for letters in per_operand:
            for letter in set(letters):
                counts[letter] = counts.get(letter, 0) + 1
        out_letters = {l for l, c in counts.items() if c == 1} | set(ell_letters)
    total = 0
    current = set(per_operand[0])
    for i in range(1, len(per_operand)):
        involved = current | set(per_operand[i])
        total += _prod(sizes[l] for l in involved)
        later = set().union(*per_operand[i + 1 :]) if i + 1 < len(per_operand) else set()
        current = {l for l in involved if l in out_letters or l in later}
    return total


def _einsum(args, kwargs, out) -> int:
    """torch.einsum: ``(equation, *operands)``, ``(equation, [operands])`` or the sublist format."""
    if args and isinstance(args[0], str):
        equation = args[0]
        operands = args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = operands[0]
        return _einsum_cost(equation, list(operands))
    # sublist format: op0, sub0, op1, sub1, ..., [out_sub]
    ops = list(args[0::2])
    subs = list(args[1::2])
    out_sub = None
    if ops and not isinstance(ops[-1], Tensor):
        out_sub = ops.pop()
    letters: Dict[Any, str] = {}

    def name(s):
        if s is Ellipsis:
            return "..."
        if s not in letters:
            letters[s] = chr(ord("a") + len(letters)) if len(letters) < 26 else chr(ord("A") + len(letters) - 26)
        return letters[s]

    equation = ",".join("".join(name(s) for s in sub) for sub in subs)
    if out_sub is not None:
        equation += "->" + "".join(name(s) for s in out_sub)
    return _einsum_cost(equation, ops)


def _einsum_builtin(args, kwargs, out) -> int:  # torch._C._VariableFunctions.einsum(equation, tensors, path=None)
    return _einsum_cost(_arg(args, kwargs, 0, "equation"), list(_arg(args, kwargs, 1, "tensors", ())))


# attention ---------------------------------------------------------------------------------------------
def _sdpa(args, kwargs, out) -> int:
    q = _arg(args, kwargs, 0, "query")
    k = _arg(args, kwargs, 1, "key")
    v = _arg(args, kwargs, 2, "value")
    rows = out.numel() // out.shape[-1]  # prod(batch) * L
    return rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def _mha_forward(args, kwargs, out) -> int:
    """F.multi_head_attention_forward (sequence-first inputs; nn.MultiheadAttention transposes batch_first)."""
    query = _arg(args, kwargs, 0, "query")
    key = _arg(args, kwargs, 1, "key")
    embed_dim = int(_arg(args, kwargs, 3, "embed_dim_to_check"))
    in_proj_weight = _arg(args, kwargs, 5, "in_proj_weight")
    bias_k = _arg(args, kwargs, 7, "bias_k")
    add_zero_attn = bool(_arg(args, kwargs, 9, "add_zero_attn", False))
    out_proj_weight = _arg(args, kwargs, 11, "out_proj_weight")
    separate = bool(_arg(args, kwargs, 17, "use_separate_proj_weight", False))
    static_k = _arg(args, kwargs, 21, "static_k")
    static_v = _arg(args, kwargs, 22, "static_v")

    batch = query.shape[1] if query.dim() == 3 else 1
    tgt_len = query.shape[0]
    src_len = key.shape[0]
    if separate:
        wq = _arg(args, kwargs, 18, "q_proj_weight").numel()
        wk = _arg(args, kwargs, 19, "k_proj_weight").numel()
        wv = _arg(args, kwargs, 20, "v_proj_weight").numel()
    else:
        wq = wk = wv = in_proj_weight.numel() // 3
    macs = tgt_len * wq
    if static_k is None:
        macs += src_len * wk
    else:
        src_len = static_k.shape[1]
    if static_v is None:
        macs += _arg(args, kwargs, 2, "value").shape[0] * wv
    attn_len = src_len + (1 if bias_k is not None else 0) + (1 if add_zero_attn else 0)
    macs += 2 * tgt_len * attn_len * embed_dim  # Q K^T and A V over all heads
    # the out-projection is reported apart, so that layer-wise counts charge it to the module owning the weight
    return [(batch * macs, None), (batch * tgt_len * out_proj_weight.numel(), out_proj_weight)]


def _native_mha(args, kwargs, out) -> int:
    """torch._native_multi_head_attention (the fused fast path; batch-first inputs)."""
    q, k = args[0], args[1]
    embed_dim = int(args[3])
    proj_w = args[7]
    batch = q.shape[0] if q.dim() == 3 else 1
    L, S = q.shape[-2], k.shape[-2]
    return batch * (L * embed_dim * embed_dim + 2 * S * embed_dim * embed_dim
                    + 2 * L * S * embed_dim + L * proj_w.numel())


# normalisation -----------------------------------------------------------------------------------------
def _batch_norm(args, kwargs, out) -> int:
    # F.batch_norm(input, running_mean, running_var, weight, bias, training, ...) and
    # torch.batch_norm(input, weight, bias, running_mean, running_var, training, ...): `training` is #5 in both
    x = _arg(args, kwargs, 0, "input")
    training = bool(_arg(args, kwargs, 5, "training", False))
    return x.numel() * (2 if training else 1)


def _instance_norm(args, kwargs, out) -> int:
    # F.instance_norm(..., use_input_stats=True) / torch.instance_norm(..., use_input_stats): #5 in both
    x = _arg(args, kwargs, 0, "input")
    use_input_stats = bool(_arg(args, kwargs, 5, "use_input_stats", True))
    return x.numel() * (2 if use_input_stats else 1)


def _stats_norm(args, kwargs, out) -> int:  # layer_norm / group_norm / rms_norm
    return _arg(args, kwargs, 0, "input").numel() * 2


# recurrent ---------------------------------------------------------------------------------------------
def _rnn(gates: int, cell_products: int):
    """_VF.lstm / gru / rnn_tanh / rnn_relu, plain or packed."""

    def handler(args, kwargs, out) -> int:
        x = args[0]
        packed = isinstance(args[1], Tensor) and not args[1].is_floating_point()
        off = 1 if packed else 0
        params = args[2 + off]
        num_layers = int(args[4 + off])
        bidirectional = bool(args[7 + off])
        groups = num_layers * (2 if bidirectional else 1)
        per_group = len(params) // groups  # w_ih, w_hh, [b_ih, b_hh], [w_hr]
        has_proj = per_group in (3, 5)
        per_step = 0
        for g in range(groups):
            w_ih = params[g * per_group]
            w_hh = params[g * per_group + 1]
            per_step += w_ih.numel() + w_hh.numel() + cell_products * (w_ih.shape[0] // gates)
            if has_proj:
                per_step += params[g * per_group + per_group - 1].numel()
        rows = x.numel() // x.shape[-1] if x.dim() else 0  # time steps * batch (packed: real steps)
        return rows * per_step

    return handler


def _rnn_cell(gates: int, cell_products: int):
    """torch.lstm_cell / gru_cell / rnn_tanh_cell / rnn_relu_cell(input, hx, w_ih, w_hh, b_ih, b_hh)."""

    def handler(args, kwargs, out) -> int:
        x = _arg(args, kwargs, 0, "input")
        w_ih = _arg(args, kwargs, 2, "w_ih")
        w_hh = _arg(args, kwargs, 3, "w_hh")
        rows = x.numel() // x.shape[-1] if x.dim() else 0
        return rows * (w_ih.numel() + w_hh.numel() + cell_products * (w_ih.shape[0] // gates))

    return handler


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


_register(_builtins("conv1d", "conv2d", "conv3d"), _conv, 1)
_register(_builtins("conv_transpose1d", "conv_transpose2d", "conv_transpose3d"), _conv_transpose, 1)
_register(_builtins("convolution", "_convolution"), _convolution, 1)
_register(_builtins("conv_tbc"), _conv_tbc, 1)
_register(_builtins("linear", "mkldnn_linear"), _linear, 1)
_register(_builtins("bilinear"), _bilinear, 2)
_register(_builtins("matmul", "__matmul__") + [getattr(torch.linalg, "matmul", None)], _matmul)
_register(_builtins("__rmatmul__") + [torch.Tensor.__rmatmul__], _rmatmul)
_register(_builtins("mm", "bmm"), _mm)
_register(_builtins("addmm", "addmm_"), _addmm_like("mat1", "mat2"))
_register(_builtins("baddbmm", "baddbmm_", "addbmm", "addbmm_"), _addmm_like("batch1", "batch2"))
_register(_builtins("mv"), _mv)
_register(_builtins("addmv", "addmv_"), _addmv)
_register(_builtins("dot", "vdot"), _dot)
_register(_builtins("inner"), _inner)
_register([getattr(torch.linalg, "vecdot", None)], _vecdot)
_register(_builtins("outer", "ger"), _outer)
_register(_builtins("addr", "addr_"), _addr)
_register([torch.einsum], _einsum)
_register([getattr(_VARIABLE_FUNCS, "einsum", None)], _einsum_builtin)
_register([torch.tensordot], _tensordot)
_register([getattr(_VARIABLE_FUNCS, "tensordot", None)], _tensordot_builtin)
_register([torch.chain_matmul, getattr(_VARIABLE_FUNCS, "chain_matmul", None),
           getattr(torch.linalg, "multi_dot", None)], _multi_dot)
_register([torch.cdist, getattr(_VARIABLE_FUNCS, "_cdist_forward", None)], _cdist)
_register([F.scaled_dot_product_attention], _sdpa)
_register([F.multi_head_attention_forward], _mha_forward)
_register(_builtins("_native_multi_head_attention"), _native_mha)
_register([F.batch_norm] + _builtins("batch_norm"), _batch_norm)
_register([F.instance_norm] + _builtins("instance_norm"), _instance_norm)
_register([F.layer_norm, F.group_norm, getattr(F, "rms_norm", None)]
          + _builtins("layer_norm", "group_norm", "rms_norm", "native_layer_norm"), _stats_norm)
_register(_builtins("lstm"), _rnn(4, 3))
_register(_builtins("gru"), _rnn(3, 3))
_register(_builtins("rnn_tanh", "rnn_relu"), _rnn(1, 0))
_register(_builtins("lstm_cell"), _rnn_cell(4, 3))
_register(_builtins("gru_cell"), _rnn_cell(3, 3))
_register(_builtins("rnn_tanh_cell", "rnn_relu_cell"), _rnn_cell(1, 0))


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
                weight = _arg(args, kwargs, weight_pos, "weight") if weight_pos is not None else None
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
                    call_model(model, example_inputs, forward_fn)
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
