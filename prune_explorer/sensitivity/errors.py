"""The error every sensitivity function raises for bad input or a failed evaluation."""

from ..errors import PruneExplorerError

__all__ = ["SensitivityError"]


class SensitivityError(PruneExplorerError, ValueError):
    """Bad input to a scan / budget solver / plan comparison, or an ``eval_fn`` that failed or returned something
    other than a finite float. The message names the problem and the fix; the user's model is left unchanged."""
