"""Edits of the model that are not channel cuts, kept in a graph's history beside them (e.g. a whole block
removed: :mod:`prune_explorer.depth`).

An *edit* is any object with ``apply()`` (make the change; all or nothing), ``revert()`` (undo it exactly) and
``entries()`` (its JSON-able entries for the model's stored history, each a dict with a ``"kind"``).
:func:`record_edit` applies it and appends an :class:`EditRecord` to ``graph.history`` (and its entries to the
model's stored history), so the graph's undo, redo and undo scopes (a pruner's driver: trials, rollbacks, the
post-prune check's repair) treat it like any pruning: last in, first out. An edit removes no channel id, so the
alive mask and the lint's channel checks are unaffected.
"""

from __future__ import annotations

from typing import List

import numpy as np

from ..._atomic import finish
from ...errors import PruningError

__all__ = ["EditRecord", "record_edit", "undo_edit", "redo_edit"]


class EditRecord:
    """One edit in a graph's history (module docstring); ``undo()`` / ``redo()`` like a
    :class:`~.records.PruneRecord`. ``root`` names what it changed (the first entry's ``"root"``)."""

    parts = None
    exact = False
    attributes: List[tuple] = []

    def __init__(self, graph, edit):
        self.graph = graph
        self.edit = edit
        self.undone = False
        self.root_space = None
        self._entries = [dict(e) for e in edit.entries()]
        self.root = str(self._entries[0].get("root", "")) if self._entries else ""
        self.roots = [str(e.get("root", "")) for e in self._entries]

    def entries(self) -> List[dict]:
        return [dict(e) for e in self._entries]

    def as_dict(self) -> dict:
        return self.entries()[0]

    @property
    def removed_ids(self) -> np.ndarray:
        return np.zeros(0, dtype=np.int64)

    def undo(self) -> None:
        self.graph.undo(self)

    def redo(self) -> "EditRecord":
        return self.graph.redo(self)

    def __repr__(self) -> str:
        return f"EditRecord({type(self.edit).__name__}: {', '.join(self.roots)}{', undone' if self.undone else ''})"


def _model_history(graph):
    from .records import model_history

    return model_history(graph.model)


def record_edit(graph, edit) -> EditRecord:
    """Apply ``edit`` and record it (see the module docstring). Returns its :class:`EditRecord`."""
    rec = EditRecord(graph, edit)
    n_hist, stored = len(graph.history), _model_history(graph)
    n_stored = len(stored)
    done = False
    try:
        edit.apply()
        graph.history.append(rec)
        stored.extend(rec.entries())
        graph.state.version += 1
        done = True
    finally:
        if not done:
            finish(_forget, graph, n_hist, n_stored)
    return rec


def _forget(graph, n_hist: int, n_stored: int) -> None:
    del graph.history[n_hist:]
    del _model_history(graph)[n_stored:]


def undo_edit(graph, record: EditRecord) -> None:
    """Revert the edit of ``record`` (the graph's last record) and drop it from both histories."""
    stored = _model_history(graph)
    entries = record.entries()
    n = len(entries)
    cut = len(stored) - n if len(stored) >= n and stored[len(stored) - n:] == entries else len(stored)
    n_hist, version = len(graph.history) - 1, graph.state.version

    def run() -> None:  # idempotent: finish() may run it again after an interrupt
        record.edit.revert()
        record.undone = True
        del graph.history[n_hist:]
        del stored[cut:]
        graph.state.version = version + 1

    finish(run)


def redo_edit(graph, record: EditRecord) -> EditRecord:
    """Apply an undone edit again; returns its new record."""
    if not record.undone:
        raise PruningError("only an edit that was undone can be redone")
    return record_edit(graph, record.edit)
