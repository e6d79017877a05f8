"""``DG.lint()``: check that a dependency graph and its model still agree, and say loudly where they do not.

The graph describes the model by an alive mask over channel ids (:mod:`..model.channel_space`) and a history of
:class:`~.records.PruneRecord` objects; pruning and undo keep both in step with the modules. :func:`lint` checks the
invariants that every edit must keep, and raises :class:`GraphLintError` listing each one broken:

* **widths**: every channel space's alive count equals the live width of its layer side (a module's
  ``get_out_channels`` / ``get_in_channels`` through its pruner; a loose parameter's size along its dim, for the
  tensor the graph tracks and the one its module holds);
* **history**: the graph's records are live (not undone), their removed channel ids are disjoint and exactly the
  channels the mask marks dead (unless a pruning was made with ``record_history=False``), and the model's stored
  history (``pe.graph.model_history``) ends with the same entries, so replaying it rebuilds the model;
* **tied parameters**: every module that held a tied parameter when the graph was built holds one shared tensor;
* **configs**: attention modules' head-count attributes match their projections, and a Hugging Face model's
  ``config`` holds the widths its modules have (wherever every layer agrees);
* **state**: the graph's state object (``DG.state``, :class:`~..model.state.DependencyGraphState`) agrees with
  itself: it is built, its per-channel arrays (alive mask, space and class of each channel id, visibility) have one
  length, each space's index is its position and its mask a view of the global one, the version never went back
  since the last lint, and the undo bookkeeping holds no live record missing from the history.

Cost: one pass over the channel spaces and the history (no forward pass, no copy of the weights), so it can run after
every pruning: :func:`lint_after_edits` (or the environment variable ``PRUNE_EXPLORER_LINT=1``) makes every
``prune`` and ``undo`` of every graph lint itself; the test suite turns it on.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, List

import numpy as np

from ...errors import DependencyError

__all__ = ["GraphLintError", "lint", "lint_problems", "lint_after_edits", "lint_enabled"]

_ENABLED = [os.environ.get("PRUNE_EXPLORER_LINT", "") not in ("", "0")]
_MAX_SHOWN = 8


class GraphLintError(DependencyError):
    """A dependency graph and its model disagree (see :mod:`prune_explorer.graph.edit.lint`)."""


def lint_enabled() -> bool:
    """Whether every prune and undo lints its graph (:func:`lint_after_edits`)."""
    return _ENABLED[0]


@contextlib.contextmanager
def _restore_flag(old: bool) -> Iterator[None]:
    try:
        yield
    finally:
        _ENABLED[0] = old


def lint_after_edits(on: bool = True):
    """Make every ``prune`` and ``undo`` of every graph run :func:`lint` afterwards (``on=False``: stop). Usable as
    a context manager too (``with lint_after_edits(): ...`` restores the previous setting on leaving)."""
    old = _ENABLED[0]
    _ENABLED[0] = bool(on)
    return _restore_flag(old)


def _width_problems(graph) -> List[str]:
    out = []
    for s in graph.spaces:
        alive = int(np.count_nonzero(s.alive))
        if s.current_size != alive:
            out.append(f"{s.label}: {s.current_size} channels by its cached indices, {alive} alive in the mask")
        if s.dim is not None:  # a loose parameter
            held = graph.param_holder(s.owner)  # what the module holds (sync_config may rescale it into a new tensor)
            for t in (s.owner, held) if held is not None and held is not s.owner else (s.owner,):
                if t.shape[s.dim] != alive:
                    out.append(f"{s.label}: size {t.shape[s.dim]} along dim {s.dim}, {alive} channels alive")
            continue
        getter = getattr(s.pruner, "get_channels", None)
        if getter is None:
            continue
        try:
            width = getter(s.owner, "out" if (s.side == "out" or s.passthrough) else "in")
        except Exception:  # noqa: BLE001 - a user's pruner that cannot count: nothing to compare
            continue
        if width is not None and int(width) != alive:
            out.append(f"{s.label}: the layer has {int(width)} channels, the graph {alive} alive")
    return out


def _history_problems(graph) -> List[str]:
    from .records import model_history

    out = []
    history = graph.history
    killed = [np.asarray(rec.removed_ids, dtype=np.int64) for rec in history]
    if any(rec.undone for rec in history):
        out.append("the history holds an undone record")
    dead = np.flatnonzero(~graph.alive_mask[1:]) + 1
    ids = np.concatenate(killed) if killed else np.zeros(0, dtype=np.int64)
    if np.unique(ids).size != ids.size:
        out.append("two records of the history removed the same channel")
    if not graph.unrecorded_prunings:
        if dead.size != ids.size or not np.array_equal(np.sort(ids), dead):
            out.append(f"{dead.size} channels are dead in the mask but the history removed {ids.size}")
    stored = model_history(graph.model)
    n_entries = sum(len(rec.entries()) for rec in history)  # a batched cut stands for one entry per group
    last = history[-1].entries() if history else []
    if len(stored) < n_entries:
        out.append(f"the model's stored history has {len(stored)} entries, the graph's {n_entries}")
    elif history and stored[len(stored) - len(last):] != last:
        out.append("the model's stored history does not end with the graph's last record")
    return out


def _tied_problems(graph) -> List[str]:
    out = []
    for aliases in graph.tied:
        tensors = [m._parameters.get(attr) for (m, attr), _ in aliases]
        if any(t is not tensors[0] for t in tensors[1:]):
            out.append(f"tied parameter {aliases[0][1]} is no longer one tensor across {[n for _, n in aliases]}")
    return out


def _config_problems(graph) -> List[str]:
    model = graph.model
    out = []
    if graph.head_splits or graph.has_attention_products:
        from ...attention.head_bookkeeping import attention_mismatches

        out += attention_mismatches(model, graph.read_attributes)
    if getattr(model, "config", None) is not None:
        from ... import hf

        if hf.is_hf_model(model):
            out += hf.config_mismatches(model)
    return out


def _state_problems(graph) -> List[str]:
    state = graph.state
    out = state.problems(last_version=state.linted_version)
    state.linted_version = state.version if isinstance(state.version, int) else state.linted_version
    return out


def lint_problems(graph) -> List[str]:
    """Every broken invariant of ``graph`` (see the module docstring), as sentences; empty when it is sound."""
    if graph.model is None:
        return []
    state = _state_problems(graph)
    if graph.state.shape_problems():
        return state  # the other checks read these fields: they would only fail on the same problem
    return state + _width_problems(graph) + _history_problems(graph) + _tied_problems(graph) + _config_problems(graph)


def lint(graph) -> None:
    """Raise :class:`GraphLintError` listing every broken invariant of ``graph`` (module docstring); None if sound."""
    problems = lint_problems(graph)
    if problems:
        shown = "; ".join(problems[:_MAX_SHOWN])
        more = f"; ... ({len(problems) - _MAX_SHOWN} more)" if len(problems) > _MAX_SHOWN else ""
        raise GraphLintError(f"the dependency graph of {type(graph.model).__name__} no longer matches the model "
                             f"({len(problems)} problem(s)): {shown}{more}. This is a bug of prune_explorer (or of "
                             "code that edited the model or the graph directly): please report it with the model")
