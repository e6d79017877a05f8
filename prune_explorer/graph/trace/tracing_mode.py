"""The :class:`torch.overrides.TorchFunctionMode` that hands every torch call a model makes to the tracer.

Calls made inside a hooked layer (seen as one call by the tracer) and the tracer's own calls just run; on meta-device
stand-ins the common ones get their output shape from :mod:`.meta_shapes` without running. ``x.size()`` / ``x.shape``
answers go through the tracer (:meth:`~.tracing.Tracer.traced_size`) so that sizes the model computes with keep
their provenance. See :mod:`.tracing` for the tracer itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.overrides import TorchFunctionMode

from .meta_shapes import check_meta_dtypes, fast_meta
from .op_names import op_name

if TYPE_CHECKING:  # the tracer imports this module
    from .tracing import Tracer

__all__ = ["TracingMode"]


class TracingMode(TorchFunctionMode):
    """Hands every torch call the model makes to the tracer (calls inside a hooked layer, and the tracer's own,
    just run; on meta stand-ins the common ones get their output shape from :mod:`.meta_shapes`)."""

    def __init__(self, tracer: "Tracer"):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tr = self.tracer
        if tr.in_tracer_code or tr.layer_depth:
            if tr.meta and not tr.in_tracer_code:
                out = fast_meta(func, op_name(func), args, kwargs)
                if out is not None:
                    return out
            elif not tr.in_tracer_code:
                check_meta_dtypes(op_name(func), args, kwargs)  # a model built on meta, traced as it is
            return func(*args, **kwargs)
        name = op_name(func)
        if name in ("size", "shape"):
            out = func(*args, **kwargs)
            return tr.traced_size(args[0], out, args[1:] if len(args) > 1 else kwargs.get("dim"))
        check_meta_dtypes(name, args, kwargs)
        out = fast_meta(func, name, args, kwargs) if tr.meta else None
        if out is None:
            out = func(*args, **kwargs)
        tr.in_tracer_code = True
        try:
            tr.on_call(func, name, args, kwargs, out)
        except Exception as exc:  # never break the user's forward pass because of a tracer bug
            tr.on_internal_error(name, exc, args, kwargs, out)
        finally:
            tr.in_tracer_code = False
        return out
