"""The write pass: each unit (decoder block, or tensor outside the blocks) read, cut to its kept entries and
written to its own shard, in this process or in ``workers`` local processes (the units are independent once the
decisions are taken; each worker holds one block at a time).
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Dict, Iterator, List, Sequence, Tuple

from .checkpoint import CheckpointReader, write_shard
from .keep import KeepTable

__all__ = ["write_unit", "write_units"]

Task = Tuple[str, List[str], str]  # (unit, tensor names, shard path)


def write_unit(reader: CheckpointReader, keep: KeepTable, names: Sequence[str], path: str) -> Tuple[int, int]:
    """Write the cut tensors ``names`` to the shard ``path``; returns ``(bytes, parameters)`` written."""
    tensors = {n: keep.cut(n, reader.get(n)) for n in names}
    params = sum(t.numel() for t in tensors.values())
    nbytes = write_shard(tensors, path)
    del tensors
    reader.close()  # unmap and trim: what this block used leaves the process's memory
    return nbytes, params


_WORKER: Dict[str, object] = {}


def _init(folder: str, keep: KeepTable) -> None:
    _WORKER["reader"] = CheckpointReader(folder)
    _WORKER["keep"] = keep


def _run(task: Task):
    unit, names, path = task
    return unit, names, path, write_unit(_WORKER["reader"], _WORKER["keep"], names, path)


def write_units(reader: CheckpointReader, keep: KeepTable, tasks: Sequence[Task],
                workers: int = 1) -> Iterator[Tuple[str, List[str], str, Tuple[int, int]]]:
    """Write every task's shard; yields ``(unit, names, path, (bytes, parameters))`` as each finishes (in order
    with one worker, in completion order with several, forked local processes)."""
    if workers <= 1 or len(tasks) <= 1 or "fork" not in mp.get_all_start_methods():
        for unit, names, path in tasks:
            yield unit, names, path, write_unit(reader, keep, names, path)
        return
    with mp.get_context("fork").Pool(min(workers, len(tasks)), initializer=_init,
                                     initargs=(reader.folder, keep)) as pool:
        yield from pool.imap_unordered(_run, tasks)
