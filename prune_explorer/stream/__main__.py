"""``python -m prune_explorer.stream --checkpoint DIR --plan plan.json --out DIR2 [--importance l2] [--device cuda]``

Prunes a ``save_pretrained`` checkpoint (safetensors) as a saved plan says, one block at a time, into a folder that
``from_pretrained`` loads (see :func:`prune_explorer.stream.stream_checkpoint`). Interrupted, the same command
resumes: finished blocks are not redone. Exit status 2 with a one-line reason on a :class:`StreamError` (or an
unreadable plan).
"""

from __future__ import annotations

import argparse
import sys

IMPORTANCES = ("l2", "l1", "lamp", "fpgm", "random", "wanda", "flap")


def make_importance(name: str, seed: int):
    import torch

    from .. import importance as imp

    if name == "l2":
        return imp.MagnitudeImportance(p=2)
    if name == "l1":
        return imp.MagnitudeImportance(p=1)
    if name == "lamp":
        return imp.LAMPImportance()
    if name == "fpgm":
        return imp.FPGMImportance()
    if name == "wanda":
        return imp.WandaImportance()
    if name == "flap":
        return imp.FluctuationImportance()
    torch.manual_seed(seed)
    return imp.RandomImportance()


def load_calibration(path: str):
    """Calibration batches from a file of token ids (see ``--calibration``)."""
    import torch

    from ..calibration import Calibration
    from .errors import StreamError

    try:
        ids = torch.load(path)
    except (OSError, RuntimeError) as exc:
        raise StreamError(f"--calibration {path!r}: cannot read token ids ({exc})") from exc
    rows = [r[None] for r in ids] if isinstance(ids, torch.Tensor) and ids.dim() == 2 else list(ids)
    if not rows or not all(isinstance(r, torch.Tensor) and not r.is_floating_point() and r.dim() == 2 for r in rows):
        raise StreamError(f"--calibration {path!r} must hold token ids: a [batches, tokens] int tensor or a list of "
                          "[batch, tokens] int tensors")
    return Calibration([{"input_ids": r} for r in rows], progress=False)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prune_explorer.stream", description=__doc__.split("\n\n")[1])
    ap.add_argument("--checkpoint", required=True, help="folder written by save_pretrained (safetensors)")
    ap.add_argument("--plan", required=True, help="a plan saved as JSON (PruningPlan.save, the explorer's Save plan)")
    ap.add_argument("--out", required=True, help="output folder (new, or an unfinished run to resume)")
    ap.add_argument("--importance", default="l2", choices=IMPORTANCES,
                    help="criterion ranking the channels (default l2: MagnitudeImportance(p=2))")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for --importance random")
    ap.add_argument("--device", default="cpu", help="where groups are scored: cpu (default) or cuda")
    ap.add_argument("--calibration", default=None,
                    help="token ids for --importance wanda / flap: a .pt file holding a [batches, tokens] int tensor "
                    "(one batch of one sequence per row) or a list of [batch, tokens] tensors")
    ap.add_argument("--workers", type=int, default=1, help="local processes for the write pass (default 1)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    from ..errors import PruneExplorerError
    from .run import stream_checkpoint

    try:
        calibration = load_calibration(args.calibration) if args.calibration else None
        report = stream_checkpoint(args.checkpoint, args.plan, args.out,
                                   importance=make_importance(args.importance, args.seed), device=args.device,
                                   progress=not args.no_progress, workers=args.workers,
                                   calibration=calibration)
    except PruneExplorerError as exc:  # StreamError, PlanError (an unreadable plan file)...
        print(f"error: {exc}", file=sys.stderr)
        return 2
    r = report
    print(f"{r.out}: {r.params_before:,} -> {r.params_after:,} parameters"
          + (f" (plan predicted {r.predicted_params:,})" if r.predicted_params is not None else "")
          + f"; {r.units_written} shard(s) written, {r.units_resumed} resumed; {r.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
