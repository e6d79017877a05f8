"""Pausing Python's cyclic garbage collector around bulk work.

Accepting every group of a large model keeps a few Python objects per channel alive until the batch ends (each
group's units: a list per root channel, tens of thousands per MLP group of a 70B-sized Llama). Each such object
counts towards the collector's thresholds, so the collector runs full passes over the whole heap again and again
while the batch runs; with a large model in memory (the 70B-sized meta Llama with transformers imported: about
0.5 M objects, ~1 s per full pass on a 2-core CPU) those passes cost several times the work itself, and their
number grows with depth. :func:`gc_paused` turns the automatic collector off for the batch (reference counting
still frees everything that is not in a cycle) and restores it after; nothing is collected by force.

>>> import gc
>>> with gc_paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """``with gc_paused():`` the automatic cyclic collector is off inside (unless it was off already, it is back
    on after, whatever happens inside)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
