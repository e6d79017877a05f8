"""MAC rules: what each torch operation costs, in multiply-accumulates, from the shapes of its arguments and result.

Each rule takes ``(args, kwargs, out)`` of one call and returns its MACs, or a list of ``(MACs, weight tensor or None)``
parts (so layer-wise counting can charge a part to the module owning that weight). :class:`~.ops_counter.MacCounter`
looks the rules up by the function objects it receives.

>>> import torch
>>> linear((torch.empty(4, 10), torch.empty(3, 10)), {}, torch.empty(4, 3))   # 4 rows x 10 inputs x 3 outputs
120

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
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------------------
# argument helpers
# --------------------------------------------------------------------------------------------------------
def arg(args: Sequence[Any], kwargs: Dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def prod(xs) -> int:
    r = 1
    for x in xs:
        r *= int(x)
    return r


# --------------------------------------------------------------------------------------------------------
# handlers: (args, kwargs, result) -> MACs, or a list of (MACs, weight tensor or None) parts.
# Each sees only its own top-level call.
# --------------------------------------------------------------------------------------------------------
def conv(args, kwargs, out) -> int:
    w = arg(args, kwargs, 1, "weight")
    return out.numel() * prod(w.shape[1:])  # (C_in / groups) * prod(kernel)


def conv_transpose(args, kwargs, out) -> int:
    x = arg(args, kwargs, 0, "input")
    w = arg(args, kwargs, 1, "weight")
    return x.numel() * prod(w.shape[1:])  # (C_out / groups) * prod(kernel) per input element


def convolution(args, kwargs, out) -> int:
    # torch.convolution / torch._convolution(input, weight, bias, stride, padding, dilation, transposed, ...)
    if arg(args, kwargs, 6, "transposed", False):
        return conv_transpose(args, kwargs, out)
    return conv(args, kwargs, out)


def conv_tbc(args, kwargs, out) -> int:
    w = arg(args, kwargs, 1, "weight")  # (kernel, C_in, C_out)
    return out.numel() * w.shape[0] * w.shape[1]


def linear(args, kwargs, out) -> int:
    w = arg(args, kwargs, 1, "weight")
    return out.numel() * w.shape[-1]


def bilinear(args, kwargs, out) -> int:
    w = arg(args, kwargs, 2, "weight")  # (out, in1, in2)
    return out.numel() * w.shape[1] * (w.shape[2] + 1)


def matmul(args, kwargs, out) -> int:
    a = arg(args, kwargs, 0, "input")
    return out.numel() * a.shape[-1] if a.dim() > 0 else out.numel()


def rmatmul(args, kwargs, out) -> int:  # Tensor.__rmatmul__(self, other) == other @ self
    a = args[1]
    return out.numel() * a.shape[-1] if a.dim() > 0 else out.numel()


def mm(args, kwargs, out) -> int:  # mm / bmm: (n,k)@(k,m) or (B,n,k)@(B,k,m)
    a = arg(args, kwargs, 0, "input")
    b = arg(args, kwargs, 1, "mat2")
    return a.numel() * b.shape[-1]


def addmm_like(first: str, second: str):
    def handler(args, kwargs, out) -> int:  # addmm / baddbmm / addbmm (input, mat1, mat2) and in-place forms
        a = arg(args, kwargs, 1, first)
        b = arg(args, kwargs, 2, second)
        return a.numel() * b.shape[-1]

    return handler


def mv(args, kwargs, out) -> int:
    return arg(args, kwargs, 0, "input").numel()


def addmv(args, kwargs, out) -> int:
    return arg(args, kwargs, 1, "mat").numel()


def dot(args, kwargs, out) -> int:
    return arg(args, kwargs, 0, "input").numel()


def inner(args, kwargs, out) -> int:
    a = arg(args, kwargs, 0, "input")
    b = arg(args, kwargs, 1, "other")
    if a.dim() == 0 or b.dim() == 0:
        return out.numel()
    return out.numel() * a.shape[-1]


def vecdot(args, kwargs, out) -> int:
    a = arg(args, kwargs, 0, "x")
    b = arg(args, kwargs, 1, "y")
    dim = arg(args, kwargs, 2, "dim", -1)
    size = max(a.shape[dim] if a.dim() else 1, b.shape[dim] if b.dim() else 1)
    return out.numel() * size


def outer(args, kwargs, out) -> int:
    return out.numel()


def addr(args, kwargs, out) -> int:
    return arg(args, kwargs, 1, "vec1").numel() * arg(args, kwargs, 2, "vec2").numel()


def cdist(args, kwargs, out) -> int:
    x1 = arg(args, kwargs, 0, "x1")
    return out.numel() * x1.shape[-1]


def tensordot(args, kwargs, out) -> int:
    a = arg(args, kwargs, 0, "a")
    dims = arg(args, kwargs, 2, "dims", 2)
    if isinstance(dims, Tensor):
        dims = dims.tolist()
    if isinstance(dims, int):
        contracted = a.shape[a.dim() - dims :] if dims > 0 else ()
    else:
        dims_a = dims[0]
        if isinstance(dims_a, int):
            dims_a = [dims_a]
        contracted = [a.shape[d] for d in dims_a]
    return out.numel() * prod(contracted)


def tensordot_builtin(args, kwargs, out) -> int:  # torch._C._VariableFunctions.tensordot(a, b, dims_a, dims_b)
    a = arg(args, kwargs, 0, "input")
    dims_a = arg(args, kwargs, 2, "dims_self")
    return out.numel() * prod(a.shape[d] for d in dims_a)


def chain_cost(shapes: List[Tuple[int, ...]]) -> int:
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


def multi_dot(args, kwargs, out) -> int:
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
    return chain_cost(shapes)


# einsum -----------------------------------------------------------------------------------------------
def einsum_cost(equation: str, operands: Sequence[Tensor]) -> int:
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
        total += prod(sizes[l] for l in involved)
        later = set().union(*per_operand[i + 1 :]) if i + 1 < len(per_operand) else set()
        current = {l for l in involved if l in out_letters or l in later}
    return total


def einsum(args, kwargs, out) -> int:
    """torch.einsum: ``(equation, *operands)``, ``(equation, [operands])`` or the sublist format."""
    if args and isinstance(args[0], str):
        equation = args[0]
        operands = args[1:]
        if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
            operands = operands[0]
        return einsum_cost(equation, list(operands))
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
    return einsum_cost(equation, ops)


def einsum_builtin(args, kwargs, out) -> int:  # torch._C._VariableFunctions.einsum(equation, tensors, path=None)
    return einsum_cost(arg(args, kwargs, 0, "equation"), list(arg(args, kwargs, 1, "tensors", ())))


# attention ---------------------------------------------------------------------------------------------
def sdpa(args, kwargs, out) -> int:
    q = arg(args, kwargs, 0, "query")
    k = arg(args, kwargs, 1, "key")
    v = arg(args, kwargs, 2, "value")
    rows = out.numel() // out.shape[-1]  # prod(batch) * L
    return rows * k.shape[-2] * (q.shape[-1] + v.shape[-1])


def mha_forward(args, kwargs, out) -> int:
    """F.multi_head_attention_forward (sequence-first inputs; nn.MultiheadAttention transposes batch_first)."""
    query = arg(args, kwargs, 0, "query")
    key = arg(args, kwargs, 1, "key")
    embed_dim = int(arg(args, kwargs, 3, "embed_dim_to_check"))
    in_proj_weight = arg(args, kwargs, 5, "in_proj_weight")
    bias_k = arg(args, kwargs, 7, "bias_k")
    add_zero_attn = bool(arg(args, kwargs, 9, "add_zero_attn", False))
    out_proj_weight = arg(args, kwargs, 11, "out_proj_weight")
    separate = bool(arg(args, kwargs, 17, "use_separate_proj_weight", False))
    static_k = arg(args, kwargs, 21, "static_k")
    static_v = arg(args, kwargs, 22, "static_v")

    batch = query.shape[1] if query.dim() == 3 else 1
    tgt_len = query.shape[0]
    src_len = key.shape[0]
    if separate:
        wq = arg(args, kwargs, 18, "q_proj_weight").numel()
        wk = arg(args, kwargs, 19, "k_proj_weight").numel()
        wv = arg(args, kwargs, 20, "v_proj_weight").numel()
    else:
        wq = wk = wv = in_proj_weight.numel() // 3
    macs = tgt_len * wq
    if static_k is None:
        macs += src_len * wk
    else:
        src_len = static_k.shape[1]
    if static_v is None:
        macs += arg(args, kwargs, 2, "value").shape[0] * wv
    attn_len = src_len + (1 if bias_k is not None else 0) + (1 if add_zero_attn else 0)
    macs += 2 * tgt_len * attn_len * embed_dim  # Q K^T and A V over all heads
    # the out-projection is reported apart, so that layer-wise counts charge it to the module owning the weight
    return [(batch * macs, None), (batch * tgt_len * out_proj_weight.numel(), out_proj_weight)]


def native_mha(args, kwargs, out) -> int:
    """torch._native_multi_head_attention (the fused fast path; batch-first inputs)."""
    q, k = args[0], args[1]
    embed_dim = int(args[3])
    proj_w = args[7]
    batch = q.shape[0] if q.dim() == 3 else 1
    L, S = q.shape[-2], k.shape[-2]
    return batch * (L * embed_dim * embed_dim + 2 * S * embed_dim * embed_dim
                    + 2 * L * S * embed_dim + L * proj_w.numel())


# normalisation -----------------------------------------------------------------------------------------
def batch_norm(args, kwargs, out) -> int:
    # F.batch_norm(input, running_mean, running_var, weight, bias, training, ...) and
    # torch.batch_norm(input, weight, bias, running_mean, running_var, training, ...): `training` is #5 in both
    x = arg(args, kwargs, 0, "input")
    training = bool(arg(args, kwargs, 5, "training", False))
    return x.numel() * (2 if training else 1)


def instance_norm(args, kwargs, out) -> int:
    # F.instance_norm(..., use_input_stats=True) / torch.instance_norm(..., use_input_stats): #5 in both
    x = arg(args, kwargs, 0, "input")
    use_input_stats = bool(arg(args, kwargs, 5, "use_input_stats", True))
    return x.numel() * (2 if use_input_stats else 1)


def stats_norm(args, kwargs, out) -> int:  # layer_norm / group_norm / rms_norm
    return arg(args, kwargs, 0, "input").numel() * 2


# recurrent ---------------------------------------------------------------------------------------------
def rnn(gates: int, cell_products: int):
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


def rnn_cell(gates: int, cell_products: int):
    """torch.lstm_cell / gru_cell / rnn_tanh_cell / rnn_relu_cell(input, hx, w_ih, w_hh, b_ih, b_hh)."""

    def handler(args, kwargs, out) -> int:
        x = arg(args, kwargs, 0, "input")
        w_ih = arg(args, kwargs, 2, "w_ih")
        w_hh = arg(args, kwargs, 3, "w_hh")
        rows = x.numel() // x.shape[-1] if x.dim() else 0
        return rows * (w_ih.numel() + w_hh.numel() + cell_products * (w_ih.shape[0] // gates))

    return handler
