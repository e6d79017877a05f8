"""Reading and writing safetensors checkpoints one tensor at a time.

:class:`CheckpointReader` opens a folder written by ``save_pretrained`` (``config.json``, one
``model.safetensors`` or shards listed in ``model.safetensors.index.json``) with memory-mapped ``safe_open``
handles: :meth:`~CheckpointReader.get` reads one tensor, nothing else is loaded. :func:`write_shard` writes a dict
of tensors atomically (a temporary file renamed into place, so an interrupted run never leaves a half-written
shard), :func:`check_free_space` refuses to start when the output will not fit, and :func:`copy_other_files` copies
the tokenizer and every other non-weight file.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from typing import Dict, Iterable, List, Tuple

import torch

from .errors import StreamError

__all__ = ["CheckpointReader", "trim_memory", "write_shard", "write_index", "check_free_space", "copy_other_files", "WEIGHT_FILES"]

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
#: files of the input that the output replaces (weights, their index, the config)
WEIGHT_FILES = (INDEX, SINGLE, "config.json")


class CheckpointReader:
    """The tensors of a ``save_pretrained`` folder, read lazily from memory-mapped safetensors files.

    Attributes:
        folder: the checkpoint folder.
        weight_map: ``{tensor name: shard file name}``.
        config: the parsed ``config.json``.
    """

    def __init__(self, folder: str):
        if not os.path.isdir(folder):
            raise StreamError(f"checkpoint folder {folder!r} does not exist")
        self.folder = os.path.abspath(folder)
        cfg = os.path.join(self.folder, "config.json")
        if not os.path.isfile(cfg):
            raise StreamError(f"{folder!r} has no config.json; give a folder written by save_pretrained")
        with open(cfg, encoding="utf-8") as f:
            self.config = json.load(f)
        index = os.path.join(self.folder, INDEX)
        if os.path.isfile(index):
            with open(index, encoding="utf-8") as f:
                self.weight_map: Dict[str, str] = dict(json.load(f)["weight_map"])
        elif os.path.isfile(os.path.join(self.folder, SINGLE)):
            from safetensors import safe_open

            with safe_open(os.path.join(self.folder, SINGLE), framework="pt") as h:
                self.weight_map = {k: SINGLE for k in h.keys()}
        else:
            bins = [n for n in os.listdir(self.folder) if n.endswith(".bin")]
            raise StreamError(f"{folder!r} has no safetensors weights ({INDEX} or {SINGLE})"
                              + (f" but {bins[0]} (a pickle checkpoint, which cannot be memory-mapped safely). Fix: "
                                 "convert it once with save_pretrained(..., safe_serialization=True)" if bins else ""))
        self._handles: Dict[str, object] = {}

    def _handle(self, shard: str):
        h = self._handles.get(shard)
        if h is None:
            from safetensors import safe_open

            h = safe_open(os.path.join(self.folder, shard), framework="pt", device="cpu")
            self._handles[shard] = h
        return h

    def keys(self) -> List[str]:
        return list(self.weight_map)

    def __contains__(self, name: str) -> bool:
        return name in self.weight_map

    def get(self, name: str) -> torch.Tensor:
        """The tensor ``name`` (memory-mapped: pages are read as they are touched)."""
        if name not in self.weight_map:
            raise StreamError(f"the checkpoint has no tensor {name!r} (it has {len(self.weight_map)} tensors, e.g. "
                              f"{self.keys()[:3]})")
        return self._handle(self.weight_map[name]).get_tensor(name)

    def shape_dtype(self, name: str) -> Tuple[Tuple[int, ...], torch.dtype]:
        sl = self._handle(self.weight_map[name]).get_slice(name)
        return tuple(sl.get_shape()), _DTYPES[sl.get_dtype()]

    def nbytes(self) -> int:
        """Bytes of every weight file (what reading the checkpoint once reads)."""
        return sum(os.path.getsize(os.path.join(self.folder, s)) for s in set(self.weight_map.values()))

    def close(self) -> None:
        """Drop the open files (their memory maps) and give freed memory back to the system: call between blocks
        so that what one block used leaves this process's resident memory."""
        self._handles.clear()
        trim_memory()


_LIBC = []


def trim_memory() -> None:
    """Return the C heap's free memory to the system (glibc ``malloc_trim``; nothing elsewhere). Without it,
    glibc keeps the blocks of freed block-sized tensors (its mmap threshold grows after each large free), and a
    streaming run's resident memory creeps up block after block."""
    if not _LIBC:
        try:
            import ctypes

            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
           "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
           "BOOL": torch.bool}


def _disk_full(exc: OSError, folder: str, need: int = 0) -> StreamError:
    free = shutil.disk_usage(folder).free
    return StreamError(f"the disk of {folder!r} is full ({free / 1e9:.2f} GB free"
                       + (f", {need / 1e9:.2f} GB needed" if need else "") + "). Free space or choose another --out; "
                       "the files written so far are kept and the same command resumes")


def write_shard(tensors: Dict[str, torch.Tensor], path: str) -> int:
    """Write ``tensors`` to the safetensors file ``path`` atomically; returns the bytes of tensor data."""
    from safetensors.torch import save_file

    tmp = path + ".partial"
    try:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp, metadata={"format": "pt"})
        os.replace(tmp, path)
    except OSError as exc:
        if os.path.exists(tmp):
            os.remove(tmp)
        if exc.errno == errno.ENOSPC:
            raise _disk_full(exc, os.path.dirname(path)) from exc
        raise
    return sum(v.numel() * v.element_size() for v in tensors.values())


def write_index(folder: str, weight_map: Dict[str, str], total_size: int) -> None:
    """``model.safetensors.index.json`` for the shards written."""
    with open(os.path.join(folder, INDEX), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": int(total_size)}, "weight_map": dict(sorted(weight_map.items()))}, f,
                  indent=2)


def check_free_space(folder: str, need: int) -> None:
    """Raise :class:`StreamError` when ``folder``'s disk has less than ``need`` bytes free (plus 1%)."""
    free = shutil.disk_usage(folder).free
    if free < need * 1.01:
        raise StreamError(f"the pruned checkpoint needs {need / 1e9:.2f} GB but the disk of {folder!r} has "
                          f"{free / 1e9:.2f} GB free. Free space or choose another --out")


def copy_other_files(src: str, dst: str, skip: Iterable[str] = ()) -> List[str]:
    """Copy every file of ``src`` that is not a weight file (tokenizer, generation config, README...) to ``dst``;
    returns the names copied. Sub-folders are copied whole."""
    skip = set(skip) | set(WEIGHT_FILES)
    copied = []
    for name in sorted(os.listdir(src)):
        if name in skip or name.endswith((".safetensors", ".bin", ".pt", ".pth", ".partial")):
            continue
        s, d = os.path.join(src, name), os.path.join(dst, name)
        try:
            if os.path.isdir(s):
                shutil.copytree(s, d, dirs_exist_ok=True)
            else:
                shutil.copy2(s, d)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise _disk_full(exc, dst) from exc
            raise
        copied.append(name)
    return copied
