"""The error of the streaming path: :class:`StreamError` (a :class:`~prune_explorer.plan.PlanError`, so code that
catches plan errors catches it too)."""

from __future__ import annotations

from ..plan.decisions import PlanError

__all__ = ["StreamError", "StreamInterrupted"]


class StreamError(PlanError):
    """A checkpoint cannot be streamed as asked (unsupported architecture, a plan made for another config, an
    output folder in the way, a full disk...); the input checkpoint is never modified, and what was written to the
    output folder is either complete or resumable."""


class StreamInterrupted(StreamError):
    """The run stopped on request (``stop_after=``) before the last block; run the same call again to resume."""
