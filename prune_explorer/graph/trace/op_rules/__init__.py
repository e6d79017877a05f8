"""How each traced operation moves channel labels from its inputs to its outputs.

One rule per family of operations, one module per kind of rule: :mod:`.elementwise`, :mod:`.replay` (shape ops
replayed on the labels, indexing; :mod:`.slices` for slices that follow the pruning), :mod:`.reshape` (view / split /
expand / cat; :mod:`.sizes` for the size arguments, attributes included), :mod:`.reduction` (reductions, pooling,
creation), :mod:`.contraction` (matmul, einsum, attention); :mod:`.call` holds the :class:`Call` record and the
fallbacks. :data:`OP_RULES` maps an operation's short name (``"add"``, ``"cat"``, ``"view"``…, see
:func:`~prune_explorer.graph.trace.op_names.op_name`) to its rule. A rule receives the tracer (couplings, value lookup) and
the :class:`Call` (inputs/outputs as :class:`~prune_explorer.graph.trace.labels.Value`, plus the original args) and sets
``out.fields`` for every output value. Anything a rule cannot map safely is *fixed* (never pruned) with a reason,
so an unusual model loses some prunable channels instead of being pruned into an invalid shape.

>>> OP_RULES["add"] is elementwise, OP_RULES["view"] is reshape, OP_RULES.get("fft_fft", unknown) is unknown
(True, True, True)
"""

from __future__ import annotations

from typing import Callable, Dict, List

from .call import Call, no_channels, selection, unknown
from .contraction import baddbmm, einsum, functional_linear, grouped_mm, matmul, sdpa
from .elementwise import elementwise, first_operand
from .reduction import creation, norm_reduction, reduction, spatial
from .replay import getitem, index_add, index_replay, narrow_select, pad, roll, setitem, simple_replay
from .reshape import cat, expand, reshape, split

__all__ = ["OP_RULES", "Call", "elementwise", "unknown"]

_ELEMENTWISE = """add sub rsub mul div true_divide floor_divide remainder fmod pow neg negative abs exp exp2 expm1 log log2
log10 log1p sqrt rsqrt sigmoid tanh relu relu6 hardtanh hardswish hardsigmoid silu gelu elu leaky_relu selu celu mish
softplus softsign tanhshrink threshold logsigmoid dropout dropout1d dropout2d dropout3d alpha_dropout
feature_alpha_dropout native_dropout clamp clamp_min clamp_max clip where maximum minimum fmax fmin sign sgn erf erfc
erfinv sin cos tan asin acos atan sinh cosh atan2 hypot contiguous clone detach masked_fill lerp addcmul addcdiv square
reciprocal logical_and logical_or logical_not logical_xor eq ne lt gt le ge nan_to_num isnan isinf isfinite round floor
ceil trunc frac bitwise_and bitwise_or bitwise_xor bitwise_not and or xor invert lshift rshift positive float_power
xlogy copy fill zero normal uniform bernoulli requires_grad cpu cuda float half double bfloat16 int long bool short
char byte pin_memory stochastic_depth hardshrink softshrink rrelu glu_ exponential random cumsum cumprod logit
normalize local_response_norm add_relu pos neg_ mul_ sigmoid_ relu_ data abs_ clamp_ detach_ cauchy geometric
log_normal masked_scatter index_fill scatter_add""".split()

_REPLAY = """permute transpose swapaxes swapdims t T mT H mH movedim moveaxis squeeze unsqueeze expand expand_as broadcast_to
repeat tile flip fliplr flipud repeat_interleave""".split()

def _names(text: str) -> List[str]:
    return text.split()



_NO_CHANNELS = _names("""dim ndim numel nelement size shape is_contiguous dtype device is_cuda grad_fn requires_grad_get
data_ptr stride storage_offset element_size is_floating_point get_device item tolist __len__ __bool__ __format__
__repr__ __hash__ __eq__ is_complex is_leaf is_sparse layout untyped_storage __reduce_ex__ __deepcopy__ __index__
__int__ __float__ __array__ __contains__ register_hook retain_grad isclose allclose equal bincount is_nonzero
has_names names is_quantized is_meta is_mkldnn __iter__ __dir__ __sizeof__ _version __get__ output_nr is_inference
is_set_to real imag isreal""")

# (rule, op names); a later row wins for a name listed twice
_TABLE = [
    (no_channels, _NO_CHANNELS),
    (elementwise, _ELEMENTWISE),
    (simple_replay, _REPLAY),
    (expand, ["expand", "broadcast_to"]),
    (first_operand, ["to", "type_as", "type", "new_tensor"]),
    (reshape, ["view", "reshape", "flatten", "unflatten", "view_as", "reshape_as"]),
    (split, ["split", "chunk", "tensor_split", "split_with_sizes", "unsafe_split", "unsafe_chunk"]),
    (narrow_select, ["unbind", "narrow", "select"]),
    (getitem, ["__getitem__"]),
    (setitem, ["__setitem__"]),
    (roll, ["roll"]),
    (pad, ["pad"]),
    (index_replay, ["index_select", "gather", "take_along_dim"]),
    (index_add, ["index_add"]),
    (cat, ["cat", "concat", "concatenate", "stack"]),
    (reduction, _names("""sum mean amax amin max min std var norm logsumexp prod nansum nanmean median nanmedian
        std_mean var_mean argmax argmin all any count_nonzero mode""")),
    (norm_reduction, ["norm", "vector_norm", "linalg_vector_norm"]),
    (spatial, _names("""max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d
        adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d lp_pool1d
        lp_pool2d lp_pool3d max_pool1d_with_indices max_pool2d_with_indices max_pool3d_with_indices
        adaptive_max_pool1d_with_indices adaptive_max_pool2d_with_indices interpolate upsample upsample_nearest
        upsample_bilinear grid_sample roi_align roi_pool ps_roi_align ps_roi_pool fractional_max_pool2d""")),
    (first_operand, ["softmax", "log_softmax", "softmin"]),
    (matmul, ["matmul", "mm", "bmm", "__matmul__", "__rmatmul__", "inner"]),
    (baddbmm, ["addmm", "baddbmm", "addbmm"]),
    (einsum, ["einsum"]),
    (functional_linear, ["linear"]),
    (grouped_mm, ["grouped_mm", "_grouped_mm", "grouped_mm_fallback"]),
    (sdpa, ["scaled_dot_product_attention"]),
    (creation, _names("""zeros ones empty full rand randn randint arange linspace logspace tensor as_tensor eye
        new_zeros new_ones new_empty new_full scalar_tensor""")),
    (first_operand, ["zeros_like", "ones_like", "empty_like", "full_like", "rand_like", "randn_like", "randint_like"]),
    (selection, _names("""sort topk unique unique_consecutive nonzero argsort nms batched_nms masked_select kthvalue
        msort searchsorted bucketize""")),
]

#: op short name -> rule; anything else that meets a channel is reported as unsupported and kept fixed
OP_RULES: Dict[str, Callable] = {name: rule for rule, names in _TABLE for name in names}
