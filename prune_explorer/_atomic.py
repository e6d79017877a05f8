"""Finishing what must not be left half done, even when an interrupt lands in the middle of it.

Pruning is made atomic by rolling back: when anything (an error, ``KeyboardInterrupt``) stops a group half-way, the
snapshot taken before is restored. A second interrupt landing *in the restore* would leave the model half
restored, so restores go through :func:`finish`: the restore runs to completion, and an interrupt that arrived
meanwhile is raised afterwards. The functions given to it must be idempotent (putting a snapshot back, marking
channels alive, truncating a list to a known length), so running them again after an interrupt is harmless.

>>> calls = []
>>> finish(calls.append, 1)
>>> calls
[1]
"""

from __future__ import annotations

from typing import Any, Callable

__all__ = ["finish"]


def finish(fn: Callable[..., Any], *args: Any) -> None:
    """Call ``fn(*args)`` until it returns; a ``KeyboardInterrupt`` raised in it makes it start again, and the
    (last) interrupt is re-raised once ``fn`` has completed."""
    interrupt = None
    while True:
        try:
            fn(*args)
            break
        except KeyboardInterrupt as exc:
            interrupt = exc
    if interrupt is not None:
        raise interrupt
