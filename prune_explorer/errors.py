"""Exceptions raised by prune_explorer.

Every error names the object at fault (a layer's qualified name, an index, an option) and how to fix it.
All of them derive from :class:`PruneExplorerError`, so ``except pe.PruneExplorerError`` catches any of them.
"""


class PruneExplorerError(Exception):
    """Base class of every error raised by prune_explorer."""


class TracingError(PruneExplorerError, RuntimeError):
    """The model could not be traced with the given example inputs (the forward pass failed, or no output)."""


class PruningError(PruneExplorerError, ValueError):
    """A pruning request is invalid (index out of range, duplicate, would leave no channel, ...).

    Raised before anything is changed: the model is left exactly as it was.
    """


class DependencyError(PruneExplorerError, ValueError):
    """A layer, parameter or pruning function is not part of the traced dependency graph."""


class MissingDependencyError(PruneExplorerError, ImportError):
    """An optional system program or package needed for a feature is missing (e.g. graphviz's ``dot``)."""


class OutputShapeWarning(UserWarning):
    """An explicitly requested pruning removed channels that reach the model's outputs, so their shapes changed.

    The automatic tools (``DG.get_all_groups``, the pruners) never do this; only ``DG.get_pruning_group`` on such
    channels does, because the user asked for it (e.g. removing classes from a classifier on purpose).
    """


class ImportanceError(PruneExplorerError, RuntimeError):
    """An importance criterion cannot score a group as things stand (e.g. no gradients were computed)."""


class CalibrationError(ImportanceError):
    """Calibration data or the statistics gathered from them cannot serve what was asked (nothing gathered yet,
    gathered on a model of other sizes, a batch the model cannot be called with...)."""
