"""Resume state of a streaming run, kept in the output folder until the run completes.

``<out>/.stream_state.json`` records what the run is (a fingerprint of the checkpoint's weight files, the plan, the
importance and the device), the decisions once taken (the kept indices, in ``.stream_keep.pt``, and the pruned
config), and every unit (decoder block, or tensor outside the blocks) whose shard is written. A run that finds a
state with the same fingerprint resumes: decisions are not taken again and finished blocks are not rewritten. The
state files are removed once the checkpoint is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Optional

from .errors import StreamError

__all__ = ["RunState", "fingerprint"]

STATE = ".stream_state.json"
KEEP = ".stream_keep.pt"


def fingerprint(reader, plan, importance, device, calibration=None) -> str:
    """A hash of what decides the output: the checkpoint's weight files (names, sizes, modification times), the
    plan, the importance criterion, the device type and the calibration data."""
    h = hashlib.sha256()
    for shard in sorted(set(reader.weight_map.values())):
        st = os.stat(os.path.join(reader.folder, shard))
        h.update(f"{shard}:{st.st_size}:{int(st.st_mtime)};".encode())
    h.update(plan.to_json().encode())
    h.update(repr(importance).encode())
    h.update(str(getattr(device, "type", device)).encode())
    if calibration is not None:
        import io

        import torch

        buf = io.BytesIO()
        data = getattr(calibration, "data", calibration)
        torch.save(list(data) if not callable(data) else repr(data), buf)
        h.update(buf.getvalue())
    return h.hexdigest()


class RunState:
    """The state file of one output folder (see the module docstring)."""

    def __init__(self, out: str, fp: str):
        self.out, self.fp = out, fp
        self.path = os.path.join(out, STATE)
        self.keep_path = os.path.join(out, KEEP)
        self.data = {"fingerprint": fp, "decided": False, "done": {}, "config": None}

    @classmethod
    def open(cls, out: str, fp: str) -> "RunState":
        """The state of ``out`` for a run with fingerprint ``fp``: resumed when it matches, new when ``out`` is
        empty; a :class:`StreamError` when ``out`` holds something else."""
        state = cls(out, fp)
        if os.path.isfile(state.path):
            with open(state.path, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("fingerprint") != fp:
                raise StreamError(f"{out!r} holds an unfinished run of another checkpoint, plan, importance or device. "
                                  "Fix: resume it with the same arguments, or delete the folder / choose another --out")
            state.data = data
            return state
        if os.path.isdir(out) and os.listdir(out):
            raise StreamError(f"the output folder {out!r} is not empty (and holds no unfinished run to resume). "
                              "Fix: choose a new folder or delete it")
        return state

    @property
    def resumed(self) -> bool:
        return bool(self.data["decided"])

    def save(self) -> None:
        tmp = self.path + ".partial"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.data, f)
        os.replace(tmp, self.path)

    def done(self, unit: str) -> Optional[dict]:
        return self.data["done"].get(unit)

    def mark_done(self, unit: str, file: str, names, nbytes: int, params: int) -> None:
        self.data["done"][unit] = {"file": file, "names": list(names), "bytes": int(nbytes), "params": int(params)}
        self.save()

    def finish(self) -> None:
        for p in (self.path, self.keep_path):
            if os.path.exists(p):
                os.remove(p)
