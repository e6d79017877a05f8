"""Models bigger than memory: a plan applied to a sharded safetensors checkpoint one block at a time.

    >>> report = pe.stream.stream_checkpoint("llama-8b/", "plan.json", "llama-8b-pruned/")   # doctest: +SKIP

or ``python -m prune_explorer.stream --checkpoint DIR --plan plan.json --out DIR2 [--device cuda]``. The output
folder loads with ``from_pretrained``; it is what :func:`~prune_explorer.apply_plan` would give on the model
loaded whole (same importance, same plan): identical tensors and logits.

Modules: :mod:`.checkpoint` (memory-mapped reading, atomic shard writing, other files), :mod:`.arch` (supported
families, blocks, which dims each pruning cuts), :mod:`.keep` (kept indices per tensor), :mod:`.scoring` (groups
of a meta model scored on streamed weights), :mod:`.calibrated` (the calibration pass block by block),
:mod:`.state` (resume), :mod:`.write` (the write pass, on worker processes too), :mod:`.run`
(:func:`stream_checkpoint`), :mod:`.synthetic` (random checkpoints of any size), ``__main__`` (the command).
"""

from .arch import SUPPORTED
from .errors import StreamError, StreamInterrupted
from .run import StreamReport, stream_checkpoint

__all__ = ["stream_checkpoint", "StreamReport", "StreamError", "StreamInterrupted", "SUPPORTED"]
