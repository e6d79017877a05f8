"""On-disk cache of scan points, so an interrupted scan resumes where it stopped.

One file per scan setting, ``<cache_dir>/scan-<digest>.jsonl``; the digest covers

* the model: its structure (every module's qualified name and class, every parameter's and buffer's name, shape
  and dtype) and a hash of its weights (so a retrained model never reuses stale points),
* ``eval_fn``'s identity: its qualified name and a hash of its code (bytecode, constants and names, not its file
  name, so a notebook function keeps its identity across kernel restarts), or the user's ``cache_key`` instead.
  Data the function reads from globals is not part of it: pass a new ``cache_key`` when you change it;
* the pruner options (ignored layers, ``round_to``, ``max_pruning_ratio``...), the importance's description and
  the seed.

Each line after the header is one finished point, keyed by the group and the exact root channels it removed, so a
scan with other or more ratios reuses every point it shares with an earlier one. Lines are flushed one by one; a
line cut short by an interruption is ignored on reading.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import types
from typing import Any, Callable, Dict, Iterable, Mapping, Optional

import torch
import torch.nn as nn

from .errors import SensitivityError

__all__ = ["ScanCache", "model_fingerprint", "callable_identity", "point_id", "CACHE_FORMAT"]

CACHE_FORMAT = "prune_explorer.sensitivity.cache/1"


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def model_fingerprint(model: nn.Module, weights: bool = True) -> Dict[str, str]:
    """``{"structure": hex digest, "weights": hex digest}`` of ``model`` (see the module docstring); meta tensors
    have no weights to hash.

    >>> import torch.nn as nn
    >>> a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    >>> model_fingerprint(a)["structure"] == model_fingerprint(b)["structure"], model_fingerprint(a) == model_fingerprint(b)
    (True, False)
    """
    s = hashlib.sha256()
    w = hashlib.sha256()
    for name, mod in model.named_modules():
        s.update(f"M {name} {type(mod).__module__}.{type(mod).__qualname__}\n".encode())
        for store in ("_parameters", "_buffers"):
            for pname, t in getattr(mod, store).items():
                if t is None:
                    continue
                s.update(f"T {store} {pname} {tuple(t.shape)} {t.dtype}\n".encode())
                if weights and t.device.type != "meta":
                    w.update(_tensor_bytes(t))
    return {"structure": s.hexdigest(), "weights": w.hexdigest()}


def _code_digest(code: types.CodeType, h) -> None:
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    h.update(repr(code.co_varnames).encode())
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _code_digest(c, h)
        else:
            h.update(repr(c).encode())


def callable_identity(fn: Callable) -> str:
    """A stable description of a callable: ``module.qualname#digest`` of its code (plus the arguments of a
    ``functools.partial``, or the pickled state of a callable object).

    >>> def f(model): return 1.0
    >>> def g(model): return 2.0
    >>> callable_identity(f) != callable_identity(g)
    True
    """
    h = hashlib.sha256()
    target = fn
    while isinstance(target, functools.partial):
        h.update(repr((target.args, sorted(target.keywords.items()))).encode())
        target = target.func
    code = getattr(target, "__code__", None)
    if isinstance(code, types.CodeType):
        _code_digest(code, h)
        h.update(repr(getattr(target, "__defaults__", None)).encode())
        name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"
    else:
        cls = type(target)
        name = f"{cls.__module__}.{cls.__qualname__}"
        call = getattr(cls, "__call__", None)
        if isinstance(getattr(call, "__code__", None), types.CodeType):
            _code_digest(call.__code__, h)
        try:
            h.update(pickle.dumps(target))
        except Exception:
            h.update(repr(target).encode())
    return f"{name}#{h.hexdigest()[:16]}"


def point_id(key: Optional[str], idxs: Iterable[int]) -> str:
    """The cache key of a point: the group key and the exact root channels it removes (``"baseline"`` for the
    unpruned model)."""
    if key is None:
        return "baseline"
    h = hashlib.sha256(",".join(str(int(i)) for i in idxs).encode()).hexdigest()[:20]
    return f"{key}@{h}"


class ScanCache:
    """The cache file of one scan setting (``header``: a JSON-able dict, see the module docstring)."""

    def __init__(self, cache_dir, header: Mapping[str, Any]):
        try:
            os.makedirs(cache_dir, exist_ok=True)
        except OSError as exc:
            raise SensitivityError(f"cache_dir={str(cache_dir)!r} cannot be created ({exc}). Fix: pass a writable "
                                   "folder, or cache_dir=None") from None
        self.header = dict(header, format=CACHE_FORMAT)
        text = json.dumps(self.header, sort_keys=True)
        self.digest = hashlib.sha256(text.encode()).hexdigest()[:24]
        self.path = os.path.join(os.fspath(cache_dir), f"scan-{self.digest}.jsonl")
        self._file = None

    def load(self) -> Dict[str, dict]:
        """The finished points: ``{point id: {"metric", "params_removed", "macs_removed", ...}}``."""
        out: Dict[str, dict] = {}
        if not os.path.exists(self.path):
            return out
        with open(self.path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by an interruption
                if i == 0:
                    if entry.get("format") != CACHE_FORMAT:
                        return {}
                    continue
                if isinstance(entry, dict) and "id" in entry and "metric" in entry:
                    out[entry["id"]] = entry
        return out

    def append(self, entry: Mapping[str, Any]) -> None:
        """Record one finished point (written and flushed at once)."""
        if self._file is None:
            new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
            self._file = open(self.path, "a", encoding="utf-8")
            if new:
                self._file.write(json.dumps(self.header, sort_keys=True) + "\n")
            elif not self._ends_with_newline():
                self._file.write("\n")  # after a line cut short
        self._file.write(json.dumps(dict(entry)) + "\n")
        self._file.flush()

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __repr__(self) -> str:
        return f"ScanCache({self.path!r})"
