"""Tracing a model for the dependency graph: on meta stand-ins when possible, for real otherwise.

Shapes are all the graph needs, so :func:`trace_model` first runs the model with every parameter, buffer and input
replaced by a meta-device stand-in (no arithmetic at all). Data-dependent code (detection post-processing, ``if
x.sum() > 0``), or hooks the user registered (they would be fed meta tensors), make it trace for real instead. Either
way the model is left exactly as it was.
"""

from __future__ import annotations

import sys
import warnings
from typing import Callable, Optional, Sequence

import torch.nn as nn
from torch.nn.modules import module as torch_module

from ...errors import TracingError
from ...inputs import forget_whole, has_meta_tensors, passes_whole, remember_whole
from ...layers.registry import PRUNER_METHODS, is_pruner
from ..edit.snapshot import module_state, restore_modules
from .tracing import Tracer

__all__ = ["check_customized_pruners", "has_user_hooks", "trace_model"]


def has_user_hooks(model: nn.Module, modules: Optional[Sequence[nn.Module]] = None) -> bool:
    """Hooks a meta-device trace would feed meta tensors to (so the trace then runs for real). ``modules``:
    ``list(model.modules())`` when the caller already has it."""
    if torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks:
        return True
    return any(m._forward_hooks or m._forward_pre_hooks for m in (model.modules() if modules is None else modules))


def check_customized_pruners(customized_pruners: dict) -> None:
    """Raise ``TypeError`` unless every key is a layer type and every value a pruner."""
    for t, p in customized_pruners.items():
        if not isinstance(t, type) or not is_pruner(p):
            raise TypeError(
                f"customized_pruners must map a layer type to a pruner object with {' / '.join(PRUNER_METHODS)} "
                f"(got {t!r}: {p!r})"
            )


def trace_model(model: nn.Module, example_inputs, forward_fn: Optional[Callable] = None,
                output_transform: Optional[Callable] = None, customized_pruners: Optional[dict] = None,
                unwrapped_parameters=None, head_pruning: str = "dims", named_modules=None) -> Tracer:
    """The finished :class:`~.tracing.Tracer` of one forward pass (see the module docstring). Warnings the library
    raised during a meta trace that succeeded are re-raised here (those of a meta trace given up on are dropped).
    ``head_pruning``: see :meth:`~.dependency_graph.DependencyGraph.build_dependency`. ``named_modules``: the model's
    :func:`~.tracing.named_modules_of` when the caller has it.

    A list / tuple of inputs is traced as ``model(*x)``; if the model fails on that, it is traced again with a fresh
    tracer as ``model(x)`` (:func:`~prune_explorer.inputs.call_model`'s rule, which the other calls then follow)."""
    try:
        return _trace_model(model, example_inputs, forward_fn, output_transform, customized_pruners,
                            unwrapped_parameters, head_pruning, named_modules)
    except TracingError:
        if forward_fn is not None or passes_whole(model, example_inputs) or not isinstance(example_inputs, (list, tuple)):
            raise
        error = sys.exc_info()[1]
    remember_whole(model, example_inputs)
    try:
        return _trace_model(model, example_inputs, forward_fn, output_transform, customized_pruners,
                            unwrapped_parameters, head_pruning, named_modules)
    except TracingError:
        forget_whole(model, example_inputs)
        raise error from None


def _trace_model(model, example_inputs, forward_fn, output_transform, customized_pruners, unwrapped_parameters,
                 head_pruning, named_modules=None) -> Tracer:
    tracer = Tracer(model, customized_pruners, unwrapped_parameters, head_pruning=head_pruning,
                    named_modules=named_modules)
    modules = [m for _, m in tracer.named_modules]  # the tracer's one walk of the module tree
    if not has_user_hooks(model, modules) and not has_meta_tensors(example_inputs):
        # a forward pass may cache things on modules (torchvision's anchor generators keep their anchors):
        # whatever the meta run stores is put back, so the model is exactly as it was (``snapshot_modules``, from
        # the walk above)
        state = [module_state(m) for m in modules]
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                # (keep_state=False: the snapshot above puts back all that the tracer's own one would)
                tracer.run(example_inputs, forward_fn=forward_fn, output_transform=output_transform, meta=True,
                           keep_state=False)
            if tracer.internal_errors:
                raise RuntimeError("internal errors on meta")
        except Exception:
            pass  # data-dependent code (e.g. detection post-processing): trace for real
        else:
            for w in caught:
                if "prune_explorer" in str(w.message):
                    warnings.warn(w.message, w.category, stacklevel=3)
            return tracer
        finally:
            restore_modules(state)
        tracer = Tracer(model, customized_pruners, unwrapped_parameters, head_pruning=head_pruning,
                        named_modules=tracer.named_modules)
    tracer.run(example_inputs, forward_fn=forward_fn, output_transform=output_transform)
    return tracer
